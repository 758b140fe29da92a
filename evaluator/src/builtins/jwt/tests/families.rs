//! Every algorithm family with real signatures, key formats and key selection.

use regorus::Value;

use super::*;

#[test]
fn every_asymmetric_family_verifies_with_pem_and_jwk() {
    let k = keys();
    let cases: [(&str, String, String, String); 10] = [
        (
            "RS256",
            rsa_pem(&k.rsa),
            rsa_jwk(&k.rsa, ""),
            rsa_pem(&k.rsa2),
        ),
        (
            "RS384",
            rsa_pem(&k.rsa),
            rsa_jwk(&k.rsa, ""),
            rsa_pem(&k.rsa2),
        ),
        (
            "RS512",
            rsa_pem(&k.rsa),
            rsa_jwk(&k.rsa, ""),
            rsa_pem(&k.rsa2),
        ),
        (
            "PS256",
            rsa_pem(&k.rsa),
            rsa_jwk(&k.rsa, ""),
            rsa_pem(&k.rsa2),
        ),
        (
            "PS384",
            rsa_pem(&k.rsa),
            rsa_jwk(&k.rsa, ""),
            rsa_pem(&k.rsa2),
        ),
        (
            "PS512",
            rsa_pem(&k.rsa),
            rsa_jwk(&k.rsa, ""),
            rsa_pem(&k.rsa2),
        ),
        (
            "ES256",
            ec_pem(&k.p256),
            ec_jwk(&k.p256, "P-256"),
            ec_pem(&k.p256b),
        ),
        (
            "ES384",
            ec_pem(&k.p384),
            ec_jwk(&k.p384, "P-384"),
            ec_pem(&k.p256),
        ),
        (
            "ES512",
            ec_pem(&k.p521),
            ec_jwk(&k.p521, "P-521"),
            ec_pem(&k.p256),
        ),
        ("EdDSA", ed_pem(&k.ed), ed_jwk(&k.ed), rsa_pem(&k.rsa)),
    ];
    let payload = r#"{"sub":"alice","exp":4102444800}"#;
    for (alg, pem, jwk, wrong) in &cases {
        let name = format!("io.jwt.verify_{}", alg.to_lowercase());
        let jwt = token(alg, payload);
        assert_eq!(verify(&name, &jwt, pem), T, "{alg} pem");
        assert_eq!(verify(&name, &jwt, jwk), T, "{alg} jwk");
        assert_eq!(
            verify(
                &name,
                &jwt,
                &format!(r#"{{"keys":[{}, {jwk}]}}"#, rsa_jwk(&k.rsa2, ""))
            ),
            T,
            "{alg} jwks"
        );
        assert_eq!(verify(&name, &jwt, wrong), F, "{alg} wrong key");
        let tampered = jwt.replacen(&b64u(payload.as_bytes()), &b64u(br#"{"sub":"mallory"}"#), 1);
        assert_eq!(verify(&name, &tampered, pem), F, "{alg} tampered");

        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let cert = format!(
            r#"{{"cert": {}}}"#,
            serde_json::to_string(pem).expect("json")
        );
        assert_eq!(
            dv(&jwt, &cert),
            verified(&header, payload),
            "{alg} decode_verify"
        );
        let cert = format!(
            r#"{{"cert": {}}}"#,
            serde_json::to_string(wrong).expect("json")
        );
        assert_eq!(
            dv(&jwt, &cert),
            unverified(),
            "{alg} decode_verify wrong key"
        );
    }
}

#[test]
fn hmac_family() {
    for alg in ["HS256", "HS384", "HS512"] {
        let name = format!("io.jwt.verify_{}", alg.to_lowercase());
        let jwt = token(alg, r#"{"a":1}"#);
        assert_eq!(verify(&name, &jwt, "secret"), T, "{alg}");
        assert_eq!(verify(&name, &jwt, "Secret"), F, "{alg} wrong secret");
        let constraints = r#"{"secret":"secret"}"#;
        assert_eq!(
            dv(&jwt, constraints),
            verified(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#), r#"{"a":1}"#)
        );
    }
    // The builtin's hash is fixed: an HS384 token does not verify as HS256.
    assert_eq!(
        verify("io.jwt.verify_hs256", &token("HS384", "{}"), "secret"),
        F
    );
    // A JWK `oct` key serves as an HMAC key for decode_verify only.
    let oct = format!(r#"{{"kty":"oct","k":"{}"}}"#, b64u(b"secret"));
    assert_eq!(
        verify("io.jwt.verify_hs256", &token("HS256", "{}"), &oct),
        F
    );
    let constraints = format!(
        r#"{{"cert":{}}}"#,
        serde_json::to_string(&oct).expect("json")
    );
    assert_eq!(
        dv(&token("HS256", "{}"), &constraints),
        verified(r#"{"alg":"HS256","typ":"JWT"}"#, "{}")
    );
}

#[test]
fn certificate_key() {
    // A self-signed P-256 certificate and a token signed with its key.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBDDCBtKADAgECAgID6DAKBggqhkjOPQQDAjAPMQ0wCwYDVQQDDAR0ZXN0MCAX
DTIwMDEwMTAwMDAwMFoYDzIxMjAwMTAxMDAwMDAwWjAPMQ0wCwYDVQQDDAR0ZXN0
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEv/I/DnW4ie29DD5olaYNf2bU6gpB
PxbGHTDgled8ObpUX5+5/rjb6KXf0lDEyuHK+6db0ZCjYsoXM12Eu/tkUTAKBggq
hkjOPQQDAgNHADBEAiBup8MVDdWZ2laWQDuvY/ET29KRvE04k7LoEyTesnT6JQIg
a5M34oLjDcqChu+ELr0nFcvmV0Mj8wiNPchcTHQ8nn8=
-----END CERTIFICATE-----
";
    const JWT: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjZXJ0IiwiZXhwIjo0MTAyNDQ0ODAwfQ.\
4WK62vy-Po72dEgErYto8EBUBoR44Cj7QJHI4bUKeKfYASWIeuGSby6D1bhuKlxBJ3G_lOHptkZ3hKhW7AqVYw";
    assert_eq!(verify("io.jwt.verify_es256", JWT, CERT), T);
    assert_eq!(verify("io.jwt.verify_rs256", JWT, CERT), F);
    let constraints = format!(
        r#"{{"cert":{}}}"#,
        serde_json::to_string(CERT).expect("json")
    );
    assert_eq!(
        dv(JWT, &constraints),
        verified(
            r#"{"alg":"ES256","typ":"JWT"}"#,
            r#"{"sub":"cert","exp":4102444800}"#
        )
    );
    // A chain (extra data after the block) is an error, as in OPA.
    assert!(verify("io.jwt.verify_es256", JWT, &format!("{CERT}{CERT}")).is_err());
}

#[test]
fn decode_returns_header_payload_and_hex_signature() {
    let jwt = format!(
        "{}.{}.{}",
        b64u(br#"{"alg":"HS256"}"#),
        b64u(br#"{"a":[1,"x"]}"#),
        b64u(b"sig")
    );
    assert_eq!(
        run("io.jwt.decode", &[s(&jwt)]),
        Ok(Value::from(vec![
            json(r#"{"alg":"HS256"}"#),
            json(r#"{"a":[1,"x"]}"#),
            s("736967")
        ]))
    );
    // Nested token (cty JWT), quotes trimmed.
    let inner = token("HS256", r#"{"in":1}"#);
    let outer = token_with(
        "HS256",
        r#"{"alg":"HS256","cty":"JWT"}"#,
        &format!("\"{inner}\""),
        b"secret",
    );
    let decoded = run("io.jwt.decode", &[s(&outer)]).expect("decode");
    assert_eq!(decoded, run("io.jwt.decode", &[s(&inner)]).expect("decode"));
}

/// The same token decodes to the same value again, tokens do not mix, and
/// a payload beyond the float64 range is an error each time.
#[test]
fn decode_is_repeatable_and_rejects_numbers_beyond_float64() {
    let a = token("HS256", r#"{"sub":"a","n":1}"#);
    let b = token("HS256", r#"{"sub":"b","n":2}"#);
    let first = run("io.jwt.decode", &[s(&a)]).expect("decode");
    for _ in 0..3 {
        assert_eq!(run("io.jwt.decode", &[s(&a)]), Ok(first.clone()));
        assert_ne!(run("io.jwt.decode", &[s(&b)]), Ok(first.clone()));
    }
    // A payload beyond the float64 range is an error, each time.
    let huge = token("HS256", r#"{"sub":"c","exp":1e400}"#);
    for _ in 0..2 {
        assert!(run("io.jwt.decode", &[s(&huge)]).is_err());
    }
    let exact = token("HS256", r#"{"exp":41024448000000000000000000}"#);
    assert!(run("io.jwt.decode", &[s(&exact)]).is_ok());
}

#[test]
fn alg_none_never_verifies() {
    let none = token_with("none", r#"{"alg":"none"}"#, r#"{"a":1}"#, b"");
    assert!(none.ends_with('.'));
    let k = keys();
    assert_eq!(verify("io.jwt.verify_rs256", &none, &rsa_pem(&k.rsa)), F);
    assert_eq!(verify("io.jwt.verify_es256", &none, &ec_pem(&k.p256)), F);
    assert_eq!(verify("io.jwt.verify_eddsa", &none, &ed_pem(&k.ed)), F);
    assert_eq!(verify("io.jwt.verify_hs256", &none, ""), F);
    assert_eq!(dv(&none, r#"{"secret":"secret"}"#), unverified());
    assert_eq!(
        dv(&none, r#"{"secret":"secret","alg":"none"}"#),
        unverified()
    );
    let cert = format!(
        r#"{{"cert":{}}}"#,
        serde_json::to_string(&rsa_jwk(&k.rsa, "")).expect("json")
    );
    assert_eq!(dv(&none, &cert), unverified());
}

#[test]
fn jwks_selection() {
    let k = keys();
    let header = |kid: &str| format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#);
    let set = format!(
        r#"{{"keys":[{},{}]}}"#,
        rsa_jwk(&k.rsa2, r#","kid":"k2""#),
        rsa_jwk(&k.rsa, r#","kid":"k1""#)
    );
    let jwt = |kid: &str| token_with("RS256", &header(kid), "{}", b"");
    assert_eq!(verify("io.jwt.verify_rs256", &jwt("k1"), &set), T);
    // A matching kid selects that key alone.
    assert_eq!(verify("io.jwt.verify_rs256", &jwt("k2"), &set), F);
    // No match: every key is tried.
    assert_eq!(verify("io.jwt.verify_rs256", &jwt("zz"), &set), T);
    // A key declaring another alg is skipped; an unknown alg is an error.
    assert_eq!(
        verify(
            "io.jwt.verify_rs256",
            &jwt(""),
            &rsa_jwk(&k.rsa, r#","alg":"RS512""#)
        ),
        F
    );
    assert_eq!(
        verify(
            "io.jwt.verify_rs256",
            &jwt(""),
            &rsa_jwk(&k.rsa, r#","alg":"RS256""#)
        ),
        T
    );
    assert!(
        verify(
            "io.jwt.verify_rs256",
            &jwt(""),
            &rsa_jwk(&k.rsa, r#","alg":"foo""#)
        )
        .is_err()
    );
    // Any invalid key makes the whole set an error; an empty set is false.
    assert!(
        verify(
            "io.jwt.verify_rs256",
            &jwt(""),
            &format!(r#"{{"keys":[{},{{"kty":"XYZ"}}]}}"#, rsa_jwk(&k.rsa, ""))
        )
        .is_err()
    );
    assert_eq!(verify("io.jwt.verify_rs256", &jwt(""), r#"{"keys":[]}"#), F);
}

#[test]
fn wrong_key_type_is_false() {
    let k = keys();
    let rs = token("RS256", "{}");
    let es = token("ES256", "{}");
    assert_eq!(verify("io.jwt.verify_rs256", &rs, &ec_pem(&k.p256)), F);
    assert_eq!(verify("io.jwt.verify_es256", &es, &rsa_pem(&k.rsa)), F);
    assert_eq!(verify("io.jwt.verify_eddsa", &es, &ec_pem(&k.p256)), F);
    // PKCS #1 v1.5 and PSS signatures are not interchangeable.
    assert_eq!(verify("io.jwt.verify_ps256", &rs, &rsa_pem(&k.rsa)), F);
    let cert = format!(
        r#"{{"cert":{}}}"#,
        serde_json::to_string(&ec_pem(&k.p256)).expect("json")
    );
    assert_eq!(dv(&rs, &cert), unverified());
}
