//! What an operator and a person see of a decision, in the real module: one log line per
//! denial at the default level (the reason, the route, the rule by index and expression, the
//! subject, the MCP method and name — never the token), one per allowed request when asked,
//! and a rule's `message` as the client's reason.

use mcp_auth_filter_tests::tokens::{Key, OKTA_AUDIENCE, OKTA_ISSUER, TokenBuilder, jwks};
use mcp_auth_filter_tests::{Host, Outcome, Request};
use serde_json::json;

fn config(key: &Key, extra: &str) -> String {
    format!(
        r#"
{extra}
routes:
  tools:
    mcpTargets: [everything]
    policies:
      mcpAuthentication:
        issuer: {OKTA_ISSUER}
        audiences: [{OKTA_AUDIENCE}]
        jwks: '{jwks}'
      authorization:
        rules:
        - require: '"AI-Users" in auth.claims.groups'
          message: Ask the AI platform team for the AI-Users group.
        - deny: 'mcp.tool.name == "get-env"'
          message: get-env shows secrets; it is not available through the gateway.
        - deny: 'mcp.tool.name == "add"'
"#,
        jwks = jwks(&[key])
    )
}

fn call(token: &str, tool: &str) -> Request {
    Request::post("/mcp")
        .property("xds.route_name", "tools")
        .header("content-type", "application/json")
        .bearer(token)
        .body(
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                   "params": {"name": tool, "arguments": {}}})
            .to_string()
            .as_bytes(),
        )
}

fn decision_lines(host: &Host) -> Vec<String> {
    host.logs()
        .into_iter()
        .map(|l| l.message)
        .filter(|m| m.contains("decision="))
        .collect()
}

#[test]
fn a_denial_leaves_one_line_saying_why_and_the_client_reads_the_rules_message() {
    let key = Key::rsa();
    let host = Host::new();
    let vm = host.vm(&config(&key, "")).unwrap();
    let token = TokenBuilder::new(&key)
        .sub("alice@example.com")
        .groups(&["AI-Users"])
        .sign();
    let Outcome::Local(reply) = vm.request(call(&token, "get-env")) else {
        panic!("denied")
    };
    assert_eq!(
        reply.json()["error"]["message"],
        "get-env shows secrets; it is not available through the gateway."
    );
    let lines = decision_lines(&host);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    for part in [
        "decision=deny",
        "status=200",
        r#"route="tools""#,
        r#"reason="mcp""#,
        "rule=1",
        r#"expr="mcp.tool.name == \"get-env\"""#,
        r#"sub="alice@example.com""#,
        r#"method="tools/call""#,
        r#"name="get-env""#,
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    assert!(!line.contains(&token), "the token is never logged");
    assert!(!line.contains(&token[..20]), "not even its start");

    // Without a message, the client's reason names what was refused and nothing of the policy.
    let Outcome::Local(reply) = vm.request(call(&token, "add")) else {
        panic!("denied")
    };
    let text = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("access denied") && text.contains("add"),
        "{text}"
    );
    assert!(!text.contains("mcp.tool.name"), "{text}");

    // An HTTP-level refusal: 403 with the require rule's message; the line names rule 0.
    let outsider = TokenBuilder::new(&key)
        .sub("bob")
        .groups(&["Everyone"])
        .sign();
    let out = vm.request(
        Request::get("/mcp")
            .property("xds.route_name", "tools")
            .bearer(&outsider),
    );
    assert_eq!(out.status(), 403);
    assert!(
        out.response()
            .unwrap()
            .text()
            .contains("Ask the AI platform team")
    );
    let last = decision_lines(&host).pop().unwrap();
    assert!(
        last.contains("status=403") && last.contains("rule=0"),
        "{last}"
    );
    assert!(
        last.contains(r#"reason="authz""#) && last.contains(r#"sub="bob""#),
        "{last}"
    );

    // A bad token: the reason, and no subject (nobody was verified).
    let out = vm.request(
        Request::get("/mcp")
            .property("xds.route_name", "tools")
            .bearer("not.a.token"),
    );
    assert_eq!(out.status(), 401);
    let last = decision_lines(&host).pop().unwrap();
    assert!(
        last.contains("status=401") && last.contains("invalid_"),
        "{last}"
    );
    assert!(last.contains(r#"sub="-""#), "{last}");

    // Allowed requests leave no line unless asked.
    assert!(vm.request(call(&token, "echo")).is_forwarded());
    assert!(
        !decision_lines(&host)
            .iter()
            .any(|l| l.contains("decision=allow"))
    );
}

#[test]
fn allowed_requests_are_logged_when_asked() {
    let key = Key::rsa();
    let host = Host::new();
    let vm = host.vm(&config(&key, "logAllowed: true")).unwrap();
    let token = TokenBuilder::new(&key)
        .sub("carol")
        .groups(&["AI-Users"])
        .sign();
    assert!(vm.request(call(&token, "echo")).is_forwarded());
    let lines = decision_lines(&host);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("decision=allow") && lines[0].contains(r#"sub="carol""#));
}

#[test]
fn a_rules_message_must_be_text() {
    let key = Key::rsa();
    let bad = config(&key, "").replace(
        "message: Ask the AI platform team for the AI-Users group.",
        "message: [1, 2]",
    );
    let Err(err) = Host::new().vm(&bad) else {
        panic!("a message that is not text is refused")
    };
    assert!(err.logged("rules[0].message"), "{err}");
}
