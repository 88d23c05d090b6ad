//! Bearer tokens: find the one token a request carries, then verify it into an [`Identity`].
//!
//! An [`Identity`] can only be made by [`verify`], after the signature, the algorithm/key match,
//! the issuer, the audience and the clock checks all passed: code that holds one never needs
//! to ask whether the claims are trustworthy.

use std::rc::Rc;

use chrono::{DateTime, TimeDelta, Utc};
use jwt_compact::alg::{Ed25519, Rsa};
use jwt_compact::{
    Algorithm, AlgorithmExt as _, AlgorithmSignature, TimeOptions, Token, UntrustedToken,
    ValidationError,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::ec_verify::{Es256, Es384};
use crate::jwks::{Alg, KeyMaterial, KeySet};
use crate::rsa_verify::{Rs, RsHash};

/// Tokens longer than this are refused before any parsing: Okta's are around 1 KiB, and an
/// unbounded token is a cheap way to make the filter work.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a request's credentials were refused before verification started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("more than one Authorization header")]
    DuplicateAuthorization,
    #[error("access tokens are not accepted in the query string")]
    TokenInQuery,
    #[error("the Bearer token is empty")]
    EmptyToken,
    #[error("the Authorization header is not valid UTF-8")]
    NotUtf8,
}

impl RequestError {
    pub fn label(&self) -> &'static str {
        match self {
            RequestError::DuplicateAuthorization => "duplicate_authorization",
            RequestError::TokenInQuery => "token_in_query",
            RequestError::EmptyToken => "empty_token",
            RequestError::NotUtf8 => "not_utf8",
        }
    }
}

/// What a request carries, as far as bearer authentication is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No `Authorization: Bearer` header (another scheme counts as none: it is not ours).
    Missing,
    Bearer(&'a str),
    Invalid(RequestError),
}

/// Reads the bearer token from the `authorization` values and the request path. Header
/// values are bytes: a non-UTF-8 value is an error, never a panic.
pub fn extract<'a>(authorization: &[&'a [u8]], path: &[u8]) -> Credentials<'a> {
    if query_has_token(path) {
        return Credentials::Invalid(RequestError::TokenInQuery);
    }
    let value = match authorization {
        [] => return Credentials::Missing,
        [one] => *one,
        _ => return Credentials::Invalid(RequestError::DuplicateAuthorization),
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return Credentials::Invalid(RequestError::NotUtf8);
    };
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Missing;
    }
    let token = rest.trim();
    if token.is_empty() {
        Credentials::Invalid(RequestError::EmptyToken)
    } else {
        Credentials::Bearer(token)
    }
}

/// RFC 6750 §2.3 names the parameter `access_token`; refusing it keeps tokens out of logs.
fn query_has_token(path: &[u8]) -> bool {
    let Some(q) = path.iter().position(|&b| b == b'?') else {
        return false;
    };
    path.get(q + 1..)
        .unwrap_or_default()
        .split(|&b| b == b'&')
        .any(|pair| pair.split(|&b| b == b'=').next() == Some(b"access_token".as_slice()))
}

/// Why a token was refused. Each reason reaches the log, a metric label and the client's
/// `error_description` (none of them repeats the token or a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("critical header parameters are not supported")]
    CriticalHeader,
    #[error("duplicate member {0} in the token (refused rather than guessing which one counts)")]
    DuplicateMember(String),
    #[error("alg \"none\" is not allowed")]
    AlgNone,
    #[error("symmetric alg {0} is not allowed")]
    Symmetric(String),
    #[error("alg {0:?} is not supported")]
    UnsupportedAlg(String),
    #[error("no signing key with kid {0:?}")]
    UnknownKid(String),
    #[error("token has no kid and the key set has no single key without kid")]
    NoKid,
    #[error("alg {0} does not fit the signing key")]
    AlgKeyMismatch(&'static str),
    #[error("signature is invalid")]
    BadSignature,
    #[error("malformed claims: {0}")]
    MalformedClaims(String),
    #[error("token has no exp claim")]
    MissingExp,
    #[error("token is expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token was issued in the future (iat)")]
    IssuedInFuture,
    #[error("token has no iss claim")]
    MissingIssuer,
    #[error("issuer {0:?} is not trusted")]
    WrongIssuer(String),
    #[error("audience is not accepted")]
    WrongAudience,
}

