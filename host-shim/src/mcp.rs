//! The MCP meaning of one session: the targets of a route, each a child of this session only,
//! served to the client as one MCP server.
//!
//! With one target the shim is a transparent relay: every message goes through unchanged except
//! for JSON-RPC ids, so any method (including ones newer than this code) works. With several,
//! `initialize` goes to every child and the answers are merged; the lists (`tools/list`,
//! `prompts/list`, `resources/list`, `resources/templates/list`) are fanned out, every page of
//! every target fetched and merged, names prefixed `<target>_<name>`; calls are routed back by
//! that prefix, resources by the URI map the lists built, else by asking each target in turn.
//! The prefix is split by the filter's own function (the longest target name wins when one
//! prefixes another), so the tool the filter judged is the tool the shim calls.
//!
//! Ids are always remapped, in both directions: the shim makes its own calls to a child (so
//! fan-out, cancellation and a child's death are handled per call), and a child's requests to
//! the client (sampling, elicitation, roots) get a session-wide id so the client's answer finds
//! its way back to the child that asked.
//!
//! Why not `rmcp`: its streamable HTTP server runs one typed `ServerHandler` per session and
//! re-serialises every message through its model, negotiating the protocol version itself.
//! A relay must pass messages through byte-for-byte in meaning (fields newer than the SDK, such
//! as the `tasks` capability the pinned server-everything already advertises, must survive),
//! and pass the negotiated version through, so this works on `serde_json::Value`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Map, Value as Json, json};

use mcp_auth_filter::target::{self, TargetName};

use crate::config::Target;
use crate::stdio::{OnMessage, StdioError, StdioServer};

/// A slow first `npx` run downloads nothing here (`--no-install` or a local install), but
/// starting node still takes a while on a loaded machine.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// A server that pages forever must not hold a list request forever.
const MAX_PAGES: usize = 1000;

/// A JSON-RPC error the shim itself answers with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub const PARSE: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    /// Implementation-defined server error: the MCP server behind the shim is gone.
    pub const SERVER: i64 = -32000;

    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> Json {
        json!({ "code": self.code, "message": self.message })
    }
}

impl From<StdioError> for RpcError {
    fn from(e: StdioError) -> RpcError {
        RpcError::new(RpcError::SERVER, e.to_string())
    }
}

/// One JSON-RPC message from the client.
#[derive(Debug, Clone)]
pub enum Message {
    Request {
        id: Json,
        method: String,
        params: Option<Json>,
    },
    Notification {
        method: String,
        message: Json,
    },
    Response(Json),
}

impl Message {
    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response(_) => None,
        }
    }

    /// The params of a request or notification.
    pub fn params(&self) -> Option<&Json> {
        match self {
            Message::Request { params, .. } => params.as_ref(),
            Message::Notification { message, .. } => message.get("params"),
            Message::Response(_) => None,
        }
    }

    pub fn parse(message: Json) -> Result<Message, RpcError> {
        let invalid = |why: &str| RpcError::new(RpcError::INVALID_REQUEST, why.to_string());
        let Some(object) = message.as_object() else {
            return Err(invalid("a JSON-RPC message must be an object"));
        };
        if object.get("jsonrpc").and_then(Json::as_str) != Some("2.0") {
            return Err(invalid("\"jsonrpc\": \"2.0\" is required"));
        }
        let id = object
            .get("id")
            .filter(|id| id.is_string() || id.is_number());
        match (object.get("method"), id) {
            (Some(Json::String(method)), Some(id)) => Ok(Message::Request {
                id: id.clone(),
                method: method.clone(),
                params: object.get("params").cloned(),
            }),
            (Some(Json::String(method)), None) if object.get("id").is_none() => {
                Ok(Message::Notification {
                    method: method.clone(),
                    message,
                })
            }
            (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {
                Ok(Message::Response(message))
            }
            _ => Err(invalid(
                "not a request, notification or response (check method and id)",
            )),
        }
    }
}

