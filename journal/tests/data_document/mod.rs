//! The data document, on both backends (listed in the `suite!` of
//! `store_suite.rs`), and across reopening the store.

use std::collections::BTreeSet;
use std::future::Future;

use policy_journal::{Approval, DataDocument, SledStore, Store, StoreError, StoredData};

const EMPTY: &str =
    r#"{"role_bindings":{},"command_whitelists":{},"platform_admins":[],"approvals":{}}"#;

/// A document whose admins are `admins`.
fn admins(admins: &[&str]) -> DataDocument {
    DataDocument {
        platform_admins: admins.iter().map(|a| (*a).to_owned()).collect(),
        ..DataDocument::default()
    }
}

fn full() -> DataDocument {
    DataDocument::try_from_json(
        br#"{"role_bindings": {"alice": ["admin", "dev"], "bob": []},
             "command_whitelists": {"ops": ["ls", "cat /etc/hosts"]},
             "platform_admins": ["root"],
             "approvals": {"a-1": {"operation": "drop-db", "requested_by": "alice",
                 "approved_by": "bob", "approver_roles": ["dba"],
                 "expires_at": "2026-11-23T10:00:00+01:00"}}}"#,
    )
    .unwrap()
}

fn parsed(data: &StoredData) -> DataDocument {
    DataDocument::try_from_json(data.json.as_deref().unwrap().as_bytes()).unwrap()
}

pub async fn data_is_empty_at_version_0<S: Store>(store: &S) {
    for known in [0, 1, 7] {
        let data = store.get_data(known).await.unwrap();
        assert_eq!(data.version, 0);
        assert_eq!(data.json.as_deref(), Some(EMPTY), "known_version {known}");
        assert_eq!(
            (data.updated_at.as_str(), data.updated_by.as_str()),
            ("", "")
        );
    }
}

pub async fn data_put_then_get_roundtrips<S: Store>(store: &S) {
    let doc = full();
    let put = store.put_data(&doc, None, "policyctl").await.unwrap();
    assert_eq!(put.version, 1);
    assert_eq!(put.updated_by, "policyctl");
    assert!(
        time::OffsetDateTime::parse(
            &put.updated_at,
            &time::format_description::well_known::Rfc3339
        )
        .is_ok(),
        "{}",
        put.updated_at
    );
    let got = store.get_data(0).await.unwrap();
    assert_eq!(got, put);
    assert_eq!(parsed(&got), doc);
    // Stored normalized: every section, sorted keys, compact.
    let json = got.json.unwrap();
    assert!(
        json.starts_with(r#"{"role_bindings":{"alice":["admin","dev"],"bob":[]},"#),
        "{json}"
    );
    assert_eq!(
        parsed(&store.get_data(0).await.unwrap()).approvals["a-1"],
        Approval {
            operation: "drop-db".into(),
            requested_by: "alice".into(),
            approved_by: "bob".into(),
            approver_roles: vec!["dba".into()],
            expires_at: "2026-11-23T10:00:00+01:00".into(),
        }
    );
}

pub async fn data_versions_increase_by_one<S: Store>(store: &S) {
    for v in 1..=4u64 {
        let who = format!("writer-{v}");
        let put = store.put_data(&admins(&[&who]), None, &who).await.unwrap();
        assert_eq!(put.version, v);
        let got = store.get_data(0).await.unwrap();
        assert_eq!((got.version, got.updated_by.as_str()), (v, who.as_str()));
        assert_eq!(parsed(&got).platform_admins, [who]);
    }
    // Putting the same document again is still a new version.
    let again = store
        .put_data(&admins(&["writer-4"]), None, "writer-4")
        .await
        .unwrap();
    assert_eq!(again.version, 5);
}

pub async fn data_get_with_the_current_version_is_unchanged<S: Store>(store: &S) {
    // Version 0 is never "unchanged": the reader gets the empty document.
    assert!(store.get_data(0).await.unwrap().json.is_some());
    store.put_data(&admins(&["a"]), None, "w").await.unwrap();
    store.put_data(&admins(&["b"]), None, "w").await.unwrap();
    let current = store.get_data(2).await.unwrap();
    assert_eq!(current.version, 2);
    assert_eq!(current.json, None);
    assert_eq!(current.updated_by, "w");
    // An older or a newer (e.g. restored database) version gets the document.
    for known in [0, 1, 3] {
        let got = store.get_data(known).await.unwrap();
        assert_eq!(got.version, 2);
        assert_eq!(parsed(&got).platform_admins, ["b"], "known_version {known}");
    }
}

pub async fn data_put_with_a_stale_expected_version_conflicts<S: Store>(store: &S) {
    let err = store
        .put_data(&admins(&["x"]), Some(1), "w")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::VersionConflict {
                expected: 1,
                current: 0
            }
        ),
        "{err}"
    );
    assert_eq!(store.get_data(0).await.unwrap().version, 0);
    assert_eq!(
        store
            .put_data(&admins(&["a"]), Some(0), "w")
            .await
            .unwrap()
            .version,
        1
    );
    assert_eq!(
        store
            .put_data(&admins(&["b"]), Some(1), "w")
            .await
            .unwrap()
            .version,
        2
    );
    let err = store
        .put_data(&admins(&["stale"]), Some(1), "w")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::VersionConflict {
                expected: 1,
                current: 2
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("current version is 2"), "{err}");
    // The failed put changed nothing.
    let got = store.get_data(0).await.unwrap();
    assert_eq!(
        (got.version, parsed(&got).platform_admins),
        (2, vec!["b".into()])
    );
}

