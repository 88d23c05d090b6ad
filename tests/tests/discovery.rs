//! OAuth discovery on the gateway's host, against the real release module in the wasmtime host:
//! what an MCP client finds when it looks for the protected resource's metadata, for
//! authorization server metadata and for a registration endpoint, with and without the
//! registration facade, and the scopes a challenge names.

use mcp_auth_filter_tests::tokens::{Key, OKTA_AUDIENCE, OKTA_ISSUER, jwks};
use mcp_auth_filter_tests::{Host, Outcome, Request, Response, Vm};
use serde_json::json;

/// The Okta guide's policy with inline keys, plus `extra` under `mcpAuthentication`.
fn guide_vm(extra: &str) -> (Host, Vm) {
    let key = Key::rsa();
    let host = Host::new();
    let config = format!(
        r#"
policies:
  mcpAuthentication:
    mode: strict
    issuer: {OKTA_ISSUER}
    audiences: [{OKTA_AUDIENCE}]
    jwks: '{}'
{extra}
  authorization:
    rules:
    - if: '"AI-Users" in auth.claims.groups'
"#,
        jwks(&[&key])
    );
    let vm = host
        .vm(&config)
        .unwrap_or_else(|e| panic!("the policy loads: {e}"));
    (host, vm)
}

#[track_caller]
fn local(outcome: &Outcome) -> &Response {
    match outcome {
        Outcome::Local(r) => r,
        other => panic!("expected a local answer, got {other:?}"),
    }
}

fn registration_request(path: &str) -> Request {
    Request::post(path).json(&json!({
        "client_name": "Some MCP client",
        "redirect_uris": ["http://127.0.0.1:53682/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    }))
}

#[test]
fn discovery_paths_the_gateway_does_not_serve_say_where_the_issuer_is() {
    let (host, vm) = guide_vm("");
    for (what, request) in [
        ("POST /register", registration_request("/register")),
        (
            "GET /.well-known/oauth-authorization-server",
            Request::get("/.well-known/oauth-authorization-server"),
        ),
        (
            "GET /.well-known/oauth-authorization-server/mcp",
            Request::get("/.well-known/oauth-authorization-server/mcp"),
        ),
        (
            "GET /.well-known/openid-configuration",
            Request::get("/.well-known/openid-configuration"),
        ),
        (
            "GET /.well-known/openid-configuration/mcp",
            Request::get("/.well-known/openid-configuration/mcp"),
        ),
    ] {
        let out = vm.request(request);
        let r = local(&out);
        assert_eq!(r.status, 404, "{what}: {}", r.text());
        let body = r.json();
        assert_eq!(body["error"], "not_found", "{what}");
        assert_eq!(
            body["authorization_servers"],
            json!([OKTA_ISSUER]),
            "{what}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("not an authorization server"),
            "{body}"
        );
        assert_eq!(
            r.details.as_deref(),
            Some("mcp_auth_not_authorization_server")
        );
    }
    assert_eq!(host.metric("mcp_auth.discovery_not_served"), Some(5));
    // The RFC 9728 document still names the issuer, and browsers may read it.
    let out = vm.request(Request::get("/.well-known/oauth-protected-resource/mcp"));
    let r = local(&out);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["authorization_servers"], json!([OKTA_ISSUER]));
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    // MCP traffic without a token is still the challenge, with no scope the policy does not name.
    let out = vm
        .request(Request::post("/mcp").json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})));
    let r = local(&out);
    assert_eq!(r.status, 401);
    assert!(!r.header("www-authenticate").unwrap().contains("scope="));
}

#[test]
fn scopes_the_policy_names_are_advertised_and_challenged() {
    let (_, vm) = guide_vm("    requiredScopes: [agentgateway]");
    let out = vm.request(Request::get("/.well-known/oauth-protected-resource/mcp"));
    assert_eq!(
        local(&out).json()["scopes_supported"],
        json!(["agentgateway"])
    );
    let out = vm
        .request(Request::post("/mcp").json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})));
    let www = local(&out).header("www-authenticate").unwrap();
    assert_eq!(
        www,
        "Bearer resource_metadata=\"http://localhost:3000/.well-known/oauth-protected-resource/mcp\", scope=\"agentgateway\""
    );
    // A token that is there but bad keeps the scope next to the error.
    let out = vm.request(
        Request::post("/mcp")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            .bearer("not.a.token"),
    );
    let www = local(&out).header("www-authenticate").unwrap();
    assert!(
        www.contains("scope=\"agentgateway\", error=\"invalid_token\""),
        "{www}"
    );

    let (_, vm) =
        guide_vm("    resourceMetadata:\n      scopesSupported: [mcp.read, offline_access]");
    let out = vm.request(Request::get("/mcp"));
    let www = local(&out).header("www-authenticate").unwrap();
    assert!(
        www.ends_with(", scope=\"mcp.read offline_access\""),
        "{www}"
    );
}

