//! `io.jwt.encode_sign` and `io.jwt.encode_sign_raw` (OPA's
//! `commonBuiltinJWTEncodeSign` with `jwx` v3's `jwsbb` signers).
//!
//! The header is read as `jwsbb` reads it (a lenient `fastjson` parse; the
//! first `alg` and `typ` string members count) and signed as given. RSA
//! keys sign through `aws-lc-rs` when it takes the key (2048 bits and
//! more), else through the reference implementation on `num-bigint`
//! (Go accepts 1024 bits and more); that path is not constant-time and
//! serves only keys `aws-lc-rs` refuses. PS* and ES* signatures are
//! randomized, as in Go. Error messages never quote key material.

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use base64::Engine;
use hmac::{Hmac, Mac};
use num_bigint::BigUint;
use regorus::Value;
use sha2::{Sha256, Sha384, Sha512};

use super::json::{self, Json};
use super::sig::{self, Curve, Hash};
use super::{KeyMaterial, TOKEN_ALGORITHMS, b64, invalid, jwk, marshal};
use crate::builtins::{BuiltinError, arg_str};

pub(super) const ENCODE_SIGN: &str = "io.jwt.encode_sign";
pub(super) const ENCODE_SIGN_RAW: &str = "io.jwt.encode_sign_raw";

/// `io.jwt.encode_sign(headers, payload, key)`: the operands as Go
/// marshals them, then signed.
pub(super) fn encode_sign(args: &[Value]) -> Result<Value, BuiltinError> {
    let err = |e: String| invalid(ENCODE_SIGN, e);
    let operand = |i: usize, what: &str| -> Result<String, BuiltinError> {
        let v = args.get(i).ok_or_else(|| BuiltinError::Operand {
            name: ENCODE_SIGN,
            position: i + 1,
            expected: "an object",
        })?;
        marshal::marshal(v).map_err(|e| err(format!("failed to marshal JWT {what}: {e}")))
    };
    let header = operand(0, "headers")?;
    let payload = operand(1, "payload")?;
    let key = operand(2, "signature")?;
    encode(header.as_bytes(), payload.as_bytes(), &key)
        .map(Value::from)
        .map_err(err)
}

