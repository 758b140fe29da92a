//! The embedded backend: one sled tree with prefixed keys, written with one
//! atomic batch per append and flushed before the append returns.
//!
//! Keys (`rkey` = agent_id, 0x00, seq, boot_epoch, variant; integers big
//! endian, so byte order is (seq, boot_epoch, variant) order per agent):
//! - `r` rkey → [`Row`] (the stored record and its query fields)
//! - `t` ts(8, sign-flipped) rkey → () — the time index, query order
//! - `l` commit id(8) → rkey — commit order, for `Tail`
//! - `h` agent_id → [`HeadRow`] — the chain head
//!
//! One process owns a sled directory, so appends are serialised by a mutex;
//! sled's batch makes each append atomic across the key spaces. The data
//! document lives in a tree of its own ([`data`]).

mod data;

use std::path::Path;
use std::sync::{Arc, Mutex};

use policy_proto::journal::{AgentChain, RecordEnvelope, StoredRecord};
use tokio::sync::watch;

use super::filter::{OrderKey, QueryFilter, RecordMeta, now_ns};
use super::plan::plan_batch;
use super::{
    AppendOutcome, Page, Store, StoreError, StoredData, TailCursor, now_rfc3339, warn_flagged,
};
use crate::chain::{ChainWalk, Head};
use crate::data::DataDocument;

/// A stored record with the fields queries need.
#[derive(Clone, PartialEq, prost::Message)]
struct Row {
    #[prost(message, optional, tag = "1")]
    stored: Option<StoredRecord>,
    #[prost(int64, tag = "2")]
    ts_ns: i64,
    #[prost(string, tag = "3")]
    route: String,
    #[prost(string, tag = "4")]
    decision: String,
    #[prost(string, tag = "5")]
    mode: String,
    #[prost(uint32, tag = "6")]
    variant: u32,
    /// Commit counter: the order `Tail` streams in.
    #[prost(uint64, tag = "7")]
    commit: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HeadRow {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(string, tag = "2")]
    hash: String,
}

/// The sled backend. Cheap to clone.
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    tree: sled::Tree,
    /// The data document ([`data`]).
    data: sled::Tree,
    /// Serialises appends; holds the last commit id.
    append: Mutex<u64>,
    commits: watch::Sender<u64>,
}

