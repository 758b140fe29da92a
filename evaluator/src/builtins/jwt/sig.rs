//! Signature primitives with the acceptance rules of Go's `crypto` packages
//! (OPA's verifiers).
//!
//! ECDSA, Ed25519 and point validation use `aws-lc-rs`. RSA is checked here
//! on `num-bigint` because Go's rules differ from those of `aws-lc-rs`: keys
//! of 1024 bits and more (no upper bound), and RSA-PSS with the salt length
//! either fixed to the hash size (`decode_verify`) or detected from the
//! signature (`verify_ps*`). PKCS #1 v1.5 compares the whole recovered
//! encoding with the expected one; PSS follows Go's EMSA-PSS-VERIFY step
//! for step.

use aws_lc_rs::signature::{
    self, EcdsaVerificationAlgorithm, KeyPair, ParsedPublicKey, UnparsedPublicKey,
};
use hmac::{Hmac, Mac};
use num_bigint::BigUint;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The SHA-2 hash of a JWS algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub(super) fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Sha256>(parts),
            Hash::Sha384 => run::<Sha384>(parts),
            Hash::Sha512 => run::<Sha512>(parts),
        }
    }

    /// DER DigestInfo prefix for PKCS #1 v1.5.
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

/// NIST curves Go's x509 accepts (P-224 keys parse but cannot be verified
/// here: `aws-lc-rs` has no P-224).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Curve {
    P224,
    P256,
    P384,
    P521,
}

