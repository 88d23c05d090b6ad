//! MCP revisions through the whole stack, with the official SDKs as clients: `host-shim up` on
//! the Okta guide's config (Envoy with the release module, `host-shim serve` running `npx
//! @modelcontextprotocol/server-everything`, which speaks 2025-11-25), the local issuer's
//! client-credentials tokens, and on one gateway
//! - the Python SDK (`mcp` 2.3.0, `tests/e2e/mcp_client.py`) in its default mode, which probes
//!   `server/discover` and so speaks 2026-07-28 to the shim, and pinned to 2026-07-28 (no probe);
//! - the TypeScript SDK 1.32.2 (`tests/e2e/mcp-client.mjs`), which speaks 2025-11-25 with a
//!   session, as before.
//!
//! State a server keeps follows the verified identity, not the connection: two client processes
//! of one identity see each other's, another identity does not.

#![allow(dead_code)]

mod envoy_support;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_support::{
    GROUP_RULE, Issuer, envoy_binary, free_port, guide_config, host_shim_binary, repo_root, tail,
    wait_for_up,
};
use serde_json::{Value, json};

const ALICE: &str = "alice:alice-secret:AI-Users";
const BOB: &str = "bob:bob-secret:AI-Users";

/// `host-shim up` with its issuer; everything it started ends with it.
struct Gateway {
    up: Child,
    log: PathBuf,
    issuer: Issuer,
    url: String,
    _dir: tempfile::TempDir,
}

/// The venv's Python with the pinned SDK (`make python` makes it).
fn python() -> PathBuf {
    let python = repo_root().join(".tools/venv/bin/python");
    let ok = Command::new(&python)
        .args([
            "-c",
            "import mcp, importlib.metadata as m; assert m.version('mcp') == '2.3.0'",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} lacks the pinned MCP Python SDK: run `make python`",
        python.display()
    );
    python
}

