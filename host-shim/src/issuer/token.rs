//! The token endpoint: the client-credentials grant exactly as the Okta guide's `curl` uses it
//! (form-encoded `client_id`/`client_secret`, or HTTP Basic as Okta also accepts), and access
//! tokens with the claims Okta's custom authorization server puts in them (`ver`, `jti`, `iss`,
//! `aud`, `iat`, `exp`, `cid`, `scp`, `sub`, plus a `groups` claim). Errors are OAuth 2.0 JSON
//! errors with the status codes Okta uses, so client code written against Okta sees the same
//! failures here.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jwt_compact::alg::Rsa;
use jwt_compact::{AlgorithmExt as _, Claims, Header, TimeOptions};
use percent_encoding::percent_decode_str;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::clients::Client;
use super::keys::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("Client authentication failed.")]
    InvalidClient,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("The authorization grant type is not supported by the authorization server.")]
    UnsupportedGrantType,
    #[error("{0}")]
    InvalidScope(String),
    #[error("The server encountered an internal error: {0}")]
    Server(String),
}

impl OAuthError {
    fn code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidClient => (StatusCode::UNAUTHORIZED, "invalid_client"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::UnsupportedGrantType => (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
            Self::InvalidScope(_) => (StatusCode::BAD_REQUEST, "invalid_scope"),
            Self::Server(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (status, code) = self.code();
        let body = json!({ "error": code, "error_description": self.to_string() });
        let mut response = (status, no_store(), Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2: a 401 for client authentication names the scheme to use.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"local-issuer\""),
            );
        }
        response
    }
}

/// Token responses carry credentials: RFC 6749 §5.1 forbids caching them.
pub fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

#[derive(Debug, Default, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub token_type: &'static str,
    pub expires_in: i64,
    pub access_token: String,
    pub scope: String,
}

/// What the issuer puts in every token, fixed at start.
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub ttl_seconds: i64,
}

/// Okta's access-token claims for a client-credentials token (no `uid`: there is no user).
#[derive(Debug, Serialize)]
struct AccessTokenClaims<'a> {
    ver: u8,
    jti: String,
    iss: &'a str,
    aud: &'a str,
    cid: &'a str,
    scp: &'a [String],
    sub: &'a str,
    groups: &'a [String],
}

/// Authenticates the client, checks grant and scopes; returns the client and granted scopes.
pub fn authorize<'c>(
    clients: &'c [Client],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(&'c Client, Vec<String>), OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(OAuthError::InvalidRequest(
            "Content-Type must be application/x-www-form-urlencoded.".to_owned(),
        ));
    }
    let form: TokenForm = serde_urlencoded::from_bytes(body)
        .map_err(|err| OAuthError::InvalidRequest(format!("Malformed form body: {err}.")))?;

    let basic = basic_credentials(headers)?;
    let (id, secret) = match (basic, &form.client_id, &form.client_secret) {
        (Some(_), _, Some(_)) => {
            return Err(OAuthError::InvalidRequest(
                "Use one client authentication method, not both.".to_owned(),
            ));
        }
        (Some((id, secret)), _, None) => (id, secret),
        (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
        (None, _, _) => return Err(OAuthError::InvalidClient),
    };
    let client = clients
        .iter()
        .find(|client| client.id == id && constant_time_eq(&client.secret, &secret))
        .ok_or(OAuthError::InvalidClient)?;

    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(_) => return Err(OAuthError::UnsupportedGrantType),
        None => {
            return Err(OAuthError::InvalidRequest(
                "The 'grant_type' parameter is required.".to_owned(),
            ));
        }
    }

    let mut scopes: Vec<String> = Vec::new();
    for scope in form.scope.as_deref().unwrap_or_default().split(' ') {
        if !scope.is_empty() && !scopes.iter().any(|seen| seen == scope) {
            scopes.push(scope.to_owned());
        }
    }
    if scopes.is_empty() {
        // Okta's answer when the authorization server has no default scopes.
        return Err(OAuthError::InvalidScope(
            "The authorization server resource does not have any configured default scopes, \
             'scope' must be provided."
                .to_owned(),
        ));
    }
    if let Some(denied) = scopes.iter().find(|scope| !client.scopes.contains(scope)) {
        return Err(OAuthError::InvalidScope(format!(
            "One or more scopes are not configured for the authorization server resource: \
             '{denied}'."
        )));
    }
    Ok((client, scopes))
}

