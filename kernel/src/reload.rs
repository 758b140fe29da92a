//! Reload without downtime: on SIGHUP or when the config file's content
//! changes, the file is re-read and validated, agents new to it are
//! discovered, and a new snapshot replaces the old one atomically. Streams
//! already open finish on the snapshot they started with. A config that
//! does not validate is rejected (logged, counted as a failed reload) and
//! the old one stays in force.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::signal::unix::Signal;

use crate::config::{ConfigError, KernelConfig};
use crate::kernel::State;
use crate::snapshot::{Snapshot, SnapshotError};

/// Why a reload was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("agent client: {0}")]
    AgentClient(tonic::transport::Error),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// The last reload attempt, as `/health/ready` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    /// `success` or `failure`.
    pub status: &'static str,
    /// The config version in force after the attempt.
    pub version: u64,
    pub error: Option<String>,
    pub at_unix_ms: u64,
}

/// Re-reads, validates and swaps the configuration. Reloads never overlap.
pub(crate) async fn reload(state: &State) -> Result<u64, ReloadError> {
    let _one_at_a_time = state.reload_lock.lock().await;
    let result = try_reload(state).await;
    let version = state.snapshot.load().version;
    state.metrics.reload(result.is_ok());
    let error = match &result {
        Ok(v) => {
            tracing::info!(version = v, "configuration reloaded");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, version, "configuration reload rejected, the previous configuration stays");
            Some(e.to_string())
        }
    };
    let at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    state.last_reload.store(Some(Arc::new(ReloadStatus {
        status: if error.is_none() {
            "success"
        } else {
            "failure"
        },
        version,
        error,
        at_unix_ms,
    })));
    result
}

async fn try_reload(state: &State) -> Result<u64, ReloadError> {
    // Fingerprint first: a change racing with the load triggers one more reload, never none.
    *state.seen.lock() = fingerprint(&state.config_path);
    let config = KernelConfig::load(&state.config_path)?;
    let current = state.snapshot.load_full();
    warn_restart_only(&current.config, &config);
    let handles = state
        .registry
        .prepare(&config.agents)
        .await
        .map_err(ReloadError::AgentClient)?;
    let version = current.version + 1;
    let snapshot = Snapshot::try_new(config, handles.clone(), version)?;
    snapshot.log_invalid_routes(None);
    // Chains of the new config compile before it takes traffic.
    snapshot.warm_up(None).await;
    state.snapshot.store(Arc::new(snapshot));
    state.registry.commit(&handles);
    Ok(version)
}

/// Settings read once at start; a change is logged and waits for a restart.
fn warn_restart_only(old: &KernelConfig, new: &KernelConfig) {
    let changed = [
        ("server.address", old.server.address != new.server.address),
        ("server.port", old.server.port != new.server.port),
        (
            "server.max_concurrent_streams",
            old.server.max_concurrent_streams != new.server.max_concurrent_streams,
        ),
        (
            "observability.metrics_port",
            old.observability.metrics_port != new.observability.metrics_port,
        ),
        (
            "observability.log_level",
            old.observability.log_level != new.observability.log_level,
        ),
    ];
    for (field, _) in changed.iter().filter(|(_, c)| *c) {
        tracing::warn!(field, "changed setting takes effect at the next restart");
    }
}

/// The identity of a config file's content.
pub(crate) type Fingerprint = (usize, u64);

/// The file's content identity; `None` when it cannot be read right now
/// (for example while an editor replaces it).
pub(crate) fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some((bytes.len(), h.finish()))
}

async fn hangup(signal: &mut Option<Signal>) {
    let received = match signal {
        Some(s) => s.recv().await.is_some(),
        None => false,
    };
    if !received {
        // No SIGHUP watch (or the stream ended): never fire.
        std::future::pending::<()>().await;
    }
}

/// Reloads on SIGHUP and whenever the file's content changes (checked every
/// `interval`); runs until aborted.
pub(crate) async fn watch(
    state: Arc<State>,
    mut sighup: Option<Signal>,
    interval: Option<Duration>,
) {
    let path = state.config_path.clone();
    loop {
        let poll = async {
            match interval {
                Some(i) => tokio::time::sleep(i).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = hangup(&mut sighup) => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = reload(&state).await;
            }
            () = poll => {
                let now = fingerprint(&path);
                if now.is_some() && now != *state.seen.lock() {
                    tracing::info!(file = %path.display(), "configuration file changed: reloading");
                    let _ = reload(&state).await;
                }
            }
        }
    }
}
