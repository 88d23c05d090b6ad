//! A person logging in at the local issuer from their own MCP client, over HTTP exactly as the
//! client and the browser would: discover the metadata, register (or name a Client ID Metadata
//! Document), open the authorization URL, post the login form, follow the redirect's code to the
//! token endpoint with the PKCE verifier, refresh. Each refusal the flow must make is its own
//! scenario: what the client or the person sees when something is wrong.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use ureq::Agent;

mod common;
use url::Url;

/// What an MCP client listens on for the redirect: registered without a port, used with one.
const REGISTERED_REDIRECT: &str = "http://127.0.0.1/callback";
const REDIRECT: &str = "http://127.0.0.1:53682/callback";

/// A running issuer; killed when dropped so a failing test leaves no process behind.
struct Issuer {
    process: common::IssuerProcess,
    agent: Agent,
}

/// One HTTP answer, with what these tests look at.
struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    /// The query of the redirect, by name.
    fn redirect_params(&self) -> HashMap<String, String> {
        let location = self
            .location
            .as_deref()
            .unwrap_or_else(|| panic!("no redirect ({}): {}", self.status, self.body));
        Url::parse(location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect()
    }
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    Answer {
        status: response.status().as_u16(),
        location: response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: response.body_mut().read_to_string().unwrap(),
    }
}

/// A PKCE pair: the verifier the client keeps and the S256 challenge it sends.
fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The value of the hidden request field of a login page.
fn request_id(page: &str) -> String {
    let marker = "name=\"request_id\" value=\"";
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no form: {page}"))
        + marker.len();
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_owned()
}

impl Issuer {
    fn start(extra: &[&str]) -> Self {
        // A client follows the redirect itself: it must see the `Location`.
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Self {
            process: common::IssuerProcess::start(extra),
            agent,
        }
    }

    fn get(&self, url: &str) -> Answer {
        answer(self.agent.get(url).call().unwrap())
    }

    fn metadata(&self) -> Value {
        self.get(&format!(
            "{}/.well-known/oauth-authorization-server/oauth2/default",
            self.process.base
        ))
        .json()
    }

    fn register(&self, metadata: &Value) -> Answer {
        let endpoint = self.metadata()["registration_endpoint"]
            .as_str()
            .expect("registration_endpoint")
            .to_owned();
        answer(self.agent.post(&endpoint).send_json(metadata).unwrap())
    }

    /// Registers a public MCP client that may refresh; returns its id.
    fn register_public(&self) -> String {
        let registered = self.register(&json!({
            "client_name": "Test MCP client",
            "redirect_uris": [REGISTERED_REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }));
        assert_eq!(registered.status, 201, "{}", registered.body);
        registered.json()["client_id"].as_str().unwrap().to_owned()
    }

    /// `GET /v1/authorize` with these parameters.
    fn authorize(&self, params: &[(&str, &str)]) -> Answer {
        let mut url = Url::parse(&format!("{}/v1/authorize", self.process.url)).unwrap();
        url.query_pairs_mut().extend_pairs(params);
        self.get(url.as_str())
    }

    /// The authorization request of these tests: a code for `client_id` at `REDIRECT` with the
    /// S256 `challenge`, then `extra` parameters (`scope`, `state`, `nonce`, `resource`...).
    fn authorize_s256(&self, client_id: &str, challenge: &str, extra: &[(&str, &str)]) -> Answer {
        let standard = [
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ];
        self.authorize(&[&standard[..], extra].concat())
    }

    /// Posts the login form of `page` as the person would.
    fn sign_in(&self, page: &Answer, username: &str, password: &str) -> Answer {
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("<form method=\"post\""), "{}", page.body);
        let id = request_id(&page.body);
        answer(
            self.agent
                .post(format!("{}/v1/authorize", self.process.url))
                .send_form([
                    ("request_id", id.as_str()),
                    ("username", username),
                    ("password", password),
                ])
                .unwrap(),
        )
    }

    fn token(&self, form: &[(&str, &str)]) -> Answer {
        answer(
            self.agent
                .post(format!("{}/v1/token", self.process.url))
                .send_form(form.iter().copied())
                .unwrap(),
        )
    }

