//! Query filters (validated from `QueryRequest`), the fields of a record
//! they look at, and the order records are returned in.

use journal_client::{DecisionRecord, Verdict};
use policy_proto::journal::{QueryRequest, RecordEnvelope};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A `QueryRequest` that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("`{field}` is not an RFC 3339 time: `{value}`")]
    Time { field: &'static str, value: String },
    #[error("`decision` must be allow, warn or deny, not `{0}`")]
    Decision(String),
    #[error("`mode` must be normal, degraded, degraded:<tier> or emergency, not `{0}`")]
    Mode(String),
}

/// Which modes a query wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeFilter {
    /// Exactly this mode (`normal`, `emergency`, `degraded:<tier>`).
    Exact(String),
    /// `degraded`: every `degraded:<tier>`.
    AnyDegraded,
}

impl ModeFilter {
    /// Whether a record's mode matches.
    pub fn is_match(&self, mode: &str) -> bool {
        match self {
            Self::Exact(m) => m == mode,
            Self::AnyDegraded => mode == "degraded" || mode.starts_with("degraded:"),
        }
    }
}

/// A validated query. Time bounds are on the record timestamp, nanoseconds
/// since the Unix epoch: `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryFilter {
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    pub agent_id: Option<String>,
    pub route: Option<String>,
    pub decision: Option<Verdict>,
    pub mode: Option<ModeFilter>,
    /// At most this many records; `None` for all.
    pub limit: Option<u64>,
}

impl TryFrom<&QueryRequest> for QueryFilter {
    type Error = FilterError;

    fn try_from(q: &QueryRequest) -> Result<Self, FilterError> {
        let time = |field: &'static str, value: &str| -> Result<Option<i64>, FilterError> {
            if value.is_empty() {
                return Ok(None);
            }
            parse_ns(value).map(Some).ok_or_else(|| FilterError::Time {
                field,
                value: value.to_owned(),
            })
        };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let decision = match q.decision.as_str() {
            "" => None,
            "allow" => Some(Verdict::Allow),
            "warn" => Some(Verdict::Warn),
            "deny" => Some(Verdict::Deny),
            other => return Err(FilterError::Decision(other.to_owned())),
        };
        let mode = match q.mode.as_str() {
            "" => None,
            "degraded" => Some(ModeFilter::AnyDegraded),
            m @ ("normal" | "emergency") => Some(ModeFilter::Exact(m.to_owned())),
            m if m.len() > "degraded:".len() && m.starts_with("degraded:") => {
                Some(ModeFilter::Exact(m.to_owned()))
            }
            other => return Err(FilterError::Mode(other.to_owned())),
        };
        Ok(Self {
            since_ns: time("since", &q.since)?,
            until_ns: time("until", &q.until)?,
            agent_id: non_empty(&q.agent_id),
            route: non_empty(&q.route),
            decision,
            mode,
            limit: (q.limit > 0).then_some(q.limit),
        })
    }
}

impl QueryFilter {
    /// Whether a stored record matches.
    pub fn is_match(&self, agent_id: &str, meta: &RecordMeta) -> bool {
        self.since_ns.is_none_or(|s| meta.ts_ns >= s)
            && self.until_ns.is_none_or(|u| meta.ts_ns < u)
            && self.agent_id.as_deref().is_none_or(|a| a == agent_id)
            && self.route.as_deref().is_none_or(|r| r == meta.route)
            && self
                .decision
                .is_none_or(|d| d.as_str() == meta.decision.as_str())
            && self.mode.as_ref().is_none_or(|m| m.is_match(&meta.mode))
    }
}

/// The fields of a record that queries filter on, taken from its JSON.
/// A record whose JSON does not parse gets its receive time and empty
/// fields (it is stored and flagged, and found by agent or time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordMeta {
    pub ts_ns: i64,
    pub route: String,
    pub decision: String,
    pub mode: String,
}

impl RecordMeta {
    /// The meta of `parsed` (the record of an envelope), or a fallback at
    /// `received_ns`.
    pub fn of(parsed: Option<&DecisionRecord>, received_ns: i64) -> Self {
        match parsed {
            Some(r) => Self {
                ts_ns: parse_ns(&r.timestamp).unwrap_or(received_ns),
                route: r.route.clone(),
                decision: r.decision.as_str().to_owned(),
                mode: r.mode.clone(),
            },
            None => Self {
                ts_ns: received_ns,
                ..Self::default()
            },
        }
    }

    /// The meta of an envelope (parses its JSON).
    pub fn of_envelope(env: &RecordEnvelope, received_ns: i64) -> Self {
        Self::of(
            DecisionRecord::from_json(&env.record_json).ok().as_ref(),
            received_ns,
        )
    }
}

/// The position of a record in query order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderKey {
    pub ts_ns: i64,
    pub agent_id: String,
    pub seq: u64,
    pub boot_epoch: u64,
    /// 0 for the record that holds its key, 1.. for conflicting ones.
    pub variant: u32,
}

/// Nanoseconds since the Unix epoch of an RFC 3339 time (saturating).
pub fn parse_ns(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    Some(clamp_ns(t.unix_timestamp_nanos()))
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    clamp_ns(OffsetDateTime::now_utc().unix_timestamp_nanos())
}

fn clamp_ns(ns: i128) -> i64 {
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn filter_validates_and_matches() {
        let q = QueryRequest {
            since: "2026-11-23T00:00:00Z".into(),
            decision: "deny".into(),
            mode: "degraded".into(),
            ..QueryRequest::default()
        };
        let f = QueryFilter::try_from(&q).unwrap();
        let meta = RecordMeta {
            ts_ns: parse_ns("2026-11-23T00:00:01Z").unwrap(),
            route: "r".into(),
            decision: "deny".into(),
            mode: "degraded:cache".into(),
        };
        assert!(f.is_match("a", &meta));
        let normal = RecordMeta {
            mode: "normal".into(),
            ..meta.clone()
        };
        assert!(!f.is_match("a", &normal));
        for (field, bad) in [
            ("since", "yesterday"),
            ("decision", "maybe"),
            ("mode", "odd"),
        ] {
            let mut q = QueryRequest::default();
            match field {
                "since" => q.since = bad.into(),
                "decision" => q.decision = bad.into(),
                _ => q.mode = bad.into(),
            }
            assert!(QueryFilter::try_from(&q).is_err(), "{field}");
        }
    }
}
