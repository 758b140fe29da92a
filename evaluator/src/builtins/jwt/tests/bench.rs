//! Micro-measurement of the verifiers (ignored; run it in release):
//!
//! ```sh
//! cargo test --release -p policy-agent --lib -- --ignored jwt_micro_bench --nocapture
//! ```
//!
//! Builtins: "same token" repeats one call (a client presenting the same
//! bearer token: the signature check is cached); "fresh tokens" gives each
//! call a token never seen before (the key text is cached, the signature
//! is checked). Primitives: one RS256 signature on a 2048-bit key with
//! `aws-lc-rs` (key parsed once, as the key cache holds it, and parsed at
//! each call) and with the reference path on `num-bigint`.

use std::hint::black_box;
use std::time::Instant;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{KeyPair, UnparsedPublicKey};
use num_bigint::BigUint;

use super::super::sig::{self, Hash, RsaKey};
use super::*;

fn per_call_us(calls: usize, mut f: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    for i in 0..calls {
        f(i);
    }
    start.elapsed().as_secs_f64() * 1e6 / calls as f64
}

#[test]
#[ignore = "timing; run with --release --ignored --nocapture"]
fn jwt_micro_bench() {
    const CALLS: usize = 1000;
    let k = keys();
    let pem = rsa_pem(&k.rsa);
    let jwk = format!(r#"{{"keys":[{}]}}"#, rsa_jwk(&k.rsa, r#","kid":"k1""#));
    let constraints = json(&format!(
        r#"{{"cert": {}, "time": 1700000000000000000}}"#,
        serde_json::to_string(&pem).expect("json")
    ));
    // Tokens that differ in their payload; each list is used once per run.
    let tokens = |alg: &str, tag: &str| -> Vec<Value> {
        (0..CALLS)
            .map(|i| {
                s(&token(
                    alg,
                    &format!(r#"{{"sub":"{tag}{i}","exp":4102444800}}"#),
                ))
            })
            .collect()
    };
    let ec = ec_pem(&k.p256);
    let cases: [(&str, &str, &str, Value); 5] = [
        ("io.jwt.verify_rs256", "PEM", "RS256", s(&pem)),
        ("io.jwt.verify_rs256", "JWKS", "RS256", s(&jwk)),
        ("io.jwt.verify_ps256", "PEM", "PS256", s(&pem)),
        ("io.jwt.verify_es256", "PEM", "ES256", s(&ec)),
        ("io.jwt.decode_verify", "PEM (RS256)", "RS256", constraints),
    ];
    for (case, (name, key_kind, alg, key)) in cases.iter().enumerate() {
        let warm = tokens(alg, &format!("warm{case}-"));
        let fresh = tokens(alg, &format!("fresh{case}-"));
        let call = |jwt: &Value| {
            let r = run(name, &[jwt.clone(), key.clone()]);
            assert!(
                matches!(&r, Ok(Value::Bool(true)))
                    || matches!(&r, Ok(Value::Array(a)) if a[0] == Value::Bool(true))
            );
            black_box(r).ok();
        };
        // Warm-up on other tokens (the key text gets cached).
        per_call_us(CALLS / 10, |i| call(&warm[i]));
        let fresh_us = per_call_us(CALLS, |i| call(&fresh[i]));
        let same_us = per_call_us(CALLS, |_| call(&fresh[0]));
        println!(
            "{name:22} {key_kind:12} fresh tokens {fresh_us:8.2} µs/call   same token {same_us:8.2} µs/call"
        );
    }

    // The primitives on one RS256 signature.
    let public = k.rsa.public_key();
    let n = BigUint::from_bytes_be(public.modulus().big_endian_without_leading_zero());
    let e = BigUint::from_bytes_be(public.exponent().big_endian_without_leading_zero());
    let msg = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
    let signature = sign("RS256", msg, b"");
    let key = RsaKey::new(n.clone(), e.clone());
    let der = public.as_der().expect("der");
    let primitives: [(&str, &dyn Fn() -> bool); 3] = [
        ("aws-lc-rs, key parsed once", &|| {
            key.verify_pkcs1(Hash::Sha256, msg, &signature)
        }),
        ("aws-lc-rs, key parsed per call", &|| {
            UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der.as_ref())
                .verify(msg, &signature)
                .is_ok()
        }),
        ("num-bigint reference", &|| {
            sig::rsa_pkcs1_verify(&n, &e, Hash::Sha256, msg, &signature)
        }),
    ];
    for (what, f) in primitives {
        assert!(f());
        let us = per_call_us(CALLS, |_| assert!(black_box(f())));
        println!("RS256 2048-bit {what:32} {us:8.2} µs/verify");
    }
}