impl TokenError {
    /// A stable, low-cardinality name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "too_large",
            TokenError::Malformed(_) => "malformed",
            TokenError::CriticalHeader => "crit",
            TokenError::DuplicateMember(_) => "duplicate_member",
            TokenError::AlgNone => "alg_none",
            TokenError::Symmetric(_) => "alg_symmetric",
            TokenError::UnsupportedAlg(_) => "alg_unsupported",
            TokenError::UnknownKid(_) | TokenError::NoKid => "unknown_kid",
            TokenError::AlgKeyMismatch(_) => "alg_key_mismatch",
            TokenError::BadSignature => "bad_signature",
            TokenError::MalformedClaims(_) => "malformed_claims",
            TokenError::MissingExp => "missing_exp",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::MissingIssuer | TokenError::WrongIssuer(_) => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
        }
    }

    /// Whether fetching the issuer's keys again could make this token verify.
    pub fn is_unknown_key(&self) -> bool {
        matches!(self, TokenError::UnknownKid(_) | TokenError::NoKid)
    }
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub issuer: String,
    /// `None` only when the policy explicitly wrote `audiences: []`.
    pub audiences: Option<Vec<String>>,
    pub clock_skew: TimeDelta,
}

/// A verified caller. The only constructor is [`verify`]; clones share the claims.
#[derive(Debug, Clone)]
pub struct Identity {
    claims: Rc<Map<String, Value>>,
    expires_at: DateTime<Utc>,
}

impl Identity {
    /// Every claim of the token, `exp`/`nbf`/`iat` included as Unix seconds.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The token's `exp`.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// An identity with these claims, as if a token carrying them had verified.
    #[cfg(any(test, feature = "testing"))]
    pub fn verified(claims: Map<String, Value>, expires_at: DateTime<Utc>) -> Identity {
        Identity {
            claims: Rc::new(claims),
            expires_at,
        }
    }
}

/// Header members beyond the ones jwt-compact reads.
#[derive(Debug, Clone, Deserialize)]
struct ExtraHeader {
    crit: Option<Value>,
}

/// Verifies `token` against `keys` at time `now` (the host's clock).
pub fn verify(
    token: &str,
    keys: &KeySet,
    expect: &Expectations,
    now: DateTime<Utc>,
) -> Result<Identity, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let untrusted = UntrustedToken::<ExtraHeader>::try_from(token)
        .map_err(|e| TokenError::Malformed(e.to_string()))?;
    refuse_duplicate_members(token)?;
    if untrusted.header().other_fields.crit.is_some() {
        return Err(TokenError::CriticalHeader);
    }
    let alg_name = untrusted.algorithm();
    let alg = Alg::from_name(alg_name).ok_or_else(|| classify_alg(alg_name))?;
    let kid = untrusted.header().key_id.as_deref();
    let key = keys.find(kid).ok_or_else(|| match kid {
        Some(kid) => TokenError::UnknownKid(kid.to_string()),
        None => TokenError::NoKid,
    })?;
    if !key.accepts(alg) {
        return Err(TokenError::AlgKeyMismatch(alg.name()));
    }
    let (_, claims) = check_signature(alg, &key.material, &untrusted)
        .map_err(from_validation)?
        .into_parts();

    let options = TimeOptions::new(expect.clock_skew, move || now);
    let expires_at = claims.expiration.ok_or(TokenError::MissingExp)?;
    claims
        .validate_expiration(&options)
        .map_err(from_validation)?;
    if claims.not_before.is_some() {
        claims
            .validate_maturity(&options)
            .map_err(from_validation)?;
    }
    if let Some(iat) = claims.issued_at
        && iat > now + expect.clock_skew
    {
        return Err(TokenError::IssuedInFuture);
    }

    // The claims are moved, not copied, into the identity.
    let (not_before, issued_at) = (claims.not_before, claims.issued_at);
    let mut all = claims.custom;
    match all.get("iss") {
        None => return Err(TokenError::MissingIssuer),
        Some(Value::String(iss)) if *iss == expect.issuer => {}
        Some(other) => {
            return Err(TokenError::WrongIssuer(
                other.as_str().unwrap_or("(not a string)").to_string(),
            ));
        }
    }
    if let Some(accepted) = &expect.audiences
        && !audience_matches(all.get("aud"), accepted)
    {
        return Err(TokenError::WrongAudience);
    }
    all.insert("exp".into(), Value::from(expires_at.timestamp()));
    if let Some(nbf) = not_before {
        all.insert("nbf".into(), Value::from(nbf.timestamp()));
    }
    if let Some(iat) = issued_at {
        all.insert("iat".into(), Value::from(iat.timestamp()));
    }
    Ok(Identity {
        claims: Rc::new(all),
        expires_at,
    })
}

