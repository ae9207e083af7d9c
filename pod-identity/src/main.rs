use clap::Parser;

#[tokio::main]
async fn main() {
    let args = pod_identity::args::Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_level))
        .init();
    let mut stdout = std::io::stdout();
    if let Err(e) = pod_identity::run(args, &mut stdout).await {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
