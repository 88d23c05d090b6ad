//! What the host-shim integration tests share: where the real components are (Envoy, the
//! real MCP server, the pass-through module), scratch paths and ports, the process tree as
//! `/proc` shows it, signals and waits for an exit, a plain HTTP client for MCP's answers (JSON
//! or event streams, as an identity or anonymous), and in `oauth` a client of the local
//! issuer. Each test binary includes it with `mod common;` and uses what it needs, so an item
//! one binary leaves unused is no warning. Its helpers fail by panicking, as tests do, which
//! the workspace's lints allow only in test functions: said here for all of them, so a test
//! file that has no helpers of its own needs no allowance of its own.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use ureq::Agent;

pub mod oauth;

/// The header the filter names the caller in, as `serve` trusts it.
pub const IDENTITY: &str = "x-mcp-auth-identity";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Envoy `make envoy` installs.
pub fn envoy() -> PathBuf {
    let path = repo_root().join(".tools/bin/envoy");
    assert!(
        path.exists(),
        "{} is missing: run `make envoy` to install Envoy 1.40",
        path.display()
    );
    path
}

/// The installed server-everything entry point: the tests that need the real server.
pub fn everything() -> String {
    let path =
        repo_root().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        path.exists(),
        "{} is missing: run `npm ci` at the repository root (the Makefile does) to install the pinned MCP server",
        path.display()
    );
    path.display().to_string()
}

static PATHS: AtomicU32 = AtomicU32::new(0);

/// A fresh path in the temp dir, unique to this test run.
pub fn temp_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "host-shim-test-{}-{}-{what}",
        std::process::id(),
        PATHS.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Files the tests of one binary share (the module, scripts), in a directory of their own.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// The pass-through module Envoy loads where a test is about the bootstrap or `up`, not the
/// filter's judgement (the real module's end-to-end tests are in `tests/`), compiled once.
pub fn pass_filter() -> &'static Path {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE.get_or_init(|| {
        let wat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pass-filter.wat");
        let path = scratch().join("pass-filter.wasm");
        std::fs::write(&path, wat::parse_file(&wat).unwrap()).unwrap();
        path
    })
}

// One definition for both test crates; depending on that crate would bring its wasmtime
// host into these tests.
#[path = "../../../tests/src/ports.rs"]
mod ports;

pub fn free_port() -> u16 {
    ports::free_port()
}

pub fn wait_for_port(port: u16) {
    eventually(
        &format!("something listening on {port}"),
        Duration::from_secs(60),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
}

pub fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends the signal `name` (`TERM`, `KILL`...) to `pid`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}: {status}");
}

/// Waits for `child` to exit, at most `limit` (failing with `what` past it): its status.
pub fn exit_within(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM to `child` (a SIGKILLed shim could not stop its own children), then SIGKILL after
/// `grace`; reaped either way.
pub fn stop(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    while started.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One process as `/proc/<pid>/stat` tells it.
#[derive(Debug, Clone, Copy)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub group: u32,
}

/// The pids `/proc` lists.
fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse().ok())
}

pub fn processes() -> Vec<Process> {
    pids()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(Process {
                pid,
                ppid: fields[1].parse().unwrap(),
                group: fields[2].parse().unwrap(),
            })
        })
        .collect()
}

pub fn children(pid: u32) -> BTreeSet<u32> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == pid)
        .map(|p| p.pid)
        .collect()
}

/// Every process below `pid`.
pub fn descendants(pid: u32) -> BTreeSet<u32> {
    let all = processes();
    let mut found = BTreeSet::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for p in all.iter().filter(|p| p.ppid == parent) {
            if found.insert(p.pid) {
                frontier.push(p.pid);
            }
        }
    }
    found
}

/// Every process below `pid`, and every member of their process groups.
pub fn tree(pid: u32) -> BTreeSet<u32> {
    let all = processes();
    let mut found = descendants(pid);
    let groups: BTreeSet<u32> = all
        .iter()
        .filter(|p| found.contains(&p.pid))
        .map(|p| p.group)
        .collect();
    found.extend(
        all.iter()
            .filter(|p| groups.contains(&p.group) && p.group != pid)
            .map(|p| p.pid),
    );
    found
}

