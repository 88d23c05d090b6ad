//! One Envoy "process" ([`Host`]) and its worker VMs ([`Vm`]): instantiating the real module,
//! the root-context lifecycle, the HTTP stream state machine (mirroring Envoy's filter manager
//! and its deferred "after VM call" actions), ticks on a virtual clock, and HTTP call delivery.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{
    Config, Engine, Instance, Linker, Module, Store, TypedFunc, WasmParams, WasmResults,
};

use crate::abi::{self, Status, add_header};
use crate::scenario::{CallRef, HttpCall, LogLevel, LogLine, Outcome, Request, Response, StreamId};
use crate::state::{CallResponse, HeaderMap, Shared, Stage, Stream, VmCtx};

/// Where the real filter module is, as the build script found it.
pub const FILTER_WASM: &str = env!("FILTER_WASM");

/// The clock's starting point: 2026-01-01T00:00:00Z.
pub const START_TIME_UNIX: u64 = 1_767_225_600;

struct Compiled {
    engine: Engine,
    module: Module,
}

static FILTER: OnceLock<Result<Compiled, String>> = OnceLock::new();

fn engine() -> Result<Engine, String> {
    let config = Config::new();
    Engine::new(&config).map_err(|e| format!("wasmtime engine: {e:?}"))
}

/// The filter module, compiled once per test process (Cranelift is slow in debug builds).
fn filter() -> &'static Compiled {
    let compiled = FILTER.get_or_init(|| {
        let bytes = std::fs::read(FILTER_WASM)
            .map_err(|e| format!("cannot read the filter module {FILTER_WASM}: {e}"))?;
        let engine = engine()?;
        let module = Module::new(&engine, &bytes)
            .map_err(|e| format!("cannot compile {FILTER_WASM}: {e:?}"))?;
        Ok(Compiled { engine, module })
    });
    match compiled {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// Names of the functions the filter module exports.
pub fn filter_exports() -> Vec<String> {
    filter()
        .module
        .exports()
        .map(|e| e.name().to_string())
        .collect()
}

pub(crate) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `proxy_set_shared_data` with Envoy's CAS rule: a non-zero `cas` must match the entry's.
pub(crate) fn set_shared_data(sh: &mut Shared, key: Vec<u8>, value: Vec<u8>, cas: u32) -> Status {
    let next = sh.take_cas();
    match sh.shared_data.get_mut(&key) {
        Some(entry) => {
            if cas != 0 && cas != entry.1 {
                return Status::CasMismatch;
            }
            *entry = (value, next);
        }
        None => {
            sh.shared_data.insert(key, (value, next));
        }
    }
    Status::Ok
}

/// `proxy_get_property`: the stream's, then the test's, then what Envoy derives itself.
pub(crate) fn property(ctx: &mut VmCtx, path: &str) -> Option<Vec<u8>> {
    let root_id = ctx.shared.borrow().root_id.clone();
    let vm_id = ctx.shared.borrow().vm_id.clone();
    if let Some(s) = ctx.stream() {
        if let Some(v) = s.properties.get(path) {
            return Some(v.clone());
        }
        if let Some((_, v)) = s.request.properties.iter().rev().find(|(k, _)| k == path) {
            return Some(v.clone());
        }
        let header = |name: &str| {
            s.request_headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let derived = match path {
            "request.path" => header(":path"),
            "request.url_path" => {
                header(":path").map(|p| p.split(|b| *b == b'?').next().unwrap_or_default().to_vec())
            }
            "request.host" => header(":authority"),
            "request.method" => header(":method"),
            "request.scheme" => header(":scheme"),
            "request.id" => header("x-request-id"),
            "request.protocol" => Some(b"HTTP/1.1".to_vec()),
            _ => None,
        };
        if derived.is_some() {
            return derived;
        }
    }
    if let Some(v) = ctx.shared.borrow().properties.get(path) {
        return Some(v.clone());
    }
    match path {
        "plugin_root_id" => Some(root_id.into_bytes()),
        "plugin_vm_id" => Some(vm_id.into_bytes()),
        _ => None,
    }
}

/// A trap inside the module (a Rust panic ends in `unreachable`), with what it printed.
#[derive(Clone, Debug)]
pub struct Trap {
    pub vm: usize,
    /// The wasmtime error with its wasm backtrace.
    pub error: String,
    /// What the module logged or printed during the call that trapped (the panic message).
    pub output: Vec<String>,
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the filter trapped in VM {}", self.vm)?;
        for line in &self.output {
            writeln!(f, "  | {line}")?;
        }
        write!(f, "{}", self.error)
    }
}

impl std::error::Error for Trap {}

/// `Host::vm` failed: the module did not load, or `proxy_on_vm_start`/`proxy_on_configure`
/// returned false or trapped. `logs` holds what the module logged, to assert on the reason.
#[derive(Clone, Debug)]
pub struct ConfigureError {
    pub message: String,
    pub logs: Vec<LogLine>,
}

impl ConfigureError {
    /// Whether any log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.iter().any(|l| l.message.contains(needle))
    }
}

