//! Sessions, fan-out to several targets and the stdio transport, tested in-process: each test
//! runs the library's `serve::serve` on `127.0.0.1:0` inside the test process and talks to it
//! over HTTP, or drives `stdio::StdioServer` directly. The MCP child is a small fake written in
//! Rust (`fake.rs`) that is this same test binary, re-executed: the binary has its own `main`
//! (`harness = false`, with `libtest-mimic` for the usual test CLI) so that, with
//! `HOST_SHIM_FAKE_MCP` set, it is an MCP stdio server and nothing else writes to its stdout —
//! libtest's own `running N tests` line would otherwise be the first thing the shim reads. A
//! native child starts in milliseconds where `node` takes a third of a second, and it can crash,
//! write garbage or stall on cue. What only the real server proves (its tools, prompts,
//! resources, server-to-client requests, `npx`) stays in `serve.rs`, against
//! `@modelcontextprotocol/server-everything`.
// A test binary without libtest's `#[test]` functions, so clippy's in-test allowances do not
// reach it: said here once for the whole binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../common/mod.rs"]
mod common;
mod fake;

use common::{eventually, initialize, text_of};

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use host_shim::address::{Address, Bound};
use host_shim::config::{Config, Stdio};
use host_shim::session::Limits;
use host_shim::stdio::{StdioError, StdioServer};
use libtest_mimic::{Arguments, Trial};
use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;
use ureq::Agent;

/// The trials of this binary, each named after its function.
macro_rules! trials {
    ($($test:ident),* $(,)?) => {
        vec![$(Trial::test(stringify!($test), || {
            $test();
            Ok(())
        })),*]
    };
}

fn main() -> std::process::ExitCode {
    if let Ok(mode) = std::env::var(fake::MODE) {
        fake::serve(&mode);
        return std::process::ExitCode::SUCCESS;
    }
    let trials = trials![
        a_session_initializes_lists_calls_and_ends_with_delete,
        sessions_never_share_a_child,
        two_targets_are_one_server_with_prefixed_names,
        names_split_at_the_longest_target_as_the_filter_splits_them,
        a_listed_name_that_would_reach_another_target_is_left_out,
        garbage_on_stdout_is_skipped_and_the_answer_still_arrives,
        a_line_that_is_not_utf8_is_dropped_and_the_session_goes_on,
        a_10_mib_stdout_line_is_delivered_whole,
        a_stderr_flood_does_not_stall_the_server_or_the_shim,
        a_server_that_never_answers_times_out,
        a_slow_answer_within_the_timeout_arrives,
        a_server_that_exits_at_once_is_an_error_not_a_hang,
        a_child_that_crashes_mid_call_fails_the_call_and_the_session,
        a_child_killed_mid_call_fails_the_call_and_the_session,
        two_hundred_sessions_opened_and_closed_leave_no_child_behind,
        two_hundred_sessions_leave_the_shim_process_as_it_was,
    ];
    libtest_mimic::run(&Arguments::from_args(), trials).exit_code()
}

static TAGS: AtomicU32 = AtomicU32::new(0);

