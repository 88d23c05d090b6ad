//! RFC 7591 dynamic client registration at `{issuer}/v1/register`, so an MCP client that finds
//! no client id of its own registers one, as the MCP authorization spec lets it. Okta's
//! equivalent lives at the org's `/oauth2/v1/clients` and wants an admin token; this one is open,
//! like the facade a gateway would put in front of Okta, and `--no-registration` turns it off.
//!
//! Registered clients log people in with the authorization code grant (and may refresh); the
//! client-credentials grant stays with the clients configured by flag or file. The RFC's
//! defaults apply: `token_endpoint_auth_method` is `client_secret_basic` and `grant_types` is
//! `["authorization_code"]` unless the request says otherwise; MCP clients usually ask for
//! `none` and `["authorization_code", "refresh_token"]`.

use std::collections::HashMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::okta_id::okta_id;
use super::redirect;
use super::store::{MAX_PENDING, random_token};
use super::token::no_store;

/// How a client proves itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A public client: PKCE and the bound redirect URI are its only proof.
    None,
    ClientSecretBasic,
    ClientSecretPost,
}

impl AuthMethod {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RegisteredClient {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// The scopes the client registered for, if it named any: it may ask for no others.
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("{0}")]
    InvalidRedirectUri(String),
    #[error("{0}")]
    InvalidClientMetadata(String),
    #[error("Too many clients are registered; restart the issuer to forget them.")]
    Full,
}

impl IntoResponse for RegistrationError {
    fn into_response(self) -> Response {
        let (status, code) = match self {
            Self::InvalidRedirectUri(_) => (StatusCode::BAD_REQUEST, "invalid_redirect_uri"),
            Self::InvalidClientMetadata(_) => (StatusCode::BAD_REQUEST, "invalid_client_metadata"),
            Self::Full => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
        };
        let body = json!({ "error": code, "error_description": self.to_string() });
        (status, no_store(), Json(body)).into_response()
    }
}

/// The metadata fields this issuer acts on; the rest of RFC 7591's fields are informational
/// and echoed back as sent (`client_uri`, `logo_uri`, `contacts`, …), unknown ones ignored as
/// the RFC asks.
#[derive(Debug, Deserialize)]
struct Request {
    #[serde(default)]
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
    scope: Option<String>,
}

/// Informational metadata returned as registered.
const ECHOED: [&str; 7] = [
    "client_uri",
    "logo_uri",
    "contacts",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
];

/// The clients registered since start.
#[derive(Default)]
pub struct Registry {
    clients: HashMap<String, RegisteredClient>,
}

impl Registry {
    pub fn get(&self, client_id: &str) -> Option<&RegisteredClient> {
        self.clients.get(client_id)
    }

    /// Validates a registration request and registers it; returns the RFC 7591 response body.
    pub fn register(
        &mut self,
        body: &[u8],
        scopes_supported: &[String],
        now: i64,
    ) -> Result<Value, RegistrationError> {
        if self.clients.len() >= MAX_PENDING {
            return Err(RegistrationError::Full);
        }
        let raw: Map<String, Value> = serde_json::from_slice(body).map_err(|err| {
            RegistrationError::InvalidClientMetadata(format!(
                "The body must be a JSON object of client metadata: {err}."
            ))
        })?;
        let request: Request = serde_json::from_value(Value::Object(raw.clone()))
            .map_err(|err| RegistrationError::InvalidClientMetadata(format!("{err}.")))?;

        if request.redirect_uris.is_empty() {
            return Err(RegistrationError::InvalidRedirectUri(
                "redirect_uris is required: registered clients log people in through a browser."
                    .to_owned(),
            ));
        }
        for uri in &request.redirect_uris {
            redirect::validate(uri)
                .map_err(|err| RegistrationError::InvalidRedirectUri(err.to_string()))?;
        }
        let method_name = request
            .token_endpoint_auth_method
            .as_deref()
            .unwrap_or("client_secret_basic");
        let method = AuthMethod::parse(method_name).ok_or_else(|| {
            RegistrationError::InvalidClientMetadata(format!(
                "token_endpoint_auth_method `{method_name}` is not supported: use none, \
                 client_secret_basic or client_secret_post."
            ))
        })?;
        let grant_types = request
            .grant_types
            .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
        if let Some(other) = grant_types
            .iter()
            .find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
        {
            return Err(RegistrationError::InvalidClientMetadata(format!(
                "grant type `{other}` cannot be registered here: registered clients use \
                 authorization_code and refresh_token (client_credentials clients are configured \
                 with --client)."
            )));
        }
        if !grant_types.iter().any(|g| g == "authorization_code") {
            return Err(RegistrationError::InvalidClientMetadata(
                "grant_types must include authorization_code.".to_owned(),
            ));
        }
        let response_types = request
            .response_types
            .unwrap_or_else(|| vec!["code".to_owned()]);
        if response_types.iter().any(|r| r != "code") {
            return Err(RegistrationError::InvalidClientMetadata(
                "Only the `code` response type is supported.".to_owned(),
            ));
        }
        let scopes = match request.scope.as_deref() {
            None => None,
            Some(scope) => {
                let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
                if let Some(unknown) = scopes.iter().find(|s| !scopes_supported.contains(s)) {
                    return Err(RegistrationError::InvalidClientMetadata(format!(
                        "Scope `{unknown}` is not offered by this authorization server."
                    )));
                }
                Some(scopes)
            }
        };

        let client_id = new_client_id();
        let client_secret = (method != AuthMethod::None).then(random_token);
        let mut response = Map::new();
        for field in ECHOED {
            if let Some(value) = raw.get(field) {
                response.insert(field.to_owned(), value.clone());
            }
        }
        response.insert("client_id".into(), json!(client_id));
        response.insert("client_id_issued_at".into(), json!(now));
        if let Some(secret) = &client_secret {
            response.insert("client_secret".into(), json!(secret));
            // Zero: the secret does not expire (RFC 7591 §3.2.1).
            response.insert("client_secret_expires_at".into(), json!(0));
        }
        response.insert("redirect_uris".into(), json!(request.redirect_uris));
        response.insert("token_endpoint_auth_method".into(), json!(method.name()));
        response.insert("grant_types".into(), json!(grant_types));
        response.insert("response_types".into(), json!(response_types));
        if let Some(name) = &request.client_name {
            response.insert("client_name".into(), json!(name));
        }
        if let Some(scopes) = &scopes {
            response.insert("scope".into(), json!(scopes.join(" ")));
        }

        self.clients.insert(
            client_id.clone(),
            RegisteredClient {
                client_id,
                client_secret,
                client_name: request.client_name,
                redirect_uris: request.redirect_uris,
                grant_types,
                scopes,
            },
        );
        Ok(Value::Object(response))
    }
}

