//! One MCP server running as a child process, spoken to in newline-delimited JSON-RPC over its
//! stdin/stdout (the MCP stdio transport). This is the only file that knows about processes.
//!
//! Two promises are kept here, because everything above relies on them:
//! - **No hang.** A call either gets the child's answer or, once the child is gone (it exited,
//!   closed stdout, or the session stopped it), an error naming the server and how it ended.
//! - **No orphan, no zombie.** The child leads its own process group (`npx` starts `node` as a
//!   grandchild), and the whole group is signalled: SIGTERM, then SIGKILL after [`GRACE`], and
//!   the leader is reaped. If the task owning the child is dropped (runtime shutdown, a panic
//!   unwinding), a guard still kills the group; with `panic = "abort"` a panic hook does. The
//!   shim is a child subreaper, so grandchildren orphaned by the kill are reaped here too.
//!   (A SIGKILLed shim can do none of this: supervisors should send SIGTERM and wait.)

use std::collections::{BTreeSet, HashMap};
use std::process::{ExitStatus, Stdio as Pipe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde_json::{Value as Json, json};
use tokio::io::AsyncWriteExt as _;
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, FramedRead};
use tokio_util::sync::CancellationToken;

use crate::config::Stdio;

/// Time a child gets to exit after SIGTERM before its group is killed.
pub const GRACE: Duration = Duration::from_secs(2);
/// A resource read can be large, but a child writing an endless line must not eat the memory.
const MAX_LINE: usize = 64 * 1024 * 1024;
/// A stderr line is only logged: longer ones are dropped with a note.
const MAX_LOG_LINE: usize = 64 * 1024;
/// After the leader exits, how long its last lines may take to arrive.
const DRAIN: Duration = Duration::from_millis(500);

/// Why a call to a child did not get the child's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StdioError {
    #[error("MCP server '{target}' could not be started ({cmd}): {reason}")]
    Spawn {
        target: String,
        cmd: String,
        reason: String,
    },
    #[error("MCP server '{target}' exited ({how})")]
    Exited { target: String, how: String },
    #[error("MCP server '{target}' was stopped: the session ended")]
    Stopped { target: String },
    #[error("the client cancelled the request")]
    Cancelled,
    #[error("MCP server '{target}' did not answer within {seconds} s")]
    TimedOut { target: String, seconds: u64 },
}

/// The child's answer to one request: its `result`, or its `error` object as sent.
pub type Reply = Result<Json, Json>;

/// Receives every message the child sends that is not an answer to one of our calls
/// (its notifications and its requests to the client), in the order it wrote them. Called on
/// the reading task before any later answer is delivered, so a progress notification reaches
/// its stream before the response that follows it.
pub type OnMessage = Arc<dyn Fn(Json) + Send + Sync>;

type Pending = oneshot::Sender<Result<Reply, StdioError>>;

#[derive(Default)]
struct Calls {
    pending: HashMap<u64, Pending>,
    /// Set once the child is gone; every later call fails with it at once.
    dead: Option<StdioError>,
}

/// A running MCP server child. Dropping it stops the child (in the background).
pub struct StdioServer {
    target: String,
    pid: u32,
    request_timeout: Duration,
    next_id: AtomicU64,
    calls: Arc<Mutex<Calls>>,
    writer: mpsc::UnboundedSender<String>,
    stop: CancellationToken,
    done: watch::Receiver<bool>,
}

/// A call on its way: its id on the child's side (for cancellation) and the answer to come.
pub struct PendingCall {
    pub id: u64,
    target: String,
    answer: oneshot::Receiver<Result<Reply, StdioError>>,
    timeout: Duration,
}

impl PendingCall {
    pub async fn wait(self) -> Result<Reply, StdioError> {
        match tokio::time::timeout(self.timeout, self.answer).await {
            Ok(answer) => answer.unwrap_or(Err(StdioError::Stopped {
                target: self.target,
            })),
            Err(_) => Err(StdioError::TimedOut {
                target: self.target,
                seconds: self.timeout.as_secs(),
            }),
        }
    }
}