/// A word on every child's command line that names the test it belongs to, so a test counts its
/// own children while others run in the same process.
fn new_tag() -> String {
    format!(
        "fake-mcp-{}-{}",
        std::process::id(),
        TAGS.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fake target: this binary as `cmd`, the mode and the target's name in its environment.
fn target(name: &str, mode: &str, tag: &str, timeout: Option<&str>) -> String {
    target_with_tool(name, mode, tag, timeout, "echo")
}

/// [`target`] whose echo tool is called `tool`.
fn target_with_tool(
    name: &str,
    mode: &str,
    tag: &str,
    timeout: Option<&str>,
    tool: &str,
) -> String {
    let exe = std::env::current_exe().unwrap();
    let timeout = timeout.map_or(String::new(), |t| {
        format!("              requestTimeout: {t}\n")
    });
    format!(
        "          - name: {name}\n            stdio:\n              cmd: {exe:?}\n              args: [{tag:?}]\n              env: {{{}: {mode}, {}: {name}, {}: {tool}}}\n{timeout}",
        fake::MODE,
        fake::NAME,
        fake::TOOL,
        exe = exe.display().to_string(),
    )
}

fn config(targets: &str) -> String {
    format!(
        "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - name: tools\n      backends:\n      - mcp:\n          targets:\n{targets}"
    )
}

/// The pids of the live processes whose command line carries `tag`.
fn tagged(tag: &str) -> BTreeSet<u32> {
    common::processes_naming(tag).into_iter().collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `serve::serve` for one config, on its own runtime in this process; stopped when dropped,
/// and every child reaped before the drop returns.
struct Server {
    runtime: tokio::runtime::Runtime,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    stop: CancellationToken,
    client: Client,
}

impl std::ops::Deref for Server {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// An MCP client of one server's Streamable HTTP endpoint.
struct Client {
    url: String,
    agent: Agent,
}

impl Client {
    fn new(url: String) -> Client {
        Client {
            url,
            agent: common::agent(),
        }
    }
}

impl Server {
    fn start(config: &str) -> Server {
        let config = Config::parse(config).unwrap();
        let runtime = runtime();
        let address: Address = "127.0.0.1:0".parse().unwrap();
        let listener = runtime.block_on(Bound::bind(&address)).unwrap();
        let url = format!("{}/mcp", listener.local_address().unwrap());
        let stop = CancellationToken::new();
        let served = runtime.spawn(host_shim::serve::serve(
            Arc::new(config),
            listener,
            Limits::default(),
            stop.clone(),
        ));
        Server {
            runtime,
            served: Some(served),
            stop,
            client: Client::new(url),
        }
    }
}

impl Client {
    /// POSTs `body` asking for JSON: the status, the session id and the answer (`null` if none).
    fn post(&self, session: Option<&str>, body: &Json) -> (u16, Option<String>, Json) {
        common::post(&self.agent, &self.url, session, body)
    }

    /// A new session, initialized.
    fn session(&self) -> String {
        let (status, session, answer) = self.post(None, &initialize(1));
        assert_eq!(status, 200, "{answer}");
        let session = session.expect("Mcp-Session-Id");
        let notification = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(self.post(Some(&session), &notification).0, 202);
        session
    }

    fn call(&self, session: &str, method: &str, params: Json) -> (u16, Json) {
        let body = json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params});
        let (status, _, answer) = self.post(Some(session), &body);
        (status, answer)
    }

    fn tool(&self, session: &str, name: &str, arguments: Json) -> Json {
        let (status, answer) = self.call(
            session,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        );
        assert_eq!(status, 200, "{answer}");
        answer
    }

    fn delete(&self, session: &str) -> u16 {
        self.agent
            .delete(&self.url)
            .header("mcp-session-id", session)
            .call()
            .unwrap()
            .status()
            .as_u16()
    }

    /// The server still starts sessions and answers.
    fn still_up(&self) {
        let (status, _, answer) = self.post(None, &initialize(1));
        assert_eq!(
            status, 200,
            "the server no longer starts sessions: {answer}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Idle pooled connections would hold the graceful shutdown for its whole drain time.
        self.client.agent = Agent::config_builder().build().into();
        self.stop.cancel();
        if let Some(served) = self.served.take() {
            let result = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(20), served).await });
            if !std::thread::panicking() {
                result.expect("serve stops").unwrap().unwrap();
            }
        }
    }
}

fn tool_names(answer: &Json) -> BTreeSet<&str> {
    common::tool_names(&answer["result"]).into_iter().collect()
}

fn a_session_initializes_lists_calls_and_ends_with_delete() {
    let tag = new_tag();
    let server = Server::start(&config(&target("my-server", "ok", &tag, None)));
    let session = server.session();
    assert_eq!(tagged(&tag).len(), 1, "one child for the session");
    let (status, tools) = server.call(&session, "tools/list", json!({}));
    assert_eq!(status, 200);
    assert!(tool_names(&tools).contains("echo"), "{tools}");
    let echoed = server.tool(&session, "echo", json!({"message": "hi"}));
    assert_eq!(text_of(&echoed), "my-server: hi");
    assert_eq!(server.delete(&session), 200);
    eventually("the session's child gone", Duration::from_secs(10), || {
        tagged(&tag).is_empty()
    });
    let (status, _) = server.call(&session, "tools/list", json!({}));
    assert_eq!(status, 404, "a deleted session is gone");
    assert_eq!(server.delete(&session), 404);
}

