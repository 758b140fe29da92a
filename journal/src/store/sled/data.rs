//! The data document in sled: one key in the `journal_data` tree holding a
//! [`DataRow`], replaced by compare-and-swap so that concurrent puts each
//! make their own version.

use super::super::{StoreError, StoredData, now_rfc3339};

/// The tree, apart from the records' one.
pub(super) const TREE: &str = "journal_data";

/// The one key.
const KEY: &[u8] = b"document";

#[derive(Clone, PartialEq, prost::Message)]
struct DataRow {
    #[prost(uint64, tag = "1")]
    version: u64,
    #[prost(string, tag = "2")]
    json: String,
    #[prost(string, tag = "3")]
    updated_at: String,
    #[prost(string, tag = "4")]
    updated_by: String,
}

impl DataRow {
    fn into_stored(self, known_version: u64) -> StoredData {
        let known = StoredData::is_known(known_version, self.version);
        StoredData {
            version: self.version,
            json: (!known).then_some(self.json),
            updated_at: self.updated_at,
            updated_by: self.updated_by,
        }
    }
}

pub(super) fn get(tree: &sled::Tree, known_version: u64) -> Result<StoredData, StoreError> {
    match tree.get(KEY)? {
        None => Ok(StoredData::never_put()),
        Some(bytes) => Ok(decode(&bytes)?.into_stored(known_version)),
    }
}

/// Writes the next version (not yet flushed).
pub(super) fn put(
    tree: &sled::Tree,
    json: String,
    expected_version: Option<u64>,
    updated_by: String,
) -> Result<StoredData, StoreError> {
    loop {
        let old = tree.get(KEY)?;
        let current = match &old {
            Some(bytes) => decode(bytes)?.version,
            None => 0,
        };
        if let Some(expected) = expected_version
            && expected != current
        {
            return Err(StoreError::VersionConflict { expected, current });
        }
        let row = DataRow {
            version: current + 1,
            json: json.clone(),
            updated_at: now_rfc3339(),
            updated_by: updated_by.clone(),
        };
        let new = prost::Message::encode_to_vec(&row);
        // INVARIANT: the swap succeeds only if no other put came in since
        // `old` was read, so every version is made exactly once.
        if tree.compare_and_swap(KEY, old, Some(new))?.is_ok() {
            return Ok(row.into_stored(0));
        }
    }
}

fn decode(bytes: &[u8]) -> Result<DataRow, StoreError> {
    prost::Message::decode(bytes).map_err(|e: prost::DecodeError| StoreError::Corrupt {
        key: format!("{TREE}/document"),
        reason: e.to_string(),
    })
}
