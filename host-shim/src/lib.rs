//! The library behind the `host-shim` binary. Every job the shim does is a module here, so the
//! binary only parses its command line (`main.rs`) and tests can drive the same code in-process
//! (a server bound to `127.0.0.1:0`, a session table, a child) instead of only through a
//! spawned process. A newcomer finds each concept by its module name:
//!
//! - `config` (with `location`): the Agent Gateway file and where in it an error is;
//! - `serve`, `http`, `session`, `mcp`, `stdio`, `stateless`, `envelope`: MCP stdio servers
//!   behind Streamable HTTP and legacy SSE;
//! - `envoy_config`: the Envoy bootstrap rendered from the same file;
//! - `up` (with `preflight`, `envoy_start`, `address`): the whole local stack;
//! - `issuer`: a local Okta-compatible authorization server;
//! - `oci`: the filter module packaged for Istio;
//! - `shutdown`: SIGINT/SIGTERM as a cancellation.

/// A line on stderr, written with one `write` call. `eprintln!` writes the pieces of its format
/// one by one; several shims (and Envoy) logging to one file would then interleave mid-line.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("{}\n", format_args!($($arg)*));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }};
}

pub mod address;
pub mod config;
pub mod envelope;
pub mod envoy_config;
pub mod envoy_start;
pub mod http;
pub mod issuer;
pub mod location;
pub mod mcp;
pub mod oci;
pub mod preflight;
pub mod serve;
pub mod session;
pub mod shutdown;
pub mod stateless;
pub mod stdio;
pub mod up;
