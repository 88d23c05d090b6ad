//! Attacks only a real Envoy can show, on the bootstrap `host-shim envoy` renders (hardened,
//! headers held until the body is judged) with the real module and the local issuer, and a
//! recording upstream in the shim's place: HTTP/2 request trailers, list answers an HTTP/2
//! server ends with trailers, a denied request that must never reach the upstream, a key
//! refetch wasted by a client that hangs up, and connections that never finish their headers.
//! Bounded in time: the slowest waits out Envoy's 10 s request-headers timeout once.
//!
//! Needs `envoy/install-envoy.sh` and `cargo build -p host-shim` first (`make test` does both);
//! `MCP_AUTH_SKIP_ENVOY=1` skips, loudly.
mod envoy_support;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use envoy_support::{
    AI_USER, Issuer, Options, PLAIN_USER, Stack, Upstream, agent, free_port, render_bootstrap,
    render_bootstrap_to,
};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use mcp_auth_filter_tests::tokens::{Key, TokenBuilder};
use serde_json::json;

/// The guide's file, with an MCP-level rule: AI-Users may call `echo` and nothing else.
fn gateway_config(issuer: &Issuer, port: u16) -> String {
    format!(
        r#"binds:
- port: {port}
  listeners:
  - routes:
    - backends:
      - mcp:
          targets:
          - name: everything
            stdio:
              cmd: "true"
      policies:
        mcpAuthentication:
          mode: strict
          issuer: {url}
          audiences: [api://agentgateway]
          jwks:
            url: {url}/v1/keys
        authorization:
          rules:
          - allow: '"AI-Users" in auth.claims.groups && mcp.tool.name == "echo"'
"#,
        url = issuer.url
    )
}

/// The stack on the bootstrap `host-shim envoy` renders, the recording upstream as the shim.
fn stack() -> Option<Stack> {
    Stack::start_with_bootstrap(
        Options::default(),
        |issuer: &Issuer, upstream: &Upstream, wasm: &str| {
            render_bootstrap(&gateway_config(issuer, free_port()), upstream, wasm)
        },
    )
}

fn call(id: i64, tool: &str) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {"message": "hi"}}})
    .to_string()
    .into_bytes()
}

/// An HTTP/2 (prior knowledge) POST whose body comes in `frames` and ends with trailers.
/// Returns the status and the body.
fn h2_post_with_trailers(port: u16, token: &str, frames: Vec<Vec<u8>>) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let length: usize = frames.iter().map(Vec::len).sum();
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("x-checksum", "1".parse().unwrap());
        let mut parts: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = frames
            .into_iter()
            .map(|f| Ok(Frame::data(Bytes::from(f))))
            .collect();
        parts.push(Ok(Frame::trailers(trailers)));
        let body = StreamBody::new(futures_util::stream::iter(parts));
        let request = hyper::Request::post(format!("http://127.0.0.1:{port}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("content-length", length.to_string())
            .header("authorization", format!("Bearer {token}"))
            .body(body)
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
            .await
            .expect("an answer in time")
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

#[test]
fn an_http2_body_followed_by_trailers_is_judged_and_a_denied_call_never_reaches_the_upstream() {
    let Some(stack) = stack() else { return };
    let plain = stack.issuer.token(PLAIN_USER.0, PLAIN_USER.1);
    let ai = stack.issuer.token(AI_USER.0, AI_USER.1);

    // Someone outside AI-Users calls echo, the body in two frames and trailers after it.
    let body = call(1, "echo");
    let (head, rest) = body.split_at(25);
    let (status, answer) =
        h2_post_with_trailers(stack.envoy.port, &plain, vec![head.to_vec(), rest.to_vec()]);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"error\""), "a JSON-RPC denial: {answer}");
    // An AI-User calls a tool the rule does not name.
    let (status, answer) = h2_post_with_trailers(stack.envoy.port, &ai, vec![call(2, "get-env")]);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    assert!(
        stack.upstream.seen().is_empty(),
        "the upstream saw a denied request: {:?}",
        stack.upstream.seen()
    );

    // The allowed call goes on, the whole body with it.
    let body = call(3, "echo");
    let (head, rest) = body.split_at(10);
    let (status, answer) =
        h2_post_with_trailers(stack.envoy.port, &ai, vec![head.to_vec(), rest.to_vec()]);
    assert_eq!(status, 200, "{answer}");
    let echoed: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(echoed["body_bytes"], body.len(), "{echoed}");
    assert_eq!(stack.upstream.seen().len(), 1);
}

#[test]
fn a_denied_http1_call_never_reaches_the_upstream() {
    let Some(stack) = stack() else { return };
    let ai = stack.issuer.token(AI_USER.0, AI_USER.1);
    let mut response = agent()
        .post(format!("{}/mcp", stack.envoy.url))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ai}"))
        .send(&call(1, "get-env")[..])
        .unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    assert!(text.contains("\"error\""), "{text}");
    assert!(
        stack.upstream.seen().is_empty(),
        "{:?}",
        stack.upstream.seen()
    );
}