/// Live processes whose command line holds `needle` (a zombie has none).
pub fn processes_naming(needle: &str) -> Vec<u32> {
    pids()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
        })
        .collect()
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok()
}

/// A client that reports every status as it is (no error for a 4xx) and gives up after 30 s.
pub fn agent() -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `request` as the filter forwards it for `identity` (`None`: anonymous, no header).
pub fn as_identity<B>(
    request: ureq::RequestBuilder<B>,
    identity: Option<&str>,
) -> ureq::RequestBuilder<B> {
    match identity {
        Some(identity) => request.header(IDENTITY, identity),
        None => request,
    }
}

/// What an MCP endpoint answered a POST with: the status, the `Mcp-Session-Id`, whether the
/// answer was an event stream, and its JSON-RPC messages (every event's of a stream, the one
/// JSON body, or none for an empty body).
pub struct Reply {
    pub status: u16,
    pub session: Option<String>,
    pub sse: bool,
    pub messages: Vec<Json>,
}

impl Reply {
    /// The last message (`null` if there is none): the answer, after any notifications.
    pub fn last(&self) -> &Json {
        self.messages.last().unwrap_or(&Json::Null)
    }
}

/// Sends `request` with one JSON-RPC message (or batch) as its JSON body, and reads the whole
/// answer (up to 64 MiB).
pub fn send(request: ureq::RequestBuilder<ureq::typestate::WithBody>, body: &Json) -> Reply {
    let mut response = request
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let session = header("mcp-session-id");
    let sse = header("content-type").is_some_and(|v| v.starts_with("text/event-stream"));
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .unwrap();
    let parse =
        |text: &str| serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text:.300}"));
    let messages = if sse {
        sse_events(&text)
            .iter()
            .map(|(_, data)| parse(data))
            .collect()
    } else if text.is_empty() {
        Vec::new()
    } else {
        vec![parse(&text)]
    };
    Reply {
        status,
        session,
        sse,
        messages,
    }
}

/// POSTs one JSON-RPC message asking for JSON: the status, the `Mcp-Session-Id` and the answer
/// (`null` for an empty body).
pub fn post(
    agent: &Agent,
    url: &str,
    session: Option<&str>,
    body: &Json,
) -> (u16, Option<String>, Json) {
    let mut request = agent.post(url).header("accept", "application/json");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let mut reply = send(request, body);
    (
        reply.status,
        reply.session,
        reply.messages.pop().unwrap_or(Json::Null),
    )
}

/// `(event, data)` of each event in an SSE body.
pub fn sse_events(text: &str) -> Vec<(String, String)> {
    let mut events = Vec::new();
    let (mut event, mut data) = (String::from("message"), Vec::new());
    for line in text.lines() {
        if line.is_empty() {
            if !data.is_empty() {
                events.push((
                    std::mem::replace(&mut event, "message".into()),
                    data.join("\n"),
                ));
                data.clear();
            }
        } else if let Some(rest) = line.strip_prefix("event:") {
            event = rest.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("data:") {
            data.push(rest.strip_prefix(' ').unwrap_or(rest).to_string());
        }
    }
    events
}

/// The next `(event, data)` of a live SSE stream; `None` once the stream has ended (or failed).
pub fn read_event(reader: &mut impl std::io::BufRead) -> Option<(String, String)> {
    let mut block = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if line.trim_end().is_empty() {
            if let Some(event) = sse_events(&format!("{block}\n")).pop() {
                return Some(event);
            }
            block.clear();
        } else {
            block.push_str(&line);
        }
    }
}

/// The next event of a live SSE stream, which must not end before it.
pub fn next_event(reader: &mut impl std::io::BufRead) -> (String, String) {
    read_event(reader).expect("the stream ended")
}

