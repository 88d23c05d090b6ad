//! `host-shim serve` seen from an MCP 2026-07-28 client, in raw HTTP: no `initialize`, no
//! `Mcp-Session-Id`, every POST one request carrying its protocol version and client
//! capabilities in `_meta` and mirroring its method and target into `Mcp-Method` / `Mcp-Name`.
//! Behind the shim runs the real `@modelcontextprotocol/server-everything`, which speaks
//! 2025-11-25: the shim initializes it itself. Identities are sent as the filter sends them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead as _, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value as Json, json};
use ureq::Agent;

mod common;
use common::{Reply, as_identity, children, eventually, everything, read_event, signal, text_of};

const VERSION: &str = "2026-07-28";

fn config() -> String {
    format!(
        "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - name: tools\n      backends:\n      - mcp:\n          targets:\n          - name: my-server\n            stdio:\n              cmd: node\n              args: [\"{}\", \"stdio\"]\n",
        everything()
    )
}

/// A running shim, stopped with SIGTERM when dropped.
struct Shim {
    process: common::Serve,
    agent: Agent,
}

impl Shim {
    fn start(args: &[&str]) -> Shim {
        let args = [&["--listen", "127.0.0.1:0"], args].concat();
        Shim {
            process: common::Serve::start(&config(), &args),
            agent: common::agent(),
        }
    }

    fn url(&self) -> String {
        format!("{}/mcp", self.process.base)
    }

    fn log_contains(&self, needle: &str) -> bool {
        self.process.log_contains(needle)
    }

    /// A POST of a JSON body with exactly `headers` (besides accept and identity).
    fn post_request(
        &self,
        identity: Option<&str>,
        headers: &[(&str, &str)],
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let request = as_identity(self.agent.post(self.url()), identity);
        headers.iter().fold(
            request.header("accept", "application/json, text/event-stream"),
            |request, (name, value)| request.header(*name, *value),
        )
    }

    /// POSTs `body` with exactly `headers` (besides content type, accept and identity).
    fn post_raw(&self, identity: Option<&str>, headers: &[(&str, &str)], body: &Json) -> Reply {
        common::send(self.post_request(identity, headers), body)
    }

    /// A request as a conforming 2026-07-28 client sends it.
    fn request(&self, identity: Option<&str>, id: u64, method: &str, params: Json) -> Reply {
        let body = envelope(id, method, params);
        let name = ["name", "uri"]
            .iter()
            .find_map(|k| body["params"][*k].as_str())
            .map(str::to_string);
        let mut headers = vec![("mcp-protocol-version", VERSION), ("mcp-method", method)];
        if let Some(name) = &name
            && matches!(method, "tools/call" | "prompts/get" | "resources/read")
        {
            headers.push(("mcp-name", name));
        }
        self.post_raw(identity, &headers, &body)
    }

    fn call_tool(&self, identity: Option<&str>, tool: &str, arguments: Json) -> Reply {
        self.request(
            identity,
            9,
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
    }

    /// Opens `subscriptions/listen` for `filter`; its events arrive on the returned channel.
    fn listen(&self, identity: &str, id: &str, filter: Json) -> mpsc::Receiver<Json> {
        let body = json!({
            "jsonrpc": "2.0", "id": id, "method": "subscriptions/listen",
            "params": { "_meta": meta(), "notifications": filter },
        });
        let headers = [
            ("mcp-protocol-version", VERSION),
            ("mcp-method", "subscriptions/listen"),
        ];
        let request = self.post_request(Some(identity), &headers);
        let mut reader = open_stream(request.config().timeout_global(None).build(), &body);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            while let Some((_, data)) = read_event(&mut reader) {
                if tx.send(serde_json::from_str(&data).unwrap()).is_err() {
                    return;
                }
            }
        });
        rx
    }

    fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

