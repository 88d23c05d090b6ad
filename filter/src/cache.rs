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
use crate::mcp::{ListKey, McpView};

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
    /// The verdicts on the items of the last few list answers, with the rule set that reached
    /// them ([`Caller::list_verdicts`]).
    lists: RefCell<Vec<ListVerdicts>>,
}

/// A rule set's id, a list answer and the verdict on each of its items.
type ListVerdicts = (u64, ListKey, Rc<[bool]>);

/// How many list answers' verdicts a caller keeps (most clients list one server's tools).
const LISTS_KEPT: usize = 4;

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
            lists: RefCell::new(Vec::new()),
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
        self.0.verdicts.get(self.0.serial, rules, view)
    }

    /// The remembered verdicts of the rule set `rules` on each item of `list`, for a rule set
    /// whose verdicts depend on nothing but the claims and the items' names.
    pub fn list_verdicts(&self, rules: u64, list: ListKey) -> Option<Rc<[bool]>> {
        let lists = self.0.lists.borrow();
        lists
            .iter()
            .find(|(r, l, _)| *r == rules && *l == list)
            .map(|(_, _, shown)| shown.clone())
    }

    /// Remembers such verdicts (the oldest of [`LISTS_KEPT`] goes).
    pub fn remember_list_verdicts(&self, rules: u64, list: ListKey, shown: Rc<[bool]>) {
        // A caller that remembers no verdicts on names (the token cache is off) keeps none.
        if self.0.verdicts.0.is_none() {
            return;
        }
        let mut lists = self.0.lists.borrow_mut();
        lists.retain(|(r, l, _)| !(*r == rules && *l == list));
        if lists.len() >= LISTS_KEPT {
            lists.remove(0);
        }
        lists.push((rules, list, shown));
    }

    /// Remembers the verdict of such a rule set on `view`.
    pub fn remember_verdict_on(&self, rules: u64, view: &McpView, verdict: &Verdict) {
        self.0.verdicts.put(self.0.serial, rules, view, verdict);
    }
}

/// Verdicts on named messages, shared by the callers of one cache: an LRU of fixed capacity,
/// keyed by the caller's serial, the rule set's id (eight bytes each) and the message's names
/// ([`McpView::names_key`]). Names are chosen by callers and servers, so the fast hash may be
/// led into collisions; the fixed capacity bounds what a lookup can cost then, and a hit
/// compares the whole key.
pub struct Verdicts(Option<RefCell<Kept>>);

struct Kept {
    entries: LruCache<Box<[u8]>, Verdict, Hasher>,
    /// Where a key is written to look it up: a lookup allocates nothing.
    key: Vec<u8>,
}

impl Kept {
    fn key(&mut self, serial: u64, rules: u64, view: &McpView) -> &[u8] {
        self.key.clear();
        self.key.extend_from_slice(&serial.to_le_bytes());
        self.key.extend_from_slice(&rules.to_le_bytes());
        view.names_key(&mut self.key);
        &self.key
    }
}

impl std::fmt::Debug for Verdicts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verdicts({} entries)", self.len())
    }
}

impl Verdicts {
    /// Room for `capacity` verdicts; 0 remembers none.
    pub fn new(capacity: usize) -> Verdicts {
        Verdicts(NonZeroUsize::new(capacity).map(|c| {
            RefCell::new(Kept {
                entries: LruCache::with_hasher(c, Hasher::default()),
                key: Vec::new(),
            })
        }))
    }

    fn get(&self, serial: u64, rules: u64, view: &McpView) -> Option<Verdict> {
        let mut kept = self.0.as_ref()?.borrow_mut();
        let kept = &mut *kept;
        kept.key(serial, rules, view);
        kept.entries.get(kept.key.as_slice()).cloned()
    }

    fn put(&self, serial: u64, rules: u64, view: &McpView, verdict: &Verdict) {
        if let Some(kept) = &self.0 {
            let mut kept = kept.borrow_mut();
            let key = Box::from(kept.key(serial, rules, view));
            kept.entries.put(key, verdict.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |e| e.borrow().entries.len())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(cache: &TokenCache) -> Caller {
        cache.caller(Identity::verified(Map::new(), DateTime::<Utc>::MAX_UTC))
    }

    #[test]
    fn list_verdicts_are_each_callers_own_per_rule_set_and_list() {
        let cache = TokenCache::new(16);
        let (alice, bob) = (caller(&cache), caller(&cache));
        let list = |result| ListKey {
            result,
            field: "tools",
        };
        let shown: Rc<[bool]> = vec![true, false].into();
        alice.remember_list_verdicts(7, list(1), shown.clone());
        assert_eq!(alice.list_verdicts(7, list(1)), Some(shown));
        assert_eq!(bob.list_verdicts(7, list(1)), None);
        assert_eq!(alice.list_verdicts(8, list(1)), None);
        assert_eq!(alice.list_verdicts(7, list(2)), None);
        let prompts = ListKey {
            result: 1,
            field: "prompts",
        };
        assert_eq!(alice.list_verdicts(7, prompts), None);
        // The oldest goes first; remembering again replaces.
        for result in 2..=LISTS_KEPT as u64 + 1 {
            alice.remember_list_verdicts(7, list(result), vec![true].into());
        }
        assert_eq!(alice.list_verdicts(7, list(1)), None);
        assert!(alice.list_verdicts(7, list(2)).is_some());
        alice.remember_list_verdicts(7, list(2), vec![false].into());
        assert_eq!(
            alice.list_verdicts(7, list(2)).as_deref(),
            Some(&[false][..])
        );
        // A cache that remembers no verdicts remembers no lists either.
        let off = caller(&TokenCache::new(0));
        off.remember_list_verdicts(7, list(1), vec![true].into());
        assert_eq!(off.list_verdicts(7, list(1)), None);
    }
}
