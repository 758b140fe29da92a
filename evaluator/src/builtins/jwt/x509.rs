//! PEM blocks, X.509 certificates and PKIX public keys, read with the rules
//! of Go's `encoding/pem` and `crypto/x509` that OPA relies on.

use num_bigint::BigUint;
use x509_parser::prelude::FromDer;

use super::sig::{self, Curve, RsaKey};
use super::{KeyMaterial, b64};

/// One PEM block: its type line and decoded bytes.
pub(in crate::builtins) struct PemBlock {
    pub(in crate::builtins) kind: Vec<u8>,
    pub(in crate::builtins) bytes: Vec<u8>,
}

const PEM_START: &[u8] = b"\n-----BEGIN ";
const PEM_END: &[u8] = b"\n-----END ";
const PEM_END_OF_LINE: &[u8] = b"-----";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_right_spaces(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Go's `getLine`: the next line without its end of line and trailing
/// spaces or tabs, and the rest after the `\n`.
fn get_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        None => (trim_right_spaces(data), &[]),
        Some(i) => {
            let line = &data[..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            (trim_right_spaces(line), &data[i + 1..])
        }
    }
}

/// Go's `pem.Decode`: the first well-formed PEM block in `data` (text
/// before it is skipped) and the data after it.
pub(in crate::builtins) fn pem_decode(data: &[u8]) -> Option<(PemBlock, &[u8])> {
    let mut rest = data;
    loop {
        if let Some(after) = rest.strip_prefix(&PEM_START[1..]) {
            rest = after;
        } else if let Some(i) = find(rest, PEM_START) {
            rest = &rest[i + PEM_START.len()..];
        } else {
            return None;
        }
        let (type_line, after_type) = get_line(rest);
        rest = after_type;
        let Some(kind) = type_line.strip_suffix(PEM_END_OF_LINE) else {
            continue;
        };
        let mut has_headers = false;
        loop {
            if rest.is_empty() {
                return None;
            }
            let (line, next) = get_line(rest);
            if !line.contains(&b':') {
                break;
            }
            has_headers = true;
            rest = next;
        }
        let (end_index, trailer_index) = if !has_headers && rest.starts_with(&PEM_END[1..]) {
            (0, PEM_END.len() - 1)
        } else {
            match find(rest, PEM_END) {
                Some(i) => (i, i + PEM_END.len()),
                None => continue,
            }
        };
        let trailer = &rest[trailer_index..];
        let trailer_len = kind.len() + PEM_END_OF_LINE.len();
        if trailer.len() < trailer_len {
            continue;
        }
        let (end_line, rest_of_end_line) = trailer.split_at(trailer_len);
        if !end_line.starts_with(kind) || !end_line.ends_with(PEM_END_OF_LINE) {
            continue;
        }
        if !get_line(rest_of_end_line).0.is_empty() {
            continue;
        }
        let body: Vec<u8> = rest[..end_index]
            .iter()
            .copied()
            .filter(|&b| b != b' ' && b != b'\t')
            .collect();
        let Some(bytes) = b64::std_padded(&body) else {
            continue;
        };
        let (_, after) = get_line(&rest[end_index + PEM_END.len() - 1..]);
        return Some((
            PemBlock {
                kind: kind.to_vec(),
                bytes,
            },
            after,
        ));
    }
}

/// One DER element: tag, contents, the whole encoding, and what follows.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    full: &'a [u8],
    rest: &'a [u8],
}

/// Reads one DER element (low tag numbers, minimal definite lengths).
fn read_tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut after_len) = after_tag.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, after) = after_len.split_at_checked(n)?;
        if bytes.first() == Some(&0) {
            return None;
        }
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return None;
        }
        after_len = after;
        len
    };
    let (content, rest) = after_len.split_at_checked(len)?;
    let header_len = input.len() - after_len.len();
    Some(Tlv {
        tag,
        content,
        full: &input[..header_len + len],
        rest,
    })
}

/// A DER INTEGER's contents, minimally encoded (Go's `checkASN1Integer`).
fn integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let t = read_tlv(input)?;
    if t.tag != 0x02 || t.content.is_empty() {
        return None;
    }
    if let [a, b, ..] = t.content
        && ((*a == 0 && b & 0x80 == 0) || (*a == 0xff && b & 0x80 == 0x80))
    {
        return None;
    }
    Some((t.content, t.rest))
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_DSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_X25519: &[u8] = &[0x2b, 0x65, 0x6e];

fn curve_from_oid(oid: &[u8]) -> Option<Curve> {
    match oid {
        [0x2b, 0x81, 0x04, 0x00, 0x21] => Some(Curve::P224),
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07] => Some(Curve::P256),
        [0x2b, 0x81, 0x04, 0x00, 0x22] => Some(Curve::P384),
        [0x2b, 0x81, 0x04, 0x00, 0x23] => Some(Curve::P521),
        _ => None,
    }
}

