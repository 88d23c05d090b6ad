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

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;

mod common;
use common::oauth::{Answer, Client, Issuer, REGISTERED_REDIRECT, request_id};

#[test]
fn alice_logs_in_from_a_registered_mcp_client_and_refreshes() {
    let (issuer, client) = Issuer::with_public_client(&[]);

    let page = issuer.authorize_s256(
        &client,
        &[
            ("scope", "agentgateway offline_access"),
            ("state", "state-123"),
            ("resource", "api://agentgateway"),
        ],
    );
    page.assert_status(200);
    assert!(page.body.contains("Test MCP client"));
    assert!(page.body.contains("name=\"username\""));
    assert!(
        page.body
            .contains("type=\"password\" id=\"password\" name=\"password\"")
    );

    let redirect = issuer.sign_in(&page, "alice", "alice-password");
    redirect.assert_status(303);
    let params = redirect.redirect_params();
    assert!(
        redirect
            .location()
            .unwrap()
            .starts_with("http://127.0.0.1:53682/callback?"),
        "the loopback port the client used is kept"
    );
    assert_eq!(params["state"], "state-123");
    assert_eq!(params["iss"], issuer.process.url);

    let tokens = issuer.exchange(&client, &params["code"]).ok_json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "agentgateway offline_access");
    assert!(tokens.get("id_token").is_none(), "no openid, no ID token");
    let claims = issuer.verify(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["iss"], issuer.process.url.as_str());
    assert_eq!(claims["aud"], "api://agentgateway");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["cid"], client.id.as_str());
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
    let refreshed = issuer.refresh(&client, &first_refresh).ok_json();
    let second_refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh);
    let claims = issuer.verify(refreshed["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["uid"], uid.as_str(), "uid is stable");
    assert_eq!(claims["groups"], json!(["AI-Users", "Everyone"]));

    // Rotation: the spent token is refused; presenting it again also ends its successor.
    for spent in [&first_refresh, &second_refresh] {
        issuer
            .refresh(&client, spent)
            .assert_error(400, "invalid_grant");
    }
}

#[test]
fn bob_logs_in_but_his_token_lacks_ai_users() {
    let (issuer, client) = Issuer::with_public_client(&[]);
    let params = issuer.login_as(&client, "agentgateway", "bob", "bob-password");
    let tokens = issuer.exchange(&client, &params["code"]).ok_json();
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
    let (issuer, client) = Issuer::with_public_client(&[]);
    let page = issuer.authorize_s256(&client, &[("state", "s")]);
    let again = issuer.sign_in(&page, "alice", "bob-password");
    assert_eq!(again.status, 401);
    assert!(again.location().is_none());
    assert!(again.body.contains("wrong username or password"));
    assert_eq!(request_id(&again.body), request_id(&page.body));

    let cancelled = issuer.post_form(
        &issuer.url("/v1/authorize"),
        &[
            ("request_id", &request_id(&page.body)),
            ("action", "cancel"),
        ],
    );
    assert_eq!(cancelled.status, 303);
    let params = cancelled.redirect_params();
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "s");
    // The request is answered: its form is dead now.
    let late = issuer.sign_in(&page, "alice", "alice-password");
    assert_eq!(late.status, 400);
    assert!(late.location().is_none());
}

#[test]
fn a_wrong_or_missing_verifier_is_invalid_grant_and_spends_the_code() {
    let (issuer, client) = Issuer::with_public_client(&[]);
    let params = issuer.login(&client, "agentgateway");
    let other = Client::new(&client.id);
    let refused = issuer.token(
        &client
            .code_grant(&params["code"])
            .set("code_verifier", &other.verifier),
    );
    let why = refused.assert_error(400, "invalid_grant");
    assert!(why.contains("PKCE"), "{why}");
    // One try per code: guessing verifiers gets nowhere.
    let right = issuer.exchange(&client, &params["code"]);
    assert_eq!(right.json()["error"], "invalid_grant");

    let params = issuer.login(&client, "agentgateway");
    let missing = issuer.token(&client.code_grant(&params["code"]).without("code_verifier"));
    let why = missing.assert_error(400, "invalid_grant");
    assert!(why.contains("code_verifier"), "{why}");
}

