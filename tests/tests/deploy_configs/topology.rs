//! Cross-file checks: the Dockerfile against the repository and the cargo
//! workspace, supervisord.conf and the configs against the image layout,
//! and the Kubernetes manifests against all of them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail, ensure};
use policy_agent::AgentConfig;
use policy_kernel::KernelConfig;
use serde_json::Value as Json;

use crate::envoy_routes;
use crate::image::{self, Dockerfile, Source, Supervisord, is_under};
use crate::k8s::{self, Backing, Manifests};
use crate::repo;

/// The binaries of the image and the config file each one reads.
const PROGRAMS: &[(&str, &str)] = &[
    ("policy-agent", "deploy/agent-config.yaml"),
    ("policy-kernel", "deploy/kernel-config.yaml"),
];

fn dockerfile() -> anyhow::Result<Dockerfile> {
    Dockerfile::load(&repo::deploy().join("Dockerfile"))
}

fn supervisord() -> anyhow::Result<Supervisord> {
    Supervisord::load(&repo::deploy().join("supervisord.conf"))
}

fn fail_on(problems: Vec<String>) -> anyhow::Result<()> {
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// `(package name, directory relative to the root, bin target names)` of
/// every workspace member, from `cargo metadata`.
fn workspace_packages() -> anyhow::Result<Vec<(String, String, Vec<String>)>> {
    let root = repo::root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .stdin(Stdio::null())
        .output()
        .context("running `cargo metadata`")?;
    ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Json = serde_json::from_slice(&out.stdout)?;
    let mut packages = Vec::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        let dir = Path::new(p["manifest_path"].as_str().unwrap_or_default())
            .parent()
            .map(|d| d.strip_prefix(&root).unwrap_or(d).display().to_string())
            .unwrap_or_default();
        let bins = p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect();
        packages.push((name, dir, bins));
    }
    Ok(packages)
}

pub fn check_dockerfile_sources() -> anyhow::Result<()> {
    let root = repo::root();
    let docker = dockerfile()?;
    let ignore = image::dockerignore(&repo::deploy().join("Dockerfile.dockerignore"))?;
    let packages = workspace_packages()?;
    let mut problems = Vec::new();

    for (stage, copy) in docker.copies()? {
        if copy.from.is_some() {
            continue;
        }
        for src in &copy.sources {
            if src.contains(['*', '?', '[']) {
                problems.push(format!(
                    "stage `{stage}`: COPY {src}: use plain paths, the test does not expand globs"
                ));
            } else if !root.join(src).exists() {
                problems.push(format!("stage `{stage}`: COPY {src}: no such file in the build context (the repository root)"));
            } else if src != "." && image::is_ignored(src, &ignore) {
                problems.push(format!(
                    "stage `{stage}`: COPY {src}: excluded by deploy/Dockerfile.dockerignore"
                ));
            } else if is_under(src, "deploy/local") {
                problems.push(format!(
                    "stage `{stage}`: COPY {src}: the local stack's files (demo keys) must not ship"
                ));
            }
        }
    }
    // The builder compiles the whole workspace: the context must keep it.
    let needed = ["Cargo.toml", "Cargo.lock", "third_party/regorus"];
    for path in needed
        .iter()
        .map(|s| s.to_string())
        .chain(packages.iter().map(|p| p.1.clone()))
    {
        if image::is_ignored(&path, &ignore) {
            problems.push(format!(
                "deploy/Dockerfile.dockerignore excludes `{path}`, which the cargo build needs"
            ));
        }
    }

    // Binaries copied from the builder: built by its cargo command, shipped
    // to /usr/local/bin.
    let mut shipped = BTreeSet::new();
    for (path, source) in &docker.files {
        let Source::Stage { stage, path: src } = source else {
            continue;
        };
        let bin = Path::new(src)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((package, _, _)) = packages.iter().find(|p| p.2.contains(&bin)) else {
            problems.push(format!(
                "COPY --from={stage} {src}: no workspace package has a bin target `{bin}`"
            ));
            continue;
        };
        let runs = docker.runs(stage).join("\n");
        let build = docker
            .runs(stage)
            .into_iter()
            .flat_map(|r| r.split("&&"))
            .find(|c| c.contains("cargo build"))
            .with_context(|| format!("stage `{stage}` runs no `cargo build`"))?;
        let words: Vec<&str> = build.split_whitespace().collect();
        for flag in ["--release", "--locked"] {
            if !words.contains(&flag) {
                problems.push(format!("stage `{stage}`: `cargo build` lacks {flag}"));
            }
        }
        if !words.windows(2).any(|w| w == ["-p", package.as_str()]) {
            problems.push(format!(
                "stage `{stage}`: `cargo build` does not build `-p {package}` (for {bin})"
            ));
        }
        let out_dir = image::parent(src);
        if !runs.contains(&format!("target/release/{bin}")) || !runs.contains(&out_dir) {
            problems.push(format!(
                "stage `{stage}` does not copy target/release/{bin} to {out_dir}"
            ));
        }
        shipped.insert((bin, path.clone()));
    }
    for (program, _) in PROGRAMS {
        let want = (program.to_string(), format!("/usr/local/bin/{program}"));
        if !shipped.contains(&want) {
            problems.push(format!("the image does not ship {program} at {}", want.1));
        }
    }
    fail_on(problems)
}

