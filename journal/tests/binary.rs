//! The `policy-journal` binary: configuration errors, the `listening on`
//! line, and a clean exit on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use journal_client::devcerts::write_dev_set;

const BIN: &str = env!("CARGO_BIN_EXE_policy-journal");

fn write_config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("journal.yaml");
    std::fs::write(&path, body).unwrap();
    path
}

const GOOD: &str = "listen: 127.0.0.1:0
tls:
  ca: certs/ca.pem
  cert: certs/server.pem
  key: certs/server-key.pem
storage:
  backend: sled
  path: data
readers: [policyctl]
";

#[test]
fn invalid_configs_name_the_file_and_field_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    write_dev_set(&dir.path().join("certs"), &[], &[]).unwrap();
    let cases = [
        (GOOD.replace("listen:", "listne:"), "unknown field `listne`"),
        (
            GOOD.replace("certs/ca.pem", "certs/missing.pem"),
            "field `tls.ca`",
        ),
        (
            GOOD.replace("backend: sled", "backend: mongo"),
            "unknown variant `mongo`",
        ),
        (
            GOOD.replace("path: data", "path: data\n  url: x"),
            "unknown field `url`",
        ),
        (GOOD.replace("127.0.0.1:0", "nowhere"), "field `listen`"),
        (
            GOOD.replace(
                "backend: sled\n  path: data",
                "backend: postgres\n  url: \"host=localhost\"\n  pool_size: 0",
            ),
            "field `storage.pool_size`",
        ),
        (
            format!("{GOOD}data_writers: [policyctl, \"\"]\n"),
            "field `data_writers`",
        ),
        (
            format!("{GOOD}data_writer: [policyctl]\n"),
            "unknown field `data_writer`",
        ),
    ];
    for (body, want) in cases {
        let path = write_config(dir.path(), &body);
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{want}: {stderr}");
        assert!(stderr.contains(want), "want {want}: {stderr}");
        assert!(stderr.contains("journal.yaml"), "{stderr}");
        assert!(
            out.stdout.is_empty(),
            "nothing bound: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn prints_the_bound_address_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    write_dev_set(&dir.path().join("certs"), &[], &[]).unwrap();
    let path = write_config(dir.path(), GOOD);
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line `{line}`"));
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dir.path().join("data").exists());
}
