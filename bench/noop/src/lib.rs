//! The benchmark's "no-op wasm filter" baseline: a proxy-wasm 0.2.5 HTTP filter that reads one
//! request header (`authorization`, as the auth filter does first) and lets the request go on.
//! It prices the wasm machinery alone: the VM call per request and one header read.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Noop) });
}}

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let _authorization = self.get_http_request_header("authorization");
        Action::Continue
    }
}
