//! MCP's JSON-RPC, as an authorizing proxy must read it: strictly (a body that is not
//! JSON-RPC, or that repeats a key, is refused rather than passed on unclassified), message by
//! message, and with the list responses rewritten so each caller sees only what it may use.
//!
//! What CEL sees of a message is [`McpView`]: `mcp.method`, and for the methods that name a
//! thing, `mcp.tool` / `mcp.prompt` (`name`, `target`, `arguments`) or `mcp.resource` (`uri`,
//! `target`). `initialize`, `ping`, notifications and responses have no view: only rules that
//! do not read `mcp` apply to them.

use std::borrow::Cow;

use std::collections::BTreeSet;
use std::ops::Range;
use std::rc::Rc;

use serde_json::{Map, Value as Json, json};

use crate::cel_value::Boxed;
use crate::reply::Message as Reply;
use crate::sse::{Event, Fate, SseFilter};
use crate::target::TargetName;

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
    /// Two requests of a batch with one id: the answers could not be told apart, so only
    /// one of them would be filtered.
    #[error("the batch repeats the request id {0}")]
    DuplicateId(String),
}

impl From<crate::json::JsonError> for BodyError {
    fn from(e: crate::json::JsonError) -> BodyError {
        match e {
            crate::json::JsonError::NotJson(text) => BodyError::NotJson(text),
            crate::json::JsonError::DuplicateKey(key) => BodyError::DuplicateKey(key),
        }
    }
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
    let json = crate::json::strict(bytes)?;
    match json {
        Json::Array(items) => {
            if items.is_empty() {
                return Err(BodyError::EmptyBatch);
            }
            let messages: Vec<Message> =
                items.into_iter().map(message).collect::<Result<_, _>>()?;
            let requests: Vec<&Json> = messages
                .iter()
                .filter(|m| m.method.is_some())
                .filter_map(|m| m.id.as_ref())
                .collect();
            for (i, id) in requests.iter().enumerate() {
                if requests.iter().skip(i + 1).any(|other| same_id(id, other)) {
                    return Err(BodyError::DuplicateId(id.to_string()));
                }
            }
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

/// Whether a server may take two JSON-RPC ids for one. Numbers compare by value, as a
/// JavaScript server reads them (`1`, `1.0` and `1e0` are one id there, and it answers `1`).
pub fn same_id(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// What the rules see of one message that names a tool, a prompt or a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct McpView<'m> {
    pub method: String,
    pub kind: Kind,
    /// The tool or prompt name without the target prefix, or the resource URI as the server
    /// resolves it: WHATWG URL's serialisation ([`crate::uri::normalize`]). A resource template
    /// (listed, or completed) is as written: the server matches it as text.
    pub name: String,
    /// The name or URI exactly as the message wrote it (`mcp.resource.rawUri`).
    pub raw: String,
    /// The target (stdio server) that serves it, when the route names its targets.
    pub target: String,
    /// Borrowed from the message where it has them.
    pub arguments: Cow<'m, Json>,
}

impl McpView<'_> {
    /// The view with what it borrows copied, to outlive the message.
    pub fn into_owned(self) -> McpView<'static> {
        McpView {
            arguments: Cow::Owned(self.arguments.into_owned()),
            ..self
        }
    }

    /// What rules that read of `mcp` only the method and names see of this message, as one
    /// text written to `out`: the method, the kind, the target and the name, each but the last ended by NUL
    /// (which none of them holds), so two different views never give the same key.
    pub fn names_key(&self, out: &mut Vec<u8>) {
        let kind = match self.kind {
            Kind::Tool => "t",
            Kind::Prompt => "p",
            Kind::Resource => "r",
        };
        for part in [&self.method, kind, &self.target] {
            out.extend_from_slice(part.as_bytes());
            out.push(0);
        }
        out.extend_from_slice(self.name.as_bytes());
    }

    /// `mcp` as CEL sees it, borrowing this view's strings.
    pub fn to_cel(&self) -> Boxed<'_> {
        use crate::cel_value::{boxed, record, string};
        let thing = match self.kind {
            Kind::Resource => record([
                ("target", string(&self.target)),
                ("uri", string(&self.name)),
                ("rawUri", string(&self.raw)),
            ]),
            _ => record([
                ("target", string(&self.target)),
                ("name", string(&self.name)),
                ("arguments", boxed(&self.arguments)),
            ]),
        };
        record([("method", string(&self.method)), (self.kind.field(), thing)])
    }
}

/// Why a message that uses a tool, prompt or resource cannot be judged. Judging it by the
/// rules that do not read `mcp` alone would pass it through an allow-list of names, so it is
/// refused as an invalid request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("{0}: \"params\" must be an object naming what it uses")]
    Params(&'static str),
    #[error("{method}: \"params.{key}\" must be a string")]
    Name {
        method: &'static str,
        key: &'static str,
    },
    #[error(
        "completion/complete: \"params.ref\" must be {{\"type\": \"ref/prompt\", \"name\": …}} or {{\"type\": \"ref/resource\", \"uri\": …}}"
    )]
    Ref,
    #[error(transparent)]
    Uri(#[from] crate::uri::UriError),
}

impl ViewError {
    /// The JSON-RPC error code: invalid request.
    pub fn code(&self) -> i64 {
        -32600
    }
}

/// The methods that use a tool, prompt or resource by name.
const NAMING: [&str; 6] = [
    "tools/call",
    "prompts/get",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
];

