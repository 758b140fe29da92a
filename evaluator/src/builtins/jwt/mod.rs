//! `io.jwt.*` builtins with OPA v1.20's semantics (`v1/topdown/tokens.go`):
//! decoding, verification, and signing (`encode_sign[_raw]`, see `sign`).
//!
//! As in OPA, malformed input (a token that is not three base64url JSON
//! segments, an unusable key, a bad constraint) is an error, which the
//! dispatcher turns into undefined, while a signature or claim that does not
//! check out is a normal `false` / `[false, {}, {}]` result. Error messages
//! never quote token contents.
//!
//! Keys are read as OPA does (Go's `encoding/pem` and `crypto/x509` for PEM
//! certificates and public keys, `jwx` v3 for JWKs and JWK Sets) and
//! signatures checked with Go's rules (see `sig`: RSA goes through
//! `aws-lc-rs` where its answer is Go's, else through a reference
//! implementation). Parsed key texts and signature check outcomes are kept
//! in bounded caches (see `cache`); both are pure functions of their
//! inputs, so a cached answer is the one a fresh call gives. Known
//! differences, all on unusual input:
//! - P-224 keys (PEM or certificate only) parse but never verify;
//! - header/payload JSON nested deeper than 128 levels, or holding a number
//!   beyond the float64 range (`1e400`), is an error (OPA accepts both);
//! - certificates are parsed with `x509-parser`, whose acceptance of odd
//!   certificates can differ from Go's; DSA keys are not validated;
//! - where OPA panics (a non-string `cty` in `io.jwt.decode`, a non-string
//!   `iss` claim under an `iss` constraint) this is a plain error;
//! - without a `time` constraint `decode_verify` reads the clock at each
//!   call (OPA once per query).

pub(super) mod b64;
mod cache;
mod json;
mod jwk;
mod marshal;
mod sig;
mod sign;
mod verify;
pub(super) mod x509;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use regorus::Value;

use self::sig::{Curve, Hash, RsaKey};
use self::verify::decode_verify;
use super::{BuiltinError, arg_str};

/// The algorithms OPA knows; JWKs declaring another `alg` are skipped.
const TOKEN_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256",
    "HS384", "HS512", "EdDSA",
];

/// How one `io.jwt.verify_*` builtin checks a signature.
#[derive(Clone, Copy, Debug)]
enum Method {
    Rsa(Hash),
    Pss(Hash),
    Ecdsa(Hash),
    EdDsa,
    Hmac(Hash),
}

const VERIFIERS: &[(&str, Method)] = &[
    ("io.jwt.verify_rs256", Method::Rsa(Hash::Sha256)),
    ("io.jwt.verify_rs384", Method::Rsa(Hash::Sha384)),
    ("io.jwt.verify_rs512", Method::Rsa(Hash::Sha512)),
    ("io.jwt.verify_ps256", Method::Pss(Hash::Sha256)),
    ("io.jwt.verify_ps384", Method::Pss(Hash::Sha384)),
    ("io.jwt.verify_ps512", Method::Pss(Hash::Sha512)),
    ("io.jwt.verify_es256", Method::Ecdsa(Hash::Sha256)),
    ("io.jwt.verify_es384", Method::Ecdsa(Hash::Sha384)),
    ("io.jwt.verify_es512", Method::Ecdsa(Hash::Sha512)),
    ("io.jwt.verify_eddsa", Method::EdDsa),
    ("io.jwt.verify_hs256", Method::Hmac(Hash::Sha256)),
    ("io.jwt.verify_hs384", Method::Hmac(Hash::Sha384)),
    ("io.jwt.verify_hs512", Method::Hmac(Hash::Sha512)),
];

const DECODE: &str = "io.jwt.decode";
const DECODE_VERIFY: &str = "io.jwt.decode_verify";

