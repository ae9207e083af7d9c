//! `credential-agent`: parses the command line, sets up logging, validates
//! the flags into the mode's configuration (`config.rs`), runs the command
//! (`app` for `serve` and `sidecar`, `broker` for `broker`, `link` for
//! `setup-link`) and maps its
//! outcome to the exit code.

use std::process::ExitCode;

use clap::Parser;
use credential_agent::app::{self, Running};
use credential_agent::args::{Cli, Command, LogFormat};
use credential_agent::config::{BrokerConfig, NodeConfig, SidecarConfig};

async fn serve(started: credential_agent::Result<(Running, std::time::Duration)>) -> ExitCode {
    match started {
        Ok((running, shutdown_timeout)) => {
            app::serve_until_signal(running, shutdown_timeout).await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            listener::daemon::init_tracing(args.common.log_format == LogFormat::Json, "info");
            serve(
                async {
                    let cfg = NodeConfig::try_from(&args)?;
                    Ok((app::start_node(&cfg).await?, cfg.common.shutdown_timeout))
                }
                .await,
            )
            .await
        }
        Command::Sidecar(args) => {
            listener::daemon::init_tracing(args.common.log_format == LogFormat::Json, "info");
            serve(
                async {
                    let cfg = SidecarConfig::try_from(&args)?;
                    Ok((app::start_sidecar(&cfg).await?, cfg.common.shutdown_timeout))
                }
                .await,
            )
            .await
        }
        Command::Broker(args) => {
            listener::daemon::init_tracing(args.common.log_format == LogFormat::Json, "info");
            let started = async {
                let cfg = BrokerConfig::try_from(&args)?;
                Ok::<_, credential_agent::Error>((
                    credential_agent::broker::start(&cfg).await?,
                    cfg.common.shutdown_timeout,
                ))
            }
            .await;
            match started {
                Ok((running, timeout)) => {
                    credential_agent::broker::serve_until_signal(running, timeout).await;
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("cannot start: {e}");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::SetupLink(args) => {
            listener::daemon::init_tracing(false, "info");
            match credential_agent::link::setup(&args.interface, &args.addresses).await {
                Ok(report) => {
                    println!("{report}");
                    for (a, why) in &report.failed {
                        eprintln!("warning: {a} not added: {why}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
