//! Client ID Metadata Documents (the MCP 2025-11-25 authorization spec, after
//! draft-ietf-oauth-client-id-metadata-document): a `client_id` that is an https URL names a
//! JSON document, published by the client's vendor, that says what the client is and where it
//! may be sent back to. An MCP client can then log in at an issuer it has never registered with.
//!
//! The fetch is the issuer reaching out to a URL a stranger chose, so it is kept tight: https
//! only (plain http only for loopback hosts, which is how a developer serves a document from
//! their own machine), no redirects followed, a 64 KiB body limit and a 5 s limit on the whole
//! exchange. The document is fetched for each authorization request, not cached: a development
//! issuer sees few logins, and an edited document then takes effect at once. Nothing guards
//! against a URL that points into a private network: the issuer is meant to listen on loopback
//! for one developer, and must not be exposed.
//!
//! Clients identified this way are public (`token_endpoint_auth_method: none`, the default when
//! the document names none): the draft forbids shared secrets, and `private_key_jwt` is not
//! implemented here.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::redirect;

/// The spec's suggested ceiling for a document, with ample room for real ones (a few hundred
/// bytes).
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024;
/// Time for connecting, sending and reading the whole body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("client_id `{0}` is not a valid URL")]
    NotAUrl(String),
    #[error("client_id `{0}` must use https (plain http is accepted only for loopback hosts)")]
    Scheme(String),
    #[error("client_id `{url}` is not a valid metadata document URL: {reason}")]
    Shape { url: String, reason: &'static str },
    #[error("fetching the client metadata document failed: {0}")]
    Fetch(String),
    #[error("the client metadata document answered HTTP {0} (redirects are not followed)")]
    Status(u16),
    #[error("the client metadata document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("the client metadata document is not valid client metadata: {0}")]
    Invalid(String),
    #[error("the client metadata document names client_id `{found}`, not its own URL")]
    Mismatch { found: String },
    #[error("the client metadata document must not carry a client secret")]
    Secret,
    #[error("token_endpoint_auth_method `{0}` is not supported here (only `none`)")]
    AuthMethod(String),
    #[error("the client metadata document has no valid redirect_uris: {0}")]
    RedirectUris(String),
}

/// What the issuer uses from a document; other fields (`logo_uri`, `client_uri`, …) are
/// allowed and ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct ClientDocument {
    pub client_id: String,
    pub client_name: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub grant_types: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub scope: Option<String>,
    client_secret: Option<serde_json::Value>,
}

impl ClientDocument {
    pub fn refresh_allowed(&self) -> bool {
        self.grant_types
            .as_ref()
            .is_some_and(|grants| grants.iter().any(|g| g == "refresh_token"))
    }
}

/// Whether `client_id` is meant as a document URL. Other client ids never contain `://`.
pub fn is_document_id(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// Checks the URL itself, before anything is fetched: the draft requires a path, forbids
/// fragments, credentials and dot segments; requiring the URL in its normal form as well means
/// the exact comparison with the document's `client_id` cannot be fooled by spelling.
pub fn check_url(client_id: &str) -> Result<Url, DocumentError> {
    let url = Url::parse(client_id).map_err(|_| DocumentError::NotAUrl(client_id.to_owned()))?;
    let shape = |reason| DocumentError::Shape {
        url: client_id.to_owned(),
        reason,
    };
    match url.scheme() {
        "https" => {}
        "http" if redirect::is_loopback_host(&url) => {}
        _ => return Err(DocumentError::Scheme(client_id.to_owned())),
    }
    if url.fragment().is_some() {
        return Err(shape("it has a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(shape("it carries credentials"));
    }
    if url.path() == "/" {
        return Err(shape("it has no path"));
    }
    if client_id
        .split(['/', '?'])
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(shape("it has dot segments"));
    }
    if url.as_str() != client_id {
        return Err(shape(
            "it is not in normal form (host case, default port, escaping)",
        ));
    }
    Ok(url)
}

/// Fetches and validates the document for `client_id`.
pub async fn fetch(client_id: &str) -> Result<ClientDocument, DocumentError> {
    let url = check_url(client_id)?;
    let body = tokio::task::spawn_blocking(move || download(&url))
        .await
        .map_err(|err| DocumentError::Fetch(err.to_string()))??;
    parse(client_id, &body)
}

/// ureq is blocking; the caller runs this off the async executor.
fn download(url: &Url) -> Result<Vec<u8>, DocumentError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(FETCH_TIMEOUT))
        .user_agent("mcp-auth-filter-local-issuer")
        .build()
        .into();
    let mut response = agent
        .get(url.as_str())
        .header("accept", "application/json")
        .call()
        .map_err(|err| DocumentError::Fetch(err.to_string()))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(DocumentError::Status(status));
    }
    response
        .body_mut()
        .with_config()
        .limit(MAX_DOCUMENT_BYTES)
        .read_to_vec()
        .map_err(|err| match err {
            ureq::Error::BodyExceedsLimit(_) => DocumentError::TooLarge,
            other => DocumentError::Fetch(other.to_string()),
        })
}

