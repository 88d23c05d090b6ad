//! The route policy, in the Agent Gateway language, parsed and compiled once per configuration.
//!
//! Parsing is strict on purpose: an unknown field, a missing `issuer`, a CEL expression that
//! does not compile or a key set that is not one fails the whole configuration with the path
//! of the field and the reason, so Envoy keeps the last good configuration instead of
//! failing requests later.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use crate::authz::{Rule, RuleKind, RuleSet};
pub use crate::config_error::ConfigError;
use crate::jwks::{self, KeySet};
use crate::jwt::Expectations;
use crate::location::Location;

/// What a missing or invalid token does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Missing or invalid: 401.
    #[default]
    Strict,
    /// Missing passes without identity; invalid: 401.
    Optional,
    /// Never rejected for authentication; claims are set when the token is valid.
    Permissive,
}

/// The header that names the verified identity to the upstream (the shim binds each MCP
/// session to it). The filter removes it from every client request on every route, so only a
/// verified token can set it.
pub const IDENTITY_HEADER: &str = "x-mcp-auth-identity";

/// Tokens remembered per policy and VM unless `tokenCacheSize` says otherwise.
pub const DEFAULT_TOKEN_CACHE_SIZE: usize = 1024;

/// A compiled route policy.
#[derive(Debug)]
pub struct Policy {
    /// Its place among the configuration's policies ([`FilterConfig::policies`] order), for
    /// the per-VM state kept beside it (its token cache).
    pub slot: usize,
    pub authn: Option<Authn>,
    pub rules: RuleSet,
    /// The route's MCP targets, in the order the shim serves them: with more than one, tool
    /// and prompt names arrive as `<target>_<name>` and are split for `mcp.*.target`.
    pub targets: Vec<crate::target::TargetName>,
    /// The largest request body read for MCP-level rules; larger is a 413.
    pub max_body_bytes: usize,
    /// A 2026-07-28 request whose `Mcp-Method` / `Mcp-Name` name a call is judged from those
    /// headers, its body not buffered, when the rules read nothing of `mcp` but methods and
    /// names: the revision makes the server reject a body that disagrees with them. Only for
    /// upstreams that do (the shim does); a denial still reads the body, for its id.
    pub trust_mcp_headers: bool,
}

/// The compiled `mcpAuthentication`.
#[derive(Debug)]
pub struct Authn {
    pub mode: Mode,
    pub expect: Expectations,
    pub keys: KeySource,
    /// Keep the `Authorization` header for the upstream (MCP forbids it by default).
    pub forward_token: bool,
    /// Extra RFC 9728 members, already in their snake_case wire names.
    pub resource_metadata: Map<String, Json>,
    /// Scopes every token must carry (Okta's `scp`, or a `scope` string); else 403
    /// `insufficient_scope`.
    pub required_scopes: Vec<String>,
    /// Claims sent upstream as headers (claim path → header name). The same headers coming
    /// from the client are always removed, so they cannot be forged.
    pub claims_to_headers: Vec<(String, String)>,
    /// `scope="…"` of the 401 challenge: the scopes the policy names, if any.
    pub challenge_scope: Option<String>,
    /// The registration facade (`registration`), for issuers without open registration.
    pub registration: Option<crate::registration::Facade>,
    /// How many verified tokens each VM remembers for this policy (0: none).
    pub token_cache_size: usize,
}

