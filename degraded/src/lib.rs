//! Degraded mode (DESIGN §7, ADR-011): when the agent loses the journal, a
//! route's chain runs only if every policy in it may run on cached data —
//! whitelist, RBAC and platform-admin tiers, each within its maximum data
//! age — and is denied otherwise (two-person approvals, complex rules).
//!
//! - [`config`]: the agent's `degraded:` settings.
//! - [`mode`]: normal / degraded with hysteresis, driven by the journal
//!   client's connectivity.
//! - [`verdict`]: what a chain may do in degraded mode.
//! - [`snapshot`]: the data synced from the journal, kept in memory and on
//!   disk with the time it was synced.

pub mod config;
pub mod mode;
pub mod snapshot;
pub mod verdict;

pub use config::{DegradedConfig, EmergencyConfig};
pub use mode::{Mode, ModeTracker};
pub use policy_rego::Tier;
pub use snapshot::{Snapshot, SnapshotStore};
pub use verdict::{Verdict, verdict};
