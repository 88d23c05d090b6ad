//! The names of every metric the filter keeps, as the proxy's stats show them (Envoy prefixes
//! `wasmcustom.`): one list for the dashboards and the README to follow, whichever module
//! counts them. All are counters but the memory gauge.

// A request's decision.
pub const ALLOWED: &str = "mcp_auth.allowed";
pub const DENIED_MISSING: &str = "mcp_auth.denied.missing_token";
pub const DENIED_AUTHZ: &str = "mcp_auth.denied.authz";
pub const RULE_ERRORS: &str = "mcp_auth.rule_errors";
pub const METADATA: &str = "mcp_auth.metadata_served";
pub const KEYS_UNAVAILABLE: &str = "mcp_auth.denied.jwks_unavailable";
/// Followed by a reason label, e.g. `mcp_auth.denied.invalid_token.expired`.
pub const DENIED_INVALID_TOKEN: &str = "mcp_auth.denied.invalid_token";
pub const DENIED_INVALID_REQUEST: &str = "mcp_auth.denied.invalid_request";
pub const DENIED_SCOPE: &str = "mcp_auth.denied.insufficient_scope";
/// JSON-RPC messages refused by MCP-level rules (one per message).
pub const DENIED_MCP: &str = "mcp_auth.denied.mcp";
pub const DENIED_BODY: &str = "mcp_auth.denied.bad_body";
pub const DENIED_BODY_SIZE: &str = "mcp_auth.denied.body_too_large";
/// 2026-07-28 calls allowed from their `Mcp-Method` / `Mcp-Name` headers, body unread.
pub const HEADER_FAST_PATH: &str = "mcp_auth.header_fast_path";
/// Requests whose `Mcp-Method` / `Mcp-Name` headers disagree with their body.
pub const DENIED_HEADER_MISMATCH: &str = "mcp_auth.denied.header_mismatch";
pub const LIST_ITEMS_HIDDEN: &str = "mcp_auth.list_items_hidden";
/// Valid tokens answered from the verified-token cache, and those verified anew.
pub const TOKEN_CACHE_HIT: &str = "mcp_auth.token_cache.hit";
pub const TOKEN_CACHE_MISS: &str = "mcp_auth.token_cache.miss";

// A stream's life.
/// Answers to list requests that could not be read (or were too large) and were refused.
pub const RESPONSE_REFUSED: &str = "mcp_auth.denied.unreadable_response";
/// Requests of the legacy HTTP+SSE transport refused on routes that hide items.
pub const LEGACY_REFUSED: &str = "mcp_auth.denied.legacy_transport";
/// Events of an answer stream that were not JSON-RPC (or too large to read): dropped.
pub const SSE_DROPPED: &str = "mcp_auth.sse_events_dropped";
/// Responses on an answer stream to ids that stream never asked: replaced by an error.
pub const OUTSIDE_STREAM: &str = "mcp_auth.denied.answer_outside_stream";

// Only in a module built with the `callback-timing` feature (the benchmark's breakdown).
/// Followed by a span name and `_ns`: nanoseconds spent in it, summed; and `streams`.
pub const TIMING_PREFIX: &str = "mcp_auth.timing.";

// The issuer's keys.
pub const JWKS_FETCH_OK: &str = "mcp_auth.jwks.fetch_ok";
pub const JWKS_FETCH_FAILED: &str = "mcp_auth.jwks.fetch_failed";
pub const JWKS_REFETCH_UNKNOWN_KID: &str = "mcp_auth.jwks.refetch_unknown_kid";
/// Requests that found the keys in this VM's cache, and those that found none.
pub const JWKS_CACHE_HIT: &str = "mcp_auth.jwks.cache_hit";
pub const JWKS_CACHE_MISS: &str = "mcp_auth.jwks.cache_miss";

// Discovery and the authorization server facade.
/// A discovery path the gateway does not serve was asked for (answered 404).
pub const DISCOVERY_NOT_SERVED: &str = "mcp_auth.discovery_not_served";
/// The facade's authorization server metadata was served.
pub const FACADE_METADATA: &str = "mcp_auth.facade.metadata_served";
/// A client registered through the facade.
pub const FACADE_REGISTERED: &str = "mcp_auth.facade.registrations";

/// The gauge of the VM's memory, in bytes.
pub const MEMORY_BYTES: &str = "mcp_auth.memory_bytes";
