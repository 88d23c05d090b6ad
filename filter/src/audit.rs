//! The decision log: one line per denial at the default log level (and per allowed request
//! when the configuration asks), saying why — the reason, the route, the rule that decided (its
//! index and expression), who asked and which MCP method and name. Never the token.
//!
//! The core does not thread a record through every function: a [`Recorder`] wraps the host
//! for one callback and hears what the engine reports anyway — the `mcp_auth.denied.<reason>`
//! counter it bumps and the [`Note`]s it leaves — so the line is built from the same facts the
//! metrics count.

use std::cell::RefCell;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::host::{Host, Note, SharedWrite};
use crate::location::Location;

const DENIED_PREFIX: &str = "mcp_auth.denied.";

#[derive(Debug, Default, Clone)]
struct Facts {
    reason: Option<String>,
    issuer: Option<String>,
    subject: Option<String>,
    rule: Option<(Option<usize>, String)>,
    message: Option<(String, String)>,
}

/// The host as one callback sees it, recording what the decision log needs.
pub struct Recorder<'h> {
    host: &'h dyn Host,
    facts: RefCell<Facts>,
}

impl<'h> Recorder<'h> {
    pub fn new(host: &'h dyn Host) -> Recorder<'h> {
        Recorder {
            host,
            facts: RefCell::new(Facts::default()),
        }
    }

    /// Whether a verified identity was noted.
    pub fn knows_identity(&self) -> bool {
        self.facts.borrow().subject.is_some()
    }

    /// The reason label of the last denial counted (e.g. `invalid_token.expired`, `mcp`).
    pub fn reason(&self) -> Option<String> {
        self.facts.borrow().reason.clone()
    }

    /// The line for a decision: `verdict` is `allow` or `deny`.
    pub fn line(&self, verdict: &str, status: Option<u32>, route: Option<&str>) -> String {
        let facts = self.facts.borrow();
        let mut out = format!("mcp-auth: decision={verdict}");
        if let Some(status) = status {
            out.push_str(&format!(" status={status}"));
        }
        field(&mut out, "route", route.unwrap_or("-"));
        if let Some(reason) = &facts.reason {
            field(&mut out, "reason", reason);
        }
        if let Some((index, source)) = &facts.rule {
            match index {
                Some(i) => out.push_str(&format!(" rule={i}")),
                None => out.push_str(" rule=none-matched"),
            }
            if !source.is_empty() {
                field(&mut out, "expr", source);
            }
        }
        field(&mut out, "sub", facts.subject.as_deref().unwrap_or("-"));
        if let Some(issuer) = &facts.issuer {
            field(&mut out, "iss", issuer);
        }
        if let Some((method, name)) = &facts.message {
            field(&mut out, "method", method);
            if !name.is_empty() {
                field(&mut out, "name", name);
            }
        }
        out
    }
}

/// ` key="value"`, the value quoted as JSON so no client text can forge another field.
fn field(out: &mut String, key: &str, value: &str) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    out.push_str(&serde_json::Value::from(value).to_string());
}

impl Host for Recorder<'_> {
    fn now(&self) -> DateTime<Utc> {
        self.host.now()
    }

    fn count(&self, name: &str, delta: u64) {
        if let Some(reason) = name.strip_prefix(DENIED_PREFIX) {
            self.facts.borrow_mut().reason = Some(reason.to_string());
        }
        self.host.count(name, delta);
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.host.shared_get(key)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        self.host.shared_set(key, value, cas)
    }

    fn dispatch_get(
        &self,
        location: &Location,
        timeout: Duration,
    ) -> Result<u32, crate::host::DispatchError> {
        self.host.dispatch_get(location, timeout)
    }

    fn note(&self, note: Note<'_>) {
        let mut facts = self.facts.borrow_mut();
        match note {
            Note::Identity { issuer, subject } => {
                facts.issuer = Some(issuer.to_string());
                facts.subject = Some(subject.to_string());
            }
            Note::Rule { index, source } => facts.rule = Some((index, source.to_string())),
            Note::Message { method, name } => {
                facts.message = Some((method.to_string(), name.to_string()))
            }
        }
        drop(facts);
        self.host.note(note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn a_denial_line_names_reason_rule_subject_and_message_and_quotes_client_text() {
        let host = FakeHost::new();
        let rec = Recorder::new(&host);
        rec.note(Note::Identity {
            issuer: "https://org.okta.com/oauth2/default",
            subject: "alice\" reason=\"none",
        });
        rec.count("mcp_auth.denied.mcp", 1);
        rec.note(Note::Rule {
            index: Some(2),
            source: "mcp.tool.name == \"rm\"",
        });
        rec.note(Note::Message {
            method: "tools/call",
            name: "rm",
        });
        let line = rec.line("deny", Some(200), Some("tools"));
        assert_eq!(
            line,
            r#"mcp-auth: decision=deny status=200 route="tools" reason="mcp" rule=2 expr="mcp.tool.name == \"rm\"" sub="alice\" reason=\"none" iss="https://org.okta.com/oauth2/default" method="tools/call" name="rm""#
        );
        assert_eq!(host.counters.borrow()["mcp_auth.denied.mcp"], 1);
    }
}
