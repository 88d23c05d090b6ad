//! `host-shim serve` seen from an MCP client: a real shim process on a free loopback port,
//! serving the real `@modelcontextprotocol/server-everything` (installed by `npm ci`), spoken
//! to over Streamable HTTP and the legacy SSE transport with a plain HTTP client. The process
//! tree is checked through `/proc`: one child per session, none left after DELETE, TTL expiry
//! or SIGTERM. Identities are sent as the filter would send them, in `x-mcp-auth-identity`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use ureq::http::Response;
use ureq::{Agent, Body};

mod common;
use common::{
    alive, as_identity, children, eventually, everything, exit_within, initialize, next_event,
    next_with_id, signal, temp_path, text_of, tree,
};

/// A target running server-everything with node directly (one process per child).
fn node_target(name: &str) -> String {
    format!(
        "          - name: {name}\n            stdio:\n              cmd: node\n              args: [\"{}\", \"stdio\"]\n",
        everything()
    )
}

fn config(targets: &str, ttl: Option<&str>) -> String {
    let ttl = ttl.map_or(String::new(), |t| format!("          sessionTtl: {t}\n"));
    format!(
        "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - name: tools\n      backends:\n      - mcp:\n{ttl}          targets:\n{targets}"
    )
}

/// A running shim; killed when dropped so a failing test leaves no process behind.
struct Shim {
    process: common::Serve,
    agent: Agent,
}

impl Shim {
    fn start(config: &str) -> Shim {
        Shim::start_with(config, &["--listen", "127.0.0.1:0"])
    }

    fn start_with(config: &str, args: &[&str]) -> Shim {
        Shim {
            process: common::Serve::start(config, args),
            agent: common::agent(),
        }
    }

    fn url(&self) -> String {
        format!("{}/mcp", self.process.base)
    }

    /// POSTs `body`; returns the status, the session header and every JSON-RPC message of the
    /// answer (one for JSON, all events for SSE).
    fn post(
        &self,
        session: Option<&str>,
        accept: &str,
        body: &Json,
    ) -> (u16, Option<String>, Vec<Json>) {
        self.post_as(None, session, accept, body)
    }

    /// [`Shim::post`] by `identity` (`None`: anonymous).
    fn post_as(
        &self,
        identity: Option<&str>,
        session: Option<&str>,
        accept: &str,
        body: &Json,
    ) -> (u16, Option<String>, Vec<Json>) {
        let mut request =
            as_identity(self.agent.post(self.url()), identity).header("accept", accept);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        let reply = common::send(request, body);
        (reply.status, reply.session, reply.messages)
    }

    /// A new initialized session (`notifications/initialized` sent).
    fn session(&self) -> String {
        self.session_as(None)
    }

    fn session_as(&self, identity: Option<&str>) -> String {
        let (status, session, answer) = self.post_as(
            identity,
            None,
            "application/json, text/event-stream",
            &initialize(1),
        );
        assert_eq!(status, 200, "{answer:?}");
        assert!(
            answer[0]["result"]["protocolVersion"].is_string(),
            "{answer:?}"
        );
        let session = session.expect("Mcp-Session-Id");
        let (status, _, _) = self.post_as(
            identity,
            Some(&session),
            "application/json, text/event-stream",
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        );
        assert_eq!(status, 202);
        session
    }

    /// The answer to request `method`, as JSON (not SSE).
    fn call(&self, session: &str, method: &str, params: Json) -> (u16, Json) {
        self.call_as(None, session, method, params)
    }

