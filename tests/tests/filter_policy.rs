//! Scenarios against the real release module in the wasmtime host: given this policy and this
//! token, the client sees this response (issue: the filter core). Keys are inline here; remote
//! keys have their own file.

use mcp_auth_filter_tests::tokens::{
    Key, OKTA_AUDIENCE, OKTA_ISSUER, TokenBuilder, alg_none_token, hs256_with_public_key, jwks,
    okta_claims, tamper_signature,
};
use mcp_auth_filter_tests::{Host, Outcome, Request, START_TIME_UNIX, Vm};
use serde_json::json;

/// The Okta guide's policy, with the keys inline instead of `jwks.url`.
fn guide_policy(keys: &[&Key], mode: &str) -> String {
    format!(
        r#"
policies:
  mcpAuthentication:
    mode: {mode}
    issuer: {OKTA_ISSUER}
    audiences: [{OKTA_AUDIENCE}]
    jwks: '{}'
  authorization:
    rules:
    - if: '"AI-Users" in auth.claims.groups'
"#,
        jwks(keys)
    )
}

fn guide_vm(mode: &str) -> (Host, Vm, Key) {
    let key = Key::rsa();
    let host = Host::new();
    let vm = host
        .vm(&guide_policy(&[&key], mode))
        .expect("the guide's policy loads");
    (host, vm, key)
}

fn ai_user(key: &Key) -> String {
    TokenBuilder::new(key)
        .groups(&["Everyone", "AI-Users"])
        .sign()
}

fn mcp(token: &str) -> Request {
    Request::post("/mcp")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .bearer(token)
}

/// The client got a 401 whose challenge and body carry `error` and a description with `needle`.
#[track_caller]
fn assert_401(outcome: &Outcome, error: &str, needle: &str) {
    let Outcome::Local(r) = outcome else {
        panic!("expected a 401, got {outcome:?}")
    };
    assert_eq!(r.status, 401, "{outcome:?}");
    let www = r
        .header("www-authenticate")
        .expect("a WWW-Authenticate header");
    assert!(
        www.starts_with(
            "Bearer resource_metadata=\"http://localhost:3000/.well-known/oauth-protected-resource/mcp\""
        ),
        "{www}"
    );
    assert!(www.contains(&format!("error=\"{error}\"")), "{www}");
    let body = r.json();
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["error_description"].as_str().unwrap().contains(needle),
        "{body} should mention {needle:?}"
    );
}

#[test]
fn valid_token_in_ai_users_passes_and_the_token_is_stripped() {
    let (host, vm, key) = guide_vm("strict");
    let out = vm.request(mcp(&ai_user(&key)));
    assert!(out.is_forwarded(), "{out:?}");
    assert_eq!(out.upstream_header("authorization"), None);
    assert_eq!(out.status(), 200);
    assert_eq!(host.metric("mcp_auth.allowed"), Some(1));
    // The VM's memory is published for operators (and `make bench`).
    assert!(host.metric("mcp_auth.memory_bytes").unwrap() >= 64 * 1024);
}

#[test]
fn forward_token_keeps_the_authorization_header() {
    let key = Key::rsa();
    let host = Host::new();
    let vm = host
        .vm(&guide_policy(&[&key], "strict")
            .replace("    jwks:", "    forwardToken: true\n    jwks:"))
        .unwrap();
    let token = ai_user(&key);
    let out = vm.request(mcp(&token));
    assert_eq!(
        out.upstream_header("authorization"),
        Some(format!("Bearer {token}"))
    );
}

#[test]
fn the_same_token_without_the_group_is_403() {
    let (host, vm, key) = guide_vm("strict");
    let token = TokenBuilder::new(&key).groups(&["Everyone"]).sign();
    let out = vm.request(mcp(&token));
    let Outcome::Local(r) = &out else {
        panic!("{out:?}")
    };
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "forbidden");
    assert_eq!(host.metric("mcp_auth.denied.authz"), Some(1));
    // A token with no groups claim at all: the rule errors, is counted, and does not allow.
    let out = vm.request(mcp(&TokenBuilder::new(&key).sign()));
    assert_eq!(out.status(), 403);
    assert_eq!(host.metric("mcp_auth.rule_errors"), Some(1));
}

