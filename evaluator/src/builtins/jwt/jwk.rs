//! JWK and JWK Set parsing with the behaviour of `jwx` v3 as OPA v1.20 uses
//! it (`jwk.ParseString` then `jwk.Export` of every key).
//!
//! A document that is valid JSON and an object with a `keys` member is a
//! set; anything else is read as a single key from its first JSON value.
//! Every key must parse and validate, or the whole document is an error.

use num_bigint::BigUint;

use super::json::{self, Json};
use super::sig::{self, Curve, RsaKey};
use super::{KeyMaterial, TOKEN_ALGORITHMS, VerificationKey, b64, x509};

/// Algorithm names `jwx` accepts in a JWK's `alg` member.
const KEY_ALGORITHMS: &[&str] = &[
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "none",
    "EdDSA",
    "ES256K",
    "Ed25519",
    "RSA1_5",
    "RSA-OAEP",
    "RSA-OAEP-256",
    "RSA-OAEP-384",
    "RSA-OAEP-512",
    "A128KW",
    "A192KW",
    "A256KW",
    "dir",
    "ECDH-ES",
    "ECDH-ES+A128KW",
    "ECDH-ES+A192KW",
    "ECDH-ES+A256KW",
    "A128GCMKW",
    "A192GCMKW",
    "A256GCMKW",
    "PBES2-HS256+A128KW",
    "PBES2-HS384+A192KW",
    "PBES2-HS512+A256KW",
    "A128CBC-HS256",
    "A192CBC-HS384",
    "A256CBC-HS512",
    "A128GCM",
    "A192GCM",
    "A256GCM",
];

/// Curve names `jwx` accepts in `crv` (only some are usable per key type).
const CURVE_NAMES: &[&str] = &[
    "P-256", "P-384", "P-521", "Ed25519", "Ed448", "X25519", "X448",
];

/// Parses a JWK or JWK Set into OPA's verification keys: keys whose `alg`
/// is not a JWT signing algorithm are dropped (OPA skips them).
pub(super) fn parse_key_set(text: &str) -> Result<Vec<VerificationKey>, String> {
    let parse_err = |e: String| format!("failed to parse a JWK key (set): {e}");
    let keys = match json::parse(text.as_bytes()) {
        Some(doc @ Json::Object(_)) if doc.members("keys").next().is_some() => {
            let mut keys = Vec::new();
            for list in doc.members("keys") {
                let Json::Array(items) = list else {
                    return Err(parse_err("\"keys\" must be an array".into()));
                };
                for item in items {
                    keys.push(parse_key(item).map_err(parse_err)?);
                }
            }
            keys
        }
        _ => {
            let first = json::parse_prefix(text.as_bytes())
                .ok_or_else(|| parse_err("invalid JSON".into()))?;
            vec![parse_key(&first).map_err(parse_err)?]
        }
    };
    Ok(keys
        .into_iter()
        .filter(|k| k.alg.is_empty() || TOKEN_ALGORITHMS.contains(&k.alg.as_str()))
        .collect())
}

/// A member holding base64 data; JSON null reads as empty.
fn bytes_member(name: &str, v: &Json) -> Result<Vec<u8>, String> {
    match v {
        Json::Null => Ok(Vec::new()),
        Json::String(s) => {
            b64::jwx(s).ok_or_else(|| format!("failed to decode value for key {name}"))
        }
        _ => Err(format!("failed to decode value for key {name}")),
    }
}

