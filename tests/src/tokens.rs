//! Test keys and tokens, made at test time (no key material is committed): RSA, P-256, P-384
//! and Ed25519 signing keys with their public JWKs, a JWT builder with Okta-shaped default
//! claims, and the classic forgeries (`alg: none`, HS256 keyed with the public key, tampered
//! signatures) a verifier must refuse.
//!
//! Tokens are assembled by hand rather than through a JWT library so tests control every
//! header field, including nonsensical ones.

use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::Mac as _;
use rand::RngCore as _;
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value, json};

/// Okta's default authorization server for the example org, as in the Agent Gateway guide.
pub const OKTA_ISSUER: &str = "https://your-org.okta.com/oauth2/default";
pub const OKTA_AUDIENCE: &str = "api://agentgateway";

/// The private half of a test key.
#[derive(Clone)]
pub enum KeyMaterial {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Ed25519(ed25519_compact::KeyPair),
}

/// A signing key with the `kid` and default `alg` its JWK advertises.
#[derive(Clone)]
pub struct Key {
    pub kid: String,
    pub alg: String,
    pub material: KeyMaterial,
}

fn rsa_pool() -> &'static Mutex<Vec<RsaPrivateKey>> {
    static POOL: OnceLock<Mutex<Vec<RsaPrivateKey>>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Vec::new()))
}

fn random_kid(prefix: &str) -> String {
    let mut b = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut b);
    format!("{prefix}-{}", B64.encode(b))
}

impl Key {
    /// The first cached RSA 2048 key (`kid` "rsa-0", RS256).
    pub fn rsa() -> Key {
        Key::rsa_n(0)
    }

    /// The `n`-th RSA 2048 key of this process (`kid` "rsa-{n}"): generated on first use and
    /// shared by all tests, since generating one costs about a second.
    pub fn rsa_n(n: usize) -> Key {
        let mut pool = rsa_pool().lock().unwrap_or_else(|e| e.into_inner());
        while pool.len() <= n {
            let key =
                RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key generation");
            pool.push(key);
        }
        Key {
            kid: format!("rsa-{n}"),
            alg: "RS256".into(),
            material: KeyMaterial::Rsa(Box::new(pool[n].clone())),
        }
    }

    /// A fresh P-256 key (ES256).
    pub fn p256() -> Key {
        Key {
            kid: random_kid("ec256"),
            alg: "ES256".into(),
            material: KeyMaterial::P256(p256::ecdsa::SigningKey::random(&mut rand::thread_rng())),
        }
    }

    /// A fresh P-384 key (ES384).
    pub fn p384() -> Key {
        Key {
            kid: random_kid("ec384"),
            alg: "ES384".into(),
            material: KeyMaterial::P384(p384::ecdsa::SigningKey::random(&mut rand::thread_rng())),
        }
    }

    /// A fresh Ed25519 key (EdDSA).
    pub fn ed25519() -> Key {
        Key {
            kid: random_kid("ed"),
            alg: "EdDSA".into(),
            material: KeyMaterial::Ed25519(ed25519_compact::KeyPair::generate()),
        }
    }

    pub fn with_kid(mut self, kid: &str) -> Key {
        self.kid = kid.to_string();
        self
    }

    /// The `alg` the JWK advertises and tokens use by default (e.g. "PS256" for an RSA key).
    pub fn with_alg(mut self, alg: &str) -> Key {
        self.alg = alg.to_string();
        self
    }