/// The view of a message: `Ok(None)` when its method names nothing (initialize, ping, lists,
/// notifications, responses), and then only the rules that do not read `mcp` apply to it.
/// `completion/complete` is judged as a use of the prompt or resource template it completes.
pub fn view<'m>(
    message: &'m Message,
    targets: &[TargetName],
) -> Result<Option<McpView<'m>>, ViewError> {
    let Some(method) = message
        .method
        .as_deref()
        .and_then(|m| NAMING.into_iter().find(|n| *n == m))
    else {
        return Ok(None);
    };
    let Some(Json::Object(params)) = &message.params else {
        return Err(ViewError::Params(method));
    };
    let text = |from: &'_ Map<String, Json>, key| {
        from.get(key)
            .and_then(Json::as_str)
            .map(str::to_string)
            .ok_or(ViewError::Name { method, key })
    };
    // (kind, as written, whether a resource URI is a template, arguments)
    let (kind, raw, template, arguments) = match method {
        "tools/call" => (
            Kind::Tool,
            text(params, "name")?,
            false,
            params.get("arguments"),
        ),
        "prompts/get" => (
            Kind::Prompt,
            text(params, "name")?,
            false,
            params.get("arguments"),
        ),
        "completion/complete" => {
            let reference = params
                .get("ref")
                .and_then(Json::as_object)
                .ok_or(ViewError::Ref)?;
            let field = |key| {
                reference
                    .get(key)
                    .and_then(Json::as_str)
                    .map(str::to_string)
                    .ok_or(ViewError::Ref)
            };
            match reference.get("type").and_then(Json::as_str) {
                // The arguments already chosen are the closest to a use's arguments.
                Some("ref/prompt") => (
                    Kind::Prompt,
                    field("name")?,
                    false,
                    params.get("context").and_then(|c| c.get("arguments")),
                ),
                Some("ref/resource") => (Kind::Resource, field("uri")?, true, None),
                _ => return Err(ViewError::Ref),
            }
        }
        _ => (Kind::Resource, text(params, "uri")?, false, None),
    };
    let (target, name) = match kind {
        Kind::Resource if template => (single_target(targets), raw.clone()),
        Kind::Resource => (single_target(targets), crate::uri::normalize(&raw)?),
        _ => {
            let (target, name) = crate::target::split(&raw, targets);
            (target, name.to_string())
        }
    };
    Ok(Some(McpView {
        method: method.to_string(),
        kind,
        name,
        target: target.to_string(),
        arguments: arguments.map_or_else(|| Cow::Owned(Json::Object(Map::new())), Cow::Borrowed),
        raw,
    }))
}

fn single_target(targets: &[TargetName]) -> &str {
    match targets {
        [only] => only.as_str(),
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

/// The code and message of a list answer the gateway could not read and so did not pass.
pub const UNREADABLE_CODE: i64 = -32603;
pub const UNREADABLE: &str = "the gateway could not read the server's list answer";

/// The code and message of a response that came on a stream which did not ask for it.
pub const OUTSIDE_CODE: i64 = -32600;
pub const OUTSIDE_STREAM: &str = "this route hides tools, prompts or resources per caller; answers sent outside their request's stream (the legacy HTTP+SSE transport, or a resumed stream) cannot be filtered: use Streamable HTTP";

/// A part of a text to replace, and its new text.
type Edit = (Range<usize>, String);

/// A list answer that is one the reader remembers ([`crate::reply::Outcome::recalled`]) and
/// which of its lists: the same key for the same bytes, so what was decided about its items
/// can be decided again without judging them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListKey {
    pub result: u64,
    pub field: &'static str,
}

/// Decides which listed items a caller is shown. Any `FnMut(&McpView) -> bool` is one that
/// judges every item; the filter's own also remembers a whole list's verdicts when they
/// depend on nothing but the caller and the names.
pub trait Keep {
    /// Whether the item `view` is shown.
    fn keep(&mut self, view: &McpView) -> bool;
    /// The verdicts on each item of `list`, in order, when they were remembered.
    fn recall(&mut self, _list: ListKey) -> Option<Rc<[bool]>> {
        None
    }
    /// The verdicts just reached on each item of `list`, to remember.
    fn remember(&mut self, _list: ListKey, _kept: Rc<[bool]>) {}
}

impl<F: FnMut(&McpView) -> bool> Keep for F {
    fn keep(&mut self, view: &McpView) -> bool {
        self(view)
    }
}

/// Removes from a JSON-RPC response to `method` the items `keep` refuses; `nextCursor` and
/// every other member stay as written. `Ok(Some(edit))` when something was removed: the place
/// in the message's text from its first item to its last, and the items kept there. An error
/// (the reason) when the response is neither a list result nor a JSON-RPC error.
fn filter_list(
    message: &Reply<'_>,
    method: &str,
    targets: &[TargetName],
    keep: &mut dyn Keep,
) -> Result<Option<Edit>, String> {
    let Some((kind, field, key, call)) = list_kind(method) else {
        return Ok(None);
    };
    let Some(result) = &message.result else {
        return match message.error {
            true => Ok(None),
            false => Err(format!(
                "the answer to {method} has neither a result nor an error"
            )),
        };
    };
    let Some(items) = result.list(field) else {
        return Err(format!(
            "result.{field} of {method} is missing or not an array"
        ));
    };
    let list = result.recalled.map(|result| ListKey { result, field });
    let shown = match list.and_then(|list| keep.recall(list)) {
        Some(shown) if shown.len() == items.len() => shown,
        _ => {
            // One view, refilled for each item: a list of hundreds allocates once, not per
            // item.
            let mut view = McpView {
                method: call.to_string(),
                kind,
                name: String::new(),
                target: String::new(),
                raw: String::new(),
                arguments: Cow::Owned(Json::Object(Map::new())),
            };
            let shown: Rc<[bool]> = items
                .iter()
                .map(|item| {
                    // An item the filter cannot name cannot be judged: not shown.
                    item.name(key).is_some_and(|raw| {
                        item_view(&mut view, raw, key, targets) && keep.keep(&view)
                    })
                })
                .collect();
            if let Some(list) = list {
                keep.remember(list, shown.clone());
            }
            shown
        }
    };
    let kept: Vec<&str> = items
        .iter()
        .zip(shown.iter())
        .filter(|(_, shown)| **shown)
        .map(|(item, _)| item.text)
        .collect();
    let (Some(first), Some(last)) = (items.first(), items.last()) else {
        return Ok(None);
    };
    if kept.len() == items.len() {
        return Ok(None);
    }
    let place = crate::json::span(message.text, first.text)
        .zip(crate::json::span(message.text, last.text))
        .map(|(first, last)| first.start..last.end)
        .ok_or_else(|| format!("result.{field} of {method} could not be placed"))?;
    Ok(Some((place, kept.join(","))))
}

/// Fills `view` (of the list's kind and method) with how a listed item would be used, as the
/// rules judge it; `false` for a resource whose URI does not parse (a client could still read
/// it as written, so it is not shown).
fn item_view(view: &mut McpView, raw: &str, key: &str, targets: &[TargetName]) -> bool {
    let (target, name) = match view.kind {
        Kind::Resource if key == "uri" => match crate::uri::normalize(raw) {
            Ok(uri) => (single_target(targets), std::borrow::Cow::Owned(uri)),
            Err(_) => return false,
        },
        Kind::Resource => (single_target(targets), std::borrow::Cow::Borrowed(raw)),
        _ => {
            let (target, name) = crate::target::split(raw, targets);
            (target, std::borrow::Cow::Borrowed(name))
        }
    };
    for (field, text) in [
        (&mut view.name, name.as_ref()),
        (&mut view.target, target),
        (&mut view.raw, raw),
    ] {
        field.clear();
        field.push_str(text);
    }
    true
}

/// What becomes of a JSON answer to a request whose list answers are filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonAnswer {
    /// Sent as it came: no list was asked, or nothing was hidden.
    Unchanged,
    /// Items were hidden: send this body instead.
    Filtered(Vec<u8>),
    /// A list answer could not be read: send this body instead, in which each such answer is
    /// a JSON-RPC error ([`UNREADABLE`]). The reasons are for the log.
    Refused { body: Vec<u8>, reasons: Vec<String> },
}

