//! `bench/opa/eval_vs_opa.py` runs end to end with a tiny N: both spec
//! routes give the same decision document in OPA (through `opa_bindings`)
//! and in our engine, and the table has a row per route.
//!
//! Needs Python 3 with `opa_bindings` (`POLICY_TESTS_PYTHON` names the
//! interpreter, default `python3`); without it the test fails with the
//! install hint. Builds `policyctl` (debug) with cargo.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail, ensure};

const OPA_INSTALL_HINT: &str = "pip install --ignore-requires-python opa-golib-python-bindings";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// The workspace's debug `policyctl`, built now.
fn policyctl() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--quiet", "-p", "policyctl", "--bin", "policyctl"])
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .stdin(Stdio::null())
        .output()
        .context("running `cargo build -p policyctl`")?;
    ensure!(
        out.status.success(),
        "`cargo build -p policyctl` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    };
    Ok(target.join("debug").join("policyctl"))
}

#[test]
fn eval_vs_opa_script_runs_and_both_engines_agree() -> anyhow::Result<()> {
    let python: OsString =
        std::env::var_os("POLICY_TESTS_PYTHON").unwrap_or_else(|| "python3".into());
    let script = workspace_root().join("bench/opa/eval_vs_opa.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(["-n", "20", "--ours-n", "20", "--rounds", "1", "--policyctl"])
        .arg(policyctl()?)
        .arg("--compiled-eval")
        .arg(env!("CARGO_BIN_EXE_compiled_eval"))
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "running `{}` (set POLICY_TESTS_PYTHON to a Python 3 with opa_bindings: {OPA_INSTALL_HINT})",
                python.to_string_lossy()
            )
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        bail!("real OPA is missing: install it with `{OPA_INSTALL_HINT}`\n{stderr}");
    }
    ensure!(
        out.status.success(),
        "{} failed ({}):\n{stderr}\n{stdout}",
        script.display(),
        out.status
    );
    for route in ["/api/v1/users", "/api/v1/admin"] {
        ensure!(
            stderr.contains(&format!("{route}: same decision from both engines")),
            "no agreement reported for `{route}`:\n{stderr}"
        );
        ensure!(
            stdout.lines().any(|l| l.starts_with(route)),
            "no table row for `{route}`:\n{stdout}"
        );
    }
    Ok(())
}
