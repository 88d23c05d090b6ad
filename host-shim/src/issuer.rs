//! A local authorization server that looks like Okta's custom authorization server to the
//! filter and to clients: the same paths under `/oauth2/default`, the same discovery documents,
//! a JWKS with RS256 keys and a token endpoint minting Okta-shaped access tokens. Machines get
//! tokens with client credentials; people log in from their own MCP client with the
//! authorization code grant and PKCE (`authorize`, `exchange`), through a login form, with
//! clients that registered themselves (`registration`) or that name a Client ID Metadata
//! Document (`metadata_document`). It lets `make run` and the end-to-end tests exercise the Okta
//! guide's configuration without an Okta org, and adds test controls (`control`) to make the
//! keys endpoint misbehave. It is a development tool: keys, logins and registrations live in
//! memory; clients and people come from flags or a file.

mod authorize;
mod clients;
mod config_list;
mod control;
mod exchange;
mod keys;
mod login_client;
mod login_page;
mod metadata;
mod metadata_document;
mod okta_id;
mod redirect;
mod registration;
mod store;
mod token;
mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{Any, CorsLayer};

use self::clients::Client;
use self::control::KeysMode;
use self::exchange::AuthenticatedClient;
use self::keys::{KeyRing, SigningKey};
use self::registration::{RegisteredClient, Registry};
use self::store::Store;
use self::token::TokenSettings;
use self::users::User;

/// Scopes every OpenID-flavoured authorization server offers besides its custom ones. `email`
/// is left out because the issuer's people have no addresses.
const OIDC_SCOPES: [&str; 3] = ["openid", "profile", authorize::OFFLINE_ACCESS];

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

    /// An audience tokens may be minted for. Repeatable; the first is the `aud` of
    /// client-credentials tokens and of logins that name no `resource` (RFC 8707). A login's
    /// `resource` must be one of these and becomes its tokens' `aud`.
    #[arg(long = "audience", default_value = "api://agentgateway")]
    audiences: Vec<String>,

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

    /// A person who can log in, as `name:password[:group,group…]`. Repeatable. With no
    /// `--user` and no `users` in the clients file, two exist: `alice` / `alice-password` in
    /// groups AI-Users and Everyone, and `bob` / `bob-password` in Everyone only.
    #[arg(long = "user", value_parser = users::parse_spec)]
    users: Vec<User>,

    /// YAML file: `clients: [{id, secret, groups: [...], scopes: [...], redirect_uris: [...]}]`
    /// and `users: [{name, password, groups: [...], uid}]`, both optional. A client without a
    /// secret is public and can only log people in.
    #[arg(long)]
    clients_file: Option<PathBuf>,

    /// Lifetime of authorization codes, in seconds.
    #[arg(long, default_value_t = 60)]
    code_ttl: u64,

    /// Turn off dynamic client registration (`{issuer}/v1/register`), as an Okta org without an
    /// open registration facade is: clients then use a configured id or a metadata document.
    #[arg(long)]
    no_registration: bool,

    /// Leave RFC 9207 `iss` out of authorization responses (and say so in the metadata), as
    /// Okta's documented redirects carry only `code` and `state`. A gateway's registration
    /// facade needs this: the clients that check `iss` expect the facade's name, not this one.
    #[arg(long)]
    no_response_iss: bool,
}

/// Everything the handlers share.
pub struct Issuer {
    issuer: String,
    settings: TokenSettings,
    keys_max_age: u64,
    clients: Vec<Client>,
    users: Vec<User>,
    audiences: Vec<String>,
    scopes_supported: Vec<String>,
    /// What a login that asks for no scope gets: the custom scopes, as if an Okta admin had
    /// marked them default.
    default_scopes: Vec<String>,
    /// None when registration is off.
    registry: Option<Mutex<Registry>>,
    /// Whether authorization responses carry RFC 9207 `iss`.
    response_iss: bool,
    store: Mutex<Store>,
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

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn registration_enabled(&self) -> bool {
        self.registry.is_some()
    }

    fn registered(&self, client_id: &str) -> Option<RegisteredClient> {
        let registry = self.registry.as_ref()?;
        let registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
        registry.get(client_id).cloned()
    }

    /// The `iss` authorization responses carry, if they carry one.
    fn response_iss(&self) -> Option<&str> {
        self.response_iss.then_some(self.issuer.as_str())
    }

    fn authorize_url(&self) -> String {
        format!("{}/v1/authorize", self.issuer)
    }

    /// The person with this login and password; the password is compared in constant time.
    fn user(&self, name: &str, password: &str) -> Option<&User> {
        self.users.iter().find(|user| {
            user.name == name && token::secret_matches(Some(&user.password), Some(password))
        })
    }

    fn user_named(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|user| user.name == name)
    }
}

