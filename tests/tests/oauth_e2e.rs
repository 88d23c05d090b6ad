//! People logging in through the gateway from their own MCP client, end to end and on loopback:
//! `host-shim up --local-issuer` (the local issuer, `host-shim serve` with server-everything,
//! Envoy with the release module) and the official SDKs' OAuth clients — the Python SDK's
//! `OAuthClientProvider` (`tests/e2e/oauth_client.py`, `mcp` 2.3.0 from `make python`) and the
//! TypeScript SDK's (`tests/e2e/oauth-client.mjs`). The scripts sign in by posting the issuer's
//! login form over plain HTTP where a desktop client would open a browser; discovery,
//! registration, PKCE, the code exchange and refresh are the SDKs' own.

#![allow(dead_code)]

mod envoy_support;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_support::{
    GROUP_RULE, agent, envoy_binary, free_port, guide_config, host_shim_binary, repo_root, tail,
    wait_for_up,
};
use serde_json::{Value, json};

/// One stack at a time: the machine has two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Access tokens live this long in the refresh scenarios, and the policy allows 1 s of skew, so
/// a token is refused by the gateway a few seconds after it was issued.
const TOKEN_TTL: u64 = 5;

/// `host-shim up --local-issuer` on the Okta guide's config; everything it started ends with it.
struct Gateway {
    _serial: std::sync::MutexGuard<'static, ()>,
    up: Child,
    log: PathBuf,
    /// `http://127.0.0.1:PORT/mcp`
    url: String,
    /// `http://127.0.0.1:PORT`
    origin: String,
    /// `http://127.0.0.1:PORT/oauth2/default`
    issuer: String,
    dir: tempfile::TempDir,
}

impl Gateway {
    /// The guide's config, with the gateway's MCP URL among the audiences (as
    /// `examples/okta-local.yaml` has it), 1 s of clock skew and `authn` added to
    /// `mcpAuthentication`; the issuer gets `issuer_args`.
    fn start(authn: &str, issuer_args: &[&str]) -> Option<Gateway> {
        let envoy = envoy_binary()?;
        let serial = SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let root = repo_root();
        assert!(
            python().exists(),
            "the MCP Python SDK is not installed at {}: run `make python` (make test does)",
            python().display()
        );
        let dir = tempfile::Builder::new()
            .prefix("oauth-e2e")
            .tempdir()
            .unwrap();
        let (port, issuer_port) = (free_port(), free_port());
        let issuer = format!("http://127.0.0.1:{issuer_port}/oauth2/default");
        let config = dir.path().join("gateway.yaml");
        let mcp_url = format!("http://127.0.0.1:{port}/mcp");
        let authn = format!("          clockSkew: 1s\n{authn}");
        let config_text = guide_config(port, &issuer, &[&mcp_url], &authn, GROUP_RULE);
        std::fs::write(&config, config_text).unwrap();
        let log = dir.path().join("up.log");
        let mut command = Command::new(host_shim_binary());
        command
            .arg("up")
            .arg(&config)
            .arg("--local-issuer")
            .args(["--wasm", env!("FILTER_WASM")])
            .arg("--envoy")
            .arg(&envoy)
            .args(["--admin-port", &free_port().to_string()]);
        for arg in issuer_args {
            command.arg(format!("--issuer-arg={arg}"));
        }
        let mut up = command
            .current_dir(&root)
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start host-shim up");
        let printed = wait_for_up(&mut up, &log, "Ctrl-C stops everything");
        let gateway = Gateway {
            _serial: serial,
            up,
            log,
            url: format!("http://127.0.0.1:{port}/mcp"),
            origin: format!("http://127.0.0.1:{port}"),
            issuer,
            dir,
        };
        // What `up` tells a person: how to connect their client, and whom to log in as.
        let printed = printed.join("\n");
        for needle in [
            format!(
                "claude mcp add --transport http mcp-gateway {}",
                gateway.url
            ),
            format!("\"url\": \"{}\"", gateway.url),
            "npx @modelcontextprotocol/inspector".to_string(),
            "alice / alice-password".to_string(),
        ] {
            assert!(
                printed.contains(&needle),
                "{needle} missing from:\n{printed}"
            );
        }
        Some(gateway)
    }

