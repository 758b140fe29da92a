//! An Envoy bootstrap read as the kernel sees it: the ext_proc filter, the
//! kernel cluster, and each route's name and processing mode, checked
//! against a `kernel-config.yaml`.

use std::collections::BTreeSet;

use anyhow::{Context as _, bail, ensure};
use policy_kernel::{KernelConfig, PolicyChains};
use serde_yaml_ng::Value;

const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const EXT_PROC_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor";
const EXT_PROC_PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute";
const HEADER_MUTATION_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The attribute that carries the route name to the kernel.
pub const ROUTE_NAME_ATTRIBUTE: &str = "xds.route_name";

/// Policies that need the response body (`response_body_mode: BUFFERED`).
const RESPONSE_BODY_POLICIES: &[&str] = &["responseBodyTransform"];
/// Policies that need the request body (`request_body_mode: BUFFERED`).
const REQUEST_BODY_POLICIES: &[&str] = &[];

/// An ext_proc `ProcessingMode`, with Envoy's defaults filled in (headers
/// `SEND`, bodies `NONE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingMode {
    pub request_header: String,
    pub response_header: String,
    pub request_body: String,
    pub response_body: String,
}

impl ProcessingMode {
    fn from_yaml(v: &Value) -> Self {
        let header = |k: &str| match v[k].as_str() {
            None | Some("DEFAULT") => "SEND".to_string(),
            Some(s) => s.to_string(),
        };
        let body = |k: &str| v[k].as_str().unwrap_or("NONE").to_string();
        Self {
            request_header: header("request_header_mode"),
            response_header: header("response_header_mode"),
            request_body: body("request_body_mode"),
            response_body: body("response_body_mode"),
        }
    }
}

/// A route of the HTTP connection manager as ext_proc treats it.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub prefix: Option<String>,
    /// The filter's mode replaced by the route's `ExtProcPerRoute` override.
    pub mode: ProcessingMode,
}

/// The parts of an Envoy bootstrap the kernel depends on.
#[derive(Debug)]
pub struct EnvoyView {
    pub failure_mode_allow: bool,
    pub request_attributes: Vec<String>,
    pub message_timeout_ms: Option<f64>,
    /// Port of the ext_proc cluster's endpoints.
    pub kernel_ports: Vec<u64>,
    pub kernel_cluster_http2: bool,
    /// Request headers removed by header_mutation filters before ext_proc.
    pub removed_before_ext_proc: Vec<String>,
    pub routes: Vec<Route>,
    /// Ports of the listeners.
    pub listener_ports: Vec<u64>,
}

