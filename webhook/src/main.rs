use std::process::ExitCode;

use clap::Parser;
use pod_identity_webhook::args::{with_default_subcommand, Cli, Command, LogFormat};

fn init_tracing(format: LogFormat, klog_verbosity: Option<u8>) {
    let default = if klog_verbosity.unwrap_or(0) >= 4 {
        "debug"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
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
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

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
            init_tracing(args.log_format, args.compat.verbosity);
            let running = match pod_identity_webhook::server::start(&args).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("cannot start: {e}");
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            shutdown_signal().await;
            tracing::info!(timeout = ?args.shutdown_timeout, "shutting down; draining in-flight requests");
            running.shutdown(args.shutdown_timeout);
            match running.wait().await {
                Ok(()) => {
                    tracing::info!("stopped");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("server error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
