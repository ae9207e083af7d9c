//! HTTP: the credentials endpoint (container credentials protocol), the
//! health listener and the metrics listener, and process lifecycle.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::{random_jitter, Cache, Key, Lookup};
use crate::config::{validate_role_arn, CacheScope, CommonArgs, ServeArgs, SidecarArgs};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::packed::CachedCredentials;
use crate::secret::Secret;
use crate::sidecar::TokenFile;
use crate::sts::{session_name, AwsSts, Exchanger};
use crate::verify::{unverified_identity, Verifier, VerifierConfig};

/// DNS-rebinding guard: the Host header must name an address we listen on.
#[derive(Debug, Default)]
pub struct HostGuard {
    exact: HashSet<String>,
    /// Ports of wildcard listeners: any IP literal (or localhost) with them.
    wildcard_ports: HashSet<u16>,
}

fn host_forms(ip: IpAddr, port: u16) -> Vec<String> {
    let ip_s = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let mut out = vec![format!("{ip_s}:{port}")];
    if port == 80 {
        out.push(ip_s);
    }
    if ip.is_loopback() {
        out.push(format!("localhost:{port}"));
        if port == 80 {
            out.push("localhost".into());
        }
    }
    out
}

impl HostGuard {
    pub fn for_addrs(addrs: &[SocketAddr]) -> Self {
        let mut g = HostGuard::default();
        for a in addrs {
            if a.ip().is_unspecified() {
                g.wildcard_ports.insert(a.port());
            } else {
                g.exact.extend(host_forms(a.ip(), a.port()));
            }
        }
        g
    }

    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.exact.contains(&host) {
            return true;
        }
        if self.wildcard_ports.is_empty() {
            return false;
        }
        // host[:port] with an IP literal or localhost.
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) if !n.ends_with(':') && (n.starts_with('[') || !n.contains(':')) => {
                match p.parse::<u16>() {
                    Ok(p) => (n.to_string(), p),
                    Err(_) => return false,
                }
            }
            _ => (host.clone(), 80),
        };
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        let ok_name = name == "localhost" || literal.parse::<IpAddr>().is_ok();
        ok_name && self.wildcard_ports.contains(&port)
    }
}

/// How callers are authenticated.
pub enum Auth {
    /// Node mode: verify the token, take the role from `?role=`.
    Node {
        verifier: Arc<Verifier>,
        scope: CacheScope,
    },
    /// Sidecar: the token must be the pod's token file; one role.
    Sidecar {
        token_file: Arc<TokenFile>,
        role_arn: String,
    },
}

#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<Auth>,
    pub cache: Cache,
    pub metrics: Arc<Metrics>,
    pub hosts: Arc<HostGuard>,
}

#[derive(Deserialize)]
pub struct RoleQuery {
    role: Option<String>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/credentials", get(credentials))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(State(state): State<AppState>) -> Response {
    state.metrics.request(404);
    error_response(&Error::NotFound)
}

fn error_response(e: &Error) -> Response {
    let body = serde_json::json!({ "code": e.code(), "message": e.to_string() });
    json_response(e.status(), body.to_string())
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The 200 body every SDK's container provider reads.
pub fn credentials_body(c: &CachedCredentials) -> String {
    let mut body = serde_json::Map::new();
    body.insert("AccessKeyId".into(), c.access_key_id().into());
    body.insert("SecretAccessKey".into(), c.secret_access_key().into());
    body.insert("Token".into(), c.session_token().into());
    if let Some(a) = c.account_id() {
        body.insert("AccountId".into(), a.into());
    }
    body.insert(
        "Expiration".into(),
        humantime::format_rfc3339_seconds(c.expiration())
            .to_string()
            .into(),
    );
    serde_json::Value::Object(body).to_string()
}

fn presented_token(headers: &HeaderMap) -> Result<Secret> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Err(Error::MissingToken);
    };
    let s = v.to_str().map_err(|_| {
        Error::MalformedToken("the Authorization header is not a JWT (it holds non-ASCII bytes)")
    })?;
    let s = s.strip_prefix("Bearer ").unwrap_or(s);
    if s.is_empty() {
        return Err(Error::MissingToken);
    }
    Ok(Secret::new(s))
}

