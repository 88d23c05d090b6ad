//! `host-shim up` fails fast and says why, with the real Envoy, the real issuer binary and the
//! real server-everything: a port another gateway holds is refused before anything starts and
//! the gateway holding it goes on serving; gateways on other ports run side by side; an Envoy
//! that exits at start ends `up` within seconds with Envoy's own reason; a `stdio` command
//! that cannot be found, an issuer the local issuer would not match and a configuration error
//! are refused at the line of the file, without a backtrace. Each `up` gets a `TMPDIR` of the
//! test's own, which must be empty once it has exited — whichever way it exited — and no
//! process it started may outlive it.
//!
//! Envoy loads a pass-through module (`fixtures/pass-filter.wat`): these tests are about `up`,
//! not the filter's judgement (the real module's end-to-end tests are in `tests/`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{
    children, envoy, everything, exit_within, free_port, pass_filter, processes_naming, scratch,
    signal,
};

/// One route on `port` serving server-everything, then `policies` (already indented) if any.
fn config(port: u16, cmd: &str, policies: &str) -> String {
    format!(
        "binds:\n- port: {port}\n  listeners:\n  - routes:\n    - name: tools\n      matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n          targets:\n          - name: everything\n            stdio:\n              cmd: {cmd}\n              args: [\"{}\", \"stdio\"]\n{policies}",
        everything()
    )
}

/// An `up` run with its own `TMPDIR` and config file; its stdout and stderr are collected.
struct Up {
    child: Option<Child>,
    tmp: tempfile::TempDir,
    config: PathBuf,
    stdout: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    started: Instant,
}