/// Go's `parsePublicKey` on a SubjectPublicKeyInfo. An algorithm Go does
/// not know is an error for a bare public key and no usable key (but no
/// error) inside a certificate.
fn parse_spki(der: &[u8], in_certificate: bool) -> Result<(KeyMaterial, &[u8]), String> {
    let malformed = || "x509: malformed public key".to_string();
    let spki = read_tlv(der)
        .filter(|t| t.tag == 0x30)
        .ok_or_else(malformed)?;
    let alg_id = read_tlv(spki.content)
        .filter(|t| t.tag == 0x30)
        .ok_or_else(malformed)?;
    let oid = read_tlv(alg_id.content)
        .filter(|t| t.tag == 0x06)
        .ok_or_else(malformed)?;
    let params: &[u8] = read_tlv(oid.rest).map_or(&[], |t| t.full);
    let bits = read_tlv(alg_id.rest)
        .filter(|t| t.tag == 0x03)
        .ok_or_else(malformed)?;
    let key = right_align(bits.content).ok_or_else(malformed)?;

    let material = match oid.content {
        OID_RSA => {
            if params != [0x05, 0x00] {
                return Err("x509: RSA key missing NULL parameters".into());
            }
            rsa_public_key(&key)?
        }
        OID_EC => {
            let curve_oid = read_tlv(params)
                .filter(|t| t.tag == 0x06 && !t.content.is_empty())
                .ok_or("x509: invalid ECDSA parameters")?;
            let curve =
                curve_from_oid(curve_oid.content).ok_or("x509: unsupported elliptic curve")?;
            if !sig::ec_point_valid(curve, &key) {
                return Err("ecdsa: invalid uncompressed public key".into());
            }
            KeyMaterial::Ec { curve, point: key }
        }
        OID_ED25519 => {
            if !params.is_empty() {
                return Err("x509: Ed25519 key encoded with illegal parameters".into());
            }
            if key.len() != 32 {
                return Err("x509: wrong Ed25519 public key size".into());
            }
            KeyMaterial::Ed25519(key)
        }
        OID_X25519 => {
            if !params.is_empty() {
                return Err("x509: X25519 key encoded with illegal parameters".into());
            }
            if key.len() != 32 {
                return Err("x509: invalid X25519 public key".into());
            }
            KeyMaterial::Unusable
        }
        // DSA keys parse in Go but never verify a JWT.
        OID_DSA => KeyMaterial::Unusable,
        _ if in_certificate => KeyMaterial::Unusable,
        _ => return Err("x509: unknown public key algorithm".into()),
    };
    Ok((material, spki.rest))
}

/// A BIT STRING's contents right-aligned (Go's `BitString.RightAlign`),
/// after Go's padding checks.
fn right_align(content: &[u8]) -> Option<Vec<u8>> {
    let (&padding, data) = content.split_first()?;
    if padding > 7 || (data.is_empty() && padding > 0) {
        return None;
    }
    if let Some(last) = data.last()
        && last & ((1u8 << padding) - 1) != 0
    {
        return None;
    }
    if padding == 0 {
        return Some(data.to_vec());
    }
    let shift = 8 - padding;
    let mut out = vec![0u8; data.len()];
    out[0] = data[0] >> padding;
    for i in 1..data.len() {
        out[i] = (data[i - 1] << shift) | (data[i] >> padding);
    }
    Some(out)
}

/// An RSAPublicKey structure as Go's x509 reads it.
fn rsa_public_key(der: &[u8]) -> Result<KeyMaterial, String> {
    let seq = read_tlv(der)
        .filter(|t| t.tag == 0x30)
        .ok_or("x509: invalid RSA public key")?;
    let (n, rest) = integer(seq.content).ok_or("x509: invalid RSA modulus")?;
    let (e, _) = integer(rest)
        .filter(|(e, _)| e.len() <= 8)
        .ok_or("x509: invalid RSA public exponent")?;
    if n.first().is_some_and(|b| b & 0x80 != 0) || n.iter().all(|&b| b == 0) {
        return Err("x509: RSA modulus is not a positive number".into());
    }
    if e.first().is_some_and(|b| b & 0x80 != 0) || e.iter().all(|&b| b == 0) {
        return Err("x509: RSA public exponent is not a positive number".into());
    }
    Ok(KeyMaterial::Rsa(Box::new(RsaKey::new(
        BigUint::from_bytes_be(n),
        BigUint::from_bytes_be(e),
    ))))
}

/// Go's `x509.ParsePKIXPublicKey`.
pub(super) fn parse_pkix_public_key(der: &[u8]) -> Result<KeyMaterial, String> {
    let (key, rest) = parse_spki(der, false)?;
    if !rest.is_empty() {
        return Err("x509: trailing data after ASN.1 of public-key".into());
    }
    Ok(key)
}

