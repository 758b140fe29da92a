//! Configuration of the local log and of the streaming client, as they appear
//! in the agent's configuration file. Durations are whole milliseconds in the
//! file (`*_ms` keys) and [`Duration`]s in Rust.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("`{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("`{field}` must be at least {min}, got {value}")]
    TooSmall {
        field: &'static str,
        min: u64,
        value: u64,
    },
    #[error("`{field}` ({value} ms) must not exceed `{limit_field}` ({limit} ms)")]
    Order {
        field: &'static str,
        value: u64,
        limit_field: &'static str,
        limit: u64,
    },
    #[error("`endpoint` must be an `https://host:port` url, got `{endpoint}`")]
    Endpoint { endpoint: String },
}

/// What [`crate::LocalLog::append`] does when the pending (not yet
/// acknowledged) records would exceed `max_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Refuse the record ([`crate::LogError::Full`]); the agent answers deny.
    #[default]
    Deny,
    /// Drop the record without consuming a sequence number and count it.
    DropWithCounter,
}

/// The agent's durable local log (sled plus a write-ahead file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalLogConfig {
    /// Directory of the log; created if missing, locked while open.
    pub dir: PathBuf,
    /// This agent's identity (the common name of its client certificate).
    pub agent_id: String,
    /// Longest time records wait to be grouped into one fsync, milliseconds
    /// (default 2).
    #[serde(
        rename = "group_commit_interval_ms",
        with = "millis",
        default = "defaults::group_commit_interval"
    )]
    pub group_commit_interval: Duration,
    /// Pending records that trigger an fsync before the interval ends
    /// (default 512).
    #[serde(default = "defaults::group_commit_max_batch")]
    pub group_commit_max_batch: usize,
    /// Bytes of records not yet acknowledged by the journal (default 256 MiB).
    #[serde(default = "defaults::max_bytes")]
    pub max_bytes: u64,
    /// What to do when `max_bytes` is reached (default `deny`).
    #[serde(default)]
    pub on_full: OnFull,
}

impl LocalLogConfig {
    /// A configuration with the defaults.
    pub fn new(dir: impl Into<PathBuf>, agent_id: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            agent_id: agent_id.into(),
            group_commit_interval: defaults::group_commit_interval(),
            group_commit_max_batch: defaults::group_commit_max_batch(),
            max_bytes: defaults::max_bytes(),
            on_full: OnFull::default(),
        }
    }

    /// Checks the values [`crate::SledLog::open`] relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dir.as_os_str().is_empty() {
            return Err(ConfigError::Empty { field: "dir" });
        }
        if self.agent_id.is_empty() {
            return Err(ConfigError::Empty { field: "agent_id" });
        }
        at_least(
            "group_commit_max_batch",
            self.group_commit_max_batch as u64,
            1,
        )?;
        at_least("max_bytes", self.max_bytes, 1024)?;
        Ok(())
    }
}

/// The streaming client to `policy-journal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `https://host:port` of the journal.
    pub endpoint: String,
    /// PEM file of the CA that signed the journal's certificate.
    pub ca_cert: PathBuf,
    /// PEM file of this agent's client certificate.
    pub cert: PathBuf,
    /// PEM file of this agent's private key.
    pub key: PathBuf,
    /// Name to verify the journal's certificate against, when it differs from
    /// the endpoint's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Records per `AppendRequest` (default 256).
    #[serde(default = "defaults::batch_max")]
    pub batch_max: usize,
    /// Batches sent and not yet acknowledged (default 4).
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// First reconnect delay, milliseconds (default 100); doubles per failure.
    #[serde(
        rename = "backoff_initial_ms",
        with = "millis",
        default = "defaults::backoff_initial"
    )]
    pub backoff_initial: Duration,
    /// Longest reconnect delay, milliseconds (default 5000).
    #[serde(
        rename = "backoff_max_ms",
        with = "millis",
        default = "defaults::backoff_max"
    )]
    pub backoff_max: Duration,
    /// TCP + TLS connect timeout, milliseconds (default 5000).
    #[serde(
        rename = "connect_timeout_ms",
        with = "millis",
        default = "defaults::connect_timeout"
    )]
    pub connect_timeout: Duration,
    /// A stream with batches in flight and no acknowledgement for this long is
    /// broken, milliseconds (default 30000).
    #[serde(
        rename = "ack_timeout_ms",
        with = "millis",
        default = "defaults::ack_timeout"
    )]
    pub ack_timeout: Duration,
    /// How often the log is checked for new records without a notification,
    /// milliseconds (default 200).
    #[serde(
        rename = "poll_interval_ms",
        with = "millis",
        default = "defaults::poll_interval"
    )]
    pub poll_interval: Duration,
    /// HTTP/2 keep-alive ping interval, milliseconds (default 10000).
    #[serde(
        rename = "keepalive_interval_ms",
        with = "millis",
        default = "defaults::keepalive_interval"
    )]
    pub keepalive_interval: Duration,
    /// Time `shutdown` spends shipping what is left, milliseconds (default 5000).
    #[serde(
        rename = "shutdown_grace_ms",
        with = "millis",
        default = "defaults::shutdown_grace"
    )]
    pub shutdown_grace: Duration,
}

