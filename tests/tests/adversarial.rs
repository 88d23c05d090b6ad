//! The gateway attacked through the real module: each scenario is a way a client tried to get
//! past the MCP layer (trailers, split bodies, headers that reach the upstream early, a wasted
//! key refetch, forged claim and identity headers, the legacy transport, answers the filter
//! cannot read) and what the filter must do instead. The Envoy-only classes (HTTP/2 framing,
//! timeouts) are in `envoy_attacks.rs`.

use std::time::Duration;

use base64::Engine as _;
use mcp_auth_filter_tests::tokens::{Key, OKTA_AUDIENCE, OKTA_ISSUER, TokenBuilder, jwks};
use mcp_auth_filter_tests::{Host, Outcome, Request, Vm};
use serde_json::{Value, json};

const KEYS_URL: &str = "https://your-org.okta.com/oauth2/default/v1/keys";

/// Group A may call `echo`; nobody else may call anything. `extra` goes into the root.
fn config(key: &Key, mode: &str, extra: &str) -> String {
    format!(
        r#"
{extra}
mcpTargets: [everything]
policies:
  mcpAuthentication:
    mode: {mode}
    issuer: {OKTA_ISSUER}
    audiences: [{OKTA_AUDIENCE}]
    jwks: '{jwks}'
  authorization:
    rules:
    - allow: '"A" in auth.claims.groups && mcp.tool.name == "echo"'
"#,
        jwks = jwks(&[key])
    )
}

fn vm(key: &Key, mode: &str, extra: &str) -> (Host, Vm) {
    let host = Host::new();
    let vm = host.vm(&config(key, mode, extra)).unwrap();
    (host, vm)
}

fn call(id: i64, tool: &str) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {}}})
    .to_string()
    .into_bytes()
}

