//! `policyctl compile`: a kernel config's route chains as Rego modules that
//! real OPA loads unchanged.
//!
//! Output layout of DIR:
//! - `lib/chain.rego`: the chain library (`data.policy_engine.chain`)
//! - `policies/<name>.rego`: every built-in policy a chain uses
//! - `routes/<slug>/request.rego`, `routes/<slug>/response.rego`: one
//!   generated module per route and phase (`default` for the default policy)
//! - `data.json`: the policy data
//! - `index.json`: `{"<route>": {"request": "data.routes.<slug>.request.decision", …}, "*": …}`
//!
//! The modules are exactly those the agent evaluates: metadata goes through
//! the same string encoding and schema-guided decoding as on the wire.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use policy_agent::PolicyRegistry;
use policy_agent::chain::{self, ChainSpec, OnFailure};
use policy_kernel::{ChainEntry, KernelConfig, PolicyChains};
use policy_rego::Phase;

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// kernel-config.yaml to compile.
    #[arg(long)]
    config: PathBuf,
    /// Compile only this route (and the default policy).
    #[arg(long)]
    route: Option<String>,
    /// Data files or directories (JSON/YAML) to write into data.json.
    #[arg(short = 'd', long = "data")]
    data: Vec<PathBuf>,
    /// Take data paths from this agent-config.yaml's `data` section too.
    #[arg(long)]
    agent_config: Option<PathBuf>,
    /// Compile an unknown policy as a failing step (the agent's `fail_on_unknown: true`).
    #[arg(long)]
    fail_on_unknown: bool,
    /// Output directory (created; existing files are overwritten).
    #[arg(short = 'o', long)]
    output: PathBuf,
}

/// One compiled route.
struct Compiled {
    route: String,
    request: String,
    response: String,
}

pub fn run(args: &CompileArgs) -> anyhow::Result<ExitCode> {
    let config = KernelConfig::load(&args.config)?;
    let registry = PolicyRegistry::builtin()?;
    let mut data_paths = args.data.clone();
    if let Some(path) = &args.agent_config {
        data_paths.extend(policy_agent::AgentConfig::load(path)?.data);
    }
    let data = policy_agent::load_data(&data_paths)?;

    let mut routes: Vec<(String, &PolicyChains)> = config
        .route_policies
        .iter()
        .filter(|r| args.route.as_ref().is_none_or(|only| *only == r.route_name))
        .map(|r| (r.route_name.clone(), &r.chains))
        .collect();
    if let Some(only) = &args.route
        && routes.is_empty()
    {
        bail!("route `{only}` is not in {}", args.config.display());
    }
    let default_chains = PolicyChains::default();
    let default = config.default_policy.as_ref().unwrap_or(&default_chains);
    routes.push(("*".to_string(), default));

    let out = &args.output;
    let mut used = BTreeSet::new();
    let mut slugs = BTreeSet::new();
    let mut compiled = Vec::new();
    for (route, chains) in routes {
        let slug = unique_slug(&route, &mut slugs);
        let mut rules = [String::new(), String::new()];
        for (i, (phase, entries)) in [
            (Phase::Request, &chains.request_policy_chain),
            (Phase::Response, &chains.response_policy_chain),
        ]
        .into_iter()
        .enumerate()
        {
            let spec = chain_spec(&registry, phase, entries, args.fail_on_unknown)?;
            used.extend(
                entries
                    .iter()
                    .filter(|e| registry.get(&e.policy).is_some())
                    .map(|e| e.policy.clone()),
            );
            let phase_name = if phase == Phase::Request {
                "request"
            } else {
                "response"
            };
            let package = format!("routes.{slug}.{phase_name}");
            write(
                out,
                &format!("routes/{slug}/{phase_name}.rego"),
                &chain::generate(&package, &spec),
            )?;
            rules[i] = format!("data.{package}.{}", chain::DECISION_RULE);
        }
        let [request, response] = rules;
        compiled.push(Compiled {
            route,
            request,
            response,
        });
    }
    for lib in policy_rego::library() {
        write(out, lib.path, lib.source)?;
    }
    for name in &used {
        if let Some(p) = registry.get(name) {
            write(out, &p.path, &p.source)?;
        }
    }
    write(out, "data.json", &serde_json::to_string_pretty(&data)?)?;
    let index: BTreeMap<&str, BTreeMap<&str, &str>> = compiled
        .iter()
        .map(|c| {
            (
                c.route.as_str(),
                BTreeMap::from([
                    ("request", c.request.as_str()),
                    ("response", c.response.as_str()),
                ]),
            )
        })
        .collect();
    write(out, "index.json", &serde_json::to_string_pretty(&index)?)?;
    println!(
        "compiled {} route(s) and the default policy into {} ({} policies)",
        compiled.len() - 1,
        out.display(),
        used.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The chain the agent would run for `entries` in `phase`.
fn chain_spec(
    registry: &PolicyRegistry,
    phase: Phase,
    entries: &[ChainEntry],
    fail_on_unknown: bool,
) -> anyhow::Result<ChainSpec> {
    let mut steps = Vec::with_capacity(entries.len());
    for e in entries {
        let on_failure = OnFailure::try_parse(&e.on_failure)
            .with_context(|| format!("policy `{}`: bad on_failure `{}`", e.policy, e.on_failure))?;
        let raw = e.metadata_strings().into_iter().collect();
        let metadata = registry.decode_metadata(&e.policy, &raw);
        steps.push(registry.step(&e.policy, metadata, on_failure, phase, fail_on_unknown));
    }
    Ok(ChainSpec { phase, steps })
}

/// A Rego identifier for `route`, unique among `taken`.
fn unique_slug(route: &str, taken: &mut BTreeSet<String>) -> String {
    let base: String = if route == "*" {
        "default".into()
    } else {
        let s: String = route
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let s = s.trim_matches('_').to_string();
        let s = s
            .split('_')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("_");
        if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) || s == "default" {
            format!("r_{s}")
        } else {
            s
        }
    };
    let mut slug = base.clone();
    let mut n = 2;
    while !taken.insert(slug.clone()) {
        slug = format!("{base}_{n}");
        n += 1;
    }
    slug
}

fn write(dir: &Path, rel: &str, content: &str) -> anyhow::Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_identifiers_and_unique() {
        let mut taken = BTreeSet::new();
        assert_eq!(unique_slug("/api/v1/users", &mut taken), "api_v1_users");
        assert_eq!(unique_slug("/api/v1/users/", &mut taken), "api_v1_users_2");
        assert_eq!(unique_slug("*", &mut taken), "default");
        assert_eq!(unique_slug("default", &mut taken), "r_default");
        assert_eq!(unique_slug("/1x", &mut taken), "r_1x");
        assert!(chain::is_identifier(&unique_slug("/ü/ä", &mut taken)));
    }
}