/// Filters a JSON response body (one response or a batch of them) for the requests `asked`
/// (id, method) by its request. A list answer that cannot be read never passes as it came: a
/// body that is not strict JSON (a repeated key is how a second `tools` hides behind the
/// first) becomes an error for every id asked, an answer without a readable list an error for
/// its id.
pub fn filter_json_body(
    body: &[u8],
    asked: &[(Json, String)],
    targets: &[TargetName],
    keep: &mut dyn Keep,
) -> JsonAnswer {
    if !asked.iter().any(|(_, m)| list_kind(m).is_some()) {
        return JsonAnswer::Unchanged;
    }
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => return refuse_all(asked, format!("the answer is not UTF-8: {e}")),
    };
    let messages = match crate::reply::read(text) {
        Ok(Some(messages)) => messages,
        Ok(None) => return refuse_all(asked, "the answer is not a JSON-RPC response".into()),
        Err(e) => return refuse_all(asked, format!("the answer is not strict JSON: {e}")),
    };
    let mut edits = Vec::new();
    let mut reasons = Vec::new();
    for message in &messages {
        let Some(place) = crate::json::span(text, message.text) else {
            return refuse_all(asked, "the answer could not be read in place".into());
        };
        match answer(message, asked, targets, keep) {
            Answered::Untouched => {}
            Answered::Filtered((range, array)) => {
                edits.push((place.start + range.start..place.start + range.end, array));
            }
            Answered::Refused(reason, error) => {
                reasons.push(reason);
                edits.push((place, error));
            }
        }
    }
    if edits.is_empty() {
        return JsonAnswer::Unchanged;
    }
    let body = crate::json::splice(text, edits).into_bytes();
    match reasons.is_empty() {
        false => JsonAnswer::Refused { body, reasons },
        true => JsonAnswer::Filtered(body),
    }
}

/// Every id asked answered with [`UNREADABLE`]: one response, or a batch for several.
fn refuse_all(asked: &[(Json, String)], reason: String) -> JsonAnswer {
    let mut errors: Vec<Json> = asked
        .iter()
        .map(|(id, _)| error_response(id, UNREADABLE_CODE, UNREADABLE))
        .collect();
    let json = match errors.len() {
        1 => errors.pop().unwrap_or_default(),
        _ => Json::Array(errors),
    };
    JsonAnswer::Refused {
        body: json.to_string().into_bytes(),
        reasons: vec![reason],
    }
}

enum Answered {
    Untouched,
    /// The items array's place in the message, and the array kept.
    Filtered(Edit),
    /// Why, and the error that replaces the whole message.
    Refused(String, String),
}

/// Filters one message of a JSON answer when it answers a list asked; one that cannot be read
/// becomes an error for its id.
fn answer(
    message: &Reply<'_>,
    asked: &[(Json, String)],
    targets: &[TargetName],
    keep: &mut dyn Keep,
) -> Answered {
    let is_request = message.method && message.result.is_none() && !message.error;
    let Some(id) = message
        .id
        .as_ref()
        .filter(|_| message.object && !is_request)
    else {
        return Answered::Untouched;
    };
    let Some((_, method)) = asked.iter().find(|(a, _)| same_id(a, id)) else {
        return Answered::Untouched;
    };
    match filter_list(message, method, targets, keep) {
        Ok(Some(edit)) => Answered::Filtered(edit),
        Ok(None) => Answered::Untouched,
        Err(reason) => Answered::Refused(
            reason,
            error_response(id, UNREADABLE_CODE, UNREADABLE).to_string(),
        ),
    }
}

/// What an SSE answer's filter did since it was last asked, for the caller's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SseCounts {
    /// Events not passed on: data that is not strict JSON or not a JSON-RPC message, or an
    /// event too large to read.
    pub dropped: u64,
    /// List answers that could not be read, replaced by [`UNREADABLE`].
    pub unreadable: u64,
    /// Responses to ids the stream did not ask about, replaced by [`OUTSIDE_STREAM`].
    pub outside: u64,
}

/// An SSE response stream on a route whose list answers are filtered per caller. Every event
/// is parsed as the client will parse it ([`SseFilter`]) and judged: a list answer is
/// filtered (or refused when unreadable), a response to an id the stream did not ask is
/// refused (that is how the legacy transport and resumed streams carry lists), data that is
/// not JSON-RPC is dropped; notifications, server requests and the legacy `endpoint` event
/// pass.
#[derive(Debug)]
pub struct SseAnswers {
    events: SseFilter,
    asked: Vec<(Json, String)>,
    counts: SseCounts,
    oversized: u64,
}

impl SseAnswers {
    /// `asked`: every request (id, method) whose answers this stream carries; none for a
    /// stream opened by a GET.
    pub fn new(asked: Vec<(Json, String)>) -> SseAnswers {
        SseAnswers {
            events: SseFilter::default(),
            asked,
            counts: SseCounts::default(),
            oversized: 0,
        }
    }

    /// The next bytes of the stream in; the bytes to send now out (whole events only).
    pub fn push(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        targets: &[TargetName],
        keep: &mut dyn Keep,
    ) -> Vec<u8> {
        let mut judge = Judge {
            asked: &self.asked,
            counts: &mut self.counts,
        };
        let out = self.events.push(chunk, end_of_stream, &mut |event| {
            judge.event(event, targets, keep)
        });
        let oversized = self.events.oversized();
        self.counts.dropped += oversized - self.oversized;
        self.oversized = oversized;
        out
    }

    /// Whether the proxy may hold back the bytes of `body` (all it holds of this stream) that
    /// it did not hold at the last call, to hand them back with what follows
    /// ([`SseFilter::wait`]): true only when pushing them now would send nothing yet. On
    /// false, `body` must be pushed whole.
    pub fn wait(&mut self, body: &[u8], end_of_stream: bool) -> bool {
        match body.get(self.events.waiting()..) {
            Some(fresh) => self.events.wait(fresh, end_of_stream),
            None => false,
        }
    }