impl Authn {
    /// The scopes the policy names: `requiredScopes`, else the metadata's `scopes_supported`.
    pub fn named_scopes(&self) -> Vec<String> {
        if !self.required_scopes.is_empty() {
            return self.required_scopes.clone();
        }
        self.resource_metadata
            .get("scopes_supported")
            .and_then(Json::as_array)
            .map(|scopes| {
                scopes
                    .iter()
                    .filter_map(Json::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Where the issuer's keys come from.
#[derive(Debug)]
pub enum KeySource {
    Inline(KeySet),
    Remote(RemoteJwks),
}

/// A key set fetched through the host (`dispatch_http_call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// The keys' URL, or the OpenID configuration to read `jwks_uri` from.
    pub location: Location,
    /// `location` is `{issuer}/.well-known/openid-configuration`, not the keys themselves.
    pub discovery: bool,
    pub timeout: Duration,
    pub min_refresh: Duration,
    pub max_refresh: Duration,
}

/// Identity providers whose key location differs from plain discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Okta's authorization servers publish keys at `{issuer}/v1/keys`.
    Okta,
}

pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_REFRESH: Duration = Duration::from_secs(3600);

/// The configuration, and each route's policy document in it: `policies:` or bare. The
/// first three fields are read only at the top level.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDoc {
    routes: Option<BTreeMap<String, RawDoc>>,
    hold_headers: Option<bool>,
    log_allowed: Option<bool>,
    mcp_targets: Option<Vec<String>>,
    policies: Option<RawPolicies>,
    mcp_authentication: Option<RawAuthn>,
    authorization: Option<RawAuthz>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicies {
    mcp_authentication: Option<RawAuthn>,
    authorization: Option<RawAuthz>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAuthn {
    #[serde(default)]
    mode: Mode,
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    jwks: Option<Json>,
    provider: Option<Json>,
    clock_skew: Option<Json>,
    resource_metadata: Option<Map<String, Json>>,
    #[serde(default)]
    forward_token: bool,
    #[serde(default)]
    required_scopes: Vec<String>,
    #[serde(default)]
    claims_to_headers: BTreeMap<String, String>,
    token_cache_size: Option<usize>,
    registration: Option<crate::registration::RawRegistration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAuthz {
    #[serde(default)]
    rules: Vec<Json>,
    max_body_bytes: Option<usize>,
    #[serde(default)]
    trust_mcp_headers: bool,
}

/// The whole plugin configuration: one policy for every route, or one per Envoy route name.
#[derive(Debug)]
pub struct FilterConfig {
    /// Applies to requests whose route has no entry in `routes`.
    pub default: Option<Policy>,
    /// By Envoy route name (the `xds.route_name` property): a wasm filter has no per-route
    /// configuration, so `host-shim envoy` renders every route's policy into this map.
    pub routes: BTreeMap<String, Policy>,
    /// Pause request headers until the body is judged, so a denied request never reaches the
    /// upstream. Only for hosts that keep calling body callbacks after a paused headers
    /// callback (Envoy's `allow_on_headers_stop_iteration`, which the module cannot read):
    /// elsewhere a paused request would hang, so it is off unless the configuration says so.
    pub hold_headers: bool,
    /// Log a decision line for allowed requests too (denials are always logged).
    pub log_allowed: bool,
    /// Headers the filter sets from verified claims on some route (and the identity header):
    /// removed from every request on every route, so no client can forge them anywhere.
    pub strip_headers: Vec<String>,
}

impl FilterConfig {
    /// Parses a plugin configuration: YAML, or JSON (which Istio's `pluginConfig` becomes).
    pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ConfigError::new("(configuration)", "is not valid UTF-8"))?;
        if text.trim().is_empty() {
            return Err(ConfigError::new(
                "(configuration)",
                "is empty: expected `policies:` with `mcpAuthentication` and/or `authorization`",
            ));
        }
        let mut doc: RawDoc = deserialize(text)?;
        let hold_headers = doc.hold_headers.take().unwrap_or(false);
        let log_allowed = doc.log_allowed.take().unwrap_or(false);
        let Some(routes) = doc.routes.take() else {
            let mut config = FilterConfig::new(
                Some(Policy::compile(doc, "")?),
                BTreeMap::new(),
                hold_headers,
            );
            config.log_allowed = log_allowed;
            return Ok(config);
        };
        let default = if doc.mcp_targets.is_none()
            && doc.policies.is_none()
            && doc.mcp_authentication.is_none()
            && doc.authorization.is_none()
        {
            None
        } else {
            Some(Policy::compile(doc, "")?)
        };
        let routes = routes
            .into_iter()
            .map(|(name, doc)| {
                let at = format!("routes.{name}.");
                for (field, set) in [
                    ("routes", doc.routes.is_some()),
                    ("holdHeaders", doc.hold_headers.is_some()),
                    ("logAllowed", doc.log_allowed.is_some()),
                ] {
                    if set {
                        return Err(ConfigError::new(
                            format!("{at}{field}"),
                            "is read only at the top level of the configuration",
                        ));
                    }
                }
                let policy = Policy::compile(doc, &at)?;
                Ok((name, policy))
            })
            .collect::<Result<_, ConfigError>>()?;
        let mut config = FilterConfig::new(default, routes, hold_headers);
        config.log_allowed = log_allowed;
        Ok(config)
    }

    fn new(
        mut default: Option<Policy>,
        mut routes: BTreeMap<String, Policy>,
        hold_headers: bool,
    ) -> FilterConfig {
        for (slot, policy) in default.iter_mut().chain(routes.values_mut()).enumerate() {
            policy.slot = slot;
        }
        let mut strip_headers = vec![IDENTITY_HEADER.to_string()];
        for policy in default.iter().chain(routes.values()) {
            for (_, header) in policy.authn.iter().flat_map(|a| &a.claims_to_headers) {
                if !strip_headers.contains(header) {
                    strip_headers.push(header.clone());
                }
            }
        }
        FilterConfig {
            default,
            routes,
            hold_headers,
            log_allowed: false,
            strip_headers,
        }
    }

    /// The policy for a request on the Envoy route `route` (`None` when unknown).
    pub fn policy_for(&self, route: Option<&str>) -> Option<&Policy> {
        route
            .and_then(|r| self.routes.get(r))
            .or(self.default.as_ref())
    }

    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.default.iter().chain(self.routes.values())
    }
}

impl Policy {
    /// Parses a configuration that holds exactly one policy.
    pub fn parse(bytes: &[u8]) -> Result<Policy, ConfigError> {
        let config = FilterConfig::parse(bytes)?;
        match (config.default, config.routes.is_empty()) {
            (Some(policy), true) => Ok(policy),
            _ => Err(ConfigError::new("routes", "expected a single policy")),
        }
    }

    fn compile(doc: RawDoc, base: &str) -> Result<Policy, ConfigError> {
        let targets = doc
            .mcp_targets
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, name)| {
                crate::target::TargetName::new(name)
                    .map_err(|e| ConfigError::new(format!("{base}mcpTargets[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (prefix, authn, authz) = match doc {
            RawDoc {
                policies: Some(p),
                mcp_authentication: None,
                authorization: None,
                ..
            } => (
                format!("{base}policies."),
                p.mcp_authentication,
                p.authorization,
            ),
            RawDoc {
                policies: None,
                mcp_authentication,
                authorization,
                ..
            } => (base.to_string(), mcp_authentication, authorization),
            _ => {
                return Err(ConfigError::new(
                    format!("{base}policies"),
                    "write the policy either under `policies:` or bare, not both",
                ));
            }
        };
        if authn.is_none() && authz.is_none() && targets.is_empty() {
            return Err(ConfigError::new(
                format!("{prefix}mcpAuthentication"),
                "the policy has neither `mcpAuthentication` nor `authorization`",
            ));
        }
        let authn = authn
            .map(|a| compile_authn(a, &format!("{prefix}mcpAuthentication")))
            .transpose()?;
        let (rules, max_body_bytes, trust_mcp_headers) = match authz {
            Some(a) => (
                compile_rules(a.rules, &format!("{prefix}authorization.rules"))?,
                a.max_body_bytes.unwrap_or(crate::mcp::DEFAULT_BODY_LIMIT),
                a.trust_mcp_headers,
            ),
            None => (RuleSet::default(), crate::mcp::DEFAULT_BODY_LIMIT, false),
        };
        Ok(Policy {
            slot: 0,
            authn,
            rules,
            targets,
            max_body_bytes,
            trust_mcp_headers,
        })
    }
}

/// Deserializes with the path of the failing field in the error.
fn deserialize<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let located =
        |path: String, reason: String| ConfigError::from_serde(path, reason, "(configuration)");
    if text.trim_start().starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| located(e.path().to_string(), e.inner().to_string()))
    } else {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de)
            .map_err(|e| located(e.path().to_string(), e.inner().to_string()))
    }
}

