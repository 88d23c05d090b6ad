//! Self-tests of the test host and the token helpers, independent of what the filter decides:
//! the real module loads and exports the ABI, a broken configuration is refused, and the host's
//! shared data, clock, ticks and trap reporting behave as Envoy's do (checked with a small
//! hand-written probe module so the filter's logic cannot mask a host bug).
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use mcp_auth_filter_tests::tokens::{self, Key, TokenBuilder};
use mcp_auth_filter_tests::{Host, Outcome, Request, START_TIME_UNIX};
use serde_json::{Value, json};

const PROBE: &str = include_str!("probes/probe.wat");

#[test]
fn filter_module_loads_and_exports_the_abi() {
    let exports = mcp_auth_filter_tests::filter_exports();
    for name in [
        "proxy_abi_version_0_2_1",
        "proxy_on_memory_allocate",
        "proxy_on_context_create",
        "proxy_on_vm_start",
        "proxy_on_configure",
        "proxy_on_request_headers",
        "proxy_on_http_call_response",
        "proxy_on_tick",
        "proxy_on_done",
        "proxy_on_delete",
        "memory",
    ] {
        assert!(
            exports.iter().any(|e| e == name),
            "missing export {name}: {exports:?}"
        );
    }
    assert!(exports.iter().any(|e| e == "_initialize" || e == "_start"));
}

#[test]
fn config_that_is_not_yaml_is_rejected() {
    let host = Host::new();
    let err = match host.vm("policies: [unclosed\n  - {") {
        Ok(_) => panic!("a configuration that is not YAML was accepted"),
        Err(e) => e,
    };
    assert!(err.message.contains("proxy_on_configure"), "{err}");
    assert!(
        !err.logs.is_empty(),
        "the filter should log why it refused: {err}"
    );
}

fn probe(host: &Host) -> mcp_auth_filter_tests::Vm {
    host.vm_with_module(PROBE.as_bytes(), b"")
        .expect("probe loads")
}

#[test]
fn shared_data_cas_between_two_vms() {
    let host = Host::new();
    let (a, b) = (probe(&host), probe(&host));
    let status =
        |vm: &mcp_auth_filter_tests::Vm, path: &str| vm.request(Request::get(path)).status();

    assert_eq!(status(&a, "/g"), 201, "absent key: NotFound");
    assert_eq!(status(&a, "/s"), 200, "cas 0 always writes");
    assert_eq!(status(&a, "/g"), 200);
    assert_eq!(status(&b, "/g"), 200);
    assert_eq!(status(&a, "/s"), 200, "A wins with the CAS both read");
    assert_eq!(status(&b, "/s"), 208, "B's CAS is stale: CasMismatch");
    assert_eq!(status(&b, "/g"), 200);
    assert_eq!(status(&b, "/s"), 200, "after re-reading, B writes");

    let (value, cas) = host.shared_data("key").unwrap();
    assert_eq!(value, b"value");
    assert!(!host.set_shared_data("key", b"x", cas.wrapping_add(1)));
    assert!(host.set_shared_data("key", b"x", cas));
}

#[test]
fn advance_fires_ticks_in_time_order() {
    let host = Host::new();
    let (a, _b) = (probe(&host), probe(&host));
    assert_eq!(a.tick_period(), Some(Duration::from_secs(1)));
    host.advance(Duration::from_millis(999));
    assert_eq!(host.metric("ticks"), Some(0));
    host.advance(Duration::from_millis(2501));
    // Two VMs, ticks at +1s, +2s, +3s each; the metric is process-wide as in Envoy.
    assert_eq!(host.metric("ticks"), Some(6));
    assert_eq!(host.metric("last_tick_s"), Some(START_TIME_UNIX as i64 + 3));
    assert_eq!(
        host.now(),
        UNIX_EPOCH + Duration::from_secs(START_TIME_UNIX) + Duration::from_millis(3500)
    );
}

#[test]
fn a_trap_is_reported_with_what_the_module_logged() {
    let host = Host::new();
    let vm = probe(&host);
    let trap = vm.try_request(Request::get("/t")).unwrap_err();
    assert!(
        trap.output.iter().any(|l| l.contains("about to trap")),
        "{trap}"
    );
    assert!(trap.to_string().contains("unreachable"), "{trap}");
    // A crashed VM fails closed, as Envoy's does.
    let after = vm.try_request(Request::get("/g")).unwrap();
    match after {
        Outcome::Local(r) => {
            assert_eq!(r.status, 503);
            assert_eq!(r.details.as_deref(), Some("wasm_fail_stream"));
        }
        other => panic!("expected a local 503, got {other:?}"),
    }
}

#[test]
#[should_panic(expected = "about to trap")]
fn request_panics_when_the_module_traps() {
    let host = Host::new();
    probe(&host).request(Request::get("/t"));
}

// --- tokens -------------------------------------------------------------------------------

