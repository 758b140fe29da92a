//! [`LocalLog`] on sled plus a write-ahead file, with group commit.
//!
//! `append` writes the record's frame to the write-ahead file (one
//! `write_all`, no fsync: it is in the kernel once the call returns, so it
//! survives kill -9) and queues it in memory. The group commit thread
//! inserts queued records into sled and calls sled's `flush` (write + fsync)
//! every `group_commit_interval`, or sooner when `group_commit_max_batch`
//! records wait, then advances `synced_seq`, wakes `wait_synced` and releases
//! the write-ahead segments sled now covers. Open replays write-ahead records
//! newer than sled's last one. sled's insert is most of the cost of a record,
//! which is why it happens off the decision path.

use std::collections::VecDeque;
use std::fs::{self, File, TryLockError};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use policy_proto::journal::RecordEnvelope;

use super::codec::{self, KEY_ACKED, KEY_AGENT_ID, KEY_BOOT_EPOCH, Stored, record_key};
use super::wal::{self, Wal};
use super::{Appended, LocalLog, LogError, LogStats};
use crate::DecisionRecord;
use crate::config::{LocalLogConfig, OnFull};

mod group_commit;

/// How long `open` retries the directory lock before reporting it taken.
const DIR_LOCK_WAIT: Duration = Duration::from_millis(300);
/// How long `open` retries sled's own file lock, which a log dropped a
/// moment ago in this process may still hold from a background thread.
const SLED_LOCK_WAIT: Duration = Duration::from_secs(5);
const SLED_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// The sled-backed local log. Dropping it flushes and unlocks the directory.
pub struct SledLog {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
    /// Holds the exclusive lock on `<dir>/LOCK` while open.
    _lock: File,
}

struct Shared {
    db: sled::Db,
    agent_id: String,
    boot_epoch: u64,
    interval: Duration,
    max_batch: u64,
    max_bytes: u64,
    on_full: OnFull,
    state: Mutex<State>,
    /// Serializes `ack` calls and the group commit's inserts into sled
    /// (appends are not blocked by either).
    ack_lock: Mutex<()>,
    sync: Mutex<SyncState>,
    /// Wakes the flusher.
    work: Condvar,
    /// Wakes `wait_synced`.
    synced: Condvar,
    dropped: AtomicU64,
    denied: AtomicU64,
}

/// Guarded by `Shared::state`; appends hold it for their whole duration.
struct State {
    last_seq: u64,
    last_hash: [u8; 32],
    acked_seq: u64,
    pending_records: u64,
    pending_bytes: u64,
    wal: Wal,
    /// Records in the write-ahead file but not yet in sled, oldest first
    /// (seq, stored bytes). Under `ack_lock`, sled holds exactly the
    /// unacknowledged records before the first of these.
    unflushed: VecDeque<(u64, Arc<[u8]>)>,
    value: Vec<u8>,
    frame: Vec<u8>,
}

#[derive(Default)]
struct SyncState {
    /// Highest seq inserted into sled.
    last_seq: u64,
    /// Highest seq fsynced.
    synced_seq: u64,
    /// An acknowledgement deleted records since the last flush.
    ack_dirty: bool,
    shutdown: bool,
}

