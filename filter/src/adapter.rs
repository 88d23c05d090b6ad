//! The proxy-wasm adapter: the only file that calls the SDK. Each proxy callback becomes a call
//! of the core's state machine (`lifecycle::Filter`), and what it returns is carried out:
//! header changes, continue, pause, resume or a local answer. Hostcall failures fail closed
//! with a 500 instead of the SDK's panics, because a panic would kill the worker's VM.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::header_map;
use crate::host::{DispatchError, Host, SharedWrite};
use crate::keystore::{FetchResponse, MAX_JWKS_BYTES};
use crate::lifecycle::{self, Action as Next, Filter, Step};
use crate::location::Location;
use crate::metric;
use crate::policy::FilterConfig;
use crate::response::LocalResponse;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// The root timer of a VM with remote keys: it dispatches the key fetches requests asked for
/// and serves requests waiting for keys at this pace, and looks at the shared cache (other VMs'
/// fetches, due refreshes) every `lifecycle::IDLE_TICKS` ticks. The period is set once, from
/// the root context: changing it from a stream is not reliable across hosts.
const TICK: Duration = Duration::from_millis(100);
/// The memory gauge is refreshed on the first request and every this many after it.
const MEMORY_EVERY: u32 = 1024;
/// The stream property the decision is written to (`%FILTER_STATE(wasm.mcp_auth_decision)%`).
const DECISION_PROPERTY: &str = "mcp_auth_decision";

/// Maps looked up on every request, keyed by names and ids the filter or the proxy chose (never
/// by request data), so a fast unseeded hash is safe.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Where a request's time goes inside the proxy, in a module built with the `callback-timing`
/// feature: each callback and the host calls every request makes are timed with the host's
/// clock and summed per VM; the sums go out as counters every 256 streams. Without
/// the feature a span is the call it wraps.
mod timing {
    #[derive(Clone, Copy)]
    pub enum Span {
        RequestHeaders,
        RequestBody,
        ResponseHeaders,
        ResponseBody,
        Done,
        /// `xds.route_name`.
        Route,
        /// The request's header pairs.
        Headers,
        /// The request body as the core reads it.
        BodyRead,
        /// A step carried out: the decision property and the header changes.
        CarryOut,
        /// Two clock reads around nothing: what timing adds to each span.
        #[cfg(feature = "callback-timing")]
        Clock,
    }

    #[cfg(not(feature = "callback-timing"))]
    #[inline(always)]
    pub fn span<T>(_: Span, f: impl FnOnce() -> T) -> T {
        f()
    }

    #[cfg(not(feature = "callback-timing"))]
    #[inline(always)]
    pub fn stream_done() {}

    #[cfg(feature = "callback-timing")]
    pub use timed::*;

    #[cfg(feature = "callback-timing")]
    mod timed {
        use super::Span;
        use crate::metric::TIMING_PREFIX;
        use proxy_wasm::hostcalls;
        use proxy_wasm::types::MetricType;
        use std::cell::{Cell, RefCell};
        use std::time::UNIX_EPOCH;

        /// The sums are published every this many streams.
        pub const EVERY: u32 = 256;
        const NAMES: [&str; 10] = [
            "request_headers",
            "request_body",
            "response_headers",
            "response_body",
            "done",
            "route",
            "headers",
            "body_read",
            "carry_out",
            "clock",
        ];

        thread_local! {
            static SUMS: RefCell<[u64; 10]> = const { RefCell::new([0; 10]) };
            static STREAMS: Cell<u32> = const { Cell::new(0) };
            static IDS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
        }

        fn now_ns() -> u64 {
            hostcalls::get_current_time()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        }

        pub fn span<T>(span: Span, f: impl FnOnce() -> T) -> T {
            let start = now_ns();
            let out = f();
            let spent = now_ns().saturating_sub(start);
            SUMS.with(|sums| {
                if let Some(sum) = sums.borrow_mut().get_mut(span as usize) {
                    *sum = sum.saturating_add(spent);
                }
            });
            out
        }

        /// Counts a stream (and times the clock once); every `EVERY` streams, publishes.
        pub fn stream_done() {
            span(Span::Clock, || ());
            let n = STREAMS.with(|s| {
                let n = s.get().wrapping_add(1);
                s.set(n);
                n
            });
            if !n.is_multiple_of(EVERY) {
                return;
            }
            IDS.with(|ids| {
                let mut ids = ids.borrow_mut();
                if ids.is_empty() {
                    for name in NAMES
                        .iter()
                        .map(|n| format!("{n}_ns"))
                        .chain(["streams".into()])
                    {
                        let full = format!("{TIMING_PREFIX}{name}");
                        ids.push(hostcalls::define_metric(MetricType::Counter, &full).unwrap_or(0));
                    }
                }
                let sums = SUMS.with(|sums| std::mem::take(&mut *sums.borrow_mut()));
                for (id, sum) in ids.iter().zip(sums.iter().chain([&u64::from(EVERY)])) {
                    let _ =
                        hostcalls::increment_metric(*id, i64::try_from(*sum).unwrap_or(i64::MAX));
                }
            });
        }
    }
}

