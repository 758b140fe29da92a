//! `io.jwt.decode_verify(jwt, constraints)` (OPA's `builtinJWTDecodeVerify`).

use std::cmp::Ordering;
use std::convert::Infallible;
use std::sync::Arc;

use regorus::Value;

use super::cache::{self, KeySet};
use super::{DECODE_VERIFY, Header, KeyMaterial, Token, invalid, json_object, verify_jws};
use crate::builtins::{BuiltinError, arg_str};

/// The constraints object, decoded.
struct Constraints {
    secret: String,
    alg: String,
    iss: String,
    aud: String,
    /// Set when a `cert` was given; its keys (possibly none) parsed.
    keys: Option<Arc<KeySet>>,
    /// Nanoseconds since the epoch.
    time: f64,
}

/// OPA's `timeFromValue`: a non-negative number that fits a float64.
fn time_from_value(v: &Value) -> Result<f64, String> {
    let Value::Number(n) = v else {
        return Err("token time constraint: must be a number".into());
    };
    let t = n
        .as_f64()
        .or_else(|| n.format_decimal().parse::<f64>().ok())
        .filter(|t| t.is_finite())
        .ok_or("token time constraint: unvalid float64")?;
    if t < 0.0 {
        return Err("token time constraint: must not be negative".into());
    }
    Ok(t)
}

impl Constraints {
    /// OPA's `parseTokenConstraints` and `validate`.
    fn parse(constraints: &Value, wallclock_ns: f64) -> Result<Self, String> {
        let Value::Object(o) = constraints else {
            return Err("constraints must be an object".into());
        };
        let mut c = Constraints {
            secret: String::new(),
            alg: String::new(),
            iss: String::new(),
            aud: String::new(),
            keys: None,
            time: wallclock_ns,
        };
        let mut time = None;
        for (k, v) in o.iter() {
            let name = match k {
                Value::String(k) => k.as_ref(),
                _ => return Err("unknown token validation constraint".into()),
            };
            let slot = match name {
                "cert" => {
                    let Value::String(s) = v else {
                        return Err("cert constraint: must be a string".into());
                    };
                    let set = cache::key_set(s);
                    if let Err(e) = &set.keys {
                        return Err(e.clone());
                    }
                    c.keys = Some(set);
                    continue;
                }
                "time" => {
                    time = Some(time_from_value(v)?);
                    continue;
                }
                "secret" => &mut c.secret,
                "alg" => &mut c.alg,
                "iss" => &mut c.iss,
                "aud" => &mut c.aud,
                _ => return Err(format!("unknown token validation constraint: {name}")),
            };
            let Value::String(s) = v else {
                return Err(format!("{name} constraint: must be a string"));
            };
            *slot = s.to_string();
        }
        // Without a `time` constraint, the wall clock (as OPA's query time).
        c.time = match time {
            Some(t) => t,
            None => time_from_value(&Value::from(wallclock_ns))?,
        };
        match usize::from(c.keys.is_some()) + usize::from(!c.secret.is_empty()) {
            0 => Err("no key constraint".into()),
            1 => Ok(c),
            _ => Err("duplicate key constraints".into()),
        }
    }

    /// OPA's `tokenConstraints.verify`: only the trusted key(s) or secret.
    /// `kid` and `alg` are the header's (part of `input`).
    fn verify(&self, kid: &str, alg: &str, input: &[u8], signature: &[u8]) -> bool {
        let Some(set) = &self.keys else {
            return verify_jws(
                alg,
                &KeyMaterial::Oct(self.secret.as_bytes().to_vec()),
                input,
                signature,
            );
        };
        let Ok(keys) = &set.keys else {
            return false; // rejected by `parse`
        };
        let Ok(valid) = cache::checked(DECODE_VERIFY, set, &[input, signature], || {
            if !kid.is_empty()
                && let Some(key) = keys.iter().find(|k| k.kid == kid)
            {
                return Ok::<_, Infallible>(verify_jws(alg, &key.material, input, signature));
            }
            Ok(keys
                .iter()
                .filter(|k| k.alg.is_empty() || k.alg == alg)
                .any(|k| verify_jws(alg, &k.material, input, signature)))
        });
        valid
    }

    /// A string `aud` must equal the constraint; an array must contain it.
    fn valid_audience(&self, aud: &Value) -> bool {
        match aud {
            Value::String(s) => s.as_ref() == self.aud,
            Value::Array(items) => items
                .iter()
                .any(|i| matches!(i, Value::String(s) if s.as_ref() == self.aud)),
            _ => false,
        }
    }
}

fn unverified() -> Value {
    Value::from(vec![
        Value::Bool(false),
        Value::new_object(),
        Value::new_object(),
    ])
}

pub(super) fn decode_verify(args: &[Value], wallclock_ns: f64) -> Result<Value, BuiltinError> {
    let err = |e: String| invalid(DECODE_VERIFY, e);
    let constraints = match args.get(1) {
        Some(v @ Value::Object(_)) => v,
        _ => {
            return Err(BuiltinError::Operand {
                name: DECODE_VERIFY,
                position: 2,
                expected: "an object",
            });
        }
    };
    let c = Constraints::parse(constraints, wallclock_ns).map_err(err)?;

    let mut jwt = arg_str(DECODE_VERIFY, args, 0)?.as_bytes().to_vec();
    let (header, payload) = loop {
        let token = Token::split(&jwt).map_err(err)?;
        let header_obj = token.decoded_header().map_err(err)?;
        let header = Header::parse(&header_obj).map_err(err)?;
        if !header.valid() || (!c.alg.is_empty() && c.alg != header.alg) {
            return Ok(unverified());
        }
        let signature = token.signature_bytes().map_err(err)?;
        if !c.verify(&header.kid, &header.alg, &token.signing_input(), &signature) {
            return Ok(unverified());
        }
        let payload = token.payload_bytes().map_err(err)?;
        if header.cty.eq_ignore_ascii_case("JWT") {
            // A nested token, signed with the same key.
            jwt = payload;
            continue;
        }
        break (header_obj, payload);
    };
    let payload = json_object(&payload).map_err(err)?;
    let claim = |name: &str| payload.get(&Value::from(name));

    if !c.iss.is_empty() {
        match claim("iss") {
            Some(Value::String(iss)) if iss.as_ref() == c.iss => {}
            // OPA fails (a runtime panic) on a non-string `iss`.
            Some(v) if !matches!(v, Value::String(_)) => {
                return Err(err("iss value must be a string".into()));
            }
            _ => return Ok(unverified()),
        }
    }
    match claim("aud") {
        Some(aud) if !c.valid_audience(aud) => return Ok(unverified()),
        None if !c.aud.is_empty() => return Ok(unverified()),
        _ => {}
    }
    // `exp` and `nbf` are in seconds, the constraint time in nanoseconds.
    let now = Value::from(c.time / 1_000_000_000.0);
    if let Some(exp) = claim("exp") {
        if !matches!(exp, Value::Number(_)) {
            return Err(err("exp value must be a number".into()));
        }
        if now.cmp(exp) != Ordering::Less {
            return Ok(unverified());
        }
    }
    if let Some(nbf) = claim("nbf") {
        if !matches!(nbf, Value::Number(_)) {
            return Err(err("nbf value must be a number".into()));
        }
        if now.cmp(nbf) == Ordering::Less {
            return Ok(unverified());
        }
    }
    Ok(Value::from(vec![
        Value::Bool(true),
        Value::from(header),
        Value::from(payload),
    ]))
}
