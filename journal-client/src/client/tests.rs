#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tempfile::TempDir;

use super::test_server::{self, Store};
use super::*;
use crate::config::{ClientConfig, LocalLogConfig};
use crate::devcerts;
use crate::outbox::tests::{assert_chain, sample_record};
use crate::outbox::{LocalLog, SledLog};

const AGENT: &str = "agent-1";

struct Fixture {
    dir: TempDir,
    log: Arc<SledLog>,
    store: Arc<Mutex<Store>>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        devcerts::write_dev_set(&dir.path().join("certs"), &[], &[AGENT]).unwrap();
        let log = SledLog::open(LocalLogConfig::new(dir.path().join("log"), AGENT)).unwrap();
        Self {
            dir,
            log: Arc::new(log),
            store: Arc::default(),
        }
    }

    fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    fn config(&self, addr: SocketAddr) -> ClientConfig {
        config_with(&self.certs(), addr)
    }

    async fn serve(&self, addr: SocketAddr) -> test_server::Running {
        test_server::start(&self.certs(), Arc::clone(&self.store), addr).await
    }

    fn spawn(&self, cfg: ClientConfig) -> JournalClientHandle {
        cfg.validate().unwrap();
        JournalClient::spawn(cfg, self.log.clone())
    }

    fn append(&self, client: &JournalClientHandle, n: u64) {
        for i in 0..n {
            self.log.append(sample_record(i)).unwrap();
            client.notify();
        }
    }

    /// The journal holds exactly 1..=n, each once, chained, and the local
    /// log has deleted them all.
    fn assert_delivered(&self, n: u64) {
        let store = self.store.lock();
        assert_eq!(store.problems, Vec::<String>::new());
        assert_eq!(store.seqs(), (1..=n).collect::<Vec<_>>());
        assert_chain(&store.records, 1, Some(crate::GENESIS_HASH));
        let s = self.log.stats();
        assert_eq!((s.acked_seq, s.pending_records), (n, 0));
    }
}

