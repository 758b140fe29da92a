//! The streaming client: ships the local log to `policy-journal` over one
//! mTLS `Append` stream, deletes what the journal acknowledged, reconnects
//! with jittered exponential backoff and reports connectivity.
//!
//! Decisions never wait for it: they append to the [`LocalLog`] and call
//! [`JournalClientHandle::notify`]; the client also polls. Only records the
//! log has fsynced are shipped, so the journal never holds a record the agent
//! could lose on power failure and then number again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::outbox::{LocalLog, LogError, LogStats};

mod session;

pub use session::connect;

#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;

/// Whether the agent can reach the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connectivity {
    /// An `Append` stream is open.
    Connected { since: Instant },
    /// No stream; records accumulate in the local log.
    Partitioned {
        since: Instant,
        /// When the journal last acknowledged records, if ever in this process.
        last_ack: Option<Instant>,
    },
}

impl Connectivity {
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected { .. })
    }
}

/// Counters of a client since it was spawned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounters {
    pub batches_sent: u64,
    /// Records sent, resends after a reconnect included.
    pub records_sent: u64,
    /// Records the journal acknowledged (and the log deleted).
    pub records_acked: u64,
    /// Connection attempts after a failed attempt or a broken stream.
    pub reconnects: u64,
    /// Streams established.
    pub connects: u64,
}

/// Why a connection or stream failed (reported by
/// [`JournalClientHandle::last_error`] and in the logs).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read `{path}`: {source}")]
    ReadPem {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid journal endpoint `{endpoint}`")]
    Endpoint { endpoint: String },
    #[error("tls configuration rejected: {source}")]
    Tls {
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot connect to `{endpoint}`: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("no answer from `{endpoint}` within {timeout:?}")]
    ConnectTimeout {
        endpoint: String,
        timeout: std::time::Duration,
    },
    #[error("append stream failed: {status}")]
    Stream { status: Box<tonic::Status> },
    #[error("journal closed the append stream")]
    Closed,
    #[error("no acknowledgement within {timeout:?} with {in_flight} batches in flight")]
    AckTimeout {
        timeout: std::time::Duration,
        in_flight: usize,
    },
    #[error("local log: {0}")]
    Log(#[from] LogError),
}

#[derive(Default)]
struct Counters {
    batches_sent: AtomicU64,
    records_sent: AtomicU64,
    records_acked: AtomicU64,
    reconnects: AtomicU64,
    connects: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ClientCounters {
        ClientCounters {
            batches_sent: self.batches_sent.load(Ordering::Relaxed),
            records_sent: self.records_sent.load(Ordering::Relaxed),
            records_acked: self.records_acked.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
        }
    }
}

/// Spawns the streaming client.
pub struct JournalClient;

impl JournalClient {
    /// Starts the client on the current tokio runtime. `config` should have
    /// passed [`ClientConfig::validate`]; certificate files are read on every
    /// connection attempt, so a rotated certificate is picked up on reconnect.
    pub fn spawn(config: ClientConfig, log: Arc<dyn LocalLog>) -> JournalClientHandle {
        let wake = Arc::new(Notify::new());
        let counters = Arc::new(Counters::default());
        let (state_tx, state_rx) = watch::channel(Connectivity::Partitioned {
            since: Instant::now(),
            last_ack: None,
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(session::run(session::Ctx {
            cfg: config,
            log: Arc::clone(&log),
            wake: Arc::clone(&wake),
            counters: Arc::clone(&counters),
            state: state_tx,
            shutdown: shutdown_rx,
        }));
        JournalClientHandle {
            wake,
            state: state_rx,
            counters,
            shutdown: shutdown_tx,
            task,
            log,
        }
    }
}

/// Controls a running client. Dropping it without [`Self::shutdown`]
/// aborts the client (unshipped records stay in the local log).
pub struct JournalClientHandle {
    wake: Arc<Notify>,
    state: watch::Receiver<Connectivity>,
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    log: Arc<dyn LocalLog>,
}

impl JournalClientHandle {
    /// Tells the client that records were appended. Cheap; never blocks.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    pub fn state(&self) -> Connectivity {
        *self.state.borrow()
    }

    /// Connectivity changes as they happen.
    pub fn subscribe(&self) -> watch::Receiver<Connectivity> {
        self.state.clone()
    }

    pub fn counters(&self) -> ClientCounters {
        self.counters.snapshot()
    }

    /// The most recent connection or stream error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.counters.last_error.lock().clone()
    }

    /// Ships what it can within `shutdown_grace` when connected, then closes
    /// the stream. Returns the log's stats afterwards (`pending_records` are
    /// shipped on the next start).
    pub async fn shutdown(mut self) -> LogStats {
        self.shutdown.send_replace(true);
        if (&mut self.task).await.is_err() {
            tracing::error!("journal client task failed");
        }
        self.log.stats()
    }
}

impl Drop for JournalClientHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
