//! The local issuer driven over HTTP as an OAuth client and a person's browser drive it: a
//! started `host-shim issuer`, its answers (OAuth errors among them), PKCE, the authorization
//! and token requests with one field changed at a time, and the login form.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};
use ureq::Agent;
use ureq::http::HeaderMap;
use url::Url;

use super::IssuerProcess;

/// What an MCP client listens on for the redirect: registered without a port, used with one.
pub const REGISTERED_REDIRECT: &str = "http://127.0.0.1/callback";
pub const REDIRECT: &str = "http://127.0.0.1:53682/callback";

/// One HTTP answer: its status, headers and body.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn read(mut response: ureq::http::Response<ureq::Body>) -> Answer {
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.body_mut().read_to_string().unwrap(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    pub fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    pub fn assert_status(&self, status: u16) -> &Answer {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }

    /// The JSON of a 200 answer.
    pub fn ok_json(&self) -> Json {
        self.assert_status(200).json()
    }

    /// Asserts an OAuth error answer: `status`, and `error` in the JSON body. Returns its
    /// `error_description` (empty when there is none).
    pub fn assert_error(&self, status: u16, error: &str) -> String {
        let body = self.assert_status(status).json();
        assert_eq!(body["error"], error, "{body}");
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The query of the redirect, by name.
    pub fn redirect_params(&self) -> HashMap<String, String> {
        let location = self
            .location()
            .unwrap_or_else(|| panic!("no redirect ({}): {}", self.status, self.body));
        Url::parse(location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect()
    }
}

/// The name-value pairs of a query or a form, in order: a request that a test varies one field
/// at a time.
#[derive(Clone, Debug)]
pub struct Form<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Form<'a> {
    pub fn new(pairs: &[(&'a str, &'a str)]) -> Form<'a> {
        Form(pairs.to_vec())
    }

    /// `value` for `name`, in the place of the one there was, or added.
    pub fn set(mut self, name: &'a str, value: &'a str) -> Form<'a> {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(pair) => pair.1 = value,
            None => self.0.push((name, value)),
        }
        self
    }

    pub fn without(mut self, name: &str) -> Form<'a> {
        self.0.retain(|(n, _)| *n != name);
        self
    }

    pub fn with(mut self, pairs: &[(&'a str, &'a str)]) -> Form<'a> {
        self.0.extend_from_slice(pairs);
        self
    }
}

impl<'a> std::ops::Deref for Form<'a> {
    type Target = [(&'a str, &'a str)];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// An OAuth client of the issuer, by its id, with the PKCE pair of its requests: the verifier
/// it keeps and the S256 challenge it sends.
pub struct Client {
    pub id: String,
    pub verifier: String,
    pub challenge: String,
}

impl Client {
    /// `id` with a fresh PKCE pair.
    pub fn new(id: impl Into<String>) -> Client {
        let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Client {
            id: id.into(),
            verifier,
            challenge,
        }
    }

    /// An authorization request for a code at `REDIRECT`, without PKCE.
    pub fn code_request(&self) -> Form<'_> {
        Form::new(&[
            ("response_type", "code"),
            ("client_id", &self.id),
            ("redirect_uri", REDIRECT),
        ])
    }

    /// The authorization request of these tests: [`Client::code_request`] with the S256
    /// challenge.
    pub fn authorization(&self) -> Form<'_> {
        self.code_request().with(&[
            ("code_challenge", &self.challenge),
            ("code_challenge_method", "S256"),
        ])
    }

    /// The token request that exchanges `code` with the verifier.
    pub fn code_grant<'a>(&'a self, code: &'a str) -> Form<'a> {
        Form::new(&[
            ("grant_type", "authorization_code"),
            ("client_id", &self.id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &self.verifier),
        ])
    }
}

/// A running issuer and a client of it that follows no redirect (an OAuth client reads the
/// `Location` itself); killed when dropped so a failing test leaves no process behind.
pub struct Issuer {
    pub process: IssuerProcess,
    pub agent: Agent,
}

impl Issuer {
    pub fn start(extra: &[&str]) -> Issuer {
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Issuer {
            process: IssuerProcess::start(extra),
            agent,
        }
    }

    /// An issuer started with `extra` flags, and a public MCP client registered with it.
    pub fn with_public_client(extra: &[&str]) -> (Issuer, Client) {
        let issuer = Issuer::start(extra);
        let client = issuer.register_public();
        (issuer, client)
    }