fn meta() -> Json {
    json!({
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientInfo": { "name": "host-shim-tests", "version": "1" },
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

fn envelope(id: u64, method: &str, mut params: Json) -> Json {
    let mut full = meta();
    if let Some(extra) = params.get("_meta").and_then(Json::as_object) {
        for (k, v) in extra {
            full[k] = v.clone();
        }
    }
    params["_meta"] = full;
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// POSTs `body` by `request` and opens its answer, an event stream, for reading.
fn open_stream(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    body: &Json,
) -> BufReader<ureq::BodyReader<'static>> {
    let response = request
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"))
    );
    BufReader::new(response.into_body().into_reader())
}

/// The next message on a listen stream, within `timeout`.
fn next(events: &mpsc::Receiver<Json>, timeout: Duration) -> Json {
    events
        .recv_timeout(timeout)
        .unwrap_or_else(|e| panic!("no event on the listen stream within {timeout:?}: {e}"))
}

#[test]
fn discover_then_tools_resources_and_prompts_without_a_session() {
    let shim = Shim::start(&[]);
    let alice = Some("token-of-alice");

    let discovered = shim.request(alice, 1, "server/discover", json!({}));
    assert_eq!(discovered.status, 200, "{:?}", discovered.messages);
    assert_eq!(discovered.session, None, "2026-07-28 mints no session ids");
    let result = &discovered.last()["result"];
    assert_eq!(discovered.last()["id"], 1);
    let versions = result["supportedVersions"].as_array().unwrap();
    assert!(versions.contains(&json!(VERSION)), "{result}");
    assert!(result["capabilities"]["tools"].is_object(), "{result}");
    assert!(
        result["capabilities"].get("tasks").is_none(),
        "tasks are no longer core"
    );
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["cacheScope"], "private");
    assert!(result["ttlMs"].is_u64());
    let server = &result["_meta"]["io.modelcontextprotocol/serverInfo"];
    assert!(server["name"].is_string(), "{result}");
    // The shim initialized a 2025-11-25 child for it, as a client of that revision.
    shim.process
        .wait_for_log("2026-07-28 requests, protocol 2025-11-25");

    let tools = shim.request(alice, 2, "tools/list", json!({}));
    assert_eq!(tools.status, 200);
    let listed = &tools.last()["result"];
    assert_eq!(listed["resultType"], "complete");
    assert_eq!(listed["ttlMs"], 0);
    assert_eq!(listed["cacheScope"], "private");
    let names = common::tool_names(listed);
    assert!(names.contains(&"echo"), "{names:?}");
    // Initialized without client capabilities, the server offers no tool that would ask the
    // client something.
    assert!(!names.contains(&"trigger-sampling-request"), "{names:?}");

    let echoed = shim.call_tool(alice, "echo", json!({ "message": "stateless" }));
    assert_eq!(echoed.status, 200);
    assert!(!echoed.sse, "no progress asked for: plain JSON");
    assert_eq!(text_of(echoed.last()), "Echo: stateless");
    assert_eq!(echoed.last()["id"], 9);
    assert_eq!(echoed.last()["result"]["resultType"], "complete");

    let resources = shim.request(alice, 3, "resources/list", json!({}));
    let uri = resources.last()["result"]["resources"][0]["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let read = shim.request(alice, 4, "resources/read", json!({ "uri": uri }));
    assert_eq!(read.status, 200, "{:?}", read.messages);
    assert_eq!(read.last()["result"]["contents"][0]["uri"], uri.as_str());
    assert_eq!(read.last()["result"]["cacheScope"], "private");

    let prompt = shim.request(
        alice,
        5,
        "prompts/get",
        json!({ "name": "simple-prompt", "arguments": {} }),
    );
    assert_eq!(prompt.status, 200, "{:?}", prompt.messages);
    assert!(prompt.last()["result"]["messages"][0]["content"]["text"].is_string());
    assert_eq!(prompt.last()["result"]["resultType"], "complete");

    // Progress travels on the request's own stream, under the token the client chose.
    let long = shim.request(
        alice,
        6,
        "tools/call",
        json!({
            "name": "trigger-long-running-operation",
            "arguments": { "duration": 1, "steps": 2 },
            "_meta": { "progressToken": "mine" },
        }),
    );
    assert!(long.sse);
    let progress: Vec<&Json> = long
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 2, "{:?}", long.messages);
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "mine")
    );
    assert_eq!(long.last()["id"], 6);
    assert!(text_of(long.last()).contains("Long running operation completed"));

    // Every request of one identity was served by one child, started once.
    assert_eq!(children(shim.pid()).len(), 1);

    // Removed methods are unknown methods; GET and DELETE have nothing to serve.
    let ping = shim.request(alice, 7, "ping", json!({}));
    assert_eq!(ping.status, 404);
    assert_eq!(ping.last()["error"]["code"], -32601);
    let get = shim
        .agent
        .get(shim.url())
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", VERSION)
        .call()
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);
}

