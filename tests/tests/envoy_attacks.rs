//! Attacks only a real Envoy can show, on the bootstrap `host-shim envoy` renders (hardened,
//! headers held until the body is judged) with the real module and the local issuer, and a
//! recording upstream in the shim's place: HTTP/2 request trailers, a denied request that must
//! never reach the upstream, a key refetch wasted by a client that hangs up, and connections
//! that never finish their headers. Bounded in time: the slowest waits out Envoy's 10 s
//! request-headers timeout once.
//!
//! Needs `envoy/install-envoy.sh` and `cargo build -p host-shim` first (`make test` does both);
//! `MCP_AUTH_SKIP_ENVOY=1` skips, loudly.
mod envoy_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use envoy_support::{
    AI_USER, Issuer, Options, PLAIN_USER, Stack, Upstream, agent, free_port, render_bootstrap,
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