/// `io.jwt.encode_sign_raw(headers, payload, key)`: JSON texts signed as
/// they are.
pub(super) fn encode_sign_raw(args: &[Value]) -> Result<Value, BuiltinError> {
    let key = arg_str(ENCODE_SIGN_RAW, args, 2)?;
    let header = arg_str(ENCODE_SIGN_RAW, args, 0)?;
    let payload = arg_str(ENCODE_SIGN_RAW, args, 1)?;
    encode(header.as_bytes(), payload.as_bytes(), key)
        .map(Value::from)
        .map_err(|e| invalid(ENCODE_SIGN_RAW, e))
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// OPA's `commonBuiltinJWTEncodeSign`.
fn encode(header: &[u8], payload: &[u8], jwk_text: &str) -> Result<String, String> {
    let key = signing_key(jwk_text)?;
    let doc =
        lenient_header(header).map_err(|e| format!("missing or invalid 'alg' header: {e}"))?;
    let alg = header_string(doc.as_ref(), "alg")
        .map_err(|e| format!("missing or invalid 'alg' header: {e}"))?;
    if !TOKEN_ALGORITHMS.contains(&alg.as_str()) {
        return Err(format!("unknown JWS algorithm: {alg}"));
    }
    let typ = header_string(doc.as_ref(), "typ");
    if typ.as_deref().map_or(true, |t| t == "JWT") && json::parse(payload).is_none() {
        return Err("type is JWT but payload is not JSON".into());
    }
    let input = format!("{}.{}", b64url(header), b64url(payload));
    let signature = sign(&key, &alg, input.as_bytes())?;
    Ok(format!("{input}.{}", b64url(&signature)))
}

/// `jwsbb.HeaderParse` (`fastjson`): a JSON document, or `None` for a bare
/// number-like token that `fastjson` accepts without checking.
fn lenient_header(header: &[u8]) -> Result<Option<Json>, String> {
    let trimmed = header.trim_ascii();
    if trimmed.is_empty() {
        return Err("cannot parse JSON: cannot parse empty string".into());
    }
    if let Some(doc) = json::parse(trimmed) {
        return Ok(Some(doc));
    }
    let number_like = trimmed
        .iter()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if number_like {
        return Ok(None);
    }
    Err("cannot parse JSON: invalid header".into())
}

/// `jwsbb.HeaderGetString`: the first member `name` holding a string.
fn header_string(doc: Option<&Json>, name: &str) -> Result<String, String> {
    match doc.and_then(|d| d.members(name).next()) {
        Some(Json::String(s)) => Ok(s.clone()),
        _ => Err(format!("jwsbb: header \"{name}\" not found")),
    }
}

/// An RSA private key with its CRT values.
struct RsaPrivate {
    n: BigUint,
    e: BigUint,
    d: BigUint,
    p: BigUint,
    q: BigUint,
    dp: BigUint,
    dq: BigUint,
    qi: BigUint,
}

/// A key `jwsbb.Sign` can use.
enum SigningKey {
    Oct(Vec<u8>),
    Rsa(Box<RsaPrivate>),
    Ec {
        curve: Curve,
        point: Vec<u8>,
        d: Vec<u8>,
    },
    Ed25519 {
        seed: Vec<u8>,
        public: Vec<u8>,
    },
    /// A public key: signing fails.
    Public,
}

/// `jwk.Parse` and the first key of the set.
fn signing_key(text: &str) -> Result<SigningKey, String> {
    let parse_err = |e: String| format!("failed to parse jwk: {e}");
    let first = match json::parse(text.as_bytes()) {
        Some(doc @ Json::Object(_)) if doc.members("keys").next().is_some() => {
            let mut first = None;
            for list in doc.members("keys") {
                let Json::Array(items) = list else {
                    return Err(parse_err("\"keys\" must be an array".into()));
                };
                for item in items {
                    jwk::parse_key(item).map_err(parse_err)?;
                    if first.is_none() {
                        first = Some(item.clone());
                    }
                }
            }
            first.ok_or("no keys found in JWK set")?
        }
        _ => json::parse_prefix(text.as_bytes()).ok_or_else(|| parse_err("invalid JSON".into()))?,
    };
    let key = jwk::parse_key(&first).map_err(parse_err)?;
    let member = |name: &str| -> Option<Vec<u8>> {
        match first.members(name).last() {
            Some(Json::String(s)) => b64::jwx(s),
            _ => None,
        }
    };
    Ok(match key.material {
        KeyMaterial::Oct(k) => SigningKey::Oct(k),
        _ if !key.private => SigningKey::Public,
        KeyMaterial::Rsa(_) => {
            let int = |name: &str| member(name).map(|b| BigUint::from_bytes_be(&b));
            let (Some(n), Some(e), Some(d), Some(p), Some(q)) =
                (int("n"), int("e"), int("d"), int("p"), int("q"))
            else {
                return Err("failed to export jwk.Key to raw format".into());
            };
            let one = BigUint::from(1u8);
            if p <= one || q <= one {
                return Err("crypto/rsa: invalid prime".into());
            }
            let dp = int("dp").unwrap_or_else(|| &d % (&p - &one));
            let dq = int("dq").unwrap_or_else(|| &d % (&q - &one));
            let qi = match int("qi") {
                Some(qi) => qi,
                None => q.modinv(&p).ok_or("crypto/rsa: invalid prime")?,
            };
            SigningKey::Rsa(Box::new(RsaPrivate {
                n,
                e,
                d,
                p,
                q,
                dp,
                dq,
                qi,
            }))
        }
        KeyMaterial::Ec { curve, point } => SigningKey::Ec {
            curve,
            point,
            d: member("d").ok_or("failed to export jwk.Key to raw format")?,
        },
        KeyMaterial::Ed25519(public) => SigningKey::Ed25519 {
            seed: member("d").ok_or("failed to export jwk.Key to raw format")?,
            public,
        },
        KeyMaterial::Unusable => SigningKey::Public,
    })
}

/// `jwsbb.Sign(key, alg, input)`.
fn sign(key: &SigningKey, alg: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    let hash = match alg.get(2..) {
        Some("256") => Some(Hash::Sha256),
        Some("384") => Some(Hash::Sha384),
        Some("512") => Some(Hash::Sha512),
        _ => None,
    };
    let wrong_key = |want: &str| format!("jwsbb.Sign: invalid key type, {want} is required");
    match (alg.get(..2), hash, key) {
        (_, _, _) if alg == "EdDSA" => match key {
            SigningKey::Ed25519 { seed, public } => {
                Ed25519KeyPair::from_seed_and_public_key(seed, public)
                    .map(|pair| pair.sign(input).as_ref().to_vec())
                    .map_err(|_| "jwsbb.Sign: invalid Ed25519 key".to_string())
            }
            _ => Err(wrong_key("ed25519.PrivateKey")),
        },
        (Some("HS"), Some(hash), key) => match key {
            SigningKey::Oct(secret) if !secret.is_empty() => Ok(hmac_sign(hash, secret, input)),
            SigningKey::Oct(_) => Err("dsig.toHMACKey: missing key while signing payload".into()),
            _ => Err(wrong_key("[]byte")),
        },
        (Some("RS" | "PS"), Some(hash), key) => match key {
            SigningKey::Rsa(k) => rsa_sign(k, hash, alg.starts_with("PS"), input),
            _ => Err(wrong_key("*rsa.PrivateKey")),
        },
        (Some("ES"), Some(hash), key) => match key {
            SigningKey::Ec { curve, point, d } => ecdsa_sign(*curve, hash, point, d, input),
            _ => Err(wrong_key("*ecdsa.PrivateKey")),
        },
        _ => Err(format!(
            "jwsbb.Sign: unsupported signature algorithm {alg:?}"
        )),
    }
}

fn hmac_sign(hash: Hash, key: &[u8], msg: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        match <M as hmac::digest::KeyInit>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(msg);
                mac.finalize().into_bytes().to_vec()
            }
            // HMAC takes keys of any length.
            Err(_) => Vec::new(),
        }
    }
    match hash {
        Hash::Sha256 => run::<Hmac<Sha256>>(key, msg),
        Hash::Sha384 => run::<Hmac<Sha384>>(key, msg),
        Hash::Sha512 => run::<Hmac<Sha512>>(key, msg),
    }
}