    fn call_as(
        &self,
        identity: Option<&str>,
        session: &str,
        method: &str,
        params: Json,
    ) -> (u16, Json) {
        let (status, _, mut answer) = self.post_as(
            identity,
            Some(session),
            "application/json",
            &json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}),
        );
        (status, answer.pop().unwrap_or(Json::Null))
    }

    /// The answer to a `tools/call` of `tool` with `arguments`.
    fn call_tool(&self, session: &str, tool: &str, arguments: Json) -> Json {
        let params = json!({"name": tool, "arguments": arguments});
        self.call(session, "tools/call", params).1
    }

    fn delete(&self, session: &str) -> u16 {
        self.delete_as(None, session).0
    }

    /// The status and body of a DELETE of `session` by `identity`.
    fn delete_as(&self, identity: Option<&str>, session: &str) -> (u16, String) {
        let request = self.agent.delete(self.url());
        let mut response = as_identity(request, identity)
            .header("mcp-session-id", session)
            .call()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    /// Opens the standalone stream of `session` as `identity`.
    fn stream_as(&self, identity: Option<&str>, session: &str) -> Response<Body> {
        as_identity(self.agent.get(self.url()), identity)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session)
            .call()
            .unwrap()
    }

    /// The status and body of a GET of the standalone stream of `session` by `identity`; for a
    /// 200, only the status (the stream stays open).
    fn get_as(&self, identity: Option<&str>, session: &str) -> (u16, String) {
        let mut response = self.stream_as(identity, session);
        let status = response.status().as_u16();
        if status == 200 {
            return (status, String::new());
        }
        (status, response.body_mut().read_to_string().unwrap())
    }

    /// Opens a legacy SSE session (`GET /sse`) as `identity`.
    fn legacy_as(&self, identity: Option<&str>) -> Response<Body> {
        let request = self.agent.get(format!("{}/sse", self.process.base));
        as_identity(request, identity)
            .header("accept", "text/event-stream")
            .call()
            .unwrap()
    }

    /// Lists `session`'s resources and reads the first one: it is the one read.
    fn reads_the_first_resource(&self, session: &str) {
        let (_, resources) = self.call(session, "resources/list", json!({}));
        let uri = resources["result"]["resources"][0]["uri"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, read) = self.call(session, "resources/read", json!({"uri": uri}));
        assert_eq!(read["result"]["contents"][0]["uri"], uri.as_str(), "{read}");
    }

    fn pid(&self) -> u32 {
        self.process.child.id()
    }

    fn log_contains(&self, needle: &str) -> bool {
        self.process.log_contains(needle)
    }
}

/// A live event stream, read line by line.
fn reader(response: Response<Body>) -> impl BufRead {
    BufReader::new(response.into_body().into_reader())
}

/// Waits for the process `pid` to be gone, as `what` says it should be.
fn gone(pid: u32, what: &str) {
    eventually(what, Duration::from_secs(10), || !alive(pid));
}

#[test]
fn a_session_lists_calls_and_reads_and_ends_with_delete() {
    let shim = Shim::start(&config(&node_target("my-server"), None));
    let session = shim.session();

    let (status, tools) = shim.call(&session, "tools/list", json!({}));
    assert_eq!(status, 200);
    let names = common::tool_names(&tools["result"]);
    assert!(names.contains(&"echo"), "{names:?}");

    let echoed = shim.call_tool(&session, "echo", json!({"message": "hello"}));
    assert_eq!(text_of(&echoed), "Echo: hello");

    shim.reads_the_first_resource(&session);

    // The same call answered as an event stream, progress notifications first.
    let (status, _, events) = shim.post(
        Some(&session),
        "application/json, text/event-stream",
        &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
            "name": "trigger-long-running-operation",
            "arguments": {"duration": 0.2, "steps": 2},
            "_meta": {"progressToken": "p"},
        }}),
    );
    assert_eq!(status, 200);
    let methods: Vec<&str> = events
        .iter()
        .map(|e| e["method"].as_str().unwrap_or("(response)"))
        .collect();
    assert_eq!(
        methods,
        [
            "notifications/progress",
            "notifications/progress",
            "(response)"
        ]
    );
    assert_eq!(events[2]["id"], 9);

    let child = children(shim.pid());
    assert_eq!(child.len(), 1, "one child for one session");
    assert_eq!(shim.delete(&session), 200);
    gone(*child.first().unwrap(), "the child to be gone after DELETE");
    let (status, _) = shim.call(&session, "tools/list", json!({}));
    assert_eq!(status, 404, "a deleted session is not found");
}

#[test]
fn the_transport_rules() {
    let shim = Shim::start(&config(&node_target("my-server"), None));
    let (status, _, answer) = shim.post(
        None,
        "application/json",
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    );
    assert_eq!(status, 400, "no session id: {answer:?}");
    let (status, _, _) = shim.post(
        Some("no-such-session"),
        "application/json",
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    );
    assert_eq!(status, 404);
    let session = shim.session();
    let mut response = shim
        .agent
        .post(shim.url())
        .header("accept", "application/json")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "1999-01-01")
        .send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string())
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        400,
        "{}",
        response.body_mut().read_to_string().unwrap()
    );
    // A batch is answered as an array.
    let (status, _, answer) = shim.post(
        Some(&session),
        "application/json",
        &json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 2, "method": "ping"}]),
    );
    assert_eq!(status, 200);
    assert_eq!(answer[0].as_array().unwrap().len(), 2);
    // The standalone stream gets what the server said with no request to attach it to (the
    // server's `tools/list_changed` at start-up, held until the client was initialized).
    let response = shim.stream_as(None, &session);
    assert_eq!(response.status().as_u16(), 200);
    let (_, data) = next_event(&mut reader(response));
    let message: Json = serde_json::from_str(&data).unwrap();
    assert_eq!(
        message["method"], "notifications/tools/list_changed",
        "{message}"
    );
}

