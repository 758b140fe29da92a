//! One test suite, run against both storage backends (sled and PostgreSQL).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod data_document;

use common::{Spec, chain, decision, envelope, next};
use data_document::*;
use journal_client::{GENESIS_HASH, Verdict, record_hash};
use policy_journal::{QueryFilter, Store, query_all};
use policy_proto::journal::{QueryRequest, RecordEnvelope, StoredRecord};

/// Runs each suite function against a sled store and a PostgreSQL store.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sled_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = crate::common::sled_store();
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _schema) = crate::common::pg_store().await;
                    super::$name(&store).await;
                }
            )*
        }
    };
}

suite!(
    identical_reappend_is_ignored,
    acks_are_cumulative,
    gap_break_mismatch_and_conflict_are_flagged,
    chain_continues_across_boot_epochs,
    query_filters_and_order,
    query_pages_resume_after_the_last_key,
    verify_lists_gaps_and_breaks,
    tail_streams_each_new_record_once,
    appends_for_another_agent_are_refused,
    concurrent_appends_of_several_agents_all_commit,
    data_is_empty_at_version_0,
    data_put_then_get_roundtrips,
    data_versions_increase_by_one,
    data_get_with_the_current_version_is_unchanged,
    data_put_with_a_stale_expected_version_conflicts,
    data_concurrent_puts_get_distinct_consecutive_versions,
    data_read_modify_write_loses_no_update,
);

fn all() -> QueryFilter {
    QueryFilter::default()
}

fn flags(records: &[StoredRecord]) -> Vec<(u64, String)> {
    records
        .iter()
        .map(|r| (r.record.as_ref().unwrap().seq, r.flag.clone()))
        .collect()
}

async fn identical_reappend_is_ignored<S: Store>(store: &S) {
    let recs = chain("agent-1", 1, None, 5);
    let first = store.append("agent-1", recs.clone()).await.unwrap();
    assert_eq!((first.stored, first.duplicates, first.acked_seq), (5, 0, 5));
    let again = store.append("agent-1", recs.clone()).await.unwrap();
    assert_eq!((again.stored, again.duplicates, again.acked_seq), (0, 5, 5));
    // The same record twice in one batch is stored once.
    let r6 = next("agent-1", 1, recs.last(), &Spec::default());
    let dup = store
        .append("agent-1", vec![r6.clone(), r6.clone()])
        .await
        .unwrap();
    assert_eq!((dup.stored, dup.duplicates, dup.acked_seq), (1, 1, 6));
    let stored = query_all(store, &all()).await.unwrap();
    assert_eq!(stored.len(), 6);
    assert!(
        stored.iter().all(|r| r.flag.is_empty()),
        "{:?}",
        flags(&stored)
    );
    // Stored verbatim.
    assert_eq!(stored[0].record.as_ref().unwrap(), &recs[0]);
    assert!(!stored[0].received_at.is_empty());
}

async fn acks_are_cumulative<S: Store>(store: &S) {
    let recs = chain("agent-1", 1, None, 6);
    assert_eq!(
        store
            .append("agent-1", recs[..3].to_vec())
            .await
            .unwrap()
            .acked_seq,
        3
    );
    assert_eq!(
        store
            .append("agent-1", recs[3..].to_vec())
            .await
            .unwrap()
            .acked_seq,
        6
    );
    // An empty batch and an old re-send both answer with the head.
    assert_eq!(store.append("agent-1", vec![]).await.unwrap().acked_seq, 6);
    assert_eq!(
        store
            .append("agent-1", recs[1..4].to_vec())
            .await
            .unwrap()
            .acked_seq,
        6
    );
    // Acks are per agent.
    assert_eq!(store.append("agent-2", vec![]).await.unwrap().acked_seq, 0);
    let other = chain("agent-2", 1, None, 2);
    assert_eq!(store.append("agent-2", other).await.unwrap().acked_seq, 2);
}