impl SledLog {
    /// Opens (or creates) the log in `config.dir`, recovers write-ahead
    /// records, increments the boot epoch and starts the group commit.
    pub fn open(config: LocalLogConfig) -> Result<Self, LogError> {
        config.validate()?;
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(|source| LogError::Io {
            path: dir.clone(),
            source,
        })?;
        let lock = lock_dir(&dir)?;
        let db = open_sled(&dir.join("db"))?;
        match db.get(KEY_AGENT_ID)? {
            Some(stored) if stored.as_ref() != config.agent_id.as_bytes() => {
                return Err(LogError::AgentMismatch {
                    dir,
                    stored: String::from_utf8_lossy(&stored).into_owned(),
                    configured: config.agent_id,
                });
            }
            Some(_) => {}
            None => {
                db.insert(KEY_AGENT_ID, config.agent_id.as_bytes())?;
            }
        }
        let acked = match db.get(KEY_ACKED)? {
            Some(v) => Some(decode_acked(&v)?),
            None => None,
        };
        let acked_seq = acked.map_or(0, |(seq, _)| seq);
        let mut head = match db.range(record_key(0)..=record_key(u64::MAX)).next_back() {
            Some(item) => {
                let s = Stored::decode(&item?.1)?;
                (s.seq, s.hash)
            }
            None => acked.unwrap_or((0, [0u8; 32])),
        };

        let recovered = wal::recover(&dir)?;
        let mut replayed = 0u64;
        for payload in &recovered.payloads {
            let Ok(s) = Stored::decode(payload) else {
                tracing::warn!(
                    head = head.0,
                    "unreadable write-ahead record; later ones are ignored"
                );
                break;
            };
            if s.seq <= head.0 {
                continue;
            }
            if !s.is_intact() || s.seq != head.0 + 1 || s.prev_hash != head.1 {
                tracing::warn!(
                    seq = s.seq,
                    head = head.0,
                    "write-ahead record does not continue the chain; later ones are ignored"
                );
                break;
            }
            db.insert(record_key(s.seq), payload.as_slice())?;
            head = (s.seq, s.hash);
            replayed += 1;
        }
        if recovered.torn {
            tracing::info!("local log: torn write-ahead tail ignored");
        }

        let (mut pending_records, mut pending_bytes) = (0u64, 0u64);
        for item in db.range(record_key(0)..=record_key(u64::MAX)) {
            pending_records += 1;
            pending_bytes += item?.1.len() as u64;
        }
        let boot_epoch = match db.get(KEY_BOOT_EPOCH)? {
            Some(v) => codec::be_u64(&v) + 1,
            None => 1,
        };
        db.insert(KEY_BOOT_EPOCH, &boot_epoch.to_be_bytes())?;
        db.flush()?;
        let wal = Wal::start(&dir, recovered.next_id, &recovered.segments)?;
        tracing::info!(
            dir = %dir.display(),
            boot_epoch,
            last_seq = head.0,
            acked_seq,
            replayed,
            "local log open"
        );

        let shared = Arc::new(Shared {
            db,
            agent_id: config.agent_id,
            boot_epoch,
            interval: config.group_commit_interval,
            max_batch: config.group_commit_max_batch as u64,
            max_bytes: config.max_bytes,
            on_full: config.on_full,
            state: Mutex::new(State {
                last_seq: head.0,
                last_hash: head.1,
                acked_seq,
                pending_records,
                pending_bytes,
                wal,
                unflushed: VecDeque::new(),
                value: Vec::new(),
                frame: Vec::new(),
            }),
            ack_lock: Mutex::new(()),
            sync: Mutex::new(SyncState {
                last_seq: head.0,
                synced_seq: head.0,
                ack_dirty: false,
                shutdown: false,
            }),
            work: Condvar::new(),
            synced: Condvar::new(),
            dropped: AtomicU64::new(0),
            denied: AtomicU64::new(0),
        });
        let flusher = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("journal-log-flush".into())
                .spawn(move || shared.run_flusher())
                .map_err(|source| LogError::Io {
                    path: dir.clone(),
                    source,
                })?
        };
        Ok(Self {
            shared,
            flusher: Some(flusher),
            _lock: lock,
        })
    }
}

fn lock_dir(dir: &Path) -> Result<File, LogError> {
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| LogError::Io {
            path: path.clone(),
            source,
        })?;
    // A process forking in this moment briefly holds a copy of a closed
    // log's descriptor (until its exec), so a lock that was just released
    // may still look taken: retry for a short while.
    let deadline = Instant::now() + DIR_LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(LogError::Locked {
                    dir: dir.to_owned(),
                });
            }
            Err(TryLockError::Error(source)) => return Err(LogError::Io { path, source }),
        }
    }
}

