//! The data document in PostgreSQL: the one row of `journal_data`, replaced
//! in a transaction that holds its row lock, so that journal servers
//! sharing the database make each version exactly once.

use tokio_postgres::Client;

use super::super::{StoreError, StoredData, now_rfc3339};
use crate::data::DataDocument;

pub(super) async fn get(conn: &Client, known_version: u64) -> Result<StoredData, StoreError> {
    // The body is only sent when the reader does not hold this version
    // (agents poll with the version they hold).
    let known = i64::try_from(known_version).unwrap_or(-1);
    let row = conn
        .query_opt(
            "SELECT version, CASE WHEN version > 0 AND version = $1 THEN NULL ELSE body::text END, \
             updated_at, updated_by FROM journal_data WHERE id = 1",
            &[&known],
        )
        .await?;
    Ok(match row {
        None => StoredData::never_put(),
        Some(r) => {
            let version = r.get::<_, i64>(0) as u64;
            if version == 0 {
                StoredData::never_put()
            } else {
                StoredData {
                    version,
                    json: r.get(1),
                    updated_at: r.get(2),
                    updated_by: r.get(3),
                }
            }
        }
    })
}

pub(super) async fn put(
    conn: &mut Client,
    json: &str,
    expected_version: Option<u64>,
    updated_by: &str,
) -> Result<StoredData, StoreError> {
    let tx = conn.transaction().await?;
    tx.execute(
        "INSERT INTO journal_data (id, version, body, updated_at, updated_by) \
         VALUES (1, 0, ($1::text)::json, '', '') ON CONFLICT (id) DO NOTHING",
        &[&DataDocument::default().to_json()],
    )
    .await?;
    // INVARIANT: this row lock serialises every put, on every server sharing
    // the database, until commit; the version read under it is current.
    let current = tx
        .query_one(
            "SELECT version FROM journal_data WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await?
        .get::<_, i64>(0) as u64;
    if let Some(expected) = expected_version
        && expected != current
    {
        tx.rollback().await?;
        return Err(StoreError::VersionConflict { expected, current });
    }
    let stored = StoredData {
        version: current + 1,
        json: Some(json.to_owned()),
        updated_at: now_rfc3339(),
        updated_by: updated_by.to_owned(),
    };
    tx.execute(
        "UPDATE journal_data SET version = $1, body = ($2::text)::json, updated_at = $3, \
         updated_by = $4 WHERE id = 1",
        &[
            &(stored.version as i64),
            &json,
            &stored.updated_at,
            &stored.updated_by,
        ],
    )
    .await?;
    // INVARIANT: answered only after the commit returned.
    tx.commit().await?;
    Ok(stored)
}