/// A string member; JSON null reads as empty.
fn string_member(name: &str, v: &Json) -> Result<String, String> {
    match v {
        Json::Null => Ok(String::new()),
        Json::String(s) => Ok(s.clone()),
        _ => Err(format!("failed to decode value for key {name}")),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kty {
    Rsa,
    Ec,
    Okp,
    Oct,
}

/// One JWK object.
pub(super) fn parse_key(j: &Json) -> Result<VerificationKey, String> {
    let Json::Object(fields) = j else {
        return Err("a JWK must be a JSON object".into());
    };
    // The probe: Go matches struct fields case-insensitively.
    let mut kty_name = String::new();
    let mut private = false;
    for (k, v) in fields {
        if k.eq_ignore_ascii_case("kty") {
            kty_name = string_member("kty", v)?;
        }
        if k.eq_ignore_ascii_case("d") {
            private = true;
        }
    }
    let kty = match kty_name.as_str() {
        "RSA" => Kty::Rsa,
        "EC" => Kty::Ec,
        "OKP" => Kty::Okp,
        "oct" => Kty::Oct,
        _ => return Err("invalid key type".into()),
    };
    let private = private && kty != Kty::Oct;

    let mut alg = String::new();
    let mut kid = String::new();
    let mut crv = None;
    let mut data: Vec<(&str, Vec<u8>)> = Vec::new();
    for (name, v) in fields {
        match name.as_str() {
            "kty" => {
                if string_member("kty", v)? != kty_name {
                    return Err("invalid kty value".into());
                }
            }
            "use" | "x5u" | "x5t" | "x5t#S256" => {
                string_member(name, v)?;
            }
            "kid" => kid = string_member("kid", v)?,
            "alg" => {
                alg = string_member("alg", v)?;
                if !KEY_ALGORITHMS.contains(&alg.as_str()) {
                    return Err("invalid key algorithm".into());
                }
            }
            "key_ops" => match v {
                Json::Null => {}
                Json::Array(ops) if ops.iter().all(|op| matches!(op, Json::String(_))) => {}
                _ => return Err("failed to decode value for key key_ops".into()),
            },
            "x5c" => check_x5c(v)?,
            "crv" if matches!(kty, Kty::Ec | Kty::Okp) => {
                let c = string_member("crv", v)?;
                if !CURVE_NAMES.contains(&c.as_str()) {
                    return Err("unknown elliptic curve algorithm".into());
                }
                crv = Some(c);
            }
            _ => {
                if let Some(field) = data_field(kty, private, name) {
                    let bytes = bytes_member(field, v)?;
                    data.retain(|(n, _)| *n != field);
                    data.push((field, bytes));
                }
            }
        }
    }
    let get = |name: &str| {
        data.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.as_slice())
    };
    let required =
        |name: &str| get(name).ok_or_else(|| format!("required field {name} is missing"));

    let material = match kty {
        Kty::Rsa => {
            let n = BigUint::from_bytes_be(required("n")?);
            let e = BigUint::from_bytes_be(required("e")?);
            if private && required("d")?.is_empty() {
                return Err("missing \"d\" value".into());
            }
            if n.bits() == 0 {
                return Err("missing \"n\" value".into());
            }
            if e.bits() == 0 {
                return Err("missing \"e\" value".into());
            }
            if !e.bit(0) {
                return Err("invalid rsa public exponent".into());
            }
            if private && (get("p").is_none() || get("q").is_none()) {
                return Err("failed to export jwk.Key to raw format".into());
            }
            KeyMaterial::Rsa(Box::new(RsaKey::new(n, e)))
        }
        Kty::Ec => {
            let crv = crv.ok_or("required field crv is missing")?;
            let (x, y) = (required("x")?, required("y")?);
            let d = if private { Some(required("d")?) } else { None };
            let curve = match crv.as_str() {
                "P-256" => Curve::P256,
                "P-384" => Curve::P384,
                "P-521" => Curve::P521,
                _ => return Err("invalid curve algorithm".into()),
            };
            let size = curve.size();
            if x.len() != size || y.len() != size || d.is_some_and(|d| d.len() != size) {
                return Err("invalid coordinate length".into());
            }
            let point = [&[4u8][..], x, y].concat();
            if !sig::ec_point_valid(curve, &point) {
                return Err("invalid ECDSA public key".into());
            }
            KeyMaterial::Ec { curve, point }
        }
        Kty::Okp => {
            let crv = crv.ok_or("required field crv is missing")?;
            let x = required("x")?;
            let d = if private { Some(required("d")?) } else { None };
            match crv.as_str() {
                "Ed25519" => {
                    if x.len() != 32 || d.is_some_and(|d| d.len() != 32) {
                        return Err("ed25519: wrong key size".into());
                    }
                    if let Some(d) = d
                        && sig::ed25519_public_from_seed(d).as_deref() != Some(x)
                    {
                        return Err("ed25519: invalid x value given d value".into());
                    }
                    KeyMaterial::Ed25519(x.to_vec())
                }
                "X25519" => {
                    if x.len() != 32 || d.is_some_and(|d| d.len() != 32) {
                        return Err("x25519: wrong key size".into());
                    }
                    KeyMaterial::Unusable
                }
                _ => return Err("invalid curve algorithm".into()),
            }
        }
        Kty::Oct => {
            if required("k")?.is_empty() {
                return Err("missing \"k\" field".into());
            }
            KeyMaterial::Oct(required("k")?.to_vec())
        }
    };
    Ok(VerificationKey {
        material,
        private,
        alg,
        kid,
    })
}

/// The base64 members of each key type.
fn data_field(kty: Kty, private: bool, name: &str) -> Option<&'static str> {
    let fields: &[&'static str] = match (kty, private) {
        (Kty::Rsa, false) => &["n", "e"],
        (Kty::Rsa, true) => &["n", "e", "d", "p", "q", "dp", "dq", "qi"],
        (Kty::Ec, false) => &["x", "y"],
        (Kty::Ec, true) => &["x", "y", "d"],
        (Kty::Okp, false) => &["x"],
        (Kty::Okp, true) => &["x", "d"],
        (Kty::Oct, _) => &["k"],
    };
    fields.iter().copied().find(|f| *f == name)
}

/// `x5c`: an array of padded standard-base64 DER certificates.
fn check_x5c(v: &Json) -> Result<(), String> {
    let Json::Array(certs) = v else {
        return Err("failed to unmarshal certificate chain".into());
    };
    for cert in certs {
        let Json::String(text) = cert else {
            return Err("failed to decode certificate".into());
        };
        let cleaned: Vec<u8> = text.bytes().filter(|&b| b != b' ' && b != b'\t').collect();
        let der = b64::std_padded(&cleaned).ok_or("failed to base64 decode the certificate")?;
        x509::check_certificate(&der)?;
    }
    Ok(())
}