#[test]
fn two_targets_are_one_server_with_prefixed_names() {
    let targets = format!("{}{}", node_target("a"), node_target("b"));
    let shim = Shim::start(&config(&targets, None));
    let session = shim.session();
    let (_, tools) = shim.call(&session, "tools/list", json!({}));
    let names: BTreeSet<&str> = common::tool_names(&tools["result"]).into_iter().collect();
    assert!(
        names.contains("a_echo") && names.contains("b_echo"),
        "{names:?}"
    );
    assert!(!names.contains("echo"));
    for target in ["a", "b"] {
        let name = format!("{target}_echo");
        let echoed = shim.call_tool(&session, &name, json!({"message": target}));
        assert_eq!(text_of(&echoed), format!("Echo: {target}"));
    }
    common::assert_unknown_tool(&shim.call_tool(&session, "c_echo", json!({})));
    let (_, prompts) = shim.call(&session, "prompts/list", json!({}));
    let prompt = prompts["result"]["prompts"][0]["name"].as_str().unwrap();
    assert!(prompt.starts_with("a_"), "{prompt}");
    shim.reads_the_first_resource(&session);
    assert_eq!(children(shim.pid()).len(), 2, "one child per target");
}

#[test]
fn idle_sessions_expire() {
    let shim = Shim::start(&config(&node_target("my-server"), Some("1s")));
    let session = shim.session();
    let pid = *children(shim.pid()).first().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let (status, _) = shim.call(&session, "tools/list", json!({}));
    assert_eq!(status, 404);
    gone(pid, "the expired session's child to be gone");
}

#[test]
fn server_requests_reach_the_client_and_answers_go_back() {
    let shim = Shim::start(&config(&node_target("my-server"), None));
    let session = shim.session();
    // The tool asks the client for a sampling; the request comes on the call's stream.
    let response = shim
        .agent
        .post(shim.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .send(
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
                "name": "trigger-sampling-request", "arguments": {"prompt": "hi", "maxTokens": 5},
            }})
            .to_string(),
        )
        .unwrap();
    let mut reader = reader(response);
    let request = next_with_id(&mut reader);
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {
        "role": "assistant", "model": "test", "content": {"type": "text", "text": "sampled"},
    }});
    let (status, _, _) = shim.post(
        Some(&session),
        "application/json, text/event-stream",
        &answer,
    );
    assert_eq!(status, 202);
    let (_, data) = next_event(&mut reader);
    let result: Json = serde_json::from_str(&data).unwrap();
    assert_eq!(result["id"], 5);
    assert!(text_of(&result).contains("sampled"), "{result}");
}

#[test]
fn the_legacy_sse_transport() {
    let shim = Shim::start(&config(&node_target("my-server"), None));
    let mut reader = reader(shim.legacy_as(None));
    let (event, endpoint) = next_event(&mut reader);
    assert_eq!(event, "endpoint");
    assert!(endpoint.starts_with("/message?sessionId="), "{endpoint}");
    let post = |body: Json| {
        shim.agent
            .post(format!("{}{endpoint}", shim.process.base))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post(initialize(1)), 202);
    assert!(next_with_id(&mut reader)["result"]["protocolVersion"].is_string());
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
        202
    );
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "legacy"}}})),
        202
    );
    let answer = next_with_id(&mut reader);
    assert_eq!(answer["id"], 2);
    assert_eq!(text_of(&answer), "Echo: legacy");
    let pid = *children(shim.pid()).first().unwrap();
    drop(reader);
    gone(pid, "hanging up to end the session");
}

#[test]
fn the_guides_npx_target_runs_and_sigterm_leaves_nothing_behind() {
    everything();
    let target = "          - name: my-server\n            stdio:\n              cmd: npx\n              args: [\"@modelcontextprotocol/server-everything\"]\n";
    let mut shim = Shim::start(&config(target, None));
    let sessions = [shim.session(), shim.session()];
    for session in &sessions {
        let echoed = shim.call_tool(session, "echo", json!({"message": "npx"}));
        assert_eq!(text_of(&echoed), "Echo: npx");
    }
    // npx runs node below itself: the shim's tree is deeper than its children.
    let before = tree(shim.pid());
    assert!(
        before.len() > 2,
        "npx and its node for each session: {before:?}"
    );
    signal(shim.pid(), "TERM");
    let status = exit_within(
        &mut shim.process.child,
        Duration::from_secs(15),
        "the shim did not exit on SIGTERM",
    );
    assert!(status.success(), "{status:?}");
    let left: Vec<String> = before
        .into_iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    shim.process.wait_for_log("serve: stopped");
}

