//! MCP sessions: the table the HTTP layer looks session ids up in, each session's own children
//! (through [`Fanout`]), the streams its server-to-client messages travel on, and its end —
//! `DELETE`, idle for longer than the route's `sessionTtl`, a legacy SSE client hanging up, or
//! the shim stopping. Ending a session stops and reaps its children before it is forgotten.
//!
//! A session belongs to the identity that opened it (the filter names it in
//! [`IDENTITY_HEADER`]): for anyone else its id names nothing. The table also caps how many
//! sessions live at once, in total and per identity, since each one holds child processes.
//!
//! 2026-07-28 clients have no sessions, but their requests still need initialized children: the
//! shim keeps one [`Kind::Stateless`] session per route and identity, never named to anyone,
//! that serves every such request of that identity (see `stateless`). It lives in the same table
//! so the same caps, TTL and shutdown apply to it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use serde_json::Value as Json;
use tokio::sync::{OnceCell, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Target;
use crate::mcp::{ClientSink, Fanout, Message, RpcError};
use crate::stateless::Hub;

/// Messages kept for a client that has no stream open yet (bounded: a client that never opens
/// one must not grow the shim's memory).
const BACKLOG: usize = 256;

/// The header in which the filter names the verified identity (issuer and subject, as an opaque
/// token) of the caller; absent for anonymous callers. The filter strips it from clients.
pub use mcp_auth_filter::policy::IDENTITY_HEADER;

/// Who opened a session: the filter's token for the caller, `None` for an anonymous one.
/// Compared as bytes: the shim never needs to read it, and must not log it.
pub type Identity = Option<HeaderValue>;

pub const DEFAULT_MAX_SESSIONS: usize = 256;
pub const DEFAULT_MAX_SESSIONS_PER_IDENTITY: usize = 16;

/// How many sessions may live at once. Anonymous callers count as one identity: the shim cannot
/// tell them apart.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: usize,
    pub per_identity: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            total: DEFAULT_MAX_SESSIONS,
            per_identity: DEFAULT_MAX_SESSIONS_PER_IDENTITY,
        }
    }
}

/// Why no session was created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the shim is shutting down")]
    Stopping,
    #[error("this shim already holds {0} sessions, its limit (--max-sessions)")]
    Total(usize),
    #[error(
        "this identity already holds {0} sessions, the limit per identity (--max-sessions-per-identity)"
    )]
    PerIdentity(usize),
}

/// What the shim serves for one route of the config.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    pub targets: Vec<Target>,
    pub ttl: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which transport a session serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Streamable HTTP, 2025-03-26 through 2025-11-25: named by `Mcp-Session-Id`.
    Streamable,
    /// Made by `GET /sse` (the 2024-11-05 transport): everything goes on that one stream.
    Legacy,
    /// The children behind one identity's 2026-07-28 requests on one route; its id is never
    /// given out, so no client can name it.
    Stateless,
}

/// One MCP session of one client on one route.
pub struct Session {
    pub id: String,
    pub route: Arc<RouteSpec>,
    pub kind: Kind,
    identity: Identity,
    pub outbound: Arc<Outbound>,
    /// The 2026-07-28 clients' side of a [`Kind::Stateless`] session.
    pub hub: Option<Arc<Hub>>,
    mcp: OnceCell<Fanout>,
    last_active: Mutex<Instant>,
    busy: AtomicUsize,
    ended: CancellationToken,
}

