//! The one seam between the filter core and the proxy: everything the core needs from its
//! host goes through [`Host`], implemented with proxy-wasm hostcalls in `adapter.rs` and by
//! plain structs in native tests. The core never calls the SDK itself.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::location::Location;

/// Why the proxy would not start a call.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error,
)]
pub enum DispatchError {
    /// The proxy has no cluster of the location's name.
    #[error("the cluster is not configured in the proxy")]
    NoCluster,
    /// Any other refusal, with the proxy's status code.
    #[error("the proxy refused the call (status {0})")]
    Refused(u32),
}

/// The result of a compare-and-swap write to the proxy's shared data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrite {
    Written,
    /// Another VM wrote first: read again and retry.
    CasMismatch,
    Failed,
}

/// What the core tells the proxy about a decision as it is made, for the decision log: who
/// asked, which rule decided, what was asked.
#[derive(Debug, Clone, Copy)]
pub enum Note<'a> {
    /// The token's issuer and subject, once verified.
    Identity { issuer: &'a str, subject: &'a str },
    /// The rule that denied: its index in the policy's rules (`None`: no allow rule matched)
    /// and its expression.
    Rule {
        index: Option<usize>,
        source: &'a str,
    },
    /// The JSON-RPC message that was denied: its method and what it names.
    Message { method: &'a str, name: &'a str },
}

/// What the core asks of the proxy.
pub trait Host {
    /// The host's clock (`proxy_get_current_time_nanoseconds`), never the guest's own.
    fn now(&self) -> DateTime<Utc>;
    /// Adds `delta` to the counter `name` (created on first use).
    fn count(&self, name: &str, delta: u64);
    /// A value of the data shared by every VM of this plugin in the process, with its CAS.
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if the entry still has `cas` (0 = whatever it has).
    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite;
    /// Starts a GET to `location` through its cluster; the answer comes back by token.
    fn dispatch_get(&self, location: &Location, timeout: Duration) -> Result<u32, DispatchError>;
    /// Hears about a decision as it is made (see [`Note`]); hosts that keep no decision log
    /// ignore it.
    fn note(&self, _note: Note<'_>) {}
}