/// Validates a document's body against the URL it was fetched from.
pub fn parse(client_id: &str, body: &[u8]) -> Result<ClientDocument, DocumentError> {
    let document: ClientDocument =
        serde_json::from_slice(body).map_err(|err| DocumentError::Invalid(err.to_string()))?;
    if document.client_id != client_id {
        return Err(DocumentError::Mismatch {
            found: document.client_id,
        });
    }
    if document.client_secret.is_some() {
        return Err(DocumentError::Secret);
    }
    match document.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(other) => return Err(DocumentError::AuthMethod(other.to_owned())),
    }
    if document.redirect_uris.is_empty() {
        return Err(DocumentError::RedirectUris("none listed".to_owned()));
    }
    for uri in &document.redirect_uris {
        redirect::validate(uri).map_err(|err| DocumentError::RedirectUris(err.to_string()))?;
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "https://app.example/oauth/client.json";

    #[test]
    fn document_urls_must_be_https_with_a_path_in_normal_form() {
        assert!(check_url(ID).is_ok());
        assert!(check_url("http://127.0.0.1:8000/client.json").is_ok());
        assert!(check_url("http://localhost:8000/client.json").is_ok());
        assert!(matches!(
            check_url("http://app.example/client.json"),
            Err(DocumentError::Scheme(_))
        ));
        for bad in [
            "https://app.example/",
            "https://app.example",
            "https://app.example/a/../client.json",
            "https://app.example/./client.json",
            "https://user:pw@app.example/client.json",
            "https://app.example/client.json#frag",
            "https://APP.example/client.json",
            "https://app.example:443/client.json",
        ] {
            assert!(
                matches!(check_url(bad), Err(DocumentError::Shape { .. })),
                "{bad}"
            );
        }
        assert!(is_document_id(ID));
        assert!(!is_document_id("0oa1234567890abcdefg"));
    }

    #[test]
    fn a_document_must_name_itself_and_keep_no_secret() {
        let good = format!(
            r#"{{"client_id": "{ID}", "client_name": "App", "redirect_uris": ["http://127.0.0.1/cb"],
                "grant_types": ["authorization_code", "refresh_token"], "logo_uri": "https://app.example/l.png"}}"#
        );
        let document = parse(ID, good.as_bytes()).unwrap();
        assert_eq!(document.client_name.as_deref(), Some("App"));
        assert!(document.refresh_allowed());

        let other = r#"{"client_id": "https://evil.example/c.json", "redirect_uris": ["https://a.example/cb"]}"#;
        assert!(matches!(
            parse(ID, other.as_bytes()),
            Err(DocumentError::Mismatch { .. })
        ));
        let secret = format!(
            r#"{{"client_id": "{ID}", "client_secret": "s", "redirect_uris": ["https://a.example/cb"]}}"#
        );
        assert!(matches!(
            parse(ID, secret.as_bytes()),
            Err(DocumentError::Secret)
        ));
        let basic = format!(
            r#"{{"client_id": "{ID}", "token_endpoint_auth_method": "client_secret_basic", "redirect_uris": ["https://a.example/cb"]}}"#
        );
        assert!(matches!(
            parse(ID, basic.as_bytes()),
            Err(DocumentError::AuthMethod(_))
        ));
        let no_uris = format!(r#"{{"client_id": "{ID}"}}"#);
        assert!(matches!(
            parse(ID, no_uris.as_bytes()),
            Err(DocumentError::RedirectUris(_))
        ));
        assert!(matches!(
            parse(ID, b"<html>"),
            Err(DocumentError::Invalid(_))
        ));
    }
}