#[test]
fn missing_token_is_401_with_resource_metadata() {
    let (host, vm, _) = guide_vm("strict");
    let out = vm.request(Request::post("/mcp").json(&json!({})));
    let Outcome::Local(r) = &out else {
        panic!("{out:?}")
    };
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").unwrap(),
        "Bearer resource_metadata=\"http://localhost:3000/.well-known/oauth-protected-resource/mcp\""
    );
    assert_eq!(r.details.as_deref(), Some("mcp_auth_unauthorized"));
    assert_eq!(host.metric("mcp_auth.denied.missing_token"), Some(1));
    // The metadata URL follows the request's scheme, host and path.
    let out = vm.request(
        Request::get("/servers/a/mcp?x=1")
            .scheme("https")
            .authority("gw.example.com"),
    );
    assert!(
        out.response()
            .unwrap()
            .header("www-authenticate")
            .unwrap()
            .contains(
                "https://gw.example.com/.well-known/oauth-protected-resource/servers/a/mcp\""
            ),
        "{out:?}"
    );
}

#[test]
fn time_claims_are_checked_against_the_host_clock_with_skew() {
    let (host, vm, key) = guide_vm("strict");
    let now = START_TIME_UNIX;
    let expired = TokenBuilder::new(&key)
        .groups(&["AI-Users"])
        .iat(now - 7200)
        .exp(now - 61)
        .sign();
    assert_401(&vm.request(mcp(&expired)), "invalid_token", "expired");
    // Inside the 60 s skew it still passes.
    let just = TokenBuilder::new(&key)
        .groups(&["AI-Users"])
        .exp(now - 30)
        .sign();
    assert!(vm.request(mcp(&just)).is_forwarded());
    let early = TokenBuilder::new(&key)
        .groups(&["AI-Users"])
        .nbf(now + 120)
        .sign();
    assert_401(&vm.request(mcp(&early)), "invalid_token", "not valid yet");
    let future = TokenBuilder::new(&key)
        .groups(&["AI-Users"])
        .iat(now + 600)
        .sign();
    assert_401(
        &vm.request(mcp(&future)),
        "invalid_token",
        "issued in the future",
    );
    let no_exp = TokenBuilder::new(&key)
        .groups(&["AI-Users"])
        .without("exp")
        .sign();
    assert_401(&vm.request(mcp(&no_exp)), "invalid_token", "no exp");
    // The same valid token expires when the host clock moves past exp + skew.
    let token = ai_user(&key);
    assert!(vm.request(mcp(&token)).is_forwarded());
    host.advance(std::time::Duration::from_secs(3600 + 61));
    assert_401(&vm.request(mcp(&token)), "invalid_token", "expired");
    assert_eq!(
        host.metric("mcp_auth.denied.invalid_token.expired"),
        Some(2)
    );
}

#[test]
fn issuer_and_audience_must_match() {
    let (_, vm, key) = guide_vm("strict");
    let other = TokenBuilder::new(&key)
        .groups(&["AI-Users"])
        .iss("https://evil.okta.com/oauth2/default")
        .sign();
    assert_401(&vm.request(mcp(&other)), "invalid_token", "not trusted");
    let slash = TokenBuilder::new(&key)
        .groups(&["AI-Users"])
        .iss(&format!("{OKTA_ISSUER}/"))
        .sign();
    assert_401(&vm.request(mcp(&slash)), "invalid_token", "not trusted");
    let aud = TokenBuilder::new(&key)
        .groups(&["AI-Users"])
        .aud("api://other")
        .sign();
    assert_401(&vm.request(mcp(&aud)), "invalid_token", "audience");
    let auds = TokenBuilder::new(&key)
        .groups(&["AI-Users"])
        .auds(&["api://other", OKTA_AUDIENCE])
        .sign();
    assert!(vm.request(mcp(&auds)).is_forwarded(), "aud arrays: any of");
}

