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

#[test]
fn up_starts_the_agent_and_shows_allow_and_deny() {
    let agent =
        std::path::Path::new(env!("CARGO_BIN_EXE_policyctl")).with_file_name("policy-agent");
    assert!(
        agent.is_file(),
        "policy-agent is not built next to policyctl: run `cargo build --workspace --bins` first"
    );
    let run = policyctl_in(ROOT, &["up", "--demo-only"]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("policy-agent ready on unix:"),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].starts_with("GET /api/v1/users without a key: POLICY_DENIED (HTTP 401)"),
        "{}",
        run.stdout
    );
    assert!(
        lines[2]
            .starts_with("GET /api/v1/users with X-API-Key: demo-key-alice: OK (X-User-ID: alice)"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stderr.contains("demo-key-alice"),
        "the API key must not be logged"
    );
}
