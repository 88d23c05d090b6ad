//! `bench-micro <cases.json> [warmup]`: verifies every token of each case once with the
//! filter's own path — `jwks::parse_jwks` once per case, then `jwt::verify` per token, no cache
//! involved — and prints one JSON line per case, over the tokens after the first `warmup`
//! (default 100): `{"alg":"RS256","n":…,"mean_us":…,"median_us":…}`. Before that, the time
//! to read each case's key set: the first read of the VM (`keys_first_ES256`: with what a VM
//! builds once, the generator's table) and the next ones (`keys_ES256`: one key prepared).
//!
//! Then the warm path: `engine::decide` for the Okta guide's policy (key set inline, the rule
//! `"AI-Users" in auth.claims.groups`) on a request shaped as the benchmark's (`GET /` with the
//! headers Envoy hands the filter), its token already in the verified-token cache; timed in
//! batches of 100 decisions, printed as `{"alg":"warm",…}` with µs per decision.
//!
//! Last, whole `tools/list` exchanges through the filter's lifecycle (request headers and
//! body, response headers, the benchmark upstream's 100-tool JSON answer): with the guide's
//! rule alone (`list_plain`: the answer passes unread) and with the per-tool rule too
//! (`list_filtered`: the answer is read and 10 tools cut out), in µs per exchange; the same
//! answer as one SSE event (`list_sse_filtered`); answers that change every time, so nothing
//! read before is recalled (`list_changing`).
//!
//! The same source runs natively and as wasm32-wasip1 under Node's WASI (`bench/micro.mjs`),
//! V8 being the runtime Envoy runs the filter in. `bench-tool micro` writes the cases file.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeDelta};
use mcp_auth_filter::cache::TokenCache;
use mcp_auth_filter::engine::{self, Decision, RequestView};
use mcp_auth_filter::keystore::KeyState;
use mcp_auth_filter::lifecycle::{Action, Filter};
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

/// Times each case's key set is read after the first.
const KEY_SET_READS: usize = 20;

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
        // The key set read as a fetch answer is: the first time also builds what a VM builds
        // once (ES256: the generator's table), the next times are one key's preparation each.
        let mut reads = Vec::with_capacity(KEY_SET_READS);
        for _ in 0..=KEY_SET_READS {
            let start = Instant::now();
            jwks::parse_jwks(case.jwks.as_bytes())
                .map_err(|e| format!("{}: key set: {e}", case.alg))?;
            reads.push(start.elapsed().as_secs_f64() * 1e6);
        }
        let first = reads.remove(0);
        report(&format!("keys_first_{}", case.alg), 1, vec![first]);
        report(&format!("keys_{}", case.alg), reads.len(), reads);
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
        report(&case.alg, times.len(), times);
    }
    let rs256 = cases
        .cases
        .iter()
        .find(|c| c.alg == "RS256")
        .ok_or("no RS256 case")?;
    warm(&cases, rs256, now)?;
    list(&cases, rs256, now, false)?;
    list(&cases, rs256, now, true)?;
    list_sse(&cases, rs256, now)?;
    list_changing(&cases, rs256, now)?;
    call(&cases, rs256, now)
}

/// The headers Envoy hands the filter for a request to the benchmark's gateway, and `extra`.
fn request_headers(
    method: &str,
    path: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, Vec<u8>)> {
    let bearer = format!("Bearer {token}");
    [
        (":authority", "127.0.0.1:10000"),
        (":path", path),
        (":method", method),
        (":scheme", "http"),
        ("authorization", bearer.as_str()),
    ]
    .iter()
    .chain(extra)
    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
    .collect()
}

/// Prints one case's line: the mean and median of `times` (µs), and how many there were.
fn report(alg: &str, n: usize, mut times: Vec<f64>) {
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(mean);
    println!(
        "{}",
        serde_json::json!({"alg": alg, "n": n, "mean_us": mean, "median_us": median})
    );
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
    let headers = request_headers(
        "GET",
        "/",
        token,
        &[
            ("x-forwarded-proto", "http"),
            ("x-request-id", "8a3c5a8e-0a8e-4c57-9d0e-3b4c1f2a9e77"),
        ],
    );
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
    report("warm", BATCH * BATCHES, times);
    Ok(())
}

