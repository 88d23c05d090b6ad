//! `host-shim serve`: one HTTP server for every route of the config, on a loopback port or an
//! owner-only Unix socket (see `address`), each route's `stdio` targets served as one MCP server
//! (see `http`, `session`, `mcp`, `stdio`). Envoy sends each route's traffic here with the
//! route's name in `x-mcp-route`.
//!
//! Stopping is part of the design: on SIGINT/SIGTERM (or the caller's token) no new session
//! starts, every session ends, every child is stopped and reaped, and only then does `serve`
//! return, so nothing outlives the shim.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::address::{Address, Bound};
use crate::config::{Config, DEFAULT_SESSION_TTL};
use crate::http::{App, router};
use crate::session::{
    DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_IDENTITY, Limits, RouteSpec, SessionTable,
};
use crate::stdio;

/// How long open connections get to finish once every session has ended.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The Agent Gateway config file (`binds` / `listeners` / `routes` / `backends`).
    config: PathBuf,

    /// Where to listen: HOST:PORT (port 0 picks a free one), or unix:/absolute/path for a
    /// socket only its owner may connect to (mode 0600). The first stdout line names it.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: Address,

    /// Sessions this shim holds at once; a new one beyond it is refused with a 429.
    #[arg(long, default_value_t = DEFAULT_MAX_SESSIONS, value_parser = at_least_one)]
    max_sessions: usize,

    /// Sessions one identity holds at once (anonymous callers count as one identity).
    #[arg(long, default_value_t = DEFAULT_MAX_SESSIONS_PER_IDENTITY, value_parser = at_least_one)]
    max_sessions_per_identity: usize,
}

pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let listener = Bound::bind(&args.listen).await?;
    println!("host-shim serving on {}", listener.local_address()?);
    let shutdown = crate::shutdown::on_signal()?;
    let limits = Limits {
        total: args.max_sessions,
        per_identity: args.max_sessions_per_identity,
    };
    serve(Arc::new(config), listener, limits, shutdown).await
}

/// Serves every route of `config` on `listener` until `shutdown` is cancelled, then ends every
/// session and returns once every child process is reaped (and a socket file is removed).
pub async fn serve(
    config: Arc<Config>,
    listener: Bound,
    limits: Limits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    stdio::kill_children_on_panic();
    stdio::become_subreaper();
    let routes: Vec<RouteSpec> = config
        .routes()
        .iter()
        .map(|r| RouteSpec {
            name: r.name.clone(),
            targets: r.route.targets().cloned().collect(),
            ttl: r.route.session_ttl(),
        })
        .collect();
    for route in routes.iter().filter(|r| !r.targets.is_empty()) {
        let targets: Vec<&str> = route.targets.iter().map(|t| t.name.as_str()).collect();
        crate::say!(
            "serve: route '{}': targets {targets:?}, session TTL {:?}",
            route.name,
            route.ttl
        );
    }
    let shortest_ttl = routes
        .iter()
        .map(|r| r.ttl)
        .min()
        .unwrap_or(DEFAULT_SESSION_TTL);
    crate::say!(
        "serve: at most {} sessions, {} per identity",
        limits.total,
        limits.per_identity
    );
    let table = Arc::new(SessionTable::new(limits));
    let app = Arc::new(App::new(routes, table.clone()));

    let reaper = {
        let table = table.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { table.run_reaper(shortest_ttl, stop).await })
    };
    // Sessions end first: that closes their streams, which lets the connections finish.
    let sessions_ended = CancellationToken::new();
    let stopping = {
        let table = table.clone();
        let shutdown = shutdown.clone();
        let sessions_ended = sessions_ended.clone();
        async move {
            shutdown.cancelled().await;
            crate::say!("serve: stopping: ending every session");
            table.close_all().await;
            sessions_ended.cancel();
        }
    };
    let service = router(app);
    // Kept until the server is done: dropping it removes the socket file.
    let (served, _socket_file) = match listener {
        Bound::Tcp(listener) => (spawn_server(listener, service, stopping), None),
        Bound::Unix(listener, file) => (spawn_server(listener, service, stopping), Some(file)),
    };
    let server = async {
        tokio::select! {
            result = served => result.context("the HTTP server task")?.context("the HTTP server"),
            () = async {
                sessions_ended.cancelled().await;
                tokio::time::sleep(DRAIN).await;
            } => Ok(()),
        }
    };
    let result = server.await;
    // Whatever ended the server, no child may outlive it.
    shutdown.cancel();
    table.close_all().await;
    let _ = reaper.await;
    crate::say!("serve: stopped");
    result
}

/// The HTTP server on `listener`, in its own task, stopping gracefully once `stopping` is done.
fn spawn_server<L>(
    listener: L,
    router: Router,
    stopping: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<std::io::Result<()>>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let server = axum::serve(listener, router).with_graceful_shutdown(stopping);
    tokio::spawn(server.into_future())
}
