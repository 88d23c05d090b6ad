//! The life of every stream through one VM, as a sans-IO state machine: request headers,
//! waiting for keys, the request body and trailers, the response headers and body, and the
//! stream's end. The proxy's callbacks become calls of [`Filter`]'s methods and each returns
//! what the proxy should do ([`Step`], [`ResponseStep`], [`BodyStep`]); `adapter.rs` only
//! carries those out. Keeping every transition here means each has a native scenario test.
//!
//! The rule this machine keeps: every way a request can end (headers that end the stream, a
//! final data frame, trailers, a reset) either decides or refuses; nothing the filter held goes
//! on unjudged, and an answer the filter must rewrite but cannot read never goes on as it came.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::audit::Recorder;
use crate::authz::Evaluation;
use crate::cache::{Caller, TokenCache};
use crate::engine::{self, BodyDecision, Decision, Forward, RequestView};
use crate::host::Host;
use crate::keystore::{self, Fetch, FetchError, FetchResponse, KeyState, KeyStore, Reason};
use crate::mcp;
use crate::metric;
use crate::policy::{FilterConfig, KeySource, Policy};
use crate::response::{self, LocalResponse};

/// Maps keyed by ids the proxy or the filter chose (never by request data): a fast unseeded
/// hash is safe.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The root ticks this often while requests wait for keys; otherwise every `IDLE_TICKS`.
pub const IDLE_TICKS: u32 = 10;
/// A list answer larger than this is not rewritten: it is refused.
pub const MAX_FILTERED_RESPONSE: usize = 8 * 1024 * 1024;

/// What the proxy does after a request callback.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Let the request go on (or resume it, when it was paused).
    Continue,
    /// Hold it (and, for a body, buffer it).
    Pause,
    /// Answer it here.
    Respond(LocalResponse),
}

/// Header changes to make before the action; the removals first.
#[derive(Debug, PartialEq)]
pub struct Step {
    pub remove: Vec<String>,
    pub add: Vec<(String, String)>,
    pub action: Action,
    /// The decision once it is made (`allow`, or `deny:<reason>`), for the proxy's access log.
    pub decision: Option<String>,
}

impl Step {
    fn action(action: Action) -> Step {
        Step {
            remove: Vec::new(),
            add: Vec::new(),
            action,
            decision: None,
        }
    }

    fn pause() -> Step {
        Step::action(Action::Pause)
    }

    fn go() -> Step {
        Step::action(Action::Continue)
    }

    fn respond(response: LocalResponse) -> Step {
        Step::action(Action::Respond(response))
    }
}

/// What the proxy does with the response headers.
#[derive(Debug, PartialEq)]
pub struct ResponseStep {
    pub remove: Vec<String>,
    /// `Some`: replace the upstream's answer with this one.
    pub replace: Option<LocalResponse>,
}

/// What the proxy does with a response body chunk.
#[derive(Debug, PartialEq)]
pub struct BodyStep {
    /// `Some`: the chunk (or the whole buffered body) becomes these bytes.
    pub replace: Option<Vec<u8>>,
    /// Hold the body (buffer it) instead of sending it on.
    pub pause: bool,
}

impl BodyStep {
    fn pass() -> BodyStep {
        BodyStep {
            replace: None,
            pause: false,
        }
    }
}

/// Where a stream's request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Paused until keys arrive (waiting since this host time).
    WaitingKeys { since: DateTime<Utc> },
    /// Authenticated; the body is collected until complete, then judged. `held`: the headers
    /// are paused too, so the upstream has seen nothing yet.
    ReadingBody { held: bool },
    /// Judged and sent on; only the response may still be rewritten.
    Forwarded,
    /// Answered locally.
    Answered,
}

/// How a response is rewritten for its caller.
#[derive(Debug, Default)]
enum ResponseMode {
    #[default]
    Untouched,
    /// A JSON answer to list requests: buffered whole, then filtered.
    Json,
    /// An event stream, filtered event by event.
    Sse(Box<mcp::SseAnswers>),
    /// The answer was refused: whatever else comes is dropped.
    Refused,
}

/// One stream's state, from its request headers to its end.
struct StreamState {
    route: Option<String>,
    /// The request headers as they were judged (CEL's `request.*` for body-time rules).
    headers: Vec<(String, Vec<u8>)>,
    identity: Option<Caller>,
    phase: Phase,
    /// The request body as far as it has come (only on routes that judge bodies).
    body: Vec<u8>,
    /// The request is complete: its last data frame or trailers came (or its headers ended it).
    complete: bool,
    /// List requests whose answers are filtered for this caller: (id, method).
    lists: Vec<(Json, String)>,
    /// The route hides items per caller: event streams are watched for answers sent outside
    /// their request's stream.
    guard_streams: bool,
    response: ResponseMode,
}

impl StreamState {
    /// Whether the request asked for a list the answer's items are filtered in.
    fn filters_lists(&self) -> bool {
        self.lists
            .iter()
            .any(|(_, method)| mcp::list_kind(method).is_some())
    }
}

/// A request's headers as they arrived: the route they matched, and whether they end it.
struct Head {
    route: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    end_of_stream: bool,
}

/// A chunk of a request body as it arrived: the proxy's buffer size, whether it is the last,
/// and how to read the buffer.
struct Chunk<'r> {
    body_size: usize,
    end_of_stream: bool,
    read: BodyReader<'r>,
}

/// Everything one VM knows: its configuration, key stores and streams.
pub struct Filter {
    config: FilterConfig,
    /// The tokens each policy verified, by [`crate::policy::Policy::slot`].
    caches: Vec<TokenCache>,
    /// A cache that keeps nothing, for a policy without a slot (none should be).
    no_cache: TokenCache,
    /// One store per issuer and key URL, shared by the policies that name them.
    stores: FastMap<String, KeyStore>,
    streams: FastMap<u32, StreamState>,
    /// Requests paused until keys arrive.
    waiting: Vec<u32>,
    ticks: u32,
}

/// Reads `len` bytes of the current stream's request body from `start`.
pub type BodyReader<'a> = &'a mut dyn FnMut(usize, usize) -> Option<Vec<u8>>;

