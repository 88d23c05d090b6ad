//! The answers the filter gives itself: 401 and 403 as the MCP authorization specification
//! (2025-11-25) and RFC 6750 shape them, 503 when the issuer's keys are unavailable, and the
//! RFC 9728 protected resource metadata document.

use serde_json::{Map, Value as Json, json};

/// The well-known path of RFC 9728 protected resource metadata.
pub const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// A response the filter sends instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// A short reason for Envoy's `response_code_details` and the log.
    pub details: String,
}

/// Where the request came in: enough to name the resource and its metadata document.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    /// The request path without its query.
    pub path: &'a str,
}

impl Origin<'_> {
    /// The resource a request path names (RFC 9728 §3.1 inserts the path after the prefix).
    pub fn resource(&self, path: &str) -> String {
        format!(
            "{}://{}{}",
            self.scheme,
            self.host,
            path.trim_end_matches('/')
        )
    }

    /// `…/.well-known/oauth-protected-resource<path>` for the path of this request.
    pub fn metadata_url(&self) -> String {
        let path = if self.path == "/" { "" } else { self.path };
        format!("{}://{}{METADATA_PREFIX}{path}", self.scheme, self.host)
    }
}

/// An OAuth error for a 401: `invalid_request` when the request's shape is wrong,
/// `invalid_token` when the token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// No token: a bare challenge, as RFC 6750 §3.1 asks.
    Missing,
    InvalidRequest,
    InvalidToken,
}

/// A 401 challenge; `scope` names the scopes a token needs here (MCP 2025-11-25 asks for it
/// when the resource knows them), so a client asks for the right ones at sign-in.
pub fn unauthorized(
    origin: &Origin<'_>,
    challenge: Challenge,
    description: &str,
    scope: Option<&str>,
) -> LocalResponse {
    let mut www = format!(
        "Bearer resource_metadata=\"{}\"",
        quoted(&origin.metadata_url())
    );
    if let Some(scope) = scope {
        www.push_str(&format!(", scope=\"{}\"", quoted(scope)));
    }
    let code = match challenge {
        Challenge::Missing => "unauthorized",
        Challenge::InvalidRequest => "invalid_request",
        Challenge::InvalidToken => "invalid_token",
    };
    if challenge != Challenge::Missing {
        www.push_str(&format!(
            ", error=\"{code}\", error_description=\"{}\"",
            quoted(description)
        ));
    }
    let mut response = json_response(
        401,
        &json!({"error": code, "error_description": description}),
        &format!("mcp_auth_{code}"),
    );
    response.headers.push(("www-authenticate".into(), www));
    response
}

/// 403 for a token without the scopes the route requires (RFC 6750 §3.1, MCP 2025-11-25).
pub fn insufficient_scope(
    origin: &Origin<'_>,
    required: &[String],
    missing: &[&String],
) -> LocalResponse {
    let description = format!(
        "the token lacks the scope(s) {}",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut response = json_response(
        403,
        &json!({"error": "insufficient_scope", "error_description": description, "scope": required.join(" ")}),
        "mcp_auth_insufficient_scope",
    );
    response.headers.push((
        "www-authenticate".into(),
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\", error_description=\"{}\"",
            quoted(&required.join(" ")),
            quoted(&origin.metadata_url()),
            quoted(&description)
        ),
    ));
    response
}

/// A JSON-RPC answer (an error for a denied or unreadable message).
pub fn jsonrpc(status: u32, body: &Json, details: &str) -> LocalResponse {
    json_response(status, body, details)
}

pub fn forbidden(description: &str) -> LocalResponse {
    json_response(
        403,
        &json!({"error": "forbidden", "error_description": description}),
        "mcp_auth_forbidden",
    )
}

pub fn keys_unavailable(issuer: &str, reason: impl std::fmt::Display) -> LocalResponse {
    let mut response = json_response(
        503,
        &json!({
            "error": "temporarily_unavailable",
            "error_description": format!(
                "the signing keys of {issuer} could not be fetched ({reason}); the token was not checked"
            ),
        }),
        "mcp_auth_jwks_unavailable",
    );
    response.headers.push(("retry-after".into(), "5".into()));
    response
}

/// The RFC 9728 document for the resource named by `resource_path`, whose authorization server
/// is `server` (the issuer, or the resource itself when the gateway is a registration facade).
pub fn metadata(
    origin: &Origin<'_>,
    resource_path: &str,
    server: &str,
    extra: &Map<String, Json>,
) -> LocalResponse {
    let mut doc = Map::new();
    doc.insert("resource".into(), origin.resource(resource_path).into());
    doc.insert("authorization_servers".into(), json!([server]));
    doc.insert("bearer_methods_supported".into(), json!(["header"]));
    for (k, v) in extra {
        doc.insert(k.clone(), v.clone());
    }
    let mut response = json_response(200, &Json::Object(doc), "mcp_auth_metadata");
    response
        .headers
        .push(("cache-control".into(), "max-age=3600".into()));
    cors(response)
}

/// Public documents with no cookies involved: any origin may read them (browser-based MCP
/// clients fetch them from their own origin).
pub fn cors(mut response: LocalResponse) -> LocalResponse {
    response
        .headers
        .push(("access-control-allow-origin".into(), "*".into()));
    response
}

/// A JSON answer of the filter's own; `details` names it in the access log.
pub fn json_response(status: u32, body: &Json, details: &str) -> LocalResponse {
    LocalResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        details: details.into(),
    }
}

/// Makes text safe inside a quoted-string of a header (RFC 9110 §5.6.4): no quotes, no
/// backslashes, no control characters, so a reason can never split or forge a header.
fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge_of(r: &LocalResponse) -> &str {
        &r.headers
            .iter()
            .find(|(k, _)| k == "www-authenticate")
            .unwrap()
            .1
    }

    fn origin(path: &str) -> Origin<'_> {
        Origin {
            scheme: "https",
            host: "gw.example.com",
            path,
        }
    }

    #[test]
    fn metadata_url_follows_the_request_path() {
        assert_eq!(
            origin("/mcp").metadata_url(),
            "https://gw.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            origin("/").metadata_url(),
            "https://gw.example.com/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn a_reason_cannot_break_out_of_the_header() {
        let r = unauthorized(
            &origin("/mcp"),
            Challenge::InvalidToken,
            "bad \"thing\"\r\nx-evil: 1",
            None,
        );
        let www = challenge_of(&r);
        assert!(!www.contains('\r') && !www.contains('\n'), "{www}");
        assert_eq!(www.matches('"').count(), 6, "{www}");
    }

    #[test]
    fn a_missing_token_gets_a_bare_challenge() {
        let r = unauthorized(&origin("/mcp"), Challenge::Missing, "no token", None);
        let www = challenge_of(&r);
        assert_eq!(
            www,
            "Bearer resource_metadata=\"https://gw.example.com/.well-known/oauth-protected-resource/mcp\""
        );
    }

    #[test]
    fn the_challenge_names_the_scopes_when_the_policy_does() {
        for challenge in [Challenge::Missing, Challenge::InvalidToken] {
            let r = unauthorized(&origin("/mcp"), challenge, "x", Some("mcp.read mcp.write"));
            let www = challenge_of(&r);
            assert!(
                www.starts_with(
                    "Bearer resource_metadata=\"https://gw.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp.read mcp.write\""
                ),
                "{www}"
            );
        }
    }
}