    /// The standard request of these tests for `client_id`, with `challenge`.
    fn login_as(
        &self,
        client_id: &str,
        challenge: &str,
        scope: &str,
        username: &str,
        password: &str,
    ) -> HashMap<String, String> {
        let page = self.authorize_s256(
            client_id,
            challenge,
            &[("scope", scope), ("state", "state-123")],
        );
        let redirect = self.sign_in(&page, username, password);
        assert_eq!(redirect.status, 303, "{}", redirect.body);
        assert!(redirect.location.as_deref().unwrap().starts_with(REDIRECT));
        redirect.redirect_params()
    }

    fn exchange(&self, client_id: &str, code: &str, verifier: &str) -> Answer {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
    }

    fn refresh(&self, client_id: &str, refresh_token: &str) -> Answer {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ])
    }

    /// Verifies `token` against the JWKS the way a resource server does.
    fn verify(&self, token: &str) -> Value {
        let jwks = self.get(&format!("{}/v1/keys", self.process.url)).json();
        common::verify(token, &jwks)
    }
}

#[test]
fn alice_logs_in_from_a_registered_mcp_client_and_refreshes() {
    let issuer = Issuer::start(&[]);
    let client_id = issuer.register_public();
    let (verifier, challenge) = pkce();

    let page = issuer.authorize_s256(
        &client_id,
        &challenge,
        &[
            ("scope", "agentgateway offline_access"),
            ("state", "state-123"),
            ("resource", "api://agentgateway"),
        ],
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Test MCP client"));
    assert!(page.body.contains("name=\"username\""));
    assert!(
        page.body
            .contains("type=\"password\" id=\"password\" name=\"password\"")
    );

    let redirect = issuer.sign_in(&page, "alice", "alice-password");
    assert_eq!(redirect.status, 303, "{}", redirect.body);
    let params = redirect.redirect_params();
    assert!(
        redirect
            .location
            .as_deref()
            .unwrap()
            .starts_with("http://127.0.0.1:53682/callback?"),
        "the loopback port the client used is kept"
    );
    assert_eq!(params["state"], "state-123");
    assert_eq!(params["iss"], issuer.process.url);

    let tokens = issuer.exchange(&client_id, &params["code"], &verifier);
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let tokens = tokens.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "agentgateway offline_access");
    assert!(tokens.get("id_token").is_none(), "no openid, no ID token");
    let claims = issuer.verify(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["iss"], issuer.process.url.as_str());
    assert_eq!(claims["aud"], "api://agentgateway");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["cid"], client_id.as_str());
    assert_eq!(claims["groups"], json!(["AI-Users", "Everyone"]));
    assert_eq!(claims["scp"], json!(["agentgateway", "offline_access"]));
    assert_eq!(claims["ver"], 1);
    let uid = claims["uid"].as_str().unwrap().to_owned();
    assert!(uid.starts_with("00u") && uid.len() == 20, "{uid}");
    assert!(claims["jti"].as_str().unwrap().starts_with("AT."));
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 3600);
    assert!(claims["auth_time"].as_i64().unwrap() <= iat);

    // Refresh: a new access token for the same person, and a new refresh token.
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = issuer.refresh(&client_id, &first_refresh);
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let refreshed = refreshed.json();
    let second_refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh);
    let claims = issuer.verify(refreshed["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["uid"], uid.as_str(), "uid is stable");
    assert_eq!(claims["groups"], json!(["AI-Users", "Everyone"]));

    // Rotation: the spent token is refused; presenting it again also ends its successor.
    let replay = issuer.refresh(&client_id, &first_refresh);
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert_eq!(replay.json()["error"], "invalid_grant");
    let successor = issuer.refresh(&client_id, &second_refresh);
    assert_eq!(successor.status, 400, "{}", successor.body);
    assert_eq!(successor.json()["error"], "invalid_grant");
}

#[test]
fn bob_logs_in_but_his_token_lacks_ai_users() {
    let issuer = Issuer::start(&[]);
    let client_id = issuer.register_public();
    let (verifier, challenge) = pkce();
    let params = issuer.login_as(
        &client_id,
        &challenge,
        "agentgateway",
        "bob",
        "bob-password",
    );
    let tokens = issuer.exchange(&client_id, &params["code"], &verifier);
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let tokens = tokens.json();
    assert!(
        tokens.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );
    let claims = issuer.verify(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["groups"], json!(["Everyone"]));
}

#[test]
fn a_wrong_password_shows_the_form_again_and_cancel_is_access_denied() {
    let issuer = Issuer::start(&[]);
    let client_id = issuer.register_public();
    let (_, challenge) = pkce();
    let page = issuer.authorize_s256(&client_id, &challenge, &[("state", "s")]);
    let again = issuer.sign_in(&page, "alice", "bob-password");
    assert_eq!(again.status, 401);
    assert!(again.location.is_none());
    assert!(again.body.contains("wrong username or password"));
    assert_eq!(request_id(&again.body), request_id(&page.body));

    let cancelled = answer(
        issuer
            .agent
            .post(format!("{}/v1/authorize", issuer.process.url))
            .send_form([
                ("request_id", request_id(&page.body).as_str()),
                ("action", "cancel"),
            ])
            .unwrap(),
    );
    assert_eq!(cancelled.status, 303);
    let params = cancelled.redirect_params();
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "s");
    // The request is answered: its form is dead now.
    let late = issuer.sign_in(&page, "alice", "alice-password");
    assert_eq!(late.status, 400);
    assert!(late.location.is_none());
}

