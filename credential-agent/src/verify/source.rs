//! Where the issuer's keys come from: a JWKS document on disk, or a URL
//! (by default the in-cluster API server's `/openid/v1/jwks`, with the
//! agent's own ServiceAccount token and CA).

use std::path::{Path, PathBuf};
use std::time::Duration;

contract::message_error! {
    /// Why the key source cannot be used or read.
    SourceError
}

/// Why the key source cannot be used (a configuration error at start).
type Result<T> = std::result::Result<T, SourceError>;

/// Where the issuer's keys come from.
#[derive(Clone, Debug)]
pub enum JwksSource {
    /// An HTTPS (or loopback HTTP) URL, optionally with a bearer token file
    /// (the agent's own ServiceAccount token for the API server).
    Url {
        url: String,
        client: reqwest::Client,
        bearer_token_file: Option<PathBuf>,
    },
    /// A JWKS document on disk, re-read on every refresh.
    File(PathBuf),
}

impl JwksSource {
    pub(super) async fn fetch(&self) -> std::result::Result<Vec<u8>, SourceError> {
        match self {
            JwksSource::File(p) => tokio::fs::read(p)
                .await
                .map_err(|e| SourceError(format!("cannot read {}: {e}", p.display()))),
            JwksSource::Url {
                url,
                client,
                bearer_token_file,
            } => {
                let mut req = client.get(url.as_str()).timeout(Duration::from_secs(10));
                if let Some(f) = bearer_token_file {
                    let token = tokio::fs::read_to_string(f)
                        .await
                        .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
                    req = req.bearer_auth(token.trim());
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| format!("cannot fetch {url}: {}", error_chain(&e)))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(format!("{url} answered HTTP {status}").into());
                }
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| format!("cannot read {url}: {e}"))?;
                Ok(body.to_vec())
            }
        }
    }
}

use crate::kube_api::{error_chain, in_cluster_base, SA_DIR};

impl JwksSource {
    /// The key source from the flags: a file, a URL, or (neither given) the
    /// in-cluster API server's `/openid/v1/jwks` with the agent's own
    /// ServiceAccount token and CA. A URL must be `https://`, or `http://`
    /// to a loopback address.
    pub fn from_settings(
        url: Option<&str>,
        file: Option<&Path>,
        ca_file: Option<&Path>,
        token_file: Option<&Path>,
    ) -> Result<JwksSource> {
        if let Some(f) = file {
            return Ok(JwksSource::File(f.to_path_buf()));
        }
        let (url, in_cluster) = match url {
            Some(u) => (u.to_string(), false),
            None => {
                let base = in_cluster_base().ok_or(
                    "no --jwks-url and not running in a cluster (KUBERNETES_SERVICE_HOST unset)",
                )?;
                (format!("{base}/openid/v1/jwks"), true)
            }
        };
        check_url(&url)?;
        let ca = ca_file
            .map(Path::to_path_buf)
            .or_else(|| in_cluster.then(|| PathBuf::from(SA_DIR).join("ca.crt")));
        let bearer = token_file
            .map(Path::to_path_buf)
            .or_else(|| in_cluster.then(|| PathBuf::from(SA_DIR).join("token")));
        let client = crate::kube_api::client(ca.as_deref(), "--jwks-ca-file")
            .map_err(|e| SourceError(e.0))?;
        Ok(JwksSource::Url {
            url,
            client,
            bearer_token_file: bearer,
        })
    }
}

/// `https://`, or `http://` to a loopback address (a test issuer, or a
/// proxy on the node): keys fetched in the clear from anywhere else could be
/// replaced by anyone on the path, and with them every pod's identity.
fn check_url(url: &str) -> Result<()> {
    let parsed = url.parse::<http::Uri>().ok().filter(|u| u.host().is_some());
    let Some(uri) = parsed else {
        return Err(format!("--jwks-url {url:?} is not an http(s) URL").into());
    };
    let host = uri.host().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback => Ok(()),
        Some("http") => Err(format!(
            "--jwks-url {url:?} must use https:// (plain http:// is accepted only for a loopback address)"
        ).into()),
        _ => Err(format!("--jwks-url {url:?} is not an http(s) URL").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_urls() {
        for ok in [
            "https://kubernetes.default.svc/openid/v1/jwks",
            "https://10.0.0.1:6443/openid/v1/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://127.0.0.2/jwks",
            "http://[::1]:8080/jwks",
            "http://localhost:8080/jwks",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://any-host/jwks",
            "http://10.0.0.1/jwks",
            "http://169.254.169.254/jwks",
            "http://localhost.evil.example/jwks",
            "ftp://127.0.0.1/jwks",
            "/openid/v1/jwks",
            "",
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.0.contains("--jwks-url"), "{bad}: {e}");
        }
        let e = JwksSource::from_settings(Some("http://any-host/x"), None, None, None)
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(e.contains("https://"), "{e}");
    }
}
