//! The filter core compiled to `wasm32-unknown-unknown` and run in Node's V8 with
//! `wasm-bindgen-test` (`make test-wasm`): token verification and CEL rules, the parts whose
//! dependencies (RSA, P-256, Ed25519, the CEL interpreter) could behave differently in a wasm
//! engine than natively. Envoy embeds V8 too, so this is the engine family the module runs in.
//!
//! Keys come from a fixed-seed ChaCha RNG (no entropy source is needed) and time is a fixed
//! instant, as the filter gets it from the host. On any other target this file is empty.
#![cfg(target_arch = "wasm32")]
// The helpers below are not #[test] functions, which clippy.toml's allow-*-in-tests reach.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use jwt_compact::alg::{Ed25519, Es256, Rsa};
use jwt_compact::{AlgorithmExt as _, Claims, Header};
use mcp_auth_filter::authz::{Evaluation, Input, Rule, RuleKind, RuleSet, Verdict};
use mcp_auth_filter::jwks::{KeySet, parse_jwks};
use mcp_auth_filter::jwt::{Expectations, TokenError, verify};
use mcp_auth_filter::mcp::{Kind, McpView};
use mcp_auth_filter::policy::FilterConfig;
use mcp_auth_filter::rsa_verify::RsaKey;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore as _, SeedableRng as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Map, Value, json};
use wasm_bindgen_test::wasm_bindgen_test;

const ISSUER: &str = "https://your-org.okta.com/oauth2/default";
const AUDIENCE: &str = "api://agentgateway";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn expect() -> Expectations {
    Expectations {
        issuer: ISSUER.into(),
        audiences: Some(vec![AUDIENCE.into()]),
        clock_skew: TimeDelta::seconds(60),
    }
}

struct Keys {
    rsa: rsa::RsaPrivateKey,
    p256: p256::ecdsa::SigningKey,
    ed25519: ed25519_compact::KeyPair,
    set: KeySet,
}

/// One key of each kind, generated once: a 2048-bit RSA key takes a while in a debug build.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let rsa = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let p256 = p256::ecdsa::SigningKey::random(&mut rng);
        let ed25519 = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([8; 32]));
        let public = rsa.to_public_key();
        let point = p256.verifying_key().to_encoded_point(false);
        let jwks = json!({ "keys": [
            { "kty": "RSA", "kid": "rsa", "use": "sig", "alg": "RS256",
              "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be()) },
            { "kty": "EC", "kid": "ec", "crv": "P-256",
              "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()) },
            { "kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(ed25519.pk.as_ref()) },
        ]});
        let set = parse_jwks(jwks.to_string().as_bytes()).unwrap();
        Keys {
            rsa,
            p256,
            ed25519,
            set,
        }
    })
}

fn claims(extra: Value) -> Claims<Map<String, Value>> {
    let mut custom = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "0oa-ai-user",
        "groups": ["Everyone", "AI-Users"],
        "scp": ["agentgateway"],
    });
    for (k, v) in extra.as_object().unwrap() {
        custom[k] = v.clone();
    }
    let mut claims = Claims::new(custom.as_object().unwrap().clone());
    claims.issued_at = Some(now() - TimeDelta::minutes(1));
    claims.expiration = Some(now() + TimeDelta::hours(1));
    claims
}

fn rs256(kid: &str, claims: &Claims<Map<String, Value>>) -> String {
    Rsa::rs256()
        .token(&Header::empty().with_key_id(kid), claims, &keys().rsa)
        .unwrap()
}

fn es256(claims: &Claims<Map<String, Value>>) -> String {
    Es256
        .token(&Header::empty().with_key_id("ec"), claims, &keys().p256)
        .unwrap()
}

fn eddsa(claims: &Claims<Map<String, Value>>) -> String {
    Ed25519
        .token(
            &Header::empty().with_key_id("ed"),
            claims,
            &keys().ed25519.sk,
        )
        .unwrap()
}

/// A token with the given header and claims and a junk signature.
fn forged(header: Value, claims: Value) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(b"not a signature")
    )
}

#[wasm_bindgen_test]
fn rs256_es256_and_eddsa_tokens_verify() {
    for token in [
        rs256("rsa", &claims(json!({}))),
        es256(&claims(json!({}))),
        eddsa(&claims(json!({}))),
    ] {
        let identity = verify(&token, &keys().set, &expect(), now()).unwrap();
        assert_eq!(identity.claims()["sub"], "0oa-ai-user");
        assert_eq!(identity.claims()["groups"][1], "AI-Users");
        assert_eq!(
            identity.expires_at().timestamp(),
            (now() + TimeDelta::hours(1)).timestamp()
        );
    }
}