#[test]
fn a_wrong_or_missing_verifier_is_invalid_grant_and_spends_the_code() {
    let issuer = Issuer::start(&[]);
    let client_id = issuer.register_public();
    let (verifier, challenge) = pkce();
    let params = issuer.login_as(
        &client_id,
        &challenge,
        "agentgateway",
        "alice",
        "alice-password",
    );
    let (other_verifier, _) = pkce();
    let refused = issuer.exchange(&client_id, &params["code"], &other_verifier);
    assert_eq!(refused.status, 400);
    let refused = refused.json();
    assert_eq!(refused["error"], "invalid_grant");
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .contains("PKCE")
    );
    // One try per code: guessing verifiers gets nowhere.
    let right = issuer.exchange(&client_id, &params["code"], &verifier);
    assert_eq!(right.json()["error"], "invalid_grant");

    let params = issuer.login_as(
        &client_id,
        &challenge,
        "agentgateway",
        "alice",
        "alice-password",
    );
    let missing = issuer.token(&[
        ("grant_type", "authorization_code"),
        ("client_id", &client_id),
        ("code", &params["code"]),
        ("redirect_uri", REDIRECT),
    ]);
    assert_eq!(missing.status, 400);
    let missing = missing.json();
    assert_eq!(missing["error"], "invalid_grant");
    assert!(
        missing["error_description"]
            .as_str()
            .unwrap()
            .contains("code_verifier")
    );
}

#[test]
fn a_reused_code_is_refused_and_revokes_what_it_issued() {
    let issuer = Issuer::start(&[]);
    let client_id = issuer.register_public();
    let (verifier, challenge) = pkce();
    let params = issuer.login_as(
        &client_id,
        &challenge,
        "agentgateway offline_access",
        "alice",
        "alice-password",
    );
    let first = issuer.exchange(&client_id, &params["code"], &verifier);
    assert_eq!(first.status, 200, "{}", first.body);
    let refresh_token = first.json()["refresh_token"].as_str().unwrap().to_owned();

    let second = issuer.exchange(&client_id, &params["code"], &verifier);
    assert_eq!(second.status, 400);
    assert_eq!(second.json()["error"], "invalid_grant");
    let revoked = issuer.refresh(&client_id, &refresh_token);
    assert_eq!(revoked.status, 400);
    assert_eq!(revoked.json()["error"], "invalid_grant");
}