fn compile_authn(raw: RawAuthn, path: &str) -> Result<Authn, ConfigError> {
    let issuer = raw
        .issuer
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ConfigError::new(format!("{path}.issuer"), "is required"))?;
    let audiences = match raw.audiences {
        None => {
            return Err(ConfigError::new(
                format!("{path}.audiences"),
                "is required (write `audiences: []` to accept any audience)",
            ));
        }
        Some(list) if list.is_empty() => None,
        Some(list) => Some(list),
    };
    let clock_skew = match raw.clock_skew {
        None => DEFAULT_CLOCK_SKEW,
        Some(v) => duration(&v, &format!("{path}.clockSkew"))?,
    };
    let clock_skew = chrono::TimeDelta::from_std(clock_skew)
        .map_err(|_| ConfigError::new(format!("{path}.clockSkew"), "is too large"))?;
    let provider = raw
        .provider
        .as_ref()
        .map(|p| provider(p, &format!("{path}.provider")))
        .transpose()?;
    okta_custom_server(&issuer, provider, path)?;
    let empty = Json::Object(Map::new());
    let keys = key_source(
        raw.jwks.as_ref().unwrap_or(&empty),
        &format!("{path}.jwks"),
        &issuer,
        provider,
    )?;
    let mut resource_metadata: Map<String, Json> = raw
        .resource_metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (snake_case(&k), v))
        .collect();
    if !raw.required_scopes.is_empty() && !resource_metadata.contains_key("scopes_supported") {
        resource_metadata.insert(
            "scopes_supported".into(),
            Json::from(raw.required_scopes.clone()),
        );
    }
    let mut claims_to_headers = Vec::new();
    for (claim, header) in raw.claims_to_headers {
        let valid = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid || header.eq_ignore_ascii_case("authorization") {
            return Err(ConfigError::new(
                format!("{path}.claimsToHeaders.{claim}"),
                format!("{header:?} is not a header name the filter may set"),
            ));
        }
        claims_to_headers.push((claim, header.to_ascii_lowercase()));
    }
    let registration = raw
        .registration
        .map(|r| {
            let jwks_uri = match &keys {
                KeySource::Remote(remote) if !remote.discovery => Some(remote.location.url.clone()),
                _ => None,
            };
            crate::registration::Facade::compile(
                r,
                &format!("{path}.registration"),
                &issuer,
                provider == Some(Provider::Okta),
                jwks_uri,
            )
        })
        .transpose()?;
    let mut authn = Authn {
        mode: raw.mode,
        expect: Expectations {
            issuer,
            audiences,
            clock_skew,
        },
        keys,
        forward_token: raw.forward_token,
        resource_metadata,
        required_scopes: raw.required_scopes,
        claims_to_headers,
        challenge_scope: None,
        registration,
        token_cache_size: raw.token_cache_size.unwrap_or(DEFAULT_TOKEN_CACHE_SIZE),
    };
    let scopes = authn.named_scopes();
    authn.challenge_scope = (!scopes.is_empty()).then(|| scopes.join(" "));
    Ok(authn)
}

