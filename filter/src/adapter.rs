//! The proxy-wasm adapter: the only file that calls the SDK. It reads the configuration and
//! the request headers, hands them to the core (`engine::decide`), and carries the decision
//! out: remove headers and continue, or answer locally. Hostcall failures fail closed with a
//! 500 instead of the SDK's panics, because a panic would kill the worker's VM.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use chrono::{DateTime, Utc};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType, Status};

use crate::engine::{self, Decision, KeyState, RequestView};
use crate::host::Host;
use crate::policy::{KeySource, Policy};
use crate::response::LocalResponse;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Counters are defined on first use and their ids kept per VM.
#[derive(Default)]
struct ProxyHost {
    metrics: RefCell<HashMap<String, u32>>,
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
}

#[derive(Default)]
struct Root {
    policy: Option<Rc<Policy>>,
    host: Rc<ProxyHost>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        ) {
            Ok(Some(bytes)) => bytes,
            _ => {
                log::error!("mcp-auth: configuration rejected: (configuration): is missing");
                return false;
            }
        };
        match Policy::parse(&bytes) {
            Ok(policy) => {
                if let Some(KeySource::Inline(set)) = policy.authn.as_ref().map(|a| &a.keys) {
                    for skipped in &set.skipped {
                        log::warn!("mcp-auth: JWKS key skipped: {skipped}");
                    }
                }
                self.policy = Some(Rc::new(policy));
                true
            }
            Err(e) => {
                log::error!("mcp-auth: configuration rejected: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            policy: self.policy.clone(),
            host: self.host.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    policy: Option<Rc<Policy>>,
    host: Rc<ProxyHost>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.clone() else {
            return fail_closed("the filter has no configuration");
        };
        let Ok(headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
            return fail_closed("request headers are unavailable");
        };
        let request = RequestView { headers: &headers };
        let keys = match policy.authn.as_ref().map(|a| &a.keys) {
            Some(KeySource::Inline(set)) => KeyState::Ready {
                set,
                may_refetch: false,
            },
            Some(KeySource::Remote(_)) => KeyState::Failed("remote keys are not fetched yet"),
            None => KeyState::Failed("no keys configured"),
        };
        match engine::decide(&policy, keys, &request, self.host.as_ref()) {
            Decision::Continue { remove, .. } => {
                for name in remove {
                    if hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).is_err() {
                        return fail_closed("a request header could not be removed");
                    }
                }
                Action::Continue
            }
            Decision::Respond(response) => respond(&response),
            Decision::FetchKeys => fail_closed("signing keys are unavailable"),
        }
    }
}

fn fail_closed(reason: &str) -> Action {
    log::error!("mcp-auth: failing closed: {reason}");
    respond(&LocalResponse {
        status: 500,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::json!({"error": "server_error", "error_description": reason})
            .to_string()
            .into_bytes(),
        details: "mcp_auth_internal_error".into(),
    })
}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
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
fn respond(response: &LocalResponse) -> Action {
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
    Action::Pause
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
