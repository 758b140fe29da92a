// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

use crate::ast::{Expr, Ref};
use crate::builtins;
use crate::builtins::utils::{ensure_args_count, operand_error, operand_type_error};

use crate::lexer::Span;
use crate::value::Value;
use crate::*;

use anyhow::Result;

pub fn register(m: &mut builtins::BuiltinsMap<&'static str, builtins::BuiltinFcn>) {
    m.insert("http.send", (send, 1));
}

/// policy-engine patch: request keys `http.send` accepts in OPA.
const ALLOWED_KEYS: &[&str] = &[
    "method",
    "url",
    "body",
    "enable_redirect",
    "force_json_decode",
    "force_yaml_decode",
    "headers",
    "raw_body",
    "tls_use_system_certs",
    "tls_ca_cert",
    "tls_ca_cert_file",
    "tls_ca_cert_env_variable",
    "tls_client_cert",
    "tls_client_cert_file",
    "tls_client_cert_env_variable",
    "tls_client_key",
    "tls_client_key_file",
    "tls_client_key_env_variable",
    "tls_insecure_skip_verify",
    "tls_server_name",
    "timeout",
    "cache",
    "force_cache",
    "force_cache_duration_seconds",
    "raise_error",
    "caching_mode",
    "max_retry_attempts",
];

/// policy-engine patch: request keys `http.send` requires in OPA.
const REQUIRED_KEYS: &[&str] = &["method", "url"];

/// A set of keys as OPA prints one: `{"a", "b"}`.
fn key_set(keys: &[Value]) -> String {
    let items: Vec<String> = keys
        .iter()
        .map(|k| k.to_json_str().unwrap_or_else(|_| k.to_string()))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn send(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "http.send";
    ensure_args_count(span, name, params, args, 1)?;
    // policy-engine patch: validate the request as OPA does
    // (`validateHTTPRequestOperand`) before giving up on sending it, so a
    // malformed request is an `eval_type_error` as in OPA.
    let Value::Object(request) = &args[0] else {
        return Err(operand_type_error(
            params[0].span(),
            name,
            1,
            &["object"],
            &args[0],
        ));
    };
    let invalid: Vec<Value> = request
        .keys()
        .filter(|k| !matches!(k, Value::String(s) if ALLOWED_KEYS.contains(&s.as_ref())))
        .cloned()
        .collect();
    if !invalid.is_empty() {
        let message = format!("invalid request parameters(s): {}", key_set(&invalid));
        return Err(operand_error(params[0].span(), name, 1, &message));
    }
    let missing: Vec<Value> = REQUIRED_KEYS
        .iter()
        .filter(|k| !request.contains_key(&Value::from(**k)))
        .map(|k| Value::from(*k))
        .collect();
    if !missing.is_empty() {
        let message = format!(
            "missing required request parameters(s): {}",
            key_set(&missing)
        );
        return Err(operand_error(params[0].span(), name, 1, &message));
    }
    Ok(Value::Undefined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sets_print_as_in_opa() {
        let keys = [Value::from("bad_key"), Value::from("other")];
        assert_eq!(key_set(&keys), r#"{"bad_key", "other"}"#);
    }
}