/// `provider: okta`, or Agent Gateway's `provider: {okta: {}}`.
fn provider(value: &Json, path: &str) -> Result<Provider, ConfigError> {
    let name = match value {
        Json::String(name) => name.as_str(),
        Json::Object(fields) if fields.len() == 1 => fields.keys().next().map_or("", |k| k),
        _ => "",
    };
    match name {
        "okta" => Ok(Provider::Okta),
        _ => Err(ConfigError::new(
            path,
            "unknown provider, expected `okta` (other issuers need no provider: keys are \
             found through OpenID discovery)",
        )),
    }
}

/// Hosts Okta serves its orgs on; an org on a custom domain is known only by `provider: okta`.
const OKTA_DOMAINS: [&str; 3] = [".okta.com", ".oktapreview.com", ".okta-emea.com"];

/// An Okta issuer must be a custom authorization server (`{org}/oauth2/{id}`). The org
/// authorization server (`https://{org}.okta.com`) signs tokens meant for Okta's own APIs, with
/// keys Okta may change at any time and a format it does not promise: only Okta itself may
/// validate them, so a gateway that accepted them would break, or trust what it cannot check.
fn okta_custom_server(
    issuer: &str,
    provider: Option<Provider>,
    path: &str,
) -> Result<(), ConfigError> {
    let Ok((_, host, server)) = crate::location::split_url(issuer) else {
        return Ok(());
    };
    let okta_host = OKTA_DOMAINS
        .iter()
        .any(|d| host.to_ascii_lowercase().ends_with(d));
    if provider != Some(Provider::Okta) && !okta_host {
        return Ok(());
    }
    let id = server
        .trim_end_matches('/')
        .strip_prefix("/oauth2/")
        .filter(|id| !id.is_empty() && !id.contains('/'));
    // `/oauth2/v1/...` is where the org server's own endpoints live, not a server's id.
    if id.is_some_and(|id| id != "v1") {
        return Ok(());
    }
    let org = issuer.trim_end_matches('/');
    let org = org
        .strip_suffix(server.trim_end_matches('/'))
        .unwrap_or(org);
    Err(ConfigError::new(
        format!("{path}.issuer"),
        format!(
            "{issuer:?} is Okta's org authorization server: its access tokens are meant for \
             Okta's own APIs and only Okta may validate them. Use a custom authorization server \
             (Security → API → Authorization Servers): {org}/oauth2/default or {org}/oauth2/<id>"
        ),
    ))
}

