//! libFuzzer entry for the policy parser: bytes as a plugin configuration (YAML or JSON), which
//! must compile or be refused with a reason. The body is `mcp_auth_filter_fuzz::policy_parse`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcp_auth_filter_fuzz::policy_parse(data));
