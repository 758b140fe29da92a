//! Model test: random appends, acks, reads and reopens against a vector of
//! hashes. Seqs stay contiguous, the chain verifies, nothing acknowledged
//! reappears and nothing unacknowledged disappears.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use super::tests::{config, sample_record};
use super::*;
use crate::{GENESIS_HASH, record_hash};

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    /// Acknowledge this percentage of the pending records.
    Ack(u8),
    /// An ack beyond the last record (clamped by the log).
    AckBeyond,
    /// Page through from a point (percentage of the pending range).
    Read {
        from: u8,
        max: u8,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u8..12).prop_map(Op::Append),
        2 => (0u8..=100).prop_map(Op::Ack),
        1 => Just(Op::AckBeyond),
        2 => ((0u8..=100), (1u8..8)).prop_map(|(from, max)| Op::Read { from, max }),
        1 => Just(Op::Reopen),
    ]
}

struct Model {
    /// hashes[seq - 1]
    hashes: Vec<String>,
    acked: u64,
    boot: u64,
}

impl Model {
    fn last(&self) -> u64 {
        self.hashes.len() as u64
    }

    fn prev_of(&self, seq: u64) -> &str {
        if seq == 1 {
            GENESIS_HASH
        } else {
            &self.hashes[(seq - 2) as usize]
        }
    }

    fn check(&self, log: &SledLog) {
        let envs = log.read_after(0, usize::MAX).unwrap();
        let seqs: Vec<u64> = envs.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (self.acked + 1..=self.last()).collect::<Vec<_>>());
        for e in &envs {
            assert_eq!(e.hash, self.hashes[(e.seq - 1) as usize]);
            assert_eq!(e.hash, record_hash(&e.record_json));
            assert_eq!(e.prev_hash, self.prev_of(e.seq));
        }
        let s = log.stats();
        assert_eq!(
            (s.last_seq, s.acked_seq, s.pending_records, s.boot_epoch),
            (self.last(), self.acked, self.last() - self.acked, self.boot)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn local_log_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Some(SledLog::open(config(dir.path())).unwrap());
        let mut m = Model { hashes: Vec::new(), acked: 0, boot: 1 };
        for op in ops {
            let l = log.as_ref().unwrap();
            match op {
                Op::Append(n) => {
                    for i in 0..n {
                        match l.append(sample_record(u64::from(i))).unwrap() {
                            Appended::Logged { seq, hash } => {
                                prop_assert_eq!(seq, m.last() + 1);
                                m.hashes.push(hash);
                            }
                            Appended::Dropped => prop_assert!(false, "dropped"),
                        }
                    }
                }
                Op::Ack(pct) => {
                    let upto = m.acked + (m.last() - m.acked) * u64::from(pct) / 100;
                    l.ack(upto).unwrap();
                    m.acked = m.acked.max(upto);
                }
                Op::AckBeyond => {
                    l.ack(m.last() + 5).unwrap();
                    m.acked = m.last();
                }
                Op::Read { from, max } => {
                    let after = m.acked + (m.last() - m.acked) * u64::from(from) / 100;
                    let page = l.read_after(after, usize::from(max)).unwrap();
                    let want: Vec<u64> =
                        (after + 1..=m.last()).take(usize::from(max)).collect();
                    prop_assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), want);
                }
                Op::Reopen => {
                    drop(log.take());
                    log = Some(SledLog::open(config(dir.path())).unwrap());
                    m.boot += 1;
                }
            }
            m.check(log.as_ref().unwrap());
        }
    }
}