#[wasm_bindgen_test]
fn a_tampered_payload_is_a_bad_signature() {
    for token in [
        rs256("rsa", &claims(json!({}))),
        es256(&claims(json!({}))),
        eddsa(&claims(json!({}))),
    ] {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let evil = claims(json!({ "groups": ["AI-Users", "Admins"] }));
        parts[1] = b64(serde_json::to_string(&evil).unwrap().as_bytes());
        let err = verify(&parts.join("."), &keys().set, &expect(), now()).unwrap_err();
        assert_eq!(err, TokenError::BadSignature, "{token}");
    }
}

#[wasm_bindgen_test]
fn a_token_signed_with_another_key_of_the_same_kid_fails() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let other = p256::ecdsa::SigningKey::random(&mut rng);
    let token = Es256
        .token(
            &Header::empty().with_key_id("ec"),
            &claims(json!({})),
            &other,
        )
        .unwrap();
    let err = verify(&token, &keys().set, &expect(), now()).unwrap_err();
    assert_eq!(err, TokenError::BadSignature);
}

#[wasm_bindgen_test]
fn alg_none_and_hs256_are_refused_whatever_the_signature() {
    let body = serde_json::to_value(claims(json!({}))).unwrap();
    for alg in ["none", "None", "NONE"] {
        let token = forged(json!({ "alg": alg, "kid": "rsa" }), body.clone());
        let unsigned = format!("{}.", token.rsplit_once('.').unwrap().0);
        for t in [token, unsigned] {
            let err = verify(&t, &keys().set, &expect(), now()).unwrap_err();
            assert!(
                matches!(err, TokenError::AlgNone | TokenError::Malformed(_)),
                "{alg}: {err:?}"
            );
            assert!(verify(&t, &keys().set, &expect(), now()).is_err());
        }
    }
    // HS256 "signed" with the RSA key's public modulus as the HMAC secret: the classic
    // key-confusion attack.
    let token = forged(json!({ "alg": "HS256", "kid": "rsa" }), body);
    let err = verify(&token, &keys().set, &expect(), now()).unwrap_err();
    assert_eq!(err, TokenError::Symmetric("HS256".into()));
}

#[wasm_bindgen_test]
fn an_alg_that_does_not_fit_the_key_is_refused() {
    // An RS256 header pointing at the EC key.
    let token = rs256("ec", &claims(json!({})));
    let err = verify(&token, &keys().set, &expect(), now()).unwrap_err();
    assert_eq!(err, TokenError::AlgKeyMismatch("RS256"));
}

#[wasm_bindgen_test]
fn expiry_issuer_and_audience_are_checked_against_the_host_clock() {
    let token = es256(&claims(json!({})));
    let later = now() + TimeDelta::hours(2);
    assert_eq!(
        verify(&token, &keys().set, &expect(), later).unwrap_err(),
        TokenError::Expired
    );
    let other_issuer = es256(&claims(json!({ "iss": "https://evil.example.com" })));
    assert!(matches!(
        verify(&other_issuer, &keys().set, &expect(), now()).unwrap_err(),
        TokenError::WrongIssuer(_)
    ));
    let other_audience = es256(&claims(json!({ "aud": ["api://other"] })));
    assert_eq!(
        verify(&other_audience, &keys().set, &expect(), now()).unwrap_err(),
        TokenError::WrongAudience
    );
    let unknown_kid = rs256("rotated-away", &claims(json!({})));
    assert_eq!(
        verify(&unknown_kid, &keys().set, &expect(), now()).unwrap_err(),
        TokenError::UnknownKid("rotated-away".into())
    );
}

fn evaluate(
    rules: &RuleSet,
    claims: Option<&Map<String, Value>>,
    mcp: Option<&McpView>,
) -> Verdict {
    let headers = [("x-team".to_string(), b"blue".to_vec())];
    let input = Input {
        claims,
        prebuilt: None,
        mcp,
        method: "POST",
        path: "/mcp",
        host: "mcp.example.com",
        headers: &headers,
    };
    rules.evaluate(&input, &mut Evaluation::default())
}

fn verified_claims(groups: Value) -> Map<String, Value> {
    let token = es256(&claims(json!({ "groups": groups })));
    verify(&token, &keys().set, &expect(), now())
        .unwrap()
        .claims()
        .clone()
}

#[wasm_bindgen_test]
fn the_guides_group_rule_decides_on_verified_claims() {
    let config = FilterConfig::parse(
        br#"{"policies":{"mcpAuthentication":{"mode":"strict","issuer":"https://your-org.okta.com/oauth2/default","audiences":["api://agentgateway"],"jwks":{"url":"https://your-org.okta.com/oauth2/default/v1/keys","cluster":"outbound|443||your-org.okta.com"}},"authorization":{"rules":[{"if":"\"AI-Users\" in auth.claims.groups"}]}}}"#,
    )
    .unwrap();
    let rules = &config.default.as_ref().unwrap().rules;
    let member = verified_claims(json!(["Everyone", "AI-Users"]));
    let outsider = verified_claims(json!(["Everyone"]));
    assert_eq!(evaluate(rules, Some(&member), None), Verdict::Allow);
    assert!(matches!(
        evaluate(rules, Some(&outsider), None),
        Verdict::Deny(_)
    ));
    assert!(matches!(evaluate(rules, None, None), Verdict::Deny(_)));
}