impl StdioServer {
    /// Starts `spec` for `target`. Its stderr lines go to our stderr behind `log_prefix`.
    pub fn spawn(
        target: &str,
        spec: &Stdio,
        log_prefix: String,
        on_message: OnMessage,
    ) -> Result<StdioServer, StdioError> {
        let spawn_error = |reason: String| StdioError::Spawn {
            target: target.to_string(),
            cmd: spec.cmd.clone(),
            reason,
        };
        let mut command = Command::new(&spec.cmd);
        command
            .args(&spec.args)
            .stdin(Pipe::piped())
            .stdout(Pipe::piped())
            .stderr(Pipe::piped())
            .process_group(0)
            .kill_on_drop(true);
        if spec.clear_env {
            command.env_clear();
            // Without PATH, `npx` and friends could not be found at all.
            if let Some(path) = std::env::var_os("PATH") {
                command.env("PATH", path);
            }
        }
        command.envs(&spec.env);
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn().map_err(|e| spawn_error(e.to_string()))?;
        let pid = child
            .id()
            .ok_or_else(|| spawn_error("exited at once".into()))?;
        let guard = GroupGuard::new(pid);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(spawn_error("no pipes to the child".into()));
        };
        crate::say!("{log_prefix} started: pid {pid}");

        tokio::spawn(log_stderr(stderr, log_prefix.clone()));
        let (writer, lines) = mpsc::unbounded_channel();
        tokio::spawn(write_stdin(stdin, lines));

        let calls = Arc::new(Mutex::new(Calls::default()));
        let stop = CancellationToken::new();
        let (done_tx, done) = watch::channel(false);
        tokio::spawn(supervise(Supervisor {
            target: target.to_string(),
            log_prefix,
            child,
            guard,
            stdout,
            calls: calls.clone(),
            on_message,
            stop: stop.clone(),
            done: done_tx,
        }));
        Ok(StdioServer {
            target: target.to_string(),
            pid,
            request_timeout: spec
                .request_timeout
                .unwrap_or(crate::config::DEFAULT_REQUEST_TIMEOUT),
            next_id: AtomicU64::new(1),
            calls,
            writer,
            stop,
            done,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the child is gone (every call to it fails from now on).
    pub fn exited(&self) -> bool {
        lock(&self.calls).dead.is_some()
    }

    /// Sends a request; the answer comes through the returned call.
    pub fn call(&self, method: &str, params: Option<Json>) -> Result<PendingCall, StdioError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, answer) = oneshot::channel();
        {
            let mut calls = lock(&self.calls);
            if let Some(dead) = &calls.dead {
                return Err(dead.clone());
            }
            calls.pending.insert(id, tx);
        }
        // An access log of what reached the MCP server: operators (and the end-to-end tests)
        // can tell from it that a call the gateway denied never got here.
        let named = params
            .as_ref()
            .and_then(|p| p.get("name").or_else(|| p.get("uri")))
            .and_then(Json::as_str)
            .unwrap_or_default();
        crate::say!("[{} pid {}] call {method} {named}", self.target, self.pid);
        let mut message = json!({ "jsonrpc": "2.0", "id": id, "method": method });
        if let (Some(params), Some(object)) = (params, message.as_object_mut()) {
            object.insert("params".into(), params);
        }
        // A closed writer means the child is going; the supervisor fails the call then.
        let _ = self.writer.send(message.to_string());
        Ok(PendingCall {
            id,
            target: self.target.clone(),
            answer,
            timeout: self.request_timeout,
        })
    }

    /// Sends a notification, or a response to one of the child's requests.
    pub fn send(&self, message: &Json) -> Result<(), StdioError> {
        if let Some(dead) = &lock(&self.calls).dead {
            return Err(dead.clone());
        }
        let _ = self.writer.send(message.to_string());
        Ok(())
    }

    /// Gives up on call `id`: its waiter gets [`StdioError::Cancelled`] and the child is told,
    /// so that neither side keeps working on it.
    pub fn cancel(&self, id: u64, reason: Option<&Json>) {
        let pending = lock(&self.calls).pending.remove(&id);
        if let Some(pending) = pending {
            let _ = pending.send(Err(StdioError::Cancelled));
            let mut params = json!({ "requestId": id });
            if let (Some(reason), Some(object)) = (reason, params.as_object_mut()) {
                object.insert("reason".into(), reason.clone());
            }
            let _ = self.send(&json!({
                "jsonrpc": "2.0", "method": "notifications/cancelled", "params": params,
            }));
        }
    }

