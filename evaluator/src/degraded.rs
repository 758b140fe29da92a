//! The agent's degraded mode (DESIGN §7): the mode tracker fed by the
//! journal client's connectivity, the data snapshot synced from the journal,
//! and the verdict for a chain while degraded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use journal_client::ClientConfig;
use parking_lot::Mutex;
use policy_degraded::{DegradedConfig, Mode, ModeTracker, Snapshot, SnapshotStore, Tier, Verdict};
use policy_proto::journal::GetDataRequest;
use policy_proto::journal::journal_client::JournalClient as JournalRpc;
use time::OffsetDateTime;
use tokio::sync::watch;

/// Largest `GetData` answer accepted (the journal's own message limit:
/// a document of up to 4 MiB plus its envelope).
const MAX_DOCUMENT_MESSAGE_BYTES: usize = 8 << 20;

/// File of the persisted snapshot, in the local log's directory.
pub const SNAPSHOT_FILE: &str = "degraded-snapshot.json";

/// Degraded-mode state of an agent with a journal server.
#[derive(Debug)]
pub struct DegradedState {
    pub config: DegradedConfig,
    pub tracker: ModeTracker,
    pub snapshot: SnapshotStore,
    /// Degraded decisions by (tier, outcome `allow`/`deny`).
    decisions: Mutex<BTreeMap<(Tier, &'static str), u64>>,
    /// Snapshot syncs that failed (journal unreachable, bad answer).
    pub sync_failures: AtomicU64,
    /// The version of each newly installed snapshot, for the agent to put
    /// its data into the policy data (`data.synced`).
    pub versions: watch::Sender<u64>,
    /// Break-glass mode, while active.
    emergency: Mutex<Option<Emergency>>,
    /// Decisions made in emergency mode since the agent started.
    pub emergency_decisions: AtomicU64,
}

/// An active emergency (break-glass) period.
#[derive(Debug, Clone, PartialEq)]
pub struct Emergency {
    pub until: Instant,
    pub until_wall: OffsetDateTime,
    pub reason: String,
    pub operator: String,
}

/// A change of emergency mode asked for by an operator.
#[derive(Debug, Clone)]
pub struct EmergencyChange<'a> {
    pub enable: bool,
    pub reason: &'a str,
    pub ttl: Duration,
    pub operator: &'a str,
    pub token: &'a str,
}

/// Why an emergency change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmergencyError {
    #[error("emergency mode is not configured on this agent (journal.degraded.emergency)")]
    NotConfigured,
    #[error("emergency token rejected")]
    BadToken,
    #[error("{0}")]
    Invalid(String),
    #[error("emergency change not recorded, so not made: {0}")]
    NotRecorded(String),
}

/// The mode and what a chain may do, for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Normal,
    Degraded(Verdict),
    /// Break-glass: evaluate as in normal mode, record as `emergency`.
    Emergency,
}

/// What `policyctl`, health and metrics show of degraded mode.
#[derive(Debug, Clone, PartialEq)]
pub struct DegradedStatus {
    /// The break-glass period, when active (it overrides `mode`).
    pub emergency: Option<Emergency>,
    pub emergency_decisions: u64,
    pub mode: Mode,
    pub in_mode: Duration,
    pub transitions: u64,
    pub snapshot_version: Option<u64>,
    pub snapshot_age: Option<Duration>,
    pub decisions: BTreeMap<(Tier, &'static str), u64>,
    pub sync_failures: u64,
}

impl DegradedState {
    pub fn new(config: DegradedConfig, snapshot: SnapshotStore) -> Self {
        Self {
            tracker: ModeTracker::new(config.enter_after, config.exit_after, Instant::now()),
            config,
            snapshot,
            decisions: Mutex::new(BTreeMap::new()),
            sync_failures: AtomicU64::new(0),
            versions: watch::Sender::new(0),
            emergency: Mutex::new(None),
            emergency_decisions: AtomicU64::new(0),
        }
    }

