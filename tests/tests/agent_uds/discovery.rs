//! `GetAgentConfig` and the socket's permissions.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use policy_proto::agent::{GetAgentConfigRequest, HealthRequest};

use super::*;

#[tokio::test]
async fn get_agent_config_lists_every_builtin_policy_and_the_socket_is_private()
-> anyhow::Result<()> {
    let opts = AgentOptions {
        name: "uds-test-agent".into(),
        max_body_size_bytes: 4096,
        ..options(policy_data(None))
    };
    let agent = AgentProcess::start(&opts).await?;

    let meta = std::fs::metadata(agent.socket())?;
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode");

    let mut client = agent.client().await?;
    let config = client
        .get_agent_config(GetAgentConfigRequest {})
        .await?
        .into_inner();
    assert_eq!(config.agent_name, "uds-test-agent");
    assert!(!config.agent_version.is_empty());
    assert_eq!(
        config
            .agent_metadata
            .get("max_body_size_bytes")
            .map(String::as_str),
        Some("4096")
    );
    let health = client.health(HealthRequest {}).await?.into_inner();
    assert_eq!(
        config.agent_metadata.get("policy_revision"),
        Some(&health.policy_revision)
    );

    use PolicyPhase::{Request, Response};
    let expected: BTreeMap<&str, Vec<PolicyPhase>> = BTreeMap::from([
        ("addSecurityHeaders", vec![Response]),
        ("allowAll", vec![Request, Response]),
        ("apiKeyAuth", vec![Request]),
        ("auditLog", vec![Request, Response]),
        ("jwtValidation", vec![Request]),
        ("rateLimit", vec![Request]),
        ("responseBodyTransform", vec![Response]),
        ("roleCheck", vec![Request]),
    ]);
    let names: Vec<&str> = config
        .supported_policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "duplicate policies: {names:?}");
    for (name, phases) in &expected {
        let p = config
            .supported_policies
            .iter()
            .find(|p| p.name == *name)
            .unwrap_or_else(|| panic!("`{name}` missing from {names:?}"));
        let phases_sent: Vec<i32> = phases.iter().map(|ph| *ph as i32).collect();
        assert_eq!(p.supported_phases, phases_sent, "{name} phases");
        let version: Vec<&str> = p.version.split('.').collect();
        assert!(
            version.len() == 3 && version.iter().all(|v| v.parse::<u32>().is_ok()),
            "{name} version `{}`",
            p.version
        );
        assert!(
            p.description.len() > 10,
            "{name} description `{}`",
            p.description
        );
        let schema: Value = serde_json::from_str(&p.metadata_schema).unwrap_or_else(|e| {
            panic!(
                "{name} metadata_schema is not JSON ({e}): {}",
                p.metadata_schema
            )
        });
        assert_eq!(schema["type"], "object", "{name}: {schema}");
        assert!(schema["properties"].is_object(), "{name}: {schema}");
    }
    let schema_of = |name: &str| -> Value {
        config
            .supported_policies
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| serde_json::from_str(&p.metadata_schema).ok())
            .unwrap_or(Value::Null)
    };
    // The fields the §3.2 chains use are declared with their types.
    assert_eq!(
        schema_of("apiKeyAuth")["properties"]["header_name"]["type"],
        "string"
    );
    assert_eq!(
        schema_of("apiKeyAuth")["properties"]["required"]["type"],
        "boolean"
    );
    assert_eq!(
        schema_of("rateLimit")["properties"]["requests_per_second"]["type"],
        "number"
    );
    assert_eq!(
        schema_of("rateLimit")["properties"]["burst"]["type"],
        "integer"
    );
    assert_eq!(
        schema_of("rateLimit")["required"],
        json!(["requests_per_second"])
    );
    assert_eq!(
        schema_of("jwtValidation")["properties"]["issuer"]["type"],
        "string"
    );
    assert_eq!(
        schema_of("roleCheck")["properties"]["required_roles"]["type"],
        "array"
    );
    assert_eq!(
        schema_of("addSecurityHeaders")["properties"]["headers"]["type"],
        "object"
    );
    assert_eq!(
        schema_of("responseBodyTransform")["properties"]["remove_fields"]["type"],
        "array"
    );
    assert_eq!(
        schema_of("auditLog")["properties"]["log_response_body"]["type"],
        "boolean"
    );
    Ok(())
}