/// The OIDC scopes, then every custom scope a configured client holds.
fn scopes_supported(clients: &[Client]) -> (Vec<String>, Vec<String>) {
    let mut custom: Vec<String> = clients
        .iter()
        .flat_map(|c| c.scopes.iter().cloned())
        .filter(|scope| !OIDC_SCOPES.contains(&scope.as_str()))
        .collect();
    custom.sort_unstable();
    custom.dedup();
    let all = OIDC_SCOPES
        .iter()
        .map(|scope| (*scope).to_owned())
        .chain(custom.iter().cloned())
        .collect();
    (all, custom)
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
    let file = match &args.clients_file {
        Some(path) => clients::load_file(path)?,
        None => clients::ClientsFile::default(),
    };
    let clients = config_list::resolve(args.clients, file.clients, clients::defaults)?;
    for client in &clients {
        for uri in &client.redirect_uris {
            redirect::validate(uri).with_context(|| format!("client `{}`", client.id))?;
        }
    }
    let users = config_list::resolve(args.users, file.users, users::defaults)?;
    anyhow::ensure!(args.token_ttl > 0, "--token-ttl must be positive");
    anyhow::ensure!(args.code_ttl > 0, "--code-ttl must be positive");
    let Some(audience) = args.audiences.first().cloned() else {
        anyhow::bail!("at least one --audience is needed");
    };
    let (scopes_supported, default_scopes) = scopes_supported(&clients);
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
    let user_names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    crate::say!(
        "issuer: clients {client_ids:?}; users {user_names:?}; audiences {:?}; registration {}; \
         key {}",
        args.audiences,
        if args.no_registration { "off" } else { "on" },
        first_key.kid
    );
    let state = Arc::new(Issuer {
        issuer: issuer_url.clone(),
        settings: TokenSettings {
            issuer: issuer_url.clone(),
            audience,
            ttl_seconds: args.token_ttl,
        },
        keys_max_age: args.keys_max_age,
        clients,
        users,
        audiences: args.audiences,
        scopes_supported,
        default_scopes,
        registry: (!args.no_registration).then(|| Mutex::new(Registry::default())),
        response_iss: !args.no_response_iss,
        store: Mutex::new(Store::new(Duration::from_secs(args.code_ttl))),
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
    crate::say!("issuer: stopped");
    Ok(())
}

/// Browser-based MCP clients (the MCP Inspector, web apps) read the metadata and keys, register
/// and redeem codes with `fetch` from their own origin, as Okta allows for trusted origins.
/// Nothing here rides on cookies, so any origin may call these endpoints; the login page and
/// the test controls are left out: the page is navigated to, never fetched.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(Any)
}

fn router(state: Arc<Issuer>, prefix: &str) -> Router {
    let mut oauth = Router::new()
        .route("/v1/keys", get(keys))
        .route("/v1/token", post(token));
    for well_known in metadata::WELL_KNOWN {
        oauth = oauth.route(well_known, get(metadata::discovery));
    }
    if state.registration_enabled() {
        oauth = oauth.route("/v1/register", post(register));
    }
    let oauth = oauth.layer(cors()).route(
        "/v1/authorize",
        get(authorize::show).post(authorize::submit),
    );
    let control = Router::new()
        .route("/control/rotate", post(control::rotate))
        .route("/control/keys-mode", post(control::keys_mode))
        .route("/control/token", post(control::token))
        .route("/control/stats", get(control::stats))
        .layer(middleware::from_fn(control::loopback_only));
    let app = if prefix.is_empty() {
        oauth
    } else {
        // The path-inserted forms (RFC 8414 §3.1); with an empty prefix they are the routes
        // above already, and registering them twice would make axum panic.
        let mut inserted = Router::new();
        for well_known in metadata::WELL_KNOWN {
            inserted = inserted.route(&format!("{well_known}{prefix}"), get(metadata::discovery));
        }
        Router::new()
            .nest(prefix, oauth)
            .merge(inserted.layer(cors()))
    };
    app.merge(control).with_state(state)
}

async fn register(State(issuer): State<Arc<Issuer>>, body: Bytes) -> Response {
    let Some(registry) = &issuer.registry else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let now = chrono::Utc::now().timestamp();
    let registered = registry
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .register(&body, &issuer.scopes_supported, now);
    match registered {
        Ok(response) => {
            let field = |name: &str| response.get(name).cloned().unwrap_or_default();
            crate::say!(
                "issuer: registered client {} ({}) for {}",
                field("client_id"),
                field("token_endpoint_auth_method"),
                field("redirect_uris")
            );
            (StatusCode::CREATED, token::no_store(), Json(response)).into_response()
        }
        Err(err) => {
            crate::say!("issuer: registration refused: {err}");
            err.into_response()
        }
    }
}

async fn keys(
    State(issuer): State<Arc<Issuer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let count = issuer.keys_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let mode = issuer.keys_mode();
    // End-to-end tests count these lines; keep one per request.
    crate::say!("issuer: keys request #{count} from {peer} (mode {mode})");
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
    let minted = token::parse_form(&headers, &body).and_then(|form| {
        match form.grant_type.as_deref() {
            Some("authorization_code") => {
                AuthenticatedClient::authenticate(&issuer, &headers, &form)?
                    .authorization_code(&form)
            }
            Some("refresh_token") => {
                AuthenticatedClient::authenticate(&issuer, &headers, &form)?.refresh_token(&form)
            }
            // Client credentials, and the refusals of every other grant, as before: the client
            // is authenticated first, so a stranger learns nothing about grant support.
            _ => client_credentials(&issuer, &headers, &form),
        }
    });
    match minted {
        Ok(response) => {
            issuer.tokens_issued.fetch_add(1, Ordering::SeqCst);
            (token::no_store(), Json(response)).into_response()
        }
        Err(err) => {
            crate::say!("issuer: token request refused: {err}");
            err.into_response()
        }
    }
}

fn client_credentials(
    issuer: &Issuer,
    headers: &HeaderMap,
    form: &token::TokenForm,
) -> Result<token::TokenResponse, token::OAuthError> {
    let (client, scopes) = token::client_credentials(&issuer.clients, headers, form)?;
    let ring = issuer.read_keys();
    let response = token::mint(&issuer.settings, ring.active(), client, &scopes)?;
    crate::say!(
        "issuer: token for {} (scope {:?}, kid {})",
        client.id,
        response.scope,
        ring.active().kid
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn the_oidc_scopes_come_first_and_the_custom_ones_are_the_defaults() {
        let (all, custom) = scopes_supported(&clients::defaults());
        assert_eq!(all, ["openid", "profile", "offline_access", "agentgateway"]);
        assert_eq!(custom, ["agentgateway"]);
    }
}