#[test]
fn a_client_that_hangs_up_cannot_waste_the_key_refetch() {
    let Some(stack) = stack() else { return };
    let ai = stack.issuer.token(AI_USER.0, AI_USER.1);
    let list = |token: &str| {
        agent()
            .post(format!("{}/mcp", stack.envoy.url))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .send(&call(1, "echo")[..])
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(list(&ai), 200, "keys loaded");
    stack.issuer.rotate();

    // A forged token with a kid nobody knows, and the connection closed at once: the one
    // refetch the rate limit allows is asked for by a request that is gone.
    let stranger = Key::rsa_n(3).with_kid("attacker-kid");
    let forged = TokenBuilder::new(&stranger)
        .iss(&stack.issuer.url)
        .aud("api://agentgateway")
        .sign();
    let mut tcp = TcpStream::connect(("127.0.0.1", stack.envoy.port)).unwrap();
    write!(
        tcp,
        "GET /mcp HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {forged}\r\n\r\n"
    )
    .unwrap();
    drop(tcp);
    std::thread::sleep(Duration::from_millis(600));

    // The refetch's answer was kept: a token from the rotated key is accepted.
    let fresh = stack.issuer.token(AI_USER.0, AI_USER.1);
    assert_eq!(list(&fresh), 200);
}

#[test]
fn connections_that_never_finish_their_headers_are_cut() {
    let Some(stack) = stack() else { return };
    let started = Instant::now();
    let mut conns: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", stack.envoy.port)).unwrap();
            c.write_all(b"POST /mcp HTTP/1.1\r\nhost: localhost\r\nx-slow: ")
                .unwrap();
            c.set_read_timeout(Some(Duration::from_secs(25))).unwrap();
            c
        })
        .collect();
    for c in &mut conns {
        let mut buf = [0u8; 512];
        // Envoy answers 408 and closes, or just closes: either way the read ends.
        let n = c.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(25), "held for {took:?}");
    assert!(
        took >= Duration::from_secs(5),
        "cut too soon ({took:?}) to be the timeout"
    );
}

