//! Native builtins: the Rego functions that Rego cannot implement itself.
//!
//! Each family lives in its own module and exposes a `BUILTINS` table
//! (name, arity) and a `call` function. [`NativeBuiltins`] is the one
//! implementation behind both evaluation paths: registered as host-await
//! builtins for the bytecode VM and as extensions for the interpreter.
//!
//! As in OPA (non-strict mode), a builtin error makes the calling expression
//! undefined; the error itself is kept for the decision's diagnostics.

mod aws;
mod crypto;
mod graphql;
mod jwt;
mod misc;
mod net;
mod ratelimit;

use std::sync::Arc;

use regorus::Value;

pub use ratelimit::{RateLimiter, RateLimiterConfig};

/// A failed native builtin call.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BuiltinError {
    /// An operand had the wrong type or shape.
    #[error("{name}: operand {position} must be {expected}")]
    Operand {
        name: &'static str,
        position: usize,
        expected: &'static str,
    },
    /// The builtin rejected its input (malformed token, bad key, …).
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    /// No builtin of that name is registered.
    #[error("unknown native builtin `{0}`")]
    Unknown(String),
}

impl BuiltinError {
    /// Stable error code for decision records and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Operand { .. } => "builtin_operand",
            Self::Invalid { .. } => "builtin_invalid",
            Self::Unknown(_) => "builtin_unknown",
        }
    }

    /// OPA's error code for the same failure in strict mode.
    pub fn opa_code(&self) -> &'static str {
        match self {
            Self::Operand { .. } => "eval_type_error",
            Self::Invalid { .. } | Self::Unknown(_) => "eval_builtin_error",
        }
    }
}

/// Outcome of one non-deterministic builtin call, kept for decision records
/// so a decision can be replayed with the same builtin results.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    pub name: String,
    pub args: Vec<Value>,
    pub result: Value,
}

thread_local! {
    static RECORDED: std::cell::RefCell<Vec<RecordedCall>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Takes the non-deterministic calls recorded on this thread since the last take.
pub fn take_recorded() -> Vec<RecordedCall> {
    RECORDED.with_borrow_mut(std::mem::take)
}

/// A family of deterministic builtins: its (name, arity) table and its call.
type Family = (
    &'static [(&'static str, usize)],
    fn(&str, &[Value]) -> Result<Value, BuiltinError>,
);

/// Every deterministic family, in lookup order.
const FAMILIES: &[Family] = &[
    (crypto::BUILTINS, crypto::call),
    (jwt::BUILTINS, jwt::call),
    (net::BUILTINS, net::call),
    (graphql::BUILTINS, graphql::call),
    (aws::BUILTINS, aws::call),
    (misc::BUILTINS, misc::call),
];

/// Deterministic-family builtins whose result depends on the outside world
/// (DNS), recorded for replay like the rate limiter.
const NONDETERMINISTIC: &[&str] = &["net.lookup_ip_addr"];

/// The native builtins shared by every worker of an agent.
#[derive(Clone)]
pub struct NativeBuiltins {
    limiter: Arc<RateLimiter>,
}

impl NativeBuiltins {
    /// Builtins backed by `limiter` for rate-limit state.
    pub fn new(limiter: Arc<RateLimiter>) -> Self {
        Self { limiter }
    }

    /// Every native builtin as (name, arity).
    pub fn signatures() -> impl Iterator<Item = (&'static str, usize)> {
        FAMILIES
            .iter()
            .flat_map(|(table, _)| table.iter())
            .chain(ratelimit::BUILTINS)
            .copied()
    }

    /// Whether a call to `name` has a result that differs between runs with
    /// the same arguments (and so is recorded for replay).
    pub fn is_nondeterministic(name: &str) -> bool {
        ratelimit::BUILTINS.iter().any(|(n, _)| *n == name) || NONDETERMINISTIC.contains(&name)
    }