#[test]
fn unknown_kid_and_forged_tokens_are_refused() {
    let (_, vm, key) = guide_vm("strict");
    let unknown = TokenBuilder::new(&key)
        .groups(&["AI-Users"])
        .kid("somebody-else")
        .sign();
    assert_401(
        &vm.request(mcp(&unknown)),
        "invalid_token",
        "no signing key",
    );

    let claims = TokenBuilder::new(&key).groups(&["AI-Users"]).claims_json();
    for casing in ["none", "None", "NONE", "nOnE"] {
        assert_401(
            &vm.request(mcp(&alg_none_token(&claims, casing))),
            "invalid_token",
            "not allowed",
        );
    }
    for public in [key.public_pem().into_bytes(), key.public_der()] {
        let forged = hs256_with_public_key(&claims, &public);
        assert_401(&vm.request(mcp(&forged)), "invalid_token", "symmetric");
    }
    assert_401(
        &vm.request(mcp(&tamper_signature(&ai_user(&key)))),
        "invalid_token",
        "signature is invalid",
    );
    // Signed by another RSA key under our kid.
    let impostor = Key::rsa_n(1).with_kid(&key.kid);
    assert_401(
        &vm.request(mcp(&ai_user(&impostor))),
        "invalid_token",
        "signature is invalid",
    );
}

#[test]
fn malformed_tokens_are_401_not_a_crash() {
    let (_, vm, key) = guide_vm("strict");
    let good = ai_user(&key);
    let truncated = &good[..good.len() / 2];
    for bad in [
        truncated,
        "not-a-jwt",
        "a.b.c",
        "!!!.@@@.###",
        "eyJhbGciOiJSUzI1NiJ9..",
        "..",
    ] {
        let out = vm.request(mcp(bad));
        assert_eq!(out.status(), 401, "{bad}: {out:?}");
        assert!(
            out.response().unwrap().json()["error"] == "invalid_token",
            "{out:?}"
        );
    }
    let huge = format!("{}{}", good, "A".repeat(9000));
    assert_401(&vm.request(mcp(&huge)), "invalid_token", "larger than");
    // Header bytes that are not UTF-8.
    let out =
        vm.request(Request::post("/mcp").header_bytes("authorization", b"Bearer \xff\xfe\x80abc"));
    assert_401(&out, "invalid_request", "not valid UTF-8");
    // The VM is still healthy.
    assert!(vm.request(mcp(&good)).is_forwarded());
}

#[test]
fn request_shapes_that_are_not_one_bearer_header_have_their_own_reason() {
    let (_, vm, key) = guide_vm("strict");
    let token = ai_user(&key);
    let two = Request::post("/mcp")
        .bearer(&token)
        .header("authorization", &format!("Bearer {token}"));
    assert_401(&vm.request(two), "invalid_request", "more than one");
    let query = Request::post(&format!("/mcp?access_token={token}"));
    assert_401(&vm.request(query), "invalid_request", "query string");
    let empty = Request::post("/mcp").header("authorization", "Bearer  ");
    assert_401(&vm.request(empty), "invalid_request", "empty");
    let scheme = Request::post("/mcp").header("authorization", &format!("bEARER {token}"));
    assert!(vm.request(scheme).is_forwarded());
}

#[test]
fn other_algorithms_and_key_types_verify() {
    let rsa = Key::rsa();
    let keys = [
        rsa.clone().with_kid("rs384").with_alg("RS384"),
        rsa.clone().with_kid("rs512").with_alg("RS512"),
        rsa.clone().with_kid("ps256").with_alg("PS256"),
        rsa.clone().with_kid("ps384").with_alg("PS384"),
        rsa.clone().with_kid("ps512").with_alg("PS512"),
        Key::p256(),
        Key::p384(),
        Key::ed25519(),
    ];
    let refs: Vec<&Key> = keys.iter().collect();
    let host = Host::new();
    let vm = host.vm(&guide_policy(&refs, "strict")).unwrap();
    for key in &keys {
        let out = vm.request(mcp(&ai_user(key)));
        assert!(out.is_forwarded(), "{}: {out:?}", key.alg);
    }
    // An ES256 header pointed at an RSA key, and a key whose own alg differs from the token's.
    let es_on_rsa = TokenBuilder::new(&keys[0])
        .groups(&["AI-Users"])
        .header("alg", json!("ES256"))
        .sign();
    assert_401(
        &vm.request(mcp(&es_on_rsa)),
        "invalid_token",
        "does not fit",
    );
    let rs256_on_ps256_key = TokenBuilder::new(&rsa)
        .groups(&["AI-Users"])
        .kid("ps256")
        .sign();
    assert_401(
        &vm.request(mcp(&rs256_on_ps256_key)),
        "invalid_token",
        "does not fit",
    );
}

