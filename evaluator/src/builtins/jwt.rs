//! `io.jwt.*` builtins with OPA's semantics.

use regorus::Value;

use super::BuiltinError;

pub(crate) const BUILTINS: &[(&str, usize)] = &[];

pub(crate) fn call(name: &str, _args: &[Value]) -> Result<Value, BuiltinError> {
    Err(BuiltinError::Unknown(name.to_string()))
}
