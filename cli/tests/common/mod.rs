//! Runs the built `policyctl` binary from the crate directory, so fixture
//! paths (and the file names in its output) are `tests/fixtures/...`.

use std::process::Command;

/// What one run of `policyctl` produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `policyctl args...` in the crate directory.
#[allow(dead_code, reason = "not every test file runs in the crate directory")]
pub fn policyctl(args: &[&str]) -> Run {
    policyctl_in(env!("CARGO_MANIFEST_DIR"), args)
}

/// Runs `policyctl args...` in `dir`.
#[expect(
    clippy::expect_used,
    reason = "test helper: not being able to run the binary fails the test"
)]
pub fn policyctl_in(dir: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run policyctl");
    Run {
        code: out.status.code().expect("policyctl killed by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// `text` with every test duration, e.g. `(312µs)`, replaced by `(T)`.
#[allow(dead_code, reason = "used by the `test` command's tests only")]
#[expect(clippy::expect_used, reason = "test helper: the pattern is a constant")]
pub fn without_durations(text: &str) -> String {
    let re = regex::Regex::new(r"\(\d+(\.\d+)?(µs|ms|s)\)").expect("valid regex");
    re.replace_all(text, "(T)").into_owned()
}
