//! The token endpoint's common ground: the form, client authentication, OAuth errors, and the
//! client-credentials grant exactly as the Okta guide's `curl` uses it (form-encoded
//! `client_id`/`client_secret`, or HTTP Basic as Okta also accepts). Access tokens carry the
//! claims Okta's custom authorization server puts in them (`ver`, `jti`, `iss`, `aud`, `iat`,
//! `exp`, `cid`, `scp`, `sub`, plus a `groups` claim, and `uid` and `auth_time` when a person
//! signed in). Errors are OAuth 2.0 JSON errors with the status codes Okta uses, so client code
//! written against Okta sees the same failures here. The grants a person's login leads to live
//! in `exchange`.

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
    #[error("{0}")]
    InvalidGrant(String),
    /// RFC 8707: the `resource` names nothing this issuer mints tokens for.
    #[error("{0}")]
    InvalidTarget(String),
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
            Self::InvalidGrant(_) => (StatusCode::BAD_REQUEST, "invalid_grant"),
            Self::InvalidTarget(_) => (StatusCode::BAD_REQUEST, "invalid_target"),
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
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub resource: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub token_type: &'static str,
    pub expires_in: i64,
    pub access_token: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// What the issuer puts in every token, fixed at start.
pub struct TokenSettings {
    pub issuer: String,
    /// The `aud` of client-credentials tokens, and of a person's tokens when the client names
    /// no `resource`.
    pub audience: String,
    pub ttl_seconds: i64,
}

/// Okta's access-token claims: for a client-credentials token `sub` is the client and there is
/// no `uid`; for a person `sub` is their login and `uid` their user id.
#[derive(Debug, Serialize)]
struct AccessTokenClaims<'a> {
    ver: u8,
    jti: String,
    iss: &'a str,
    aud: &'a str,
    cid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    scp: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    sub: &'a str,
    groups: &'a [String],
}

/// Who an access token is for, and what it grants.
pub struct AccessGrant<'a> {
    pub client_id: &'a str,
    pub audience: &'a str,
    pub scopes: &'a [String],
    pub subject: &'a str,
    pub uid: Option<&'a str>,
    pub groups: &'a [String],
    pub auth_time: Option<i64>,
}

/// The credentials a token request carries, by whichever method the client used.
#[derive(Debug, PartialEq, Eq)]
pub struct Presented {
    pub client_id: String,
    /// None (or empty) for a public client.
    pub secret: Option<String>,
}

/// The form, after the content-type check RFC 6749 §3.2 makes.
pub fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<TokenForm, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(OAuthError::InvalidRequest(
            "Content-Type must be application/x-www-form-urlencoded.".to_owned(),
        ));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|err| OAuthError::InvalidRequest(format!("Malformed form body: {err}.")))
}