impl SledStore {
    /// Opens (or creates) the database in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let tree = db.open_tree("journal")?;
        let data = db.open_tree(data::TREE)?;
        let last = match tree.scan_prefix(b"l").next_back() {
            Some(kv) => be_u64(&kv?.0[1..]),
            None => 0,
        };
        let (commits, _) = watch::channel(last);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                tree,
                data,
                append: Mutex::new(last),
                commits,
            }),
        })
    }

    /// Writes everything to disk. Blocking: sled 0.34's `flush_async`
    /// deadlocks when several are in flight (spacejam/sled#1308), which
    /// concurrent appends and puts make routine.
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }

    fn append_blocking(
        &self,
        agent_id: &str,
        records: &[RecordEnvelope],
    ) -> Result<AppendOutcome, StoreError> {
        let inner = &self.inner;
        let mut last_commit = inner.append.lock().unwrap_or_else(|e| e.into_inner());
        let tree = &inner.tree;
        let head = load_head(tree, agent_id)?;
        let plan = plan_batch(agent_id, head, records, now_ns(), |epoch, seq| {
            let mut same = Vec::new();
            for kv in tree.scan_prefix(r_key(&key_prefix(agent_id, seq, epoch))) {
                if let Some(env) = decode_row(&kv?.1)?.stored.and_then(|s| s.record) {
                    same.push(env);
                }
            }
            Ok(same)
        })?;
        if plan.writes.is_empty() {
            return Ok(plan.outcome);
        }
        let received_at = now_rfc3339();
        let mut batch = sled::Batch::default();
        let mut commit = *last_commit;
        for w in &plan.writes {
            let mut rkey = key_prefix(agent_id, w.env.seq, w.env.boot_epoch);
            rkey.extend_from_slice(&w.variant.to_be_bytes());
            commit += 1;
            let row = Row {
                stored: Some(StoredRecord {
                    record: Some(w.env.clone()),
                    received_at: received_at.clone(),
                    flag: w.flag_str().to_owned(),
                }),
                ts_ns: w.meta.ts_ns,
                route: w.meta.route.clone(),
                decision: w.meta.decision.clone(),
                mode: w.meta.mode.clone(),
                variant: w.variant,
                commit,
            };
            batch.insert(r_key(&rkey), prost::Message::encode_to_vec(&row));
            batch.insert(t_key(w.meta.ts_ns, &rkey), Vec::<u8>::new());
            batch.insert(l_key(commit), rkey);
        }
        let head_row = HeadRow {
            seq: plan.head.seq,
            hash: plan.head.hash.clone(),
        };
        batch.insert(h_key(agent_id), prost::Message::encode_to_vec(&head_row));
        tree.apply_batch(batch)?;
        *last_commit = commit;
        Ok(plan.outcome)
    }

    fn query_blocking(
        &self,
        filter: &QueryFilter,
        after: Option<&OrderKey>,
        page_size: usize,
    ) -> Result<Page, StoreError> {
        use std::ops::Bound;
        let tree = &self.inner.tree;
        let start = match after {
            Some(k) => {
                let mut rkey = key_prefix(&k.agent_id, k.seq, k.boot_epoch);
                rkey.extend_from_slice(&k.variant.to_be_bytes());
                Bound::Excluded(t_key(k.ts_ns, &rkey))
            }
            None => Bound::Included(t_key(filter.since_ns.unwrap_or(i64::MIN), &[])),
        };
        let end = match filter.until_ns {
            Some(u) => Bound::Excluded(t_key(u, &[])),
            None => Bound::Excluded(b"u".to_vec()),
        };
        let mut page = Page::default();
        for kv in tree.range::<Vec<u8>, _>((start, end)) {
            let (key, _) = kv?;
            let row = get_row(tree, &key[9..])?;
            if row_matches(filter, &row) {
                page.records.push(row.stored.clone().unwrap_or_default());
                page.marks.push((row.commit, row.commit));
                if page.records.len() >= page_size {
                    page.next = Some(order_key(&row));
                    break;
                }
            }
        }
        Ok(page)
    }

    fn tail_blocking(
        &self,
        filter: &QueryFilter,
        cursor: &mut TailCursor,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let tree = &self.inner.tree;
        let mut out = Vec::new();
        for kv in tree.range(l_key(cursor.position)..b"m".to_vec()) {
            let (key, rkey) = kv?;
            let commit = be_u64(&key[1..]);
            cursor.position = commit + 1;
            if cursor.seen.remove(&commit).is_some() {
                continue;
            }
            let row = get_row(tree, &rkey)?;
            if row_matches(filter, &row) {
                out.push(row.stored.unwrap_or_default());
            }
            if out.len() >= super::PAGE_SIZE {
                break;
            }
        }
        let position = cursor.position;
        cursor.seen.retain(|_, order| *order >= position);
        Ok(out)
    }

    fn verify_blocking(&self, agent_id: Option<&str>) -> Result<Vec<AgentChain>, StoreError> {
        let tree = &self.inner.tree;
        let agents: Vec<String> = match agent_id {
            Some(a) => vec![a.to_owned()],
            None => {
                let mut v = Vec::new();
                for kv in tree.scan_prefix(b"h") {
                    v.push(String::from_utf8_lossy(&kv?.0[1..]).into_owned());
                }
                v
            }
        };
        let mut out = Vec::new();
        for agent in agents {
            let mut walk = ChainWalk::new(&agent);
            let mut prefix = b"r".to_vec();
            prefix.extend_from_slice(agent.as_bytes());
            prefix.push(0);
            for kv in tree.scan_prefix(prefix) {
                let row = decode_row(&kv?.1)?;
                if let Some(stored) = row.stored
                    && let Some(env) = &stored.record
                {
                    walk.push(env, &stored.flag);
                }
            }
            out.push(walk.finish());
        }
        Ok(out)
    }
}

impl Store for SledStore {
    async fn append(
        &self,
        agent_id: &str,
        records: Vec<RecordEnvelope>,
    ) -> Result<AppendOutcome, StoreError> {
        let this = self.clone();
        let agent = agent_id.to_owned();
        let out = tokio::task::spawn_blocking(move || {
            let out = this.append_blocking(&agent, &records)?;
            // INVARIANT: nothing is acknowledged before it is on disk.
            this.flush()?;
            Ok::<_, StoreError>(out)
        })
        .await??;
        warn_flagged(agent_id, &out);
        if out.stored > 0 {
            let last = *self.inner.append.lock().unwrap_or_else(|e| e.into_inner());
            self.inner.commits.send_replace(last);
        }
        Ok(out)
    }

    async fn query_page(
        &self,
        filter: &QueryFilter,
        after: Option<&OrderKey>,
        page_size: usize,
    ) -> Result<Page, StoreError> {
        let this = self.clone();
        let (filter, after) = (filter.clone(), after.cloned());
        let page = page_size.max(1);
        tokio::task::spawn_blocking(move || this.query_blocking(&filter, after.as_ref(), page))
            .await?
    }

