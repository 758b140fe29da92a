//! A real `policy-journal` process for end-to-end tests: development
//! certificates, a sled store in the stack's directory, mutual TLS on
//! 127.0.0.1 (port chosen at the first start, kept across restarts so agents
//! reconnect to the same address), and a gRPC client with the operator's
//! certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context as _, bail};
use policy_proto::journal::journal_client::JournalClient;
use policy_proto::journal::{QueryRequest, StoredRecord, VerifyReport, VerifyRequest};
use tonic::transport::Channel;

use super::process::{self, ChildGuard, tail};
use super::{STARTUP_DEADLINE, eventually};

/// The client identity tests (and `policyctl`) read the journal with.
pub const OPERATOR: &str = "policyctl";

/// A running journal; killed (SIGKILL) when dropped or stopped.
pub struct JournalProcess {
    child: Option<ChildGuard>,
    addr: SocketAddr,
    dir: PathBuf,
}

impl JournalProcess {
    /// Writes certificates for `agents` and the operator into `dir/certs`,
    /// then starts the journal with its store in `dir/journal-data`.
    pub async fn start(dir: &Path, agents: &[&str]) -> anyhow::Result<Self> {
        let mut clients: Vec<&str> = agents.to_vec();
        clients.push(OPERATOR);
        journal_client::devcerts::write_dev_set(&dir.join("certs"), &[], &clients)?;
        let mut journal = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: dir.to_path_buf(),
        };
        journal.spawn().await?;
        Ok(journal)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let config = self.dir.join("journal-config.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: \"{}\"\ntls:\n  ca: certs/ca.pem\n  cert: certs/server.pem\n  key: certs/server-key.pem\nstorage:\n  backend: sled\n  path: journal-data\nreaders: [\"{OPERATOR}\"]\n",
                self.addr
            ),
        )?;
        let log = self.dir.join("journal.log");
        let start = process::read_log(&log).len();
        let mut command = Command::new(journal_binary()?);
        command.arg("--config").arg(&config).env_remove("RUST_LOG");
        let mut child = ChildGuard::spawn("policy-journal", command, &log)?;
        let addr = eventually("policy-journal `listening on`", STARTUP_DEADLINE, || {
            let exited = child.ensure_running();
            let text = process::read_log(&log);
            async move {
                exited?;
                let fresh = text.get(start..).unwrap_or_default();
                let Some(addr) = fresh
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("listening on "))
                else {
                    bail!("no `listening on` line yet");
                };
                addr.parse::<SocketAddr>()
                    .with_context(|| format!("journal address `{addr}`"))
            }
        })
        .await
        .with_context(|| format!("journal log:\n{}", tail(&process::read_log(&log), 40)))?;
        self.addr = addr;
        self.child = Some(child);
        Ok(())
    }

    /// `https://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The directory with `ca.pem` and every client's certificate and key.
    pub fn certs(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// Kills the journal (SIGKILL, as a crash).
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// Starts it again on the same address and store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.child = None;
        self.spawn().await
    }

    /// Fails when the journal has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match &mut self.child {
            Some(c) => c.ensure_running(),
            None => bail!("the journal is stopped"),
        }
    }

    /// A client with the operator's certificate.
    pub async fn client(&self) -> anyhow::Result<JournalClient<Channel>> {
        client_with(&self.certs(), OPERATOR, &self.endpoint()).await
    }

    /// Every stored record matching `query`, oldest first.
    pub async fn query(&self, query: QueryRequest) -> anyhow::Result<Vec<StoredRecord>> {
        let mut stream = self.client().await?.query(query).await?.into_inner();
        let mut out = Vec::new();
        while let Some(r) = stream.message().await? {
            out.push(r);
        }
        Ok(out)
    }

    /// Every stored record, parsed, oldest first.
    pub async fn records(&self) -> anyhow::Result<Vec<journal_client::DecisionRecord>> {
        self.query(QueryRequest::default())
            .await?
            .iter()
            .map(|s| {
                let env = s
                    .record
                    .as_ref()
                    .context("stored record without envelope")?;
                Ok(journal_client::DecisionRecord::from_json(&env.record_json)?)
            })
            .collect()
    }

    /// The journal's chain and sequence report for every agent.
    pub async fn verify(&self) -> anyhow::Result<VerifyReport> {
        Ok(self
            .client()
            .await?
            .verify(VerifyRequest::default())
            .await?
            .into_inner())
    }

    /// The agent-config `journal` section for agent `agent_id` with its
    /// local log in `local_log_dir` and, when given, `max_bytes` and
    /// `on_full` (`deny` or `drop_with_counter`).
    pub fn agent_section(
        &self,
        agent_id: &str,
        local_log_dir: &Path,
        limit: Option<(u64, &str)>,
    ) -> String {
        let paths = journal_client::devcerts::client_paths(&self.certs(), agent_id);
        let q = |p: PathBuf| serde_json::Value::String(p.display().to_string()).to_string();
        format!(
            "  journal:
    agent_id: \"{agent_id}\"
    environment: \"test\"
    local_log:
      dir: {dir}
      group_commit_interval_ms: 2
{limit}    server:
      endpoint: \"{endpoint}\"
      ca_cert: {ca}
      cert: {cert}
      key: {key}
      backoff_initial_ms: 50
      backoff_max_ms: 500
",
            dir = q(local_log_dir.to_path_buf()),
            limit = limit
                .map(|(bytes, on_full)| {
                    format!("      max_bytes: {bytes}\n      on_full: \"{on_full}\"\n")
                })
                .unwrap_or_default(),
            endpoint = self.endpoint(),
            ca = q(paths.ca),
            cert = q(paths.cert),
            key = q(paths.key),
        )
    }
}

/// A journal client authenticated as `client` with the certificates in `certs`.
pub async fn client_with(
    certs: &Path,
    client: &str,
    endpoint: &str,
) -> anyhow::Result<JournalClient<Channel>> {
    let paths = journal_client::devcerts::client_paths(certs, client);
    let cfg = journal_client::ClientConfig::new(endpoint, paths.ca, paths.cert, paths.key);
    let channel = journal_client::connect(&cfg)
        .await
        .with_context(|| format!("connecting to the journal at {endpoint}"))?;
    Ok(JournalClient::new(channel))
}

/// The `policy-journal` binary of this workspace (built by `cargo build
/// --workspace --bins`, as `.ci/run` does, or on first use).
pub fn journal_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            process::workspace_binary("policy-journal", "policy-journal")
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The `policyctl` binary of this workspace.
pub fn policyctl_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            process::workspace_binary("policyctl", "policyctl").map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}