async fn gap_break_mismatch_and_conflict_are_flagged<S: Store>(store: &S) {
    let a = "agent-1";
    let recs = chain(a, 1, None, 3);
    store.append(a, recs.clone()).await.unwrap();
    // seq 5: 4 is missing.
    let r4 = next(a, 1, recs.last(), &Spec::default());
    let r5 = next(a, 1, Some(&r4), &Spec::default());
    // seq 6: prev_hash is not the hash of seq 5.
    let r6 = envelope(&decision(a, 1, 6, &"ab".repeat(32), &Spec::default()));
    // seq 7: hash is not sha256(record_json).
    let mut r7 = next(a, 1, Some(&r6), &Spec::default());
    r7.hash = record_hash(b"something else");
    // seq 8: the envelope's prev_hash disagrees with the JSON.
    let mut r8 = next(a, 1, Some(&r7), &Spec::default());
    r8.prev_hash = GENESIS_HASH.into();
    // seq 2 again with other content: a conflict.
    let other = Spec {
        decision: Verdict::Deny,
        ..Spec::default()
    };
    let r2x = envelope(&decision(a, 1, 2, &recs[0].hash, &other));
    let out = store
        .append(a, vec![r5, r6, r7, r8, r2x.clone()])
        .await
        .unwrap();
    assert_eq!(
        out.flagged,
        vec![
            (5, "seq_gap"),
            (6, "chain_break"),
            (7, "hash_mismatch"),
            (8, "hash_mismatch"),
            (2, "conflict")
        ]
    );
    assert_eq!(out.acked_seq, 8);
    // Re-sending the conflicting record is a duplicate of the stored conflict.
    let again = store.append(a, vec![r2x]).await.unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 1));
    let stored = query_all(store, &all()).await.unwrap();
    let mut got = flags(&stored);
    got.sort();
    assert_eq!(
        got,
        vec![
            (1, String::new()),
            (2, String::new()),
            (2, "conflict".into()),
            (3, String::new()),
            (5, "seq_gap".into()),
            (6, "chain_break".into()),
            (7, "hash_mismatch".into()),
            (8, "hash_mismatch".into()),
        ]
    );
    // A record older than the head that is not a re-send breaks the chain.
    let rewound = envelope(&decision(a, 2, 1, GENESIS_HASH, &Spec::default()));
    let out = store.append(a, vec![rewound]).await.unwrap();
    assert_eq!(out.flagged, vec![(1, "chain_break")]);
    assert_eq!(out.acked_seq, 8);
    // Garbage JSON is stored and flagged, never dropped.
    let garbage = RecordEnvelope {
        agent_id: a.into(),
        boot_epoch: 2,
        seq: 9,
        prev_hash: "x".into(),
        hash: record_hash(b"not json"),
        record_json: b"not json".to_vec(),
    };
    let out = store.append(a, vec![garbage]).await.unwrap();
    assert_eq!(out.flagged, vec![(9, "hash_mismatch")]);
}

async fn chain_continues_across_boot_epochs<S: Store>(store: &S) {
    let a = "agent-1";
    let first = chain(a, 1, None, 3);
    let second = chain(a, 2, first.last(), 3);
    assert_eq!(second[0].seq, 4);
    store.append(a, first).await.unwrap();
    let out = store.append(a, second).await.unwrap();
    assert_eq!((out.acked_seq, out.flagged.len()), (6, 0));
    let report = store.verify(Some(a)).await.unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(
        (report[0].records, report[0].first_seq, report[0].last_seq),
        (6, 1, 6)
    );
    assert!(report[0].problems.is_empty(), "{:?}", report[0].problems);
}

