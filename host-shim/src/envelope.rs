//! The MCP 2026-07-28 request envelope: whether a POST speaks that revision at all, and whether
//! what it says in HTTP headers agrees with what it says in its body.
//!
//! From 2026-07-28 on there is no `initialize` handshake: every request carries its protocol
//! version, client info and client capabilities in `params._meta` (the spec's "per-request
//! protocol fields", basic/index), and mirrors the version, its method and — for `tools/call`,
//! `prompts/get` and `resources/read` — the name it acts on into the `MCP-Protocol-Version`,
//! `Mcp-Method` and `Mcp-Name` headers (transports/streamable-http, "Request Metadata"). The
//! headers exist so that gateways can route and judge without reading bodies; a header that says
//! one thing while the body says another is exactly how a gateway and a server end up disagreeing
//! about what a request does, so the spec makes every server that reads the body refuse it
//! (400 with `HeaderMismatch`, -32020). Kept free of I/O so each rule is tested on its own.

use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::{Value as Json, json};

use crate::mcp::RpcError;

/// The revisions that use the per-request envelope.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
/// The revisions that begin with an `initialize` handshake, oldest first.
pub const HANDSHAKE_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

pub const VERSION_HEADER: &str = "mcp-protocol-version";
pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";

pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// `HeaderMismatch` (basic/index, "Error Codes"; transports/streamable-http, "Server Validation").
pub const HEADER_MISMATCH: i64 = -32020;
/// `UnsupportedProtocolVersion`, whose `data` names the versions served.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// The methods whose target is mirrored into `Mcp-Name`, and the parameter it comes from.
fn name_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Why a 2026-07-28 request was refused before anything served it. Every variant is answered
/// with `400 Bad Request`, as the spec requires for each of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// A required per-request field is absent: the request is malformed (-32602).
    #[error("params._meta must carry {0:?} (2026-07-28 per-request protocol fields)")]
    MissingField(&'static str),
    #[error("the protocol version in params._meta must be a string")]
    VersionNotText,
    #[error("Header mismatch: {0}")]
    HeaderMismatch(String),
    #[error("Unsupported protocol version {requested:?}")]
    Unsupported { requested: String },
}

impl EnvelopeError {
    pub fn code(&self) -> i64 {
        match self {
            EnvelopeError::MissingField(_) | EnvelopeError::VersionNotText => {
                RpcError::INVALID_PARAMS
            }
            EnvelopeError::HeaderMismatch(_) => HEADER_MISMATCH,
            EnvelopeError::Unsupported { .. } => UNSUPPORTED_PROTOCOL_VERSION,
        }
    }

    /// The JSON-RPC error object, with the `data` the spec defines for the code.
    pub fn to_json(&self) -> Json {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let (EnvelopeError::Unsupported { requested }, Some(object)) =
            (self, error.as_object_mut())
        {
            object.insert(
                "data".into(),
                json!({ "supported": MODERN_VERSIONS, "requested": requested }),
            );
        }
        error
    }
}

/// What the shim needs from a checked envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub version: String,
    /// The lowest severity of log message the client wants for this request; none without it.
    pub log_level: Option<String>,
}

fn meta(params: Option<&Json>) -> Option<&serde_json::Map<String, Json>> {
    params?.get("_meta")?.as_object()
}

/// Whether a POST speaks 2026-07-28: its `MCP-Protocol-Version` header names that revision, or
/// names no revision with a handshake while its request carries the per-request version in
/// `_meta` (a modern client that forgot the header, or asks for a version the shim does not
/// serve: [`check`] tells it which). An `initialize` is always the older handshake.
pub fn is_modern(headers: &HeaderMap, method: Option<&str>, params: Option<&Json>) -> bool {
    if method == Some("initialize") {
        return false;
    }
    let named = |versions: &[&str]| {
        headers
            .get(VERSION_HEADER)
            .is_some_and(|h| versions.iter().any(|v| h.as_bytes() == v.as_bytes()))
    };
    if named(MODERN_VERSIONS) {
        return true;
    }
    !named(HANDSHAKE_VERSIONS)
        && meta(params).is_some_and(|m| m.contains_key(META_PROTOCOL_VERSION))
}

/// The one value of header `name`: `Ok(None)` when absent; a repeated header, or one that is not
/// visible ASCII, is malformed (two copies could be read differently by two components).
fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, EnvelopeError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(EnvelopeError::HeaderMismatch(format!(
            "{name} appears more than once"
        )));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| EnvelopeError::HeaderMismatch(format!("{name} is not visible ASCII")))
}