    /// Stops the child (SIGTERM to its group, SIGKILL after [`GRACE`]) and returns once it is
    /// reaped.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let mut done = self.done.clone();
        let _ = done.wait_for(|done| *done).await;
    }
}

impl Drop for StdioServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Splits a child's output into lines as bytes, at most `max` each. Not `LinesCodec`: it fails
/// on a line that is not UTF-8 as on a closed pipe, which ended the session (stdout) or
/// stopped the reading and then stalled the child on a full pipe (stderr).
fn line_reader<R: tokio::io::AsyncRead>(reader: R, max: usize) -> FramedRead<R, AnyDelimiterCodec> {
    FramedRead::new(
        reader,
        AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), max),
    )
}

async fn log_stderr(stderr: tokio::process::ChildStderr, prefix: String) {
    let mut lines = line_reader(stderr, MAX_LOG_LINE);
    loop {
        match lines.next().await {
            Some(Ok(line)) => {
                let line = String::from_utf8_lossy(&line);
                crate::say!("{prefix} {}", line.trim_end_matches('\r'));
            }
            Some(Err(AnyDelimiterCodecError::MaxChunkLengthExceeded)) => {
                crate::say!("{prefix} (a stderr line over {MAX_LOG_LINE} bytes, not shown)");
            }
            Some(Err(AnyDelimiterCodecError::Io(_))) | None => break,
        }
    }
}

async fn write_stdin(
    mut stdin: tokio::process::ChildStdin,
    mut lines: mpsc::UnboundedReceiver<String>,
) {
    while let Some(mut line) = lines.recv().await {
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
}

struct Supervisor {
    target: String,
    log_prefix: String,
    child: Child,
    guard: GroupGuard,
    stdout: ChildStdout,
    calls: Arc<Mutex<Calls>>,
    on_message: OnMessage,
    stop: CancellationToken,
    done: watch::Sender<bool>,
}

/// Owns the child: reads its stdout, notices its end (exit, stdout closed, or stop), ends its
/// process group, reaps it, and fails every call still waiting.
async fn supervise(mut s: Supervisor) {
    let mut lines = line_reader(s.stdout, MAX_LINE);
    let end = loop {
        tokio::select! {
            line = lines.next() => match line {
                Some(Ok(line)) => dispatch(&s.log_prefix, &s.calls, &s.on_message, &line),
                Some(Err(AnyDelimiterCodecError::MaxChunkLengthExceeded)) => {
                    crate::say!("{} dropped a stdout line over {MAX_LINE} bytes", s.log_prefix);
                }
                // Stdout closed: the child cannot answer anymore, whatever it does next.
                Some(Err(AnyDelimiterCodecError::Io(_))) | None => {
                    break match tokio::time::timeout(GRACE, s.child.wait()).await {
                        Ok(status) => Ended::Exited(status.ok()),
                        Err(_) => Ended::Exited(terminate(&mut s.child, s.guard.pgid).await),
                    };
                }
            },
            status = s.child.wait() => {
                // Its last words may still be in the pipe; grandchildren must not keep it open.
                s.guard.kill(Signal::SIGKILL);
                let drain = async {
                    while let Some(Ok(line)) = lines.next().await {
                        dispatch(&s.log_prefix, &s.calls, &s.on_message, &line);
                    }
                };
                let _ = tokio::time::timeout(DRAIN, drain).await;
                break Ended::Exited(status.ok());
            }
            () = s.stop.cancelled() => {
                terminate(&mut s.child, s.guard.pgid).await;
                break Ended::Stopped;
            }
        }
    };
    s.guard.kill(Signal::SIGKILL);
    s.guard.wait_empty().await;
    s.guard.disarm();
    let error = match end {
        Ended::Stopped => StdioError::Stopped { target: s.target },
        Ended::Exited(status) => {
            let how = describe(status);
            crate::say!("{} exited ({how})", s.log_prefix);
            StdioError::Exited {
                target: s.target,
                how,
            }
        }
    };
    let pending = {
        let mut calls = lock(&s.calls);
        calls.dead = Some(error.clone());
        std::mem::take(&mut calls.pending)
    };
    for (_, waiter) in pending {
        let _ = waiter.send(Err(error.clone()));
    }
    let _ = s.done.send(true);
}

enum Ended {
    Exited(Option<ExitStatus>),
    Stopped,
}

/// SIGTERM to the group, SIGKILL after the grace period, then reap the leader.
async fn terminate(child: &mut Child, pgid: i32) -> Option<ExitStatus> {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    match tokio::time::timeout(GRACE, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            child.wait().await.ok()
        }
    }
}

