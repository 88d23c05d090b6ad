//! The issuer's keys over time: fetched through the host, cached for the issuer's `max-age`,
//! refreshed in the background, refetched once (rate-limited) for an unknown `kid`, and shared
//! between the worker VMs of one proxy process.
//!
//! Every VM keeps a [`KeyStore`]; the truth lives in one shared-data entry per issuer and key
//! URL, changed only by compare-and-swap. Whoever wants a fetch first takes the entry's lease;
//! the others wait and pick the result up from the entry. So a 16-worker Envoy asks the issuer
//! once per refresh, and a failed fetch never replaces good keys.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use serde::{Deserialize, Serialize};

use crate::host::{DispatchError, Host, SharedWrite};
use crate::jwks::{self, KeySet};
use crate::location::{Location, LocationError};
use crate::metric;
use crate::policy::RemoteJwks;

/// A key set larger than this is refused: real ones are a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Cache lifetime when the issuer sends no `Cache-Control: max-age` (then clamped).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// The first retry after a failure; it doubles up to `minRefresh`.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The keys a request may be verified with, as this VM knows them now.
#[derive(Debug, Clone, Copy)]
pub enum KeyState<'a> {
    /// Keys are loaded; `may_refetch` says whether an unknown `kid` may ask the issuer again.
    Ready { set: &'a KeySet, may_refetch: bool },
    /// No keys yet: a fetch must happen first.
    Missing,
    /// The issuer's keys could not be had, for this reason.
    Failed(&'a FetchError),
}

/// Why the issuer's keys could not be had. It is kept in the shared entry, so every VM of the
/// process answers with the reason the fetch that failed found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FetchError {
    #[error("the call to cluster {cluster:?} failed: {error}")]
    Dispatch {
        cluster: String,
        error: DispatchError,
    },
    #[error("no response (connection failed, reset or timed out)")]
    NoResponse,
    #[error("the response of {0} bytes is over the {MAX_JWKS_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("the OpenID configuration is not JSON: {0}")]
    DiscoveryNotJson(String),
    #[error("the OpenID configuration has no jwks_uri")]
    NoJwksUri,
    #[error("the discovered jwks_uri {uri:?} {error}")]
    BadJwksUri { uri: String, error: LocationError },
    #[error("the issuer's key set was refused: {0}")]
    KeySet(String),
    /// This VM's call got no answer before its deadline.
    #[error("the issuer did not answer in time")]
    Timeout,
    /// A request waited past the fetch timeout for another VM's fetch.
    #[error("no answer in time")]
    Waited,
    #[error("the key cache could not be encoded")]
    Encode,
    /// A policy with remote keys but no store for them (a bug, refused rather than trusted).
    #[error("no key source")]
    NoKeySource,
}

/// The shared-data entry (JSON). Times are the host clock's, written as Unix milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
struct Entry {
    /// Bumped on every successful fetch.
    generation: u64,
    /// The last good key set, as the issuer sent it.
    jwks: Option<String>,
    /// From discovery: where the keys are.
    jwks_uri: Option<String>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    refresh_at: DateTime<Utc>,
    error: Option<FetchError>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    error_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    retry_at: DateTime<Utc>,
    backoff_ms: u64,
    /// When a fetch was last made for an unknown `kid`.
    #[serde(with = "chrono::serde::ts_milliseconds_option")]
    refetch_at: Option<DateTime<Utc>>,
    lease_owner: u32,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    lease_until: DateTime<Utc>,
}

impl Entry {
    /// Ends the lease if `me` holds it (a fetch that ended, either way).
    fn release(&mut self, me: u32) {
        if self.lease_owner == me {
            self.lease_until = DateTime::UNIX_EPOCH;
        }
    }
}