pub fn check_image_paths() -> anyhow::Result<()> {
    let root = repo::root();
    let docker = dockerfile()?;
    let sup = supervisord()?;
    let mut problems = Vec::new();
    let mut fail = |m: String| problems.push(m);

    // CMD runs supervisord on our supervisord.conf.
    match docker.cmd.as_slice() {
        [bin, flag, conf] if bin == "/usr/bin/supervisord" && flag == "-c" => {
            if docker.context_source(conf) != Some("deploy/supervisord.conf") {
                fail(format!(
                    "CMD reads {conf}, which is not deploy/supervisord.conf in the image"
                ));
            }
        }
        other => fail(format!(
            "CMD is {other:?}, want [\"/usr/bin/supervisord\", \"-c\", <conf>]"
        )),
    }

    // One non-root user, the same in USER, useradd and supervisord.
    let uid = docker.uid()?;
    ensure!(uid != 0, "USER is root");
    let final_stage = docker
        .instructions
        .last()
        .map(|i| i.stage.clone())
        .unwrap_or_default();
    let commands: Vec<&str> = docker
        .runs(&final_stage)
        .into_iter()
        .flat_map(|r| r.split("&&"))
        .collect();
    let user = sup.main("user").context("[supervisord] has no user")?;
    let uid_text = uid.to_string();
    let has_user = commands.iter().any(|c| {
        let w: Vec<&str> = c.split_whitespace().collect();
        w.first() == Some(&"useradd")
            && w.windows(2).any(|x| x == ["--uid", uid_text.as_str()])
            && w.last() == Some(&user)
    });
    if !has_user {
        fail(format!(
            "no `useradd --uid {uid} … {user}` in the runtime stage"
        ));
    }

    // Each program: the shipped binary, reading the config the image carries.
    let programs = sup.programs()?;
    let names: BTreeSet<&str> = programs.iter().map(|p| p.name).collect();
    let want: BTreeSet<&str> = PROGRAMS.iter().map(|p| p.0).collect();
    ensure!(names == want, "supervisord runs {names:?}, want {want:?}");
    for p in &programs {
        let bin = p.argv.first().copied().unwrap_or_default();
        if !matches!(docker.files.get(bin), Some(Source::Stage { path, .. }) if path.ends_with(&format!("/{}", p.name)))
        {
            fail(format!(
                "[program:{}] runs {bin}, which is not the {} binary the image ships",
                p.name, p.name
            ));
        }
        let expected = PROGRAMS
            .iter()
            .find(|x| x.0 == p.name)
            .map(|x| x.1)
            .unwrap_or_default();
        match p.flag("config") {
            None => fail(format!("[program:{}] has no --config=", p.name)),
            Some(conf) if docker.context_source(conf) != Some(expected) => {
                fail(format!(
                    "[program:{}] reads {conf}, but the image has {expected} elsewhere",
                    p.name
                ));
            }
            Some(_) => {}
        }
    }
    let priority = |n: &str| programs.iter().find(|p| p.name == n).map(|p| p.priority);
    if priority("policy-agent") >= priority("policy-kernel") {
        fail("policy-agent must start before policy-kernel (a lower supervisord priority)".into());
    }

    // Everything supervisord writes is in a directory the user owns.
    for f in sup.written_files()? {
        if !docker.is_service_writable(&f) || !docker.has_dir(&image::parent(&f)) {
            fail(format!(
                "supervisord writes {f}, outside the directories the Dockerfile creates for {user}"
            ));
        }
    }

    // The configs as the image has them: socket, data, ports.
    let kernel = KernelConfig::load(&root.join("deploy/kernel-config.yaml"))?;
    let agent = AgentConfig::parse(
        Path::new("/etc/policy-engine/agent-config.yaml"),
        &repo::read(&root.join("deploy/agent-config.yaml"))?,
    )?;
    let socket = agent.socket_path.display().to_string();
    if !docker.is_service_writable(&socket) || !docker.has_dir(&image::parent(&socket)) {
        fail(format!(
            "the agent socket {socket} is not in a directory the Dockerfile creates for {user}"
        ));
    }
    if !kernel
        .agents
        .iter()
        .any(|a| a.name == agent.name && a.socket_path == agent.socket_path)
    {
        fail(format!("no kernel agent `{}` dials {socket}", agent.name));
    }
    for d in &agent.data {
        let d = d.display().to_string();
        if !docker.has_dir(&d) && !docker.files.contains_key(&d) {
            fail(format!(
                "the agent's data path {d} does not exist in the image"
            ));
        }
    }
    for (what, port) in [
        ("server.port", kernel.server.port),
        ("metrics_port", kernel.observability.metrics_port),
    ] {
        if !docker.exposed.contains(&u64::from(port)) {
            fail(format!("the kernel's {what} {port} is not EXPOSEd"));
        }
    }
    let live = format!(
        "127.0.0.1:{}/health/live",
        kernel.observability.metrics_port
    );
    if !docker.healthcheck.contains(&live) {
        fail(format!("HEALTHCHECK does not probe {live}"));
    }
    fail_on(problems)
}

