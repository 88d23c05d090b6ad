//! The proxy-wasm adapter: the only file that calls the SDK. It reads the configuration and
//! the request headers, hands them to the core (`engine::decide`), and carries the decision
//! out: remove headers and continue, or answer locally. Hostcall failures fail closed with a
//! 500 instead of the SDK's panics, because a panic would kill the worker's VM.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::engine::{self, BodyDecision, Decision, Forward, KeyState, RequestView};
use crate::host::{Host, SharedWrite};
use crate::jwt::Identity;
use crate::keystore::{self, Fetch, FetchResponse, KeyStore, MAX_JWKS_BYTES, Reason};
use crate::policy::{FilterConfig, KeySource, Location};
use crate::response::{self, LocalResponse};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// The root timer of a VM with remote keys: it serves requests waiting for keys at this pace,
/// and looks at the shared cache (other VMs' fetches, due refreshes) every `IDLE_TICKS` ticks.
/// The period is set once, from the root context: changing it from a stream is not reliable
/// across hosts.
const TICK: Duration = Duration::from_millis(100);
const IDLE_TICKS: u32 = 10;
/// The memory gauge is refreshed on the first request and every this many after it.
const MEMORY_EVERY: u32 = 1024;
const MEMORY_GAUGE: &str = "mcp_auth.memory_bytes";
/// How long past the fetch timeout a request may wait for keys another VM is fetching.
const WAIT_GRACE_MS: i64 = 1000;

/// Maps looked up on every request, keyed by names and ids the filter or the proxy chose (never
/// by request data), so a fast unseeded hash is safe.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The proxy's side of [`Host`]: hostcalls. Counters are defined on first use.
#[derive(Default)]
struct ProxyHost {
    metrics: RefCell<FastMap<String, u32>>,
}

impl Host for ProxyHost {
    fn now(&self) -> DateTime<Utc> {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| DateTime::from_timestamp(d.as_secs() as i64, d.subsec_nanos()))
            // No clock means no way to check expiry: a time after every `exp` fails closed.
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    fn count(&self, name: &str, delta: u64) {
        let mut metrics = self.metrics.borrow_mut();
        let id = match metrics.get(name) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, name) {
                Ok(id) => {
                    metrics.insert(name.to_string(), id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX));
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), cas)) => Some((value, cas.unwrap_or(0))),
            Ok((None, cas)) => Some((Vec::new(), cas.unwrap_or(0))),
            Err(_) => None,
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        let cas = if cas == 0 { None } else { Some(cas) };
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => SharedWrite::Written,
            Err(Status::CasMismatch) => SharedWrite::CasMismatch,
            Err(_) => SharedWrite::Failed,
        }
    }

    fn dispatch_get(&self, location: &Location, timeout: Duration) -> Result<u32, String> {
        hostcalls::dispatch_http_call(
            &location.cluster,
            vec![
                (":method", "GET"),
                (":path", &location.path),
                (":authority", &location.authority),
                ("accept", "application/json"),
                ("user-agent", "mcp-auth-filter"),
            ],
            None,
            vec![],
            timeout,
        )
        .map_err(|status| match status {
            Status::BadArgument => "the cluster is not configured in the proxy".to_string(),
            other => format!("the proxy refused the call ({other:?})"),
        })
    }
}

/// A request paused until keys arrive.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    context_id: u32,
    since_ms: i64,
}

/// Response bodies larger than this are passed on unfiltered (and counted).
const MAX_FILTERED_RESPONSE: usize = 8 * 1024 * 1024;

/// How a response is rewritten for its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ResponseMode {
    #[default]
    Untouched,
    Json,
    Sse,
}

/// What a stream carries from its request headers to its body and response.
#[derive(Default)]
struct StreamData {
    route: Option<String>,
    /// The request headers as they were judged (CEL's `request.*` for body-time rules).
    headers: Vec<(String, Vec<u8>)>,
    identity: Option<Identity>,
    /// The body must be judged by MCP-level rules when complete.
    judge_body: bool,
    /// List requests whose responses are filtered for this caller.
    lists: Vec<(serde_json::Value, String)>,
    response: ResponseMode,
    /// The SSE answer's parser and filter, kept from chunk to chunk.
    sse: Option<crate::mcp::SseAnswers>,
}