#[test]
fn headers_that_disagree_with_the_body_are_refused_with_header_mismatch() {
    let shim = Shim::start(&[]);
    let alice = Some("token-of-alice");
    let call = envelope(
        11,
        "tools/call",
        json!({ "name": "echo", "arguments": { "message": "x" } }),
    );
    let disagreeing: &[(&str, &[(&str, &str)])] = &[
        (
            "Mcp-Name names another tool than the body",
            &[
                ("mcp-protocol-version", VERSION),
                ("mcp-method", "tools/call"),
                ("mcp-name", "get-env"),
            ],
        ),
        (
            "Mcp-Method names another method",
            &[
                ("mcp-protocol-version", VERSION),
                ("mcp-method", "tools/list"),
                ("mcp-name", "echo"),
            ],
        ),
        (
            "Mcp-Name is missing",
            &[
                ("mcp-protocol-version", VERSION),
                ("mcp-method", "tools/call"),
            ],
        ),
        (
            "MCP-Protocol-Version is missing",
            &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
        ),
        (
            "Mcp-Name twice",
            &[
                ("mcp-protocol-version", VERSION),
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
                ("mcp-name", "echo"),
            ],
        ),
    ];
    for (why, headers) in disagreeing {
        let answer = shim.post_raw(alice, headers, &call);
        assert_eq!(answer.status, 400, "{why}: {:?}", answer.messages);
        let error = &answer.last()["error"];
        assert_eq!(error["code"], -32020, "{why}: {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .starts_with("Header mismatch"),
            "{why}: {error}"
        );
        assert_eq!(answer.last()["id"], 11, "{why}");
    }
    // The same request with agreeing headers is served, and it is the only call that reached
    // the server: the refused ones never did.
    let served = shim.call_tool(alice, "echo", json!({ "message": "x" }));
    assert_eq!(text_of(served.last()), "Echo: x");
    let calls = shim
        .process
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("call tools/call"))
        .count();
    assert_eq!(calls, 1);

    // Malformed envelopes and versions the shim does not serve have codes of their own.
    let no_meta = json!({ "jsonrpc": "2.0", "id": 12, "method": "tools/list", "params": {} });
    let answer = shim.post_raw(
        alice,
        &[
            ("mcp-protocol-version", VERSION),
            ("mcp-method", "tools/list"),
        ],
        &no_meta,
    );
    assert_eq!(
        (answer.status, &answer.last()["error"]["code"]),
        (400, &json!(-32602))
    );
    let mut future = envelope(13, "tools/list", json!({}));
    future["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let answer = shim.post_raw(
        alice,
        &[
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-method", "tools/list"),
        ],
        &future,
    );
    assert_eq!(answer.status, 400, "{:?}", answer.messages);
    let error = &answer.last()["error"];
    assert_eq!(error["code"], -32022);
    assert_eq!(error["data"]["supported"], json!([VERSION]));
    assert_eq!(error["data"]["requested"], "2099-01-01");
}

#[test]
fn a_subscribed_resource_update_arrives_on_subscriptions_listen() {
    let shim = Shim::start(&[]);
    let uri = "demo://resource/dynamic/text/1";
    let events = shim.listen(
        "token-of-alice",
        "listen-1",
        json!({ "resourceSubscriptions": [uri], "toolsListChanged": true }),
    );
    let ack = next(&events, Duration::from_secs(30));
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "listen-1"
    );
    assert_eq!(
        ack["params"]["notifications"],
        json!({ "resourceSubscriptions": [uri], "toolsListChanged": true })
    );
    shim.process
        .wait_for_log(&format!("call resources/subscribe {uri}"));

    // server-everything sends updates for its subscriptions once this tool is on: the call
    // is another request, on another connection, of the same identity.
    let toggled = shim.call_tool(
        Some("token-of-alice"),
        "toggle-subscriber-updates",
        json!({}),
    );
    assert!(
        text_of(toggled.last()).starts_with("Started"),
        "{:?}",
        toggled.messages
    );
    let update = next(&events, Duration::from_secs(10));
    assert_eq!(update["method"], "notifications/resources/updated");
    assert_eq!(update["params"]["uri"], uri);
    assert_eq!(
        update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "listen-1"
    );
    // Nothing the stream did not opt in to, such as the server's log lines, reaches it.
    let later = next(&events, Duration::from_secs(10));
    assert_eq!(later["method"], "notifications/resources/updated");

    // Closing the stream ends the subscription on the server.
    drop(events);
    // The reader thread notices the closed channel at the next event (within 5 s).
    eventually("unsubscribe", Duration::from_secs(15), || {
        shim.log_contains(&format!("call resources/unsubscribe {uri}"))
    });
}