/// Where a child's messages for the client go (the session's streams).
pub trait ClientSink: Send + Sync {
    fn deliver(&self, message: Json);
}

/// Requests children sent to the client, by the id the client sees.
#[derive(Default)]
struct ServerRequests {
    next: AtomicU64,
    by_id: Mutex<HashMap<u64, (usize, Json)>>,
}

struct Upstream {
    name: String,
    server: StdioServer,
    capabilities: Json,
}

/// The MCP server one session sees: its children and the state to route between them.
pub struct Fanout {
    upstreams: Vec<Upstream>,
    /// The upstreams' names, in order, as the filter's split takes them.
    names: Vec<TargetName>,
    prefixed: bool,
    server_requests: Arc<ServerRequests>,
    /// Resource URI → target, learnt from `resources/list`.
    resources: Mutex<HashMap<String, usize>>,
    /// Client request id (as JSON text) → the child calls made for it, for cancellation.
    inflight: Mutex<HashMap<String, Vec<(usize, u64)>>>,
    pub protocol_version: String,
    pub initialize_result: Json,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The answer to a client request: `Ok(result)` or `Err(error object)`; `None` when the client
/// cancelled it (no response is sent then).
type Answer = Option<Result<Json, Json>>;

impl Fanout {
    /// Starts a child per target, initializes each with the client's `params`, and merges the
    /// answers. On any failure every child is stopped and the error names the target.
    pub async fn start(
        route: &str,
        targets: &[Target],
        session_id: &str,
        params: Option<Json>,
        sink: Arc<dyn ClientSink>,
    ) -> Result<Fanout, RpcError> {
        let server_requests = Arc::new(ServerRequests::default());
        let short_id = crate::session::short(session_id);
        let mut servers = Vec::new();
        for (index, target) in targets.iter().enumerate() {
            let Some(spec) = &target.stdio else {
                return Err(RpcError::new(
                    RpcError::SERVER,
                    format!("MCP server '{}' has no stdio command", target.name),
                ));
            };
            let on_message = on_child_message(index, server_requests.clone(), sink.clone());
            let prefix = format!("[{} {short_id}]", target.name);
            servers.push(StdioServer::spawn(&target.name, spec, prefix, on_message)?);
        }
        if servers.is_empty() {
            return Err(RpcError::new(
                RpcError::SERVER,
                format!("route '{route}' has no MCP targets"),
            ));
        }
        // `Err(None)`: no answer in time.
        let calls = servers.iter().map(|server| async {
            let call = server.call("initialize", params.clone()).map_err(Some)?;
            match tokio::time::timeout(INIT_TIMEOUT, call.wait()).await {
                Ok(answer) => answer.map_err(Some),
                Err(_) => Err(None),
            }
        });
        let answers = join_all(calls).await;
        let mut results = Vec::new();
        let mut failure = None;
        for ((target, server), answer) in targets.iter().zip(&servers).zip(answers) {
            match answer {
                Ok(Ok(result)) => results.push(result),
                Ok(Err(error)) => {
                    let message = error.get("message").and_then(Json::as_str).unwrap_or("");
                    failure.get_or_insert(RpcError::new(
                        error
                            .get("code")
                            .and_then(Json::as_i64)
                            .unwrap_or(RpcError::SERVER),
                        format!("MCP server '{}' refused initialize: {message}", target.name),
                    ));
                }
                Err(None) => {
                    failure.get_or_insert(RpcError::new(
                        RpcError::SERVER,
                        format!(
                            "MCP server '{}' (pid {}) did not answer initialize within {}s",
                            target.name,
                            server.pid(),
                            INIT_TIMEOUT.as_secs()
                        ),
                    ));
                }
                Err(Some(e)) => {
                    failure.get_or_insert(e.into());
                }
            }
        }
        if let Some(failure) = failure {
            join_all(servers.iter().map(StdioServer::shutdown)).await;
            return Err(failure);
        }
        let prefixed = servers.len() > 1;
        let upstreams: Vec<Upstream> = targets
            .iter()
            .zip(servers)
            .zip(&results)
            .map(|((target, server), result)| Upstream {
                name: target.name.clone(),
                server,
                capabilities: result.get("capabilities").cloned().unwrap_or(json!({})),
            })
            .collect();
        let initialize_result = if prefixed {
            merge_initialize(route, &upstreams, &results)
        } else {
            results.into_iter().next().unwrap_or(json!({}))
        };
        let protocol_version = initialize_result
            .get("protocolVersion")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let names = match upstreams
            .iter()
            .map(|u| TargetName::new(&u.name))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(names) => names,
            Err(e) => {
                join_all(upstreams.iter().map(|u| u.server.shutdown())).await;
                return Err(RpcError::new(
                    RpcError::SERVER,
                    format!("a target of route {route:?}: {e}"),
                ));
            }
        };
        Ok(Fanout {
            upstreams,
            names,
            prefixed,
            server_requests,
            resources: Mutex::default(),
            inflight: Mutex::default(),
            protocol_version,
            initialize_result,
        })
    }