/// `jwks` as Agent Gateway writes it: a JSON string, an object with `keys`, or `url:`; with
/// no `url`, the provider's key location or OpenID discovery from the issuer.
fn key_source(
    jwks: &Json,
    path: &str,
    issuer: &str,
    provider: Option<Provider>,
) -> Result<KeySource, ConfigError> {
    let inline = |set: Result<KeySet, jwks::JwksError>| {
        set.map(KeySource::Inline)
            .map_err(|e| ConfigError::new(path, e.to_string()))
    };
    match jwks {
        Json::String(text) => inline(jwks::parse_jwks(text.as_bytes())),
        Json::Object(fields) if fields.contains_key("keys") => {
            if let Some(other) = fields.keys().find(|k| *k != "keys") {
                return Err(ConfigError::new(
                    format!("{path}.{other}"),
                    "unknown field next to `keys`",
                ));
            }
            match fields.get("keys") {
                Some(Json::Array(keys)) => inline(jwks::from_values(keys)),
                _ => Err(ConfigError::new(format!("{path}.keys"), "must be a list")),
            }
        }
        Json::Object(fields) if fields.contains_key("file") => Err(ConfigError::new(
            format!("{path}.file"),
            "a proxy-wasm filter cannot read files: render the configuration with \
             `host-shim envoy`, which inlines the file, or write the keys inline",
        )),
        Json::Object(fields) => remote(fields, path, issuer, provider).map(KeySource::Remote),
        _ => Err(ConfigError::new(
            path,
            "expected an inline key set (a JSON string or `keys: [...]`) or `url:`",
        )),
    }
}

fn remote(
    fields: &Map<String, Json>,
    path: &str,
    issuer: &str,
    provider: Option<Provider>,
) -> Result<RemoteJwks, ConfigError> {
    const KNOWN: [&str; 5] = ["url", "cluster", "timeout", "minRefresh", "maxRefresh"];
    if let Some(other) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ConfigError::new(
            format!("{path}.{other}"),
            format!("unknown field, expected one of {}", KNOWN.join(", ")),
        ));
    }
    let text = |name: &str| -> Result<Option<String>, ConfigError> {
        match fields.get(name) {
            None => Ok(None),
            Some(Json::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(ConfigError::new(
                format!("{path}.{name}"),
                "must be a non-empty string",
            )),
        }
    };
    let issuer = issuer.trim_end_matches('/');
    let (url, discovery, at) = match (text("url")?, provider) {
        (Some(url), _) => (url, false, format!("{path}.url")),
        (None, Some(Provider::Okta)) => (
            format!("{issuer}/v1/keys"),
            false,
            path.replace(".jwks", ".issuer"),
        ),
        (None, None) => (
            format!("{issuer}/.well-known/openid-configuration"),
            true,
            path.replace(".jwks", ".issuer"),
        ),
    };
    let location = Location::parse(&url, text("cluster")?)
        .map_err(|reason| ConfigError::new(at, format!("{url:?} {reason}")))?;
    let get = |name: &str, default: Duration| match fields.get(name) {
        None => Ok(default),
        Some(v) => duration(v, &format!("{path}.{name}")),
    };
    let timeout = get("timeout", DEFAULT_JWKS_TIMEOUT)?;
    let min_refresh = get("minRefresh", DEFAULT_MIN_REFRESH)?;
    let max_refresh = get("maxRefresh", DEFAULT_MAX_REFRESH)?;
    if timeout.is_zero() {
        return Err(ConfigError::new(
            format!("{path}.timeout"),
            "must be above zero",
        ));
    }
    if min_refresh > max_refresh {
        return Err(ConfigError::new(
            format!("{path}.minRefresh"),
            "must not be above maxRefresh",
        ));
    }
    Ok(RemoteJwks {
        location,
        discovery,
        timeout,
        min_refresh,
        max_refresh,
    })
}

