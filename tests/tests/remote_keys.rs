//! The remote key state machine, in the real module, driven deterministically by the host's
//! virtual clock: pause and resume, one fetch for many requests and many VMs, timeouts, the
//! unknown-`kid` refetch and its rate limit, last good keys, background refresh.

use std::time::Duration;

use mcp_auth_filter_tests::tokens::{Key, OKTA_AUDIENCE, OKTA_ISSUER, TokenBuilder, jwks};
use mcp_auth_filter_tests::{Host, HttpCall, Outcome, Request, Vm};
use serde_json::json;

const KEYS_URL: &str = "https://your-org.okta.com/oauth2/default/v1/keys";

/// The Okta guide's policy as written (remote `jwks.url`), with test-friendly refresh bounds.
fn guide(extra_jwks: &str) -> String {
    format!(
        r#"
policies:
  mcpAuthentication:
    mode: strict
    issuer: {OKTA_ISSUER}
    audiences: [{OKTA_AUDIENCE}]
    jwks:
      url: {KEYS_URL}
{extra_jwks}
  authorization:
    rules:
    - if: '"AI-Users" in auth.claims.groups'
"#
    )
}

fn token(host: &Host, key: &Key) -> String {
    TokenBuilder::at(key, host.now_unix())
        .groups(&["AI-Users"])
        .sign()
}

fn mcp(token: &str) -> Request {
    Request::post("/mcp").bearer(token)
}

fn keys_body(keys: &[&Key]) -> Vec<u8> {
    jwks(keys).to_string().into_bytes()
}

fn answer(host: &Host, call: &HttpCall, keys: &[&Key], max_age: u64) {
    host.respond_call(
        call,
        200,
        vec![("cache-control".into(), format!("public, max-age={max_age}"))],
        &keys_body(keys),
    );
}

/// The one keys fetch under way. A fetch a request asked for is dispatched by the root's next
/// tick (100 ms), so the call belongs to the root and outlives the request: when none is
/// pending yet, that tick is let happen first.
fn only_call(host: &Host) -> HttpCall {
    if host.pending_calls().is_empty() {
        host.advance(Duration::from_millis(100));
    }
    let calls = host.pending_calls();
    assert_eq!(calls.len(), 1, "exactly one keys fetch pending: {calls:?}");
    calls.into_iter().next().unwrap()
}

/// A VM that has loaded `keys` (its first tick fetched them).
fn loaded_vm(host: &Host, config: &str, keys: &[&Key]) -> Vm {
    let vm = host.vm(config).unwrap();
    host.advance(Duration::from_millis(100));
    answer(host, &only_call(host), keys, 300);
    vm
}

#[test]
fn the_fetch_goes_through_the_cluster_named_after_the_host() {
    let host = Host::new();
    let _vm = host.vm(&guide("")).unwrap();
    host.advance(Duration::from_millis(100));
    let call = only_call(&host);
    assert_eq!(call.upstream, "your-org.okta.com");
    assert_eq!(
        call.header(":authority").as_deref(),
        Some("your-org.okta.com")
    );
    assert_eq!(call.path(), "/oauth2/default/v1/keys");
    assert_eq!(call.header(":method").as_deref(), Some("GET"));
    assert_eq!(call.timeout, Some(Duration::from_secs(5)));

    let host = Host::new();
    let _vm = host
        .vm(&guide(
            "      cluster: outbound|443||your-org.okta.com\n      timeout: 2s",
        ))
        .unwrap();
    host.advance(Duration::from_millis(100));
    let call = only_call(&host);
    assert_eq!(call.upstream, "outbound|443||your-org.okta.com");
    assert_eq!(call.timeout, Some(Duration::from_secs(2)));
}

#[test]
fn requests_before_keys_pause_share_one_fetch_and_resume() {
    let host = Host::new();
    let key = Key::rsa();
    let vm = host.vm(&guide("")).unwrap();
    let t = token(&host, &key);
    let first = vm.start(mcp(&t));
    let second = vm.start(mcp(&t));
    let third =
        vm.start(Request::post("/mcp").bearer(&TokenBuilder::at(&key, host.now_unix()).sign()));
    assert!(matches!(vm.outcome(first), Outcome::Paused));
    assert!(matches!(vm.outcome(second), Outcome::Paused));
    let call = only_call(&host);
    answer(&host, &call, &[&key], 300);
    let out = vm.outcome(first);
    assert!(out.is_forwarded(), "{out:?}");
    assert_eq!(out.upstream_header("authorization"), None);
    assert!(vm.outcome(second).is_forwarded());
    assert_eq!(
        vm.outcome(third).status(),
        403,
        "resumed requests still meet the rules"
    );
    // The first tick finds the keys loaded and fetches nothing more.
    host.advance(Duration::from_secs(1));
    assert_eq!(host.dispatched_calls().len(), 1);
    assert_eq!(host.metric("mcp_auth.jwks.fetch_ok"), Some(1));
    assert_eq!(host.metric("mcp_auth.jwks.cache_miss"), Some(3));
    assert!(vm.request(mcp(&t)).is_forwarded());
    assert_eq!(host.metric("mcp_auth.jwks.cache_hit"), Some(1));
}

