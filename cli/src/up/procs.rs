//! The processes `policyctl up` starts and how it waits for them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A started process, stopped with SIGTERM (then SIGKILL) when asked.
pub struct Child {
    pub name: &'static str,
    pub process: tokio::process::Child,
}

impl Child {
    /// Starts `cmd`; its standard output goes to our standard error, so
    /// stdout stays the tool's own report.
    pub fn spawn(name: &'static str, cmd: &mut tokio::process::Command) -> anyhow::Result<Self> {
        use std::os::fd::AsFd;
        let stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating stderr")?;
        let process = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self { name, process })
    }

    /// Fails when the process has already exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.process.try_wait()? {
            bail!("{} exited during start ({status})", self.name);
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.process.id() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
            if tokio::time::timeout(Duration::from_secs(5), self.process.wait())
                .await
                .is_err()
            {
                let _ = self.process.kill().await;
            }
        }
    }
}

/// The first child to exit, with its status.
pub async fn first_exit(children: &mut [Child]) -> (&'static str, String) {
    loop {
        for c in children.iter_mut() {
            if let Ok(Some(status)) = c.process.try_wait() {
                return (c.name, status.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A binary built next to policyctl, else on PATH.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating policyctl")?;
    if let Some(sibling) = exe.parent().map(|d| d.join(name))
        && sibling.is_file()
    {
        return Ok(sibling);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .with_context(|| {
            format!("{name} not found next to policyctl or on PATH (build it: cargo build --bins)")
        })
}

/// One HTTP/1.1 GET; returns the status code and the whole response.
pub async fn http_get(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .context("no answer within 10 s")??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response from {addr}"))?;
    Ok((status, text))
}

/// Waits until `GET path` on `addr` answers 200, failing early when `child`
/// (the service's process) exits.
pub async fn wait_http_ok(
    addr: &str,
    path: &str,
    within: Duration,
    mut child: Option<&mut Child>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(c) = child.as_deref_mut() {
            c.check_running()?;
        }
        if let Ok((200, _)) = http_get(addr, path, &[]).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "http://{addr}{path} did not answer 200 within {} s",
                within.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `addr` accepts TCP connections, failing early when `child`
/// exits.
pub async fn wait_tcp(addr: &str, within: Duration, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        child.check_running()?;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{addr} did not accept connections within {} s",
                within.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
