//! The MCP HTTP transports, as the client (through Envoy) sees them.
//!
//! - **Streamable HTTP** (2025-03-26 and later): `POST` one JSON-RPC message or a batch; an
//!   `initialize` starts a session named by the `Mcp-Session-Id` response header; requests are
//!   answered as `application/json` or as a `text/event-stream` carrying the related server
//!   messages first, whichever the `Accept` header asks for (the stream when both are); `GET`
//!   opens the standalone server stream; `DELETE` ends the session. An unknown or expired
//!   session is a 404 (the client starts a new one), a missing session id a 400.
//! - **HTTP+SSE** (2024-11-05): `GET …/sse` opens the session's only stream, whose first
//!   `endpoint` event names `…/message?sessionId=…`; `POST`s there are accepted with 202 and
//!   answered on the stream. Hanging up the stream ends the session.
//!
//! - **2026-07-28** (no handshake, no session): a POST whose `MCP-Protocol-Version` names that
//!   revision, or whose request carries it in `_meta`, is one stateless request, served by
//!   `stateless` (after `envelope` checked its headers against its body); `GET` and `DELETE`
//!   with that version are 405. Everything else is served as above, unchanged.
//!
//! A session answers only the identity that opened it ([`IDENTITY_HEADER`], set by the filter):
//! to anyone else it is an unknown session, the same 404, so an id alone is worth nothing.
//! New sessions beyond the table's limits are refused with a 429.
//!
//! Envoy names the config route a request came through in `x-mcp-route`; without it, the one
//! route with MCP targets is served (so the shim also works when called directly).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use futures_util::future::join_all;
use futures_util::stream;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use crate::envelope;
use crate::mcp::{Message, RpcError};
use crate::session::{
    IDENTITY_HEADER, Identity, Kind, Refused, RouteSpec, Session, SessionTable, response, short,
};
use crate::stateless;

pub const ROUTE_HEADER: &str = "x-mcp-route";
pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// Revisions with a handshake whose HTTP transport this module implements. The revision itself
/// is negotiated between the client and the MCP servers; the shim passes it through. (2026-07-28
/// is served by `stateless`.)
pub const KNOWN_VERSIONS: &[&str] = envelope::HANDSHAKE_VERSIONS;
/// How often an event stream carries a comment when it has nothing to say: well inside Envoy's
/// stream idle timeout, so a quiet SSE stream is not cut.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Everything a request handler needs.
pub struct App {
    pub table: Arc<SessionTable>,
    routes: HashMap<String, Arc<RouteSpec>>,
    /// Served when a request names no route: the config's only route with targets.
    default_route: Option<Arc<RouteSpec>>,
}

impl App {
    pub fn new(routes: Vec<RouteSpec>, table: Arc<SessionTable>) -> App {
        let routes: HashMap<String, Arc<RouteSpec>> = routes
            .into_iter()
            .filter(|r| !r.targets.is_empty())
            .map(|r| (r.name.clone(), Arc::new(r)))
            .collect();
        let default_route = match routes.values().collect::<Vec<_>>().as_slice() {
            [only] => Some(Arc::clone(only)),
            _ => None,
        };
        App {
            table,
            routes,
            default_route,
        }
    }

    fn route_for(&self, headers: &HeaderMap) -> Result<Arc<RouteSpec>, Rejection> {
        let mut names: Vec<&String> = self.routes.keys().collect();
        names.sort();
        match headers.get(ROUTE_HEADER).map(HeaderValue::to_str) {
            Some(Ok(name)) => self.routes.get(name).cloned().ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    RpcError::INVALID_REQUEST,
                    &format!("no route {name:?} with MCP targets here (routes: {names:?})"),
                )
            }),
            Some(Err(_)) => Err(error(
                StatusCode::BAD_REQUEST,
                RpcError::INVALID_REQUEST,
                "the x-mcp-route header is not text",
            )),
            None => self.default_route.clone().ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    RpcError::INVALID_REQUEST,
                    &format!(
                        "no x-mcp-route header, and the config has {} routes with MCP targets {names:?}: name one",
                        names.len()
                    ),
                )
            }),
        }
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = match app.route_for(&headers) {
        Ok(route) => route,
        Err(rejection) => return rejection.into_response(),
    };
    let identity = match identity(&headers) {
        Ok(identity) => identity,
        Err(rejection) => return rejection.into_response(),
    };
    let path = uri.path();
    if path.ends_with("/sse") && method == Method::GET {
        return legacy_stream(&app, route, identity, path);
    }
    if (path.ends_with("/message") || path.ends_with("/messages")) && method == Method::POST {
        return legacy_post(&app, &route, &identity, uri.query(), &body);
    }
    match method {
        Method::POST => post(&app, route, identity, &headers, &body).await,
        Method::GET => get(&app, &route, &identity, &headers),
        Method::DELETE => delete(&app, &route, &identity, &headers).await,
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, POST, DELETE")],
        )
            .into_response(),
    }
}

