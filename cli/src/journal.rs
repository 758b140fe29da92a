//! `policyctl journal`: read the decision journal (`tail`, `export`,
//! `verify`), read and replace its data document (`data`) and create
//! development certificates (`certs`).
//!
//! Without `--journal`, the commands reach the journal that `policyctl up`
//! started (`https://127.0.0.1:7443`, certificates in `deploy/local/run/certs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use policy_proto::journal::journal_client::JournalClient;
use policy_proto::journal::{QueryRequest, StoredRecord, VerifyRequest};
use tonic::transport::Channel;

mod data;

/// Where `policyctl up` runs the journal.
pub const UP_JOURNAL: &str = "https://127.0.0.1:7443";
/// Where `policyctl up` keeps its development certificates.
pub const UP_CERTS: &str = "deploy/local/run/certs";
/// The client identity of `policyctl` in a development certificate set.
pub const OPERATOR: &str = "policyctl";

#[derive(Debug, Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    command: JournalCommand,
}

#[derive(Debug, Subcommand)]
enum JournalCommand {
    /// Print records as they are committed (after the matching history)
    Tail(TailArgs),
    /// Write matching records as JSON lines or OPA decision-log events
    Export(ExportArgs),
    /// Check every agent's hash chain and sequence; exit 1 on any gap or break
    Verify(VerifyArgs),
    /// Read or replace the data document degraded mode caches (roles, whitelists, approvals)
    Data(data::DataArgs),
    /// Create a development CA, a journal server certificate and client certificates
    Certs(CertsArgs),
}

/// How to reach the journal.
#[derive(Debug, Args)]
struct Connection {
    /// Journal address (`https://host:port`).
    #[arg(long, default_value = UP_JOURNAL, env = "POLICY_JOURNAL_ADDR")]
    journal: String,
    /// Directory with `ca.pem` and this client's `<name>.pem` / `<name>-key.pem`.
    #[arg(long, default_value = UP_CERTS)]
    certs: PathBuf,
    /// Client certificate name in `--certs`.
    #[arg(long, default_value = OPERATOR)]
    client: String,
    /// Server name to verify (default: the host of `--journal`).
    #[arg(long)]
    server_name: Option<String>,
}

/// Which records.
#[derive(Debug, Args)]
struct Filter {
    /// Records at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Records before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    agent: Option<String>,
    #[arg(long)]
    route: Option<String>,
    /// allow, warn or deny.
    #[arg(long, value_parser = ["allow", "warn", "deny"])]
    decision: Option<String>,
    /// normal, degraded, degraded:<tier> or emergency.
    #[arg(long)]
    mode: Option<String>,
    /// At most this many records (0: all).
    #[arg(long, short = 'n', default_value_t = 0)]
    limit: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// One decision record per line, with the journal's fields.
    Jsonl,
    /// OPA decision-log events (EventV1), one per line.
    Opa,
    /// One short human-readable line per record.
    Pretty,
}

#[derive(Debug, Args)]
struct TailArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(flatten)]
    filter: Filter,
    #[arg(long, short, value_enum, default_value = "pretty")]
    format: Format,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(flatten)]
    filter: Filter,
    #[arg(long, short, value_enum, default_value = "jsonl")]
    format: Format,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    conn: Connection,
    /// Only this agent.
    #[arg(long)]
    agent: Option<String>,
}

#[derive(Debug, Args)]
struct CertsArgs {
    /// Output directory.
    #[arg(long, short, default_value = UP_CERTS)]
    out: PathBuf,
    /// Agent identities to issue client certificates for (repeatable).
    #[arg(long = "agent", default_value = "policy-agent")]
    agents: Vec<String>,
    /// Extra DNS names or IPs for the server certificate (repeatable).
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Replace an existing set.
    #[arg(long)]
    force: bool,
}

pub fn run(args: &JournalArgs) -> anyhow::Result<ExitCode> {
    if let JournalCommand::Certs(c) = &args.command {
        return certs(c);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match &args.command {
            JournalCommand::Tail(a) => tail(a).await,
            JournalCommand::Export(a) => export(a).await,
            JournalCommand::Verify(a) => verify(a).await,
            JournalCommand::Data(a) => data::run(a).await,
            JournalCommand::Certs(_) => Ok(ExitCode::SUCCESS),
        }
    })
}