/// Everything one VM knows, shared by its root context and its streams.
#[derive(Default)]
struct State {
    config: Option<FilterConfig>,
    streams: RefCell<FastMap<u32, StreamData>>,
    /// One store per issuer and key URL, shared by the policies that name them.
    stores: RefCell<FastMap<String, KeyStore>>,
    waiting: RefCell<Vec<Waiter>>,
    ticks: Cell<u32>,
    requests: Cell<u32>,
    memory_gauge: Cell<Option<u32>>,
    host: ProxyHost,
}

/// What became of a request after a decision.
enum Outcome {
    Forward,
    /// Forward the headers; the body is judged when complete.
    ReadBody,
    Answered,
    Wait,
}

impl State {
    /// Publishes the VM's linear memory size as the gauge `mcp_auth.memory_bytes`, so an
    /// operator (and `make bench`) can see that the caches keep it bounded.
    fn record_memory(&self) {
        let id = match self.memory_gauge.get() {
            Some(id) => id,
            None => match hostcalls::define_metric(MetricType::Gauge, MEMORY_GAUGE) {
                Ok(id) => {
                    self.memory_gauge.set(Some(id));
                    id
                }
                Err(_) => return,
            },
        };
        let bytes = core::arch::wasm32::memory_size(0).saturating_mul(64 * 1024);
        let _ = hostcalls::record_metric(id, bytes as u64);
    }

