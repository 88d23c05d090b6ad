//! What the issuer remembers between requests of one login: sign-in pages waiting for a
//! password, authorization codes waiting to be exchanged, and refresh tokens. All of it is in
//! memory, like the keys: a restart logs everyone out, which is what a development issuer should
//! do. Time is passed in, so the expiry and single-use rules are tested without sleeping.
//!
//! Codes and refresh tokens issued from one login form a *family*. A code presented twice, or a
//! refresh token presented after it was rotated, is the sign of a stolen credential (OAuth 2.0
//! Security BCP, RFC 9700 §2.2.2 and §4.14.2): the issuer then revokes every refresh token of the
//! family, so neither the thief nor the victim keeps a session. Access tokens are self-contained
//! JWTs and stay valid until they expire.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;

/// How long a login page may wait for its form to come back.
const REQUEST_TTL: Duration = Duration::from_secs(600);
/// How long a spent code is remembered, so that a replay within that time is recognised as one
/// (and revokes its family) rather than answered as an unknown code.
const SPENT_CODE_MEMORY: Duration = Duration::from_secs(600);
/// Okta's default refresh-token idle lifetime: each rotation starts a new window.
pub const REFRESH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Bounds on what unauthenticated callers can make the issuer remember (opening login pages,
/// registering clients): a loop cannot grow memory without limit.
pub const MAX_PENDING: usize = 10_000;

/// A validated `/v1/authorize` request, waiting for the person to sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub client_id: String,
    /// What the login page calls the application.
    pub client_name: String,
    /// Exactly as the client sent it: the token request must repeat it byte for byte.
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub scopes: Vec<String>,
    pub audience: String,
    pub nonce: Option<String>,
    /// Whether the client may use the refresh-token grant at all.
    pub refresh_allowed: bool,
}

/// What a code stands for: a request and the person who signed in for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    pub request: AuthRequest,
    pub user: String,
    /// Seconds since the epoch, for the tokens' `auth_time`.
    pub auth_time: i64,
}

/// What a refresh token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshGrant {
    pub client_id: String,
    pub user: String,
    pub scopes: Vec<String>,
    pub audience: String,
    pub auth_time: i64,
    pub family: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("The authorization code is invalid.")]
    UnknownCode,
    #[error("The authorization code is expired.")]
    ExpiredCode,
    #[error("The authorization code was already used; the tokens issued for it are revoked.")]
    ReusedCode,
    #[error("The refresh token is invalid or expired.")]
    UnknownRefresh,
    #[error("The refresh token was already used; every token of its login is revoked.")]
    ReusedRefresh,
    #[error("The refresh token was issued to another client.")]
    RefreshClientMismatch,
    #[error("Too many sign-in requests are pending; try again later.")]
    Full,
}

struct Pending {
    request: AuthRequest,
    expires: Instant,
}

struct Code {
    grant: CodeGrant,
    expires: Instant,
    /// Set when the code is exchanged: the family its tokens belong to.
    spent: Option<u64>,
    forget_at: Instant,
}

struct Refresh {
    grant: RefreshGrant,
    expires: Instant,
}

pub struct Store {
    code_ttl: Duration,
    pending: HashMap<String, Pending>,
    codes: HashMap<String, Code>,
    refresh: HashMap<String, Refresh>,
    /// Rotated-away refresh tokens and their family, until they would have expired.
    spent_refresh: HashMap<String, (u64, Instant)>,
    next_family: u64,
}

