//! policy-bench: the decision benchmarks of DESIGN §10 and their baselines.
//!
//! [`Fixture`] builds one agent the way the process does
//! (`Agent::with_data`, default configuration) with 1,000 hashed API keys and
//! an RSA public key as data, and one request-phase `PolicyRequest` per spec
//! route of `deploy/kernel-config.yaml`, with the chain's metadata encoded as
//! the kernel sends it. Each [`Op`] is one slice of a decision (input build,
//! VM or interpreter evaluation, response conversion, or the whole
//! `Agent::execute`), and [`Table`] prints µs per decision with the
//! interpreter/VM ratio. The criterion bench (`benches/decision.rs`) and the
//! `decision_report` binary both measure through these. Nothing here is used
//! by the engine itself.

mod credentials;
mod fixture;
mod table;

pub use credentials::{RsaSigner, sha256_hex};
pub use fixture::{API_KEYS, Case, Fixture, KERNEL_CONFIG, Op, never_limited_kernel_config};
pub use table::{Row, TARGET_US, Table};