impl Filter {
    /// A VM's filter for `config`; `vm` numbers this VM among its siblings (key fetch leases).
    pub fn new(config: FilterConfig, host: &dyn Host) -> Filter {
        let mut stores = FastMap::default();
        let mut me = None;
        for policy in config.policies() {
            match policy.authn.as_ref().map(|a| (&a.keys, &a.expect.issuer)) {
                Some((KeySource::Inline(set), _)) => {
                    for skipped in &set.skipped {
                        log::warn!("mcp-auth: JWKS key skipped: {skipped}");
                    }
                }
                Some((KeySource::Remote(remote), issuer)) => {
                    let me = *me.get_or_insert_with(|| keystore::vm_number(host));
                    stores
                        .entry(keystore::cache_key(issuer, remote))
                        .or_insert_with(|| {
                            let store = KeyStore::new(remote.clone(), issuer, me);
                            store.seed(host);
                            store
                        });
                }
                None => {}
            }
        }
        let caches = config
            .policies()
            .map(|p| TokenCache::new(p.authn.as_ref().map_or(0, |a| a.token_cache_size)))
            .collect();
        Filter {
            config,
            caches,
            no_cache: TokenCache::new(0),
            stores,
            streams: FastMap::default(),
            waiting: Vec::new(),
            ticks: 0,
        }
    }

    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// Whether keys are fetched (the root must tick).
    pub fn has_remote_keys(&self) -> bool {
        !self.stores.is_empty()
    }

    /// Whether the proxy must tell [`Filter::on_request_headers`] the route's name.
    pub fn needs_route(&self) -> bool {
        !self.config.routes.is_empty()
    }

    /// Whether this stream is known (an entry is kept only for streams the filter must follow).
    pub fn follows(&self, context_id: u32) -> bool {
        self.streams.contains_key(&context_id)
    }

    /// The request headers arrived. `end_of_stream`: the request has no body.
    pub fn on_request_headers(
        &mut self,
        host: &dyn Host,
        context_id: u32,
        route: Option<String>,
        headers: Vec<(String, Vec<u8>)>,
        end_of_stream: bool,
    ) -> Step {
        let rec = Recorder::new(host);
        let judged = self.config.policy_for(route.as_deref()).is_some();
        let label = route.clone();
        let head = Head {
            route,
            headers,
            end_of_stream,
        };
        let mut step = self.request_headers(&rec, context_id, head);
        if judged {
            self.finish(&rec, context_id, label.as_deref(), None, &mut step);
        }
        step
    }

