//! Load with bad input through a real Envoy (two workers) and the real module: `LOAD_REQUESTS`
//! requests (5,000 by default; `make soak` sends 500,000) from several client threads at full
//! speed, mixing valid tokens, expired ones (signed by the real key), forged ones (signature
//! from another token, `alg: none`, HS256 with a guessed secret) and garbage (unique each time,
//! so no cache can absorb it). Every request must be answered, valid ones with 200 and the rest
//! with 401; nothing may get a 5xx. The filter's `mcp_auth.memory_bytes` gauge (the VM's
//! linear memory, which only grows) is read after the first 100,000 requests (or a fifth of a
//! shorter run) and at the end: in `make soak` it must not have grown, in the short run it is
//! printed.
mod envoy_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envoy_support::{AI_USER, Options, Stack, agent};
use serde_json::Value;

const THREADS: usize = 4;
const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Valid,
    Expired,
    Forged,
    Garbage,
}

fn requests() -> usize {
    std::env::var("LOAD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

fn expired_token(stack: &Stack) -> String {
    let mut response = agent()
        .post(format!(
            "{}/control/token?client_id={}&ttl_seconds=-3600",
            stack.issuer.base, AI_USER.0
        ))
        .send("")
        .expect("control/token");
    let body: Value = response.body_mut().read_json().expect("token JSON");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

fn forged_tokens(valid: &[String]) -> Vec<String> {
    let parts: Vec<Vec<&str>> = valid.iter().map(|t| t.split('.').collect()).collect();
    let (a, b) = (&parts[0], &parts[1]);
    let kid = {
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(a[0]).unwrap()).unwrap();
        header["kid"].as_str().unwrap().to_owned()
    };
    let enc = |v: &str| URL_SAFE_NO_PAD.encode(v);
    let mut flipped = a[2].as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    vec![
        // Another token's signature.
        format!("{}.{}.{}", a[0], a[1], b[2]),
        // One signature character changed.
        format!("{}.{}.{}", a[0], a[1], String::from_utf8(flipped).unwrap()),
        // alg none, signature stripped.
        format!(
            "{}.{}.",
            enc(&format!(r#"{{"alg":"none","kid":"{kid}"}}"#)),
            a[1]
        ),
        // HS256 "signed" with a guessed secret under the real kid.
        format!(
            "{}.{}.{}",
            enc(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#)),
            a[1],
            enc("not-the-key-0123456789abcdef0123")
        ),
    ]
}

fn garbage(i: usize) -> String {
    match i % 4 {
        0 => format!("garbage-{i}"),
        1 => format!("{}.{}.{}", enc_n(i), enc_n(i * 7), enc_n(i * 13)),
        2 => format!("eyJhbGciOiJSUzI1NiJ9.{}", "A".repeat(i % 3000)),
        _ => format!("{i}.{i}.{i}.{i}.{i}"),
    }
}

fn enc_n(n: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{{\"n\":{n}}}"))
}

fn memory(stack: &Stack) -> u64 {
    stack
        .envoy
        .stats_matching("mcp_auth.memory_bytes")
        .into_iter()
        .map(|(_, v)| v)
        .max()
        .unwrap_or(0)
}

#[test]
fn valid_expired_forged_and_garbage_tokens_at_full_speed_lose_nothing() {
    let total = requests();
    let checkpoint = 100_000.min(total / 5);
    let Some(stack) = Stack::start(Options {
        concurrency: 2,
        ..Options::default()
    }) else {
        return;
    };
    let valid: Vec<String> = (0..8)
        .map(|_| stack.issuer.token(AI_USER.0, AI_USER.1))
        .collect();
    let expired: Vec<String> = (0..4).map(|_| expired_token(&stack)).collect();
    let forged = forged_tokens(&valid);

    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    let mut at_checkpoint = None;
    let results: Vec<(usize, [usize; 4], u128)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let client = agent();
                    let mut by_kind = [0_usize; 4];
                    let mut slowest = 0_u128;
                    let mut count = 0;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        let (kind, token) = match i % 10 {
                            0..=3 => (Kind::Valid, valid[i % valid.len()].clone()),
                            4 | 5 => (Kind::Expired, expired[i % expired.len()].clone()),
                            6 | 7 => (Kind::Forged, forged[i % forged.len()].clone()),
                            _ => (Kind::Garbage, garbage(i)),
                        };
                        let sent = Instant::now();
                        let mut response = client
                            .post(format!("{}/mcp", stack.envoy.url))
                            .header("content-type", "application/json")
                            .header("accept", "application/json, text/event-stream")
                            .header("authorization", format!("Bearer {token}"))
                            .send(BODY)
                            .unwrap_or_else(|e| panic!("request {i} ({kind:?}) not answered: {e}"));
                        let status = response.status().as_u16();
                        let body = response.body_mut().read_to_string().unwrap_or_default();
                        slowest = slowest.max(sent.elapsed().as_millis());
                        let expected = if kind == Kind::Valid { 200 } else { 401 };
                        assert_eq!(status, expected, "request {i} ({kind:?}): {body}");
                        by_kind[kind as usize] += 1;
                        count += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    (count, by_kind, slowest)
                })
            })
            .collect();
        while !clients.iter().all(|c| c.is_finished()) {
            if at_checkpoint.is_none() && done.load(Ordering::Relaxed) >= checkpoint {
                at_checkpoint = Some((done.load(Ordering::Relaxed), memory(&stack)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        clients
            .into_iter()
            .map(|c| c.join().expect("client thread"))
            .collect()
    });
    let elapsed = started.elapsed();

    let answered: usize = results.iter().map(|r| r.0).sum();
    let mut by_kind = [0_usize; 4];
    for r in &results {
        for (k, n) in r.1.iter().enumerate() {
            by_kind[k] += n;
        }
    }
    let slowest = results.iter().map(|r| r.2).max().unwrap_or(0);
    let (checkpoint_done, checkpoint_memory) = at_checkpoint.unwrap_or((0, 0));
    let end_memory = memory(&stack);
    let upstream_seen = stack.upstream.seen().len();
    eprintln!(
        "load: {answered}/{total} answered in {:.1} s ({:.0} req/s), {THREADS} client threads, \
         2 Envoy workers; valid {} → 200, expired {} / forged {} / garbage {} → 401; 0 × 5xx; \
         slowest {slowest} ms; upstream saw {upstream_seen}; filter memory {checkpoint_memory} B \
         after {checkpoint_done} requests, {end_memory} B at the end",
        elapsed.as_secs_f64(),
        answered as f64 / elapsed.as_secs_f64(),
        by_kind[0],
        by_kind[1],
        by_kind[2],
        by_kind[3],
    );
    assert_eq!(answered, total, "every request answered");
    assert_eq!(
        upstream_seen, by_kind[0],
        "only valid requests reach the upstream"
    );
    assert!(end_memory > 0, "no mcp_auth.memory_bytes gauge");
    if std::env::var_os("LOAD_SOAK").is_some() {
        assert!(
            end_memory <= checkpoint_memory,
            "the filter's memory grew from {checkpoint_memory} B after {checkpoint_done} \
             requests to {end_memory} B"
        );
    }
}