use timing::{Span, span};

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

    fn dispatch_get(&self, location: &Location, timeout: Duration) -> Result<u32, DispatchError> {
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
            Status::BadArgument => DispatchError::NoCluster,
            other => DispatchError::Refused(other as u32),
        })
    }
}

/// Everything one VM knows, shared by its root context and its streams.
#[derive(Default)]
struct State {
    filter: Option<RefCell<Filter>>,
    requests: Cell<u32>,
    memory_gauge: Cell<Option<u32>>,
    host: ProxyHost,
}

impl State {
    /// Publishes the VM's linear memory size as the gauge `mcp_auth.memory_bytes`, so an
    /// operator (and `make bench`) can see that the caches keep it bounded.
    fn record_memory(&self) {
        let id = match self.memory_gauge.get() {
            Some(id) => id,
            None => match hostcalls::define_metric(MetricType::Gauge, metric::MEMORY_BYTES) {
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

    fn on_request_headers(&self, context_id: u32, end_of_stream: bool) -> Action {
        let n = self.requests.get().wrapping_add(1);
        self.requests.set(n);
        if n % MEMORY_EVERY == 1 {
            self.record_memory();
        }
        let Some(filter) = &self.filter else {
            return refuse(&lifecycle::internal_error(
                "the filter has no configuration",
            ));
        };
        let mut filter = filter.borrow_mut();
        let route = match filter.needs_route() {
            false => None,
            true => span(Span::Route, || {
                hostcalls::get_property(vec!["xds", "route_name"])
            })
            .ok()
            .flatten()
            .and_then(|name| String::from_utf8(name).ok()),
        };
        let Some(headers) = span(Span::Headers, || header_pairs(MapType::HttpRequestHeaders))
        else {
            return refuse(&lifecycle::internal_error(
                "request headers are unavailable",
            ));
        };
        let step = filter.on_request_headers(&self.host, context_id, route, headers, end_of_stream);
        span(Span::CarryOut, || carry_out(step))
    }

    fn on_request_body(&self, context_id: u32, body_size: usize, end_of_stream: bool) -> Action {
        let Some(filter) = &self.filter else {
            return Action::Continue;
        };
        let mut read = |start: usize, len: usize| -> Option<Vec<u8>> {
            span(Span::BodyRead, || {
                buffer_bytes(BufferType::HttpRequestBody, start, len)
            })
        };
        let step = filter.borrow_mut().on_request_body(
            &self.host,
            context_id,
            body_size,
            end_of_stream,
            &mut read,
        );
        span(Span::CarryOut, || carry_out(step))
    }

    fn on_request_trailers(&self, context_id: u32) -> Action {
        let Some(filter) = &self.filter else {
            return Action::Continue;
        };
        let step = filter
            .borrow_mut()
            .on_request_trailers(&self.host, context_id);
        carry_out(step)
    }

    fn on_response_headers(&self, context_id: u32) -> Action {
        let Some(filter) = &self.filter else {
            return Action::Continue;
        };
        let mut filter = filter.borrow_mut();
        if filter.response_headers_unread(context_id) {
            return Action::Continue;
        }
        let headers = header_pairs(MapType::HttpResponseHeaders).unwrap_or_default();
        let step = filter.on_response_headers(&self.host, context_id, &headers);
        for name in &step.remove {
            let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, name);
        }
        match step.replace {
            Some(answer) => {
                respond(&answer);
                Action::Pause
            }
            None => Action::Continue,
        }
    }

    fn on_response_body(&self, context_id: u32, body_size: usize, end_of_stream: bool) -> Action {
        let Some(filter) = &self.filter else {
            return Action::Continue;
        };
        let mut filter = filter.borrow_mut();
        let step =
            match filter.response_body_unread(&self.host, context_id, body_size, end_of_stream) {
                Some(step) => step,
                None => {
                    let Some(body) = buffer_bytes(BufferType::HttpResponseBody, 0, body_size)
                    else {
                        // A body the filter must look at but cannot read goes no further.
                        let _ = hostcalls::reset_http_response();
                        return Action::Pause;
                    };
                    filter.on_response_body(&self.host, context_id, &body, end_of_stream)
                }
            };
        carry_out_body(&step, body_size)
    }

    /// Trailers end the answer: a JSON list answer the proxy holds is judged now, as at a last
    /// data frame. Sent on unjudged, it would reach the client unfiltered.
    fn on_response_trailers(&self, context_id: u32) -> Action {
        let Some(filter) = &self.filter else {
            return Action::Continue;
        };
        let mut filter = filter.borrow_mut();
        if !filter.response_held(context_id) {
            return Action::Continue;
        }
        let Some(body) = buffer_bytes(BufferType::HttpResponseBody, 0, usize::MAX) else {
            let _ = hostcalls::reset_http_response();
            return Action::Pause;
        };
        let step = filter.on_response_body(&self.host, context_id, &body, true);
        carry_out_body(&step, body.len())
    }

    fn on_done(&self, context_id: u32) {
        if let Some(filter) = &self.filter {
            filter.borrow_mut().on_done(context_id);
        }
    }

    fn on_tick(&self) {
        let Some(filter) = &self.filter else {
            return;
        };
        let ready = filter.borrow_mut().on_tick(&self.host);
        self.retry(ready);
    }

    /// The answer to a keys fetch (the root made every call).
    fn on_call_response(&self, token: u32, headers: usize, body_size: usize) {
        let Some(filter) = &self.filter else {
            return;
        };
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
        let ready = filter
            .borrow_mut()
            .on_call_response(&self.host, token, response);
        self.retry(ready);
    }

    /// Decides again about requests that waited for keys, each in its own context.
    fn retry(&self, ready: Vec<u32>) {
        let Some(filter) = &self.filter else {
            return;
        };
        for context_id in ready {
            // A stream that ended while it waited is gone; nothing to resume.
            if hostcalls::set_effective_context(context_id).is_err() {
                filter.borrow_mut().on_done(context_id);
                continue;
            }
            let step = filter.borrow_mut().retry(&self.host, context_id);
            if carry_out(step) == Action::Continue {
                let _ = hostcalls::resume_http_request();
            }
        }
    }
}

/// Puts a response body step into effect on the `held` bytes the proxy holds, then says what
/// the callback returns. A body that cannot be replaced goes no further.
fn carry_out_body(step: &lifecycle::BodyStep, held: usize) -> Action {
    if let Some(bytes) = &step.replace
        && !set_buffer_bytes(BufferType::HttpResponseBody, 0, held, bytes)
    {
        let _ = hostcalls::reset_http_response();
        return Action::Pause;
    }
    match step.pause {
        true => Action::Pause,
        false => Action::Continue,
    }
}

/// Makes a step's header changes, then says what the callback returns. A local answer is
/// sent here (the callback then pauses).
fn carry_out(step: Step) -> Action {
    if let Some(decision) = &step.decision {
        // Envoy keeps it as filter state `wasm.mcp_auth_decision`, which the access log shows.
        let _ = hostcalls::set_property(vec![DECISION_PROPERTY], Some(decision.as_bytes()));
    }
    if let Next::Respond(answer) = &step.action {
        respond(answer);
        return Action::Pause;
    }
    for name in &step.remove {
        if hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).is_err() {
            return refuse(&lifecycle::internal_error(
                "a request header could not be removed",
            ));
        }
    }
    for (name, value) in &step.add {
        if hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value).is_err() {
            return refuse(&lifecycle::internal_error(
                "a request header could not be set",
            ));
        }
    }
    match step.action {
        Next::Continue => Action::Continue,
        Next::Pause | Next::Respond(_) => Action::Pause,
    }
}