/// Keeps a session alive while a request is being answered, however long a tool call takes.
pub struct Busy(Arc<Session>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Session {
    fn new(route: Arc<RouteSpec>, kind: Kind, identity: Identity) -> Session {
        Session {
            id: format!("{:032x}", rand::random::<u128>()),
            route,
            kind,
            identity,
            outbound: Arc::new(Outbound::default()),
            hub: (kind == Kind::Stateless).then(|| Arc::new(Hub::default())),
            mcp: OnceCell::new(),
            last_active: Mutex::new(Instant::now()),
            busy: AtomicUsize::new(0),
            ended: CancellationToken::new(),
        }
    }

    /// Whether `identity` opened this session.
    pub fn belongs_to(&self, identity: &Identity) -> bool {
        self.identity == *identity
    }

    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Busy(self.clone())
    }

    fn touch(&self) {
        *lock(&self.last_active) = Instant::now();
    }

    fn expired(&self, now: Instant) -> bool {
        self.busy.load(Ordering::Relaxed) == 0
            && now.saturating_duration_since(*lock(&self.last_active)) > self.route.ttl
    }

    /// The protocol revision the children agreed on (empty before `initialize`).
    pub fn protocol_version(&self) -> &str {
        self.mcp.get().map_or("", |m| m.protocol_version.as_str())
    }

    /// Starts this session's children and initializes them; returns the `initialize` result.
    pub async fn initialize(&self, params: Option<Json>) -> Result<Json, RpcError> {
        if self.mcp.initialized() {
            return Err(RpcError::new(
                RpcError::INVALID_REQUEST,
                "this session is already initialized; start a new one to initialize again",
            ));
        }
        let sink: Arc<dyn ClientSink> = self.outbound.clone();
        let start = Fanout::start(
            &self.route.name,
            &self.route.targets,
            &self.id,
            params,
            sink,
        );
        let fanout = self.mcp.get_or_try_init(|| start).await?;
        if self.ended.is_cancelled() {
            // Closed while the children were starting: `close` did not see them.
            fanout.shutdown().await;
            return Err(RpcError::new(RpcError::SERVER, "the session ended"));
        }
        crate::say!(
            "session {}: route '{}', protocol {}, pids {:?}",
            self.id,
            self.route.name,
            fanout.protocol_version,
            fanout.pids()
        );
        Ok(fanout.initialize_result.clone())
    }

    /// The children of a [`Kind::Stateless`] session, started and initialized by the shim
    /// itself with `params` on first use (`notifications/initialized` sent before any request
    /// can reach them); concurrent first requests wait for the same start.
    pub async fn start(
        &self,
        params: Json,
        sink: Arc<dyn ClientSink>,
    ) -> Result<&Fanout, RpcError> {
        let fanout = self
            .mcp
            .get_or_try_init(|| async {
                let fanout = Fanout::start(
                    &self.route.name,
                    &self.route.targets,
                    &self.id,
                    Some(params),
                    sink,
                )
                .await?;
                let initialized = serde_json::json!({
                    "jsonrpc": "2.0", "method": "notifications/initialized",
                });
                fanout.notify("notifications/initialized", &initialized);
                crate::say!(
                    "session {}: route '{}', the children behind one identity's 2026-07-28 \
                     requests, protocol {}, pids {:?}",
                    short(&self.id),
                    self.route.name,
                    fanout.protocol_version,
                    fanout.pids()
                );
                Ok::<Fanout, RpcError>(fanout)
            })
            .await?;
        if self.ended.is_cancelled() {
            fanout.shutdown().await;
            return Err(RpcError::new(RpcError::SERVER, "the shim is stopping"));
        }
        Ok(fanout)
    }

    /// The session's children, once started.
    pub fn mcp(&self) -> Option<&Fanout> {
        self.mcp.get()
    }

    /// Answers a client request with a complete JSON-RPC response (`None`: it was cancelled).
    pub async fn request(&self, id: Json, method: &str, params: Option<Json>) -> Option<Json> {
        let answer = if method == "initialize" {
            Some(self.initialize(params).await.map_err(|e| e.to_json()))
        } else {
            match self.mcp.get() {
                Some(mcp) => mcp.request(&id, method, params).await,
                None => Some(Err(not_initialized().to_json())),
            }
        };
        answer.map(|answer| response(id, answer))
    }

    /// Takes a client notification or response.
    pub fn accept(&self, message: Message) {
        let Some(mcp) = self.mcp.get() else { return };
        match message {
            Message::Notification { method, message } => {
                if method == "notifications/initialized" {
                    self.outbound.set_ready();
                }
                mcp.notify(&method, &message);
            }
            Message::Response(message) => mcp.respond(message),
            Message::Request { .. } => {}
        }
    }

    /// Ends the session: its streams close, its children are stopped and reaped.
    pub async fn close(&self) {
        self.ended.cancel();
        self.outbound.close();
        if let Some(hub) = &self.hub {
            hub.close(self.mcp.get());
        }
        if let Some(mcp) = self.mcp.get() {
            mcp.shutdown().await;
        }
    }
}

/// The first 8 characters of a session id (all of it when shorter): enough to follow a session
/// through the log, too little to use it.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn not_initialized() -> RpcError {
    RpcError::new(
        RpcError::INVALID_REQUEST,
        "the session is not initialized: send initialize first",
    )
}