#[test]
fn a_body_waits_with_its_headers() {
    // Envoy resumes a stream whose headers paused as soon as the body callback continues:
    // the body must be held too, or the request would go upstream before its token is checked.
    let host = Host::new();
    let key = Key::rsa();
    let vm = host.vm(&guide("")).unwrap();
    let forged = TokenBuilder::at(&Key::rsa_n(1).with_kid(&key.kid), host.now_unix())
        .groups(&["AI-Users"])
        .sign();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"});
    let forged = vm.start(Request::post("/mcp").json(&body).bearer(&forged));
    let good = vm.start(
        Request::post("/mcp")
            .json(&body)
            .bearer(&token(&host, &key)),
    );
    assert!(
        matches!(vm.outcome(forged), Outcome::Paused),
        "{:?}",
        vm.outcome(forged)
    );
    assert!(matches!(vm.outcome(good), Outcome::Paused));
    answer(&host, &only_call(&host), &[&key], 300);
    assert_eq!(vm.outcome(forged).status(), 401);
    let Outcome::Forwarded { request_body, .. } = vm.outcome(good) else {
        panic!("{:?}", vm.outcome(good))
    };
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&request_body).unwrap(),
        body
    );
}

#[test]
fn the_first_tick_prefetches_so_the_first_request_does_not_wait() {
    let host = Host::new();
    let key = Key::rsa();
    let vm = loaded_vm(&host, &guide(""), &[&key]);
    assert!(vm.request(mcp(&token(&host, &key))).is_forwarded());
}

#[test]
fn a_failed_or_timed_out_first_fetch_gives_503_not_a_hang() {
    let host = Host::new();
    let key = Key::rsa();
    let vm = host.vm(&guide("")).unwrap();
    let waiting = vm.start(mcp(&token(&host, &key)));
    host.fail_call(only_call(&host));
    let out = vm.outcome(waiting);
    let Outcome::Local(r) = &out else {
        panic!("{out:?}")
    };
    assert_eq!(r.status, 503);
    let body = r.json();
    assert_eq!(body["error"], "temporarily_unavailable");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(OKTA_ISSUER), "{description}");
    assert!(description.contains("no response"), "{description}");
    // While the backoff runs, new requests get the same 503 at once, without a new fetch.
    assert_eq!(vm.request(mcp(&token(&host, &key))).status(), 503);
    assert_eq!(host.dispatched_calls().len(), 1);

    // A stalled issuer: Envoy's call timeout ends the wait with a 503.
    let host = Host::new();
    let vm = host.vm(&guide("      timeout: 3s")).unwrap();
    let waiting = vm.start(mcp(&token(&host, &key)));
    host.advance(Duration::from_secs(2));
    assert!(matches!(vm.outcome(waiting), Outcome::Paused));
    host.advance(Duration::from_millis(1200));
    assert_eq!(vm.outcome(waiting).status(), 503);

    // An HTTP error status and a body that is not a key set are failures too.
    for (status, body) in [(500, b"oops".as_slice()), (200, b"<html>".as_slice())] {
        let host = Host::new();
        let vm = host.vm(&guide("")).unwrap();
        let waiting = vm.start(mcp(&token(&host, &key)));
        host.respond_call(only_call(&host), status, vec![], body);
        assert_eq!(vm.outcome(waiting).status(), 503, "{status}");
    }
}

#[test]
fn keys_are_retried_with_backoff_after_a_failure() {
    let host = Host::new();
    let key = Key::rsa();
    let vm = host.vm(&guide("")).unwrap();
    host.advance(Duration::from_millis(100));
    host.respond_call(only_call(&host), 500, vec![], b"");
    host.advance(Duration::from_millis(500));
    assert!(host.pending_calls().is_empty(), "backing off");
    host.advance(Duration::from_millis(600));
    answer(&host, &only_call(&host), &[&key], 300);
    assert!(vm.request(mcp(&token(&host, &key))).is_forwarded());
}

