//! The local issuer seen from outside, as the filter and the end-to-end tests see it: a real
//! `host-shim issuer` process on a free port, driven over HTTP. These scenarios pin down the
//! contract the rest of the project relies on: tokens from `/v1/token` verify against
//! `/v1/keys`, client authentication fails the OAuth way, and the test controls do what they say.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use ureq::Agent;

mod common;
use common::verify;
use jwt_compact::UntrustedToken;

/// A running issuer; killed when dropped so a failing test leaves no process behind.
struct Issuer {
    process: common::IssuerProcess,
    agent: Agent,
}

impl Issuer {
    fn start(extra: &[&str]) -> Self {
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Self {
            process: common::IssuerProcess::start(extra),
            agent,
        }
    }

    fn get(&self, url: &str) -> (u16, String, Option<String>) {
        let mut response = self.agent.get(url).call().unwrap();
        let cache = response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned());
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap(), cache)
    }

    fn post(&self, url: &str, body: &str) -> (u16, String) {
        let mut response = self.agent.post(url).send(body).unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    /// The Okta guide's `curl -d grant_type=… -d client_id=… -d client_secret=… -d scope=…`.
    fn token(&self, client_id: &str, secret: &str, scope: &str) -> (u16, Value) {
        let mut response = self
            .agent
            .post(format!("{}/v1/token", self.process.url))
            .send_form([
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope),
            ])
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().unwrap())
    }

    fn jwks(&self) -> Value {
        let (status, body, _) = self.get(&format!("{}/v1/keys", self.process.url));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn stats(&self) -> Value {
        let (_, body, _) = self.get(&format!("{}/control/stats", self.process.base));
        serde_json::from_str(&body).unwrap()
    }
}

#[test]
fn a_client_credentials_token_verifies_against_the_jwks() {
    let issuer = Issuer::start(&[]);
    let (status, body) = issuer.token("ai-user", "ai-user-secret", "agentgateway");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "agentgateway");

    let claims = verify(body["access_token"].as_str().unwrap(), &issuer.jwks());
    assert_eq!(claims["iss"], issuer.process.url.as_str());
    assert_eq!(claims["aud"], "api://agentgateway");
    assert_eq!(claims["ver"], 1);
    assert_eq!(claims["cid"], "ai-user");
    assert_eq!(claims["sub"], "ai-user");
    assert_eq!(claims["scp"], serde_json::json!(["agentgateway"]));
    assert_eq!(
        claims["groups"],
        serde_json::json!(["AI-Users", "Everyone"])
    );
    assert!(claims["jti"].as_str().unwrap().starts_with("AT."));
}

#[test]
fn discovery_and_keys_look_like_oktas() {
    let issuer = Issuer::start(&["--keys-max-age", "42"]);
    for doc in ["openid-configuration", "oauth-authorization-server"] {
        let (status, body, _) = issuer.get(&format!("{}/.well-known/{doc}", issuer.process.url));
        assert_eq!(status, 200);
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["issuer"], issuer.process.url.as_str());
        assert_eq!(doc["jwks_uri"], format!("{}/v1/keys", issuer.process.url));
        assert_eq!(
            doc["token_endpoint"],
            format!("{}/v1/token", issuer.process.url)
        );
        assert!(
            doc["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&"client_credentials".into())
        );
    }
    let (status, body, cache) = issuer.get(&format!("{}/v1/keys", issuer.process.url));
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache.as_deref(), Some("max-age=42"));
    let jwks: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    assert_eq!(jwks["keys"][0]["use"], "sig");
}

#[test]
fn basic_auth_works_as_at_okta() {
    let issuer = Issuer::start(&[]);
    let mut response = issuer
        .agent
        .post(format!("{}/v1/token", issuer.process.url))
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
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.body_mut().read_json().unwrap();
    let claims = verify(body["access_token"].as_str().unwrap(), &issuer.jwks());
    assert_eq!(claims["groups"], serde_json::json!(["Everyone"]));
}

#[test]
fn a_bad_secret_is_invalid_client_401() {
    let issuer = Issuer::start(&[]);
    let (status, body) = issuer.token("ai-user", "wrong", "agentgateway");
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
}