impl Curve {
    /// Bytes of one coordinate or scalar.
    pub(super) fn size(self) -> usize {
        match self {
            Curve::P224 => 28,
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    fn algorithm(self, hash: Hash) -> Option<&'static EcdsaVerificationAlgorithm> {
        Some(match (self, hash) {
            (Curve::P224, _) => return None,
            (Curve::P256, Hash::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
            (Curve::P256, Hash::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
            (Curve::P256, Hash::Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
            (Curve::P384, Hash::Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
            (Curve::P384, Hash::Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
            (Curve::P384, Hash::Sha512) => &signature::ECDSA_P384_SHA512_ASN1,
            (Curve::P521, Hash::Sha256) => &signature::ECDSA_P521_SHA256_ASN1,
            (Curve::P521, Hash::Sha384) => &signature::ECDSA_P521_SHA384_ASN1,
            (Curve::P521, Hash::Sha512) => &signature::ECDSA_P521_SHA512_ASN1,
        })
    }
}

/// Whether `point` is an uncompressed point (0x04 ‖ X ‖ Y) on `curve`, as
/// Go's `ecdsa.ParseUncompressedPublicKey` requires.
pub(super) fn ec_point_valid(curve: Curve, point: &[u8]) -> bool {
    if point.len() != 1 + 2 * curve.size() || point.first() != Some(&4) {
        return false;
    }
    match curve.algorithm(Hash::Sha256) {
        Some(alg) => ParsedPublicKey::new(alg, point).is_ok(),
        None => true,
    }
}

/// The Ed25519 public key of a 32-byte seed.
pub(super) fn ed25519_public_from_seed(seed: &[u8]) -> Option<Vec<u8>> {
    let pair = signature::Ed25519KeyPair::from_seed_unchecked(seed).ok()?;
    Some(pair.public_key().as_ref().to_vec())
}

/// HMAC-SHA-2 over `msg`, compared in constant time with `sig`.
pub(super) fn hmac_verify(hash: Hash, key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        match <M as hmac::digest::KeyInit>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(msg);
                mac.verify_slice(sig).is_ok()
            }
            Err(_) => false,
        }
    }
    match hash {
        Hash::Sha256 => run::<Hmac<Sha256>>(key, msg, sig),
        Hash::Sha384 => run::<Hmac<Sha384>>(key, msg, sig),
        Hash::Sha512 => run::<Hmac<Sha512>>(key, msg, sig),
    }
}

/// Go's checks of an RSA public key before any operation (at least 1024
/// bits, odd modulus, odd exponent in 3..2^31), and `sig^e mod n` as a
/// modulus-sized byte string (`sig` must be exactly that size and `< n`).
fn rsa_recover(n: &BigUint, e: &BigUint, sig: &[u8]) -> Option<Vec<u8>> {
    let bits = usize::try_from(n.bits()).ok()?;
    let e = u32::try_from(e).ok()?;
    if bits < 1024 || !n.bit(0) || e < 2 || e & 1 == 0 || e > (1 << 31) - 1 {
        return None;
    }
    let k = bits.div_ceil(8);
    if sig.len() != k {
        return None;
    }
    let s = BigUint::from_bytes_be(sig);
    if &s >= n {
        return None;
    }
    let m = s.modpow(&BigUint::from(e), n).to_bytes_be();
    let mut em = vec![0u8; k.checked_sub(m.len())?];
    em.extend_from_slice(&m);
    Some(em)
}

/// RSASSA-PKCS1-v1_5 (Go's `rsa.VerifyPKCS1v15`).
pub(super) fn rsa_pkcs1_verify(
    n: &BigUint,
    e: &BigUint,
    hash: Hash,
    msg: &[u8],
    sig: &[u8],
) -> bool {
    let Some(em) = rsa_recover(n, e, sig) else {
        return false;
    };
    let prefix = hash.digest_info_prefix();
    let t_len = prefix.len() + hash.len();
    let k = em.len();
    if k < t_len + 11 {
        return false;
    }
    let mut expected = vec![0xffu8; k];
    expected[0] = 0;
    expected[1] = 1;
    expected[k - t_len - 1] = 0;
    expected[k - t_len..k - hash.len()].copy_from_slice(prefix);
    expected[k - hash.len()..].copy_from_slice(&hash.digest(&[msg]));
    em == expected
}

/// RSASSA-PSS with MGF1 of the same hash (Go's `rsa.VerifyPSS`). `salt_len`
/// `None` detects the salt length from the encoding (Go's
/// `PSSSaltLengthAuto`).
pub(super) fn rsa_pss_verify(
    n: &BigUint,
    e: &BigUint,
    hash: Hash,
    msg: &[u8],
    sig: &[u8],
    salt_len: Option<usize>,
) -> bool {
    let Some(em) = rsa_recover(n, e, sig) else {
        return false;
    };
    let Some(em_bits) = usize::try_from(n.bits())
        .ok()
        .and_then(|b| b.checked_sub(1))
    else {
        return false;
    };
    let em_len = em_bits.div_ceil(8);
    // Strip the leading zero byte when the modulus is one bit past a byte.
    let mut em = em.as_slice();
    while em.len() > em_len {
        match em.split_first() {
            Some((0, rest)) => em = rest,
            _ => return false,
        }
    }
    emsa_pss_verify(&hash.digest(&[msg]), em, em_bits, salt_len, hash)
}

/// EMSA-PSS-VERIFY (RFC 8017 9.1.2), step for step as Go implements it.
fn emsa_pss_verify(
    m_hash: &[u8],
    em: &[u8],
    em_bits: usize,
    salt_len: Option<usize>,
    hash: Hash,
) -> bool {
    let h_len = hash.len();
    let em_len = em_bits.div_ceil(8);
    if em_len != em.len()
        || em_len < h_len + salt_len.unwrap_or(0) + 2 - usize::from(salt_len.is_none())
    {
        return false;
    }
    if em.last() != Some(&0xbc) {
        return false;
    }
    let (masked_db, h) = em[..em_len - 1].split_at(em_len - h_len - 1);
    let bit_mask: u8 = 0xff >> (8 * em_len - em_bits);
    if em[0] & !bit_mask != 0 {
        return false;
    }
    let mut db = masked_db.to_vec();
    mgf1_xor(&mut db, hash, h);
    let Some(first) = db.first_mut() else {
        return false;
    };
    *first &= bit_mask;
    let salt_len = match salt_len {
        Some(s) => s,
        None => match db.iter().position(|&b| b == 1) {
            Some(ps_len) => db.len() - ps_len - 1,
            None => return false,
        },
    };
    let ps_len = em_len - h_len - salt_len - 2;
    if db[..ps_len].iter().any(|&b| b != 0) || db[ps_len] != 1 {
        return false;
    }
    let salt = &db[db.len() - salt_len..];
    hash.digest(&[&[0u8; 8], m_hash, salt]) == h
}

fn mgf1_xor(out: &mut [u8], hash: Hash, seed: &[u8]) {
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(hash.len())) {
        let mask = hash.digest(&[seed, &counter.to_be_bytes()]);
        for (o, m) in chunk.iter_mut().zip(mask) {
            *o ^= m;
        }
    }
}

/// ECDSA with `r` and `s` as big-endian integers of any length (Go's
/// `ecdsa.Verify`: both in 1..n, hash truncated to the curve order).
pub(super) fn ecdsa_verify(
    curve: Curve,
    point: &[u8],
    hash: Hash,
    msg: &[u8],
    r: &[u8],
    s: &[u8],
) -> bool {
    let Some(alg) = curve.algorithm(hash) else {
        return false;
    };
    let trim = |b: &[u8]| -> Vec<u8> { b.iter().copied().skip_while(|&x| x == 0).collect() };
    let (r, s) = (trim(r), trim(s));
    if r.is_empty() || s.is_empty() || r.len() > curve.size() || s.len() > curve.size() {
        return false;
    }
    let der = der_signature(&r, &s);
    UnparsedPublicKey::new(alg, point).verify(msg, &der).is_ok()
}

/// `SEQUENCE { INTEGER r, INTEGER s }` for minimal non-zero `r` and `s`.
fn der_signature(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            out.push(0x81);
            out.push(len as u8);
        }
    }
    fn int(v: &[u8]) -> Vec<u8> {
        let mut out = vec![0x02];
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        push_len(&mut out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    }
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// Ed25519 (Go's `ed25519.Verify`).
pub(super) fn ed25519_verify(public_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    public_key.len() == 32
        && UnparsedPublicKey::new(&signature::ED25519, public_key)
            .verify(msg, sig)
            .is_ok()
}