fn post() -> Request {
    Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

/// The filter answered with a JSON-RPC denial for `id` (the upstream never saw the body).
#[track_caller]
fn denied(out: &Outcome, id: i64) {
    let Outcome::Local(r) = out else {
        panic!("expected a JSON-RPC denial, got {out:?}")
    };
    let body = r.json();
    assert_eq!(body["id"], id, "{body}");
    assert!(body["error"]["code"].is_i64(), "{body}");
}

#[test]
fn a_body_followed_by_trailers_is_judged_before_anything_goes_on() {
    let key = Key::rsa();
    let (_, vm) = vm(&key, "strict", "");
    let b = TokenBuilder::new(&key).groups(&["B"]).sign();
    let body = call(7, "get-env");
    let (head, rest) = body.split_at(20);
    let out = vm.request(
        post()
            .bearer(&b)
            .body_chunks(&[head, rest])
            .trailers(&[("x-checksum", "1")]),
    );
    denied(&out, 7);

    // The same call from group A's echo goes on whole.
    let a = TokenBuilder::new(&key).groups(&["A"]).sign();
    let echo = call(8, "echo");
    let (head, rest) = echo.split_at(30);
    let out = vm.request(
        post()
            .bearer(&a)
            .body_chunks(&[head, rest, b""])
            .trailers(&[("x-checksum", "1")]),
    );
    assert_eq!(out.forwarded_json()["params"]["name"], "echo");
}

#[test]
fn on_an_optional_route_trailers_do_not_let_an_anonymous_call_through() {
    let key = Key::rsa();
    let (_, vm) = vm(&key, "optional", "");
    let out = vm.request(
        post()
            .body_chunks(&[&call(1, "get-env")])
            .trailers(&[("grpc-status", "0")]),
    );
    assert_eq!(out.status(), 401, "{out:?}");
    assert!(!out.is_forwarded());
}

#[test]
fn a_name_split_across_data_frames_is_judged_whole() {
    let key = Key::rsa();
    let (_, vm) = vm(&key, "strict", "");
    let a = TokenBuilder::new(&key).groups(&["A"]).sign();
    let body = call(3, "echo-but-not-really");
    let at = body.windows(4).position(|w| w == b"echo").unwrap() + 2;
    let frames: Vec<&[u8]> = vec![&body[..at], &body[at..at + 3], &body[at + 3..]];
    denied(&vm.request(post().bearer(&a).body_chunks(&frames)), 3);
}

#[test]
fn with_headers_held_a_denied_request_never_reaches_the_upstream() {
    let key = Key::rsa();
    let b = TokenBuilder::new(&key).groups(&["B"]).sign();
    let a = TokenBuilder::new(&key).groups(&["A"]).sign();

    let (_, held) = vm(&key, "strict", "holdHeaders: true");
    let id = held.start(
        post()
            .bearer(&b)
            .body_chunks(&[&call(1, "get-env")[..10], &call(1, "get-env")[10..]]),
    );
    denied(&held.outcome(id), 1);
    assert!(
        !held.upstream_started_early(id),
        "the upstream saw the request start"
    );
    let id = held.start(
        post()
            .bearer(&a)
            .body_chunks(&[&call(2, "echo")[..10], &call(2, "echo")[10..]]),
    );
    assert_eq!(held.outcome(id).forwarded_json()["id"], 2);

    // Without the hold (hosts that cannot pause headers) the headers go on first: the
    // upstream sees a request start and then a reset, never the body.
    let (_, plain) = vm(&key, "strict", "");
    let id = plain.start(post().bearer(&b).body_chunks(&[&call(1, "get-env")]));
    denied(&plain.outcome(id), 1);
    assert!(plain.upstream_started_early(id));
}

#[test]
fn a_body_on_any_method_is_judged_on_routes_with_mcp_rules() {
    let key = Key::rsa();
    let (_, vm) = vm(&key, "strict", "");
    let b = TokenBuilder::new(&key).groups(&["B"]).sign();
    for method in ["PUT", "PATCH", "GET", "DELETE"] {
        let out = vm.request(
            Request::new(method, "/mcp")
                .header("content-type", "application/json")
                .bearer(&b)
                .body(&call(4, "get-env")),
        );
        assert!(!out.is_forwarded(), "{method}: {out:?}");
    }
    // A GET without a body (the server's event stream) is judged by HTTP-level rules only.
    assert!(vm.request(Request::get("/mcp").bearer(&b)).is_forwarded());
}

/// A VM on remote keys whose first fetch answered with `old`; `new` is the key the issuer
/// rotates to.
fn remote_keys_fetched() -> (Host, Vm, Key, Key) {
    let host = Host::new();
    let old = Key::rsa_n(0);
    let new = Key::rsa_n(1);
    let config = format!(
        r#"
policies:
  mcpAuthentication:
    issuer: {OKTA_ISSUER}
    audiences: [{OKTA_AUDIENCE}]
    jwks:
      url: {KEYS_URL}
"#
    );
    let vm = host.vm(&config).unwrap();
    host.advance(Duration::from_millis(100));
    let first = host.pending_calls().remove(0);
    host.respond_call(&first, 200, vec![], jwks(&[&old]).to_string().as_bytes());
    (host, vm, old, new)
}

#[test]
fn a_refetch_outlives_the_request_that_asked_for_it() {
    let (host, vm, old, new) = remote_keys_fetched();

    // The issuer rotates. An attacker sends a token with a kid nobody knows and hangs up at
    // once: the one refetch the rate limit allows is spent on it.
    let stranger = Key::rsa_n(2).with_kid("random-kid-4711");
    let forged = TokenBuilder::at(&stranger, host.now_unix()).sign();
    let id = vm.start(Request::get("/mcp").bearer(&forged));
    vm.cancel(id);
    host.advance(Duration::from_millis(100));
    let calls = host.pending_calls();
    assert_eq!(calls.len(), 1, "the refetch still happens: {calls:?}");
    host.respond_call(
        &calls[0],
        200,
        vec![],
        jwks(&[&old, &new]).to_string().as_bytes(),
    );

    // A person with a token from the new key gets in: the refetch's answer was kept.
    let valid = TokenBuilder::at(&new, host.now_unix()).sign();
    let out = vm.request(Request::get("/mcp").bearer(&valid));
    assert!(out.is_forwarded(), "{out:?}");
    assert_eq!(host.metric("mcp_auth.jwks.refetch_unknown_kid"), Some(1));
}

#[test]
fn a_refetch_slower_than_a_tick_keeps_its_request_waiting() {
    let (host, vm, old, new) = remote_keys_fetched();
    let rotated = TokenBuilder::at(&new, host.now_unix()).sign();
    let id = vm.start(Request::get("/mcp").bearer(&rotated));
    // The issuer takes a second to answer; the root ticks ten times meanwhile.
    for _ in 0..10 {
        host.advance(Duration::from_millis(100));
        assert!(
            matches!(vm.outcome(id), Outcome::Paused),
            "{:?}",
            vm.outcome(id)
        );
    }
    let call = host.pending_calls().remove(0);
    host.respond_call(
        &call,
        200,
        vec![],
        jwks(&[&old, &new]).to_string().as_bytes(),
    );
    assert!(vm.outcome(id).is_forwarded());
}

#[test]
fn claim_headers_are_stripped_on_every_route_and_identity_comes_from_the_token() {
    let key = Key::rsa();
    let jwks = jwks(&[&key]);
    let config = format!(
        r#"
routes:
  tools:
    policies:
      mcpAuthentication:
        issuer: {OKTA_ISSUER}
        audiences: [{OKTA_AUDIENCE}]
        jwks: '{jwks}'
        claimsToHeaders:
          sub: x-user
  public:
    policies:
      mcpAuthentication:
        mode: optional
        issuer: {OKTA_ISSUER}
        audiences: [{OKTA_AUDIENCE}]
        jwks: '{jwks}'
"#
    );
    let host = Host::new();
    let vm = host.vm(&config).unwrap();
    let forged = |route: &str| {
        Request::get("/mcp")
            .property("xds.route_name", route)
            .header("x-user", "admin")
            .header("x-mcp-auth-identity", "forged.identity")
    };
    // A route without claimsToHeaders: the header another route sets is never passed on.
    let out = vm.request(forged("public"));
    assert!(out.is_forwarded(), "{out:?}");
    assert_eq!(out.upstream_header("x-user"), None);
    assert_eq!(out.upstream_header("x-mcp-auth-identity"), None);
    // A route this configuration does not know: stripped too.
    let out = vm.request(forged("elsewhere"));
    assert_eq!(out.upstream_header("x-user"), None);
    assert_eq!(out.upstream_header("x-mcp-auth-identity"), None);
    // With a token: the headers carry the verified values only.
    let token = TokenBuilder::new(&key).sub("alice@example.com").sign();
    let out = vm.request(forged("tools").bearer(&token));
    assert_eq!(
        out.upstream_header("x-user").as_deref(),
        Some("alice@example.com")
    );
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    assert_eq!(
        out.upstream_header("x-mcp-auth-identity"),
        Some(format!("{}.{}", b64(OKTA_ISSUER), b64("alice@example.com")))
    );
}

#[test]
fn the_legacy_sse_transport_is_refused_where_rules_hide_items() {
    let key = Key::rsa();
    let (_, vm) = vm(&key, "strict", "");
    let a = TokenBuilder::new(&key).groups(&["A"]).sign();
    let out = vm.request(
        Request::get("/mcp/sse")
            .header("accept", "text/event-stream")
            .bearer(&a),
    );
    assert_eq!(out.status(), 400, "{out:?}");
    assert!(out.response().unwrap().text().contains("Streamable HTTP"));
    let out = vm.request(post().bearer(&a).body(&call(1, "echo")));
    assert!(out.is_forwarded());
    let legacy = Request::post("/mcp/message?sessionId=abc")
        .header("content-type", "application/json")
        .bearer(&a)
        .body(&call(1, "echo"));
    assert_eq!(vm.request(legacy).status(), 400);
}

#[test]
fn a_list_answer_the_filter_cannot_read_never_passes_as_it_came() {
    let key = Key::rsa();
    let (_, vm) = vm(&key, "strict", "");
    let a = TokenBuilder::new(&key).groups(&["A"]).sign();
    let list = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}).to_string();
    let answer = json!({"jsonrpc": "2.0", "id": 9,
        "result": {"tools": [{"name": "echo"}, {"name": "get-env"}]}})
    .to_string();
    let ask = |headers: Vec<(String, String)>, body: &[u8]| {
        vm.request(
            post()
                .bearer(&a)
                .body(list.as_bytes())
                .upstream_response(200, headers, body),
        )
    };
    let ct = |v: &str| ("content-type".to_string(), v.to_string());
    // Compressed: refused, not passed on.
    let out = ask(
        vec![
            ct("application/json"),
            ("content-encoding".into(), "gzip".into()),
        ],
        answer.as_bytes(),
    );
    assert_eq!(out.status(), 502, "{out:?}");
    // A content type the filter does not read.
    let out = ask(vec![ct("text/plain")], answer.as_bytes());
    assert_eq!(out.status(), 502, "{out:?}");
    assert!(!out.response().unwrap().text().contains("get-env"));
    // JSON that does not parse.
    let out = ask(
        vec![ct("application/json")],
        b"{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"tools\":[{\"name\":\"get-env\"}]",
    );
    assert!(
        !out.response().unwrap().text().contains("get-env"),
        "{out:?}"
    );
    // Readable: filtered.
    let out = ask(vec![ct("application/json")], answer.as_bytes());
    let body = out.response().unwrap().json();
    assert_eq!(body["result"]["tools"], json!([{"name": "echo"}]), "{body}");
}