const TASKS: usize = 8;
const PUTS: usize = 6;

pub async fn data_concurrent_puts_get_distinct_consecutive_versions<S: Store + Clone>(store: &S) {
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for p in 0..PUTS {
                let name = format!("t{t}-p{p}");
                let put = store
                    .put_data(&admins(&[&name]), None, &name)
                    .await
                    .unwrap();
                made.push((put.version, name));
            }
            made
        }));
    }
    let mut made = Vec::new();
    for t in tasks {
        made.extend(t.await.unwrap());
    }
    made.sort();
    let versions: Vec<u64> = made.iter().map(|(v, _)| *v).collect();
    let want: Vec<u64> = (1..=(TASKS * PUTS) as u64).collect();
    assert_eq!(versions, want);
    // The current document is the one the last version's put wrote.
    let (last_version, last_name) = made.last().unwrap();
    let got = store.get_data(0).await.unwrap();
    assert_eq!(got.version, *last_version);
    assert_eq!(&got.updated_by, last_name);
    assert_eq!(parsed(&got).platform_admins, [last_name.as_str()]);
}

/// Read-modify-write with `expected_version`, retried on conflict: every
/// task's addition survives.
pub async fn data_read_modify_write_loses_no_update<S: Store + Clone>(store: &S) {
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for p in 0..PUTS {
                loop {
                    let current = store.get_data(0).await.unwrap();
                    let mut doc = parsed(&current);
                    doc.platform_admins.push(format!("t{t}-p{p}"));
                    match store.put_data(&doc, Some(current.version), "w").await {
                        Ok(put) => {
                            assert_eq!(put.version, current.version + 1);
                            break;
                        }
                        Err(StoreError::VersionConflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = store.get_data(0).await.unwrap();
    assert_eq!(got.version, (TASKS * PUTS) as u64);
    let have: BTreeSet<String> = parsed(&got).platform_admins.into_iter().collect();
    let want: BTreeSet<String> = (0..TASKS)
        .flat_map(|t| (0..PUTS).map(move |p| format!("t{t}-p{p}")))
        .collect();
    assert_eq!(have, want);
}

/// Puts through one store, then reads through a newly opened one.
async fn data_survives_reopening<S, F, Fut>(open: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let doc = full();
    let first = open().await;
    assert_eq!(first.get_data(0).await.unwrap().version, 0);
    first.put_data(&admins(&["old"]), None, "w").await.unwrap();
    let put = first.put_data(&doc, Some(1), "policyctl").await.unwrap();
    drop(first);
    let second = open().await;
    let got = second.get_data(0).await.unwrap();
    assert_eq!(got, put);
    assert_eq!(parsed(&got), doc);
    assert_eq!(second.get_data(2).await.unwrap().json, None);
    // Versions go on from where they were.
    assert_eq!(
        second
            .put_data(&admins(&[]), Some(2), "w")
            .await
            .unwrap()
            .version,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    data_survives_reopening(|| {
        let path = path.clone();
        async move {
            // sled's flusher thread lets go of the directory lock shortly
            // after the last handle is dropped.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                match SledStore::open(&path) {
                    Ok(store) => return store,
                    Err(_) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("cannot reopen {}: {e}", path.display()),
                }
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_data_survives_reopening() {
    let schema = crate::common::PgSchema::new();
    data_survives_reopening(|| schema.store()).await;
}