impl fmt::Display for ConfigureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.message)?;
        for l in &self.logs {
            writeln!(f, "  [{:?}] {}", l.level, l.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigureError {}

/// One Envoy process: the engine, the shared-data store, a virtual clock, recorded HTTP calls,
/// metrics and logs. Cheap to clone (a handle).
#[derive(Clone)]
pub struct Host {
    shared: Rc<RefCell<Shared>>,
}

impl Default for Host {
    fn default() -> Self {
        Host::new()
    }
}

impl Host {
    pub fn new() -> Host {
        let start = UNIX_EPOCH + Duration::from_secs(START_TIME_UNIX);
        Host {
            shared: Rc::new(RefCell::new(Shared::new(start))),
        }
    }

    pub fn now(&self) -> SystemTime {
        self.shared.borrow().now
    }

    /// The clock in whole seconds since the epoch, for token claims.
    pub fn now_unix(&self) -> u64 {
        unix_nanos(self.now()) / 1_000_000_000
    }

    /// Sets the clock without firing timers (a jump, as after a suspend).
    pub fn set_time(&self, t: SystemTime) {
        self.shared.borrow_mut().now = t;
    }

    /// Moves the clock forward, firing every tick and call timeout that falls due, in time
    /// order, each at its own time. Panics if the module traps.
    pub fn advance(&self, d: Duration) {
        if let Err(trap) = self.try_advance(d) {
            panic!("{trap}");
        }
    }

    /// [`Host::advance`], returning the trap instead of panicking.
    pub fn try_advance(&self, d: Duration) -> Result<(), Trap> {
        let target = self.now() + d;
        loop {
            let mut next: Option<(SystemTime, Event)> = None;
            let mut consider = |t: SystemTime, e: Event| {
                if t <= target && next.as_ref().is_none_or(|(nt, _)| t < *nt) {
                    next = Some((t, e));
                }
            };
            for vm in self.live_vms() {
                if let Some(t) = vm.next_tick() {
                    consider(t, Event::Tick(vm.index));
                }
            }
            for pc in &self.shared.borrow().pending_calls {
                if let Some(t) = pc.deadline {
                    consider(t, Event::Timeout(pc.call.token));
                }
            }
            let Some((t, event)) = next else { break };
            self.shared.borrow_mut().now = t;
            match event {
                Event::Tick(index) => {
                    if let Some(vm) = self.vm_by_index(index) {
                        vm.tick(t)?;
                    }
                }
                Event::Timeout(token) => self.deliver(token, None)?,
            }
            self.deliver_queue_notifications()?;
        }
        self.shared.borrow_mut().now = target;
        Ok(())
    }

    /// A new worker VM with this plugin configuration (YAML or JSON text).
    pub fn vm(&self, plugin_config: &str) -> Result<Vm, ConfigureError> {
        self.vm_bytes(plugin_config.as_bytes())
    }

    pub fn vm_bytes(&self, plugin_config: &[u8]) -> Result<Vm, ConfigureError> {
        let compiled = filter();
        self.instantiate(&compiled.engine, &compiled.module, plugin_config)
    }

    /// A VM of another module (a test probe), sharing this host's process state.
    pub fn vm_with_module(
        &self,
        wasm_or_wat: &[u8],
        plugin_config: &[u8],
    ) -> Result<Vm, ConfigureError> {
        let engine = &filter_free_engine();
        let module = Module::new(engine, wasm_or_wat).map_err(|e| ConfigureError {
            message: format!("cannot compile the module: {e:?}"),
            logs: Vec::new(),
        })?;
        self.instantiate(engine, &module, plugin_config)
    }

    fn instantiate(
        &self,
        engine: &Engine,
        module: &Module,
        plugin_config: &[u8],
    ) -> Result<Vm, ConfigureError> {
        let index = self.shared.borrow().vms.len();
        let first_log = self.shared.borrow().logs.len();
        let fail = |message: String| ConfigureError {
            message,
            logs: self.shared.borrow().logs[first_log..]
                .iter()
                .filter(|l| l.vm == index)
                .cloned()
                .collect(),
        };
        let mut linker: Linker<VmCtx> = Linker::new(engine);
        abi::add_to_linker(&mut linker).map_err(|e| fail(format!("linker: {e:?}")))?;
        crate::wasi::add_to_linker(&mut linker).map_err(|e| fail(format!("linker: {e:?}")))?;
        linker
            .define_unknown_imports_as_traps(module)
            .map_err(|e| fail(format!("linker: {e:?}")))?;
        if module.get_export("proxy_abi_version_0_2_1").is_none() {
            return Err(fail(
                "the module does not export proxy_abi_version_0_2_1".into(),
            ));
        }
        let ctx = VmCtx {
            shared: self.shared.clone(),
            index,
            memory: None,
            alloc: None,
            root_id: 1,
            current: 0,
            next_context_id: 2,
            plugin_config: None,
            streams: BTreeMap::new(),
            call_response: None,
            tick_period: None,
            next_tick: None,
            metric_ids: HashMap::new(),
            next_metric_id: [0; 3],
            stdout: Vec::new(),
            stderr: Vec::new(),
            done_called: false,
        };
        let mut store = Store::new(engine, ctx);
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(|e| fail(format!("instantiation failed: {e:?}")))?;
        store.data_mut().memory = instance.get_memory(&mut store, "memory");
        store.data_mut().alloc = instance
            .get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<i32, i32>(&mut store, "malloc"))
            .ok();
        let exports = Exports::new(&mut store, &instance);
        let inner = Rc::new(VmInner {
            index,
            store: RefCell::new(store),
            exports,
            failed: RefCell::new(None),
        });
        self.shared.borrow_mut().vms.push(Rc::downgrade(&inner));
        let vm = Vm {
            inner,
            host: self.clone(),
        };
        vm.inner.start(plugin_config).map_err(fail)?;
        Ok(vm)
    }

    /// Every line every VM logged, in order.
    pub fn logs(&self) -> Vec<LogLine> {
        self.shared.borrow().logs.clone()
    }

    /// Whether any VM logged a line containing `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.shared
            .borrow()
            .logs
            .iter()
            .any(|l| l.message.contains(needle))
    }

    /// A counter's or gauge's value (histograms: how many samples), by the name the module
    /// defined; summed over all VMs, as Envoy's stats are.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.shared.borrow().metrics.get(name).map(|m| m.value)
    }

    /// All metrics the module defined, by name.
    pub fn metrics(&self) -> BTreeMap<String, i64> {
        self.shared
            .borrow()
            .metrics
            .iter()
            .map(|(k, m)| (k.clone(), m.value))
            .collect()
    }

    /// The samples recorded into a histogram.
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        self.shared
            .borrow()
            .metrics
            .get(name)
            .map(|m| m.samples.clone())
            .unwrap_or_default()
    }

    /// Calls dispatched and neither answered, failed, timed out nor cancelled.
    pub fn pending_calls(&self) -> Vec<HttpCall> {
        self.shared
            .borrow()
            .pending_calls
            .iter()
            .map(|p| p.call.clone())
            .collect()
    }

    /// Every call ever dispatched, answered or not.
    pub fn dispatched_calls(&self) -> Vec<HttpCall> {
        self.shared.borrow().all_calls.clone()
    }

    /// Answers a pending call: `proxy_on_http_call_response` on the context that made it, with
    /// `:status` first among the headers and the body behind the buffer API. Panics if there is
    /// no such pending call, or if the module traps.
    pub fn respond_call(
        &self,
        call: impl CallRef,
        status: u16,
        headers: Vec<(String, String)>,
        body: &[u8],
    ) {
        let mut map: HeaderMap = vec![(":status".into(), status.to_string().into_bytes())];
        for (k, v) in headers {
            map.push((k.to_ascii_lowercase(), v.into_bytes()));
        }
        if !body.is_empty() && !map.iter().any(|(k, _)| k == "content-length") {
            map.push(("content-length".into(), body.len().to_string().into_bytes()));
        }
        self.settle(
            call.token(),
            Some(CallResponse {
                headers: map,
                body: body.to_vec(),
            }),
        );
    }

    /// Answers a pending call with JSON (`content-type: application/json`).
    pub fn respond_call_json(&self, call: impl CallRef, status: u16, body: &serde_json::Value) {
        self.respond_call(
            call,
            status,
            vec![("content-type".into(), "application/json".into())],
            body.to_string().as_bytes(),
        );
    }

    /// Fails a pending call as Envoy does on a reset or timeout: the callback gets 0 headers,
    /// no body, and the response maps are absent.
    pub fn fail_call(&self, call: impl CallRef) {
        self.settle(call.token(), None);
    }

    fn settle(&self, token: u32, response: Option<CallResponse>) {
        let known = self
            .shared
            .borrow()
            .pending_calls
            .iter()
            .any(|p| p.call.token == token);
        if !known {
            panic!(
                "no pending HTTP call with token {token}; pending: {:?}",
                self.pending_calls()
            );
        }
        let result = self
            .deliver(token, response)
            .and_then(|_| self.deliver_queue_notifications());
        if let Err(trap) = result {
            panic!("{trap}");
        }
    }

    fn deliver(&self, token: u32, response: Option<CallResponse>) -> Result<(), Trap> {
        let call = {
            let mut sh = self.shared.borrow_mut();
            let Some(at) = sh.pending_calls.iter().position(|p| p.call.token == token) else {
                return Ok(());
            };
            sh.pending_calls.remove(at).call
        };
        match self.vm_by_index(call.vm) {
            Some(vm) => vm.call_response(&call, response),
            None => Ok(()),
        }
    }

    fn deliver_queue_notifications(&self) -> Result<(), Trap> {
        loop {
            let next = self.shared.borrow_mut().queue_ready.pop_front();
            let Some((vm, context, queue)) = next else {
                return Ok(());
            };
            if let Some(vm) = self.vm_by_index(vm) {
                vm.queue_ready(context, queue)?;
            }
        }
    }

    fn live_vms(&self) -> Vec<Rc<VmInner>> {
        self.shared
            .borrow()
            .vms
            .iter()
            .filter_map(|w| w.upgrade())
            .collect()
    }

    fn vm_by_index(&self, index: usize) -> Option<Rc<VmInner>> {
        self.shared
            .borrow()
            .vms
            .get(index)
            .and_then(|w| w.upgrade())
    }

    /// A property every stream and the root context see (e.g. `xds.route_name`).
    pub fn set_property(&self, path: &str, value: impl AsRef<[u8]>) {
        self.shared
            .borrow_mut()
            .properties
            .insert(path.to_string(), value.as_ref().to_vec());
    }

    /// `plugin_root_id` (Envoy's `root_id`; empty by default). Set before creating VMs.
    pub fn set_root_id(&self, root_id: &str) {
        self.shared.borrow_mut().root_id = root_id.to_string();
    }

    /// The VM configuration (`vm_config.configuration`), read in `proxy_on_vm_start`.
    pub fn set_vm_configuration(&self, config: &[u8]) {
        self.shared.borrow_mut().vm_configuration = config.to_vec();
    }

    /// The level `proxy_get_log_level` reports (default trace: tests see everything).
    pub fn set_log_level(&self, level: LogLevel) {
        self.shared.borrow_mut().log_level = level;
    }

    /// Whether log lines are echoed to stderr (shown by the test harness on failure; default on).
    pub fn echo_logs(&self, on: bool) {
        self.shared.borrow_mut().echo_logs = on;
    }

    /// Restricts `proxy_http_call` to these clusters (others get `BadArgument`, as in Envoy when
    /// the cluster does not exist). By default every cluster exists.
    pub fn set_clusters(&self, clusters: &[&str]) {
        self.shared.borrow_mut().clusters = Some(clusters.iter().map(|c| c.to_string()).collect());
    }

    /// Shared data as the module sees it: value and CAS.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared
            .borrow()
            .shared_data
            .get(key.as_bytes())
            .cloned()
    }

    /// Writes shared data with the module's CAS rule; `false` on a CAS mismatch.
    pub fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> bool {
        set_shared_data(
            &mut self.shared.borrow_mut(),
            key.as_bytes().to_vec(),
            value.to_vec(),
            cas,
        ) == Status::Ok
    }
}