    /// Stops every child and waits until each is reaped.
    pub async fn shutdown(&self) {
        join_all(self.upstreams.iter().map(|u| u.server.shutdown())).await;
    }

    pub fn pids(&self) -> Vec<u32> {
        self.upstreams.iter().map(|u| u.server.pid()).collect()
    }

    /// Whether every child is still running.
    pub fn alive(&self) -> bool {
        self.upstreams.iter().all(|u| !u.server.exited())
    }

    /// The merged capabilities the children declared in their `initialize` answers.
    pub fn capabilities(&self) -> &Json {
        self.initialize_result
            .get("capabilities")
            .unwrap_or(&Json::Null)
    }

    /// Answers one client request.
    pub async fn request(&self, id: &Json, method: &str, params: Option<Json>) -> Answer {
        if method == "ping" {
            return Some(Ok(json!({})));
        }
        if !self.prefixed {
            return self.forward(id, 0, method, params).await;
        }
        match method {
            "tools/list" => self.list(id, method, "tools", "tools").await,
            "prompts/list" => self.list(id, method, "prompts", "prompts").await,
            "resources/list" => self.list(id, method, "resources", "resources").await,
            "resources/templates/list" => {
                self.list(id, method, "resources", "resourceTemplates")
                    .await
            }
            "tools/call" | "prompts/get" => {
                let mut params = params.unwrap_or(json!({}));
                let name = params.get("name").and_then(Json::as_str).unwrap_or("");
                let (index, name) = match self.by_prefix(name) {
                    Ok(found) => found,
                    Err(e) => return Some(Err(e.to_json())),
                };
                if let Some(object) = params.as_object_mut() {
                    object.insert("name".into(), Json::String(name));
                }
                self.forward(id, index, method, Some(params)).await
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri = params
                    .as_ref()
                    .and_then(|p| p.get("uri"))
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string();
                self.by_uri(id, &uri, method, params).await
            }
            "completion/complete" => {
                let reference = params.as_ref().and_then(|p| p.get("ref"));
                let kind = reference.and_then(|r| r.get("type")).and_then(Json::as_str);
                let mut params = params.clone().unwrap_or(json!({}));
                match kind {
                    Some("ref/prompt") => {
                        let name = reference
                            .and_then(|r| r.get("name"))
                            .and_then(Json::as_str)
                            .unwrap_or("");
                        let (index, name) = match self.by_prefix(name) {
                            Ok(found) => found,
                            Err(e) => return Some(Err(e.to_json())),
                        };
                        if let Some(r) = params.get_mut("ref").and_then(Json::as_object_mut) {
                            r.insert("name".into(), Json::String(name));
                        }
                        self.forward(id, index, method, Some(params)).await
                    }
                    _ => {
                        let uri = reference
                            .and_then(|r| r.get("uri"))
                            .and_then(Json::as_str)
                            .unwrap_or("")
                            .to_string();
                        self.by_uri(id, &uri, method, Some(params)).await
                    }
                }
            }
            "logging/setLevel" => {
                let calls = (0..self.upstreams.len())
                    .map(|index| self.forward(id, index, method, params.clone()));
                for answer in join_all(calls).await {
                    match answer {
                        Some(Ok(_)) => {}
                        other => return other,
                    }
                }
                Some(Ok(json!({})))
            }
            _ => Some(Err(RpcError::new(
                RpcError::METHOD_NOT_FOUND,
                format!("{method} is not supported on a route with several MCP targets"),
            )
            .to_json())),
        }
    }