impl ClientConfig {
    /// A configuration with the defaults.
    pub fn new(
        endpoint: impl Into<String>,
        ca_cert: impl Into<PathBuf>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            ca_cert: ca_cert.into(),
            cert: cert.into(),
            key: key.into(),
            server_name: None,
            batch_max: defaults::batch_max(),
            max_in_flight: defaults::max_in_flight(),
            backoff_initial: defaults::backoff_initial(),
            backoff_max: defaults::backoff_max(),
            connect_timeout: defaults::connect_timeout(),
            ack_timeout: defaults::ack_timeout(),
            poll_interval: defaults::poll_interval(),
            keepalive_interval: defaults::keepalive_interval(),
            shutdown_grace: defaults::shutdown_grace(),
        }
    }

    /// Checks the values the client relies on (files are read on connect).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rest = self.endpoint.strip_prefix("https://");
        if rest.is_none_or(|host| host.is_empty() || host.starts_with(':')) {
            return Err(ConfigError::Endpoint {
                endpoint: self.endpoint.clone(),
            });
        }
        for (field, path) in [
            ("ca_cert", &self.ca_cert),
            ("cert", &self.cert),
            ("key", &self.key),
        ] {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::Empty { field });
            }
        }
        at_least("batch_max", self.batch_max as u64, 1)?;
        at_least("max_in_flight", self.max_in_flight as u64, 1)?;
        at_least_ms("backoff_initial_ms", self.backoff_initial, 1)?;
        at_least_ms("poll_interval_ms", self.poll_interval, 1)?;
        at_least_ms("ack_timeout_ms", self.ack_timeout, 1)?;
        at_least_ms("connect_timeout_ms", self.connect_timeout, 1)?;
        if self.backoff_initial > self.backoff_max {
            return Err(ConfigError::Order {
                field: "backoff_initial_ms",
                value: ms(self.backoff_initial),
                limit_field: "backoff_max_ms",
                limit: ms(self.backoff_max),
            });
        }
        Ok(())
    }
}

fn at_least(field: &'static str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::TooSmall { field, min, value });
    }
    Ok(())
}

fn at_least_ms(field: &'static str, value: Duration, min: u64) -> Result<(), ConfigError> {
    at_least(field, ms(value), min)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

mod defaults {
    use std::time::Duration;

    pub fn group_commit_interval() -> Duration {
        Duration::from_millis(2)
    }
    pub fn group_commit_max_batch() -> usize {
        512
    }
    pub fn max_bytes() -> u64 {
        256 * 1024 * 1024
    }
    pub fn batch_max() -> usize {
        256
    }
    pub fn max_in_flight() -> usize {
        4
    }
    pub fn backoff_initial() -> Duration {
        Duration::from_millis(100)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(5)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn ack_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn poll_interval() -> Duration {
        Duration::from_millis(200)
    }
    pub fn keepalive_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn shutdown_grace() -> Duration {
        Duration::from_secs(5)
    }
}

/// `Duration` as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::ms(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn local_log_defaults_and_millis_keys() {
        let c: LocalLogConfig =
            serde_json::from_str(r#"{"dir":"/var/lib/agent/log","agent_id":"a1"}"#).unwrap();
        assert_eq!(c, LocalLogConfig::new("/var/lib/agent/log", "a1"));
        assert_eq!(c.group_commit_interval, Duration::from_millis(2));
        assert_eq!(c.on_full, OnFull::Deny);
        let c: LocalLogConfig = serde_json::from_str(
            r#"{"dir":"d","agent_id":"a","group_commit_interval_ms":7,"on_full":"drop_with_counter"}"#,
        )
        .unwrap();
        assert_eq!(c.group_commit_interval, Duration::from_millis(7));
        assert_eq!(c.on_full, OnFull::DropWithCounter);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["group_commit_interval_ms"], 7);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<LocalLogConfig>(
            r#"{"dir":"d","agent_id":"a","group_commit_interval":2}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = serde_json::from_str::<ClientConfig>(
            r#"{"endpoint":"https://j:1","ca_cert":"c","cert":"c","key":"k","batch":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = LocalLogConfig::new("d", "");
        assert_eq!(c.validate(), Err(ConfigError::Empty { field: "agent_id" }));
        c.agent_id = "a".into();
        c.group_commit_max_batch = 0;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TooSmall {
                field: "group_commit_max_batch",
                ..
            })
        ));

        let mut c = ClientConfig::new("http://j:443", "ca", "c", "k");
        assert!(matches!(c.validate(), Err(ConfigError::Endpoint { .. })));
        c.endpoint = "https://j:443".into();
        assert_eq!(c.validate(), Ok(()));
        c.backoff_initial = Duration::from_secs(10);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Order {
                field: "backoff_initial_ms",
                ..
            })
        ));
        let c: ClientConfig = serde_json::from_str(
            r#"{"endpoint":"https://j:1","ca_cert":"c","cert":"c","key":"k","backoff_max_ms":900}"#,
        )
        .unwrap();
        assert_eq!(c.backoff_max, Duration::from_millis(900));
        assert_eq!(c.batch_max, 256);
    }
}