async fn credentials(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    query: std::result::Result<Query<RoleQuery>, QueryRejection>,
) -> Response {
    let result = serve_credentials(&state, &headers, &uri, query).await;
    let resp = match &result {
        Ok(c) => json_response(StatusCode::OK, credentials_body(c)),
        Err(e) => {
            if matches!(
                e,
                Error::TokenRejected(_) | Error::TokenMismatch | Error::MalformedToken(_)
            ) {
                tracing::info!(code = e.code(), error = %e, "refused a token");
            } else {
                tracing::info!(code = e.code(), error = %e, "credential request failed");
            }
            error_response(e)
        }
    };
    state.metrics.request(resp.status().as_u16());
    resp
}

async fn serve_credentials(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    query: std::result::Result<Query<RoleQuery>, QueryRejection>,
) -> Result<CachedCredentials> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    if !state.hosts.allows(&host) {
        return Err(Error::HostNotAllowed(host));
    }
    let token = presented_token(headers)?;
    let lookup = match state.auth.as_ref() {
        Auth::Node { verifier, scope } => {
            let role = query
                .map_err(|_| Error::InvalidRole("the query string cannot be parsed".into()))?
                .0
                .role
                .ok_or_else(|| {
                    Error::InvalidRole(
                        "no role: the credentials URI must name it, /v1/credentials?role=<URL-encoded role ARN>"
                            .into(),
                    )
                })?;
            validate_role_arn(&role).map_err(Error::InvalidRole)?;
            let id = verifier.verify(&token).await.inspect_err(|e| {
                state.metrics.rejection(e.reason());
            })?;
            let per_pod = *scope == CacheScope::Pod;
            let session = session_name(
                &id.namespace,
                &id.service_account,
                if per_pod {
                    id.pod_name.as_deref()
                } else {
                    None
                },
            );
            tracing::debug!(namespace = %id.namespace, service_account = %id.service_account, role = %role, "verified token");
            Lookup {
                key: Key {
                    namespace: id.namespace.clone(),
                    service_account: id.service_account.clone(),
                    service_account_uid: id.service_account_uid.clone(),
                    role_arn: role,
                    pod_uid: if per_pod { id.pod_uid.clone() } else { None },
                },
                session_name: session,
                token,
                token_expires: Some(id.expires),
            }
        }
        Auth::Sidecar {
            token_file,
            role_arn,
        } => {
            let current = token_file
                .authenticate(token.expose().as_bytes())
                .await
                .inspect_err(|_| state.metrics.rejection("token_mismatch"))?;
            let id = unverified_identity(&current);
            let (ns, sa, uid, pod) = match &id {
                Some(i) => (
                    i.namespace.as_str(),
                    i.service_account.as_str(),
                    i.service_account_uid.as_str(),
                    i.pod_name.as_deref(),
                ),
                None => ("pod", "sidecar", "", None),
            };
            Lookup {
                key: Key {
                    namespace: ns.into(),
                    service_account: sa.into(),
                    service_account_uid: uid.into(),
                    role_arn: role_arn.clone(),
                    pod_uid: None,
                },
                session_name: session_name(ns, sa, pod),
                token_expires: id.as_ref().map(|i| i.expires),
                token: current,
            }
        }
    };
    let served = state.cache.get(lookup).await?;
    Ok(served.credentials)
}

/// Readiness: what must hold before the agent can serve.
pub type ReadyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

pub fn health_router(ready: ReadyCheck) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready() {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
}

pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    )
}