pub(crate) const BUILTINS: &[(&str, usize)] = &[
    (DECODE, 1),
    (DECODE_VERIFY, 2),
    (sign::ENCODE_SIGN, 3),
    (sign::ENCODE_SIGN_RAW, 3),
    ("io.jwt.verify_rs256", 2),
    ("io.jwt.verify_rs384", 2),
    ("io.jwt.verify_rs512", 2),
    ("io.jwt.verify_ps256", 2),
    ("io.jwt.verify_ps384", 2),
    ("io.jwt.verify_ps512", 2),
    ("io.jwt.verify_es256", 2),
    ("io.jwt.verify_es384", 2),
    ("io.jwt.verify_es512", 2),
    ("io.jwt.verify_eddsa", 2),
    ("io.jwt.verify_hs256", 2),
    ("io.jwt.verify_hs384", 2),
    ("io.jwt.verify_hs512", 2),
];

pub(crate) fn call(name: &str, args: &[Value]) -> Result<Value, BuiltinError> {
    match name {
        DECODE => {
            decode(arg_str(DECODE, args, 0)?.as_bytes()).map_err(|reason| invalid(DECODE, reason))
        }
        DECODE_VERIFY => decode_verify(args, now_ns()),
        sign::ENCODE_SIGN => sign::encode_sign(args),
        sign::ENCODE_SIGN_RAW => sign::encode_sign_raw(args),
        _ => match VERIFIERS.iter().find(|(n, _)| *n == name) {
            Some(&(name, Method::Hmac(hash))) => verify_hmac(name, hash, args),
            Some(&(name, method)) => verify_with_keys(name, method, args),
            None => Err(BuiltinError::Unknown(name.to_string())),
        },
    }
}

fn invalid(name: &'static str, reason: String) -> BuiltinError {
    BuiltinError::Invalid { name, reason }
}

fn now_ns() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_nanos() as f64)
}

/// A public (or secret) key usable for verification.
#[derive(Debug)]
enum KeyMaterial {
    Rsa(Box<RsaKey>),
    /// An uncompressed point on `curve`.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
    /// A JWK `oct` key.
    Oct(Vec<u8>),
    /// A key that parses but can never verify a JWT (DSA, X25519, …).
    Unusable,
}

/// A key from a certificate, PEM public key or JWK, with the JWK's `alg`
/// and `kid` (empty when absent).
#[derive(Debug)]
struct VerificationKey {
    material: KeyMaterial,
    /// From a private JWK: OPA's `verify_*` builtins reject these, while
    /// `decode_verify` uses their public half.
    private: bool,
    alg: String,
    kid: String,
}

/// OPA's `getKeysFromCertOrJWK`: a PEM certificate or public key (one block,
/// nothing after it), else a JWK or JWK Set.
fn keys_from_cert_or_jwk(text: &str) -> Result<Vec<VerificationKey>, String> {
    let Some((block, rest)) = x509::pem_decode(text.as_bytes()) else {
        return jwk::parse_key_set(text);
    };
    if !rest.is_empty() {
        return Err("extra data after a PEM certificate block".into());
    }
    let material = match block.kind.as_slice() {
        b"CERTIFICATE" => x509::parse_certificate_key(&block.bytes)
            .map_err(|e| format!("failed to parse a PEM certificate: {e}"))?,
        b"PUBLIC KEY" => x509::parse_pkix_public_key(&block.bytes)
            .map_err(|e| format!("failed to parse a PEM public key: {e}"))?,
        _ => return Err("failed to extract a Key from the PEM certificate".into()),
    };
    Ok(vec![VerificationKey {
        material,
        private: false,
        alg: String::new(),
        kid: String::new(),
    }])
}

/// The three segments of a compact JWS (bytes: a nested token need not be
/// UTF-8).
struct Token<'a> {
    header: &'a [u8],
    payload: &'a [u8],
    signature: &'a [u8],
}

impl<'a> Token<'a> {
    /// OPA's `decodeJWT`.
    fn split(jwt: &'a [u8]) -> Result<Self, String> {
        let mut dots = memchr::memchr_iter(b'.', jwt);
        match (dots.next(), dots.next(), dots.next()) {
            (None, _, _) => Err("encoded JWT had no period separators".into()),
            (Some(first), Some(second), None) => Ok(Token {
                header: jwt.get(..first).unwrap_or_default(),
                payload: jwt.get(first + 1..second).unwrap_or_default(),
                signature: jwt.get(second + 1..).unwrap_or_default(),
            }),
            _ => Err(format!(
                "encoded JWT must have 3 sections, found {}",
                memchr::memchr_iter(b'.', jwt).count() + 1
            )),
        }
    }

