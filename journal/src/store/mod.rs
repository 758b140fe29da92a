//! Storage behind one trait: [`SledStore`] (embedded, a directory) and
//! [`PgStore`] (PostgreSQL 15, many journal servers sharing one database).
//!
//! Both backends keep the same rules (see [`crate::chain`]): appends are
//! idempotent on (agent_id, boot_epoch, seq), every record is stored, and a
//! record that does not continue its agent's chain is stored with a flag.
//! Beside the records, each keeps the one versioned data document
//! ([`crate::data`]): sled in a tree of its own, PostgreSQL in the
//! `journal_data` table.

mod filter;
mod pg_pool;
mod plan;
mod postgres;
mod sled;

use std::collections::HashMap;
use std::future::Future;

use policy_proto::journal::{AgentChain, RecordEnvelope, StoredRecord};
use tokio::sync::watch;

use crate::data::DataDocument;

pub use filter::{FilterError, ModeFilter, OrderKey, QueryFilter, RecordMeta};
pub use postgres::{PgOptions, PgStore};
pub use sled::SledStore;

/// Errors of a storage operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] ::sled::Error),
    #[error("postgres: {}", pg_message(source))]
    Postgres {
        #[from]
        source: tokio_postgres::Error,
    },
    #[error("cannot open sled database at `{path}`: {source}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: ::sled::Error,
    },
    #[error("corrupt stored row under key `{key}`: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("record of agent `{found}` in a batch for agent `{expected}`")]
    WrongAgent { expected: String, found: String },
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("invalid agent id `{0}`: empty or with control characters")]
    InvalidAgent(String),
    #[error("postgres connection pool is closed")]
    PoolClosed,
    #[error("invalid postgres schema name `{0}`")]
    InvalidSchema(String),
    #[error("data version conflict: expected version {expected}, the current version is {current}")]
    VersionConflict { expected: u64, current: u64 },
}

/// The data document as stored, or what a reader needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredData {
    /// 1, 2, 3, ... one per put; 0 while nothing was ever put.
    pub version: u64,
    /// The normalized document; `None` when the reader already holds this
    /// version.
    pub json: Option<String>,
    /// RFC 3339 time of the put that made this version (empty for 0).
    pub updated_at: String,
    /// Who made it (empty for 0).
    pub updated_by: String,
}

impl StoredData {
    /// Version 0: the empty document, never put.
    pub fn never_put() -> Self {
        Self {
            version: 0,
            json: Some(DataDocument::default().to_json()),
            updated_at: String::new(),
            updated_by: String::new(),
        }
    }

    /// Whether a reader holding `known` already has `current`: the same
    /// version, and one that was put.
    pub fn is_known(known: u64, current: u64) -> bool {
        current > 0 && known == current
    }
}

/// What an append did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Cumulative acknowledgement: the agent's chain head after the commit.
    /// Records that were missing (a gap) are never coming, so the head is
    /// acknowledged even across a gap; the gap is flagged and reported.
    pub acked_seq: u64,
    /// New records stored (flagged or not).
    pub stored: u64,
    /// Identical re-sends that were ignored.
    pub duplicates: u64,
    /// (seq, flag) of every new record stored with a flag.
    pub flagged: Vec<(u64, &'static str)>,
}

/// One page of a query, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub records: Vec<StoredRecord>,
    /// Where the next page starts, when this one was full.
    pub next: Option<OrderKey>,
    /// (row id, commit order) of each record, for [`TailCursor::note`].
    pub(crate) marks: Vec<(u64, u64)>,
}

/// Where a tail left off, in commit order (not record time, so records that
/// arrive late from an agent that was offline are still streamed).
///
/// Rows whose commit order is `>= position` may still be new; `seen` holds
/// those of them already streamed (row id → commit order). sled: commit
/// order is a commit counter. PostgreSQL: it is the inserting transaction id
/// and `position` the xmin of the last poll's snapshot, so transactions that
/// commit out of id order (several journal servers) are not missed.
#[derive(Debug, Clone, Default)]
pub struct TailCursor {
    pub(crate) position: u64,
    pub(crate) seen: HashMap<u64, u64>,
}

impl TailCursor {
    /// Remembers the records of a backlog page that the tail must not stream
    /// again.
    pub fn note(&mut self, page: &Page) {
        for &(id, order) in &page.marks {
            if order >= self.position {
                self.seen.insert(id, order);
            }
        }
    }
}

