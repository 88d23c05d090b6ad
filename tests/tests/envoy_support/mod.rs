//! The end-to-end stack for the Envoy tests: the real Envoy from `.tools/` (installed by
//! `envoy/install-envoy.sh`), the real `host-shim issuer`, a tiny upstream that echoes what it
//! received, and a bootstrap rendered for them by `host-shim envoy`, the project's one
//! generator. Everything runs on loopback and every process is killed when the `Stack` is
//! dropped, panicking test or not; on a panic the tails of Envoy's and the issuer's logs are
//! printed, since that is where a failure explains itself. Shared by every suite that starts a
//! gateway: the guide's config file, free ports, waiting for `host-shim up`.
//!
//! Binaries are found at run time: `ENVOY_BIN` or `<repo>/.tools/bin/envoy`; `HOST_SHIM_BIN` or
//! the `host-shim` next to this test's own target directory (built by `cargo build -p
//! host-shim`, which `make test` runs first: a test cannot run cargo on its own target
//! directory while cargo holds its lock). The filter module is the release build whose path
//! `build.rs` exports as `FILTER_WASM`.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ureq::Agent;

/// Envoy compiles the module with V8 at start; on a busy two-core machine that takes a while.
const ENVOY_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Long enough for the filter's own JWKS timeout (5 s by default) to fire first, short enough
/// that a hung request fails the test instead of hanging it.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Stacks are heavy (an Envoy with a V8 VM per worker); running them one at a time keeps the
/// timings sane on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The Envoy binary, or `None` when the caller asked to skip (`MCP_AUTH_SKIP_ENVOY=1`).
pub fn envoy_binary() -> Option<PathBuf> {
    if std::env::var("MCP_AUTH_SKIP_ENVOY").as_deref() == Ok("1") {
        eprintln!(
            "\n==========================================================\n\
             SKIPPING the Envoy end-to-end test: MCP_AUTH_SKIP_ENVOY=1.\n\
             Nothing about Envoy was checked.\n\
             =========================================================="
        );
        return None;
    }
    let path = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/bin/envoy"));
    assert!(
        path.exists(),
        "Envoy not found at {}: run `envoy/install-envoy.sh` (or set ENVOY_BIN; \
         MCP_AUTH_SKIP_ENVOY=1 skips these tests)",
        path.display()
    );
    Some(path)
}

pub fn host_shim_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HOST_SHIM_BIN") {
        return PathBuf::from(path);
    }
    // This test runs as <target>/<profile>/deps/envoy_e2e-<hash>; cargo puts workspace
    // binaries in <target>/<profile>/.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps");
    let path = profile_dir.join("host-shim");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p host-shim` first (make test does), \
         or set HOST_SHIM_BIN",
        path.display()
    );
    path
}

/// A child process that dies with its owner.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `host-shim issuer` on a free port.
pub struct Issuer {
    proc: Proc,
    /// Held so the issuer never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// `http://127.0.0.1:PORT/oauth2/default`
    pub url: String,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub port: u16,
}

impl Issuer {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// The issuer with extra arguments (e.g. `--client id:secret:Group`).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Self {
        let log = dir.join("issuer.log");
        let mut child = Command::new(host_shim_binary())
            .args(["issuer", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("issuer log"))
            .spawn()
            .expect("spawn host-shim issuer");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let proc = Proc { child, log };
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read issuer stdout");
        let url = line
            .trim()
            .strip_prefix("issuer listening on ")
            .unwrap_or_else(|| panic!("issuer did not start: {line:?}\n{}", tail(&proc.log, 20)))
            .to_owned();
        let base = url.trim_end_matches("/oauth2/default").to_owned();
        let port = base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in issuer URL");
        Self {
            proc,
            _stdout: stdout,
            url,
            base,
            port,
        }
    }