    /// Decides about the current stream's request and carries the decision out. `waited`
    /// is set when the request already waited for keys: it must not ask for another fetch.
    fn run(&self, context_id: u32, waited: Option<Waiter>) -> Outcome {
        let n = self.requests.get().wrapping_add(1);
        self.requests.set(n);
        if n % MEMORY_EVERY == 1 {
            self.record_memory();
        }
        let Some(config) = &self.config else {
            fail_closed("the filter has no configuration");
            return Outcome::Answered;
        };
        let route = match config.routes.is_empty() {
            true => None,
            false => hostcalls::get_property(vec!["xds", "route_name"])
                .ok()
                .flatten()
                .and_then(|name| String::from_utf8(name).ok()),
        };
        // A route without a policy in the configuration is not protected by this filter.
        let Some(policy) = config.policy_for(route.as_deref()) else {
            return Outcome::Forward;
        };
        let Some(headers) = header_pairs(MapType::HttpRequestHeaders) else {
            fail_closed("request headers are unavailable");
            return Outcome::Answered;
        };
        let request = RequestView { headers: &headers };
        let now_ms = self.host.now().timestamp_millis();
        let mut stores = self.stores.borrow_mut();
        let mut store = match policy.authn.as_ref().map(|a| (&a.keys, &a.expect.issuer)) {
            Some((KeySource::Remote(remote), issuer)) => {
                stores.get_mut(&keystore::cache_key(issuer, remote))
            }
            _ => None,
        };
        let mut reason = Reason::Load;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let keys = match (policy.authn.as_ref().map(|a| &a.keys), store.as_ref()) {
                (Some(KeySource::Inline(set)), _) => KeyState::Ready {
                    set,
                    may_refetch: false,
                },
                (Some(KeySource::Remote(_)), Some(store)) => match store.state(now_ms) {
                    KeyState::Ready { set, may_refetch } => {
                        if attempts == 1 && waited.is_none() {
                            self.host.count(keystore::metric::CACHE_HIT, 1);
                        }
                        reason = Reason::UnknownKid;
                        KeyState::Ready {
                            set,
                            may_refetch: may_refetch && waited.is_none() && attempts == 1,
                        }
                    }
                    other => {
                        if attempts == 1 && waited.is_none() {
                            self.host.count(keystore::metric::CACHE_MISS, 1);
                        }
                        other
                    }
                },
                _ => KeyState::Failed("no key source"),
            };
            match engine::decide(policy, keys, &request, &self.host) {
                Decision::Continue(forward) => {
                    if !apply(&forward) {
                        return Outcome::Answered;
                    }
                    return Outcome::Forward;
                }
                Decision::ReadBody(forward) => {
                    if !apply(&forward) {
                        return Outcome::Answered;
                    }
                    self.streams.borrow_mut().insert(
                        context_id,
                        StreamData {
                            route: route.clone(),
                            headers: headers.clone(),
                            identity: forward.identity,
                            judge_body: true,
                            ..StreamData::default()
                        },
                    );
                    return Outcome::ReadBody;
                }
                Decision::Respond(response) => {
                    respond(&response);
                    return Outcome::Answered;
                }
                Decision::FetchKeys => {}
            }
            let Some(store) = store.as_mut() else {
                fail_closed("no key store");
                return Outcome::Answered;
            };
            if let Some(w) = waited {
                let issuer = policy
                    .authn
                    .as_ref()
                    .map_or("", |a| a.expect.issuer.as_str());
                let answer = if let Some(error) = store.failure_since(w.since_ms) {
                    response::keys_unavailable(issuer, error)
                } else if now_ms
                    > w.since_ms
                        .saturating_add(store.config().timeout.as_millis() as i64)
                        .saturating_add(WAIT_GRACE_MS)
                {
                    response::keys_unavailable(issuer, "no answer in time")
                } else {
                    return Outcome::Wait;
                };
                self.host.count(engine::metric::KEYS_UNAVAILABLE, 1);
                respond(&answer);
                return Outcome::Answered;
            }
            match store.fetch(&self.host, reason) {
                Fetch::Waiting => {
                    self.waiting.borrow_mut().push(Waiter {
                        context_id,
                        since_ms: now_ms,
                    });
                    return Outcome::Wait;
                }
                // Newer keys, or no refetch allowed: decide once more without refetching.
                Fetch::Updated | Fetch::RateLimited if attempts < 2 => continue,
                Fetch::Updated | Fetch::RateLimited => {
                    fail_closed("the key cache did not settle");
                    return Outcome::Answered;
                }
                Fetch::Unavailable(error) => {
                    self.host.count(engine::metric::KEYS_UNAVAILABLE, 1);
                    let issuer = policy
                        .authn
                        .as_ref()
                        .map_or("", |a| a.expect.issuer.as_str());
                    respond(&response::keys_unavailable(issuer, &error));
                    return Outcome::Answered;
                }
            }
        }
    }

    /// Decides again about every waiting request, after keys arrived or a fetch failed.
    fn resume_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiting.borrow_mut());
        for w in waiters {
            // A stream that ended while it waited is gone; nothing to resume.
            if hostcalls::set_effective_context(w.context_id).is_err() {
                continue;
            }
            match self.run(w.context_id, Some(w)) {
                Outcome::Forward | Outcome::ReadBody => {
                    let _ = hostcalls::resume_http_request();
                }
                Outcome::Answered => {}
                Outcome::Wait => self.waiting.borrow_mut().push(w),
            }
        }
    }

    /// The answer to a keys fetch. Envoy delivers it to the context that dispatched the call,
    /// the root (background refresh) or a stream (a request that needed keys), so both
    /// forward it here.
    fn on_call_response(&self, token: u32, headers: usize, body_size: usize) {
        // A failed call (reset, timeout) arrives with no headers at all.
        let headers = match headers {
            0 => Vec::new(),
            _ => header_pairs(MapType::HttpCallResponseHeaders).unwrap_or_default(),
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let status = header(":status").and_then(|s| s.parse::<u16>().ok());
        let cache_control = header("cache-control").map(str::to_string);
        let body = if body_size == 0 || body_size > MAX_JWKS_BYTES {
            Vec::new()
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let response = FetchResponse {
            status,
            cache_control,
            body,
            body_size,
        };
        let ours = self
            .stores
            .borrow_mut()
            .values_mut()
            .any(|store| store.on_response(&self.host, token, response.clone()));
        if ours {
            self.resume_waiters();
        }
    }

    fn is_waiting(&self, context_id: u32) -> bool {
        self.waiting
            .borrow()
            .iter()
            .any(|w| w.context_id == context_id)
    }

    /// Judges a complete request body. Returns the action for the body callback.
    fn judge_body(&self, context_id: u32, body_size: usize) -> Action {
        let Some(config) = &self.config else {
            return Action::Continue;
        };
        let mut streams = self.streams.borrow_mut();
        let Some(data) = streams.get_mut(&context_id) else {
            return Action::Continue;
        };
        data.judge_body = false;
        let Some(policy) = config.policy_for(data.route.as_deref()) else {
            return Action::Continue;
        };
        let body = if body_size == 0 {
            Vec::new()
        } else {
            match buffer_bytes(BufferType::HttpRequestBody, 0, body_size) {
                Some(body) => body,
                None => {
                    fail_closed("the request body is unavailable");
                    return Action::Pause;
                }
            }
        };
        let request = RequestView {
            headers: &data.headers,
        };
        match engine::decide_body(policy, data.identity.as_ref(), &request, &body, &self.host) {
            BodyDecision::Forward { lists } => {
                data.lists = lists;
                Action::Continue
            }
            BodyDecision::Respond(response) => {
                respond(&response);
                Action::Pause
            }
        }
    }

    /// Rewrites a list response (complete JSON, or the complete SSE events so far) for its
    /// caller. Returns the action for the response body callback.
    fn filter_response(&self, context_id: u32, body_size: usize, end_of_stream: bool) -> Action {
        let Some(config) = &self.config else {
            return Action::Continue;
        };
        let mut streams = self.streams.borrow_mut();
        let Some(data) = streams.get_mut(&context_id) else {
            return Action::Continue;
        };
        let Some(policy) = config.policy_for(data.route.as_deref()) else {
            return Action::Continue;
        };
        if data.response == ResponseMode::Untouched {
            return Action::Continue;
        }
        if data.response == ResponseMode::Json && body_size > MAX_FILTERED_RESPONSE {
            log::warn!("mcp-auth: a list response of {body_size} bytes is passed on unfiltered");
            self.host.count("mcp_auth.list_unfiltered_too_large", 1);
            return Action::Continue;
        }
        if data.response == ResponseMode::Json && !end_of_stream {
            return Action::Pause;
        }
        let Some(body) = buffer_bytes(BufferType::HttpResponseBody, 0, body_size) else {
            return Action::Continue;
        };
        let request = RequestView {
            headers: &data.headers,
        };
        let mut keep = |view: &crate::mcp::McpView| {
            engine::keep_item(policy, data.identity.as_ref(), &request, view, &self.host)
        };
        match data.response {
            ResponseMode::Json => {
                use crate::mcp::JsonAnswer;
                match crate::mcp::filter_json_body(&body, &data.lists, &policy.targets, &mut keep) {
                    JsonAnswer::Unchanged => {}
                    JsonAnswer::Filtered(new) => {
                        set_buffer_bytes(BufferType::HttpResponseBody, 0, body_size, &new);
                    }
                    JsonAnswer::Refused { body: new, reasons } => {
                        log::warn!("mcp-auth: a list answer is refused: {}", reasons.join("; "));
                        self.host.count("mcp_auth.list_unreadable", 1);
                        set_buffer_bytes(BufferType::HttpResponseBody, 0, body_size, &new);
                    }
                }
                Action::Continue
            }
            ResponseMode::Sse => {
                // Each chunk goes on as soon as it is read: the filter holds a partial event.
                let lists = &data.lists;
                let sse = data
                    .sse
                    .get_or_insert_with(|| crate::mcp::SseAnswers::new(lists.clone()));
                let out = sse.push(&body, end_of_stream, &policy.targets, &mut keep);
                let counts = sse.take_counts();
                for (name, n) in [
                    ("mcp_auth.sse_events_dropped", counts.dropped),
                    ("mcp_auth.list_unreadable", counts.unreadable),
                    ("mcp_auth.answers_outside_stream", counts.outside),
                ] {
                    if n > 0 {
                        self.host.count(name, n);
                    }
                }
                if out != body {
                    set_buffer_bytes(BufferType::HttpResponseBody, 0, body_size, &out);
                }
                Action::Continue
            }
            ResponseMode::Untouched => Action::Continue,
        }
    }

    /// Chooses how the response is filtered, from its content type.
    fn on_response_headers(&self, context_id: u32) {
        let mut streams = self.streams.borrow_mut();
        let Some(data) = streams.get_mut(&context_id) else {
            return;
        };
        if data.lists.is_empty() {
            return;
        }
        let headers = header_pairs(MapType::HttpResponseHeaders).unwrap_or_default();
        let content_type = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
            .unwrap_or_default();
        data.response = if content_type.starts_with("text/event-stream") {
            ResponseMode::Sse
        } else if content_type.starts_with("application/json") {
            ResponseMode::Json
        } else {
            ResponseMode::Untouched
        };
        if data.response != ResponseMode::Untouched {
            // The body's length changes when items are removed.
            let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, "content-length");
        }
    }

    fn forget(&self, context_id: u32) {
        self.streams.borrow_mut().remove(&context_id);
        self.waiting
            .borrow_mut()
            .retain(|w| w.context_id != context_id);
    }
}