/// The answer to a fetch this VM made, as the adapter read it.
#[derive(Debug, Clone, Default)]
pub struct FetchResponse {
    /// `None` when the call failed without a response (reset, timeout, no cluster).
    pub status: Option<u16>,
    pub cache_control: Option<String>,
    pub body: Vec<u8>,
    /// The body's full size, which may be larger than what was read.
    pub body_size: usize,
}

/// Why a fetch was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No keys yet, or a refresh is due.
    Load,
    /// A token names a `kid` the current keys lack.
    UnknownKid,
}

/// What asking for a fetch led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// A fetch is under way, here or in another VM: wait for it.
    Waiting,
    /// Newer keys were already there: decide again.
    Updated,
    /// An unknown `kid` asked too soon after the last refetch.
    RateLimited,
    /// No fetch can happen now; requests needing keys get this reason.
    Unavailable(FetchError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Discovery,
    Keys,
}

#[derive(Debug, Clone, Copy)]
struct Call {
    token: u32,
    phase: Phase,
    deadline: DateTime<Utc>,
}

/// One VM's view of one remote key set.
#[derive(Debug)]
pub struct KeyStore {
    config: RemoteJwks,
    shared_key: String,
    me: u32,
    generation: u64,
    keys: Option<KeySet>,
    seen: Entry,
    call: Option<Call>,
    /// A fetch this VM claimed from a request: the root dispatches it on its next tick, so the
    /// call belongs to the root and its answer is kept even when that request is long gone.
    deferred: bool,
}

/// Gives each VM of the process a distinct number (for the lease), through shared data.
pub fn vm_number(host: &dyn Host) -> u32 {
    const KEY: &str = "mcp-auth/vm-sequence";
    if host.shared_get(KEY).is_none_or(|(_, cas)| cas == 0) {
        // See `KeyStore::seed`: create the counter, then only ever change it by CAS.
        host.shared_set(KEY, b"0", 0);
    }
    for _ in 0..32 {
        let (current, cas) = host
            .shared_get(KEY)
            .map(|(v, cas)| {
                let n = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok());
                (n.unwrap_or(0), cas)
            })
            .unwrap_or((0, 0));
        let next = current.wrapping_add(1).max(1);
        if cas != 0
            && host.shared_set(KEY, next.to_string().as_bytes(), cas) == SharedWrite::Written
        {
            return next;
        }
    }
    // Contention that never settles: a number from the clock is still very likely unique.
    host.now().timestamp_subsec_nanos() | 1
}

/// The shared-data key of one issuer's remote keys: namespaced by issuer and URL.
pub fn cache_key(issuer: &str, config: &RemoteJwks) -> String {
    format!("mcp-auth/jwks/{issuer}/{}", config.location.url)
}

impl KeyStore {
    pub fn new(config: RemoteJwks, issuer: &str, me: u32) -> KeyStore {
        let shared_key = cache_key(issuer, &config);
        KeyStore {
            config,
            shared_key,
            me,
            generation: 0,
            keys: None,
            seen: Entry::default(),
            call: None,
            deferred: false,
        }
    }

    pub fn config(&self) -> &RemoteJwks {
        &self.config
    }