/// A request refused at the transport level: an HTTP status with a JSON-RPC error body.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub(crate) struct Rejection {
    status: StatusCode,
    code: i64,
    message: String,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = json!({
            "jsonrpc": "2.0", "id": null,
            "error": { "code": self.code, "message": self.message },
        });
        (self.status, axum::Json(body)).into_response()
    }
}

fn error(status: StatusCode, code: i64, message: &str) -> Rejection {
    Rejection {
        status,
        code,
        message: message.to_string(),
    }
}

/// The caller's identity as the filter named it. Twice is refused: the filter sets it once,
/// and with two values there is no telling which one it meant.
fn identity(headers: &HeaderMap) -> Result<Identity, Rejection> {
    let mut values = headers.get_all(IDENTITY_HEADER).iter();
    let first = values.next().cloned();
    if values.next().is_some() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            RpcError::INVALID_REQUEST,
            "the identity header appears more than once",
        ));
    }
    Ok(first)
}

/// The answer to a session that could not be created.
pub(crate) fn refused(refused: &Refused, route: &RouteSpec) -> Rejection {
    match refused {
        Refused::Stopping => error(
            StatusCode::SERVICE_UNAVAILABLE,
            RpcError::SERVER,
            &refused.to_string(),
        ),
        Refused::Total(_) | Refused::PerIdentity(_) => error(
            StatusCode::TOO_MANY_REQUESTS,
            RpcError::SERVER,
            &format!(
                "{refused}: end a session with DELETE and its Mcp-Session-Id (a legacy one by \
                 closing its /sse stream), or wait until one has been idle for the session TTL \
                 ({}s)",
                route.ttl.as_secs()
            ),
        ),
    }
}

/// What an id that names no session of this caller gets, logged: with several shims, this line
/// is how a lost session (stickiness broken, or a forged id) shows up in the operator's logs.
/// A session of someone else is answered exactly as an unknown one, and its owner is not named.
fn unknown_session(id: &str, other_identity: bool, message: &str) -> Rejection {
    if other_identity {
        crate::say!(
            "session {}: the caller's identity did not match the session's: 404",
            short(id)
        );
    } else {
        crate::say!("session {id}: unknown here (ended, expired, or not issued by this shim): 404");
    }
    error(StatusCode::NOT_FOUND, -32001, message)
}

fn accepts(headers: &HeaderMap, wanted: &str, wildcard: bool) -> bool {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return wildcard;
    }
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|item| item.split(';').next().unwrap_or("").trim())
        .any(|mime| {
            mime.eq_ignore_ascii_case(wanted)
                || (wildcard && (mime == "*/*" || mime.eq_ignore_ascii_case("application/*")))
        })
}

/// The request's session, as long as it is alive, on this route, of this transport and of
/// this caller.
fn session_for(
    app: &App,
    route: &RouteSpec,
    identity: &Identity,
    headers: &HeaderMap,
) -> Result<Arc<Session>, Rejection> {
    let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            RpcError::INVALID_REQUEST,
            "Mcp-Session-Id header is required (send initialize first to get one)",
        ));
    };
    match app.table.get(id) {
        Some(session)
            if session.route.name == route.name
                && session.kind == Kind::Streamable
                && session.belongs_to(identity) =>
        {
            if let Some(version) = headers.get(VERSION_HEADER) {
                let version = version.to_str().unwrap_or("");
                if !KNOWN_VERSIONS.contains(&version) && version != session.protocol_version() {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        RpcError::INVALID_REQUEST,
                        &format!(
                            "unsupported MCP-Protocol-Version {version:?} (this session speaks {:?})",
                            session.protocol_version()
                        ),
                    ));
                }
            }
            Ok(session)
        }
        found => Err(unknown_session(
            id,
            found.is_some_and(|s| !s.belongs_to(identity)),
            "session not found (it ended or expired): initialize a new one",
        )),
    }
}

/// The body of a POST: one message or a batch of them.
fn parse_body(body: &[u8]) -> Result<(Vec<Message>, bool), Rejection> {
    let value: Json = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            RpcError::PARSE,
            &format!("the body is not JSON: {e}"),
        )
    })?;
    let (values, batch) = match value {
        Json::Array(values) if !values.is_empty() => (values, true),
        Json::Array(_) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                RpcError::INVALID_REQUEST,
                "an empty batch",
            ));
        }
        single => (vec![single], false),
    };
    let messages = values
        .into_iter()
        .map(Message::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.code, &e.message))?;
    Ok((messages, batch))
}

