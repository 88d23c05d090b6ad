//! libFuzzer entry for the JSON-RPC reader: bytes as a request body on a route with MCP-level
//! rules, which must be judged or refused, never panic. The body is
//! `mcp_auth_filter_fuzz::parse_body`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcp_auth_filter_fuzz::parse_body(data));
