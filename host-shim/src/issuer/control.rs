//! Test-only controls under `/control/`: rotate the signing key, make the keys endpoint fail,
//! stall or return garbage, and read how often keys were fetched. They exist so end-to-end
//! tests can drive the filter's JWKS cache through the failures a real Okta org produces
//! rarely and on nobody's schedule. Only loopback peers may call them, and the issuer is a
//! development tool in the first place: never expose it.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Issuer;
use super::keys::SigningKey;
use super::token::TokenSettings;

/// How `/v1/keys` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeysMode {
    #[default]
    Ok,
    /// 500 with an Okta-style error body.
    Fail,
    /// Accepts the request and never answers (until shutdown).
    Stall,
    /// 200 with a body that is not JSON.
    Garbage,
    /// The connection is dropped without a response.
    Reset,
    /// 200 with the real key set padded to a 2 MiB body.
    Huge,
    /// 200 with a key set whose only key is symmetric (`kty: oct`): no key a verifier may use.
    NoKeys,
}

#[cfg(test)]
impl KeysMode {
    pub const ALL: [KeysMode; 7] = [
        Self::Ok,
        Self::Fail,
        Self::Stall,
        Self::Garbage,
        Self::Reset,
        Self::Huge,
        Self::NoKeys,
    ];
}

impl FromStr for KeysMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "ok" => Ok(Self::Ok),
            "fail" => Ok(Self::Fail),
            "stall" => Ok(Self::Stall),
            "garbage" => Ok(Self::Garbage),
            "reset" => Ok(Self::Reset),
            "huge" => Ok(Self::Huge),
            "nokeys" => Ok(Self::NoKeys),
            other => Err(format!(
                "unknown keys mode `{other}`: expected ok, fail, stall, garbage, reset, huge or nokeys"
            )),
        }
    }
}

impl fmt::Display for KeysMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Fail => "fail",
            Self::Stall => "stall",
            Self::Garbage => "garbage",
            Self::Reset => "reset",
            Self::Huge => "huge",
            Self::NoKeys => "nokeys",
        })
    }
}

/// Rejects every peer that is not on the loopback interface.
pub async fn loopback_only(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if peer.ip().is_loopback() {
        next.run(request).await
    } else {
        (
            StatusCode::FORBIDDEN,
            Json(json!({ "error": "test controls are loopback-only" })),
        )
            .into_response()
    }
}

#[derive(Debug, Deserialize)]
pub struct RotateParams {
    /// Keep the previous key in the JWKS (Okta's behaviour); `false` drops it at once.
    #[serde(default = "yes")]
    keep_old: bool,
}

fn yes() -> bool {
    true
}

pub async fn rotate(
    State(issuer): State<Arc<Issuer>>,
    Query(params): Query<RotateParams>,
) -> Response {
    let generated = tokio::task::spawn_blocking(SigningKey::generate).await;
    let next = match generated {
        Ok(Ok(key)) => key,
        Ok(Err(err)) => return internal(&err.to_string()),
        Err(err) => return internal(&err.to_string()),
    };
    let mut ring = issuer.write_keys();
    ring.rotate(next, params.keep_old);
    let kid = ring.active().kid.clone();
    let kids = ring.kids();
    drop(ring);
    crate::say!(
        "issuer: rotated signing key → kid {kid} (keep_old={})",
        params.keep_old
    );
    Json(json!({ "kid": kid, "kids": kids })).into_response()
}

#[derive(Debug, Deserialize)]
pub struct ModeParams {
    mode: Option<String>,
}

/// The mode comes as `?mode=fail` or as the plain body (`curl -d fail …`).
pub async fn keys_mode(
    State(issuer): State<Arc<Issuer>>,
    Query(params): Query<ModeParams>,
    body: String,
) -> Response {
    let text = params.mode.unwrap_or(body);
    let text = text.strip_prefix("mode=").unwrap_or(&text);
    match text.parse::<KeysMode>() {
        Ok(mode) => {
            issuer.set_keys_mode(mode);
            crate::say!("issuer: keys endpoint mode → {mode}");
            Json(json!({ "keys_mode": mode.to_string() })).into_response()
        }
        Err(message) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct TokenParams {
    client_id: String,
    /// Negative for a token that expired that long ago.
    ttl_seconds: i64,
}

/// A token for a configured client with a lifetime of the caller's choosing, no secret needed:
/// how tests get expired (or about to expire) tokens signed by the real key.
pub async fn token(
    State(issuer): State<Arc<Issuer>>,
    Query(params): Query<TokenParams>,
) -> Response {
    let Some(client) = issuer.clients.iter().find(|c| c.id == params.client_id) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": format!("no client `{}`", params.client_id) })),
        )
            .into_response();
    };
    let settings = TokenSettings {
        issuer: issuer.settings.issuer.clone(),
        audience: issuer.settings.audience.clone(),
        ttl_seconds: params.ttl_seconds,
    };
    let ring = issuer.read_keys();
    let minted = super::token::mint(&settings, ring.active(), client, &client.scopes);
    drop(ring);
    match minted {
        Ok(response) => Json(json!({ "access_token": response.access_token })).into_response(),
        Err(err) => internal(&format!("{err:?}")),
    }
}

pub async fn stats(State(issuer): State<Arc<Issuer>>) -> Response {
    let ring = issuer.read_keys();
    let body = json!({
        "keys_requests": issuer.keys_requests.load(Ordering::SeqCst),
        "token_requests": issuer.token_requests.load(Ordering::SeqCst),
        "tokens_issued": issuer.tokens_issued.load(Ordering::SeqCst),
        "keys_mode": issuer.keys_mode().to_string(),
        "kid": ring.active().kid,
        "kids": ring.kids(),
    });
    drop(ring);
    Json(body).into_response()
}

fn internal(message: &str) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": message })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_through_their_names() {
        for mode in KeysMode::ALL {
            assert_eq!(mode.to_string().parse::<KeysMode>().unwrap(), mode);
        }
        assert!("slow".parse::<KeysMode>().is_err());
    }
}
