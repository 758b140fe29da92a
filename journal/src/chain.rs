//! Per-agent hash chains: what a record's flag is when it is appended, and
//! the walk over stored records that `Verify` reports.
//!
//! Both storage backends call these functions, so the rules live in one
//! place and the shared test suite pins them for both.

use journal_client::{DecisionRecord, GENESIS_HASH, record_hash};
use policy_proto::journal::{AgentChain, RecordEnvelope};

/// Why a stored record does not simply continue its agent's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// `hash` is not the SHA-256 of `record_json`, the JSON does not parse,
    /// or the envelope's fields disagree with the JSON.
    HashMismatch,
    /// `seq` is beyond the chain head + 1: records are missing.
    SeqGap,
    /// `prev_hash` is not the hash of the head, or `seq` is not beyond the
    /// head (a rewound or late record).
    ChainBreak,
    /// Another record with the same (agent_id, boot_epoch, seq) but different
    /// content was stored first.
    Conflict,
}

impl Flag {
    /// The stable string stored in `StoredRecord.flag`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HashMismatch => "hash_mismatch",
            Self::SeqGap => "seq_gap",
            Self::ChainBreak => "chain_break",
            Self::Conflict => "conflict",
        }
    }
}

/// The chain head of one agent: the highest seq stored and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

impl Head {
    /// The `prev_hash` the next record must carry.
    pub fn expected_prev(&self) -> &str {
        if self.seq == 0 {
            GENESIS_HASH
        } else {
            &self.hash
        }
    }
}

/// Whether `env` is internally consistent: its hash is the SHA-256 of its
/// JSON and the JSON repeats the envelope's agent_id, boot_epoch, seq and
/// prev_hash. Returns the parsed record when it parses.
pub fn check_integrity(env: &RecordEnvelope) -> (bool, Option<DecisionRecord>) {
    let parsed = DecisionRecord::from_json(&env.record_json).ok();
    let hash_ok = record_hash(&env.record_json) == env.hash;
    let fields_ok = parsed.as_ref().is_some_and(|r| {
        r.agent_id == env.agent_id
            && r.boot_epoch == env.boot_epoch
            && r.seq == env.seq
            && r.prev_hash == env.prev_hash
    });
    (hash_ok && fields_ok, parsed)
}

/// The flag of a new (not duplicate, not conflicting) record appended after
/// `head`, and the head afterwards. The head only moves forward: a record
/// beyond it becomes the head even when flagged, so that one missing or
/// broken record is reported once, not for every record after it.
pub fn classify(head: &Head, env: &RecordEnvelope, intact: bool) -> (Option<Flag>, Head) {
    let flag = if !intact {
        Some(Flag::HashMismatch)
    } else if env.seq > head.seq + 1 {
        Some(Flag::SeqGap)
    } else if env.seq <= head.seq || env.prev_hash != head.expected_prev() {
        Some(Flag::ChainBreak)
    } else {
        None
    };
    let next = if env.seq > head.seq {
        Head {
            seq: env.seq,
            hash: env.hash.clone(),
        }
    } else {
        head.clone()
    };
    (flag, next)
}

/// Whether two envelopes with the same key are the same record (a re-send).
pub fn is_same_record(a: &RecordEnvelope, b: &RecordEnvelope) -> bool {
    a.hash == b.hash && a.prev_hash == b.prev_hash && a.record_json == b.record_json
}

/// Walks one agent's stored records in (seq, boot_epoch) order and collects
/// the problems `Verify` reports.
#[derive(Debug)]
pub struct ChainWalk {
    chain: AgentChain,
    prev: Option<(u64, u64, String)>,
}

impl ChainWalk {
    /// A walk over the records of `agent_id`.
    pub fn new(agent_id: &str) -> Self {
        Self {
            chain: AgentChain {
                agent_id: agent_id.to_owned(),
                ..AgentChain::default()
            },
            prev: None,
        }
    }