#[test]
fn a_lone_key_without_kid_matches_a_token_without_kid() {
    let key = Key::rsa();
    let mut jwk = key.jwk();
    jwk.as_object_mut().unwrap().remove("kid");
    let policy = format!(
        "mcpAuthentication:\n  issuer: {OKTA_ISSUER}\n  audiences: []\n  jwks:\n    keys: [{jwk}]\n"
    );
    let host = Host::new();
    let vm = host.vm(&policy).unwrap();
    let token = TokenBuilder::new(&key).no_kid().sign();
    assert!(vm.request(mcp(&token)).is_forwarded());
    // With a kid in the token there is nothing to match it.
    assert_eq!(vm.request(mcp(&ai_user(&key))).status(), 401);
}

#[test]
fn optional_mode_lets_anonymous_requests_reach_the_rules() {
    let key = Key::rsa();
    let host = Host::new();
    let policy = format!(
        "mcpAuthentication:\n  mode: optional\n  issuer: {OKTA_ISSUER}\n  audiences: [{OKTA_AUDIENCE}]\n  jwks: '{}'\n",
        jwks(&[&key])
    );
    let vm = host.vm(&policy).unwrap();
    assert!(vm.request(Request::post("/mcp")).is_forwarded());
    let expired = TokenBuilder::new(&key).exp(START_TIME_UNIX - 3600).sign();
    assert_401(&vm.request(mcp(&expired)), "invalid_token", "expired");
    assert!(vm.request(mcp(&ai_user(&key))).is_forwarded());
    // With the guide's group rule, an anonymous caller is challenged, not refused.
    let (_, vm, _) = guide_vm("optional");
    let out = vm.request(Request::post("/mcp"));
    assert_eq!(out.status(), 401, "{out:?}");
    assert!(
        out.response()
            .unwrap()
            .header("www-authenticate")
            .unwrap()
            .contains("resource_metadata")
    );
}

#[test]
fn permissive_mode_never_rejects_for_authentication() {
    let key = Key::rsa();
    let host = Host::new();
    let policy = format!(
        "mcpAuthentication:\n  mode: permissive\n  issuer: {OKTA_ISSUER}\n  audiences: [{OKTA_AUDIENCE}]\n  jwks: '{}'\nauthorization:\n  rules:\n  - deny: 'jwt.sub == \"mallory\"'\n",
        jwks(&[&key])
    );
    let vm = host.vm(&policy).unwrap();
    assert!(vm.request(Request::post("/mcp")).is_forwarded());
    let forged = tamper_signature(&TokenBuilder::new(&key).sub("mallory").sign());
    let out = vm.request(mcp(&forged));
    assert!(
        out.is_forwarded(),
        "an invalid token sets no claims: {out:?}"
    );
    assert_eq!(
        out.upstream_header("authorization"),
        None,
        "never passed through"
    );
    let mallory = TokenBuilder::new(&key).sub("mallory").sign();
    assert_eq!(
        vm.request(mcp(&mallory)).status(),
        403,
        "valid claims feed the rules"
    );
}

#[test]
fn every_rule_form_combines_as_documented() {
    let key = Key::rsa();
    let host = Host::new();
    let policy = format!(
        r#"{{"mcpAuthentication": {{"issuer": "{OKTA_ISSUER}", "audiences": ["{OKTA_AUDIENCE}"], "jwks": {}}},
           "authorization": {{"rules": [
              "'AI-Users' in jwt.groups",
              {{"allow": "jwt.sub == 'ops@example.com'"}},
              {{"deny": "request.headers['x-blocked'] == 'yes'"}},
              {{"require": "request.method == 'POST' || request.method == 'GET'"}}
           ]}}}}"#,
        jwks(&[&key])
    );
    let vm = host.vm(&policy).expect("JSON, as Istio passes it");
    let ai = ai_user(&key);
    let ops = TokenBuilder::new(&key).sub("ops@example.com").sign();
    let nobody = TokenBuilder::new(&key).sign();
    assert!(vm.request(mcp(&ai)).is_forwarded(), "plain-string allow");
    assert!(vm.request(mcp(&ops)).is_forwarded(), "allow: form");
    assert_eq!(vm.request(mcp(&nobody)).status(), 403, "no allow matched");
    assert_eq!(
        vm.request(mcp(&ai).header("x-blocked", "yes")).status(),
        403,
        "deny beats allow"
    );
    assert_eq!(
        vm.request(Request::new("DELETE", "/mcp").bearer(&ai))
            .status(),
        403,
        "require must hold"
    );
}

