//! MCP's JSON-RPC, as an authorizing proxy must read it: strictly (a body that is not
//! JSON-RPC, or that repeats a key, is refused rather than passed on unclassified), message by
//! message, and with the list responses rewritten so each caller sees only what it may use.
//!
//! What CEL sees of a message is [`McpView`]: `mcp.method`, and for the methods that name a
//! thing, `mcp.tool` / `mcp.prompt` (`name`, `target`, `arguments`) or `mcp.resource` (`uri`,
//! `target`). `initialize`, `ping`, notifications and responses have no view: only rules that
//! do not read `mcp` apply to them.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use cel::Value;
use cel::objects::{Key, Map as CelMap};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json, json};

/// Request bodies larger than this are refused (413) on routes with MCP-level rules.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The thing a message names, which decides which rules apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
}

impl Kind {
    pub fn field(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Prompt => "prompt",
            Kind::Resource => "resource",
        }
    }

    pub fn from_field(field: &str) -> Option<Kind> {
        match field {
            "tool" => Some(Kind::Tool),
            "prompt" => Some(Kind::Prompt),
            "resource" => Some(Kind::Resource),
            _ => None,
        }
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("a JSON-RPC message repeats the key {0:?}")]
    DuplicateKey(String),
    #[error("not a JSON-RPC 2.0 message: {0}")]
    NotJsonRpc(&'static str),
    #[error("an empty batch")]
    EmptyBatch,
}

impl BodyError {
    /// The JSON-RPC error code (parse error, or invalid request).
    pub fn code(&self) -> i64 {
        match self {
            BodyError::NotJson(_) => -32700,
            _ => -32600,
        }
    }
}

/// One JSON-RPC message from the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `None` for a notification.
    pub id: Option<Json>,
    /// `None` for a response (to a server's request).
    pub method: Option<String>,
    pub params: Option<Json>,
}

impl Message {
    pub fn is_request(&self) -> bool {
        self.id.is_some() && self.method.is_some()
    }
}

/// A request body: one message or a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub messages: Vec<Message>,
    pub batch: bool,
}

/// Parses a POST body as JSON-RPC 2.0, refusing duplicate keys at any depth (the last one
/// winning is how a deny-list is bypassed: the proxy and the server must read the same value).
pub fn parse_body(bytes: &[u8]) -> Result<Body, BodyError> {
    let json = strict_json(bytes)?;
    match json {
        Json::Array(items) => {
            if items.is_empty() {
                return Err(BodyError::EmptyBatch);
            }
            let messages = items.into_iter().map(message).collect::<Result<_, _>>()?;
            Ok(Body {
                messages,
                batch: true,
            })
        }
        other => Ok(Body {
            messages: vec![message(other)?],
            batch: false,
        }),
    }
}

fn message(json: Json) -> Result<Message, BodyError> {
    let Json::Object(mut fields) = json else {
        return Err(BodyError::NotJsonRpc("a message must be an object"));
    };
    if fields.get("jsonrpc") != Some(&Json::from("2.0")) {
        return Err(BodyError::NotJsonRpc("\"jsonrpc\" must be \"2.0\""));
    }
    let method = match fields.remove("method") {
        None => None,
        Some(Json::String(m)) => Some(m),
        Some(_) => return Err(BodyError::NotJsonRpc("\"method\" must be a string")),
    };
    let id = fields.remove("id");
    if let Some(id) = &id
        && !(id.is_string() || id.is_number() || id.is_null())
    {
        return Err(BodyError::NotJsonRpc("\"id\" must be a string or a number"));
    }
    if method.is_none() && id.is_none() {
        return Err(BodyError::NotJsonRpc("neither a request nor a response"));
    }
    Ok(Message {
        id,
        method,
        params: fields.remove("params"),
    })
}

