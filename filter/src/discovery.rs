//! The OAuth discovery paths a client tries on the gateway's own host besides the RFC 9728
//! document: authorization server metadata (RFC 8414, OpenID discovery) and registration
//! (RFC 7591). The gateway is a protected resource, not an authorization server, so by default
//! these answer 404 with a JSON body that says where the authorization server is: a 401 there
//! would send an SDK's fallbacks (legacy 2025-03-26 discovery, `{origin}/register`) into a
//! sign-in loop against a server that cannot sign anyone in.
//!
//! With `mcpAuthentication.registration`, the gateway is instead a registration facade for an
//! issuer without open registration (an Okta custom authorization server, whose metadata
//! advertises an admin-only `/oauth2/v1/clients`). The RFC 9728 document names the protected
//! resource itself as its authorization server; this module serves that server's metadata with
//! `issuer` equal to the URL clients derive it from (strict SDKs compare the two), the real
//! issuer's authorization, token and key endpoints, and a `registration_endpoint` on the gateway
//! that hands every client the one public client the operator registered at the issuer. The
//! gateway never sees a password, a code or a token: the login happens at the issuer.

use serde_json::{Map, Value as Json, json};

use crate::host::Host;
use crate::metric;
use crate::policy::Authn;
use crate::registration::Facade;
use crate::response::{LocalResponse, Origin, cors, json_response};

const SERVER_METADATA: [&str; 2] = [
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
];

/// A request on one of the discovery paths of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask<'p> {
    /// Authorization server metadata for the resource at this path.
    ServerMetadata(&'p str),
    /// RFC 7591 registration.
    Register,
    /// A browser's CORS preflight for one of the above (or the RFC 9728 document).
    Preflight,
}

/// Which discovery request this is, if any. Without the facade only the forms rooted at the
/// origin are claimed; with it, the forms appended to a resource path too (OpenID discovery
/// appends, and a route matching only `/mcp…` sees only those).
fn ask<'p>(method: &str, path: &'p str, facade: bool) -> Option<Ask<'p>> {
    let server_metadata = || {
        for prefix in SERVER_METADATA {
            if let Some(rest) = path.strip_prefix(prefix) {
                match rest {
                    "" | "/" => return Some("/"),
                    r if r.starts_with('/') => return Some(r),
                    _ => {}
                }
            }
            if facade
                && let Some(resource) = path.strip_suffix(prefix)
                && resource.starts_with('/')
            {
                return Some(resource);
            }
        }
        None
    };
    let register = path == "/register" || (facade && path.ends_with("/register"));
    match method {
        "GET" | "HEAD" => server_metadata().map(Ask::ServerMetadata),
        "POST" if register => Some(Ask::Register),
        "OPTIONS"
            if register
                || server_metadata().is_some()
                || path.starts_with(crate::response::METADATA_PREFIX) =>
        {
            Some(Ask::Preflight)
        }
        _ => None,
    }
}

/// The answer to a discovery request, or `None` when the request is not one.
pub fn answer(
    authn: &Authn,
    method: &str,
    origin: &Origin<'_>,
    host: &dyn Host,
) -> Option<LocalResponse> {
    let facade = authn.registration.as_ref();
    Some(
        match (ask(method, origin.path, facade.is_some())?, facade) {
            (Ask::Preflight, _) => preflight(),
            (Ask::ServerMetadata(resource), Some(facade)) => {
                host.count(metric::FACADE_METADATA, 1);
                server_metadata(facade, &origin.resource(resource), &authn.named_scopes())
            }
            (Ask::Register, Some(facade)) => {
                host.count(metric::FACADE_REGISTERED, 1);
                registration(facade, host.now())
            }
            (Ask::ServerMetadata(_) | Ask::Register, None) => {
                host.count(metric::DISCOVERY_NOT_SERVED, 1);
                not_served(origin, &authn.expect.issuer)
            }
        },
    )
}

