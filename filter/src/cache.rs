//! Verified tokens, remembered. MCP clients send the same access token for its whole life (an
//! hour at Okta), so after the first request a token costs a hash and a lookup instead of a
//! signature check. The key is the whole token: a hit compares every byte, so a token that
//! differs from a verified one anywhere is never taken for it, and the hash can be a fast one
//! (foldhash, not SHA-256, which cost more than the rest of a warm request in V8): only
//! verified tokens are inserted, so nobody can fill the table with chosen collisions. The
//! cache is an LRU with a fixed capacity per policy and VM, so memory is bounded whatever the
//! traffic; an entry is good until the token's `exp` (plus the clock skew) and only for the
//! key set that verified it.

use std::cell::RefCell;
use std::num::NonZeroUsize;

use chrono::{DateTime, TimeDelta, Utc};
use lru::LruCache;

use crate::jwt::Identity;

/// Tokens remembered per policy and VM unless `tokenCacheSize` says otherwise.
pub const DEFAULT_CAPACITY: usize = 1024;

struct Entry {
    identity: Identity,
    generation: u64,
}

type Hasher = foldhash::fast::FixedState;

pub struct TokenCache {
    entries: Option<RefCell<LruCache<Box<str>, Entry, Hasher>>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.entries.as_ref().map_or(0, |e| e.borrow().len());
        write!(f, "TokenCache({len} entries)")
    }
}

impl TokenCache {
    /// A cache of `capacity` tokens; 0 turns caching off.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: NonZeroUsize::new(capacity)
                .map(|c| RefCell::new(LruCache::with_hasher(c, Hasher::default()))),
        }
    }

    /// The identity a token was verified to, if it was verified by the key set `generation`
    /// and has not expired at `now`.
    pub fn get(
        &self,
        token: &str,
        generation: u64,
        now: DateTime<Utc>,
        skew: TimeDelta,
    ) -> Option<Identity> {
        let mut entries = self.entries.as_ref()?.borrow_mut();
        let entry = entries.get(token)?;
        // The same test verification makes (`now > exp + skew`, at the clock's full
        // precision): comparing whole seconds would keep a token half a second too long.
        let expired = DateTime::from_timestamp(entry.identity.expires_at(), 0)
            .and_then(|exp| exp.checked_add_signed(skew))
            .is_none_or(|limit| now > limit);
        if entry.generation != generation || expired {
            entries.pop(token);
            return None;
        }
        Some(entry.identity.clone())
    }

    pub fn put(&self, token: &str, identity: Identity, generation: u64) {
        if let Some(entries) = &self.entries {
            entries.borrow_mut().put(
                token.into(),
                Entry {
                    identity,
                    generation,
                },
            );
        }
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.borrow().len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