/// A route that hides what group A may not use: tools but `echo`, the `secret` prompt, and
/// resources under `demo://resource/private/`.
fn hiding_config(key: &Key) -> String {
    format!(
        r#"
mcpTargets: [everything]
policies:
  mcpAuthentication:
    issuer: {OKTA_ISSUER}
    audiences: [{OKTA_AUDIENCE}]
    jwks: '{jwks}'
  authorization:
    rules:
    - allow: 'mcp.tool.name == "echo"'
    - deny: 'mcp.prompt.name == "secret" || mcp.resource.uri.startsWith("demo://resource/private/")'
    - allow: 'has(mcp.prompt) || has(mcp.resource)'
"#,
        jwks = jwks(&[key])
    )
}

/// A VM on [`hiding_config`] and a token its key signed (the host must outlive the VM).
fn hiding_vm() -> (Host, Vm, String) {
    let key = Key::rsa();
    let host = Host::new();
    let vm = host.vm(&hiding_config(&key)).unwrap();
    let token = TokenBuilder::new(&key).sign();
    (host, vm, token)
}

fn list_answer(id: i64) -> String {
    json!({"jsonrpc": "2.0", "id": id,
           "result": {"tools": [{"name": "echo"}, {"name": "get-env"}]}})
    .to_string()
}

