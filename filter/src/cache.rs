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
//! claims, any CEL at all. Where the rules read of an MCP message only its method and names,
//! their verdict on a message is remembered too, per caller and name ([`Verdicts`]): a client
//! that lists its tools again, or calls the same tool, costs a lookup per item instead of the
//! rules. The cache is per VM and mutable, so it lives beside the compiled policy (in the
//! lifecycle's state), never inside it.

use std::cell::{OnceCell, RefCell};
use std::num::NonZeroUsize;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use lru::LruCache;
use serde_json::{Map, Value as Json};

use crate::authz::{ClaimVars, Verdict};
use crate::jwt::Identity;
use crate::mcp::McpView;

/// How many verdicts on named messages a policy's cache keeps, over all its callers. An entry
/// is a key of a few dozen bytes and a verdict; the whole stays well under a megabyte.
pub const VERDICTS_KEPT: usize = 2048;

/// Tells every caller made in this VM from every other (never 0).
static NEXT_CALLER: AtomicU64 = AtomicU64::new(1);

/// A verified caller, as the rules see it. Clones share the memos.
#[derive(Debug, Clone)]
pub struct Caller(Rc<Memo>);

#[derive(Debug)]
struct Memo {
    identity: Identity,
    /// This caller's part of the keys in `verdicts`.
    serial: u64,
    verdicts: Rc<Verdicts>,
    /// The claims as CEL values (`jwt`, `auth`), built on first use.
    cel: OnceCell<ClaimVars>,
    /// The identity header's value, made on first use.
    header: OnceCell<String>,
    /// The verdict of a rule set that reads nothing but the claims, with that rule set's
    /// [`crate::authz::RuleSet::id`]: such a verdict is the same on every request the token
    /// comes with.
    verdict: OnceCell<(u64, Verdict)>,
}

impl Caller {
    /// A caller whose verdicts on named messages are not remembered.
    pub fn new(identity: Identity) -> Caller {
        Caller::remembering(identity, Rc::new(Verdicts::new(0)))
    }

    fn remembering(identity: Identity, verdicts: Rc<Verdicts>) -> Caller {
        Caller(Rc::new(Memo {
            identity,
            serial: NEXT_CALLER.fetch_add(1, Ordering::Relaxed),
            verdicts,
            cel: OnceCell::new(),
            header: OnceCell::new(),
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

    /// The value of the header that hands this identity on, made by `make` once.
    pub fn header_value(&self, make: impl FnOnce(&Caller) -> String) -> &str {
        self.0.header.get_or_init(|| make(self))
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

    /// The remembered verdict of the rule set `rules` on the message `view`, for a rule set
    /// whose verdict depends on nothing but the claims and the message's names
    /// ([`crate::authz::RuleSet::names_decide`]).
    pub fn verdict_on(&self, rules: u64, view: &McpView) -> Option<Verdict> {
        self.0.verdicts.get(&self.key(rules, view))
    }

    /// Remembers the verdict of such a rule set on `view`.
    pub fn remember_verdict_on(&self, rules: u64, view: &McpView, verdict: &Verdict) {
        self.0.verdicts.put(self.key(rules, view), verdict);
    }

    fn key(&self, rules: u64, view: &McpView) -> VerdictKey {
        let mut names = String::with_capacity(64);
        view.names_key(&mut names);
        (self.0.serial, rules, names)
    }
}

/// A caller's serial, a rule set's id and a message's names.
type VerdictKey = (u64, u64, String);

/// Verdicts on named messages, shared by the callers of one cache: an LRU of fixed capacity,
/// keyed by the caller, the rule set and the message's names. Names are chosen by callers and
/// servers, so the fast hash may be led into collisions; the fixed capacity bounds what a
/// lookup can cost then, and a hit compares the whole key.
pub struct Verdicts(Option<RefCell<LruCache<VerdictKey, Verdict, Hasher>>>);

impl std::fmt::Debug for Verdicts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.0.as_ref().map_or(0, |e| e.borrow().len());
        write!(f, "Verdicts({len} entries)")
    }
}

impl Verdicts {
    /// Room for `capacity` verdicts; 0 remembers none.
    pub fn new(capacity: usize) -> Verdicts {
        Verdicts(
            NonZeroUsize::new(capacity)
                .map(|c| RefCell::new(LruCache::with_hasher(c, Hasher::default()))),
        )
    }

    fn get(&self, key: &VerdictKey) -> Option<Verdict> {
        self.0.as_ref()?.borrow_mut().get(key).cloned()
    }

    fn put(&self, key: VerdictKey, verdict: &Verdict) {
        if let Some(entries) = &self.0 {
            entries.borrow_mut().put(key, verdict.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |e| e.borrow().len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Entry {
    caller: Caller,
    generation: u64,
}

type Hasher = foldhash::fast::FixedState;

pub struct TokenCache {
    entries: Option<RefCell<LruCache<Box<str>, Entry, Hasher>>>,
    verdicts: Rc<Verdicts>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.entries.as_ref().map_or(0, |e| e.borrow().len());
        write!(f, "TokenCache({len} entries)")
    }
}

impl TokenCache {
    /// A cache of `capacity` tokens; 0 turns caching off, verdicts on named messages with it.
    pub fn new(capacity: usize) -> TokenCache {
        let verdicts = match capacity {
            0 => 0,
            _ => VERDICTS_KEPT,
        };
        TokenCache {
            entries: NonZeroUsize::new(capacity)
                .map(|c| RefCell::new(LruCache::with_hasher(c, Hasher::default()))),
            verdicts: Rc::new(Verdicts::new(verdicts)),
        }
    }

    /// A newly verified caller, whose verdicts on named messages this cache remembers.
    pub fn caller(&self, identity: Identity) -> Caller {
        Caller::remembering(identity, self.verdicts.clone())
    }

    /// The verdicts on named messages this cache remembers.
    pub fn verdicts(&self) -> &Verdicts {
        &self.verdicts
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
