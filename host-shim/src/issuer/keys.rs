//! The issuer's RSA signing keys and the JWKS built from them. Keys are generated at start and
//! on rotation (nothing touches disk, so every run has fresh keys); the `kid` is the key's
//! RFC 7638 thumbprint, which is stable for a key and differs between keys, as Okta's are.
//! Rotation may keep retired keys published, the way Okta keeps a previous key in its JWKS so
//! that tokens signed before a rotation still verify.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_compact::jwk::JsonWebKey;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;

const KEY_BITS: usize = 2048;
/// Retired keys beyond this many are dropped even when rotation asks to keep old keys, so a
/// test that rotates in a loop cannot grow the JWKS without bound.
const MAX_RETIRED: usize = 3;

pub struct SigningKey {
    pub kid: String,
    pub private: RsaPrivateKey,
    jwk: Value,
}

impl SigningKey {
    /// RSA key generation takes tens of milliseconds; call it off the async executor.
    pub fn generate() -> anyhow::Result<Self> {
        let private = RsaPrivateKey::new(&mut rand::thread_rng(), KEY_BITS)?;
        let public = RsaPublicKey::from(&private);
        let public_jwk = JsonWebKey::from(&public);
        let kid = URL_SAFE_NO_PAD.encode(public_jwk.thumbprint::<Sha256>());
        let mut jwk = serde_json::to_value(&public_jwk)?;
        if let Value::Object(fields) = &mut jwk {
            fields.insert("kid".to_owned(), json!(kid));
            fields.insert("alg".to_owned(), json!("RS256"));
            fields.insert("use".to_owned(), json!("sig"));
        }
        Ok(Self { kid, private, jwk })
    }
}

/// The active key signs new tokens; retired keys are only published.
pub struct KeyRing {
    active: SigningKey,
    retired: Vec<SigningKey>,
}

impl KeyRing {
    pub fn new(active: SigningKey) -> Self {
        Self {
            active,
            retired: Vec::new(),
        }
    }

    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// Makes `next` the signing key. With `keep_old`, the previous key stays in the JWKS.
    pub fn rotate(&mut self, next: SigningKey, keep_old: bool) {
        let previous = std::mem::replace(&mut self.active, next);
        if keep_old {
            self.retired.insert(0, previous);
            self.retired.truncate(MAX_RETIRED);
        } else {
            self.retired.clear();
        }
    }

    pub fn kids(&self) -> Vec<String> {
        std::iter::once(&self.active)
            .chain(&self.retired)
            .map(|key| key.kid.clone())
            .collect()
    }

    pub fn jwks(&self) -> Value {
        let keys: Vec<&Value> = std::iter::once(&self.active)
            .chain(&self.retired)
            .map(|key| &key.jwk)
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_entries_look_like_oktas() {
        let ring = KeyRing::new(SigningKey::generate().unwrap());
        let jwks = ring.jwks();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["e"], "AQAB");
        assert_eq!(key["kid"], ring.active().kid.as_str());
        assert!(
            key.get("d").is_none(),
            "private parts must never be published"
        );
    }

    #[test]
    fn rotation_keeps_or_drops_the_previous_key() {
        let mut ring = KeyRing::new(SigningKey::generate().unwrap());
        let first = ring.active().kid.clone();
        ring.rotate(SigningKey::generate().unwrap(), true);
        assert_ne!(ring.active().kid, first);
        assert_eq!(ring.kids().len(), 2);
        ring.rotate(SigningKey::generate().unwrap(), false);
        assert_eq!(ring.kids().len(), 1);
    }
}
