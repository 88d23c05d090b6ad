//! `bench-micro <cases.json> [warmup]`: verifies every token of each case once with the
//! filter's own path — `jwks::parse_jwks` once per case, then `jwt::verify` per token, no cache
//! involved — and prints one JSON line per case, over the tokens after the first `warmup`
//! (default 100): `{"alg":"RS256","n":…,"mean_us":…,"median_us":…}`.
//!
//!
//! Then the warm path: `engine::decide` for the Okta guide's policy (key set inline, the rule
//! `"AI-Users" in auth.claims.groups`) on a request shaped as the benchmark's (`GET /` with the
//! headers Envoy hands the filter), its token already in the verified-token cache; timed in
//! batches of 100 decisions, printed as `{"alg":"warm",…}` with µs per decision.
//!
//! The same source runs natively and as wasm32-wasip1 under Node's WASI (`bench/micro.mjs`),
//! V8 being the runtime Envoy runs the filter in. `bench-tool micro` writes the cases file.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeDelta};
use mcp_auth_filter::cache::TokenCache;
use mcp_auth_filter::engine::{self, Decision, RequestView};
use mcp_auth_filter::keystore::KeyState;
use mcp_auth_filter::policy::FilterConfig;
use mcp_auth_filter::testing::FakeHost;
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
    let rs256 = cases
        .cases
        .iter()
        .find(|c| c.alg == "RS256")
        .ok_or("no RS256 case")?;
    warm(&cases, rs256, now)
}

const BATCH: usize = 100;
const BATCHES: usize = 400;

fn warm(cases: &Cases, case: &Case, now: DateTime<chrono::Utc>) -> Result<(), String> {
    let policy = serde_json::json!({
        "mcpAuthentication": {
            "mode": "strict",
            "issuer": cases.issuer,
            "audiences": [cases.audience],
            "jwks": case.jwks,
        },
        "authorization": {"rules": ["\"AI-Users\" in auth.claims.groups"]},
    });
    let config = FilterConfig::parse(policy.to_string().as_bytes()).map_err(|e| e.to_string())?;
    let policy = config.policy_for(None).ok_or("no policy")?;
    let keys = jwks::parse_jwks(case.jwks.as_bytes()).map_err(|e| e.to_string())?;
    let token = case.tokens.first().ok_or("no token")?;
    let header = |n: &str, v: &str| (n.to_string(), v.as_bytes().to_vec());
    let headers = vec![
        header(":authority", "127.0.0.1:10000"),
        header(":path", "/"),
        header(":method", "GET"),
        header(":scheme", "http"),
        header("authorization", &format!("Bearer {token}")),
        header("x-forwarded-proto", "http"),
        header("x-request-id", "8a3c5a8e-0a8e-4c57-9d0e-3b4c1f2a9e77"),
    ];
    let request = RequestView { headers: &headers };
    let host = FakeHost::at(now);
    let cache = TokenCache::new(1024);
    let decide = || {
        let keys = KeyState::Ready {
            set: &keys,
            may_refetch: false,
        };
        engine::decide(policy, keys, &cache, &request, &host)
    };
    match decide() {
        Decision::Continue(_) => {}
        other => return Err(format!("warm: the request was not let through: {other:?}")),
    }
    let mut times = Vec::with_capacity(BATCHES);
    for i in 0..BATCHES * 2 {
        let start = Instant::now();
        for _ in 0..BATCH {
            std::hint::black_box(decide());
        }
        // The first half is warm-up, for V8's tiering.
        if i >= BATCHES {
            times.push(start.elapsed().as_secs_f64() * 1e6 / BATCH as f64);
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(mean);
    println!(
        "{}",
        serde_json::json!({"alg": "warm", "n": BATCH * BATCHES, "mean_us": mean, "median_us": median})
    );
    Ok(())
}
