//! The fuzzer's policy corpus (`fuzz/corpus/policy_parse/`) as plugin configurations of the
//! real release module in the wasmtime host: every input either configures the VM or is
//! refused with `proxy_on_configure` returning false, never a trap. The corpus holds YAML and
//! JSON nested up to serde_yaml's limit (~128 levels), which in a native debug build needs more
//! than a 2 MiB stack: here it runs on the module's own wasm stack, as in Envoy.
use std::path::PathBuf;

use mcp_auth_filter_tests::Host;

#[test]
fn every_fuzzed_policy_configures_or_is_refused_without_a_trap() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/policy_parse");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    let (mut configured, mut refused) = (0, 0);
    for input in &inputs {
        let data = std::fs::read(input).unwrap();
        match Host::new().vm_bytes(&data) {
            Ok(_) => configured += 1,
            Err(e) if e.message == "proxy_on_configure returned false" => refused += 1,
            Err(e) => panic!("{}: {e}", input.display()),
        }
    }
    eprintln!(
        "{} fuzzed policies: {configured} configured, {refused} refused, 0 traps",
        inputs.len()
    );
    assert!(configured > 0 && refused > 0);
}
