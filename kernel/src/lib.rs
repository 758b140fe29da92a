//! policy-kernel: the Envoy-facing side of policy-engine.
//!
//! Owns `kernel-config.yaml` (engine specification §3.2): routes mapped to
//! policy chains, the agents that run them, and the default policy. This
//! crate does not evaluate policies; agents do.

mod config;

pub use config::{
    AgentEntry, ChainEntry, ConfigError, KernelConfig, ObservabilityConfig, PolicyChains, RetryConfig,
    RouteEntry, ServerConfig, TracingConfig,
};
