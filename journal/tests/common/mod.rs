//! Shared test helpers: records and chains, a sled store in a temp dir, a
//! PostgreSQL store in a fresh schema (dropped afterwards).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use journal_client::{DecisionRecord, GENESIS_HASH, RequestSummary, Verdict, record_hash};
use policy_journal::{PgOptions, PgStore, SledStore};
use policy_proto::journal::RecordEnvelope;

/// The env var naming the test database.
pub const PG_ENV: &str = "POLICY_ENGINE_TEST_PG";

/// What varies between test records.
#[derive(Debug, Clone)]
pub struct Spec {
    pub ts: String,
    pub route: String,
    pub decision: Verdict,
    pub mode: String,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            ts: "2026-11-23T10:00:00.000000000Z".into(),
            route: "/api/v1/users".into(),
            decision: Verdict::Allow,
            mode: "normal".into(),
        }
    }
}

/// A decision record.
pub fn decision(agent: &str, epoch: u64, seq: u64, prev: &str, spec: &Spec) -> DecisionRecord {
    DecisionRecord {
        decision_id: format!("0190b6c4-0000-7000-8000-{seq:012}"),
        agent_id: agent.into(),
        boot_epoch: epoch,
        seq,
        timestamp: spec.ts.clone(),
        request_id: format!("req-{seq}"),
        route: spec.route.clone(),
        phase: "request".into(),
        request: RequestSummary {
            method: "GET".into(),
            path: "/api/v1/users/42".into(),
            authority: "example.test".into(),
            client_ip: "10.0.0.9".into(),
            headers: [("authorization".to_owned(), "***".to_owned())].into(),
            response_status: None,
        },
        principal: Some("alice".into()),
        policies: vec![],
        decision: spec.decision,
        http_status: (spec.decision == Verdict::Deny).then_some(403),
        reason: String::new(),
        decided_by: None,
        enforcement: "enforce".into(),
        environment: "dev".into(),
        bundle_revision: "rev-1".into(),
        config_version: "1".into(),
        mode: spec.mode.clone(),
        audit: false,
        duration_us: 42,
        builtins: vec![],
        prev_hash: prev.into(),
    }
}

/// The envelope of a record, as the agent sends it.
pub fn envelope(r: &DecisionRecord) -> RecordEnvelope {
    let json = r.to_json().unwrap();
    RecordEnvelope {
        agent_id: r.agent_id.clone(),
        boot_epoch: r.boot_epoch,
        seq: r.seq,
        prev_hash: r.prev_hash.clone(),
        hash: record_hash(&json),
        record_json: json,
    }
}

/// A record of `agent` continuing after `prev` (an envelope or genesis).
pub fn next(agent: &str, epoch: u64, prev: Option<&RecordEnvelope>, spec: &Spec) -> RecordEnvelope {
    let (seq, prev_hash) = match prev {
        Some(p) => (p.seq + 1, p.hash.clone()),
        None => (1, GENESIS_HASH.to_owned()),
    };
    envelope(&decision(agent, epoch, seq, &prev_hash, spec))
}

/// A well-chained run of `n` records of `agent` starting after `prev`.
pub fn chain(
    agent: &str,
    epoch: u64,
    prev: Option<&RecordEnvelope>,
    n: usize,
) -> Vec<RecordEnvelope> {
    let mut out: Vec<RecordEnvelope> = Vec::with_capacity(n);
    for _ in 0..n {
        let p = out.last().or(prev);
        let e = next(agent, epoch, p, &Spec::default());
        out.push(e);
    }
    out
}

/// A sled store in a temp dir (kept alive by the returned guard).
pub fn sled_store() -> (SledStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("journal")).unwrap();
    (store, dir)
}

/// The database `journal/tests/pg-setup.sh` creates, used when
/// `POLICY_ENGINE_TEST_PG` is not set.
pub const PG_DEFAULT: &str =
    "host=127.0.0.1 port=5432 user=policy_engine password=policy_engine dbname=policy_engine_test";

/// The connection string of the test database: `POLICY_ENGINE_TEST_PG`, else
/// the one `journal/tests/pg-setup.sh` creates (a test fails loudly with the
/// setup hint when it cannot connect).
pub fn pg_url() -> String {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => PG_DEFAULT.to_owned(),
    }
}

/// A fresh schema in the test database, dropped when this guard is dropped.
pub struct PgSchema {
    pub url: String,
    pub name: String,
}

impl PgSchema {
    pub fn new() -> Self {
        let url = pg_url();
        let name = format!("schema_{:016x}", fastrand::u64(..));
        Self { url, name }
    }

    pub fn options(&self) -> PgOptions {
        PgOptions {
            url: self.url.clone(),
            schema: Some(self.name.clone()),
            pool_size: 4,
        }
    }

    pub async fn store(&self) -> PgStore {
        match PgStore::connect(&self.options()).await {
            Ok(s) => s,
            Err(e) => panic!(
                "cannot use PostgreSQL at {PG_ENV}=`{}`: {e}. Start it with \
                 `journal/tests/pg-setup.sh` (installs postgresql if missing, runs \
                 `pg_ctlcluster 15 main start`, creates the database)",
                self.url
            ),
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // A runtime of its own: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    let task = tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                        .await;
                    drop(client);
                    let _ = task.await;
                }
            });
        })
        .join();
    }
}

/// A PostgreSQL store in a fresh schema.
pub async fn pg_store() -> (PgStore, PgSchema) {
    let schema = PgSchema::new();
    let store = schema.store().await;
    (store, schema)
}