/// JSON with every object's keys unique.
pub fn strict_json(bytes: &[u8]) -> Result<Json, BodyError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = <Strict as serde::Deserialize>::deserialize(&mut de).map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix(DUPLICATE) {
            Some(rest) => {
                BodyError::DuplicateKey(rest.split(" at line").next().unwrap_or(rest).to_string())
            }
            None => BodyError::NotJson(text),
        }
    })?;
    de.end().map_err(|e| BodyError::NotJson(e.to_string()))?;
    Ok(value.0)
}

const DUPLICATE: &str = "duplicate key ";

struct Strict(Json);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Json, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let Strict(value) = access.next_value()?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE}{key:?}")));
            }
            map.insert(key, value);
        }
        Ok(Json::Object(map))
    }
}

/// What the rules see of one message that names a tool, a prompt or a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct McpView {
    pub method: String,
    pub kind: Kind,
    /// The tool or prompt name without the target prefix, or the resource URI.
    pub name: String,
    /// The target (stdio server) that serves it, when the route names its targets.
    pub target: String,
    pub arguments: Json,
}

impl McpView {
    /// `mcp` as CEL sees it.
    pub fn to_cel(&self) -> Value {
        let mut thing: Vec<(&str, Value)> = vec![("target", Value::from(self.target.as_str()))];
        match self.kind {
            Kind::Resource => thing.push(("uri", Value::from(self.name.as_str()))),
            _ => {
                thing.push(("name", Value::from(self.name.as_str())));
                thing.push(("arguments", crate::authz::json(&self.arguments)));
            }
        }
        cel_map(vec![
            ("method", Value::from(self.method.as_str())),
            (self.kind.field(), cel_map(thing)),
        ])
    }
}

fn cel_map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(CelMap {
        map: Arc::new(
            entries
                .into_iter()
                .map(|(k, v)| (Key::String(Arc::new(k.to_string())), v))
                .collect(),
        ),
    })
}

/// Splits `<target>_<name>` when the route serves several targets (the shim prefixes names
/// only then); with one target, the name is as written and the target is that one.
pub fn split_target<'a>(name: &'a str, targets: &'a [String]) -> (&'a str, &'a str) {
    match targets {
        [] => ("", name),
        [only] => (only.as_str(), name),
        many => many
            .iter()
            .filter_map(|t| {
                let rest = name.strip_prefix(t.as_str())?.strip_prefix('_')?;
                Some((t.as_str(), rest))
            })
            // The longest target wins when one target's name prefixes another's.
            .max_by_key(|(t, _)| t.len())
            .unwrap_or(("", name)),
    }
}

/// The view of a message, or `None` when it names nothing (initialize, ping, notifications,
/// responses, lists): then only the rules that do not read `mcp` apply.
pub fn view(message: &Message, targets: &[String]) -> Option<McpView> {
    let method = message.method.as_deref()?;
    message.id.as_ref()?;
    let params = message.params.as_ref();
    let text = |key: &str| params.and_then(|p| p.get(key)).and_then(Json::as_str);
    let (kind, name) = match method {
        "tools/call" => (Kind::Tool, text("name")?),
        "prompts/get" => (Kind::Prompt, text("name")?),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            (Kind::Resource, text("uri")?)
        }
        _ => return None,
    };
    let (target, name) = match kind {
        Kind::Resource => (single_target(targets), name),
        _ => split_target(name, targets),
    };
    Some(McpView {
        method: method.to_string(),
        kind,
        name: name.to_string(),
        target: target.to_string(),
        arguments: params
            .and_then(|p| p.get("arguments"))
            .cloned()
            .unwrap_or_else(|| Json::Object(Map::new())),
    })
}

fn single_target(targets: &[String]) -> &str {
    match targets {
        [only] => only,
        _ => "",
    }
}

/// The list methods whose responses are filtered, and what each item would be called with.
pub fn list_kind(method: &str) -> Option<(Kind, &'static str, &'static str, &'static str)> {
    // (kind, result field, item key, the method a call of the item uses)
    match method {
        "tools/list" => Some((Kind::Tool, "tools", "name", "tools/call")),
        "prompts/list" => Some((Kind::Prompt, "prompts", "name", "prompts/get")),
        "resources/list" => Some((Kind::Resource, "resources", "uri", "resources/read")),
        "resources/templates/list" => Some((
            Kind::Resource,
            "resourceTemplates",
            "uriTemplate",
            "resources/read",
        )),
        _ => None,
    }
}