    /// `path` below the issuer (`/v1/token`...).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.process.url)
    }

    pub fn get(&self, url: &str) -> Answer {
        Answer::read(self.agent.get(url).call().unwrap())
    }

    pub fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Answer {
        Answer::read(
            self.agent
                .post(url)
                .send_form(form.iter().copied())
                .unwrap(),
        )
    }

    pub fn post_json(&self, url: &str, body: &Json) -> Answer {
        Answer::read(self.agent.post(url).send_json(body).unwrap())
    }

    /// POSTs `body` to the test control `path` (`rotate`, `keys-mode`...).
    pub fn control(&self, path: &str, body: &str) -> Answer {
        let url = format!("{}/control/{path}", self.process.base);
        Answer::read(self.agent.post(url).send(body).unwrap())
    }

    /// What `/control/stats` counts.
    pub fn stats(&self) -> Json {
        self.get(&format!("{}/control/stats", self.process.base))
            .json()
    }

    pub fn metadata(&self) -> Json {
        self.get(&format!(
            "{}/.well-known/oauth-authorization-server/oauth2/default",
            self.process.base
        ))
        .json()
    }

    pub fn jwks(&self) -> Json {
        self.get(&self.url("/v1/keys")).ok_json()
    }

    /// Verifies `token` against the JWKS the way a resource server does: its claims.
    pub fn verify(&self, token: &str) -> Json {
        super::verify(token, &self.jwks())
    }

    pub fn token(&self, form: &[(&str, &str)]) -> Answer {
        self.post_form(&self.url("/v1/token"), form)
    }

    /// The Okta guide's `curl -d grant_type=… -d client_id=… -d client_secret=… -d scope=…`.
    pub fn client_credentials(&self, client_id: &str, secret: &str, scope: &str) -> Answer {
        self.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
        ])
    }

    /// Exchanges `code` as `client` does, with its verifier.
    pub fn exchange(&self, client: &Client, code: &str) -> Answer {
        self.token(&client.code_grant(code))
    }

    pub fn refresh(&self, client: &Client, refresh_token: &str) -> Answer {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client.id),
            ("refresh_token", refresh_token),
        ])
    }

    pub fn register(&self, metadata: &Json) -> Answer {
        let endpoint = self.metadata()["registration_endpoint"]
            .as_str()
            .expect("registration_endpoint")
            .to_owned();
        self.post_json(&endpoint, metadata)
    }

    /// Registers a client with `metadata`: the client, and the registration's answer.
    pub fn register_client(&self, metadata: &Json) -> (Client, Json) {
        let registered = self.register(metadata).assert_status(201).json();
        let client = Client::new(registered["client_id"].as_str().unwrap());
        (client, registered)
    }

    /// Registers a public MCP client that may refresh.
    pub fn register_public(&self) -> Client {
        self.register_client(&json!({
            "client_name": "Test MCP client",
            "redirect_uris": [REGISTERED_REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }))
        .0
    }

    /// The authorization URL with these parameters.
    pub fn authorize_url(&self, params: &[(&str, &str)]) -> String {
        let mut url = Url::parse(&self.url("/v1/authorize")).unwrap();
        url.query_pairs_mut().extend_pairs(params);
        url.into()
    }

    /// `GET /v1/authorize` with these parameters.
    pub fn authorize(&self, params: &[(&str, &str)]) -> Answer {
        self.get(&self.authorize_url(params))
    }

    /// `client`'s [`Client::authorization`], then `extra` parameters (`scope`, `state`,
    /// `nonce`, `resource`...).
    pub fn authorize_s256(&self, client: &Client, extra: &[(&str, &str)]) -> Answer {
        self.authorize(&client.authorization().with(extra))
    }

    /// Posts the login form of `page` as the person would.
    pub fn sign_in(&self, page: &Answer, username: &str, password: &str) -> Answer {
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("<form method=\"post\""), "{}", page.body);
        let id = request_id(&page.body);
        self.post_form(
            &self.url("/v1/authorize"),
            &[
                ("request_id", &id),
                ("username", username),
                ("password", password),
            ],
        )
    }

    /// `client` asks for a code with `extra` parameters, `username` signs in and is sent back to
    /// `REDIRECT`: the redirect's query.
    pub fn authorized(
        &self,
        client: &Client,
        extra: &[(&str, &str)],
        username: &str,
        password: &str,
    ) -> HashMap<String, String> {
        let page = self.authorize_s256(client, extra);
        let redirect = self.sign_in(&page, username, password);
        assert_eq!(redirect.status, 303, "{}", redirect.body);
        assert!(redirect.location().unwrap().starts_with(REDIRECT));
        redirect.redirect_params()
    }

    /// The standard login of these tests: [`Issuer::authorized`] for `scope`, with state
    /// `state-123`.
    pub fn login_as(
        &self,
        client: &Client,
        scope: &str,
        username: &str,
        password: &str,
    ) -> HashMap<String, String> {
        let extra = [("scope", scope), ("state", "state-123")];
        self.authorized(client, &extra, username, password)
    }

    /// [`Issuer::login_as`] alice.
    pub fn login(&self, client: &Client, scope: &str) -> HashMap<String, String> {
        self.login_as(client, scope, "alice", "alice-password")
    }
}

/// The value of the hidden request field of a login page.
pub fn request_id(page: &str) -> String {
    let marker = "name=\"request_id\" value=\"";
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no form: {page}"))
        + marker.len();
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_owned()
}