/// A JSON-RPC response for the client.
pub fn response(id: Json, answer: Result<Json, Json>) -> Json {
    match answer {
        Ok(result) => serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(error) => serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": error }),
    }
}

/// The streams a session's server-to-client messages can take. Streamable HTTP prefers the
/// stream of a request still being answered (the spec's "related" messages; a progress
/// notification arrives before its response), then the standalone `GET` stream; with neither,
/// messages wait in a small backlog for the next `GET`. Nothing is sent before the client says
/// `notifications/initialized`, as the lifecycle requires.
#[derive(Default)]
pub struct Outbound {
    state: Mutex<Streams>,
}

#[derive(Default)]
struct Streams {
    ready: bool,
    closed: bool,
    next_key: u64,
    /// Streams of requests being answered, oldest first.
    requests: Vec<(u64, mpsc::UnboundedSender<Json>)>,
    standalone: Option<mpsc::UnboundedSender<Json>>,
    backlog: VecDeque<Json>,
}

impl Outbound {
    /// A stream for one POST's answers; it also carries related server messages until
    /// [`Outbound::close_request_stream`].
    pub fn open_request_stream(
        &self,
    ) -> (
        u64,
        mpsc::UnboundedSender<Json>,
        mpsc::UnboundedReceiver<Json>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = lock(&self.state);
        state.next_key += 1;
        let key = state.next_key;
        if !state.closed {
            state.requests.push((key, tx.clone()));
        }
        (key, tx, rx)
    }

    pub fn close_request_stream(&self, key: u64) {
        lock(&self.state).requests.retain(|(k, _)| *k != key);
    }

    /// The standalone stream (`GET`, or the legacy `/sse`). A new one replaces the old: a
    /// client reconnecting must not find its stream taken by its own dead connection.
    pub fn open_standalone(&self) -> mpsc::UnboundedReceiver<Json> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = lock(&self.state);
        if state.closed {
            return rx;
        }
        if state.ready {
            while let Some(message) = state.backlog.pop_front() {
                let _ = tx.send(message);
            }
        }
        state.standalone = Some(tx);
        rx
    }

    /// Sends on the standalone stream only (the legacy transport's responses).
    pub fn send_standalone(&self, message: Json) {
        let state = lock(&self.state);
        if let Some(tx) = &state.standalone {
            let _ = tx.send(message);
        }
    }

    fn set_ready(&self) {
        let mut state = lock(&self.state);
        state.ready = true;
        // What was said before the client was ready relates to no request: it waits for the
        // standalone stream.
        if let Some(tx) = state.standalone.clone() {
            while let Some(message) = state.backlog.pop_front() {
                if let Err(mpsc::error::SendError(back)) = tx.send(message) {
                    state.backlog.push_front(back);
                    state.standalone = None;
                    break;
                }
            }
        }
    }

    fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        state.requests.clear();
        state.standalone = None;
        state.backlog.clear();
    }
}

impl ClientSink for Outbound {
    fn deliver(&self, message: Json) {
        let mut state = lock(&self.state);
        if state.closed {
            return;
        }
        if !state.ready {
            keep(&mut state, message);
            return;
        }
        route(&mut state, message);
    }
}

fn route(state: &mut Streams, mut message: Json) {
    while let Some((_, tx)) = state.requests.last() {
        match tx.send(message) {
            Ok(()) => return,
            Err(mpsc::error::SendError(back)) => {
                message = back;
                state.requests.pop();
            }
        }
    }
    if let Some(tx) = &state.standalone {
        match tx.send(message) {
            Ok(()) => return,
            Err(mpsc::error::SendError(back)) => {
                message = back;
                state.standalone = None;
            }
        }
    }
    keep(state, message);
}

fn keep(state: &mut Streams, message: Json) {
    if state.backlog.len() >= BACKLOG {
        state.backlog.pop_front();
        crate::say!("session: no stream open to the client; dropped its oldest waiting message");
    }
    state.backlog.push_back(message);
}

/// Every live session, by id.
#[derive(Default)]
pub struct SessionTable {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    limits: Limits,
    /// Sessions being closed in the background; shutdown waits for them.
    closing: TaskTracker,
    stopped: CancellationToken,
}

impl SessionTable {
    pub fn new(limits: Limits) -> SessionTable {
        SessionTable {
            limits,
            ..SessionTable::default()
        }
    }