fn sessions_never_share_a_child() {
    let tag = new_tag();
    let server = Server::start(&config(&target("my-server", "ok", &tag, None)));
    let first = server.session();
    let second = server.session();
    assert_ne!(first, second);
    assert_eq!(tagged(&tag).len(), 2, "two sessions, two children");
    for session in [&first, &second] {
        let echoed = server.tool(session, "echo", json!({"message": session}));
        assert_eq!(text_of(&echoed), format!("my-server: {session}"));
    }
    // Ending one session stops its child only.
    assert_eq!(server.delete(&first), 200);
    eventually("one child left", Duration::from_secs(10), || {
        tagged(&tag).len() == 1
    });
    let echoed = server.tool(&second, "echo", json!({"message": "still"}));
    assert_eq!(text_of(&echoed), "my-server: still");
}

/// A server on `targets`, a session of it, and the answer to its `tools/list`.
fn listed(targets: &[String]) -> (Server, String, Json) {
    let server = Server::start(&config(&targets.concat()));
    let session = server.session();
    let (_, tools) = server.call(&session, "tools/list", json!({}));
    (server, session, tools)
}

fn two_targets_are_one_server_with_prefixed_names() {
    let tag = new_tag();
    let (server, session, tools) =
        listed(&[target("a", "ok", &tag, None), target("b", "ok", &tag, None)]);
    assert_eq!(tagged(&tag).len(), 2, "one child per target");
    let names = tool_names(&tools);
    assert!(
        names.contains("a_echo") && names.contains("b_echo"),
        "{names:?}"
    );
    assert!(!names.contains("echo"), "{names:?}");
    // Each call reaches the target its prefix names, without the prefix.
    for target in ["a", "b"] {
        let echoed = server.tool(&session, &format!("{target}_echo"), json!({"message": "x"}));
        assert_eq!(text_of(&echoed), format!("{target}: x"));
    }
    common::assert_unknown_tool(&server.tool(&session, "c_echo", json!({})));
    // One target's slow call does not hold the other's.
    std::thread::scope(|scope| {
        let slow = scope.spawn(|| server.tool(&session, "a_slow", json!({"ms": 4000})));
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let quick = server.tool(&session, "b_echo", json!({"message": "quick"}));
        assert_eq!(text_of(&quick), "b: quick");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(text_of(&slow.join().unwrap()), "a: slept 4000 ms");
    });
    assert_eq!(server.delete(&session), 200);
    eventually("both children gone", Duration::from_secs(10), || {
        tagged(&tag).is_empty()
    });
}

/// The `tools/list` of a fake in `mode`, twice in one session: both answered, the second with
/// its own id (a stray answer the server wrote went nowhere), and the server goes on; the
/// time both took.
fn list_twice(mode: &str) -> (Json, Duration) {
    let tag = new_tag();
    let server = Server::start(&config(&target("fake", mode, &tag, None)));
    let session = server.session();
    let started = Instant::now();
    let (status, first) = server.call(&session, "tools/list", json!({}));
    assert_eq!(status, 200, "{first}");
    assert!(tool_names(&first).contains("echo"));
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let (status, _, again) = server.post(Some(&session), &body);
    assert_eq!(status, 200);
    assert_eq!(again["id"], 3, "{again:.300}");
    let took = started.elapsed();
    server.still_up();
    (first, took)
}

fn garbage_on_stdout_is_skipped_and_the_answer_still_arrives() {
    list_twice("garbage");
}