fn ecdsa_sign(
    curve: Curve,
    hash: Hash,
    point: &[u8],
    d: &[u8],
    input: &[u8],
) -> Result<Vec<u8>, String> {
    let alg = match (curve, hash) {
        (Curve::P256, Hash::Sha256) => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        (Curve::P384, Hash::Sha384) => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        (Curve::P521, Hash::Sha256) => &signature::ECDSA_P521_SHA256_FIXED_SIGNING,
        (Curve::P521, Hash::Sha384) => &signature::ECDSA_P521_SHA384_FIXED_SIGNING,
        (Curve::P521, Hash::Sha512) => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        _ => return Err("jwsbb.Sign: unsupported curve and hash combination".into()),
    };
    let pair = EcdsaKeyPair::from_private_key_and_public_key(alg, d, point)
        .map_err(|_| "jwsbb.Sign: invalid ECDSA private key".to_string())?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    pair.sign(&rng, input)
        .map(|s| s.as_ref().to_vec())
        .map_err(|_| "failed to sign payload using ecdsa".to_string())
}

/// DER `RSAPrivateKey` (two primes).
fn rsa_private_key_der(k: &RsaPrivate) -> Vec<u8> {
    fn push_len(out: &mut Vec<u8>, len: usize) {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let significant = &bytes[skip..];
        match significant {
            [] => out.push(0),
            [b] if *b < 0x80 => out.push(*b),
            _ => {
                out.push(0x80 | significant.len() as u8);
                out.extend_from_slice(significant);
            }
        }
    }
    fn integer(out: &mut Vec<u8>, v: &BigUint) {
        let bytes = v.to_bytes_be();
        let pad = bytes.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        push_len(out, bytes.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(&bytes);
    }
    let mut body = Vec::new();
    for v in [
        &BigUint::from(0u8),
        &k.n,
        &k.e,
        &k.d,
        &k.p,
        &k.q,
        &k.dp,
        &k.dq,
        &k.qi,
    ] {
        integer(&mut body, v);
    }
    let mut out = vec![0x30];
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// RSASSA-PKCS1-v1_5 or RSASSA-PSS (salt as long as the hash).
fn rsa_sign(k: &RsaPrivate, hash: Hash, pss: bool, input: &[u8]) -> Result<Vec<u8>, String> {
    if k.n.bits() < 1024 {
        return Err("crypto/rsa: 1024-bit or larger RSA keys are required".into());
    }
    if let Ok(pair) = RsaKeyPair::from_der(&rsa_private_key_der(k)) {
        let encoding: &'static dyn signature::RsaEncoding = match (pss, hash) {
            (false, Hash::Sha256) => &signature::RSA_PKCS1_SHA256,
            (false, Hash::Sha384) => &signature::RSA_PKCS1_SHA384,
            (false, Hash::Sha512) => &signature::RSA_PKCS1_SHA512,
            (true, Hash::Sha256) => &signature::RSA_PSS_SHA256,
            (true, Hash::Sha384) => &signature::RSA_PSS_SHA384,
            (true, Hash::Sha512) => &signature::RSA_PSS_SHA512,
        };
        let mut out = vec![0u8; pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        if pair.sign(encoding, &rng, input, &mut out).is_ok() {
            return Ok(out);
        }
    }
    // The reference path for keys `aws-lc-rs` does not take.
    let k_len = usize::try_from(k.n.bits().div_ceil(8)).map_err(|_| "key too large")?;
    let em = if pss {
        let em_bits = usize::try_from(k.n.bits() - 1).map_err(|_| "key too large")?;
        let mut salt = vec![0u8; hash.len()];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| "crypto/rsa: randomness unavailable".to_string())?;
        let mut em = emsa_pss_encode(&hash.digest(&[input]), em_bits, &salt, hash)?;
        // A modulus of 8k + 1 bits leaves a leading zero byte.
        while em.len() < k_len {
            em.insert(0, 0);
        }
        em
    } else {
        let prefix = hash.digest_info_prefix();
        let t_len = prefix.len() + hash.len();
        if k_len < t_len + 11 {
            return Err("crypto/rsa: message too long for RSA key size".into());
        }
        let mut em = vec![0xffu8; k_len];
        em[0] = 0;
        em[1] = 1;
        em[k_len - t_len - 1] = 0;
        em[k_len - t_len..k_len - hash.len()].copy_from_slice(prefix);
        em[k_len - hash.len()..].copy_from_slice(&hash.digest(&[input]));
        em
    };
    let m = BigUint::from_bytes_be(&em);
    let s = m.modpow(&k.d, &k.n).to_bytes_be();
    let mut out = vec![0u8; k_len.saturating_sub(s.len())];
    out.extend_from_slice(&s);
    Ok(out)
}

/// EMSA-PSS-ENCODE (RFC 8017 9.1.1) with MGF1 of the same hash.
fn emsa_pss_encode(
    m_hash: &[u8],
    em_bits: usize,
    salt: &[u8],
    hash: Hash,
) -> Result<Vec<u8>, String> {
    let h_len = hash.len();
    let em_len = em_bits.div_ceil(8);
    if em_len < h_len + salt.len() + 2 {
        return Err("crypto/rsa: key size too small for PSS signature".into());
    }
    let h = hash.digest(&[&[0u8; 8], m_hash, salt]);
    let mut db = vec![0u8; em_len - h_len - 1];
    let ps_len = em_len - salt.len() - h_len - 2;
    db[ps_len] = 1;
    db[ps_len + 1..].copy_from_slice(salt);
    sig::mgf1_xor(&mut db, hash, &h);
    db[0] &= 0xff >> (8 * em_len - em_bits);
    let mut em = db;
    em.extend_from_slice(&h);
    em.push(0xbc);
    Ok(em)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_header_follows_fastjson() {
        assert!(lenient_header(b"").is_err_and(|e| e.contains("empty")));
        assert!(matches!(lenient_header(b"e"), Ok(None)));
        assert!(lenient_header(b"{\"typ:\"JWT\"}").is_err());
        let doc = lenient_header(br#"{"alg":"HS256","alg":"x"}"#).expect("parses");
        assert_eq!(header_string(doc.as_ref(), "alg").as_deref(), Ok("HS256"));
        assert!(header_string(doc.as_ref(), "typ").is_err());
    }
}