#[test]
fn an_event_stream_ended_with_any_line_ending_is_filtered() {
    let (_host, vm, token) = hiding_vm();
    let ask = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}).to_string();
    let answer = list_answer(5);
    for ending in ["\r\n\n", "\n\r\n", "\r\r", "\r\n\r\n", "\r\n\r"] {
        let event = format!("event: message\r\ndata: {answer}{ending}");
        let (a, b) = event.as_bytes().split_at(event.len() - 2);
        let out = vm.request(post().bearer(&token).body(ask.as_bytes()).upstream_chunks(
            200,
            vec![("content-type".into(), "text/event-stream".into())],
            &[a, b],
        ));
        let text = out.response().unwrap().text();
        assert!(!text.contains("get-env"), "{ending:?}: {text}");
        assert!(text.contains("echo"), "{ending:?}: {text}");
    }
}

#[test]
fn resource_uris_are_judged_as_the_server_resolves_them() {
    let (_host, vm, token) = hiding_vm();
    for uri in [
        "demo://resource/private/keys",
        "DEMO://resource/private/keys",
        "demo://resource/public/../private/keys",
        "demo://resource/./private/keys",
        " demo://resource/private/keys",
        "demo://resource/private/\tkeys",
    ] {
        let body = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read",
                          "params": {"uri": uri}});
        let out = vm.request(post().bearer(&token).body(body.to_string().as_bytes()));
        assert!(!out.is_forwarded(), "{uri:?} reached the server");
    }
    let fine = json!({"jsonrpc": "2.0", "id": 3, "method": "resources/read",
                      "params": {"uri": "demo://resource/public/readme"}});
    assert!(
        vm.request(post().bearer(&token).body(fine.to_string().as_bytes()))
            .is_forwarded()
    );
    // A URI that does not parse cannot be judged: refused.
    let bad = json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read",
                     "params": {"uri": "no scheme here"}});
    assert_eq!(
        vm.request(post().bearer(&token).body(bad.to_string().as_bytes()))
            .status(),
        400
    );
}