    /// Bytes the proxy holds back for this stream ([`SseAnswers::wait`]).
    pub fn waiting(&self) -> usize {
        self.events.waiting()
    }

    /// The counts since the last call.
    pub fn take_counts(&mut self) -> SseCounts {
        std::mem::take(&mut self.counts)
    }
}

/// Judges the events of an SSE answer for the requests `asked`, counting what it refuses.
struct Judge<'a> {
    asked: &'a [(Json, String)],
    counts: &'a mut SseCounts,
}

impl Judge<'_> {
    /// Judges one SSE event: its data is one JSON-RPC message or a batch.
    fn event(&mut self, event: &Event, targets: &[TargetName], keep: &mut dyn Keep) -> Fate {
        if event.data.is_empty() {
            return Fate::Pass;
        }
        let text = event.data.as_str();
        let messages = match crate::reply::read(text) {
            Ok(messages) => messages.filter(|m| !m.is_empty()),
            // The legacy transport's first event carries a URL path, not JSON.
            Err(_) if event.kind() == "endpoint" => return Fate::Pass,
            Err(_) => {
                self.counts.dropped += 1;
                return Fate::Drop;
            }
        };
        let mut outcome = match messages {
            Some(_) => Seen::Pass,
            None => Seen::Invalid,
        };
        let mut edits = Vec::new();
        for message in messages.as_deref().unwrap_or_default() {
            let Some(place) = crate::json::span(text, message.text) else {
                outcome = Seen::Invalid;
                break;
            };
            match self.message(message, targets, keep) {
                Streamed::Pass => {}
                Streamed::Invalid => outcome = Seen::Invalid,
                Streamed::Edit((range, array)) => {
                    edits.push((place.start + range.start..place.start + range.end, array));
                    outcome = outcome.worst(Seen::Changed);
                }
                Streamed::Replace(error) => {
                    edits.push((place, error));
                    outcome = outcome.worst(Seen::Changed);
                }
            }
        }
        match outcome {
            Seen::Pass => Fate::Pass,
            Seen::Changed => Fate::Replace(crate::json::splice(text, edits)),
            Seen::Invalid => {
                self.counts.dropped += 1;
                Fate::Drop
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Pass,
    Changed,
    Invalid,
}

impl Seen {
    fn worst(self, other: Seen) -> Seen {
        self.max(other)
    }
}

/// What becomes of one JSON-RPC message of an SSE event.
enum Streamed {
    Pass,
    Invalid,
    /// The items array's place in the message, and the array kept.
    Edit(Edit),
    /// An error replaces the whole message.
    Replace(String),
}

impl Judge<'_> {
    /// Judges one JSON-RPC message of an SSE event.
    fn message(
        &mut self,
        message: &Reply<'_>,
        targets: &[TargetName],
        keep: &mut dyn Keep,
    ) -> Streamed {
        if !message.object {
            return Streamed::Invalid;
        }
        let answers = message.result.is_some() || message.error;
        match (message.method, answers) {
            (true, false) => return Streamed::Pass,
            // Both a request and a response: clients differ on which they take it for.
            (true, true) | (false, false) => return Streamed::Invalid,
            (false, true) => {}
        }
        let Some(id) = &message.id else {
            return Streamed::Invalid;
        };
        let Some((_, method)) = self.asked.iter().find(|(a, _)| same_id(a, id)) else {
            if id.is_null() && message.result.is_none() {
                // A server's report of a message it could not read answers no request.
                return Streamed::Pass;
            }
            self.counts.outside += 1;
            return Streamed::Replace(error_response(id, OUTSIDE_CODE, OUTSIDE_STREAM).to_string());
        };
        match filter_list(message, method, targets, keep) {
            Ok(Some(edit)) => Streamed::Edit(edit),
            Ok(None) => Streamed::Pass,
            Err(_) => {
                self.counts.unreadable += 1;
                Streamed::Replace(error_response(id, UNREADABLE_CODE, UNREADABLE).to_string())
            }
        }
    }
}

/// Whether a request uses the legacy HTTP+SSE transport, by the shim's rule: a GET whose path
/// ends with `/sse` opens its stream, a POST to `…/message` or `…/messages` sends into it.
/// Its answers travel on the GET stream, apart from their request, so a route that filters
/// answers per caller refuses it.
pub fn legacy_transport(method: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    match method {
        "GET" => path.ends_with("/sse"),
        "POST" => path.ends_with("/message") || path.ends_with("/messages"),
        _ => false,
    }
}

/// The JSON-RPC error code MCP 2026-07-28 gives a request whose `Mcp-Method` / `Mcp-Name`
/// headers disagree with its body (or lack one the body needs).
pub const HEADER_MISMATCH_CODE: i64 = -32020;

/// The methods whose target travels in `Mcp-Name`: `params.name` for tools and prompts,
/// `params.uri` for resources.
fn name_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        _ => None,
    }
}

/// The view a 2026-07-28 request's `Mcp-Method` / `Mcp-Name` headers give of its call, as the
/// body would give it (names split by target, URIs normalised), without its arguments.
pub fn header_view(method: &str, name: &str, targets: &[TargetName]) -> Option<McpView<'static>> {
    let param = name_param(method)?;
    let mut params = Map::new();
    params.insert(param.to_string(), Json::from(name));
    let message = Message {
        id: Some(Json::from(0)),
        method: Some(method.to_string()),
        params: Some(Json::Object(params)),
    };
    view(&message, targets)
        .ok()
        .flatten()
        .map(McpView::into_owned)
}

