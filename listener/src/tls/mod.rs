//! The HTTPS side of a listener (the webhook's admission port, the Pod
//! Identity broker): the serving certificate and key, re-read when the files
//! change (cert-manager or kubelet secret rotation) without a restart, and
//! the same connection caps as the plain-HTTP loop, applied to each accepted
//! connection before its handshake (`limit.rs`). Connections already
//! established, and handshakes in flight, keep the configuration they started
//! with.
//!
//! - `limit.rs`: connection caps and the idle timeout of an admitted
//!   connection;
//! - `cert_expiry.rs`: the certificate's notAfter, for expiry metrics.

pub mod cert_expiry;
pub mod limit;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use axum_server::tls_rustls::RustlsConfig;

/// Why the certificate and key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use certificate {} with key {}: {message}", cert.display(), key.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

async fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| TlsError::ReadFile {
            path: path.to_path_buf(),
            source,
        })
}

/// What a reload came to, for the caller's metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The new pair is served; its certificate's notAfter (Unix seconds)
    /// when it could be read.
    Loaded { not_after: Option<i64> },
    /// The new pair is not usable yet; the current one stays.
    Unusable,
}

/// Called after each change of the files.
pub type OnReload = Arc<dyn Fn(Reloaded) + Send + Sync>;

/// Loads the certificate chain and key; fails with a clear message when
/// either is missing or invalid. Returns the configuration and the
/// certificate's notAfter (Unix seconds) when it could be read.
pub async fn load(cert: &Path, key: &Path) -> Result<(RustlsConfig, Option<i64>), TlsError> {
    let (c, k) = (read(cert).await?, read(key).await?);
    let not_after = cert_expiry::not_after(&c);
    let config = RustlsConfig::from_pem(c, k)
        .await
        .map_err(|e| TlsError::Unusable {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok((config, not_after))
}

/// Polls both files every `interval`; when either changed and the pair is
/// valid, swaps it in. An invalid pair (say, the certificate written but not
/// yet the key) is logged and the current one kept.
pub fn spawn_reloader(
    config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
    on_reload: OnReload,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = (read(&cert).await.ok(), read(&key).await.ok());
        loop {
            tokio::time::sleep(interval).await;
            let (Ok(c), Ok(k)) = (read(&cert).await, read(&key).await) else {
                continue;
            };
            if last.0.as_deref() == Some(c.as_slice()) && last.1.as_deref() == Some(k.as_slice()) {
                continue;
            }
            match config.reload_from_pem(c.clone(), k.clone()).await {
                Ok(()) => {
                    tracing::info!(cert = %cert.display(), "reloaded TLS certificate");
                    on_reload(Reloaded::Loaded {
                        not_after: cert_expiry::not_after(&c),
                    });
                }
                Err(e) => {
                    tracing::warn!(cert = %cert.display(), error = %e, "new TLS certificate/key not usable yet; keeping the current one");
                    on_reload(Reloaded::Unusable);
                }
            }
            last = (Some(c), Some(k));
        }
    })
}

/// The acceptor of an HTTPS listener: each TCP connection admitted through
/// `limiter` (one over a cap is closed before its handshake and reported to
/// `on_reject`), closed after `idle_timeout` without traffic, then TLS.
pub fn acceptor(
    config: RustlsConfig,
    limiter: crate::Limiter,
    on_reject: crate::OnReject,
    idle_timeout: Duration,
) -> axum_server::tls_rustls::RustlsAcceptor<limit::LimitAcceptor> {
    axum_server::tls_rustls::RustlsAcceptor::new(config).acceptor(limit::LimitAcceptor {
        limiter,
        on_reject,
        idle_timeout,
    })
}