/// The client's credentials: HTTP Basic, or `client_id` with `client_secret` in the form, or
/// (for a public client) `client_id` alone. A Basic `client_id` that contradicts the form's is
/// refused rather than guessed between.
pub fn presented_credentials(
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<Presented, OAuthError> {
    match (
        basic_credentials(headers)?,
        &form.client_id,
        &form.client_secret,
    ) {
        (Some(_), _, Some(_)) => Err(OAuthError::InvalidRequest(
            "Use one client authentication method, not both.".to_owned(),
        )),
        (Some((id, _)), Some(form_id), None) if *form_id != id => Err(OAuthError::InvalidClient),
        (Some((client_id, secret)), _, None) => Ok(Presented {
            client_id,
            secret: Some(secret),
        }),
        (None, Some(id), secret) => Ok(Presented {
            client_id: id.clone(),
            secret: secret.clone(),
        }),
        (None, None, _) => Err(OAuthError::InvalidClient),
    }
}

/// Whether the presented secret is the expected one: a public client (no expected secret) must
/// present none, a confidential one exactly its own.
pub fn secret_matches(expected: Option<&str>, presented: Option<&str>) -> bool {
    let presented = presented.filter(|s| !s.is_empty());
    match (expected, presented) {
        (None, None) => true,
        (Some(expected), Some(presented)) => constant_time_eq(expected, presented),
        _ => false,
    }
}

/// The client-credentials grant, for the clients configured by flag or file: authenticates
/// the client, checks grant and scopes; returns the client and granted scopes.
pub fn client_credentials<'c>(
    clients: &'c [Client],
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<(&'c Client, Vec<String>), OAuthError> {
    let presented = presented_credentials(headers, form)?;
    // Only a confidential client may use this grant: a public one has no credentials to show.
    let client = clients
        .iter()
        .find(|client| {
            client.id == presented.client_id
                && client.secret.is_some()
                && secret_matches(client.secret.as_deref(), presented.secret.as_deref())
        })
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

/// Signs an RS256 client-credentials access token for `client` with `key`.
pub fn mint(
    settings: &TokenSettings,
    key: &SigningKey,
    client: &Client,
    scopes: &[String],
) -> Result<TokenResponse, OAuthError> {
    let access_token = sign_access_token(
        settings,
        key,
        &AccessGrant {
            client_id: &client.id,
            audience: &settings.audience,
            scopes,
            subject: &client.id,
            uid: None,
            groups: &client.groups,
            auth_time: None,
        },
    )?;
    Ok(TokenResponse {
        token_type: "Bearer",
        expires_in: settings.ttl_seconds,
        access_token,
        scope: scopes.join(" "),
        refresh_token: None,
        id_token: None,
    })
}

/// Okta's ids for tokens: a prefix naming the kind, then random characters.
pub fn new_jti(prefix: &str) -> String {
    let mut jti = [0_u8; 16];
    rand::thread_rng().fill_bytes(&mut jti);
    format!("{prefix}.{}", URL_SAFE_NO_PAD.encode(jti))
}

/// Signs an RS256 access token for `grant` with `key`.
pub fn sign_access_token(
    settings: &TokenSettings,
    key: &SigningKey,
    grant: &AccessGrant<'_>,
) -> Result<String, OAuthError> {
    let claims = Claims::new(AccessTokenClaims {
        ver: 1,
        jti: new_jti("AT"),
        iss: &settings.issuer,
        aud: grant.audience,
        cid: grant.client_id,
        uid: grant.uid,
        scp: grant.scopes,
        auth_time: grant.auth_time,
        sub: grant.subject,
        groups: grant.groups,
    })
    .set_duration_and_issuance(
        &TimeOptions::default(),
        chrono::Duration::seconds(settings.ttl_seconds),
    );
    sign(key, &claims)
}

/// Signs any claims with `key`, naming it in the header so verifiers pick it from the JWKS.
pub fn sign<T: Serialize>(key: &SigningKey, claims: &Claims<T>) -> Result<String, OAuthError> {
    let header = Header::empty().with_key_id(key.kid.clone());
    Rsa::rs256()
        .token(&header, claims, &key.private)
        .map_err(|err| OAuthError::Server(err.to_string()))
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
    use super::*;
    use crate::issuer::clients;

    /// The whole client-credentials path from the raw request, as the handler takes it.
    fn authorize<'c>(
        clients: &'c [Client],
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(&'c Client, Vec<String>), OAuthError> {
        let form = parse_form(headers, body)?;
        client_credentials(clients, headers, &form)
    }

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
    fn a_public_client_cannot_use_client_credentials() {
        let mut clients = clients::defaults();
        clients.push(Client {
            id: "laptop".to_owned(),
            secret: None,
            groups: Vec::new(),
            scopes: vec!["agentgateway".to_owned()],
            redirect_uris: vec!["http://127.0.0.1/cb".to_owned()],
        });
        for body in [
            &b"grant_type=client_credentials&client_id=laptop&scope=agentgateway"[..],
            b"grant_type=client_credentials&client_id=laptop&client_secret=&scope=agentgateway",
        ] {
            let err = authorize(&clients, &form_headers(), body).unwrap_err();
            assert!(matches!(err, OAuthError::InvalidClient));
        }
    }

    #[test]
    fn secrets_match_only_their_own_kind_of_client() {
        assert!(secret_matches(None, None));
        assert!(secret_matches(None, Some("")));
        assert!(!secret_matches(None, Some("x")));
        assert!(secret_matches(Some("s"), Some("s")));
        assert!(!secret_matches(Some("s"), Some("t")));
        assert!(!secret_matches(Some("s"), None));
    }

    /// Requests the grant refuses, each with the OAuth error Okta answers it with: a wrong
    /// secret, another grant type, and a scope that was not granted or is missing.
    #[test]
    fn refused_requests_get_their_oauth_error() {
        let clients = clients::defaults();
        let refused: [(&[u8], &str); 4] = [
            (
                b"grant_type=client_credentials&client_id=ai-user&client_secret=nope&scope=agentgateway",
                "invalid_client",
            ),
            (
                b"grant_type=password&client_id=ai-user&client_secret=ai-user-secret&scope=agentgateway",
                "unsupported_grant_type",
            ),
            (
                b"grant_type=client_credentials&client_id=ai-user&client_secret=ai-user-secret&scope=agentgateway%20admin",
                "invalid_scope",
            ),
            (
                b"grant_type=client_credentials&client_id=ai-user&client_secret=ai-user-secret",
                "invalid_scope",
            ),
        ];
        for (body, code) in refused {
            let err = authorize(&clients, &form_headers(), body).unwrap_err();
            assert_eq!(err.code().1, code, "{}", String::from_utf8_lossy(body));
        }
    }
}