    /// The public JWK: `kty`, `kid`, `alg`, `use`, and `n`/`e` or `crv`/`x`/`y`.
    pub fn jwk(&self) -> Value {
        let mut jwk = match &self.material {
            KeyMaterial::Rsa(k) => json!({
                "kty": "RSA",
                "n": B64.encode(k.n().to_bytes_be()),
                "e": B64.encode(k.e().to_bytes_be()),
            }),
            KeyMaterial::P256(k) => {
                let p = k.verifying_key().to_encoded_point(false);
                json!({
                    "kty": "EC", "crv": "P-256",
                    "x": B64.encode(p.x().expect("uncompressed point")),
                    "y": B64.encode(p.y().expect("uncompressed point")),
                })
            }
            KeyMaterial::P384(k) => {
                let p = k.verifying_key().to_encoded_point(false);
                json!({
                    "kty": "EC", "crv": "P-384",
                    "x": B64.encode(p.x().expect("uncompressed point")),
                    "y": B64.encode(p.y().expect("uncompressed point")),
                })
            }
            KeyMaterial::Ed25519(k) => json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": B64.encode(k.pk.as_ref()),
            }),
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg);
        jwk["use"] = json!("sig");
        jwk
    }

    /// The public key as SubjectPublicKeyInfo PEM (for HS256-confusion forgeries).
    pub fn public_pem(&self) -> String {
        match &self.material {
            KeyMaterial::Rsa(k) => k
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("PEM"),
            KeyMaterial::P256(k) => k
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("PEM"),
            KeyMaterial::P384(k) => k
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("PEM"),
            KeyMaterial::Ed25519(k) => {
                let der = self.public_der();
                let b64 = base64::engine::general_purpose::STANDARD.encode(der);
                let _ = k;
                format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
            }
        }
    }

    /// The public key as SubjectPublicKeyInfo DER.
    pub fn public_der(&self) -> Vec<u8> {
        match &self.material {
            KeyMaterial::Rsa(k) => k
                .to_public_key()
                .to_public_key_der()
                .expect("DER")
                .into_vec(),
            KeyMaterial::P256(k) => k
                .verifying_key()
                .to_public_key_der()
                .expect("DER")
                .into_vec(),
            KeyMaterial::P384(k) => k
                .verifying_key()
                .to_public_key_der()
                .expect("DER")
                .into_vec(),
            KeyMaterial::Ed25519(k) => {
                // SPKI for Ed25519 (RFC 8410): fixed 12-byte prefix, then the 32-byte key.
                let mut der = vec![
                    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
                ];
                der.extend_from_slice(k.pk.as_ref());
                der
            }
        }
    }

    /// Signs `input` with `alg`; panics if the key cannot make that algorithm.
    pub fn sign_raw(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        use sha2::{Sha256, Sha384, Sha512};
        let mut rng = rand::thread_rng();
        match (&self.material, alg) {
            (KeyMaterial::Rsa(k), "RS256") => {
                rsa::pkcs1v15::SigningKey::<Sha256>::new((**k).clone())
                    .sign(input)
                    .to_vec()
            }
            (KeyMaterial::Rsa(k), "RS384") => {
                rsa::pkcs1v15::SigningKey::<Sha384>::new((**k).clone())
                    .sign(input)
                    .to_vec()
            }
            (KeyMaterial::Rsa(k), "RS512") => {
                rsa::pkcs1v15::SigningKey::<Sha512>::new((**k).clone())
                    .sign(input)
                    .to_vec()
            }
            (KeyMaterial::Rsa(k), "PS256") => {
                rsa::pss::BlindedSigningKey::<Sha256>::new((**k).clone())
                    .sign_with_rng(&mut rng, input)
                    .to_vec()
            }
            (KeyMaterial::Rsa(k), "PS384") => {
                rsa::pss::BlindedSigningKey::<Sha384>::new((**k).clone())
                    .sign_with_rng(&mut rng, input)
                    .to_vec()
            }
            (KeyMaterial::Rsa(k), "PS512") => {
                rsa::pss::BlindedSigningKey::<Sha512>::new((**k).clone())
                    .sign_with_rng(&mut rng, input)
                    .to_vec()
            }
            (KeyMaterial::P256(k), "ES256") => {
                let sig: p256::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            (KeyMaterial::P384(k), "ES384") => {
                // JWS wants the raw r||s (96 bytes), not DER.
                let sig: p384::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            (KeyMaterial::Ed25519(k), "EdDSA") => k.sk.sign(input, None).to_vec(),
            (_, alg) => panic!("key {} cannot sign {alg}", self.kid),
        }
    }
}

/// `{"keys": [...]}` of the keys' public JWKs.
pub fn jwks(keys: &[&Key]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// Okta access-token claims at `now` (seconds since the epoch), valid for an hour.
pub fn okta_claims(now: u64) -> Value {
    let mut jti = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut jti);
    json!({
        "ver": 1,
        "jti": format!("AT.{}", B64.encode(jti)),
        "iss": OKTA_ISSUER,
        "aud": OKTA_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "cid": "0oa1example2client3",
        "uid": "00u1example2user3",
        "scp": ["openid", "profile", "email"],
        "auth_time": now,
        "sub": "alice@example.com",
    })
}

fn encode_json(v: &Value) -> String {
    B64.encode(v.to_string())
}

/// Builds and signs a JWT. Starts from the Okta claims at the host's start time; every setter
/// overrides one field.
#[derive(Clone)]
pub struct TokenBuilder<'a> {
    key: &'a Key,
    alg: String,
    header: Map<String, Value>,
    claims: Map<String, Value>,
    now: u64,
}

