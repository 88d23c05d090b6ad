//! JSON Web Key Sets: turns an issuer's key set into keys ready to verify with.
//!
//! A key the filter cannot use (an `oct` key, an unknown `kty`, an RSA modulus under 2048 bits,
//! an encryption-only key) is skipped with a reason instead of failing the whole set, because
//! issuers publish keys for other consumers next to the ones that sign access tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// The smallest RSA modulus accepted (RFC 8725 §3.5, NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// A JWS algorithm the filter verifies. There is no `none` and no `HS*`: an access token
/// verified with a public key must be signed with the matching private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl Alg {
    /// The algorithm named exactly `name` (JOSE names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
        }
    }
}

/// The public half of a signing key, by key type.
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    Rsa(crate::rsa_verify::RsaKey),
    P256(crate::ec_verify::EcKey<p256::NistP256>),
    P384(crate::ec_verify::EcKey<p384::NistP384>),
    Ed25519(ed25519_compact::PublicKey),
}

impl KeyMaterial {
    /// Whether a token signed with `alg` can have been made with this kind of key: this is
    /// what stops an `ES256` header from being checked against an RSA key, and so on.
    pub fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                KeyMaterial::Rsa(_),
                Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512
            ) | (KeyMaterial::P256(_), Alg::Es256)
                | (KeyMaterial::P384(_), Alg::Es384)
                | (KeyMaterial::Ed25519(_), Alg::EdDsa)
        )
    }
}

/// One usable key of a set.
#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The key's own `alg`, when the issuer pinned one: a token must then use exactly it.
    pub alg: Option<Alg>,
    pub material: KeyMaterial,
}

