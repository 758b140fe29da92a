//! The data degraded mode runs on: the last document synced from the
//! journal (role bindings, command whitelists, platform admins, approvals),
//! in memory and persisted next to the local log, so an agent restarted
//! during a partition still has it. The time it was last confirmed current
//! by the journal is kept with it (wall clock, so it survives restarts).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One synced version of the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u64,
    pub data: serde_json::Value,
    /// When the journal last confirmed this version current.
    #[serde(with = "time::serde::rfc3339")]
    pub synced_at: OffsetDateTime,
    /// The journal's time and author of the version.
    pub updated_at: String,
    pub updated_by: String,
}

/// Why the snapshot could not be persisted or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("degraded-mode snapshot {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("degraded-mode snapshot {path} is not a snapshot: {reason}")]
    Corrupt { path: String, reason: String },
}

/// The current snapshot.
#[derive(Debug)]
pub struct SnapshotStore {
    path: Option<PathBuf>,
    current: RwLock<Option<Arc<Snapshot>>>,
}

impl SnapshotStore {
    /// A store that keeps nothing on disk.
    pub fn in_memory() -> Self {
        Self {
            path: None,
            current: RwLock::new(None),
        }
    }

    /// The store persisted at `path`, with the snapshot found there if any.
    /// A file that is not a snapshot is an error, not an empty store: the
    /// caller decides (a corrupt cache must not silently look like none).
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let current = match std::fs::read(path) {
            Ok(bytes) => Some(Arc::new(
                serde_json::from_slice::<Snapshot>(&bytes).map_err(|e| SnapshotError::Corrupt {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(SnapshotError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            current: RwLock::new(current),
        })
    }

    /// The current snapshot, if any was ever synced.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.read().clone()
    }

    /// How old the data is at `now` (`None`: never synced).
    pub fn age(&self, now: OffsetDateTime) -> Option<Duration> {
        self.current.read().as_ref().map(|s| {
            let d = now - s.synced_at;
            Duration::try_from(d).unwrap_or(Duration::ZERO)
        })
    }

    /// Installs `snapshot` (persisted first: on error the old one stays).
    pub fn replace(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        self.persist(&snapshot)?;
        *self.current.write() = Some(Arc::new(snapshot));
        Ok(())
    }

    /// The journal confirmed `version` current at `at`. Returns false when
    /// the store holds another version (the caller must fetch it).
    pub fn confirm(&self, version: u64, at: OffsetDateTime) -> Result<bool, SnapshotError> {
        let Some(cur) = self.current() else {
            return Ok(false);
        };
        if cur.version != version {
            return Ok(false);
        }
        let mut next = (*cur).clone();
        next.synced_at = at;
        self.replace(next)?;
        Ok(true)
    }

    fn persist(&self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| SnapshotError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes = serde_json::to_vec(snapshot).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            // The rename is durable once the directory is synced.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(version: u64, at: OffsetDateTime) -> Snapshot {
        Snapshot {
            version,
            data: serde_json::json!({"role_bindings": {"alice": ["admin"]}}),
            synced_at: at,
            updated_at: "2026-11-23T00:00:00Z".into(),
            updated_by: "policyctl".into(),
        }
    }

    #[test]
    fn survives_a_restart_with_its_sync_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.json");
        let t0 = OffsetDateTime::now_utc() - time::Duration::seconds(100);
        {
            let s = SnapshotStore::open(&path).unwrap();
            assert!(s.current().is_none());
            assert_eq!(s.age(t0), None);
            s.replace(snap(3, t0)).unwrap();
        }
        let s = SnapshotStore::open(&path).unwrap();
        let cur = s.current().unwrap();
        assert_eq!(cur.version, 3);
        assert_eq!(cur.data["role_bindings"]["alice"][0], "admin");
        let age = s.age(t0 + time::Duration::seconds(42)).unwrap();
        assert_eq!(age.as_secs(), 42);
    }

    #[test]
    fn confirm_refreshes_only_the_held_version() {
        let s = SnapshotStore::in_memory();
        let t0 = OffsetDateTime::now_utc();
        assert!(!s.confirm(1, t0).unwrap());
        s.replace(snap(1, t0)).unwrap();
        assert!(!s.confirm(2, t0).unwrap());
        assert!(s.confirm(1, t0 + time::Duration::seconds(10)).unwrap());
        assert_eq!(
            s.age(t0 + time::Duration::seconds(10)).unwrap(),
            Duration::ZERO
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = SnapshotStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("is not a snapshot"), "{err}");
    }
}
