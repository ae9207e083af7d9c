use std::process::ExitCode;

use clap::Parser;
use credential_agent::app::{self, Running};
use credential_agent::args::{Cli, Command, CommonArgs, LogFormat};

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

async fn serve(common: &CommonArgs, started: credential_agent::Result<Running>) -> ExitCode {
    let running = match started {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    shutdown_signal().await;
    tracing::info!(timeout = ?common.shutdown_timeout, "shutting down; finishing in-flight requests");
    running.shutdown();
    running.wait(common.shutdown_timeout).await;
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_tracing(args.common.log_format);
            serve(&args.common, app::start_node(&args).await).await
        }
        Command::Sidecar(args) => {
            init_tracing(args.common.log_format);
            serve(&args.common, app::start_sidecar(&args).await).await
        }
        Command::SetupLink(args) => {
            init_tracing(LogFormat::Text);
            match credential_agent::link::setup(&args.interface, &args.addresses).await {
                Ok(report) => {
                    let added: Vec<String> = report.added.iter().map(|a| a.to_string()).collect();
                    println!(
                        "{}: {} {}",
                        report.interface,
                        if report.created {
                            "created,"
                        } else {
                            "exists,"
                        },
                        if added.is_empty() {
                            "no addresses".to_string()
                        } else {
                            format!("addresses {}", added.join(", "))
                        }
                    );
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