impl Jwk {
    pub fn accepts(&self, alg: Alg) -> bool {
        self.material.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// The usable keys of a set, and why the others were skipped.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
    pub skipped: Vec<String>,
    /// Which fetch of the issuer's keys this is (0 for inline keys): verified tokens are
    /// cached against it, so a new key set drops what the old one vouched for.
    pub generation: u64,
}

impl KeySet {
    /// The key a token names with `kid`. A token without `kid` may only use a set that holds
    /// a single key without `kid`: guessing among several keys would be trying them all.
    pub fn find(&self, kid: Option<&str>) -> Option<&Jwk> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => match self.keys.as_slice() {
                [only] if only.kid.is_none() => Some(only),
                _ => None,
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    #[error("not a JSON Web Key Set: {0}")]
    NotJwks(String),
    #[error("no usable key in the set ({})", .0.join("; "))]
    NoUsableKey(Vec<String>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("kty {0:?} is not supported")]
    UnsupportedKty(String),
    #[error("curve {0:?} is not supported")]
    UnsupportedCurve(String),
    #[error("alg {0:?} is not a supported signature algorithm")]
    UnsupportedAlg(String),
    #[error("alg {0} does not fit the key type")]
    AlgMismatch(&'static str),
    #[error("use {0:?} is not \"sig\"")]
    NotForSignatures(String),
    #[error("member {0:?} is missing")]
    Missing(&'static str),
    #[error("member {0:?} is not base64url")]
    BadBase64(&'static str),
    #[error("RSA modulus of {0} bits is under the {MIN_RSA_BITS}-bit minimum")]
    RsaTooSmall(usize),
    #[error("invalid key: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// The members of a JWK the filter reads; the others (`x5c`, `key_ops`, …) are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Parses a JWKS document. Fails only when the document is not a key set at all or holds
/// no usable key; unusable keys are listed in [`KeySet::skipped`].
pub fn parse_jwks(bytes: &[u8]) -> Result<KeySet, JwksError> {
    let raw: RawSet =
        serde_json::from_slice(bytes).map_err(|e| JwksError::NotJwks(e.to_string()))?;
    from_values(&raw.keys)
}

/// Same as [`parse_jwks`], for a set already parsed as JSON values (an inline `{keys: [...]}`).
pub fn from_values(values: &[serde_json::Value]) -> Result<KeySet, JwksError> {
    let mut set = KeySet::default();
    for (i, value) in values.iter().enumerate() {
        let kid = value.get("kid").and_then(|k| k.as_str()).unwrap_or("-");
        match parse_key(value) {
            Ok(key) => set.keys.push(key),
            Err(e) => set.skipped.push(format!("keys[{i}] (kid {kid}): {e}")),
        }
    }
    if set.keys.is_empty() {
        let reasons = if set.skipped.is_empty() {
            vec!["the set is empty".to_string()]
        } else {
            set.skipped
        };
        return Err(JwksError::NoUsableKey(reasons));
    }
    Ok(set)
}

fn parse_key(value: &serde_json::Value) -> Result<Jwk, KeyError> {
    let raw: RawJwk =
        serde_json::from_value(value.clone()).map_err(|e| KeyError::Invalid(e.to_string()))?;
    if let Some(use_) = &raw.use_
        && use_ != "sig"
    {
        return Err(KeyError::NotForSignatures(use_.clone()));
    }
    let alg = match &raw.alg {
        None => None,
        Some(name) => {
            Some(Alg::from_name(name).ok_or_else(|| KeyError::UnsupportedAlg(name.clone()))?)
        }
    };
    let material = match raw.kty.as_str() {
        "RSA" => rsa_key(&raw)?,
        "EC" => ec_key(&raw)?,
        "OKP" => okp_key(&raw)?,
        other => return Err(KeyError::UnsupportedKty(other.to_string())),
    };
    if let Some(alg) = alg
        && !material.fits(alg)
    {
        return Err(KeyError::AlgMismatch(alg.name()));
    }
    Ok(Jwk {
        kid: raw.kid,
        alg,
        material,
    })
}

fn member(value: &Option<String>, name: &'static str) -> Result<Vec<u8>, KeyError> {
    let text = value.as_deref().ok_or(KeyError::Missing(name))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| KeyError::BadBase64(name))
}

fn rsa_key(raw: &RawJwk) -> Result<KeyMaterial, KeyError> {
    use rsa::traits::PublicKeyParts as _;
    let n = rsa::BigUint::from_bytes_be(&member(&raw.n, "n")?);
    let e = rsa::BigUint::from_bytes_be(&member(&raw.e, "e")?);
    let key = rsa::RsaPublicKey::new(n, e).map_err(|e| KeyError::Invalid(e.to_string()))?;
    let bits = key.n().bits();
    if bits < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall(bits));
    }
    let key = crate::rsa_verify::RsaKey::new(key)
        .ok_or_else(|| KeyError::Invalid("RSA key cannot be prepared for verification".into()))?;
    Ok(KeyMaterial::Rsa(key))
}

fn ec_key(raw: &RawJwk) -> Result<KeyMaterial, KeyError> {
    let crv = raw.crv.as_deref().ok_or(KeyError::Missing("crv"))?;
    let x = member(&raw.x, "x")?;
    let y = member(&raw.y, "y")?;
    // SEC1 uncompressed point: 0x04 || x || y, each coordinate at the curve's full width.
    let width = match crv {
        "P-256" => 32,
        "P-384" => 48,
        other => return Err(KeyError::UnsupportedCurve(other.to_string())),
    };
    if x.len() != width || y.len() != width {
        return Err(KeyError::Invalid(format!(
            "{crv} coordinates must be {width} bytes"
        )));
    }
    let mut point = Vec::with_capacity(1 + 2 * width);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    // A point on the curve and not the identity (`PublicKey` checks both), then its table.
    let invalid = |e: p256::elliptic_curve::Error| KeyError::Invalid(e.to_string());
    use crate::ec_verify::EcKey;
    Ok(match crv {
        "P-256" => KeyMaterial::P256(EcKey::new(
            p256::PublicKey::from_sec1_bytes(&point).map_err(invalid)?,
        )),
        _ => KeyMaterial::P384(EcKey::new(
            p384::PublicKey::from_sec1_bytes(&point).map_err(invalid)?,
        )),
    })
}

fn okp_key(raw: &RawJwk) -> Result<KeyMaterial, KeyError> {
    let crv = raw.crv.as_deref().ok_or(KeyError::Missing("crv"))?;
    if crv != "Ed25519" {
        return Err(KeyError::UnsupportedCurve(crv.to_string()));
    }
    let x = member(&raw.x, "x")?;
    let key =
        ed25519_compact::PublicKey::from_slice(&x).map_err(|e| KeyError::Invalid(e.to_string()))?;
    Ok(KeyMaterial::Ed25519(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa_jwk(bits: usize, kid: &str) -> serde_json::Value {
        use rsa::traits::PublicKeyParts as _;
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), bits).unwrap();
        let public = private.to_public_key();
        json!({
            "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        })
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_reason_not_fatal() {
        let set = from_values(&[
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            json!({"kty": "XYZ", "kid": "odd"}),
            rsa_jwk(2048, "good"),
            json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}),
        ])
        .unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].kid.as_deref(), Some("good"));
        assert_eq!(set.skipped.len(), 3);
        assert!(
            set.skipped[0].contains("\"oct\" is not supported"),
            "{:?}",
            set.skipped
        );
        assert!(set.skipped[2].contains("not \"sig\""), "{:?}", set.skipped);
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        let err = from_values(&[rsa_jwk(1024, "weak")]).unwrap_err();
        assert!(err.to_string().contains("1024 bits"), "{err}");
    }

    #[test]
    fn a_set_with_nothing_usable_is_an_error() {
        assert!(matches!(
            parse_jwks(br#"{"keys":[]}"#),
            Err(JwksError::NoUsableKey(_))
        ));
        assert!(matches!(parse_jwks(b"<html>"), Err(JwksError::NotJwks(_))));
    }

    #[test]
    fn key_alg_must_fit_key_type() {
        let mut k = rsa_jwk(2048, "k");
        k["alg"] = json!("ES256");
        let err = from_values(&[k]).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[test]
    fn token_without_kid_matches_only_a_lone_key_without_kid() {
        let mut lone = rsa_jwk(2048, "x");
        lone.as_object_mut().unwrap().remove("kid");
        let set = from_values(&[lone.clone()]).unwrap();
        assert!(set.find(None).is_some());
        let two = from_values(&[lone.clone(), lone]).unwrap();
        assert!(two.find(None).is_none());
        let with_kid = from_values(&[rsa_jwk(2048, "k1")]).unwrap();
        assert!(with_kid.find(None).is_none());
        assert!(with_kid.find(Some("k1")).is_some());
        assert!(with_kid.find(Some("k2")).is_none());
    }
}
