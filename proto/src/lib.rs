//! Protocol types shared by `policy-kernel`, `policy-agent` and `policy-journal`.
//!
//! `agent` is the kernel ↔ agent protocol of the engine specification
//! (§3.3 discovery, §3.6 execution) compiled with tonic. Envoy's ext_proc
//! types come from the `envoy-types` crate, not from here.

/// `policy.agent.v1`: discovery, chain execution and health.
pub mod agent {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("policy.agent.v1");
}

/// `policy.journal.v1`: decision records from agents to policy-journal, and
/// the journal's query and verification API.
pub mod journal {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("policy.journal.v1");
}