impl Gateway {
    fn start() -> Option<Gateway> {
        let envoy = envoy_binary()?;
        let root = repo_root();
        assert!(
            root.join("node_modules/@modelcontextprotocol/server-everything")
                .exists(),
            "the MCP server is not installed: run `npm ci` (make test does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("protocol-e2e")
            .tempdir()
            .unwrap();
        let issuer = Issuer::start_with(dir.path(), &["--client", ALICE, "--client", BOB]);
        let port = free_port();
        let config = dir.path().join("gateway.yaml");
        std::fs::write(
            &config,
            guide_config(port, &issuer.url, &[], "", GROUP_RULE),
        )
        .unwrap();
        let log = dir.path().join("up.log");
        let mut up = Command::new(host_shim_binary())
            .arg("up")
            .arg(&config)
            .args(["--wasm", env!("FILTER_WASM")])
            .arg("--envoy")
            .arg(&envoy)
            .args(["--admin-port", &free_port().to_string()])
            .current_dir(&root)
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start host-shim up");
        wait_for_up(&mut up, &log, "MCP gateway up:");
        Some(Gateway {
            up,
            log,
            issuer,
            url: format!("http://127.0.0.1:{port}/mcp"),
            _dir: dir,
        })
    }

    fn token(&self, who: &str) -> String {
        self.issuer.token(who, &format!("{who}-secret"))
    }

    /// Runs the Python SDK client in `mode` through `steps`; one JSON object per step.
    fn python(&self, token: &str, mode: &str, steps: Value) -> Vec<Value> {
        let started = Instant::now();
        let out = Command::new(python())
            .arg(repo_root().join("tests/e2e/mcp_client.py"))
            .args([&self.url, token, mode, &steps.to_string()])
            .current_dir(repo_root())
            .output()
            .expect("run the Python client");
        eprintln!("python client ({mode}): {:?}", started.elapsed());
        lines(&out.stdout, &out.stderr)
    }

    /// Runs the TypeScript SDK client (2025-11-25) through `steps`.
    fn node(&self, token: &str, steps: Value) -> Vec<Value> {
        let out = Command::new("node")
            .arg(repo_root().join("tests/e2e/mcp-client.mjs"))
            .args([&self.url, token, &steps.to_string()])
            .current_dir(repo_root())
            .output()
            .expect("run node");
        lines(&out.stdout, &out.stderr)
    }

    fn log_lines(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // SIGTERM, as a supervisor would: `up` stops Envoy and the shim, which reaps its children.
        let _ = Command::new("kill")
            .args(["-TERM", &self.up.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.up.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.up.try_wait().ok().flatten().is_none() {
            let _ = self.up.kill();
            let _ = self.up.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- host-shim up log (tail) ----\n{}", tail(&self.log, 80));
        }
    }
}

fn lines(stdout: &[u8], stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
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

const URI: &str = "demo://resource/dynamic/text/1";

fn every_step() -> Value {
    json!([
        "connect",
        "listTools",
        {"call": ["echo", {"message": "hello, 2026"}]},
        {"read": URI},
        {"getPrompt": ["simple-prompt", {}]},
        {"subscribe": URI},
    ])
}

/// What every run of [`every_step`] must show, at protocol `version`.
fn check_every_step(out: &[Value], version: &str, via: &str) {
    assert_eq!(out.len(), 6, "{out:?}");
    assert_eq!(out[0]["protocolVersion"], version, "{out:?}");
    let tools = out[1]["tools"].as_array().unwrap();
    assert!(tools.iter().any(|t| t == "echo"), "{out:?}");
    assert_eq!(
        out[2]["result"]["content"][0]["text"], "Echo: hello, 2026",
        "{out:?}"
    );
    assert_eq!(out[3]["result"]["contents"][0]["uri"], URI, "{out:?}");
    assert!(
        out[4]["result"]["messages"][0]["content"]["text"].is_string(),
        "{out:?}"
    );
    assert_eq!(out[5]["updated"], URI, "{out:?}");
    assert_eq!(out[5]["via"], via, "{out:?}");
}

#[test]
fn python_sdk_both_modes_and_typescript_sdk_on_one_gateway() {
    let Some(gw) = Gateway::start() else {
        return;
    };
    let alice = gw.token("alice");

    // The SDK's default probes server/discover; the shim answers it, so the client speaks
    // 2026-07-28: no initialize, no session, every request in its own envelope.
    let out = gw.python(&alice, "auto", every_step());
    check_every_step(&out, "2026-07-28", "subscriptions/listen");
    assert_eq!(
        gw.log_lines("call initialize"),
        1,
        "the shim's own initialize"
    );

    // Pinned to the revision: the first request is a real one, no probe.
    let out = gw.python(&alice, "2026-07-28", every_step());
    check_every_step(&out, "2026-07-28", "subscriptions/listen");
    assert!(out[3]["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"].is_string());
    // Both runs, and both of alice's processes, were served by the same child.
    assert_eq!(gw.log_lines("call initialize"), 1);

    // A 2025-11-25 client on the same gateway keeps its session and gets its own child.
    let out = gw.node(
        &alice,
        json!([
            "connect",
            "sessionId",
            {"call": ["echo", {"message": "hello, 2025"}]},
            {"read": URI},
            "close"
        ]),
    );
    assert_eq!(out[0]["protocolVersion"], "2025-11-25", "{out:?}");
    assert!(out[1]["sessionId"].is_string(), "{out:?}");
    assert_eq!(
        out[2]["result"]["content"][0]["text"], "Echo: hello, 2025",
        "{out:?}"
    );
    assert_eq!(out[3]["result"]["contents"][0]["uri"], URI, "{out:?}");
    assert_eq!(gw.log_lines("call initialize"), 2);

    // What a server remembers is the identity's: alice's next process sees her state, bob,
    // whose token the filter verified as someone else, has his own children and state.
    let toggle = |token: &str| {
        let out = gw.python(
            token,
            "2026-07-28",
            json!(["connect", {"call": ["toggle-subscriber-updates", {}]}]),
        );
        out[1]["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{out:?}"))
            .to_string()
    };
    let bob = gw.token("bob");
    assert!(toggle(&alice).starts_with("Started"));
    assert!(
        toggle(&bob).starts_with("Started"),
        "bob shares alice's child"
    );
    assert!(toggle(&alice).starts_with("Stopped"));
    assert_eq!(gw.log_lines("call initialize"), 3);

    // Through Envoy, a header naming another tool than the body is refused before the server.
    let echoes = gw.log_lines("call tools/call echo");
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": "echo", "arguments": {"message": "smuggled"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    });
    let mut reply = envoy_support::agent()
        .post(&gw.url)
        .header("authorization", format!("Bearer {alice}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "get-env")
        .send(body.to_string())
        .unwrap();
    assert_eq!(reply.status(), 400);
    let text = reply.body_mut().read_to_string().unwrap();
    if let Ok(error) = serde_json::from_str::<Value>(&text) {
        assert_eq!(error["error"]["code"], -32020, "{text}");
    }
    assert_eq!(gw.log_lines("call tools/call echo"), echoes);
    assert_eq!(gw.log_lines("call tools/call get-env"), 0);
}
