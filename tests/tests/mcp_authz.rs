//! MCP-aware authorization in the real module: rules per tool, prompt and resource; JSON-RPC
//! errors for denied calls; list responses filtered per caller (JSON and SSE); scopes; claims
//! as headers; and the strictness that keeps a deny-list from being bypassed.

use mcp_auth_filter_tests::tokens::{Key, OKTA_AUDIENCE, OKTA_ISSUER, TokenBuilder, jwks};
use mcp_auth_filter_tests::{Host, Outcome, Request, Vm};
use serde_json::{Value, json};

/// Group A may use `echo` and the `greet` prompt; group B may use `add`; nobody may use a
/// tool whose arguments name /etc; resources under file:///public only.
fn policy(key: &Key, extra_authn: &str) -> String {
    format!(
        r#"
mcpTargets: [everything]
policies:
  mcpAuthentication:
    issuer: {OKTA_ISSUER}
    audiences: [{OKTA_AUDIENCE}]
    jwks: '{jwks}'
{extra_authn}
  authorization:
    maxBodyBytes: 4096
    rules:
    - allow: '"A" in auth.claims.groups && mcp.tool.name == "echo"'
    - allow: '"B" in auth.claims.groups && mcp.tool.name == "add"'
    - allow: '"A" in auth.claims.groups && mcp.prompt.name == "greet"'
    - allow: 'mcp.resource.uri.startsWith("file:///public/")'
    - deny: 'mcp.tool.arguments.paths.exists(p, p.startsWith("/etc"))'
"#,
        jwks = jwks(&[key])
    )
}

fn setup(extra_authn: &str) -> (Host, Vm, Key) {
    let key = Key::rsa();
    let host = Host::new();
    let vm = host.vm(&policy(&key, extra_authn)).unwrap();
    (host, vm, key)
}

fn token(key: &Key, groups: &[&str]) -> String {
    TokenBuilder::new(key).groups(groups).sign()
}

fn rpc(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn post(token: &str, body: &Value) -> Request {
    Request::post("/mcp")
        .header("accept", "application/json, text/event-stream")
        .json(body)
        .bearer(token)
}

/// The filter answered with a JSON-RPC error for `id`.
#[track_caller]
fn jsonrpc_error(out: &Outcome, id: i64) -> Value {
    let Outcome::Local(r) = out else {
        panic!("expected a JSON-RPC error, got {out:?}")
    };
    assert_eq!(r.status, 200, "{out:?}");
    let body = r.json();
    assert_eq!(body["id"], id, "{body}");
    assert_eq!(body["jsonrpc"], "2.0");
    body["error"].clone()
}

#[test]
fn tool_calls_are_allowed_or_denied_per_group() {
    let (host, vm, key) = setup("");
    let a = token(&key, &["A"]);
    let b = token(&key, &["B"]);
    let echo = rpc(
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "hi"}}),
    );
    let add = rpc(
        2,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
    );
    assert_eq!(Outcome::forwarded_json(&vm.request(post(&a, &echo))), echo);
    let error = jsonrpc_error(&vm.request(post(&a, &add)), 2);
    assert_eq!(error["code"], -32001);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("tools/call \"add\""),
        "{error}"
    );
    assert_eq!(Outcome::forwarded_json(&vm.request(post(&b, &add))), add);
    jsonrpc_error(&vm.request(post(&b, &echo)), 1);
    assert_eq!(host.metric("mcp_auth.denied.mcp"), Some(2));
}

#[test]
fn a_rule_about_tools_does_not_hide_prompts_or_resources() {
    let (_, vm, key) = setup("");
    let b = token(&key, &["B"]);
    // B has no prompt rule: the prompt rules (A only) are the ones that apply, and deny.
    jsonrpc_error(
        &vm.request(post(&b, &rpc(3, "prompts/get", json!({"name": "greet"})))),
        3,
    );
    let a = token(&key, &["A"]);
    Outcome::forwarded_json(
        &vm.request(post(&a, &rpc(3, "prompts/get", json!({"name": "greet"})))),
    );
    // Resources are judged by the resource rule alone, whatever the tool rules say.
    let public = rpc(4, "resources/read", json!({"uri": "file:///public/readme"}));
    Outcome::forwarded_json(&vm.request(post(&b, &public)));
    let private = rpc(5, "resources/read", json!({"uri": "file:///private/keys"}));
    jsonrpc_error(&vm.request(post(&b, &private)), 5);
}

