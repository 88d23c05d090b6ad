//! The whole stack with real clients, all on loopback and nothing mocked: `host-shim up` on a
//! config shaped like the Okta guide's (Envoy with the release module, `host-shim serve`
//! running `npx @modelcontextprotocol/server-everything`), the local issuer, and the official
//! MCP TypeScript SDK client (`tests/e2e/mcp-client.mjs`) over Streamable HTTP.

#![allow(dead_code)]

mod envoy_support;

use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_support::{
    GROUP_RULE, Issuer, envoy_binary, free_port, guide_config, host_shim_binary, repo_root, tail,
    wait_for_up,
};
use serde_json::{Value, json};

/// One stack at a time: each is an Envoy, a shim with node servers and an issuer, and the
/// machine has two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `host-shim up` with its issuer; everything it started ends with it.
struct Gateway {
    _serial: std::sync::MutexGuard<'static, ()>,
    up: Child,
    log: PathBuf,
    issuer: Issuer,
    url: String,
    port: u16,
    /// Envoy's admin port (`/stats/prometheus`).
    admin_port: u16,
    dir: tempfile::TempDir,
}

impl Gateway {
    fn start(authorization: &str, clients: &[&str]) -> Option<Gateway> {
        Gateway::start_with(authorization, clients, &[])
    }

    /// As [`Gateway::start`], with extra `host-shim up` arguments.
    fn start_with(authorization: &str, clients: &[&str], up_args: &[&str]) -> Option<Gateway> {
        let envoy = envoy_binary()?;
        let serial = SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let root = repo_root();
        assert!(
            root.join("node_modules/@modelcontextprotocol/server-everything")
                .exists(),
            "the MCP server is not installed: run `npm ci` (make test does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("mcp-e2e")
            .tempdir()
            .unwrap();
        let mut args = Vec::new();
        for c in clients {
            args.extend(["--client", c]);
        }
        let issuer = Issuer::start_with(dir.path(), &args);
        let port = free_port();
        let config = dir.path().join("gateway.yaml");
        std::fs::write(
            &config,
            guide_config(port, &issuer.url, &[], "", authorization),
        )
        .unwrap();
        let log = dir.path().join("up.log");
        let admin_port = free_port();
        let mut up = Command::new(host_shim_binary())
            .arg("up")
            .arg(&config)
            .args(["--wasm", env!("FILTER_WASM")])
            .arg("--envoy")
            .arg(&envoy)
            .args(["--admin-port", &admin_port.to_string()])
            .args(up_args)
            // npx finds the pinned server in the repository's node_modules.
            .current_dir(&root)
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start host-shim up");
        wait_for_up(&mut up, &log, "MCP gateway up:");
        Some(Gateway {
            _serial: serial,
            up,
            log,
            issuer,
            url: format!("http://127.0.0.1:{port}/mcp"),
            port,
            admin_port,
            dir,
        })
    }

    /// Runs the SDK client through `steps`; returns one JSON object per step.
    fn client(&self, token: Option<&str>, steps: Value) -> Vec<Value> {
        let out = Command::new("node")
            .arg(repo_root().join("tests/e2e/mcp-client.mjs"))
            .arg(&self.url)
            .arg(token.unwrap_or("-"))
            .arg(steps.to_string())
            .current_dir(repo_root())
            .output()
            .expect("run node");
        parse_lines(&String::from_utf8_lossy(&out.stdout), &out.stderr)
    }

    /// Starts the SDK client; it stops at each `waitLine` step until `resume`.
    fn client_session(&self, token: &str, steps: Value) -> Session {
        let mut child = Command::new("node")
            .arg(repo_root().join("tests/e2e/mcp-client.mjs"))
            .arg(&self.url)
            .arg(token)
            .arg(steps.to_string())
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run node");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Session {
            child,
            stdin,
            lines: rx,
        }
    }

    fn token(&self, id: &str, secret: &str) -> String {
        self.issuer.token(id, secret)
    }

    /// The PIDs of the MCP servers (node processes running server-everything) under `up`.
    fn server_pids(&self) -> Vec<u32> {
        descendants(self.up.id())
            .into_iter()
            .filter(|pid| {
                cmdline(*pid).contains("server-everything") && cmdline(*pid).contains("node")
            })
            .filter(|pid| {
                !descendants(*pid)
                    .iter()
                    .any(|c| cmdline(*c).contains("server-everything"))
            })
            .collect()
    }