pub fn check_k8s() -> anyhow::Result<()> {
    let deploy = repo::deploy();
    let dir = deploy.join("k8s");
    let m = Manifests::load(&dir)?;
    let docker = dockerfile()?;
    let sup = supervisord()?;
    let mut problems = Vec::new();
    let mut fail = |m: String| problems.push(m);

    // kustomization.yaml lists exactly the manifests of the folder.
    let kust = repo::read_yaml_doc(&dir.join("kustomization.yaml"))?;
    let listed: BTreeSet<String> = kust["resources"]
        .as_sequence()
        .context("kustomization.yaml has no resources")?
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    let files: BTreeSet<String> = m
        .docs
        .iter()
        .filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if listed != files {
        fail(format!(
            "kustomization.yaml resources {listed:?} differ from the manifests {files:?}"
        ));
    }

    // ConfigMap keys named like a file of deploy/ carry it verbatim.
    let mut embedded = BTreeSet::new();
    for (path, doc) in &m.docs {
        for cm in repo::configmap_files(path, std::slice::from_ref(doc)) {
            let original = deploy.join(&cm.key);
            if original.is_file() {
                if repo::read(&original)? != cm.text {
                    fail(format!(
                        "{} ConfigMap `{}` key `{}` differs from deploy/{}: run deploy/k8s/sync-configmaps.sh",
                        repo::rel(path),
                        cm.name,
                        cm.key,
                        cm.key
                    ));
                }
                embedded.insert(cm.key.clone());
            }
        }
    }
    for key in ["kernel-config.yaml", "agent-config.yaml", "envoy.yaml"] {
        if !embedded.contains(key) {
            fail(format!("no ConfigMap carries deploy/{key}"));
        }
    }

    // The pod and what selects it.
    let dep = m.one("Deployment", "policy-engine")?;
    let pod = &dep["spec"]["template"]["spec"];
    let labels = &dep["spec"]["template"]["metadata"]["labels"];
    let mut selectors = vec![(
        "Deployment".to_string(),
        &dep["spec"]["selector"]["matchLabels"],
    )];
    for s in m.of_kind("Service") {
        selectors.push((
            format!("Service {:?}", s["metadata"]["name"]),
            &s["spec"]["selector"],
        ));
    }
    for p in m.of_kind("PodDisruptionBudget") {
        selectors.push((
            format!("PodDisruptionBudget {:?}", p["metadata"]["name"]),
            &p["spec"]["selector"]["matchLabels"],
        ));
    }
    for n in m.of_kind("NetworkPolicy") {
        selectors.push((
            format!("NetworkPolicy {:?}", n["metadata"]["name"]),
            &n["spec"]["podSelector"]["matchLabels"],
        ));
    }
    for (what, sel) in selectors {
        if !k8s::selects(sel, labels) {
            fail(format!("{what} does not select the Deployment's pods"));
        }
    }
    let containers: Vec<&serde_yaml_ng::Value> = pod["containers"]
        .as_sequence()
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    for s in m.of_kind("Service") {
        for port in s["spec"]["ports"].as_sequence().into_iter().flatten() {
            if !containers.iter().any(|c| {
                k8s::port_number(c, &port["targetPort"]).is_some_and(|p| {
                    c["ports"]
                        .as_sequence()
                        .is_some_and(|ps| ps.iter().any(|x| x["containerPort"].as_u64() == Some(p)))
                })
            }) {
                fail(format!(
                    "Service port {:?} targets no container port",
                    port["name"]
                ));
            }
        }
    }

    // Both containers: non-root, read-only root, no escalation, sized.
    let uid = docker.uid()?;
    for c in &containers {
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        let non_root = sc["runAsNonRoot"]
            .as_bool()
            .or(pod["securityContext"]["runAsNonRoot"].as_bool());
        if non_root != Some(true) {
            fail(format!("container `{name}`: runAsNonRoot is not true"));
        }
        if sc["readOnlyRootFilesystem"].as_bool() != Some(true) {
            fail(format!(
                "container `{name}`: readOnlyRootFilesystem is not true"
            ));
        }
        if sc["allowPrivilegeEscalation"].as_bool() != Some(false) {
            fail(format!(
                "container `{name}`: allowPrivilegeEscalation is not false"
            ));
        }
        for kind in ["requests", "limits"] {
            for r in ["cpu", "memory"] {
                if c["resources"][kind][r].is_null() {
                    fail(format!("container `{name}`: no resources.{kind}.{r}"));
                }
            }
        }
    }

    // policy-engine: the image's command, probes, and every path it uses.
    let pe = k8s::container(pod, "policy-engine")?;
    if let Some(cmd) = pe["command"].as_sequence() {
        let cmd: Vec<&str> = cmd.iter().filter_map(|v| v.as_str()).collect();
        if cmd != docker.cmd.iter().map(String::as_str).collect::<Vec<_>>() {
            fail(format!(
                "policy-engine command {cmd:?} differs from the image's CMD {:?}",
                docker.cmd
            ));
        }
    }
    if pe["securityContext"]["runAsUser"].as_u64() != Some(uid) {
        fail(format!(
            "policy-engine runAsUser is not the image's uid {uid}"
        ));
    }
    let kernel_text = m
        .configmap_key("policy-engine-config", "kernel-config.yaml")
        .context("no kernel config ConfigMap")?;
    let kernel = KernelConfig::parse(
        Path::new("/etc/policy-engine/kernel-config.yaml"),
        kernel_text,
    )?;
    let agent_text = m
        .configmap_key("policy-engine-config", "agent-config.yaml")
        .context("no agent config ConfigMap")?;
    let agent = AgentConfig::parse(
        Path::new("/etc/policy-engine/agent-config.yaml"),
        agent_text,
    )?;
    let metrics = u64::from(kernel.observability.metrics_port);
    for (probe, path) in [
        ("livenessProbe", "/health/live"),
        ("readinessProbe", "/health/ready"),
    ] {
        let get = &pe[probe]["httpGet"];
        if get["path"].as_str() != Some(path) || k8s::port_number(pe, &get["port"]) != Some(metrics)
        {
            fail(format!(
                "policy-engine {probe} is not GET {path} on port {metrics}"
            ));
        }
    }
    for port in [u64::from(kernel.server.port), metrics] {
        if !pe["ports"]
            .as_sequence()
            .is_some_and(|ps| ps.iter().any(|p| p["containerPort"].as_u64() == Some(port)))
        {
            fail(format!(
                "policy-engine does not declare container port {port}"
            ));
        }
    }
    let mut writable: Vec<String> = sup.written_files()?;
    writable.push(agent.socket_path.display().to_string());
    writable.push("/tmp".into()); // supervisord needs a temp dir at start
    for path in writable {
        let b = k8s::backing(pod, pe, &path);
        if b != Backing::EmptyDir {
            fail(format!(
                "policy-engine writes {path}, which is {b:?}, not an emptyDir"
            ));
        }
    }
    for p in sup.programs()? {
        let conf = p.flag("config").unwrap_or_default();
        let expected = docker
            .context_source(conf)
            .map(|s| s.trim_start_matches("deploy/").to_string());
        match k8s::backing(pod, pe, conf) {
            Backing::ConfigMapKey { name, key } if Some(&key) == expected.as_ref() => {
                if m.configmap_key(&name, &key).is_none() {
                    fail(format!(
                        "{conf} is mounted from ConfigMap `{name}` key `{key}`, which does not exist"
                    ));
                }
            }
            other => fail(format!(
                "{conf} ([program:{}]) is {other:?}, not the ConfigMap key {expected:?}",
                p.name
            )),
        }
    }
    for d in &agent.data {
        let d = d.display().to_string();
        if k8s::backing(pod, pe, &d) != Backing::ConfigMapDir {
            fail(format!(
                "the agent's data path {d} is not a directory of ConfigMap keys"
            ));
        }
    }
    let data = m
        .configmap_key("policy-engine-data", "data.json")
        .context("no data ConfigMap")?;
    let tmp = tempfile::tempdir()?;
    std::fs::write(tmp.path().join("data.json"), data)?;
    policy_agent::load_data(&[tmp.path().to_path_buf()]).context("ConfigMap policy-engine-data")?;
    for image_path in docker.files.keys() {
        if !image_path.starts_with("/etc/policy-engine/")
            && k8s::backing(pod, pe, image_path) != Backing::Image
        {
            fail(format!("{image_path} of the image is hidden by a volume"));
        }
    }

    // envoy: its config from the ConfigMap, its listener declared, the kernel in reach.
    let ev = k8s::container(pod, "envoy")?;
    let args: Vec<&str> = ev["args"]
        .as_sequence()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let conf = args
        .windows(2)
        .find(|w| w[0] == "-c")
        .map(|w| w[1])
        .context("envoy has no `-c <config>` argument")?;
    let Backing::ConfigMapKey { name, key } = k8s::backing(pod, ev, conf) else {
        bail!("envoy's {conf} is not a ConfigMap key");
    };
    let envoy_text = m
        .configmap_key(&name, &key)
        .with_context(|| format!("ConfigMap `{name}` has no key `{key}`"))?;
    let view = envoy_routes::read(&repo::yaml_docs(envoy_text)?[0])?;
    for port in &view.listener_ports {
        if !ev["ports"].as_sequence().is_some_and(|ps| {
            ps.iter()
                .any(|p| p["containerPort"].as_u64() == Some(*port))
        }) {
            fail(format!(
                "envoy listens on {port}, which the container does not declare"
            ));
        }
    }
    for problem in envoy_routes::check_against_kernel(&view, &kernel) {
        fail(format!("ConfigMap `{name}` key `{key}`: {problem}"));
    }
    fail_on(problems)
}
