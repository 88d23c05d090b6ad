//! One request through a policy: serve the metadata document, find the token, verify it,
//! evaluate the rules, and say what the proxy should do. Pure logic over the request's
//! headers and a [`Host`]; `adapter.rs` carries the answer out with hostcalls.

use serde_json::Value as Json;

use crate::authz::{Evaluation, Input, Verdict};
use crate::cache::{Caller, TokenCache};
use crate::host::{Host, Note};
use crate::jwt::{self, Credentials};
use crate::keystore::KeyState;
use crate::mcp::{self, McpView};
use crate::metric;
use crate::policy::{Authn, IDENTITY_HEADER, Mode, Policy};
use crate::response::{self, Challenge, LocalResponse, METADATA_PREFIX, Origin};

/// The identity header's value: the issuer and the subject, each base64url-encoded, joined by
/// a dot, so the pair is unambiguous whatever characters either holds.
pub fn identity_value(identity: &Caller) -> String {
    use base64::Engine as _;
    let text = |claim: &str| {
        let value = identity
            .claims()
            .get(claim)
            .and_then(Json::as_str)
            .unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value)
    };
    format!("{}.{}", text("iss"), text("sub"))
}

/// The request headers as the proxy hands them over: lowercase names, byte values.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub headers: &'a [(String, Vec<u8>)],
}