#[test]
fn the_metadata_endpoint_is_served_without_a_token() {
    let (host, vm, _) = guide_vm("strict");
    let out = vm.request(
        Request::get("/.well-known/oauth-protected-resource/mcp")
            .scheme("https")
            .authority("gw.example.com"),
    );
    let Outcome::Local(r) = &out else {
        panic!("{out:?}")
    };
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let doc = r.json();
    assert_eq!(doc["resource"], "https://gw.example.com/mcp");
    assert_eq!(doc["authorization_servers"], json!([OKTA_ISSUER]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(host.metric("mcp_auth.metadata_served"), Some(1));

    let key = Key::rsa();
    let policy = format!(
        "mcpAuthentication:\n  issuer: {OKTA_ISSUER}\n  audiences: []\n  jwks: '{}'\n  resourceMetadata:\n    scopesSupported: [mcp.read]\n    resourceDocumentation: https://docs.example.com\n",
        jwks(&[&key])
    );
    let vm = host.vm(&policy).unwrap();
    let doc = vm
        .request(Request::get("/.well-known/oauth-protected-resource"))
        .response()
        .unwrap()
        .json();
    assert_eq!(doc["resource"], "http://localhost:3000");
    assert_eq!(doc["scopes_supported"], json!(["mcp.read"]));
    assert_eq!(doc["resource_documentation"], "https://docs.example.com");
    // A POST to the well-known path is an ordinary request and needs a token.
    assert_eq!(
        vm.request(Request::post("/.well-known/oauth-protected-resource"))
            .status(),
        401
    );
}

#[test]
fn bad_configurations_are_rejected_naming_the_field() {
    let key = Key::rsa();
    let host = Host::new();
    let cases = [
        (
            "policies:\n  mcpAuthentication:\n    audiences: []\n    jwks: {url: https://x/k}\n".to_string(),
            "policies.mcpAuthentication.issuer: is required",
        ),
        (
            format!("mcpAuthentication:\n  issuer: i\n  audiences: []\n  jwks: '{}'\n  colour: red\n", jwks(&[&key])),
            "mcpAuthentication.colour",
        ),
        (
            "authorization:\n  rules:\n  - if: '\"AI-Users\" in in'\n".to_string(),
            "authorization.rules[0].if: \"\\\"AI-Users\\\" in in\" does not compile",
        ),
        (
            "mcpAuthentication:\n  issuer: i\n  audiences: []\n  jwks: '{\"keys\": [{\"kty\": \"RSA\"'\n".to_string(),
            "mcpAuthentication.jwks: not a JSON Web Key Set",
        ),
        (
            "mcpAuthentication:\n  issuer: i\n  audiences: []\n  jwks: {keys: [{kty: oct, k: c2VjcmV0}]}\n".to_string(),
            "mcpAuthentication.jwks: no usable key",
        ),
        ("{not yaml: [".to_string(), "configuration rejected"),
    ];
    for (config, expected) in cases {
        let err = host
            .vm(&config)
            .err()
            .unwrap_or_else(|| panic!("accepted: {config}"));
        assert!(
            err.logged(expected),
            "{config}\nexpected a log line with {expected:?}, got {:?}",
            err.logs
        );
    }
}

#[test]
fn time_comes_from_the_host_not_the_guest() {
    // The host's clock is 2026-01-01; a token valid only around then passes, proving the
    // module does not read the machine's clock.
    let (host, vm, key) = guide_vm("strict");
    let claims = okta_claims(host.now_unix());
    let token = TokenBuilder::new(&key)
        .claims(claims)
        .groups(&["AI-Users"])
        .exp(START_TIME_UNIX + 120)
        .sign();
    assert!(vm.request(mcp(&token)).is_forwarded());
}

#[test]
fn verified_tokens_are_cached_until_exp_and_only_as_themselves() {
    let (host, vm, key) = guide_vm("strict");
    let token = ai_user(&key);
    assert!(vm.request(mcp(&token)).is_forwarded());
    assert!(vm.request(mcp(&token)).is_forwarded());
    assert_eq!(host.metric("mcp_auth.token_cache.miss"), Some(1));
    assert_eq!(host.metric("mcp_auth.token_cache.hit"), Some(1));
    // A token that differs in one byte is another token: verified, and refused.
    assert_eq!(vm.request(mcp(&tamper_signature(&token))).status(), 401);
    // Rules still run on a cached identity.
    let outsider = TokenBuilder::new(&key).groups(&["Other"]).sign();
    assert_eq!(vm.request(mcp(&outsider)).status(), 403);
    assert_eq!(vm.request(mcp(&outsider)).status(), 403);
    // The cache never outlives the token.
    host.advance(std::time::Duration::from_secs(3600 + 61));
    assert_eq!(vm.request(mcp(&token)).status(), 401);
}

#[test]
fn only_verdicts_on_the_claims_alone_are_kept_with_a_cached_token() {
    let key = Key::rsa();
    let with_rules = |rules: &str| {
        guide_policy(&[&key], "strict")
            .replace("    - if: '\"AI-Users\" in auth.claims.groups'\n", rules)
    };
    let token = ai_user(&key);
    // A rule reading the request is evaluated on every request, cached token or not.
    let host = Host::new();
    let vm = host
        .vm(&with_rules(
            "    - if: 'request.headers[\"x-team\"] == \"a\"'\n",
        ))
        .unwrap();
    assert!(vm.request(mcp(&token).header("x-team", "a")).is_forwarded());
    assert_eq!(vm.request(mcp(&token).header("x-team", "b")).status(), 403);
    assert!(vm.request(mcp(&token).header("x-team", "a")).is_forwarded());
    // A rule that errs is logged and counted every time, never remembered.
    let host = Host::new();
    let vm = host
        .vm(&with_rules("    - if: 'auth.claims.nosuch == \"x\"'\n"))
        .unwrap();
    assert_eq!(vm.request(mcp(&token)).status(), 403);
    assert_eq!(vm.request(mcp(&token)).status(), 403);
    assert_eq!(host.metric("mcp_auth.rule_errors"), Some(2));
    // A verdict on the claims alone holds for the token on every request: allowed again,
    // and a denied token stays denied from the cache.
    let host = Host::new();
    let vm = host.vm(&guide_policy(&[&key], "strict")).unwrap();
    let outsider = TokenBuilder::new(&key).groups(&["Other"]).sign();
    for _ in 0..3 {
        assert!(vm.request(mcp(&token)).is_forwarded());
        assert_eq!(vm.request(mcp(&outsider)).status(), 403);
    }
    assert_eq!(host.metric("mcp_auth.token_cache.hit"), Some(4));
}

#[test]
fn a_cached_token_expires_at_the_same_instant_as_a_verified_one() {
    let (host, vm, key) = guide_vm("strict");
    let claims = okta_claims(host.now_unix());
    let token = TokenBuilder::new(&key)
        .claims(claims)
        .groups(&["AI-Users"])
        .exp(START_TIME_UNIX + 120)
        .sign();
    assert!(vm.request(mcp(&token)).is_forwarded());
    // exp + the 60 s default skew, to the second: still good, from the cache.
    host.advance(std::time::Duration::from_secs(180));
    assert!(vm.request(mcp(&token)).is_forwarded());
    assert_eq!(host.metric("mcp_auth.token_cache.hit"), Some(1));
    // Half a second later the token is expired, cached or not.
    host.advance(std::time::Duration::from_millis(500));
    assert_401(&vm.request(mcp(&token)), "invalid_token", "expired");
}

#[test]
fn a_cache_size_of_zero_turns_caching_off() {
    let key = Key::rsa();
    let host = Host::new();
    let vm = host
        .vm(&guide_policy(&[&key], "strict")
            .replace("    jwks:", "    tokenCacheSize: 0\n    jwks:"))
        .unwrap();
    let token = ai_user(&key);
    assert!(vm.request(mcp(&token)).is_forwarded());
    assert!(vm.request(mcp(&token)).is_forwarded());
    assert_eq!(host.metric("mcp_auth.token_cache.hit"), None);
    assert_eq!(host.metric("mcp_auth.token_cache.miss"), Some(2));
}