    async fn tail_cursor(&self) -> Result<TailCursor, StoreError> {
        let last = *self.inner.append.lock().unwrap_or_else(|e| e.into_inner());
        Ok(TailCursor {
            position: last + 1,
            ..TailCursor::default()
        })
    }

    async fn tail_next(
        &self,
        filter: &QueryFilter,
        cursor: &mut TailCursor,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let this = self.clone();
        let (filter, mut c) = (filter.clone(), cursor.clone());
        let (records, c) = tokio::task::spawn_blocking(move || {
            this.tail_blocking(&filter, &mut c).map(|r| (r, c))
        })
        .await??;
        *cursor = c;
        Ok(records)
    }

    async fn verify(&self, agent_id: Option<&str>) -> Result<Vec<AgentChain>, StoreError> {
        let this = self.clone();
        let agent = agent_id.map(str::to_owned);
        tokio::task::spawn_blocking(move || this.verify_blocking(agent.as_deref())).await?
    }

    fn commits(&self) -> watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    async fn get_data(&self, known_version: u64) -> Result<StoredData, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || data::get(&this.inner.data, known_version)).await?
    }

    async fn put_data(
        &self,
        document: &DataDocument,
        expected_version: Option<u64>,
        updated_by: &str,
    ) -> Result<StoredData, StoreError> {
        let this = self.clone();
        let (json, by) = (document.to_json(), updated_by.to_owned());
        tokio::task::spawn_blocking(move || {
            let stored = data::put(&this.inner.data, json, expected_version, by)?;
            // INVARIANT: nothing is answered before it is on disk.
            this.flush()?;
            Ok(stored)
        })
        .await?
    }
}

fn row_matches(filter: &QueryFilter, row: &Row) -> bool {
    let agent = row
        .stored
        .as_ref()
        .and_then(|s| s.record.as_ref())
        .map(|r| r.agent_id.as_str())
        .unwrap_or_default();
    let meta = RecordMeta {
        ts_ns: row.ts_ns,
        route: row.route.clone(),
        decision: row.decision.clone(),
        mode: row.mode.clone(),
    };
    filter.is_match(agent, &meta)
}

fn order_key(row: &Row) -> OrderKey {
    let env = row
        .stored
        .as_ref()
        .and_then(|s| s.record.clone())
        .unwrap_or_default();
    OrderKey {
        ts_ns: row.ts_ns,
        agent_id: env.agent_id,
        seq: env.seq,
        boot_epoch: env.boot_epoch,
        variant: row.variant,
    }
}

fn load_head(tree: &sled::Tree, agent_id: &str) -> Result<Head, StoreError> {
    match tree.get(h_key(agent_id))? {
        None => Ok(Head::default()),
        Some(bytes) => {
            let row: HeadRow =
                prost::Message::decode(bytes.as_ref()).map_err(|e| StoreError::Corrupt {
                    key: format!("h{agent_id}"),
                    reason: e.to_string(),
                })?;
            Ok(Head {
                seq: row.seq,
                hash: row.hash,
            })
        }
    }
}

fn get_row(tree: &sled::Tree, rkey: &[u8]) -> Result<Row, StoreError> {
    match tree.get(r_key(rkey))? {
        Some(bytes) => decode_row(&bytes),
        None => Err(StoreError::Corrupt {
            key: String::from_utf8_lossy(rkey).into_owned(),
            reason: "indexed record is missing".into(),
        }),
    }
}

fn decode_row(bytes: &[u8]) -> Result<Row, StoreError> {
    prost::Message::decode(bytes).map_err(|e: prost::DecodeError| StoreError::Corrupt {
        key: "r…".into(),
        reason: e.to_string(),
    })
}

/// agent_id, 0x00, seq, boot_epoch (the variant follows in full keys).
fn key_prefix(agent_id: &str, seq: u64, boot_epoch: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(agent_id.len() + 17);
    k.extend_from_slice(agent_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(&boot_epoch.to_be_bytes());
    k
}

fn r_key(rkey: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(rkey.len() + 1);
    k.push(b'r');
    k.extend_from_slice(rkey);
    k
}

fn t_key(ts_ns: i64, rkey: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(rkey.len() + 9);
    k.push(b't');
    // Flip the sign bit so that byte order is numeric order.
    k.extend_from_slice(&((ts_ns as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(rkey);
    k
}

fn l_key(commit: u64) -> Vec<u8> {
    let mut k = vec![b'l'];
    k.extend_from_slice(&commit.to_be_bytes());
    k
}

fn h_key(agent_id: &str) -> Vec<u8> {
    let mut k = vec![b'h'];
    k.extend_from_slice(agent_id.as_bytes());
    k
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(b)
}