enum Event {
    Tick(usize),
    Timeout(u32),
}

fn filter_free_engine() -> Engine {
    // Probe modules share the filter's engine settings but must not force compiling the filter.
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| match engine() {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        })
        .clone()
}

type F<P, R> = Option<TypedFunc<P, R>>;

struct Exports {
    initialize: F<(), ()>,
    start: F<(), ()>,
    context_create: F<(i32, i32), ()>,
    vm_start: F<(i32, i32), i32>,
    configure: F<(i32, i32), i32>,
    tick: F<i32, ()>,
    queue_ready: F<(i32, i32), ()>,
    request_headers: F<(i32, i32, i32), i32>,
    request_body: F<(i32, i32, i32), i32>,
    request_trailers: F<(i32, i32), i32>,
    response_headers: F<(i32, i32, i32), i32>,
    response_body: F<(i32, i32, i32), i32>,
    http_call_response: F<(i32, i32, i32, i32, i32), ()>,
    log: F<i32, ()>,
    done: F<i32, i32>,
    delete: F<i32, ()>,
}

impl Exports {
    fn new(store: &mut Store<VmCtx>, i: &Instance) -> Exports {
        Exports {
            initialize: i.get_typed_func(&mut *store, "_initialize").ok(),
            start: i.get_typed_func(&mut *store, "_start").ok(),
            context_create: i
                .get_typed_func(&mut *store, "proxy_on_context_create")
                .ok(),
            vm_start: i.get_typed_func(&mut *store, "proxy_on_vm_start").ok(),
            configure: i.get_typed_func(&mut *store, "proxy_on_configure").ok(),
            tick: i.get_typed_func(&mut *store, "proxy_on_tick").ok(),
            queue_ready: i.get_typed_func(&mut *store, "proxy_on_queue_ready").ok(),
            request_headers: i
                .get_typed_func(&mut *store, "proxy_on_request_headers")
                .ok(),
            request_body: i.get_typed_func(&mut *store, "proxy_on_request_body").ok(),
            request_trailers: i
                .get_typed_func(&mut *store, "proxy_on_request_trailers")
                .ok(),
            response_headers: i
                .get_typed_func(&mut *store, "proxy_on_response_headers")
                .ok(),
            response_body: i.get_typed_func(&mut *store, "proxy_on_response_body").ok(),
            http_call_response: i
                .get_typed_func(&mut *store, "proxy_on_http_call_response")
                .ok(),
            log: i.get_typed_func(&mut *store, "proxy_on_log").ok(),
            done: i.get_typed_func(&mut *store, "proxy_on_done").ok(),
            delete: i.get_typed_func(&mut *store, "proxy_on_delete").ok(),
        }
    }
}