    /// Stops the stack with SIGTERM, as a supervisor would; returns every process it had.
    fn stop(mut self) -> Vec<u32> {
        let tree = descendants(self.up.id());
        let _ = Command::new("kill")
            .args(["-TERM", &self.up.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.up.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "host-shim up did not stop:\n{}",
                tail(&self.log, 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        tree
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.up.try_wait().ok().flatten().is_none() {
            for pid in descendants(self.up.id()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = self.up.kill();
            let _ = self.up.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- host-shim up log (tail) ----\n{}", tail(&self.log, 80));
        }
    }
}

struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Session {
    /// The next step's answer (within `timeout`).
    fn next(&self, timeout: Duration) -> Value {
        let line = self
            .lines
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("the MCP client gave no answer within {timeout:?}"));
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    fn resume(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "go").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_lines(stdout: &str, stderr: &[u8]) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|_| {
                panic!(
                    "client printed {l:?}\nstderr: {}",
                    String::from_utf8_lossy(stderr)
                )
            })
        })
        .collect()
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children(p) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn the_guides_config_serves_the_sdk_client_and_refuses_the_others() {
    let Some(gw) = Gateway::start(GROUP_RULE, &[]) else {
        return;
    };
    let token = gw.token("ai-user", "ai-user-secret");
    let out = gw.client(
        Some(&token),
        json!([
            "connect",
            "listTools",
            {"call": ["echo", {"message": "hello through Envoy"}]},
            "listResources",
            {"read": "demo://resource/static/document/architecture.md"},
            "close"
        ]),
    );
    assert_eq!(out[0]["ok"], true, "{out:?}");
    let tools = out[1]["tools"].as_array().unwrap();
    assert!(tools.iter().any(|t| t == "echo"), "{out:?}");
    let echoed = out[2]["result"]["content"][0]["text"].as_str().unwrap();
    assert!(echoed.contains("hello through Envoy"), "{out:?}");
    assert!(
        !out[3]["resources"].as_array().unwrap().is_empty(),
        "{out:?}"
    );
    assert!(
        out[4]["result"]["contents"][0]["text"].as_str().is_some(),
        "{out:?}"
    );

    // No token: 401 with the metadata pointer (checked on the wire), and the SDK fails.
    let reply = envoy_support::agent()
        .post(&gw.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#)
        .unwrap();
    assert_eq!(reply.status(), 401);
    let www = reply
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        www,
        format!(
            "Bearer resource_metadata=\"http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp\"",
            gw.port
        )
    );
    let out = gw.client(None, json!(["connect"]));
    assert_eq!(out[0]["error"]["code"], 401, "{out:?}");

    // A valid token outside AI-Users: 403.
    let plain = gw.token("plain-user", "plain-user-secret");
    let out = gw.client(Some(&plain), json!(["connect"]));
    assert_eq!(out[0]["error"]["code"], 403, "{out:?}");
}

#[test]
fn sessions_get_their_own_child_and_a_killed_child_is_an_error_not_a_hang() {
    let Some(gw) = Gateway::start(GROUP_RULE, &[]) else {
        return;
    };
    let token = gw.token("ai-user", "ai-user-secret");
    let steps = json!(["connect", "waitLine", {"call": ["echo", {"message": "after"}]}]);
    let mut first = gw.client_session(&token, steps.clone());
    let mut second = gw.client_session(&token, steps);
    assert_eq!(first.next(Duration::from_secs(60))["ok"], true);
    assert_eq!(second.next(Duration::from_secs(60))["ok"], true);
    first.next(Duration::from_secs(10));
    second.next(Duration::from_secs(10));
    let pids = gw.server_pids();
    assert_eq!(
        pids.len(),
        2,
        "two sessions, two MCP server processes: {pids:?}"
    );

    // Kill the first session's server (whichever it is, one of the two), then both call.
    let _ = Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    first.resume();
    second.resume();
    let answers = [
        first.next(Duration::from_secs(30)),
        second.next(Duration::from_secs(30)),
    ];
    let failed = answers.iter().filter(|a| a.get("error").is_some()).count();
    let served = answers
        .iter()
        .filter(|a| {
            a["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("after"))
        })
        .count();
    assert_eq!(
        (failed, served),
        (1, 1),
        "one session lost its server, the other did not: {answers:?}"
    );

    // Stopping the stack leaves nothing behind.
    let tree = gw.stop();
    assert!(!tree.is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let left: Vec<(u32, String)> = tree
        .into_iter()
        .filter(|p| alive(*p))
        .map(|p| (p, cmdline(p)))
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// Through the whole stack: per-group tool access, filtered lists, and a denied call
/// answered at the gateway.
#[test]
fn each_group_sees_and_calls_only_its_tools() {
    let rules = "          - allow: '\"A\" in auth.claims.groups && mcp.tool.name in [\"echo\", \"get-sum\"]'\n          - allow: '\"B\" in auth.claims.groups && mcp.tool.name == \"get-env\"'";
    let Some(gw) = Gateway::start(rules, &["a-user:a-secret:A", "b-user:b-secret:B"]) else {
        return;
    };
    let a = gw.token("a-user", "a-secret");
    let b = gw.token("b-user", "b-secret");
    let out = gw.client(
        Some(&a),
        json!([
            "connect",
            "listTools",
            {"call": ["echo", {"message": "from A"}]},
            {"call": ["get-env", {}]},
            "close"
        ]),
    );
    assert_eq!(out[1]["tools"], json!(["echo", "get-sum"]), "{out:?}");
    assert!(
        out[2]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("from A")
    );
    let denied = out[3]["error"]["message"].as_str().unwrap_or_default();
    assert!(denied.contains("access denied"), "{out:?}");
    assert!(denied.contains("get-env"), "{out:?}");

    let out = gw.client(
        Some(&b),
        json!(["connect", "listTools", {"call": ["echo", {"message": "x"}]}, "close"]),
    );
    assert_eq!(out[1]["tools"], json!(["get-env"]), "{out:?}");
    assert!(
        out[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("access denied"),
        "{out:?}"
    );
    // The shim's access log shows what reached the MCP servers: the allowed calls, never
    // the denied ones.
    let log = std::fs::read_to_string(&gw.log).unwrap_or_default();
    assert!(log.contains("call tools/call echo"), "{log}");
    assert!(!log.contains("call tools/call get-env"), "{log}");
}

/// One MCP exchange over plain HTTP: (status, session id, body).
fn post(
    url: &str,
    token: &str,
    session: Option<&str>,
    body: &Value,
) -> (u16, Option<String>, String) {
    let mut request = envoy_support::agent()
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(id) = session {
        request = request.header("mcp-session-id", id);
    }
    match request.send(body.to_string()) {
        Ok(mut response) => {
            let session = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let status = response.status().as_u16();
            let body = response.body_mut().read_to_string().unwrap_or_default();
            (status, session, body)
        }
        Err(e) => panic!("no answer (a hang?): {e}"),
    }
}

fn open_session(url: &str, token: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "scale-test", "version": "1"}}});
    let (status, session, body) = post(url, token, None, &init);
    assert_eq!(status, 200, "{body}");
    let session = session.expect("a session id");
    let (status, _, _) = post(
        url,
        token,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    assert_eq!(status, 202);
    session
}

fn echo(url: &str, token: &str, session: &str, n: u64) -> (u16, String) {
    let call = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": format!("call {n}")}}});
    let (status, _, body) = post(url, token, Some(session), &call);
    (status, body)
}

/// Two shims behind one Envoy; every session sticks to the shim that created it (a
/// call reaching the other shim would be a 404: it refuses session ids it did not issue); one
/// shim stopped → its sessions fail cleanly, the others go on, new sessions land on the survivor.
#[test]
fn two_shims_keep_each_session_on_its_own_shim() {
    let Some(gw) = Gateway::start_with(GROUP_RULE, &[], &["--shims", "2"]) else {
        return;
    };
    let token = gw.token("ai-user", "ai-user-secret");
    let sessions: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let (url, token) = (&gw.url, &token);
                scope.spawn(move || {
                    let session = open_session(url, token);
                    for n in 2..5 {
                        let (status, body) = echo(url, token, &session, n);
                        assert_eq!(status, 200, "{body}");
                        assert!(body.contains(&format!("call {n}")), "{body}");
                    }
                    session
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(sessions.len(), 20);
    let distinct: std::collections::BTreeSet<&String> = sessions.iter().collect();
    assert_eq!(distinct.len(), 20);
    // The shims' logs: 20 sessions started, and not one call reached a shim that did not
    // know its session.
    let log = std::fs::read_to_string(&gw.log).unwrap_or_default();
    assert_eq!(
        log.matches(": route 'bind0-listener0-route0', protocol")
            .count(),
        20,
        "{log}"
    );
    assert!(!log.contains("unknown here"), "{log}");

    let shims: Vec<u32> = descendants(gw.up.id())
        .into_iter()
        .filter(|p| cmdline(*p).contains(" serve "))
        .collect();
    assert_eq!(shims.len(), 2, "{shims:?}");
    let _ = Command::new("kill")
        .args(["-TERM", &shims[0].to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(shims[0]) {
        assert!(Instant::now() < deadline, "the shim did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut served = 0;
    let mut refused = 0;
    for (i, session) in sessions.iter().enumerate() {
        let (status, body) = echo(&gw.url, &token, session, 10 + i as u64);
        match status {
            200 => {
                assert!(body.contains(&format!("call {}", 10 + i)), "{body}");
                served += 1;
            }
            // Strict stateful sessions: the shim is gone, the client must re-initialize.
            503 | 404 => refused += 1,
            other => panic!("session {session}: unexpected {other}: {body}"),
        }
    }
    assert!(
        served > 0 && refused > 0,
        "served {served}, refused {refused}"
    );
    assert_eq!(served + refused, 20);
    // New sessions land on the survivor.
    for _ in 0..4 {
        let session = open_session(&gw.url, &token);
        assert_eq!(echo(&gw.url, &token, &session, 99).0, 200);
    }
}

/// A session belongs to the identity that opened it: through the whole stack, another person's
/// valid token with that session id gets what an unknown session gets, and cannot end it.
#[test]
fn another_identity_cannot_use_or_end_a_session() {
    let Some(gw) = Gateway::start(
        GROUP_RULE,
        &[
            "alice-bot:alice-secret:AI-Users",
            "bob-bot:bob-secret:AI-Users",
        ],
    ) else {
        return;
    };
    let alice = gw.token("alice-bot", "alice-secret");
    let bob = gw.token("bob-bot", "bob-secret");
    let session = open_session(&gw.url, &alice);
    let (status, body) = echo(&gw.url, &bob, &session, 2);
    assert_eq!(status, 404, "{body}");
    let (status, _) = echo(&gw.url, &alice, &session, 3);
    assert_eq!(status, 200);
    let ended = envoy_support::agent()
        .delete(&gw.url)
        .header("authorization", format!("Bearer {bob}"))
        .header("mcp-session-id", &session)
        .call()
        .unwrap();
    assert_eq!(ended.status().as_u16(), 404);
    let (status, body) = echo(&gw.url, &alice, &session, 4);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("call 4"), "{body}");
    let log = std::fs::read_to_string(&gw.log).unwrap_or_default();
    assert!(log.contains("identity did not match"), "{log}");
}

/// The metric names a PromQL expression needs: plain names must exist, each
/// `__name__=~"<re>"` selector must match at least one.
fn needed(expr: &str) -> (Vec<String>, Vec<String>) {
    let selector = regex::Regex::new(r#"__name__=~"([^"]+)""#).unwrap();
    let regexes: Vec<String> = selector
        .captures_iter(expr)
        .map(|c| c[1].to_string())
        .collect();
    let without = selector.replace_all(expr, "");
    let name = regex::Regex::new(r"\b(?:envoy|mcp_auth)_[a-z0-9_]+").unwrap();
    let names = name
        .find_iter(&without)
        .map(|m| m.as_str().to_string())
        .filter(|n| n != "envoy_response_code_class")
        .collect();
    (names, regexes)
}

/// Every query of the Grafana dashboard in `envoy/grafana/` names metrics Envoy really
/// exports after a short session of allowed calls, denials, bad tokens and a filtered list.
#[test]
fn the_dashboards_metrics_exist_after_a_short_run() {
    let rule =
        "          - allow: '\"AI-Users\" in auth.claims.groups && mcp.tool.name == \"echo\"'";
    let Some(gw) = Gateway::start(rule, &[]) else {
        return;
    };
    let token = gw.token("ai-user", "ai-user-secret");
    let session = open_session(&gw.url, &token);
    for n in 2..4 {
        assert_eq!(echo(&gw.url, &token, &session, n).0, 200);
    }
    let list = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"});
    let (status, _, body) = post(&gw.url, &token, Some(&session), &list);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("echo") && !body.contains("get-env"), "{body}");
    let env = json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call",
        "params": {"name": "get-env", "arguments": {}}});
    post(&gw.url, &token, Some(&session), &env);
    post(&gw.url, "not.a.token", Some(&session), &env);
    // A kid nobody knows makes the filter ask the issuer again.
    let stranger = mcp_auth_filter_tests::tokens::Key::rsa_n(5).with_kid("nobody-knows-me");
    let forged = mcp_auth_filter_tests::tokens::TokenBuilder::new(&stranger)
        .iss(&gw.issuer.url)
        .aud("api://agentgateway")
        .sign();
    post(&gw.url, &forged, Some(&session), &env);
    let anonymous = envoy_support::agent()
        .post(&gw.url)
        .header("content-type", "application/json")
        .send(env.to_string())
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    let mut response = envoy_support::agent()
        .get(format!(
            "http://127.0.0.1:{}/stats/prometheus",
            gw.admin_port
        ))
        .call()
        .unwrap();
    let prometheus = response.body_mut().read_to_string().unwrap();
    let present: std::collections::BTreeSet<&str> = prometheus
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("envoy/grafana/mcp-auth-dashboard.json"))
            .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let (names, regexes) = needed(expr);
            for name in names {
                assert!(
                    present.contains(name.as_str()),
                    "panel {}: {name} is not in Envoy's output: {:?}",
                    panel["title"],
                    present
                        .iter()
                        .filter(|n| n.contains("mcp"))
                        .collect::<Vec<_>>()
                );
                checked += 1;
            }
            for re in regexes {
                let re = regex::Regex::new(&format!("^(?:{re})$")).unwrap();
                assert!(
                    present.iter().any(|n| re.is_match(n)),
                    "panel {}: nothing matches {re}: {:?}",
                    panel["title"],
                    present
                        .iter()
                        .filter(|n| n.contains("mcp"))
                        .collect::<Vec<_>>()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "{checked} queries checked");
}

/// The `Mcp-Method` / `Mcp-Name` fast path is safe through the whole stack: the filter judges
/// a 2026-07-28 call from its headers without buffering the body, and a body that disagrees
/// with them is refused by the shim (HTTP 400, `-32020`) before any server runs it.
#[test]
fn a_call_judged_from_its_headers_cannot_smuggle_another_body_past_the_shim() {
    let rule =
        "          - allow: '\"AI-Users\" in auth.claims.groups && mcp.tool.name == \"echo\"'";
    let Some(gw) = Gateway::start(rule, &[]) else {
        return;
    };
    let token = gw.token("ai-user", "ai-user-secret");
    let modern = |name_header: &str, tool: &str| {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": tool, "arguments": {"message": "fast"},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }}});
        let mut response = envoy_support::agent()
            .post(&gw.url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", name_header)
            .send(body.to_string())
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    let fast = || -> u64 {
        let stats = envoy_support::agent()
            .get(format!(
                "http://127.0.0.1:{}/stats?filter=header_fast_path",
                gw.admin_port
            ))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        stats
            .lines()
            .find_map(|l| l.strip_prefix("wasmcustom.mcp_auth.header_fast_path: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    // The first call may wait for the keys (its body then arrives and is judged itself).
    let (status, body) = modern("echo", "echo");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("fast"), "{body}");
    let before = fast();
    let (status, body) = modern("echo", "echo");
    assert_eq!(status, 200, "{body}");
    assert_eq!(fast(), before + 1, "judged from its headers");
    // The headers say echo, the body says get-env: the filter lets the headers decide, and
    // the shim refuses the mismatch.
    let (status, body) = modern("echo", "get-env");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("-32020"), "{body}");
    assert_eq!(fast(), before + 2, "the filter did not read that body");
    let log = std::fs::read_to_string(&gw.log).unwrap_or_default();
    assert!(
        !log.contains("tools/call get-env"),
        "the server never ran it:\n{log}"
    );
}
