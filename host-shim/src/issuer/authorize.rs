//! `{issuer}/v1/authorize`: the authorization code grant with PKCE as Okta serves it to a
//! person. `GET` checks the request and shows the sign-in form; the form `POST`s back here and,
//! with the right password, the browser is sent to the client's redirect URI with `code`,
//! `state` and the RFC 9207 `iss`.
//!
//! The order of the checks follows RFC 6749 §4.1.2.1: until the client and its redirect URI
//! are known to belong together, nothing is redirected (an open redirector would hand codes and
//! errors to whoever forged the link), and the person sees an error page; after that every
//! refusal goes back to the client as `error=…` with the `state` it sent. PKCE is required and
//! only `S256` is accepted: OAuth 2.1 and the MCP authorization spec both demand it, and `plain`
//! protects nothing a public client needs protecting. A `resource` (RFC 8707) must be one of
//! the issuer's audiences and becomes the tokens' `aud`. There is no sign-in session: every
//! request shows the form, so `prompt=none` is answered `login_required`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use url::Url;

use super::Issuer;
use super::login_client::{self, LoginClient};
use super::login_page::{self, LoginView};
use super::store::{AuthRequest, CodeGrant};

/// The scope that asks for a refresh token (Okta's rule: refresh tokens only with it).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// A refusal after the redirect URI is trusted: sent back to the client.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("The response type is not supported by the authorization server.")]
    UnsupportedResponseType,
    #[error("{0}")]
    InvalidScope(String),
    #[error("{0}")]
    InvalidTarget(String),
    #[error("The client specified not to prompt, but the user is not logged in.")]
    LoginRequired,
    #[error("The user cancelled the sign-in.")]
    AccessDenied,
    #[error("{0}")]
    TemporarilyUnavailable(String),
}

impl Refusal {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::LoginRequired => "login_required",
            Self::AccessDenied => "access_denied",
            Self::TemporarilyUnavailable(_) => "temporarily_unavailable",
        }
    }
}

/// Where answers go once the redirect URI is trusted.
struct Reply<'a> {
    /// The RFC 9207 `iss` to add, unless the issuer leaves it out (`--no-response-iss`).
    issuer: Option<&'a str>,
    redirect_uri: &'a str,
    state: Option<&'a str>,
    /// 302 for the `GET`, 303 after the form's `POST` so the browser follows with a `GET`.
    status: StatusCode,
}

impl Reply<'_> {
    fn send(&self, params: &[(&str, &str)]) -> Response {
        let Ok(mut target) = Url::parse(self.redirect_uri) else {
            return login_page::failure(
                StatusCode::BAD_REQUEST,
                "The redirect URI is not a valid URL.",
            );
        };
        {
            let mut query = target.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, value);
            }
            if let Some(state) = self.state {
                query.append_pair("state", state);
            }
            if let Some(issuer) = self.issuer {
                query.append_pair("iss", issuer);
            }
        }
        (
            self.status,
            [
                (header::LOCATION, target.to_string()),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response()
    }

    fn refuse(&self, refusal: &Refusal) -> Response {
        crate::say!("issuer: authorization refused: {refusal}");
        self.send(&[
            ("error", refusal.code()),
            ("error_description", &refusal.to_string()),
        ])
    }
}

/// Query parameters by name, every value kept: repeating one is an error OAuth names.
struct Params(HashMap<String, Vec<String>>);

impl Params {
    fn parse(query: &str) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            map.entry(name.into_owned())
                .or_default()
                .push(value.into_owned());
        }
        Self(map)
    }

    /// The single value of `name`, `Err` if it is repeated; empty values count as absent.
    fn one(&self, name: &str) -> Result<Option<&str>, Refusal> {
        match self.0.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([value]) if value.is_empty() => Ok(None),
            Some([value]) => Ok(Some(value)),
            Some(_) => Err(Refusal::InvalidRequest(format!(
                "The '{name}' parameter must not be repeated."
            ))),
        }
    }

    fn all(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or_default()
    }
}

/// RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is always 43 characters of the base64url set.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET {issuer}/v1/authorize`.
pub async fn show(State(issuer): State<Arc<Issuer>>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref().unwrap_or_default());
    let bad = |message: String| {
        crate::say!("issuer: authorization request refused: {message}");
        login_page::failure(StatusCode::BAD_REQUEST, &message)
    };

    let client_id = match params.one("client_id") {
        Ok(Some(id)) => id,
        Ok(None) => return bad("The 'client_id' parameter is required.".to_owned()),
        Err(err) => return bad(err.to_string()),
    };
    let client = match login_client::resolve(&issuer, client_id).await {
        Ok(client) => client,
        Err(err) => return bad(err.to_string()),
    };
    let redirect_uri = match params.one("redirect_uri") {
        Ok(Some(uri)) => uri,
        Ok(None) => return bad("The 'redirect_uri' parameter is required.".to_owned()),
        Err(err) => return bad(err.to_string()),
    };
    if !client.allows_redirect(redirect_uri) {
        return bad(format!(
            "The 'redirect_uri' parameter must be a login redirect URI registered for client \
             `{client_id}`; `{redirect_uri}` is not."
        ));
    }
    let state = match params.one("state") {
        Ok(state) => state,
        // The state cannot be echoed if it is ambiguous; the refusal still goes to the client.
        Err(err) => {
            return Reply {
                issuer: issuer.response_iss(),
                redirect_uri,
                state: None,
                status: StatusCode::FOUND,
            }
            .refuse(&err);
        }
    };
    let reply = Reply {
        issuer: issuer.response_iss(),
        redirect_uri,
        state,
        status: StatusCode::FOUND,
    };
    let request = match check(&issuer, &client, redirect_uri, state, &params) {
        Ok(request) => request,
        Err(refusal) => return reply.refuse(&refusal),
    };
    let audience = request.audience.clone();
    let scopes = request.scopes.clone();
    let begun = issuer.store().begin(request, Instant::now());
    match begun {
        Ok(request_id) => login_page::login(
            &LoginView {
                action: &issuer.authorize_url(),
                request_id: &request_id,
                client_name: &client.name,
                client_id: &client.id,
                audience: &audience,
                scopes: &scopes,
                username: "",
                error: None,
            },
            StatusCode::OK,
        ),
        Err(err) => reply.refuse(&Refusal::TemporarilyUnavailable(err.to_string())),
    }
}

/// Everything after the redirect URI: response type, PKCE, scopes, resource, prompt.
fn check(
    issuer: &Issuer,
    client: &LoginClient,
    redirect_uri: &str,
    state: Option<&str>,
    params: &Params,
) -> Result<AuthRequest, Refusal> {
    for (name, values) in &params.0 {
        if values.len() > 1 && name != "resource" {
            return Err(Refusal::InvalidRequest(format!(
                "The '{name}' parameter must not be repeated."
            )));
        }
    }
    match params.one("response_type")? {
        Some("code") => {}
        Some(_) => return Err(Refusal::UnsupportedResponseType),
        None => {
            return Err(Refusal::InvalidRequest(
                "The 'response_type' parameter is required.".to_owned(),
            ));
        }
    }
    match params.one("response_mode")? {
        None | Some("query") => {}
        Some(other) => {
            return Err(Refusal::InvalidRequest(format!(
                "The response mode '{other}' is not supported: only 'query'."
            )));
        }
    }
    let Some(challenge) = params.one("code_challenge")? else {
        return Err(Refusal::InvalidRequest(
            "PKCE is required: send 'code_challenge' with code_challenge_method=S256.".to_owned(),
        ));
    };
    match params.one("code_challenge_method")? {
        Some("S256") => {}
        // RFC 7636 makes a missing method mean `plain`.
        None | Some("plain") => {
            return Err(Refusal::InvalidRequest(
                "The 'code_challenge_method' must be S256; plain is not allowed.".to_owned(),
            ));
        }
        Some(other) => {
            return Err(Refusal::InvalidRequest(format!(
                "The code challenge method '{other}' is not supported: use S256."
            )));
        }
    }
    if !is_s256_challenge(challenge) {
        return Err(Refusal::InvalidRequest(
            "The 'code_challenge' must be the 43-character base64url SHA-256 of the verifier."
                .to_owned(),
        ));
    }
    let scopes = granted_scopes(issuer, client, params.one("scope")?)?;
    let audience = match params.all("resource") {
        [] => issuer.settings.audience.clone(),
        [resource] if issuer.audiences.contains(resource) => resource.clone(),
        [resource] => {
            return Err(Refusal::InvalidTarget(format!(
                "The resource '{resource}' is not an audience of this authorization server."
            )));
        }
        _ => {
            return Err(Refusal::InvalidTarget(
                "Name one resource per request: a token has one audience here.".to_owned(),
            ));
        }
    };
    if params
        .one("prompt")?
        .is_some_and(|prompt| prompt.split(' ').any(|p| p == "none"))
    {
        return Err(Refusal::LoginRequired);
    }
    Ok(AuthRequest {
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        code_challenge: challenge.to_owned(),
        scopes,
        audience,
        nonce: params.one("nonce")?.map(str::to_owned),
        refresh_allowed: client.refresh_allowed,
    })
}

