//! Append throughput with durable commits, one agent, batches of `BATCH`.
//!
//! ```text
//! cargo run --release -p policy-journal --example append_throughput -- sled 20000 256
//! POLICY_ENGINE_TEST_PG=... cargo run --release -p policy-journal --example append_throughput -- postgres 20000 256 [agents]
//! ```
//!
//! With `agents` > 1 the agents append concurrently (one task each).

use std::time::Instant;

use journal_client::{DecisionRecord, GENESIS_HASH, RequestSummary, Verdict, record_hash};
use policy_journal::{PgOptions, PgStore, SledStore, Store};
use policy_proto::journal::RecordEnvelope;

fn records(agent: &str, n: u64) -> anyhow::Result<Vec<RecordEnvelope>> {
    let mut prev = GENESIS_HASH.to_owned();
    let mut out = Vec::new();
    for seq in 1..=n {
        let r = DecisionRecord {
            decision_id: format!("0190b6c4-0000-7000-8000-{seq:012}"),
            agent_id: agent.into(),
            boot_epoch: 1,
            seq,
            timestamp: "2026-11-23T10:00:00.000000000Z".into(),
            request_id: format!("req-{seq}"),
            route: "/api/v1/users".into(),
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
            decision: Verdict::Allow,
            http_status: None,
            reason: String::new(),
            decided_by: None,
            enforcement: "enforce".into(),
            environment: "dev".into(),
            bundle_revision: "rev-1".into(),
            config_version: "1".into(),
            mode: "normal".into(),
            audit: false,
            duration_us: 42,
            builtins: vec![],
            prev_hash: prev.clone(),
        };
        let json = r.to_json()?;
        let hash = record_hash(&json);
        out.push(RecordEnvelope {
            agent_id: agent.into(),
            boot_epoch: 1,
            seq,
            prev_hash: prev,
            hash: hash.clone(),
            record_json: json,
        });
        prev = hash;
    }
    Ok(out)
}

async fn run<S: Store + Clone>(
    store: S,
    n: u64,
    batch: usize,
    agents: usize,
) -> anyhow::Result<()> {
    let mut work = Vec::new();
    for a in 0..agents {
        work.push((format!("bench-{a}"), records(&format!("bench-{a}"), n)?));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (agent, recs) in work {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for chunk in recs.chunks(batch) {
                store.append(&agent, chunk.to_vec()).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = n as f64 * agents as f64;
    println!(
        "{total} records, batch {batch}, {agents} agent(s): {secs:.2} s, {:.0} records/s",
        total / secs
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map(String::as_str).unwrap_or("sled");
    let n: u64 = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let batch: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let agents: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(1);
    match backend {
        "sled" => {
            let dir = tempfile::tempdir()?;
            run(SledStore::open(dir.path())?, n, batch, agents).await
        }
        "postgres" => {
            let url = std::env::var("POLICY_ENGINE_TEST_PG")?;
            let schema = format!("bench_{}", std::process::id());
            let store = PgStore::connect(&PgOptions {
                url: url.clone(),
                schema: Some(schema.clone()),
                pool_size: agents.max(1),
            })
            .await?;
            let res = run(store, n, batch, agents).await;
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await?;
            res
        }
        other => anyhow::bail!("unknown backend `{other}`: sled or postgres"),
    }
}