#[test]
fn initialize_ping_and_notifications_pass() {
    let (_, vm, key) = setup("");
    let nobody = token(&key, &[]);
    let init = rpc(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
    );
    Outcome::forwarded_json(&vm.request(post(&nobody, &init)));
    Outcome::forwarded_json(&vm.request(post(&nobody, &rpc(2, "ping", json!({})))));
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    Outcome::forwarded_json(&vm.request(post(&nobody, &note)));
    let list = json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": []}});
    Outcome::forwarded_json(&vm.request(
        post(&nobody, &rpc(3, "tools/list", json!({}))).upstream_response(
            200,
            vec![("content-type".into(), "application/json".into())],
            list.to_string().as_bytes(),
        ),
    ));
    // A GET (the server's SSE stream) and a DELETE carry no messages: HTTP-level rules only.
    assert!(
        vm.request(Request::get("/mcp").bearer(&nobody))
            .is_forwarded()
    );
    assert!(
        vm.request(Request::new("DELETE", "/mcp").bearer(&nobody))
            .is_forwarded()
    );
}

#[test]
fn arrays_in_arguments_are_visible_to_rules() {
    let (_, vm, key) = setup("");
    let a = token(&key, &["A"]);
    let safe = rpc(
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"paths": ["/tmp/x"]}}),
    );
    Outcome::forwarded_json(&vm.request(post(&a, &safe)));
    let etc = rpc(
        2,
        "tools/call",
        json!({"name": "echo", "arguments": {"paths": ["/tmp/x", "/etc/shadow"]}}),
    );
    jsonrpc_error(&vm.request(post(&a, &etc)), 2);
}

#[test]
fn batches_are_checked_message_by_message() {
    let (_, vm, key) = setup("");
    let a = token(&key, &["A"]);
    let ok = json!([
        rpc(1, "tools/call", json!({"name": "echo", "arguments": {}})),
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}},
        rpc(2, "ping", json!({})),
    ]);
    assert_eq!(Outcome::forwarded_json(&vm.request(post(&a, &ok))), ok);
    let mixed = json!([
        rpc(1, "tools/call", json!({"name": "echo", "arguments": {}})),
        rpc(2, "tools/call", json!({"name": "add", "arguments": {}})),
    ]);
    let out = vm.request(post(&a, &mixed));
    let Outcome::Local(r) = &out else {
        panic!("{out:?}")
    };
    let answers = r.json();
    assert_eq!(answers.as_array().unwrap().len(), 2, "{answers}");
    assert!(
        answers[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"add\"")
    );
    assert!(
        answers[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not processed")
    );
}

#[test]
fn bodies_that_are_not_json_rpc_are_refused_not_passed() {
    let (host, vm, key) = setup("");
    let a = token(&key, &["A"]);
    for (body, code) in [
        (&b"{not json"[..], -32700),
        (br#"{"id":1,"method":"tools/call"}"#, -32600),
        (br#"[]"#, -32600),
        // The duplicate key: a proxy that lets the last one win is bypassed by the first.
        (
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","name":"echo"}}"#,
            -32600,
        ),
    ] {
        let out = vm.request(Request::post("/mcp").body(body).bearer(&a));
        let Outcome::Local(r) = &out else {
            panic!("{out:?}")
        };
        assert_eq!(r.status, 400, "{out:?}");
        assert_eq!(r.json()["error"]["code"], code, "{out:?}");
    }
    // A POST with no body at all.
    assert_eq!(vm.request(Request::post("/mcp").bearer(&a)).status(), 400);
    assert_eq!(host.metric("mcp_auth.denied.bad_body"), Some(5));
}

#[test]
fn bodies_over_the_limit_are_413() {
    let (host, vm, key) = setup("");
    let a = token(&key, &["A"]);
    let big = rpc(
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "x".repeat(5000)}}),
    );
    let out = vm.request(post(&a, &big));
    assert_eq!(out.status(), 413, "{out:?}");
    assert!(
        out.response().unwrap().json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4096-byte limit")
    );
    assert_eq!(host.metric("mcp_auth.denied.body_too_large"), Some(1));
}