/// 404: this is not the authorization server, and here is where it is.
fn not_served(origin: &Origin<'_>, issuer: &str) -> LocalResponse {
    let metadata = Origin {
        path: "/",
        ..origin.clone()
    }
    .metadata_url();
    cors(json_response(
        404,
        &json!({
            "error": "not_found",
            "error_description": format!(
                "this gateway is an OAuth protected resource, not an authorization server: sign in \
                 at {issuer}, as {metadata} says"
            ),
            "authorization_servers": [issuer],
            "resource_metadata": metadata,
        }),
        "mcp_auth_not_authorization_server",
    ))
}

/// RFC 8414 metadata of the facade for the resource `resource` (which is also its issuer).
fn server_metadata(facade: &Facade, resource: &str, scopes: &[String]) -> LocalResponse {
    let mut scopes = scopes.to_vec();
    // Okta issues refresh tokens only with this scope; SDKs ask for it when it is offered.
    if !scopes.iter().any(|s| s == "offline_access") {
        scopes.push("offline_access".into());
    }
    let mut doc = Map::new();
    doc.insert("issuer".into(), resource.into());
    doc.insert(
        "authorization_endpoint".into(),
        facade.authorization_endpoint.clone().into(),
    );
    doc.insert(
        "token_endpoint".into(),
        facade.token_endpoint.clone().into(),
    );
    if let Some(jwks) = &facade.jwks_uri {
        doc.insert("jwks_uri".into(), jwks.clone().into());
    }
    doc.insert(
        "registration_endpoint".into(),
        format!("{}/register", resource.trim_end_matches('/')).into(),
    );
    doc.insert("scopes_supported".into(), json!(scopes));
    doc.insert("response_types_supported".into(), json!(["code"]));
    doc.insert("response_modes_supported".into(), json!(["query"]));
    doc.insert(
        "grant_types_supported".into(),
        json!(["authorization_code", "refresh_token"]),
    );
    doc.insert("code_challenge_methods_supported".into(), json!(["S256"]));
    doc.insert(
        "token_endpoint_auth_methods_supported".into(),
        json!(["none"]),
    );
    let mut response = cors(json_response(
        200,
        &Json::Object(doc),
        "mcp_auth_facade_metadata",
    ));
    response
        .headers
        .push(("cache-control".into(), "max-age=3600".into()));
    response
}

/// RFC 7591 §3.2.1: the configured public client. The request's metadata is not read (the
/// filter reads bodies only on routes with MCP-level rules); RFC 7591 lets a server replace
/// what was asked, and the answer says what holds: the redirect URIs the issuer knows.
fn registration(facade: &Facade, now: chrono::DateTime<chrono::Utc>) -> LocalResponse {
    let mut response = cors(json_response(
        201,
        &json!({
            "client_id": facade.client_id,
            "client_id_issued_at": now.timestamp(),
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": facade.redirect_uris,
        }),
        "mcp_auth_facade_registration",
    ));
    response
        .headers
        .push(("cache-control".into(), "no-store".into()));
    response
}

