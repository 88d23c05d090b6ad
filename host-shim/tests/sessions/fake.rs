//! The fake MCP server the in-process tests start as their `stdio` child: this very test binary,
//! re-executed with `HOST_SHIM_FAKE_MCP` set (see `main`). It speaks line-delimited JSON-RPC on
//! stdin/stdout like any MCP stdio server — `initialize`, `ping`, `tools/list`, `tools/call`,
//! notifications (ignored) — and misbehaves on purpose as its mode says:
//!
//! | mode      | what it does                                                              |
//! |-----------|---------------------------------------------------------------------------|
//! | `ok`      | answers                                                                   |
//! | `garbage` | before the `tools/list` answer: non-JSON, half an object, a JSON non-message, an answer to a request nobody made |
//! | `badutf8` | before the `tools/list` answer: a non-UTF-8 line on stderr (then 1 MiB more) and on stdout |
//! | `bigline` | its one tool has a 10 MiB description (one 10 MiB stdout line)           |
//! | `stderr`  | writes ~20 MiB to stderr before the `tools/list` answer                   |
//! | `silent`  | never answers `tools/list`                                                |
//! | `exit`    | exits with status 3 at once, a line on stderr first                       |
//!
//! Whatever the mode, the tool `echo` (or `HOST_SHIM_FAKE_TOOL`) answers `{name}: {message}` (the name is
//! `HOST_SHIM_FAKE_NAME`, so fan-out tests see which child answered), `slow` sleeps
//! `arguments.ms` first, and `crash` exits with status 3 without answering.

use std::io::{BufRead as _, Write as _};
use std::time::Duration;

use serde_json::{Value as Json, json};

pub const MODE: &str = "HOST_SHIM_FAKE_MCP";
pub const NAME: &str = "HOST_SHIM_FAKE_NAME";
pub const TOOL: &str = "HOST_SHIM_FAKE_TOOL";

pub fn serve(mode: &str) {
    if mode == "exit" {
        eprintln!("going away");
        std::process::exit(3);
    }
    let name = std::env::var(NAME).unwrap_or_else(|_| "fake".into());
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let Ok(message) = serde_json::from_str::<Json>(&line) else {
            continue;
        };
        let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) else {
            continue; // a notification, or an answer to nothing we asked
        };
        let result = match method {
            "initialize" => json!({
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": name, "version": "1"},
            }),
            "tools/list" => match tools_list(mode, &mut out) {
                Some(list) => list,
                None => continue,
            },
            "tools/call" => {
                let arguments = &message["params"]["arguments"];
                match message["params"]["name"].as_str() {
                    Some("crash") => std::process::exit(3),
                    Some("slow") => {
                        let ms = arguments["ms"].as_u64().unwrap_or(0);
                        std::thread::sleep(Duration::from_millis(ms));
                        text(&format!("{name}: slept {ms} ms"))
                    }
                    _ => text(&format!(
                        "{name}: {}",
                        arguments["message"].as_str().unwrap_or("")
                    )),
                }
            }
            _ => json!({}),
        };
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

fn text(text: &str) -> Json {
    json!({"content": [{"type": "text", "text": text}]})
}

/// The `tools/list` result after the mode's misbehaviour, or `None` for no answer at all.
fn tools_list(mode: &str, out: &mut impl std::io::Write) -> Option<Json> {
    let mut stderr = std::io::stderr().lock();
    match mode {
        "silent" => return None,
        "garbage" => {
            let _ = out.write_all(
                b"this is not JSON\n{\"jsonrpc\":\"2.0\",\"id\":\n[1,2,3]\n{\"jsonrpc\":\"2.0\",\"id\":999999,\"result\":{}}\n",
            );
        }
        "badutf8" => {
            // On stderr too, then more than a pipe holds: a shim that stopped reading stderr at
            // the bad line would block this write, and the answer would never come.
            let _ = stderr.write_all(&[0xff, 0xfe, b'\n']);
            let _ = stderr.write_all(format!("{}\n", "y".repeat(1023)).repeat(1024).as_bytes());
            let _ = out.write_all(&[0xff, 0xfe, 0x00, 0x80, b'\n']);
        }
        "stderr" => {
            let line = format!("{}\n", "x".repeat(1023));
            for _ in 0..20 * 1024 {
                let _ = stderr.write_all(line.as_bytes());
            }
        }
        _ => {}
    }
    let echo = std::env::var(TOOL).unwrap_or_else(|_| "echo".into());
    let description = if mode == "bigline" {
        "d".repeat(10 * 1024 * 1024)
    } else {
        "echoes".to_string()
    };
    Some(json!({"tools": [
        {"name": echo, "description": description, "inputSchema": {"type": "object"}},
        {"name": "slow", "description": "answers after arguments.ms", "inputSchema": {"type": "object"}},
        {"name": "crash", "description": "exits without answering", "inputSchema": {"type": "object"}},
    ]}))
}
