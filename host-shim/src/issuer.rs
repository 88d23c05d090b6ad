//! A local authorization server that looks like Okta's custom authorization server to the
//! filter and to clients: the same paths under `/oauth2/default`, the same discovery documents,
//! a JWKS with RS256 keys and a client-credentials token endpoint minting Okta-shaped access
//! tokens. It lets `make run` and the end-to-end tests exercise the Okta guide's configuration
//! without an Okta org, and adds test controls (`control`) to make the keys endpoint misbehave.
//! It is a development tool: keys live in memory, clients come from flags.

mod clients;
mod control;
mod keys;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use self::clients::Client;
use self::control::KeysMode;
use self::keys::{KeyRing, SigningKey};
use self::token::{OAuthError, TokenSettings};

/// The size of the `huge` keys body: far over any sane JWKS limit (the filter's is 256 KiB).
const HUGE_KEYS_BODY: usize = 2 * 1024 * 1024;

/// How long a stalled keys request is held when nothing shuts the server down first: far
/// beyond any sane client timeout, so a stall is indistinguishable from a dead server.
const STALL: Duration = Duration::from_secs(3600);

#[derive(Debug, clap::Args)]
pub struct IssuerArgs {
    /// Address to bind; 127.0.0.1 keeps the issuer (and its test controls) off the network.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,

    /// Port to bind; 0 picks a free one (the first stdout line names it).
    #[arg(long, default_value_t = 9000)]
    port: u16,

    /// Path of the authorization server, as in Okta's `https://org/oauth2/default`.
    #[arg(long, default_value = "/oauth2/default")]
    path_prefix: String,

    /// Base URL the issuer names itself with; defaults to `http://<bound address>`. Set it when
    /// clients reach the issuer through another name (a container, a proxy).
    #[arg(long)]
    public_url: Option<String>,

    /// The `aud` claim of every access token.
    #[arg(long, default_value = "api://agentgateway")]
    audience: String,

    /// Lifetime of access tokens, in seconds (Okta's default is one hour).
    #[arg(long, default_value_t = 3600)]
    token_ttl: i64,

    /// `Cache-Control: max-age` of the JWKS response, in seconds.
    #[arg(long, default_value_t = 300)]
    keys_max_age: u64,

    /// A client as `id:secret[:group,group…[:scope,scope…]]` (scopes default to
    /// `agentgateway`). Repeatable. With no `--client` and no `--clients-file`, two clients
    /// exist: `ai-user` / `ai-user-secret` in groups AI-Users and Everyone, and
    /// `plain-user` / `plain-user-secret` in Everyone only.
    #[arg(long = "client", value_parser = clients::parse_spec)]
    clients: Vec<Client>,

    /// YAML file: `clients: [{id, secret, groups: [...], scopes: [...]}]`.
    #[arg(long)]
    clients_file: Option<PathBuf>,
}

/// Everything the handlers share.
pub struct Issuer {
    issuer: String,
    settings: TokenSettings,
    keys_max_age: u64,
    clients: Vec<Client>,
    keys: RwLock<KeyRing>,
    keys_mode: RwLock<KeysMode>,
    keys_requests: AtomicU64,
    token_requests: AtomicU64,
    tokens_issued: AtomicU64,
    shutdown: CancellationToken,
}

