//! The chain compiler: a route's policy chain for one phase becomes one
//! generated Rego module that calls each policy's `result(ctx, md)` in order.
//!
//! The generated module uses no `with` and never loops over routes: the
//! route is matched in Rust and the module only threads the context through
//! its steps (`policy_engine.chain` in `rego/lib/chain.rego` holds the
//! execution semantics). Every step's result is computed once and checked
//! before the next step runs, so a denial stops the chain before any later
//! policy (a rate limiter, say) has side effects.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use policy_rego::Phase;

/// What a chain step does when its policy fails (`POLICY_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnFailure {
    /// Stop and deny (the default).
    #[default]
    Deny,
    /// Record the error and run the next policy.
    Continue,
    /// Stop and let the request through.
    SkipRemaining,
}

impl OnFailure {
    /// Parses the configuration value; empty means the default.
    pub fn try_parse(s: &str) -> Option<Self> {
        match s {
            "" | "deny" => Some(Self::Deny),
            "continue" => Some(Self::Continue),
            "skip_remaining" => Some(Self::SkipRemaining),
            _ => None,
        }
    }

    /// The value as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Continue => "continue",
            Self::SkipRemaining => "skip_remaining",
        }
    }
}

/// What a step evaluates.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Calls `data.policies.<policy>.result(ctx, metadata)`, or, for a
    /// policy that declares `custom.prepare`, `run(ctx, k)` with `k` a rule
    /// of its own holding `prepare(metadata)`: it depends on the metadata
    /// and the data alone, so the VM computes it once per program and data
    /// (`result(ctx, md) == run(ctx, prepare(md))`).
    Policy {
        metadata: serde_json::Value,
        prepare: bool,
    },
    /// A fixed result decided when the chain was compiled: an unknown policy
    /// or metadata that fails the policy's schema.
    Fixed { result: serde_json::Value },
}

/// One policy of a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub policy: String,
    pub on_failure: OnFailure,
    pub kind: StepKind,
}

/// A chain for one phase, ready to be generated.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainSpec {
    pub phase: Phase,
    pub steps: Vec<Step>,
}

impl ChainSpec {
    /// A stable identity of the chain's content (used to compile each
    /// distinct chain once, and to name its package).
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::default();
        (self.phase == Phase::Request).hash(&mut h);
        for s in &self.steps {
            s.policy.hash(&mut h);
            s.on_failure.hash(&mut h);
            match &s.kind {
                StepKind::Policy { metadata, prepare } => {
                    0u8.hash(&mut h);
                    metadata.to_string().hash(&mut h);
                    prepare.hash(&mut h);
                }
                StepKind::Fixed { result } => {
                    1u8.hash(&mut h);
                    result.to_string().hash(&mut h);
                }
            }
        }
        h.finish()
    }
}

/// FNV-1a: stable across processes and releases (unlike `DefaultHasher`).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The rule a generated module exposes.
pub const DECISION_RULE: &str = "decision";

/// Generates the module for `chain` in package `package` (e.g.
/// `chains.c0123abcd`); its decision is `data.<package>.decision`.
///
/// Two paths run each step's policy once, in `p{i}`:
/// - The usual one, `f{i}(c, r0, …, r{i})`: while every result is one
///   `chain.fast_ctx` (or, for the last, `chain.fast_state`) accepts, the
///   context `c` is the only accumulated value and the decision is built at
///   the end from the results themselves.
/// - The reference one: at the first other result, the accumulator of
///   `chain.next` is built from the results so far and `u{i}` applies
///   `chain.checked`, `chain.proceeds`, `chain.next` and `chain.stop`; the
///   later steps `s{i}` follow it to the end.
pub fn generate(package: &str, chain: &ChainSpec) -> String {
    generate_paths(package, chain, true)
}

/// The module of [`generate`] with the reference path only: every result
/// goes through `chain.checked`, `chain.proceeds`, `chain.next` and
/// `chain.stop`. It gives the same decision as [`generate`]'s, more slowly;
/// tests compare the two.
pub fn generate_reference(package: &str, chain: &ChainSpec) -> String {
    generate_paths(package, chain, false)
}