    fn request_headers(&mut self, host: &dyn Host, context_id: u32, head: Head) -> Step {
        let Head {
            route,
            headers,
            end_of_stream,
        } = head;
        // Headers the filter sets from claims are never taken from a client, on any route.
        let strip: Vec<String> = self
            .config
            .strip_headers
            .iter()
            .filter(|name| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)))
            .cloned()
            .collect();
        let headers: Vec<(String, Vec<u8>)> = headers
            .into_iter()
            .filter(|(n, _)| !strip.iter().any(|s| n.eq_ignore_ascii_case(s)))
            .collect();
        let Some(policy) = self.config.policy_for(route.as_deref()) else {
            let mut step = Step::go();
            step.remove = strip;
            return step;
        };
        let guard_streams = policy.rules.reads_mcp();
        if guard_streams {
            let view = RequestView { headers: &headers };
            // The legacy HTTP+SSE transport (2024-11-05) answers on a `GET …/sse` stream, apart
            // from the `POST …/message` that asked: those answers cannot be filtered per request.
            let text = |name: &str| {
                view.first(name)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .unwrap_or_default()
            };
            if mcp::legacy_transport(text(":method"), text(":path")) {
                host.count(metric::LEGACY_REFUSED, 1);
                let mut step = Step::respond(response::jsonrpc(
                    400,
                    &mcp::error_response(
                        &Json::Null,
                        -32600,
                        "the legacy HTTP+SSE transport is not available on this route: its rules \
                         show tools, prompts or resources per caller, and answers on that \
                         transport cannot be filtered; use Streamable HTTP",
                    ),
                    "mcp_auth_legacy_transport",
                ));
                step.remove = strip;
                return step;
            }
        }
        self.streams.insert(
            context_id,
            StreamState {
                route,
                headers,
                identity: None,
                phase: Phase::WaitingKeys {
                    since: DateTime::UNIX_EPOCH,
                },
                body: Vec::new(),
                complete: end_of_stream,
                lists: Vec::new(),
                guard_streams,
                response: ResponseMode::Untouched,
            },
        );
        let mut step = self.decide(host, context_id, None);
        let mut removed = strip;
        removed.append(&mut step.remove);
        step.remove = removed;
        step
    }

    /// A chunk of the request body arrived; the proxy's buffer now holds `body_size` bytes
    /// (all the body so far, while the filter pauses it).
    pub fn on_request_body(
        &mut self,
        host: &dyn Host,
        context_id: u32,
        body_size: usize,
        end_of_stream: bool,
        read: BodyReader<'_>,
    ) -> Step {
        let chunk = Chunk {
            body_size,
            end_of_stream,
            read,
        };
        self.audited(host, context_id, |f, host, id| {
            f.request_body(host, id, chunk)
        })
    }

    fn request_body(&mut self, host: &dyn Host, context_id: u32, chunk: Chunk<'_>) -> Step {
        let Chunk {
            body_size,
            end_of_stream,
            read,
        } = chunk;
        let Some(collect) = self.body_limit(context_id) else {
            return Step::go();
        };
        let Some(stream) = self.streams.get_mut(&context_id) else {
            return Step::go();
        };
        match stream.phase {
            Phase::Forwarded => return Step::go(),
            Phase::Answered => return Step::pause(),
            Phase::WaitingKeys { .. } | Phase::ReadingBody { .. } => {}
        }
        if let Some(limit) = collect {
            if body_size > limit {
                return self.refuse_body_size(host, context_id, limit);
            }
            let seen = stream.body.len();
            if body_size < seen {
                // The proxy's buffer lost bytes it held: what it holds can no longer be judged.
                stream.phase = Phase::Answered;
                return Step::respond(internal_error("the request body buffer shrank"));
            }
            if body_size > seen {
                match read(seen, body_size - seen) {
                    Some(bytes) if bytes.len() == body_size - seen => {
                        stream.body.extend_from_slice(&bytes)
                    }
                    _ => {
                        stream.phase = Phase::Answered;
                        return Step::respond(internal_error("the request body is unavailable"));
                    }
                }
            }
        }
        stream.complete |= end_of_stream;
        match stream.phase {
            Phase::WaitingKeys { .. } => Step::pause(),
            Phase::ReadingBody { .. } if stream.complete => self.judge_body(host, context_id),
            _ => Step::pause(),
        }
    }

    /// The request's trailers arrived: its body is complete.
    pub fn on_request_trailers(&mut self, host: &dyn Host, context_id: u32) -> Step {
        self.audited(host, context_id, Filter::request_trailers)
    }

    fn request_trailers(&mut self, host: &dyn Host, context_id: u32) -> Step {
        let Some(stream) = self.streams.get_mut(&context_id) else {
            return Step::go();
        };
        stream.complete = true;
        match stream.phase {
            Phase::WaitingKeys { .. } | Phase::Answered => Step::pause(),
            Phase::ReadingBody { .. } => self.judge_body(host, context_id),
            Phase::Forwarded => Step::go(),
        }
    }

    /// Whether the response headers may go unread, so the proxy does not copy them into the
    /// VM: the filter changes nothing in them and watches nothing of the answer, whatever they
    /// say (no list to filter, no MCP rule whose stream must be guarded, or no forwarded
    /// request at all). [`Filter::on_response_headers`] keeps them as they are then.
    pub fn response_headers_unread(&self, context_id: u32) -> bool {
        self.streams.get(&context_id).is_none_or(|stream| {
            stream.phase != Phase::Forwarded || (!stream.filters_lists() && !stream.guard_streams)
        })
    }

    /// The response headers arrived.
    pub fn on_response_headers(
        &mut self,
        host: &dyn Host,
        context_id: u32,
        headers: &[(String, Vec<u8>)],
    ) -> ResponseStep {
        let keep = ResponseStep {
            remove: Vec::new(),
            replace: None,
        };
        if self.response_headers_unread(context_id) {
            return keep;
        }
        let Some(stream) = self.streams.get_mut(&context_id) else {
            return keep;
        };
        let filtered = stream.filters_lists();
        // All values of a header, joined as a client's header API joins them: a second
        // `content-type` or `content-encoding` is seen as the client sees it.
        let header = |name: &str| {
            let values: Vec<String> = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        let content_type = header("content-type").unwrap_or_default();
        let encoded = header("content-encoding").is_some_and(|e| !e.is_empty() && e != "identity");
        let sse = is_event_stream(content_type.as_bytes());
        let json = content_type.starts_with("application/json");
        if !filtered && !sse {
            // Nothing was asked that must be filtered, and no event stream can carry answers.
            return keep;
        }
        let status = header(":status").and_then(|s| s.parse::<u16>().ok());
        if filtered && !sse && !json && status.is_some_and(|s| !(200..300).contains(&s)) {
            // An HTTP error carries no list: nothing to hide in it.
            return keep;
        }
        if encoded || (!sse && !json) {
            host.count(metric::RESPONSE_REFUSED, 1);
            log::warn!(
                "mcp-auth: an answer to be filtered came as {content_type:?}{}: refused",
                if encoded {
                    " with a content-encoding"
                } else {
                    ""
                }
            );
            stream.response = ResponseMode::Refused;
            return ResponseStep {
                remove: Vec::new(),
                replace: Some(response::jsonrpc(
                    502,
                    &mcp::error_response(
                        &stream
                            .lists
                            .first()
                            .map_or(Json::Null, |(id, _)| id.clone()),
                        -32603,
                        "the gateway could not read the server's answer, so it cannot show it \
                         filtered for this caller",
                    ),
                    "mcp_auth_unreadable_response",
                )),
            };
        }
        stream.response = if sse {
            ResponseMode::Sse(Box::new(mcp::SseAnswers::new(stream.lists.clone())))
        } else {
            ResponseMode::Json
        };
        // The body's length changes when items are removed.
        ResponseStep {
            remove: vec!["content-length".into()],
            replace: None,
        }
    }

    /// Whether the proxy holds a JSON list answer for the filter to judge at its end, or SSE
    /// bytes held back for the next read. Trailers end such an answer as a last data frame
    /// does, and the held body is judged then with [`Filter::on_response_body`].
    pub fn response_held(&self, context_id: u32) -> bool {
        self.streams.get(&context_id).is_some_and(|s| {
            let held = match &s.response {
                ResponseMode::Json => true,
                ResponseMode::Sse(answers) => answers.waiting() > 0,
                _ => false,
            };
            held && self.config.policy_for(s.route.as_deref()).is_some()
        })
    }

    /// What a response body callback returns when the filter need not read the chunk, so the
    /// proxy does not copy it into the VM: the pass of an answer left alone, the pause of a JSON
    /// answer still arriving (it is read whole at its end), the refusal of one grown too
    /// large, the dropping of a refused one.
    /// `None` when the chunk must be read ([`Filter::on_response_body`], which asks this first).
    pub fn response_body_unread(
        &mut self,
        host: &dyn Host,
        context_id: u32,
        body_size: usize,
        end_of_stream: bool,
    ) -> Option<BodyStep> {
        let judged = self
            .streams
            .get(&context_id)
            .is_some_and(|s| self.config.policy_for(s.route.as_deref()).is_some());
        let Some(stream) = self.streams.get_mut(&context_id).filter(|_| judged) else {
            return Some(BodyStep::pass());
        };
        match stream.response {
            ResponseMode::Untouched => Some(BodyStep::pass()),
            ResponseMode::Refused => Some(BodyStep {
                replace: (body_size > 0).then(Vec::new),
                pause: false,
            }),
            ResponseMode::Json if body_size > MAX_FILTERED_RESPONSE => {
                Some(refuse_oversized(host, stream))
            }
            ResponseMode::Json if !end_of_stream => Some(BodyStep {
                replace: None,
                pause: true,
            }),
            ResponseMode::Json | ResponseMode::Sse(_) => None,
        }
    }

    /// A response body chunk arrived: `body` is what the proxy's buffer holds now (all of
    /// the body so far while the filter pauses it, else the new chunk).
    pub fn on_response_body(
        &mut self,
        host: &dyn Host,
        context_id: u32,
        body: &[u8],
        end_of_stream: bool,
    ) -> BodyStep {
        if let Some(step) = self.response_body_unread(host, context_id, body.len(), end_of_stream) {
            return step;
        }
        let Some(policy) = self
            .streams
            .get(&context_id)
            .and_then(|s| self.config.policy_for(s.route.as_deref()))
        else {
            return BodyStep::pass();
        };
        let Some(stream) = self.streams.get_mut(&context_id) else {
            return BodyStep::pass();
        };
        let request = RequestView {
            headers: &stream.headers,
        };
        let mut keep = Shown {
            policy,
            identity: stream.identity.as_ref(),
            request,
            host,
            evaluation: Evaluation::default(),
            hidden: 0,
        };
        let step = match &mut stream.response {
            // Decided above, unread.
            ResponseMode::Untouched | ResponseMode::Refused => BodyStep::pass(),
            ResponseMode::Json => {
                match mcp::filter_json_body(body, &stream.lists, &policy.targets, &mut keep) {
                    mcp::JsonAnswer::Unchanged => BodyStep::pass(),
                    mcp::JsonAnswer::Filtered(bytes) => BodyStep {
                        replace: Some(bytes),
                        pause: false,
                    },
                    mcp::JsonAnswer::Refused { body, reasons } => {
                        host.count(metric::RESPONSE_REFUSED, 1);
                        log::warn!(
                            "mcp-auth: a list answer could not be read ({}): refused",
                            reasons.join("; ")
                        );
                        BodyStep {
                            replace: Some(body),
                            pause: false,
                        }
                    }
                }
            }
            ResponseMode::Sse(answers) => 'sse: {
                // Pushing this read now would send nothing: the proxy holds it back with what
                // it holds already, to hand them over again with the next read.
                if answers.wait(body, end_of_stream) {
                    break 'sse BodyStep {
                        replace: None,
                        pause: true,
                    };
                }
                let bytes = answers.push(body, end_of_stream, &policy.targets, &mut keep);
                let counts = answers.take_counts();
                for (name, n) in [
                    (metric::SSE_DROPPED, counts.dropped),
                    (metric::RESPONSE_REFUSED, counts.unreadable),
                    (metric::OUTSIDE_STREAM, counts.outside),
                ] {
                    if n > 0 {
                        host.count(name, n);
                    }
                }
                BodyStep {
                    // Lengths first: comparing the bytes is for an answer that kept its size.
                    replace: (bytes.len() != body.len() || bytes != body).then_some(bytes),
                    pause: false,
                }
            }
        };
        if keep.hidden > 0 {
            host.count(metric::LIST_ITEMS_HIDDEN, keep.hidden);
        }
        step
    }

    /// The stream is gone (ended or reset): forget it.
    pub fn on_done(&mut self, context_id: u32) {
        self.streams.remove(&context_id);
        self.waiting.retain(|w| *w != context_id);
    }

    /// The root's timer. Returns the streams to decide again ([`Filter::retry`]).
    pub fn on_tick(&mut self, host: &dyn Host) -> Vec<u32> {
        let tick = self.ticks;
        self.ticks = tick.wrapping_add(1);
        let waiting = !self.waiting.is_empty();
        let deferred = self.stores.values().any(KeyStore::deferred);
        if !waiting && !deferred && !tick.is_multiple_of(IDLE_TICKS) {
            return Vec::new();
        }
        let mut changed = false;
        for store in self.stores.values_mut() {
            changed |= store.on_tick(host);
        }
        if changed || waiting {
            self.take_waiters()
        } else {
            Vec::new()
        }
    }

    /// The answer to a keys fetch. Returns the streams to decide again.
    pub fn on_call_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        response: FetchResponse,
    ) -> Vec<u32> {
        let ours = self
            .stores
            .values_mut()
            .any(|store| store.on_response(host, token, response.clone()));
        if ours {
            self.take_waiters()
        } else {
            Vec::new()
        }
    }

    /// Decides again about a stream that waited for keys (the proxy made it current). A
    /// `Continue` means: resume the paused request.
    pub fn retry(&mut self, host: &dyn Host, context_id: u32) -> Step {
        self.audited(host, context_id, Filter::retry_decision)
    }

    fn retry_decision(&mut self, host: &dyn Host, context_id: u32) -> Step {
        let Some(stream) = self.streams.get(&context_id) else {
            return Step::pause();
        };
        let Phase::WaitingKeys { since } = stream.phase else {
            return Step::pause();
        };
        let mut step = self.decide(host, context_id, Some(since));
        if let (Action::Continue, Some(stream)) = (&step.action, self.streams.get_mut(&context_id))
            && let Phase::ReadingBody { held } = stream.phase
            && (held || !stream.body.is_empty())
        {
            // Part of the body is in the proxy's buffer already: resuming now would send it on
            // unjudged, so the headers stay paused until the whole body is judged.
            stream.phase = Phase::ReadingBody { held: true };
            step.action = Action::Pause;
        }
        step
    }

    /// Runs `decide` for a stream the filter follows, with the decision log listening.
    fn audited(
        &mut self,
        host: &dyn Host,
        context_id: u32,
        decide: impl FnOnce(&mut Filter, &dyn Host, u32) -> Step,
    ) -> Step {
        let rec = Recorder::new(host);
        let (before, route) = self.phase_of(context_id);
        let mut step = decide(self, &rec, context_id);
        if before.is_some() {
            self.finish(&rec, context_id, route.as_deref(), before, &mut step);
        }
        step
    }

    fn phase_of(&self, context_id: u32) -> (Option<Phase>, Option<String>) {
        match self.streams.get(&context_id) {
            Some(s) => (Some(s.phase), s.route.clone()),
            None => (None, None),
        }
    }

    /// Logs a decision made during this callback and labels it for the access log: a local
    /// answer of 400 or more is a denial; a request that became forwarded is allowed.
    fn finish(
        &self,
        rec: &Recorder<'_>,
        context_id: u32,
        route: Option<&str>,
        before: Option<Phase>,
        step: &mut Step,
    ) {
        // A decision made after the headers (on the body) is about the identity they carried.
        if let Some(id) = self
            .streams
            .get(&context_id)
            .and_then(|s| s.identity.as_ref())
            && !rec.knows_identity()
        {
            let text = |c: &str| id.claims().get(c).and_then(Json::as_str).unwrap_or("");
            rec.note(crate::host::Note::Identity {
                issuer: text("iss"),
                subject: text("sub"),
            });
        }
        match &step.action {
            Action::Respond(answer) if answer.status >= 400 || rec.reason().is_some() => {
                let reason = rec.reason().unwrap_or_else(|| answer.details.clone());
                log::info!("{}", rec.line("deny", Some(answer.status), route));
                step.decision = Some(format!("deny:{reason}"));
            }
            Action::Continue
                if before != Some(Phase::Forwarded)
                    && self
                        .streams
                        .get(&context_id)
                        .is_none_or(|s| s.phase == Phase::Forwarded) =>
            {
                if self.config.log_allowed {
                    log::info!("{}", rec.line("allow", None, route));
                }
                step.decision = Some("allow".into());
            }
            _ => {}
        }
    }

    fn take_waiters(&mut self) -> Vec<u32> {
        self.waiting.clone()
    }

    /// `Some(limit)` when the stream's body must be collected (its route judges bodies),
    /// `Some(None)` when it need not be, `None` when the stream is unknown.
    fn body_limit(&self, context_id: u32) -> Option<Option<usize>> {
        let stream = self.streams.get(&context_id)?;
        let policy = self.config.policy_for(stream.route.as_deref())?;
        Some(policy.rules.reads_mcp().then_some(policy.max_body_bytes))
    }

    fn refuse_body_size(&mut self, host: &dyn Host, context_id: u32, limit: usize) -> Step {
        if let Some(stream) = self.streams.get_mut(&context_id) {
            stream.phase = Phase::Answered;
            stream.body = Vec::new();
        }
        host.count(metric::DENIED_BODY_SIZE, 1);
        Step::respond(response::jsonrpc(
            413,
            &mcp::error_response(
                &Json::Null,
                -32600,
                &format!("the request body is over the {limit}-byte limit"),
            ),
            "mcp_auth_body_too_large",
        ))
    }

    /// Decides about a request's headers (again, after waiting since `waited`).
    fn decide(&mut self, host: &dyn Host, context_id: u32, waited: Option<DateTime<Utc>>) -> Step {
        let Some(stream) = self.streams.get(&context_id) else {
            return Step::pause();
        };
        let Some(policy) = self.config.policy_for(stream.route.as_deref()) else {
            return Step::go();
        };
        let request = RequestView {
            headers: &stream.headers,
        };
        let now = host.now();
        let store_key = match policy.authn.as_ref().map(|a| (&a.keys, &a.expect.issuer)) {
            Some((KeySource::Remote(remote), issuer)) => Some(keystore::cache_key(issuer, remote)),
            _ => None,
        };
        let mut reason = Reason::Load;
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            let store = store_key.as_ref().and_then(|k| self.stores.get(k));
            if let (Some(since), Some(store)) = (waited, store)
                && store.busy(now)
                && !store.waited_too_long(since, now)
            {
                break Decided::Wait(since);
            }
            let first = attempts == 1 && waited.is_none();
            let keys = match (policy.authn.as_ref().map(|a| &a.keys), store) {
                (Some(KeySource::Inline(set)), _) => KeyState::Ready {
                    set,
                    may_refetch: false,
                },
                (Some(KeySource::Remote(_)), Some(store)) => match store.state(now) {
                    KeyState::Ready { set, may_refetch } => {
                        if first {
                            host.count(metric::JWKS_CACHE_HIT, 1);
                        }
                        reason = Reason::UnknownKid;
                        KeyState::Ready {
                            set,
                            may_refetch: may_refetch && first,
                        }
                    }
                    other => {
                        if first {
                            host.count(metric::JWKS_CACHE_MISS, 1);
                        }
                        other
                    }
                },
                _ => KeyState::Failed(&FetchError::NoKeySource),
            };
            let cache = self.caches.get(policy.slot).unwrap_or(&self.no_cache);
            match engine::decide(policy, keys, cache, &request, host) {
                Decision::FetchKeys => {}
                other => break Decided::Now(other),
            }
            let issuer = policy
                .authn
                .as_ref()
                .map_or("", |a| a.expect.issuer.as_str());
            let Some(store) = store_key.as_ref().and_then(|k| self.stores.get_mut(k)) else {
                break Decided::Now(Decision::Respond(internal_error("no key store")));
            };
            if let Some(since) = waited {
                let answer = if let Some(error) = store.failure_since(since) {
                    response::keys_unavailable(issuer, error)
                } else if store.waited_too_long(since, now) {
                    response::keys_unavailable(issuer, FetchError::Waited)
                } else {
                    break Decided::Wait(since);
                };
                host.count(metric::KEYS_UNAVAILABLE, 1);
                break Decided::Now(Decision::Respond(answer));
            }
            match store.ask(host, reason) {
                Fetch::Waiting => break Decided::Wait(now),
                // Newer keys, or no refetch allowed: decide once more without refetching.
                Fetch::Updated | Fetch::RateLimited if attempts < 2 => continue,
                Fetch::Updated | Fetch::RateLimited => {
                    break Decided::Now(Decision::Respond(internal_error(
                        "the key cache did not settle",
                    )));
                }
                Fetch::Unavailable(error) => {
                    host.count(metric::KEYS_UNAVAILABLE, 1);
                    break Decided::Now(Decision::Respond(response::keys_unavailable(
                        issuer, &error,
                    )));
                }
            }
        };
        let hold = self.config.hold_headers;
        let judges_bodies = policy.rules.reads_mcp();
        // A 2026-07-28 call its headers name, under rules that read only names: judged from the
        // headers, the body goes on unbuffered (the server rejects a body that disagrees).
        let fast = match &outcome {
            Decided::Now(Decision::Continue(f) | Decision::ReadBody(f))
                if judges_bodies && policy.trust_mcp_headers && policy.rules.mcp_names_only() =>
            {
                let stream = self.streams.get(&context_id);
                let request = RequestView {
                    headers: stream.map_or(&[][..], |s| s.headers.as_slice()),
                };
                let text = |name: &str| {
                    request
                        .first(name)
                        .and_then(|v| std::str::from_utf8(v).ok())
                };
                stream.is_some_and(|s| !s.complete)
                    && text("mcp-protocol-version") == Some("2026-07-28")
                    && request.all("mcp-method").len() == 1
                    && request.all("mcp-name").len() == 1
                    && match (text("mcp-method"), text("mcp-name")) {
                        (Some(method), Some(name)) => {
                            mcp::header_view(method, name, &policy.targets).is_some_and(|view| {
                                engine::allows(policy, f.identity.as_ref(), &view, &request, host)
                            })
                        }
                        _ => false,
                    }
            }
            _ => false,
        };
        let Some(stream) = self.streams.get_mut(&context_id) else {
            return Step::pause();
        };
        if fast
            && let Decided::Now(Decision::Continue(forward) | Decision::ReadBody(forward)) = outcome
        {
            stream.phase = Phase::Forwarded;
            stream.identity = forward.identity.clone();
            // Its one answer comes on its own stream; no list was asked.
            stream.guard_streams = false;
            self.forget_waiter(context_id);
            return edits(forward, Action::Continue);
        }
        match outcome {
            Decided::Wait(since) => {
                stream.phase = Phase::WaitingKeys { since };
                if waited.is_none() {
                    self.waiting.push(context_id);
                }
                Step::pause()
            }
            Decided::Now(Decision::Respond(answer)) => {
                stream.phase = Phase::Answered;
                self.forget_waiter(context_id);
                Step::respond(answer)
            }
            // A request with a body on a route that judges bodies has it judged whatever its
            // method: a body the filter did not read never goes on.
            Decided::Now(Decision::Continue(forward)) if !judges_bodies || stream.complete => {
                if stream.guard_streams {
                    stream.phase = Phase::Forwarded;
                    stream.identity = forward.identity.clone();
                } else {
                    // Nothing of this stream is looked at again: no need to keep it.
                    self.streams.remove(&context_id);
                }
                self.forget_waiter(context_id);
                edits(forward, Action::Continue)
            }
            Decided::Now(Decision::Continue(forward) | Decision::ReadBody(forward)) => {
                stream.identity = forward.identity.clone();
                stream.phase = Phase::ReadingBody { held: hold };
                let complete = stream.complete;
                self.forget_waiter(context_id);
                if complete {
                    // Nothing more will come: judge what there is (no body is not JSON-RPC).
                    let judged = self.judge_body(host, context_id);
                    return merge(edits(forward, Action::Continue), judged);
                }
                edits(
                    forward,
                    if hold {
                        Action::Pause
                    } else {
                        Action::Continue
                    },
                )
            }
            Decided::Now(Decision::FetchKeys) => {
                stream.phase = Phase::Answered;
                Step::respond(internal_error("the key cache did not settle"))
            }
        }
    }

    fn forget_waiter(&mut self, context_id: u32) {
        self.waiting.retain(|w| *w != context_id);
    }

    /// Judges a complete request body.
    fn judge_body(&mut self, host: &dyn Host, context_id: u32) -> Step {
        let Some(stream) = self.streams.get_mut(&context_id) else {
            return Step::pause();
        };
        let Some(policy) = self.config.policy_for(stream.route.as_deref()) else {
            return Step::go();
        };
        let body = std::mem::take(&mut stream.body);
        let request = RequestView {
            headers: &stream.headers,
        };
        match engine::decide_body(policy, stream.identity.as_ref(), &request, &body, host) {
            BodyDecision::Forward { lists } => {
                stream.lists = lists;
                stream.phase = Phase::Forwarded;
                Step::go()
            }
            BodyDecision::Respond(answer) => {
                stream.phase = Phase::Answered;
                Step::respond(answer)
            }
        }
    }
}

