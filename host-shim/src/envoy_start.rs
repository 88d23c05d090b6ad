//! Knowing whether the children `host-shim up` starts came up, and saying why when they did
//! not. Envoy's log is passed on to `up`'s stderr as it comes and its last lines are kept, so an
//! Envoy that exits before it listens (a port it cannot bind, a configuration it rejects) ends
//! `up` at once with Envoy's own words instead of a timeout that blames the port.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStderr};
use tokio::task::JoinHandle;

/// How long Envoy gets to listen on every bind.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines kept for the error: enough for a failed start, bounded for a long run.
const KEPT_LINES: usize = 200;
/// Lines shown when none is an error.
const SHOWN_WITHOUT_ERRORS: usize = 10;

/// A child that did not come up, or went away.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Envoy exited ({status}) before it listened on {address}:\n{log}")]
    EnvoyExited {
        status: ExitStatus,
        address: String,
        log: String,
    },
    #[error("Envoy is not listening on {address} after {waited:?}:\n{log}")]
    EnvoyNotListening {
        address: String,
        waited: Duration,
        log: String,
    },
    #[error("{name} {reason}")]
    NotReady { name: &'static str, reason: String },
    #[error("{name} exited ({status}); the gateway was stopped")]
    Exited {
        name: &'static str,
        status: ExitStatus,
    },
}

/// Envoy's stderr: forwarded line by line, the last lines kept.
pub struct EnvoyLog {
    lines: Arc<Mutex<VecDeque<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl EnvoyLog {
    pub fn capture(stderr: ChildStderr) -> EnvoyLog {
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let kept = lines.clone();
        let reader = tokio::spawn(async move {
            let mut stderr = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = stderr.next_line().await {
                crate::say!("{line}");
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        EnvoyLog {
            lines,
            reader: Some(reader),
        }
    }

    /// The lines that say why Envoy stopped, once it has: read to the end first (Envoy's
    /// last words are often its last line), but never waiting long for a pipe that some other
    /// process might hold open.
    async fn reason(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        relevant(lines.iter().map(String::as_str))
    }
}

/// Envoy's error and critical entries (with the lines that continue them) and the lines it
/// writes outside its log format (`unable to bind domain socket …`, its final `cannot bind
/// …`), without the timestamp, thread and source file; the last lines when there are none.
fn relevant<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    let lines: Vec<&str> = lines.collect();
    let mut shown = Vec::new();
    let mut in_error = false;
    for line in &lines {
        if line.starts_with(char::is_whitespace) {
            if in_error {
                shown.push(format!("  {}", line.trim()));
            }
            continue;
        }
        match entry(line) {
            Some((level, message)) => {
                in_error = matches!(level.as_str(), "error" | "critical");
                if in_error {
                    shown.push(format!("  {message}"));
                }
            }
            None => {
                in_error = !line.trim().is_empty();
                if in_error {
                    shown.push(format!("  {}", line.trim()));
                }
            }
        }
    }
    if shown.is_empty() {
        let skip = lines.len().saturating_sub(SHOWN_WITHOUT_ERRORS);
        shown = lines
            .iter()
            .skip(skip)
            .map(|l| format!("  {}", entry(l).map_or(l.to_string(), |(_, m)| m)))
            .collect();
    }
    if shown.is_empty() {
        return "  (Envoy wrote nothing)".into();
    }
    shown.join("\n")
}

/// `[2026-12-01 16:45:26.496][13972][error][config] [source/….cc:1405] message` →
/// (`error`, `[error][config] message`).
fn entry(line: &str) -> Option<(String, String)> {
    let mut rest = line;
    let mut fields = Vec::new();
    while fields.len() < 4 {
        let (field, after) = rest.strip_prefix('[')?.split_once(']')?;
        fields.push(field);
        rest = after;
    }
    let [stamp, _thread, level, component] = fields.as_slice() else {
        return None;
    };
    if !stamp.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let rest = rest.trim_start();
    // The source location, when there is one, is no help to the user.
    let message = match rest.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((place, message)) if place.contains(".cc:") || place.contains(".h:") => message,
        _ => rest,
    };
    Some((
        level.to_string(),
        format!("[{level}][{component}] {message}"),
    ))
}

/// Waits until Envoy accepts connections on every port of `host`; an Envoy that exits first
/// ends the wait at once, with its reason.
pub async fn wait_listening(
    envoy: &mut Child,
    log: &mut EnvoyLog,
    host: &str,
    ports: &[u16],
) -> Result<(), StartError> {
    let address = ports
        .iter()
        .map(|p| format!("{host}:{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    let started = tokio::time::Instant::now();
    let mut waiting: Vec<u16> = ports.to_vec();
    loop {
        if let Ok(Some(status)) = envoy.try_wait() {
            return Err(StartError::EnvoyExited {
                status,
                address,
                log: log.reason().await,
            });
        }
        let mut still = Vec::new();
        for port in waiting {
            if tokio::net::TcpStream::connect((host, port)).await.is_err() {
                still.push(port);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            return Ok(());
        }
        if started.elapsed() > LISTEN_TIMEOUT {
            let lines = log.lines.lock().unwrap_or_else(|e| e.into_inner());
            return Err(StartError::EnvoyNotListening {
                address,
                waited: LISTEN_TIMEOUT,
                log: relevant(lines.iter().map(String::as_str)),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_envoys_error_lines() {
        let log = "\
[2026-12-01 16:45:26.490][13972][warning][main] [source/server/server.cc:1059] There is no configured limit
[2026-12-01 16:45:26.496][13972][error][config] [source/common/listener_manager/listener_manager_impl.cc:1405] listener 'bind-3000' failed to bind or apply socket options: cannot bind '127.0.0.1:3000': Address already in use
[2026-12-01 16:45:26.496][13972][critical][main] [source/server/server.cc:449] error `cannot bind '127.0.0.1:3000': Address already in use` initializing config 'goo.gle/debugproto
  /tmp/x/envoy.yaml'
[2026-12-01 16:45:26.497][13972][info][main] [source/server/server.cc:1000] exiting
cannot bind '127.0.0.1:3000': Address already in use";
        assert_eq!(
            relevant(log.lines()),
            "  [error][config] listener 'bind-3000' failed to bind or apply socket options: cannot bind '127.0.0.1:3000': Address already in use
  [critical][main] error `cannot bind '127.0.0.1:3000': Address already in use` initializing config 'goo.gle/debugproto
  /tmp/x/envoy.yaml'
  cannot bind '127.0.0.1:3000': Address already in use"
        );
        // Without an error line, the last lines say what there is to say.
        let quiet = "[2026-12-01 16:45:26.490][1][info][main] [source/server/server.cc:1] starting";
        assert_eq!(relevant(quiet.lines()), "  [info][main] starting");
        assert_eq!(relevant("".lines()), "  (Envoy wrote nothing)");
    }
}