    /// Passes on a client notification.
    pub fn notify(&self, method: &str, message: &Json) {
        if method == "notifications/cancelled" {
            let params = message.get("params");
            let Some(request) = params.and_then(|p| p.get("requestId")) else {
                return;
            };
            let calls = lock(&self.inflight).remove(&request.to_string());
            let reason = params.and_then(|p| p.get("reason"));
            for (index, call) in calls.unwrap_or_default() {
                if let Some(upstream) = self.upstreams.get(index) {
                    upstream.server.cancel(call, reason);
                }
            }
            return;
        }
        for upstream in &self.upstreams {
            // A dead child's error reaches the client on its next request.
            let _ = upstream.server.send(message);
        }
    }

    /// Passes the client's answer to a child's request back to that child, with its own id.
    pub fn respond(&self, mut message: Json) {
        let id = message.get("id").and_then(Json::as_u64);
        let found = id.and_then(|id| lock(&self.server_requests.by_id).remove(&id));
        let Some((index, original)) = found else {
            crate::say!("mcp: the client answered a request nobody is waiting for: {message}");
            return;
        };
        if let (Some(object), Some(upstream)) = (message.as_object_mut(), self.upstreams.get(index))
        {
            object.insert("id".into(), original);
            let _ = upstream.server.send(&message);
        }
    }

    async fn forward(&self, id: &Json, index: usize, method: &str, params: Option<Json>) -> Answer {
        let Some(upstream) = self.upstreams.get(index) else {
            return Some(Err(
                RpcError::new(RpcError::SERVER, "no such target").to_json()
            ));
        };
        let call = match upstream.server.call(method, params) {
            Ok(call) => call,
            Err(e) => return Some(Err(RpcError::from(e).to_json())),
        };
        let key = id.to_string();
        lock(&self.inflight)
            .entry(key.clone())
            .or_default()
            .push((index, call.id));
        let call_id = call.id;
        let answer = call.wait().await;
        {
            let mut inflight = lock(&self.inflight);
            if let Some(calls) = inflight.get_mut(&key) {
                calls.retain(|c| *c != (index, call_id));
                if calls.is_empty() {
                    inflight.remove(&key);
                }
            }
        }
        match answer {
            Ok(reply) => Some(reply),
            Err(StdioError::Cancelled) => None,
            Err(e) => Some(Err(RpcError::from(e).to_json())),
        }
    }

