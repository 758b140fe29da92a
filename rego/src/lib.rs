//! Built-in policies of policy-engine as Rego, and the chain library.
//!
//! Owns the Rego sources (embedded at build time from `policies/` and `lib/`)
//! and parses each policy's METADATA annotation into a [`PolicyInfo`]
//! (version, phases, degraded-mode tier, metadata JSON schema). Evaluation is
//! not done here; see `policy-agent`.

mod annotation;

pub use annotation::{AnnotationError, Phase, PolicyInfo, Tier, parse_policy_info};

/// A Rego source file embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct RegoFile {
    /// Path relative to the `rego/` folder, e.g. `policies/apiKeyAuth.rego`.
    pub path: &'static str,
    /// The Rego source.
    pub source: &'static str,
}

mod embedded {
    use super::RegoFile;
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// A built-in policy: its source and the information its annotation declares.
#[derive(Debug, Clone)]
pub struct BuiltinPolicy {
    pub file: RegoFile,
    pub info: PolicyInfo,
}

/// Every built-in policy, in name order.
pub fn builtin_policies() -> Result<Vec<BuiltinPolicy>, AnnotationError> {
    embedded::POLICY_FILES
        .iter()
        .map(|file| {
            Ok(BuiltinPolicy {
                file: *file,
                info: parse_policy_info(file.path, file.source)?,
            })
        })
        .collect()
}

/// The Rego library modules generated chains call (`lib/*.rego`).
pub fn library() -> &'static [RegoFile] {
    embedded::LIBRARY_FILES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_declares_valid_info() {
        let policies = builtin_policies().expect("annotations parse");
        assert!(policies.len() >= 8, "found {} policies", policies.len());
        for p in &policies {
            assert_eq!(
                p.file.path,
                format!("policies/{}.rego", p.info.name),
                "file name matches the policy name"
            );
            assert!(!p.info.phases.is_empty(), "{} declares phases", p.info.name);
            assert!(
                p.info.schema.is_object(),
                "{} declares a schema",
                p.info.name
            );
            assert!(
                p.file
                    .source
                    .contains(&format!("package policies.{}", p.info.name)),
                "{} uses package policies.{}",
                p.info.name,
                p.info.name
            );
            // A policy that declares prepare defines result through it, so
            // chains calling run(ctx, k) with k = prepare(md) decide as
            // result(ctx, md) does.
            if p.info.prepare {
                for line in [
                    "\nresult(ctx, md) := run(ctx, prepare(md))\n",
                    "\nprepare(md) := ",
                    "\nrun(ctx, p) := ",
                ] {
                    assert!(p.file.source.contains(line), "{}: {line:?}", p.info.name);
                }
            }
        }
    }

    #[test]
    fn library_is_embedded() {
        assert!(library().iter().any(|f| f.path == "lib/chain.rego"));
    }
}