    /// A token exactly as the Okta guide's `curl` gets one: a form POST with client id,
    /// secret and scope.
    pub fn token(&self, client_id: &str, secret: &str) -> String {
        let mut response = agent()
            .post(format!("{}/v1/token", self.url))
            .send_form([
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", "agentgateway"),
            ])
            .expect("token request");
        let status = response.status().as_u16();
        let body: Value = response.body_mut().read_json().expect("token JSON");
        assert_eq!(status, 200, "token endpoint refused: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub fn control(&self, path: &str, body: &str) -> Value {
        let mut response = agent()
            .post(format!("{}/control/{path}", self.base))
            .send(body)
            .expect("control request");
        assert_eq!(response.status().as_u16(), 200, "control/{path} failed");
        response.body_mut().read_json().expect("control JSON")
    }

    pub fn rotate(&self) -> String {
        self.control("rotate", "")["kid"]
            .as_str()
            .expect("kid")
            .to_owned()
    }

    pub fn keys_mode(&self, mode: &str) {
        self.control("keys-mode", mode);
    }

    pub fn keys_requests(&self) -> u64 {
        let mut response = agent()
            .get(format!("{}/control/stats", self.base))
            .call()
            .expect("stats");
        let stats: Value = response.body_mut().read_json().expect("stats JSON");
        stats["keys_requests"].as_u64().expect("keys_requests")
    }
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The MCP server stand-in: answers every request with what it received, as JSON, and
/// records it so tests can check what Envoy forwarded.
pub struct Upstream {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    pub port: u16,
}

impl Upstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("upstream address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (Arc::clone(&seen), Arc::clone(&stop));
        // A connection per thread, keep-alive honoured: Envoy pools upstream connections and
        // sends a request's headers before its body, so nothing may block across connections.
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let log = Arc::clone(&log);
                        std::thread::spawn(move || serve_echo(conn, &log));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
            seen,
            port,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Answers every HTTP/1.1 request on `conn` with a JSON echo of what it received.
fn serve_echo(conn: TcpStream, log: &Mutex<Vec<Seen>>) {
    let _ = conn.set_nonblocking(false);
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let echoed: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect();
        let echo = json!({
            "method": method,
            "path": path,
            "headers": echoed,
            "body_bytes": body.len(),
        })
        .to_string();
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen {
                method,
                path,
                headers,
            });
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{echo}",
            echo.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The local issuer's default clients: one in `AI-Users` (the guide's rule lets it in), one not.
pub const AI_USER: (&str, &str) = ("ai-user", "ai-user-secret");
pub const PLAIN_USER: (&str, &str) = ("plain-user", "plain-user-secret");

pub use mcp_auth_filter_tests::ports::free_port;

/// The Okta guide's config file on `port`, its issuer `issuer` (keys at `{issuer}/v1/keys`).
/// `authn` is appended to `mcpAuthentication` (its lines indented by 10, e.g. more
/// `audiences` entries go in `audiences`, so they are given apart) and `rules` are the
/// `authorization.rules` entries (indented by 10).
pub fn guide_config(
    port: u16,
    issuer: &str,
    audiences: &[&str],
    authn: &str,
    rules: &str,
) -> String {
    let mut audience_lines = String::from("          - api://agentgateway\n");
    for a in audiences {
        audience_lines.push_str(&format!("          - {a}\n"));
    }
    format!(
        r#"binds:
- port: {port}
  listeners:
  - routes:
    - backends:
      - mcp:
          targets:
          - name: my-server
            stdio:
              cmd: npx
              args: ["@modelcontextprotocol/server-everything"]
      policies:
        mcpAuthentication:
          mode: strict
          issuer: {issuer}
          audiences:
{audience_lines}          jwks:
            url: {issuer}/v1/keys
{authn}
        authorization:
          rules:
{rules}
"#
    )
}

/// The rule of the Okta guide, as a `rules` entry for [`guide_config`].
pub const GROUP_RULE: &str = "          - if: '\"AI-Users\" in auth.claims.groups'";

/// Waits until `host-shim up` has printed a line starting with `until` (90 s at most) and
/// returns the lines before it; panics with the tail of its log if it exits or never gets there.
pub fn wait_for_up(up: &mut Child, log: &Path, until: &str) -> Vec<String> {
    let stdout = up.stdout.take().expect("`up` started with a piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut printed = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.starts_with(until) => return printed,
            Ok(line) => printed.push(line),
            Err(_) if Instant::now() > deadline => {
                let _ = up.kill();
                panic!("host-shim up did not come up:\n{}", tail(log, 60));
            }
            Err(_) => {
                if let Ok(Some(status)) = up.try_wait() {
                    panic!("host-shim up exited ({status}):\n{}", tail(log, 60));
                }
            }
        }
    }
}

/// The filter's policy: the Okta guide's group rule, pointed at the local issuer, with the
/// JWKS cluster named explicitly (the default would be the URL's host, `127.0.0.1`).
pub fn policy(issuer: &Issuer) -> String {
    format!(
        r#"policies:
  mcpAuthentication:
    mode: strict
    issuer: {url}
    audiences: [api://agentgateway]
    jwks:
      url: {url}/v1/keys
      cluster: okta-jwks
  authorization:
    rules:
    - if: '"AI-Users" in auth.claims.groups'
"#,
        url = issuer.url
    )
}

/// The bootstrap for [`policy`], rendered as every other bootstrap is: by `host-shim envoy`.
fn bootstrap(issuer: &Issuer, upstream: &Upstream, wasm: &str) -> String {
    bootstrap_with_policy(&policy(issuer), issuer, upstream, wasm)
}

/// [`bootstrap`] with a policy of the caller's (a `policies:` document): the policy becomes the
/// one route of a config file on a free port, whose shim is the recording upstream.
pub fn bootstrap_with_policy(
    policy: &str,
    _issuer: &Issuer,
    upstream: &Upstream,
    wasm: &str,
) -> String {
    let policy: String = policy.lines().map(|l| format!("      {l}\n")).collect();
    let config = format!(
        r#"binds:
- port: {port}
  listeners:
  - routes:
    - backends:
      - mcp:
          targets:
          - name: upstream
            stdio:
              cmd: "true"
{policy}"#,
        port = free_port()
    );
    render_bootstrap(&config, upstream, wasm)
}

/// `host-shim envoy` on the config file `config`, the recording upstream in the shim's place
/// and the admin port left to Envoy (0).
pub fn render_bootstrap(config: &str, upstream: &Upstream, wasm: &str) -> String {
    render_bootstrap_to(config, upstream.port, wasm)
}

/// [`render_bootstrap`] with the shim's place taken by whatever listens on loopback `port`.
pub fn render_bootstrap_to(config: &str, port: u16, wasm: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, config).expect("write the config file");
    let out = Command::new(host_shim_binary())
        .arg("envoy")
        .arg(&file)
        .args(["--wasm", wasm, "--admin-port", "0"])
        .args(["--shim", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run host-shim envoy");
    assert!(
        out.status.success(),
        "host-shim envoy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the bootstrap is UTF-8")
}

pub struct Envoy {
    proc: Proc,
    /// `http://127.0.0.1:PORT`
    pub admin: String,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
}

impl Envoy {
    fn start(binary: &Path, dir: &Path, bootstrap: &str, concurrency: usize) -> Self {
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, bootstrap).expect("write bootstrap");
        let admin_path = dir.join("admin-address");
        let log = dir.join("envoy.log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", &concurrency.to_string()])
            // Several Envoys may run on one machine; hot restart would make them share memory.
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_path)
            // Warnings, plus what the filter itself logs.
            .args(["--log-level", "warn", "--component-log-level", "wasm:info"])
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("envoy log"))
            .spawn()
            .expect("spawn envoy");
        let mut proc = Proc { child, log };