    /// Every page of `method` from every target that has `capability`, merged into one page.
    async fn list(&self, id: &Json, method: &str, capability: &str, key: &str) -> Answer {
        let wanted = self
            .upstreams
            .iter()
            .enumerate()
            .filter(|(_, u)| u.capabilities.get(capability).is_some())
            .map(|(index, _)| index);
        let all = join_all(wanted.map(|index| async move {
            let mut items = Vec::new();
            let mut cursor: Option<Json> = None;
            for _ in 0..MAX_PAGES {
                let params = cursor.take().map(|c| json!({ "cursor": c }));
                let page = match self.forward(id, index, method, params).await? {
                    Ok(page) => page,
                    Err(error) => return Some((index, Err(error))),
                };
                if let Some(Json::Array(page_items)) = page.get(key) {
                    items.extend(page_items.iter().cloned());
                }
                match page.get("nextCursor") {
                    Some(next) if !next.is_null() => cursor = Some(next.clone()),
                    _ => break,
                }
            }
            Some((index, Ok(items)))
        }))
        .await;
        let mut merged = Vec::new();
        for answer in all {
            let (index, items) = answer?;
            let Some(upstream) = self.upstreams.get(index) else {
                continue;
            };
            let items = match items {
                Ok(items) => items,
                Err(error) => return Some(Err(error)),
            };
            for mut item in items {
                if key == "resources"
                    && let Some(uri) = item.get("uri").and_then(Json::as_str)
                {
                    lock(&self.resources).insert(uri.to_string(), index);
                }
                if let Some(Json::String(name)) = item.get_mut("name") {
                    let Some(owner) = self.names.get(index) else {
                        continue;
                    };
                    let prefixed = owner.prefix(name);
                    // Tools and prompts are called back by name; one that would reach another
                    // target (`a`'s `b_c` is `a_b`'s `c`) is not offered. Resources go by URI.
                    if matches!(key, "tools" | "prompts")
                        && target::split(&prefixed, &self.names).0 != owner.as_str()
                    {
                        crate::say!(
                            "{method}: {prefixed:?} of target '{}' would call another target; left out",
                            upstream.name
                        );
                        continue;
                    }
                    *name = prefixed;
                }
                merged.push(item);
            }
        }
        let mut page = Map::new();
        page.insert(key.into(), Json::Array(merged));
        Some(Ok(Json::Object(page)))
    }

    fn by_prefix(&self, name: &str) -> Result<(usize, String), RpcError> {
        let (target, rest) = target::split(name, &self.names);
        self.names
            .iter()
            .position(|n| !target.is_empty() && n.as_str() == target)
            .map(|index| (index, rest.to_string()))
            .ok_or_else(|| {
                let targets: Vec<&str> = self.upstreams.iter().map(|u| u.name.as_str()).collect();
                RpcError::new(
                    RpcError::INVALID_PARAMS,
                    format!(
                        "unknown name {name:?}: names on this route are <target>_<name> with target one of {targets:?}"
                    ),
                )
            })
    }

    /// A resource goes to the target that listed it; an unlisted URI (from a template, or a
    /// client that skipped the list) is tried on each target until one knows it.
    async fn by_uri(&self, id: &Json, uri: &str, method: &str, params: Option<Json>) -> Answer {
        let known = lock(&self.resources).get(uri).copied();
        if let Some(index) = known {
            return self.forward(id, index, method, params).await;
        }
        let mut last = None;
        for (index, upstream) in self.upstreams.iter().enumerate() {
            if upstream.capabilities.get("resources").is_none()
                && upstream.capabilities.get("completions").is_none()
            {
                continue;
            }
            match self.forward(id, index, method, params.clone()).await? {
                Ok(result) => {
                    if method == "resources/read" {
                        lock(&self.resources).insert(uri.to_string(), index);
                    }
                    return Some(Ok(result));
                }
                Err(error) => last = Some(error),
            }
        }
        Some(Err(last.unwrap_or_else(|| {
            RpcError::new(
                RpcError::INVALID_PARAMS,
                format!("no MCP server on this route knows {uri:?}"),
            )
            .to_json()
        })))
    }
}

