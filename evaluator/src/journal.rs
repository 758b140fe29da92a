//! The agent's side of the decision journal: the `journal` section of
//! `agent-config.yaml`, and the local log every decision record is written
//! to before the kernel gets the answer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use journal_client::{
    Appended, ClientConfig, DecisionRecord, JournalClient, JournalClientHandle, LocalLog,
    LocalLogConfig, LogError, LogStats, SledLog,
};
use serde::Deserialize;

use policy_degraded::DegradedConfig;
use policy_degraded::config::RawDegradedConfig;

use crate::degraded::{DegradedState, SNAPSHOT_FILE};
use crate::error::SetupError;
use crate::records::RecordSettings;

/// The `journal` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJournal {
    /// Identity in records; must be the common name of the client
    /// certificate (default: the agent's `name`).
    #[serde(default)]
    agent_id: Option<String>,
    /// Environment named in every record (default `dev`).
    #[serde(default = "default_environment")]
    environment: String,
    /// Request headers masked in records, in addition to the built-in list
    /// (Authorization, cookies, API-key headers, …).
    #[serde(default)]
    masked_headers: Vec<String>,
    /// Longest a decision on an `audit: strict` route waits for its record
    /// to be synced, milliseconds (default 1000); past it the answer is deny.
    #[serde(default = "default_strict_timeout")]
    strict_sync_timeout_ms: u64,
    /// The local log (`dir` relative to the config file, group commit,
    /// `max_bytes`, `on_full`); `agent_id` comes from above.
    local_log: serde_yaml_ng::Value,
    /// The journal server to stream to; without it records stay in the log.
    #[serde(default)]
    server: Option<ClientConfig>,
    /// Degraded mode while the server is unreachable (DESIGN §7); needs
    /// `server`. Absent: the defaults of `policy_degraded::DegradedConfig`.
    #[serde(default)]
    degraded: Option<RawDegradedConfig>,
    /// How often the degraded-mode data is fetched from the server,
    /// milliseconds (default 2000).
    #[serde(default = "default_data_sync_interval")]
    data_sync_interval_ms: u64,
}

const fn default_data_sync_interval() -> u64 {
    2000
}

fn default_environment() -> String {
    "dev".into()
}

const fn default_strict_timeout() -> u64 {
    1000
}

/// The validated `journal` section.
#[derive(Debug, Clone)]
pub struct JournalSettings {
    pub records: RecordSettings,
    pub local_log: LocalLogConfig,
    pub server: Option<ClientConfig>,
    pub strict_sync_timeout: Duration,
    /// Degraded-mode settings; `Some` exactly when `server` is set.
    pub degraded: Option<DegradedConfig>,
    pub data_sync_interval: Duration,
}

impl RawJournal {
    /// Validates the section of the config file at `path`; relative paths
    /// are relative to the file's directory.
    pub(crate) fn validate(
        self,
        path: &Path,
        agent_name: &str,
    ) -> Result<JournalSettings, SetupError> {
        let field = |field: &str, reason: String| SetupError::ConfigField {
            file: path.into(),
            field: format!("agent_core.journal.{field}"),
            reason,
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let agent_id = self.agent_id.unwrap_or_else(|| agent_name.to_owned());
        if agent_id.is_empty()
            || !agent_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(field(
                "agent_id",
                "must be non-empty letters, digits, `-`, `_` or `.`".into(),
            ));
        }
        let mut local = self.local_log;
        match &mut local {
            serde_yaml_ng::Value::Mapping(m) => {
                if m.contains_key("agent_id") {
                    return Err(field(
                        "local_log.agent_id",
                        "set `journal.agent_id` instead".into(),
                    ));
                }
                m.insert("agent_id".into(), agent_id.clone().into());
            }
            _ => return Err(field("local_log", "must be a mapping".into())),
        }
        let mut local_log: LocalLogConfig =
            serde_yaml_ng::from_value(local).map_err(|e| field("local_log", e.to_string()))?;
        local_log.dir = base.join(&local_log.dir);
        local_log
            .validate()
            .map_err(|e| field("local_log", e.to_string()))?;
        let server = match self.server {
            Some(mut s) => {
                for p in [&mut s.ca_cert, &mut s.cert, &mut s.key] {
                    *p = base.join(&*p);
                }
                s.validate().map_err(|e| field("server", e.to_string()))?;
                Some(s)
            }
            None => None,
        };
        let degraded = match (self.degraded, &server) {
            (Some(_), None) => {
                return Err(field(
                    "degraded",
                    "needs `server`: degraded mode follows the journal server's reachability"
                        .into(),
                ));
            }
            (raw, Some(_)) => Some(
                DegradedConfig::try_from(raw.unwrap_or_default())
                    .map_err(|e| field("degraded", e))?,
            ),
            (None, None) => None,
        };
        if !(100..=3_600_000).contains(&self.data_sync_interval_ms) {
            return Err(field(
                "data_sync_interval_ms",
                "must be between 100 and 3600000".into(),
            ));
        }
        if self.environment.trim().is_empty() {
            return Err(field("environment", "must not be empty".into()));
        }
        if !(1..=60_000).contains(&self.strict_sync_timeout_ms) {
            return Err(field(
                "strict_sync_timeout_ms",
                "must be between 1 and 60000".into(),
            ));
        }
        Ok(JournalSettings {
            records: RecordSettings {
                agent_id,
                environment: self.environment,
                masked_headers: self.masked_headers,
            },
            local_log,
            server,
            strict_sync_timeout: Duration::from_millis(self.strict_sync_timeout_ms),
            degraded,
            data_sync_interval: Duration::from_millis(self.data_sync_interval_ms),
        })
    }
}

