//! libFuzzer entry for the list filter: bytes as a `tools/list`-style answer (JSON or SSE) through
//! the filter that hides items per caller. The body, and its invariants (the output is JSON, a
//! second pass changes nothing), is `mcp_auth_filter_fuzz::filter_list`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcp_auth_filter_fuzz::filter_list(data));