/// Why the `Mcp-Method` / `Mcp-Name` headers disagree with the body, if they do. Intermediaries
/// may route and authorize on those headers, and servers must reject a request whose headers
/// disagree with its body, so the gateway refuses such a request before anyone acts on either.
/// `modern`: the request speaks 2026-07-28, where `Mcp-Method` is required on every request and
/// `Mcp-Name` on the name-bearing ones.
pub fn header_mismatch(
    body: &Body,
    method_header: Option<&str>,
    name_header: Option<&str>,
    modern: bool,
) -> Option<String> {
    if method_header.is_none() && name_header.is_none() && !modern {
        return None;
    }
    let [message] = body.messages.as_slice() else {
        return Some("Mcp-Method and Mcp-Name describe one message; this body is a batch".into());
    };
    let method = message.method.as_deref()?;
    match method_header {
        Some(h) if h != method => {
            return Some(format!(
                "the Mcp-Method header says {h:?} but the body's method is {method:?}"
            ));
        }
        None if modern => return Some("the Mcp-Method header is required".into()),
        _ => {}
    }
    let Some(param) = name_param(method) else {
        return name_header
            .map(|h| format!("the Mcp-Name header {h:?} names nothing in a {method:?} request"));
    };
    let value = message
        .params
        .as_ref()
        .and_then(|p| p.get(param))
        .and_then(Json::as_str);
    match (name_header, value) {
        (Some(h), Some(v)) if h != v => Some(format!(
            "the Mcp-Name header says {h:?} but the body's params.{param} is {v:?}"
        )),
        (Some(h), None) => Some(format!(
            "the Mcp-Name header says {h:?} but the body has no params.{param}"
        )),
        (None, Some(_)) if modern => {
            Some(format!("the Mcp-Name header is required for {method:?}"))
        }
        _ => None,
    }
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
mod header_tests {
    use super::*;

    fn body(text: &str) -> Body {
        parse_body(text.as_bytes()).unwrap()
    }

    #[test]
    fn headers_must_agree_with_the_body() {
        let call =
            body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#);
        assert_eq!(header_mismatch(&call, None, None, false), None);
        assert_eq!(
            header_mismatch(&call, Some("tools/call"), Some("echo"), true),
            None
        );
        assert!(header_mismatch(&call, Some("tools/list"), None, false).is_some());
        assert!(header_mismatch(&call, Some("tools/call"), Some("get-env"), false).is_some());
        assert!(header_mismatch(&call, Some("tools/call"), None, true).is_some());
        assert!(header_mismatch(&call, None, Some("echo"), true).is_some());
        let read = body(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://x"}}"#,
        );
        assert_eq!(
            header_mismatch(&read, Some("resources/read"), Some("demo://x"), true),
            None
        );
        assert!(header_mismatch(&read, Some("resources/read"), Some("demo://y"), true).is_some());
        let list = body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert!(header_mismatch(&list, Some("tools/list"), Some("echo"), false).is_some());
        let batch = body(
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#,
        );
        assert!(header_mismatch(&batch, Some("ping"), None, false).is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cel::Value;
    use cel::objects::Key;

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

    fn one(body: &str) -> Message {
        parse_body(body.as_bytes()).unwrap().messages.remove(0)
    }

    #[test]
    fn views_split_the_target_prefix_only_for_several_targets() {
        let call = one(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"files_read","arguments":{"paths":["a","b"]}}}"#,
        );
        let many = crate::target::names(&["files", "git"]).unwrap();
        let v = view(&call, &many).unwrap().unwrap();
        assert_eq!((v.target.as_str(), v.name.as_str()), ("files", "read"));
        assert_eq!(v.raw, "files_read");
        assert_eq!(v.arguments["paths"][1], "b");
        let only = crate::target::names(&["files"]).unwrap();
        let v = view(&call, &only).unwrap().unwrap();
        assert_eq!(
            (v.target.as_str(), v.name.as_str()),
            ("files", "files_read")
        );
        let init = one(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#);
        assert_eq!(view(&init, &many), Ok(None));
    }

    #[test]
    fn a_batch_that_repeats_a_request_id_is_refused() {
        let twice = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#;
        let e = parse_body(twice).unwrap_err();
        assert_eq!(e, BodyError::DuplicateId("1".into()));
        assert_eq!(e.code(), -32600);
        // A JavaScript server reads 1.0 as 1, and answers both as 1.
        let by_value = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":1.0,"method":"ping"}]"#;
        assert!(matches!(
            parse_body(by_value),
            Err(BodyError::DuplicateId(_))
        ));
        let strings = br#"[{"jsonrpc":"2.0","id":"a","method":"tools/list"},{"jsonrpc":"2.0","id":"a","method":"ping"}]"#;
        assert!(parse_body(strings).is_err());
        // Distinct ids, and a response (to the server's request 1) beside a request 1, are fine.
        let fine = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"1","method":"ping"},{"jsonrpc":"2.0","id":1,"result":{}}]"#;
        assert_eq!(parse_body(fine).unwrap().messages.len(), 3);
    }

    #[test]
    fn a_call_whose_target_cannot_be_named_is_refused() {
        for (body, says) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
                "\"params.name\" must be a string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
                "\"params.name\" must be a string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["echo"]}"#,
                "\"params\" must be an object",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
                "\"params\" must be an object",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":null}}"#,
                "prompts/get: \"params.name\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":["x"]}}"#,
                "\"params.uri\" must be a string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"relative/x"}}"#,
                "not an absolute URL",
            ),
            (
                r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":{"x":1}}}"#,
                "\"params.name\" must be a string",
            ),
        ] {
            let e = view(&one(body), &[]).unwrap_err();
            assert_eq!(e.code(), -32600);
            assert!(e.to_string().contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn completion_is_judged_as_the_prompt_or_resource_it_completes() {
        let prompt = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"git_commit"},"argument":{"name":"msg","value":"fi"},"context":{"arguments":{"repo":"x"}}}}"#,
        );
        let v = view(&prompt, &crate::target::names(&["files", "git"]).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(v.kind, Kind::Prompt);
        assert_eq!((v.target.as_str(), v.name.as_str()), ("git", "commit"));
        assert_eq!(v.method, "completion/complete");
        assert_eq!(*v.arguments, json!({"repo": "x"}));
        // A template is matched by the server as text: it is judged as written, as listed.
        let resource = one(
            r#"{"jsonrpc":"2.0","id":2,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{path}"},"argument":{"name":"path","value":"a"}}}"#,
        );
        let v = view(&resource, &[]).unwrap().unwrap();
        assert_eq!(
            (v.kind, v.name.as_str()),
            (Kind::Resource, "file:///{path}")
        );
        for bad in [
            r#"{"ref":{"type":"ref/tool","name":"echo"}}"#,
            r#"{"ref":{"type":"ref/prompt","uri":"x"}}"#,
            r#"{"ref":{"type":"ref/resource","name":"x"}}"#,
            r#"{"ref":"ref/prompt"}"#,
            r#"{"argument":{}}"#,
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{bad}}}"#
            );
            assert_eq!(view(&one(&body), &[]), Err(ViewError::Ref), "{bad}");
        }
    }

    #[test]
    fn resource_uris_are_judged_as_the_server_resolves_them() {
        for method in [
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"uri":" DEMO://resource/a/../x"}}}}"#
            );
            let message = one(&body);
            let v = view(&message, &[]).unwrap().unwrap();
            assert_eq!(v.name, "demo://resource/x", "{method}");
            assert_eq!(v.raw, " DEMO://resource/a/../x");
            let cel = Value::try_from(v.to_cel().as_ref()).unwrap();
            let Value::Map(m) = &cel else { panic!() };
            let Some(Value::Map(r)) = m.map.get(&Key::from("resource")) else {
                panic!()
            };
            assert_eq!(
                r.map.get(&Key::from("uri")),
                Some(&Value::from("demo://resource/x"))
            );
            assert_eq!(
                r.map.get(&Key::from("rawUri")),
                Some(&Value::from(" DEMO://resource/a/../x"))
            );
        }
    }

    #[test]
    fn listed_resources_are_judged_by_their_normalised_uri_and_templates_as_written() {
        let asked = vec![
            (json!(1), "resources/list".to_string()),
            (json!(2), "resources/templates/list".to_string()),
        ];
        let body = br#"[{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"DEMO://resource/./secret"},{"uri":"demo://resource/public"},{"uri":"not a uri"}]}},{"jsonrpc":"2.0","id":2,"result":{"resourceTemplates":[{"uriTemplate":"DEMO://resource/{id}"}]}}]"#;
        let mut seen = Vec::new();
        let mut keep = |v: &McpView| {
            seen.push((v.name.clone(), v.raw.clone()));
            v.name != "demo://resource/secret"
        };
        let JsonAnswer::Filtered(out) = filter_json_body(body, &asked, &[], &mut keep) else {
            panic!()
        };
        let out: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            out[0]["result"]["resources"],
            json!([{"uri": "demo://resource/public"}])
        );
        assert_eq!(
            out[1]["result"]["resourceTemplates"],
            json!([{"uriTemplate": "DEMO://resource/{id}"}])
        );
        assert_eq!(
            seen,
            [
                (
                    "demo://resource/secret".to_string(),
                    "DEMO://resource/./secret".to_string()
                ),
                (
                    "demo://resource/public".to_string(),
                    "demo://resource/public".to_string()
                ),
                (
                    "DEMO://resource/{id}".to_string(),
                    "DEMO://resource/{id}".to_string()
                ),
            ]
        );
    }

    const TOOLS: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo"},{"name":"add"}],"nextCursor":"c2"}}"#;

    fn only_echo(v: &McpView) -> bool {
        v.name == "echo"
    }

    fn tools_list(id: Json) -> Vec<(Json, String)> {
        vec![(id, "tools/list".to_string())]
    }

    /// A [`Keep`] that shows `echo` only, remembering lists as the filter's own does, and
    /// records what it was asked.
    #[derive(Default)]
    struct Remembering {
        judged: usize,
        lists: Vec<(ListKey, Rc<[bool]>)>,
        recalled: Vec<ListKey>,
    }

    impl Keep for Remembering {
        fn keep(&mut self, view: &McpView) -> bool {
            self.judged += 1;
            only_echo(view)
        }
        fn recall(&mut self, list: ListKey) -> Option<Rc<[bool]>> {
            self.recalled.push(list);
            self.lists
                .iter()
                .find(|(l, _)| *l == list)
                .map(|(_, s)| s.clone())
        }
        fn remember(&mut self, list: ListKey, kept: Rc<[bool]>) {
            self.lists.push((list, kept));
        }
    }

    fn shown(answer: &JsonAnswer) -> Vec<String> {
        let JsonAnswer::Filtered(body) = answer else {
            panic!("{answer:?}")
        };
        let body: Json = serde_json::from_slice(body).unwrap();
        let tools = body["result"]["tools"].as_array().unwrap();
        tools
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_list_answered_again_with_the_same_bytes_is_decided_by_its_remembered_verdicts() {
        let tools: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    r#"{{"name":"{}","description":"tool number {i}"}}"#,
                    ["echo", "rm"][i % 2]
                )
            })
            .collect();
        let result = format!(r#"{{"tools":[{}]}}"#, tools.join(","));
        let answer = |id: u32| format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
        let mut keep = Remembering::default();
        let first = filter_json_body(answer(1).as_bytes(), &tools_list(json!(1)), &[], &mut keep);
        assert_eq!(shown(&first), vec!["echo"; 20]);
        assert_eq!((keep.judged, keep.lists.len()), (40, 1));
        // The same result under another id: the remembered verdicts decide, nothing is judged.
        let again = filter_json_body(answer(2).as_bytes(), &tools_list(json!(2)), &[], &mut keep);
        assert_eq!(shown(&again), vec!["echo"; 20]);
        assert_eq!(keep.judged, 40);
        assert_eq!(keep.recalled, [keep.lists[0].0; 2]);
        // What is remembered is what decides: verdicts that show the second item only.
        let mut first_only = vec![false; 40];
        first_only[1] = true;
        keep.lists[0].1 = first_only.into();
        let third = filter_json_body(answer(3).as_bytes(), &tools_list(json!(3)), &[], &mut keep);
        assert_eq!(shown(&third), ["rm"]);
        // One byte more in the result: another list, judged anew.
        let other = answer(4).replacen("tool number 39", "tool number 39!", 1);
        let fourth = filter_json_body(other.as_bytes(), &tools_list(json!(4)), &[], &mut keep);
        assert_eq!(shown(&fourth), vec!["echo"; 20]);
        assert_eq!(keep.judged, 80);
        assert_ne!(keep.lists[1].0, keep.lists[0].0);
        // A judge that remembers nothing (a closure) judges every item every time.
        let mut judged = 0;
        let mut closure = |v: &McpView| {
            judged += 1;
            only_echo(v)
        };
        filter_json_body(
            answer(5).as_bytes(),
            &tools_list(json!(5)),
            &[],
            &mut closure,
        );
        assert_eq!(judged, 40);
    }

    #[test]
    fn a_filtered_answer_keeps_every_other_byte_as_the_server_wrote_it() {
        // Spacing, key order, escapes and number spellings stay: only hidden items go.
        let body = "[ {\"jsonrpc\":\"2.0\", \"id\":7, \"method\":\"ping\"},\n  {\"result\": {\"_meta\": {\"n\": 1.50}, \"tools\": [ {\"name\":\"echo\", \"d\":\"\\u00e9\"} ,\n {\"name\":\"add\"} ], \"nextCursor\": \"c\"},\n \"id\": 3, \"jsonrpc\":\"2.0\"} ]";
        let JsonAnswer::Filtered(out) =
            filter_json_body(body.as_bytes(), &tools_list(json!(3)), &[], &mut only_echo)
        else {
            panic!()
        };
        assert_eq!(
            String::from_utf8(out).unwrap(),
            body.replace(" ,\n {\"name\":\"add\"}", "")
        );
        // The same over SSE.
        let (out, _) = stream(
            tools_list(json!(3)),
            &[&format!("data: {}\n\n", body.replace('\n', ""))],
        );
        assert!(
            out.contains(
                "\"tools\": [ {\"name\":\"echo\", \"d\":\"\\u00e9\"} ], \"nextCursor\": \"c\"}"
            ),
            "{out}"
        );
    }

    /// `body` answering `tools/list` id 3 with only `echo` shown, as the client then reads it.
    fn filtered_tools_list(body: &str) -> Json {
        let JsonAnswer::Filtered(out) =
            filter_json_body(body.as_bytes(), &tools_list(json!(3)), &[], &mut only_echo)
        else {
            panic!("{body} is not filtered")
        };
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_listed_name_is_judged_as_the_client_decodes_it() {
        // Escapes decode before judging; a `name` nested deeper in the item is not its name;
        // an item whose name is not a string cannot be judged and is not shown.
        let body = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[
            {"name":"\u0065cho"},
            {"inputSchema":{"name":"echo"},"name":"ech\u006f2"},
            {"name":["echo"]},
            {"description":"no name"}]}}"#;
        let out = filtered_tools_list(body);
        assert_eq!(out["result"]["tools"], json!([{"name": "echo"}]));
    }

    #[test]
    fn list_responses_are_filtered_keeping_the_cursor() {
        let out = filtered_tools_list(TOOLS);
        assert_eq!(out["result"]["tools"], json!([{"name": "echo"}]));
        assert_eq!(out["result"]["nextCursor"], "c2");
        // A response to something else is untouched, and nothing is hidden from an error.
        let other = filter_json_body(TOOLS.as_bytes(), &tools_list(json!(4)), &[], &mut only_echo);
        assert_eq!(other, JsonAnswer::Unchanged);
        let error = br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no"}}"#;
        assert_eq!(
            filter_json_body(error, &tools_list(json!(3)), &[], &mut only_echo),
            JsonAnswer::Unchanged
        );
    }

    #[test]
    fn a_list_answer_is_matched_by_id_as_the_server_reads_it() {
        // Asked as 1.0, answered as 1 by a JavaScript server.
        let body = TOOLS.replace("\"id\":3", "\"id\":1");
        let out = filter_json_body(
            body.as_bytes(),
            &tools_list(json!(1.0)),
            &[],
            &mut only_echo,
        );
        assert!(matches!(out, JsonAnswer::Filtered(_)), "{out:?}");
    }

    fn refused(answer: JsonAnswer) -> Json {
        match answer {
            JsonAnswer::Refused { body, reasons } => {
                assert!(!reasons.is_empty());
                serde_json::from_slice(&body).unwrap()
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_list_answer_that_is_not_strict_json_is_refused() {
        let unreadable = error_response(&json!(3), UNREADABLE_CODE, UNREADABLE);
        for body in [
            // The second `result` is the one a last-wins client reads.
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[]},"result":{"tools":[{"name":"add"}]}}"#
                .to_string(),
            TOOLS.replace("\"tools\"", "\"tools\":[],\"tools\""),
            TOOLS[..40].to_string(),
            format!("{TOOLS} trailing"),
            "\"just a string\"".to_string(),
            String::new(),
        ] {
            let out = refused(filter_json_body(
                body.as_bytes(),
                &tools_list(json!(3)),
                &[],
                &mut only_echo,
            ));
            assert_eq!(out, unreadable, "{body}");
        }
        // Several asked: an error for each.
        let asked = vec![
            (json!(3), "tools/list".to_string()),
            (json!(4), "tools/call".to_string()),
        ];
        let out = refused(filter_json_body(b"{", &asked, &[], &mut only_echo));
        assert_eq!(out.as_array().unwrap().len(), 2);
        assert_eq!(out[1]["id"], 4);
        assert_eq!(out[1]["error"]["code"], UNREADABLE_CODE);
    }

    #[test]
    fn an_answer_without_a_readable_list_is_refused() {
        for body in [
            r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":{"name":"add"}}}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{"Tools":[{"name":"add"}]}}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":null}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":[{"name":"add"}]}"#,
            r#"{"jsonrpc":"2.0","id":3}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"x","result":{"tools":"add"}}"#,
        ] {
            let out = refused(filter_json_body(
                body.as_bytes(),
                &tools_list(json!(3)),
                &[],
                &mut only_echo,
            ));
            assert_eq!(out["error"]["message"], UNREADABLE, "{body}");
        }
        // In a batch, only the unreadable answer is replaced.
        let batch = format!(
            r#"[{TOOLS},{{"jsonrpc":"2.0","id":4,"result":{{}}}},{{"jsonrpc":"2.0","id":5,"result":{{}}}}]"#
        );
        let asked = vec![
            (json!(3), "tools/list".to_string()),
            (json!(4), "prompts/list".to_string()),
            (json!(5), "tools/call".to_string()),
        ];
        let out = refused(filter_json_body(
            batch.as_bytes(),
            &asked,
            &[],
            &mut only_echo,
        ));
        assert_eq!(out[0]["result"]["tools"], json!([{"name": "echo"}]));
        assert_eq!(out[1]["error"]["code"], UNREADABLE_CODE);
        assert_eq!(out[2], json!({"jsonrpc": "2.0", "id": 5, "result": {}}));
    }

    #[test]
    fn nothing_is_read_when_no_list_was_asked() {
        let asked = vec![(json!(1), "tools/call".to_string())];
        assert_eq!(
            filter_json_body(b"not json", &asked, &[], &mut only_echo),
            JsonAnswer::Unchanged
        );
    }

    fn stream(asked: Vec<(Json, String)>, chunks: &[&str]) -> (String, SseCounts) {
        let mut sse = SseAnswers::new(asked);
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            out.extend(sse.push(chunk.as_bytes(), i + 1 == chunks.len(), &[], &mut only_echo));
        }
        (String::from_utf8(out).unwrap(), sse.take_counts())
    }

    fn data_lines(text: &str) -> Vec<Json> {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    }

    #[test]
    fn sse_list_answers_are_filtered_whatever_the_line_ends() {
        for end in ["\n\n", "\r\n\r\n", "\r\r", "\r\n\n", "\n\r\n", "\r\n\r"] {
            let text = format!(
                "event: message\r\nid: 1\r\ndata: {TOOLS}{end}data: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\n"
            );
            let (out, counts) = stream(tools_list(json!(3)), &[&text]);
            assert!(!out.contains("\"add\""), "{end:?}: {out}");
            assert!(out.starts_with("event: message\ndata: "), "{out}");
            assert!(out.contains("id: 1\n"), "{out}");
            let data = data_lines(&out);
            assert_eq!(data[0]["result"]["tools"], json!([{"name": "echo"}]));
            assert_eq!(data[0]["result"]["nextCursor"], "c2");
            assert_eq!(data[1]["method"], "notifications/progress");
            assert_eq!(counts, SseCounts::default());
        }
    }

    #[test]
    fn an_sse_list_answer_split_anywhere_is_filtered() {
        let text = format!("data: {TOOLS}\r\n\r\n");
        let bytes: Vec<String> = text.chars().map(String::from).collect();
        let chunks: Vec<&str> = bytes.iter().map(String::as_str).collect();
        let (out, _) = stream(tools_list(json!(3)), &chunks);
        assert_eq!(
            data_lines(&out)[0]["result"]["tools"],
            json!([{"name": "echo"}])
        );
    }

    #[test]
    fn an_incomplete_sse_event_at_the_end_is_not_passed() {
        let (out, _) = stream(tools_list(json!(3)), &[&format!("data: {TOOLS}\n")]);
        assert!(out.is_empty(), "{out}");
    }

    #[test]
    fn sse_list_answers_that_cannot_be_read_are_refused() {
        let dup =
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[]},"result":{"tools":[{"name":"add"}]}}"#;
        let (out, counts) = stream(tools_list(json!(3)), &[&format!("data: {dup}\n\n")]);
        // Not strict JSON: dropped (no client can act on it).
        assert!(out.is_empty(), "{out}");
        assert_eq!(counts.dropped, 1);
        let missing = r#"{"jsonrpc":"2.0","id":3,"result":{"tool":[{"name":"add"}]}}"#;
        let (out, counts) = stream(tools_list(json!(3)), &[&format!("data: {missing}\n\n")]);
        assert_eq!(
            data_lines(&out),
            [error_response(&json!(3), UNREADABLE_CODE, UNREADABLE)]
        );
        assert_eq!(counts.unreadable, 1);
    }

    #[test]
    fn sse_answers_to_ids_the_stream_did_not_ask_are_refused() {
        // The legacy transport's GET stream: the list answer to a POST elsewhere comes here.
        let text = format!(
            "event: endpoint\ndata: /message?sessionId=abc\n\nevent: message\ndata: {TOOLS}\n\n"
        );
        let (out, counts) = stream(Vec::new(), &[&text]);
        assert!(
            out.starts_with("event: endpoint\ndata: /message?sessionId=abc\n\n"),
            "{out}"
        );
        let data = data_lines(&out);
        assert_eq!(
            data[0],
            error_response(&json!(3), OUTSIDE_CODE, OUTSIDE_STREAM)
        );
        assert_eq!(counts.outside, 1);
        // Whatever its event type: a client that reads every event's data finds no list either.
        let (out, _) = stream(
            Vec::new(),
            &[&format!("event: endpoint\ndata: {TOOLS}\n\n")],
        );
        assert_eq!(
            data_lines(&out),
            [error_response(&json!(3), OUTSIDE_CODE, OUTSIDE_STREAM)]
        );
        // An error answer to another id is refused alike; a report without an id passes.
        let (out, _) = stream(
            tools_list(json!(1)),
            &[
                r#"data: {"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"m"}}

data: {"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}

"#,
            ],
        );
        let data = data_lines(&out);
        assert_eq!(data[0]["error"]["message"], OUTSIDE_STREAM);
        assert_eq!(data[1]["error"]["code"], -32700);
    }

    #[test]
    fn sse_answers_to_the_streams_other_requests_pass() {
        let asked = vec![
            (json!(3), "tools/list".to_string()),
            (json!("c"), "tools/call".to_string()),
        ];
        let call = r#"{"jsonrpc":"2.0","id":"c","result":{"content":[]}}"#;
        let (out, counts) = stream(asked, &[&format!("data: {call}\n\n")]);
        assert_eq!(out, format!("data: {call}\n\n"));
        assert_eq!(counts, SseCounts::default());
    }

    #[test]
    fn sse_data_that_is_not_json_rpc_is_dropped_and_counted() {
        let (out, counts) = stream(
            tools_list(json!(3)),
            &[
                "id: 7\ndata: {\"tools\":\ndata: []}\n\ndata: not json\n\ndata: [1]\n\ndata: []\n\ndata: {\"jsonrpc\":\"2.0\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"x\",\"result\":{\"tools\":[]}}\n\ndata: 5\n\n",
            ],
        );
        // The id still reaches the client, so a resumed stream starts after it.
        assert_eq!(out, "id: 7\n\n");
        assert_eq!(counts.dropped, 7);
    }

    #[test]
    fn sse_notifications_server_requests_empty_data_and_comments_pass() {
        let text = ": keep-alive\n\nid: prime\ndata:\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n";
        let (out, counts) = stream(Vec::new(), &[text]);
        assert_eq!(
            out,
            ": keep-alive\ndata: \nid: prime\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n"
        );
        assert_eq!(counts, SseCounts::default());
    }

    #[test]
    fn sse_batches_are_filtered_message_by_message() {
        let batch = format!(r#"[{TOOLS},{{"jsonrpc":"2.0","method":"notifications/progress"}}]"#);
        let (out, _) = stream(tools_list(json!(3)), &[&format!("data: {batch}\n\n")]);
        let data = data_lines(&out);
        assert_eq!(data[0][0]["result"]["tools"], json!([{"name": "echo"}]));
        assert_eq!(data[0][1]["method"], "notifications/progress");
    }

    #[test]
    fn the_legacy_transport_is_recognised_by_the_shims_rule() {
        assert!(legacy_transport("GET", "/sse"));
        assert!(legacy_transport("GET", "/github/sse?x=1"));
        assert!(legacy_transport("POST", "/message?sessionId=1"));
        assert!(legacy_transport("POST", "/a/messages"));
        assert!(!legacy_transport("POST", "/sse"));
        assert!(!legacy_transport("GET", "/message"));
        assert!(!legacy_transport("GET", "/mcp"));
        assert!(!legacy_transport("GET", "/ssex"));
        assert!(!legacy_transport("DELETE", "/sse"));
    }
}
