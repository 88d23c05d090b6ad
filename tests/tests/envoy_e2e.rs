//! The Okta guide's setup, end to end, in a real Envoy 1.40 with the real filter module: tokens
//! come from the local issuer's `/v1/token` exactly as the guide's `curl` gets them, the filter
//! fetches keys from the issuer's `/v1/keys` through an Envoy cluster, and an echoing upstream
//! shows what got through. Each scenario starts its own stack (see `envoy_support`), because
//! several of them break the issuer on purpose.
//!
//! Needs `envoy/install-envoy.sh` and `cargo build -p host-shim` first (`make test` does both);
//! `MCP_AUTH_SKIP_ENVOY=1` skips, loudly.
mod envoy_support;

use std::time::{Duration, Instant};

use envoy_support::{AI_USER, CLIENT_TIMEOUT, Options, PLAIN_USER, Stack};

#[test]
fn a_guide_token_for_an_ai_user_passes_and_the_token_stays_at_the_gateway() {
    let Some(stack) = Stack::start(Options::default()) else {
        return;
    };
    let token = stack.issuer.token(AI_USER.0, AI_USER.1);

    let reply = stack.request("/mcp", Some(&token));

    assert_eq!(reply.status, 200, "{reply:?}");
    let echo = reply.json();
    assert_eq!(echo["path"], "/mcp");
    let seen = stack.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "the upstream must not receive the bearer token"
    );
}

#[test]
fn no_token_is_401_pointing_at_the_resource_metadata() {
    let Some(stack) = Stack::start(Options::default()) else {
        return;
    };

    let reply = stack.request("/mcp", None);

    stack.assert_challenge(&reply);
}

#[test]
fn a_client_outside_ai_users_is_403() {
    let Some(stack) = Stack::start(Options::default()) else {
        return;
    };
    let token = stack.issuer.token(PLAIN_USER.0, PLAIN_USER.1);

    let reply = stack.request("/mcp", Some(&token));

    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(stack.upstream.seen().is_empty());
}

#[test]
fn after_a_key_rotation_the_new_token_passes_on_the_next_request() {
    let Some(stack) = Stack::start(Options::default()) else {
        return;
    };
    let before = stack.issuer.token(AI_USER.0, AI_USER.1);
    let first = stack.request("/mcp", Some(&before));
    assert_eq!(first.status, 200, "before the rotation: {first:?}");

    stack.issuer.rotate();
    let after = stack.issuer.token(AI_USER.0, AI_USER.1);
    let reply = stack.request("/mcp", Some(&after));

    assert_eq!(
        reply.status, 200,
        "token signed with the new key: {reply:?}"
    );
}

#[test]
fn when_the_keys_endpoint_fails_later_cached_keys_keep_working() {
    let Some(stack) = Stack::start(Options::default()) else {
        return;
    };
    let token = stack.issuer.token(AI_USER.0, AI_USER.1);
    let first = stack.request("/mcp", Some(&token));
    assert_eq!(first.status, 200, "keys endpoint still up: {first:?}");

    stack.issuer.keys_mode("fail");
    let again = stack.request("/mcp", Some(&token));
    let fresh = stack.issuer.token(AI_USER.0, AI_USER.1);
    let fresh_reply = stack.request("/mcp", Some(&fresh));

    assert_eq!(
        again.status, 200,
        "same token, keys endpoint down: {again:?}"
    );
    assert_eq!(
        fresh_reply.status, 200,
        "new token, same key: {fresh_reply:?}"
    );
}

#[test]
fn with_the_keys_endpoint_down_from_the_start_requests_get_a_prompt_503() {
    let Some(stack) = Stack::start(Options {
        keys_mode: "fail",
        ..Options::default()
    }) else {
        return;
    };
    let token = stack.issuer.token(AI_USER.0, AI_USER.1);

    let started = Instant::now();
    let reply = stack.request("/mcp", Some(&token));

    assert!(started.elapsed() < CLIENT_TIMEOUT, "the request hung");
    assert_eq!(reply.status, 503, "{reply:?}");
    let body = reply.json().to_string().to_lowercase();
    assert!(
        body.contains("key") || body.contains("jwks"),
        "the 503 should say the keys are unavailable: {body}"
    );
    assert!(stack.upstream.seen().is_empty());
    assert!(
        stack.issuer.keys_requests() >= 1,
        "the filter never asked the issuer for keys"
    );
}

/// A keys endpoint that accepts the connection and never answers must cost the client the
/// filter's fetch timeout, not a hung request.
#[test]
fn with_the_keys_endpoint_stalled_requests_get_a_503_within_the_fetch_timeout() {
    let Some(stack) = Stack::start(Options {
        keys_mode: "stall",
        ..Options::default()
    }) else {
        return;
    };
    let token = stack.issuer.token(AI_USER.0, AI_USER.1);

    let started = Instant::now();
    let reply = stack.request("/mcp", Some(&token));

    assert!(started.elapsed() < CLIENT_TIMEOUT, "the request hung");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(stack.upstream.seen().is_empty());
}

/// A 200 that is not a key set (a captive portal, a misrouted proxy) is a failed fetch too.
#[test]
fn with_the_keys_endpoint_returning_garbage_requests_get_a_503() {
    let Some(stack) = Stack::start(Options {
        keys_mode: "garbage",
        ..Options::default()
    }) else {
        return;
    };
    let token = stack.issuer.token(AI_USER.0, AI_USER.1);

    let reply = stack.request("/mcp", Some(&token));

    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(stack.upstream.seen().is_empty());
}

#[test]
fn four_workers_share_one_keys_fetch() {
    const REQUESTS: usize = 40;
    const THREADS: usize = 8;
    let Some(stack) = Stack::start(Options {
        concurrency: 4,
        ..Options::default()
    }) else {
        return;
    };
    let token = stack.issuer.token(AI_USER.0, AI_USER.1);

    // Concurrent fresh connections: the workers miss the cache at the same moment, which is
    // when a per-worker cache would fetch once per worker.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    (0..REQUESTS / THREADS)
                        .map(|_| stack.request("/mcp", Some(&token)).status)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("request thread"))
            .collect()
    });

    assert_eq!(statuses.len(), REQUESTS);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    // Otherwise the test proves nothing about sharing between workers.
    let busy_workers = stack
        .envoy
        .stats_matching(".downstream_cx_total")
        .into_iter()
        .filter(|(name, count)| name.contains(".worker_") && *count > 0)
        .count();
    assert!(busy_workers >= 2, "connections all landed on one worker");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        stack.issuer.keys_requests(),
        1,
        "one keys fetch for all {REQUESTS} requests across 4 workers"
    );
}