fn preflight() -> LocalResponse {
    let mut response = cors(LocalResponse {
        status: 204,
        headers: Vec::new(),
        body: Vec::new(),
        details: "mcp_auth_cors_preflight".into(),
    });
    response.headers.extend([
        (
            "access-control-allow-methods".into(),
            "GET, HEAD, POST, OPTIONS".into(),
        ),
        (
            "access-control-allow-headers".into(),
            "content-type, mcp-protocol-version".into(),
        ),
        ("access-control-max-age".into(), "86400".into()),
    ]);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::testing::FakeHost;

    const OKTA: &str = "mcpAuthentication:\n  issuer: https://o.okta.com/oauth2/default\n  \
        audiences: [api://agentgateway]\n  provider: okta\n";

    fn authn(extra: &str) -> Authn {
        Policy::parse(format!("{OKTA}{extra}").as_bytes())
            .unwrap()
            .authn
            .unwrap()
    }

    fn err(extra: &str) -> crate::config_error::ConfigError {
        Policy::parse(format!("{OKTA}{extra}").as_bytes()).unwrap_err()
    }

    const FACADE: &str = "  registration:\n    clientId: 0oaPublic\n    \
        redirectUris: ['http://127.0.0.1/callback', 'https://vscode.dev/redirect']\n";

    fn origin(path: &str) -> Origin<'_> {
        Origin {
            scheme: "https",
            host: "gw.example.com",
            path,
        }
    }

    fn body(r: &LocalResponse) -> Json {
        serde_json::from_slice(&r.body).unwrap()
    }

    fn header<'r>(r: &'r LocalResponse, name: &str) -> Option<&'r str> {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn without_the_facade_the_discovery_paths_say_where_the_issuer_is() {
        let authn = authn("");
        let host = FakeHost::new();
        for (method, path) in [
            ("POST", "/register"),
            ("GET", "/.well-known/oauth-authorization-server"),
            ("GET", "/.well-known/oauth-authorization-server/mcp"),
            ("HEAD", "/.well-known/openid-configuration"),
            ("GET", "/.well-known/openid-configuration/mcp"),
        ] {
            let r = answer(&authn, method, &origin(path), &host)
                .unwrap_or_else(|| panic!("{method} {path} not answered"));
            assert_eq!(r.status, 404, "{method} {path}");
            let doc = body(&r);
            assert_eq!(doc["error"], "not_found");
            assert_eq!(
                doc["authorization_servers"],
                json!(["https://o.okta.com/oauth2/default"])
            );
            assert_eq!(
                doc["resource_metadata"],
                "https://gw.example.com/.well-known/oauth-protected-resource"
            );
            assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
        }
        assert_eq!(host.counters.borrow()[metric::DISCOVERY_NOT_SERVED], 5);
        // What is not a discovery request is left to the policy.
        for (method, path) in [
            ("POST", "/mcp"),
            ("GET", "/register"),
            ("POST", "/mcp/register"),
            ("GET", "/mcp/.well-known/openid-configuration"),
            ("GET", "/.well-known/openid-configurationx"),
        ] {
            assert!(
                answer(&authn, method, &origin(path), &host).is_none(),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn the_facade_names_the_resource_as_issuer_wherever_clients_look() {
        let authn = authn(&format!("{FACADE}  requiredScopes: [mcp.read]\n"));
        let host = FakeHost::new();
        for path in [
            "/.well-known/oauth-authorization-server/mcp",
            "/.well-known/openid-configuration/mcp",
            "/mcp/.well-known/openid-configuration",
            "/mcp/.well-known/oauth-authorization-server",
        ] {
            let r = answer(&authn, "GET", &origin(path), &host).unwrap();
            assert_eq!(r.status, 200, "{path}");
            let doc = body(&r);
            assert_eq!(doc["issuer"], "https://gw.example.com/mcp", "{path}");
            assert_eq!(
                doc["authorization_endpoint"],
                "https://o.okta.com/oauth2/default/v1/authorize"
            );
            assert_eq!(
                doc["token_endpoint"],
                "https://o.okta.com/oauth2/default/v1/token"
            );
            assert_eq!(doc["jwks_uri"], "https://o.okta.com/oauth2/default/v1/keys");
            assert_eq!(
                doc["registration_endpoint"],
                "https://gw.example.com/mcp/register"
            );
            assert_eq!(
                doc["scopes_supported"],
                json!(["mcp.read", "offline_access"])
            );
            assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
            // The issuer's own redirect carries its own name, never this one's.
            assert!(
                doc.get("authorization_response_iss_parameter_supported")
                    .is_none()
            );
        }
        let root = answer(
            &authn,
            "GET",
            &origin("/.well-known/oauth-authorization-server"),
            &host,
        )
        .unwrap();
        assert_eq!(body(&root)["issuer"], "https://gw.example.com");
        assert_eq!(
            body(&root)["registration_endpoint"],
            "https://gw.example.com/register"
        );
        assert_eq!(host.counters.borrow()[metric::FACADE_METADATA], 5);
    }

    #[test]
    fn registration_hands_out_the_configured_public_client() {
        let authn = authn(FACADE);
        let host = FakeHost::new();
        for path in ["/register", "/mcp/register"] {
            let r = answer(&authn, "POST", &origin(path), &host).unwrap();
            assert_eq!(r.status, 201);
            let doc = body(&r);
            assert_eq!(doc["client_id"], "0oaPublic");
            assert_eq!(doc["token_endpoint_auth_method"], "none");
            assert!(doc.get("client_secret").is_none());
            assert_eq!(
                doc["redirect_uris"],
                json!(["http://127.0.0.1/callback", "https://vscode.dev/redirect"])
            );
            assert_eq!(doc["client_id_issued_at"], host.now().timestamp());
            assert_eq!(header(&r, "cache-control"), Some("no-store"));
        }
        let pre = answer(&authn, "OPTIONS", &origin("/mcp/register"), &host).unwrap();
        assert_eq!(pre.status, 204);
        assert!(
            header(&pre, "access-control-allow-headers")
                .unwrap()
                .contains("content-type")
        );
        let pre = answer(
            &authn,
            "OPTIONS",
            &origin("/.well-known/oauth-protected-resource/mcp"),
            &host,
        )
        .unwrap();
        assert_eq!(pre.status, 204);
        assert!(answer(&authn, "OPTIONS", &origin("/mcp"), &host).is_none());
    }

    #[test]
    fn the_facade_configuration_is_checked() {
        let e = err("  registration:\n    redirectUris: ['http://127.0.0.1/cb']\n");
        assert_eq!(e.path, "mcpAuthentication.registration.clientId", "{e}");
        let e = err("  registration:\n    clientId: x\n");
        assert_eq!(e.path, "mcpAuthentication.registration.redirectUris", "{e}");
        for bad in [
            "http://evil.example/cb",
            "javascript:alert(1)",
            "https://a.example/cb#frag",
            "relative/path",
        ] {
            let e = err(&format!(
                "  registration:\n    clientId: x\n    redirectUris: ['{bad}']\n"
            ));
            assert_eq!(
                e.path, "mcpAuthentication.registration.redirectUris[0]",
                "{bad}: {e}"
            );
        }
        let e =
            err("  registration:\n    clientId: x\n    redirectUris: [x:/y]\n    colour: red\n");
        assert!(e.path.starts_with("mcpAuthentication.registration"), "{e}");
        // Without Okta's layout the endpoints must be named.
        let plain = "mcpAuthentication:\n  issuer: https://login.example.com\n  audiences: []\n  \
            registration:\n    clientId: x\n    redirectUris: ['http://localhost:1/cb']\n";
        let e = Policy::parse(plain.as_bytes()).unwrap_err();
        assert_eq!(
            e.path, "mcpAuthentication.registration.authorizationEndpoint",
            "{e}"
        );
        let named = format!(
            "{plain}    authorizationEndpoint: https://login.example.com/authorize\n    \
             tokenEndpoint: https://login.example.com/token\n"
        );
        let facade = Policy::parse(named.as_bytes())
            .unwrap()
            .authn
            .unwrap()
            .registration
            .unwrap();
        assert_eq!(facade.token_endpoint, "https://login.example.com/token");
        // Discovery finds the keys, so the facade does not name them.
        assert_eq!(facade.jwks_uri, None);
        for good in [
            "http://127.0.0.1:33418",
            "http://localhost/callback",
            "http://[::1]:8080/cb",
            "cursor://anysphere.cursor-mcp/oauth/callback",
        ] {
            assert!(crate::registration::check_redirect(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn named_scopes_prefer_the_required_ones() {
        assert!(authn("").named_scopes().is_empty());
        let listed = authn("  resourceMetadata:\n    scopesSupported: [a, b]\n");
        assert_eq!(listed.named_scopes(), ["a", "b"]);
        let required =
            authn("  requiredScopes: [r]\n  resourceMetadata:\n    scopesSupported: [a]\n");
        assert_eq!(required.named_scopes(), ["r"]);
    }
}
