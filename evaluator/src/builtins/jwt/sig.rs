//! Signature primitives with the acceptance rules of Go's `crypto` packages
//! (OPA's verifiers).
//!
//! ECDSA, Ed25519 and point validation use `aws-lc-rs`. RSA has two paths
//! (see [`RsaKey`]): `aws-lc-rs` where its rules are Go's for the call, and
//! the reference implementation here on `num-bigint` for everything else,
//! because Go's rules differ from those of `aws-lc-rs`: keys of 1024 bits and
//! more (no upper bound), and RSA-PSS with the salt length either fixed to
//! the hash size (`decode_verify`) or detected from the signature
//! (`verify_ps*`). The reference PKCS #1 v1.5 compares the whole recovered
//! encoding with the expected one; PSS follows Go's EMSA-PSS-VERIFY step
//! for step.

use std::fmt;
use std::sync::OnceLock;

use aws_lc_rs::signature::{
    self, EcdsaVerificationAlgorithm, KeyPair, ParsedPublicKey, RsaParameters, UnparsedPublicKey,
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

    pub(super) fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
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
    pub(super) fn digest_info_prefix(self) -> &'static [u8] {
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

/// An RSA public key with its `aws-lc-rs` forms, parsed on first use (one
/// per algorithm: `aws-lc-rs` binds a parsed key to its algorithm).
///
/// The fast path is taken only for keys Go accepts (odd modulus of at least
/// 1024 bits, odd exponent in 3..2^31) whose size `aws-lc-rs` takes for the
/// algorithm (2048–8192 bits; 1024–8192 for RS256 and RS512), and only
/// where `aws-lc-rs`'s answer is Go's:
/// - PKCS #1 v1.5: both require a modulus-sized signature below `n` and the
///   recovered block to be exactly `00 01 FF.. 00 DigestInfo(hash)` (AWS-LC
///   parses the padding, then compares the rest with the DigestInfo in full
///   length; with at least 8 `FF` bytes, which every accepted key size
///   leaves, that is the same block);
/// - PSS with a hash-sized salt (`decode_verify`): AWS-LC's
///   `RSA_verify_PKCS1_PSS_mgf1` with `RSA_PSS_SALTLEN_DIGEST` performs Go's
///   `emsaPSSVerify` checks (leading bits, `0xbc`, zero padding then `01`,
///   salt length, hash), including the extra leading zero byte of a modulus
///   of `8k + 1` bits;
/// - PSS with the salt length detected (`verify_ps*`): a signature that
///   verifies with a hash-sized salt is one Go's detection accepts (the
///   first `01` of the zero-padded data block is where the hash-sized salt
///   puts it), so `aws-lc-rs` answers `true`; any other answer is left to
///   the reference path.
///
/// Every other key, size or call goes to the reference path on `num-bigint`.
pub(super) struct RsaKey {
    n: BigUint,
    e: BigUint,
    /// `RSAPublicKey` DER, when the key is one Go accepts (see above).
    der: Option<Vec<u8>>,
    /// Bits of the modulus.
    bits: u64,
    /// One slot per [`RsaKey::FAST`] entry.
    parsed: [OnceLock<Option<ParsedPublicKey>>; 6],
}

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKey")
            .field("bits", &self.bits)
            .field("e", &self.e)
            .finish_non_exhaustive()
    }
}

/// Which `aws-lc-rs` algorithm a fast verification uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Padding {
    Pkcs1,
    /// PSS with a salt as long as the hash.
    PssDigestSalt,
}