#[test]
fn a_wrong_redirect_uri_is_never_redirected_to() {
    let issuer = Issuer::start(&[]);
    let client_id = issuer.register_public();
    let (verifier, challenge) = pkce();
    for wrong in [
        "http://127.0.0.1:53682/elsewhere",
        "http://localhost:53682/callback",
        "https://evil.example/callback",
    ] {
        let page = issuer.authorize(&[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", wrong),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        assert_eq!(page.status, 400, "{wrong}");
        assert!(page.location.is_none(), "{wrong}");
        assert!(page.body.contains("redirect_uri"), "{}", page.body);
    }

    // At the token endpoint the redirect URI must repeat the authorization request's.
    let params = issuer.login_as(
        &client_id,
        &challenge,
        "agentgateway",
        "alice",
        "alice-password",
    );
    let refused = issuer.token(&[
        ("grant_type", "authorization_code"),
        ("client_id", &client_id),
        ("code", &params["code"]),
        ("redirect_uri", "http://127.0.0.1:1/callback"),
        ("code_verifier", &verifier),
    ]);
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "invalid_grant");
}

#[test]
fn an_unknown_client_gets_an_error_page_and_invalid_client() {
    let issuer = Issuer::start(&[]);
    let (verifier, challenge) = pkce();
    let page = issuer.authorize_s256("0oaNOSUCHCLIENT00000", &challenge, &[]);
    assert_eq!(page.status, 400);
    assert!(page.location.is_none());
    assert!(
        page.body.contains("No client is registered"),
        "{}",
        page.body
    );
    // A machine client has no redirect URIs: it cannot send people to the login page.
    let machine = issuer.authorize_s256("ai-user", &challenge, &[]);
    assert_eq!(machine.status, 400);

    let refused = issuer.exchange("0oaNOSUCHCLIENT00000", "some-code", &verifier);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"], "invalid_client");
}

#[test]
fn a_code_past_its_lifetime_is_refused() {
    let issuer = Issuer::start(&["--code-ttl", "1"]);
    let client_id = issuer.register_public();
    let (verifier, challenge) = pkce();
    let params = issuer.login_as(
        &client_id,
        &challenge,
        "agentgateway",
        "alice",
        "alice-password",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let refused = issuer.exchange(&client_id, &params["code"], &verifier);
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "invalid_grant");
    assert!(
        refused.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[test]
fn plain_pkce_and_a_missing_challenge_are_refused_the_oauth_way() {
    let issuer = Issuer::start(&[]);
    let client_id = issuer.register_public();
    let (verifier, challenge) = pkce();
    let cases: [&[(&str, &str)]; 3] = [
        &[
            ("code_challenge", &verifier),
            ("code_challenge_method", "plain"),
        ],
        // No method means plain (RFC 7636 §4.3).
        &[("code_challenge", &challenge)],
        &[],
    ];
    for pkce_params in cases {
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("state", "st"),
        ];
        params.extend_from_slice(pkce_params);
        let refused = issuer.authorize(&params);
        assert_eq!(refused.status, 302, "{pkce_params:?}: {}", refused.body);
        let redirect = refused.redirect_params();
        assert_eq!(redirect["error"], "invalid_request", "{pkce_params:?}");
        assert_eq!(redirect["state"], "st");
        assert_eq!(redirect["iss"], issuer.process.url);
        assert!(!redirect.contains_key("code"));
    }
}

#[test]
fn a_resource_picks_the_audience_among_the_issuers_own() {
    let mcp = "http://127.0.0.1:3000/mcp";
    let issuer = Issuer::start(&["--audience", "api://agentgateway", "--audience", mcp]);
    let client_id = issuer.register_public();
    let (verifier, challenge) = pkce();
    let base = [
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];

    let mut unknown = base.to_vec();
    unknown.push(("resource", "https://elsewhere.example/mcp"));
    let refused = issuer.authorize(&unknown);
    assert_eq!(refused.redirect_params()["error"], "invalid_target");

    let mut known = base.to_vec();
    known.push(("resource", mcp));
    let page = issuer.authorize(&known);
    let redirect = issuer.sign_in(&page, "alice", "alice-password");
    let code = redirect.redirect_params()["code"].clone();
    let tokens = issuer.token(&[
        ("grant_type", "authorization_code"),
        ("client_id", &client_id),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
        ("resource", mcp),
    ]);
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let claims = issuer.verify(tokens.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], mcp);

    // Client credentials keep the first audience.
    let machine = issuer.token(&[
        ("grant_type", "client_credentials"),
        ("client_id", "ai-user"),
        ("client_secret", "ai-user-secret"),
        ("scope", "agentgateway"),
    ]);
    let claims = issuer.verify(machine.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "api://agentgateway");
}

#[test]
fn an_unoffered_scope_is_invalid_scope_and_no_scope_gets_the_default() {
    let issuer = Issuer::start(&[]);
    let client_id = issuer.register_public();
    let (verifier, challenge) = pkce();
    let refused = issuer.authorize_s256(&client_id, &challenge, &[("scope", "agentgateway admin")]);
    assert_eq!(refused.redirect_params()["error"], "invalid_scope");

    let params = issuer.login_as(&client_id, &challenge, "", "alice", "alice-password");
    let tokens = issuer
        .exchange(&client_id, &params["code"], &verifier)
        .json();
    assert_eq!(tokens["scope"], "agentgateway");
}

#[test]
fn openid_adds_an_id_token_with_the_nonce() {
    let issuer = Issuer::start(&[]);
    let client_id = issuer.register_public();
    let (verifier, challenge) = pkce();
    let page = issuer.authorize_s256(
        &client_id,
        &challenge,
        &[
            ("scope", "openid profile agentgateway"),
            ("nonce", "n-0S6_WzA2Mj"),
        ],
    );
    let code = issuer
        .sign_in(&page, "alice", "alice-password")
        .redirect_params()["code"]
        .clone();
    let tokens = issuer.exchange(&client_id, &code, &verifier).json();
    let access = issuer.verify(tokens["access_token"].as_str().unwrap());
    let id = issuer.verify(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], client_id.as_str());
    assert_eq!(id["sub"], access["uid"]);
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["iss"], issuer.process.url.as_str());
}