#[test]
fn unknown_kid_refetches_once_and_verifies_against_the_new_keys() {
    let host = Host::new();
    let old = Key::rsa_n(0);
    let new = Key::rsa_n(1);
    let vm = loaded_vm(&host, &guide(""), &[&old]);
    // The issuer rotates: a token signed by the new key arrives.
    let rotated = token(&host, &new);
    let waiting = vm.start(mcp(&rotated));
    assert!(matches!(vm.outcome(waiting), Outcome::Paused));
    answer(&host, &only_call(&host), &[&old, &new], 300);
    assert!(vm.outcome(waiting).is_forwarded());
    assert_eq!(host.metric("mcp_auth.jwks.refetch_unknown_kid"), Some(1));

    // A kid nobody knows: the next refetch is rate-limited (one per minRefresh, 60 s).
    let stranger = Key::rsa_n(2);
    let out = vm.request(mcp(&token(&host, &stranger)));
    assert_eq!(out.status(), 401, "{out:?}");
    assert!(
        out.response().unwrap().json()["error_description"]
            .as_str()
            .unwrap()
            .contains("no signing key")
    );
    assert_eq!(host.dispatched_calls().len(), 2, "no thundering herd");
    host.advance(Duration::from_secs(60));
    let waiting = vm.start(mcp(&token(&host, &stranger)));
    answer(&host, &only_call(&host), &[&new], 300);
    assert_eq!(
        vm.outcome(waiting).status(),
        401,
        "still unknown after the refetch"
    );
}

#[test]
fn failed_refreshes_keep_the_last_good_keys() {
    let host = Host::new();
    let key = Key::rsa();
    let vm = loaded_vm(&host, &guide(""), &[&key]);
    // max-age 300: the background refresh starts at 300 s and fails; the keys stay.
    host.advance(Duration::from_secs(300));
    host.fail_call(only_call(&host));
    assert!(vm.request(mcp(&token(&host, &key))).is_forwarded());
    host.advance(Duration::from_secs(2));
    host.respond_call(only_call(&host), 200, vec![], b"{\"keys\": []}");
    host.advance(Duration::from_secs(3));
    host.respond_call(only_call(&host), 200, vec![], b"not json");
    assert!(vm.request(mcp(&token(&host, &key))).is_forwarded());
    assert_eq!(host.metric("mcp_auth.jwks.fetch_failed"), Some(3));
    assert!(host.logged("the last good keys stay in use"));
}

#[test]
fn refresh_follows_max_age_clamped_to_the_bounds_in_the_background() {
    let host = Host::new();
    let key = Key::rsa();
    let config = guide("      minRefresh: 2m\n      maxRefresh: 10m");
    let vm = host.vm(&config).unwrap();
    host.advance(Duration::from_millis(100));
    answer(&host, &only_call(&host), &[&key], 30); // clamped up to 2 min
    host.advance(Duration::from_secs(119));
    assert!(host.pending_calls().is_empty());
    host.advance(Duration::from_secs(2));
    let refresh = only_call(&host);
    // While the refresh is under way, requests are served from the current keys at once.
    assert!(vm.request(mcp(&token(&host, &key))).is_forwarded());
    answer(&host, &refresh, &[&key], 86_400); // clamped down to 10 min
    host.advance(Duration::from_secs(599));
    assert!(host.pending_calls().is_empty());
    host.advance(Duration::from_secs(2));
    assert_eq!(host.pending_calls().len(), 1);
}

#[test]
fn worker_vms_share_one_fetch_through_shared_data() {
    let host = Host::new();
    let key = Key::rsa();
    let vms: Vec<Vm> = (0..4).map(|_| host.vm(&guide("")).unwrap()).collect();
    // Every VM's first tick wants keys; one takes the lease and fetches.
    host.advance(Duration::from_millis(100));
    let call = only_call(&host);
    // A request on another VM waits for that fetch instead of starting its own.
    let other = vms.iter().find(|vm| vm.index() != call.vm).unwrap();
    let waiting = other.start(mcp(&token(&host, &key)));
    assert_eq!(host.dispatched_calls().len(), 1);
    answer(&host, &call, &[&key], 300);
    host.advance(Duration::from_millis(100));
    assert!(
        other.outcome(waiting).is_forwarded(),
        "handed over through shared data"
    );
    for vm in &vms {
        assert!(vm.request(mcp(&token(&host, &key))).is_forwarded());
    }
    // Refreshes too: one per max-age for the whole process.
    host.advance(Duration::from_secs(300));
    answer(&host, &only_call(&host), &[&key], 300);
    host.advance(Duration::from_secs(1));
    assert_eq!(host.dispatched_calls().len(), 2);
    // A rotation seen by one VM reaches the others without a fetch of their own.
    let new = Key::rsa_n(1);
    let waiting = vms[0].start(mcp(&token(&host, &new)));
    answer(&host, &only_call(&host), &[&key, &new], 300);
    assert!(vms[0].outcome(waiting).is_forwarded());
    host.advance(Duration::from_secs(1));
    for vm in &vms[1..] {
        assert!(vm.request(mcp(&token(&host, &new))).is_forwarded());
    }
    assert_eq!(host.dispatched_calls().len(), 3);
}