fn config_with(certs: &Path, addr: SocketAddr) -> ClientConfig {
    let paths = devcerts::client_paths(certs, AGENT);
    let mut cfg = ClientConfig::new(
        format!("https://127.0.0.1:{}", addr.port()),
        paths.ca,
        paths.cert,
        paths.key,
    );
    cfg.backoff_initial = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(200);
    cfg.poll_interval = Duration::from_millis(50);
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.batch_max = 64;
    cfg
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A port nothing listens on (yet).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_in_order_exactly_once_and_are_deleted_after_ack() {
    let f = Fixture::new();
    let server = f.serve(any_port()).await;
    let client = f.spawn(f.config(server.addr));
    let mut state = client.subscribe();
    state.wait_for(Connectivity::is_connected).await.unwrap();
    f.append(&client, 1000);
    eventually("all records acked", || f.log.stats().acked_seq == 1000).await;
    f.assert_delivered(1000);
    assert_eq!(f.store.lock().duplicates, 0);
    let c = client.counters();
    assert_eq!(
        (c.records_sent, c.records_acked, c.connects),
        (1000, 1000, 1)
    );
    assert!(c.batches_sent >= 1000 / 64);
    assert!(client.state().is_connected());
    let stats = client.shutdown().await;
    assert_eq!(stats.pending_records, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_at_start_then_drains_in_order_when_the_journal_comes_up() {
    let f = Fixture::new();
    let addr = free_port();
    let mut cfg = f.config(addr);
    cfg.server_name = Some("localhost".into());
    let client = f.spawn(cfg);
    eventually("a failed attempt", || client.counters().reconnects >= 1).await;
    assert!(matches!(
        client.state(),
        Connectivity::Partitioned { last_ack: None, .. }
    ));
    assert!(client.last_error().is_some());
    f.append(&client, 500);
    let s = f.log.stats();
    assert_eq!((s.last_seq, s.pending_records), (500, 500));

    let server = f.serve(addr).await;
    eventually("drained", || f.log.stats().acked_seq == 500).await;
    f.assert_delivered(500);
    assert!(client.state().is_connected());
    client.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_dropped_mid_stream_reconnects_and_replays_without_gaps() {
    let f = Fixture::new();
    // Acks lag: some batches are stored but unacknowledged when it dies.
    f.store.lock().ack_every = 3;
    let server = f.serve(any_port()).await;
    let addr = server.addr;
    let client = Arc::new(f.spawn(f.config(addr)));
    const N: u64 = 3000;
    let writer = {
        let log = Arc::clone(&f.log);
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            for i in 0..N {
                log.append(sample_record(i)).unwrap();
                client.notify();
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    eventually("first records stored", || {
        f.store.lock().records.len() >= 300
    })
    .await;
    server.stop().await;
    let mut state = client.subscribe();
    state.wait_for(|s| !s.is_connected()).await.unwrap();
    let stored_at_drop = f.store.lock().records.len() as u64;
    assert!(
        f.log.stats().acked_seq <= stored_at_drop,
        "nothing acked that the journal does not hold"
    );

    // The new journal acks every batch (the last batches would otherwise
    // wait for the ack timeout).
    f.store.lock().ack_every = 1;
    let server = f.serve(addr).await;
    writer.await.unwrap();
    eventually("all acked", || f.log.stats().acked_seq == N).await;
    f.assert_delivered(N);
    let c = client.counters();
    eprintln!(
        "stored at drop {stored_at_drop}, duplicates {}, {c:?}",
        f.store.lock().duplicates
    );
    assert!(c.reconnects >= 1 && c.connects >= 2, "{c:?}");
    assert!(matches!(client.state(), Connectivity::Connected { .. }));
    Arc::into_inner(client).unwrap().shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_signed_by_another_ca_is_never_trusted() {
    let f = Fixture::new();
    let server = f.serve(any_port()).await;
    let other = f.dir.path().join("other-certs");
    devcerts::write_dev_set(&other, &[], &[AGENT]).unwrap();
    let client = f.spawn(config_with(&other, server.addr));
    f.append(&client, 10);
    eventually("several failed attempts", || {
        client.counters().reconnects >= 3
    })
    .await;
    assert!(!client.state().is_connected());
    assert_eq!(client.counters().connects, 0);
    assert!(f.store.lock().records.is_empty());
    assert_eq!(f.log.stats().pending_records, 10);
    let err = client.last_error().unwrap();
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
    client.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_acks_is_abandoned_after_the_ack_timeout() {
    let f = Fixture::new();
    // Acks only every 4th batch: the tail of the log is never acknowledged
    // on one stream, so the client must give up on it and resend.
    f.store.lock().ack_every = 4;
    let server = f.serve(any_port()).await;
    let mut cfg = f.config(server.addr);
    cfg.ack_timeout = Duration::from_millis(300);
    for i in 0..130 {
        f.log.append(sample_record(i)).unwrap();
    }
    f.log.wait_synced(130, Duration::from_secs(5)).unwrap();
    let client = f.spawn(cfg); // sends 3 batches: 64, 64, 2
    eventually("all acked", || f.log.stats().acked_seq == 130).await;
    f.assert_delivered(130);
    assert!(client.counters().connects >= 2);
    let err = client.last_error().unwrap();
    assert!(err.contains("no acknowledgement"), "{err}");
    client.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ships_what_is_left_within_the_grace_period() {
    let f = Fixture::new();
    let server = f.serve(any_port()).await;
    let mut cfg = f.config(server.addr);
    cfg.poll_interval = Duration::from_secs(3600); // only notify or shutdown ship
    let client = f.spawn(cfg);
    client
        .subscribe()
        .wait_for(Connectivity::is_connected)
        .await
        .unwrap();
    for i in 0..200 {
        f.log.append(sample_record(i)).unwrap(); // no notify
    }
    let stats = client.shutdown().await;
    assert_eq!(stats.pending_records, 0);
    f.assert_delivered(200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_is_jittered_and_bounded() {
    let f = Fixture::new();
    let cfg = f.config(any_port());
    for attempt in 0..40 {
        let d = session_backoff(&cfg, attempt);
        let exp = cfg
            .backoff_initial
            .saturating_mul(1 << attempt.min(20))
            .min(cfg.backoff_max);
        assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
    }
}

fn session_backoff(cfg: &ClientConfig, attempt: u32) -> Duration {
    session::backoff(cfg, attempt)
}

/// `cargo test -p journal-client --release --lib -- --ignored --nocapture replay_rate`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn replay_rate() {
    let f = Fixture::new();
    let addr = free_port();
    let mut cfg = f.config(addr);
    cfg.batch_max = 256; // the default (the fixture uses 64)
    let client = f.spawn(cfg);
    const N: u64 = 50_000;
    for i in 0..N {
        f.log.append(sample_record(i)).unwrap();
    }
    f.log.wait_synced(N, Duration::from_secs(30)).unwrap();
    let server = f.serve(addr).await;
    let mut state = client.subscribe();
    let since = match *state.wait_for(Connectivity::is_connected).await.unwrap() {
        Connectivity::Connected { since } => since,
        Connectivity::Partitioned { .. } => unreachable!(),
    };
    eventually("drained", || f.log.stats().acked_seq == N).await;
    let secs = since.elapsed().as_secs_f64();
    eprintln!(
        "replayed {N} records in {secs:.2} s from connect: {:.0} records/s",
        N as f64 / secs
    );
    f.assert_delivered(N);
    client.shutdown().await;
    server.stop().await;
}
