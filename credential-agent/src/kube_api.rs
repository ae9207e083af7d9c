//! The API server as the agent and the broker reach it, with the HTTP client
//! they already have (reqwest) instead of a Kubernetes client library, for
//! the few calls they make: the issuer's key set (node mode), one pod's GET,
//! a list and watch of PodIdentityAssociations and a merge patch of their
//! status (broker). In a cluster the defaults are the in-cluster service
//! (`KUBERNETES_SERVICE_HOST`/`_PORT`), the ServiceAccount's CA, and its
//! token, re-read for every request (the kubelet rotates it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{Stream, StreamExt};

contract::message_error! {
    /// Why the API server settings cannot be used (at start).
    SettingsError
}

/// The ServiceAccount directory the kubelet mounts.
pub const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The in-cluster API server's base URL (`https://host:port`), if this runs
/// in a pod.
pub fn in_cluster_base() -> Option<String> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Some(format!("https://{host}:{port}"))
}

/// A client trusting only `ca` (a PEM bundle) when given; no redirects.
pub fn client(ca: Option<&Path>, what: &str) -> Result<reqwest::Client, SettingsError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca {
        let pem = std::fs::read(ca)
            .map_err(|e| format!("cannot read the CA file {} ({what}): {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{} holds no usable PEM certificate: {e}", ca.display()))?;
        builder = builder.tls_certs_only(certs);
    }
    Ok(builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client ({what}): {e}"))?)
}

/// Why a call to the API server did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeError {
    /// 404.
    #[error("not found")]
    NotFound,
    /// 410: the watch's resourceVersion is too old; list again.
    #[error("resource version expired")]
    Gone,
    /// Another status, with the start of the API server's message.
    #[error("the API server answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    /// No answer: connection, TLS, timeout, or an unreadable body.
    #[error("the API server cannot be reached: {0}")]
    Unreachable(String),
}

impl KubeError {
    /// Whether this says nothing about the object (the API server is down,
    /// slow or failing), as opposed to an answer about it.
    pub fn is_outage(&self) -> bool {
        match self {
            KubeError::Unreachable(_) => true,
            KubeError::Status { status, .. } => *status >= 500 || *status == 429,
            KubeError::NotFound | KubeError::Gone => false,
        }
    }
}

/// The API server.
#[derive(Clone, Debug)]
pub struct KubeApi {
    base: String,
    client: reqwest::Client,
    token_file: Option<PathBuf>,
    timeout: Duration,
}

/// Bodies the broker reads are a pod or a list of associations; a list of
/// 10,000 associations is a few MiB.
const MAX_BODY: usize = 64 * 1024 * 1024;

impl KubeApi {
    /// From the flags; each missing one defaults to the in-cluster value.
    pub fn from_settings(
        url: Option<&str>,
        ca_file: Option<&Path>,
        token_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<KubeApi, SettingsError> {
        let (base, in_cluster) = match url.filter(|u| !u.is_empty()) {
            Some(u) => (u.trim_end_matches('/').to_string(), false),
            None => (
                in_cluster_base().ok_or(
                    "no --kube-api-url and not running in a cluster (KUBERNETES_SERVICE_HOST unset)",
                )?,
                true,
            ),
        };
        let parsed: http::Uri = base
            .parse()
            .map_err(|_| format!("--kube-api-url {base:?} is not a URL"))?;
        if parsed.scheme_str() != Some("https") {
            return Err(format!("--kube-api-url {base:?} must be https://").into());
        }
        let ca = ca_file
            .map(Path::to_path_buf)
            .or_else(|| in_cluster.then(|| PathBuf::from(SA_DIR).join("ca.crt")));
        let token_file = token_file
            .map(Path::to_path_buf)
            .or_else(|| in_cluster.then(|| PathBuf::from(SA_DIR).join("token")));
        Ok(KubeApi {
            base,
            client: client(ca.as_deref(), "API server")?,
            token_file,
            timeout,
        })
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, KubeError> {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(f) = &self.token_file {
            let token = tokio::fs::read_to_string(f).await.map_err(|e| {
                KubeError::Unreachable(format!("cannot read the token file {}: {e}", f.display()))
            })?;
            req = req.bearer_auth(token.trim());
        }
        Ok(req)
    }

    async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response, KubeError> {
        let resp = req
            .send()
            .await
            .map_err(|e| KubeError::Unreachable(error_chain(&e)))?;
        match resp.status().as_u16() {
            200..=299 => Ok(resp),
            404 => Err(KubeError::NotFound),
            410 => Err(KubeError::Gone),
            status => {
                let text = resp.text().await.unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                    .unwrap_or(text);
                Err(KubeError::Status {
                    status,
                    message: message.chars().take(300).collect(),
                })
            }
        }
    }

    async fn body(resp: reqwest::Response) -> Result<serde_json::Value, KubeError> {
        if resp.content_length().is_some_and(|l| l > MAX_BODY as u64) {
            return Err(KubeError::Unreachable("the answer is too large".into()));
        }
        let mut buf = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| KubeError::Unreachable(error_chain(&e)))?;
            if buf.len() + chunk.len() > MAX_BODY {
                return Err(KubeError::Unreachable("the answer is too large".into()));
            }
            buf.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&buf)
            .map_err(|e| KubeError::Unreachable(format!("the answer is not JSON: {e}")))
    }