    /// Runs an SDK's OAuth client (`python` or `node`) as `username` through `steps`.
    fn client(&self, sdk: Sdk, username: &str, steps: Value) -> Vec<Value> {
        let (program, script) = match sdk {
            Sdk::Python => (python(), "tests/e2e/oauth_client.py"),
            Sdk::TypeScript => (PathBuf::from("node"), "tests/e2e/oauth-client.mjs"),
        };
        let out = Command::new(program)
            .arg(repo_root().join(script))
            .arg(&self.url)
            .arg(username)
            .arg(format!("{username}-password"))
            .arg(steps.to_string())
            .current_dir(repo_root())
            .output()
            .expect("run the SDK client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|_| {
                    panic!(
                        "{sdk:?} client printed {l:?}\nstderr: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                })
            })
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, url: &str) -> (u16, Value) {
        let mut response = agent().get(url).call().unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // SIGTERM: `up` stops Envoy, the shim (and its MCP servers) and the issuer.
        let _ = Command::new("kill")
            .args(["-TERM", &self.up.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.up.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.up.kill();
        let _ = self.up.wait();
        if std::thread::panicking() {
            eprintln!("---- host-shim up log (tail) ----\n{}", tail(&self.log, 80));
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Sdk {
    Python,
    TypeScript,
}

fn python() -> PathBuf {
    repo_root().join(".tools/venv/bin/python")
}

/// The text of the first content item of a `call` step.
fn echoed(step: &Value) -> &str {
    step["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no tool result: {step}"))
}

/// Alice logs in, calls, waits out her token and calls again on a refreshed one; asserts what
/// the SDK held at each point. Returns the steps' output.
fn alice_logs_in_calls_and_refreshes(gw: &Gateway, sdk: Sdk) -> Vec<Value> {
    let out = gw.client(
        sdk,
        "alice",
        json!([
            "connect",
            "listTools",
            {"call": ["echo", {"message": "signed in"}]},
            "token",
            {"sleep": TOKEN_TTL + 2},
            {"call": ["echo", {"message": "after the refresh"}]},
            "token",
            "close"
        ]),
    );
    assert_eq!(out[0]["ok"], true, "{sdk:?}: {out:?}");
    let tools = out[1]["tools"].as_array().unwrap();
    assert!(tools.iter().any(|t| t == "echo"), "{out:?}");
    assert!(echoed(&out[2]).contains("signed in"), "{out:?}");
    let first = &out[3];
    assert_eq!(first["claims"]["sub"], "alice", "{first}");
    assert_eq!(first["claims"]["aud"], gw.url.as_str(), "{first}");
    assert!(
        first["claims"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "AI-Users"),
        "{first}"
    );
    assert_eq!(first["refreshToken"], true, "{first}");
    assert_eq!(first["logins"], 1, "{first}");
    // The second call went out on a new token from the refresh token: no second login. (On a
    // slow machine a refresh may come before the first look: count on from there.)
    assert!(echoed(&out[5]).contains("after the refresh"), "{out:?}");
    let second = &out[6];
    assert_eq!(second["logins"], 1, "{second}");
    assert!(
        second["grants"].as_u64() > first["grants"].as_u64(),
        "{first} then {second}"
    );
    assert_ne!(second["claims"]["jti"], first["claims"]["jti"]);
    assert_eq!(second["claims"]["sub"], "alice");
    out
}

#[test]
fn the_python_sdk_registers_logs_alice_in_refreshes_and_bob_is_refused() {
    let ttl = format!("--token-ttl={TOKEN_TTL}");
    let Some(gw) = Gateway::start("", &[&ttl]) else {
        return;
    };
    // The gateway says it is not the authorization server where SDK fallbacks look for one.
    let (status, body) = gw.get(&format!(
        "{}/.well-known/oauth-authorization-server",
        gw.origin
    ));
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["authorization_servers"], json!([gw.issuer]));

    let out = alice_logs_in_calls_and_refreshes(&gw, Sdk::Python);
    // Registered dynamically at the issuer (an Okta-style id), not pre-configured.
    assert!(
        out[0]["clientId"].as_str().unwrap().starts_with("0oa"),
        "{out:?}"
    );
    let log = gw.log();
    assert!(log.contains("issuer: registered client"), "{log}");
    assert!(log.contains("refresh token rotated for alice"), "{log}");

    // Bob signs in fine, but the guide's rule wants AI-Users: the gateway answers 403.
    let out = gw.client(Sdk::Python, "bob", json!(["connect", "listTools"]));
    assert!(out[0].get("error").is_some(), "{out:?}");
    let statuses = out[0]["statuses"].as_array().unwrap();
    assert_eq!(statuses.first(), Some(&json!(401)), "{out:?}");
    assert!(statuses.contains(&json!(403)), "{out:?}");
    assert!(gw.log().contains("issuer: bob signed in"));
}

#[test]
fn the_typescript_sdk_registers_logs_alice_in_and_refreshes_on_a_401() {
    let ttl = format!("--token-ttl={TOKEN_TTL}");
    let Some(gw) = Gateway::start("", &[&ttl]) else {
        return;
    };
    let out = alice_logs_in_calls_and_refreshes(&gw, Sdk::TypeScript);
    assert!(
        out[0]["clientId"].as_str().unwrap().starts_with("0oa"),
        "{out:?}"
    );
    // This SDK refreshes when the gateway refuses the expired token, not before.
    let log = gw.log();
    assert!(log.contains("refresh token rotated for alice"), "{log}");
}

/// The issuer as an Okta custom authorization server is: no open registration, no RFC 9207
/// `iss` in its redirects, one pre-registered public (native) client.
fn okta_like_issuer(gw_dir: &std::path::Path) -> String {
    let clients = gw_dir.join("clients.yaml");
    std::fs::write(
        &clients,
        "clients:\n- id: mcp-laptop\n  redirect_uris: [\"http://127.0.0.1/callback\"]\n",
    )
    .unwrap();
    clients.display().to_string()
}

const FACADE: &str = "          provider: okta
          registration:
            clientId: mcp-laptop
            redirectUris: [\"http://127.0.0.1/callback\"]";

#[test]
fn the_python_sdk_registers_through_the_facade_when_the_issuer_has_no_registration() {
    let files = tempfile::tempdir().unwrap();
    let clients = format!("--clients-file={}", okta_like_issuer(files.path()));
    let Some(gw) = Gateway::start(
        FACADE,
        &["--no-registration", "--no-response-iss", &clients],
    ) else {
        return;
    };
    // The issuer offers no registration; the gateway names itself the resource's authorization
    // server and serves metadata whose issuer is the URL the SDK derives from that name.
    let (_, issuer_metadata) = gw.get(&format!("{}/.well-known/openid-configuration", gw.issuer));
    assert!(issuer_metadata.get("registration_endpoint").is_none());
    let (_, prm) = gw.get(&format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        gw.origin
    ));
    assert_eq!(prm["authorization_servers"], json!([gw.url]));
    let (status, facade) = gw.get(&format!(
        "{}/.well-known/oauth-authorization-server/mcp",
        gw.origin
    ));
    assert_eq!(status, 200, "{facade}");
    assert_eq!(facade["issuer"], gw.url.as_str());
    assert_eq!(
        facade["authorization_endpoint"],
        format!("{}/v1/authorize", gw.issuer)
    );
    assert_eq!(
        facade["registration_endpoint"],
        format!("{}/register", gw.url)
    );

    let out = gw.client(
        Sdk::Python,
        "alice",
        json!(["connect", {"call": ["echo", {"message": "through the facade"}]}, "token"]),
    );
    assert_eq!(out[0]["ok"], true, "{out:?}");
    assert_eq!(out[0]["clientId"], "mcp-laptop", "{out:?}");
    assert!(echoed(&out[1]).contains("through the facade"), "{out:?}");
    assert_eq!(out[2]["claims"]["cid"], "mcp-laptop");
    assert_eq!(out[2]["claims"]["sub"], "alice");
    let log = gw.log();
    assert!(
        log.contains("alice signed in for client mcp-laptop"),
        "{log}"
    );
    assert!(!log.contains("registered client"), "{log}");

    // The TypeScript SDK takes the same path.
    let out = gw.client(
        Sdk::TypeScript,
        "alice",
        json!(["connect", "listTools", "close"]),
    );
    assert_eq!(out[0]["clientId"], "mcp-laptop", "{out:?}");
    assert!(!out[1]["tools"].as_array().unwrap().is_empty(), "{out:?}");
}

/// The facade's limit: an issuer that names itself in its redirects (RFC 9207) contradicts the
/// facade's metadata, and an SDK that checks `iss` stops the login there.
#[test]
fn an_issuer_that_sends_iss_contradicts_the_facade_for_sdks_that_check_it() {
    let files = tempfile::tempdir().unwrap();
    let clients = format!("--clients-file={}", okta_like_issuer(files.path()));
    let Some(gw) = Gateway::start(FACADE, &["--no-registration", &clients]) else {
        return;
    };
    let out = gw.client(Sdk::Python, "alice", json!(["connect"]));
    let message = out[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("iss mismatch"), "{out:?}");
    // TypeScript SDK 1.32.2 does not check `iss` in the redirect.
    let out = gw.client(Sdk::TypeScript, "alice", json!(["connect", "close"]));
    assert_eq!(out[0]["ok"], true, "{out:?}");
}
