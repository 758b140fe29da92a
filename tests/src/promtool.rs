//! `promtool check metrics`: Prometheus's own parser and linter of the text
//! exposition, run on what the kernel serves on `/metrics`.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// The command that installs promtool (Debian/Ubuntu).
pub const INSTALL_HINT: &str = "apt-get install -y --no-install-recommends prometheus";

/// Runs `promtool check metrics` on `text`: an error with promtool's
/// findings (and the text), or with [`INSTALL_HINT`] when it is missing.
pub fn check_metrics(text: &str) -> anyhow::Result<()> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("promtool is not installed (it checks /metrics): {INSTALL_HINT}")
        }
        Err(e) => return Err(e).context("starting promtool"),
    };
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(text.as_bytes())
        .context("writing to promtool")?;
    let out = child.wait_with_output().context("waiting for promtool")?;
    if !out.status.success() {
        bail!(
            "promtool check metrics failed ({}):\n{}{}\n--- /metrics:\n{text}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
    Ok(())
}
