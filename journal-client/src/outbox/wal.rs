//! The write-ahead file: every record is written here with one `write_all`
//! (no fsync) before it goes into sled, so it survives the death of the
//! process between sled flushes. Segments whose records sled has flushed are
//! truncated or deleted; on open the surviving records are replayed into sled.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::LogError;
use super::codec;

/// A segment this large is closed once the group commit runs, and a new one
/// started, so the write-ahead data stays bounded under constant load.
const ROTATE_BYTES: u64 = 4 * 1024 * 1024;

struct Segment {
    id: u64,
    path: PathBuf,
    file: File,
    len: u64,
    /// Highest seq written to this segment (0 when empty).
    max_seq: u64,
}

/// The open write-ahead file.
pub struct Wal {
    dir: PathBuf,
    current: Segment,
    /// Closed segments, oldest first.
    retired: Vec<Segment>,
    /// Set when a failed write could not be rolled back: the file may now
    /// hold a torn frame followed by good ones, so nothing more is written.
    broken: bool,
}

/// What [`recover`] found.
pub struct Recovered {
    /// Frame payloads, oldest first.
    pub payloads: Vec<Vec<u8>>,
    /// The segment files read.
    pub segments: Vec<PathBuf>,
    /// Id for the next segment.
    pub next_id: u64,
    /// Whether a segment ended in a torn or corrupt frame.
    pub torn: bool,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("wal-{id:016x}.log"))
}

fn segment_id(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let hex = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    u64::from_str_radix(hex, 16).ok()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads every segment in `dir`.
pub fn recover(dir: &Path) -> Result<Recovered, LogError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if let Some(id) = segment_id(&path) {
            ids.push((id, path));
        }
    }
    ids.sort_unstable_by_key(|(id, _)| *id);
    let mut out = Recovered {
        payloads: Vec::new(),
        segments: Vec::new(),
        next_id: ids.last().map_or(0, |(id, _)| id + 1),
        torn: false,
    };
    for (_, path) in ids {
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let (frames, torn) = codec::read_frames(&bytes);
        out.torn |= torn;
        out.payloads.extend(frames.into_iter().map(<[u8]>::to_vec));
        out.segments.push(path);
    }
    Ok(out)
}

impl Wal {
    /// Starts segment `id` and removes `old` segments, whose records must
    /// already be durable in sled.
    pub fn start(dir: &Path, id: u64, old: &[PathBuf]) -> Result<Self, LogError> {
        let current = open_segment(dir, id)?;
        for path in old {
            fs::remove_file(path).map_err(io_err(path))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            current,
            retired: Vec::new(),
            broken: false,
        })
    }

    /// Appends one frame holding record `seq`. On error the file is rolled
    /// back to its previous length.
    pub fn append(&mut self, frame: &[u8], seq: u64) -> Result<(), LogError> {
        if self.broken {
            return Err(LogError::Poisoned {
                reason: "an earlier write-ahead write could not be rolled back",
            });
        }
        let seg = &mut self.current;
        if let Err(source) = seg.file.write_all(frame) {
            if seg.file.set_len(seg.len).is_err() {
                self.broken = true;
            }
            return Err(LogError::Io {
                path: seg.path.clone(),
                source,
            });
        }
        seg.len += frame.len() as u64;
        seg.max_seq = seg.max_seq.max(seq);
        Ok(())
    }

    /// Drops what sled holds durably up to `synced`: empties the current
    /// segment when all of it is synced, closes it when it is large, and
    /// deletes closed segments that are fully synced. Best effort: a segment
    /// left behind only costs replay time on the next open.
    pub fn release(&mut self, synced: u64) {
        if self.broken {
            return;
        }
        let seg = &mut self.current;
        if seg.len > 0 && seg.max_seq <= synced {
            match seg.file.set_len(0) {
                Ok(()) => {
                    seg.len = 0;
                    seg.max_seq = 0;
                }
                Err(e) => {
                    tracing::warn!(path = %seg.path.display(), error = %e, "cannot truncate write-ahead segment")
                }
            }
        } else if seg.len >= ROTATE_BYTES {
            match open_segment(&self.dir, seg.id + 1) {
                Ok(next) => self
                    .retired
                    .push(std::mem::replace(&mut self.current, next)),
                Err(e) => tracing::warn!(error = %e, "cannot start write-ahead segment"),
            }
        }
        self.retired.retain(|old| {
            if old.max_seq > synced {
                return true;
            }
            match fs::remove_file(&old.path) {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(path = %old.path.display(), error = %e, "cannot remove write-ahead segment");
                    true
                }
            }
        });
    }

    /// Bytes currently held in segments.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.current.len + self.retired.iter().map(|s| s.len).sum::<u64>()
    }
}

fn open_segment(dir: &Path, id: u64) -> Result<Segment, LogError> {
    let path = segment_path(dir, id);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    let len = file.metadata().map_err(io_err(&path))?.len();
    // INVARIANT: `start` only opens ids after every existing segment, so a
    // new segment is empty; a leftover would only hold older, replayed seqs.
    Ok(Segment {
        id,
        path,
        file,
        len,
        max_seq: 0,
    })
}