#[test]
fn a_refresh_token_belongs_to_its_client() {
    let issuer = Issuer::start(&[]);
    let client_id = issuer.register_public();
    let other = issuer.register_public();
    let (verifier, challenge) = pkce();
    let params = issuer.login_as(
        &client_id,
        &challenge,
        "agentgateway offline_access",
        "alice",
        "alice-password",
    );
    let tokens = issuer
        .exchange(&client_id, &params["code"], &verifier)
        .json();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let stolen = issuer.refresh(&other, refresh_token);
    assert_eq!(stolen.status, 400);
    assert_eq!(stolen.json()["error"], "invalid_grant");
    // Refused for the other client, the token still works for its own.
    assert_eq!(issuer.refresh(&client_id, refresh_token).status, 200);
}

#[test]
fn a_client_registered_without_refresh_gets_no_refresh_token() {
    let issuer = Issuer::start(&[]);
    let registered = issuer.register(&json!({
        "redirect_uris": [REGISTERED_REDIRECT],
        "token_endpoint_auth_method": "none",
    }));
    assert_eq!(registered.status, 201, "{}", registered.body);
    let client_id = registered.json()["client_id"].as_str().unwrap().to_owned();
    let (verifier, challenge) = pkce();
    let params = issuer.login_as(
        &client_id,
        &challenge,
        "agentgateway offline_access",
        "alice",
        "alice-password",
    );
    let tokens = issuer
        .exchange(&client_id, &params["code"], &verifier)
        .json();
    assert!(tokens.get("refresh_token").is_none());
    assert_eq!(tokens["scope"], "agentgateway");
}

#[test]
fn a_confidential_registered_client_must_present_its_secret() {
    let issuer = Issuer::start(&[]);
    let registered = issuer.register(&json!({ "redirect_uris": [REGISTERED_REDIRECT] }));
    assert_eq!(registered.status, 201, "{}", registered.body);
    let registered = registered.json();
    let client_id = registered["client_id"].as_str().unwrap().to_owned();
    let secret = registered["client_secret"].as_str().unwrap().to_owned();
    let (verifier, challenge) = pkce();
    let params = issuer.login_as(
        &client_id,
        &challenge,
        "agentgateway",
        "alice",
        "alice-password",
    );
    let without = issuer.exchange(&client_id, &params["code"], &verifier);
    assert_eq!(without.status, 401);
    assert_eq!(without.json()["error"], "invalid_client");

    let params = issuer.login_as(
        &client_id,
        &challenge,
        "agentgateway",
        "alice",
        "alice-password",
    );
    let with = issuer.token(&[
        ("grant_type", "authorization_code"),
        ("client_id", &client_id),
        ("client_secret", &secret),
        ("code", &params["code"]),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ]);
    assert_eq!(with.status, 200, "{}", with.body);
}

#[test]
fn registration_refuses_bad_metadata_with_rfc_7591_errors() {
    let issuer = Issuer::start(&[]);
    let insecure = issuer.register(&json!({ "redirect_uris": ["http://evil.example/cb"] }));
    assert_eq!(insecure.status, 400);
    assert_eq!(insecure.json()["error"], "invalid_redirect_uri");
    let machine = issuer.register(&json!({
        "redirect_uris": [REGISTERED_REDIRECT],
        "grant_types": ["client_credentials"],
    }));
    assert_eq!(machine.status, 400);
    assert_eq!(machine.json()["error"], "invalid_client_metadata");
}

