//! The configurations a stack runs with, derived from the repository's own
//! files so the tests exercise what is shipped:
//!
//! - the kernel's from `deploy/kernel-config.yaml` (its two routes, chains
//!   and default policy), with the agent socket, listen ports (0: the
//!   kernel reports what it bound), the `/api/v1/users` rate limit and a
//!   request-body route [`UPLOAD_ROUTE`] added;
//! - Envoy's from `deploy/local/envoy.yaml` (its routes, filters and
//!   per-route processing modes), with ports replaced and the matching
//!   [`UPLOAD_ROUTE`] route (request body BUFFERED) added before the
//!   catch-all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

/// The route of the specification that authenticates by API key.
pub const USERS_ROUTE: &str = "/api/v1/users";
/// The route of the specification that requires an admin JWT.
pub const ADMIN_ROUTE: &str = "/api/v1/admin";
/// The name of a route added for the tests, matching the prefix
/// [`UPLOAD_PATH`], whose request chain (`allowAll`) runs on the buffered
/// request body (`request_body: true`). The name is not a path on purpose:
/// the kernel can only know it from Envoy's `xds.route_name` attribute.
pub const UPLOAD_ROUTE: &str = "upload-json";
/// The path prefix of [`UPLOAD_ROUTE`].
pub const UPLOAD_PATH: &str = "/api/v1/upload";
/// The name of a route added only with
/// [`KernelSettings::unknown_policy_route`]: its request chain names
/// [`UNKNOWN_POLICY`], which no agent has, so the kernel holds it invalid.
pub const UNKNOWN_POLICY_ROUTE: &str = "unknown-policy";
/// The path prefix of [`UNKNOWN_POLICY_ROUTE`].
pub const UNKNOWN_POLICY_PATH: &str = "/api/v1/unknown";
/// A policy name the agent does not have.
pub const UNKNOWN_POLICY: &str = "noSuchPolicy";
/// Routes added with [`KernelSettings::ops_routes`], one per degraded-mode
/// tier of the operations policies: a whitelisted command (`whitelist`),
/// a platform-admin action (`admin`), a two-person approved operation
/// (`two_person`). Each name is also its path prefix.
pub const EXEC_ROUTE: &str = "/api/v1/exec";
pub const PLATFORM_ROUTE: &str = "/api/v1/platform";
pub const APPROVE_ROUTE: &str = "/api/v1/approve";

/// The request chains of the operations routes.
fn ops_chains() -> [(&'static str, Value); 3] {
    let api_key =
        json!({"policy": "apiKeyAuth", "metadata": {"header_name": "X-API-Key", "required": true}});
    [
        (
            EXEC_ROUTE,
            json!([{"policy": "commandWhitelist", "metadata": {"whitelist": "diagnostics", "source": "header:x-command"}}]),
        ),
        (
            PLATFORM_ROUTE,
            json!([api_key.clone(), {"policy": "platformAdmin"}]),
        ),
        (
            APPROVE_ROUTE,
            json!([api_key, {"policy": "twoPersonApproval", "metadata": {"operation": "drain-node", "required_role": "approver"}}]),
        ),
    ]
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_yaml(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn at<'a>(value: &'a mut Value, pointer: &str) -> anyhow::Result<&'a mut Value> {
    value
        .pointer_mut(pointer)
        .with_context(|| format!("no `{pointer}` in the configuration"))
}

fn array<'a>(value: &'a mut Value, pointer: &str) -> anyhow::Result<&'a mut Vec<Value>> {
    at(value, pointer)?
        .as_array_mut()
        .with_context(|| format!("`{pointer}` is not a list"))
}

fn named<'a>(
    list: &'a mut [Value],
    key: &str,
    name: &str,
    what: &str,
) -> anyhow::Result<&'a mut Value> {
    list.iter_mut()
        .find(|v| v[key] == name)
        .with_context(|| format!("no {what} `{name}`"))
}

/// What the kernel config is made with.
#[derive(Debug, Clone)]
pub struct KernelSettings<'a> {
    pub agent_socket: &'a Path,
    pub users_requests_per_second: f64,
    pub users_burst: u32,
    /// `fail_open` (written only when true; the kernel's default is false).
    pub fail_open: bool,
    /// Adds the route [`UNKNOWN_POLICY_ROUTE`].
    pub unknown_policy_route: bool,
    /// Adds [`EXEC_ROUTE`], [`PLATFORM_ROUTE`] and [`APPROVE_ROUTE`].
    pub ops_routes: bool,
}

/// The kernel configuration (the `policy_kernel` document) as JSON.
pub fn kernel_config(settings: &KernelSettings<'_>) -> anyhow::Result<Value> {
    let path = repo_root().join("deploy/kernel-config.yaml");
    let mut doc = read_yaml(&path)?;
    let socket = settings
        .agent_socket
        .to_str()
        .context("agent socket path is not UTF-8")?;
    *at(&mut doc, "/policy_kernel/server/address")? = json!("127.0.0.1");
    *at(&mut doc, "/policy_kernel/server/port")? = json!(0);
    *at(&mut doc, "/policy_kernel/observability/metrics_port")? = json!(0);
    let agents = array(&mut doc, "/policy_kernel/agents")?;
    ensure!(
        agents.len() == 1,
        "{}: expected one agent, found {}",
        path.display(),
        agents.len()
    );
    for agent in agents.iter_mut() {
        *at(agent, "/socket_path")? = json!(socket);
    }
    let routes = array(&mut doc, "/policy_kernel/route_policies")?;
    let users = named(routes, "route_name", USERS_ROUTE, "kernel route")?;
    let chain = array(users, "/request_policy_chain")?;
    let rate_limit = named(chain, "policy", "rateLimit", "users policy")?;
    *at(rate_limit, "/metadata")? = json!({
        "requests_per_second": settings.users_requests_per_second,
        "burst": settings.users_burst,
    });
    routes.push(json!({
        "route_name": UPLOAD_ROUTE,
        "request_body": true,
        "request_policy_chain": [{"policy": "allowAll"}],
        "response_policy_chain": [],
    }));
    if settings.ops_routes {
        for (name, chain) in ops_chains() {
            routes.push(json!({
                "route_name": name,
                "request_policy_chain": chain,
                "response_policy_chain": [],
            }));
        }
    }
    if settings.unknown_policy_route {
        routes.push(json!({
            "route_name": UNKNOWN_POLICY_ROUTE,
            "request_policy_chain": [{"policy": UNKNOWN_POLICY}],
            "response_policy_chain": [],
        }));
    }
    if settings.fail_open {
        at(&mut doc, "/policy_kernel")?
            .as_object_mut()
            .context("`policy_kernel` is not a mapping")?
            .insert("fail_open".into(), json!(true));
    }
    Ok(doc)
}

