//! The policy registry: every policy the agent can run, with the metadata
//! schema each one checks its configuration against.

use std::collections::{BTreeMap, HashMap};

use policy_rego::{Phase, PolicyInfo};
use serde_json::{Value, json};

use crate::chain::{OnFailure, Step, StepKind};
use crate::error::SetupError;

/// A policy the agent can run.
pub struct RegisteredPolicy {
    pub info: PolicyInfo,
    /// Path of the module, for error messages and `policyctl compile`.
    pub path: String,
    pub source: String,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for RegisteredPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredPolicy")
            .field("info", &self.info)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Every policy by name.
#[derive(Debug, Default)]
pub struct PolicyRegistry {
    policies: BTreeMap<String, RegisteredPolicy>,
}

impl PolicyRegistry {
    /// The built-in policies of `rego/policies`.
    pub fn builtin() -> Result<Self, SetupError> {
        let mut reg = Self::default();
        for p in policy_rego::builtin_policies()? {
            reg.register(p.info, p.file.path.to_string(), p.file.source.to_string())?;
        }
        Ok(reg)
    }

    /// Adds a policy; its schema must compile.
    pub fn register(
        &mut self,
        info: PolicyInfo,
        path: String,
        source: String,
    ) -> Result<(), SetupError> {
        let validator =
            jsonschema::validator_for(&info.schema).map_err(|e| SetupError::Schema {
                policy: info.name.clone(),
                reason: e.to_string(),
            })?;
        self.policies.insert(
            info.name.clone(),
            RegisteredPolicy {
                info,
                path,
                source,
                validator,
            },
        );
        Ok(())
    }

    /// The policy named `name`.
    pub fn get(&self, name: &str) -> Option<&RegisteredPolicy> {
        self.policies.get(name)
    }

    /// Every policy, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &RegisteredPolicy> {
        self.policies.values()
    }

    /// Turns a protocol metadata map (string values) into JSON: a value whose
    /// schema type is `string` stays a string, any other is parsed as JSON
    /// (and left a string when it does not parse, for the schema to reject).
    pub fn decode_metadata(&self, name: &str, raw: &HashMap<String, String>) -> Value {
        let props = self
            .get(name)
            .and_then(|p| p.info.schema.get("properties"))
            .cloned()
            .unwrap_or(Value::Null);
        let mut out = serde_json::Map::new();
        let mut keys: Vec<&String> = raw.keys().collect();
        keys.sort();
        for k in keys {
            let v = &raw[k];
            let is_string = props
                .get(k)
                .and_then(|p| p.get("type"))
                .is_some_and(|t| t == "string");
            let value = if is_string {
                Value::String(v.clone())
            } else {
                serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()))
            };
            out.insert(k.clone(), value);
        }
        Value::Object(out)
    }

    /// Checks `metadata` against the policy's schema; the error lists every
    /// violation with its location.
    pub fn validate(&self, name: &str, metadata: &Value) -> Result<(), String> {
        let Some(p) = self.get(name) else {
            return Err(format!("unknown policy `{name}`"));
        };
        let errors: Vec<String> = p
            .validator
            .iter_errors(metadata)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "invalid metadata for `{name}`: {}",
                errors.join("; ")
            ))
        }
    }

    /// The chain step for `name` with `metadata` in `phase`: the policy call,
    /// or a fixed error result when the policy is unknown, does not run in
    /// this phase, or its metadata fails the schema.
    pub fn step(
        &self,
        name: &str,
        metadata: Value,
        on_failure: OnFailure,
        phase: Phase,
        fail_on_unknown: bool,
    ) -> Step {
        let fixed = |status: &str, message: String, on_failure| Step {
            policy: name.to_string(),
            on_failure,
            kind: StepKind::Fixed {
                result: json!({"status": status, "message": message, "instructions": [], "metadata": {}}),
            },
        };
        let Some(p) = self.get(name) else {
            return if fail_on_unknown {
                fixed(
                    "POLICY_ERROR",
                    format!("unknown policy `{name}`"),
                    OnFailure::Deny,
                )
            } else {
                fixed(
                    "SKIPPED",
                    format!("unknown policy `{name}` skipped"),
                    on_failure,
                )
            };
        };
        if !p.info.phases.contains(&phase) {
            let phase = match phase {
                Phase::Request => "request",
                Phase::Response => "response",
            };
            return fixed(
                "POLICY_ERROR",
                format!("policy `{name}` does not run in the {phase} phase"),
                on_failure,
            );
        }
        match self.validate(name, &metadata) {
            Ok(()) => Step {
                policy: name.to_string(),
                on_failure,
                kind: StepKind::Policy {
                    metadata,
                    prepare: p.info.prepare,
                },
            },
            Err(message) => fixed("POLICY_ERROR", message, on_failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> PolicyRegistry {
        let mut r = PolicyRegistry::default();
        let info = PolicyInfo {
            name: "demo".into(),
            version: "1".into(),
            description: String::new(),
            phases: vec![Phase::Request],
            tier: policy_rego::Tier::Rbac,
            schema: json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "header_name": {"type": "string"},
                    "required": {"type": "boolean"},
                    "rps": {"type": "number", "exclusiveMinimum": 0}
                }
            }),
            prepare: false,
        };
        r.register(info, "policies/demo.rego".into(), String::new())
            .unwrap();
        r
    }

    #[test]
    fn metadata_strings_are_decoded_by_schema_type() {
        let r = registry();
        let raw = HashMap::from([
            ("header_name".to_string(), "123".to_string()),
            ("required".to_string(), "true".to_string()),
            ("rps".to_string(), "2.5".to_string()),
        ]);
        assert_eq!(
            r.decode_metadata("demo", &raw),
            json!({"header_name": "123", "required": true, "rps": 2.5})
        );
    }

    #[test]
    fn bad_metadata_becomes_a_fixed_error_step() {
        let r = registry();
        let step = r.step(
            "demo",
            json!({"rps": -1, "extra": 1}),
            OnFailure::Deny,
            Phase::Request,
            false,
        );
        let StepKind::Fixed { result } = step.kind else {
            panic!("expected a fixed step");
        };
        assert_eq!(result["status"], "POLICY_ERROR");
        let msg = result["message"].as_str().unwrap();
        assert!(msg.starts_with("invalid metadata for `demo`: "), "{msg}");
        assert!(msg.contains("/rps"), "{msg}");
        assert!(msg.contains("extra"), "{msg}");
    }

    #[test]
    fn unknown_policy_and_wrong_phase() {
        let r = registry();
        let skip = r.step("nope", json!({}), OnFailure::Deny, Phase::Request, false);
        assert!(matches!(&skip.kind, StepKind::Fixed { result } if result["status"] == "SKIPPED"));
        let fail = r.step("nope", json!({}), OnFailure::Continue, Phase::Request, true);
        assert_eq!(fail.on_failure, OnFailure::Deny);
        assert!(
            matches!(&fail.kind, StepKind::Fixed { result } if result["status"] == "POLICY_ERROR")
        );
        let phase = r.step("demo", json!({}), OnFailure::Deny, Phase::Response, false);
        assert!(
            matches!(&phase.kind, StepKind::Fixed { result } if result["message"] == "policy `demo` does not run in the response phase")
        );
        let ok = r.step(
            "demo",
            json!({"required": true}),
            OnFailure::Deny,
            Phase::Request,
            false,
        );
        assert!(matches!(ok.kind, StepKind::Policy { .. }));
    }
}
