//! Protocol types shared by `policy-kernel` and `policy-agent`.
//!
//! `agent` is the kernel ↔ agent protocol of the engine specification
//! (§3.3 discovery, §3.6 execution) compiled with tonic. Envoy's ext_proc
//! types come from the `envoy-types` crate, not from here.

/// `policy.agent.v1`: discovery, chain execution and health.
pub mod agent {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("policy.agent.v1");
}