/// Removes from a JSON-RPC list response the items `keep` refuses; `nextCursor` and every
/// other member stay. Returns whether anything was removed.
pub fn filter_list(
    response: &mut Json,
    method: &str,
    targets: &[String],
    keep: &mut dyn FnMut(&McpView) -> bool,
) -> bool {
    let Some((kind, field, key, call)) = list_kind(method) else {
        return false;
    };
    let Some(items) = response
        .get_mut("result")
        .and_then(|r| r.get_mut(field))
        .and_then(Json::as_array_mut)
    else {
        return false;
    };
    let before = items.len();
    items.retain(|item| {
        let Some(raw) = item.get(key).and_then(Json::as_str) else {
            // An item the filter cannot name cannot be judged: not shown.
            return false;
        };
        let (target, name) = match kind {
            Kind::Resource => (single_target(targets), raw),
            _ => split_target(raw, targets),
        };
        keep(&McpView {
            method: call.to_string(),
            kind,
            name: name.to_string(),
            target: target.to_string(),
            arguments: Json::Object(Map::new()),
        })
    });
    items.len() != before
}

/// Filters a JSON response body (one response or a batch of them) for the list `methods`
/// asked by id. Returns the new body, or `None` to leave it untouched.
pub fn filter_json_body(
    body: &[u8],
    asked: &[(Json, String)],
    targets: &[String],
    keep: &mut dyn FnMut(&McpView) -> bool,
) -> Option<Vec<u8>> {
    let mut json: Json = serde_json::from_slice(body).ok()?;
    let changed = match &mut json {
        Json::Array(items) => {
            let mut changed = false;
            for item in items {
                changed |= filter_one(item, asked, targets, keep);
            }
            changed
        }
        one => filter_one(one, asked, targets, keep),
    };
    changed.then(|| json.to_string().into_bytes())
}

fn filter_one(
    response: &mut Json,
    asked: &[(Json, String)],
    targets: &[String],
    keep: &mut dyn FnMut(&McpView) -> bool,
) -> bool {
    let Some(id) = response.get("id") else {
        return false;
    };
    let Some((_, method)) = asked.iter().find(|(asked_id, _)| asked_id == id) else {
        return false;
    };
    let method = method.clone();
    filter_list(response, &method, targets, keep)
}

/// Filters the complete events of an SSE body. Returns `(rewritten, consumed)`: the bytes to
/// send for the first `consumed` input bytes; the rest is an incomplete event to wait for.
pub fn filter_sse(
    body: &[u8],
    asked: &[(Json, String)],
    targets: &[String],
    keep: &mut dyn FnMut(&McpView) -> bool,
) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(body.len());
    let mut start = 0;
    while let Some(end) = event_end(body, start) {
        let event = body.get(start..end).unwrap_or_default();
        out.extend_from_slice(&filter_event(event, asked, targets, keep));
        start = end;
    }
    (out, start)
}

/// The end (exclusive, after the blank line) of the event starting at `from`.
fn event_end(body: &[u8], from: usize) -> Option<usize> {
    let rest = body.get(from..)?;
    let mut i = 0;
    while i < rest.len() {
        for sep in [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"] {
            if rest.get(i..i + sep.len()) == Some(sep) {
                return Some(from + i + sep.len());
            }
        }
        i += 1;
    }
    None
}

fn filter_event(
    event: &[u8],
    asked: &[(Json, String)],
    targets: &[String],
    keep: &mut dyn FnMut(&McpView) -> bool,
) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(event) else {
        return event.to_vec();
    };
    let mut data = String::new();
    let mut other = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("data:") {
            Some(d) => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
            None if !line.is_empty() => other.push(line),
            None => {}
        }
    }
    let Ok(mut json) = serde_json::from_str::<Json>(&data) else {
        return event.to_vec();
    };
    if !filter_one(&mut json, asked, targets, keep) {
        return event.to_vec();
    }
    let mut rebuilt = String::new();
    for line in other {
        rebuilt.push_str(line);
        rebuilt.push('\n');
    }
    rebuilt.push_str("data: ");
    rebuilt.push_str(&json.to_string());
    rebuilt.push_str("\n\n");
    rebuilt.into_bytes()
}