/// A line that is not UTF-8 cannot be JSON-RPC: on stdout it is dropped (and logged) like any
/// other line that is not a message, on stderr it is logged lossily; either way the session
/// goes on and the real answer arrives.
fn a_line_that_is_not_utf8_is_dropped_and_the_session_goes_on() {
    // A shim that stopped reading stderr at the bad line would never answer: the client's
    // 30 s timeout, not 10 s.
    let (_, took) = list_twice("badutf8");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

fn a_10_mib_stdout_line_is_delivered_whole() {
    let (tools, _) = list_twice("bigline");
    let description = tools["result"]["tools"][0]["description"].as_str().unwrap();
    assert_eq!(description.len(), 10 * 1024 * 1024);
}

fn a_stderr_flood_does_not_stall_the_server_or_the_shim() {
    list_twice("stderr");
}

/// The library's answer first (a typed error naming the target and the timeout), then what a
/// client sees of it: a JSON-RPC error soon after the timeout, and a server that goes on.
fn a_server_that_never_answers_times_out() {
    let spec = Stdio {
        request_timeout: Some(Duration::from_secs(1)),
        ..fake_spec("silent", &new_tag())
    };
    let runtime = runtime();
    let answer = runtime.block_on(async {
        let server = StdioServer::spawn("fake", &spec, "[fake]".into(), Arc::new(|_| {})).unwrap();
        let answer = server.call("tools/list", None).unwrap().wait().await;
        server.shutdown().await;
        answer
    });
    assert_eq!(
        answer,
        Err(StdioError::TimedOut {
            target: "fake".into(),
            seconds: 1
        })
    );

    let tag = new_tag();
    let server = Server::start(&config(&target("fake", "silent", &tag, Some("1s"))));
    let session = server.session();
    let started = Instant::now();
    let (_, answer) = server.call(&session, "tools/list", json!({}));
    assert!(answer["error"]["code"].is_i64(), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The session is still usable for calls the server does answer.
    let echoed = server.tool(&session, "echo", json!({"message": "after"}));
    assert_eq!(text_of(&echoed), "fake: after");
}

fn a_slow_answer_within_the_timeout_arrives() {
    let tag = new_tag();
    let server = Server::start(&config(&target("fake", "ok", &tag, Some("5s"))));
    let session = server.session();
    let started = Instant::now();
    let answer = server.tool(&session, "slow", json!({"ms": 700}));
    assert_eq!(text_of(&answer), "fake: slept 700 ms");
    assert!(started.elapsed() >= Duration::from_millis(700));
}

/// The spec of a fake child in `mode`, as `Config` would hand it to the library.
fn fake_spec(mode: &str, tag: &str) -> Stdio {
    let yaml = config(&target("fake", mode, tag, None));
    let config = Config::parse(&yaml).unwrap();
    let routes = config.routes();
    let target = routes[0].route.targets().next().unwrap();
    target.stdio.clone().unwrap()
}

fn a_server_that_exits_at_once_is_an_error_not_a_hang() {
    let runtime = runtime();
    let answer = runtime.block_on(async {
        let spec = fake_spec("exit", &new_tag());
        let server =
            StdioServer::spawn("broken", &spec, "[broken]".into(), Arc::new(|_| {})).unwrap();
        // The child may be gone before the request is written (the call is refused at once)
        // or after (its answer never comes): the same error either way.
        let answer = match server.call("initialize", Some(json!({}))) {
            Ok(pending) => pending.wait().await,
            Err(e) => Err(e),
        };
        server.shutdown().await;
        answer
    });
    assert_eq!(
        answer,
        Err(StdioError::Exited {
            target: "broken".into(),
            how: "status 3".into()
        })
    );

    let tag = new_tag();
    let server = Server::start(&config(&target("broken", "exit", &tag, None)));
    let started = Instant::now();
    let (status, session, answer) = server.post(None, &initialize(1));
    assert_eq!(status, 200);
    assert!(session.is_none(), "no session for a failed initialize");
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// After the child is gone, the call in flight and every later call of the session fail at once
/// with the same error; a new session gets a new child and works.
fn a_child_gone_mid_call(end: impl FnOnce(u32), how: &str) {
    let tag = new_tag();
    let server = Server::start(&config(&target("my-server", "ok", &tag, None)));
    let session = server.session();
    let pid = *tagged(&tag).first().unwrap();
    let started = Instant::now();
    let answer = std::thread::scope(|scope| {
        let call = scope.spawn(|| server.tool(&session, "slow", json!({"ms": 20_000})));
        std::thread::sleep(Duration::from_millis(300));
        end(pid);
        call.join().unwrap()
    });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("MCP server 'my-server' exited ({how}")),
        "{message}"
    );
    let (_, later) = server.call(&session, "tools/list", json!({}));
    assert_eq!(later["error"]["message"], message);
    let fresh = server.session();
    let echoed = server.tool(&fresh, "echo", json!({"message": "again"}));
    assert_eq!(text_of(&echoed), "my-server: again");
}

fn a_child_that_crashes_mid_call_fails_the_call_and_the_session() {
    let tag = new_tag();
    let server = Server::start(&config(&target("my-server", "ok", &tag, None)));
    let session = server.session();
    let answer = server.tool(&session, "crash", json!({}));
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    let exited = StdioError::Exited {
        target: "my-server".into(),
        how: "status 3".into(),
    };
    assert_eq!(answer["error"]["message"], exited.to_string());
    eventually("the crashed child reaped", Duration::from_secs(10), || {
        tagged(&tag).is_empty()
    });
    server.still_up();
}

fn a_child_killed_mid_call_fails_the_call_and_the_session() {
    a_child_gone_mid_call(
        |pid| {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        },
        "signal 9",
    );
}

fn two_hundred_sessions_opened_and_closed_leave_no_child_behind() {
    const SESSIONS: usize = 200;
    let tag = new_tag();
    let server = Server::start(&config(&target("fake", "ok", &tag, None)));
    let started = Instant::now();
    for i in 0..SESSIONS {
        let session = server.session();
        let (status, answer) = server.call(&session, "tools/list", json!({}));
        assert_eq!(status, 200, "session {i}: {answer}");
        assert_eq!(server.delete(&session), 200, "session {i}");
        // A closed session is a clear HTTP error, not a hang.
        let (status, _) = server.call(&session, "tools/list", json!({}));
        assert_eq!(status, 404, "session {i} after DELETE");
    }
    eventually(
        "every session's child gone",
        Duration::from_secs(20),
        || tagged(&tag).is_empty(),
    );
    eprintln!("{SESSIONS} sessions in {:?}", started.elapsed());
    server.still_up();
}

/// The same loop against a real `host-shim serve` process, whose memory and children are its
/// own: both must come back to where they were.
fn two_hundred_sessions_leave_the_shim_process_as_it_was() {
    const SESSIONS: usize = 200;
    let tag = new_tag();
    let shim = common::Serve::start(
        &config(&target("fake", "ok", &tag, None)),
        &["--listen", "127.0.0.1:0"],
    );
    let server = Client::new(format!("{}/mcp", shim.base));
    let pid = shim.child.id();
    let rss_kib = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Warm up allocator pools before taking the memory baseline.
    let warm = server.session();
    assert_eq!(server.delete(&warm), 200);
    eventually("the warm-up child gone", Duration::from_secs(10), || {
        tagged(&tag).is_empty()
    });
    let rss_before = rss_kib();
    for i in 0..SESSIONS {
        let session = server.session();
        let (status, answer) = server.call(&session, "tools/list", json!({}));
        assert_eq!(status, 200, "session {i}: {answer}");
        assert_eq!(server.delete(&session), 200, "session {i}");
    }
    eventually(
        "every session's child gone",
        Duration::from_secs(20),
        || tagged(&tag).is_empty(),
    );
    let rss_after = rss_kib();
    eprintln!("{SESSIONS} sessions: shim RSS {rss_before} KiB → {rss_after} KiB");
    assert!(
        rss_after < rss_before + 16 * 1024,
        "the shim's memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    server.still_up();
}

fn names_split_at_the_longest_target_as_the_filter_splits_them() {
    // `a_b_echo` is `a_b`'s echo: the filter judges it so, and the shim must call that one,
    // not `a`'s `b_echo`.
    let tag = new_tag();
    let (server, session, tools) = listed(&[
        target("a", "ok", &tag, None),
        target("a_b", "ok", &tag, None),
    ]);
    let names = tool_names(&tools);
    assert!(
        names.contains("a_echo") && names.contains("a_b_echo"),
        "{names:?}"
    );
    for (name, by) in [("a_b_echo", "a_b"), ("a_echo", "a")] {
        let echoed = server.tool(&session, name, json!({"message": name}));
        assert_eq!(text_of(&echoed), format!("{by}: {name}"), "{echoed}");
    }
    common::assert_unknown_tool(&server.tool(&session, "b_echo", json!({})));
}

fn a_listed_name_that_would_reach_another_target_is_left_out() {
    // `a`'s tool `b_echo` would be listed as `a_b_echo`, which is `a_b`'s `echo`: offering it
    // would name a tool that calls another server.
    let tag = new_tag();
    let (server, session, tools) = listed(&[
        target_with_tool("a", "ok", &tag, None, "b_echo"),
        target("a_b", "ok", &tag, None),
    ]);
    let echoes: Vec<&str> = common::tool_names(&tools["result"])
        .into_iter()
        .filter(|name| name.ends_with("echo"))
        .collect();
    assert_eq!(echoes, ["a_b_echo"], "{tools}");
    let echoed = server.tool(&session, "a_b_echo", json!({"message": "x"}));
    assert_eq!(text_of(&echoed), "a_b: x", "the listed name reaches a_b");
}