const FACADE: &str = "    provider: okta
    registration:
      clientId: 0oaPublicClient
      redirectUris: ['http://127.0.0.1/callback', 'http://localhost:6274/oauth/callback']";

#[test]
fn the_registration_facade_is_the_resources_authorization_server() {
    let (host, vm) = guide_vm(FACADE);
    let out = vm.request(Request::get("/.well-known/oauth-protected-resource/mcp"));
    let prm = local(&out).json();
    assert_eq!(prm["resource"], "http://localhost:3000/mcp");
    assert_eq!(
        prm["authorization_servers"],
        json!(["http://localhost:3000/mcp"])
    );

    // Where each SDK looks for that server's metadata, the issuer is the URL it came from.
    for path in [
        "/.well-known/oauth-authorization-server/mcp",
        "/.well-known/openid-configuration/mcp",
        "/mcp/.well-known/openid-configuration",
    ] {
        let out = vm.request(Request::get(path));
        let r = local(&out);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let doc = r.json();
        assert_eq!(doc["issuer"], "http://localhost:3000/mcp", "{path}");
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{OKTA_ISSUER}/v1/authorize")
        );
        assert_eq!(doc["token_endpoint"], format!("{OKTA_ISSUER}/v1/token"));
        assert_eq!(
            doc["registration_endpoint"],
            "http://localhost:3000/mcp/register"
        );
        assert_eq!(
            r.header("access-control-allow-origin").as_deref(),
            Some("*")
        );
    }

    // Registering, at the advertised endpoint or the legacy root one, yields the public client.
    for path in ["/mcp/register", "/register"] {
        let out = vm.request(registration_request(path));
        let r = local(&out);
        assert_eq!(r.status, 201, "{path}: {}", r.text());
        let client = r.json();
        assert_eq!(client["client_id"], "0oaPublicClient");
        assert_eq!(client["token_endpoint_auth_method"], "none");
        assert!(client.get("client_secret").is_none());
        assert_eq!(
            client["redirect_uris"],
            json!([
                "http://127.0.0.1/callback",
                "http://localhost:6274/oauth/callback"
            ])
        );
    }
    assert_eq!(host.metric("mcp_auth.facade.registrations"), Some(2));

    // A browser's preflight for the registration gets CORS, not a challenge.
    let out = vm.request(
        Request::new("OPTIONS", "/mcp/register")
            .header("origin", "http://localhost:6274")
            .header("access-control-request-method", "POST"),
    );
    let r = local(&out);
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );

    // Everything else on the route still needs a token.
    let out = vm
        .request(Request::post("/mcp").json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})));
    assert_eq!(local(&out).status, 401);
}

#[test]
fn a_facade_without_its_client_or_redirect_uris_is_refused_at_configure() {
    let key = Key::rsa();
    for (registration, field) in [
        (
            "registration: {redirectUris: ['http://127.0.0.1/cb']}",
            "registration.clientId",
        ),
        ("registration: {clientId: x}", "registration.redirectUris"),
        (
            "registration: {clientId: x, redirectUris: ['http://evil.example/cb']}",
            "registration.redirectUris[0]",
        ),
        (
            "registration: {clientId: x, redirectUris: ['http://127.0.0.1/cb']}",
            "registration.authorizationEndpoint",
        ),
    ] {
        let config = format!(
            "mcpAuthentication:\n  issuer: {OKTA_ISSUER}\n  audiences: []\n  jwks: '{}'\n  {registration}\n",
            jwks(&[&key])
        );
        let Err(e) = Host::new().vm(&config) else {
            panic!("{registration} was accepted")
        };
        assert!(e.logged(&format!("mcpAuthentication.{field}")), "{e}");
    }
}
