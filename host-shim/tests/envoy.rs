//! The bootstraps, checked by the real Envoy (`.tools/bin/envoy`, which `make envoy` installs):
//! what `host-shim envoy` renders and the hand-written ones in `envoy/` pass `--mode validate`;
//! a second Envoy cannot share a rendered listener's port; and `host-shim up` serves real MCP
//! sessions (the real server-everything) through Envoy to two shims on Unix sockets, each
//! session kept on the shim that holds it.
//!
//! Envoy loads the wasm module even to validate, and these tests are about the bootstrap and
//! the shim, so the filter is a pass-through module (`fixtures/pass-filter.wat`); the real
//! module's end-to-end tests are in `tests/`, which builds it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

mod common;
use common::{
    children, descendants, envoy, everything, free_port, pass_filter, repo_root, temp_path,
    wait_for_port,
};

fn config(port: u16) -> String {
    format!(
        "binds:\n- port: {port}\n  listeners:\n  - routes:\n    - name: tools\n      matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n          targets:\n          - name: everything\n            stdio:\n              cmd: node\n              args: [\"{}\", \"stdio\"]\n",
        everything()
    )
}

/// `host-shim envoy` for `config` with extra arguments; the bootstrap's path.
fn render(config: &str, args: &[&str]) -> PathBuf {
    let config_path = temp_path("gateway.yaml");
    std::fs::write(&config_path, config).unwrap();
    let output = temp_path("envoy.yaml");
    let status = Command::new(env!("CARGO_BIN_EXE_host-shim"))
        .arg("envoy")
        .arg(&config_path)
        .arg("--wasm")
        .arg(pass_filter())
        .arg("-o")
        .arg(&output)
        .args(args)
        .status()
        .unwrap();
    assert!(status.success());
    output
}

fn validate(bootstrap: &Path) -> Output {
    Command::new(envoy())
        .args(["--mode", "validate", "-c"])
        .arg(bootstrap)
        .output()
        .unwrap()
}

fn assert_valid(bootstrap: &Path) {
    let output = validate(bootstrap);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("OK"),
        "{}: {stdout}\n{stderr}",
        bootstrap.display()
    );
}

#[test]
fn rendered_bootstraps_pass_envoy_validation() {
    let guide = std::fs::read_to_string(repo_root().join("examples/okta.yaml")).unwrap();
    let socket = format!("unix:{}", temp_path("shim.sock").display());
    for shims in [
        vec!["--shim", socket.as_str()],
        // Several shims: the stateful session filter, one endpoint of each kind.
        vec!["--shim", "127.0.0.1:4000", "--shim", socket.as_str()],
    ] {
        let bootstrap = render(&guide, &shims);
        let text = std::fs::read_to_string(&bootstrap).unwrap();
        assert!(text.contains("pipe:"), "{text}");
        assert!(text.contains("allow_on_headers_stop_iteration: true"));
        assert_valid(&bootstrap);

        // The same with one field misspelt is refused: validation reads every field, so the
        // names above are ones Envoy knows.
        let wrong = temp_path("wrong.yaml");
        std::fs::write(
            &wrong,
            text.replace(
                "path_with_escaped_slashes_action",
                "path_with_escaped_slash_action",
            ),
        )
        .unwrap();
        let output = validate(&wrong);
        assert!(!output.status.success());
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("path_with_escaped_slash_action"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn json_renders_the_same_bootstrap_as_yaml() {
    let guide = std::fs::read_to_string(repo_root().join("examples/okta.yaml")).unwrap();
    let yaml = render(&guide, &["--shim", "127.0.0.1:4000"]);
    let json = temp_path("envoy.json");
    std::fs::copy(
        render(&guide, &["--shim", "127.0.0.1:4000", "--json"]),
        &json,
    )
    .unwrap();
    let as_yaml: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&yaml).unwrap()).unwrap();
    let as_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(as_json, as_yaml);
    assert_valid(&json);
}

/// `envoy/*.yaml` (rendered from the examples, see `make envoy-examples`) are hardened and load.
#[test]
fn the_example_bootstraps_are_hardened_and_pass_envoy_validation() {
    for name in ["envoy-local.yaml", "envoy-okta-https.yaml"] {
        let text = std::fs::read_to_string(repo_root().join("envoy").join(name)).unwrap();
        for needle in [
            "enable_reuse_port: false",
            "per_connection_buffer_limit_bytes: 1048576",
            "request_headers_timeout: 10s",
            "stream_idle_timeout: 300s",
            "headers_with_underscores_action: REJECT_REQUEST",
            "max_request_headers_kb: 32",
            "max_concurrent_streams: 100",
            "normalize_path: true",
            "merge_slashes: true",
            "path_with_escaped_slashes_action: REJECT_REQUEST",
            "envoy.resource_monitors.global_downstream_max_connections",
            "allow_on_headers_stop_iteration: true",
            r#""holdHeaders":true"#,
        ] {
            assert!(text.contains(needle), "{name} lacks {needle:?}");
        }
        let module = "target/filter-wasm/wasm32-wasip1/release/mcp_auth_filter.wasm";
        assert!(
            text.contains(module),
            "{name} loads the module from {module}"
        );
        let bootstrap = temp_path(name);
        std::fs::write(
            &bootstrap,
            text.replace(module, &pass_filter().display().to_string()),
        )
        .unwrap();
        assert_valid(&bootstrap);
    }
}

/// A child process killed (and reaped) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        common::stop(&mut self.0, Duration::from_secs(15));
    }
}