    /// The mode now, and the verdict for a chain of `steps` when degraded.
    /// `steps` (the chain's policies and tiers) is only called when the
    /// agent is degraded, so normal-mode requests build nothing.
    pub fn decide<'a>(&self, steps: impl FnOnce() -> Vec<(&'a str, Tier)>) -> Decision {
        let now = Instant::now();
        if self.emergency(now).is_some() {
            return Decision::Emergency;
        }
        match self.tracker.state(now).mode {
            Mode::Normal => Decision::Normal,
            Mode::Degraded => Decision::Degraded(policy_degraded::verdict(
                &steps(),
                self.snapshot.age(OffsetDateTime::now_utc()),
                &self.config,
            )),
        }
    }

    /// Counts a degraded decision.
    pub fn count(&self, tier: Tier, allowed: bool) {
        *self
            .decisions
            .lock()
            .entry((tier, if allowed { "allow" } else { "deny" }))
            .or_insert(0) += 1;
    }

    /// The active emergency at `now`; one that ran out ends here.
    pub fn emergency(&self, now: Instant) -> Option<Emergency> {
        let mut guard = self.emergency.lock();
        if guard.as_ref().is_some_and(|e| e.until <= now)
            && let Some(e) = guard.take()
        {
            tracing::warn!(operator = %e.operator, reason = %e.reason, "emergency mode ended: its time ran out");
        }
        guard.clone()
    }

    /// Checks an operator's change; on success returns the emergency to
    /// install (`None`: turn off) without installing it — the caller records
    /// it first, then calls [`DegradedState::install_emergency`].
    pub fn check_emergency(
        &self,
        change: &EmergencyChange<'_>,
    ) -> Result<Option<Emergency>, EmergencyError> {
        let Some(cfg) = &self.config.emergency else {
            return Err(EmergencyError::NotConfigured);
        };
        let digest: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(change.token.as_bytes()).into()
        };
        // Constant time: every byte compared.
        let diff = digest
            .iter()
            .zip(cfg.token_sha256.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if change.token.is_empty() || diff != 0 {
            return Err(EmergencyError::BadToken);
        }
        if change.operator.trim().is_empty() {
            return Err(EmergencyError::Invalid("operator is required".into()));
        }
        if !change.enable {
            return Ok(None);
        }
        if change.reason.trim().is_empty() {
            return Err(EmergencyError::Invalid("reason is required".into()));
        }
        if change.ttl.is_zero() || change.ttl > cfg.max_ttl {
            return Err(EmergencyError::Invalid(format!(
                "ttl must be between 1 s and the configured maximum of {} s",
                cfg.max_ttl.as_secs()
            )));
        }
        let ttl_time = time::Duration::try_from(change.ttl)
            .map_err(|e| EmergencyError::Invalid(e.to_string()))?;
        Ok(Some(Emergency {
            until: Instant::now() + change.ttl,
            until_wall: OffsetDateTime::now_utc() + ttl_time,
            reason: change.reason.to_string(),
            operator: change.operator.to_string(),
        }))
    }

    pub fn install_emergency(&self, emergency: Option<Emergency>) {
        *self.emergency.lock() = emergency;
    }

    pub fn status(&self) -> DegradedStatus {
        let now = Instant::now();
        let st = self.tracker.state(now);
        let snap = self.snapshot.current();
        let emergency = self.emergency(now);
        DegradedStatus {
            emergency_decisions: self.emergency_decisions.load(Ordering::Relaxed),
            emergency,
            mode: st.mode,
            in_mode: now.saturating_duration_since(st.since),
            transitions: st.transitions,
            snapshot_version: snap.as_ref().map(|s| s.version),
            snapshot_age: self.snapshot.age(OffsetDateTime::now_utc()),
            decisions: self.decisions.lock().clone(),
            sync_failures: self.sync_failures.load(Ordering::Relaxed),
        }
    }
}

/// Feeds the tracker with the journal client's connectivity until the
/// channel closes.
pub async fn follow_connectivity(
    state: Arc<DegradedState>,
    mut rx: watch::Receiver<journal_client::Connectivity>,
) {
    loop {
        let connected = rx.borrow_and_update().is_connected();
        state.tracker.observe(connected, Instant::now());
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Polls the journal for the data document every `interval`, keeping the
/// snapshot current, until `shutdown` turns true.
pub async fn sync_data(
    server: ClientConfig,
    interval: Duration,
    state: Arc<DegradedState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut rpc: Option<JournalRpc<tonic::transport::Channel>> = None;
    loop {
        if let Err(reason) = sync_once(&server, &mut rpc, &state).await {
            rpc = None;
            let failures = state.sync_failures.fetch_add(1, Ordering::Relaxed) + 1;
            // Once, then every 30th attempt: a partition is expected.
            if failures == 1 || failures.is_multiple_of(30) {
                tracing::warn!(%reason, failures, "degraded-mode data not synced from the journal");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

async fn sync_once(
    server: &ClientConfig,
    rpc: &mut Option<JournalRpc<tonic::transport::Channel>>,
    state: &DegradedState,
) -> Result<(), String> {
    if rpc.is_none() {
        let channel = journal_client::connect(server)
            .await
            .map_err(|e| e.to_string())?;
        // The document may be up to the journal's message limit.
        *rpc = Some(JournalRpc::new(channel).max_decoding_message_size(MAX_DOCUMENT_MESSAGE_BYTES));
    }
    let Some(client) = rpc.as_mut() else {
        return Err("no journal connection".into());
    };
    let known = state.snapshot.current().map_or(0, |s| s.version);
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_data(GetDataRequest {
            known_version: known,
        }),
    )
    .await
    .map_err(|_| "GetData timed out".to_string())?
    .map_err(|s| format!("GetData: {}", s.message()))?
    .into_inner();
    let now = OffsetDateTime::now_utc();
    if answer.unchanged {
        if !state
            .snapshot
            .confirm(answer.version, now)
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "journal says version {} is current, but this agent holds {known}",
                answer.version
            ));
        }
        return Ok(());
    }
    let data: serde_json::Value = serde_json::from_slice(&answer.data_json)
        .map_err(|e| format!("data document is not JSON: {e}"))?;
    if !data.is_object() {
        return Err("data document is not an object".into());
    }
    let first = known == 0 || answer.version != known;
    state
        .snapshot
        .replace(Snapshot {
            version: answer.version,
            data,
            synced_at: now,
            updated_at: answer.updated_at,
            updated_by: answer.updated_by,
        })
        .map_err(|e| e.to_string())?;
    state.versions.send_replace(answer.version);
    if first {
        tracing::info!(
            version = answer.version,
            "degraded-mode data synced from the journal"
        );
    }
    Ok(())
}
