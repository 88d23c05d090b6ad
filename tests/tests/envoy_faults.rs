//! The JWKS endpoint misbehaving in ways `envoy_e2e.rs` does not cover, through a real Envoy
//! with the real module: the connection dropped without a response (`reset`), a 2 MiB body
//! (`huge`: the real key set padded, over the filter's 256 KiB limit), a key set with no key a
//! verifier may use (`nokeys`: one `kty: oct` key under the active `kid`), and a key rotation
//! while requests are in flight. No request may hang (every client call has a timeout), the
//! only 5xx allowed is the filter's designed 503 "keys unavailable", and good keys are never
//! replaced by bad ones.
//!
//! The policy refetches after 1 s (`minRefresh: 1s`) so one stack can walk through every
//! fault; needs what `envoy_e2e.rs` needs (`MCP_AUTH_SKIP_ENVOY=1` skips).
mod envoy_support;

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use envoy_support::{AI_USER, CLIENT_TIMEOUT, Options, Stack, bootstrap_with_policy, policy};

const FAULTS: [&str; 3] = ["reset", "huge", "nokeys"];
/// A little over the policy's `minRefresh`, so the next unknown `kid` is fetched for.
const REFETCH_WAIT: Duration = Duration::from_millis(1300);

fn stack(options: Options) -> Option<Stack> {
    Stack::start_with_bootstrap(options, |issuer, upstream, wasm| {
        let policy = policy(issuer).replace(
            "cluster: okta-jwks\n",
            "cluster: okta-jwks\n      minRefresh: 1s\n",
        );
        assert!(policy.contains("minRefresh"), "{policy}");
        bootstrap_with_policy(&policy, issuer, upstream, wasm)
    })
}

/// A request that must be answered well within the client timeout.
fn answered(stack: &Stack, token: &str) -> u16 {
    answered_reply(stack, token).status
}

fn answered_reply(stack: &Stack, token: &str) -> envoy_support::Reply {
    let started = Instant::now();
    let reply = stack.request("/mcp", Some(token));
    assert!(
        started.elapsed() < CLIENT_TIMEOUT,
        "the request hung: {reply:?}"
    );
    if reply.status >= 500 {
        assert_eq!(
            reply.status, 503,
            "a 5xx that is not the designed 503: {reply:?}"
        );
        let body = reply.body.to_lowercase();
        assert!(
            body.contains("key") || body.contains("jwks"),
            "the 503 should say the keys are unavailable: {reply:?}"
        );
    }
    reply
}

/// Cold start: the first fetch meets each fault in turn; every request gets the designed 503
/// promptly, and once the endpoint recovers the same token passes.
#[test]
fn on_a_cold_start_a_reset_a_2_mib_body_or_no_usable_key_is_a_prompt_503() {
    let Some(stack) = stack(Options {
        keys_mode: FAULTS[0],
        ..Options::default()
    }) else {
        return;
    };
    let token = stack.issuer.token(AI_USER.0, AI_USER.1);
    for mode in FAULTS {
        stack.issuer.keys_mode(mode);
        let fetched = stack.issuer.keys_requests();
        std::thread::sleep(REFETCH_WAIT);
        let status = answered(&stack, &token);
        assert_eq!(status, 503, "keys endpoint in mode {mode}");
        assert!(
            stack.issuer.keys_requests() > fetched,
            "the filter did not fetch in mode {mode}"
        );
    }
    assert!(
        stack.upstream.seen().is_empty(),
        "nothing may pass without keys"
    );

    stack.issuer.keys_mode("ok");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(REFETCH_WAIT);
        let status = answered(&stack, &token);
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: still {status}");
    }
}