/// Reads `doc` (an Envoy bootstrap with one HTTP connection manager that
/// has one ext_proc filter).
pub fn read(doc: &Value) -> anyhow::Result<EnvoyView> {
    let mut hcms = Vec::new();
    let mut listener_ports = Vec::new();
    for l in seq(&doc["static_resources"]["listeners"]) {
        listener_ports.extend(l["address"]["socket_address"]["port_value"].as_u64());
        for chain in seq(&l["filter_chains"]) {
            for f in seq(&chain["filters"]) {
                if f["typed_config"]["@type"].as_str() == Some(HCM_TYPE) {
                    hcms.push(&f["typed_config"]);
                }
            }
        }
    }
    let [hcm] = hcms.as_slice() else {
        bail!("expected one http_connection_manager, found {}", hcms.len());
    };
    let filters = seq(&hcm["http_filters"]);
    let filter_names: BTreeSet<&str> = filters.iter().filter_map(|f| f["name"].as_str()).collect();
    let ext_proc_at: Vec<usize> = (0..filters.len())
        .filter(|&i| filters[i]["typed_config"]["@type"].as_str() == Some(EXT_PROC_TYPE))
        .collect();
    let [at] = ext_proc_at.as_slice() else {
        bail!("expected one ext_proc filter, found {}", ext_proc_at.len());
    };
    let ext_proc_name = filters[*at]["name"]
        .as_str()
        .context("the ext_proc filter has no name")?;
    let ext = &filters[*at]["typed_config"];
    let removed_before_ext_proc = filters[..*at]
        .iter()
        .filter(|f| f["typed_config"]["@type"].as_str() == Some(HEADER_MUTATION_TYPE))
        .flat_map(|f| seq(&f["typed_config"]["mutations"]["request_mutations"]))
        .filter_map(|m| m["remove"].as_str().map(str::to_ascii_lowercase))
        .collect();

    let cluster_name = ext["grpc_service"]["envoy_grpc"]["cluster_name"]
        .as_str()
        .context("ext_proc grpc_service.envoy_grpc.cluster_name is missing")?;
    let cluster = seq(&doc["static_resources"]["clusters"])
        .into_iter()
        .find(|c| c["name"].as_str() == Some(cluster_name))
        .with_context(|| format!("ext_proc cluster `{cluster_name}` is not defined"))?;
    let kernel_cluster_http2 =
        cluster["typed_extension_protocol_options"][HTTP_PROTOCOL_OPTIONS]["explicit_http_config"]
            ["http2_protocol_options"]
            .is_mapping();
    let kernel_ports = seq(&cluster["load_assignment"]["endpoints"])
        .into_iter()
        .flat_map(|e| seq(&e["lb_endpoints"]))
        .filter_map(|e| e["endpoint"]["address"]["socket_address"]["port_value"].as_u64())
        .collect();

    let default_mode = ProcessingMode::from_yaml(&ext["processing_mode"]);
    let mut routes = Vec::new();
    for vh in seq(&hcm["route_config"]["virtual_hosts"]) {
        let vh_name = vh["name"].as_str().unwrap_or("?");
        for r in seq(&vh["routes"]) {
            let name = r["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .with_context(|| format!("a route of virtual host `{vh_name}` has no `name:`"))?;
            let per_filter = r["typed_per_filter_config"].as_mapping();
            for key in per_filter.into_iter().flat_map(|m| m.keys()) {
                let key = key.as_str().unwrap_or_default();
                // Envoy silently ignores per-route config for a filter that
                // is not in the chain.
                ensure!(
                    filter_names.contains(key),
                    "route `{name}`: typed_per_filter_config `{key}` names no filter of http_filters"
                );
            }
            let per_route = &r["typed_per_filter_config"][ext_proc_name];
            let mode = if per_route.is_null() {
                default_mode.clone()
            } else {
                ensure!(
                    per_route["@type"].as_str() == Some(EXT_PROC_PER_ROUTE_TYPE),
                    "route `{name}`: ext_proc per-route config is not an ExtProcPerRoute"
                );
                ensure!(
                    per_route["disabled"].as_bool() != Some(true),
                    "route `{name}` disables ext_proc: its requests would bypass every policy"
                );
                let pm = &per_route["overrides"]["processing_mode"];
                if pm.is_null() {
                    default_mode.clone()
                } else {
                    ProcessingMode::from_yaml(pm)
                }
            };
            routes.push(Route {
                name: name.to_string(),
                prefix: r["match"]["prefix"].as_str().map(str::to_string),
                mode,
            });
        }
    }
    Ok(EnvoyView {
        failure_mode_allow: ext["failure_mode_allow"].as_bool().unwrap_or(false),
        request_attributes: seq(&ext["request_attributes"])
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        message_timeout_ms: ext["message_timeout"].as_str().and_then(duration_ms),
        kernel_ports,
        kernel_cluster_http2,
        removed_before_ext_proc,
        routes,
        listener_ports,
    })
}

/// Checks `envoy` against `kernel`: every problem found, one per line.
pub fn check_against_kernel(envoy: &EnvoyView, kernel: &KernelConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let mut fail = |m: String| problems.push(m);
    if envoy.failure_mode_allow {
        fail(
            "ext_proc failure_mode_allow is true: requests pass unchecked when the kernel is down"
                .into(),
        );
    }
    if !envoy
        .request_attributes
        .iter()
        .any(|a| a == ROUTE_NAME_ATTRIBUTE)
    {
        fail(format!(
            "ext_proc request_attributes lacks `{ROUTE_NAME_ATTRIBUTE}`"
        ));
    }
    // The kernel's fallback for the route name must not come from clients.
    let header = kernel.server.route_header.to_ascii_lowercase();
    if !envoy.removed_before_ext_proc.contains(&header) {
        fail(format!(
            "no header_mutation filter before ext_proc removes the kernel's route_header `{header}`"
        ));
    }
    if !envoy.kernel_cluster_http2 {
        fail("the ext_proc cluster does not use HTTP/2 (explicit_http_config.http2_protocol_options)".into());
    }
    if envoy.kernel_ports.is_empty()
        || envoy
            .kernel_ports
            .iter()
            .any(|&p| p != u64::from(kernel.server.port))
    {
        fail(format!(
            "ext_proc cluster ports {:?} differ from the kernel's server.port {}",
            envoy.kernel_ports, kernel.server.port
        ));
    }
    // The kernel's longest answer to one message: every attempt timing out.
    let worst_ms = kernel
        .agents
        .iter()
        .map(|a| {
            let n = u64::from(a.retry.max_attempts);
            n * a.timeout_ms + n.saturating_sub(1) * a.retry.backoff_ms
        })
        .max()
        .unwrap_or(0);
    match envoy.message_timeout_ms {
        None => fail("ext_proc message_timeout is not set (Envoy's default is 200ms)".into()),
        Some(t) if t <= worst_ms as f64 => fail(format!(
            "ext_proc message_timeout {t}ms is not longer than the kernel's worst case {worst_ms}ms \
             (attempts × timeout_ms + backoffs): Envoy would time out before the kernel's fail_open decision"
        )),
        Some(_) => {}
    }

    let mut names = BTreeSet::new();
    for r in &envoy.routes {
        if !names.insert(r.name.as_str()) {
            fail(format!("route name `{}` is used twice", r.name));
        }
    }
    match envoy.routes.last() {
        Some(last) if last.prefix.as_deref() == Some("/") => {}
        _ => fail("the last route is not a catch-all (`prefix: /`)".into()),
    }
    for kr in &kernel.route_policies {
        match envoy.routes.iter().find(|r| r.name == kr.route_name) {
            None => fail(format!(
                "kernel route `{}` has no Envoy route of that name",
                kr.route_name
            )),
            Some(r) if r.prefix.as_deref() != Some(kr.route_name.as_str()) => fail(format!(
                "Envoy route `{}` matches prefix {:?}, not `{}`",
                r.name, r.prefix, kr.route_name
            )),
            Some(_) => {}
        }
    }
    for r in &envoy.routes {
        let chains = kernel
            .route_policies
            .iter()
            .find(|kr| kr.route_name == r.name)
            .map(|kr| &kr.chains)
            .or(kernel.default_policy.as_ref());
        problems.extend(check_mode(r, chains));
    }
    problems
}

/// What a route's chains need from its processing mode.
fn check_mode(route: &Route, chains: Option<&PolicyChains>) -> Vec<String> {
    let empty = Vec::new();
    let (request, response) = chains.map_or((&empty, &empty), |c| {
        (&c.request_policy_chain, &c.response_policy_chain)
    });
    let needs = |chain: &[policy_kernel::ChainEntry], body: &[&str]| {
        chain.iter().any(|e| body.contains(&e.policy.as_str()))
    };
    let m = &route.mode;
    let mut problems = Vec::new();
    let mut expect = |what: &str, got: &str, want: &str, why: &str| {
        if got != want {
            problems.push(format!(
                "route `{}`: {what} is {got}, want {want} ({why})",
                route.name
            ));
        }
    };
    if !request.is_empty() {
        expect(
            "request_header_mode",
            &m.request_header,
            "SEND",
            "it has a request chain",
        );
    }
    let request_body = if needs(request, REQUEST_BODY_POLICIES) {
        "BUFFERED"
    } else {
        "NONE"
    };
    expect(
        "request_body_mode",
        &m.request_body,
        request_body,
        "request chain body needs",
    );
    if response.is_empty() {
        expect(
            "response_header_mode",
            &m.response_header,
            "SKIP",
            "it has no response chain",
        );
    } else {
        expect(
            "response_header_mode",
            &m.response_header,
            "SEND",
            "it has a response chain",
        );
    }
    let response_body = if needs(response, RESPONSE_BODY_POLICIES) {
        "BUFFERED"
    } else {
        "NONE"
    };
    expect(
        "response_body_mode",
        &m.response_body,
        response_body,
        "response chain body needs",
    );
    problems
}

/// A protobuf JSON duration (`"2s"`, `"0.5s"`) in milliseconds.
fn duration_ms(s: &str) -> Option<f64> {
    s.strip_suffix('s')?
        .parse::<f64>()
        .ok()
        .map(|secs| secs * 1000.0)
}

fn seq(v: &Value) -> Vec<&Value> {
    v.as_sequence()
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}
