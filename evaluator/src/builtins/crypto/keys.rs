//! Private keys as OPA reads them (`getPrivateKeysFromPEMData`): PKCS #1
//! RSA, PKCS #8 and SEC 1 EC keys in PEM blocks, returned as Go's JSON of
//! the `crypto` key types, as a JWK, or paired with a certificate chain
//! (`tls.X509KeyPair`).

use aws_lc_rs::agreement;
use base64::Engine;
use num_bigint::BigUint;
use regorus::Value;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::gojson::{self, Object, b64, big};
use super::pem_input::std_base64;
use super::{cert_json, der, pem_input};
use crate::builtins::jwt::x509::pem_decode;

/// A parsed private key with its public half.
pub(super) enum PrivateKey {
    Rsa {
        n: BigUint,
        e: BigUint,
        d: BigUint,
        p: BigUint,
        q: BigUint,
        dp: BigUint,
        dq: BigUint,
        qinv: BigUint,
    },
    Ec {
        curve: &'static str,
        /// Uncompressed public point.
        point: Vec<u8>,
        d: Vec<u8>,
    },
    Ed25519 {
        seed: Vec<u8>,
        public: Vec<u8>,
    },
    /// A key Go parses but whose JSON has no exported fields (X25519).
    Opaque,
}

const OID_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
const OID_EC: &[u64] = &[1, 2, 840, 10045, 2, 1];
const OID_ED25519: &[u64] = &[1, 3, 101, 112];
const OID_X25519: &[u64] = &[1, 3, 101, 110];

/// Go's `x509.ParsePKCS1PrivateKey`.
fn parse_pkcs1(der_bytes: &[u8]) -> Result<PrivateKey, String> {
    let malformed = || {
        "x509: failed to parse private key (use ParsePKCS8PrivateKey instead for this key format)"
            .to_string()
    };
    let fields = der::sequence(der_bytes).ok_or_else(malformed)?;
    let ints: Vec<BigUint> = fields
        .iter()
        .take(9)
        .map(der::uint)
        .collect::<Option<_>>()
        .ok_or_else(malformed)?;
    let [version, n, e, d, p, q, dp, dq, qinv] =
        <[BigUint; 9]>::try_from(ints).map_err(|_| malformed())?;
    if version > BigUint::from(1u8) {
        return Err("x509: unsupported private key version".into());
    }
    if version == BigUint::from(1u8) {
        return Err("x509: multi-prime RSA keys are not supported".into());
    }
    if n.bits() == 0 || e.bits() == 0 || d.bits() == 0 || p.bits() == 0 || q.bits() == 0 {
        return Err("x509: private key contains zero or negative value".into());
    }
    if &p * &q != n {
        return Err("crypto/rsa: invalid modulus".into());
    }
    Ok(PrivateKey::Rsa {
        n,
        e,
        d,
        p,
        q,
        dp,
        dq,
        qinv,
    })
}

fn curve_by_oid(arcs: &[u64]) -> Option<(&'static str, &'static agreement::Algorithm, usize)> {
    Some(match arcs {
        [1, 2, 840, 10045, 3, 1, 7] => ("P-256", &agreement::ECDH_P256, 32),
        [1, 3, 132, 0, 34] => ("P-384", &agreement::ECDH_P384, 48),
        [1, 3, 132, 0, 35] => ("P-521", &agreement::ECDH_P521, 66),
        _ => return None,
    })
}

/// Go's `x509.ParseECPrivateKey` (with the curve from PKCS #8 when the key
/// does not name one).
fn parse_sec1(der_bytes: &[u8], curve_oid: Option<&[u64]>) -> Result<PrivateKey, String> {
    let fields = der::sequence(der_bytes).ok_or("x509: failed to parse EC private key")?;
    let version = fields.first().and_then(der::small_int);
    if version != Some(1) {
        return Err("x509: unknown EC private key version".into());
    }
    let d = fields
        .get(1)
        .filter(|t| t.tag == 0x04)
        .ok_or("x509: failed to parse EC private key")?
        .content;
    let named = fields
        .iter()
        .find(|t| t.tag == 0xa0)
        .and_then(|t| der::read(t.content))
        .and_then(|(t, _)| der::oid(&t));
    let arcs = named
        .as_deref()
        .or(curve_oid)
        .ok_or("x509: unknown elliptic curve")?;
    let (curve, alg, size) = curve_by_oid(arcs).ok_or("x509: unknown elliptic curve")?;
    if d.len() > size {
        return Err("x509: invalid private key length".into());
    }
    let mut scalar = vec![0u8; size - d.len()];
    scalar.extend_from_slice(d);
    let key = agreement::PrivateKey::from_private_key(alg, &scalar)
        .map_err(|_| "x509: invalid elliptic curve private key value".to_string())?;
    let point = key
        .compute_public_key()
        .map_err(|_| "x509: invalid elliptic curve private key value".to_string())?
        .as_ref()
        .to_vec();
    Ok(PrivateKey::Ec {
        curve,
        point,
        d: scalar,
    })
}

