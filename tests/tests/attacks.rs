//! RFC 8725 / RFC 7515 / RFC 7519 attacks against the real module: each forged or malformed
//! token is refused with a 401 and a reason, nothing is fetched on the token's say-so, and the
//! VM survives every one of them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use mcp_auth_filter_tests::tokens::{Key, OKTA_AUDIENCE, OKTA_ISSUER, TokenBuilder, jwks};
use mcp_auth_filter_tests::{Host, Outcome, Request, START_TIME_UNIX, Vm};
use serde_json::json;

fn setup(keys: &[&Key]) -> (Host, Vm) {
    let host = Host::new();
    let vm = host
        .vm(&format!(
            "mcpAuthentication:\n  issuer: {OKTA_ISSUER}\n  audiences: [{OKTA_AUDIENCE}]\n  jwks: '{}'\n",
            jwks(keys)
        ))
        .unwrap();
    (host, vm)
}

/// The token is refused with a 401 `invalid_token` whose description mentions `why`.
#[track_caller]
fn refused(vm: &Vm, token: &str, why: &str) {
    let out = vm.request(Request::post("/mcp").bearer(token));
    let Outcome::Local(r) = &out else {
        panic!("accepted: {out:?}")
    };
    assert_eq!(r.status, 401, "{out:?}");
    let description = r.json()["error_description"].as_str().unwrap().to_string();
    assert!(
        description.contains(why),
        "{description:?} should mention {why:?}"
    );
}

