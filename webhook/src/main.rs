//! `pod-identity-webhook`: parses the command line, sets up logging, runs
//! the command (the server in `server::run`, the dry run in `dry_run`) and
//! maps its outcome to the exit code.

use std::process::ExitCode;

use clap::Parser;
use pod_identity_webhook::args::{with_default_subcommand, Cli, Command, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse_from(with_default_subcommand(std::env::args_os().collect()));
    match cli.command {
        Command::Mutate(args) => match pod_identity_webhook::dry_run::run_mutate(&args).await {
            Ok(dry) => {
                for w in &dry.warnings {
                    eprintln!("warning: {w}");
                }
                print!("{}", dry.output);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => {
            let verbose = args.compat.verbosity.unwrap_or(0) >= 4;
            listener::daemon::init_tracing(
                args.log_format == LogFormat::Json,
                if verbose { "debug" } else { "info" },
            );
            let started = match pod_identity_webhook::config::ServerConfig::try_from(&*args) {
                Ok(config) => pod_identity_webhook::server::run(&config).await,
                Err(e) => Err(e),
            };
            match started {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
