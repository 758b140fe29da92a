//! policy-journal: the central decision store (DESIGN §6).
//!
//! Agents stream their decision records over mutual TLS ([`server`]); the
//! journal stores each record verbatim, idempotently on (agent_id,
//! boot_epoch, seq), checks every agent's hash chain ([`chain`]), flags what
//! does not continue it, and acknowledges cumulatively after a durable
//! commit. Storage is sled or PostgreSQL behind one trait ([`store`]).
//! Operators query, tail and verify the journal, and export records as JSON
//! lines or OPA decision-log events ([`export`]). It also keeps the data
//! degraded mode caches (role bindings, command whitelists, platform admins,
//! approvals) as one versioned document ([`data`]) that `data_writers` put
//! and every client reads.
//!
//! It does not evaluate policy, and it does not interpret the data document
//! beyond validating its shape.

pub mod chain;
pub mod config;
pub mod data;
pub mod export;
pub mod identity;
pub mod server;
pub mod store;

pub use config::{ConfigError, DEFAULT_DATA_WRITERS, JournalConfig, StorageConfig, TlsMaterial};
pub use data::{Approval, DataDocument, DataError, MAX_DATA_BYTES, MAX_MESSAGE_BYTES};
pub use export::{to_jsonl_line, to_opa_event};
pub use server::{
    JournalService, RunningJournal, ServeError, open_store, serve, start, start_with_store,
};
pub use store::{
    AnyStore, AppendOutcome, OrderKey, Page, PgOptions, PgStore, QueryFilter, SledStore, Store,
    StoreError, StoredData, TailCursor, query_all,
};