/// Which listed items of one answer the caller is shown: each judged by the rules
/// ([`engine::keep_item`]), or, where the rules read of `mcp` nothing but names and nothing of
/// the request, a whole list's verdicts remembered with the caller for an answer already read.
/// Hidden items are counted once per body, not with a host call each.
struct Shown<'a> {
    policy: &'a Policy,
    identity: Option<&'a Caller>,
    request: RequestView<'a>,
    host: &'a dyn Host,
    evaluation: Evaluation,
    hidden: u64,
}

impl Shown<'_> {
    /// The caller whose verdicts on a list can be remembered, for these rules.
    fn remembering(&self) -> Option<&Caller> {
        self.identity.filter(|_| self.policy.rules.names_decide())
    }
}

impl mcp::Keep for Shown<'_> {
    fn keep(&mut self, view: &mcp::McpView) -> bool {
        let keep = engine::keep_item(
            self.policy,
            self.identity,
            &self.request,
            view,
            self.host,
            &mut self.evaluation,
        );
        self.hidden += u64::from(!keep);
        keep
    }

    fn recall(&mut self, list: mcp::ListKey) -> Option<std::rc::Rc<[bool]>> {
        let shown = self
            .remembering()?
            .list_verdicts(self.policy.rules.id(), list)?;
        self.hidden += shown.iter().filter(|shown| !**shown).count() as u64;
        Some(shown)
    }

    fn remember(&mut self, list: mcp::ListKey, shown: std::rc::Rc<[bool]>) {
        // A verdict a rule erred on is judged (and counted) again next time.
        if !self.evaluation.erred
            && let Some(caller) = self.remembering()
        {
            caller.remember_list_verdicts(self.policy.rules.id(), list, shown);
        }
    }
}