/// Okta's application ids are 20 characters starting with `0oa`.
fn new_client_id() -> String {
    let mut bytes = [0_u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    okta_id("0oa", &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supported() -> Vec<String> {
        vec!["agentgateway".to_owned(), "offline_access".to_owned()]
    }

    #[test]
    fn a_public_mcp_client_registers_without_a_secret() {
        let mut registry = Registry::default();
        let body = br#"{"client_name": "Inspector", "redirect_uris": ["http://localhost:6274/oauth/callback"],
            "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
            "logo_uri": "https://example.com/logo.png", "made_up": 1}"#;
        let response = registry.register(body, &supported(), 1000).unwrap();
        let id = response["client_id"].as_str().unwrap();
        assert!(id.starts_with("0oa") && id.len() == 20);
        assert!(response.get("client_secret").is_none());
        assert_eq!(response["token_endpoint_auth_method"], "none");
        assert_eq!(response["client_id_issued_at"], 1000);
        assert_eq!(response["logo_uri"], "https://example.com/logo.png");
        assert!(response.get("made_up").is_none());
        let client = registry.get(id).unwrap();
        assert_eq!(client.client_name.as_deref(), Some("Inspector"));
        assert!(client.grant_types.iter().any(|g| g == "refresh_token"));
    }

    #[test]
    fn the_rfc_defaults_give_a_confidential_code_only_client() {
        let mut registry = Registry::default();
        let body = br#"{"redirect_uris": ["https://app.example/cb"]}"#;
        let response = registry.register(body, &supported(), 0).unwrap();
        assert_eq!(
            response["token_endpoint_auth_method"],
            "client_secret_basic"
        );
        assert_eq!(response["grant_types"], json!(["authorization_code"]));
        assert_eq!(response["client_secret_expires_at"], 0);
        let client = registry
            .get(response["client_id"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            client.client_secret.as_deref(),
            response["client_secret"].as_str()
        );
    }

    #[test]
    fn bad_metadata_is_refused_with_the_rfc_error_codes() {
        let mut registry = Registry::default();
        let refuse = |registry: &mut Registry, body: &str| {
            registry
                .register(body.as_bytes(), &supported(), 0)
                .unwrap_err()
        };
        assert!(matches!(
            refuse(&mut registry, r#"{"client_name": "no uris"}"#),
            RegistrationError::InvalidRedirectUri(_)
        ));
        assert!(matches!(
            refuse(
                &mut registry,
                r#"{"redirect_uris": ["http://evil.example/cb"]}"#
            ),
            RegistrationError::InvalidRedirectUri(_)
        ));
        for body in [
            "[1]",
            r#"{"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}"#,
            r#"{"redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]}"#,
            r#"{"redirect_uris": ["https://a.example/cb"], "grant_types": ["refresh_token"]}"#,
            r#"{"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]}"#,
            r#"{"redirect_uris": ["https://a.example/cb"], "scope": "agentgateway admin"}"#,
        ] {
            assert!(
                matches!(
                    refuse(&mut registry, body),
                    RegistrationError::InvalidClientMetadata(_)
                ),
                "{body}"
            );
        }
        assert!(registry.clients.is_empty());
    }
}
