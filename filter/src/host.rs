//! The one seam between the filter core and the proxy: everything the core needs from its
//! host goes through [`Host`], implemented with proxy-wasm hostcalls in `adapter.rs` and by
//! plain structs in native tests. The core never calls the SDK itself.

use chrono::{DateTime, Utc};

/// What the core asks of the proxy while it decides about a request.
pub trait Host {
    /// The host's clock (`proxy_get_current_time_nanoseconds`), never the guest's own.
    fn now(&self) -> DateTime<Utc>;
    /// Adds `delta` to the counter `name` (created on first use).
    fn count(&self, name: &str, delta: u64);
}