async fn post(
    app: &App,
    route: Arc<RouteSpec>,
    identity: Identity,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let sse = accepts(headers, "text/event-stream", false);
    if !sse && !accepts(headers, "application/json", true) {
        return error(
            StatusCode::NOT_ACCEPTABLE,
            RpcError::INVALID_REQUEST,
            "Accept must include application/json or text/event-stream",
        )
        .into_response();
    }
    let (mut messages, batch) = match parse_body(body) {
        Ok(parsed) => parsed,
        Err(rejection) => return rejection.into_response(),
    };
    if let [first, ..] = messages.as_slice()
        && envelope::is_modern(headers, first.method(), first.params())
    {
        if batch {
            return error(
                StatusCode::BAD_REQUEST,
                RpcError::INVALID_REQUEST,
                "MCP 2026-07-28 sends one message per POST, not a batch",
            )
            .into_response();
        }
        let Some(message) = messages.pop() else {
            return StatusCode::ACCEPTED.into_response();
        };
        return stateless::post(&app.table, route, identity, headers, message).await;
    }
    let initialize = messages.iter().find_map(|m| match m {
        Message::Request { id, method, params } if method == "initialize" => {
            Some((id.clone(), params.clone()))
        }
        _ => None,
    });
    if let Some((id, params)) = initialize {
        if batch {
            return error(
                StatusCode::BAD_REQUEST,
                RpcError::INVALID_REQUEST,
                "initialize must be sent alone, not in a batch",
            )
            .into_response();
        }
        return initialize_session(app, route, identity, id, params, sse).await;
    }
    let session = match session_for(app, &route, &identity, headers) {
        Ok(session) => session,
        Err(rejection) => return rejection.into_response(),
    };
    let busy = session.begin();
    let mut requests = Vec::new();
    for message in messages {
        match message {
            Message::Request { id, method, params } => requests.push((id, method, params)),
            other => session.accept(other),
        }
    }
    if requests.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    if sse {
        let (key, tx, rx) = session.outbound.open_request_stream();
        // Answered in its own task: a client hanging up is not a cancellation (the spec says
        // so), and the child's answer must still be read so the next call is not confused.
        tokio::spawn(async move {
            let answers = requests.into_iter().map(|(id, method, params)| {
                let session = session.clone();
                let tx = tx.clone();
                async move {
                    if let Some(answer) = session.request(id, &method, params).await {
                        let _ = tx.send(answer);
                    }
                }
            });
            join_all(answers).await;
            session.outbound.close_request_stream(key);
            drop(busy);
        });
        return event_stream(rx, None, (), HeaderMap::new());
    }
    let answers = join_all(requests.into_iter().map(|(id, method, params)| {
        let session = &session;
        async move { session.request(id, &method, params).await }
    }))
    .await;
    drop(busy);
    let mut answers: Vec<Json> = answers.into_iter().flatten().collect();
    match (batch, answers.len()) {
        (_, 0) => StatusCode::ACCEPTED.into_response(),
        (false, _) => axum::Json(answers.swap_remove(0)).into_response(),
        (true, _) => axum::Json(Json::Array(answers)).into_response(),
    }
}

async fn initialize_session(
    app: &App,
    route: Arc<RouteSpec>,
    identity: Identity,
    id: Json,
    params: Option<Json>,
    sse: bool,
) -> Response {
    let session = match app.table.create(route.clone(), Kind::Streamable, identity) {
        Ok(session) => session,
        Err(why) => {
            crate::say!("initialize on route '{}': refused: {why}", route.name);
            return refused(&why, &route).into_response();
        }
    };
    // Starting the children can take longer than a short TTL: the session is not idle meanwhile.
    let busy = session.begin();
    let initialized = session.initialize(params).await;
    drop(busy);
    let answer = match initialized {
        Ok(result) => Ok(result),
        Err(e) => {
            crate::say!("session {}: initialize failed: {e}", session.id);
            if let Some(session) = app.table.remove(&session.id) {
                session.close().await;
            }
            // No session header: the client has nothing to continue.
            return axum::Json(response(id, Err(e.to_json()))).into_response();
        }
    };
    let message = response(id, answer);
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&session.id) {
        headers.insert(SESSION_HEADER, value);
    }
    if sse {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(message);
        return event_stream(rx, None, (), headers);
    }
    (headers, axum::Json(message)).into_response()
}