/// A header value as the client meant it: verbatim, or the UTF-8 text inside the
/// `=?base64?…?=` sentinel (transports/streamable-http, "Value Encoding"). A sentinel that does
/// not decode, or is not in canonical form, is `None`, so it never matches anything by accident.
pub fn decode_header_value(value: &str) -> Option<String> {
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    else {
        return Some(value.to_string());
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let bytes = engine.decode(payload).ok()?;
    if engine.encode(&bytes) != payload {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// The standard header `name` (`spelt` so in errors), which a 2026-07-28 request must carry,
/// says what the body says: `body` is the body's value as text, `shown` how an error shows it.
fn required_header(
    headers: &HeaderMap,
    name: &str,
    spelt: &str,
    body: Option<&str>,
    shown: &dyn std::fmt::Display,
) -> Result<(), EnvelopeError> {
    match single_header(headers, name)? {
        Some(header) if Some(header) == body => Ok(()),
        Some(header) => Err(EnvelopeError::HeaderMismatch(format!(
            "{spelt} header value {header:?} does not match body value {shown}"
        ))),
        None => Err(EnvelopeError::HeaderMismatch(format!(
            "the {spelt} header is required"
        ))),
    }
}

/// Checks a 2026-07-28 request: the required per-request fields (-32602 when one is missing),
/// then every standard header against the body (-32020), then the version (-32022). Headers
/// come before the version so that a client contradicting itself is told that, not that its
/// body's version is unsupported.
pub fn check(
    headers: &HeaderMap,
    method: &str,
    params: Option<&Json>,
) -> Result<Envelope, EnvelopeError> {
    let meta = meta(params).ok_or(EnvelopeError::MissingField(META_PROTOCOL_VERSION))?;
    let version = meta
        .get(META_PROTOCOL_VERSION)
        .ok_or(EnvelopeError::MissingField(META_PROTOCOL_VERSION))?;
    if !meta.contains_key(META_CLIENT_CAPABILITIES) {
        return Err(EnvelopeError::MissingField(META_CLIENT_CAPABILITIES));
    }

    required_header(
        headers,
        VERSION_HEADER,
        "MCP-Protocol-Version",
        version.as_str(),
        version,
    )?;
    required_header(
        headers,
        METHOD_HEADER,
        "Mcp-Method",
        Some(method),
        &format_args!("{method:?}"),
    )?;
    if let Some(param) = name_param(method) {
        let body = params.and_then(|p| p.get(param)).and_then(Json::as_str);
        let header = single_header(headers, NAME_HEADER)?;
        match (header, body) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(EnvelopeError::HeaderMismatch(format!(
                    "the Mcp-Name header is required for {method}"
                )));
            }
            (Some(header), body) => {
                if decode_header_value(header).as_deref() != body {
                    return Err(EnvelopeError::HeaderMismatch(format!(
                        "Mcp-Name header value {header:?} does not match body value {}",
                        body.map_or("(none)".to_string(), |b| format!("{b:?}"))
                    )));
                }
            }
        }
    }

    let Some(version) = version.as_str() else {
        return Err(EnvelopeError::VersionNotText);
    };
    if !MODERN_VERSIONS.contains(&version) {
        return Err(EnvelopeError::Unsupported {
            requested: version.to_string(),
        });
    }
    let log_level = meta
        .get(META_LOG_LEVEL)
        .and_then(Json::as_str)
        .map(str::to_string);
    Ok(Envelope {
        version: version.to_string(),
        log_level,
    })
}

/// `params` as a server of an older revision should see them: without the per-request protocol
/// fields, which mean nothing to it (and `_meta` gone when nothing else was in it).
pub fn strip(params: Option<Json>) -> Option<Json> {
    let mut params = params?;
    if let Some(object) = params.as_object_mut() {
        let empty = match object.get_mut("_meta").and_then(Json::as_object_mut) {
            Some(meta) => {
                for key in [
                    META_PROTOCOL_VERSION,
                    META_CLIENT_INFO,
                    META_CLIENT_CAPABILITIES,
                    META_LOG_LEVEL,
                ] {
                    meta.remove(key);
                }
                meta.is_empty()
            }
            None => false,
        };
        if empty {
            object.remove("_meta");
        }
    }
    Some(params)
}

/// Log severities from least to most severe (RFC 5424, as MCP names them).
const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Whether a message at `level` is wanted by a request that asked for `wanted` and above.
pub fn log_wanted(wanted: &str, level: &str) -> bool {
    let rank = |l: &str| LOG_LEVELS.iter().position(|x| *x == l);
    match (rank(wanted), rank(level)) {
        (Some(wanted), Some(level)) => level >= wanted,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn params(version: &str, extra: Json) -> Json {
        let mut params = json!({
            "_meta": {
                META_PROTOCOL_VERSION: version,
                META_CLIENT_CAPABILITIES: {},
                META_CLIENT_INFO: { "name": "t", "version": "1" },
            }
        });
        for (k, v) in extra.as_object().unwrap() {
            params[k] = v.clone();
        }
        params
    }

    #[test]
    fn a_consistent_tool_call_passes() {
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ]);
        let p = params("2026-07-28", json!({ "name": "echo" }));
        let envelope = check(&h, "tools/call", Some(&p)).unwrap();
        assert_eq!(envelope.version, "2026-07-28");
        assert!(envelope.log_level.is_none());
    }

    #[test]
    fn each_header_must_agree_with_the_body() {
        let p = params("2026-07-28", json!({ "name": "echo" }));
        let cases: &[&[(&'static str, &str)]] = &[
            // another tool named in the header
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "get-env"),
            ],
            // another method
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
                ("mcp-name", "echo"),
            ],
            // method names are case-sensitive values
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "Tools/Call"),
                ("mcp-name", "echo"),
            ],
            // a missing name, method or version header
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
            ],
            &[("mcp-protocol-version", "2026-07-28"), ("mcp-name", "echo")],
            &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
            // two copies of one header
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
                ("mcp-name", "echo"),
            ],
            // a version header other than the body's
            &[
                ("mcp-protocol-version", "2025-11-25"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
            ],
        ];
        for case in cases {
            let error = check(&headers(case), "tools/call", Some(&p)).unwrap_err();
            assert_eq!(error.code(), HEADER_MISMATCH, "{case:?}: {error}");
        }
    }

    #[test]
    fn a_version_or_method_error_names_the_header_and_both_values() {
        let p = params("2026-07-28", json!({}));
        let cases: [(&[(&'static str, &str)], &str); 4] = [
            (
                &[("mcp-protocol-version", "2025-11-25")],
                "Header mismatch: MCP-Protocol-Version header value \"2025-11-25\" does not match body value \"2026-07-28\"",
            ),
            (
                &[("mcp-method", "tools/list")],
                "Header mismatch: the MCP-Protocol-Version header is required",
            ),
            (
                &[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "tools/list"),
                ],
                "Header mismatch: Mcp-Method header value \"tools/list\" does not match body value \"tools/call\"",
            ),
            (
                &[("mcp-protocol-version", "2026-07-28")],
                "Header mismatch: the Mcp-Method header is required",
            ),
        ];
        for (case, message) in cases {
            let error = check(&headers(case), "tools/call", Some(&p)).unwrap_err();
            assert_eq!(error.to_string(), message, "{case:?}");
        }
    }

    #[test]
    fn names_may_travel_base64_encoded() {
        let uri = "file:///tmp/caf\u{e9}.txt";
        let encoded = format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(uri)
        );
        let p = params("2026-07-28", json!({ "uri": uri }));
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "resources/read"),
            ("mcp-name", &encoded),
        ]);
        assert!(check(&h, "resources/read", Some(&p)).is_ok());
        // The sentinel is not a way to smuggle in another name.
        let other = format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode("file:///etc/passwd")
        );
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "resources/read"),
            ("mcp-name", &other),
        ]);
        assert_eq!(
            check(&h, "resources/read", Some(&p)).unwrap_err().code(),
            HEADER_MISMATCH
        );
        assert_eq!(decode_header_value("=?base64?!!?="), None);
        assert_eq!(decode_header_value("plain"), Some("plain".into()));
    }

    #[test]
    fn missing_fields_are_invalid_params_and_versions_are_checked_last() {
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ]);
        let error = check(&h, "tools/list", Some(&json!({}))).unwrap_err();
        assert_eq!(error.code(), RpcError::INVALID_PARAMS);
        let no_caps = json!({ "_meta": { META_PROTOCOL_VERSION: "2026-07-28" } });
        assert_eq!(
            check(&h, "tools/list", Some(&no_caps)).unwrap_err(),
            EnvelopeError::MissingField(META_CLIENT_CAPABILITIES)
        );
        let h = headers(&[
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-method", "tools/list"),
        ]);
        let error = check(&h, "tools/list", Some(&params("2099-01-01", json!({})))).unwrap_err();
        assert_eq!(error.code(), UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(
            error.to_json()["data"],
            json!({ "supported": ["2026-07-28"], "requested": "2099-01-01" })
        );
    }

    #[test]
    fn the_era_is_the_headers_or_the_bodys() {
        let modern = params("2026-07-28", json!({}));
        let h = headers(&[("mcp-protocol-version", "2026-07-28")]);
        assert!(is_modern(&h, Some("tools/list"), None));
        assert!(!is_modern(&h, Some("initialize"), Some(&modern)));
        assert!(is_modern(
            &HeaderMap::new(),
            Some("tools/list"),
            Some(&modern)
        ));
        assert!(!is_modern(&HeaderMap::new(), Some("tools/list"), None));
        let legacy = headers(&[("mcp-protocol-version", "2025-11-25")]);
        assert!(!is_modern(&legacy, Some("tools/list"), Some(&modern)));
        let future = headers(&[("mcp-protocol-version", "2099-01-01")]);
        assert!(is_modern(&future, Some("tools/list"), Some(&modern)));
        assert!(!is_modern(&future, Some("tools/list"), None));
    }

    #[test]
    fn older_servers_see_no_envelope() {
        let p = params("2026-07-28", json!({ "name": "echo" }));
        assert_eq!(strip(Some(p)), Some(json!({ "name": "echo" })));
        let p = json!({ "_meta": { META_PROTOCOL_VERSION: "2026-07-28", "progressToken": 7 } });
        assert_eq!(
            strip(Some(p)),
            Some(json!({ "_meta": { "progressToken": 7 } }))
        );
    }

    #[test]
    fn log_levels_compare_by_severity() {
        assert!(log_wanted("info", "error"));
        assert!(log_wanted("info", "info"));
        assert!(!log_wanted("error", "info"));
        assert!(!log_wanted("loud", "info"));
    }
}