/// Go's `x509.ParsePKCS8PrivateKey`.
fn parse_pkcs8(der_bytes: &[u8]) -> Result<PrivateKey, String> {
    let fields = der::sequence(der_bytes).ok_or(
        "x509: failed to parse private key (use ParsePKCS1PrivateKey instead for this key format)",
    )?;
    let (alg, key) = match (fields.get(1), fields.get(2)) {
        (Some(a), Some(k)) if a.tag == 0x30 && k.tag == 0x04 => (a, k),
        _ => return Err("x509: failed to parse private key".into()),
    };
    let alg_fields = der::children(alg.content).ok_or("x509: failed to parse private key")?;
    let oid = alg_fields
        .first()
        .and_then(der::oid)
        .ok_or("x509: failed to parse private key")?;
    match oid.as_slice() {
        OID_RSA => parse_pkcs1(key.content)
            .map_err(|e| format!("x509: failed to parse RSA private key embedded in PKCS#8: {e}")),
        OID_EC => {
            let curve = alg_fields.get(1).and_then(der::oid);
            parse_sec1(key.content, curve.as_deref()).map_err(|e| {
                format!("x509: failed to parse EC private key embedded in PKCS#8: {e}")
            })
        }
        OID_ED25519 => {
            let seed = der::read(key.content)
                .filter(|(t, rest)| t.tag == 0x04 && rest.is_empty() && t.content.len() == 32)
                .map(|(t, _)| t.content.to_vec())
                .ok_or("x509: invalid Ed25519 private key")?;
            let pair = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
                .map_err(|_| "x509: invalid Ed25519 private key".to_string())?;
            let public = aws_lc_rs::signature::KeyPair::public_key(&pair)
                .as_ref()
                .to_vec();
            Ok(PrivateKey::Ed25519 { seed, public })
        }
        OID_X25519 => Ok(PrivateKey::Opaque),
        _ => Err("x509: PKCS#8 wrapping contained private key with unknown algorithm".into()),
    }
}

/// OPA's `getPrivateKeysFromPEMData`.
fn private_keys_from_pem(input: &str) -> Result<Vec<PrivateKey>, String> {
    let decoded = std_padded_str(input);
    let mut bytes: &[u8] = decoded.as_deref().unwrap_or(input.as_bytes());
    let mut keys = Vec::new();
    while !bytes.is_empty() {
        let Some((block, rest)) = pem_decode(bytes) else {
            break;
        };
        bytes = rest;
        match block.kind.as_slice() {
            b"RSA PRIVATE KEY" => keys.push(parse_pkcs1(&block.bytes)?),
            b"PRIVATE KEY" => keys.push(parse_pkcs8(&block.bytes)?),
            b"EC PRIVATE KEY" => keys.push(parse_sec1(&block.bytes, None)?),
            _ => {}
        }
    }
    Ok(keys)
}

fn std_padded_str(input: &str) -> Option<Vec<u8>> {
    std_base64(input).ok()
}

/// Go's JSON of `*rsa.PrivateKey`, `*ecdsa.PrivateKey` or
/// `ed25519.PrivateKey`.
fn private_key_json(key: &PrivateKey) -> Value {
    let mut o = Object::default();
    match key {
        PrivateKey::Rsa {
            n,
            e,
            d,
            p,
            q,
            dp,
            dq,
            qinv,
        } => {
            o.set("N", big(n));
            o.set("E", big(e));
            o.set("D", big(d));
            o.set("Primes", Value::from(vec![big(p), big(q)]));
            let mut pre = Object::default();
            pre.set("Dp", big(dp));
            pre.set("Dq", big(dq));
            pre.set("Qinv", big(qinv));
            pre.set("CRTValues", Value::from(Vec::<Value>::new()));
            o.set("Precomputed", pre.into_value());
        }
        PrivateKey::Ec { point, d, .. } => {
            let size = (point.len() - 1) / 2;
            o.set("Curve", Value::new_object());
            o.set("X", big(&BigUint::from_bytes_be(&point[1..=size])));
            o.set("Y", big(&BigUint::from_bytes_be(&point[1 + size..])));
            o.set("D", big(&BigUint::from_bytes_be(d)));
        }
        PrivateKey::Ed25519 { seed, public } => return b64(&[&seed[..], &public[..]].concat()),
        PrivateKey::Opaque => {}
    }
    o.into_value()
}

/// `crypto.parse_private_keys(pem)`.
pub(super) fn parse_private_keys(input: &str) -> Result<Value, String> {
    if input.is_empty() {
        return Ok(Value::Null);
    }
    let keys = private_keys_from_pem(input)?;
    Ok(Value::from(
        keys.iter().map(private_key_json).collect::<Vec<_>>(),
    ))
}