/// The public key of a DER certificate (Go's `x509.ParseCertificate`).
pub(super) fn parse_certificate_key(der: &[u8]) -> Result<KeyMaterial, String> {
    let (rest, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|_| "x509: malformed certificate".to_string())?;
    if !rest.is_empty() {
        return Err("x509: trailing data".into());
    }
    parse_spki(cert.tbs_certificate.subject_pki.raw, true).map(|(key, _)| key)
}

/// A certificate signature algorithm Go's `x509` still verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::builtins) enum CertSignature {
    RsaPkcs1(u16),
    RsaPss(u16),
    Ecdsa(u16),
    Ed25519,
}

/// Go's `checkSignature`: whether `signature` over `signed` verifies with
/// the SubjectPublicKeyInfo `spki` (an issuer's key).
pub(in crate::builtins) fn verify_certificate_signature(
    spki: &[u8],
    alg: CertSignature,
    signed: &[u8],
    signature: &[u8],
) -> bool {
    let Ok((key, _)) = parse_spki(spki, true) else {
        return false;
    };
    let hash = |bits: u16| match bits {
        256 => Some(sig::Hash::Sha256),
        384 => Some(sig::Hash::Sha384),
        512 => Some(sig::Hash::Sha512),
        _ => None,
    };
    match (alg, &key) {
        (CertSignature::RsaPkcs1(bits), KeyMaterial::Rsa(k)) => {
            hash(bits).is_some_and(|h| k.verify_pkcs1(h, signed, signature))
        }
        (CertSignature::RsaPss(bits), KeyMaterial::Rsa(k)) => {
            hash(bits).is_some_and(|h| k.verify_pss(h, signed, signature, Some(h.len())))
        }
        (CertSignature::Ecdsa(bits), KeyMaterial::Ec { curve, point }) => {
            let Some(h) = hash(bits) else { return false };
            let Some(seq) = read_tlv(signature).filter(|t| t.tag == 0x30 && t.rest.is_empty())
            else {
                return false;
            };
            let Some((r, rest)) = integer(seq.content) else {
                return false;
            };
            let Some((s, rest)) = integer(rest) else {
                return false;
            };
            rest.is_empty() && sig::ecdsa_verify(*curve, point, h, signed, r, s)
        }
        (CertSignature::Ed25519, KeyMaterial::Ed25519(pk)) => {
            sig::ed25519_verify(pk, signed, signature)
        }
        _ => false,
    }
}

/// Checks that `der` is one X.509 certificate (for a JWK's `x5c`).
pub(super) fn check_certificate(der: &[u8]) -> Result<(), String> {
    parse_certificate_key(der).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_decode_follows_go() {
        let block = "-----BEGIN X-----\nYWI=\n-----END X-----\n";
        let (b, rest) = pem_decode(block.as_bytes()).expect("block");
        assert_eq!(
            (b.kind.as_slice(), b.bytes.as_slice(), rest),
            (&b"X"[..], &b"ab"[..], &b""[..])
        );
        // Leading text must end in a newline; trailing text is returned.
        assert!(pem_decode(format!("junk\n{block}\n").as_bytes()).is_some_and(|(_, r)| r == b"\n"));
        assert!(pem_decode(format!("junk{block}").as_bytes()).is_none());
        // Headers, CRLF and spaces in the body are accepted.
        let crlf = "-----BEGIN X-----\r\nProc-Type: 4\r\n\r\nY WI=\r\n-----END X-----   \r\n";
        assert!(pem_decode(crlf.as_bytes()).is_some_and(|(b, r)| b.bytes == b"ab" && r.is_empty()));
        // A mismatched END line or bad base64 is not a block.
        assert!(pem_decode(b"-----BEGIN X-----\nYWI=\n-----END Y-----\n").is_none());
        assert!(pem_decode(b"-----BEGIN X-----\nYW!=\n-----END X-----\n").is_none());
    }

    #[test]
    fn right_align_checks_padding() {
        assert_eq!(right_align(&[0, 1, 2]), Some(vec![1, 2]));
        assert_eq!(right_align(&[1, 0x02, 0x04]), Some(vec![0x01, 0x02]));
        assert_eq!(right_align(&[1, 0x01]), None);
        assert_eq!(right_align(&[8, 0]), None);
        assert_eq!(right_align(&[]), None);
    }

    #[test]
    fn der_integers_must_be_minimal() {
        assert!(integer(&[0x02, 0x01, 0x05]).is_some());
        assert!(integer(&[0x02, 0x02, 0x00, 0x05]).is_none());
        assert!(integer(&[0x02, 0x02, 0x00, 0x85]).is_some());
        assert!(integer(&[0x02, 0x00]).is_none());
        assert!(read_tlv(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0]).is_none());
    }
}
