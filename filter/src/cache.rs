//! Verified tokens, remembered. MCP clients send the same access token for its whole life (an
//! hour at Okta), so after the first request a token costs a hash and a lookup instead of a
//! signature check. The key is the whole token: a hit compares every byte, so a token that
//! differs from a verified one anywhere is never taken for it, and the hash can be a fast one
//! (foldhash, not SHA-256, which cost more than the rest of a warm request in V8): only
//! verified tokens are inserted, so nobody can fill the table with chosen collisions. The
//! cache is an LRU with a fixed capacity per policy and VM, so memory is bounded whatever the
//! traffic; an entry is good until the token's `exp` (plus the clock skew) and only for the
//! key set that verified it.
//!
//! What is remembered is a [`Caller`]: the verified identity with what the rules computed from
//! it, so a repeated token costs neither a claims conversion nor, for rules that read only
//! claims, any CEL at all. The cache is per VM and mutable, so it lives beside the compiled
//! policy (in the lifecycle's state), never inside it.

use std::cell::{OnceCell, RefCell};
use std::num::NonZeroUsize;
use std::rc::Rc;

use chrono::{DateTime, TimeDelta, Utc};
use lru::LruCache;
use serde_json::{Map, Value as Json};

use crate::authz::{ClaimVars, Verdict};
use crate::jwt::Identity;

/// A verified caller, as the rules see it. Clones share the memos.
#[derive(Debug, Clone)]
pub struct Caller(Rc<Memo>);

#[derive(Debug)]
struct Memo {
    identity: Identity,
    /// The claims as CEL values (`jwt`, `auth`), built on first use.
    cel: OnceCell<ClaimVars>,
    /// The verdict of a rule set that reads nothing but the claims, with that rule set's
    /// [`crate::authz::RuleSet::id`]: such a verdict is the same on every request the token
    /// comes with.
    verdict: OnceCell<(u64, Verdict)>,
}

impl Caller {
    pub fn new(identity: Identity) -> Caller {
        Caller(Rc::new(Memo {
            identity,
            cel: OnceCell::new(),
            verdict: OnceCell::new(),
        }))
    }

    pub fn identity(&self) -> &Identity {
        &self.0.identity
    }

    pub fn claims(&self) -> &Map<String, Json> {
        self.0.identity.claims()
    }

    /// The CEL values of the claims (`jwt`, `auth`), built once.
    pub fn cel_values(&self) -> &ClaimVars {
        self.0.cel.get_or_init(|| ClaimVars::new(self.claims()))
    }

    /// The remembered verdict of the claims-only rule set `rules`, if there is one.
    pub fn verdict_for(&self, rules: u64) -> Option<&Verdict> {
        self.0
            .verdict
            .get()
            .filter(|(id, _)| *id == rules)
            .map(|(_, v)| v)
    }

    /// Remembers the verdict of the claims-only rule set `rules` (the first one wins).
    pub fn remember_verdict(&self, rules: u64, verdict: &Verdict) {
        let _ = self.0.verdict.set((rules, verdict.clone()));
    }
}

struct Entry {
    caller: Caller,
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
    ) -> Option<Caller> {
        let mut entries = self.entries.as_ref()?.borrow_mut();
        let entry = entries.get(token)?;
        // The same test verification makes (`now > exp + skew`, at the clock's full
        // precision): comparing whole seconds would keep a token half a second too long.
        let expired = entry
            .caller
            .identity()
            .expires_at()
            .checked_add_signed(skew)
            .is_none_or(|limit| now > limit);
        if entry.generation != generation || expired {
            entries.pop(token);
            return None;
        }
        Some(entry.caller.clone())
    }

    pub fn put(&self, token: &str, caller: Caller, generation: u64) {
        if let Some(entries) = &self.entries {
            entries
                .borrow_mut()
                .put(token.into(), Entry { caller, generation });
        }
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.borrow().len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
