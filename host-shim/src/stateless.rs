//! MCP 2026-07-28 for clients, in front of stdio servers that speak an older revision.
//!
//! A 2026-07-28 client sends no `initialize` and gets no `Mcp-Session-Id`: each POST is one
//! request carrying its own protocol version and client capabilities (checked in `envelope`).
//! The servers behind the shim still need a handshake and a process, so the shim initializes
//! children itself and serves every 2026-07-28 request of one identity on one route from the
//! same children — a [`Kind::Stateless`](crate::session::Kind) session in the session table,
//! whose id is never given out:
//!
//! - **Per request:** the envelope, the request id (the shim calls the child under an id of its
//!   own, so two clients of one identity may both use id 1), the progress token (likewise
//!   rewritten, so progress finds its request), the log level it opted in to, and its response
//!   stream. Closing that stream cancels the request on the child, as the revision says.
//! - **Per identity:** the children and whatever state they keep (a tool that toggles something,
//!   the resources they were subscribed to), and the `subscriptions/listen` streams. Another
//!   identity gets other children, so nothing one identity did is seen by another. A pool of
//!   interchangeable children would break the state a server keeps between calls (a subscription
//!   made on one child, an update sent by another); one set of children per identity keeps it.
//!   A child serves requests concurrently, as stdio MCP servers do.
//!
//! Results are given what the revision requires of them (`resultType`; `ttlMs` and a `private`
//! `cacheScope` on the cacheable lists and reads, since they come from a server that may answer
//! each identity differently; the server's identity in `_meta`), and the old "resource not found"
//! code becomes -32602. `server/discover` is answered from the children's `initialize` result.
//! Change notifications reach the `subscriptions/listen` streams that opted in to them, tagged
//! with the subscription's id; resource subscriptions are made on the children with the older
//! `resources/subscribe`, counted so that two streams on one URI subscribe once.
//!
//! Not translated: server-to-client requests (sampling, elicitation, roots), which this revision
//! replaces with multi round-trip results. The children are initialized without those
//! capabilities, so they do not ask; one that asks anyway is told no at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};
use tokio::sync::mpsc;

use crate::envelope::{self, EnvelopeError, META_SERVER_INFO, META_SUBSCRIPTION_ID};
use crate::http::{self, KNOWN_VERSIONS};
use crate::mcp::{ClientSink, Fanout, Message, RpcError};
use crate::session::{Identity, RouteSpec, Session, SessionTable, response};

/// Methods of older revisions that 2026-07-28 removed: answered as unknown methods, since
/// passing them on would change state the children share across the identity's requests.
const REMOVED: &[&str] = &[
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
];