/// The tools/list answer the Envoy benchmark's upstream sends: 100 tools, every tenth `admin_*`.
fn tools_answer() -> Vec<u8> {
    tools_answer_variant(None)
}

/// [`tools_answer`], its last tool's description ending with `variant` when there is one.
fn tools_answer_variant(variant: Option<usize>) -> Vec<u8> {
    let tools: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            let name = if i % 10 == 0 {
                format!("admin_op_{i:02}")
            } else {
                format!("search_docs_{i:02}")
            };
            serde_json::json!({
                "name": name,
                "description": match (i, variant) {
                    (99, Some(v)) => format!("Tool {i}, variant {v}."),
                    _ => format!("Tool {i}: searches the team's documents and returns the best matches with their titles and links."),
                },
                "inputSchema": {"type": "object", "properties": {
                    "query": {"type": "string", "description": "what to look for"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100}},
                    "required": ["query"]},
            })
        })
        .collect();
    serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}})
        .to_string()
        .into_bytes()
}

/// A whole `tools/list` exchange through [`Filter`] (request headers and body, response
/// headers and the JSON answer), with the guide's rule and, when `tool_rule`, the benchmark's
/// per-tool rule; prints `{"alg":"list_filtered"|"list_plain",…}` with µs per exchange.
fn list(
    cases: &Cases,
    case: &Case,
    now: DateTime<chrono::Utc>,
    tool_rule: bool,
) -> Result<(), String> {
    let request = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;
    let answer = tools_answer();
    let alg = if tool_rule {
        "list_filtered"
    } else {
        "list_plain"
    };
    let size = exchanges(
        alg,
        cases,
        case,
        now,
        tool_rule,
        request,
        (JSON, &[&answer]),
    )?;
    if tool_rule == (size == answer.len()) {
        return Err(format!(
            "list: tool_rule {tool_rule} but the answer is {size} bytes of {}",
            answer.len()
        ));
    }
    Ok(())
}

/// The same exchange as `list_filtered` with the answer as one SSE event, as the Envoy
/// benchmark's upstream sends it; prints `{"alg":"list_sse_filtered",…}`.
fn list_sse(cases: &Cases, case: &Case, now: DateTime<chrono::Utc>) -> Result<(), String> {
    let request = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;
    let mut answer = b"event: message\ndata: ".to_vec();
    answer.extend(tools_answer());
    answer.extend(b"\n\n");
    let size = exchanges(
        "list_sse_filtered",
        cases,
        case,
        now,
        true,
        request,
        (SSE, &[&answer]),
    )?;
    if size >= answer.len() {
        return Err(format!("list_sse: nothing was cut ({size} bytes)"));
    }
    Ok(())
}

/// `list_filtered` with an answer that is never the same as one of the last few: eight
/// answers in turn, each differing in its last tool, so the filter reads and judges every one
/// whole; prints `{"alg":"list_changing",…}`.
fn list_changing(cases: &Cases, case: &Case, now: DateTime<chrono::Utc>) -> Result<(), String> {
    let request = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;
    let answers: Vec<Vec<u8>> = (0..8).map(|v| tools_answer_variant(Some(v))).collect();
    let answers: Vec<&[u8]> = answers.iter().map(Vec::as_slice).collect();
    let size = exchanges(
        "list_changing",
        cases,
        case,
        now,
        true,
        request,
        (JSON, &answers),
    )?;
    if answers.iter().all(|a| size >= a.len()) {
        return Err(format!("list_changing: nothing was cut ({size} bytes)"));
    }
    Ok(())
}

const JSON: &str = "application/json";
const SSE: &str = "text/event-stream";