        let deadline = Instant::now() + ENVOY_READY_TIMEOUT;
        let admin = loop {
            if let Some(status) = proc.child.try_wait().expect("try_wait") {
                panic!("envoy exited with {status}:\n{}", tail(&proc.log, 40));
            }
            assert!(
                Instant::now() < deadline,
                "envoy not ready after {ENVOY_READY_TIMEOUT:?}:\n{}",
                tail(&proc.log, 40)
            );
            let address = std::fs::read_to_string(&admin_path).unwrap_or_default();
            let address = address.trim();
            if !address.is_empty() {
                let admin = format!("http://{address}");
                if let Ok(mut r) = agent().get(format!("{admin}/ready")).call()
                    && r.status().as_u16() == 200
                    && r.body_mut().read_to_string().unwrap_or_default().trim() == "LIVE"
                {
                    break admin;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        };

        let mut response = agent()
            .get(format!("{admin}/listeners?format=json"))
            .call()
            .expect("listeners");
        let listeners: Value = response.body_mut().read_json().expect("listeners JSON");
        let port =
            listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or_else(|| panic!("no listener port in {listeners}"));
        Self {
            proc,
            admin,
            url: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// A counter or gauge from the admin interface, by exact name.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats_matching(name)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// All `name: value` stats whose name contains `part`.
    pub fn stats_matching(&self, part: &str) -> Vec<(String, u64)> {
        let mut response = agent()
            .get(format!("{}/stats", self.admin))
            .query("filter", regex_escape(part))
            .call()
            .expect("stats");
        let text = response.body_mut().read_to_string().expect("stats text");
        text.lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(": ")?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect()
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escape = ".^$*+?()[]{}|\\".contains(c);
            escape.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

/// A blocking client that treats every status as a response and never waits forever.
pub fn agent() -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(CLIENT_TIMEOUT))
        .build()
        .into()
}

/// One response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.body))
    }
}

/// What the tests need to start.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub concurrency: usize,
    /// Mode of the issuer's keys endpoint before Envoy starts.
    pub keys_mode: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency: 1,
            keys_mode: "ok",
        }
    }
}