fn refuse(answer: &LocalResponse) -> Action {
    respond(answer);
    Action::Pause
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
        let filter = Filter::new(config, &self.state.host);
        let remote = filter.has_remote_keys();
        // A new configuration starts from a fresh state; streams of the old one keep theirs.
        self.state = Rc::new(State {
            filter: Some(RefCell::new(filter)),
            ..State::default()
        });
        if remote {
            // The first tick comes soon and loads the keys before the first request needs them.
            let _ = hostcalls::set_tick_period(TICK);
        }
        true
    }

    fn on_tick(&mut self) {
        self.state.on_tick();
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
        // Calls are made by the root; an older module's stream call may still answer here.
        self.state.on_call_response(token, headers, body_size);
    }

    fn on_done(&mut self) -> bool {
        span(Span::Done, || self.state.on_done(self.context_id));
        timing::stream_done();
        true
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        span(Span::RequestHeaders, || {
            self.state
                .on_request_headers(self.context_id, end_of_stream)
        })
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        span(Span::RequestBody, || {
            self.state
                .on_request_body(self.context_id, body_size, end_of_stream)
        })
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        self.state.on_request_trailers(self.context_id)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        span(Span::ResponseHeaders, || {
            self.state.on_response_headers(self.context_id)
        })
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        span(Span::ResponseBody, || {
            self.state
                .on_response_body(self.context_id, body_size, end_of_stream)
        })
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        self.state.on_response_trailers(self.context_id)
    }
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
    let headers = header_map::encode(&response.headers);
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
    header_map::decode(&bytes)
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
