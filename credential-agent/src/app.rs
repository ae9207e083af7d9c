//! Start-up and shutdown of both serving modes: binds the listeners, builds
//! the verifier (node) or the token file (sidecar), the cache and the
//! routers, and runs the background tasks (key refresh, token file reload).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::Auth;
use crate::cache::{random_jitter, Cache};
use crate::clock::Clock;
use crate::config::{CommonConfig, NodeConfig, SidecarConfig};
use crate::eks_auth_client::EksAuthExchanger;
use crate::error::{Error, Result};
use crate::host_guard::HostGuard;
use crate::http::{health_router, metrics_router, router, AppState, ReadyCheck};
use crate::metrics::Metrics;
use crate::sidecar::TokenFile;
use crate::sts::{AwsSts, Exchanger, Routed};
use crate::verify::Verifier;

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

pub(crate) async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| Error::Io {
        context: format!("cannot listen on {addr} ({what})"),
        source: e,
    })
}

pub(crate) fn spawn_server(
    listener: TcpListener,
    app: Router,
    limits: listener::Limits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(listener::serve(
        listener,
        app,
        limits,
        Arc::new(move |why: listener::Rejected| metrics.connection_rejected(why.as_str())),
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ))
}

fn exchanger(common: &CommonConfig) -> Arc<dyn Exchanger> {
    Arc::new(AwsSts::new(
        &common.region,
        common.sts_endpoint.as_deref(),
        common.sts_timeout,
    ))
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
    common: &CommonConfig,
    listeners: Vec<TcpListener>,
    auth: Auth,
    exchanger: Arc<dyn Exchanger>,
    metrics: Arc<Metrics>,
    ready: ReadyCheck,
    background: Vec<JoinHandle<()>>,
) -> Result<Running> {
    let cache = Cache::new(
        exchanger,
        common.cache.clone(),
        random_jitter(),
        metrics.clone(),
        Clock::system(),
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
    let limits = common.limits;
    let serve = |l, app| spawn_server(l, app, limits, metrics.clone(), rx.clone());
    let mut servers = Vec::new();
    for l in listeners {
        servers.push(serve(l, router(state.clone())));
    }
    servers.push(serve(health, health_router(ready.clone())));
    servers.push(serve(metrics_l, metrics_router(metrics.clone(), ready)));
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

/// Runs a started agent until SIGTERM / Ctrl-C, then finishes in-flight
/// requests for up to `timeout`.
pub async fn serve_until_signal(running: Running, timeout: Duration) {
    listener::daemon::shutdown_signal().await;
    tracing::info!(timeout = ?timeout, "shutting down; finishing in-flight requests");
    running.shutdown();
    running.wait(timeout).await;
}

/// Node mode.
pub async fn start_node(cfg: &NodeConfig) -> Result<Running> {
    let pod_identity: Option<Arc<dyn Exchanger>> = match &cfg.eks_auth {
        None => None,
        Some(s) => Some(Arc::new(
            EksAuthExchanger::new(s, &cfg.common.region, cfg.common.sts_timeout).await?,
        )),
    };
    start_node_with(
        cfg,
        Arc::new(Routed {
            web_identity: exchanger(&cfg.common),
            pod_identity,
        }),
    )
    .await
}

/// Node mode with a given STS client (tests use this to count calls).
pub async fn start_node_with(cfg: &NodeConfig, exchanger: Arc<dyn Exchanger>) -> Result<Running> {
    let metrics = Arc::new(Metrics::new());
    let verifier = Arc::new(Verifier::new(
        cfg.verifier.clone(),
        cfg.jwks.clone(),
        metrics.clone(),
        Clock::system(),
    ));
    let listeners = bind_credential_listeners(&cfg.listen).await?;
    let keys = tokio::spawn(verifier.clone().run(cfg.jwks_refresh_interval));
    let v = verifier.clone();
    let pod_identity = cfg.eks_auth.as_ref().and_then(|_| {
        cfg.verifier
            .audiences
            .iter()
            .position(|a| a == contract::injected::POD_IDENTITY_AUDIENCE)
            .map(|i| 1u32 << i)
    });
    start_with(
        &cfg.common,
        listeners,
        Auth::Node {
            verifier,
            scope: cfg.cache_scope,
            pod_identity,
        },
        exchanger,
        metrics,
        Arc::new(move || v.ready()),
        vec![keys],
    )
    .await
}

/// Sidecar mode.
pub async fn start_sidecar(cfg: &SidecarConfig) -> Result<Running> {
    start_sidecar_with(cfg, exchanger(&cfg.common)).await
}

pub async fn start_sidecar_with(
    args: &SidecarConfig,
    exchanger: Arc<dyn Exchanger>,
) -> Result<Running> {
    if !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "the sidecar listens beyond loopback: anything that can reach it and holds the token can get credentials");
    }
    let token_file = Arc::new(TokenFile::new(&args.token_file));
    if let Err(e) = token_file.reload().await {
        // The kubelet may not have written it yet; readiness says so.
        tracing::warn!(error = %e, "token file not readable yet");
    }
    let listeners = bind_credential_listeners(&[args.listen]).await?;
    let tf = token_file.clone();
    let interval = args.token_reload_interval;
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