/// 32 random bytes, base64url: unguessable and safe in URLs and form fields.
pub fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Store {
    pub fn new(code_ttl: Duration) -> Self {
        Self {
            code_ttl,
            pending: HashMap::new(),
            codes: HashMap::new(),
            refresh: HashMap::new(),
            spent_refresh: HashMap::new(),
            next_family: 0,
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.pending.retain(|_, p| p.expires > now);
        self.codes.retain(|_, c| c.forget_at > now);
        self.refresh.retain(|_, r| r.expires > now);
        self.spent_refresh.retain(|_, (_, until)| *until > now);
    }

    /// Remembers a request while its login page is shown; the id goes into the page's form.
    pub fn begin(&mut self, request: AuthRequest, now: Instant) -> Result<String, GrantError> {
        self.sweep(now);
        if self.pending.len() >= MAX_PENDING {
            return Err(GrantError::Full);
        }
        let id = random_token();
        let expires = now + REQUEST_TTL;
        self.pending
            .insert(id.clone(), Pending { request, expires });
        Ok(id)
    }

    /// The request behind a login form, still pending (a wrong password leaves it so).
    pub fn pending(&self, id: &str, now: Instant) -> Option<AuthRequest> {
        self.pending
            .get(id)
            .filter(|p| p.expires > now)
            .map(|p| p.request.clone())
    }

    /// Ends a pending request: it can be answered once, whether by a code or by an error.
    pub fn finish(&mut self, id: &str) -> Option<AuthRequest> {
        self.pending.remove(id).map(|p| p.request)
    }

    pub fn issue_code(&mut self, grant: CodeGrant, now: Instant) -> String {
        self.sweep(now);
        let code = random_token();
        let expires = now + self.code_ttl;
        let forget_at = expires.max(now + SPENT_CODE_MEMORY);
        self.codes.insert(
            code.clone(),
            Code {
                grant,
                expires,
                spent: None,
                forget_at,
            },
        );
        code
    }

    /// Spends a code: the first presentation gets its grant and a new family id, whatever the
    /// caller then decides about it (a code has one try, so a wrong verifier cannot be
    /// retried). Any later presentation revokes the family.
    pub fn redeem_code(
        &mut self,
        code: &str,
        now: Instant,
    ) -> Result<(CodeGrant, u64), GrantError> {
        self.sweep(now);
        let family = self.next_family;
        let entry = self.codes.get_mut(code).ok_or(GrantError::UnknownCode)?;
        if let Some(spent) = entry.spent {
            self.revoke_family(spent);
            return Err(GrantError::ReusedCode);
        }
        if entry.expires <= now {
            self.codes.remove(code);
            return Err(GrantError::ExpiredCode);
        }
        entry.spent = Some(family);
        self.next_family += 1;
        Ok((entry.grant.clone(), family))
    }

    pub fn issue_refresh(&mut self, grant: RefreshGrant, now: Instant) -> String {
        self.sweep(now);
        let token = random_token();
        let expires = now + REFRESH_TTL;
        self.refresh
            .insert(token.clone(), Refresh { grant, expires });
        token
    }

    /// Spends a refresh token presented by `client_id`; the caller issues its successor.
    pub fn rotate_refresh(
        &mut self,
        token: &str,
        client_id: &str,
        now: Instant,
    ) -> Result<RefreshGrant, GrantError> {
        self.sweep(now);
        if let Some((family, _)) = self.spent_refresh.get(token).copied() {
            self.revoke_family(family);
            return Err(GrantError::ReusedRefresh);
        }
        let entry = self.refresh.get(token).ok_or(GrantError::UnknownRefresh)?;
        // Another client's token is refused without spending it: presenting it proves nothing
        // about the rightful client, whose session should not end for it.
        if entry.grant.client_id != client_id {
            return Err(GrantError::RefreshClientMismatch);
        }
        let Some(entry) = self.refresh.remove(token) else {
            return Err(GrantError::UnknownRefresh);
        };
        self.spent_refresh
            .insert(token.to_owned(), (entry.grant.family, entry.expires));
        Ok(entry.grant)
    }

    /// Revokes every live refresh token of a family.
    pub fn revoke_family(&mut self, family: u64) {
        self.refresh.retain(|_, r| r.grant.family != family);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose codes live a minute, and the time it starts at.
    fn new_store() -> (Store, Instant) {
        (Store::new(Duration::from_secs(60)), Instant::now())
    }

    fn request() -> AuthRequest {
        AuthRequest {
            client_id: "app".to_owned(),
            client_name: "App".to_owned(),
            redirect_uri: "http://127.0.0.1:5000/cb".to_owned(),
            state: Some("xyz".to_owned()),
            code_challenge: "c".repeat(43),
            scopes: vec!["agentgateway".to_owned()],
            audience: "api://agentgateway".to_owned(),
            nonce: None,
            refresh_allowed: true,
        }
    }

    fn code_grant() -> CodeGrant {
        CodeGrant {
            request: request(),
            user: "alice".to_owned(),
            auth_time: 0,
        }
    }

    fn refresh_grant(family: u64) -> RefreshGrant {
        RefreshGrant {
            client_id: "app".to_owned(),
            user: "alice".to_owned(),
            scopes: vec!["offline_access".to_owned()],
            audience: "api://agentgateway".to_owned(),
            auth_time: 0,
            family,
        }
    }

    #[test]
    fn a_pending_request_survives_a_look_and_ends_once() {
        let (mut store, now) = new_store();
        let id = store.begin(request(), now).unwrap();
        assert_eq!(store.pending(&id, now), Some(request()));
        assert_eq!(store.pending(&id, now), Some(request()));
        assert_eq!(store.finish(&id), Some(request()));
        assert_eq!(store.finish(&id), None);
        let late = store.begin(request(), now).unwrap();
        assert_eq!(store.pending(&late, now + REQUEST_TTL), None);
    }

    #[test]
    fn a_code_works_once_and_not_after_its_lifetime() {
        let (mut store, now) = new_store();
        let code = store.issue_code(code_grant(), now);
        let (grant, _) = store.redeem_code(&code, now).unwrap();
        assert_eq!(grant, code_grant());
        assert_eq!(store.redeem_code(&code, now), Err(GrantError::ReusedCode));

        let late = store.issue_code(code_grant(), now);
        assert_eq!(
            store.redeem_code(&late, now + Duration::from_secs(60)),
            Err(GrantError::ExpiredCode)
        );
        assert_eq!(
            store.redeem_code("made-up", now),
            Err(GrantError::UnknownCode)
        );
    }

    #[test]
    fn a_replayed_code_revokes_the_refresh_tokens_of_its_login() {
        let (mut store, now) = new_store();
        let code = store.issue_code(code_grant(), now);
        let (_, family) = store.redeem_code(&code, now).unwrap();
        let refresh = store.issue_refresh(refresh_grant(family), now);
        let other = store.issue_refresh(refresh_grant(family + 1), now);
        assert!(store.redeem_code(&code, now).is_err());
        assert_eq!(
            store.rotate_refresh(&refresh, "app", now),
            Err(GrantError::UnknownRefresh)
        );
        assert!(store.rotate_refresh(&other, "app", now).is_ok());
    }

    #[test]
    fn refresh_tokens_rotate_and_a_replay_revokes_the_successor() {
        let (mut store, now) = new_store();
        let first = store.issue_refresh(refresh_grant(7), now);
        assert_eq!(
            store.rotate_refresh(&first, "someone-else", now),
            Err(GrantError::RefreshClientMismatch)
        );
        let grant = store.rotate_refresh(&first, "app", now).unwrap();
        let second = store.issue_refresh(grant, now);
        assert_eq!(
            store.rotate_refresh(&first, "app", now),
            Err(GrantError::ReusedRefresh)
        );
        assert_eq!(
            store.rotate_refresh(&second, "app", now),
            Err(GrantError::UnknownRefresh)
        );
    }

    #[test]
    fn refresh_tokens_expire() {
        let (mut store, now) = new_store();
        let token = store.issue_refresh(refresh_grant(1), now);
        assert_eq!(
            store.rotate_refresh(&token, "app", now + REFRESH_TTL),
            Err(GrantError::UnknownRefresh)
        );
    }
}