/// Results that carry caching directives from 2026-07-28 on (`CacheableResult`).
const CACHEABLE: &[&str] = &[
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// The 2025-11-25 and older "resource not found" code, which 2026-07-28 must not emit.
const RESOURCE_NOT_FOUND: i64 = -32002;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The notifications a `subscriptions/listen` stream opted in to (or was granted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    tools: bool,
    prompts: bool,
    resources: bool,
    uris: Vec<String>,
}

impl Filter {
    fn parse(value: Option<&Json>) -> Filter {
        let flag = |name: &str| {
            value
                .and_then(|v| v.get(name))
                .and_then(Json::as_bool)
                .unwrap_or(false)
        };
        let uris = value
            .and_then(|v| v.get("resourceSubscriptions"))
            .and_then(Json::as_array)
            .map(|uris| {
                uris.iter()
                    .filter_map(Json::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Filter {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            uris,
        }
    }

    fn to_json(&self) -> Json {
        let mut filter = Map::new();
        for (set, name) in [
            (self.tools, "toolsListChanged"),
            (self.prompts, "promptsListChanged"),
            (self.resources, "resourcesListChanged"),
        ] {
            if set {
                filter.insert(name.into(), Json::Bool(true));
            }
        }
        if !self.uris.is_empty() {
            filter.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Json::Object(filter)
    }

    fn wants(&self, method: &str, params: Option<&Json>) -> bool {
        match method {
            "notifications/tools/list_changed" => self.tools,
            "notifications/prompts/list_changed" => self.prompts,
            "notifications/resources/list_changed" => self.resources,
            "notifications/resources/updated" => {
                let uri = params.and_then(|p| p.get("uri")).and_then(Json::as_str);
                uri.is_some_and(|uri| self.uris.iter().any(|u| u == uri))
            }
            _ => false,
        }
    }
}

/// A request answered on an event stream: what may be said on it before its response.
struct Streamed {
    tx: mpsc::UnboundedSender<Json>,
    /// The progress token the child sees, and the one the client chose.
    progress: Option<(Json, Json)>,
    log_level: Option<String>,
}

struct Listener {
    /// The `subscriptions/listen` request's id, which names the subscription.
    id: Json,
    filter: Filter,
    tx: mpsc::UnboundedSender<Json>,
}

#[derive(Default)]
struct HubState {
    closed: bool,
    requests: HashMap<u64, Streamed>,
    listeners: HashMap<u64, Listener>,
}

/// The client side of a stateless session: the streams its children's messages can reach.
#[derive(Default)]
pub struct Hub {
    next: AtomicU64,
    state: Mutex<HubState>,
    /// URI → how many listen streams want its updates. Held across the calls to the children,
    /// so a subscribe and an unsubscribe of one URI reach them in the order they were decided.
    subscribed: tokio::sync::Mutex<HashMap<String, usize>>,
}

impl Hub {
    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// An event stream for one request; the token the child should see when the client asked
    /// for progress.
    fn open_request(
        &self,
        progress: Option<Json>,
        log_level: Option<String>,
    ) -> (u64, Option<Json>, mpsc::UnboundedReceiver<Json>) {
        let key = self.next();
        let (tx, rx) = mpsc::unbounded_channel();
        let ours = progress.map(|theirs| (json!(format!("host-shim-progress-{key}")), theirs));
        let token = ours.as_ref().map(|(ours, _)| ours.clone());
        let mut state = lock(&self.state);
        if !state.closed {
            state.requests.insert(
                key,
                Streamed {
                    tx,
                    progress: ours,
                    log_level,
                },
            );
        }
        (key, token, rx)
    }

    fn close_request(&self, key: u64) {
        lock(&self.state).requests.remove(&key);
    }

    /// Registers a listen stream, its acknowledgement already on it so nothing precedes it.
    fn add_listener(
        &self,
        id: Json,
        filter: Filter,
    ) -> Option<(u64, mpsc::UnboundedReceiver<Json>)> {
        let key = self.next();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = lock(&self.state);
        if state.closed {
            return None;
        }
        let ack = json!({
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {
                "_meta": { META_SUBSCRIPTION_ID: id },
                "notifications": filter.to_json(),
            },
        });
        let _ = tx.send(ack);
        state.listeners.insert(key, Listener { id, filter, tx });
        Some((key, rx))
    }

    fn remove_listener(&self, key: u64) {
        lock(&self.state).listeners.remove(&key);
    }

    /// Takes one message from a child. Returns the answer for the child when it was a request
    /// (which a 2026-07-28 client cannot be sent).
    fn deliver(&self, mut message: Json) -> Option<Json> {
        let method = message
            .get("method")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(id) = message.get("id") {
            return Some(json!({
                "jsonrpc": "2.0", "id": id,
                "error": {
                    "code": RpcError::METHOD_NOT_FOUND,
                    "message": format!(
                        "{method}: the client speaks MCP 2026-07-28, where servers do not send \
                         requests; host-shim does not translate them into multi round-trip results"
                    ),
                },
            }));
        }
        let mut state = lock(&self.state);
        match method.as_str() {
            "notifications/progress" => {
                let token = message.get("params").and_then(|p| p.get("progressToken"));
                let found = state.requests.values().find_map(|r| match &r.progress {
                    Some((ours, theirs)) if Some(ours) == token => Some((r.tx.clone(), theirs)),
                    _ => None,
                });
                if let Some((tx, theirs)) = found {
                    if let Some(params) = message.get_mut("params").and_then(Json::as_object_mut) {
                        params.insert("progressToken".into(), theirs.clone());
                    }
                    let _ = tx.send(message);
                }
            }
            "notifications/message" => {
                let level = message
                    .get("params")
                    .and_then(|p| p.get("level"))
                    .and_then(Json::as_str)
                    .unwrap_or_default();
                // A child's log line names no request: every request of this identity that
                // asked for that severity sees it; the others must not.
                for request in state.requests.values() {
                    if request
                        .log_level
                        .as_deref()
                        .is_some_and(|wanted| envelope::log_wanted(wanted, level))
                    {
                        let _ = request.tx.send(message.clone());
                    }
                }
            }
            _ => {
                let params = message.get("params").cloned();
                state.listeners.retain(|_, listener| {
                    if !listener.filter.wants(&method, params.as_ref()) {
                        return true;
                    }
                    let mut tagged = message.clone();
                    set_meta(&mut tagged, "params", META_SUBSCRIPTION_ID, &listener.id);
                    listener.tx.send(tagged).is_ok()
                });
            }
        }
        None
    }

    /// Ends every stream: listen streams with the result that closes a subscription gracefully.
    pub fn close(&self, fanout: Option<&Fanout>) {
        let mut state = lock(&self.state);
        state.closed = true;
        for (_, listener) in state.listeners.drain() {
            let mut result = json!({ "resultType": "complete", "_meta": {} });
            set_meta(&mut result, "", META_SUBSCRIPTION_ID, &listener.id);
            if let Some(info) = fanout.and_then(server_info) {
                set_meta(&mut result, "", META_SERVER_INFO, &info);
            }
            let _ = listener.tx.send(response(listener.id, Ok(result)));
        }
        state.requests.clear();
    }
}

/// Sets `_meta[key]` in `message[at]` (`""`: in `message` itself).
fn set_meta(message: &mut Json, at: &str, key: &str, value: &Json) {
    let target = if at.is_empty() {
        Some(message)
    } else {
        message.as_object_mut().map(|object| {
            object
                .entry(at.to_string())
                .or_insert_with(|| Json::Object(Map::new()))
        })
    };
    if let Some(meta) = target
        .and_then(Json::as_object_mut)
        .map(|object| {
            object
                .entry("_meta".to_string())
                .or_insert_with(|| Json::Object(Map::new()))
        })
        .and_then(Json::as_object_mut)
    {
        meta.insert(key.to_string(), value.clone());
    }
}

/// What the children's messages reach: the session's hub, without keeping the session alive.
struct Sink(Weak<Session>);

impl ClientSink for Sink {
    fn deliver(&self, message: Json) {
        let Some(session) = self.0.upgrade() else {
            return;
        };
        let Some(hub) = &session.hub else { return };
        if let Some(answer) = hub.deliver(message) {
            session.accept(Message::Response(answer));
        }
    }
}

/// How the shim introduces itself to the children: as a client of the newest revision with a
/// handshake, with no client capabilities (it could not serve a server's requests).
fn initialize_params() -> Json {
    json!({
        "protocolVersion": KNOWN_VERSIONS.last().copied().unwrap_or("2025-11-25"),
        "capabilities": {},
        "clientInfo": {
            "name": "host-shim",
            "title": "host-shim, serving MCP 2026-07-28 clients",
            "version": env!("CARGO_PKG_VERSION"),
        },
    })
}

fn server_info(fanout: &Fanout) -> Option<Json> {
    fanout.initialize_result.get("serverInfo").cloned()
}

/// A result as 2026-07-28 requires it.
fn complete(method: &str, mut result: Json, fanout: &Fanout) -> Json {
    if let Some(object) = result.as_object_mut() {
        object
            .entry("resultType")
            .or_insert_with(|| json!("complete"));
        if CACHEABLE.contains(&method) {
            object.entry("ttlMs").or_insert_with(|| json!(0));
            object
                .entry("cacheScope")
                .or_insert_with(|| json!("private"));
        }
    }
    if let Some(info) = server_info(fanout) {
        set_meta(&mut result, "", META_SERVER_INFO, &info);
    }
    result
}

fn modern_error(mut error: Json) -> Json {
    if error.get("code").and_then(Json::as_i64) == Some(RESOURCE_NOT_FOUND)
        && let Some(object) = error.as_object_mut()
    {
        object.insert("code".into(), json!(RpcError::INVALID_PARAMS));
    }
    error
}

/// The HTTP status of a JSON-RPC error answered as JSON: 404 for an unknown method and 400 for
/// the errors the revision assigns 400 to (transports/streamable-http), else 200.
fn status_of(error: &Json) -> StatusCode {
    match error.get("code").and_then(Json::as_i64) {
        Some(RpcError::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(
            RpcError::PARSE
            | RpcError::INVALID_REQUEST
            | RpcError::INVALID_PARAMS
            | envelope::HEADER_MISMATCH
            | -32021
            | envelope::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

fn answer(id: Json, answer: Result<Json, Json>) -> Response {
    let status = answer.as_ref().err().map_or(StatusCode::OK, status_of);
    (status, axum::Json(response(id, answer))).into_response()
}

fn refusal(id: Json, error: &EnvelopeError) -> Response {
    crate::say!("2026-07-28 request refused: {error}");
    answer(id, Err(error.to_json()))
}

fn sse_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    // Proxies such as nginx buffer event streams unless told not to (the revision asks for it).
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers
}

/// Serves one 2026-07-28 POST.
pub async fn post(
    table: &Arc<SessionTable>,
    route: Arc<RouteSpec>,
    identity: Identity,
    headers: &HeaderMap,
    message: Message,
) -> Response {
    let (id, method, params) = match message {
        Message::Request { id, method, params } => (id, method, params),
        // No client notification is defined for this revision over HTTP (cancelling is closing
        // the response stream); accepting one changes nothing.
        Message::Notification { .. } => return StatusCode::ACCEPTED.into_response(),
        Message::Response(_) => {
            return answer(
                Json::Null,
                Err(RpcError::new(
                    RpcError::INVALID_REQUEST,
                    "a 2026-07-28 client sends no responses: servers do not send it requests",
                )
                .to_json()),
            );
        }
    };
    let envelope = match envelope::check(headers, &method, params.as_ref()) {
        Ok(envelope) => envelope,
        Err(error) => return refusal(id, &error),
    };
    if REMOVED.contains(&method.as_str()) {
        return answer(
            id,
            Err(RpcError::new(
                RpcError::METHOD_NOT_FOUND,
                format!("{method} is not part of MCP {}", envelope.version),
            )
            .to_json()),
        );
    }
    let session = match table.stateless(route.clone(), identity) {
        Ok(session) => session,
        Err(why) => {
            crate::say!(
                "2026-07-28 request on route '{}': refused: {why}",
                route.name
            );
            return http::refused(&why, &route).into_response();
        }
    };
    let busy = session.begin();
    let sink: Arc<dyn ClientSink> = Arc::new(Sink(Arc::downgrade(&session)));
    let fanout = match session.start(initialize_params(), sink).await {
        Ok(fanout) => fanout,
        Err(e) => {
            crate::say!(
                "route '{}': the MCP servers for 2026-07-28 requests did not start: {e}",
                route.name
            );
            drop(busy);
            if let Some(session) = table.remove(&session.id) {
                session.close().await;
            }
            return answer(id, Err(e.to_json()));
        }
    };
    match method.as_str() {
        "server/discover" => {
            let result = discover(fanout);
            answer(id, Ok(result))
        }
        "subscriptions/listen" => {
            let filter = Filter::parse(params.as_ref().and_then(|p| p.get("notifications")));
            listen(session.clone(), busy, id, filter).await
        }
        _ => {
            drop(busy);
            forward(session, id, method, params, envelope).await
        }
    }
}

/// `server/discover`, from what the children said when the shim initialized them.
fn discover(fanout: &Fanout) -> Json {
    let mut capabilities = fanout.capabilities().clone();
    if let Some(object) = capabilities.as_object_mut() {
        // Tasks left the core protocol in this revision (now an extension the shim does not
        // translate).
        object.remove("tasks");
    }
    let mut versions: Vec<&str> = KNOWN_VERSIONS.to_vec();
    versions.extend(envelope::MODERN_VERSIONS);
    let mut result = json!({
        "supportedVersions": versions,
        "capabilities": capabilities,
        "resultType": "complete",
        "ttlMs": 0,
        "cacheScope": "private",
    });
    if let (Some(instructions), Some(object)) = (
        fanout.initialize_result.get("instructions"),
        result.as_object_mut(),
    ) {
        object.insert("instructions".into(), instructions.clone());
    }
    if let Some(info) = server_info(fanout) {
        set_meta(&mut result, "", META_SERVER_INFO, &info);
    }
    result
}

/// Tells the children to stop working on a call whose client is gone, unless disarmed first.
struct CancelOnDrop {
    session: Arc<Session>,
    call: Json,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed
            && let Some(mcp) = self.session.mcp()
        {
            crate::say!(
                "session {}: the client closed request {}: cancelled on the server",
                crate::session::short(&self.session.id),
                self.call
            );
            mcp.notify(
                "notifications/cancelled",
                &json!({
                    "jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": { "requestId": self.call, "reason": "the client closed the request" },
                }),
            );
        }
    }
}

/// Any other request: passed to the children under an id of the shim's, its answer made a
/// 2026-07-28 result. With a progress token or a log level it is answered on an event stream
/// (what the child says about it first), else as JSON.
async fn forward(
    session: Arc<Session>,
    id: Json,
    method: String,
    params: Option<Json>,
    envelope: envelope::Envelope,
) -> Response {
    let Some(hub) = session.hub.clone() else {
        return answer(id, Err(RpcError::new(RpcError::SERVER, "no hub").to_json()));
    };
    let mut params = envelope::strip(params);
    let progress = params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("progressToken"))
        .cloned();
    let call = json!(format!("host-shim-{}", hub.next()));
    let mut guard = CancelOnDrop {
        session: session.clone(),
        call: call.clone(),
        armed: true,
    };
    if progress.is_none() && envelope.log_level.is_none() {
        let busy = session.begin();
        let answered = match session.mcp() {
            Some(mcp) => mcp.request(&call, &method, params).await,
            None => None,
        };
        guard.armed = false;
        drop(busy);
        let Some(reply) = answered else {
            return answer(
                id,
                Err(RpcError::new(RpcError::SERVER, "the request was cancelled").to_json()),
            );
        };
        let reply = match (reply, session.mcp()) {
            (Ok(result), Some(mcp)) => Ok(complete(&method, result, mcp)),
            (Ok(result), None) => Ok(result),
            (Err(error), _) => Err(modern_error(error)),
        };
        return answer(id, reply);
    }
    let (key, token, rx) = hub.open_request(progress, envelope.log_level.clone());
    if let (Some(token), Some(meta)) = (
        token,
        params
            .as_mut()
            .and_then(|p| p.get_mut("_meta"))
            .and_then(Json::as_object_mut),
    ) {
        meta.insert("progressToken".into(), token);
    }
    let busy = session.begin();
    let tx = lock(&hub.state).requests.get(&key).map(|r| r.tx.clone());
    tokio::spawn(async move {
        let Some(tx) = tx else { return };
        let answered = {
            let Some(mcp) = session.mcp() else { return };
            tokio::select! {
                answered = mcp.request(&call, &method, params) => answered,
                // The client closed the stream: that is how this revision cancels.
                () = tx.closed() => None,
            }
        };
        hub.close_request(key);
        if let Some(reply) = answered {
            guard.armed = false;
            let reply = match (reply, session.mcp()) {
                (Ok(result), Some(mcp)) => Ok(complete(&method, result, mcp)),
                (Ok(result), None) => Ok(result),
                (Err(error), _) => Err(modern_error(error)),
            };
            let _ = tx.send(response(id, reply));
        }
        drop(guard);
        drop(busy);
    });
    http::event_stream(rx, None, (), sse_headers())
}

/// Ends a listen stream's subscriptions when the client closes it.
struct ListenGuard {
    session: Arc<Session>,
    key: u64,
    uris: Vec<String>,
    _busy: crate::session::Busy,
}

impl Drop for ListenGuard {
    fn drop(&mut self) {
        let Some(hub) = self.session.hub.clone() else {
            return;
        };
        hub.remove_listener(self.key);
        let (session, uris) = (self.session.clone(), std::mem::take(&mut self.uris));
        if uris.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut subscribed = hub.subscribed.lock().await;
                for uri in uris {
                    let left = subscribed.get(&uri).map_or(0, |n| n.saturating_sub(1));
                    if left > 0 {
                        subscribed.insert(uri, left);
                        continue;
                    }
                    subscribed.remove(&uri);
                    if let Some(mcp) = session.mcp() {
                        let call = json!(format!("host-shim-{}", hub.next()));
                        let _ = mcp
                            .request(&call, "resources/unsubscribe", Some(json!({ "uri": uri })))
                            .await;
                    }
                }
            });
        }
    }
}

/// `subscriptions/listen`: grants what the children can deliver, subscribes them to the
/// requested resources, and keeps the stream (and the children) for as long as the client does.
async fn listen(
    session: Arc<Session>,
    busy: crate::session::Busy,
    id: Json,
    requested: Filter,
) -> Response {
    let (Some(hub), Some(mcp)) = (session.hub.clone(), session.mcp()) else {
        return answer(id, Err(RpcError::new(RpcError::SERVER, "no hub").to_json()));
    };
    let capabilities = mcp.capabilities();
    let declared = |kind: &str, flag: &str| {
        capabilities
            .get(kind)
            .and_then(|c| c.get(flag))
            .and_then(Json::as_bool)
            .unwrap_or(false)
    };
    let mut granted = Filter {
        tools: requested.tools && declared("tools", "listChanged"),
        prompts: requested.prompts && declared("prompts", "listChanged"),
        resources: requested.resources && declared("resources", "listChanged"),
        uris: Vec::new(),
    };
    if declared("resources", "subscribe") {
        let mut subscribed = hub.subscribed.lock().await;
        for uri in requested.uris {
            if granted.uris.contains(&uri) {
                continue;
            }
            let count = subscribed.get(&uri).copied().unwrap_or(0);
            if count == 0 {
                let call = json!(format!("host-shim-{}", hub.next()));
                let made = mcp
                    .request(&call, "resources/subscribe", Some(json!({ "uri": uri })))
                    .await;
                if !matches!(made, Some(Ok(_))) {
                    crate::say!(
                        "subscriptions/listen: the MCP server did not subscribe to {uri:?}"
                    );
                    continue;
                }
            }
            subscribed.insert(uri.clone(), count + 1);
            granted.uris.push(uri);
        }
    }
    let Some((key, rx)) = hub.add_listener(id.clone(), granted.clone()) else {
        return answer(
            id,
            Err(RpcError::new(RpcError::SERVER, "the shim is stopping").to_json()),
        );
    };
    let guard = ListenGuard {
        session,
        key,
        uris: granted.uris,
        _busy: busy,
    };
    http::event_stream(rx, None, guard, sse_headers())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_get_what_they_opted_in_to_tagged_with_their_id() {
        let hub = Hub::default();
        let uri = Filter::parse(Some(&json!({ "resourceSubscriptions": ["demo://a"] })));
        let tools = Filter::parse(Some(&json!({ "toolsListChanged": true })));
        let (_, mut on_uri) = hub.add_listener(json!("listen-1"), uri).unwrap();
        let (_, mut on_tools) = hub.add_listener(json!(7), tools).unwrap();
        let ack = on_uri.try_recv().unwrap();
        assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
        assert_eq!(ack["params"]["_meta"][META_SUBSCRIPTION_ID], "listen-1");
        assert_eq!(
            ack["params"]["notifications"],
            json!({ "resourceSubscriptions": ["demo://a"] })
        );
        on_tools.try_recv().unwrap();

        let updated = |uri: &str| json!({ "jsonrpc": "2.0", "method": "notifications/resources/updated", "params": { "uri": uri } });
        assert!(hub.deliver(updated("demo://b")).is_none());
        hub.deliver(updated("demo://a"));
        hub.deliver(json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" }));
        let got = on_uri.try_recv().unwrap();
        assert_eq!(got["params"]["uri"], "demo://a");
        assert_eq!(got["params"]["_meta"][META_SUBSCRIPTION_ID], "listen-1");
        assert!(on_uri.try_recv().is_err());
        let got = on_tools.try_recv().unwrap();
        assert_eq!(got["method"], "notifications/tools/list_changed");
        assert_eq!(got["params"]["_meta"][META_SUBSCRIPTION_ID], 7);
        assert!(on_tools.try_recv().is_err());

        hub.close(None);
        let end = on_uri.try_recv().unwrap();
        assert_eq!(end["id"], "listen-1");
        assert_eq!(end["result"]["resultType"], "complete");
        assert!(on_uri.try_recv().is_err());
    }

    #[test]
    fn progress_and_logs_reach_only_the_request_that_asked() {
        let hub = Hub::default();
        let (_, token, mut with_progress) = hub.open_request(Some(json!(1)), None);
        let (_, _, mut with_logs) = hub.open_request(None, Some("warning".into()));
        let (_, _, mut quiet) = hub.open_request(None, None);
        let token = token.unwrap();
        hub.deliver(
            json!({ "jsonrpc": "2.0", "method": "notifications/progress",
            "params": { "progressToken": token, "progress": 1 } }),
        );
        // Another request's token, as the client chose it, names nothing the child uses.
        hub.deliver(
            json!({ "jsonrpc": "2.0", "method": "notifications/progress",
            "params": { "progressToken": 1, "progress": 2 } }),
        );
        let got = with_progress.try_recv().unwrap();
        assert_eq!(got["params"], json!({ "progressToken": 1, "progress": 1 }));
        assert!(with_progress.try_recv().is_err());

        for level in ["info", "error"] {
            hub.deliver(json!({ "jsonrpc": "2.0", "method": "notifications/message",
                "params": { "level": level, "data": level } }));
        }
        assert_eq!(with_logs.try_recv().unwrap()["params"]["level"], "error");
        assert!(with_logs.try_recv().is_err());
        assert!(quiet.try_recv().is_err());
        assert!(with_progress.try_recv().is_err());
    }

    #[test]
    fn a_childs_request_is_refused_at_once() {
        let hub = Hub::default();
        let answer = hub
            .deliver(json!({ "jsonrpc": "2.0", "id": 3, "method": "sampling/createMessage" }))
            .unwrap();
        assert_eq!(answer["id"], 3);
        assert_eq!(answer["error"]["code"], RpcError::METHOD_NOT_FOUND);
    }

    #[test]
    fn errors_get_the_status_and_code_of_the_revision() {
        assert_eq!(
            modern_error(json!({ "code": -32002, "message": "nope" }))["code"],
            -32602
        );
        assert_eq!(status_of(&json!({ "code": -32601 })), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(&json!({ "code": -32020 })),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status_of(&json!({ "code": -32000 })), StatusCode::OK);
    }
}
