//! libFuzzer entry for token verification: bytes as a bearer token against the fixed key set in
//! `fuzz/src/keys.json`. The body, and what it asserts of a token that verifies (three parts,
//! not expired), is `mcp_auth_filter_fuzz::jwt_verify`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcp_auth_filter_fuzz::jwt_verify(data));