impl<'a> TokenBuilder<'a> {
    /// Okta-shaped claims at [`crate::START_TIME_UNIX`], `alg`/`kid` from the key.
    pub fn new(key: &'a Key) -> TokenBuilder<'a> {
        TokenBuilder::at(key, crate::START_TIME_UNIX)
    }

    /// Okta-shaped claims issued at `now` (use `host.now_unix()` after moving the clock).
    pub fn at(key: &'a Key, now: u64) -> TokenBuilder<'a> {
        let mut header = Map::new();
        header.insert("alg".into(), json!(key.alg));
        header.insert("kid".into(), json!(key.kid));
        let claims = match okta_claims(now) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        TokenBuilder {
            key,
            alg: key.alg.clone(),
            header,
            claims,
            now,
        }
    }

    /// The algorithm to sign with (also written to the header).
    pub fn alg(mut self, alg: &str) -> Self {
        self.alg = alg.to_string();
        self.header.insert("alg".into(), json!(alg));
        self
    }

    pub fn kid(mut self, kid: &str) -> Self {
        self.header.insert("kid".into(), json!(kid));
        self
    }

    pub fn no_kid(mut self) -> Self {
        self.header.remove("kid");
        self
    }

    /// Any header field, written after `alg`/`kid` (so `header("alg", ..)` lies about the
    /// algorithm actually used to sign).
    pub fn header(mut self, name: &str, value: Value) -> Self {
        self.header.insert(name.into(), value);
        self
    }

    /// Replaces all claims.
    pub fn claims(mut self, claims: Value) -> Self {
        self.claims = match claims {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self
    }

    /// Sets one claim.
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.into(), value);
        self
    }

    pub fn without(mut self, claim: &str) -> Self {
        self.claims.remove(claim);
        self
    }

    pub fn iss(self, iss: &str) -> Self {
        self.claim("iss", json!(iss))
    }

    pub fn aud(self, aud: &str) -> Self {
        self.claim("aud", json!(aud))
    }

    /// An array audience.
    pub fn auds(self, auds: &[&str]) -> Self {
        self.claim("aud", json!(auds))
    }

    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, sub: &str) -> Self {
        self.claim("sub", json!(sub))
    }

    /// `exp` as seconds since the epoch.
    pub fn exp(self, exp: u64) -> Self {
        self.claim("exp", json!(exp))
    }

    /// `exp` relative to the builder's `now` (negative: already expired).
    pub fn exp_in(self, secs: i64) -> Self {
        let exp = self.now as i64 + secs;
        self.claim("exp", json!(exp))
    }

    pub fn nbf(self, nbf: u64) -> Self {
        self.claim("nbf", json!(nbf))
    }

    /// `nbf` relative to the builder's `now`.
    pub fn nbf_in(self, secs: i64) -> Self {
        let nbf = self.now as i64 + secs;
        self.claim("nbf", json!(nbf))
    }

    pub fn iat(self, iat: u64) -> Self {
        self.claim("iat", json!(iat))
    }

    pub fn groups(self, groups: &[&str]) -> Self {
        self.claim("groups", json!(groups))
    }

    /// Okta's `scp` array.
    pub fn scopes(self, scopes: &[&str]) -> Self {
        self.claim("scp", json!(scopes))
    }

    pub fn claims_json(&self) -> Value {
        Value::Object(self.claims.clone())
    }

    pub fn sign(self) -> String {
        let input = format!(
            "{}.{}",
            encode_json(&Value::Object(self.header)),
            encode_json(&Value::Object(self.claims))
        );
        let sig = self.key.sign_raw(&self.alg, input.as_bytes());
        format!("{input}.{}", B64.encode(sig))
    }
}

/// An unsigned token, `alg` spelled as given ("none", "None", "NONE", "nOnE"), empty signature.
pub fn alg_none_token(claims: &Value, casing: &str) -> String {
    let header = json!({ "alg": casing, "typ": "JWT" });
    format!("{}.{}.", encode_json(&header), encode_json(claims))
}

/// The key-confusion forgery: HS256 "signed" with the public key's bytes (PEM or DER) as the
/// HMAC secret, for a verifier that would pick the algorithm from the header.
pub fn hs256_with_public_key(claims: &Value, public_key_bytes: &[u8]) -> String {
    hs256_token(claims, public_key_bytes, None)
}

/// HS256 with any secret and an optional `kid`.
pub fn hs256_token(claims: &Value, secret: &[u8], kid: Option<&str>) -> String {
    let mut header = json!({ "alg": "HS256", "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let input = format!("{}.{}", encode_json(&header), encode_json(claims));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

/// The same token with one bit of its signature flipped.
pub fn tamper_signature(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').expect("a JWT has three parts");
    let mut sig = B64.decode(sig).expect("signature is base64url");
    if let Some(b) = sig.last_mut() {
        *b ^= 0x01;
    } else {
        sig.push(0);
    }
    format!("{input}.{}", B64.encode(sig))
}

/// The same header and signature over different claims (the signature no longer matches).
pub fn replace_claims(token: &str, claims: &Value) -> String {
    let mut parts = token.splitn(3, '.');
    let header = parts.next().unwrap_or_default();
    let _ = parts.next();
    let sig = parts.next().unwrap_or_default();
    format!("{header}.{}.{sig}", encode_json(claims))
}

/// Decodes a token's header and claims without verifying (for assertions).
pub fn decode_unverified(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || -> Value {
        let part = parts.next().unwrap_or_default();
        let bytes = B64.decode(part).unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    let header = next();
    let claims = next();
    (header, claims)
}