#[test]
fn a_reused_code_is_refused_and_revokes_what_it_issued() {
    let (issuer, client) = Issuer::with_public_client(&[]);
    let params = issuer.login(&client, "agentgateway offline_access");
    let first = issuer.exchange(&client, &params["code"]).ok_json();
    let refresh_token = first["refresh_token"].as_str().unwrap().to_owned();

    let second = issuer.exchange(&client, &params["code"]);
    second.assert_error(400, "invalid_grant");
    let revoked = issuer.refresh(&client, &refresh_token);
    revoked.assert_error(400, "invalid_grant");
}

#[test]
fn a_wrong_redirect_uri_is_never_redirected_to() {
    let (issuer, client) = Issuer::with_public_client(&[]);
    for wrong in [
        "http://127.0.0.1:53682/elsewhere",
        "http://localhost:53682/callback",
        "https://evil.example/callback",
    ] {
        let page = issuer.authorize(&client.authorization().set("redirect_uri", wrong));
        assert_eq!(page.status, 400, "{wrong}");
        assert!(page.location().is_none(), "{wrong}");
        assert!(page.body.contains("redirect_uri"), "{}", page.body);
    }

    // At the token endpoint the redirect URI must repeat the authorization request's.
    let params = issuer.login(&client, "agentgateway");
    let refused = issuer.token(
        &client
            .code_grant(&params["code"])
            .set("redirect_uri", "http://127.0.0.1:1/callback"),
    );
    refused.assert_error(400, "invalid_grant");
}

#[test]
fn an_unknown_client_gets_an_error_page_and_invalid_client() {
    let issuer = Issuer::start(&[]);
    let unknown = Client::new("0oaNOSUCHCLIENT00000");
    let page = issuer.authorize_s256(&unknown, &[]);
    assert_eq!(page.status, 400);
    assert!(page.location().is_none());
    assert!(
        page.body.contains("No client is registered"),
        "{}",
        page.body
    );
    // A machine client has no redirect URIs: it cannot send people to the login page.
    let machine = issuer.authorize_s256(&Client::new("ai-user"), &[]);
    assert_eq!(machine.status, 400);

    let refused = issuer.exchange(&unknown, "some-code");
    refused.assert_error(401, "invalid_client");
}

#[test]
fn a_code_past_its_lifetime_is_refused() {
    let (issuer, client) = Issuer::with_public_client(&["--code-ttl", "1"]);
    let params = issuer.login(&client, "agentgateway");
    std::thread::sleep(Duration::from_millis(1500));
    let refused = issuer.exchange(&client, &params["code"]);
    let why = refused.assert_error(400, "invalid_grant");
    assert!(why.contains("expired"), "{why}");
}