/// A started agent.
pub struct Running {
    /// Where credentials are served (listeners that could be bound).
    pub credential_addrs: Vec<SocketAddr>,
    pub health_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting; in-flight requests finish.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits for the servers to drain, at most `timeout`.
    pub async fn wait(self, timeout: Duration) {
        for b in &self.background {
            b.abort();
        }
        let all = futures::future::join_all(self.servers);
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!(?timeout, "requests still running at the shutdown deadline");
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| Error::Io {
        context: format!("cannot listen on {addr} ({what})"),
        source: e,
    })
}

fn spawn_server(
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let addr = listener.local_addr().ok();
        let res = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = res {
            tracing::error!(?addr, error = %e, "server failed");
        }
    })
}

fn exchanger(common: &CommonArgs) -> Result<Arc<dyn Exchanger>> {
    let region = common.resolved_region()?;
    let endpoint = common.sts_endpoint()?;
    Ok(Arc::new(AwsSts::new(
        &region,
        endpoint.as_deref(),
        common.sts_timeout,
    )))
}

/// Binds every address it can; fails only if none works.
async fn bind_credential_listeners(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for a in addrs {
        match TcpListener::bind(a).await {
            Ok(l) => out.push(l),
            Err(e) => {
                tracing::warn!(address = %a, error = %e, "cannot listen on this address; skipping it");
                errors.push(format!("{a}: {e}"));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Config(format!(
            "no credentials listener could be bound ({}); on a node, run `credential-agent setup-link` first",
            errors.join("; ")
        )));
    }
    Ok(out)
}

async fn start_with(
    common: &CommonArgs,
    listeners: Vec<TcpListener>,
    auth: Auth,
    exchanger: Arc<dyn Exchanger>,
    metrics: Arc<Metrics>,
    ready: ReadyCheck,
    background: Vec<JoinHandle<()>>,
) -> Result<Running> {
    let cache = Cache::new(
        exchanger,
        common.cache_config()?,
        random_jitter(),
        metrics.clone(),
    );
    let credential_addrs: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let state = AppState {
        auth: Arc::new(auth),
        cache,
        metrics: metrics.clone(),
        hosts: Arc::new(HostGuard::for_addrs(&credential_addrs)),
    };
    let health = bind(common.health_listen, "health").await?;
    let metrics_l = bind(common.metrics_listen, "metrics").await?;
    let health_addr = health.local_addr().map_err(|e| Error::Io {
        context: "health listener".into(),
        source: e,
    })?;
    let metrics_addr = metrics_l.local_addr().map_err(|e| Error::Io {
        context: "metrics listener".into(),
        source: e,
    })?;
    let (tx, rx) = watch::channel(false);
    let mut servers = Vec::new();
    for l in listeners {
        servers.push(spawn_server(l, router(state.clone()), rx.clone()));
    }
    servers.push(spawn_server(health, health_router(ready), rx.clone()));
    servers.push(spawn_server(metrics_l, metrics_router(metrics), rx));
    for a in &credential_addrs {
        tracing::info!(address = %a, "serving credentials");
    }
    tracing::info!(health = %health_addr, metrics = %metrics_addr, "serving health and metrics");
    Ok(Running {
        credential_addrs,
        health_addr,
        metrics_addr,
        state,
        shutdown: tx,
        servers,
        background,
    })
}

/// Node mode.
pub async fn start_node(args: &ServeArgs) -> Result<Running> {
    let exchanger = exchanger(&args.common)?;
    start_node_with(args, exchanger).await
}

/// Node mode with a given STS client (tests use this to count calls).
pub async fn start_node_with(args: &ServeArgs, exchanger: Arc<dyn Exchanger>) -> Result<Running> {
    if args.issuer.is_empty() {
        return Err(Error::Config("--issuer must not be empty".into()));
    }
    if args.audiences.iter().all(|a| a.is_empty()) {
        return Err(Error::Config(
            "--audience must name at least one audience".into(),
        ));
    }
    args.common.cache_config()?;
    let metrics = Arc::new(Metrics::new());
    let verifier = Arc::new(Verifier::new(
        VerifierConfig {
            issuer: args.issuer.clone(),
            audiences: args
                .audiences
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            leeway: args.token_leeway,
            min_refetch_interval: args.jwks_min_refetch_interval,
        },
        args.jwks_source()?,
        metrics.clone(),
    ));
    let listeners = bind_credential_listeners(&args.listen).await?;
    let keys = tokio::spawn(verifier.clone().run(args.jwks_refresh_interval));
    let v = verifier.clone();
    start_with(
        &args.common,
        listeners,
        Auth::Node {
            verifier,
            scope: args.cache_scope,
        },
        exchanger,
        metrics,
        Arc::new(move || v.ready()),
        vec![keys],
    )
    .await
}

/// Sidecar mode.
pub async fn start_sidecar(args: &SidecarArgs) -> Result<Running> {
    let exchanger = exchanger(&args.common)?;
    start_sidecar_with(args, exchanger).await
}

pub async fn start_sidecar_with(
    args: &SidecarArgs,
    exchanger: Arc<dyn Exchanger>,
) -> Result<Running> {
    validate_role_arn(&args.role_arn).map_err(|e| Error::Config(format!("--role-arn: {e}")))?;
    if !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "the sidecar listens beyond loopback: anything that can reach it and holds the token can get credentials");
    }
    args.common.cache_config()?;
    let token_file = Arc::new(TokenFile::new(&args.token_file));
    if let Err(e) = token_file.reload().await {
        // The kubelet may not have written it yet; readiness says so.
        tracing::warn!(error = %e, "token file not readable yet");
    }
    let listeners = bind_credential_listeners(&[args.listen]).await?;
    let tf = token_file.clone();
    let interval = args.token_reload_interval.max(Duration::from_secs(1));
    let reload = tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = tf.reload().await {
                tracing::warn!(error = %e, "cannot re-read the token file");
            }
        }
    });
    let tf = token_file.clone();
    start_with(
        &args.common,
        listeners,
        Auth::Sidecar {
            token_file,
            role_arn: args.role_arn.clone(),
        },
        exchanger,
        Arc::new(Metrics::new()),
        Arc::new(move || tf.current().is_some()),
        vec![reload],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sts::Credentials;

    #[test]
    fn host_guard() {
        let g = HostGuard::for_addrs(&[
            "169.254.170.23:80".parse().unwrap(),
            "[fd00:ec2::23]:80".parse().unwrap(),
            "127.0.0.1:2702".parse().unwrap(),
        ]);
        for ok in [
            "169.254.170.23",
            "169.254.170.23:80",
            "[fd00:ec2::23]",
            "[FD00:EC2::23]:80",
            "127.0.0.1:2702",
            "localhost:2702",
        ] {
            assert!(g.allows(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example.com",
            "evil.example.com:80",
            "169.254.170.23:8080",
            "127.0.0.1",
            "localhost",
            "127.0.0.2:2702",
        ] {
            assert!(!g.allows(bad), "{bad}");
        }
        let wild = HostGuard::for_addrs(&["0.0.0.0:8080".parse().unwrap()]);
        assert!(wild.allows("10.1.2.3:8080"));
        assert!(wild.allows("[::1]:8080"));
        assert!(wild.allows("localhost:8080"));
        assert!(!wild.allows("10.1.2.3:80"));
        assert!(!wild.allows("rebind.example.com:8080"));
    }

    #[test]
    fn body_has_the_sdk_fields_and_z_expiration() {
        let c = Credentials {
            access_key_id: "AKIA1".into(),
            secret_access_key: Secret::new("s"),
            session_token: Secret::new("t"),
            account_id: Some("123456789012".into()),
            expiration: std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        };
        let v: serde_json::Value =
            serde_json::from_str(&credentials_body(&CachedCredentials::new(&c))).unwrap();
        assert_eq!(v["AccessKeyId"], "AKIA1");
        assert_eq!(v["SecretAccessKey"], "s");
        assert_eq!(v["Token"], "t");
        assert_eq!(v["AccountId"], "123456789012");
        assert_eq!(v["Expiration"], "2027-01-15T08:00:00Z");
    }
}