/// A JSON list answer over [`MAX_FILTERED_RESPONSE`]: refused with a JSON-RPC error for each
/// list asked, and whatever else comes of it dropped.
fn refuse_oversized(host: &dyn Host, stream: &mut StreamState) -> BodyStep {
    host.count(metric::RESPONSE_REFUSED, 1);
    log::warn!("mcp-auth: a list answer over {MAX_FILTERED_RESPONSE} bytes is refused");
    let error = refused_lists(&stream.lists);
    stream.response = ResponseMode::Refused;
    BodyStep {
        replace: Some(error),
        pause: false,
    }
}

enum Decided {
    Now(Decision),
    Wait(DateTime<Utc>),
}

/// A decision's header changes with the action to take after them.
fn edits(forward: Forward, action: Action) -> Step {
    Step {
        remove: forward.remove,
        add: forward.add,
        action,
        decision: None,
    }
}

/// The header changes of `first` with the action of `then` (a body judged right away).
fn merge(first: Step, then: Step) -> Step {
    match then.action {
        // A local answer replaces the request: its header changes no longer matter.
        Action::Respond(_) => then,
        action => Step { action, ..first },
    }
}

/// The answer for list requests whose answer could not be read: a JSON-RPC error each.
fn refused_lists(lists: &[(Json, String)]) -> Vec<u8> {
    let errors: Vec<Json> = lists
        .iter()
        .map(|(id, _)| {
            mcp::error_response(
                id,
                -32603,
                "the gateway could not read the server's list answer, so it cannot show it \
                 filtered for this caller",
            )
        })
        .collect();
    match errors.as_slice() {
        [one] => one.to_string().into_bytes(),
        _ => Json::Array(errors).to_string().into_bytes(),
    }
}