/// The journal's storage.
pub trait Store: Send + Sync + 'static {
    /// Appends a batch of records of one agent, in order, in one durable
    /// commit (sled: flushed; PostgreSQL: committed) before returning.
    fn append(
        &self,
        agent_id: &str,
        records: Vec<RecordEnvelope>,
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send;

    /// Up to `page_size` records matching `filter`, after `after`, ordered by
    /// (record timestamp, agent_id, seq, boot_epoch).
    fn query_page(
        &self,
        filter: &QueryFilter,
        after: Option<&OrderKey>,
        page_size: usize,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// A cursor at the current end of the commit order. Take it before the
    /// backlog query and [`TailCursor::note`] every backlog page, so that
    /// nothing falls between backlog and tail and nothing is streamed twice.
    fn tail_cursor(&self) -> impl Future<Output = Result<TailCursor, StoreError>> + Send;

    /// Records matching `filter` committed after `cursor` (and not noted in
    /// it), in commit order; advances the cursor.
    fn tail_next(
        &self,
        filter: &QueryFilter,
        cursor: &mut TailCursor,
    ) -> impl Future<Output = Result<Vec<StoredRecord>, StoreError>> + Send;

    /// The chain report of `agent_id`, or of every agent when `None`.
    fn verify(
        &self,
        agent_id: Option<&str>,
    ) -> impl Future<Output = Result<Vec<AgentChain>, StoreError>> + Send;

    /// Changes (to an unspecified value) after every commit made through
    /// this store; other servers' commits are only seen by polling.
    fn commits(&self) -> watch::Receiver<u64>;

    /// The current data document; without its JSON when it is version
    /// `known_version` (see [`StoredData::is_known`]).
    fn get_data(
        &self,
        known_version: u64,
    ) -> impl Future<Output = Result<StoredData, StoreError>> + Send;

    /// Replaces the data document with `document` as the next version, made
    /// by `updated_by`, durably before returning. With `expected_version`,
    /// fails with [`StoreError::VersionConflict`] unless that is the current
    /// version. Concurrent puts (on any server sharing the storage) each get
    /// their own version; none is lost.
    fn put_data(
        &self,
        document: &DataDocument,
        expected_version: Option<u64>,
        updated_by: &str,
    ) -> impl Future<Output = Result<StoredData, StoreError>> + Send;
}

/// Either backend, chosen by configuration.
#[derive(Clone)]
pub enum AnyStore {
    Sled(SledStore),
    Postgres(PgStore),
}

impl Store for AnyStore {
    async fn append(
        &self,
        agent_id: &str,
        records: Vec<RecordEnvelope>,
    ) -> Result<AppendOutcome, StoreError> {
        match self {
            Self::Sled(s) => s.append(agent_id, records).await,
            Self::Postgres(s) => s.append(agent_id, records).await,
        }
    }

    async fn query_page(
        &self,
        filter: &QueryFilter,
        after: Option<&OrderKey>,
        page_size: usize,
    ) -> Result<Page, StoreError> {
        match self {
            Self::Sled(s) => s.query_page(filter, after, page_size).await,
            Self::Postgres(s) => s.query_page(filter, after, page_size).await,
        }
    }

    async fn tail_cursor(&self) -> Result<TailCursor, StoreError> {
        match self {
            Self::Sled(s) => s.tail_cursor().await,
            Self::Postgres(s) => s.tail_cursor().await,
        }
    }

    async fn tail_next(
        &self,
        filter: &QueryFilter,
        cursor: &mut TailCursor,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        match self {
            Self::Sled(s) => s.tail_next(filter, cursor).await,
            Self::Postgres(s) => s.tail_next(filter, cursor).await,
        }
    }

    async fn verify(&self, agent_id: Option<&str>) -> Result<Vec<AgentChain>, StoreError> {
        match self {
            Self::Sled(s) => s.verify(agent_id).await,
            Self::Postgres(s) => s.verify(agent_id).await,
        }
    }

    fn commits(&self) -> watch::Receiver<u64> {
        match self {
            Self::Sled(s) => s.commits(),
            Self::Postgres(s) => s.commits(),
        }
    }

    async fn get_data(&self, known_version: u64) -> Result<StoredData, StoreError> {
        match self {
            Self::Sled(s) => s.get_data(known_version).await,
            Self::Postgres(s) => s.get_data(known_version).await,
        }
    }

    async fn put_data(
        &self,
        document: &DataDocument,
        expected_version: Option<u64>,
        updated_by: &str,
    ) -> Result<StoredData, StoreError> {
        match self {
            Self::Sled(s) => s.put_data(document, expected_version, updated_by).await,
            Self::Postgres(s) => s.put_data(document, expected_version, updated_by).await,
        }
    }
}

/// All records matching `filter` (honouring its limit), oldest first: pages
/// through [`Store::query_page`]. For tests and small exports; the server
/// streams page by page instead.
pub async fn query_all<S: Store>(
    store: &S,
    filter: &QueryFilter,
) -> Result<Vec<StoredRecord>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<OrderKey> = None;
    loop {
        let want = match filter.limit {
            Some(l) => (l as usize).saturating_sub(out.len()).min(PAGE_SIZE),
            None => PAGE_SIZE,
        };
        if want == 0 {
            return Ok(out);
        }
        let page = store.query_page(filter, after.as_ref(), want).await?;
        out.extend(page.records);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}

/// The message of a PostgreSQL error, with the server's detail when there
/// is one (tokio-postgres' own `Display` says only "db error").
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(inner) => format!("{e}: {inner}"),
            None => e.to_string(),
        },
    }
}

/// Records fetched per query page.
pub const PAGE_SIZE: usize = 500;

/// Logs every flagged record of an append (the alert of DESIGN §6: never
/// silently accepted).
pub(crate) fn warn_flagged(agent_id: &str, outcome: &AppendOutcome) {
    for (seq, flag) in &outcome.flagged {
        tracing::warn!(
            agent_id,
            seq,
            flag,
            "journal chain alert: record stored with a flag"
        );
    }
}

/// Now, RFC 3339 UTC: a record's `received_at`.
pub(crate) fn now_rfc3339() -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}
