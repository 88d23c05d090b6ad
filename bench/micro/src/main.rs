//! `bench-micro <cases.json> [warmup]`: verifies every token of each case once with the
//! filter's own path — `jwks::parse_jwks` once per case, then `jwt::verify` per token, no cache
//! involved — and prints one JSON line per case, over the tokens after the first `warmup`
//! (default 100): `{"alg":"RS256","n":…,"mean_us":…,"median_us":…}`.
//!
//! The same source runs natively and as wasm32-wasip1 under Node's WASI (`bench/micro.mjs`),
//! V8 being the runtime Envoy runs the filter in. `bench-tool micro` writes the cases file.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeDelta};
use mcp_auth_filter::{jwks, jwt};
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases {
    issuer: String,
    audience: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    alg: String,
    jwks: String,
    tokens: Vec<String>,
}

/// Tokens verified before timing starts (V8 tiers the code up from Liftoff to TurboFan),
/// unless the second argument says otherwise.
const WARMUP: usize = 100;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench-micro: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: bench-micro <cases.json> [warmup]")?;
    let warmup = match std::env::args().nth(2) {
        Some(n) => n
            .parse()
            .map_err(|_| format!("warmup: not a number: {n:?}"))?,
        None => WARMUP,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let cases: Cases = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let expect = jwt::Expectations {
        issuer: cases.issuer.clone(),
        audiences: Some(vec![cases.audience.clone()]),
        clock_skew: TimeDelta::seconds(60),
    };
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let now = DateTime::from_timestamp(i64::try_from(secs).map_err(|e| e.to_string())?, 0)
        .ok_or("clock out of range")?;

    for case in &cases.cases {
        let keys = jwks::parse_jwks(case.jwks.as_bytes())
            .map_err(|e| format!("{}: key set: {e}", case.alg))?;
        if case.tokens.len() <= warmup {
            return Err(format!("{}: need more than {warmup} tokens", case.alg));
        }
        let mut times = Vec::with_capacity(case.tokens.len());
        for (i, token) in case.tokens.iter().enumerate() {
            let start = Instant::now();
            let identity = jwt::verify(token, &keys, &expect, now);
            let elapsed = start.elapsed();
            identity.map_err(|e| format!("{}: token {i} refused: {e}", case.alg))?;
            if i >= warmup {
                times.push(elapsed.as_secs_f64() * 1e6);
            }
        }
        let n = times.len();
        let mean = times.iter().sum::<f64>() / n as f64;
        times.sort_by(f64::total_cmp);
        let median = times.get(n / 2).copied().unwrap_or(mean);
        println!(
            "{}",
            serde_json::json!({"alg": case.alg, "n": n, "mean_us": mean, "median_us": median})
        );
    }
    Ok(())
}
