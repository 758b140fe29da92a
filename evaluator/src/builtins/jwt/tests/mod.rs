//! Unit tests: every algorithm family with real signatures made here with
//! `aws-lc-rs` (`families`), OPA's `decode_verify` constraint rules and bad
//! input (`rules`), and the differential vectors answered by OPA (`vectors`).

mod bench;
mod encode;
mod families;
mod fast_path;
mod rules;
mod vectors;

use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use regorus::Value;

use super::{BuiltinError, call, decode_verify};

struct Keys {
    rsa: RsaKeyPair,
    rsa2: RsaKeyPair,
    p256: EcdsaKeyPair,
    p256b: EcdsaKeyPair,
    p384: EcdsaKeyPair,
    p521: EcdsaKeyPair,
    ed: Ed25519KeyPair,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa"),
        rsa2: RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa"),
        p256: EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("p256"),
        p256b: EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("p256"),
        p384: EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).expect("p384"),
        p521: EcdsaKeyPair::generate(&signature::ECDSA_P521_SHA512_FIXED_SIGNING).expect("p521"),
        ed: Ed25519KeyPair::generate().expect("ed25519"),
    })
}

fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn rsa_pem(k: &RsaKeyPair) -> String {
    pem("PUBLIC KEY", k.public_key().as_der().expect("der").as_ref())
}

fn rsa_jwk(k: &RsaKeyPair, extra: &str) -> String {
    let n = b64u(k.public_key().modulus().big_endian_without_leading_zero());
    let e = b64u(k.public_key().exponent().big_endian_without_leading_zero());
    format!(r#"{{"kty":"RSA","n":"{n}","e":"{e}"{extra}}}"#)
}

fn ec_pem(k: &EcdsaKeyPair) -> String {
    pem("PUBLIC KEY", k.public_key().as_der().expect("der").as_ref())
}

fn ec_jwk(k: &EcdsaKeyPair, crv: &str) -> String {
    let point = k.public_key().as_ref();
    let size = (point.len() - 1) / 2;
    let (x, y) = point[1..].split_at(size);
    format!(
        r#"{{"kty":"EC","crv":"{crv}","x":"{}","y":"{}"}}"#,
        b64u(x),
        b64u(y)
    )
}

fn ed_pem(k: &Ed25519KeyPair) -> String {
    pem("PUBLIC KEY", k.public_key().as_der().expect("der").as_ref())
}

fn ed_jwk(k: &Ed25519KeyPair) -> String {
    format!(
        r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
        b64u(k.public_key().as_ref())
    )
}

/// Signs `input` with `alg` (header algorithm name) using the test keys.
fn sign(alg: &str, input: &[u8], secret: &[u8]) -> Vec<u8> {
    let k = keys();
    let rng = SystemRandom::new();
    let rsa = |enc: &'static dyn signature::RsaEncoding| {
        let mut sig = vec![0; k.rsa.public_modulus_len()];
        k.rsa.sign(enc, &rng, input, &mut sig).expect("rsa sign");
        sig
    };
    fn hmac<M: Mac + hmac::digest::KeyInit>(secret: &[u8], input: &[u8]) -> Vec<u8> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(secret).expect("hmac");
        m.update(input);
        m.finalize().into_bytes().to_vec()
    }
    match alg {
        "RS256" => rsa(&signature::RSA_PKCS1_SHA256),
        "RS384" => rsa(&signature::RSA_PKCS1_SHA384),
        "RS512" => rsa(&signature::RSA_PKCS1_SHA512),
        "PS256" => rsa(&signature::RSA_PSS_SHA256),
        "PS384" => rsa(&signature::RSA_PSS_SHA384),
        "PS512" => rsa(&signature::RSA_PSS_SHA512),
        "ES256" => k.p256.sign(&rng, input).expect("sign").as_ref().to_vec(),
        "ES384" => k.p384.sign(&rng, input).expect("sign").as_ref().to_vec(),
        "ES512" => k.p521.sign(&rng, input).expect("sign").as_ref().to_vec(),
        "EdDSA" => k.ed.sign(input).as_ref().to_vec(),
        "HS256" => hmac::<Hmac<sha2::Sha256>>(secret, input),
        "HS384" => hmac::<Hmac<sha2::Sha384>>(secret, input),
        "HS512" => hmac::<Hmac<sha2::Sha512>>(secret, input),
        _ => Vec::new(), // "none"
    }
}

/// A compact JWS over the given header and payload JSON texts.
fn token_with(alg: &str, header: &str, payload: &str, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64u(header.as_bytes()), b64u(payload.as_bytes()));
    let sig = sign(alg, input.as_bytes(), secret);
    format!("{input}.{}", b64u(&sig))
}

fn token(alg: &str, payload: &str) -> String {
    token_with(
        alg,
        &format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#),
        payload,
        b"secret",
    )
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn json(v: &str) -> Value {
    Value::from_json_str(v).expect("json")
}

fn run(name: &str, args: &[Value]) -> Result<Value, BuiltinError> {
    call(name, args)
}

fn verify(name: &str, jwt: &str, key: &str) -> Result<Value, BuiltinError> {
    run(name, &[s(jwt), s(key)])
}

/// `decode_verify` at a fixed wall clock (2023-11-14T22:13:20Z).
fn dv(jwt: &str, constraints: &str) -> Result<Value, BuiltinError> {
    decode_verify(&[s(jwt), json(constraints)], 1_700_000_000e9)
}

fn unverified() -> Result<Value, BuiltinError> {
    Ok(json("[false, {}, {}]"))
}

fn verified(header: &str, payload: &str) -> Result<Value, BuiltinError> {
    Ok(Value::from(vec![
        Value::Bool(true),
        json(header),
        json(payload),
    ]))
}

const T: Result<Value, BuiltinError> = Ok(Value::Bool(true));
const F: Result<Value, BuiltinError> = Ok(Value::Bool(false));