impl Issuer {
    // The guarded data stays consistent even if a holder panicked (every write is a single
    // assignment), so a poisoned lock is safe to keep using.
    fn read_keys(&self) -> RwLockReadGuard<'_, KeyRing> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_keys(&self) -> RwLockWriteGuard<'_, KeyRing> {
        self.keys.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn keys_mode(&self) -> KeysMode {
        *self
            .keys_mode
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn set_keys_mode(&self, mode: KeysMode) {
        *self
            .keys_mode
            .write()
            .unwrap_or_else(PoisonError::into_inner) = mode;
    }
}

/// Normalises the prefix to `/a/b` (or empty for the root).
fn normalise_prefix(prefix: &str) -> anyhow::Result<String> {
    let trimmed = prefix.trim_end_matches('/');
    anyhow::ensure!(
        trimmed.is_empty() || trimmed.starts_with('/'),
        "--path-prefix must start with `/`, got `{prefix}`"
    );
    Ok(trimmed.to_owned())
}

pub async fn run(args: IssuerArgs) -> anyhow::Result<()> {
    let prefix = normalise_prefix(&args.path_prefix)?;
    let clients = clients::resolve(args.clients, args.clients_file.as_deref())?;
    anyhow::ensure!(args.token_ttl > 0, "--token-ttl must be positive");
    let shutdown = crate::shutdown::on_signal()?;

    let first_key = tokio::task::spawn_blocking(SigningKey::generate).await??;
    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let bound = listener.local_addr()?;
    let base = args
        .public_url
        .map(|url| url.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("http://{bound}"));
    let issuer_url = format!("{base}{prefix}");

    let client_ids: Vec<&str> = clients.iter().map(|c| c.id.as_str()).collect();
    eprintln!(
        "issuer: clients {client_ids:?}; audience {}; key {}",
        args.audience, first_key.kid
    );
    let state = Arc::new(Issuer {
        issuer: issuer_url.clone(),
        settings: TokenSettings {
            issuer: issuer_url.clone(),
            audience: args.audience,
            ttl_seconds: args.token_ttl,
        },
        keys_max_age: args.keys_max_age,
        clients,
        keys: RwLock::new(KeyRing::new(first_key)),
        keys_mode: RwLock::new(KeysMode::Ok),
        keys_requests: AtomicU64::new(0),
        token_requests: AtomicU64::new(0),
        tokens_issued: AtomicU64::new(0),
        shutdown: shutdown.clone(),
    });

    // Tests parse this line to learn the port: keep its shape stable.
    println!("issuer listening on {issuer_url}");

    axum::serve(
        listener,
        router(state, &prefix).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await?;
    eprintln!("issuer: stopped");
    Ok(())
}

fn router(state: Arc<Issuer>, prefix: &str) -> Router {
    let oauth = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/v1/keys", get(keys))
        .route("/v1/token", post(token))
        .route("/v1/authorize", get(authorize));
    let control = Router::new()
        .route("/control/rotate", post(control::rotate))
        .route("/control/keys-mode", post(control::keys_mode))
        .route("/control/token", post(control::token))
        .route("/control/stats", get(control::stats))
        .layer(middleware::from_fn(control::loopback_only));
    let app = if prefix.is_empty() {
        oauth
    } else {
        Router::new().nest(prefix, oauth)
    };
    app.merge(control).with_state(state)
}

/// One document for both discovery paths, as Okta's are nearly identical: what a client needs
/// to find the token endpoint and the keys.
async fn discovery(State(issuer): State<Arc<Issuer>>) -> Response {
    let base = &issuer.issuer;
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/v1/authorize"),
        "token_endpoint": format!("{base}/v1/token"),
        "jwks_uri": format!("{base}/v1/keys"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes_supported(&issuer.clients),
        "claims_supported": [
            "ver", "jti", "iss", "aud", "iat", "exp", "cid", "scp", "sub", "groups"
        ],
    }))
    .into_response()
}

fn scopes_supported(clients: &[Client]) -> Vec<&str> {
    let mut scopes: Vec<&str> = clients
        .iter()
        .flat_map(|c| c.scopes.iter().map(String::as_str))
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    scopes
}

async fn keys(
    State(issuer): State<Arc<Issuer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let count = issuer.keys_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let mode = issuer.keys_mode();
    // End-to-end tests count these lines; keep one per request.
    eprintln!("issuer: keys request #{count} from {peer} (mode {mode})");
    match mode {
        KeysMode::Ok => {
            let jwks = issuer.read_keys().jwks();
            let cache = format!("max-age={}", issuer.keys_max_age);
            ([(header::CACHE_CONTROL, cache)], Json(jwks)).into_response()
        }
        KeysMode::Fail => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({
                "errorCode": "E0000009",
                "errorSummary": "Internal Server Error",
            })),
        )
            .into_response(),
        KeysMode::Stall => {
            tokio::select! {
                () = issuer.shutdown.cancelled() => {}
                () = tokio::time::sleep(STALL) => {}
            }
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        KeysMode::Garbage => (
            [(header::CONTENT_TYPE, "application/json")],
            "<html><body>this is not a key set</body></html>",
        )
            .into_response(),
        KeysMode::Reset => {
            // A body that fails before its first byte: hyper drops the connection without
            // completing a response, which the client sees as a reset.
            let failing = futures_util::stream::once(async {
                Err::<Bytes, _>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "keys mode reset",
                ))
            });
            axum::body::Body::from_stream(failing).into_response()
        }
        KeysMode::Huge => {
            let mut jwks = issuer.read_keys().jwks();
            if let Some(object) = jwks.as_object_mut() {
                object.insert("padding".into(), json!("x".repeat(HUGE_KEYS_BODY)));
            }
            Json(jwks).into_response()
        }
        KeysMode::NoKeys => {
            let kid = issuer.read_keys().active().kid.clone();
            Json(json!({
                "keys": [{"kty": "oct", "kid": kid, "alg": "HS256", "k": "c2VjcmV0LWtleS1mb3ItaG1hYw"}]
            }))
            .into_response()
        }
    }
}

async fn token(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: Bytes) -> Response {
    issuer.token_requests.fetch_add(1, Ordering::SeqCst);
    let minted = token::authorize(&issuer.clients, &headers, &body).and_then(|(client, scopes)| {
        let ring = issuer.read_keys();
        let response = token::mint(&issuer.settings, ring.active(), client, &scopes)?;
        eprintln!(
            "issuer: token for {} (scope {:?}, kid {})",
            client.id,
            response.scope,
            ring.active().kid
        );
        Ok(response)
    });
    match minted {
        Ok(response) => {
            issuer.tokens_issued.fetch_add(1, Ordering::SeqCst);
            (token::no_store(), Json(response)).into_response()
        }
        Err(err) => {
            eprintln!("issuer: token request refused: {err}");
            err.into_response()
        }
    }
}

/// Listed in discovery because OIDC requires the field; only client credentials is served.
async fn authorize() -> Response {
    OAuthError::InvalidRequest(
        "This local issuer only implements the client_credentials grant.".to_owned(),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prefixes_are_normalised() {
        assert_eq!(
            normalise_prefix("/oauth2/default/").unwrap(),
            "/oauth2/default"
        );
        assert_eq!(normalise_prefix("/").unwrap(), "");
        assert!(normalise_prefix("oauth2").is_err());
    }
}