fn tools_call_echo(message: &str) -> Json {
    json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": message}}})
}

#[test]
fn a_session_answers_only_the_identity_that_opened_it() {
    let shim = Shim::start(&config(&node_target("my-server"), None));
    let (alice, bob) = (Some("token-of-alice"), Some("token-of-bob"));
    let session = shim.session_as(alice);
    let unknown = "0123456789abcdef0123456789abcdef";
    let (status, _, not_found) = shim.post_as(
        bob,
        Some(unknown),
        "application/json",
        &tools_call_echo("x"),
    );
    assert_eq!(status, 404);
    let (_, delete_not_found) = shim.delete_as(bob, unknown);
    let (_, get_not_found) = shim.get_as(bob, unknown);

    // Another identity, or none, is told exactly what an unknown session id is told.
    for intruder in [bob, None] {
        let (status, header, answer) = shim.post_as(
            intruder,
            Some(&session),
            "application/json, text/event-stream",
            &tools_call_echo("not yours"),
        );
        assert_eq!((status, header), (404, None), "{answer:?}");
        assert_eq!(answer, not_found);
        assert_eq!(
            shim.get_as(intruder, &session),
            (404, get_not_found.clone())
        );
        assert_eq!(
            shim.delete_as(intruder, &session),
            (404, delete_not_found.clone())
        );
    }
    shim.process.wait_for_log(&format!(
        "session {}: the caller's identity did not match the session's: 404",
        &session[..8]
    ));
    assert!(
        !shim.log_contains("token-of-alice") && !shim.log_contains("token-of-bob"),
        "identities are never logged"
    );

    // The DELETEs ended nothing: alice's session and its child go on.
    let child = children(shim.pid());
    assert_eq!(child.len(), 1);
    let (status, echoed) = shim.call_as(
        alice,
        &session,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "still mine"}}),
    );
    assert_eq!(status, 200);
    assert_eq!(text_of(&echoed), "Echo: still mine");
    assert_eq!(shim.get_as(alice, &session).0, 200);
    assert_eq!(children(shim.pid()), child);

    // An anonymous session is no one else's either.
    let anonymous = shim.session();
    let (status, _) = shim.call_as(alice, &anonymous, "tools/list", json!({}));
    assert_eq!(status, 404);
    let (status, _) = shim.call(&anonymous, "tools/list", json!({}));
    assert_eq!(status, 200);
    assert_eq!(shim.delete_as(alice, &session).0, 200);
}

#[test]
fn a_legacy_session_answers_only_the_identity_that_opened_it() {
    let shim = Shim::start(&config(&node_target("my-server"), None));
    let mut reader = reader(shim.legacy_as(Some("token-of-alice")));
    let (_, endpoint) = next_event(&mut reader);
    let post = |identity: Option<&str>, path: &str, body: Json| {
        let request = shim.agent.post(format!("{}{path}", shim.process.base));
        let mut response = as_identity(request, identity)
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    };
    let not_found = post(
        Some("token-of-bob"),
        "/message?sessionId=0123456789abcdef0123456789abcdef",
        initialize(1),
    );
    assert_eq!(not_found.0, 404);
    for intruder in [Some("token-of-bob"), None] {
        assert_eq!(post(intruder, &endpoint, initialize(1)), not_found);
    }
    assert!(children(shim.pid()).is_empty(), "no child for an intruder");
    assert_eq!(
        post(Some("token-of-alice"), &endpoint, initialize(1)).0,
        202
    );
    let answer = next_with_id(&mut reader);
    assert!(answer["result"]["protocolVersion"].is_string(), "{answer}");
}