    /// The keys as a request may use them now. Reads only this VM's copy: the shared entry
    /// is read on ticks and fetch answers, not on the request path. An unknown `kid` may
    /// always ask: [`KeyStore::fetch`] reads the shared entry, so it finds keys another VM
    /// fetched meanwhile (this VM's copy may be a tick behind) and applies the rate limit on
    /// the process-wide record, not on this VM's possibly stale one.
    pub fn state(&self, now: DateTime<Utc>) -> KeyState<'_> {
        match &self.keys {
            Some(set) => KeyState::Ready {
                set,
                may_refetch: true,
            },
            None => match &self.seen.error {
                Some(error) if now < self.seen.retry_at && !self.lease_held(now) => {
                    KeyState::Failed(error)
                }
                _ => KeyState::Missing,
            },
        }
    }

    /// The failure recorded at or after `since`, for requests that waited through it.
    pub fn failure_since(&self, since: DateTime<Utc>) -> Option<&FetchError> {
        match &self.seen.error {
            Some(error) if self.seen.error_at >= since => Some(error),
            _ => None,
        }
    }

    /// Whether a request that began waiting for keys at `since` has waited past the fetch
    /// timeout and a grace second (another VM's fetch never answered).
    pub fn waited_too_long(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now > later(since, lease_length(&self.config))
    }

    /// Whether this VM's own call is still unanswered.
    pub fn fetching(&self) -> bool {
        self.call.is_some()
    }

    fn lease_held(&self, now: DateTime<Utc>) -> bool {
        self.seen.lease_until > now
    }

    /// Makes sure a fetch happens: starts one, or finds another VM's under way.
    pub fn fetch(&mut self, host: &dyn Host, reason: Reason) -> Fetch {
        self.claim(host, reason, false)
    }

    /// [`KeyStore::fetch`] for a request's callback: the fetch is claimed now (lease, rate
    /// limit) and dispatched by the root's next tick ([`KeyStore::on_tick`]). A call made from
    /// a request would be the request's own: the proxy drops its answer when the request ends,
    /// and a client closing at once would waste the rate-limited refetch.
    pub fn ask(&mut self, host: &dyn Host, reason: Reason) -> Fetch {
        self.claim(host, reason, true)
    }

    /// Whether a fetch is under way for this key set: this VM's call, one it claimed for the
    /// next tick, or another VM's lease. Requests that waited keep waiting meanwhile instead of
    /// being judged against the keys the fetch is about to replace.
    pub fn busy(&self, now: DateTime<Utc>) -> bool {
        self.call.is_some() || self.deferred || self.lease_held(now)
    }

    /// Whether a claimed fetch waits for the root's tick.
    pub fn deferred(&self) -> bool {
        self.deferred
    }

    fn claim(&mut self, host: &dyn Host, reason: Reason, defer: bool) -> Fetch {
        if self.deferred {
            return Fetch::Waiting;
        }
        let generation = self.generation;
        let result = self.update(host, |entry, me, config, now| {
            if entry.generation != generation {
                return Plan::Stop(Fetch::Updated);
            }
            if entry.lease_until > now {
                // Another VM's fetch (or this VM's own) is under way.
                return Plan::Stop(Fetch::Waiting);
            }
            match reason {
                Reason::UnknownKid => {
                    if entry
                        .refetch_at
                        .is_some_and(|at| now < later(at, config.min_refresh))
                    {
                        return Plan::Stop(Fetch::RateLimited);
                    }
                    entry.refetch_at = Some(now);
                }
                Reason::Load => {
                    if let Some(error) = &entry.error
                        && now < entry.retry_at
                    {
                        return Plan::Stop(Fetch::Unavailable(error.clone()));
                    }
                }
            }
            entry.lease_owner = me;
            entry.lease_until = later(now, lease_length(config));
            Plan::Write
        });
        match result {
            Some(stop) => stop,
            None => {
                if reason == Reason::UnknownKid {
                    host.count(metric::JWKS_REFETCH_UNKNOWN_KID, 1);
                }
                if defer {
                    self.deferred = true;
                    return Fetch::Waiting;
                }
                self.start_call(host)
            }
        }
    }

    /// Dispatches the first call of a fetch (discovery, unless its answer is known).
    fn start_call(&mut self, host: &dyn Host) -> Fetch {
        let (phase, location) = match (&self.config.discovery, &self.seen.jwks_uri) {
            (true, Some(uri)) => match self.keys_location(uri) {
                Ok(location) => (Phase::Keys, location),
                Err(e) => return self.fail(host, e),
            },
            (true, None) => (Phase::Discovery, self.config.location.clone()),
            (false, _) => (Phase::Keys, self.config.location.clone()),
        };
        self.dispatch(host, phase, &location)
    }

    fn dispatch(&mut self, host: &dyn Host, phase: Phase, location: &Location) -> Fetch {
        match host.dispatch_get(location, self.config.timeout) {
            Ok(token) => {
                let deadline = later(host.now(), lease_length(&self.config));
                self.call = Some(Call {
                    token,
                    phase,
                    deadline,
                });
                Fetch::Waiting
            }
            Err(error) => self.fail(
                host,
                FetchError::Dispatch {
                    cluster: location.cluster.clone(),
                    error,
                },
            ),
        }
    }

    /// Handles the answer to one of this VM's calls. Returns whether `token` was ours; the
    /// caller then decides again about the requests that waited.
    pub fn on_response(&mut self, host: &dyn Host, token: u32, response: FetchResponse) -> bool {
        let Some(call) = self.call.filter(|c| c.token == token) else {
            return false;
        };
        self.call = None;
        let body = match check(&response) {
            Ok(body) => body,
            Err(e) => {
                self.fail(host, e);
                return true;
            }
        };
        match call.phase {
            Phase::Discovery => match discovered_jwks_uri(body) {
                Ok(uri) => match self.keys_location(&uri) {
                    Ok(location) => {
                        self.update(host, |entry, _, _, _| {
                            entry.jwks_uri = Some(uri.clone());
                            Plan::Write
                        });
                        self.dispatch(host, Phase::Keys, &location);
                    }
                    Err(e) => {
                        self.fail(host, e);
                    }
                },
                Err(e) => {
                    self.fail(host, e);
                }
            },
            Phase::Keys => match jwks::parse_jwks(body) {
                Ok(set) => self.succeed(host, body, set, response.cache_control.as_deref()),
                Err(e) => {
                    self.fail(host, FetchError::KeySet(e.to_string()));
                }
            },
        }
        true
    }

    /// Background work: picks up what other VMs fetched, starts a due refresh or retry, and
    /// gives up on a call the host never answered. Returns whether waiting requests should
    /// be decided again.
    pub fn on_tick(&mut self, host: &dyn Host) -> bool {
        let now = host.now();
        let before = (self.generation, self.seen.error_at);
        if self.deferred {
            self.deferred = false;
            if let Fetch::Unavailable(_) = self.start_call(host) {
                return true;
            }
        }
        if let Some((entry, _)) = self.read(host) {
            self.absorb(entry);
        }
        if let Some(call) = self.call
            && now > call.deadline
        {
            self.call = None;
            self.fail(host, FetchError::Timeout);
        }
        let due = match &self.keys {
            Some(_) => now >= self.seen.refresh_at,
            None => now >= self.seen.retry_at,
        };
        if due && self.call.is_none() && !self.lease_held(now) {
            self.fetch(host, Reason::Load);
        }
        (self.generation, self.seen.error_at) != before
    }

    fn succeed(&mut self, host: &dyn Host, body: &[u8], set: KeySet, cache_control: Option<&str>) {
        for skipped in &set.skipped {
            log::warn!("mcp-auth: JWKS key skipped: {skipped}");
        }
        let lifetime = lifetime(cache_control, &self.config);
        let text = String::from_utf8_lossy(body).into_owned();
        let keys = set.keys.len();
        self.finish(host, metric::JWKS_FETCH_OK, |entry, now| {
            entry.generation = entry.generation.wrapping_add(1);
            entry.jwks = Some(text.clone());
            entry.refresh_at = later(now, lifetime);
            entry.error = None;
            entry.backoff_ms = 0;
            entry.retry_at = DateTime::UNIX_EPOCH;
        });
        log::info!(
            "mcp-auth: fetched {keys} signing key(s) from {} (generation {}, next refresh in {}s)",
            self.config.location.url,
            self.generation,
            lifetime.as_secs()
        );
    }

    /// Records a failed fetch: the last good keys stay, and a retry waits out the backoff.
    fn fail(&mut self, host: &dyn Host, error: FetchError) -> Fetch {
        self.call = None;
        let cap = self.config.min_refresh.max(FIRST_BACKOFF);
        self.finish(host, metric::JWKS_FETCH_FAILED, |entry, now| {
            let backoff = Duration::from_millis(entry.backoff_ms)
                .saturating_mul(2)
                .clamp(FIRST_BACKOFF, cap);
            entry.backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
            entry.error = Some(error.clone());
            entry.error_at = now;
            entry.retry_at = later(now, backoff);
        });
        log::warn!(
            "mcp-auth: fetching keys from {} failed: {error}{}",
            self.config.location.url,
            if self.keys.is_some() {
                " (the last good keys stay in use)"
            } else {
                ""
            }
        );
        Fetch::Unavailable(error)
    }

    /// Ends this VM's fetch, either way: writes its `outcome` into the shared entry, gives up
    /// the lease, and counts it under `counter`.
    fn finish(
        &mut self,
        host: &dyn Host,
        counter: &str,
        mut outcome: impl FnMut(&mut Entry, DateTime<Utc>),
    ) {
        self.update(host, |entry, me, _, now| {
            outcome(entry, now);
            entry.release(me);
            Plan::Write
        });
        host.count(counter, 1);
    }

    /// The keys' location from discovery: through the discovery cluster when the host is the
    /// same, else through the cluster named after the keys' host.
    fn keys_location(&self, uri: &str) -> Result<Location, FetchError> {
        let mut location = Location::parse(uri, None).map_err(|error| FetchError::BadJwksUri {
            uri: uri.to_string(),
            error,
        })?;
        if location.authority == self.config.location.authority {
            location.cluster = self.config.location.cluster.clone();
        }
        Ok(location)
    }

    /// Creates the shared entry if it does not exist yet. Proxy-wasm has no create-if-absent:
    /// a CAS of 0 writes unconditionally, so two VMs that both found no entry would both
    /// "win" a lease written that way. Every VM seeds the same empty entry when it loads its
    /// configuration, and leases are only ever taken by CAS on an existing entry. Returns
    /// whether it wrote.
    pub fn seed(&self, host: &dyn Host) -> bool {
        if host
            .shared_get(&self.shared_key)
            .is_some_and(|(_, cas)| cas != 0)
        {
            return false;
        }
        let Ok(empty) = serde_json::to_vec(&Entry::default()) else {
            return false;
        };
        host.shared_set(&self.shared_key, &empty, 0) == SharedWrite::Written
    }

    fn read(&self, host: &dyn Host) -> Option<(Entry, u32)> {
        let (bytes, cas) = host.shared_get(&self.shared_key)?;
        if bytes.is_empty() {
            return Some((Entry::default(), cas));
        }
        match serde_json::from_slice(&bytes) {
            Ok(entry) => Some((entry, cas)),
            Err(_) => Some((Entry::default(), cas)),
        }
    }

    /// Takes a newer shared entry into this VM's copy; parses keys only when they changed.
    fn absorb(&mut self, entry: Entry) {
        if entry.generation != self.generation
            && let Some(text) = &entry.jwks
        {
            match jwks::parse_jwks(text.as_bytes()) {
                Ok(mut set) => {
                    set.generation = entry.generation;
                    self.keys = Some(set);
                    self.generation = entry.generation;
                }
                Err(e) => log::warn!("mcp-auth: shared key set unreadable: {e}"),
            }
        }
        self.seen = entry;
    }

    /// Read, change, compare-and-swap, until the write lands; then take the entry in.
    /// `change` returns [`Plan::Stop`] to leave the entry as it is. Returns the stop value.
    fn update<F>(&mut self, host: &dyn Host, mut change: F) -> Option<Fetch>
    where
        F: FnMut(&mut Entry, u32, &RemoteJwks, DateTime<Utc>) -> Plan,
    {
        for _ in 0..16 {
            let now = host.now();
            let (mut entry, cas) = self.read(host).unwrap_or_default();
            if cas == 0 && self.seed(host) {
                // Created just now: compete for it with a real CAS like everyone else.
                continue;
            }
            self.absorb(entry.clone());
            match change(&mut entry, self.me, &self.config, now) {
                Plan::Stop(result) => return Some(result),
                Plan::Write => {}
            }
            let Ok(bytes) = serde_json::to_vec(&entry) else {
                return Some(Fetch::Unavailable(FetchError::Encode));
            };
            match host.shared_set(&self.shared_key, &bytes, cas) {
                SharedWrite::Written => {
                    self.absorb(entry);
                    return None;
                }
                SharedWrite::CasMismatch => continue,
                SharedWrite::Failed => {
                    // No shared data (a host without it): keep the state in this VM alone.
                    self.absorb(entry);
                    return None;
                }
            }
        }
        Some(Fetch::Waiting)
    }
}