const TOOLS: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo","inputSchema":{}},{"name":"add","inputSchema":{}},{"name":"printEnv","inputSchema":{}}],"nextCursor":"page-2"}}"#;

#[test]
fn tool_lists_show_each_caller_only_its_tools_json() {
    let (_, vm, key) = setup("");
    let list = rpc(7, "tools/list", json!({}));
    for (groups, visible) in [
        (&["A"][..], vec!["echo"]),
        (&["B"], vec!["add"]),
        (&[], vec![]),
    ] {
        let out = vm.request(post(&token(&key, groups), &list).upstream_response(
            200,
            vec![("content-type".into(), "application/json".into())],
            TOOLS.as_bytes(),
        ));
        let response = out.response().unwrap();
        let body = response.json();
        let names: Vec<&str> = body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, visible, "{groups:?}");
        assert_eq!(body["result"]["nextCursor"], "page-2");
        assert_eq!(response.header("content-length"), None, "length changed");
    }
}

#[test]
fn tool_lists_are_filtered_in_sse_responses_too() {
    let (_, vm, key) = setup("");
    let sse = format!(
        "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{}}}}\n\nevent: message\nid: ev-1\ndata: {TOOLS}\n\n"
    );
    let out = vm.request(
        post(&token(&key, &["B"]), &rpc(7, "tools/list", json!({}))).upstream_response(
            200,
            vec![("content-type".into(), "text/event-stream".into())],
            sse.as_bytes(),
        ),
    );
    let text = out.response().unwrap().text();
    assert!(text.contains("notifications/message"), "{text}");
    assert!(text.contains("id: ev-1"), "{text}");
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .find(|d| d.contains("\"tools\""))
        .unwrap();
    let json: Value = serde_json::from_str(data).unwrap();
    assert_eq!(
        json["result"]["tools"],
        json!([{"name": "add", "inputSchema": {}}])
    );
}

#[test]
fn prompt_and_resource_lists_are_filtered_and_others_untouched() {
    let (_, vm, key) = setup("");
    let b = token(&key, &["B"]);
    let prompts =
        r#"{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"greet"},{"name":"other"}]}}"#;
    let out = vm.request(
        post(&b, &rpc(1, "prompts/list", json!({}))).upstream_response(
            200,
            vec![("content-type".into(), "application/json".into())],
            prompts.as_bytes(),
        ),
    );
    assert_eq!(
        out.response().unwrap().json()["result"]["prompts"],
        json!([])
    );
    let resources = r#"{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///public/a"},{"uri":"file:///private/b"}]}}"#;
    let out = vm.request(
        post(&b, &rpc(2, "resources/list", json!({}))).upstream_response(
            200,
            vec![("content-type".into(), "application/json".into())],
            resources.as_bytes(),
        ),
    );
    assert_eq!(
        out.response().unwrap().json()["result"]["resources"],
        json!([{"uri": "file:///public/a"}])
    );
    // A response to a call is not a list: untouched, byte for byte.
    let result = br#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"add"}]}}"#;
    let out = vm.request(
        post(
            &b,
            &rpc(3, "tools/call", json!({"name": "add", "arguments": {}})),
        )
        .upstream_response(
            200,
            vec![("content-type".into(), "application/json".into())],
            result,
        ),
    );
    assert_eq!(out.response().unwrap().body, result.to_vec());
}