/// A whole allowed `tools/call` exchange (the Envoy benchmark's ~300-byte call and its
/// result) under the guide's rule and the per-tool rule; prints `{"alg":"call",…}`.
fn call(cases: &Cases, case: &Case, now: DateTime<chrono::Utc>) -> Result<(), String> {
    let request = serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "search_docs", "arguments": {
            "query": "quarterly revenue report for the platform team, latest version",
            "limit": 10, "include_archived": false, "sort": "relevance"}}});
    let request = request.to_string().into_bytes();
    let answer =
        br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"3 documents"}]}}"#;
    exchanges("call", cases, case, now, true, &request, (JSON, &[answer]))?;
    Ok(())
}

/// Times `LIST_ROUNDS` exchanges of `request` and `answer` (its content type and body) through
/// [`Filter`] (request headers and body, response headers and body) after as many to warm up,
/// and reports them as `alg`; the size of the answer the filter passes on.
fn exchanges(
    alg: &str,
    cases: &Cases,
    case: &Case,
    now: DateTime<chrono::Utc>,
    tool_rule: bool,
    request: &[u8],
    (content_type, answers): (&str, &[&[u8]]),
) -> Result<usize, String> {
    let mut rules = vec![serde_json::json!({"if": "\"AI-Users\" in auth.claims.groups"})];
    if tool_rule {
        rules.push(serde_json::json!({"deny": "mcp.tool.name.startsWith(\"admin_\")"}));
    }
    let policy = serde_json::json!({"policies": {
        "mcpAuthentication": {
            "mode": "strict",
            "issuer": cases.issuer,
            "audiences": [cases.audience],
            "jwks": case.jwks,
        },
        "authorization": {"rules": rules},
    }});
    let config = FilterConfig::parse(policy.to_string().as_bytes()).map_err(|e| e.to_string())?;
    let host = FakeHost::at(now);
    let mut filter = Filter::new(config, &host);
    let token = case.tokens.first().ok_or("no token")?;
    let length = request.len().to_string();
    let headers = request_headers(
        "POST",
        "/mcp",
        token,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("content-length", &length),
        ],
    );
    let answer_headers = vec![
        (":status".to_string(), b"200".to_vec()),
        ("content-type".to_string(), content_type.as_bytes().to_vec()),
    ];
    let mut exchange = |id: u32| -> Result<usize, String> {
        filter.on_request_headers(&host, id, None, headers.clone(), false);
        let mut read =
            |start: usize, len: usize| request.get(start..start + len).map(<[u8]>::to_vec);
        let step = filter.on_request_body(&host, id, request.len(), true, &mut read);
        if step.action != Action::Continue {
            return Err(format!(
                "{alg}: the request was not let through: {:?}",
                step.action
            ));
        }
        filter.on_response_headers(&host, id, &answer_headers);
        // As Envoy hands a body over: in 16 KiB reads, each call seeing what it holds (all
        // of the body so far while the filter pauses it, else the new read).
        let mut size = 0;
        let mut held = Vec::new();
        let answer = answers
            .get(id as usize % answers.len().max(1))
            .ok_or("no answer")?;
        let reads: Vec<&[u8]> = answer.chunks(16384).collect();
        for (i, read) in reads.iter().enumerate() {
            held.extend_from_slice(read);
            let out = filter.on_response_body(&host, id, &held, i + 1 == reads.len());
            if !out.pause {
                size += out.replace.map_or(held.len(), |b| b.len());
                held.clear();
            }
        }
        filter.on_done(id);
        Ok(size)
    };
    let size = exchange(1)?;
    let mut times = Vec::with_capacity(LIST_ROUNDS);
    for i in 0..LIST_ROUNDS * 2 {
        let start = Instant::now();
        std::hint::black_box(exchange(2 + i as u32)?);
        if i >= LIST_ROUNDS {
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    report(alg, times.len(), times);
    Ok(size)
}

const LIST_ROUNDS: usize = 2000;
