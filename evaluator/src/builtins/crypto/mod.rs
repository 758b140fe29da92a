//! `crypto.*` builtins with OPA v1.20's semantics (`v1/topdown/crypto.go`).
//!
//! Digests and HMACs are hex strings of the UTF-8 bytes of their operands.
//! The X.509 and private-key builtins return what OPA returns: Go's
//! `encoding/json` form of `x509.Certificate`, `x509.CertificateRequest`,
//! `tls.Certificate` and the `crypto` private key types (see `cert_json` and `gojson`).
//! Certificates are read with `x509-parser`, whose acceptance of odd
//! certificates can differ from Go's. Error messages never quote keys.

mod cert_json;
mod chain;
mod der;
mod gojson;
mod keys;
mod pem_input;

use hmac::{Hmac, Mac};
use regorus::Value;
use sha2::Digest;

use super::{BuiltinError, arg_str};

pub(crate) const BUILTINS: &[(&str, usize)] = &[
    ("crypto.md5", 1),
    ("crypto.sha1", 1),
    ("crypto.sha256", 1),
    ("crypto.hmac.md5", 2),
    ("crypto.hmac.sha1", 2),
    ("crypto.hmac.sha256", 2),
    ("crypto.hmac.sha512", 2),
    ("crypto.hmac.equal", 2),
    (PARSE_CERTIFICATES, 1),
    (PARSE_AND_VERIFY, 1),
    (PARSE_AND_VERIFY_WITH_OPTIONS, 2),
    (PARSE_CERTIFICATE_REQUEST, 1),
    (PARSE_KEYPAIR, 2),
    (PARSE_RSA_PRIVATE_KEY, 1),
    (PARSE_PRIVATE_KEYS, 1),
];

const PARSE_CERTIFICATES: &str = "crypto.x509.parse_certificates";
const PARSE_AND_VERIFY: &str = "crypto.x509.parse_and_verify_certificates";
const PARSE_AND_VERIFY_WITH_OPTIONS: &str =
    "crypto.x509.parse_and_verify_certificates_with_options";
const PARSE_CERTIFICATE_REQUEST: &str = "crypto.x509.parse_certificate_request";
const PARSE_KEYPAIR: &str = "crypto.x509.parse_keypair";
const PARSE_RSA_PRIVATE_KEY: &str = "crypto.x509.parse_rsa_private_key";
const PARSE_PRIVATE_KEYS: &str = "crypto.parse_private_keys";

pub(crate) fn call(name: &str, args: &[Value]) -> Result<Value, BuiltinError> {
    match name {
        "crypto.md5" => digest::<md5::Md5>("crypto.md5", args),
        "crypto.sha1" => digest::<sha1::Sha1>("crypto.sha1", args),
        "crypto.sha256" => digest::<sha2::Sha256>("crypto.sha256", args),
        "crypto.hmac.md5" => hmac::<Hmac<md5::Md5>>("crypto.hmac.md5", args),
        "crypto.hmac.sha1" => hmac::<Hmac<sha1::Sha1>>("crypto.hmac.sha1", args),
        "crypto.hmac.sha256" => hmac::<Hmac<sha2::Sha256>>("crypto.hmac.sha256", args),
        "crypto.hmac.sha512" => hmac::<Hmac<sha2::Sha512>>("crypto.hmac.sha512", args),
        "crypto.hmac.equal" => {
            let a = arg_str("crypto.hmac.equal", args, 0)?;
            let b = arg_str("crypto.hmac.equal", args, 1)?;
            Ok(Value::Bool(constant_time_eq(a.as_bytes(), b.as_bytes())))
        }
        PARSE_CERTIFICATES => {
            let input = arg_str(PARSE_CERTIFICATES, args, 0)?;
            let certs =
                pem_input::certificates(input).map_err(|e| invalid(PARSE_CERTIFICATES, e))?;
            Ok(Value::from(
                certs
                    .iter()
                    .map(|c| cert_json::certificate(c, true))
                    .collect::<Vec<_>>(),
            ))
        }
        PARSE_AND_VERIFY => {
            let input = arg_str(PARSE_AND_VERIFY, args, 0)?;
            Ok(chain::parse_and_verify(
                input,
                &chain::Options::default(),
                true,
            ))
        }
        PARSE_AND_VERIFY_WITH_OPTIONS => {
            let name = PARSE_AND_VERIFY_WITH_OPTIONS;
            let input = arg_str(name, args, 0)?;
            let Some(Value::Object(options)) = args.get(1) else {
                return Err(BuiltinError::Operand {
                    name,
                    position: 2,
                    expected: "an object",
                });
            };
            // OPA reads the options only once the certificates parse.
            if pem_input::certificates(input).is_err() {
                return Ok(chain::unverified());
            }
            let options = chain::Options::parse(options.iter()).map_err(|e| invalid(name, e))?;
            Ok(chain::parse_and_verify(input, &options, false))
        }
        PARSE_CERTIFICATE_REQUEST => {
            let input = arg_str(PARSE_CERTIFICATE_REQUEST, args, 0)?;
            pem_input::certificate_request(input).map_err(|e| invalid(PARSE_CERTIFICATE_REQUEST, e))
        }
        PARSE_KEYPAIR => {
            let cert = arg_str(PARSE_KEYPAIR, args, 0)?;
            let key = arg_str(PARSE_KEYPAIR, args, 1)?;
            keys::key_pair(cert, key).map_err(|e| invalid(PARSE_KEYPAIR, e))
        }
        PARSE_RSA_PRIVATE_KEY => {
            let input = arg_str(PARSE_RSA_PRIVATE_KEY, args, 0)?;
            keys::jwk_from_private_key(input).map_err(|e| invalid(PARSE_RSA_PRIVATE_KEY, e))
        }
        PARSE_PRIVATE_KEYS => {
            let input = arg_str(PARSE_PRIVATE_KEYS, args, 0)?;
            keys::parse_private_keys(input).map_err(|e| invalid(PARSE_PRIVATE_KEYS, e))
        }
        _ => Err(BuiltinError::Unknown(name.to_string())),
    }
}

fn invalid(name: &'static str, reason: String) -> BuiltinError {
    BuiltinError::Invalid { name, reason }
}

fn digest<D: Digest>(name: &'static str, args: &[Value]) -> Result<Value, BuiltinError> {
    let s = arg_str(name, args, 0)?;
    Ok(Value::from(crate::builtins::hex_lower(&D::digest(
        s.as_bytes(),
    ))))
}

/// `crypto.hmac.*(message, key)`.
fn hmac<M: Mac + hmac::digest::KeyInit>(
    name: &'static str,
    args: &[Value],
) -> Result<Value, BuiltinError> {
    let message = arg_str(name, args, 0)?;
    let key = arg_str(name, args, 1)?;
    // HMAC takes keys of any length.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key.as_bytes())
        .map_err(|_| invalid(name, "invalid key length".into()))?;
    mac.update(message.as_bytes());
    Ok(Value::from(crate::builtins::hex_lower(
        &mac.finalize().into_bytes(),
    )))
}

/// Go's `hmac.Equal`: false for different lengths, else a comparison whose
/// time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