impl RsaKey {
    /// `aws-lc-rs` algorithms by padding and hash, with the smallest modulus
    /// each takes (all take up to 8192 bits).
    const FAST: [(Padding, Hash, &'static RsaParameters, u64); 6] = [
        (
            Padding::Pkcs1,
            Hash::Sha256,
            &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            1024,
        ),
        (
            Padding::Pkcs1,
            Hash::Sha384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
            2048,
        ),
        (
            Padding::Pkcs1,
            Hash::Sha512,
            &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
            1024,
        ),
        (
            Padding::PssDigestSalt,
            Hash::Sha256,
            &signature::RSA_PSS_2048_8192_SHA256,
            2048,
        ),
        (
            Padding::PssDigestSalt,
            Hash::Sha384,
            &signature::RSA_PSS_2048_8192_SHA384,
            2048,
        ),
        (
            Padding::PssDigestSalt,
            Hash::Sha512,
            &signature::RSA_PSS_2048_8192_SHA512,
            2048,
        ),
    ];

    /// Largest modulus `aws-lc-rs` verifies with.
    const FAST_MAX_BITS: u64 = 8192;

    pub(super) fn new(n: BigUint, e: BigUint) -> Self {
        let bits = n.bits();
        let der = go_public_key_ok(&n, &e).then(|| rsa_public_key_der(&n, &e));
        RsaKey {
            n,
            e,
            der,
            bits,
            parsed: Default::default(),
        }
    }

    /// Bytes of the modulus.
    fn size(&self) -> usize {
        usize::try_from(self.bits.div_ceil(8)).unwrap_or(usize::MAX)
    }

    /// A rough count of the bytes this key holds (for cache weights).
    pub(super) fn weight(&self) -> usize {
        // n, e, the DER and up to six AWS-LC keys with their Montgomery
        // contexts.
        256 + self.size() * 40
    }

    /// The `aws-lc-rs` key for `padding` and `hash`, if the fast path may
    /// answer for this key.
    fn fast(&self, padding: Padding, hash: Hash) -> Option<&ParsedPublicKey> {
        let der = self.der.as_ref()?;
        let (slot, &(_, _, alg, min_bits)) = self
            .parsed
            .iter()
            .zip(Self::FAST.iter())
            .find(|(_, (p, h, _, _))| *p == padding && *h == hash)?;
        if self.bits < min_bits || self.bits > Self::FAST_MAX_BITS {
            return None;
        }
        slot.get_or_init(|| ParsedPublicKey::new(alg, der).ok())
            .as_ref()
    }

    /// Whether `aws-lc-rs` answers for PKCS #1 v1.5 (`pss` false) or PSS
    /// with `hash` on this key.
    #[cfg(test)]
    pub(super) fn uses_aws_lc(&self, pss: bool, hash: Hash) -> bool {
        let padding = if pss {
            Padding::PssDigestSalt
        } else {
            Padding::Pkcs1
        };
        self.fast(padding, hash).is_some()
    }

    /// The `RSAPublicKey` DER handed to `aws-lc-rs` (only for keys Go
    /// accepts; tests build it for any key).
    #[cfg(test)]
    pub(super) fn der_for_test(n: &BigUint, e: &BigUint) -> Vec<u8> {
        rsa_public_key_der(n, e)
    }

    /// RSASSA-PKCS1-v1_5 with Go's rules (`rsa.VerifyPKCS1v15`).
    pub(super) fn verify_pkcs1(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        match self.fast(Padding::Pkcs1, hash) {
            Some(key) => sig.len() == self.size() && key.verify_sig(msg, sig).is_ok(),
            None => rsa_pkcs1_verify(&self.n, &self.e, hash, msg, sig),
        }
    }

    /// RSASSA-PSS with Go's rules (`rsa.VerifyPSS`): a salt of `salt_len`
    /// bytes, or of the length found in the signature (`None`).
    pub(super) fn verify_pss(
        &self,
        hash: Hash,
        msg: &[u8],
        sig: &[u8],
        salt_len: Option<usize>,
    ) -> bool {
        if let Some(key) = self.fast(Padding::PssDigestSalt, hash) {
            let ok = sig.len() == self.size() && key.verify_sig(msg, sig).is_ok();
            match salt_len {
                Some(len) if len == hash.len() => return ok,
                None if ok => return true,
                _ => {}
            }
        }
        rsa_pss_verify(&self.n, &self.e, hash, msg, sig, salt_len)
    }
}

/// Go's checks of an RSA public key before any operation (`checkKeySize`
/// and `checkPublicKey`): an odd modulus of at least 1024 bits and an odd
/// exponent in 3..2^31.
fn go_public_key_ok(n: &BigUint, e: &BigUint) -> bool {
    n.bits() >= 1024
        && n.bit(0)
        && u32::try_from(e).is_ok_and(|e| (3..1 << 31).contains(&e) && e & 1 == 1)
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_key_der(n: &BigUint, e: &BigUint) -> Vec<u8> {
    fn push_len(out: &mut Vec<u8>, len: usize) {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let significant = &bytes[skip..];
        match significant {
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
    integer(&mut body, n);
    integer(&mut body, e);
    let mut out = vec![0x30];
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// Go's checks of an RSA public key before any operation (at least 1024
/// bits, odd modulus, odd exponent in 3..2^31), and `sig^e mod n` as a
/// modulus-sized byte string (`sig` must be exactly that size and `< n`).
fn rsa_recover(n: &BigUint, e: &BigUint, sig: &[u8]) -> Option<Vec<u8>> {
    if !go_public_key_ok(n, e) {
        return None;
    }
    let bits = usize::try_from(n.bits()).ok()?;
    let k = bits.div_ceil(8);
    if sig.len() != k {
        return None;
    }
    let s = BigUint::from_bytes_be(sig);
    if &s >= n {
        return None;
    }
    let m = s.modpow(e, n).to_bytes_be();
    let mut em = vec![0u8; k.checked_sub(m.len())?];
    em.extend_from_slice(&m);
    Some(em)
}

/// RSASSA-PKCS1-v1_5 (Go's `rsa.VerifyPKCS1v15`): the reference path.
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

/// RSASSA-PSS with MGF1 of the same hash (Go's `rsa.VerifyPSS`): the
/// reference path. `salt_len` `None` detects the salt length from the
/// encoding (Go's `PSSSaltLengthAuto`).
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

pub(super) fn mgf1_xor(out: &mut [u8], hash: Hash, seed: &[u8]) {
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