impl<'a> RequestView<'a> {
    pub fn first(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub fn all(&self, name: &str) -> Vec<&'a [u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    fn text(&self, name: &str) -> &'a str {
        self.first(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or_default()
    }
}

/// What the proxy should do with the request.
#[derive(Debug)]
pub enum Decision {
    /// Forward it, with these header changes.
    Continue(Forward),
    /// Forward the headers (with these changes) but hold the body: MCP-level rules judge its
    /// JSON-RPC messages when it is complete ([`decide_body`]).
    ReadBody(Forward),
    /// Answer it here.
    Respond(LocalResponse),
    /// Pause it until keys are fetched, then decide again.
    FetchKeys,
}

/// Header changes for a forwarded request, and who it is from.
#[derive(Debug, Default)]
pub struct Forward {
    /// Removed first: the token (unless forwarded) and every header `claimsToHeaders` sets,
    /// so a client can never forge them.
    pub remove: Vec<String>,
    pub add: Vec<(String, String)>,
    pub identity: Option<Caller>,
}

/// What to do with a complete request body.
#[derive(Debug)]
pub enum BodyDecision {
    /// Forward it. These are all its requests (id, method): the answers to the lists among
    /// them are filtered per caller, and on an SSE answer a response to any other id is
    /// refused (it cannot belong to this request's stream).
    Forward {
        lists: Vec<(Json, String)>,
    },
    Respond(LocalResponse),
}

/// Decides about one request. `keys` matters only when the policy authenticates.
pub fn decide(
    policy: &Policy,
    keys: KeyState<'_>,
    cache: &TokenCache,
    request: &RequestView<'_>,
    host: &dyn Host,
) -> Decision {
    let raw_path = request.first(":path").unwrap_or(b"/");
    let path_text = request.text(":path");
    let path_only = path_text.split('?').next().unwrap_or_default();
    let method = request.text(":method");
    let origin = Origin {
        scheme: match request.text(":scheme") {
            "" => "http",
            s => s,
        },
        host: request.text(":authority"),
        path: if path_only.is_empty() { "/" } else { path_only },
    };

    let mut identity = None;
    if let Some(authn) = &policy.authn {
        if let Some(resource_path) = metadata_request(method, path_only) {
            host.count(metric::METADATA, 1);
            // A registration facade is its own resource's authorization server.
            let server = match &authn.registration {
                Some(_) => origin.resource(resource_path),
                None => authn.expect.issuer.clone(),
            };
            return Decision::Respond(response::metadata(
                &origin,
                resource_path,
                &server,
                &authn.resource_metadata,
            ));
        }
        if let Some(answer) = crate::discovery::answer(authn, method, &origin, host) {
            return Decision::Respond(answer);
        }
        match authenticate(authn, keys, cache, request, raw_path, &origin, host) {
            Authenticated::Yes(id) => {
                let text = |c: &str| id.claims().get(c).and_then(Json::as_str).unwrap_or("");
                host.note(Note::Identity {
                    issuer: text("iss"),
                    subject: text("sub"),
                });
                identity = Some(id)
            }
            Authenticated::Anonymous => {}
            Authenticated::Stop(decision) => return decision,
        }
    }

    if let (Some(authn), Some(id)) = (&policy.authn, &identity)
        && !authn.required_scopes.is_empty()
    {
        let missing: Vec<&String> = {
            let have = crate::authz::scopes(id.claims());
            authn
                .required_scopes
                .iter()
                .filter(|s| !have.contains(s))
                .collect()
        };
        if !missing.is_empty() {
            host.count(metric::DENIED_SCOPE, 1);
            return Decision::Respond(response::insufficient_scope(
                &origin,
                &authn.required_scopes,
                &missing,
            ));
        }
    }
    let forward = forward(policy, identity);

    if policy.rules.reads_mcp() && method == "POST" {
        return Decision::ReadBody(forward);
    }
    let verdict = judge(
        policy,
        forward.identity.as_ref(),
        None,
        request,
        host,
        &mut Evaluation::default(),
    );
    if let Verdict::Deny(denial) = verdict {
        host.count(metric::DENIED_AUTHZ, 1);
        host.note(Note::Rule {
            index: denial.rule,
            source: &denial.source,
        });
        return Decision::Respond(match (&policy.authn, &forward.identity) {
            // Without an identity the caller may still sign in: challenge instead of refusing.
            (Some(authn), None) => response::unauthorized(
                &origin,
                Challenge::Missing,
                "authentication is required for this request",
                authn.challenge_scope.as_deref(),
            ),
            _ => response::forbidden(denial.message.as_deref().unwrap_or(
                "access denied: the gateway's authorization policy does not allow this request \
                 for this identity",
            )),
        });
    }
    host.count(metric::ALLOWED, 1);
    Decision::Continue(forward)
}

/// The header changes for a request the policy lets through.
fn forward(policy: &Policy, identity: Option<Caller>) -> Forward {
    let mut out = Forward::default();
    if let Some(authn) = &policy.authn {
        if !authn.forward_token {
            out.remove.push("authorization".into());
        }
        for (claim, header) in &authn.claims_to_headers {
            out.remove.push(header.clone());
            if let Some(value) = identity.as_ref().and_then(|id| claim_text(id, claim)) {
                out.add.push((header.clone(), value));
            }
        }
    }
    if let Some(id) = &identity {
        let value = id.header_value(identity_value).to_string();
        out.add.push((IDENTITY_HEADER.to_string(), value));
    }
    out.identity = identity;
    out
}

/// A claim as header text: nested claims by dotted path, arrays joined with commas. Control
/// characters are dropped so a claim can never split a header.
fn claim_text(identity: &Caller, path: &str) -> Option<String> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut value = identity.claims().get(first)?;
    for part in parts {
        value = value.get(part)?;
    }
    let text = match value {
        Json::String(s) => s.clone(),
        Json::Array(items) => items
            .iter()
            .map(|i| match i {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        Json::Null => return None,
        other => other.to_string(),
    };
    Some(text.chars().filter(|c| !c.is_control()).collect())
}

/// Evaluates the rules for the request (view `None`) or for one of its JSON-RPC messages, in
/// `evaluation`, which may carry what earlier judgements of the same request found (the items
/// of one list answer).
fn judge(
    policy: &Policy,
    identity: Option<&Caller>,
    view: Option<&McpView>,
    request: &RequestView<'_>,
    host: &dyn Host,
    evaluation: &mut Evaluation,
) -> Verdict {
    // A verdict that depends on the claims alone is evaluated once per verified token; one
    // that depends on the claims and a message's names, once per token and name.
    let rules = policy.rules.id();
    let memo = match (view, identity) {
        (None, Some(id)) if policy.rules.claims_only() => Some(id),
        _ => None,
    };
    if let Some(verdict) = memo.and_then(|id| id.verdict_for(rules)) {
        return verdict.clone();
    }
    let named = match (view, identity) {
        (Some(view), Some(id)) if policy.rules.names_decide() => Some((id, view)),
        _ => None,
    };
    if let Some(verdict) = named.and_then(|(id, view)| id.verdict_on(rules, view)) {
        return verdict;
    }
    let path = request.text(":path");
    let verdict = policy.rules.evaluate(
        &Input {
            claims: identity.map(Caller::claims),
            prebuilt: identity.map(Caller::cel_values),
            mcp: view,
            method: request.text(":method"),
            path,
            host: request.text(":authority"),
            headers: request.headers,
        },
        evaluation,
    );
    let errors = std::mem::take(&mut evaluation.errors);
    evaluation.erred |= !errors.is_empty();
    for error in &errors {
        log::warn!("mcp-auth: rule error (counts as not matched): {error}");
    }
    if !errors.is_empty() {
        host.count(metric::RULE_ERRORS, errors.len() as u64);
    } else if let Some(id) = memo {
        // A rule that errs is logged and counted on every request, so that verdict is not kept.
        id.remember_verdict(rules, &verdict);
    } else if let Some((id, view)) = named {
        id.remember_verdict_on(rules, view, &verdict);
    }
    verdict
}

/// Whether the rules allow a call described by `view` alone (the `Mcp-Method` / `Mcp-Name`
/// fast path). A denial is not counted here: the body is then read and judged as usual.
pub fn allows(
    policy: &Policy,
    identity: Option<&Caller>,
    view: &McpView,
    request: &RequestView<'_>,
    host: &dyn Host,
) -> bool {
    let allowed = judge(
        policy,
        identity,
        Some(view),
        request,
        host,
        &mut Evaluation::default(),
    ) == Verdict::Allow;
    if allowed {
        host.count(metric::ALLOWED, 1);
        host.count(metric::HEADER_FAST_PATH, 1);
    }
    allowed
}

/// Judges each JSON-RPC message of a complete POST body. A body that is not JSON-RPC is
/// refused (fail closed), as is any message the rules deny: the upstream never sees it.
pub fn decide_body(
    policy: &Policy,
    identity: Option<&Caller>,
    request: &RequestView<'_>,
    body: &[u8],
    host: &dyn Host,
) -> BodyDecision {
    let parsed = match mcp::parse_body(body) {
        Ok(parsed) => parsed,
        Err(e) => {
            host.count(metric::DENIED_BODY, 1);
            log::debug!("mcp-auth: request body refused: {e}");
            return BodyDecision::Respond(response::jsonrpc(
                400,
                &mcp::error_response(&Json::Null, e.code(), &e.to_string()),
                "mcp_auth_bad_jsonrpc",
            ));
        }
    };
    let modern = request.first("mcp-protocol-version") == Some(b"2026-07-28".as_slice());
    let header = |name: &str| {
        request
            .first(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    // A repeated header is two answers to one question: whichever one a server reads, the
    // other may be what an intermediary judged.
    let repeated = ["mcp-method", "mcp-name"]
        .into_iter()
        .find(|name| request.all(name).len() > 1)
        .map(|name| format!("the {name} header appears more than once"));
    if let Some(reason) = repeated
        .or_else(|| mcp::header_mismatch(&parsed, header("mcp-method"), header("mcp-name"), modern))
    {
        host.count(metric::DENIED_HEADER_MISMATCH, 1);
        let id = match parsed.messages.as_slice() {
            [one] => one.id.clone().unwrap_or(Json::Null),
            _ => Json::Null,
        };
        return BodyDecision::Respond(response::jsonrpc(
            400,
            &mcp::error_response(&id, mcp::HEADER_MISMATCH_CODE, &reason),
            "mcp_auth_header_mismatch",
        ));
    }
    let mut lists = Vec::new();
    let mut denied = Vec::new();
    for message in &parsed.messages {
        let view = match mcp::view(message, &policy.targets) {
            Ok(view) => view,
            Err(e) => {
                host.count(metric::DENIED_BODY, 1);
                log::debug!("mcp-auth: request body refused: {e}");
                let id = message.id.clone().unwrap_or(Json::Null);
                return BodyDecision::Respond(response::jsonrpc(
                    400,
                    &mcp::error_response(&id, e.code(), &e.to_string()),
                    "mcp_auth_bad_jsonrpc",
                ));
            }
        };
        if let Verdict::Deny(denial) = judge(
            policy,
            identity,
            view.as_ref(),
            request,
            host,
            &mut Evaluation::default(),
        ) {
            if denied.is_empty() {
                host.note(Note::Rule {
                    index: denial.rule,
                    source: &denial.source,
                });
                host.note(Note::Message {
                    method: message.method.as_deref().unwrap_or("(response)"),
                    name: view.as_ref().map_or("", |v| v.name.as_str()),
                });
            }
            denied.push((message, denial.message));
        } else if let (Some(id), Some(method)) = (&message.id, &message.method) {
            lists.push((id.clone(), method.clone()));
        }
    }
    if denied.is_empty() {
        host.count(metric::ALLOWED, 1);
        return BodyDecision::Forward { lists };
    }
    host.count(metric::DENIED_MCP, denied.len() as u64);
    if let Some(authn) = &policy.authn
        && identity.is_none()
    {
        let origin = Origin {
            scheme: match request.text(":scheme") {
                "" => "http",
                s => s,
            },
            host: request.text(":authority"),
            path: request.text(":path").split('?').next().unwrap_or("/"),
        };
        return BodyDecision::Respond(response::unauthorized(
            &origin,
            Challenge::Missing,
            "authentication is required for this request",
            authn.challenge_scope.as_deref(),
        ));
    }
    const DENIED: i64 = -32001;
    let refusal = |m: &mcp::Message| {
        if let Some(Some(text)) = denied
            .iter()
            .find(|(d, _)| std::ptr::eq(*d, m))
            .map(|(_, t)| t)
        {
            return text.clone();
        }
        let what = match mcp::view(m, &policy.targets) {
            Ok(Some(v)) => format!("{} {:?}", v.method, v.name),
            _ => m.method.clone().unwrap_or_else(|| "this message".into()),
        };
        format!("access denied: the gateway's authorization policy does not allow {what}")
    };
    let json = if parsed.batch {
        Json::Array(
            parsed
                .messages
                .iter()
                .filter_map(|m| {
                    let id = m.id.as_ref()?;
                    m.method.as_ref()?;
                    Some(if denied.iter().any(|(d, _)| std::ptr::eq(*d, m)) {
                        mcp::error_response(id, DENIED, &refusal(m))
                    } else {
                        mcp::error_response(
                            id,
                            DENIED,
                            "not processed: the batch holds a request the policy denies",
                        )
                    })
                })
                .collect(),
        )
    } else {
        let m = denied.first().map(|(m, _)| *m);
        let id = m.and_then(|m| m.id.clone()).unwrap_or(Json::Null);
        mcp::error_response(&id, DENIED, &m.map(refusal).unwrap_or_default())
    };
    BodyDecision::Respond(response::jsonrpc(200, &json, "mcp_auth_mcp_denied"))
}

/// Whether a list item (a tool, prompt or resource the server offers) is shown to this
/// caller: the rules judge it as if the caller used it.
///
/// `evaluation` is the list's: the rules that read nothing of `mcp` run once for all its items.
/// The caller counts the items hidden ([`metric::LIST_ITEMS_HIDDEN`]), once per answer.
pub fn keep_item(
    policy: &Policy,
    identity: Option<&Caller>,
    request: &RequestView<'_>,
    view: &McpView,
    host: &dyn Host,
    evaluation: &mut Evaluation,
) -> bool {
    judge(policy, identity, Some(view), request, host, evaluation) == Verdict::Allow
}

/// `GET /.well-known/oauth-protected-resource[/<path>]` → the resource path it asks about.
fn metadata_request<'p>(method: &str, path: &'p str) -> Option<&'p str> {
    if method != "GET" && method != "HEAD" {
        return None;
    }
    let rest = path.strip_prefix(METADATA_PREFIX)?;
    match rest {
        "" | "/" => Some("/"),
        r if r.starts_with('/') => Some(r),
        _ => None,
    }
}

enum Authenticated {
    Yes(Caller),
    Anonymous,
    Stop(Decision),
}

fn authenticate(
    authn: &Authn,
    keys: KeyState<'_>,
    cache: &TokenCache,
    request: &RequestView<'_>,
    raw_path: &[u8],
    origin: &Origin<'_>,
    host: &dyn Host,
) -> Authenticated {
    let permissive = authn.mode == Mode::Permissive;
    let token = match jwt::extract(&request.all("authorization"), raw_path) {
        Credentials::Missing => {
            if authn.mode != Mode::Strict {
                return Authenticated::Anonymous;
            }
            host.count(metric::DENIED_MISSING, 1);
            return Authenticated::Stop(Decision::Respond(response::unauthorized(
                origin,
                Challenge::Missing,
                "a Bearer token is required",
                authn.challenge_scope.as_deref(),
            )));
        }
        Credentials::Invalid(e) => {
            if permissive {
                return Authenticated::Anonymous;
            }
            host.count(
                &format!("{}.{}", metric::DENIED_INVALID_REQUEST, e.label()),
                1,
            );
            return Authenticated::Stop(Decision::Respond(response::unauthorized(
                origin,
                Challenge::InvalidRequest,
                &e.to_string(),
                authn.challenge_scope.as_deref(),
            )));
        }
        Credentials::Bearer(token) => token,
    };
    let (set, may_refetch) = match keys {
        KeyState::Ready { set, may_refetch } => (set, may_refetch),
        KeyState::Missing => return Authenticated::Stop(Decision::FetchKeys),
        KeyState::Failed(reason) => {
            host.count(metric::KEYS_UNAVAILABLE, 1);
            return Authenticated::Stop(Decision::Respond(response::keys_unavailable(
                &authn.expect.issuer,
                reason,
            )));
        }
    };
    let now = host.now();
    if let Some(caller) = cache.get(token, set.generation, now, authn.expect.clock_skew) {
        host.count(metric::TOKEN_CACHE_HIT, 1);
        return Authenticated::Yes(caller);
    }
    match jwt::verify(token, set, &authn.expect, now) {
        Ok(identity) => {
            host.count(metric::TOKEN_CACHE_MISS, 1);
            let caller = cache.caller(identity);
            cache.put(token, caller.clone(), set.generation);
            Authenticated::Yes(caller)
        }
        Err(e) if e.is_unknown_key() && may_refetch => Authenticated::Stop(Decision::FetchKeys),
        Err(e) => {
            log::debug!("mcp-auth: token refused: {e}");
            if permissive {
                return Authenticated::Anonymous;
            }
            host.count(
                &format!("{}.{}", metric::DENIED_INVALID_TOKEN, e.label()),
                1,
            );
            Authenticated::Stop(Decision::Respond(response::unauthorized(
                origin,
                Challenge::InvalidToken,
                &e.to_string(),
                authn.challenge_scope.as_deref(),
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::Kind;
    use crate::policy::FilterConfig;
    use crate::testing::FakeHost;
    use chrono::{DateTime, Utc};
    use serde_json::{Value as Json, json};

    fn caller(cache: &TokenCache, claims: Json) -> Caller {
        let Json::Object(claims) = claims else {
            panic!()
        };
        cache.caller(crate::jwt::Identity::verified(
            claims,
            DateTime::<Utc>::MAX_UTC,
        ))
    }

    fn tool(name: &str) -> McpView<'static> {
        McpView {
            method: "tools/call".into(),
            kind: Kind::Tool,
            name: name.into(),
            raw: name.into(),
            target: String::new(),
            arguments: std::borrow::Cow::Owned(json!({"path": "/etc"})),
        }
    }

    /// The tools each caller is shown, asking `rounds` times, and how many verdicts the cache
    /// then holds.
    fn shown(rule: &str, rounds: usize) -> (Vec<Vec<&'static str>>, usize) {
        let yaml = format!("policies:\n  authorization:\n    rules:\n    - allow: '{rule}'\n");
        let config = FilterConfig::parse(yaml.as_bytes()).unwrap();
        let policy = config.policy_for(None).unwrap();
        let cache = TokenCache::new(16);
        let callers = [
            caller(&cache, json!({"tools": ["echo"]})),
            caller(&cache, json!({"tools": ["rm"]})),
        ];
        let host = FakeHost::new();
        let request = RequestView { headers: &[] };
        let mut seen = Vec::new();
        for _ in 0..rounds {
            for caller in &callers {
                let mut evaluation = Evaluation::default();
                let kept = ["echo", "rm"]
                    .into_iter()
                    .filter(|name| {
                        let view = tool(name);
                        keep_item(
                            policy,
                            Some(caller),
                            &request,
                            &view,
                            &host,
                            &mut evaluation,
                        )
                    })
                    .collect();
                seen.push(kept);
            }
        }
        (seen, cache.verdicts().len())
    }

    #[test]
    fn verdicts_on_names_are_remembered_per_caller_and_name() {
        // Rules that read only names and claims: each caller keeps its own verdicts, and
        // asking again gives the same answers from them.
        let (seen, kept) = shown("mcp.tool.name in auth.claims.tools", 3);
        assert_eq!(seen, [[&["echo"][..], &["rm"]]; 3].concat());
        assert_eq!(kept, 4);
        // A rule that reads more than names, or the request, is judged every time.
        for rule in [
            "mcp.tool.name in auth.claims.tools && has(mcp.tool.arguments.path)",
            "mcp.tool.name in auth.claims.tools && request.method != \"DELETE\"",
        ] {
            let (seen, kept) = shown(rule, 2);
            assert_eq!(seen, [[&["echo"][..], &["rm"]]; 2].concat(), "{rule}");
            assert_eq!(kept, 0, "{rule}");
        }
    }
}