#[test]
fn a_second_envoy_cannot_share_a_rendered_listeners_port() {
    let port = free_port();
    let bootstrap = render(&config(port), &["--admin-port", "0"]);
    let start = || {
        Command::new(envoy())
            .arg("-c")
            .arg(&bootstrap)
            // Two Envoys on one machine would otherwise also collide on the hot-restart
            // socket, which is not what this test is about.
            .args(["--disable-hot-restart", "--concurrency", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let _first = Running(start());
    wait_for_port(port);
    let mut second = Running(start());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = second.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second Envoy started on the same port"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("Address already in use"), "{stderr}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

fn is_shim(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == b"serve"))
}

#[test]
fn up_reaches_two_shims_over_owner_only_sockets_and_keeps_each_session_on_its_shim() {
    let port = free_port();
    let config_path = temp_path("gateway.yaml");
    std::fs::write(&config_path, config(port)).unwrap();
    let mut up = Command::new(env!("CARGO_BIN_EXE_host-shim"))
        .arg("up")
        .arg(&config_path)
        .arg("--wasm")
        .arg(pass_filter())
        .arg("--envoy")
        .arg(envoy())
        .args(["--shims", "2", "--admin-port", "0", "--concurrency", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = up.stdout.take().unwrap();
    let up = Running(up);
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("up exited").unwrap();
        if let Some(rest) = line.strip_prefix("MCP gateway up: ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert_eq!(url, format!("http://127.0.0.1:{port}/mcp"));
    let agent = common::agent();
    std::thread::spawn(move || for _ in lines {});

    let prefix = format!("host-shim-up-{}-", up.0.id());
    let dir = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .expect("up's private directory");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for i in 0..2 {
        let socket = dir.join(format!("shim-{i}.sock"));
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", socket.display());
    }

    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "host-shim-tests", "version": "1"},
    }});
    let sessions: Vec<String> = (0..4)
        .map(|_| {
            let (status, session, answer) = common::post(&agent, &url, None, &initialize);
            assert_eq!(status, 200, "{answer}");
            let session = session.expect("Mcp-Session-Id");
            let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            assert_eq!(
                common::post(&agent, &url, Some(&session), &initialized).0,
                202
            );
            session
        })
        .collect();
    let shims: Vec<u32> = children(up.0.id())
        .into_iter()
        .filter(|pid| is_shim(*pid))
        .collect();
    assert_eq!(shims.len(), 2);
    for shim in &shims {
        assert!(
            !children(*shim).is_empty(),
            "every shim holds a session: {shims:?}"
        );
    }
    // A request that reached the other shim would be a 404 there.
    for round in 0..3 {
        for session in &sessions {
            let message = format!("{round} {}", &session[..8]);
            let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"message": message}}});
            let (status, _, answer) = common::post(&agent, &url, Some(session), &call);
            assert_eq!(status, 200, "{answer}");
            assert_eq!(
                answer["result"]["content"][0]["text"],
                format!("Echo: {message}")
            );
        }
    }

    let everything = descendants(up.0.id());
    drop(up);
    let left: Vec<u32> = everything
        .into_iter()
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}")).is_ok())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!dir.exists(), "the sockets' directory is removed");
}