/// serde (and so jwt-compact) keeps the last of two equal JSON members; a signer or another
/// verifier may keep the first. The header and the claims are read strictly instead.
fn refuse_duplicate_members(token: &str) -> Result<(), TokenError> {
    use base64::Engine as _;
    for segment in token.split('.').take(2) {
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment) else {
            // jwt-compact already decoded it; nothing more to learn here.
            continue;
        };
        if let Err(crate::json::JsonError::DuplicateKey(key)) = crate::json::strict(&bytes) {
            return Err(TokenError::DuplicateMember(key));
        }
    }
    Ok(())
}

fn classify_alg(name: &str) -> TokenError {
    if name.eq_ignore_ascii_case("none") {
        TokenError::AlgNone
    } else if name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) {
        TokenError::Symmetric(name.to_string())
    } else {
        TokenError::UnsupportedAlg(name.to_string())
    }
}

/// `aud` may be one string or an array of strings (RFC 7519 §4.1.3); any accepted value wins.
fn audience_matches(aud: Option<&Value>, accepted: &[String]) -> bool {
    match aud {
        Some(Value::String(one)) => accepted.iter().any(|a| a == one),
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(Value::as_str)
            .any(|one| accepted.iter().any(|a| a == one)),
        _ => false,
    }
}

type Verified = Token<Map<String, Value>, ExtraHeader>;

fn check_signature(
    alg: Alg,
    key: &KeyMaterial,
    token: &UntrustedToken<'_, ExtraHeader>,
) -> Result<Verified, ValidationError> {
    fn run<A: Algorithm>(
        algorithm: A,
        key: &A::VerifyingKey,
        token: &UntrustedToken<'_, ExtraHeader>,
    ) -> Result<Verified, ValidationError> {
        algorithm.validator(key).validate(token)
    }
    match (alg, key) {
        (Alg::Rs256, KeyMaterial::Rsa(k)) => run(Rs(RsHash::Sha256), k, token),
        (Alg::Rs384, KeyMaterial::Rsa(k)) => run(Rs(RsHash::Sha384), k, token),
        (Alg::Rs512, KeyMaterial::Rsa(k)) => run(Rs(RsHash::Sha512), k, token),
        (Alg::Ps256, KeyMaterial::Rsa(k)) => run(Rsa::ps256(), k.public(), token),
        (Alg::Ps384, KeyMaterial::Rsa(k)) => run(Rsa::ps384(), k.public(), token),
        (Alg::Ps512, KeyMaterial::Rsa(k)) => run(Rsa::ps512(), k.public(), token),
        (Alg::Es256, KeyMaterial::P256(k)) => run(Es256::default(), k, token),
        (Alg::Es384, KeyMaterial::P384(k)) => run(Es384::default(), k, token),
        (Alg::EdDsa, KeyMaterial::Ed25519(k)) => run(Ed25519, k, token),
        // `Jwk::accepts` was checked first; this arm keeps the match total without a panic.
        _ => Err(ValidationError::AlgorithmMismatch {
            expected: "a key of the token's type".into(),
            actual: alg.name().into(),
        }),
    }
}

