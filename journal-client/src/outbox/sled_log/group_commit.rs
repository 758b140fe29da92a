//! The group commit thread: moves queued records into sled, fsyncs, and
//! tells `wait_synced` and the write-ahead file how far it got.

use std::time::{Duration, Instant};

use super::Shared;
use crate::outbox::LogError;
use crate::outbox::codec::record_key;

impl Shared {
    pub(super) fn run_flusher(&self) {
        let mut sy = self.sync.lock();
        loop {
            while !sy.shutdown && sy.last_seq <= sy.synced_seq && !sy.ack_dirty {
                self.work.wait(&mut sy);
            }
            if !sy.shutdown {
                // Group: wait for the interval to pass or the batch to fill.
                let deadline = Instant::now() + self.interval;
                while !sy.shutdown && sy.last_seq - sy.synced_seq < self.max_batch {
                    if self.work.wait_until(&mut sy, deadline).timed_out() {
                        break;
                    }
                }
            }
            let target = sy.last_seq;
            if target > sy.synced_seq || sy.ack_dirty {
                sy.ack_dirty = false;
                drop(sy);
                let committed = self.commit(target);
                sy = self.sync.lock();
                match committed {
                    Ok(()) => {
                        sy.synced_seq = sy.synced_seq.max(target);
                        self.synced.notify_all();
                        drop(sy);
                        self.state.lock().wal.release(target);
                        sy = self.sync.lock();
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "local log commit failed; retrying");
                        sy.ack_dirty = true;
                        if sy.shutdown {
                            return;
                        }
                        let deadline =
                            Instant::now() + self.interval.max(Duration::from_millis(10));
                        self.work.wait_until(&mut sy, deadline);
                        continue;
                    }
                }
            }
            if sy.shutdown && sy.last_seq <= sy.synced_seq {
                return;
            }
        }
    }

    /// Inserts the queued records up to `target` into sled and fsyncs.
    fn commit(&self, target: u64) -> Result<(), LogError> {
        {
            let _no_ack = self.ack_lock.lock();
            let queued: Vec<_> = {
                let st = self.state.lock();
                st.unflushed
                    .iter()
                    .take_while(|(seq, _)| *seq <= target)
                    .cloned()
                    .collect()
            };
            if let Some(&(last, _)) = queued.last() {
                let mut batch = sled::Batch::default();
                for (seq, value) in &queued {
                    batch.insert(&record_key(*seq), &**value);
                }
                self.db.apply_batch(batch)?;
                let mut st = self.state.lock();
                while st.unflushed.front().is_some_and(|(seq, _)| *seq <= last) {
                    st.unflushed.pop_front();
                }
            }
        }
        self.db.flush()?;
        Ok(())
    }
}