#[derive(Default)]
struct Root {
    state: Rc<State>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        self.state.on_call_response(token, headers, body_size);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            _ => {
                log::error!("mcp-auth: configuration rejected: (configuration): is missing");
                return false;
            }
        };
        let config = match FilterConfig::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                log::error!("mcp-auth: configuration rejected: {e}");
                return false;
            }
        };
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
                    let me = *me.get_or_insert_with(|| keystore::vm_number(&self.state.host));
                    stores
                        .entry(keystore::cache_key(issuer, remote))
                        .or_insert_with(|| {
                            let store = KeyStore::new(remote.clone(), issuer, me);
                            store.seed(&self.state.host);
                            store
                        });
                }
                None => {}
            }
        }
        let remote = !stores.is_empty();
        // A new configuration starts from a fresh state; streams of the old one keep theirs.
        self.state = Rc::new(State {
            config: Some(config),
            stores: RefCell::new(stores),
            ..State::default()
        });
        if remote {
            // The first tick comes soon and loads the keys before the first request needs them.
            let _ = hostcalls::set_tick_period(TICK);
        }
        true
    }

    fn on_tick(&mut self) {
        let tick = self.state.ticks.get();
        self.state.ticks.set(tick.wrapping_add(1));
        let waiting = !self.state.waiting.borrow().is_empty();
        if !waiting && !tick.is_multiple_of(IDLE_TICKS) {
            return;
        }
        let mut changed = false;
        for store in self.state.stores.borrow_mut().values_mut() {
            changed |= store.on_tick(&self.state.host);
        }
        if changed || waiting {
            self.state.resume_waiters();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            context_id,
            state: self.state.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    context_id: u32,
    state: Rc<State>,
}

impl Context for Stream {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        self.state.on_call_response(token, headers, body_size);
    }

    fn on_done(&mut self) -> bool {
        self.state.forget(self.context_id);
        true
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        match self.state.run(self.context_id, None) {
            Outcome::Forward => Action::Continue,
            // A POST without a body has nothing to judge but is still judged (as not JSON-RPC).
            Outcome::ReadBody if end_of_stream => self.state.judge_body(self.context_id, 0),
            // The headers go on; the body is held by `on_http_request_body` until judged.
            // (Pausing here would not do: Envoy does not hand a wasm filter the body of a
            // request whose headers it paused.)
            Outcome::ReadBody => Action::Continue,
            Outcome::Answered => Action::Pause,
            Outcome::Wait => Action::Pause,
        }
    }

    /// While the request waits for keys its body must wait too: some hosts resume a stream
    /// whose headers stopped iteration as soon as a body callback says Continue, which would
    /// send an unauthenticated request upstream. A body that MCP-level rules judge is held
    /// until it is complete.
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.state.is_waiting(self.context_id) {
            return Action::Pause;
        }
        let (judge, limit) = {
            let streams = self.state.streams.borrow();
            match streams.get(&self.context_id) {
                Some(data) if data.judge_body => {
                    let limit = self
                        .state
                        .config
                        .as_ref()
                        .and_then(|c| c.policy_for(data.route.as_deref()))
                        .map_or(crate::mcp::DEFAULT_BODY_LIMIT, |p| p.max_body_bytes);
                    (true, limit)
                }
                _ => (false, 0),
            }
        };
        if !judge {
            return Action::Continue;
        }
        if body_size > limit {
            self.state.host.count(engine::metric::DENIED_BODY_SIZE, 1);
            respond(&response::jsonrpc(
                413,
                &crate::mcp::error_response(
                    &serde_json::Value::Null,
                    -32600,
                    &format!("the request body is over the {limit}-byte limit"),
                ),
                "mcp_auth_body_too_large",
            ));
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.state.judge_body(self.context_id, body_size)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.state.on_response_headers(self.context_id);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.state
            .filter_response(self.context_id, body_size, end_of_stream)
    }
}