#[test]
fn targets_split_from_prefixed_names() {
    let key = Key::rsa();
    let host = Host::new();
    let vm = host
        .vm(&format!(
            r#"{{"routes": {{"tools": {{"mcpTargets": ["files", "git"], "policies": {{
                "mcpAuthentication": {{"issuer": "{OKTA_ISSUER}", "audiences": [], "jwks": {}}},
                "authorization": {{"rules": [{{"allow": "mcp.tool.target == 'files'"}}]}}}}}}}}}}"#,
            jwks(&[&key])
        ))
        .unwrap();
    let t = token(&key, &[]);
    let on_route = |r: Request| r.property("xds.route_name", "tools");
    Outcome::forwarded_json(&vm.request(on_route(post(
        &t,
        &rpc(1, "tools/call", json!({"name": "files_read"})),
    ))));
    jsonrpc_error(
        &vm.request(on_route(post(
            &t,
            &rpc(2, "tools/call", json!({"name": "git_push"})),
        ))),
        2,
    );
    // Another route has no policy in this configuration: not this filter's business.
    assert!(
        vm.request(
            post(&t, &rpc(3, "tools/call", json!({"name": "git_push"})))
                .property("xds.route_name", "other")
        )
        .is_forwarded()
    );
}

#[test]
fn required_scopes_give_403_insufficient_scope() {
    let (host, vm, key) = setup("    requiredScopes: [mcp.read, mcp.write]");
    let partial = TokenBuilder::new(&key)
        .groups(&["A"])
        .scopes(&["mcp.read"])
        .sign();
    let out = vm.request(post(&partial, &rpc(1, "ping", json!({}))));
    let Outcome::Local(r) = &out else {
        panic!("{out:?}")
    };
    assert_eq!(r.status, 403);
    let www = r.header("www-authenticate").unwrap();
    assert!(www.starts_with("Bearer error=\"insufficient_scope\", scope=\"mcp.read mcp.write\", resource_metadata=\"http://localhost:3000/.well-known/oauth-protected-resource/mcp\""), "{www}");
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("mcp.write")
    );
    assert_eq!(host.metric("mcp_auth.denied.insufficient_scope"), Some(1));
    // Okta's scp array or a space-separated scope string: both count.
    let full = TokenBuilder::new(&key)
        .groups(&["A"])
        .without("scp")
        .claim("scope", json!("openid mcp.read mcp.write"))
        .sign();
    Outcome::forwarded_json(&vm.request(post(&full, &rpc(1, "ping", json!({})))));
    // The metadata document advertises the scopes.
    let doc = vm
        .request(Request::get("/.well-known/oauth-protected-resource/mcp"))
        .response()
        .unwrap()
        .json();
    assert_eq!(doc["scopes_supported"], json!(["mcp.read", "mcp.write"]));
}

#[test]
fn claims_go_upstream_as_headers_and_cannot_be_forged() {
    let (_, vm, key) = setup(
        "    claimsToHeaders:\n      sub: x-user\n      groups: x-groups\n      org.name: x-org",
    );
    let t = TokenBuilder::new(&key)
        .groups(&["A", "Everyone"])
        .sub("alice@example.com")
        .claim("org", json!({"name": "Acme"}))
        .sign();
    let out = vm.request(
        post(&t, &rpc(1, "ping", json!({})))
            .header("x-user", "mallory")
            .header("X-Groups", "admins"),
    );
    assert!(out.is_forwarded(), "{out:?}");
    assert_eq!(
        out.upstream_header("x-user").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        out.upstream_header("x-groups").as_deref(),
        Some("A,Everyone")
    );
    assert_eq!(out.upstream_header("x-org").as_deref(), Some("Acme"));
    let Outcome::Forwarded {
        request_headers, ..
    } = &out
    else {
        panic!("{out:?}")
    };
    assert_eq!(
        request_headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-user"))
            .count(),
        1,
        "the forged value is gone, not merely shadowed"
    );
    // Without the claim, the client's header is still removed.
    let t = TokenBuilder::new(&key).groups(&["A"]).without("sub").sign();
    let out = vm.request(post(&t, &rpc(1, "ping", json!({}))).header("x-user", "mallory"));
    assert_eq!(out.upstream_header("x-user"), None);
}