/// A JSON-RPC error response for `id`.
pub fn error_response(id: &Json, code: i64, message: &str) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The `mcp` kinds a set of field names reads (`mcp.tool.name` reads `tool`).
pub fn kinds_of(fields: &BTreeSet<String>) -> BTreeSet<Kind> {
    fields.iter().filter_map(|f| Kind::from_field(f)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let e = parse_body(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"rm"}}"#)
            .unwrap_err();
        assert_eq!(e, BodyError::DuplicateKey("\"name\"".into()));
        assert_eq!(e.code(), -32600);
        assert!(parse_body(br#"{"jsonrpc":"2.0","id":1,"method":"m","method":"n"}"#).is_err());
    }

    #[test]
    fn bodies_that_are_not_json_rpc_are_refused() {
        assert_eq!(parse_body(b"{").unwrap_err().code(), -32700);
        assert!(matches!(parse_body(b"[]"), Err(BodyError::EmptyBatch)));
        assert!(parse_body(br#"{"id":1,"method":"x"}"#).is_err());
        assert!(parse_body(br#"{"jsonrpc":"2.0"}"#).is_err());
        assert!(parse_body(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#).is_err());
        assert!(parse_body(br#"{"jsonrpc":"2.0","id":1,"method":"x"} trailing"#).is_err());
        let batch = parse_body(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#).unwrap();
        assert!(batch.batch);
        assert_eq!(batch.messages.len(), 2);
        assert!(!batch.messages[1].is_request());
    }

    #[test]
    fn views_split_the_target_prefix_only_for_several_targets() {
        let call = parse_body(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"files_read","arguments":{"paths":["a","b"]}}}"#).unwrap();
        let many = vec!["files".to_string(), "git".to_string()];
        let v = view(&call.messages[0], &many).unwrap();
        assert_eq!((v.target.as_str(), v.name.as_str()), ("files", "read"));
        assert_eq!(v.arguments["paths"][1], "b");
        let one = vec!["files".to_string()];
        let v = view(&call.messages[0], &one).unwrap();
        assert_eq!(
            (v.target.as_str(), v.name.as_str()),
            ("files", "files_read")
        );
        let init =
            parse_body(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#).unwrap();
        assert!(view(&init.messages[0], &many).is_none());
        assert_eq!(
            split_target("a_b_c", &["a".into(), "a_b".into()]),
            ("a_b", "c")
        );
    }

    #[test]
    fn list_responses_are_filtered_in_json_and_sse_keeping_the_cursor() {
        let asked = vec![(json!(3), "tools/list".to_string())];
        let body = br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo"},{"name":"add"}],"nextCursor":"c2"}}"#;
        let mut keep = |v: &McpView| v.name == "echo";
        let out = filter_json_body(body, &asked, &[], &mut keep).unwrap();
        let out: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["result"]["tools"], json!([{"name": "echo"}]));
        assert_eq!(out["result"]["nextCursor"], "c2");

        let sse = format!(
            "event: message\nid: 1\ndata: {}\n\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\nevent: message\ndata: {{\"par",
            std::str::from_utf8(body).unwrap()
        );
        let (out, consumed) = filter_sse(sse.as_bytes(), &asked, &[], &mut keep);
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("event: message\nid: 1\ndata: "), "{out}");
        assert!(!out.contains("\"add\""), "{out}");
        assert!(out.contains("notifications/progress"), "{out}");
        assert_eq!(&sse[consumed..], "event: message\ndata: {\"par");
        // A response to something else is untouched.
        assert!(
            filter_json_body(body, &[(json!(4), "tools/list".into())], &[], &mut keep).is_none()
        );
    }
}
