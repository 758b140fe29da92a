#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! `policyctl journal data get|put` against a real journal (in this
//! process, mutual TLS on 127.0.0.1:0, sled in a temp dir).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Run, policyctl};
use policy_journal::{JournalConfig, RunningJournal, StorageConfig, TlsMaterial};

const EMPTY_PRETTY: &str = r#"{
  "role_bindings": {},
  "command_whitelists": {},
  "platform_admins": [],
  "approvals": {}
}
"#;

async fn journal(certs: &Path, data: &Path) -> RunningJournal {
    journal_client::devcerts::write_dev_set(certs, &[], &["policyctl", "agent-1"]).unwrap();
    let read = |f: &str| std::fs::read_to_string(certs.join(f)).unwrap();
    let config = JournalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: TlsMaterial {
            ca_pem: read("ca.pem"),
            cert_pem: read("server.pem"),
            key_pem: read("server-key.pem"),
        },
        storage: StorageConfig::Sled {
            path: data.join("journal"),
        },
        readers: None,
        data_writers: vec!["policyctl".into()],
        tail_poll: Duration::from_millis(50),
    };
    policy_journal::start(config).await.unwrap()
}

/// `policyctl journal data <args> --journal … --certs …`, off the runtime.
async fn data(server: &RunningJournal, certs: &Path, args: &[&str]) -> Run {
    let mut all: Vec<String> = ["journal", "data"]
        .iter()
        .chain(args)
        .map(|s| (*s).to_owned())
        .collect();
    all.extend([
        "--journal".into(),
        format!("https://{}", server.local_addr()),
        "--certs".into(),
        certs.display().to_string(),
    ]);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        policyctl(&args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_put_and_get_roundtrip_with_versions() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, files) = (dir.path().join("certs"), dir.path());
    let server = journal(&certs, files).await;

    let run = data(&server, &certs, &["get"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, EMPTY_PRETTY);
    assert_eq!(run.stderr.trim(), "version 0 (never written)");

    let doc = files.join("doc.json");
    std::fs::write(
        &doc,
        r#"{"platform_admins": ["root"], "role_bindings": {"alice": ["admin"]}}"#,
    )
    .unwrap();
    let doc_arg = doc.to_str().unwrap();
    let run = data(&server, &certs, &["put", doc_arg]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "1\n");
    assert!(
        run.stderr.starts_with("version 1, updated ")
            && run.stderr.trim_end().ends_with(" by policyctl"),
        "{}",
        run.stderr
    );

    let out = files.join("out.json");
    let run = data(&server, &certs, &["get", "-o", out.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(run.stderr.starts_with("version 1, "), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        r#"{
  "role_bindings": {
    "alice": [
      "admin"
    ]
  },
  "command_whitelists": {},
  "platform_admins": [
    "root"
  ],
  "approvals": {}
}
"#
    );

    // A stale --expected-version is refused and changes nothing.
    let run = data(
        &server,
        &certs,
        &["put", doc_arg, "--expected-version", "5"],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("current version is 1") && run.stderr.contains("version conflict"),
        "{}",
        run.stderr
    );
    let run = data(
        &server,
        &certs,
        &["put", doc_arg, "--expected-version", "1"],
    )
    .await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "2\n"),
        "{}",
        run.stderr
    );

    // An invalid document: the journal's reason, with the path.
    std::fs::write(&doc, r#"{"role_bindings": {"alice": [7]}}"#).unwrap();
    let run = data(&server, &certs, &["put", doc_arg]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("role_bindings.alice[0] must be a string")
            && run.stderr.contains("invalid argument"),
        "{}",
        run.stderr
    );

    // Only `data_writers` may put; any client may get.
    let run = data(&server, &certs, &["put", doc_arg, "--client", "agent-1"]).await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("permission denied"), "{}", run.stderr);
    let run = data(&server, &certs, &["get", "--client", "agent-1"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.starts_with("version 2, "), "{}", run.stderr);
    server.shutdown().await.unwrap();
}