/// A child's notifications pass as they are; its requests get a session-wide id first.
fn on_child_message(
    index: usize,
    server_requests: Arc<ServerRequests>,
    sink: Arc<dyn ClientSink>,
) -> OnMessage {
    Arc::new(move |mut message: Json| {
        if let Some(object) = message.as_object_mut() {
            if let Some(original) = object.get("id").cloned() {
                let id = server_requests.next.fetch_add(1, Ordering::Relaxed) + 1;
                lock(&server_requests.by_id).insert(id, (index, original));
                object.insert("id".into(), json!(id));
            } else if object.get("method").and_then(Json::as_str) == Some("notifications/cancelled")
            {
                // The child gives up on one of its requests: name it as the client knows it.
                let by_id = lock(&server_requests.by_id);
                let request = object.get("params").and_then(|p| p.get("requestId"));
                let client_id = by_id
                    .iter()
                    .find(|(_, (i, original))| *i == index && Some(original) == request)
                    .map(|(id, _)| *id);
                if let (Some(id), Some(params)) = (
                    client_id,
                    object.get_mut("params").and_then(Json::as_object_mut),
                ) {
                    params.insert("requestId".into(), json!(id));
                }
            }
        }
        sink.deliver(message);
    })
}

/// One server made of several: the lowest protocol version any child chose (so no child is
/// spoken to in a revision it did not accept), the union of capabilities, the route's name.
fn merge_initialize(route: &str, upstreams: &[Upstream], results: &[Json]) -> Json {
    let versions: Vec<&str> = results
        .iter()
        .filter_map(|r| r.get("protocolVersion").and_then(Json::as_str))
        .collect();
    let version = versions.iter().min().copied().unwrap_or_default();
    if versions.iter().any(|v| *v != version) {
        crate::say!("mcp: route '{route}': targets chose versions {versions:?}; using {version}");
    }
    let mut capabilities = json!({});
    for upstream in upstreams {
        merge_capabilities(&mut capabilities, &upstream.capabilities);
    }
    // Task ids are not routed back to their target; do not offer what would fail.
    if let Some(object) = capabilities.as_object_mut() {
        object.remove("tasks");
    }
    let instructions: Vec<String> = upstreams
        .iter()
        .zip(results)
        .filter_map(|(u, r)| {
            let text = r.get("instructions").and_then(Json::as_str)?;
            Some(format!(
                "## {name} (tools and prompts prefixed `{name}_`)\n\n{text}",
                name = u.name
            ))
        })
        .collect();
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": { "name": route, "version": env!("CARGO_PKG_VERSION") },
    });
    if !instructions.is_empty()
        && let Some(object) = result.as_object_mut()
    {
        object.insert(
            "instructions".into(),
            Json::String(instructions.join("\n\n")),
        );
    }
    result
}

/// Objects merge key by key, flags are true if any target says so.
fn merge_capabilities(into: &mut Json, from: &Json) {
    let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) else {
        return;
    };
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (None, _) => {
                into.insert(key.clone(), value.clone());
            }
            (Some(existing @ Json::Object(_)), Json::Object(_)) => {
                merge_capabilities(existing, value);
            }
            (Some(Json::Bool(existing)), Json::Bool(flag)) => *existing |= *flag,
            (Some(_), _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified() {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        assert!(matches!(
            Message::parse(request).unwrap(),
            Message::Request { .. }
        ));
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert!(matches!(
            Message::parse(note).unwrap(),
            Message::Notification { .. }
        ));
        let response = json!({"jsonrpc": "2.0", "id": "x", "result": {}});
        assert!(matches!(
            Message::parse(response).unwrap(),
            Message::Response(_)
        ));
        assert!(Message::parse(json!({"id": 1, "method": "x"})).is_err());
        assert!(Message::parse(json!({"jsonrpc": "2.0", "id": 1})).is_err());
    }

    #[test]
    fn capabilities_merge_as_a_union() {
        let mut merged = json!({});
        merge_capabilities(&mut merged, &json!({"tools": {"listChanged": false}}));
        merge_capabilities(
            &mut merged,
            &json!({"tools": {"listChanged": true}, "prompts": {}}),
        );
        assert_eq!(
            merged,
            json!({"tools": {"listChanged": true}, "prompts": {}})
        );
    }
}
