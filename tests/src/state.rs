//! State the hostcalls read and write: the process-wide part one [`crate::Host`] shares
//! between its VMs (clock, shared data, queues, metrics, calls, logs) and the per-VM part
//! living in each wasmtime `Store` (contexts, streams, tick timer).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::{Duration, SystemTime};

use wasmtime::{Memory, TypedFunc};

use crate::scenario::{HttpCall, LogLevel, LogLine, Request};

/// Header maps as Envoy holds them: ordered, names lower-case, values raw bytes.
pub(crate) type HeaderMap = Vec<(String, Vec<u8>)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug)]
pub(crate) struct Metric {
    pub kind: MetricKind,
    pub value: i64,
    pub samples: Vec<u64>,
}

pub(crate) struct Queue {
    pub owner_vm: usize,
    pub owner_context: u32,
    pub items: VecDeque<Vec<u8>>,
}

pub(crate) struct PendingCall {
    pub call: HttpCall,
    pub deadline: Option<SystemTime>,
}

/// One Envoy process.
pub(crate) struct Shared {
    pub now: SystemTime,
    pub boot: SystemTime,
    pub log_level: LogLevel,
    pub echo_logs: bool,
    pub logs: Vec<LogLine>,
    pub shared_data: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    pub next_cas: u32,
    pub queues: HashMap<u32, Queue>,
    pub queue_names: HashMap<(String, String), u32>,
    pub next_queue: u32,
    pub queue_ready: VecDeque<(usize, u32, u32)>,
    pub pending_calls: Vec<PendingCall>,
    pub all_calls: Vec<HttpCall>,
    pub next_token: u32,
    pub clusters: Option<Vec<String>>,
    pub metrics: BTreeMap<String, Metric>,
    pub properties: HashMap<String, Vec<u8>>,
    pub vm_id: String,
    pub root_id: String,
    pub vm_configuration: Vec<u8>,
    pub vms: Vec<Weak<crate::host::VmInner>>,
    pub next_request_id: u64,
}

impl Shared {
    pub fn new(now: SystemTime) -> Shared {
        Shared {
            now,
            boot: now,
            log_level: LogLevel::Trace,
            echo_logs: true,
            logs: Vec::new(),
            shared_data: HashMap::new(),
            next_cas: 1,
            queues: HashMap::new(),
            queue_names: HashMap::new(),
            next_queue: 1,
            queue_ready: VecDeque::new(),
            pending_calls: Vec::new(),
            all_calls: Vec::new(),
            next_token: 1,
            clusters: None,
            metrics: BTreeMap::new(),
            properties: HashMap::new(),
            vm_id: String::new(),
            root_id: String::new(),
            vm_configuration: Vec::new(),
            vms: Vec::new(),
            next_request_id: 1,
        }
    }

    pub fn log(&mut self, vm: usize, level: LogLevel, message: String) {
        if self.echo_logs {
            // Captured by the test harness and shown when a test fails.
            eprintln!("[vm{vm} {level:?}] {message}");
        }
        self.logs.push(LogLine { vm, level, message });
    }

    pub fn take_cas(&mut self) -> u32 {
        let cas = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        cas
    }
}

/// Where a stream is in Envoy's filter chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Created,
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    /// Paused on the request side, waiting for `proxy_continue_stream(HttpRequest)`.
    WaitRequest,
    Upstream,
    ResponseHeaders,
    ResponseBody,
    /// Paused on the response side.
    WaitResponse {
        body_next: bool,
    },
    Log,
    Done,
}

pub(crate) struct LocalReply {
    pub status: u32,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: HeaderMap,
}

/// One HTTP context.
pub(crate) struct Stream {
    pub request: Request,
    pub stage: Stage,
    pub request_headers: HeaderMap,
    pub request_headers_visible: bool,
    pub request_body: Vec<u8>,
    pub request_body_visible: bool,
    pub response_headers: HeaderMap,
    pub response_headers_visible: bool,
    pub response_body: Vec<u8>,
    pub response_body_visible: bool,
    pub access_log_phase: bool,
    pub headers_continued: bool,
    pub upstream: Option<(HeaderMap, Vec<u8>)>,
    pub pending_local: Option<LocalReply>,
    pub local_details: Option<String>,
    pub continue_request: bool,
    pub continue_response: bool,
    pub reset: bool,
    pub properties: HashMap<String, Vec<u8>>,
    /// The next request data frame to deliver; what the filter holds (paused) of the body;
    /// what went upstream.
    pub request_frame: usize,
    pub request_held: Vec<u8>,
    pub request_sent: Vec<u8>,
    pub trailers_delivered: bool,
    /// The request's headers went upstream before the request was complete (the upstream saw
    /// a request start whatever the filter decided later).
    pub upstream_started_early: bool,
    /// The response body's data frames, the next one to deliver, what the filter holds and
    /// what reached the client.
    pub response_frames: Vec<Vec<u8>>,
    pub response_frame: usize,
    pub response_held: Vec<u8>,
    pub response_sent: Vec<u8>,
}

/// The response of an HTTP call, visible only while `proxy_on_http_call_response` runs.
pub(crate) struct CallResponse {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Per-VM data every hostcall sees (`Caller::data`).
pub(crate) struct VmCtx {
    pub shared: Rc<RefCell<Shared>>,
    pub index: usize,
    pub memory: Option<Memory>,
    pub alloc: Option<TypedFunc<i32, i32>>,
    pub root_id: u32,
    pub current: u32,
    pub next_context_id: u32,
    pub plugin_config: Option<Vec<u8>>,
    pub streams: BTreeMap<u32, Stream>,
    pub call_response: Option<CallResponse>,
    pub tick_period: Option<Duration>,
    pub next_tick: Option<SystemTime>,
    pub metric_ids: HashMap<u32, String>,
    pub next_metric_id: [u32; 3],
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub done_called: bool,
}

impl VmCtx {
    pub fn stream(&mut self) -> Option<&mut Stream> {
        let id = self.current;
        self.streams.get_mut(&id)
    }

    pub fn log(&self, level: LogLevel, message: String) {
        self.shared.borrow_mut().log(self.index, level, message);
    }

    /// Turns complete stdout/stderr lines into log lines, as Envoy logs them (info/error).
    pub fn flush_stdio(&mut self, all: bool) {
        for (level, buf) in [
            (LogLevel::Info, &mut self.stdout),
            (LogLevel::Error, &mut self.stderr),
        ] {
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                self.shared.borrow_mut().log(self.index, level, text);
            }
            if all && !buf.is_empty() {
                let text = String::from_utf8_lossy(buf).trim_end().to_string();
                buf.clear();
                self.shared.borrow_mut().log(self.index, level, text);
            }
        }
    }
}