#[test]
fn registration_off_hides_the_endpoint() {
    let issuer = Issuer::start(&["--no-registration"]);
    let metadata = issuer.metadata();
    assert!(
        metadata.get("registration_endpoint").is_none(),
        "{metadata}"
    );
    let response = answer(
        issuer
            .agent
            .post(format!("{}/v1/register", issuer.process.url))
            .send_json(json!({ "redirect_uris": [REGISTERED_REDIRECT] }))
            .unwrap(),
    );
    assert_eq!(response.status, 404);
}

#[test]
fn without_response_iss_the_redirect_carries_code_and_state_only() {
    let issuer = Issuer::start(&["--no-response-iss"]);
    assert_eq!(
        issuer.metadata()["authorization_response_iss_parameter_supported"],
        false
    );
    let client_id = issuer.register_public();
    let (verifier, challenge) = pkce();
    let params = issuer.login_as(
        &client_id,
        &challenge,
        "agentgateway",
        "alice",
        "alice-password",
    );
    assert_eq!(params["state"], "state-123");
    assert!(!params.contains_key("iss"), "{params:?}");
    let tokens = issuer.exchange(&client_id, &params["code"], &verifier);
    assert_eq!(tokens.status, 200, "{}", tokens.body);
}

#[test]
fn the_metadata_is_the_same_truthful_document_everywhere_clients_look() {
    let issuer = Issuer::start(&[]);
    let locations = [
        format!(
            "{}/.well-known/oauth-authorization-server/oauth2/default",
            issuer.process.base
        ),
        format!(
            "{}/.well-known/openid-configuration/oauth2/default",
            issuer.process.base
        ),
        format!(
            "{}/.well-known/oauth-authorization-server",
            issuer.process.url
        ),
        format!("{}/.well-known/openid-configuration", issuer.process.url),
    ];
    let first = issuer.get(&locations[0]).json();
    for location in &locations {
        let answer = issuer.get(location);
        assert_eq!(answer.status, 200, "{location}");
        let doc = answer.json();
        assert_eq!(doc, first, "{location}");
        let url = &issuer.process.url;
        assert_eq!(doc["issuer"], url.as_str());
        assert_eq!(doc["authorization_endpoint"], format!("{url}/v1/authorize"));
        assert_eq!(doc["token_endpoint"], format!("{url}/v1/token"));
        assert_eq!(doc["jwks_uri"], format!("{url}/v1/keys"));
        assert_eq!(doc["registration_endpoint"], format!("{url}/v1/register"));
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(
            doc["grant_types_supported"],
            json!(["authorization_code", "refresh_token", "client_credentials"])
        );
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "none"])
        );
        assert_eq!(
            doc["scopes_supported"],
            json!(["openid", "profile", "offline_access", "agentgateway"])
        );
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(doc["client_id_metadata_document_supported"], true);
    }
}

#[test]
fn people_and_public_clients_come_from_flags_and_the_clients_file() {
    let dir = std::env::temp_dir().join(format!("issuer-login-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("clients.yaml");
    std::fs::write(
        &file,
        "clients:\n\
         - id: laptop\n  redirect_uris: [\"http://127.0.0.1/callback\"]\n\
         - id: bot\n  secret: bot-secret\n\
         users:\n\
         - name: dave\n  password: dave-pw\n  groups: [AI-Users, Ops]\n",
    )
    .unwrap();
    let issuer = Issuer::start(&[
        "--user",
        "carol:carol-pw:Ops",
        "--clients-file",
        file.to_str().unwrap(),
    ]);
    let (verifier, challenge) = pkce();
    // Configured people replace alice and bob.
    let page = issuer.authorize_s256("laptop", &challenge, &[]);
    assert_eq!(issuer.sign_in(&page, "alice", "alice-password").status, 401);

    for (name, password, groups) in [
        ("carol", "carol-pw", json!(["Ops"])),
        ("dave", "dave-pw", json!(["AI-Users", "Ops"])),
    ] {
        let params = issuer.login_as("laptop", &challenge, "agentgateway", name, password);
        let tokens = issuer.exchange("laptop", &params["code"], &verifier);
        assert_eq!(tokens.status, 200, "{}", tokens.body);
        let claims = issuer.verify(tokens.json()["access_token"].as_str().unwrap());
        assert_eq!(claims["sub"], name);
        assert_eq!(claims["cid"], "laptop");
        assert_eq!(claims["groups"], groups);
    }
    // The public client holds no secret, so client credentials are not for it.
    let machine = issuer.token(&[
        ("grant_type", "client_credentials"),
        ("client_id", "laptop"),
        ("scope", "agentgateway"),
    ]);
    assert_eq!(machine.status, 401);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tiny loopback web server for client metadata documents: `routes` maps a path to a full
/// HTTP response. It serves until the test process ends.
fn serve_documents(routes: impl Fn(&str, u16) -> String + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0_u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let request = String::from_utf8_lossy(&request);
            let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
            let _ = stream.write_all(routes(&path, port).as_bytes());
        }
    });
    port
}

