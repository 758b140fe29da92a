//! journal-client: the agent side of the decision journal.
//!
//! [`DecisionRecord`] is the record of one evaluated phase (DESIGN §6), with
//! secrets masked by [`Masker`] before it is written anywhere. Records are
//! shared with `policy-journal`, which stores the exact bytes hashed here.
//! The agent appends every record to its durable [`LocalLog`] ([`SledLog`])
//! before the record counts as made; [`JournalClient`] streams the log to the
//! journal over mTLS and deletes what the journal acknowledged. This crate
//! does not evaluate policies and does not store records centrally.

mod client;
mod config;
pub mod devcerts;
mod mask;
mod outbox;
mod record;

pub use client::{
    ClientCounters, ClientError, Connectivity, JournalClient, JournalClientHandle, connect,
};
pub use config::{ClientConfig, ConfigError, LocalLogConfig, OnFull};
pub use mask::{MASK, Masker};
pub use outbox::{Appended, LocalLog, LogError, LogStats, SledLog};
pub use record::{
    BuiltinCall, DecisionRecord, GENESIS_HASH, PolicyOutcome, RequestSummary, Verdict, record_hash,
};
