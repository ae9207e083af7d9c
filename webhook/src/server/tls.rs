//! TLS serving configuration, re-read when the certificate or key files change
//! (cert-manager or kubelet secret rotation) without a restart. Connections
//! already established, and handshakes in flight, keep the configuration they
//! started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;

use crate::metrics::Metrics;
use crate::{Error, Result};

async fn read(path: &Path) -> Result<Vec<u8>> {
    tokio::fs::read(path)
        .await
        .map_err(|source| Error::ReadFile {
            path: path.to_path_buf(),
            source,
        })
}

fn record_not_after(metrics: &Metrics, pem: &[u8]) {
    if let Some(t) = super::cert_expiry::not_after(pem) {
        metrics.tls_not_after.set(t);
    }
}

/// Loads the certificate chain and key; fails with a clear message when either
/// is missing or invalid. Records the certificate's expiry in `metrics`.
pub async fn load(cert: &Path, key: &Path, metrics: &Metrics) -> Result<RustlsConfig> {
    let (c, k) = (read(cert).await?, read(key).await?);
    record_not_after(metrics, &c);
    RustlsConfig::from_pem(c, k).await.map_err(|e| {
        Error::Tls(format!(
            "cannot use certificate {} with key {}: {e}",
            cert.display(),
            key.display()
        ))
    })
}

/// Polls both files every `interval`; when either changed and the pair is
/// valid, swaps it in. An invalid pair (say, the certificate written but not
/// yet the key) is logged and the current one kept.
pub fn spawn_reloader(
    config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
    metrics: Arc<Metrics>,
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
                    metrics.reload("tls");
                    record_not_after(&metrics, &c);
                }
                Err(e) => {
                    tracing::warn!(cert = %cert.display(), error = %e, "new TLS certificate/key not usable yet; keeping the current one");
                    metrics.reload("tls_error");
                }
            }
            last = (Some(c), Some(k));
        }
    })
}
