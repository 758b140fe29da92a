//! journal-client: the agent side of the decision journal.
//!
//! [`DecisionRecord`] is the record of one evaluated phase (DESIGN §6), with
//! secrets masked by [`mask`] before it is written anywhere. Records are
//! shared with `policy-journal`, which stores the exact bytes hashed here.

pub mod devcerts;
mod mask;
mod record;

pub use mask::{MASK, Masker};
pub use record::{
    BuiltinCall, DecisionRecord, GENESIS_HASH, PolicyOutcome, RequestSummary, Verdict, record_hash,
};
