//! Reaching the issuer as AWS does: over HTTPS, verifying its certificate
//! (the system's roots plus `--issuer-ca-file`), fetching its discovery
//! document, and taking the thumbprint IAM asks for: the SHA-1 of the DER
//! certificate at the top of the chain the server presents. `HTTPS_PROXY`
//! and `NO_PROXY` are honoured (proxy.rs).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::error::{Error, Result};

/// Largest discovery document or key set read.
const MAX_BODY: usize = 1 << 20;
/// Bound on connecting, the handshake and the request together.
const TIMEOUT: Duration = Duration::from_secs(15);

/// What an HTTPS visit of the issuer found.
#[derive(Debug, Clone)]
pub struct IssuerProbe {
    /// Lower-case hex SHA-1 of the top certificate of the presented chain.
    pub thumbprint: String,
    /// The discovery document served at the issuer URL.
    pub discovery: serde_json::Value,
}

fn unreachable(issuer: &str, reason: impl std::fmt::Display) -> Error {
    Error::IssuerUnreachable {
        issuer: issuer.to_string(),
        reason: reason.to_string(),
    }
}

/// Trust roots: the system's, plus the PEM certificates of `extra_ca`.
pub fn roots(extra_ca: Option<&Path>) -> Result<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = store.add(cert);
    }
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).map_err(|source| Error::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let mut found = 0;
        for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
            let block = block.map_err(|e| Error::InvalidFile {
                path: path.to_path_buf(),
                message: format!("not PEM: {e}"),
            })?;
            store
                .add(block.contents.into())
                .map_err(|e| Error::InvalidFile {
                    path: path.to_path_buf(),
                    message: format!("not a CA certificate: {e}"),
                })?;
            found += 1;
        }
        if found == 0 {
            return Err(Error::InvalidFile {
                path: path.to_path_buf(),
                message: "no certificate in the file".into(),
            });
        }
    }
    Ok(store)
}

/// Visits `issuer` (an `https://` URL): verifies its certificate, fetches
/// `<issuer>/.well-known/openid-configuration` and computes the thumbprint.
pub async fn probe(issuer: &str, extra_ca: Option<&Path>) -> Result<IssuerProbe> {
    let roots = roots(extra_ca)?;
    tokio::time::timeout(TIMEOUT, probe_inner(issuer, roots))
        .await
        .map_err(|_| unreachable(issuer, format!("no answer in {} s", TIMEOUT.as_secs())))?
}

async fn probe_inner(issuer: &str, roots: rustls::RootCertStore) -> Result<IssuerProbe> {
    let url: http::Uri = issuer
        .parse()
        .map_err(|e| Error::Usage(format!("issuer URL {issuer:?} is not a URL: {e}")))?;
    if url.scheme_str() != Some("https") {
        return Err(unreachable(issuer, "IAM only accepts https:// issuers"));
    }
    let host = url
        .host()
        .ok_or_else(|| Error::Usage(format!("issuer URL {issuer:?} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_u16().unwrap_or(443);
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| unreachable(issuer, e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name = ServerName::try_from(host.clone()).map_err(|e| unreachable(issuer, e))?;
    let proxy = super::proxy::proxy_for(&host, port, |k| std::env::var(k).ok())
        .map_err(|e| Error::Usage(e.to_string()))?;
    let tcp = match &proxy {
        Some(p) => super::proxy::connect(p, &host, port)
            .await
            .map_err(|e| unreachable(issuer, e))?,
        None => tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| unreachable(issuer, format!("connecting to {host}:{port}: {e}")))?,
    };
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| unreachable(issuer, format!("TLS with {host}:{port}: {e}")))?;
    let top = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.last())
        .ok_or_else(|| unreachable(issuer, "the server presented no certificate"))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, top);
    let thumbprint: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();

    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unreachable(issuer, e))?;
    tokio::spawn(conn);
    let path = format!(
        "{}/{}",
        url.path().trim_end_matches('/'),
        super::discovery::DISCOVERY_PATH
    );
    let authority = url.authority().map(|a| a.to_string()).unwrap_or(host);
    let req = http::Request::get(&path)
        .header(http::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(issuer, e))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(issuer, format!("GET {path}: {e}")))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| unreachable(issuer, format!("GET {path}: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(unreachable(issuer, format!("GET {path} answered {status}")));
    }
    let discovery: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| unreachable(issuer, format!("GET {path}: not JSON: {e}")))?;
    Ok(IssuerProbe {
        thumbprint,
        discovery,
    })
}