#[test]
fn sessions_are_capped_per_identity_and_in_total() {
    let shim = Shim::start_with(
        &config(&node_target("my-server"), Some("10m")),
        &[
            "--listen",
            "127.0.0.1:0",
            "--max-sessions",
            "3",
            "--max-sessions-per-identity",
            "2",
        ],
    );
    let (alice, bob, carol) = (Some("alice"), Some("bob"), Some("carol"));
    let first = shim.session_as(alice);
    shim.session_as(alice);
    let refused = |identity| {
        let (status, session, answer) =
            shim.post_as(identity, None, "application/json", &initialize(1));
        assert_eq!((status, session), (429, None), "{answer:?}");
        assert_eq!(answer[0]["error"]["code"], -32000, "{answer:?}");
        answer[0]["error"]["message"].as_str().unwrap().to_string()
    };
    let message = refused(alice);
    for part in [
        "2 sessions",
        "--max-sessions-per-identity",
        "DELETE",
        "idle for the session TTL (600s)",
    ] {
        assert!(message.contains(part), "{part:?} in {message:?}");
    }
    assert_eq!(
        children(shim.pid()).len(),
        2,
        "no child for a refused session"
    );

    shim.session_as(bob);
    let message = refused(carol);
    assert!(
        message.contains("3 sessions") && message.contains("(--max-sessions)"),
        "{message}"
    );
    // The legacy transport is refused the same way.
    let mut response = shim.legacy_as(carol);
    assert_eq!(response.status().as_u16(), 429);
    let answer: Json =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(answer["error"]["code"], -32000);
    assert_eq!(children(shim.pid()).len(), 3);

    // Ending a session frees its place, for anyone.
    assert_eq!(shim.delete_as(alice, &first).0, 200);
    shim.session_as(carol);
    refused(alice);
}

#[test]
fn legacy_sessions_count_against_the_caps() {
    let shim = Shim::start_with(
        &config(&node_target("my-server"), None),
        &[
            "--listen",
            "127.0.0.1:0",
            "--max-sessions-per-identity",
            "1",
        ],
    );
    let response = shim.legacy_as(Some("alice"));
    assert_eq!(response.status().as_u16(), 200);
    let mut reader = reader(response);
    let (event, _) = next_event(&mut reader);
    assert_eq!(event, "endpoint");
    let (status, _, _) = shim.post_as(Some("alice"), None, "application/json", &initialize(1));
    assert_eq!(status, 429, "the open /sse stream is alice's one session");
    shim.session_as(Some("bob"));
    // Hanging up ends the legacy session, and alice may start another.
    drop(reader);
    eventually("alice's place to be freed", Duration::from_secs(10), || {
        shim.post_as(Some("alice"), None, "application/json", &initialize(1))
            .0
            == 200
    });
}

/// One HTTP/1.1 request over a Unix socket: the status, the headers (lower-cased names) and
/// the body.
fn unix_request(
    socket: &std::path::Path,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} /mcp HTTP/1.1\r\nhost: shim\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

#[test]
fn a_unix_socket_is_owner_only_serves_mcp_and_is_removed_at_exit() {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let socket = temp_path("shim.sock");
    // What a killed shim leaves behind: a socket file nobody listens on. It is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let listen = format!("unix:{}", socket.display());
    let shim = Shim::start_with(
        &config(&node_target("my-server"), None),
        &["--listen", &listen],
    );
    assert_eq!(shim.process.base, listen, "the first line names the socket");
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let (status, headers, body) = unix_request(
        &socket,
        "POST",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ],
        &initialize(1).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let session = headers
        .iter()
        .find(|(n, _)| n == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .expect("a session id");
    let answer: Json = serde_json::from_str(&body).unwrap();
    assert!(answer["result"]["protocolVersion"].is_string(), "{answer}");
    let (status, _, _) = unix_request(&socket, "DELETE", &[("mcp-session-id", &session)], "");
    assert_eq!(status, 200);

    drop(shim);
    assert!(
        !socket.exists(),
        "the socket is removed when the shim stops"
    );
}

#[test]
fn a_file_in_the_sockets_place_is_left_alone() {
    let path = temp_path("not-a-socket");
    std::fs::write(&path, "keep me").unwrap();
    let config_path = temp_path("config.yaml");
    std::fs::write(&config_path, config(&node_target("my-server"), None)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_host-shim"))
        .arg("serve")
        .arg(&config_path)
        .arg("--listen")
        .arg(format!("unix:{}", path.display()))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn quiet_event_streams_carry_keep_alive_comments() {
    let shim = Shim::start(&config(&node_target("my-server"), None));
    let session = shim.session();
    let mut reader = reader(shim.stream_as(None, &session));
    let started = Instant::now();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended");
        if line == ": keep-alive\n" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no keep-alive within 20 s"
        );
    }
    // Every 15 s, not at once: a comment as soon as the stream opened would prove nothing.
    assert!(
        started.elapsed() >= Duration::from_secs(14),
        "{:?}",
        started.elapsed()
    );
}
