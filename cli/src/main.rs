//! `policyctl`: the command-line tool of policy-engine.
//!
//! `eval` and `test` work like `opa eval` and `opa test` over the same
//! engine the agent embeds (regorus with the agent's native builtins), so a
//! policy that passes `policyctl test` behaves the same in the agent. This
//! file only parses arguments and dispatches; each command is its own module.

mod check;
mod compile;
mod conformance;
mod diagnostic;
mod discover;
mod emergency;
mod eval;
mod go_json;
mod journal;
mod load;
mod query_text;
mod table;
mod test_cmd;
mod test_formats;
mod test_report;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for usage, load, compile and evaluation errors.
pub const ERROR: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "policyctl",
    version,
    about = "Evaluate and test policy-engine Rego policies",
    after_help = "Exit status:\n  \
        0  success\n  \
        1  bad arguments, or policies, data or input could not be loaded, compiled or evaluated\n  \
        2  `test`: a test failed, errored or was skipped"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile a kernel config's route chains into Rego modules that OPA loads unchanged
    Compile(compile::CompileArgs),
    /// Start the local stack from deploy/local and show it deciding
    Up(up::UpArgs),
    /// Read the decision journal, verify its chains, create development certificates
    Journal(journal::JournalArgs),
    /// Evaluate a Rego query (like `opa eval`)
    Eval(eval::EvalArgs),
    /// Break-glass mode of an agent: enable for a bounded time, disable, status
    Emergency(emergency::EmergencyArgs),
    /// Run Rego tests: rules named `test_*` (like `opa test`)
    Test(test_cmd::TestArgs),
    /// Parse and compile Rego files and report errors (like `opa check`)
    Check(check::CheckArgs),
    /// Run test cases in OPA's compliance-case format (JSON or YAML)
    Conformance(conformance::ConformanceArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() {
                ExitCode::from(ERROR)
            } else {
                ExitCode::SUCCESS
            };
            // Nothing more can be reported if the terminal is gone.
            let _ = e.print();
            return code;
        }
    };
    let result = match &cli.command {
        Command::Compile(args) => compile::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Up(args) => up::run(args),
        Command::Journal(args) => journal::run(args),
        Command::Test(args) => test_cmd::run(args),
        Command::Conformance(args) => conformance::run(args),
        Command::Check(args) => check::run(args),
        Command::Emergency(args) => emergency::run(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {}", diagnostic::chain_one_line(&e));
        ExitCode::from(ERROR)
    })
}