/// The part of a VM the host reaches through weak references (ticks, call responses).
pub(crate) struct VmInner {
    pub(crate) index: usize,
    store: RefCell<Store<VmCtx>>,
    exports: Exports,
    failed: RefCell<Option<Trap>>,
}

const CONTINUE: i32 = 0;

impl VmInner {
    /// Calls into the module as `context`; a trap marks the VM failed, as Envoy does.
    fn invoke<P: WasmParams, R: WasmResults>(
        &self,
        store: &mut Store<VmCtx>,
        f: &F<P, R>,
        context: u32,
        args: P,
        default: R,
    ) -> Result<R, Trap> {
        if let Some(trap) = self.failed.borrow().clone() {
            return Err(trap);
        }
        let Some(f) = f else { return Ok(default) };
        let first_log = store.data().shared.borrow().logs.len();
        store.data_mut().current = context;
        let result = f.call(&mut *store, args);
        store.data_mut().flush_stdio(result.is_err());
        match result {
            Ok(r) => Ok(r),
            Err(e) => {
                let output = store.data().shared.borrow().logs[first_log..]
                    .iter()
                    .filter(|l| l.vm == self.index)
                    .map(|l| l.message.clone())
                    .collect();
                let mut error = format!("{e:?}");
                // The host-side Rust backtrace says nothing about the module; drop it.
                if let Some(at) = error.find("\n\nStack backtrace:") {
                    error.truncate(at);
                }
                let trap = Trap {
                    vm: self.index,
                    error,
                    output,
                };
                *self.failed.borrow_mut() = Some(trap.clone());
                Err(trap)
            }
        }
    }