    /// Feeds the next record; `flag` is the flag stored with it.
    pub fn push(&mut self, env: &RecordEnvelope, flag: &str) {
        let problems = &mut self.chain.problems;
        if flag == Flag::Conflict.as_str() {
            problems.push(format!(
                "seq {} (boot_epoch {}): conflicting record with different content (hash {})",
                env.seq, env.boot_epoch, env.hash
            ));
            return;
        }
        self.chain.records += 1;
        if self.chain.records == 1 {
            self.chain.first_seq = env.seq;
        }
        self.chain.last_seq = self.chain.last_seq.max(env.seq);
        let (intact, _) = check_integrity(env);
        if !intact {
            problems.push(format!(
                "seq {}: hash mismatch (hash is not sha256 of the record, or envelope and record disagree)",
                env.seq
            ));
        }
        match &self.prev {
            None => {
                if env.seq > 1 {
                    problems.push(format!("seq 1..={} missing", env.seq - 1));
                } else if env.prev_hash != GENESIS_HASH {
                    problems.push(format!(
                        "seq {}: chain break (prev_hash is not the genesis hash)",
                        env.seq
                    ));
                }
            }
            Some((pseq, pepoch, phash)) => {
                if env.seq == *pseq {
                    problems.push(format!(
                        "seq {}: stored twice (boot_epoch {} and {})",
                        env.seq, pepoch, env.boot_epoch
                    ));
                } else if env.seq > pseq + 1 {
                    problems.push(format!("seq {}..={} missing", pseq + 1, env.seq - 1));
                } else if env.prev_hash != *phash {
                    problems.push(format!(
                        "seq {}: chain break (prev_hash is not the hash of seq {})",
                        env.seq, pseq
                    ));
                }
            }
        }
        self.prev = Some((env.seq, env.boot_epoch, env.hash.clone()));
    }

    /// The report for this agent.
    pub fn finish(self) -> AgentChain {
        self.chain
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(seq: u64, prev: &str, hash: &str) -> RecordEnvelope {
        RecordEnvelope {
            agent_id: "a".into(),
            boot_epoch: 1,
            seq,
            prev_hash: prev.into(),
            hash: hash.into(),
            record_json: Vec::new(),
        }
    }

    #[test]
    fn classify_flags_gap_break_and_rewind() {
        let head = Head {
            seq: 3,
            hash: "h3".into(),
        };
        let (f, h) = classify(&head, &env(4, "h3", "h4"), true);
        assert_eq!((f, h.seq), (None, 4));
        let (f, h) = classify(&head, &env(6, "h5", "h6"), true);
        assert_eq!((f, h.seq), (Some(Flag::SeqGap), 6));
        let (f, h) = classify(&head, &env(4, "xx", "h4"), true);
        assert_eq!((f, h.seq), (Some(Flag::ChainBreak), 4));
        let (f, h) = classify(&head, &env(2, "h1", "h2"), true);
        assert_eq!((f, h), (Some(Flag::ChainBreak), head.clone()));
        let (f, _) = classify(&head, &env(4, "h3", "h4"), false);
        assert_eq!(f, Some(Flag::HashMismatch));
        let (f, _) = classify(&Head::default(), &env(1, GENESIS_HASH, "h1"), true);
        assert_eq!(f, None);
    }

    #[test]
    fn walk_reports_gaps_and_breaks() {
        let mut w = ChainWalk::new("a");
        w.push(&env(2, "h1", "h2"), "");
        w.push(&env(3, "h2", "h3"), "");
        w.push(&env(6, "h5", "h6"), "seq_gap");
        w.push(&env(7, "zz", "h7"), "chain_break");
        let c = w.finish();
        assert_eq!((c.records, c.first_seq, c.last_seq), (4, 2, 7));
        let text = c.problems.join("\n");
        assert!(text.contains("seq 1..=1 missing"), "{text}");
        assert!(text.contains("seq 4..=5 missing"), "{text}");
        assert!(text.contains("seq 7: chain break"), "{text}");
    }
}
