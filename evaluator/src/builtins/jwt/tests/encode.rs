//! `io.jwt.encode_sign` / `encode_sign_raw`: known-answer tests from RFC
//! 7515, and round trips through `decode_verify` for every algorithm with
//! private JWKs made by `crypto.x509.parse_rsa_private_key`.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

use super::*;
use crate::builtins::crypto;

const RFC_HS256_KEY: &str = r#"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#;

fn encode_raw(header: &str, payload: &str, key: &str) -> Result<Value, BuiltinError> {
    run("io.jwt.encode_sign_raw", &[s(header), s(payload), s(key)])
}

fn encode(header: &str, payload: &str, key: &str) -> Result<Value, BuiltinError> {
    run(
        "io.jwt.encode_sign",
        &[json(header), json(payload), json(key)],
    )
}

fn private_jwk(pkcs8: &[u8]) -> Value {
    crypto::call(
        "crypto.x509.parse_rsa_private_key",
        &[s(&pem("PRIVATE KEY", pkcs8))],
    )
    .expect("jwk")
}

fn text(v: Result<Value, BuiltinError>) -> String {
    v.expect("token").as_string().expect("string").to_string()
}

#[test]
fn rfc7515_hs256_appendix_a1() {
    let header = "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
    let payload =
        "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
    assert_eq!(
        text(encode_raw(header, payload, RFC_HS256_KEY)),
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    );
}

#[test]
fn objects_are_marshalled_sorted_and_sets_as_arrays() {
    let header = json(r#"{"typ":"JWT","alg":"HS256"}"#);
    let payload = json(r#"{"iss":"joe","aud":["bob","saul"]}"#);
    let mut set = std::collections::BTreeSet::new();
    set.insert(s("saul"));
    set.insert(s("bob"));
    let mut with_set = std::collections::BTreeMap::new();
    with_set.insert(s("iss"), s("joe"));
    with_set.insert(s("aud"), Value::from(set));
    let key = json(RFC_HS256_KEY);
    let a = run(
        "io.jwt.encode_sign",
        &[header.clone(), payload, key.clone()],
    );
    let b = run("io.jwt.encode_sign", &[header, Value::from(with_set), key]);
    assert_eq!(a, b);
    let token = text(a);
    assert!(token.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
}

#[test]
fn header_and_payload_errors_follow_jwsbb() {
    let err = |r: Result<Value, BuiltinError>| match r {
        Err(BuiltinError::Invalid { reason, .. }) => reason,
        other => panic!("expected an error, got {other:?}"),
    };
    let p = r#"{"iss":"joe"}"#;
    assert!(err(encode_raw("", p, RFC_HS256_KEY)).contains("cannot parse empty string"));
    assert!(err(encode_raw("e", p, RFC_HS256_KEY)).contains(r#"header "alg" not found"#));
    assert!(err(encode_raw("{}", p, RFC_HS256_KEY)).contains(r#"header "alg" not found"#));
    assert!(err(encode_raw("{\"typ:\"JWT\"}", p, RFC_HS256_KEY)).contains("cannot parse JSON"));
    assert_eq!(
        err(encode_raw(r#"{"alg":"dummy"}"#, p, RFC_HS256_KEY)),
        "unknown JWS algorithm: dummy"
    );
    let hs = r#"{"typ":"JWT","alg":"HS256"}"#;
    assert_eq!(
        err(encode_raw(hs, "e", RFC_HS256_KEY)),
        "type is JWT but payload is not JSON"
    );
    // Another `typ` lets any payload through.
    assert!(encode_raw(r#"{"typ":"text","alg":"HS256"}"#, "e", RFC_HS256_KEY).is_ok());
    // A public key cannot sign; an HMAC needs an `oct` key.
    let k = keys();
    assert!(encode_raw(r#"{"alg":"RS256"}"#, p, &rsa_jwk(&k.rsa, "")).is_err());
    assert!(encode_raw(r#"{"alg":"RS256"}"#, p, RFC_HS256_KEY).is_err());
    assert!(encode_raw(hs, p, "not a key").is_err());
    assert!(encode_raw(hs, p, r#"{"keys":[]}"#).is_err());
    assert!(matches!(
        run(
            "io.jwt.encode_sign_raw",
            &[s(hs), Value::from(1), s(RFC_HS256_KEY)]
        ),
        Err(BuiltinError::Operand { position: 2, .. })
    ));
}

/// Signs with `alg` and the private JWK, then verifies with `public`.
fn round_trip(alg: &str, private: &Value, public: &str) {
    let header = json(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
    let payload = json(r#"{"iss":"xxx","n":1}"#);
    let token = text(run(
        "io.jwt.encode_sign",
        &[header, payload, private.clone()],
    ));
    let constraints = format!(
        r#"{{"cert":{}}}"#,
        serde_json::to_string(public).expect("json")
    );
    assert_eq!(
        dv(&token, &constraints),
        verified(
            &format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#),
            r#"{"iss":"xxx","n":1}"#
        ),
        "{alg}"
    );
}

#[test]
fn every_algorithm_round_trips() {
    let rng = SystemRandom::new();
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa");
    let rsa_private = private_jwk(
        AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa)
            .expect("der")
            .as_ref(),
    );
    let rsa_public = pem(
        "PUBLIC KEY",
        rsa.public_key().as_der().expect("der").as_ref(),
    );
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        round_trip(alg, &rsa_private, &rsa_public);
    }
    for (alg, curve) in [
        ("ES256", &signature::ECDSA_P256_SHA256_FIXED_SIGNING),
        ("ES384", &signature::ECDSA_P384_SHA384_FIXED_SIGNING),
        ("ES512", &signature::ECDSA_P521_SHA512_FIXED_SIGNING),
    ] {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(curve, &rng).expect("pkcs8");
        let pair = EcdsaKeyPair::from_pkcs8(curve, pkcs8.as_ref()).expect("pair");
        round_trip(alg, &private_jwk(pkcs8.as_ref()), &ec_pem(&pair));
    }
    let ed = Ed25519KeyPair::generate().expect("ed25519");
    let ed_private = private_jwk(ed.to_pkcs8v1().expect("pkcs8").as_ref());
    round_trip("EdDSA", &ed_private, &ed_pem(&ed));
    // A P-256 key cannot make an ES384 signature here.
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .expect("pkcs8");
    let header = json(r#"{"alg":"ES384"}"#);
    assert!(
        run(
            "io.jwt.encode_sign",
            &[header, json("{}"), private_jwk(pkcs8.as_ref())]
        )
        .is_err()
    );
}

#[test]
fn hmac_round_trips_through_verify() {
    let token = text(encode(
        r#"{"alg":"HS512"}"#,
        r#"{"sub":"a<b"}"#,
        r#"{"kty":"oct","k":"c2VjcmV0"}"#,
    ));
    assert_eq!(verify("io.jwt.verify_hs512", &token, "secret"), T);
    let decoded = run("io.jwt.decode", &[s(&token)]).expect("decode");
    assert_eq!(
        decoded.as_array().expect("array")[1],
        json(r#"{"sub":"a<b"}"#)
    );
}