fn json_response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_client_id_metadata_document_identifies_the_client() {
    let port = serve_documents(|path, port| {
        let own = format!("http://127.0.0.1:{port}{path}");
        match path {
            "/client.json" => json_response(
                &json!({
                    "client_id": own,
                    "client_name": "Document Client",
                    "redirect_uris": [REGISTERED_REDIRECT],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "token_endpoint_auth_method": "none",
                })
                .to_string(),
            ),
            "/impostor.json" => json_response(
                &json!({
                    "client_id": "https://someone-else.example/client.json",
                    "redirect_uris": [REGISTERED_REDIRECT],
                })
                .to_string(),
            ),
            "/moved.json" => format!(
                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{port}/client.json\r\n\
                 content-length: 0\r\nconnection: close\r\n\r\n"
            ),
            "/huge.json" => json_response(
                &json!({
                    "client_id": own,
                    "redirect_uris": [REGISTERED_REDIRECT],
                    "padding": "x".repeat(70 * 1024),
                })
                .to_string(),
            ),
            _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .to_owned(),
        }
    });
    let issuer = Issuer::start(&["--no-registration"]);
    let (verifier, challenge) = pkce();
    let client_id = format!("http://127.0.0.1:{port}/client.json");

    let page = issuer.authorize_s256(
        &client_id,
        &challenge,
        &[("scope", "agentgateway offline_access"), ("state", "doc")],
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Document Client"));
    let params = issuer
        .sign_in(&page, "alice", "alice-password")
        .redirect_params();
    assert_eq!(params["state"], "doc");
    let tokens = issuer.exchange(&client_id, &params["code"], &verifier);
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let tokens = tokens.json();
    let claims = issuer.verify(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["cid"], client_id.as_str());
    assert_eq!(claims["groups"], json!(["AI-Users", "Everyone"]));
    let refreshed = issuer.refresh(&client_id, tokens["refresh_token"].as_str().unwrap());
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);

    for (path, reason) in [
        ("/impostor.json", "not its own URL"),
        ("/moved.json", "HTTP 302"),
        ("/huge.json", "larger than"),
        ("/missing.json", "HTTP 404"),
    ] {
        let page =
            issuer.authorize_s256(&format!("http://127.0.0.1:{port}{path}"), &challenge, &[]);
        assert_eq!(page.status, 400, "{path}: {}", page.body);
        assert!(page.location.is_none(), "{path}");
        assert!(page.body.contains(reason), "{path}: {}", page.body);
    }
    // Plain http is for loopback only: nothing is fetched for another host.
    let insecure = issuer.authorize_s256("http://clients.example/client.json", &challenge, &[]);
    assert_eq!(insecure.status, 400);
    assert!(
        insecure.body.contains("must use https"),
        "{}",
        insecure.body
    );
}

#[test]
fn browser_clients_may_call_the_endpoints_but_not_frame_the_login_page() {
    let issuer = Issuer::start(&[]);
    let preflight = issuer
        .agent
        .options(format!("{}/v1/token", issuer.process.url))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .call()
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = |response: &ureq::http::Response<ureq::Body>| {
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(allowed(&preflight).as_deref(), Some("*"));
    let metadata = issuer
        .agent
        .get(format!(
            "{}/.well-known/oauth-authorization-server/oauth2/default",
            issuer.process.base
        ))
        .header("origin", "http://localhost:6274")
        .call()
        .unwrap();
    assert_eq!(allowed(&metadata).as_deref(), Some("*"));

    let client_id = issuer.register_public();
    let (_, challenge) = pkce();
    let mut url = Url::parse(&format!("{}/v1/authorize", issuer.process.url)).unwrap();
    url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let page = issuer
        .agent
        .get(url.as_str())
        .header("origin", "http://localhost:6274")
        .call()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(allowed(&page), None);
    assert_eq!(page.headers().get("x-frame-options").unwrap(), "DENY");
    assert_eq!(page.headers().get("cache-control").unwrap(), "no-store");
}