/// The open local log of a running agent, and its streaming client once
/// started.
pub struct Journal {
    pub settings: JournalSettings,
    log: Arc<SledLog>,
    client: parking_lot::Mutex<Option<JournalClientHandle>>,
    /// When the client was last woken (ms since `opened`): at most once per
    /// [`NOTIFY_EVERY_MS`], not once per decision (each wake is a
    /// cross-thread futex call; the client also polls).
    last_notify_ms: std::sync::atomic::AtomicU64,
    opened: std::time::Instant,
    /// Degraded mode, when a server is configured.
    degraded: Option<Arc<DegradedState>>,
    /// Stops the degraded-mode tasks.
    tasks_shutdown: tokio::sync::watch::Sender<bool>,
}

/// Longest a new record waits before the streaming client is woken for it.
const NOTIFY_EVERY_MS: u64 = 5;

/// Why a decision record was not written; the decision becomes a deny.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("decision record not written: {0}")]
    Log(#[from] LogError),
    /// The log is full and drops records, but a degraded decision must be
    /// recorded before it is answered.
    #[error("decision record dropped (local log full), and degraded decisions must be recorded")]
    DroppedWhileDegraded,
}

impl RecordError {
    /// Stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Log(e) => e.code(),
            Self::DroppedWhileDegraded => "log_full",
        }
    }
}

impl Journal {
    /// Opens (or recovers) the local log.
    pub fn open(settings: JournalSettings) -> Result<Self, SetupError> {
        let log = SledLog::open(settings.local_log.clone()).map_err(|e| SetupError::Journal {
            reason: e.to_string(),
        })?;
        let degraded = match &settings.degraded {
            Some(config) => {
                let path = settings.local_log.dir.join(SNAPSHOT_FILE);
                let snapshot = policy_degraded::SnapshotStore::open(&path).map_err(|e| {
                    SetupError::Journal {
                        reason: format!("{e} (move it away to start without cached data)"),
                    }
                })?;
                if let Some(s) = snapshot.current() {
                    tracing::info!(version = s.version, synced_at = %s.synced_at, "degraded-mode data loaded from the local snapshot");
                }
                Some(Arc::new(DegradedState::new(config.clone(), snapshot)))
            }
            None => None,
        };
        Ok(Self {
            settings,
            log: Arc::new(log),
            client: parking_lot::Mutex::new(None),
            last_notify_ms: std::sync::atomic::AtomicU64::new(0),
            opened: std::time::Instant::now(),
            degraded,
            tasks_shutdown: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Starts streaming to the journal server, if one is configured. Needs a
    /// tokio runtime.
    pub fn start_client(&self) {
        let Some(server) = self.settings.server.clone() else {
            return;
        };
        let mut client = self.client.lock();
        if client.is_none() {
            let log: Arc<dyn LocalLog> = self.log.clone();
            let handle = JournalClient::spawn(server.clone(), log);
            if let Some(state) = &self.degraded {
                tokio::spawn(crate::degraded::follow_connectivity(
                    state.clone(),
                    handle.subscribe(),
                ));
                tokio::spawn(crate::degraded::sync_data(
                    server,
                    self.settings.data_sync_interval,
                    state.clone(),
                    self.tasks_shutdown.subscribe(),
                ));
            }
            *client = Some(handle);
        }
    }

    /// Degraded mode, when a server is configured.
    pub fn degraded(&self) -> Option<&Arc<DegradedState>> {
        self.degraded.as_ref()
    }

    /// Appends `record`; returns its seq, or `None` when the log dropped it
    /// (drop-with-counter mode).
    pub fn append(&self, record: DecisionRecord) -> Result<Option<u64>, RecordError> {
        use std::sync::atomic::Ordering;
        let appended = self.log.append(record)?;
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_notify_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= NOTIFY_EVERY_MS
            && self
                .last_notify_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            && let Some(c) = self.client.lock().as_ref()
        {
            c.notify();
        }
        Ok(match appended {
            Appended::Logged { seq, .. } => Some(seq),
            Appended::Dropped => None,
        })
    }

    /// Blocks until `seq` is synced to disk, within the strict timeout.
    pub fn wait_synced(&self, seq: u64) -> Result<(), RecordError> {
        Ok(self
            .log
            .wait_synced(seq, self.settings.strict_sync_timeout)?)
    }

    pub fn stats(&self) -> LogStats {
        self.log.stats()
    }

    /// Whether the streaming client has a stream open (`None`: no server configured).
    pub fn connected(&self) -> Option<bool> {
        self.client
            .lock()
            .as_ref()
            .map(|c| c.state().is_connected())
    }

    /// Stops the client after shipping what it can within its grace period.
    pub async fn shutdown(&self) {
        self.tasks_shutdown.send_replace(true);
        let client = self.client.lock().take();
        if let Some(c) = client {
            let stats = c.shutdown().await;
            tracing::info!(
                last_seq = stats.last_seq,
                acked_seq = stats.acked_seq,
                "journal client stopped"
            );
        }
    }
}
