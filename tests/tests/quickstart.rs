//! The README's quick start, run as written: `host-shim up examples/okta-local.yaml
//! --local-issuer` (what `make run` starts, on its default ports 3000 and 9000), then the
//! README's curl session and its Python SDK snippet, copied out of the README itself, so the
//! commands a newcomer pastes are the commands that pass here.
mod envoy_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use envoy_support::{envoy_binary, host_shim_binary, repo_root, tail, wait_for_up};

/// The shell block that follows `<!-- quickstart:<name> -->` in the README.
fn block(readme: &str, name: &str) -> String {
    let marker = format!("<!-- quickstart:{name} -->");
    let rest = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README has no {marker}"))
        .1;
    let body = rest.split_once("```sh\n").expect("a sh block").1;
    body.split_once("\n```")
        .expect("the block's end")
        .0
        .to_string()
}

struct Up(std::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        // SIGTERM: up ends its process groups and removes its files.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readmes_quick_start_runs_as_written() {
    let Some(envoy) = envoy_binary() else { return };
    let root = repo_root();
    let python = root.join(".tools/venv/bin/python");
    assert!(python.exists(), "run `make python` first (make test does)");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let script = format!(
        "set -euo pipefail\n{}\n{}\n",
        block(&readme, "curl"),
        block(&readme, "python")
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("up.log");
    let child = Command::new(host_shim_binary())
        .args(["up", "examples/okta-local.yaml", "--local-issuer"])
        .args(["--wasm", env!("FILTER_WASM")])
        .arg("--envoy")
        .arg(&envoy)
        .current_dir(&root)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut up = Up(child);
    wait_for_up(&mut up.0, &log, "MCP gateway up:");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\n{}",
        tail(&log, 30)
    );
    assert!(stdout.contains("\"echo\""), "tools/list: {stdout}");
    assert!(stdout.contains("hello through the gateway"), "{stdout}");
    assert!(stdout.contains("hello from Python"), "{stdout}\n{stderr}");
    drop(up);
}
