//! deploy/local/envoy.yaml run by the real Envoy, with no kernel listening:
//! every route must answer 500 (ext_proc `failure_mode_allow: false`),
//! never reach the upstream.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use policy_engine_tests::envoy;

use crate::repo;

/// How long Envoy may take to start listening.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// Kills and reaps Envoy when dropped.
struct EnvoyProcess(Child);

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn local_envoy_fails_closed() -> anyhow::Result<()> {
    let envoy = envoy::envoy_binary()?;
    let tmp = tempfile::tempdir()?;
    // Ephemeral listener and admin ports; the kernel and the upstream on a
    // port nobody listens on.
    let closed = format!("port_value: {}", closed_port()?);
    let mut text = repo::read(&repo::deploy().join("local/envoy.yaml"))?;
    for (from, to) in [
        ("port_value: 10000", "port_value: 0"),
        ("port_value: 9901", "port_value: 0"),
        ("port_value: 9001", closed.as_str()),
        ("port_value: 10080", closed.as_str()),
    ] {
        ensure!(
            text.matches(from).count() == 1,
            "deploy/local/envoy.yaml should contain `{from}` once"
        );
        text = text.replace(from, to);
    }
    let config = tmp.path().join("envoy.yaml");
    std::fs::write(&config, text)?;
    let admin_file = tmp.path().join("admin-address");
    let log = std::fs::File::create(tmp.path().join("envoy.log"))?;
    let child = Command::new(&envoy)
        .arg("-c")
        .arg(&config)
        .arg("--admin-address-path")
        .arg(&admin_file)
        .args([
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "--concurrency",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", envoy.display()))?;
    let mut process = EnvoyProcess(child);
    let listener = match wait_for_listener(&mut process, &admin_file) {
        Ok(addr) => addr,
        Err(e) => {
            let log = std::fs::read_to_string(tmp.path().join("envoy.log")).unwrap_or_default();
            bail!("{e:#}\nEnvoy's log:\n{log}");
        }
    };
    for path in ["/api/v1/users", "/api/v1/admin", "/", "/anything/else"] {
        let (status, _) = http_get(listener, path)?;
        ensure!(
            status == 500,
            "GET {path} with the kernel down answered {status}, want 500 (fail closed)"
        );
    }
    Ok(())
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits for Envoy's admin address, then for its `ingress_http` listener.
fn wait_for_listener(process: &mut EnvoyProcess, admin_file: &Path) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        if let Some(status) = process.0.try_wait()? {
            bail!("Envoy exited during startup ({status})");
        }
        ensure!(
            Instant::now() < deadline,
            "Envoy did not start listening within {STARTUP_DEADLINE:?}"
        );
        if let Some(addr) = listener_address(admin_file) {
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn listener_address(admin_file: &Path) -> Option<SocketAddr> {
    let admin: SocketAddr = std::fs::read_to_string(admin_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let (status, body) = http_get(admin, "/listeners?format=json").ok()?;
    if status != 200 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    let socket = &json["listener_statuses"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == "ingress_http")?["local_address"]["socket_address"];
    let port = u16::try_from(socket["port_value"].as_u64()?).ok()?;
    (port != 0).then(|| SocketAddr::from(([127, 0, 0, 1], port)))
}

/// `GET path` over HTTP/1.1: the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status line in {response:?}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or((response.as_str(), ""));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("truncated chunked body")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or(size).trim(), 16)
            .with_context(|| format!("bad chunk size {size:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).context("truncated chunk")?;
        out.push_str(chunk);
        body = rest
            .get(size..)
            .and_then(|r| r.strip_prefix("\r\n"))
            .context("chunk without CRLF")?;
    }
}