enum Plan {
    Write,
    Stop(Fetch),
}

/// `t` plus `d`, or the end of time.
fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// How long a fetch may hold the lease: the call's timeout and a little more.
fn lease_length(config: &RemoteJwks) -> Duration {
    config.timeout.saturating_add(Duration::from_secs(1))
}

fn check(response: &FetchResponse) -> Result<&[u8], FetchError> {
    match response.status {
        None => Err(FetchError::NoResponse),
        Some(200) if response.body_size > MAX_JWKS_BYTES => {
            Err(FetchError::TooLarge(response.body_size))
        }
        Some(200) => Ok(&response.body),
        Some(status) => Err(FetchError::Status(status)),
    }
}

fn discovered_jwks_uri(body: &[u8]) -> Result<String, FetchError> {
    #[derive(Deserialize)]
    struct Discovery {
        jwks_uri: Option<String>,
    }
    let doc: Discovery =
        serde_json::from_slice(body).map_err(|e| FetchError::DiscoveryNotJson(e.to_string()))?;
    doc.jwks_uri
        .filter(|u| !u.is_empty())
        .ok_or(FetchError::NoJwksUri)
}

/// `max-age` from the issuer's `Cache-Control`, clamped to `[minRefresh, maxRefresh]`.
fn lifetime(cache_control: Option<&str>, config: &RemoteJwks) -> Duration {
    let max_age = cache_control.and_then(|value| {
        value.split(',').find_map(|directive| {
            let (name, v) = directive.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| v.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
    });
    let age = max_age.map_or(DEFAULT_MAX_AGE, Duration::from_secs);
    age.clamp(config.min_refresh, config.max_refresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeHost, rsa_jwks};

    fn config(discovery: bool) -> RemoteJwks {
        let url = if discovery {
            "https://idp.example/.well-known/openid-configuration"
        } else {
            "https://idp.example/v1/keys"
        };
        RemoteJwks {
            location: Location::parse(url, None).unwrap(),
            discovery,
            timeout: Duration::from_secs(5),
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(3600),
        }
    }

    /// The `index`th call the host saw is answered with a key set of one key, `kid`.
    fn keys_arrive(host: &FakeHost, store: &mut KeyStore, index: usize, kid: &str) {
        let token = host.calls()[index].0;
        assert!(store.on_response(host, token, ok(&rsa_jwks(kid), "max-age=3600")));
    }

    fn may_refetch(state: KeyState<'_>) -> bool {
        matches!(
            state,
            KeyState::Ready {
                may_refetch: true,
                ..
            }
        )
    }

    fn ok(body: &str, cache_control: &str) -> FetchResponse {
        FetchResponse {
            status: Some(200),
            cache_control: Some(cache_control.into()),
            body: body.as_bytes().to_vec(),
            body_size: body.len(),
        }
    }

    #[test]
    fn two_vms_share_one_fetch() {
        let host = FakeHost::new();
        let mut a = KeyStore::new(config(false), "iss", 1);
        let mut b = KeyStore::new(config(false), "iss", 2);
        assert_eq!(a.fetch(&host, Reason::Load), Fetch::Waiting);
        assert_eq!(b.fetch(&host, Reason::Load), Fetch::Waiting);
        assert_eq!(
            host.calls().len(),
            1,
            "the second VM waits on the first one's lease"
        );
        let token = host.calls()[0].0;
        assert!(a.on_response(&host, token, ok(&rsa_jwks("k1"), "max-age=300")));
        assert!(matches!(a.state(host.now()), KeyState::Ready { .. }));
        assert!(matches!(b.state(host.now()), KeyState::Missing));
        assert!(b.on_tick(&host), "b picks the keys up from shared data");
        assert!(matches!(b.state(host.now()), KeyState::Ready { .. }));
        assert_eq!(host.calls().len(), 1);
    }

    #[test]
    fn an_unknown_kid_finds_keys_another_vm_fetched_before_this_vm_ticked() {
        // The race a rotation under load showed: VM a refetched for the new kid; VM b, a tick
        // behind, must pick the new keys up instead of refusing under the rate limit.
        let host = FakeHost::new();
        let mut a = KeyStore::new(config(false), "iss", 1);
        let mut b = KeyStore::new(config(false), "iss", 2);
        a.fetch(&host, Reason::Load);
        keys_arrive(&host, &mut a, 0, "k1");
        assert_eq!(a.fetch(&host, Reason::UnknownKid), Fetch::Waiting);
        // b ticks while a's refetch is under way: it sees the refetch time, not the new keys.
        b.on_tick(&host);
        keys_arrive(&host, &mut a, 1, "k2");
        assert!(may_refetch(b.state(host.now())));
        assert_eq!(b.fetch(&host, Reason::UnknownKid), Fetch::Updated);
        match b.state(host.now()) {
            KeyState::Ready { set, .. } => assert!(set.find(Some("k2")).is_some()),
            other => panic!("{other:?}"),
        }
        assert_eq!(host.calls().len(), 2, "no third fetch");
    }

    #[test]
    fn refresh_follows_max_age_clamped_and_happens_in_the_background() {
        let host = FakeHost::new();
        let mut a = KeyStore::new(config(false), "iss", 1);
        a.fetch(&host, Reason::Load);
        a.on_response(
            &host,
            host.calls()[0].0,
            ok(&rsa_jwks("k1"), "public, max-age=5"),
        );
        // max-age 5 s is clamped up to minRefresh (60 s).
        host.advance(Duration::from_secs(59));
        a.on_tick(&host);
        assert_eq!(host.calls().len(), 1);
        host.advance(Duration::from_secs(1));
        a.on_tick(&host);
        assert_eq!(host.calls().len(), 2, "refresh started at 60 s");
        assert!(
            matches!(a.state(host.now()), KeyState::Ready { .. }),
            "old keys still serve"
        );
    }

    #[test]
    fn a_failed_refresh_keeps_good_keys_and_backs_off() {
        let host = FakeHost::new();
        let mut a = KeyStore::new(config(false), "iss", 1);
        a.fetch(&host, Reason::Load);
        a.on_response(&host, host.calls()[0].0, ok(&rsa_jwks("k1"), "max-age=60"));
        host.advance(Duration::from_secs(60));
        a.on_tick(&host);
        let refresh = host.calls()[1].0;
        a.on_response(
            &host,
            refresh,
            FetchResponse {
                status: Some(500),
                ..Default::default()
            },
        );
        assert!(matches!(a.state(host.now()), KeyState::Ready { .. }));
        // A 200 that is not a key set does not replace them either.
        host.advance(Duration::from_secs(2));
        a.on_tick(&host);
        let retry = host.calls()[2].0;
        a.on_response(&host, retry, ok("<html>", "max-age=60"));
        match a.state(host.now()) {
            KeyState::Ready { set, .. } => assert!(set.find(Some("k1")).is_some()),
            other => panic!("{other:?}"),
        }
        // The backoff doubled: 1 s after the first failure, 2 s after this one.
        host.advance(Duration::from_secs(1));
        a.on_tick(&host);
        assert_eq!(host.calls().len(), 3, "still backing off");
        host.advance(Duration::from_secs(1));
        a.on_tick(&host);
        assert_eq!(host.calls().len(), 4);
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let host = FakeHost::new();
        let mut a = KeyStore::new(config(false), "iss", 1);
        a.fetch(&host, Reason::Load);
        keys_arrive(&host, &mut a, 0, "k1");
        assert!(may_refetch(a.state(host.now())));
        assert_eq!(a.fetch(&host, Reason::UnknownKid), Fetch::Waiting);
        keys_arrive(&host, &mut a, 1, "k2");
        assert_eq!(a.fetch(&host, Reason::UnknownKid), Fetch::RateLimited);
        host.advance(Duration::from_secs(60));
        assert_eq!(a.fetch(&host, Reason::UnknownKid), Fetch::Waiting);
    }

    #[test]
    fn first_fetch_failing_makes_requests_unavailable_until_the_retry() {
        let host = FakeHost::new();
        let mut a = KeyStore::new(config(false), "iss", 1);
        let since = host.now();
        a.fetch(&host, Reason::Load);
        a.on_response(&host, host.calls()[0].0, FetchResponse::default());
        assert!(matches!(a.state(host.now()), KeyState::Failed(_)));
        assert_eq!(a.failure_since(since), Some(&FetchError::NoResponse));
        assert!(matches!(
            a.fetch(&host, Reason::Load),
            Fetch::Unavailable(_)
        ));
        host.advance(Duration::from_secs(1));
        assert!(matches!(a.state(host.now()), KeyState::Missing));
    }

    #[test]
    fn discovery_then_keys() {
        let host = FakeHost::new();
        let mut a = KeyStore::new(config(true), "iss", 1);
        a.fetch(&host, Reason::Load);
        assert_eq!(host.calls()[0].1.path, "/.well-known/openid-configuration");
        a.on_response(
            &host,
            host.calls()[0].0,
            ok(r#"{"jwks_uri":"https://idp.example/oauth2/v1/keys"}"#, ""),
        );
        assert_eq!(host.calls()[1].1.path, "/oauth2/v1/keys");
        assert_eq!(host.calls()[1].1.cluster, "idp.example");
        a.on_response(&host, host.calls()[1].0, ok(&rsa_jwks("k1"), "max-age=60"));
        assert!(matches!(a.state(host.now()), KeyState::Ready { .. }));
    }

    #[test]
    fn an_unanswered_call_times_out() {
        let host = FakeHost::new();
        let mut a = KeyStore::new(config(false), "iss", 1);
        a.fetch(&host, Reason::Load);
        host.advance(Duration::from_secs(7));
        assert!(a.on_tick(&host));
        assert!(matches!(
            a.state(host.now()),
            KeyState::Failed(FetchError::Timeout)
        ));
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let response = FetchResponse {
            status: Some(200),
            body_size: MAX_JWKS_BYTES + 1,
            ..Default::default()
        };
        assert!(matches!(check(&response), Err(FetchError::TooLarge(_))));
    }

    #[test]
    fn cache_control_parsing() {
        let c = config(false);
        assert_eq!(
            lifetime(Some("max-age=300, must-revalidate"), &c),
            Duration::from_secs(300)
        );
        assert_eq!(lifetime(Some("no-store"), &c), DEFAULT_MAX_AGE);
        assert_eq!(
            lifetime(Some("max-age=999999"), &c),
            Duration::from_secs(3600)
        );
        assert_eq!(lifetime(None, &c), DEFAULT_MAX_AGE);
    }
}
