//! The token endpoint's grants for a person: `authorization_code` (with the PKCE verifier) and
//! `refresh_token`. A code is spent on its first presentation, whatever the outcome, and is bound
//! to the client, the redirect URI, the challenge and the audience of its request. Refresh
//! tokens are issued when `offline_access` was granted (Okta's rule) and rotate: each use
//! returns a new one and the old one is refused from then on. Replays revoke the login's
//! refresh tokens (see `store`).
//!
//! With `openid` granted, the response carries an OpenID Connect ID token too, shaped like
//! Okta's (`sub` is the user id, `aud` the client, `nonce` echoed).

use std::time::Instant;

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_compact::{Claims, TimeOptions};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::Issuer;
use super::authorize::OFFLINE_ACCESS;
use super::login_client;
use super::store::{GrantError, RefreshGrant};
use super::token::{self, AccessGrant, OAuthError, TokenForm, TokenResponse};
use super::users::User;

/// Okta's ID-token claims for a password login.
#[derive(Debug, Serialize)]
struct IdTokenClaims<'a> {
    ver: u8,
    jti: String,
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    amr: [&'static str; 1],
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred_username: Option<&'a str>,
}

impl From<GrantError> for OAuthError {
    fn from(err: GrantError) -> Self {
        match err {
            GrantError::Full => Self::Server(err.to_string()),
            _ => Self::InvalidGrant(err.to_string()),
        }
    }
}

/// The client of a code or refresh request, authenticated: the grants are its methods, so
/// neither can run before the client has proved who it is.
pub struct AuthenticatedClient<'i> {
    issuer: &'i Issuer,
    id: String,
}

impl<'i> AuthenticatedClient<'i> {
    pub fn authenticate(
        issuer: &'i Issuer,
        headers: &HeaderMap,
        form: &TokenForm,
    ) -> Result<Self, OAuthError> {
        let presented = token::presented_credentials(headers, form)?;
        let expected =
            login_client::expected_secret(issuer, &presented.client_id).map_err(|err| {
                crate::say!("issuer: token request from an unknown client: {err}");
                OAuthError::InvalidClient
            })?;
        if !token::secret_matches(expected.as_deref(), presented.secret.as_deref()) {
            return Err(OAuthError::InvalidClient);
        }
        Ok(Self {
            issuer,
            id: presented.client_id,
        })
    }

    /// `grant_type=authorization_code`.
    pub fn authorization_code(&self, form: &TokenForm) -> Result<TokenResponse, OAuthError> {
        let code = required(form.code.as_ref(), "code")?;
        let now = Instant::now();
        let (grant, family) = self.issuer.store().redeem_code(code, now)?;
        let request = &grant.request;
        if request.client_id != self.id {
            return Err(OAuthError::InvalidGrant(
                "The authorization code was issued to another client.".to_owned(),
            ));
        }
        if form.redirect_uri.as_deref() != Some(request.redirect_uri.as_str()) {
            return Err(OAuthError::InvalidGrant(
                "The 'redirect_uri' does not match the one of the authorization request."
                    .to_owned(),
            ));
        }
        let Some(verifier) = form.code_verifier.as_deref().filter(|v| !v.is_empty()) else {
            return Err(OAuthError::InvalidGrant(
                "PKCE verification failed: the 'code_verifier' parameter is required.".to_owned(),
            ));
        };
        if !is_valid_verifier(verifier) || s256(verifier) != request.code_challenge {
            return Err(OAuthError::InvalidGrant(
                "PKCE verification failed: the code_verifier does not match the code_challenge."
                    .to_owned(),
            ));
        }
        check_resource(form, &request.audience)?;
        let user = self.issuer.user_named(&grant.user).ok_or_else(|| {
            OAuthError::InvalidGrant("The user of this grant no longer exists.".to_owned())
        })?;

        let refresh = (request.refresh_allowed
            && request.scopes.iter().any(|s| s == OFFLINE_ACCESS))
        .then(|| RefreshGrant {
            client_id: self.id.clone(),
            user: user.name.clone(),
            scopes: request.scopes.clone(),
            audience: request.audience.clone(),
            auth_time: grant.auth_time,
            family,
        });
        let response = tokens(
            self.issuer,
            &Tokens {
                client_id: &self.id,
                user,
                scopes: &request.scopes,
                audience: &request.audience,
                auth_time: grant.auth_time,
                nonce: request.nonce.as_deref(),
            },
            refresh,
            now,
        )?;
        crate::say!(
            "issuer: code exchanged for {} (client {}, scope {:?}, refresh {})",
            user.name,
            self.id,
            response.scope,
            response.refresh_token.is_some()
        );
        Ok(response)
    }