/// Writes a development certificate set unless one exists (or `--force`).
fn certs(args: &CertsArgs) -> anyhow::Result<ExitCode> {
    if args.out.join("ca.pem").exists() && !args.force {
        bail!(
            "{} already has a certificate set: pass --force to replace it",
            args.out.display()
        );
    }
    write_certs(&args.out, &args.agents, &args.hosts)?;
    println!(
        "wrote a development CA, server and client certificates to {}",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes a set with `agents` and the `policyctl` operator as clients.
pub fn write_certs(dir: &Path, agents: &[String], hosts: &[String]) -> anyhow::Result<()> {
    let mut clients: Vec<&str> = agents.iter().map(String::as_str).collect();
    clients.push(OPERATOR);
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    journal_client::devcerts::write_dev_set(dir, &hosts, &clients)
        .with_context(|| format!("writing certificates to {}", dir.display()))?;
    Ok(())
}

async fn connect(conn: &Connection) -> anyhow::Result<JournalClient<Channel>> {
    let paths = journal_client::devcerts::client_paths(&conn.certs, &conn.client);
    let mut cfg = journal_client::ClientConfig::new(&conn.journal, paths.ca, paths.cert, paths.key);
    cfg.server_name.clone_from(&conn.server_name);
    let channel = journal_client::connect(&cfg).await.with_context(|| {
        format!(
            "connecting to the journal at {} (certificates from `policyctl journal certs` or `policyctl up`)",
            conn.journal
        )
    })?;
    Ok(JournalClient::new(channel))
}

fn query(filter: &Filter) -> QueryRequest {
    QueryRequest {
        since: filter.since.clone().unwrap_or_default(),
        until: filter.until.clone().unwrap_or_default(),
        agent_id: filter.agent.clone().unwrap_or_default(),
        route: filter.route.clone().unwrap_or_default(),
        decision: filter.decision.clone().unwrap_or_default(),
        mode: filter.mode.clone().unwrap_or_default(),
        limit: filter.limit,
    }
}

fn line(record: &StoredRecord, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Jsonl => policy_journal::to_jsonl_line(record),
        Format::Opa => serde_json::to_string(&policy_journal::to_opa_event(record))?,
        Format::Pretty => pretty(record),
    })
}

fn pretty(stored: &StoredRecord) -> String {
    let Some(env) = &stored.record else {
        return "(empty record)".to_owned();
    };
    match journal_client::DecisionRecord::from_json(&env.record_json) {
        Ok(r) => format!(
            "{} {}#{} {} {} {} {}{}{}{}",
            r.timestamp,
            r.agent_id,
            r.seq,
            r.route,
            r.phase,
            r.decision.as_str(),
            r.http_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            r.decided_by.map(|p| format!(" {p}")).unwrap_or_default(),
            if r.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", r.reason)
            },
            if stored.flag.is_empty() {
                String::new()
            } else {
                format!(" [{}]", stored.flag)
            },
        ),
        Err(e) => format!("{}#{} unreadable record: {e}", env.agent_id, env.seq),
    }
}

async fn tail(args: &TailArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.conn).await?;
    let mut stream = client.tail(query(&args.filter)).await?.into_inner();
    let mut out = std::io::stdout().lock();
    while let Some(record) = stream.message().await? {
        writeln!(out, "{}", line(&record, args.format)?)?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.conn).await?;
    let mut stream = client.query(query(&args.filter)).await?.into_inner();
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut n = 0u64;
    while let Some(record) = stream.message().await? {
        writeln!(out, "{}", line(&record, args.format)?)?;
        n += 1;
    }
    out.flush()?;
    if args.output.is_some() {
        eprintln!("exported {n} record(s)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let report = verify_report(&args.conn, args.agent.as_deref()).await?;
    for line in &report.lines {
        println!("{line}");
    }
    Ok(if report.clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::ERROR)
    })
}

/// The journal's verification, as printed by `policyctl journal verify`.
pub struct Verification {
    pub lines: Vec<String>,
    /// No gap and no broken chain.
    pub clean: bool,
    /// Records over every agent.
    pub records: u64,
}

async fn verify_report(conn: &Connection, agent: Option<&str>) -> anyhow::Result<Verification> {
    let mut client = connect(conn).await?;
    let report = client
        .verify(VerifyRequest {
            agent_id: agent.unwrap_or_default().to_owned(),
        })
        .await?
        .into_inner();
    let mut out = Verification {
        lines: Vec::new(),
        clean: true,
        records: 0,
    };
    for a in &report.agents {
        out.records += a.records;
        if a.problems.is_empty() {
            out.lines.push(format!(
                "{}: {} record(s), seq {}..={}, chain ok",
                a.agent_id, a.records, a.first_seq, a.last_seq
            ));
        } else {
            out.clean = false;
            out.lines.push(format!(
                "{}: {} record(s), seq {}..={}, {} problem(s)",
                a.agent_id,
                a.records,
                a.first_seq,
                a.last_seq,
                a.problems.len()
            ));
            out.lines
                .extend(a.problems.iter().map(|p| format!("  {p}")));
        }
    }
    if report.agents.is_empty() {
        out.lines.push("no records".to_owned());
    }
    Ok(out)
}

/// Verifies the journal at `endpoint` as the operator of the certificate set
/// in `certs`, once its record count has stopped growing (at most `within`).
pub async fn settled_verification(
    endpoint: &str,
    certs: &Path,
    within: std::time::Duration,
) -> anyhow::Result<Verification> {
    let conn = Connection {
        journal: endpoint.to_owned(),
        certs: certs.to_path_buf(),
        client: OPERATOR.to_owned(),
        server_name: None,
    };
    let deadline = std::time::Instant::now() + within;
    let mut last = verify_report(&conn, None).await?;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = verify_report(&conn, None).await?;
        if now.records == last.records || std::time::Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}
