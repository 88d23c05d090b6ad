//! A proxy-wasm host on wasmtime that loads the real release `.wasm` of the filter and drives
//! it the way Envoy does, plus test keys and tokens, so scenario tests exercise the exact
//! artifact Envoy would run, with a virtual clock and scripted upstreams.
//!
//! Start with [`Host::new`], [`Host::vm`] and [`Vm::request`]; tokens come from [`tokens`].
// Test support code: hostcall plumbing indexes fixed-size ABI structs, and failures of the
// test host itself are meant to abort the test.
mod abi;
mod host;
pub mod ports;
mod scenario;
mod state;
pub mod tokens;
mod wasi;

pub use host::{ConfigureError, FILTER_WASM, Host, START_TIME_UNIX, Trap, Vm, filter_exports};
pub use scenario::{CallRef, HttpCall, LogLevel, LogLine, Outcome, Request, Response, StreamId};