impl Up {
    fn start(config_text: &str, args: &[&str]) -> Up {
        let tmp = tempfile::Builder::new()
            .prefix("up-test-")
            .tempdir()
            .unwrap();
        // The config lives beside, not inside, the directory `up` must leave empty.
        let config = scratch().join(format!(
            "{}.yaml",
            tmp.path().file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(&config, config_text).unwrap();
        let started = Instant::now();
        let mut command = Command::new(env!("CARGO_BIN_EXE_host-shim"));
        command.arg("up").arg(&config).args(["--concurrency", "1"]);
        let defaults = [
            ("--admin-port", PathBuf::from("0")),
            ("--wasm", pass_filter().to_path_buf()),
            ("--envoy", envoy()),
        ];
        for (flag, value) in defaults {
            if !args.contains(&flag) {
                command.arg(flag).arg(value);
            }
        }
        let mut child = command
            .args(args)
            .env("TMPDIR", tmp.path())
            // A user error must read the same with backtraces asked for.
            .env("RUST_BACKTRACE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Up {
            child: Some(child),
            tmp,
            config,
            stdout,
            stderr,
            started,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The gateway's URL, once `up` says it is up.
    fn ready(&self) -> String {
        loop {
            let line = self
                .stdout
                .recv_timeout(Duration::from_secs(90))
                .unwrap_or_else(|_| panic!("up never came up: {}", self.stderr()));
            if let Some(rest) = line.strip_prefix("MCP gateway up: ") {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
    }

    /// Waits for `up` to exit by itself, at most `limit`.
    fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                self.started.elapsed() < limit,
                "up still runs after {limit:?}: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        self.child = None;
        // Its stderr is read to the end once every writer (its children too) is gone.
        std::thread::sleep(Duration::from_millis(200));
        status
    }

    fn terminate(&mut self) -> ExitStatus {
        signal(self.pid(), "TERM");
        let child = self.child.as_mut().unwrap();
        let status = exit_within(child, Duration::from_secs(30), "up ignored SIGTERM");
        self.child = None;
        status
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `up` left nothing in its temporary directory, and no process that names its config.
    fn assert_clean(&self) {
        let left: Vec<PathBuf> = std::fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
        // The shims name the config; Envoy names its bootstrap, which was in TMPDIR.
        let config = self.config.display().to_string();
        let tmp = self.tmp.path().display().to_string();
        let started = Instant::now();
        loop {
            let mut running = processes_naming(&config);
            running.extend(processes_naming(&tmp));
            if running.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "left running: {running:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            signal(child.id(), "TERM");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// An MCP `initialize` through the gateway: the status.
fn initialize(url: &str) -> u16 {
    let (status, _, answer) = common::post(&common::agent(), url, None, &common::initialize(1));
    if status == 200 {
        assert!(answer["result"]["serverInfo"].is_object(), "{answer}");
    }
    status
}

/// An executable script in the shared scratch directory.
fn script(name: &str, body: &str) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_second_up_on_a_taken_port_is_refused_at_once_and_the_first_goes_on_serving() {
    let port = free_port();
    let text = config(port, "node", "");
    let mut first = Up::start(&text, &[]);
    let url = first.ready();
    assert_eq!(initialize(&url), 200);

    let mut second = Up::start(&text, &[]);
    let status = second.exit_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{}", second.stderr());
    let stderr = second.stderr();
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: port {port} on 127.0.0.1 is already in use (binds[0].port of {}): another \
             gateway or program holds it; stop it or choose another port",
            second.config.display()
        )
    );
    second.assert_clean();

    // Another gateway's port held the same way, outside any config: the admin port.
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_port = admin.local_addr().unwrap().port().to_string();
    let mut third = Up::start(
        &config(free_port(), "node", ""),
        &["--admin-port", &admin_port],
    );
    assert_eq!(third.exit_within(Duration::from_secs(10)).code(), Some(2));
    assert!(
        third.stderr().contains(&format!(
            "port {admin_port} on 127.0.0.1 is already in use (Envoy's admin port, --admin-port)"
        )),
        "{}",
        third.stderr()
    );
    third.assert_clean();

    // The first never noticed.
    assert_eq!(initialize(&url), 200);

    // A child dying ends `up` too, and it still cleans up after itself.
    let envoy = children(first.pid())
        .into_iter()
        .find(|pid| comm(*pid) == "envoy")
        .expect("Envoy is up's child");
    signal(envoy, "KILL");
    let status = first.exit_within(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1));
    assert!(
        first
            .stderr()
            .contains("error: envoy exited (signal: 9 (SIGKILL)); the gateway was stopped"),
        "{}",
        first.stderr()
    );
    first.assert_clean();
}

#[test]
fn gateways_on_other_ports_run_side_by_side() {
    let mut a = Up::start(&config(free_port(), "node", ""), &[]);
    let mut b = Up::start(&config(free_port(), "node", ""), &[]);
    let (url_a, url_b) = (a.ready(), b.ready());
    assert_ne!(url_a, url_b);
    assert_eq!(initialize(&url_a), 200);
    assert_eq!(initialize(&url_b), 200);
    for up in [&mut a, &mut b] {
        assert!(up.terminate().success(), "{}", up.stderr());
        up.assert_clean();
    }
}

#[test]
fn an_envoy_that_exits_at_start_ends_up_within_seconds_with_its_reason() {
    // An Envoy stand-in that says what a real one says when another process holds the port.
    let port = free_port();
    let failing = script(
        "failing-envoy",
        &format!(
            "echo \"[2026-01-01 00:00:00.000][1][critical][main] [source/server/server.cc:449] \
             error initializing config: cannot bind '127.0.0.1:{port}': Address already in use\" >&2\n\
             echo \"cannot bind '127.0.0.1:{port}': Address already in use\" >&2\nexit 1"
        ),
    );
    let mut up = Up::start(
        &config(port, "node", ""),
        &["--envoy", failing.to_str().unwrap()],
    );
    let status = up.exit_within(Duration::from_secs(15));
    assert_eq!(status.code(), Some(1), "{}", up.stderr());
    let stderr = up.stderr();
    assert!(
        stderr.contains(&format!(
            "error: Envoy exited (exit status: 1) before it listened on 127.0.0.1:{port}:\n  \
             [critical][main] error initializing config: cannot bind '127.0.0.1:{port}': \
             Address already in use\n  cannot bind '127.0.0.1:{port}': Address already in use"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("acktrace"), "{stderr}");
    up.assert_clean();

    // The real Envoy, refusing a module it cannot load.
    let broken = scratch().join("not-a-module.wasm");
    std::fs::write(&broken, "this is not WebAssembly").unwrap();
    let mut up = Up::start(
        &config(free_port(), "node", ""),
        &["--wasm", broken.to_str().unwrap()],
    );
    let status = up.exit_within(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{}", up.stderr());
    let stderr = up.stderr();
    let reason = stderr
        .split_once("error: Envoy exited (exit status: 1) before it listened on ")
        .unwrap_or_else(|| panic!("{stderr}"))
        .1;
    assert!(
        reason.contains("[error][wasm] Wasm VM failed Failed to parse corrupted Wasm module")
            && reason.contains("Unable to create Wasm plugin"),
        "{stderr}"
    );
    up.assert_clean();
}

#[test]
fn a_signal_while_envoy_is_starting_stops_everything_and_cleans_up() {
    // An Envoy that never listens: `up` is still waiting for it when the signal comes.
    let slow = script("slow-envoy", "exec sleep 300");
    let mut up = Up::start(
        &config(free_port(), "node", ""),
        &["--envoy", slow.to_str().unwrap()],
    );
    let started = Instant::now();
    while !children(up.pid()).iter().any(|pid| comm(*pid) == "sleep") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            up.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sleeper = children(up.pid())
        .into_iter()
        .find(|pid| comm(*pid) == "sleep")
        .unwrap();
    let status = up.terminate();
    assert!(status.success(), "{}", up.stderr());
    assert!(
        up.started.elapsed() < Duration::from_secs(20),
        "the signal waited for the start"
    );
    up.assert_clean();
    assert!(
        !Path::new(&format!("/proc/{sleeper}")).exists(),
        "the starting Envoy was left running"
    );
}

#[test]
fn a_stdio_command_that_is_not_found_is_refused_before_anything_starts() {
    let mut up = Up::start(&config(free_port(), "no-such-mcp-server", ""), &[]);
    let status = up.exit_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        up.stderr(),
        format!(
            "error: {}:12:20: binds[0].listeners[0].routes[0].backends[0].mcp.targets[0].stdio.cmd: \
             target \"everything\": command \"no-such-mcp-server\" is not found on PATH\n   |\n\
             12 |               cmd: no-such-mcp-server\n   |                    ^\n",
            up.config.display()
        )
    );
    up.assert_clean();
}

#[test]
fn an_issuer_the_local_issuer_would_not_match_is_refused_showing_both() {
    let issuer_port = free_port();
    let policies = format!(
        "      policies:\n        mcpAuthentication:\n          issuer: http://127.0.0.1:{issuer_port}/oauth2/default/\n          audiences: [api://agentgateway]\n"
    );
    let mut up = Up::start(&config(free_port(), "node", &policies), &["--local-issuer"]);
    let status = up.exit_within(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{}", up.stderr());
    let stderr = up.stderr();
    let expected = format!(
        "error: {}:16:19: binds[0].listeners[0].routes[0].policies.mcpAuthentication.issuer: \
         \"http://127.0.0.1:{issuer_port}/oauth2/default/\" is not the local issuer's \
         \"http://127.0.0.1:{issuer_port}/oauth2/default\"",
        up.config.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    up.assert_clean();
    // The issuer it started to compare with is gone, and its port free again.
    std::net::TcpListener::bind(("127.0.0.1", issuer_port)).unwrap();

    // An issuer the local one cannot stand in for is refused before anything starts.
    let okta = "      policies:\n        mcpAuthentication:\n          issuer: https://your-org.okta.com/oauth2/default\n          audiences: [api://agentgateway]\n";
    let mut up = Up::start(&config(free_port(), "node", okta), &["--local-issuer"]);
    assert_eq!(up.exit_within(Duration::from_secs(10)).code(), Some(2));
    assert_eq!(
        up.stderr(),
        "error: --local-issuer needs an http://127.0.0.1:PORT/... issuer, not \
         \"https://your-org.okta.com/oauth2/default\"\n"
    );
    up.assert_clean();
}

#[test]
fn a_configuration_error_is_shown_at_the_users_line_without_a_backtrace() {
    let policies = "      policies:\n        mcpAuthentication:\n          mode: stric\n          issuer: http://127.0.0.1:9/oauth2/default\n          audiences: []\n";
    let mut up = Up::start(&config(free_port(), "node", policies), &[]);
    let status = up.exit_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        up.stderr(),
        format!(
            "error: {}:16:17: binds[0].listeners[0].routes[0].policies.mcpAuthentication.mode: \
             unknown variant `stric`, expected one of `strict`, `optional`, `permissive`\n   |\n\
             16 |           mode: stric\n   |                 ^\n",
            up.config.display()
        )
    );
    up.assert_clean();
}
