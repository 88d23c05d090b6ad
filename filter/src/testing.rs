//! Native test doubles for the core: a [`Host`] with a settable clock, shared data with CAS,
//! recorded calls and counters, and freshly generated keys.
//!
//! Also compiled for other crates with the `testing` feature, where clippy does not count it as
//! test code: its doubles may panic, as a test may, so the no-panic lints are lifted here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use crate::host::{Host, SharedWrite};
use crate::location::Location;

pub struct FakeHost {
    now_ms: Cell<i64>,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    calls: RefCell<Vec<(u32, Location)>>,
    pub counters: RefCell<HashMap<String, u64>>,
}

impl Default for FakeHost {
    fn default() -> FakeHost {
        FakeHost::new()
    }
}

impl FakeHost {
    /// A host whose clock reads 2026-01-01T00:00:00Z.
    pub fn new() -> FakeHost {
        FakeHost::at(DateTime::from_timestamp_millis(1_767_225_600_000).unwrap_or_default())
    }

    /// A host whose clock reads `now`.
    pub fn at(now: DateTime<Utc>) -> FakeHost {
        FakeHost {
            now_ms: Cell::new(now.timestamp_millis()),
            shared: RefCell::default(),
            calls: RefCell::default(),
            counters: RefCell::default(),
        }
    }

    pub fn advance(&self, d: Duration) {
        self.now_ms.set(self.now_ms.get() + d.as_millis() as i64);
    }

    pub fn calls(&self) -> Vec<(u32, Location)> {
        self.calls.borrow().clone()
    }
}

impl Host for FakeHost {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms.get()).unwrap()
    }

    fn count(&self, name: &str, delta: u64) {
        let mut counters = self.counters.borrow_mut();
        // No allocation once a counter exists: benchmarks time decisions through this host.
        match counters.get_mut(name) {
            Some(value) => *value += delta,
            None => {
                counters.insert(name.into(), delta);
            }
        }
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.borrow().get(key).cloned()
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return SharedWrite::CasMismatch;
        }
        shared.insert(key.into(), (value.to_vec(), current + 1));
        SharedWrite::Written
    }

    fn dispatch_get(
        &self,
        location: &Location,
        _timeout: Duration,
    ) -> Result<u32, crate::host::DispatchError> {
        let mut calls = self.calls.borrow_mut();
        let token = calls.len() as u32 + 1;
        calls.push((token, location.clone()));
        Ok(token)
    }
}

/// A JWKS document with one fresh RSA-2048 key named `kid`.
pub fn rsa_jwks(kid: &str) -> String {
    use rsa::traits::PublicKeyParts as _;
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let public = private.to_public_key();
    serde_json::json!({"keys": [{
        "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
        "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    }]})
    .to_string()
}