/// A 500 for a state the filter cannot judge in: it fails closed.
pub fn internal_error(reason: &str) -> LocalResponse {
    log::error!("mcp-auth: failing closed: {reason}");
    LocalResponse {
        status: 500,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::json!({"error": "server_error", "error_description": reason})
            .to_string()
            .into_bytes(),
        details: "mcp_auth_internal_error".into(),
    }
}

/// Whether a `content-type` value names an event stream anywhere in it, in any case. A
/// client may look for `text/event-stream` anywhere in the value rather than as its media
/// type, so the filter reads an answer as a stream as soon as any client could.
pub fn is_event_stream(content_type: &[u8]) -> bool {
    content_type
        .windows(EVENT_STREAM.len())
        .any(|w| w.eq_ignore_ascii_case(EVENT_STREAM.as_bytes()))
}

const EVENT_STREAM: &str = "text/event-stream";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stream_is_named_anywhere_in_the_content_type() {
        for yes in [
            "text/event-stream",
            "TEXT/EVENT-STREAM;charset=utf-8",
            " text/event-stream ",
            "application/json, text/event-stream",
        ] {
            assert!(is_event_stream(yes.as_bytes()), "{yes}");
        }
        for no in ["", "application/json", "text/event", "text/event-strea"] {
            assert!(!is_event_stream(no.as_bytes()), "{no}");
        }
    }
    use crate::testing::{FakeHost, rsa_jwks};

    /// A host, and a filter on it where only `echo` may be called; no authentication, so no
    /// keys are involved.
    fn filter(extra: &str) -> (FakeHost, Filter) {
        let host = FakeHost::new();
        let yaml = format!(
            "{extra}\npolicies:\n  authorization:\n    rules:\n    - allow: 'mcp.tool.name == \"echo\"'\n"
        );
        let filter = Filter::new(FilterConfig::parse(yaml.as_bytes()).unwrap(), &host);
        (host, filter)
    }

    fn post(len: usize) -> Vec<(String, Vec<u8>)> {
        vec![
            (":method".into(), b"POST".to_vec()),
            (":path".into(), b"/mcp".to_vec()),
            (":authority".into(), b"gw".to_vec()),
            ("content-length".into(), len.to_string().into_bytes()),
        ]
    }

    fn call(id: i64, tool: &str) -> Vec<u8> {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}"}}}}"#
        )
        .into_bytes()
    }

    /// Feeds `frames` as the proxy buffers them (each callback sees all bytes held so far).
    fn feed(
        f: &mut Filter,
        host: &FakeHost,
        id: u32,
        frames: &[&[u8]],
        eos_on_last: bool,
    ) -> Vec<Step> {
        let mut held: Vec<u8> = Vec::new();
        let mut steps = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            held.extend_from_slice(frame);
            let eos = eos_on_last && i + 1 == frames.len();
            let buffer = held.clone();
            let mut read =
                |start: usize, len: usize| buffer.get(start..start + len).map(<[u8]>::to_vec);
            steps.push(f.on_request_body(host, id, held.len(), eos, &mut read));
        }
        steps
    }

    fn is_denial(step: &Step, id: i64) -> bool {
        match &step.action {
            Action::Respond(r) => {
                let body: Json = serde_json::from_slice(&r.body).unwrap();
                body["id"] == id && body["error"]["code"].is_i64()
            }
            _ => false,
        }
    }

    #[test]
    fn a_body_is_collected_frame_by_frame_and_judged_at_its_last_frame() {
        let (host, mut f) = filter("");
        let body = call(1, "rm");
        let step = f.on_request_headers(&host, 1, None, post(body.len()), false);
        assert_eq!(
            step.action,
            Action::Continue,
            "headers go on without the hold"
        );
        let (a, b) = body.split_at(10);
        let steps = feed(&mut f, &host, 1, &[a, b], true);
        assert_eq!(steps[0].action, Action::Pause);
        assert!(is_denial(&steps[1], 1), "{:?}", steps[1]);
        assert_eq!(steps[1].decision.as_deref(), Some("deny:mcp"));

        let body = call(2, "echo");
        f.on_request_headers(&host, 2, None, post(body.len()), false);
        let steps = feed(&mut f, &host, 2, &[&body[..5], &body[5..]], true);
        assert_eq!(steps[1].action, Action::Continue);
        assert_eq!(steps[1].decision.as_deref(), Some("allow"));
    }

    #[test]
    fn trailers_end_a_request_and_judge_its_body() {
        let (host, mut f) = filter("");
        let body = call(3, "rm");
        f.on_request_headers(&host, 1, None, post(body.len()), false);
        let steps = feed(&mut f, &host, 1, &[&body], false);
        assert_eq!(
            steps[0].action,
            Action::Pause,
            "not the end: trailers follow"
        );
        assert!(is_denial(&f.on_request_trailers(&host, 1), 3));
    }

    #[test]
    fn held_headers_wait_for_the_judgement() {
        let (host, mut f) = filter("holdHeaders: true");
        let body = call(4, "echo");
        let step = f.on_request_headers(&host, 1, None, post(body.len()), false);
        assert_eq!(step.action, Action::Pause);
        let steps = feed(&mut f, &host, 1, &[&body], true);
        assert_eq!(
            steps[0].action,
            Action::Continue,
            "the body's Continue resumes both"
        );
    }

    #[test]
    fn a_buffer_that_shrinks_or_cannot_be_read_fails_closed() {
        let (host, mut f) = filter("");
        f.on_request_headers(&host, 1, None, post(20), false);
        let mut read = |_: usize, _: usize| Some(vec![b'{'; 10]);
        assert_eq!(
            f.on_request_body(&host, 1, 10, false, &mut read).action,
            Action::Pause
        );
        let step = f.on_request_body(&host, 1, 4, true, &mut read);
        assert!(matches!(step.action, Action::Respond(ref r) if r.status == 500));
        f.on_request_headers(&host, 2, None, post(20), false);
        let mut broken = |_: usize, _: usize| None;
        let step = f.on_request_body(&host, 2, 10, true, &mut broken);
        assert!(matches!(step.action, Action::Respond(ref r) if r.status == 500));
    }

    #[test]
    fn a_reset_stream_is_forgotten() {
        let (host, mut f) = filter("");
        f.on_request_headers(&host, 7, None, post(10), false);
        assert!(f.follows(7));
        f.on_done(7);
        assert!(!f.follows(7));
        // A callback after the end finds nothing to judge and holds nothing.
        let mut read = |_: usize, _: usize| None;
        assert_eq!(
            f.on_request_body(&host, 7, 0, true, &mut read).action,
            Action::Continue
        );
    }

    #[test]
    fn response_headers_are_read_only_when_the_answer_is_watched() {
        let list = br#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
        let text = vec![
            (":status".to_string(), b"200".to_vec()),
            ("content-type".to_string(), b"text/plain".to_vec()),
        ];
        // Rules that read nothing of MCP: an answer is neither filtered nor guarded.
        let host = FakeHost::new();
        let yaml = "policies:\n  authorization:\n    rules:\n    - allow: 'true'\n";
        let mut plain = Filter::new(FilterConfig::parse(yaml.as_bytes()).unwrap(), &host);
        plain.on_request_headers(&host, 1, None, post(list.len()), false);
        feed(&mut plain, &host, 1, &[list], true);
        assert!(plain.response_headers_unread(1));
        let step = plain.on_response_headers(&host, 1, &text);
        assert!(step.replace.is_none() && step.remove.is_empty());
        assert_eq!(
            plain.response_body_unread(&host, 1, 10, true),
            Some(BodyStep::pass())
        );
        // A per-tool rule: the list's answer is read once the request went on.
        let (host, mut f) = filter("");
        f.on_request_headers(&host, 1, None, post(list.len()), false);
        assert!(f.response_headers_unread(1), "nothing forwarded yet");
        feed(&mut f, &host, 1, &[list], true);
        assert!(!f.response_headers_unread(1));
        assert!(f.on_response_headers(&host, 1, &text).replace.is_some());
        assert!(f.response_headers_unread(99));
    }

    #[test]
    fn list_answers_are_filtered_and_unreadable_ones_refused() {
        let (host, mut f) = filter("");
        let list = br#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
        for id in [1, 2] {
            f.on_request_headers(&host, id, None, post(list.len()), false);
            feed(&mut f, &host, id, &[list], true);
        }
        let json = vec![
            (":status".to_string(), b"200".to_vec()),
            ("content-type".to_string(), b"application/json".to_vec()),
        ];
        let step = f.on_response_headers(&host, 1, &json);
        assert_eq!(step.remove, vec!["content-length".to_string()]);
        let answer =
            br#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"echo"},{"name":"rm"}]}}"#;
        assert!(f.on_response_body(&host, 1, &answer[..20], false).pause);
        assert!(f.response_held(1), "trailers would end a held answer");
        assert!(!f.response_held(2) && !f.response_held(99));
        // Unread, the same pause; the end must be read.
        assert_eq!(
            f.response_body_unread(&host, 1, 20, false),
            Some(f.on_response_body(&host, 1, &answer[..20], false))
        );
        assert_eq!(f.response_body_unread(&host, 1, answer.len(), true), None);
        // A stream the filter does not follow passes unread.
        assert_eq!(
            f.response_body_unread(&host, 99, 10, true),
            Some(BodyStep::pass())
        );
        let out = f.on_response_body(&host, 1, answer, true);
        let out: Json = serde_json::from_slice(&out.replace.unwrap()).unwrap();
        assert_eq!(
            out["result"]["tools"],
            serde_json::json!([{"name": "echo"}])
        );
        let hidden = host
            .counters
            .borrow()
            .get(metric::LIST_ITEMS_HIDDEN)
            .copied();
        assert_eq!(hidden, Some(1));

        let text = vec![
            (":status".to_string(), b"200".to_vec()),
            ("content-type".to_string(), b"text/plain".to_vec()),
        ];
        let step = f.on_response_headers(&host, 2, &text);
        assert_eq!(step.replace.map(|r| r.status), Some(502));
    }

    #[test]
    fn an_sse_list_answer_split_across_reads_is_held_back_and_judged_whole() {
        let (host, mut f) = filter("");
        let list = br#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
        f.on_request_headers(&host, 1, None, post(list.len()), false);
        feed(&mut f, &host, 1, &[list], true);
        let sse = vec![
            (":status".to_string(), b"200".to_vec()),
            ("content-type".to_string(), b"text/event-stream".to_vec()),
        ];
        f.on_response_headers(&host, 1, &sse);
        let answer = concat!(
            ": open\n\nevent: message\ndata: ",
            r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"echo"},{"name":"rm"}]}}"#,
            "\n\n"
        )
        .as_bytes();
        // The comment goes on at once, with the event's start held inside the filter.
        let first = f.on_response_body(&host, 1, &answer[..30], false);
        assert!(!first.pause);
        assert_eq!(first.replace.as_deref(), Some(&b": open\n"[..]));
        assert!(!f.response_held(1));
        // A read that writes nothing is held back in the proxy, and trailers would end it.
        let rest = &answer[30..];
        assert_eq!(
            f.on_response_body(&host, 1, &rest[..40], false),
            BodyStep {
                replace: None,
                pause: true
            }
        );
        assert!(f.response_held(1));
        assert!(f.on_response_body(&host, 1, &rest[..60], false).pause);
        let out = f.on_response_body(&host, 1, rest, false);
        assert!(!out.pause && !f.response_held(1));
        let expected = concat!(
            "event: message\ndata: ",
            r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"echo"}]}}"#,
            "\n\n"
        );
        assert_eq!(String::from_utf8(out.replace.unwrap()).unwrap(), expected);
        // An event cut off by trailers is discarded, as the client would discard it.
        f.on_request_headers(&host, 2, None, post(list.len()), false);
        feed(&mut f, &host, 2, &[list], true);
        f.on_response_headers(&host, 2, &sse);
        assert!(f.on_response_body(&host, 2, &rest[..40], false).pause);
        assert!(f.response_held(2));
        let ended = f.on_response_body(&host, 2, &rest[..40], true);
        assert_eq!(ended.replace.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn keys_are_fetched_by_the_root_and_the_waiting_request_is_decided_again() {
        let host = FakeHost::new();
        let yaml = "policies:\n  mcpAuthentication:\n    issuer: https://org.okta.com/oauth2/default\n    audiences: [api://default]\n    jwks:\n      url: https://org.okta.com/oauth2/default/v1/keys\n";
        let mut f = Filter::new(FilterConfig::parse(yaml.as_bytes()).unwrap(), &host);
        let mut headers = post(0);
        headers.push(("authorization".into(), b"Bearer aaa.bbb.ccc".to_vec()));
        let step = f.on_request_headers(&host, 1, None, headers, true);
        assert_eq!(step.action, Action::Pause);
        assert!(
            host.calls().is_empty(),
            "a request's callback dispatches nothing"
        );
        assert!(f.on_tick(&host).contains(&1));
        let calls = host.calls();
        assert_eq!(calls.len(), 1, "the root's tick made the call");
        // The stream is gone before the answer: the answer still lands in the store.
        f.on_done(1);
        let body = rsa_jwks("k1").into_bytes();
        let answer = FetchResponse {
            status: Some(200),
            cache_control: Some("max-age=300".into()),
            body_size: body.len(),
            body,
        };
        assert!(f.on_call_response(&host, calls[0].0, answer).is_empty());
        let mut headers = post(0);
        headers.push(("authorization".into(), b"Bearer aaa.bbb.ccc".to_vec()));
        let step = f.on_request_headers(&host, 2, None, headers, true);
        assert!(
            matches!(step.action, Action::Respond(ref r) if r.status == 401),
            "keys are there: the token is judged at once"
        );
        assert_eq!(host.calls().len(), 1);
    }
}