    /// The signing input `header.payload`.
    fn signing_input(&self) -> Vec<u8> {
        [self.header, b".", self.payload].concat()
    }

    fn signature_bytes(&self) -> Result<Vec<u8>, String> {
        b64::jwt_segment(self.signature)
            .ok_or_else(|| "JWT signature had invalid encoding".to_string())
    }

    /// OPA's `decodeHeader`: a JSON object without `enc` (no JWE).
    fn decoded_header(&self) -> Result<BTreeMap<Value, Value>, String> {
        let bytes = b64::jwt_segment(self.header).ok_or("JWT header had invalid encoding")?;
        let header = json_object(&bytes).map_err(|e| format!("bad JWT header: {e}"))?;
        if header.contains_key(&Value::from("enc")) {
            return Err("JWT is a JWE object, which is not supported".into());
        }
        Ok(header)
    }

    fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        b64::jwt_segment(self.payload).ok_or_else(|| "JWT payload had invalid encoding".to_string())
    }
}

/// OPA's `extractJSONObject`.
fn json_object(bytes: &[u8]) -> Result<BTreeMap<Value, Value>, String> {
    let doc = json::parse(bytes).ok_or("invalid JSON")?;
    match json::to_value(&doc).ok_or("invalid JSON")? {
        Value::Object(o) => Ok(o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        _ => Err("decoded JSON type was not an Object".into()),
    }
}

/// The JOSE header members OPA interprets (`parseTokenHeader`).
#[derive(Default)]
struct Header {
    alg: String,
    kid: String,
    cty: String,
    crit: Vec<String>,
    unknown: Vec<String>,
}

impl Header {
    fn parse(header: &BTreeMap<Value, Value>) -> Result<Self, String> {
        let mut h = Header::default();
        for (k, v) in header {
            let Value::String(k) = k else {
                continue;
            };
            let slot = match k.as_ref() {
                "alg" => Some(&mut h.alg),
                "kid" => Some(&mut h.kid),
                "cty" => Some(&mut h.cty),
                "typ" => None,
                "crit" => {
                    let Value::Array(items) = v else {
                        return Err("crit: must be a list".into());
                    };
                    // OPA stops at the first non-string entry.
                    h.crit = items
                        .iter()
                        .map_while(|i| match i {
                            Value::String(s) => Some(s.to_string()),
                            _ => None,
                        })
                        .collect();
                    if h.crit.is_empty() {
                        return Err("crit: must be a nonempty list".into());
                    }
                    continue;
                }
                other => {
                    h.unknown.push(other.to_string());
                    continue;
                }
            };
            match (v, slot) {
                (Value::String(s), Some(slot)) => *slot = s.to_string(),
                (Value::String(_), None) => {}
                _ => return Err(format!("{k}: must be a string")),
            }
        }
        Ok(h)
    }

    /// RFC 7515: `alg` is required and every critical member understood.
    fn valid(&self) -> bool {
        !self.alg.is_empty() && !self.unknown.iter().any(|u| self.crit.contains(u))
    }
}

/// `io.jwt.decode(jwt)`: `[header, payload, signature_hex]`.
fn decode(jwt: &[u8]) -> Result<Value, String> {
    let token = Token::split(jwt)?;
    let header = token.decoded_header()?;
    let payload = token.payload_bytes()?;
    if let Some(cty) = header.get(&Value::from("cty")) {
        let Value::String(cty) = cty else {
            return Err("cty: must be a string".into());
        };
        if cty.as_ref() == "JWT" {
            // A nested token, possibly quoted.
            return decode(trim_quotes(&payload));
        }
    }
    let payload = json_object(&payload)?;
    let signature = token.signature_bytes()?;
    Ok(Value::from(vec![
        Value::from(header),
        Value::from(payload),
        Value::from(crate::builtins::hex_lower(&signature)),
    ]))
}

/// Go's `strings.Trim(s, "\"'")`.
fn trim_quotes(mut s: &[u8]) -> &[u8] {
    while let [b'"' | b'\'', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b'"' | b'\''] = s {
        s = rest;
    }
    s
}

/// `io.jwt.verify_hs*(jwt, secret)`.
fn verify_hmac(name: &'static str, hash: Hash, args: &[Value]) -> Result<Value, BuiltinError> {
    let jwt = arg_str(name, args, 0)?;
    let secret = arg_str(name, args, 1)?;
    let token = Token::split(jwt.as_bytes()).map_err(|e| invalid(name, e))?;
    let signature = token.signature_bytes().map_err(|e| invalid(name, e))?;
    Ok(Value::Bool(sig::hmac_verify(
        hash,
        secret.as_bytes(),
        &token.signing_input(),
        &signature,
    )))
}

/// `io.jwt.verify_{rs,ps,es}*` and `verify_eddsa(jwt, certificate)`.
fn verify_with_keys(
    name: &'static str,
    method: Method,
    args: &[Value],
) -> Result<Value, BuiltinError> {
    let err = |e: String| invalid(name, e);
    let jwt = arg_str(name, args, 0)?;
    let token = Token::split(jwt.as_bytes()).map_err(err)?;
    let set = cache::key_set(arg_str(name, args, 1)?);
    let keys = set.keys.as_ref().map_err(|e| err(e.clone()))?;
    // The rest is a function of the token and the keys alone.
    let valid = cache::checked(name, &set, &[jwt.as_bytes()], || {
        let signature = token.signature_bytes()?;
        let header = Header::parse(&token.decoded_header()?)?;
        let input = token.signing_input();
        let check = |key: &VerificationKey| verify_method(method, key, &input, &signature);

        // A key whose `kid` matches the token's is the only one tried.
        if !header.kid.is_empty()
            && let Some(key) = keys.iter().find(|k| k.kid == header.kid)
        {
            return Ok(check(key));
        }
        Ok(keys
            .iter()
            .filter(|k| k.alg.is_empty() || k.alg == header.alg)
            .any(check))
    })
    .map_err(err)?;
    Ok(Value::Bool(valid))
}

/// The fixed algorithm of a `verify_*` builtin; the token header's `alg`
/// plays no part. Private JWKs never match (OPA wants a public key type).
fn verify_method(method: Method, key: &VerificationKey, input: &[u8], signature: &[u8]) -> bool {
    if key.private {
        return false;
    }
    match (method, &key.material) {
        (Method::Rsa(h), KeyMaterial::Rsa(key)) => key.verify_pkcs1(h, input, signature),
        (Method::Pss(h), KeyMaterial::Rsa(key)) => key.verify_pss(h, input, signature, None),
        (Method::Ecdsa(h), KeyMaterial::Ec { curve, point }) => {
            let (r, s) = signature.split_at(signature.len() / 2);
            sig::ecdsa_verify(*curve, point, h, input, r, s)
        }
        (Method::EdDsa, KeyMaterial::Ed25519(pk)) => sig::ed25519_verify(pk, input, signature),
        _ => false,
    }
}

/// `jwsbb.Verify` (used by `decode_verify`): the algorithm is the header's,
/// RSA-PSS salts are hash-sized and ECDSA signatures exactly twice the
/// key's coordinate size.
fn verify_jws(alg: &str, key: &KeyMaterial, input: &[u8], signature: &[u8]) -> bool {
    let hash = match alg.get(2..) {
        Some("256") => Hash::Sha256,
        Some("384") => Hash::Sha384,
        Some("512") => Hash::Sha512,
        _ if alg == "EdDSA" || alg == "Ed25519" => {
            return matches!(key, KeyMaterial::Ed25519(pk) if sig::ed25519_verify(pk, input, signature));
        }
        _ => return false,
    };
    match (alg.get(..2), key) {
        (Some("HS"), KeyMaterial::Oct(secret)) => {
            !secret.is_empty() && sig::hmac_verify(hash, secret, input, signature)
        }
        (Some("RS"), KeyMaterial::Rsa(key)) => key.verify_pkcs1(hash, input, signature),
        (Some("PS"), KeyMaterial::Rsa(key)) => {
            key.verify_pss(hash, input, signature, Some(hash.len()))
        }
        (Some("ES"), KeyMaterial::Ec { curve, point }) => {
            let size = curve.size();
            signature.len() == 2 * size && {
                let (r, s) = signature.split_at(size);
                sig::ecdsa_verify(*curve, point, hash, input, r, s)
            }
        }
        _ => false,
    }
}
