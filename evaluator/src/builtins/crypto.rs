//! `crypto.*` builtins with OPA's semantics.

use regorus::Value;
use sha2::Digest;

use super::{BuiltinError, arg_str};

pub(crate) const BUILTINS: &[(&str, usize)] = &[("crypto.sha256", 1)];

pub(crate) fn call(name: &str, args: &[Value]) -> Result<Value, BuiltinError> {
    match name {
        "crypto.sha256" => {
            let s = arg_str("crypto.sha256", args, 0)?;
            Ok(Value::from(hex::encode(sha2::Sha256::digest(s.as_bytes()))))
        }
        _ => Err(BuiltinError::Unknown(name.to_string())),
    }
}
