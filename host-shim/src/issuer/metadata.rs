//! Authorization server metadata, served wherever a client may look for it. MCP clients try,
//! for the issuer `http://host/oauth2/default`, the RFC 8414 form with the path inserted after
//! the well-known prefix (`/.well-known/oauth-authorization-server/oauth2/default`) and the
//! OpenID form likewise (`/.well-known/openid-configuration/oauth2/default`); Okta itself, and
//! the filter, use the issuer with the well-known path appended
//! (`/oauth2/default/.well-known/openid-configuration`). All four answer the same document,
//! which only promises what the issuer does: the code flow with S256 PKCE, refresh tokens,
//! client credentials, registration when it is on, Client ID Metadata Documents.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Issuer;

/// The well-known names, for the routes that serve them.
pub const WELL_KNOWN: [&str; 2] = [
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
];

pub fn document(issuer: &Issuer) -> Value {
    let base = &issuer.issuer;
    let mut doc = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/v1/authorize"),
        "token_endpoint": format!("{base}/v1/token"),
        "jwks_uri": format!("{base}/v1/keys"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "none"
        ],
        "scopes_supported": issuer.scopes_supported,
        "claims_supported": [
            "ver", "jti", "iss", "aud", "iat", "exp", "cid", "uid", "scp", "sub", "groups",
            "auth_time", "amr", "nonce", "name", "preferred_username"
        ],
        "authorization_response_iss_parameter_supported": issuer.response_iss().is_some(),
        "client_id_metadata_document_supported": true,
    });
    if issuer.registration_enabled()
        && let Some(fields) = doc.as_object_mut()
    {
        fields.insert(
            "registration_endpoint".to_owned(),
            json!(format!("{base}/v1/register")),
        );
    }
    doc
}

pub async fn discovery(State(issuer): State<Arc<Issuer>>) -> Response {
    Json(document(&issuer)).into_response()
}
