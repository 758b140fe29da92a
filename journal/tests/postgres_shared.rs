//! Several journal servers (stores) sharing one PostgreSQL database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{PgSchema, chain};
use policy_journal::{DataDocument, QueryFilter, Store, StoreError, query_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_append_for_different_agents_concurrently() {
    let schema = PgSchema::new();
    let (s1, s2) = (schema.store().await, schema.store().await);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 { s1.clone() } else { s2.clone() };
        tasks.push(tokio::spawn(async move {
            let agent = format!("agent-{i}");
            let recs = chain(&agent, 1, None, 40);
            let mut acked = 0;
            for batch in recs.chunks(8) {
                acked = store
                    .append(&agent, batch.to_vec())
                    .await
                    .unwrap()
                    .acked_seq;
            }
            acked
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 40);
    }
    let report = s2.verify(None).await.unwrap();
    assert_eq!(report.len(), 6);
    for c in &report {
        assert_eq!(
            (c.records, c.first_seq, c.last_seq),
            (40, 1, 40),
            "{}",
            c.agent_id
        );
        assert!(c.problems.is_empty(), "{}: {:?}", c.agent_id, c.problems);
    }
    assert_eq!(
        query_all(&s1, &QueryFilter::default()).await.unwrap().len(),
        240
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_moving_between_servers_keeps_one_chain() {
    let schema = PgSchema::new();
    let (s1, s2) = (schema.store().await, schema.store().await);
    let recs = chain("agent-1", 1, None, 30);
    assert_eq!(
        s1.append("agent-1", recs[..10].to_vec())
            .await
            .unwrap()
            .acked_seq,
        10
    );
    // The agent reconnects to another server and re-sends from an older ack.
    let out = s2.append("agent-1", recs[5..20].to_vec()).await.unwrap();
    assert_eq!((out.acked_seq, out.duplicates, out.stored), (20, 5, 10));
    assert!(out.flagged.is_empty(), "{:?}", out.flagged);
    let out = s1.append("agent-1", recs[20..].to_vec()).await.unwrap();
    assert_eq!((out.acked_seq, out.flagged.len()), (30, 0));
    let report = s1.verify(Some("agent-1")).await.unwrap();
    assert_eq!((report[0].records, report[0].last_seq), (30, 30));
    assert!(report[0].problems.is_empty(), "{:?}", report[0].problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_on_two_servers_at_once_is_stored_once() {
    let schema = PgSchema::new();
    let (s1, s2) = (schema.store().await, schema.store().await);
    let recs = chain("agent-1", 1, None, 50);
    for batch in recs.chunks(10) {
        let (a, b) = tokio::join!(
            s1.append("agent-1", batch.to_vec()),
            s2.append("agent-1", batch.to_vec())
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.stored + b.stored, 10);
        assert_eq!(a.duplicates + b.duplicates, 10);
        assert!(a.flagged.is_empty() && b.flagged.is_empty());
    }
    let all = query_all(&s2, &QueryFilter::default()).await.unwrap();
    assert_eq!(all.len(), 50);
    assert!(all.iter().all(|r| r.flag.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_sees_commits_of_another_server() {
    let schema = PgSchema::new();
    let (s1, s2) = (schema.store().await, schema.store().await);
    let recs = chain("agent-1", 1, None, 4);
    s1.append("agent-1", recs[..1].to_vec()).await.unwrap();
    let mut cursor = s2.tail_cursor().await.unwrap();
    let page = s2
        .query_page(&QueryFilter::default(), None, 10)
        .await
        .unwrap();
    cursor.note(&page);
    assert_eq!(page.records.len(), 1);
    s1.append("agent-1", recs[1..].to_vec()).await.unwrap();
    let new = s2
        .tail_next(&QueryFilter::default(), &mut cursor)
        .await
        .unwrap();
    assert_eq!(new.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_putting_data_at_once_make_each_version_once() {
    let schema = PgSchema::new();
    let (s1, s2) = (schema.store().await, schema.store().await);
    let doc = |name: String| DataDocument {
        platform_admins: vec![name],
        ..DataDocument::default()
    };
    let mut current = 0;
    for round in 1..=10 {
        // Both expect the current version: exactly one wins.
        let (d1, d2) = (doc(format!("s1-{round}")), doc(format!("s2-{round}")));
        let (a, b) = tokio::join!(
            s1.put_data(&d1, Some(current), "s1"),
            s2.put_data(&d2, Some(current), "s2")
        );
        let (won, lost) = match (a, b) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            other => panic!("round {round}: exactly one put must win: {other:?}"),
        };
        assert_eq!(won.version, current + 1);
        assert!(matches!(lost, StoreError::VersionConflict { .. }), "{lost}");
        // Both without a condition: two distinct versions, none lost.
        let (a, b) = tokio::join!(s1.put_data(&d1, None, "s1"), s2.put_data(&d2, None, "s2"));
        let mut versions = [a.unwrap().version, b.unwrap().version];
        versions.sort();
        assert_eq!(versions, [current + 2, current + 3]);
        current = s2.get_data(0).await.unwrap().version;
        assert_eq!(current, versions[1]);
        assert_eq!(s1.get_data(0).await.unwrap().version, current);
    }
}

#[test]
fn a_missing_database_fails_with_the_setup_hint() {
    let result = std::panic::catch_unwind(|| {
        let schema = PgSchema {
            url: "host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=2".into(),
            name: "schema_unused".into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(schema.store())
    });
    let err = result.err().expect("connecting to port 1 must fail");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("POLICY_ENGINE_TEST_PG") && msg.contains("pg-setup.sh"),
        "{msg}"
    );
}