fn verify_with_jwt_compact(token: &str, key: &Key) -> Value {
    use jwt_compact::alg::{Ed25519, Es256, Rsa};
    use jwt_compact::jwk::JsonWebKey;
    use jwt_compact::{AlgorithmExt, UntrustedToken};

    let jwk: JsonWebKey<'_> = serde_json::from_value(key.jwk()).unwrap();
    let untrusted = UntrustedToken::new(token).unwrap();
    match untrusted.algorithm() {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => {
            let pk = rsa::RsaPublicKey::try_from(&jwk).unwrap();
            let alg = Rsa::with_name(untrusted.algorithm());
            alg.validator::<Value>(&pk)
                .validate(&untrusted)
                .unwrap()
                .claims()
                .custom
                .clone()
        }
        "ES256" => {
            let pk = p256::ecdsa::VerifyingKey::try_from(&jwk).unwrap();
            Es256
                .validator::<Value>(&pk)
                .validate(&untrusted)
                .unwrap()
                .claims()
                .custom
                .clone()
        }
        "EdDSA" => {
            let pk = ed25519_compact::PublicKey::try_from(&jwk).unwrap();
            Ed25519
                .validator::<Value>(&pk)
                .validate(&untrusted)
                .unwrap()
                .claims()
                .custom
                .clone()
        }
        other => panic!("unexpected alg {other}"),
    }
}

#[test]
fn minted_tokens_verify_natively_against_their_jwk() {
    let rsa = Key::rsa();
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let token = TokenBuilder::new(&rsa)
            .alg(alg)
            .groups(&["AI-Users"])
            .sign();
        let claims = verify_with_jwt_compact(&token, &rsa);
        assert_eq!(claims["iss"], tokens::OKTA_ISSUER, "{alg}");
        assert_eq!(claims["groups"], json!(["AI-Users"]));
    }
    for key in [Key::p256(), Key::ed25519()] {
        let token = TokenBuilder::new(&key).sign();
        let claims = verify_with_jwt_compact(&token, &key);
        assert_eq!(claims["aud"], tokens::OKTA_AUDIENCE);
    }
}

#[test]
fn es384_signatures_verify_with_p384() {
    use p384::ecdsa::signature::Verifier;
    let key = Key::p384();
    let token = TokenBuilder::new(&key).sub("bob").sign();
    let jwk = key.jwk();
    assert_eq!(jwk["crv"], "P-384");
    let mut sec1 = vec![4u8];
    sec1.extend(B64.decode(jwk["x"].as_str().unwrap()).unwrap());
    sec1.extend(B64.decode(jwk["y"].as_str().unwrap()).unwrap());
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = B64.decode(sig).unwrap();
    assert_eq!(sig.len(), 96, "raw r||s");
    let sig = p384::ecdsa::Signature::from_slice(&sig).unwrap();
    vk.verify(input.as_bytes(), &sig).unwrap();
    let (header, claims) = tokens::decode_unverified(&token);
    assert_eq!(header["alg"], "ES384");
    assert_eq!(header["kid"], json!(key.kid));
    assert_eq!(claims["sub"], "bob");
}

#[test]
fn builder_fields_and_forgeries_have_the_expected_shape() {
    let rsa = Key::rsa();
    let token = TokenBuilder::at(&rsa, 1_000)
        .no_kid()
        .exp_in(-5)
        .nbf_in(10)
        .iat(7)
        .sign();
    let (header, claims) = tokens::decode_unverified(&token);
    assert!(header.get("kid").is_none());
    assert_eq!(
        (
            claims["exp"].clone(),
            claims["nbf"].clone(),
            claims["iat"].clone()
        ),
        (json!(995), json!(1010), json!(7))
    );

    let claims = tokens::okta_claims(START_TIME_UNIX);
    let none = tokens::alg_none_token(&claims, "nOnE");
    assert!(none.ends_with('.'));
    assert_eq!(tokens::decode_unverified(&none).0["alg"], "nOnE");

    let pem = rsa.public_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let forged = tokens::hs256_with_public_key(&claims, pem.as_bytes());
    let (input, sig) = forged.rsplit_once('.').unwrap();
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(pem.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    mac.verify_slice(&B64.decode(sig).unwrap()).unwrap();

    let good = TokenBuilder::new(&rsa).sign();
    let bad = tokens::tamper_signature(&good);
    assert_ne!(good, bad);
    let untrusted = jwt_compact::UntrustedToken::new(&bad).unwrap();
    let jwk: jwt_compact::jwk::JsonWebKey<'_> = serde_json::from_value(rsa.jwk()).unwrap();
    let pk = rsa::RsaPublicKey::try_from(&jwk).unwrap();
    use jwt_compact::AlgorithmExt;
    assert!(
        jwt_compact::alg::Rsa::rs256()
            .validator::<Value>(&pk)
            .validate(&untrusted)
            .is_err()
    );

    let set = tokens::jwks(&[&rsa, &Key::p256()]);
    assert_eq!(set["keys"].as_array().unwrap().len(), 2);
    assert_eq!(set["keys"][0]["kid"], "rsa-0");
}