fn b64url(bytes: &[u8]) -> Value {
    Value::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// `crypto.x509.parse_rsa_private_key(pem)`: the first private key as a
/// JWK.
pub(super) fn jwk_from_private_key(input: &str) -> Result<Value, String> {
    if input.is_empty() {
        return Err("input PEM data was empty".into());
    }
    let text = if input.starts_with("-----BEGIN") {
        input.to_string()
    } else {
        String::from_utf8_lossy(&std_base64(input)?).into_owned()
    };
    let keys = private_keys_from_pem(&text)?;
    let Some(key) = keys.first() else {
        return Ok(Value::Null);
    };
    let mut o = Object::default();
    match key {
        PrivateKey::Rsa {
            n,
            e,
            d,
            p,
            q,
            dp,
            dq,
            qinv,
        } => {
            o.set("kty", Value::from("RSA"));
            for (name, v) in [
                ("n", n),
                ("e", e),
                ("d", d),
                ("p", p),
                ("q", q),
                ("dp", dp),
                ("dq", dq),
                ("qi", qinv),
            ] {
                o.set(name, b64url(&v.to_bytes_be()));
            }
        }
        PrivateKey::Ec { curve, point, d } => {
            let size = (point.len() - 1) / 2;
            o.set("kty", Value::from("EC"));
            o.set("crv", Value::from(*curve));
            o.set("x", b64url(&point[1..=size]));
            o.set("y", b64url(&point[1 + size..]));
            o.set("d", b64url(d));
        }
        PrivateKey::Ed25519 { seed, public } => {
            o.set("kty", Value::from("OKP"));
            o.set("crv", Value::from("Ed25519"));
            o.set("x", b64url(public));
            o.set("d", b64url(seed));
        }
        PrivateKey::Opaque => return Err("unsupported key type".into()),
    }
    Ok(o.into_value())
}

/// Decodes OPA's key pair operand: PEM, or base64 of PEM or DER (DER is
/// wrapped in a block of `kind`).
fn key_pair_operand(input: &str) -> Result<Vec<u8>, String> {
    if input.as_bytes().starts_with(b"-----BEGIN ") {
        return Ok(input.as_bytes().to_vec());
    }
    std_base64(input)
}

/// `crypto.x509.parse_keypair(cert, key)`: Go's JSON of the
/// `tls.Certificate` that `tls.X509KeyPair` returns.
pub(super) fn key_pair(cert: &str, key: &str) -> Result<Value, String> {
    let cert_bytes = key_pair_operand(cert)?;
    let key_bytes = key_pair_operand(key)?;
    let certs: Vec<Vec<u8>> = if cert_bytes.starts_with(b"-----BEGIN ") {
        let mut certs = Vec::new();
        let mut rest: &[u8] = &cert_bytes;
        while let Some((block, after)) = pem_decode(rest) {
            if block.kind == b"CERTIFICATE" {
                certs.push(block.bytes);
            }
            rest = after;
        }
        certs
    } else {
        vec![cert_bytes]
    };
    if certs.is_empty() {
        return Err("tls: failed to find any PEM data in certificate input".into());
    }
    let private = if key_bytes.starts_with(b"-----BEGIN") {
        let mut rest: &[u8] = &key_bytes;
        let mut found = None;
        while let Some((block, after)) = pem_decode(rest) {
            if block.kind == b"PRIVATE KEY" || block.kind.ends_with(b" PRIVATE KEY") {
                found = Some(block.bytes);
                break;
            }
            rest = after;
        }
        found.ok_or("tls: failed to find any PEM data in key input")?
    } else {
        key_bytes
    };
    let key = parse_pkcs1(&private)
        .or_else(|_| parse_pkcs8(&private))
        .or_else(|_| parse_sec1(&private, None))
        .map_err(|_| "tls: failed to parse private key".to_string())?;
    let leaf_der = &certs[0];
    pem_input::parse_certificates(leaf_der)?;
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|_| "x509: malformed certificate".to_string())?;
    let (_, public) = gojson::public_key(&leaf.tbs_certificate.subject_pki);
    if !matches_public(&key, &public) {
        return Err("tls: private key does not match public key".into());
    }
    let mut o = Object::default();
    o.set(
        "Certificate",
        Value::from(certs.iter().map(|c| b64(c)).collect::<Vec<_>>()),
    );
    o.set("PrivateKey", private_key_json(&key));
    o.set("SupportedSignatureAlgorithms", Value::Null);
    o.set("OCSPStaple", Value::Null);
    o.set("SignedCertificateTimestamps", Value::Null);
    o.set("Leaf", cert_json::certificate(leaf_der, false));
    Ok(o.into_value())
}

/// Whether `key` is the private half of the certificate key `public` (in
/// its JSON form).
fn matches_public(key: &PrivateKey, public: &Value) -> bool {
    let field = |name: &str| match public {
        Value::Object(o) => o.get(&Value::from(name)).cloned(),
        _ => None,
    };
    match key {
        PrivateKey::Rsa { n, e, .. } => field("N") == Some(big(n)) && field("E") == Some(big(e)),
        PrivateKey::Ec { point, .. } => {
            let size = (point.len() - 1) / 2;
            field("X") == Some(big(&BigUint::from_bytes_be(&point[1..=size])))
                && field("Y") == Some(big(&BigUint::from_bytes_be(&point[1 + size..])))
        }
        PrivateKey::Ed25519 { public: pk, .. } => *public == b64(pk),
        PrivateKey::Opaque => false,
    }
}
