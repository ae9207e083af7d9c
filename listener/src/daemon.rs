//! What both daemons do around their listeners, written once: logging to
//! stderr (text or JSON) and waiting for SIGTERM or Ctrl-C to start the
//! drain.
//!
//! `RUST_LOG` takes `level` or `target=level` directives separated by commas
//! (`info,pod_identity_webhook=debug`): `tracing_subscriber`'s `Targets`,
//! not its `EnvFilter`, whose span and regex filters pull a regex engine
//! into both binaries (about a megabyte of the image, docs/image.md).

use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter `RUST_LOG` asks for, else `default`; an unreadable `RUST_LOG`
/// is reported and `default` used.
pub fn filter(rust_log: Option<&str>, default: &str) -> (Targets, Option<String>) {
    let fallback = || Targets::from_str(default).unwrap_or_default();
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => (fallback(), None),
        Some(s) => match Targets::from_str(s) {
            Ok(t) => (t, None),
            Err(e) => (
                fallback(),
                Some(format!("RUST_LOG={s:?} is not level or target=level directives ({e}); logging at {default}")),
            ),
        },
    }
}

/// Logs to stderr as text or JSON lines; `RUST_LOG` overrides `default`.
pub fn init_tracing(json: bool, default: &str) {
    let (targets, problem) = filter(std::env::var("RUST_LOG").ok().as_deref(), default);
    let registry = tracing_subscriber::registry().with(targets);
    if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init();
    }
    if let Some(p) = problem {
        tracing::warn!("{p}");
    }
}

/// Returns on SIGTERM (what the kubelet sends) or Ctrl-C.
pub async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn rust_log_directives() {
        let (t, p) = filter(None, "info");
        assert!(p.is_none());
        assert!(t.would_enable("pod_identity_webhook", &Level::INFO));
        assert!(!t.would_enable("pod_identity_webhook", &Level::DEBUG));
        let (t, _) = filter(Some("warn,pod_identity_webhook=debug"), "info");
        assert!(t.would_enable("pod_identity_webhook::admission", &Level::DEBUG));
        assert!(!t.would_enable("kube_client", &Level::INFO));
        let (t, p) = filter(Some("pod_identity=loud"), "info");
        assert!(p.unwrap().contains("RUST_LOG"));
        assert!(t.would_enable("x", &Level::INFO));
    }
}