/// The scopes a person's login grants: the requested ones if the server offers them all (and
/// the client registered them, when it registered any), the server's default scopes when none
/// are asked for. `offline_access` is dropped for a client that may not refresh, and the token
/// response's `scope` then says so.
fn granted_scopes(
    issuer: &Issuer,
    client: &LoginClient,
    requested: Option<&str>,
) -> Result<Vec<String>, Refusal> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in requested.unwrap_or_default().split(' ') {
        if !scope.is_empty() && !scopes.iter().any(|seen| seen == scope) {
            scopes.push(scope.to_owned());
        }
    }
    if scopes.is_empty() {
        scopes.clone_from(&issuer.default_scopes);
    }
    if let Some(denied) = scopes.iter().find(|scope| {
        !issuer.scopes_supported.contains(scope)
            || client
                .scopes
                .as_ref()
                .is_some_and(|registered| !registered.contains(scope))
    }) {
        return Err(Refusal::InvalidScope(format!(
            "One or more scopes are not configured for the authorization server resource: \
             '{denied}'."
        )));
    }
    if !client.refresh_allowed {
        scopes.retain(|scope| scope != OFFLINE_ACCESS);
    }
    Ok(scopes)
}

#[derive(Debug, Default, Deserialize)]
struct LoginForm {
    request_id: Option<String>,
    username: Option<String>,
    password: Option<String>,
    action: Option<String>,
}

/// `POST {issuer}/v1/authorize`: the sign-in form coming back.
pub async fn submit(State(issuer): State<Arc<Issuer>>, body: Bytes) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return login_page::failure(StatusCode::BAD_REQUEST, "The sign-in form was malformed.");
    };
    let request_id = form.request_id.unwrap_or_default();
    let now = Instant::now();
    let Some(request) = issuer.store().pending(&request_id, now) else {
        return login_page::failure(
            StatusCode::BAD_REQUEST,
            "This sign-in request is unknown or expired.",
        );
    };
    let reply = Reply {
        issuer: issuer.response_iss(),
        redirect_uri: &request.redirect_uri,
        state: request.state.as_deref(),
        status: StatusCode::SEE_OTHER,
    };
    if form.action.as_deref() == Some("cancel") {
        issuer.store().finish(&request_id);
        return reply.refuse(&Refusal::AccessDenied);
    }

    let username = form.username.unwrap_or_default();
    let password = form.password.unwrap_or_default();
    let Some(user) = issuer.user(&username, &password) else {
        crate::say!(
            "issuer: sign-in failed for {username:?} (client {})",
            request.client_id
        );
        return login_page::login(
            &LoginView {
                action: &issuer.authorize_url(),
                request_id: &request_id,
                client_name: &request.client_name,
                client_id: &request.client_id,
                audience: &request.audience,
                scopes: &request.scopes,
                username: &username,
                error: Some("Unable to sign in: wrong username or password."),
            },
            StatusCode::UNAUTHORIZED,
        );
    };

    let mut store = issuer.store();
    // Ending the request first means two racing submissions cannot both get a code.
    if store.finish(&request_id).is_none() {
        drop(store);
        return login_page::failure(
            StatusCode::BAD_REQUEST,
            "This sign-in request was already answered.",
        );
    }
    let code = store.issue_code(
        CodeGrant {
            request: request.clone(),
            user: user.name.clone(),
            auth_time: chrono::Utc::now().timestamp(),
        },
        now,
    );
    drop(store);
    crate::say!(
        "issuer: {} signed in for client {} (scope {:?}, aud {})",
        user.name,
        request.client_id,
        request.scopes.join(" "),
        request.audience
    );
    reply.send(&[("code", &code)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_s256_challenges_pass() {
        assert!(is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!is_s256_challenge("short"));
        assert!(!is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"
        ));
    }

    #[test]
    fn repeated_parameters_are_noticed() {
        let params = Params::parse("a=1&a=2&b=&c=3");
        assert!(params.one("a").is_err());
        assert_eq!(params.one("b").unwrap(), None);
        assert_eq!(params.one("c").unwrap(), Some("3"));
        assert_eq!(params.all("a").len(), 2);
    }

    #[test]
    fn the_redirect_carries_code_state_and_iss() {
        let reply = Reply {
            issuer: Some("http://127.0.0.1:9000/oauth2/default"),
            redirect_uri: "http://127.0.0.1:5000/cb?keep=1",
            state: Some("s t"),
            status: StatusCode::FOUND,
        };
        let response = reply.send(&[("code", "abc")]);
        assert_eq!(response.status(), StatusCode::FOUND);
        let location = response.headers().get(header::LOCATION).unwrap();
        assert_eq!(
            location,
            "http://127.0.0.1:5000/cb?keep=1&code=abc&state=s+t\
             &iss=http%3A%2F%2F127.0.0.1%3A9000%2Foauth2%2Fdefault"
        );
    }
}