/// A duration written as seconds (`60`) or with a unit (`60s`, `5m`, `1h`, `500ms`).
fn duration(value: &Json, path: &str) -> Result<Duration, ConfigError> {
    match value {
        Json::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| ConfigError::new(path, "must be a whole number of seconds")),
        Json::String(s) => humantime::parse_duration(s)
            .map_err(|e| ConfigError::new(path, format!("{s:?} is not a duration: {e}"))),
        _ => Err(ConfigError::new(path, "must be a duration such as 60s")),
    }
}

fn compile_rules(raw: Vec<Json>, path: &str) -> Result<RuleSet, ConfigError> {
    let mut rules = Vec::with_capacity(raw.len());
    for (i, rule) in raw.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let mut message = None;
        let (kind, source, at) = match rule {
            Json::String(s) => (RuleKind::Allow, s.as_str(), at),
            Json::Object(fields) if (1..=2).contains(&fields.len()) => {
                let mut rule = fields.iter().filter(|(k, _)| k.as_str() != "message");
                let (Some((key, value)), None) = (rule.next(), rule.next()) else {
                    return Err(ConfigError::new(
                        at,
                        "expected one of `if:`, `allow:`, `deny:`, `require:` (and an optional `message:`)",
                    ));
                };
                let kind = match key.as_str() {
                    "if" | "allow" => RuleKind::Allow,
                    "deny" => RuleKind::Deny,
                    "require" => RuleKind::Require,
                    other => {
                        return Err(ConfigError::new(
                            format!("{at}.{other}"),
                            "unknown rule kind, expected if, allow, deny or require",
                        ));
                    }
                };
                let Json::String(source) = value else {
                    return Err(ConfigError::new(
                        format!("{at}.{key}"),
                        "must be a CEL expression string",
                    ));
                };
                message = match fields.get("message") {
                    None => None,
                    Some(Json::String(m)) if !m.trim().is_empty() => Some(m.clone()),
                    Some(_) => {
                        return Err(ConfigError::new(
                            format!("{at}.message"),
                            "must be a non-empty string (shown to a client the rule denies)",
                        ));
                    }
                };
                (kind, source.as_str(), format!("{at}.{key}"))
            }
            _ => {
                return Err(ConfigError::new(
                    at,
                    "expected a CEL string or one of `if:`, `allow:`, `deny:`, `require:`",
                ));
            }
        };
        let mut compiled =
            Rule::compile(kind, source).map_err(|e| ConfigError::new(at, e.to_string()))?;
        compiled.message = message;
        rules.push(compiled);
    }
    Ok(RuleSet::new(rules))
}