fn generate_paths(package: &str, chain: &ChainSpec, shortcuts: bool) -> String {
    let mut out = String::with_capacity(512 + chain.steps.len() * 600);
    let _ = writeln!(out, "# Generated by policy-engine: do not edit.");
    let _ = writeln!(out, "package {package}\n");
    let _ = writeln!(out, "import data.policy_engine.chain\n");
    let n = chain.steps.len();
    if n == 0 {
        let _ = writeln!(out, "{DECISION_RULE} := chain.finish(chain.start(input))\n");
        return out;
    }
    if shortcuts {
        let _ = writeln!(out, "{DECISION_RULE} := f0(input, p0(input))\n");
    } else {
        let _ = writeln!(out, "{DECISION_RULE} := s0(chain.start(input))\n");
    }
    let names: Vec<String> = chain.steps.iter().map(|s| rego_string(&s.policy)).collect();
    for (i, step) in chain.steps.iter().enumerate() {
        let name = &names[i];
        let on_failure = rego_string(step.on_failure.as_str());
        let _ = writeln!(out, "# step {i}: {}", step.policy.replace('\n', " "));
        match &step.kind {
            StepKind::Policy {
                metadata,
                prepare: false,
            } => {
                let _ = writeln!(
                    out,
                    // `=` rather than `:=`: unpatched regorus 0.14.1 VMs make the
                    // caller undefined when `:=` binds an undefined function result
                    // (docs/regorus-notes.md), so generated code avoids the form.
                    // The metadata is a literal in the call: a constant,
                    // where a rule of its own would be one more call.
                    "p{i}(ctx) := r if {{\n\tr = data.policies.{}.result(ctx, {metadata})\n}} else := chain.undefined_result({name})\n",
                    policy_ref(&step.policy)
                );
            }
            StepKind::Policy {
                metadata,
                prepare: true,
            } => {
                let policy = policy_ref(&step.policy);
                let _ = writeln!(
                    out,
                    "k{i} := data.policies.{policy}.prepare({metadata})\n\np{i}(ctx) := r if {{\n\tr = data.policies.{policy}.run(ctx, k{i})\n}} else := chain.undefined_result({name})\n",
                );
            }
            StepKind::Fixed { result } => {
                let _ = writeln!(out, "p{i}(_) := {result}\n");
            }
        }
        // The usual path: r{i} is passed on with the context after it.
        if shortcuts {
            shortcut(&mut out, i, &names);
        }
        // The reference path.
        let then = |acc: &str| {
            if i + 1 == n {
                format!("chain.finish({acc})")
            } else {
                format!("s{}({acc})", i + 1)
            }
        };
        if i > 0 || !shortcuts {
            let _ = writeln!(
                out,
                "s{i}(acc) := u{i}(acc, chain.checked(p{i}(acc.ctx), {name}))\n"
            );
        }
        let _ = writeln!(
            out,
            "u{i}(acc, r) := {} if {{\n\tchain.proceeds(r, {on_failure})\n}} else := chain.stop(acc, r, {name}, {on_failure})\n",
            then(&format!("chain.next(acc, r, {name})"))
        );
    }
    out
}

/// Step `i`'s function on the usual path, `f{i}(c, r0, …, r{i})` (`names`:
/// every step's policy name as a Rego string).
fn shortcut(out: &mut String, i: usize, names: &[String]) {
    let n = names.len();
    let name = &names[i];
    // r0, …, r{i}
    let results = (0..=i)
        .map(|j| format!("r{j}"))
        .collect::<Vec<_>>()
        .join(", ");
    let reference = format!(
        "u{i}({}, chain.checked(r{i}, {name}))",
        accumulator(&names[..i])
    );
    if i + 1 < n {
        let _ = writeln!(
            out,
            "f{i}(c, {}) := f{}(c2, {}, p{}(c2)) if {{\n\tc2 = chain.fast_ctx(c, r{i})\n}} else := {reference}\n",
            results,
            i + 1,
            results,
            i + 1,
        );
    } else {
        let _ = writeln!(
            out,
            "f{i}(c, {}) := {} if {{\n\ts = chain.fast_state(c, r{i})\n}} else := {reference}\n",
            results,
            finished(names),
        );
    }
}

/// The accumulator `chain.next` gives after the steps `names` returned the
/// results `r0`, … (each accepted by `chain.fast_ctx`) and left the context
/// `c`. (`chain.next` starts from `chain.start`: empty instructions and
/// metadata, so the first result's are taken as they are.)
fn accumulator(names: &[String]) -> String {
    if names.is_empty() {
        return "chain.start(c)".to_string();
    }
    format!(
        "{{\"ctx\": c, \"instructions\": {}, \"outcomes\": {}, \"metadata\": {}}}",
        nested("array.concat", "instructions", names.len()),
        outcomes(names),
        nested("object.union", "metadata", names.len()),
    )
}

/// The decision `chain.finish` gives after every step returned a result
/// accepted by `chain.fast_ctx` (the last one by `chain.fast_state`, whose
/// value is `s`).
fn finished(names: &[String]) -> String {
    format!(
        "{{\n\t\"status\": \"OK\",\n\t\"policy_name\": \"\",\n\t\"message\": \"\",\n\t\"instructions\": {},\n\t\"metadata\": {},\n\t\"state\": s,\n\t\"outcomes\": {},\n}}",
        nested("array.concat", "instructions", names.len()),
        nested("object.union", "metadata", names.len()),
        outcomes(names),
    )
}

/// `f(f(r0.field, r1.field), r2.field)` over the first `n` results.
fn nested(f: &str, field: &str, n: usize) -> String {
    let mut s = format!("r0.{field}");
    for j in 1..n {
        s = format!("{f}({s}, r{j}.{field})");
    }
    s
}