    /// GET `path` (e.g. `/api/v1/namespaces/ns/pods/name`).
    pub async fn get(&self, path: &str) -> Result<serde_json::Value, KubeError> {
        let req = self
            .request(reqwest::Method::GET, path)
            .await?
            .timeout(self.timeout);
        Self::body(Self::send(req).await?).await
    }

    /// A merge patch of `path` (a `/status` subresource).
    pub async fn merge_patch(&self, path: &str, body: &serde_json::Value) -> Result<(), KubeError> {
        let req = self
            .request(reqwest::Method::PATCH, path)
            .await?
            .timeout(self.timeout)
            .header("Content-Type", "application/merge-patch+json")
            .body(body.to_string());
        Self::send(req).await.map(drop)
    }

    /// The events of a watch of `path` from `resource_version`, one JSON
    /// object per item; the API server ends it after `seconds`.
    pub async fn watch(
        &self,
        path: &str,
        resource_version: &str,
        seconds: u64,
    ) -> Result<impl Stream<Item = Result<serde_json::Value, KubeError>> + use<>, KubeError> {
        let q = format!(
            "{path}?watch=1&allowWatchBookmarks=true&resourceVersion={resource_version}&timeoutSeconds={seconds}"
        );
        let req = self
            .request(reqwest::Method::GET, &q)
            .await?
            .timeout(Duration::from_secs(seconds) + self.timeout);
        let resp = Self::send(req).await?;
        Ok(lines(resp.bytes_stream()))
    }
}

/// One JSON value per line of a byte stream; a line over 16 MiB ends it.
fn lines<S, B, E>(bytes: S) -> impl Stream<Item = Result<serde_json::Value, KubeError>>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::error::Error,
{
    const MAX_LINE: usize = 16 * 1024 * 1024;
    futures::stream::unfold(
        (bytes, Vec::<u8>::new(), false),
        |(mut s, mut buf, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let v = serde_json::from_slice(&line).map_err(|e| {
                        KubeError::Unreachable(format!("a watch event is not JSON: {e}"))
                    });
                    let stop = v.is_err();
                    return Some((v, (s, buf, stop)));
                }
                if buf.len() > MAX_LINE {
                    return Some((
                        Err(KubeError::Unreachable("a watch event is too large".into())),
                        (s, buf, true),
                    ));
                }
                match s.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(chunk.as_ref()),
                    Some(Err(e)) => {
                        return Some((Err(KubeError::Unreachable(error_chain(&e))), (s, buf, true)))
                    }
                    None => return None,
                }
            }
        },
    )
}

/// An error with its causes, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watch_lines_split_anywhere_and_stop_at_garbage() {
        let chunks: Vec<Result<&[u8], std::io::Error>> = vec![
            Ok(b"{\"type\":\"ADDED\"}\n{\"ty"),
            Ok(b"pe\":\"DELETED\"}\n\n"),
            Ok(b"not json\n{\"type\":\"ADDED\"}\n"),
        ];
        let got: Vec<_> = lines(futures::stream::iter(chunks)).collect().await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap()["type"], "ADDED");
        assert_eq!(got[1].as_ref().unwrap()["type"], "DELETED");
        assert!(got[2].is_err());
    }

    #[test]
    fn outages_are_told_from_answers() {
        assert!(KubeError::Unreachable("x".into()).is_outage());
        assert!(KubeError::Status {
            status: 503,
            message: String::new()
        }
        .is_outage());
        assert!(KubeError::Status {
            status: 429,
            message: String::new()
        }
        .is_outage());
        assert!(!KubeError::Status {
            status: 403,
            message: String::new()
        }
        .is_outage());
        assert!(!KubeError::NotFound.is_outage());
    }

    #[test]
    fn settings_refuse_plain_http_and_need_a_cluster() {
        let e = KubeApi::from_settings(
            Some("http://127.0.0.1:1"),
            None,
            None,
            Duration::from_secs(1),
        )
        .unwrap_err()
        .0;
        assert!(e.contains("https://"), "{e}");
        assert!(KubeApi::from_settings(
            Some("https://127.0.0.1:6443/"),
            None,
            None,
            Duration::from_secs(1)
        )
        .is_ok());
    }
}