/// Applies a decision's header changes; on failure the request was answered with a 500.
fn apply(forward: &Forward) -> bool {
    for name in &forward.remove {
        if hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).is_err() {
            fail_closed("a request header could not be removed");
            return false;
        }
    }
    for (name, value) in &forward.add {
        if hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value).is_err() {
            fail_closed("a request header could not be set");
            return false;
        }
    }
    true
}

fn fail_closed(reason: &str) {
    log::error!("mcp-auth: failing closed: {reason}");
    respond(&LocalResponse {
        status: 500,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::json!({"error": "server_error", "error_description": reason})
            .to_string()
            .into_bytes(),
        details: "mcp_auth_internal_error".into(),
    });
}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> Status;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> Status;
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
}

/// Sends a local response with its `details` (the SDK's wrapper passes none, and panics on
/// an unexpected status).
fn respond(response: &LocalResponse) {
    let headers = serialize_headers(&response.headers);
    // SAFETY: every pointer/length pair refers to a live buffer for the duration of the call.
    let status = unsafe {
        proxy_send_local_response(
            response.status,
            response.details.as_ptr(),
            response.details.len(),
            response.body.as_ptr(),
            response.body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    if status != Status::Ok {
        log::error!("mcp-auth: the local response could not be sent ({status:?})");
    }
}

/// All pairs of a header map, or `None` when the host has none to give (a failed call's
/// response, a stream that is gone). The SDK's own wrapper panics in those cases.
fn header_pairs(map_type: MapType) -> Option<Vec<(String, Vec<u8>)>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through `proxy_on_memory_allocate`
    // (the SDK's allocator), whose ownership passes to us; we take it back as a Vec.
    let bytes = unsafe {
        if proxy_get_header_map_pairs(map_type, &mut data, &mut size) != Status::Ok {
            return None;
        }
        if data.is_null() {
            return Some(Vec::new());
        }
        Vec::from_raw_parts(data, size, size)
    };
    deserialize_pairs(&bytes)
}

/// A buffer's bytes, or `None` when the host has none (the SDK's wrapper panics instead).
fn buffer_bytes(buffer: BufferType, start: usize, max: usize) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `header_pairs`, the host hands over a buffer from our allocator.
    unsafe {
        match proxy_get_buffer_bytes(buffer, start, max, &mut data, &mut size) {
            Status::Ok if data.is_null() => Some(Vec::new()),
            Status::Ok => Some(Vec::from_raw_parts(data, size, size)),
            Status::NotFound => Some(Vec::new()),
            _ => None,
        }
    }
}

/// Replaces `size` bytes of a buffer from `start` with `value`.
fn set_buffer_bytes(buffer: BufferType, start: usize, size: usize, value: &[u8]) -> bool {
    // SAFETY: `value` is live for the duration of the call.
    unsafe {
        proxy_set_buffer_bytes(buffer, start, size, value.as_ptr(), value.len()) == Status::Ok
    }
}

/// Reads the proxy-wasm map encoding; malformed input is `None`, never a panic.
fn deserialize_pairs(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    };
    let count = word(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let at = 4 + i * 8;
        sizes.push((word(at)?, word(at + 4)?));
    }
    let mut at = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut pairs = Vec::with_capacity(sizes.len());
    for (k, v) in sizes {
        let key = bytes.get(at..at.checked_add(k)?)?;
        at = at.checked_add(k)?.checked_add(1)?;
        let value = bytes.get(at..at.checked_add(v)?)?;
        at = at.checked_add(v)?.checked_add(1)?;
        pairs.push((String::from_utf8_lossy(key).into_owned(), value.to_vec()));
    }
    Some(pairs)
}

/// The proxy-wasm map encoding: count, then (key size, value size) pairs, then the
/// NUL-terminated keys and values.
fn serialize_headers(headers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (k, v) in headers {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}