async fn query_filters_and_order<S: Store>(store: &S) {
    let spec = |ts: &str, route: &str, d: Verdict, mode: &str| Spec {
        ts: ts.into(),
        route: route.into(),
        decision: d,
        mode: mode.into(),
    };
    let a_specs = [
        spec("2026-11-23T10:00:03Z", "/users", Verdict::Allow, "normal"),
        spec(
            "2026-11-23T10:00:01Z",
            "/admin",
            Verdict::Deny,
            "degraded:cache",
        ),
        spec(
            "2026-11-23T10:00:05.5Z",
            "/users",
            Verdict::Warn,
            "degraded:static",
        ),
        // Another month: another PostgreSQL partition.
        spec(
            "2026-10-31T23:59:59.999999999Z",
            "/users",
            Verdict::Allow,
            "emergency",
        ),
    ];
    let b_specs = [
        spec("2026-11-23T10:00:02Z", "/users", Verdict::Deny, "normal"),
        spec(
            "2026-11-23T10:00:04Z",
            "/admin",
            Verdict::Allow,
            "degraded:cache",
        ),
    ];
    for (agent, specs) in [("agent-a", &a_specs[..]), ("agent-b", &b_specs[..])] {
        let mut prev: Option<RecordEnvelope> = None;
        let mut batch = Vec::new();
        for s in specs {
            let e = next(agent, 1, prev.as_ref(), s);
            prev = Some(e.clone());
            batch.push(e);
        }
        store.append(agent, batch).await.unwrap();
    }
    let q = |f: QueryRequest| async move {
        let filter = QueryFilter::try_from(&f).unwrap();
        query_all(store, &filter)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let e = r.record.as_ref().unwrap();
                format!("{}:{}", &e.agent_id[6..], e.seq)
            })
            .collect::<Vec<_>>()
    };
    // Oldest first, by record timestamp.
    assert_eq!(
        q(QueryRequest::default()).await,
        ["a:4", "a:2", "b:1", "a:1", "b:2", "a:3"]
    );
    let req = |f: fn(&mut QueryRequest)| {
        let mut r = QueryRequest::default();
        f(&mut r);
        r
    };
    assert_eq!(
        q(req(|r| r.agent_id = "agent-b".into())).await,
        ["b:1", "b:2"]
    );
    assert_eq!(q(req(|r| r.route = "/admin".into())).await, ["a:2", "b:2"]);
    assert_eq!(q(req(|r| r.decision = "deny".into())).await, ["a:2", "b:1"]);
    assert_eq!(q(req(|r| r.decision = "warn".into())).await, ["a:3"]);
    assert_eq!(
        q(req(|r| r.mode = "degraded".into())).await,
        ["a:2", "b:2", "a:3"]
    );
    assert_eq!(
        q(req(|r| r.mode = "degraded:cache".into())).await,
        ["a:2", "b:2"]
    );
    assert_eq!(q(req(|r| r.mode = "emergency".into())).await, ["a:4"]);
    assert_eq!(q(req(|r| r.mode = "normal".into())).await, ["b:1", "a:1"]);
    // since inclusive, until exclusive, nanosecond exact.
    let window = req(|r| {
        r.since = "2026-11-23T10:00:02Z".into();
        r.until = "2026-11-23T10:00:05.5Z".into();
    });
    assert_eq!(q(window).await, ["b:1", "a:1", "b:2"]);
    let nov = req(|r| r.since = "2026-11-01T00:00:00Z".into());
    assert_eq!(q(nov).await.len(), 5);
    let oct = req(|r| r.until = "2026-11-01T00:00:00Z".into());
    assert_eq!(q(oct).await, ["a:4"]);
    let limited = req(|r| {
        r.limit = 2;
        r.route = "/users".into();
    });
    assert_eq!(q(limited).await, ["a:4", "b:1"]);
    let combined = req(|r| {
        r.agent_id = "agent-a".into();
        r.route = "/users".into();
        r.mode = "degraded".into();
    });
    assert_eq!(q(combined).await, ["a:3"]);
}

async fn query_pages_resume_after_the_last_key<S: Store>(store: &S) {
    // Same timestamp for all: order falls back to (agent_id, seq).
    store.append("b", chain("b", 1, None, 3)).await.unwrap();
    store.append("a", chain("a", 1, None, 4)).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = store.query_page(&all(), after.as_ref(), 3).await.unwrap();
        pages += 1;
        for r in &page.records {
            let e = r.record.as_ref().unwrap();
            seen.push(format!("{}{}", e.agent_id, e.seq));
        }
        match page.next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    assert_eq!(seen, ["a1", "a2", "a3", "a4", "b1", "b2", "b3"]);
    assert!(pages >= 3);
}