/// An Envoy route `name` for the paths under `prefix` to the demo upstream
/// whose request headers (only) go to the kernel.
fn request_headers_route(name: &str, prefix: &str) -> Value {
    json!({
        "name": name,
        "match": {"prefix": prefix, "case_sensitive": false},
        "route": {"cluster": "demo_upstream"},
        "typed_per_filter_config": {
            "envoy.filters.http.ext_proc": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
                "overrides": {"processing_mode": {
                    "request_header_mode": "SEND",
                    "response_header_mode": "SKIP",
                    "request_body_mode": "NONE",
                    "response_body_mode": "NONE",
                }}
            }
        }
    })
}

/// The Envoy configuration as JSON: every port replaced (listener and
/// admin 0, the kernel's ext_proc and the upstream as given), everything
/// else as in `deploy/local/envoy.yaml`, plus the [`UPLOAD_ROUTE`] route
/// and, with `unknown_policy_route`, the [`UNKNOWN_POLICY_ROUTE`] route.
pub fn envoy_config(
    ext_proc: SocketAddr,
    upstream: SocketAddr,
    unknown_policy_route: bool,
    ops_routes: bool,
) -> anyhow::Result<Value> {
    let path = repo_root().join("deploy/local/envoy.yaml");
    let mut doc = read_yaml(&path)?;
    let local = |v: &Value| v["address"] == "127.0.0.1";
    let admin = at(&mut doc, "/admin/address/socket_address")?;
    ensure!(local(admin), "Envoy's admin must listen on 127.0.0.1");
    admin["port_value"] = json!(0);

    let listeners = array(&mut doc, "/static_resources/listeners")?;
    let listener = named(listeners, "name", "ingress_http", "Envoy listener")?;
    let address = at(listener, "/address/socket_address")?;
    ensure!(local(address), "Envoy's listener must be on 127.0.0.1");
    address["port_value"] = json!(0);
    let hcm = array(listener, "/filter_chains/0/filters")?
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.network.http_connection_manager")
        .context("no http_connection_manager")?;
    let routes = array(hcm, "/typed_config/route_config/virtual_hosts/0/routes")?;
    let Some(catch_all) = routes.iter().position(|r| r["name"] == "default") else {
        bail!("{}: no `default` route", path.display());
    };
    routes.insert(
        catch_all,
        json!({
            "name": UPLOAD_ROUTE,
            "match": {"prefix": UPLOAD_PATH, "case_sensitive": false},
            "route": {"cluster": "demo_upstream"},
            "typed_per_filter_config": {
                "envoy.filters.http.ext_proc": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
                    "overrides": {"processing_mode": {
                        "request_header_mode": "SEND",
                        "response_header_mode": "SKIP",
                        "request_body_mode": "BUFFERED",
                        "response_body_mode": "NONE",
                    }}
                }
            }
        }),
    );
    let ops = if ops_routes {
        ops_chains().map(|(name, _)| name).to_vec()
    } else {
        Vec::new()
    };
    for name in ops {
        routes.insert(catch_all, request_headers_route(name, name));
    }
    if unknown_policy_route {
        routes.insert(
            catch_all,
            request_headers_route(UNKNOWN_POLICY_ROUTE, UNKNOWN_POLICY_PATH),
        );
    }

    let clusters = array(&mut doc, "/static_resources/clusters")?;
    for (cluster, to) in [("policy_kernel", ext_proc), ("demo_upstream", upstream)] {
        let c = named(clusters, "name", cluster, "Envoy cluster")?;
        let address = at(
            c,
            "/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address",
        )?;
        *address = json!({"address": to.ip().to_string(), "port_value": to.port()});
    }
    Ok(doc)
}

/// An `observability.tracing` section (kernel or agent): every trace exported to
/// `endpoint`, or tracing off.
pub fn tracing_section(endpoint: Option<&str>) -> Value {
    match endpoint {
        Some(e) => json!({"enabled": true, "sampling_rate": 1.0, "otlp_endpoint": e}),
        None => json!({"enabled": false}),
    }
}

/// `agent_yaml` (an agent-config.yaml) with every trace exported to `endpoint`.
pub fn agent_with_tracing(agent_yaml: &str, endpoint: &str) -> anyhow::Result<String> {
    let mut doc: Value = serde_yaml_ng::from_str(agent_yaml)?;
    let observability = at(&mut doc, "/agent_core/observability")?
        .as_object_mut()
        .context("`agent_core.observability` is not a mapping")?;
    observability.insert("tracing".into(), tracing_section(Some(endpoint)));
    Ok(serde_yaml_ng::to_string(&doc)?)
}