fn describe(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("status {code}"),
            (None, Some(signal)) => match Signal::try_from(signal) {
                Ok(name) => format!("signal {signal}, {name}"),
                Err(_) => format!("signal {signal}"),
            },
            (None, None) => "unknown status".into(),
        },
        None => "status unknown".into(),
    }
}

/// Sorts one line from the child: answers go to their waiting call, everything else to
/// `on_message`.
fn dispatch(prefix: &str, calls: &Mutex<Calls>, on_message: &OnMessage, line: &[u8]) {
    // JSON text is UTF-8 (RFC 8259 §8.1): anything else cannot be a message; the session goes on.
    let Ok(line) = std::str::from_utf8(line) else {
        crate::say!(
            "{prefix} dropped a stdout line that is not UTF-8 ({} bytes)",
            line.len()
        );
        return;
    };
    let line = line.trim();
    if line.is_empty() {
        return;
    }
    let message: Json = match serde_json::from_str(line) {
        Ok(message) => message,
        Err(_) => {
            // Servers sometimes print banners on stdout; keep them visible, but as logs.
            crate::say!("{prefix} (stdout, not JSON-RPC) {line}");
            return;
        }
    };
    let messages = match message {
        Json::Array(batch) => batch,
        single => vec![single],
    };
    for message in messages {
        if message.get("method").is_some() {
            on_message(message);
            continue;
        }
        let Some(id) = message.get("id").and_then(Json::as_u64) else {
            crate::say!("{prefix} answer to no request of ours: {message}");
            continue;
        };
        let reply = match (message.get("result"), message.get("error")) {
            (_, Some(error)) => Err(error.clone()),
            (Some(result), None) => Ok(result.clone()),
            (None, None) => Err(json!({
                "code": -32603, "message": "the MCP server sent a response without result or error",
            })),
        };
        if let Some(waiter) = lock(calls).pending.remove(&id) {
            let _ = waiter.send(Ok(reply));
        }
    }
}

/// Process groups of live children, for the panic hook.
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Kills a child's whole group when dropped, unless the supervisor already finished it.
struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl GroupGuard {
    fn new(pid: u32) -> GroupGuard {
        let pgid = i32::try_from(pid).unwrap_or(i32::MAX);
        lock(&LIVE_GROUPS).insert(pgid);
        GroupGuard { pgid, armed: true }
    }

    fn kill(&self, signal: Signal) {
        if self.armed {
            let _ = killpg(Pid::from_raw(self.pgid), signal);
        }
    }

    /// Waits (briefly) until no process of the group is left, reaping the members that were
    /// reparented to us (see [`become_subreaper`]): "stopped" means gone, not about to go.
    async fn wait_empty(&self) {
        for _ in 0..50 {
            while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
                waitpid(Pid::from_raw(-self.pgid), Some(WaitPidFlag::WNOHANG))
            {}
            if killpg(Pid::from_raw(self.pgid), None).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
        lock(&LIVE_GROUPS).remove(&self.pgid);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            self.kill(Signal::SIGKILL);
            self.disarm();
        }
    }
}

/// Makes orphaned descendants (a `node` whose `npx` parent died first) our children instead of
/// init's, so that [`StdioServer::shutdown`] can reap them itself; otherwise they linger as
/// zombies until an init that may be slow to reap gets to them. Only members of a child's
/// process group are reaped here (`waitpid(-pgid)`), so the children `tokio` waits for are
/// left to it.
pub fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        crate::say!("serve: cannot become a child subreaper ({e}); grandchildren are left to init");
    }
}

/// With `panic = "abort"` (the release profile) no destructor runs on a panic, so the hook
/// kills every child's group before the process dies. Unwinding builds rely on the guards.
pub fn kill_children_on_panic() {
    #[cfg(panic = "abort")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if let Ok(groups) = LIVE_GROUPS.try_lock() {
                    for pgid in groups.iter() {
                        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
                    }
                }
                previous(info);
            }));
        });
    }
}
