//! `policyctl journal data get|put`: the data document degraded mode caches
//! (role bindings, command whitelists, platform admins, approvals).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use policy_journal::{DataDocument, MAX_MESSAGE_BYTES};
use policy_proto::journal::journal_client::JournalClient;
use policy_proto::journal::{DataSnapshot, GetDataRequest, PutDataRequest};
use tonic::transport::Channel;

use super::Connection;

#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Print the current document (pretty JSON); its version, time and author go to stderr
    Get(GetArgs),
    /// Replace the document with FILE (a new version) and print the new version
    Put(PutArgs),
}

#[derive(Debug, Args)]
struct GetArgs {
    #[command(flatten)]
    conn: Connection,
    /// Write the document to this file instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct PutArgs {
    #[command(flatten)]
    conn: Connection,
    /// The document (JSON); `-` reads stdin.
    file: PathBuf,
    /// Fail unless the journal's current version is N (guards against
    /// overwriting someone else's change).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    expected_version: Option<u64>,
}

pub async fn run(args: &DataArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        DataCommand::Get(a) => get(a).await,
        DataCommand::Put(a) => put(a).await,
    }
}

async fn client(conn: &Connection) -> anyhow::Result<JournalClient<Channel>> {
    // The document may be larger than tonic's 4 MiB default.
    Ok(super::connect(conn)
        .await?
        .max_decoding_message_size(MAX_MESSAGE_BYTES))
}

async fn get(args: &GetArgs) -> anyhow::Result<ExitCode> {
    let mut client = client(&args.conn).await?;
    let snap = client
        .get_data(GetDataRequest { known_version: 0 })
        .await
        .map_err(|s| refused("reading the data document", &s))?
        .into_inner();
    let mut text = pretty(&snap.data_json)?;
    text.push('\n');
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    eprintln!("{}", describe(&snap));
    Ok(ExitCode::SUCCESS)
}

async fn put(args: &PutArgs) -> anyhow::Result<ExitCode> {
    let data_json = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the document from stdin")?;
        buf
    } else {
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?
    };
    let mut client = client(&args.conn).await?;
    let snap = client
        .put_data(PutDataRequest {
            data_json,
            expected_version: args.expected_version.unwrap_or(0),
        })
        .await
        .map_err(|s| refused("writing the data document", &s))?
        .into_inner();
    println!("{}", snap.version);
    eprintln!("{}", describe(&snap));
    Ok(ExitCode::SUCCESS)
}

/// The document as sent, pretty-printed in section order.
fn pretty(json: &[u8]) -> anyhow::Result<String> {
    // Sections in their documented order when the document is one this
    // version knows; any JSON otherwise (a newer journal).
    if let Ok(doc) = serde_json::from_slice::<DataDocument>(json) {
        return Ok(serde_json::to_string_pretty(&doc)?);
    }
    let value: serde_json::Value =
        serde_json::from_slice(json).context("the journal sent a document that is not JSON")?;
    Ok(serde_json::to_string_pretty(&value)?)
}

/// `version 3, updated 2026-… by policyctl`.
fn describe(snap: &DataSnapshot) -> String {
    if snap.version == 0 {
        "version 0 (never written)".to_owned()
    } else {
        format!(
            "version {}, updated {} by {}",
            snap.version, snap.updated_at, snap.updated_by
        )
    }
}

/// A gRPC refusal as one line: what failed, why, and what to do.
fn refused(what: &str, status: &tonic::Status) -> anyhow::Error {
    let hint = match status.code() {
        tonic::Code::FailedPrecondition => {
            "; read it again with `policyctl journal data get`, merge and put again"
        }
        tonic::Code::PermissionDenied => "; the identity must be in the journal's `data_writers`",
        _ => "",
    };
    anyhow!(
        "{what}: {} ({}{hint})",
        status.message(),
        code_name(status.code())
    )
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::FailedPrecondition => "version conflict",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::Unavailable => "journal unavailable",
        tonic::Code::Unimplemented => "the journal does not serve data",
        _ => "error",
    }
}
