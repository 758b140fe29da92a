//! The gRPC server over real mutual TLS on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Spec, chain, decision, envelope};
use journal_client::devcerts::{DevCa, write_dev_set};
use policy_journal::{JournalConfig, RunningJournal, StorageConfig, TlsMaterial};
use policy_proto::journal::journal_client::JournalClient;
use policy_proto::journal::{
    AppendRequest, DataSnapshot, GetDataRequest, PutDataRequest, QueryRequest, RecordEnvelope,
    VerifyRequest,
};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Everything the server logs, for tests that assert an attempt was logged.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Fixture {
    certs: tempfile::TempDir,
    _data: tempfile::TempDir,
    server: RunningJournal,
}

async fn start(readers: Option<Vec<String>>) -> Fixture {
    start_with(readers, vec!["policyctl".into()]).await
}

async fn start_with(readers: Option<Vec<String>>, data_writers: Vec<String>) -> Fixture {
    logs();
    let certs = tempfile::tempdir().unwrap();
    write_dev_set(certs.path(), &[], &["agent-1", "agent-2", "policyctl"]).unwrap();
    let data = tempfile::tempdir().unwrap();
    let read = |f: &str| std::fs::read_to_string(certs.path().join(f)).unwrap();
    let config = JournalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: TlsMaterial {
            ca_pem: read("ca.pem"),
            cert_pem: read("server.pem"),
            key_pem: read("server-key.pem"),
        },
        storage: StorageConfig::Sled {
            path: data.path().join("journal"),
        },
        readers,
        data_writers,
        tail_poll: Duration::from_millis(50),
    };
    let server = policy_journal::start(config).await.unwrap();
    Fixture {
        certs,
        _data: data,
        server,
    }
}

async fn connect(
    addr: std::net::SocketAddr,
    ca_dir: &Path,
    identity: Option<(String, String)>,
) -> Result<JournalClient<Channel>, tonic::transport::Error> {
    let ca = std::fs::read_to_string(ca_dir.join("ca.pem")).unwrap();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(JournalClient::new(channel))
}

impl Fixture {
    async fn client(&self, name: &str) -> JournalClient<Channel> {
        let read = |f: String| std::fs::read_to_string(self.certs.path().join(f)).unwrap();
        let id = (read(format!("{name}.pem")), read(format!("{name}-key.pem")));
        connect(self.server.local_addr(), self.certs.path(), Some(id))
            .await
            .unwrap()
    }
}