    /// A new session of `identity`, unless the shim is stopping or a limit is reached. Sessions
    /// idle past their TTL are ended first, so they do not hold a place the reaper has not
    /// freed yet.
    pub fn create(
        &self,
        route: Arc<RouteSpec>,
        kind: Kind,
        identity: Identity,
    ) -> Result<Arc<Session>, Refused> {
        self.find_or_create(route, kind, identity, false)
    }

    /// The [`Kind::Stateless`] session of `identity` on `route`, created when it has none (or
    /// its children died: a 2026-07-28 client has no session to restart, so the shim does it).
    pub fn stateless(
        &self,
        route: Arc<RouteSpec>,
        identity: Identity,
    ) -> Result<Arc<Session>, Refused> {
        self.find_or_create(route, Kind::Stateless, identity, true)
    }

    fn find_or_create(
        &self,
        route: Arc<RouteSpec>,
        kind: Kind,
        identity: Identity,
        reuse: bool,
    ) -> Result<Arc<Session>, Refused> {
        if self.stopped.is_cancelled() {
            return Err(Refused::Stopping);
        }
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        let dead = |s: &Session| s.mcp.get().is_some_and(|m| !m.alive());
        let expired: Vec<Arc<Session>> = sessions
            .values()
            .filter(|s| s.expired(now) || (s.kind == Kind::Stateless && dead(s)))
            .cloned()
            .collect();
        for session in &expired {
            sessions.remove(&session.id);
        }
        let found = sessions
            .values()
            .find(|s| {
                reuse && s.kind == kind && s.route.name == route.name && s.belongs_to(&identity)
            })
            .cloned();
        let refused = if found.is_some() {
            None
        } else if sessions.len() >= self.limits.total {
            Some(Refused::Total(self.limits.total))
        } else if sessions
            .values()
            .filter(|s| s.belongs_to(&identity))
            .count()
            >= self.limits.per_identity
        {
            Some(Refused::PerIdentity(self.limits.per_identity))
        } else {
            None
        };
        let created = match (found, refused) {
            (Some(found), _) => Ok(found),
            (None, Some(refused)) => Err(refused),
            (None, None) => {
                let session = Arc::new(Session::new(route, kind, identity));
                sessions.insert(session.id.clone(), session.clone());
                Ok(session)
            }
        };
        drop(sessions);
        for session in expired {
            if dead(&session) && !session.expired(now) {
                crate::say!(
                    "session {}: a child of it is gone; a new one serves the next request",
                    short(&session.id)
                );
            } else {
                crate::say!("session {}: idle past its TTL", session.id);
            }
            self.closing.spawn(async move { session.close().await });
        }
        created
    }

    /// The live session `id`; an idle one past its TTL is ended here rather than served.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let session = lock(&self.sessions).get(id).cloned()?;
        if session.expired(Instant::now()) {
            self.end_later(id);
            return None;
        }
        Some(session)
    }

    /// Forgets session `id` and returns it, for the caller to close.
    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).remove(id)
    }

    /// Ends session `id` in the background (from places that cannot wait, such as a dropped
    /// stream).
    pub fn end_later(&self, id: &str) {
        if let Some(session) = self.remove(id) {
            crate::say!("session {}: ended", session.id);
            self.closing.spawn(async move { session.close().await });
        }
    }

    /// Ends the sessions idle past their route's TTL.
    pub fn reap(&self) {
        let now = Instant::now();
        let expired: Vec<String> = lock(&self.sessions)
            .values()
            .filter(|s| s.expired(now))
            .map(|s| s.id.clone())
            .collect();
        for id in expired {
            crate::say!("session {id}: idle past its TTL");
            self.end_later(&id);
        }
    }

    /// Checks for idle sessions often enough that a TTL is honoured within a quarter of itself.
    pub async fn run_reaper(&self, shortest_ttl: Duration, stop: CancellationToken) {
        let period = (shortest_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => self.reap(),
                () = stop.cancelled() => return,
            }
        }
    }

    /// Ends every session and waits until all their children are reaped.
    pub async fn close_all(&self) {
        self.stopped.cancel();
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).drain().map(|(_, s)| s).collect();
        for session in sessions {
            self.closing.spawn(async move { session.close().await });
        }
        self.closing.close();
        self.closing.wait().await;
    }
}
