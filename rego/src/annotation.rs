//! The METADATA annotation of a policy module (OPA's annotation syntax).
//!
//! A policy declares, in the `custom` section of its package-scope METADATA
//! block: `version`, `phases`, `tier` and `schema` (JSON schema of its
//! metadata). `title` is the policy name, `description` its description.

use serde::Deserialize;

/// A phase a policy can run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Request,
    Response,
}

/// The degraded-mode tier of a policy (ADR-011): which cached data it needs
/// to run while the journal is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Whitelist,
    Rbac,
    Admin,
    TwoPerson,
    /// Custom Rego without a declared tier.
    #[default]
    Complex,
}

impl Tier {
    /// The tier's name as written in annotations and decision records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whitelist => "whitelist",
            Self::Rbac => "rbac",
            Self::Admin => "admin",
            Self::TwoPerson => "two_person",
            Self::Complex => "complex",
        }
    }
}

/// What a policy module declares about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub phases: Vec<Phase>,
    pub tier: Tier,
    /// JSON schema of the policy's metadata.
    pub schema: serde_json::Value,
    /// Whether the policy splits `result(ctx, md)` into `prepare(md)` (what
    /// depends on the metadata and the data alone) and `run(ctx, prepared)`,
    /// with `result(ctx, md) == run(ctx, prepare(md))`: generated chains then
    /// compute `prepare` once per program and data, not per request.
    pub prepare: bool,
}

/// Why a policy's annotation could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AnnotationError {
    #[error("{file}: no `# METADATA` block before the package declaration")]
    Missing { file: String },
    #[error("{file}: METADATA block is not valid YAML: {reason}")]
    Yaml { file: String, reason: String },
    #[error("{file}: METADATA `{field}` is required")]
    Field { file: String, field: &'static str },
}

#[derive(Deserialize)]
struct Raw {
    title: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    custom: RawCustom,
}

#[derive(Deserialize, Default)]
struct RawCustom {
    version: Option<String>,
    #[serde(default)]
    phases: Vec<Phase>,
    #[serde(default)]
    tier: Tier,
    schema: Option<serde_json::Value>,
    #[serde(default)]
    prepare: bool,
}

/// Reads the first METADATA block of `source` (a policy module at `file`).
pub fn parse_policy_info(file: &str, source: &str) -> Result<PolicyInfo, AnnotationError> {
    let mut lines = source.lines().skip_while(|l| l.trim() != "# METADATA");
    if lines.next().is_none() {
        return Err(AnnotationError::Missing { file: file.into() });
    }
    let yaml: String = lines
        .map_while(|l| l.strip_prefix('#'))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let raw: Raw = serde_yaml_ng::from_str(&yaml).map_err(|e| AnnotationError::Yaml {
        file: file.into(),
        reason: e.to_string(),
    })?;
    let field = |field| AnnotationError::Field {
        file: file.into(),
        field,
    };
    let name = raw.title.ok_or_else(|| field("title"))?;
    let version = raw.custom.version.ok_or_else(|| field("custom.version"))?;
    if raw.custom.phases.is_empty() {
        return Err(field("custom.phases"));
    }
    Ok(PolicyInfo {
        name,
        version,
        description: raw.description.trim().to_string(),
        phases: raw.custom.phases,
        tier: raw.custom.tier,
        schema: raw
            .custom
            .schema
            .unwrap_or_else(|| serde_json::json!({"type": "object"})),
        prepare: raw.custom.prepare,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_custom_section() {
        let src = "# METADATA\n# title: demo\n# description: A demo.\n# custom:\n#   version: 1.2.0\n#   phases: [request, response]\n#   tier: rbac\n#   schema:\n#     type: object\n#     properties:\n#       n: {type: integer}\npackage policies.demo\n";
        let info = parse_policy_info("demo.rego", src).unwrap();
        assert_eq!(info.name, "demo");
        assert_eq!(info.version, "1.2.0");
        assert_eq!(info.phases, vec![Phase::Request, Phase::Response]);
        assert_eq!(info.tier, Tier::Rbac);
        assert_eq!(info.schema["properties"]["n"]["type"], "integer");
        assert!(!info.prepare, "prepare is off unless declared");
    }

    #[test]
    fn reads_prepare() {
        let src = "# METADATA\n# title: x\n# custom:\n#   version: '1'\n#   prepare: true\n#   phases: [request]\npackage policies.x\n";
        assert!(parse_policy_info("x.rego", src).unwrap().prepare);
    }

    #[test]
    fn custom_rego_defaults_to_complex_tier() {
        let src = "# METADATA\n# title: x\n# custom:\n#   version: '1'\n#   phases: [request]\npackage policies.x\n";
        assert_eq!(
            parse_policy_info("x.rego", src).unwrap().tier,
            Tier::Complex
        );
    }

    #[test]
    fn missing_block_and_fields_are_errors() {
        let err = parse_policy_info("a.rego", "package a\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.rego: no `# METADATA` block before the package declaration"
        );
        let err = parse_policy_info("b.rego", "# METADATA\n# title: b\npackage b\n").unwrap_err();
        assert!(err.to_string().contains("custom.version"), "{err}");
        let err = parse_policy_info("c.rego", "# METADATA\n# title: [\npackage c\n").unwrap_err();
        assert!(matches!(err, AnnotationError::Yaml { .. }));
    }
}