fn batches(records: &[RecordEnvelope], size: usize) -> Vec<AppendRequest> {
    records
        .chunks(size)
        .map(|c| AppendRequest {
            records: c.to_vec(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_is_acked_after_commit_and_readable() {
    let f = start(None).await;
    let mut agent = f.client("agent-1").await;
    let recs = chain("agent-1", 1, None, 7);
    let mut acks = agent
        .append(tokio_stream::iter(batches(&recs, 3)))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(ack) = acks.message().await.unwrap() {
        assert_eq!(ack.agent_id, "agent-1");
        got.push(ack.acked_seq);
    }
    assert_eq!(got, [3, 6, 7]);

    let mut ops = f.client("policyctl").await;
    let mut stream = ops
        .query(QueryRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(r) = stream.message().await.unwrap() {
        n += 1;
        assert_eq!(r.record.unwrap(), recs[n - 1]);
    }
    assert_eq!(n, 7);
    let report = ops
        .verify(VerifyRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.agents.len(), 1);
    assert!(report.agents[0].problems.is_empty());
    let bad = ops
        .query(QueryRequest {
            decision: "maybe".into(),
            ..QueryRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    f.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagged_records_are_stored_acked_and_alerted() {
    let f = start(None).await;
    let mut agent = f.client("agent-1").await;
    let recs = chain("agent-1", 1, None, 5);
    // seq 3 and 4 never arrive.
    let sent = vec![recs[0].clone(), recs[1].clone(), recs[4].clone()];
    let mut acks = agent
        .append(tokio_stream::iter(batches(&sent, 3)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acks.message().await.unwrap().unwrap().acked_seq, 5);
    let mut ops = f.client("policyctl").await;
    let report = ops
        .verify(VerifyRequest {
            agent_id: "agent-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.agents[0].problems, ["seq 3..=4 missing"]);
    let text = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    assert!(
        text.lines().any(|l| l.contains("journal chain alert")
            && l.contains("seq_gap")
            && l.contains("WARN")),
        "{text}"
    );
    f.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_certificate_is_refused() {
    let f = start(None).await;
    let refused = match connect(f.server.local_addr(), f.certs.path(), None).await {
        Err(_) => true,
        Ok(mut c) => c.verify(VerifyRequest::default()).await.is_err(),
    };
    assert!(refused);
    f.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let f = start(None).await;
    let foreign = DevCa::generate("someone else's CA").unwrap();
    let pair = foreign.client("agent-1").unwrap();
    let refused = match connect(
        f.server.local_addr(),
        f.certs.path(),
        Some((pair.cert, pair.key)),
    )
    .await
    {
        Err(_) => true,
        Ok(mut c) => {
            let recs = chain("agent-1", 1, None, 1);
            match c.append(tokio_stream::iter(batches(&recs, 1))).await {
                Err(_) => true,
                Ok(r) => r.into_inner().message().await.is_err(),
            }
        }
    };
    assert!(refused);
    f.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appending_under_another_agents_id_is_denied_and_logged() {
    let f = start(None).await;
    let mut imposter = f.client("agent-2").await;
    // Envelope claims agent-1.
    let recs = chain("agent-1", 1, None, 2);
    let mut acks = imposter
        .append(tokio_stream::iter(batches(&recs, 2)))
        .await
        .unwrap()
        .into_inner();
    let status = acks.message().await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Envelope says agent-2, the record inside says agent-1.
    let mut inner = envelope(&decision(
        "agent-1",
        1,
        1,
        journal_client::GENESIS_HASH,
        &Spec::default(),
    ));
    inner.agent_id = "agent-2".into();
    let mut acks = imposter
        .append(tokio_stream::iter(vec![AppendRequest {
            records: vec![inner],
        }]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        acks.message().await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // Nothing was stored.
    let mut ops = f.client("policyctl").await;
    let mut stream = ops
        .query(QueryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_none());
    let text = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("append under another agent's id rejected"))
        .unwrap_or_else(|| panic!("not logged: {text}"));
    assert!(
        line.contains("agent-2") && line.contains("agent-1"),
        "{line}"
    );
    assert!(line.contains("WARN"), "{line}");
    f.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_list_restricts_queries() {
    let f = start(Some(vec!["policyctl".into()])).await;
    let mut agent = f.client("agent-1").await;
    let err = agent.verify(VerifyRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut ops = f.client("policyctl").await;
    assert!(ops.verify(VerifyRequest::default()).await.is_ok());
    f.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_streams_backlog_then_new_records() {
    let f = start(None).await;
    let mut agent = f.client("agent-1").await;
    let recs = chain("agent-1", 1, None, 5);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut acks = agent
        .append(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(AppendRequest {
        records: recs[..2].to_vec(),
    })
    .await
    .unwrap();
    assert_eq!(acks.message().await.unwrap().unwrap().acked_seq, 2);

    let mut ops = f.client("policyctl").await;
    let mut tail = ops
        .tail(QueryRequest {
            agent_id: "agent-1".into(),
            ..QueryRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    for want in 1..=2 {
        assert_eq!(
            tail.message().await.unwrap().unwrap().record.unwrap().seq,
            want
        );
    }
    tx.send(AppendRequest {
        records: recs[2..].to_vec(),
    })
    .await
    .unwrap();
    assert_eq!(acks.message().await.unwrap().unwrap().acked_seq, 5);
    for want in 3..=5 {
        let next = tokio::time::timeout(Duration::from_secs(5), tail.message())
            .await
            .expect("tail delivers new records")
            .unwrap()
            .unwrap();
        assert_eq!(next.record.unwrap().seq, want);
    }
    drop(tx);
    // Shutdown ends the open tail instead of waiting for it.
    tokio::time::timeout(Duration::from_secs(5), f.server.shutdown())
        .await
        .expect("shutdown within the grace period")
        .unwrap();
}

const DOC: &str = r#"{"role_bindings": {"alice": ["admin"]}, "platform_admins": ["root"],
  "approvals": {"op-1": {"operation": "restart", "requested_by": "alice", "approved_by": "bob",
  "approver_roles": ["sre"], "expires_at": "2026-11-23T10:00:00Z"}}}"#;

fn put(json: &str, expected_version: u64) -> PutDataRequest {
    PutDataRequest {
        data_json: json.as_bytes().to_vec(),
        expected_version,
    }
}

async fn get(client: &mut JournalClient<Channel>, known_version: u64) -> DataSnapshot {
    client
        .get_data(GetDataRequest { known_version })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_data_by_a_non_writer_is_denied_and_logged() {
    // A marker only the document contains: it must never reach the log.
    let secret = "only-in-the-document-4f1c";
    let f = start_with(None, vec!["policyctl".into(), "agent-2".into()]).await;
    let mut agent = f.client("agent-1").await;
    let doc = format!(r#"{{"platform_admins": ["{secret}"]}}"#);
    let err = agent.put_data(put(&doc, 0)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("agent-1"), "{}", err.message());
    // Nothing was written.
    assert_eq!(get(&mut agent, 0).await.version, 0);
    let text = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("data write from a client not in `data_writers` rejected"))
        .unwrap_or_else(|| panic!("not logged: {text}"));
    assert!(line.contains("WARN") && line.contains("agent-1"), "{line}");
    assert!(!text.contains(secret), "the document was logged: {text}");
    // Another identity listed in `data_writers` may write.
    let mut writer = f.client("agent-2").await;
    let snap = writer.put_data(put(&doc, 0)).await.unwrap().into_inner();
    assert_eq!((snap.version, snap.updated_by.as_str()), (1, "agent-2"));
    f.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_data_by_a_writer_makes_versions_any_client_reads() {
    // `readers` restricts Query/Tail/Verify, not GetData.
    let f = start(Some(vec!["policyctl".into()])).await;
    let mut agent = f.client("agent-1").await;
    let empty = get(&mut agent, 0).await;
    assert_eq!((empty.version, empty.unchanged), (0, false));
    assert_eq!(
        empty.data_json,
        br#"{"role_bindings":{},"command_whitelists":{},"platform_admins":[],"approvals":{}}"#
    );

    let mut ops = f.client("policyctl").await;
    let snap = ops.put_data(put(DOC, 0)).await.unwrap().into_inner();
    assert_eq!(snap.version, 1);
    assert!(!snap.unchanged);
    assert_eq!(snap.updated_by, "policyctl");
    assert!(
        time::OffsetDateTime::parse(
            &snap.updated_at,
            &time::format_description::well_known::Rfc3339
        )
        .is_ok(),
        "{}",
        snap.updated_at
    );
    let normalized: serde_json::Value = serde_json::from_slice(&snap.data_json).unwrap();
    assert_eq!(normalized["command_whitelists"], serde_json::json!({}));
    assert_eq!(
        normalized["role_bindings"]["alice"],
        serde_json::json!(["admin"])
    );

    // An agent reads it, then polls with the version it holds.
    let read = get(&mut agent, 0).await;
    assert_eq!(read, snap);
    let polled = get(&mut agent, 1).await;
    assert!(polled.unchanged);
    assert!(polled.data_json.is_empty());
    assert_eq!(polled.version, 1);

    // Optimistic concurrency.
    let stale = ops.put_data(put(DOC, 7)).await.unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    assert!(
        stale.message().contains("current version is 1"),
        "{}",
        stale.message()
    );
    let next = ops.put_data(put("{}", 1)).await.unwrap().into_inner();
    assert_eq!(next.version, 2);
    let read = get(&mut agent, 1).await;
    assert_eq!((read.version, read.unchanged), (2, false));
    assert_eq!(read.data_json, empty.data_json);
    f.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_data_documents_are_invalid_argument_naming_the_path() {
    let f = start(None).await;
    let mut ops = f.client("policyctl").await;
    let approval = |field: &str, value: &str| {
        let mut fields = vec![
            ("operation", r#""restart""#),
            ("requested_by", r#""alice""#),
            ("approved_by", r#""bob""#),
            ("approver_roles", r#"["sre"]"#),
            ("expires_at", r#""2026-11-23T10:00:00Z""#),
        ];
        fields.retain(|(k, _)| *k != field);
        if !value.is_empty() {
            fields.push((field, value));
        }
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!(r#""{k}": {v}"#))
            .collect();
        format!(r#"{{"approvals": {{"op-1": {{{}}}}}}}"#, body.join(", "))
    };
    let mut too_large = DOC.as_bytes().to_vec();
    too_large.resize(policy_journal::MAX_DATA_BYTES + 1, b' ');
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "document is not JSON"),
        ("[]".into(), "document must be a JSON object, not an array"),
        (
            r#"{"admins": ["root"]}"#.into(),
            "unknown top-level key `admins`",
        ),
        (
            r#"{"role_bindings": {"alice": ["admin", 1]}}"#.into(),
            "role_bindings.alice[1] must be a string, not a number",
        ),
        (
            r#"{"role_bindings": ["alice"]}"#.into(),
            "role_bindings must be an object, not an array",
        ),
        (
            r#"{"command_whitelists": {"ops": "ls"}}"#.into(),
            "command_whitelists.ops must be an array of strings, not a string",
        ),
        (
            r#"{"platform_admins": ["root", ""]}"#.into(),
            "platform_admins[1] must not be empty",
        ),
        (
            approval("expires_at", r#""next tuesday""#),
            "approvals.op-1.expires_at must be an RFC 3339 timestamp",
        ),
        (
            approval("approved_by", ""),
            "approvals.op-1 is missing the field `approved_by`",
        ),
        (
            approval("approver_roles", r#""sre""#),
            "approvals.op-1.approver_roles must be an array of strings, not a string",
        ),
        (
            approval("requested_by", r#""""#),
            "approvals.op-1.requested_by must not be empty",
        ),
        (
            r#"{"role_bindings": {"alice": ["admin"], "alice": ["dev"]}}"#.into(),
            "role_bindings has the key `alice` twice",
        ),
        (
            String::from_utf8(too_large).unwrap(),
            "over the limit of 4194304 bytes",
        ),
    ];
    for (doc, want) in &cases {
        let err = ops.put_data(put(doc, 0)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{want}: {err:?}");
        assert!(
            err.message().contains(want),
            "want `{want}` in `{}`",
            err.message()
        );
    }
    // None of them was stored.
    assert_eq!(get(&mut ops, 0).await.version, 0);
    f.server.shutdown().await.unwrap();
}
