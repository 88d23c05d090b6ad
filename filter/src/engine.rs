//! One request through a policy: serve the metadata document, find the token, verify it,
//! evaluate the rules, and say what the proxy should do. Pure logic over the request's
//! headers and a [`Host`]; `adapter.rs` carries the answer out with hostcalls.

use crate::authz::{Evaluation, Input, Verdict};
use crate::host::Host;
use crate::jwks::KeySet;
use crate::jwt::{self, Credentials, Identity};
use crate::policy::{Authn, Mode, Policy};
use crate::response::{self, Challenge, LocalResponse, METADATA_PREFIX, Origin};

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

/// The keys a request may be verified with, as the caller knows them now.
#[derive(Debug, Clone, Copy)]
pub enum KeyState<'a> {
    /// Keys are loaded; `may_refetch` says whether an unknown `kid` may ask the issuer again.
    Ready { set: &'a KeySet, may_refetch: bool },
    /// No keys yet: a fetch must happen first.
    Missing,
    /// The issuer's keys could not be had, for this reason.
    Failed(&'a str),
}

/// What the proxy should do with the request.
#[derive(Debug)]
pub enum Decision {
    /// Forward it, without these request headers.
    Continue {
        remove: Vec<&'static str>,
        identity: Option<Identity>,
    },
    /// Answer it here.
    Respond(LocalResponse),
    /// Pause it until keys are fetched, then decide again.
    FetchKeys,
}

/// Counter names, as the proxy's stats show them (Envoy prefixes `wasmcustom.`).
pub mod metric {
    pub const ALLOWED: &str = "mcp_auth.allowed";
    pub const DENIED_MISSING: &str = "mcp_auth.denied.missing_token";
    pub const DENIED_AUTHZ: &str = "mcp_auth.denied.authz";
    pub const RULE_ERRORS: &str = "mcp_auth.rule_errors";
    pub const METADATA: &str = "mcp_auth.metadata_served";
    pub const KEYS_UNAVAILABLE: &str = "mcp_auth.denied.jwks_unavailable";
    /// Followed by a reason label, e.g. `mcp_auth.denied.invalid_token.expired`.
    pub const DENIED_INVALID_TOKEN: &str = "mcp_auth.denied.invalid_token";
    pub const DENIED_INVALID_REQUEST: &str = "mcp_auth.denied.invalid_request";
}

/// Decides about one request. `keys` matters only when the policy authenticates.
pub fn decide(
    policy: &Policy,
    keys: KeyState<'_>,
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
            return Decision::Respond(response::metadata(
                &origin,
                resource_path,
                &authn.expect.issuer,
                &authn.resource_metadata,
            ));
        }
        match authenticate(authn, keys, request, raw_path, &origin, host) {
            Authenticated::Yes(id) => identity = Some(id),
            Authenticated::Anonymous => {}
            Authenticated::Stop(decision) => return decision,
        }
    }

    let mut evaluation = Evaluation::default();
    let verdict = policy.rules.evaluate(
        &Input {
            claims: identity.as_ref().map(Identity::claims),
            method,
            path: path_text,
            host: origin.host,
            headers: request.headers,
        },
        &mut evaluation,
    );
    for error in &evaluation.errors {
        log::warn!("mcp-auth: rule error (counts as not matched): {error}");
    }
    if !evaluation.errors.is_empty() {
        host.count(metric::RULE_ERRORS, evaluation.errors.len() as u64);
    }
    if let Verdict::Deny(reason) = verdict {
        host.count(metric::DENIED_AUTHZ, 1);
        log::debug!("mcp-auth: {method} {path_only} denied: {reason}");
        return Decision::Respond(match (&policy.authn, &identity) {
            // Without an identity the caller may still sign in: challenge instead of refusing.
            (Some(_), None) => response::unauthorized(
                &origin,
                Challenge::Missing,
                "authentication is required for this request",
            ),
            _ => response::forbidden("the authorization policy does not allow this request"),
        });
    }

    host.count(metric::ALLOWED, 1);
    let remove = match &policy.authn {
        Some(authn) if !authn.forward_token => vec!["authorization"],
        _ => Vec::new(),
    };
    Decision::Continue { remove, identity }
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
    Yes(Identity),
    Anonymous,
    Stop(Decision),
}

fn authenticate(
    authn: &Authn,
    keys: KeyState<'_>,
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
    match jwt::verify(token, set, &authn.expect, host.now()) {
        Ok(identity) => Authenticated::Yes(identity),
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
            )))
        }
    }
}