/// Signs an RS256 access token for `client` with `key`.
pub fn mint(
    settings: &TokenSettings,
    key: &SigningKey,
    client: &Client,
    scopes: &[String],
) -> Result<TokenResponse, OAuthError> {
    let mut jti = [0_u8; 16];
    rand::thread_rng().fill_bytes(&mut jti);
    let claims = Claims::new(AccessTokenClaims {
        ver: 1,
        jti: format!("AT.{}", URL_SAFE_NO_PAD.encode(jti)),
        iss: &settings.issuer,
        aud: &settings.audience,
        cid: &client.id,
        scp: scopes,
        sub: &client.id,
        groups: &client.groups,
    })
    .set_duration_and_issuance(
        &TimeOptions::default(),
        chrono::Duration::seconds(settings.ttl_seconds),
    );
    let header = Header::empty().with_key_id(key.kid.clone());
    let access_token = Rsa::rs256()
        .token(&header, &claims, &key.private)
        .map_err(|err| OAuthError::Server(err.to_string()))?;
    Ok(TokenResponse {
        token_type: "Bearer",
        expires_in: settings.ttl_seconds,
        access_token,
        scope: scopes.join(" "),
    })
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))` per RFC 6749 §2.3.1.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| OAuthError::InvalidClient)?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(OAuthError::InvalidClient);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::InvalidClient);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| OAuthError::InvalidClient)?;
    let decoded = String::from_utf8(decoded).map_err(|_| OAuthError::InvalidClient)?;
    let (id, secret) = decoded.split_once(':').ok_or(OAuthError::InvalidClient)?;
    let unescape = |s: &str| -> Result<String, OAuthError> {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| OAuthError::InvalidClient)
    };
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

/// Secrets are compared without an early exit, as a real issuer must; cheap to do right.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0_u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::issuer::clients;

    fn form_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers
    }

    const GOOD: &[u8] = b"grant_type=client_credentials&client_id=ai-user\
        &client_secret=ai-user-secret&scope=agentgateway";

    #[test]
    fn the_guides_form_post_is_accepted() {
        let clients = clients::defaults();
        let (client, scopes) = authorize(&clients, &form_headers(), GOOD).unwrap();
        assert_eq!(client.id, "ai-user");
        assert_eq!(scopes, ["agentgateway"]);
    }

    #[test]
    fn basic_auth_is_accepted() {
        let clients = clients::defaults();
        let mut headers = form_headers();
        let basic = format!("Basic {}", STANDARD.encode("plain-user:plain-user-secret"));
        headers.insert(header::AUTHORIZATION, basic.parse().unwrap());
        let body = b"grant_type=client_credentials&scope=agentgateway";
        let (client, _) = authorize(&clients, &headers, body).unwrap();
        assert_eq!(client.id, "plain-user");
    }

    #[test]
    fn a_wrong_secret_is_invalid_client() {
        let clients = clients::defaults();
        let body = b"grant_type=client_credentials&client_id=ai-user&client_secret=nope&scope=agentgateway";
        let err = authorize(&clients, &form_headers(), body).unwrap_err();
        assert!(matches!(err, OAuthError::InvalidClient));
    }

    #[test]
    fn other_grants_are_unsupported() {
        let clients = clients::defaults();
        let body = b"grant_type=password&client_id=ai-user&client_secret=ai-user-secret&scope=agentgateway";
        let err = authorize(&clients, &form_headers(), body).unwrap_err();
        assert!(matches!(err, OAuthError::UnsupportedGrantType));
    }

    #[test]
    fn scopes_must_be_granted_and_present() {
        let clients = clients::defaults();
        let extra = b"grant_type=client_credentials&client_id=ai-user&client_secret=ai-user-secret&scope=agentgateway%20admin";
        let err = authorize(&clients, &form_headers(), extra).unwrap_err();
        assert!(matches!(err, OAuthError::InvalidScope(_)));
        let none = b"grant_type=client_credentials&client_id=ai-user&client_secret=ai-user-secret";
        let err = authorize(&clients, &form_headers(), none).unwrap_err();
        assert!(matches!(err, OAuthError::InvalidScope(_)));
    }
}