    /// Calls builtin `name` with `args`. A non-deterministic call's result
    /// is also recorded for the current thread (see [`take_recorded`]).
    pub fn call(&self, name: &str, args: &[Value]) -> Result<Value, BuiltinError> {
        if ratelimit::BUILTINS.iter().any(|(n, _)| *n == name) {
            let result = ratelimit::call(&self.limiter, name, args)?;
            RECORDED.with_borrow_mut(|r| {
                r.push(RecordedCall {
                    name: name.to_string(),
                    args: args.to_vec(),
                    result: result.clone(),
                })
            });
            return Ok(result);
        }
        for (table, call) in FAMILIES {
            if table.iter().any(|(n, _)| *n == name) {
                let result = call(name, args)?;
                if NONDETERMINISTIC.contains(&name) {
                    RECORDED.with_borrow_mut(|r| {
                        r.push(RecordedCall {
                            name: name.to_string(),
                            args: args.to_vec(),
                            result: result.clone(),
                        })
                    });
                }
                return Ok(result);
            }
        }
        Err(BuiltinError::Unknown(name.to_string()))
    }

    /// Calls `name` with OPA's non-strict semantics: an error gives
    /// `Value::Undefined` and is returned alongside for diagnostics.
    pub fn call_lenient(&self, name: &str, args: &[Value]) -> (Value, Option<BuiltinError>) {
        match self.call(name, args) {
            Ok(v) => (v, None),
            Err(e) => (Value::Undefined, Some(e)),
        }
    }

    /// Registers every native builtin as an interpreter extension on `engine`,
    /// with OPA's default (non-strict) semantics: an error makes the calling
    /// expression undefined.
    pub fn register_extensions(&self, engine: &mut regorus::Engine) -> anyhow::Result<()> {
        self.register_extensions_with(engine, false)
    }

    /// Registers every native builtin as an interpreter extension on `engine`.
    /// With `strict` (OPA's `--strict-builtin-errors`), an error stops the
    /// evaluation with the OPA error code in its message
    /// (`eval_type_error: name: …` or `eval_builtin_error: name: …`).
    pub fn register_extensions_with(
        &self,
        engine: &mut regorus::Engine,
        strict: bool,
    ) -> anyhow::Result<()> {
        for (name, arity) in Self::signatures() {
            let this = self.clone();
            let nargs = u8::try_from(arity)?;
            engine.add_extension(
                name.to_string(),
                nargs,
                Box::new(move |args: Vec<Value>| {
                    if !strict {
                        return Ok(this.call_lenient(name, &args).0);
                    }
                    this.call(name, &args)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", e.opa_code()))
                }),
            )?;
        }
        Ok(())
    }
}

/// Argument helpers shared by the builtin families.
pub(crate) fn arg_str<'a>(
    name: &'static str,
    args: &'a [Value],
    position: usize,
) -> Result<&'a str, BuiltinError> {
    match args.get(position) {
        Some(Value::String(s)) => Ok(s.as_ref()),
        _ => Err(BuiltinError::Operand {
            name,
            position: position + 1,
            expected: "a string",
        }),
    }
}

/// A number argument as `f64`.
pub(crate) fn arg_f64(
    name: &'static str,
    args: &[Value],
    position: usize,
) -> Result<f64, BuiltinError> {
    match args.get(position) {
        Some(v @ Value::Number(_)) => v.as_f64().map_err(|_| BuiltinError::Operand {
            name,
            position: position + 1,
            expected: "a number",
        }),
        _ => Err(BuiltinError::Operand {
            name,
            position: position + 1,
            expected: "a number",
        }),
    }
}

/// `bytes` in lower-case hexadecimal (Go's `hex.EncodeToString`), through a
/// table: `hex::encode` goes character by character through an iterator,
/// which cost more than the SHA-256 of a short key it follows.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    // Only ASCII digits and letters were written.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod hex_tests {
    #[test]
    fn hex_lower_is_hex_encode() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(super::hex_lower(&all), hex::encode(&all));
        assert_eq!(super::hex_lower(&[]), "");
    }
}
