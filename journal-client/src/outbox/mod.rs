//! The agent's durable local log ("outbox"): every decision record is
//! appended here, chained and numbered, before it counts as made; the
//! streaming client ships it and deletes it once the journal acknowledges it.

use std::path::PathBuf;
use std::time::Duration;

use policy_proto::journal::RecordEnvelope;

use crate::DecisionRecord;
use crate::config::ConfigError;

mod codec;
mod sled_log;
mod wal;

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use sled_log::SledLog;

/// The local log as the agent and the streaming client see it.
pub trait LocalLog: Send + Sync {
    /// Assigns `agent_id` (the log's), `boot_epoch`, the next seq and
    /// `prev_hash` to `record` (overwriting those fields), serializes it,
    /// hashes it and appends it. When this returns `Ok(Appended::Logged{..})`
    /// the record survives a kill -9 of the process; it survives a power
    /// failure once [`LocalLog::wait_synced`] returned for its seq.
    /// `Ok(Appended::Dropped)` only in drop-with-counter mode when full.
    fn append(&self, record: DecisionRecord) -> Result<Appended, LogError>;
    /// Blocks until every record up to `seq` is fsynced (group commit), or
    /// `timeout` passes.
    fn wait_synced(&self, seq: u64, timeout: Duration) -> Result<(), LogError>;
    /// Up to `max` envelopes with seq > `after`, in seq order.
    fn read_after(&self, after: u64, max: usize) -> Result<Vec<RecordEnvelope>, LogError>;
    /// Deletes records with seq <= `upto` (called on a journal ack).
    fn ack(&self, upto: u64) -> Result<(), LogError>;
    /// Counters and positions.
    fn stats(&self) -> LogStats;
}

/// The outcome of [`LocalLog::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Written; `hash` is the lower-case hex SHA-256 of the record's JSON.
    Logged { seq: u64, hash: String },
    /// Not written: the log is full and configured to drop.
    Dropped,
}

/// Positions and counters of a local log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// The newest record's seq (0 before the first).
    pub last_seq: u64,
    /// Records up to here were acknowledged by the journal and deleted.
    pub acked_seq: u64,
    /// Records up to here are fsynced.
    pub synced_seq: u64,
    /// Records not yet acknowledged.
    pub pending_records: u64,
    /// Bytes of records not yet acknowledged (compared with `max_bytes`).
    pub pending_bytes: u64,
    /// Records dropped because the log was full (since open).
    pub dropped_total: u64,
    /// Records refused because the log was full (since open).
    pub denied_full_total: u64,
    /// Incremented on every open.
    pub boot_epoch: u64,
}

/// Errors of the local log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid local log configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("local log `{dir}` is already open (locked by this or another process)")]
    Locked { dir: PathBuf },
    #[error("local log `{dir}` belongs to agent `{stored}`, not `{configured}`")]
    AgentMismatch {
        dir: PathBuf,
        stored: String,
        configured: String,
    },
    #[error("local log i/o on `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("local log store: {0}")]
    Store(#[from] sled::Error),
    #[error("cannot serialize decision record: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error(
        "local log full: {pending_bytes} bytes pending, record of {record_bytes} bytes, limit {max_bytes}"
    )]
    Full {
        pending_bytes: u64,
        record_bytes: u64,
        max_bytes: u64,
    },
    #[error("seq {seq} not synced within {timeout:?} (synced up to {synced_seq})")]
    SyncTimeout {
        seq: u64,
        synced_seq: u64,
        timeout: Duration,
    },
    #[error("local log corrupt: {reason}")]
    Corrupt { reason: &'static str },
    #[error("local log unusable until reopened: {reason}")]
    Poisoned { reason: &'static str },
}

impl LogError {
    /// A stable code for decision records and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "log_config",
            Self::Locked { .. } => "log_locked",
            Self::AgentMismatch { .. } => "log_agent_mismatch",
            Self::Io { .. } => "log_io",
            Self::Store(_) => "log_store",
            Self::Serialize(_) => "log_serialize",
            Self::Full { .. } => "log_full",
            Self::SyncTimeout { .. } => "log_sync_timeout",
            Self::Corrupt { .. } => "log_corrupt",
            Self::Poisoned { .. } => "log_poisoned",
        }
    }
}