#[test]
fn a_batch_repeating_an_id_and_calls_without_a_name_are_refused() {
    let (_host, vm, token) = hiding_vm();
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "prompts/list"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    ]);
    let out = vm.request(post().bearer(&token).body(batch.to_string().as_bytes()));
    assert_eq!(out.status(), 400, "{out:?}");
    for params in [
        json!({"name": ["echo"]}),
        json!(["echo"]),
        json!({}),
        Value::Null,
    ] {
        let mut body = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call"});
        if !params.is_null() {
            body["params"] = params.clone();
        }
        let out = vm.request(post().bearer(&token).body(body.to_string().as_bytes()));
        assert_eq!(out.status(), 400, "{params}: {out:?}");
    }
}

#[test]
fn a_rule_reading_two_kinds_applies_to_each() {
    let key = Key::rsa();
    let host = Host::new();
    let vm = host.vm(&hiding_config(&key)).unwrap();
    let token = TokenBuilder::new(&key).sign();
    let get = |name: &str| {
        json!({"jsonrpc": "2.0", "id": 8, "method": "prompts/get", "params": {"name": name}})
            .to_string()
    };
    denied(
        &vm.request(post().bearer(&token).body(get("secret").as_bytes())),
        8,
    );
    assert!(
        vm.request(post().bearer(&token).body(get("simple").as_bytes()))
            .is_forwarded()
    );
    // A rule that could never hold for a kind it reads is refused with the reason.
    let never = hiding_config(&key).replace(
        "'has(mcp.prompt) || has(mcp.resource)'",
        "'mcp.tool.name == \"a\" && mcp.prompt.name == \"b\"'",
    );
    assert!(Host::new().vm(&never).is_err());
}

/// What the client receives when the upstream answers `request` with a 200, `headers` and
/// `body` in one chunk.
fn answered(vm: &Vm, request: Request, headers: &[(&str, &str)], body: &str) -> String {
    let headers = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    vm.request(request.upstream_chunks(200, headers, &[body.as_bytes()]))
        .response()
        .unwrap()
        .text()
}

const EVENT_STREAM: (&str, &str) = ("content-type", "text/event-stream");

#[test]
fn answers_outside_their_request_stream_are_refused() {
    let (_host, vm, token) = hiding_vm();
    // A list answer arriving on the GET stream (as the legacy transport, or a resumed stream,
    // would carry it) cannot be filtered for the request that asked: refused.
    let event = format!("event: message\ndata: {}\n\n", list_answer(12));
    let get = || Request::get("/mcp").bearer(&token);
    let text = answered(
        &vm,
        get().header("accept", "text/event-stream"),
        &[EVENT_STREAM],
        &event,
    );
    assert!(!text.contains("get-env"), "{text}");
    assert!(text.contains("\"error\""), "{text}");
    // The server's own requests and notifications on that stream pass.
    let note = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";
    assert!(answered(&vm, get(), &[EVENT_STREAM], note).contains("list_changed"));
}

#[test]
fn a_call_answered_by_a_stream_under_any_spelling_of_its_type_is_judged() {
    let (_host, vm, token) = hiding_vm();
    let echo = || post().bearer(&token).body(&call(3, "echo"));
    // A list answer for another id inside the stream that answers a call is refused, however
    // the server spells the stream's content type: a client that finds `text/event-stream`
    // anywhere in it reads the stream.
    let event = format!("event: message\ndata: {}\n\n", list_answer(12));
    for content_type in [
        "text/event-stream",
        "Text/Event-Stream; charset=utf-8",
        "  text/event-stream",
        "application/json, text/event-stream",
    ] {
        let text = answered(&vm, echo(), &[("content-type", content_type)], &event);
        assert!(!text.contains("get-env"), "{content_type}: {text}");
        assert!(text.contains("\"error\""), "{content_type}: {text}");
    }
    // A second content type is seen as a client's header API joins the two.
    let both = [("content-type", "application/json"), EVENT_STREAM];
    let text = answered(&vm, echo(), &both, &event);
    assert!(!text.contains("get-env"), "two content types: {text}");
    // A JSON answer passes as the server wrote it.
    let answer = r#"{"jsonrpc":"2.0","id":3,"result":{"content":[]}}"#;
    let json = [("content-type", "application/json")];
    assert_eq!(answered(&vm, echo(), &json, answer), answer);
}