#[test]
fn a_failure_in_one_vm_answers_the_requests_waiting_in_another() {
    let host = Host::new();
    let key = Key::rsa();
    let a = host.vm(&guide("")).unwrap();
    let b = host.vm(&guide("")).unwrap();
    let in_a = a.start(mcp(&token(&host, &key)));
    let in_b = b.start(mcp(&token(&host, &key)));
    host.fail_call(only_call(&host));
    assert_eq!(a.outcome(in_a).status(), 503);
    host.advance(Duration::from_millis(100));
    assert_eq!(b.outcome(in_b).status(), 503);
}

#[test]
fn unusable_keys_are_skipped_not_fatal() {
    let host = Host::new();
    let key = Key::rsa();
    let vm = host.vm(&guide("")).unwrap();
    host.advance(Duration::from_millis(100));
    let mut set = jwks(&[&key]);
    set["keys"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}));
    host.respond_call(only_call(&host), 200, vec![], set.to_string().as_bytes());
    assert!(vm.request(mcp(&token(&host, &key))).is_forwarded());
    assert!(host.logged("JWKS key skipped"));
}

#[test]
fn okta_provider_and_discovery_find_the_keys() {
    let key = Key::rsa();
    let host = Host::new();
    let okta = format!(
        "mcpAuthentication:\n  issuer: {OKTA_ISSUER}\n  audiences: [{OKTA_AUDIENCE}]\n  provider: {{okta: {{}}}}\n"
    );
    let vm = host.vm(&okta).unwrap();
    let waiting = vm.start(mcp(&TokenBuilder::at(&key, host.now_unix()).sign()));
    assert_eq!(only_call(&host).path(), "/oauth2/default/v1/keys");
    answer(&host, &only_call(&host), &[&key], 300);
    assert!(vm.outcome(waiting).is_forwarded());

    let host = Host::new();
    let any =
        format!("mcpAuthentication:\n  issuer: {OKTA_ISSUER}\n  audiences: [{OKTA_AUDIENCE}]\n");
    let vm = host.vm(&any).unwrap();
    let waiting = vm.start(mcp(&TokenBuilder::at(&key, host.now_unix()).sign()));
    let discovery = only_call(&host);
    assert_eq!(
        discovery.path(),
        "/oauth2/default/.well-known/openid-configuration"
    );
    host.respond_call_json(
        &discovery,
        200,
        &json!({"issuer": OKTA_ISSUER, "jwks_uri": format!("{OKTA_ISSUER}/v1/keys")}),
    );
    let keys = only_call(&host);
    assert_eq!(keys.path(), "/oauth2/default/v1/keys");
    assert_eq!(keys.upstream, "your-org.okta.com");
    answer(&host, &keys, &[&key], 300);
    assert!(vm.outcome(waiting).is_forwarded());
}

#[test]
fn a_new_key_set_drops_the_tokens_the_old_one_vouched_for() {
    let host = Host::new();
    let old = Key::rsa_n(0);
    let new = Key::rsa_n(1);
    let vm = loaded_vm(&host, &guide(""), &[&old]);
    let t = token(&host, &old);
    assert!(vm.request(mcp(&t)).is_forwarded());
    assert!(vm.request(mcp(&t)).is_forwarded());
    assert_eq!(host.metric("mcp_auth.token_cache.hit"), Some(1));
    // The issuer drops the old key; at the next refresh the cached token goes with it.
    host.advance(Duration::from_secs(300));
    answer(&host, &only_call(&host), &[&new], 300);
    // Its kid is now unknown: one refetch is tried (the issuer may have added it back)...
    let waiting = vm.start(mcp(&t));
    answer(&host, &only_call(&host), &[&new], 300);
    // ...and the token is refused, not served from the cache.
    let out = vm.outcome(waiting);
    assert_eq!(out.status(), 401, "{out:?}");
}