#[test]
fn a_denial_shows_in_the_filters_log_and_in_the_access_log() {
    let Some(stack) = stack() else { return };
    let ai = stack.issuer.token(AI_USER.0, AI_USER.1);
    let mut response = agent()
        .post(format!("{}/mcp", stack.envoy.url))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ai}"))
        .send(&call(1, "get-env")[..])
        .unwrap();
    let _ = response.body_mut().read_to_string();
    let allowed = agent()
        .post(format!("{}/mcp", stack.envoy.url))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ai}"))
        .send(&call(2, "echo")[..])
        .unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
    let log_path = stack.dir().join("envoy.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.matches("mcp_auth=").count() >= 2 || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let decision = log
        .lines()
        .find(|l| l.contains("decision=deny"))
        .unwrap_or_else(|| panic!("no decision line:\n{log}"));
    assert!(decision.contains(r#"name="get-env""#), "{decision}");
    assert!(decision.contains(r#"sub="ai-user""#), "{decision}");
    assert!(!decision.contains(&ai[..30]), "the token is never logged");
    let access = log
        .lines()
        .find(|l| l.contains("mcp_auth_mcp_denied"))
        .unwrap_or_else(|| panic!("no access log line for the denial:\n{log}"));
    assert!(access.contains("mcp_auth=deny:mcp"), "{access}");
    assert!(
        log.lines()
            .any(|l| l.contains("via_upstream") && l.contains("mcp_auth=allow")),
        "{log}"
    );
}

#[test]
fn the_health_path_answers_without_a_token() {
    let Some(stack) = stack() else { return };
    let mut response = agent()
        .get(format!("{}/healthz", stack.envoy.url))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.body_mut().read_to_string().unwrap().trim(), "ok");
    assert!(stack.upstream.seen().is_empty(), "answered by Envoy itself");
    // Everything else still needs a token.
    let other = agent()
        .get(format!("{}/healthz/x", stack.envoy.url))
        .call()
        .unwrap();
    assert_eq!(other.status().as_u16(), 401);
}

#[test]
fn mcp_headers_that_disagree_with_the_body_never_reach_the_upstream() {
    let Some(stack) = stack() else { return };
    let ai = stack.issuer.token(AI_USER.0, AI_USER.1);
    let mut response = agent()
        .post(format!("{}/mcp", stack.envoy.url))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ai}"))
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .send(&call(1, "get-env")[..])
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.body_mut().read_json().unwrap();
    assert_eq!(body["error"]["code"], -32020, "{body}");
    assert!(
        stack.upstream.seen().is_empty(),
        "{:?}",
        stack.upstream.seen()
    );
}

/// An MCP server stand-in that speaks only HTTP/2 (prior knowledge) and ends every answer with
/// trailers: `frames` as data frames of `content_type`, 50 ms apart so that Envoy hands them to
/// the filter one by one, then `x-checksum: 1`. Stops with its owner.
struct TrailingServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TrailingServer {
    fn start(content_type: &'static str, frames: Vec<Vec<u8>>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while !stopped.load(Ordering::Relaxed) {
                    let accepted =
                        tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
                    let Ok(Ok((tcp, _))) = accepted else { continue };
                    let frames = frames.clone();
                    let answer = hyper::service::service_fn(move |_request| {
                        let frames = frames.clone();
                        async move {
                            let body = StreamBody::new(futures_util::stream::unfold(
                                (frames.into_iter(), false),
                                |(mut rest, done)| async move {
                                    if done {
                                        return None;
                                    }
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                    let frame = match rest.next() {
                                        Some(data) => Frame::data(Bytes::from(data)),
                                        None => {
                                            let mut trailers = hyper::HeaderMap::new();
                                            trailers.insert("x-checksum", "1".parse().unwrap());
                                            let frame = Frame::trailers(trailers);
                                            return Some((Ok(frame), (rest, true)));
                                        }
                                    };
                                    Some((Ok::<_, Infallible>(frame), (rest, false)))
                                },
                            ));
                            let response = hyper::Response::builder()
                                .header("content-type", content_type)
                                .body(body)
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    tokio::spawn(
                        hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), answer),
                    );
                }
            });
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TrailingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A `tools/list` answer naming `echo` (which the rule lets AI-Users call) and two tools it
/// does not.
fn list_answer() -> Vec<u8> {
    let tool = |name: &str| json!({"name": name, "inputSchema": {"type": "object"}});
    json!({"jsonrpc": "2.0", "id": 1,
           "result": {"tools": [tool("get-env"), tool("echo"), tool("secret-admin")]}})
    .to_string()
    .into_bytes()
}

/// The stack with the MCP server's place taken by `server`, over HTTP/2.
fn stack_behind_http2(server: &TrailingServer) -> Option<Stack> {
    Stack::start_with_bootstrap(Options::default(), |issuer, _upstream, wasm| {
        let rendered = render_bootstrap_to(&gateway_config(issuer, free_port()), server.port, wasm);
        let mut bootstrap: serde_json::Value = serde_yaml::from_str(&rendered).unwrap();
        let clusters = bootstrap["static_resources"]["clusters"]
            .as_array_mut()
            .unwrap();
        let shim = clusters
            .iter_mut()
            .find(|c| c["name"] == "host-shim")
            .expect("the shim's cluster");
        shim["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        });
        serde_yaml::to_string(&bootstrap).unwrap()
    })
}

/// The tool names a list answer (JSON, or the data of SSE events) shows.
fn tool_names(body: &str) -> Vec<String> {
    let messages: Vec<serde_json::Value> = match serde_json::from_str(body) {
        Ok(message) => vec![message],
        Err(_) => body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| serde_json::from_str(d.trim()).unwrap_or_else(|e| panic!("{e}: {body}")))
            .collect(),
    };
    messages
        .iter()
        .flat_map(|m| m["result"]["tools"].as_array().cloned().unwrap_or_default())
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_list_answer_ended_by_http2_trailers_is_filtered_before_it_goes_on() {
    let answer = list_answer();
    let (a, rest) = answer.split_at(20);
    let (b, c) = rest.split_at(40);
    let server = TrailingServer::start("application/json", vec![a.into(), b.into(), c.into()]);
    let Some(stack) = stack_behind_http2(&server) else {
        return;
    };
    let ai = stack.issuer.token(AI_USER.0, AI_USER.1);
    let reply = stack.request("/mcp", Some(&ai));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(tool_names(&reply.body), ["echo"], "{}", reply.body);
    assert!(!reply.body.contains("secret-admin"), "{}", reply.body);
}

#[test]
fn an_event_stream_ended_by_http2_trailers_shows_no_hidden_item() {
    let answer = String::from_utf8(list_answer()).unwrap();
    let (a, b) = answer.split_at(30);
    // A whole event in two frames, then an event cut short by the trailers: a client drops
    // an event the stream ends inside of, so the filter may not pass it on unread.
    let frames = vec![
        format!("event: message\ndata: {a}").into_bytes(),
        format!("{b}\n\n").into_bytes(),
        format!("event: message\ndata: {answer}").into_bytes(),
    ];
    let server = TrailingServer::start("text/event-stream", frames);
    let Some(stack) = stack_behind_http2(&server) else {
        return;
    };
    let ai = stack.issuer.token(AI_USER.0, AI_USER.1);
    let reply = stack.request("/mcp", Some(&ai));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(!reply.body.contains("secret-admin"), "{}", reply.body);
    assert!(!reply.body.contains("get-env"), "{}", reply.body);
    assert_eq!(tool_names(&reply.body), ["echo"], "{}", reply.body);
}
