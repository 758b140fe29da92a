//! What an append writes: the backend-independent part of
//! [`super::Store::append`]. Given the chain head and a way to look up the
//! records already stored under a key, decides for each record of a batch
//! whether it is a duplicate (skipped), a conflict, or new (with its flag).

use policy_proto::journal::RecordEnvelope;

use super::filter::RecordMeta;
use super::{AppendOutcome, StoreError};
use crate::chain::{Flag, Head, check_integrity, classify, is_same_record};

/// A record to write.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub env: RecordEnvelope,
    pub flag: Option<Flag>,
    /// 0 for the record that holds its key, 1.. for conflicting ones.
    pub variant: u32,
    pub meta: RecordMeta,
}

impl Planned {
    pub fn flag_str(&self) -> &'static str {
        self.flag.map(Flag::as_str).unwrap_or_default()
    }
}

/// The result of planning a batch.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub writes: Vec<Planned>,
    pub head: Head,
    pub outcome: AppendOutcome,
}

/// Plans `records` of `agent_id` after `head`. `existing(boot_epoch, seq)`
/// returns the records already stored under that key.
pub(crate) fn plan_batch(
    agent_id: &str,
    head: Head,
    records: &[RecordEnvelope],
    received_ns: i64,
    mut existing: impl FnMut(u64, u64) -> Result<Vec<RecordEnvelope>, StoreError>,
) -> Result<Plan, StoreError> {
    validate_agent(agent_id)?;
    if let Some(env) = records.iter().find(|e| e.agent_id != agent_id) {
        return Err(StoreError::WrongAgent {
            expected: agent_id.to_owned(),
            found: env.agent_id.clone(),
        });
    }
    let mut plan = Plan {
        head,
        ..Plan::default()
    };
    for env in records {
        let mut same_key = existing(env.boot_epoch, env.seq)?;
        same_key.extend(
            plan.writes
                .iter()
                .filter(|p| p.env.seq == env.seq && p.env.boot_epoch == env.boot_epoch)
                .map(|p| p.env.clone()),
        );
        if same_key.iter().any(|e| is_same_record(e, env)) {
            plan.outcome.duplicates += 1;
            continue;
        }
        let (intact, parsed) = check_integrity(env);
        let meta = RecordMeta::of(parsed.as_ref(), received_ns);
        let (flag, variant) = if same_key.is_empty() {
            let (flag, next) = classify(&plan.head, env, intact);
            plan.head = next;
            (flag, 0)
        } else {
            let variant = u32::try_from(same_key.len()).unwrap_or(u32::MAX);
            (Some(Flag::Conflict), variant)
        };
        plan.outcome.stored += 1;
        if let Some(f) = flag {
            plan.outcome.flagged.push((env.seq, f.as_str()));
        }
        plan.writes.push(Planned {
            env: env.clone(),
            flag,
            variant,
            meta,
        });
    }
    plan.outcome.acked_seq = plan.head.seq;
    Ok(plan)
}

/// Agent ids are certificate common names: non-empty, no control characters.
pub(crate) fn validate_agent(agent_id: &str) -> Result<(), StoreError> {
    if agent_id.is_empty() || agent_id.chars().any(char::is_control) {
        return Err(StoreError::InvalidAgent(agent_id.to_owned()));
    }
    Ok(())
}
