//! The local issuer seen from outside, as the filter and the end-to-end tests see it: a real
//! `host-shim issuer` process on a free port, driven over HTTP. These scenarios pin down the
//! contract the rest of the project relies on: tokens from `/v1/token` verify against
//! `/v1/keys`, client authentication fails the OAuth way, and the test controls do what they say.

use std::time::Duration;

use serde_json::{Value, json};
use ureq::Agent;

mod common;
use common::oauth::{Answer, Issuer};
use common::{exit_within, signal};
use jwt_compact::UntrustedToken;

#[test]
fn a_client_credentials_token_verifies_against_the_jwks() {
    let issuer = Issuer::start(&[]);
    let body = issuer
        .client_credentials("ai-user", "ai-user-secret", "agentgateway")
        .ok_json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "agentgateway");

    let claims = issuer.verify(body["access_token"].as_str().unwrap());
    assert_eq!(claims["iss"], issuer.process.url.as_str());
    assert_eq!(claims["aud"], "api://agentgateway");
    assert_eq!(claims["ver"], 1);
    assert_eq!(claims["cid"], "ai-user");
    assert_eq!(claims["sub"], "ai-user");
    assert_eq!(claims["scp"], json!(["agentgateway"]));
    assert_eq!(claims["groups"], json!(["AI-Users", "Everyone"]));
    assert!(claims["jti"].as_str().unwrap().starts_with("AT."));
}

#[test]
fn discovery_and_keys_look_like_oktas() {
    let issuer = Issuer::start(&["--keys-max-age", "42"]);
    for doc in ["openid-configuration", "oauth-authorization-server"] {
        let doc = issuer.get(&issuer.url(&format!("/.well-known/{doc}")));
        assert_eq!(doc.status, 200);
        let doc = doc.json();
        assert_eq!(doc["issuer"], issuer.process.url.as_str());
        assert_eq!(doc["jwks_uri"], issuer.url("/v1/keys"));
        assert_eq!(doc["token_endpoint"], issuer.url("/v1/token"));
        assert!(
            doc["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&"client_credentials".into())
        );
    }
    let keys = issuer.get(&issuer.url("/v1/keys"));
    keys.assert_status(200);
    assert_eq!(keys.header("cache-control"), Some("max-age=42"));
    let jwks = keys.json();
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    assert_eq!(jwks["keys"][0]["use"], "sig");
}

#[test]
fn basic_auth_works_as_at_okta() {
    let issuer = Issuer::start(&[]);
    let response = issuer
        .agent
        .post(issuer.url("/v1/token"))
        // base64("plain-user:plain-user-secret")
        .header(
            "authorization",
            "Basic cGxhaW4tdXNlcjpwbGFpbi11c2VyLXNlY3JldA==",
        )
        .send_form([
            ("grant_type", "client_credentials"),
            ("scope", "agentgateway"),
        ])
        .unwrap();
    let body = Answer::read(response).ok_json();
    let claims = issuer.verify(body["access_token"].as_str().unwrap());
    assert_eq!(claims["groups"], json!(["Everyone"]));
}

#[test]
fn a_bad_secret_is_invalid_client_401() {
    let issuer = Issuer::start(&[]);
    let refused = issuer.client_credentials("ai-user", "wrong", "agentgateway");
    refused.assert_error(401, "invalid_client");
}

#[test]
fn an_ungranted_scope_is_invalid_scope_400() {
    let issuer = Issuer::start(&[]);
    let refused = issuer.client_credentials("ai-user", "ai-user-secret", "agentgateway admin");
    refused.assert_error(400, "invalid_scope");
}

#[test]
fn another_grant_type_is_unsupported() {
    let issuer = Issuer::start(&[]);
    let refused = issuer.token(&[
        ("grant_type", "password"),
        ("client_id", "ai-user"),
        ("client_secret", "ai-user-secret"),
    ]);
    refused.assert_error(400, "unsupported_grant_type");
}

#[test]
fn configured_clients_replace_the_defaults() {
    let issuer = Issuer::start(&["--client", "bot:s3cret:Ops:agentgateway,extra"]);
    let body = issuer
        .client_credentials("bot", "s3cret", "agentgateway extra")
        .ok_json();
    assert_eq!(body["scope"], "agentgateway extra");
    let claims = issuer.verify(body["access_token"].as_str().unwrap());
    assert_eq!(claims["groups"], json!(["Ops"]));
    let defaults = issuer.client_credentials("ai-user", "ai-user-secret", "agentgateway");
    assert_eq!(defaults.status, 401);
}

#[test]
fn rotation_changes_the_kid_and_keeps_or_drops_the_old_key() {
    let issuer = Issuer::start(&[]);
    let access_token = || {
        issuer
            .client_credentials("ai-user", "ai-user-secret", "agentgateway")
            .json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let old_token = access_token();
    let old_kid = issuer.stats()["kid"].as_str().unwrap().to_owned();

    issuer.control("rotate", "").assert_status(200);
    let new_kid = issuer.stats()["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);

    let new_token = access_token();
    let header = UntrustedToken::new(&new_token).unwrap();
    assert_eq!(header.header().key_id.as_deref(), Some(new_kid.as_str()));
    // The old key is still published by default, so tokens minted before still verify.
    issuer.verify(&old_token);
    issuer.verify(&new_token);

    assert_eq!(issuer.control("rotate?keep_old=false", "").status, 200);
    let jwks = issuer.jwks();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_ne!(jwks["keys"][0]["kid"], new_kid.as_str());
}

#[test]
fn keys_modes_fail_garbage_stall_and_recover() {
    let issuer = Issuer::start(&[]);
    let keys = issuer.url("/v1/keys");
    let mode = |m: &str| {
        issuer.control("keys-mode", m).assert_status(200);
    };

    mode("fail");
    assert_eq!(issuer.get(&keys).status, 500);

    mode("garbage");
    let garbage = issuer.get(&keys);
    assert_eq!(garbage.status, 200);
    assert!(serde_json::from_str::<Value>(&garbage.body).is_err());

    mode("stall");
    let impatient: Agent = Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(500)))
        .build()
        .into();
    assert!(
        impatient.get(&keys).call().is_err(),
        "a stalled keys request must not answer"
    );

    mode("ok");
    assert_eq!(issuer.get(&keys).status, 200);
    // Every request counts, whatever the mode answered.
    assert_eq!(issuer.stats()["keys_requests"], 4);

    assert_eq!(issuer.control("keys-mode", "slow").status, 400);
}

#[test]
fn sigterm_stops_the_issuer_even_with_a_stalled_request() {
    let mut issuer = Issuer::start(&[]);
    assert_eq!(issuer.control("keys-mode", "stall").status, 200);
    let keys = issuer.url("/v1/keys");
    let stalled = std::thread::spawn(move || {
        let agent: Agent = Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let _ = agent.get(&keys).call();
    });
    std::thread::sleep(Duration::from_millis(300));
    signal(issuer.process.child.id(), "TERM");
    let status = exit_within(
        &mut issuer.process.child,
        Duration::from_secs(10),
        "issuer ignored SIGTERM",
    );
    assert!(status.success(), "issuer exited with {status}");
    stalled.join().unwrap();
}