/// The outcomes `chain.next` records for OK results r0, … of `names`.
fn outcomes(names: &[String]) -> String {
    let items: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            format!("{{\"policy\": {name}, \"status\": \"OK\", \"message\": object.get(r{j}, \"message\", \"\")}}")
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// A Rego string literal (JSON string syntax is valid Rego).
fn rego_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The reference to a policy's package under `data.policies`.
fn policy_ref(name: &str) -> String {
    if is_identifier(name) {
        name.to_string()
    } else {
        format!("[{}]", rego_string(name))
    }
}

/// Whether `s` can be written as a bare Rego reference component.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> ChainSpec {
        ChainSpec {
            phase: Phase::Request,
            steps: vec![
                Step {
                    policy: "apiKeyAuth".into(),
                    on_failure: OnFailure::Deny,
                    kind: StepKind::Policy {
                        metadata: json!({"header_name": "X-API-Key", "required": true}),
                        prepare: false,
                    },
                },
                Step {
                    policy: "nope".into(),
                    on_failure: OnFailure::Deny,
                    kind: StepKind::Fixed {
                        result: json!({"status": "POLICY_ERROR", "message": "unknown policy `nope`", "instructions": [], "metadata": {}}),
                    },
                },
            ],
        }
    }

    #[test]
    fn generated_module_threads_steps_without_with() {
        let src = generate("chains.c1", &spec());
        assert!(src.contains("package chains.c1"));
        assert!(src.contains("decision := f0(input, p0(input))"));
        assert!(src.contains(
            "r = data.policies.apiKeyAuth.result(ctx, {\"header_name\":\"X-API-Key\",\"required\":true})"
        ));
        // The usual path passes the context and the results on.
        assert!(src.contains(
            "f0(c, r0) := f1(c2, r0, p1(c2)) if {\n\tc2 = chain.fast_ctx(c, r0)\n} else := u0(chain.start(c), chain.checked(r0, \"apiKeyAuth\"))"
        ));
        assert!(
            src.contains("\t\"instructions\": array.concat(r0.instructions, r1.instructions),")
        );
        assert!(src.contains("\t\"metadata\": object.union(r0.metadata, r1.metadata),"));
        assert!(src.contains("} if {\n\ts = chain.fast_state(c, r1)\n} else := u1({\"ctx\": c, \"instructions\": r0.instructions, \"outcomes\": [{\"policy\": \"apiKeyAuth\", \"status\": \"OK\", \"message\": object.get(r0, \"message\", \"\")}], \"metadata\": r0.metadata}, chain.checked(r1, \"nope\"))"));
        // The reference path from step 1 on.
        assert!(
            !src.contains("s0("),
            "the decision rule calls step 0 itself"
        );
        assert!(src.contains("s1(acc) := u1(acc, chain.checked(p1(acc.ctx), \"nope\"))"));
        assert!(src.contains("u0(acc, r) := s1(chain.next(acc, r, \"apiKeyAuth\"))"));
        assert!(src.contains("u1(acc, r) := chain.finish(chain.next(acc, r, \"nope\"))"));
        assert!(!src.contains("s2("), "the last step ends the chain itself");
        assert!(!src.contains(" with "), "no `with` in generated code");

        let reference = generate_reference("chains.c1", &spec());
        assert!(reference.contains("decision := s0(chain.start(input))"));
        assert!(
            reference.contains("s0(acc) := u0(acc, chain.checked(p0(acc.ctx), \"apiKeyAuth\"))")
        );
        assert!(!reference.contains("f0("));
        assert!(!reference.contains("fast_"));
    }

    #[test]
    fn long_chains_nest_their_results() {
        let mut long = spec();
        long.steps.push(long.steps[0].clone());
        let src = generate("chains.c2", &long);
        assert!(src.contains("f1(c, r0, r1) := f2(c2, r0, r1, p2(c2)) if {"));
        assert!(src.contains(
            "array.concat(array.concat(r0.instructions, r1.instructions), r2.instructions)"
        ));
        assert!(src.contains(
            "u2({\"ctx\": c, \"instructions\": array.concat(r0.instructions, r1.instructions),"
        ));
    }

    #[test]
    fn fingerprint_depends_on_content_only() {
        let a = spec();
        let mut b = spec();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.steps[0].on_failure = OnFailure::Continue;
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = spec();
        c.phase = Phase::Response;
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn odd_policy_names_are_quoted() {
        assert_eq!(policy_ref("apiKeyAuth"), "apiKeyAuth");
        assert_eq!(policy_ref("my-policy"), "[\"my-policy\"]");
        assert_eq!(
            OnFailure::try_parse("skip_remaining"),
            Some(OnFailure::SkipRemaining)
        );
        assert_eq!(OnFailure::try_parse("bogus"), None);
    }
}