    fn start(&self, plugin_config: &[u8]) -> Result<(), String> {
        let mut store = self.store.borrow_mut();
        let store = &mut *store;
        let e = &self.exports;
        let root = store.data().root_id as i32;
        let describe = |t: Trap| t.to_string();
        if e.initialize.is_some() {
            self.invoke(store, &e.initialize, 0, (), ())
                .map_err(describe)?;
        } else {
            self.invoke(store, &e.start, 0, (), ()).map_err(describe)?;
        }
        self.invoke(store, &e.context_create, root as u32, (root, 0), ())
            .map_err(describe)?;
        // Envoy exposes the plugin configuration only while it starts and configures the VM.
        store.data_mut().plugin_config = Some(plugin_config.to_vec());
        let vm_config_len = store.data().shared.borrow().vm_configuration.len() as i32;
        let started = self.invoke(store, &e.vm_start, root as u32, (root, vm_config_len), 1);
        let started = match started {
            Ok(v) => v,
            Err(t) => {
                store.data_mut().plugin_config = None;
                return Err(describe(t));
            }
        };
        if started == 0 {
            store.data_mut().plugin_config = None;
            return Err("proxy_on_vm_start returned false".into());
        }
        let configured = self.invoke(
            store,
            &e.configure,
            root as u32,
            (root, plugin_config.len() as i32),
            1,
        );
        store.data_mut().plugin_config = None;
        match configured {
            Ok(0) => Err("proxy_on_configure returned false".into()),
            Ok(_) => Ok(()),
            Err(t) => Err(describe(t)),
        }
    }

    fn next_tick(&self) -> Option<SystemTime> {
        if self.failed.borrow().is_some() {
            return None;
        }
        self.store.borrow().data().next_tick
    }

    fn tick(&self, now: SystemTime) -> Result<(), Trap> {
        let mut store = self.store.borrow_mut();
        let store = &mut *store;
        let period = store.data().tick_period;
        store.data_mut().next_tick = period.map(|p| now + p);
        let root = store.data().root_id;
        self.invoke(store, &self.exports.tick, root, root as i32, ())?;
        self.pump(store)
    }

    fn queue_ready(&self, context: u32, queue: u32) -> Result<(), Trap> {
        let mut store = self.store.borrow_mut();
        let store = &mut *store;
        self.invoke(
            store,
            &self.exports.queue_ready,
            context,
            (context as i32, queue as i32),
            (),
        )?;
        self.pump(store)
    }

    fn call_response(&self, call: &HttpCall, response: Option<CallResponse>) -> Result<(), Trap> {
        let mut store = self.store.borrow_mut();
        let store = &mut *store;
        let (n_headers, body_len) = response
            .as_ref()
            .map_or((0, 0), |r| (r.headers.len() as i32, r.body.len() as i32));
        store.data_mut().call_response = response;
        let args = (
            call.context_id as i32,
            call.token as i32,
            n_headers,
            body_len,
            0,
        );
        let result = self.invoke(
            store,
            &self.exports.http_call_response,
            call.context_id,
            args,
            (),
        );
        store.data_mut().call_response = None;
        result?;
        self.pump(store)
    }

    /// Runs the deferred actions (continue, local reply, reset) of every stream.
    fn pump(&self, store: &mut Store<VmCtx>) -> Result<(), Trap> {
        let ids: Vec<u32> = store.data().streams.keys().copied().collect();
        for id in ids {
            self.drive(store, id)?;
        }
        Ok(())
    }

    /// Applies what the filter asked for during the last callback, as Envoy's after-VM-call
    /// actions do. Returns true when the stage changed.
    fn after_call(store: &mut Store<VmCtx>, id: u32) -> bool {
        let Some(s) = store.data_mut().streams.get_mut(&id) else {
            return false;
        };
        if s.reset && !matches!(s.stage, Stage::Log | Stage::Done) {
            s.stage = Stage::Log;
            s.request_headers_visible = false;
            s.request_body_visible = false;
            s.response_headers_visible = false;
            s.response_body_visible = false;
            return true;
        }
        let Some(local) = s.pending_local.take() else {
            return false;
        };
        if matches!(s.stage, Stage::Log | Stage::Done) {
            return false;
        }
        let mut headers: HeaderMap =
            vec![(":status".into(), local.status.to_string().into_bytes())];
        for (k, v) in local.headers {
            add_header(&mut headers, k, v);
        }
        if local.body.is_empty() {
            headers.retain(|(k, _)| k != "content-length" && k != "content-type");
        } else {
            headers.retain(|(k, _)| k != "content-length");
            headers.push((
                "content-length".into(),
                local.body.len().to_string().into_bytes(),
            ));
            if !headers.iter().any(|(k, _)| k == "content-type") {
                headers.push(("content-type".into(), b"text/plain".to_vec()));
            }
        }
        let in_response = s.local_details.is_some()
            || matches!(
                s.stage,
                Stage::ResponseHeaders | Stage::ResponseBody | Stage::WaitResponse { .. }
            );
        s.local_details = Some(local.details);
        s.response_headers = headers;
        s.response_frames = vec![local.body.clone()];
        s.response_frame = 0;
        s.response_held.clear();
        s.response_sent = local.body.clone();
        s.response_body = local.body;
        s.request_headers_visible = false;
        s.request_body_visible = false;
        s.response_headers_visible = false;
        s.response_body_visible = false;
        s.continue_request = false;
        s.continue_response = false;
        // A local reply from the request path runs through the filter's own response
        // callbacks, as in Envoy; one sent while encoding replaces the response outright.
        s.stage = if in_response {
            Stage::Log
        } else {
            // It runs through the response callbacks from the start.
            s.response_sent.clear();
            Stage::ResponseHeaders
        };
        true
    }