fn get(app: &App, route: &RouteSpec, identity: &Identity, headers: &HeaderMap) -> Response {
    if modern_version(headers) {
        return no_stream_in_2026();
    }
    if !accepts(headers, "text/event-stream", false) {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            RpcError::INVALID_REQUEST,
            "GET opens the server's event stream: send Accept: text/event-stream",
        )
        .into_response();
    }
    match session_for(app, route, identity, headers) {
        Ok(session) => event_stream(
            session.outbound.open_standalone(),
            None,
            (),
            HeaderMap::new(),
        ),
        Err(rejection) => rejection.into_response(),
    }
}

async fn delete(
    app: &App,
    route: &RouteSpec,
    identity: &Identity,
    headers: &HeaderMap,
) -> Response {
    if modern_version(headers) {
        return no_stream_in_2026();
    }
    let session = match session_for(app, route, identity, headers) {
        Ok(session) => session,
        Err(rejection) => return rejection.into_response(),
    };
    if let Some(session) = app.table.remove(&session.id) {
        crate::say!("session {}: deleted by the client", session.id);
        session.close().await;
    }
    StatusCode::OK.into_response()
}

fn modern_version(headers: &HeaderMap) -> bool {
    headers.get(VERSION_HEADER).is_some_and(|v| {
        envelope::MODERN_VERSIONS
            .iter()
            .any(|m| v.as_bytes() == m.as_bytes())
    })
}

/// 2026-07-28 has no standalone stream and no session to delete (its server answers GET and
/// DELETE with 405); its change notifications come on `subscriptions/listen`.
fn no_stream_in_2026() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        axum::Json(json!({
            "jsonrpc": "2.0", "id": null,
            "error": {
                "code": RpcError::INVALID_REQUEST,
                "message": "MCP 2026-07-28 has no GET stream and no sessions: POST \
                            subscriptions/listen for change notifications",
            },
        })),
    )
        .into_response()
}

fn legacy_stream(app: &App, route: Arc<RouteSpec>, identity: Identity, path: &str) -> Response {
    let session = match app.table.create(route.clone(), Kind::Legacy, identity) {
        Ok(session) => session,
        Err(why) => {
            crate::say!("GET /sse on route '{}': refused: {why}", route.name);
            return refused(&why, &route).into_response();
        }
    };
    let base = path.strip_suffix("sse").unwrap_or("/");
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("{base}message?sessionId={}", session.id));
    let rx = session.outbound.open_standalone();
    let hang_up = EndOnDrop {
        table: app.table.clone(),
        id: session.id.clone(),
    };
    event_stream(rx, Some(endpoint), hang_up, HeaderMap::new())
}

fn legacy_post(
    app: &App,
    route: &RouteSpec,
    identity: &Identity,
    query: Option<&str>,
    body: &[u8],
) -> Response {
    let id = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("sessionId="));
    let Some(id) = id else {
        return error(
            StatusCode::BAD_REQUEST,
            RpcError::INVALID_REQUEST,
            "sessionId query parameter is required",
        )
        .into_response();
    };
    let session = match app.table.get(id) {
        Some(session)
            if session.kind == Kind::Legacy
                && session.route.name == route.name
                && session.belongs_to(identity) =>
        {
            session
        }
        found => {
            return unknown_session(
                id,
                found.is_some_and(|s| !s.belongs_to(identity)),
                "session not found (it ended or expired): open /sse again",
            )
            .into_response();
        }
    };
    let (messages, _) = match parse_body(body) {
        Ok(parsed) => parsed,
        Err(rejection) => return rejection.into_response(),
    };
    for message in messages {
        match message {
            Message::Request { id, method, params } => {
                let busy = session.begin();
                let session = session.clone();
                tokio::spawn(async move {
                    if let Some(answer) = session.request(id, &method, params).await {
                        session.outbound.send_standalone(answer);
                    }
                    drop(busy);
                });
            }
            other => session.accept(other),
        }
    }
    (StatusCode::ACCEPTED, "Accepted").into_response()
}

/// Ends a legacy session when its stream is dropped (the client hung up).
struct EndOnDrop {
    table: Arc<SessionTable>,
    id: String,
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.table.end_later(&self.id);
    }
}

/// An SSE response carrying `first`, then every message from `rx` until its senders are gone.
/// `guard` lives as long as the stream: dropping it is how the stream's end is noticed.
pub(crate) fn event_stream<G: Send + 'static>(
    rx: mpsc::UnboundedReceiver<Json>,
    first: Option<Event>,
    guard: G,
    headers: HeaderMap,
) -> Response {
    let messages = stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let message = rx.recv().await?;
        let event = Event::default().event("message").data(message.to_string());
        Some((Ok::<Event, Infallible>(event), (rx, guard)))
    });
    let events = stream::iter(first.map(Ok)).chain(messages);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    response.headers_mut().extend(headers);
    response
}