#[wasm_bindgen_test]
fn deny_beats_allow_require_must_hold_and_errors_do_not_match() {
    let rules = RuleSet::new(vec![
        Rule::compile(RuleKind::Allow, r#""AI-Users" in jwt.groups"#).unwrap(),
        Rule::compile(RuleKind::Require, r#"request.headers["x-team"] == "blue""#).unwrap(),
        Rule::compile(
            RuleKind::Deny,
            r#"mcp.tool.name == "delete" && mcp.tool.arguments.force == true"#,
        )
        .unwrap(),
    ]);
    let member = verified_claims(json!(["AI-Users"]));
    let call = |name: &str, arguments: Value| McpView {
        method: "tools/call".into(),
        kind: Kind::Tool,
        name: name.into(),
        raw: name.into(),
        target: String::new(),
        arguments: std::borrow::Cow::Owned(arguments),
    };
    assert_eq!(
        evaluate(&rules, Some(&member), Some(&call("echo", json!({})))),
        Verdict::Allow
    );
    assert!(matches!(
        evaluate(
            &rules,
            Some(&member),
            Some(&call("delete", json!({ "force": true })))
        ),
        Verdict::Deny(reason) if reason.to_string().contains("denied by rule")
    ));

    // A rule that errors (no such claim) counts as not matched, and is reported.
    let erroring = RuleSet::new(vec![
        Rule::compile(RuleKind::Allow, "jwt.no_such_claim == 1").unwrap(),
    ]);
    let mut eval = Evaluation::default();
    let input = Input {
        claims: Some(&member),
        prebuilt: None,
        mcp: None,
        method: "POST",
        path: "/mcp",
        host: "h",
        headers: &[],
    };
    assert!(matches!(
        erroring.evaluate(&input, &mut eval),
        Verdict::Deny(_)
    ));
    assert_eq!(eval.errors.len(), 1, "{:?}", eval.errors);
}

#[wasm_bindgen_test]
fn a_rule_that_does_not_parse_fails_at_compile_time() {
    assert!(Rule::compile(RuleKind::Allow, r#""AI-Users" in (("#).is_err());
    let bad = br#"{"mcpAuthentication":{"issuer":"https://i","audiences":[],"jwks":{"keys":[]}},"authorization":{"rules":["auth.claims.groups ))"]}}"#;
    assert!(FilterConfig::parse(bad).is_err());
}

/// RSA's public operation as this engine runs it (with SIMD when the module is built with it)
/// against `rsa`'s bignum: odd moduli of both radixes and of lengths that are and are not a
/// whole number of four-limb steps, the exponents key sets carry, and the edge bases.
#[wasm_bindgen_test]
fn rsa_public_operation_matches_the_bignum_reference() {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    for bits in [1024usize, 2047, 2048, 2056, 3072, 3554, 3555, 4096] {
        let mut n = vec![0u8; bits.div_ceil(8)];
        rng.fill_bytes(&mut n);
        let top = (bits - 1) % 8;
        n[0] &= ((1u16 << (top + 1)) - 1) as u8;
        n[0] |= 1 << top;
        *n.last_mut().unwrap() |= 1;
        let n = rsa::BigUint::from_bytes_be(&n);
        let len = bits.div_ceil(8);
        let one = rsa::BigUint::from(1u8);
        for e in [3u32, 65537] {
            let public =
                rsa::RsaPublicKey::new_with_max_size(n.clone(), rsa::BigUint::from(e), 8192)
                    .unwrap();
            let key = RsaKey::new(public).unwrap();
            let mut bases = vec![rsa::BigUint::from(0u8), one.clone(), &n - &one];
            for _ in 0..3 {
                let mut b = vec![0u8; len];
                rng.fill_bytes(&mut b);
                bases.push(rsa::BigUint::from_bytes_be(&b) % &n);
            }
            for base in bases {
                let mut s = base.to_bytes_be();
                s.splice(0..0, std::iter::repeat_n(0, len - s.len()));
                let want = base.modpow(&rsa::BigUint::from(e), &n).to_bytes_be();
                let got = key.public_op(&s).unwrap();
                assert_eq!(got.len(), len);
                assert_eq!(
                    rsa::BigUint::from_bytes_be(&got).to_bytes_be(),
                    want,
                    "{bits} bits, e = {e}"
                );
            }
        }
    }
}