/// Warm: keys are cached, the issuer rotates, and the refetch the new `kid` causes meets each
/// fault. The new token is refused (401 unknown key or 503), the old one keeps passing: the
/// good keys were not replaced. Once the endpoint recovers, the newest token passes.
#[test]
fn a_failed_refetch_never_replaces_good_keys() {
    let Some(stack) = stack(Options::default()) else {
        return;
    };
    let old = stack.issuer.token(AI_USER.0, AI_USER.1);
    assert_eq!(answered(&stack, &old), 200);

    let mut newest = old.clone();
    for mode in FAULTS {
        stack.issuer.keys_mode(mode);
        stack.issuer.rotate();
        newest = stack.issuer.token(AI_USER.0, AI_USER.1);
        let fetched = stack.issuer.keys_requests();
        std::thread::sleep(REFETCH_WAIT);

        // On a busy machine the previous fault's fetch (a 2 MiB body, say) may still be under
        // way: the filter then waits for it rather than starting another, and the next try
        // makes the refetch.
        let mut tries = 0;
        loop {
            let status = answered(&stack, &newest);
            assert!(
                status == 401 || status == 503,
                "mode {mode}: a token under a key the filter could not fetch got {status}"
            );
            if stack.issuer.keys_requests() > fetched {
                break;
            }
            tries += 1;
            // The fetch under way ends by its timeout (5 s) at the latest.
            assert!(tries < 8, "mode {mode}: the unknown kid caused no refetch");
            std::thread::sleep(REFETCH_WAIT);
        }
        assert_eq!(
            answered(&stack, &old),
            200,
            "mode {mode}: the cached good key was dropped"
        );
    }

    stack.issuer.keys_mode("ok");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(REFETCH_WAIT);
        let status = answered(&stack, &newest);
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: still {status}");
    }
}

/// Requests from several threads while the issuer rotates its key twice and clients switch to
/// the new tokens: nothing hangs, nothing gets a 5xx but the designed 503, and after each
/// rotation the new tokens pass.
///
/// With two workers a valid token under the new key can get a 401 in the instant after the
/// rotation: the worker that sees the new `kid` second finds the unknown-`kid` refetch
/// rate-limited (the other worker's refetch is in flight or just done) and refuses the token
/// instead of waiting for it. Seen 1 and 58 times in ~6,500 requests (two runs); counted and
/// printed here, reported to the filter's owner, not hidden by a retry.
#[test]
fn a_key_rotation_under_concurrent_load_loses_no_request() {
    const THREADS: usize = 4;
    let Some(stack) = stack(Options {
        concurrency: 2,
        ..Options::default()
    }) else {
        return;
    };
    let token = RwLock::new(stack.issuer.token(AI_USER.0, AI_USER.1));
    assert_eq!(answered(&stack, &token.read().unwrap()), 200);
    let stop = AtomicBool::new(false);

    let (statuses, after_rotation) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let mut statuses = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let current = token.read().unwrap().clone();
                        let reply = answered_reply(&stack, &current);
                        if reply.status != 200 {
                            eprintln!("during rotation: {} {}", reply.status, reply.body);
                        }
                        statuses.push(reply.status);
                    }
                    statuses
                })
            })
            .collect();
        let mut after_rotation = Vec::new();
        for _ in 0..2 {
            std::thread::sleep(Duration::from_secs(1));
            stack.issuer.rotate();
            let fresh = stack.issuer.token(AI_USER.0, AI_USER.1);
            *token.write().unwrap() = fresh.clone();
            std::thread::sleep(Duration::from_millis(500));
            after_rotation.push(answered(&stack, &fresh));
        }
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::SeqCst);
        let statuses: Vec<u16> = clients
            .into_iter()
            .flat_map(|c| c.join().expect("client thread"))
            .collect();
        (statuses, after_rotation)
    });

    let passed = statuses.iter().filter(|&&s| s == 200).count();
    let unavailable = statuses.iter().filter(|&&s| s == 503).count();
    let refused = statuses.iter().filter(|&&s| s == 401).count();
    eprintln!(
        "rotation under load: {} requests, {passed} × 200, {unavailable} × 503, {refused} × 401",
        statuses.len()
    );
    assert!(statuses.len() >= 20, "too few requests to say anything");
    let unexpected: Vec<u16> = statuses
        .iter()
        .copied()
        .filter(|&s| !matches!(s, 200 | 401 | 503))
        .collect();
    assert!(unexpected.is_empty(), "during rotation: {unexpected:?}");
    // A 401 for a valid token is the race described above: rare, never the rule.
    assert!(
        refused * 10 <= statuses.len(),
        "{refused} of {} valid requests refused during rotation",
        statuses.len()
    );
    assert_eq!(after_rotation, [200, 200], "new tokens after the rotations");
}