    fn drive(&self, store: &mut Store<VmCtx>, id: u32) -> Result<(), Trap> {
        let e = &self.exports;
        let root = store.data().root_id as i32;
        loop {
            Self::after_call(store, id);
            let Some(s) = store.data_mut().streams.get_mut(&id) else {
                return Ok(());
            };
            match s.stage {
                Stage::Created => {
                    s.stage = Stage::RequestHeaders;
                    self.invoke(store, &e.context_create, id, (id as i32, root), ())?;
                }
                Stage::RequestHeaders => {
                    s.request_headers_visible = true;
                    let n = s.request_headers.len() as i32;
                    let has_body = s.request.body.is_some();
                    let has_trailers = !s.request.trailers.is_empty();
                    let eos = (!has_body && !has_trailers) as i32;
                    let action =
                        self.invoke(store, &e.request_headers, id, (id as i32, n, eos), CONTINUE)?;
                    let Some(s) = store.data_mut().streams.get_mut(&id) else {
                        return Ok(());
                    };
                    if s.stage != Stage::RequestHeaders || s.pending_local.is_some() || s.reset {
                        continue;
                    }
                    if action == CONTINUE || std::mem::take(&mut s.continue_request) {
                        s.headers_continued = true;
                        s.request_headers_visible = false;
                        s.upstream_started_early = has_body || has_trailers;
                    }
                    s.stage = if has_body {
                        Stage::RequestBody
                    } else if has_trailers {
                        Stage::RequestTrailers
                    } else if s.headers_continued {
                        Stage::Upstream
                    } else {
                        Stage::WaitRequest
                    };
                }
                Stage::RequestBody => {
                    // Envoy's semantics: while the filter pauses the body, each callback sees
                    // everything held so far plus the new frame; a Continue sends it all on.
                    let frames = s.request.frames();
                    let index = s.request_frame;
                    let frame = frames.get(index).cloned().unwrap_or_default();
                    let last = index + 1 >= frames.len();
                    let has_trailers = !s.request.trailers.is_empty();
                    let eos = (last && !has_trailers) as i32;
                    s.request_body = [std::mem::take(&mut s.request_held), frame].concat();
                    s.request_body_visible = true;
                    let n = s.request_body.len() as i32;
                    let action =
                        self.invoke(store, &e.request_body, id, (id as i32, n, eos), CONTINUE)?;
                    let Some(s) = store.data_mut().streams.get_mut(&id) else {
                        return Ok(());
                    };
                    if s.stage != Stage::RequestBody || s.pending_local.is_some() || s.reset {
                        continue;
                    }
                    s.request_body_visible = false;
                    s.request_frame = index + 1;
                    let go = action == CONTINUE || std::mem::take(&mut s.continue_request);
                    let body = std::mem::take(&mut s.request_body);
                    if go {
                        if !s.headers_continued {
                            s.headers_continued = true;
                            s.upstream_started_early = !last || has_trailers;
                        }
                        s.request_sent.extend(body);
                    } else {
                        s.request_held = body;
                    }
                    s.stage = match (last, has_trailers, go) {
                        (false, _, _) => Stage::RequestBody,
                        (true, true, _) => Stage::RequestTrailers,
                        (true, false, true) => Stage::Upstream,
                        (true, false, false) => Stage::WaitRequest,
                    };
                }
                Stage::RequestTrailers => {
                    let n = s.request.trailers.len() as i32;
                    s.trailers_delivered = true;
                    let action =
                        self.invoke(store, &e.request_trailers, id, (id as i32, n), CONTINUE)?;
                    let Some(s) = store.data_mut().streams.get_mut(&id) else {
                        return Ok(());
                    };
                    if s.stage != Stage::RequestTrailers || s.pending_local.is_some() || s.reset {
                        continue;
                    }
                    if action == CONTINUE || std::mem::take(&mut s.continue_request) {
                        s.headers_continued = true;
                        let held = std::mem::take(&mut s.request_held);
                        s.request_sent.extend(held);
                        s.stage = Stage::Upstream;
                    } else {
                        s.stage = Stage::WaitRequest;
                    }
                }
                Stage::WaitRequest => {
                    if std::mem::take(&mut s.continue_request) {
                        let frames = s.request.frames().len();
                        let more_body = s.request.body.is_some() && s.request_frame < frames;
                        let more_trailers = !s.request.trailers.is_empty() && !s.trailers_delivered;
                        if !s.headers_continued && (more_body || more_trailers) {
                            s.upstream_started_early = true;
                        }
                        s.headers_continued = true;
                        s.request_headers_visible = false;
                        let held = std::mem::take(&mut s.request_held);
                        s.request_sent.extend(held);
                        s.stage = if more_body {
                            Stage::RequestBody
                        } else if more_trailers {
                            Stage::RequestTrailers
                        } else {
                            Stage::Upstream
                        };
                    } else {
                        return Ok(());
                    }
                }
                Stage::Upstream => {
                    s.request_headers_visible = false;
                    s.request_body_visible = false;
                    s.request_body = std::mem::take(&mut s.request_sent);
                    s.upstream = Some((s.request_headers.clone(), s.request_body.clone()));
                    let up = &s.request.upstream;
                    let mut headers: HeaderMap =
                        vec![(":status".into(), up.status.to_string().into_bytes())];
                    headers.extend(up.headers.iter().cloned());
                    if !up.body.is_empty()
                        && up.chunks.is_none()
                        && !headers.iter().any(|(k, _)| k == "content-length")
                    {
                        headers.push((
                            "content-length".into(),
                            up.body.len().to_string().into_bytes(),
                        ));
                    }
                    s.response_frames = match &up.chunks {
                        Some(chunks) => chunks.clone(),
                        None if up.body.is_empty() => Vec::new(),
                        None => vec![up.body.clone()],
                    };
                    s.response_headers = headers;
                    s.response_body = up.body.clone();
                    s.stage = Stage::ResponseHeaders;
                }
                Stage::ResponseHeaders => {
                    s.response_headers_visible = true;
                    let n = s.response_headers.len() as i32;
                    let has_body = s.response_frames.iter().any(|f| !f.is_empty());
                    let args = (id as i32, n, (!has_body) as i32);
                    s.response_frame = 0;
                    s.response_sent.clear();
                    let action = self.invoke(store, &e.response_headers, id, args, CONTINUE)?;
                    let Some(s) = store.data_mut().streams.get_mut(&id) else {
                        return Ok(());
                    };
                    if s.stage != Stage::ResponseHeaders || s.pending_local.is_some() || s.reset {
                        continue;
                    }
                    let go = action == CONTINUE || std::mem::take(&mut s.continue_response);
                    if go {
                        s.response_headers_visible = false;
                    }
                    // Envoy hands the body to a filter whose headers callback stopped, too.
                    s.stage = match (has_body, go) {
                        (true, _) => Stage::ResponseBody,
                        (false, true) => Stage::Log,
                        (false, false) => Stage::WaitResponse { body_next: false },
                    };
                }
                Stage::ResponseBody => {
                    let index = s.response_frame;
                    let frame = s.response_frames.get(index).cloned().unwrap_or_default();
                    let last = index + 1 >= s.response_frames.len();
                    s.response_body = [std::mem::take(&mut s.response_held), frame].concat();
                    s.response_body_visible = true;
                    let n = s.response_body.len() as i32;
                    let eos = last as i32;
                    let action =
                        self.invoke(store, &e.response_body, id, (id as i32, n, eos), CONTINUE)?;
                    let Some(s) = store.data_mut().streams.get_mut(&id) else {
                        return Ok(());
                    };
                    if s.stage != Stage::ResponseBody || s.pending_local.is_some() || s.reset {
                        continue;
                    }
                    s.response_body_visible = false;
                    s.response_frame = index + 1;
                    let go = action == CONTINUE || std::mem::take(&mut s.continue_response);
                    let body = std::mem::take(&mut s.response_body);
                    if go {
                        s.response_sent.extend(body);
                    } else {
                        s.response_held = body;
                    }
                    s.stage = match (last, go) {
                        (false, _) => Stage::ResponseBody,
                        (true, true) => Stage::Log,
                        (true, false) => Stage::WaitResponse { body_next: false },
                    };
                }
                Stage::WaitResponse { body_next } => {
                    if std::mem::take(&mut s.continue_response) {
                        s.response_headers_visible = false;
                        s.response_body_visible = false;
                        let held = std::mem::take(&mut s.response_held);
                        s.response_sent.extend(held);
                        s.stage = if body_next {
                            Stage::ResponseBody
                        } else {
                            Stage::Log
                        };
                    } else {
                        return Ok(());
                    }
                }
                Stage::Log => {
                    s.stage = Stage::Done;
                    s.response_body = std::mem::take(&mut s.response_sent);
                    s.request_headers_visible = false;
                    s.request_body_visible = false;
                    s.response_headers_visible = false;
                    s.response_body_visible = false;
                    s.access_log_phase = true;
                    let logged = self.invoke(store, &e.log, id, id as i32, ());
                    if let Some(s) = store.data_mut().streams.get_mut(&id) {
                        s.access_log_phase = false;
                    }
                    logged?;
                    self.invoke(store, &e.done, id, id as i32, 1)?;
                    self.invoke(store, &e.delete, id, id as i32, ())?;
                    // Envoy cancels the calls a destroyed context still has in flight.
                    store
                        .data()
                        .shared
                        .borrow_mut()
                        .pending_calls
                        .retain(|p| !(p.call.vm == self.index && p.call.context_id == id));
                }
                Stage::Done => return Ok(()),
            }
        }
    }