pub struct Stack {
    // Field order is drop order: Envoy goes first so it never sees its upstreams vanish.
    pub envoy: Envoy,
    pub upstream: Upstream,
    pub issuer: Issuer,
    dir: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl Stack {
    /// `None` only when the Envoy tests are explicitly skipped.
    pub fn start(options: Options) -> Option<Self> {
        Self::start_with_bootstrap(options, bootstrap)
    }

    /// The same stack with a bootstrap of the caller's, rendered from the issuer, the upstream
    /// and the module's path once they exist.
    pub fn start_with_bootstrap(
        options: Options,
        render: impl FnOnce(&Issuer, &Upstream, &str) -> String,
    ) -> Option<Self> {
        let binary = envoy_binary()?;
        let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let wasm = env!("FILTER_WASM");
        assert!(
            Path::new(wasm).exists(),
            "filter module {wasm} is missing (build.rs should have built it)"
        );
        let dir = tempfile::Builder::new()
            .prefix("mcp-auth-e2e-")
            .tempdir()
            .expect("tempdir");
        let issuer = Issuer::start(dir.path());
        if options.keys_mode != "ok" {
            issuer.keys_mode(options.keys_mode);
        }
        let upstream = Upstream::start();
        let config = render(&issuer, &upstream, wasm);
        let envoy = Envoy::start(&binary, dir.path(), &config, options.concurrency);
        Some(Self {
            envoy,
            upstream,
            issuer,
            dir,
            _serial: serial,
        })
    }

    /// `reply` is the 401 of a request without a token: a challenge naming the protected-resource
    /// metadata of `/mcp`, and nothing forwarded.
    pub fn assert_challenge(&self, reply: &Reply) {
        assert_eq!(reply.status, 401, "{reply:?}");
        let www = reply.header("www-authenticate").expect("www-authenticate");
        let expected = format!(
            "resource_metadata=\"http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp\"",
            self.envoy.port
        );
        assert!(www.starts_with("Bearer "), "{www}");
        assert!(www.contains(&expected), "{www} lacks {expected}");
        assert!(self.upstream.seen().is_empty());
    }

    /// `POST <path>` through Envoy with an MCP JSON-RPC body, on a fresh connection (so that
    /// with several workers, requests spread over them), with an optional bearer token.
    pub fn request(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = agent()
            .post(format!("{}{path}", self.envoy.url))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let mut response = request
            .send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#)
            .unwrap_or_else(|err| {
                panic!(
                    "request through Envoy failed: {err}\n{}",
                    tail(&self.envoy.proc.log, 40)
                )
            });
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Reply {
            status: response.status().as_u16(),
            headers,
            body: response.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- envoy log (tail) ----\n{}\n---- issuer log (tail) ----\n{}\n----",
                tail(&self.envoy.proc.log, 60),
                tail(&self.issuer.proc.log, 30)
            );
        }
    }
}