async fn verify_lists_gaps_and_breaks<S: Store>(store: &S) {
    let good = chain("good", 1, None, 4);
    store.append("good", good).await.unwrap();
    let bad = chain("bad", 1, None, 10);
    // 4..=6 never arrive; 9 is broken.
    let mut r9 = decision("bad", 1, 9, &"cd".repeat(32), &Spec::default());
    r9.seq = 9;
    let r9 = envelope(&r9);
    let mut batch: Vec<RecordEnvelope> = bad[..3].to_vec();
    batch.extend_from_slice(&bad[6..8]);
    batch.push(r9);
    store.append("bad", batch).await.unwrap();
    let report = store.verify(None).await.unwrap();
    assert_eq!(report.len(), 2);
    let bad_r = report.iter().find(|c| c.agent_id == "bad").unwrap();
    assert_eq!((bad_r.records, bad_r.first_seq, bad_r.last_seq), (6, 1, 9));
    let text = bad_r.problems.join("\n");
    assert!(text.contains("seq 4..=6 missing"), "{text}");
    assert!(text.contains("seq 9: chain break"), "{text}");
    assert_eq!(bad_r.problems.len(), 2, "{text}");
    let good_r = report.iter().find(|c| c.agent_id == "good").unwrap();
    assert_eq!(
        (good_r.records, good_r.first_seq, good_r.last_seq),
        (4, 1, 4)
    );
    assert!(good_r.problems.is_empty());
    // One agent only; an unknown agent has no records.
    assert_eq!(store.verify(Some("good")).await.unwrap().len(), 1);
    assert_eq!(store.verify(Some("nobody")).await.unwrap()[0].records, 0);
}

async fn tail_streams_each_new_record_once<S: Store>(store: &S) {
    let recs = chain("agent-1", 1, None, 6);
    store.append("agent-1", recs[..2].to_vec()).await.unwrap();
    let commits = store.commits();
    let mut cursor = store.tail_cursor().await.unwrap();
    // Committed between cursor and backlog: in the backlog, not repeated.
    store.append("agent-1", recs[2..3].to_vec()).await.unwrap();
    assert!(commits.has_changed().unwrap());
    let page = store.query_page(&all(), None, 100).await.unwrap();
    assert_eq!(page.records.len(), 3);
    cursor.note(&page);
    store.append("agent-1", recs[3..5].to_vec()).await.unwrap();
    store
        .append("other", chain("other", 1, None, 1))
        .await
        .unwrap();
    let only_agent = QueryFilter {
        agent_id: Some("agent-1".into()),
        ..all()
    };
    let new = store.tail_next(&only_agent, &mut cursor).await.unwrap();
    let seqs: Vec<u64> = new.iter().map(|r| r.record.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, [4, 5]);
    assert!(
        store
            .tail_next(&only_agent, &mut cursor)
            .await
            .unwrap()
            .is_empty()
    );
    store.append("agent-1", recs[5..].to_vec()).await.unwrap();
    let new = store.tail_next(&only_agent, &mut cursor).await.unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].record.as_ref().unwrap().seq, 6);
}

async fn appends_for_another_agent_are_refused<S: Store>(store: &S) {
    let recs = chain("agent-1", 1, None, 2);
    let err = store.append("agent-2", recs).await.unwrap_err();
    assert!(err.to_string().contains("agent-1"), "{err}");
    assert_eq!(store.append("agent-2", vec![]).await.unwrap().acked_seq, 0);
    assert!(query_all(store, &all()).await.unwrap().is_empty());
}

/// Regression: sled 0.34's `flush_async` can deadlock when several are in
/// flight at once (spacejam/sled#1308), which hung concurrent appends.
async fn concurrent_appends_of_several_agents_all_commit<S: Store + Clone>(store: &S) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let agent = format!("agent-{i}");
            let recs = chain(&agent, 1, None, 20);
            let mut acked = 0;
            for batch in recs.chunks(2) {
                acked = store
                    .append(&agent, batch.to_vec())
                    .await
                    .unwrap()
                    .acked_seq;
            }
            acked
        }));
    }
    let finished = async {
        for t in tasks {
            assert_eq!(t.await.unwrap(), 20);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), finished)
        .await
        .expect("concurrent appends finish (no flush deadlock)");
    assert_eq!(query_all(store, &all()).await.unwrap().len(), 160);
}