    /// `grant_type=refresh_token`: rotation, with an optional narrower `scope`.
    pub fn refresh_token(&self, form: &TokenForm) -> Result<TokenResponse, OAuthError> {
        let presented = required(form.refresh_token.as_ref(), "refresh_token")?;
        let now = Instant::now();
        let grant = self
            .issuer
            .store()
            .rotate_refresh(presented, &self.id, now)?;
        // From here the old token is spent; a refusal below means the person logs in again,
        // which is the safe side of a malformed refresh.
        check_resource(form, &grant.audience)?;
        let scopes = match form.scope.as_deref().map(str::split_whitespace) {
            None => grant.scopes.clone(),
            Some(requested) => {
                let requested: Vec<String> = requested.map(str::to_owned).collect();
                if let Some(extra) = requested.iter().find(|s| !grant.scopes.contains(s)) {
                    return Err(OAuthError::InvalidScope(format!(
                        "The scope '{extra}' was not granted to this refresh token."
                    )));
                }
                requested
            }
        };
        let user = self.issuer.user_named(&grant.user).ok_or_else(|| {
            OAuthError::InvalidGrant("The user of this grant no longer exists.".to_owned())
        })?;
        let response = tokens(
            self.issuer,
            &Tokens {
                client_id: &self.id,
                user,
                scopes: &scopes,
                audience: &grant.audience,
                auth_time: grant.auth_time,
                nonce: None,
            },
            Some(grant.clone()),
            now,
        )?;
        crate::say!(
            "issuer: refresh token rotated for {} (client {})",
            user.name,
            self.id
        );
        Ok(response)
    }
}

fn required<'f>(value: Option<&'f String>, name: &str) -> Result<&'f str, OAuthError> {
    value
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::InvalidRequest(format!("The '{name}' parameter is required.")))
}

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set.
fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A `resource` at the token endpoint may only confirm the audience already bound to the grant.
fn check_resource(form: &TokenForm, audience: &str) -> Result<(), OAuthError> {
    match form.resource.as_deref() {
        None | Some("") => Ok(()),
        Some(resource) if resource == audience => Ok(()),
        Some(resource) => Err(OAuthError::InvalidTarget(format!(
            "The resource '{resource}' is not the one this grant was issued for."
        ))),
    }
}

/// What one token response is minted for.
struct Tokens<'a> {
    client_id: &'a str,
    user: &'a User,
    scopes: &'a [String],
    audience: &'a str,
    auth_time: i64,
    nonce: Option<&'a str>,
}

fn tokens(
    issuer: &Issuer,
    what: &Tokens<'_>,
    refresh: Option<RefreshGrant>,
    now: Instant,
) -> Result<TokenResponse, OAuthError> {
    let uid = what.user.uid();
    let ring = issuer.read_keys();
    let key = ring.active();
    let access_token = token::sign_access_token(
        &issuer.settings,
        key,
        &AccessGrant {
            client_id: what.client_id,
            audience: what.audience,
            scopes: what.scopes,
            subject: &what.user.name,
            uid: Some(&uid),
            groups: &what.user.groups,
            auth_time: Some(what.auth_time),
        },
    )?;
    let id_token = if what.scopes.iter().any(|s| s == "openid") {
        let profile = what.scopes.iter().any(|s| s == "profile");
        let claims = Claims::new(IdTokenClaims {
            ver: 1,
            jti: token::new_jti("ID"),
            iss: &issuer.settings.issuer,
            aud: what.client_id,
            sub: &uid,
            amr: ["pwd"],
            auth_time: what.auth_time,
            nonce: what.nonce,
            name: profile.then_some(what.user.name.as_str()),
            preferred_username: profile.then_some(what.user.name.as_str()),
        })
        .set_duration_and_issuance(
            &TimeOptions::default(),
            chrono::Duration::seconds(issuer.settings.ttl_seconds),
        );
        Some(token::sign(key, &claims)?)
    } else {
        None
    };
    drop(ring);
    let refresh_token = refresh.map(|grant| issuer.store().issue_refresh(grant, now));
    Ok(TokenResponse {
        token_type: "Bearer",
        expires_in: issuer.settings.ttl_seconds,
        access_token,
        scope: what.scopes.join(" "),
        refresh_token,
        id_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_verifies() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_valid_verifier(verifier));
        assert_eq!(
            s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(!is_valid_verifier("too-short"));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn a_token_request_may_only_confirm_the_bound_resource() {
        let mut form = TokenForm::default();
        assert!(check_resource(&form, "api://a").is_ok());
        form.resource = Some("api://a".to_owned());
        assert!(check_resource(&form, "api://a").is_ok());
        form.resource = Some("api://b".to_owned());
        assert!(matches!(
            check_resource(&form, "api://a"),
            Err(OAuthError::InvalidTarget(_))
        ));
    }
}