/// Checks a raw signature over `message` with the same algorithm implementations and length
/// rules token verification uses. For test vectors (Wycheproof), which sign arbitrary bytes
/// rather than a JWS signing input.
pub fn verify_raw(alg: Alg, key: &KeyMaterial, message: &[u8], signature: &[u8]) -> bool {
    fn run<A: Algorithm>(algorithm: A, key: &A::VerifyingKey, message: &[u8], sig: &[u8]) -> bool {
        if A::Signature::LENGTH.is_some_and(|len| len.get() != sig.len()) {
            return false;
        }
        match A::Signature::try_from_slice(sig) {
            Ok(sig) => algorithm.verify_signature(&sig, key, message),
            Err(_) => false,
        }
    }
    match (alg, key) {
        (Alg::Rs256, KeyMaterial::Rsa(k)) => run(Rs(RsHash::Sha256), k, message, signature),
        (Alg::Rs384, KeyMaterial::Rsa(k)) => run(Rs(RsHash::Sha384), k, message, signature),
        (Alg::Rs512, KeyMaterial::Rsa(k)) => run(Rs(RsHash::Sha512), k, message, signature),
        (Alg::Ps256, KeyMaterial::Rsa(k)) => run(Rsa::ps256(), k.public(), message, signature),
        (Alg::Ps384, KeyMaterial::Rsa(k)) => run(Rsa::ps384(), k.public(), message, signature),
        (Alg::Ps512, KeyMaterial::Rsa(k)) => run(Rsa::ps512(), k.public(), message, signature),
        (Alg::Es256, KeyMaterial::P256(k)) => run(Es256::default(), k, message, signature),
        (Alg::Es384, KeyMaterial::P384(k)) => run(Es384::default(), k, message, signature),
        (Alg::EdDsa, KeyMaterial::Ed25519(k)) => run(Ed25519, k, message, signature),
        _ => false,
    }
}

fn from_validation(e: ValidationError) -> TokenError {
    match e {
        ValidationError::AlgorithmMismatch { actual, .. } => TokenError::UnsupportedAlg(actual),
        ValidationError::InvalidSignatureLen { .. }
        | ValidationError::MalformedSignature(_)
        | ValidationError::InvalidSignature => TokenError::BadSignature,
        ValidationError::MalformedClaims(e) => TokenError::MalformedClaims(e.to_string()),
        ValidationError::NoClaim(_) => TokenError::MissingExp,
        ValidationError::Expired => TokenError::Expired,
        ValidationError::NotMature => TokenError::NotYetValid,
        other => TokenError::MalformedClaims(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(
            extract(&[b"bEaReR abc.def.ghi"], b"/mcp"),
            Credentials::Bearer("abc.def.ghi")
        );
    }

    #[test]
    fn each_bad_request_shape_has_its_own_reason() {
        assert_eq!(
            extract(&[b"Bearer a", b"Bearer b"], b"/mcp"),
            Credentials::Invalid(RequestError::DuplicateAuthorization)
        );
        assert_eq!(
            extract(&[], b"/mcp?x=1&access_token=abc"),
            Credentials::Invalid(RequestError::TokenInQuery)
        );
        assert_eq!(
            extract(&[b"Bearer   "], b"/mcp"),
            Credentials::Invalid(RequestError::EmptyToken)
        );
        assert_eq!(
            extract(&[b"Bearer \xff\xfe"], b"/mcp"),
            Credentials::Invalid(RequestError::NotUtf8)
        );
        assert_eq!(extract(&[b"Basic dXNlcg=="], b"/mcp"), Credentials::Missing);
        assert_eq!(extract(&[], b"/mcp?access_tokens=1"), Credentials::Missing);
    }

    #[test]
    fn alg_names_outside_the_allow_list_are_classified() {
        assert_eq!(classify_alg("nOnE"), TokenError::AlgNone);
        assert_eq!(classify_alg("HS256"), TokenError::Symmetric("HS256".into()));
        assert_eq!(
            classify_alg("rs256"),
            TokenError::UnsupportedAlg("rs256".into())
        );
    }

    #[test]
    fn audience_may_be_a_string_or_an_array() {
        let ok = vec!["api://a".to_string(), "api://b".to_string()];
        assert!(audience_matches(Some(&Value::from("api://b")), &ok));
        assert!(audience_matches(
            Some(&serde_json::json!(["x", "api://a"])),
            &ok
        ));
        assert!(!audience_matches(Some(&serde_json::json!(["x"])), &ok));
        assert!(!audience_matches(None, &ok));
        assert!(!audience_matches(Some(&Value::from(1)), &ok));
    }
}