#[test]
fn two_identities_share_no_children_no_state_and_count_against_the_caps() {
    let shim = Shim::start(&["--max-sessions", "2"]);
    let (alice, bob) = (Some("token-of-alice"), Some("token-of-bob"));
    let toggle = |who| {
        text_of(
            shim.call_tool(who, "toggle-subscriber-updates", json!({}))
                .last(),
        )
    };
    assert!(toggle(alice).starts_with("Started"));
    // Bob's toggle is his own: he starts, he does not stop alice's.
    assert!(toggle(bob).starts_with("Started"));
    assert!(toggle(alice).starts_with("Stopped"));
    assert!(toggle(bob).starts_with("Stopped"));
    assert_eq!(children(shim.pid()).len(), 2, "one child per identity");

    // Alice's subscription is fed; bob's on the same URI is not, since his updates are off.
    let uri = "demo://resource/dynamic/text/2";
    let bobs = shim.listen(
        "token-of-bob",
        "b",
        json!({ "resourceSubscriptions": [uri] }),
    );
    next(&bobs, Duration::from_secs(30));
    let alices = shim.listen(
        "token-of-alice",
        "a",
        json!({ "resourceSubscriptions": [uri] }),
    );
    next(&alices, Duration::from_secs(30));
    assert!(toggle(alice).starts_with("Started"));
    let update = next(&alices, Duration::from_secs(10));
    assert_eq!(
        update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "a"
    );
    assert!(
        bobs.recv_timeout(Duration::from_secs(6)).is_err(),
        "bob's stream got alice's update"
    );

    // Each identity's children hold a place in the session table: a third is refused.
    let carol = shim.request(Some("token-of-carol"), 1, "tools/list", json!({}));
    assert_eq!(carol.status, 429, "{:?}", carol.messages);
    assert!(
        carol.last()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-sessions")
    );
    assert_eq!(children(shim.pid()).len(), 2);
}

#[test]
fn closing_the_response_stream_cancels_and_a_dead_child_is_replaced() {
    let shim = Shim::start(&[]);
    let alice = "token-of-alice";
    let body = envelope(
        21,
        "tools/call",
        json!({
            "name": "trigger-long-running-operation",
            "arguments": { "duration": 30, "steps": 30 },
            "_meta": { "progressToken": 1 },
        }),
    );
    let headers = [
        ("mcp-protocol-version", VERSION),
        ("mcp-method", "tools/call"),
        ("mcp-name", "trigger-long-running-operation"),
    ];
    let mut reader = open_stream(shim.post_request(Some(alice), &headers), &body);
    let mut line = String::new();
    while !line.contains("notifications/progress") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended");
    }
    // Hanging up is this revision's cancellation: the child is told, not left working.
    drop(reader);
    eventually("cancelled", Duration::from_secs(10), || {
        shim.log_contains("cancelled on the server")
    });

    // A 2026-07-28 client has no session to restart: when the child dies, the next request
    // gets a new one.
    let before = children(shim.pid());
    assert_eq!(before.len(), 1);
    let old = *before.iter().next().unwrap();
    signal(old, "KILL");
    eventually("the exit seen", Duration::from_secs(10), || {
        shim.log_contains("exited (signal 9")
    });
    let echoed = shim.call_tool(Some(alice), "echo", json!({ "message": "again" }));
    assert_eq!(text_of(echoed.last()), "Echo: again");
    let after = children(shim.pid());
    assert_eq!(after.len(), 1);
    assert!(!after.contains(&old));
    shim.process.wait_for_log("a child of it is gone");
}
