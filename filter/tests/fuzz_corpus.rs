//! Replays the fuzz targets' committed corpus (`fuzz/corpus/<target>/`: the seeds plus the
//! inputs `make fuzz` runs found worth keeping, crashes included once fixed) through the same
//! target bodies the fuzzer runs, as ordinary tests: the CI smoke of the fuzzing, with no
//! nightly toolchain and no cargo-fuzz install. The long runs are `make fuzz`.

// The helpers below are not #[test] functions, which clippy.toml's allow-*-in-tests reach.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

#[path = "../../fuzz/src/lib.rs"]
mod targets;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{}: no corpus", dir.display());
    // Unoptimised frames are several times the size of release ones: the policy corpus holds
    // YAML nested ~128 deep (serde_yaml's limit), which overflows a test thread's 2 MiB stack in
    // a debug build while the fuzzer's release build parsed it on 8 MiB. Same 8 MiB here, x2.
    let replayed = std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(move || {
            for input in &inputs {
                let data = std::fs::read(input).unwrap();
                if let Err(panic) = std::panic::catch_unwind(|| body(&data)) {
                    panic!("{} panicked: {panic:?}", input.display());
                }
            }
            inputs.len()
        })
        .unwrap()
        .join();
    let count = replayed.unwrap_or_else(|e| std::panic::resume_unwind(e));
    eprintln!("{target}: {count} inputs replayed");
}

#[test]
fn jwt_verify_corpus() {
    replay("jwt_verify", targets::jwt_verify);
}

#[test]
fn policy_parse_corpus() {
    replay("policy_parse", targets::policy_parse);
}

#[test]
fn parse_body_corpus() {
    replay("parse_body", targets::parse_body);
}

#[test]
fn filter_list_corpus() {
    replay("filter_list", targets::filter_list);
}

/// The seed tokens, signed by the fuzz key set's private halves, verify: the fuzzer starts from
/// inputs that reach every step of the verifier, not only the parser.
#[test]
fn the_seed_tokens_verify() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/jwt_verify");
    for alg in ["rs256", "ps256", "es256", "es384", "eddsa"] {
        let token = std::fs::read(dir.join(format!("seed-{alg}"))).unwrap();
        assert!(targets::verifies(&token), "seed-{alg} does not verify");
    }
}
