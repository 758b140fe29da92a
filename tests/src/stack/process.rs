//! Child processes of a stack: spawned with their output in a log file,
//! signalled by pid, killed and reaped on drop. And the `policy-kernel`
//! binary of this workspace, built like the agent's.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use anyhow::{Context as _, bail};

/// Environment variable naming a prebuilt `policy-kernel` to test instead of
/// building the workspace's.
pub const KERNEL_BIN_ENV: &str = "POLICY_KERNEL_BIN";

/// A running child process; killed (SIGKILL) and reaped when dropped.
pub struct ChildGuard {
    what: &'static str,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `command` with stdin closed and stdout and stderr appended to
    /// `log`.
    pub fn spawn(what: &'static str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let out = append(log)?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawning {what} ({:?})", command.get_program()))?;
        Ok(Self {
            what,
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status when the process has ended.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Fails when the process has ended, with its log.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.exited()? {
            bail!(
                "{} exited ({status}); its log:\n{}",
                self.what,
                tail(&self.log_text(), 60)
            );
        }
        Ok(())
    }

    /// Sends signal `name` (`HUP`, `TERM`, …) to this process only.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg("-s")
            .arg(name)
            .arg(self.pid().to_string())
            .stdin(Stdio::null())
            .status()
            .context("running `kill`")?;
        if !status.success() {
            bail!("`kill -s {name} {}` failed ({status})", self.pid());
        }
        Ok(())
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// The content of a log file (lossy), or why it cannot be read.
pub fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The `policy-kernel` binary of this workspace, built (once per test
/// process) with the profile the tests were built with, or the binary named
/// by `POLICY_KERNEL_BIN`.
pub fn kernel_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| build_kernel().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_kernel() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(KERNEL_BIN_ENV) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("{KERNEL_BIN_ENV}={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    workspace_binary("policy-kernel", "policy-kernel")
}

/// A command running `bin`; with `one_cpu`, under `taskset -c 0`
/// (util-linux), as a sidecar limited to one CPU runs.
pub fn command(bin: &Path, one_cpu: bool) -> Command {
    if one_cpu {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

/// Binary `bin` of workspace package `package`, built with the profile the
/// tests were built with (a no-op when `cargo build --workspace --bins` ran).
pub fn workspace_binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    // The test executable lives in <target>/<profile dir>/deps/.
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable is not in <target>/<profile>/deps")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => bail!("unexpected target layout {}", profile_dir.display()),
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            bin,
            "--profile",
            &profile,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{} build -p {package}`", cargo.to_string_lossy()))?;
    if !output.status.success() {
        bail!(
            "`cargo build -p {package} --bin {bin}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let path = profile_dir.join(bin);
    if !path.is_file() {
        bail!("built {bin} but found no {}", path.display());
    }
    Ok(path)
}