fn open_sled(path: &Path) -> Result<sled::Db, LogError> {
    let deadline = Instant::now() + SLED_LOCK_WAIT;
    loop {
        // The group commit flushes; sled's own periodic flush stays off.
        match sled::Config::new()
            .path(path)
            .cache_capacity(SLED_CACHE_BYTES)
            .flush_every_ms(None)
            .open()
        {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}

fn decode_acked(v: &[u8]) -> Result<(u64, [u8; 32]), LogError> {
    if v.len() != 40 {
        return Err(LogError::Corrupt {
            reason: "acknowledged head entry has the wrong length",
        });
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&v[8..]);
    Ok((codec::be_u64(&v[..8]), hash))
}

impl LocalLog for SledLog {
    fn append(&self, mut record: DecisionRecord) -> Result<Appended, LogError> {
        let sh = &*self.shared;
        let mut guard = sh.state.lock();
        let st = &mut *guard;
        let seq = st.last_seq + 1;
        record.agent_id.clone_from(&sh.agent_id);
        record.boot_epoch = sh.boot_epoch;
        record.seq = seq;
        record.prev_hash = hex::encode(st.last_hash);
        let json = record.to_json()?;
        let hash_hex = crate::record_hash(&json);
        let stored = Stored {
            boot_epoch: sh.boot_epoch,
            seq,
            prev_hash: st.last_hash,
            hash: codec::parse_hash(&hash_hex)?,
            json,
        };
        stored.encode_into(&mut st.value);
        let size = st.value.len() as u64;
        if st.pending_bytes + size > sh.max_bytes {
            return match sh.on_full {
                OnFull::Deny => {
                    sh.denied.fetch_add(1, Ordering::Relaxed);
                    Err(LogError::Full {
                        pending_bytes: st.pending_bytes,
                        record_bytes: size,
                        max_bytes: sh.max_bytes,
                    })
                }
                OnFull::DropWithCounter => {
                    sh.dropped.fetch_add(1, Ordering::Relaxed);
                    Ok(Appended::Dropped)
                }
            };
        }
        st.frame.clear();
        codec::frame_into(&st.value, &mut st.frame);
        st.wal.append(&st.frame, seq)?;
        let value = Arc::from(st.value.as_slice());
        st.unflushed.push_back((seq, value));
        st.last_seq = seq;
        st.last_hash = stored.hash;
        st.pending_records += 1;
        st.pending_bytes += size;
        let mut sy = sh.sync.lock();
        sy.last_seq = seq;
        let unsynced = seq - sy.synced_seq;
        if unsynced == 1 || unsynced >= sh.max_batch {
            sh.work.notify_one();
        }
        Ok(Appended::Logged {
            seq,
            hash: hash_hex,
        })
    }

    fn wait_synced(&self, seq: u64, timeout: Duration) -> Result<(), LogError> {
        let sh = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut sy = sh.sync.lock();
        while sy.synced_seq < seq {
            if sh.synced.wait_until(&mut sy, deadline).timed_out() && sy.synced_seq < seq {
                return Err(LogError::SyncTimeout {
                    seq,
                    synced_seq: sy.synced_seq,
                    timeout,
                });
            }
        }
        Ok(())
    }

    fn read_after(&self, after: u64, max: usize) -> Result<Vec<RecordEnvelope>, LogError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let sh = &*self.shared;
        // Queued records first: one that moves to sled meanwhile is inserted
        // before it leaves the queue, so the sled read below still sees it.
        let queued: Vec<(u64, Arc<[u8]>)> = {
            let st = sh.state.lock();
            let skip = st
                .unflushed
                .front()
                .map_or(0, |(front, _)| first.saturating_sub(*front));
            let skip = usize::try_from(skip).unwrap_or(usize::MAX);
            st.unflushed.iter().skip(skip).take(max).cloned().collect()
        };
        let mut out = Vec::with_capacity(max.min(1024));
        for item in sh
            .db
            .range(record_key(first)..=record_key(u64::MAX))
            .take(max)
        {
            let (_, value) = item?;
            out.push(Stored::decode(&value)?.into_envelope(&sh.agent_id));
        }
        // sled holds a prefix of the unacknowledged records, the queue the
        // rest (the two may overlap by what moved in between).
        let mut next = match out.last() {
            Some(e) => e.seq + 1,
            None => queued.first().map_or(first, |(seq, _)| *seq),
        };
        for (seq, value) in queued {
            if out.len() >= max {
                break;
            }
            if seq == next {
                out.push(Stored::decode(&value)?.into_envelope(&sh.agent_id));
                next += 1;
            }
        }
        Ok(out)
    }

    fn ack(&self, upto: u64) -> Result<(), LogError> {
        let sh = &*self.shared;
        // INVARIANT: while `ack_lock` is held nothing moves from the queue to
        // sled, and records up to the queue's front are immutable in sled.
        let _no_commit = sh.ack_lock.lock();
        let (acked, upto, queued_hash) = {
            let st = sh.state.lock();
            let upto = upto.min(st.last_seq);
            if upto <= st.acked_seq {
                return Ok(());
            }
            let queued = st.unflushed.iter().find(|(seq, _)| *seq == upto);
            let hash = match queued {
                Some((_, value)) => Some(Stored::decode(value)?.hash),
                None => None,
            };
            (st.acked_seq, upto, hash)
        };
        let mut batch = sled::Batch::default();
        let (mut records, mut bytes) = (0u64, 0u64);
        let mut head = queued_hash;
        for item in sh.db.range(record_key(acked + 1)..=record_key(upto)) {
            let (key, value) = item?;
            if Stored::peek_seq(&value) == Some(upto) {
                head = Some(Stored::decode(&value)?.hash);
            }
            records += 1;
            bytes += value.len() as u64;
            batch.remove(key);
        }
        let Some(hash) = head else {
            return Err(LogError::Corrupt {
                reason: "acknowledged record is missing from the store",
            });
        };
        let mut meta = Vec::with_capacity(40);
        meta.extend_from_slice(&upto.to_be_bytes());
        meta.extend_from_slice(&hash);
        batch.insert(KEY_ACKED, meta);
        sh.db.apply_batch(batch)?;
        {
            let mut st = sh.state.lock();
            while st.unflushed.front().is_some_and(|(seq, _)| *seq <= upto) {
                if let Some((_, value)) = st.unflushed.pop_front() {
                    records += 1;
                    bytes += value.len() as u64;
                }
            }
            st.acked_seq = upto;
            st.pending_records -= records;
            st.pending_bytes -= bytes;
        }
        sh.sync.lock().ack_dirty = true;
        sh.work.notify_one();
        Ok(())
    }

    fn stats(&self) -> LogStats {
        let sh = &*self.shared;
        let st = sh.state.lock();
        let synced_seq = sh.sync.lock().synced_seq;
        LogStats {
            last_seq: st.last_seq,
            acked_seq: st.acked_seq,
            synced_seq,
            pending_records: st.pending_records,
            pending_bytes: st.pending_bytes,
            dropped_total: sh.dropped.load(Ordering::Relaxed),
            denied_full_total: sh.denied.load(Ordering::Relaxed),
            boot_epoch: sh.boot_epoch,
        }
    }
}

impl SledLog {
    /// The agent whose records this log holds.
    pub fn agent_id(&self) -> &str {
        &self.shared.agent_id
    }

    #[cfg(test)]
    pub(crate) fn wal_bytes(&self) -> u64 {
        self.shared.state.lock().wal.bytes()
    }
}

impl Drop for SledLog {
    fn drop(&mut self) {
        self.shared.sync.lock().shutdown = true;
        self.shared.work.notify_all();
        if let Some(flusher) = self.flusher.take()
            && flusher.join().is_err()
        {
            tracing::error!("local log flusher panicked");
        }
        if let Err(e) = self.shared.db.flush() {
            tracing::error!(error = %e, "local log final flush failed");
        }
    }
}