#[test]
fn plain_pkce_and_a_missing_challenge_are_refused_the_oauth_way() {
    let (issuer, client) = Issuer::with_public_client(&[]);
    let cases: [&[(&str, &str)]; 3] = [
        &[
            ("code_challenge", &client.verifier),
            ("code_challenge_method", "plain"),
        ],
        // No method means plain (RFC 7636 §4.3).
        &[("code_challenge", &client.challenge)],
        &[],
    ];
    for pkce_params in cases {
        let params = client.code_request().set("state", "st").with(pkce_params);
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
    let (issuer, client) =
        Issuer::with_public_client(&["--audience", "api://agentgateway", "--audience", mcp]);

    let refused = issuer.authorize_s256(&client, &[("resource", "https://elsewhere.example/mcp")]);
    assert_eq!(refused.redirect_params()["error"], "invalid_target");

    let resource = [("resource", mcp)];
    let params = issuer.authorized(&client, &resource, "alice", "alice-password");
    let tokens = issuer.token(&client.code_grant(&params["code"]).set("resource", mcp));
    let claims = issuer.verify(tokens.ok_json()["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], mcp);

    // Client credentials keep the first audience.
    let machine = issuer.client_credentials("ai-user", "ai-user-secret", "agentgateway");
    let claims = issuer.verify(machine.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "api://agentgateway");
}

#[test]
fn an_unoffered_scope_is_invalid_scope_and_no_scope_gets_the_default() {
    let (issuer, client) = Issuer::with_public_client(&[]);
    let refused = issuer.authorize_s256(&client, &[("scope", "agentgateway admin")]);
    assert_eq!(refused.redirect_params()["error"], "invalid_scope");

    let params = issuer.login(&client, "");
    let tokens = issuer.exchange(&client, &params["code"]).json();
    assert_eq!(tokens["scope"], "agentgateway");
}

#[test]
fn openid_adds_an_id_token_with_the_nonce() {
    let (issuer, client) = Issuer::with_public_client(&[]);
    let openid = [
        ("scope", "openid profile agentgateway"),
        ("nonce", "n-0S6_WzA2Mj"),
    ];
    let params = issuer.authorized(&client, &openid, "alice", "alice-password");
    let tokens = issuer.exchange(&client, &params["code"]).json();
    let access = issuer.verify(tokens["access_token"].as_str().unwrap());
    let id = issuer.verify(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], client.id.as_str());
    assert_eq!(id["sub"], access["uid"]);
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["iss"], issuer.process.url.as_str());
}

#[test]
fn a_refresh_token_belongs_to_its_client() {
    let (issuer, client) = Issuer::with_public_client(&[]);
    let other = issuer.register_public();
    let params = issuer.login(&client, "agentgateway offline_access");
    let tokens = issuer.exchange(&client, &params["code"]).json();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let stolen = issuer.refresh(&other, refresh_token);
    stolen.assert_error(400, "invalid_grant");
    // Refused for the other client, the token still works for its own.
    assert_eq!(issuer.refresh(&client, refresh_token).status, 200);
}

#[test]
fn a_client_registered_without_refresh_gets_no_refresh_token() {
    let issuer = Issuer::start(&[]);
    let (client, _) = issuer.register_client(&json!({
        "redirect_uris": [REGISTERED_REDIRECT],
        "token_endpoint_auth_method": "none",
    }));
    let params = issuer.login(&client, "agentgateway offline_access");
    let tokens = issuer.exchange(&client, &params["code"]).json();
    assert!(tokens.get("refresh_token").is_none());
    assert_eq!(tokens["scope"], "agentgateway");
}

#[test]
fn a_confidential_registered_client_must_present_its_secret() {
    let issuer = Issuer::start(&[]);
    let (client, registered) =
        issuer.register_client(&json!({ "redirect_uris": [REGISTERED_REDIRECT] }));
    let secret = registered["client_secret"].as_str().unwrap();
    let params = issuer.login(&client, "agentgateway");
    let without = issuer.exchange(&client, &params["code"]);
    without.assert_error(401, "invalid_client");

    let params = issuer.login(&client, "agentgateway");
    let with = issuer.token(
        &client
            .code_grant(&params["code"])
            .set("client_secret", secret),
    );
    with.assert_status(200);
}

#[test]
fn registration_refuses_bad_metadata_with_rfc_7591_errors() {
    let issuer = Issuer::start(&[]);
    let insecure = issuer.register(&json!({ "redirect_uris": ["http://evil.example/cb"] }));
    insecure.assert_error(400, "invalid_redirect_uri");
    let machine = issuer.register(&json!({
        "redirect_uris": [REGISTERED_REDIRECT],
        "grant_types": ["client_credentials"],
    }));
    machine.assert_error(400, "invalid_client_metadata");
}

#[test]
fn registration_off_hides_the_endpoint() {
    let issuer = Issuer::start(&["--no-registration"]);
    let metadata = issuer.metadata();
    assert!(
        metadata.get("registration_endpoint").is_none(),
        "{metadata}"
    );
    let response = issuer.post_json(
        &issuer.url("/v1/register"),
        &json!({ "redirect_uris": [REGISTERED_REDIRECT] }),
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
    let client = issuer.register_public();
    let params = issuer.login(&client, "agentgateway");
    assert_eq!(params["state"], "state-123");
    assert!(!params.contains_key("iss"), "{params:?}");
    issuer.exchange(&client, &params["code"]).assert_status(200);
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
        issuer.url("/.well-known/oauth-authorization-server"),
        issuer.url("/.well-known/openid-configuration"),
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
    let laptop = Client::new("laptop");
    // Configured people replace alice and bob.
    let page = issuer.authorize_s256(&laptop, &[]);
    assert_eq!(issuer.sign_in(&page, "alice", "alice-password").status, 401);

    for (name, password, groups) in [
        ("carol", "carol-pw", json!(["Ops"])),
        ("dave", "dave-pw", json!(["AI-Users", "Ops"])),
    ] {
        let params = issuer.login_as(&laptop, "agentgateway", name, password);
        let tokens = issuer.exchange(&laptop, &params["code"]).ok_json();
        let claims = issuer.verify(tokens["access_token"].as_str().unwrap());
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

fn json_response(body: &serde_json::Value) -> String {
    let body = body.to_string();
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
            "/client.json" => json_response(&json!({
                "client_id": own,
                "client_name": "Document Client",
                "redirect_uris": [REGISTERED_REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            })),
            "/impostor.json" => json_response(&json!({
                "client_id": "https://someone-else.example/client.json",
                "redirect_uris": [REGISTERED_REDIRECT],
            })),
            "/moved.json" => format!(
                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{port}/client.json\r\n\
                 content-length: 0\r\nconnection: close\r\n\r\n"
            ),
            "/huge.json" => json_response(&json!({
                "client_id": own,
                "redirect_uris": [REGISTERED_REDIRECT],
                "padding": "x".repeat(70 * 1024),
            })),
            _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .to_owned(),
        }
    });
    let issuer = Issuer::start(&["--no-registration"]);
    let client = Client::new(format!("http://127.0.0.1:{port}/client.json"));

    let page = issuer.authorize_s256(
        &client,
        &[("scope", "agentgateway offline_access"), ("state", "doc")],
    );
    page.assert_status(200);
    assert!(page.body.contains("Document Client"));
    let params = issuer
        .sign_in(&page, "alice", "alice-password")
        .redirect_params();
    assert_eq!(params["state"], "doc");
    let tokens = issuer.exchange(&client, &params["code"]).ok_json();
    let claims = issuer.verify(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["cid"], client.id.as_str());
    assert_eq!(claims["groups"], json!(["AI-Users", "Everyone"]));
    let refreshed = issuer.refresh(&client, tokens["refresh_token"].as_str().unwrap());
    refreshed.assert_status(200);

    for (path, reason) in [
        ("/impostor.json", "not its own URL"),
        ("/moved.json", "HTTP 302"),
        ("/huge.json", "larger than"),
        ("/missing.json", "HTTP 404"),
    ] {
        let document = Client::new(format!("http://127.0.0.1:{port}{path}"));
        let page = issuer.authorize_s256(&document, &[]);
        assert_eq!(page.status, 400, "{path}: {}", page.body);
        assert!(page.location().is_none(), "{path}");
        assert!(page.body.contains(reason), "{path}: {}", page.body);
    }
    // Plain http is for loopback only: nothing is fetched for another host.
    let elsewhere = Client::new("http://clients.example/client.json");
    let insecure = issuer.authorize_s256(&elsewhere, &[]);
    assert_eq!(insecure.status, 400);
    assert!(
        insecure.body.contains("must use https"),
        "{}",
        insecure.body
    );
}

#[test]
fn browser_clients_may_call_the_endpoints_but_not_frame_the_login_page() {
    const ORIGIN: &str = "http://localhost:6274";
    let issuer = Issuer::start(&[]);
    let preflight = Answer::read(
        issuer
            .agent
            .options(issuer.url("/v1/token"))
            .header("origin", ORIGIN)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .call()
            .unwrap(),
    );
    assert!(
        (200..300).contains(&preflight.status),
        "{}",
        preflight.status
    );
    let allowed = |answer: &Answer| {
        answer
            .header("access-control-allow-origin")
            .map(str::to_owned)
    };
    assert_eq!(allowed(&preflight).as_deref(), Some("*"));
    let from_browser = |url: &str| {
        Answer::read(
            issuer
                .agent
                .get(url)
                .header("origin", ORIGIN)
                .call()
                .unwrap(),
        )
    };
    let metadata = from_browser(&format!(
        "{}/.well-known/oauth-authorization-server/oauth2/default",
        issuer.process.base
    ));
    assert_eq!(allowed(&metadata).as_deref(), Some("*"));

    let client = issuer.register_public();
    let page = from_browser(&issuer.authorize_url(&client.authorization()));
    assert_eq!(page.status, 200);
    assert_eq!(allowed(&page), None);
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
}