/// `scopesSupported` → `scopes_supported`, the RFC 9728 wire name.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE: &str = r#"
policies:
  mcpAuthentication:
    mode: strict
    issuer: https://your-org.okta.com/oauth2/default
    audiences: [api://agentgateway]
    jwks:
      url: https://your-org.okta.com/oauth2/default/v1/keys
  authorization:
    rules:
    - if: '"AI-Users" in auth.claims.groups'
"#;

    fn err(config: &str) -> ConfigError {
        Policy::parse(config.as_bytes()).unwrap_err()
    }

    #[test]
    fn the_okta_guide_policy_parses_as_written() {
        let policy = Policy::parse(GUIDE.as_bytes()).unwrap();
        let authn = policy.authn.unwrap();
        assert_eq!(authn.mode, Mode::Strict);
        assert_eq!(
            authn.expect.issuer,
            "https://your-org.okta.com/oauth2/default"
        );
        assert_eq!(
            authn.expect.audiences,
            Some(vec!["api://agentgateway".to_string()])
        );
        let KeySource::Remote(remote) = authn.keys else {
            panic!("expected remote keys")
        };
        assert_eq!(remote.location.cluster, "your-org.okta.com");
        assert_eq!(remote.location.authority, "your-org.okta.com");
        assert_eq!(remote.location.path, "/oauth2/default/v1/keys");
        assert_eq!(remote.timeout, DEFAULT_JWKS_TIMEOUT);
        assert_eq!(policy.rules.len(), 1);
    }

    #[test]
    fn json_and_bare_forms_are_accepted() {
        let json = r#"{"mcpAuthentication":{"issuer":"https://i","audiences":[],
            "jwks":{"url":"http://127.0.0.1:9000/k?x=1","cluster":"okta","timeout":"2s"}},
            "authorization":{"rules":["true",{"deny":"false"},{"require":"true"}]}}"#;
        let policy = Policy::parse(json.as_bytes()).unwrap();
        let authn = policy.authn.unwrap();
        assert_eq!(authn.expect.audiences, None);
        let KeySource::Remote(remote) = authn.keys else {
            panic!("expected remote keys")
        };
        assert_eq!(remote.location.cluster, "okta");
        assert_eq!(remote.location.authority, "127.0.0.1:9000");
        assert_eq!(remote.location.path, "/k?x=1");
        assert_eq!(remote.timeout, Duration::from_secs(2));
        assert_eq!(policy.rules.len(), 3);
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(
            "policies:\n  mcpAuthentication:\n    audiences: []\n    jwks: {url: https://x/k}\n",
        );
        assert_eq!(e.path, "policies.mcpAuthentication.issuer", "{e}");

        let e = err(
            "mcpAuthentication:\n  issuer: x\n  audiences: []\n  jwks: {url: https://x/k}\n  colour: red\n",
        );
        assert_eq!(e.path, "mcpAuthentication.colour", "{e}");
        assert!(e.reason.starts_with("unknown field `colour`"), "{e}");

        let e = err("authorization:\n  rules:\n  - if: '\"a\" in in'\n");
        assert_eq!(e.path, "authorization.rules[0].if", "{e}");

        let e = err("mcpAuthentication:\n  issuer: x\n  audiences: []\n  jwks: '{\"keys\": 5}'\n");
        assert_eq!(e.path, "mcpAuthentication.jwks", "{e}");
        assert!(e.reason.contains("not a JSON Web Key Set"), "{e}");

        let e = err("mcpAuthentication:\n  issuer: x\n  jwks: {url: https://x/k}\n");
        assert_eq!(e.path, "mcpAuthentication.audiences", "{e}");

        let e = err("mcpAuthentication:\n  issuer: x\n  audiences: []\n  jwks: {url: ftp://x/k}\n");
        assert_eq!(e.path, "mcpAuthentication.jwks.url", "{e}");

        let e = err(
            "mcpAuthentication:\n  mode: lax\n  issuer: x\n  audiences: []\n  jwks: {url: https://x/k}\n",
        );
        assert_eq!(e.path, "mcpAuthentication.mode", "{e}");

        let e = err("{\"policies\": {\"authorization\": {\"rules\": [{\"maybe\": \"true\"}]}}}");
        assert_eq!(e.path, "policies.authorization.rules[0].maybe", "{e}");

        assert_eq!(err("  ").path, "(configuration)");
        assert_eq!(err("policies: {}").path, "policies.mcpAuthentication");
    }

    #[test]
    fn okta_provider_and_discovery_locate_the_keys() {
        let remote = |config: &str| match Policy::parse(config.as_bytes())
            .unwrap()
            .authn
            .unwrap()
            .keys
        {
            KeySource::Remote(r) => r,
            KeySource::Inline(_) => panic!("expected remote keys"),
        };
        let okta = remote(
            "mcpAuthentication:\n  issuer: https://o.okta.com/oauth2/default/\n  audiences: []\n  provider: {okta: {}}\n",
        );
        assert_eq!(
            okta.location.url,
            "https://o.okta.com/oauth2/default/v1/keys"
        );
        assert!(!okta.discovery);
        let okta = remote(
            "mcpAuthentication:\n  issuer: https://o.okta.com/oauth2/default\n  audiences: []\n  provider: okta\n  jwks: {cluster: 'outbound|443||o.okta.com'}\n",
        );
        assert_eq!(okta.location.cluster, "outbound|443||o.okta.com");
        let any =
            remote("mcpAuthentication:\n  issuer: https://login.example.com\n  audiences: []\n");
        assert!(any.discovery);
        assert_eq!(any.location.path, "/.well-known/openid-configuration");
        assert_eq!(any.location.cluster, "login.example.com");
        let e = err("mcpAuthentication:\n  issuer: x\n  audiences: []\n  provider: auth1\n");
        assert_eq!(e.path, "mcpAuthentication.provider", "{e}");
        let e = err("mcpAuthentication:\n  issuer: not-a-url\n  audiences: []\n");
        assert_eq!(e.path, "mcpAuthentication.issuer", "{e}");
    }

    #[test]
    fn okta_org_authorization_server_is_refused() {
        let config = |issuer: &str, provider: &str| {
            format!(
                "mcpAuthentication:\n  issuer: {issuer}\n  audiences: [api://agentgateway]\n{provider}"
            )
        };
        // By host, with or without `provider`, and whatever the trailing slash or path says.
        for (issuer, provider) in [
            ("https://your-org.okta.com", ""),
            ("https://your-org.okta.com/", "  provider: okta\n"),
            (
                "https://Your-Org.OKTA.com",
                "  jwks: {url: https://your-org.okta.com/oauth2/v1/keys}\n",
            ),
            ("https://your-org.oktapreview.com/oauth2/v1", ""),
            ("https://your-org.okta-emea.com/oauth2/", ""),
            // A custom domain is Okta's only when the policy says so.
            ("https://login.example.com", "  provider: {okta: {}}\n"),
            ("https://login.example.com/sso/", "  provider: okta\n"),
        ] {
            let e = err(&config(issuer, provider));
            assert_eq!(e.path, "mcpAuthentication.issuer", "{issuer}: {e}");
            assert!(
                e.reason.contains("Okta's org authorization server")
                    && e.reason.contains("only Okta may validate them")
                    && e.reason.contains("/oauth2/default or "),
                "{issuer}: {e}"
            );
        }
        let e = err(&config("https://your-org.okta.com", ""));
        assert!(
            e.reason.ends_with(
                "https://your-org.okta.com/oauth2/default or https://your-org.okta.com/oauth2/<id>"
            ),
            "{e}"
        );

        // Custom authorization servers, and issuers that are not Okta's, pass.
        for (issuer, provider) in [
            ("https://your-org.okta.com/oauth2/default", ""),
            (
                "https://your-org.okta.com/oauth2/default/",
                "  provider: okta\n",
            ),
            ("https://your-org.okta.com/oauth2/aus1a2b3c4D5e6F7g8h9", ""),
            (
                "https://login.example.com/oauth2/default",
                "  provider: okta\n",
            ),
            ("https://login.example.com", ""),
            ("https://notokta.com", ""),
        ] {
            Policy::parse(config(issuer, provider).as_bytes())
                .unwrap_or_else(|e| panic!("{issuer}: {e}"));
        }
    }

    #[test]
    fn top_level_settings_are_refused_inside_a_route() {
        for field in ["holdHeaders: true", "logAllowed: true", "routes: {}"] {
            let text =
                format!("routes:\n  r1:\n    {field}\n    authorization:\n      rules: ['true']\n");
            let e = FilterConfig::parse(text.as_bytes()).unwrap_err();
            let name = field.split(':').next().unwrap();
            assert_eq!(e.path, format!("routes.r1.{name}"), "{e}");
        }
    }

    #[test]
    fn policies_by_route_name() {
        let config = FilterConfig::parse(
            br#"{"routes": {
                "mcp-a": {"policies": {"authorization": {"rules": ["true"]}}},
                "mcp-b": {"authorization": {"rules": ["false", "false"]}}}}"#,
        )
        .unwrap();
        assert!(config.default.is_none());
        assert_eq!(config.policy_for(Some("mcp-a")).unwrap().rules.len(), 1);
        assert_eq!(config.policy_for(Some("mcp-b")).unwrap().rules.len(), 2);
        assert!(config.policy_for(Some("other")).is_none());
        let e = FilterConfig::parse(br#"{"routes": {"r1": {"authorization": {"rules": [1]}}}}"#)
            .unwrap_err();
        assert_eq!(e.path, "routes.r1.authorization.rules[0]", "{e}");
    }

    #[test]
    fn resource_metadata_uses_wire_names() {
        let p = Policy::parse(
            b"mcpAuthentication:\n  issuer: x\n  audiences: []\n  jwks: {url: https://x/k}\n  resourceMetadata:\n    scopesSupported: [a]\n",
        )
        .unwrap();
        assert!(
            p.authn
                .unwrap()
                .resource_metadata
                .contains_key("scopes_supported")
        );
    }
}