#[test]
fn an_ungranted_scope_is_invalid_scope_400() {
    let issuer = Issuer::start(&[]);
    let (status, body) = issuer.token("ai-user", "ai-user-secret", "agentgateway admin");
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_scope");
}

#[test]
fn another_grant_type_is_unsupported() {
    let issuer = Issuer::start(&[]);
    let mut response = issuer
        .agent
        .post(format!("{}/v1/token", issuer.process.url))
        .send_form([
            ("grant_type", "password"),
            ("client_id", "ai-user"),
            ("client_secret", "ai-user-secret"),
        ])
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.body_mut().read_json().unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[test]
fn configured_clients_replace_the_defaults() {
    let issuer = Issuer::start(&["--client", "bot:s3cret:Ops:agentgateway,extra"]);
    let (status, body) = issuer.token("bot", "s3cret", "agentgateway extra");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "agentgateway extra");
    let claims = verify(body["access_token"].as_str().unwrap(), &issuer.jwks());
    assert_eq!(claims["groups"], serde_json::json!(["Ops"]));
    let (status, _) = issuer.token("ai-user", "ai-user-secret", "agentgateway");
    assert_eq!(status, 401);
}

#[test]
fn rotation_changes_the_kid_and_keeps_or_drops_the_old_key() {
    let issuer = Issuer::start(&[]);
    let (_, before) = issuer.token("ai-user", "ai-user-secret", "agentgateway");
    let old_token = before["access_token"].as_str().unwrap().to_owned();
    let old_kid = issuer.stats()["kid"].as_str().unwrap().to_owned();

    let (status, body) = issuer.post(&format!("{}/control/rotate", issuer.process.base), "");
    assert_eq!(status, 200, "{body}");
    let new_kid = issuer.stats()["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);

    let (_, after) = issuer.token("ai-user", "ai-user-secret", "agentgateway");
    let new_token = after["access_token"].as_str().unwrap();
    let header = UntrustedToken::new(new_token).unwrap();
    assert_eq!(header.header().key_id.as_deref(), Some(new_kid.as_str()));
    // The old key is still published by default, so tokens minted before still verify.
    verify(&old_token, &issuer.jwks());
    verify(new_token, &issuer.jwks());

    let (status, _) = issuer.post(
        &format!("{}/control/rotate?keep_old=false", issuer.process.base),
        "",
    );
    assert_eq!(status, 200);
    let jwks = issuer.jwks();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_ne!(jwks["keys"][0]["kid"], new_kid.as_str());
}

#[test]
fn keys_modes_fail_garbage_stall_and_recover() {
    let issuer = Issuer::start(&[]);
    let keys = format!("{}/v1/keys", issuer.process.url);
    let mode = |m: &str| {
        let (status, body) = issuer.post(&format!("{}/control/keys-mode", issuer.process.base), m);
        assert_eq!(status, 200, "{body}");
    };

    mode("fail");
    assert_eq!(issuer.get(&keys).0, 500);

    mode("garbage");
    let (status, body, _) = issuer.get(&keys);
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err());

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
    assert_eq!(issuer.get(&keys).0, 200);
    // Every request counts, whatever the mode answered.
    assert_eq!(issuer.stats()["keys_requests"], 4);

    let (status, _) = issuer.post(
        &format!("{}/control/keys-mode", issuer.process.base),
        "slow",
    );
    assert_eq!(status, 400);
}

#[test]
fn sigterm_stops_the_issuer_even_with_a_stalled_request() {
    let mut issuer = Issuer::start(&[]);
    let (status, _) = issuer.post(
        &format!("{}/control/keys-mode", issuer.process.base),
        "stall",
    );
    assert_eq!(status, 200);
    let keys = format!("{}/v1/keys", issuer.process.url);
    let stalled = std::thread::spawn(move || {
        let agent: Agent = Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let _ = agent.get(&keys).call();
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid = issuer.process.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = issuer.process.child.try_wait().unwrap() {
            assert!(status.success(), "issuer exited with {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "issuer ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stalled.join().unwrap();
}