    fn outcome(&self, id: u32) -> Option<Outcome> {
        let store = self.store.borrow();
        let s = store.data().streams.get(&id)?;
        Some(stream_outcome(s))
    }
}

fn stream_outcome(s: &Stream) -> Outcome {
    if s.stage != Stage::Done {
        return Outcome::Paused;
    }
    if s.reset {
        return Outcome::Reset;
    }
    let status = s
        .response_headers
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0);
    let response = Response {
        status,
        headers: s
            .response_headers
            .iter()
            .filter(|(k, _)| k != ":status")
            .cloned()
            .collect(),
        body: s.response_body.clone(),
        details: s.local_details.clone(),
    };
    match (&s.local_details, &s.upstream) {
        (None, Some((headers, body))) => Outcome::Forwarded {
            request_headers: headers.clone(),
            request_body: body.clone(),
            response,
        },
        _ => Outcome::Local(response),
    }
}

/// One worker VM: an instance of the module with its root context configured.
pub struct Vm {
    inner: Rc<VmInner>,
    host: Host,
}

impl Vm {
    /// This VM's index in [`LogLine::vm`] and [`HttpCall::vm`].
    pub fn index(&self) -> usize {
        self.inner.index
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Runs a request through the filter (see [`Vm::start`]) and returns where it ended up.
    /// Panics with the module's panic message if the module traps (also when an earlier call
    /// crashed this VM); use [`Vm::try_request`] to observe a trap instead.
    pub fn request(&self, req: Request) -> Outcome {
        match self.try_request(req) {
            Ok(o) => o,
            Err(trap) => panic!("{trap}"),
        }
    }

    /// [`Vm::request`], returning a trap as `Err`. On a VM that crashed earlier it answers as
    /// Envoy does for a failed VM that fails closed: a local 503 with details
    /// `wasm_fail_stream`, without calling the module.
    pub fn try_request(&self, req: Request) -> Result<Outcome, Trap> {
        if self.inner.failed.borrow().is_some() {
            return Ok(Outcome::Local(Response {
                status: 503,
                headers: Vec::new(),
                body: Vec::new(),
                details: Some("wasm_fail_stream".into()),
            }));
        }
        let id = self.try_start(req)?;
        Ok(self.outcome(id))
    }

    /// Opens a stream and runs it as far as the filter lets it: request headers
    /// (`end_of_stream` when there is no body), the body, and if the request goes upstream,
    /// the canned upstream response through the response callbacks, then log/done/delete.
    /// Returns at once if the filter pauses. Panics if the module traps.
    pub fn start(&self, req: Request) -> StreamId {
        match self.try_start(req) {
            Ok(id) => id,
            Err(trap) => panic!("{trap}"),
        }
    }

    pub fn try_start(&self, req: Request) -> Result<StreamId, Trap> {
        if let Some(trap) = self.inner.failed.borrow().clone() {
            return Err(trap);
        }
        let id = {
            let mut store = self.inner.store.borrow_mut();
            let ctx = store.data_mut();
            let id = ctx.next_context_id;
            ctx.next_context_id += 1;
            let request_id = {
                let mut sh = ctx.shared.borrow_mut();
                sh.next_request_id += 1;
                sh.next_request_id
            };
            let headers = request_headers(&req, request_id);
            ctx.streams.insert(id, new_stream(req, headers));
            let result = self.inner.drive(&mut store, id);
            drop(store);
            result?;
            id
        };
        self.host.deliver_queue_notifications()?;
        Ok(StreamId(id))
    }

    /// The client goes away (a reset): the stream ends wherever it was, as Envoy ends it.
    pub fn cancel(&self, id: StreamId) {
        let result = {
            let mut store = self.inner.store.borrow_mut();
            if let Some(s) = store.data_mut().streams.get_mut(&id.0) {
                s.reset = true;
            }
            self.inner.drive(&mut store, id.0)
        };
        if let Err(trap) = result {
            panic!("{trap}");
        }
    }

    /// Whether the request's headers reached the upstream before the request was complete:
    /// the upstream then saw a request start, whatever the filter decided about its body.
    pub fn upstream_started_early(&self, id: StreamId) -> bool {
        let store = self.inner.store.borrow();
        store
            .data()
            .streams
            .get(&id.0)
            .is_some_and(|s| s.upstream_started_early)
    }

    /// Where that stream is now ([`Outcome::Paused`] until something resumes it).
    pub fn outcome(&self, id: StreamId) -> Outcome {
        match self.inner.outcome(id.0) {
            Some(o) => o,
            None => panic!("no stream {} on VM {}", id.0, self.inner.index),
        }
    }

    /// The lines this VM logged.
    pub fn logs(&self) -> Vec<LogLine> {
        self.host
            .logs()
            .into_iter()
            .filter(|l| l.vm == self.inner.index)
            .collect()
    }

    /// The trap that crashed this VM, if one did.
    pub fn trap(&self) -> Option<Trap> {
        self.inner.failed.borrow().clone()
    }

    /// The tick period the module asked for.
    pub fn tick_period(&self) -> Option<Duration> {
        self.inner.store.borrow().data().tick_period
    }
}

/// The headers Envoy's filters see for a client request: pseudo-headers first, the client's
/// headers, then what the connection manager adds.
fn request_headers(req: &Request, request_id: u64) -> HeaderMap {
    let mut h: HeaderMap = vec![
        (":authority".into(), req.authority.clone().into_bytes()),
        (":path".into(), req.path.clone().into_bytes()),
        (":method".into(), req.method.clone().into_bytes()),
        (":scheme".into(), req.scheme.clone().into_bytes()),
    ];
    h.extend(req.headers.iter().cloned());
    if let Some(body) = &req.body
        && !h.iter().any(|(k, _)| k == "content-length")
    {
        h.push(("content-length".into(), body.len().to_string().into_bytes()));
    }
    if !h.iter().any(|(k, _)| k == "x-forwarded-proto") {
        h.push(("x-forwarded-proto".into(), req.scheme.clone().into_bytes()));
    }
    if !h.iter().any(|(k, _)| k == "x-request-id") {
        let id = format!("00000000-0000-4000-8000-{request_id:012x}");
        h.push(("x-request-id".into(), id.into_bytes()));
    }
    h
}

fn new_stream(request: Request, headers: HeaderMap) -> Stream {
    Stream {
        request,
        stage: Stage::Created,
        request_headers: headers,
        request_headers_visible: false,
        request_body: Vec::new(),
        request_body_visible: false,
        response_headers: Vec::new(),
        response_headers_visible: false,
        response_body: Vec::new(),
        response_body_visible: false,
        access_log_phase: false,
        headers_continued: false,
        upstream: None,
        pending_local: None,
        local_details: None,
        continue_request: false,
        continue_response: false,
        reset: false,
        properties: HashMap::new(),
        request_frame: 0,
        request_held: Vec::new(),
        request_sent: Vec::new(),
        trailers_delivered: false,
        upstream_started_early: false,
        response_frames: Vec::new(),
        response_frame: 0,
        response_held: Vec::new(),
        response_sent: Vec::new(),
    }
}
