//! The journal's configuration file (YAML), parsed and validated before
//! anything binds.
//!
//! ```yaml
//! listen: 127.0.0.1:7443          # host:port; port 0 picks a free port
//! tls:                            # mutual TLS; paths relative to this file
//!   ca: certs/ca.pem              # CA that client certificates must chain to
//!   cert: certs/server.pem
//!   key: certs/server-key.pem
//! storage:
//!   backend: sled                 # embedded: a directory
//!   path: data/journal
//! # storage:
//! #   backend: postgres
//! #   url: "host=db.internal user=journal dbname=journal"
//! #   schema: journal             # optional, default `public`
//! #   pool_size: 8                # optional, connections per server (default 8)
//! readers: [policyctl, auditor]   # optional: who may Query/Tail/Verify (default: any client)
//! data_writers: [policyctl]       # optional: who may PutData (default: [policyctl]; [] for
//!                                 # nobody); any client may GetData
//! tail_poll_ms: 500               # optional: Tail polling interval (default 500)
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: String,
    pub tls: RawTls,
    pub storage: RawStorage,
    #[serde(default)]
    pub readers: Option<Vec<String>>,
    /// Identities allowed to replace the data document with `PutData`
    /// (default [`DEFAULT_DATA_WRITERS`]).
    #[serde(default)]
    pub data_writers: Option<Vec<String>>,
    /// Milliseconds between `Tail` polls for records committed by other
    /// servers (default 500).
    #[serde(default)]
    pub tail_poll_ms: Option<u64>,
}

/// PEM file paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `storage:`, tagged by `backend`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawStorage {
    Sled {
        path: PathBuf,
    },
    Postgres {
        url: String,
        #[serde(default)]
        schema: Option<String>,
        #[serde(default)]
        pool_size: Option<usize>,
    },
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}`: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("`{path}`: field `{field}`: {reason}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
}

/// TLS material, PEM.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where records are stored.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    Sled { path: PathBuf },
    Postgres(crate::store::PgOptions),
}

/// A validated configuration: what [`crate::serve`] runs.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    pub listen: SocketAddr,
    pub tls: TlsMaterial,
    pub storage: StorageConfig,
    /// Identities allowed to read (`None`: every authenticated client).
    pub readers: Option<Vec<String>>,
    /// Identities allowed to `PutData` (every client may `GetData`).
    pub data_writers: Vec<String>,
    pub tail_poll: Duration,
}

/// Default `Tail` polling interval.
pub const DEFAULT_TAIL_POLL: Duration = Duration::from_millis(500);

/// Who may `PutData` when the file does not say: the operator's tool.
pub const DEFAULT_DATA_WRITERS: &[&str] = &["policyctl"];

impl JournalConfig {
    /// Reads and validates `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Validates YAML `text` read from `path` (relative paths in it are
    /// relative to the directory of `path`).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig =
            serde_yaml_ng::from_str(text).map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source,
            })?;
        Self::try_from_raw(raw, path)
    }

    /// Validates `raw`, read from `path`.
    pub fn try_from_raw(raw: RawConfig, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |field: &'static str, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            reason,
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let listen = raw
            .listen
            .to_socket_addrs()
            .map_err(|e| invalid("listen", format!("`{}` is not host:port: {e}", raw.listen)))?
            .next()
            .ok_or_else(|| invalid("listen", format!("`{}` resolves to nothing", raw.listen)))?;
        let read_pem = |field: &'static str, p: &Path| -> Result<String, ConfigError> {
            let full = base.join(p);
            let text = std::fs::read_to_string(&full)
                .map_err(|e| invalid(field, format!("cannot read `{}`: {e}", full.display())))?;
            if !text.contains("-----BEGIN") {
                return Err(invalid(field, format!("`{}` is not PEM", full.display())));
            }
            Ok(text)
        };
        let tls = TlsMaterial {
            ca_pem: read_pem("tls.ca", &raw.tls.ca)?,
            cert_pem: read_pem("tls.cert", &raw.tls.cert)?,
            key_pem: read_pem("tls.key", &raw.tls.key)?,
        };
        let storage = match raw.storage {
            RawStorage::Sled { path: p } => {
                if p.as_os_str().is_empty() {
                    return Err(invalid("storage.path", "must not be empty".into()));
                }
                StorageConfig::Sled { path: base.join(p) }
            }
            RawStorage::Postgres {
                url,
                schema,
                pool_size,
            } => {
                if let Err(e) = url.parse::<tokio_postgres::Config>() {
                    return Err(invalid("storage.url", e.to_string()));
                }
                if pool_size == Some(0) {
                    return Err(invalid("storage.pool_size", "must be at least 1".into()));
                }
                StorageConfig::Postgres(crate::store::PgOptions {
                    url,
                    schema,
                    pool_size: pool_size.unwrap_or(8),
                })
            }
        };
        if let Some(readers) = &raw.readers
            && let Some(bad) = readers.iter().find(|r| r.is_empty())
        {
            return Err(invalid("readers", format!("empty identity `{bad}`")));
        }
        let data_writers = match raw.data_writers {
            Some(writers) => {
                if writers.iter().any(String::is_empty) {
                    return Err(invalid(
                        "data_writers",
                        "identities must not be empty".into(),
                    ));
                }
                writers
            }
            None => DEFAULT_DATA_WRITERS
                .iter()
                .map(|w| (*w).to_owned())
                .collect(),
        };
        let tail_poll = match raw.tail_poll_ms {
            Some(0) => return Err(invalid("tail_poll_ms", "must be at least 1".into())),
            Some(ms) => Duration::from_millis(ms),
            None => DEFAULT_TAIL_POLL,
        };
        Ok(Self {
            listen,
            tls,
            storage,
            readers: raw.readers,
            data_writers,
            tail_poll,
        })
    }
}