/// Builds a token from raw header and payload JSON text, signed by `key` as `alg`.
fn raw_token(key: &Key, alg: &str, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let sig = key.sign_raw(alg, input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}

fn claims(extra: &str) -> String {
    let now = START_TIME_UNIX;
    format!(
        r#"{{"iss":"{OKTA_ISSUER}","aud":"{OKTA_AUDIENCE}","iat":{now},"exp":{}{extra}}}"#,
        now + 3600
    )
}

#[test]
fn a_kid_naming_another_issuers_key_is_refused() {
    let ours = Key::rsa_n(0);
    let theirs = Key::rsa_n(1).with_kid("their-key");
    let (_, vm) = setup(&[&ours]);
    // Signed by their key under their kid: not one of ours.
    refused(&vm, &TokenBuilder::new(&theirs).sign(), "no signing key");
    // Signed by their key under our kid: the signature does not verify.
    let posing = TokenBuilder::new(&theirs).kid(&ours.kid).sign();
    refused(&vm, &posing, "signature is invalid");
}

#[test]
fn embedded_key_headers_are_ignored_and_never_fetched() {
    let ours = Key::rsa_n(0);
    let attacker = Key::rsa_n(1).with_kid(&ours.kid);
    let (host, vm) = setup(&[&ours]);
    let forged = TokenBuilder::new(&attacker)
        .header("jwk", attacker.jwk())
        .header("jku", json!("https://attacker.example/keys"))
        .header("x5u", json!("https://attacker.example/cert.pem"))
        .sign();
    refused(&vm, &forged, "signature is invalid");
    assert!(
        host.dispatched_calls().is_empty(),
        "nothing fetched on the token's say-so"
    );
    // The same headers on a genuine token change nothing either.
    let genuine = TokenBuilder::new(&ours)
        .header("jku", json!("https://attacker.example/keys"))
        .sign();
    assert!(
        vm.request(Request::post("/mcp").bearer(&genuine))
            .is_forwarded()
    );
}

#[test]
fn crit_jwe_and_duplicate_members_are_refused() {
    let key = Key::rsa();
    let (_, vm) = setup(&[&key]);
    let crit = TokenBuilder::new(&key)
        .header("crit", json!(["exp-ext"]))
        .header("exp-ext", json!(1))
        .sign();
    refused(&vm, &crit, "critical header");
    let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d";
    refused(&vm, jwe, "malformed token");
    let header = format!(r#"{{"alg":"RS256","kid":"{}","kid":"other"}}"#, key.kid);
    let dup_header = raw_token(&key, "RS256", &header, &claims(""));
    refused(&vm, &dup_header, "duplicate");
    let header = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, key.kid);
    let dup_claim = raw_token(
        &key,
        "RS256",
        &header,
        &claims(r#","sub":"alice","sub":"admin""#),
    );
    refused(&vm, &dup_claim, "duplicate");
}

#[test]
fn stripped_der_and_zero_ecdsa_signatures_are_refused() {
    let ec = Key::p256();
    let rsa = Key::rsa();
    let (_, vm) = setup(&[&ec, &rsa]);
    let good = TokenBuilder::new(&ec).sign();
    let (input, _) = good.rsplit_once('.').unwrap();
    refused(&vm, &format!("{input}."), "signature is invalid");
    refused(&vm, input, "malformed token");
    // r = s = 0 in raw form, and a DER-encoded signature where JOSE wants r || s.
    refused(
        &vm,
        &format!("{input}.{}", B64.encode([0u8; 64])),
        "signature is invalid",
    );
    let raw = B64.decode(good.rsplit('.').next().unwrap()).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
    let der = sig.to_der();
    refused(
        &vm,
        &format!("{input}.{}", B64.encode(der.as_bytes())),
        "signature is invalid",
    );
    assert!(
        vm.request(Request::post("/mcp").bearer(&good))
            .is_forwarded()
    );
}

#[test]
fn time_claims_of_the_wrong_type_or_range_are_refused() {
    let key = Key::rsa();
    let (_, vm) = setup(&[&key]);
    let header = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, key.kid);
    let now = START_TIME_UNIX;
    for (payload, why) in [
        (
            format!(
                r#"{{"iss":"{OKTA_ISSUER}","aud":"{OKTA_AUDIENCE}","exp":"{}"}}"#,
                now + 60
            ),
            "malformed claims",
        ),
        (
            format!(r#"{{"iss":"{OKTA_ISSUER}","aud":"{OKTA_AUDIENCE}","exp":-1}}"#),
            "expired",
        ),
        (
            format!(
                r#"{{"iss":"{OKTA_ISSUER}","aud":"{OKTA_AUDIENCE}","exp":99999999999999999999}}"#
            ),
            "malformed claims",
        ),
        (
            format!(
                r#"{{"iss":"{OKTA_ISSUER}","aud":"{OKTA_AUDIENCE}","exp":{},"nbf":"soon"}}"#,
                now + 60
            ),
            "malformed claims",
        ),
        (
            format!(
                r#"{{"iss":"{OKTA_ISSUER}","aud":"{OKTA_AUDIENCE}","exp":{},"iat":1e30}}"#,
                now + 60
            ),
            "malformed claims",
        ),
        (
            format!(
                r#"{{"iss":"{OKTA_ISSUER}","aud":{{"a":1}},"exp":{}}}"#,
                now + 60
            ),
            "audience",
        ),
        (
            format!(
                r#"{{"iss":["{OKTA_ISSUER}"],"aud":"{OKTA_AUDIENCE}","exp":{}}}"#,
                now + 60
            ),
            "not trusted",
        ),
    ] {
        refused(&vm, &raw_token(&key, "RS256", &header, &payload), why);
    }
    // RFC 7519 §2: a NumericDate may be non-integer; a fractional exp is read as its second.
    let fractional = format!(
        r#"{{"iss":"{OKTA_ISSUER}","aud":"{OKTA_AUDIENCE}","exp":{}.5}}"#,
        now + 60
    );
    let token = raw_token(&key, "RS256", &header, &fractional);
    assert!(
        vm.request(Request::post("/mcp").bearer(&token))
            .is_forwarded()
    );
    let past = format!(
        r#"{{"iss":"{OKTA_ISSUER}","aud":"{OKTA_AUDIENCE}","exp":{}.9}}"#,
        now - 120
    );
    refused(&vm, &raw_token(&key, "RS256", &header, &past), "expired");
}

#[test]
fn a_flood_of_bad_tokens_leaves_the_vm_serving() {
    let key = Key::rsa();
    let (host, vm) = setup(&[&key]);
    let good = TokenBuilder::new(&key).sign();
    let mut junk: Vec<Vec<u8>> = vec![
        b"Bearer ".to_vec(),
        b"Bearer \x00\x01\x02".to_vec(),
        b"Bearer ...........".to_vec(),
        b"Bearer eyJ.eyJ.eyJ".to_vec(),
        format!("Bearer {}", "A".repeat(20_000)).into_bytes(),
        format!("Bearer {}.e30.", B64.encode("{\"alg\":\"RS256\"")).into_bytes(),
        format!("Bearer {}.e30.AA", B64.encode("[]")).into_bytes(),
        format!("Bearer {}.e30.AA", B64.encode("{\"alg\":null}")).into_bytes(),
    ];
    for i in 0..64u8 {
        let mut t = good.clone().into_bytes();
        let at = (i as usize * 7919) % t.len();
        t[at] = t[at].wrapping_add(i + 1);
        let mut h = b"Bearer ".to_vec();
        h.extend(t);
        junk.push(h);
    }
    for value in &junk {
        let out = vm.request(Request::post("/mcp").header_bytes("authorization", value));
        assert_eq!(out.status(), 401, "{:?}", String::from_utf8_lossy(value));
    }
    assert!(
        vm.request(Request::post("/mcp").bearer(&good))
            .is_forwarded()
    );
    assert!(
        host.metric("mcp_auth.denied.invalid_token.malformed")
            .unwrap_or(0)
            > 0
    );
}

#[test]
fn every_symmetric_alg_is_refused_whatever_the_secret() {
    use hmac::Mac as _;
    let rsa = Key::rsa();
    let ec = Key::p256();
    let (_, vm) = setup(&[&rsa, &ec]);
    for key in [&rsa, &ec] {
        for (alg, secret) in [
            ("HS256", key.public_pem().into_bytes()),
            ("HS384", key.public_pem().into_bytes()),
            ("HS512", key.public_der()),
        ] {
            let header = format!(r#"{{"alg":"{alg}","kid":"{}"}}"#, key.kid);
            let input = format!("{}.{}", B64.encode(&header), B64.encode(claims("")));
            let sig = match alg {
                "HS256" => {
                    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
                    m.update(input.as_bytes());
                    m.finalize().into_bytes().to_vec()
                }
                "HS384" => {
                    let mut m = hmac::Hmac::<sha2::Sha384>::new_from_slice(&secret).unwrap();
                    m.update(input.as_bytes());
                    m.finalize().into_bytes().to_vec()
                }
                _ => {
                    let mut m = hmac::Hmac::<sha2::Sha512>::new_from_slice(&secret).unwrap();
                    m.update(input.as_bytes());
                    m.finalize().into_bytes().to_vec()
                }
            };
            refused(
                &vm,
                &format!("{input}.{}", B64.encode(sig)),
                "symmetric alg",
            );
        }
    }
}

#[test]
fn high_s_ecdsa_signatures_are_accepted_as_ecdsa_defines_them() {
    // Decided and documented: (r, n - s) is as valid an ECDSA signature as (r, s) — Wycheproof
    // lists high-s vectors as valid. A re-signed token carries the same claims, so accepting it
    // grants nothing; it is a different cache entry, nothing more.
    let ec = Key::p256();
    let (_, vm) = setup(&[&ec]);
    let good = TokenBuilder::new(&ec).sign();
    let (input, sig) = good.rsplit_once('.').unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&B64.decode(sig).unwrap()).unwrap();
    let (r, s) = sig.split_scalars();
    let flipped = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    assert_ne!(flipped.to_bytes(), sig.to_bytes());
    let token = format!("{input}.{}", B64.encode(flipped.to_bytes()));
    assert!(
        vm.request(Request::post("/mcp").bearer(&token))
            .is_forwarded()
    );
}
