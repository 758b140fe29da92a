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
use policy_proto::journal::{AppendRequest, QueryRequest, RecordEnvelope, VerifyRequest};
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