/// The next JSON-RPC message with an id (a request or an answer) on a live SSE stream, past
/// any notification.
pub fn next_with_id(reader: &mut impl std::io::BufRead) -> Json {
    loop {
        let (event, data) = next_event(reader);
        if event == "message" {
            let message: Json = serde_json::from_str(&data).unwrap();
            if message.get("id").is_some() {
                return message;
            }
        }
    }
}

/// An `initialize` request with id `id`.
pub fn initialize(id: u64) -> Json {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"sampling": {}},
            "clientInfo": {"name": "host-shim-tests", "version": "1"},
        },
    })
}

/// The text of a `tools/call` answer.
pub fn text_of(answer: &Json) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"))
        .to_string()
}

/// Asserts that `answer` is the JSON-RPC error for a tool no target offers (invalid params).
pub fn assert_unknown_tool(answer: &Json) {
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
}

/// A `host-shim serve` process on `config`, started in the repository root; its stderr is kept
/// (and echoed behind `shim: `), and it is stopped with SIGTERM when dropped so a failing test
/// leaves no process behind.
pub struct Serve {
    pub child: Child,
    /// `http://127.0.0.1:PORT` (or `unix:/path`), as its first stdout line announces it.
    pub base: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Serve {
    pub fn start(config: &str, args: &[&str]) -> Serve {
        use std::io::{BufRead as _, BufReader};
        let path = temp_path("config.yaml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_host-shim"))
            .arg("serve")
            .arg(&path)
            .args(args)
            .current_dir(repo_root())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn host-shim serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("host-shim serving on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("shim: {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Serve { child, base, log }
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// Waits (up to 10 s) for a line containing `needle`. A thread reads the log, so a line
    /// the shim wrote before it answered may not be here yet when the answer is.
    pub fn wait_for_log(&self, needle: &str) {
        eventually(
            &format!("the log line {needle:?}"),
            Duration::from_secs(10),
            || self.log_contains(needle),
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}

/// A `host-shim issuer` process on a free port, with `extra` flags; killed when dropped.
pub struct IssuerProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT/oauth2/default`
    pub url: String,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl IssuerProcess {
    pub fn start(extra: &[&str]) -> IssuerProcess {
        use std::io::{BufRead as _, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_host-shim"))
            .args(["issuer", "--port", "0"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn host-shim issuer");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        let url = line
            .trim()
            .strip_prefix("issuer listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        let base = url.trim_end_matches("/oauth2/default").to_owned();
        IssuerProcess { child, url, base }
    }
}

impl Drop for IssuerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Verifies an RS256 `token` against `jwks` the way a resource server does (the key picked by
/// `kid`): its claims, with `exp` and `iat` among them as numbers.
pub fn verify(token: &str, jwks: &Json) -> Json {
    use jwt_compact::alg::Rsa;
    use jwt_compact::jwk::JsonWebKey;
    use jwt_compact::{AlgorithmExt as _, UntrustedToken};
    let untrusted = UntrustedToken::new(token).unwrap();
    assert_eq!(untrusted.algorithm(), "RS256");
    let kid = untrusted.header().key_id.clone().expect("kid in header");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} not in JWKS"));
    let jwk: JsonWebKey<'_> = serde_json::from_value(jwk.clone()).unwrap();
    let key = rsa::RsaPublicKey::try_from(&jwk).unwrap();
    let token = Rsa::rs256()
        .validator::<Json>(&key)
        .validate(&untrusted)
        .expect("signature verifies");
    let mut claims = token.claims().custom.clone();
    let object = claims.as_object_mut().unwrap();
    if let Some(exp) = token.claims().expiration {
        object.insert("exp".into(), json!(exp.timestamp()));
    }
    if let Some(iat) = token.claims().issued_at {
        object.insert("iat".into(), json!(iat.timestamp()));
    }
    claims
}

/// The names in a `tools/list` result (the object holding `tools`), in the order listed.
pub fn tool_names(list: &Json) -> Vec<&str> {
    list["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect()
}