#[test]
fn mcp_method_and_name_headers_that_disagree_with_the_body_are_refused() {
    let key = Key::rsa();
    let (_, vm) = vm(&key, "strict", "");
    let a = TokenBuilder::new(&key).groups(&["A"]).sign();
    // An intermediary routing on the headers would see an echo; the body asks for get-env.
    let out = vm.request(
        post()
            .bearer(&a)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "echo")
            .body(&call(11, "get-env")),
    );
    assert_eq!(out.status(), 400, "{out:?}");
    let body = out.response().unwrap().json();
    assert_eq!(body["error"]["code"], -32020, "{body}");
    assert_eq!(body["id"], 11);
    let out = vm.request(
        post()
            .bearer(&a)
            .header("mcp-method", "tools/list")
            .body(&call(12, "echo")),
    );
    assert_eq!(out.status(), 400);
    // 2026-07-28 requires the headers: a modern request without them is refused too.
    let out = vm.request(
        post()
            .bearer(&a)
            .header("mcp-protocol-version", "2026-07-28")
            .body(&call(13, "echo")),
    );
    assert_eq!(out.status(), 400);
    // A repeated header is refused, whichever copy agrees with the body.
    let out = vm.request(
        post()
            .bearer(&a)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "echo")
            .header("mcp-name", "get-env")
            .body(&call(15, "echo")),
    );
    assert_eq!(out.status(), 400, "{out:?}");
    // Agreeing headers pass.
    let out = vm.request(
        post()
            .bearer(&a)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "echo")
            .body(&call(14, "echo")),
    );
    assert!(out.is_forwarded(), "{out:?}");
}

fn fast_path_config(key: &Key, rule: &str) -> String {
    format!(
        r#"
holdHeaders: true
mcpTargets: [everything]
policies:
  mcpAuthentication:
    issuer: {OKTA_ISSUER}
    audiences: [{OKTA_AUDIENCE}]
    jwks: '{jwks}'
  authorization:
    trustMcpHeaders: true
    rules:
    - allow: '{rule}'
"#,
        jwks = jwks(&[key])
    )
}

fn modern(token: &str, name: &str, body: &[u8]) -> Request {
    let (head, rest) = body.split_at(body.len() / 2);
    post()
        .bearer(token)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", name)
        .body_chunks(&[head, rest])
}

#[test]
fn a_2026_call_judged_from_its_headers_is_not_buffered_and_a_denial_still_reads_the_body() {
    let key = Key::rsa();
    let host = Host::new();
    let vm = host
        .vm(&fast_path_config(&key, "mcp.tool.name == \"echo\""))
        .unwrap();
    let token = TokenBuilder::new(&key).sign();
    // Allowed by its headers: headers and body go on as they come, nothing held.
    let id = vm.start(modern(&token, "echo", &call(1, "echo")));
    assert_eq!(vm.outcome(id).forwarded_json()["params"]["name"], "echo");
    assert!(vm.upstream_started_early(id), "the body was not held");
    assert_eq!(host.metric("mcp_auth.header_fast_path"), Some(1));
    // Denied by its headers: the body is read, for the denial's id.
    let out = vm.request(modern(&token, "get-env", &call(2, "get-env")));
    denied(&out, 2);
    // Headers that disagree with the body on the fast path: what the filter judged is the
    // header, and the server must reject the mismatch (the shim does: `protocol_e2e.rs`).
    // Without the fast path the filter itself catches it:
    let strict = Host::new();
    let vm = strict
        .vm(&fast_path_config(&key, "mcp.tool.name == \"echo\"")
            .replace("trustMcpHeaders: true", "trustMcpHeaders: false"))
        .unwrap();
    let out = vm.request(modern(&token, "echo", &call(3, "get-env")));
    assert_eq!(out.status(), 400, "{out:?}");
    assert_eq!(strict.metric("mcp_auth.header_fast_path"), None);
}

#[test]
fn rules_that_read_arguments_never_take_the_header_fast_path() {
    let key = Key::rsa();
    let host = Host::new();
    let vm = host
        .vm(&fast_path_config(
            &key,
            "mcp.tool.name == \"echo\" && !has(mcp.tool.arguments.secret)",
        ))
        .unwrap();
    let token = TokenBuilder::new(&key).sign();
    let id = vm.start(modern(&token, "echo", &call(1, "echo")));
    assert!(vm.outcome(id).is_forwarded());
    assert!(
        !vm.upstream_started_early(id),
        "held until the body was judged"
    );
    assert_eq!(host.metric("mcp_auth.header_fast_path"), None);
}
