//! MCP Auth Filter: Okta (or any OIDC issuer) authentication and CEL authorization for MCP
//! servers, as a proxy-wasm module for Envoy and Istio.
//!
//! The core (`policy`, `jwks`, `jwt`, `authz`, `engine`, `response`, `discovery`) knows
//! nothing of the proxy: it sees it through [`host::Host`], so it is tested natively. `adapter`
//! is the only file that talks to the proxy-wasm SDK, and exists only in the wasm build.

pub mod audit;
pub mod authz;
pub mod cache;
pub mod cel_value;
pub mod config_error;
pub mod discovery;
pub mod ec_p256;
pub mod ec_verify;
pub mod engine;
pub mod header_map;
pub mod host;
pub mod json;
pub mod jwks;
pub mod jwt;
pub mod keystore;
pub mod lifecycle;
pub mod location;
pub mod mcp;
pub mod metric;
pub mod policy;
pub mod registration;
pub mod reply;
pub mod response;
pub mod rsa_verify;
pub mod sse;
pub mod target;
pub mod uri;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
mod adapter;
