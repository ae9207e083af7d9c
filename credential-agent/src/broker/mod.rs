//! The Pod Identity broker (`credential-agent broker`): EKS Auth's
//! `AssumeRoleForPodIdentity` over HTTPS, for any cluster. It reuses the
//! agent's verifier (`verify/`), cache (`cache/`), STS classification and
//! listener bounds; what is its own:
//!
//! - `service.rs`: the request, step by step, and its answers;
//! - `associations.rs`: the PodIdentityAssociation list and watch, and
//!   their status;
//! - `pods.rs`: is the token's pod still there (outage tolerant);
//! - `exchange.rs`: sts:AssumeRole with the pod's session tags (and the
//!   chain to `targetRoleArn`) behind the cache, signed by the broker's own
//!   credentials (the SDK's default chain: in a cluster, its own IRSA role).

pub mod associations;
pub mod exchange;
pub mod pods;
pub mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{bind, spawn_server};
use crate::cache::{random_jitter, Cache};
use crate::clock::Clock;
use crate::config::{BrokerConfig, CommonConfig};
use crate::error::{Error, Result};
use crate::http::{health_router, metrics_router};
use crate::metrics::Metrics;
use crate::role_session::RoleSessions;
use crate::verify::Verifier;
use associations::AssociationStore;
use exchange::PodIdentityExchanger;
use pods::PodCheck;
use service::{router, BrokerState};

/// A started broker.
pub struct Running {
    pub https_addr: SocketAddr,
    pub health_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub state: BrokerState,
    handle: axum_server::Handle<SocketAddr>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting; in-flight requests finish within `timeout`.
    pub fn shutdown(&self, timeout: Duration) {
        self.handle.graceful_shutdown(Some(timeout));
        let _ = self.shutdown.send(true);
    }

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

/// The broker's own STS client: the SDK's default credential chain
/// (environment, web identity, profile, container, instance metadata).
pub async fn own_sts_client(common: &CommonConfig) -> aws_sdk_sts::Client {
    use aws_sdk_sts::config::Region;
    let region = Region::new(common.region.clone());
    let provider = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
        .configure(
            aws_config::provider_config::ProviderConfig::default()
                .with_http_client(crate::sts::http_client())
                .with_region(Some(region)),
        )
        .build()
        .await;
    aws_sdk_sts::Client::from_conf(
        crate::sts::client_config(
            &common.region,
            common.sts_endpoint.as_deref(),
            common.sts_timeout,
        )
        .credentials_provider(provider)
        .build(),
    )
}

/// Binds, starts the watch, key refresh and servers.
pub async fn start(cfg: &BrokerConfig) -> Result<Running> {
    let metrics = Arc::new(Metrics::new());
    let (tls, not_after) = listener::tls::load(&cfg.tls_cert, &cfg.tls_key)
        .await
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    metrics.tls_certificate_expiry.set(not_after.unwrap_or(0));
    let m = metrics.clone();
    let reloader = listener::tls::spawn_reloader(
        tls.clone(),
        cfg.tls_cert.clone(),
        cfg.tls_key.clone(),
        cfg.tls_reload_interval,
        Arc::new(move |r| {
            if let listener::tls::Reloaded::Loaded { not_after } = r {
                m.tls_certificate_expiry.set(not_after.unwrap_or(0));
            }
        }),
    );
    let verifier = Arc::new(Verifier::new(
        cfg.verifier.clone(),
        cfg.jwks.clone(),
        metrics.clone(),
        Clock::system(),
    ));
    let keys = tokio::spawn(verifier.clone().run(cfg.jwks_refresh_interval));
    let api = Arc::new(cfg.kube.clone());
    let store = Arc::new(AssociationStore::default());
    let watch_task = tokio::spawn(associations::run(
        api.clone(),
        store.clone(),
        cfg.write_status,
    ));
    let exchanger = Arc::new(PodIdentityExchanger {
        sessions: RoleSessions::new(own_sts_client(&cfg.common).await),
        store: store.clone(),
        cluster_name: cfg.cluster_name.clone(),
        cluster_arn: cfg.cluster_arn.clone(),
    });
    let cache = Cache::new(
        exchanger,
        cfg.common.cache.clone(),
        random_jitter(),
        metrics.clone(),
        Clock::system(),
    );
    let state = BrokerState {
        verifier: verifier.clone(),
        audiences: cfg.verifier.audiences.clone().into(),
        store: store.clone(),
        pods: Arc::new(PodCheck::new(
            api,
            cfg.pods.clone(),
            Clock::system(),
            metrics.clone(),
        )),
        cache,
        metrics: metrics.clone(),
        cluster_name: cfg.cluster_name.clone(),
        cluster_arn: cfg.cluster_arn.clone(),
        region: cfg.common.region.clone(),
    };

    let https = bind(cfg.listen, "EKS Auth API").await?;
    let https_addr = https.local_addr().map_err(|e| Error::Io {
        context: "EKS Auth API listener".into(),
        source: e,
    })?;
    let https = https.into_std().map_err(|e| Error::Io {
        context: "EKS Auth API listener".into(),
        source: e,
    })?;
    let limits = cfg.common.limits;
    let m = metrics.clone();
    let on_reject: listener::OnReject =
        Arc::new(move |why: listener::Rejected| m.connection_rejected(why.as_str()));
    let handle = axum_server::Handle::new();
    let mut server = axum_server::from_tcp(https)
        .map_err(|e| Error::Io {
            context: "EKS Auth API listener".into(),
            source: e,
        })?
        .acceptor(listener::tls::acceptor(
            tls,
            listener::Limiter::new(limits),
            on_reject,
            cfg.connection_idle_timeout,
        ))
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    let app = router(state.clone());
    let https_task = tokio::spawn(async move {
        if let Err(e) = server.serve(app.into_make_service()).await {
            tracing::error!(error = %e, "the EKS Auth API listener stopped");
        }
    });

    let health = bind(cfg.common.health_listen, "health").await?;
    let metrics_l = bind(cfg.common.metrics_listen, "metrics").await?;
    let addr = |l: &tokio::net::TcpListener, what: &str| {
        l.local_addr().map_err(|e| Error::Io {
            context: format!("{what} listener"),
            source: e,
        })
    };
    let health_addr = addr(&health, "health")?;
    let metrics_addr = addr(&metrics_l, "metrics")?;
    let (tx, rx) = watch::channel(false);
    let ready_store = store.clone();
    let ready = Arc::new(move || verifier.ready() && ready_store.is_synced());
    let servers = vec![
        https_task,
        spawn_server(
            health,
            health_router(ready.clone()),
            limits,
            metrics.clone(),
            rx.clone(),
        ),
        spawn_server(
            metrics_l,
            metrics_router(metrics.clone(), ready),
            limits,
            metrics,
            rx,
        ),
    ];
    tracing::info!(%https_addr, health = %health_addr, metrics = %metrics_addr, cluster = %cfg.cluster_name, "serving the EKS Auth API");
    Ok(Running {
        https_addr,
        health_addr,
        metrics_addr,
        state,
        handle,
        shutdown: tx,
        servers,
        background: vec![reloader, keys, watch_task],
    })
}

/// Runs a started broker until SIGTERM / Ctrl-C, then finishes in-flight
/// requests for up to `timeout`.
pub async fn serve_until_signal(running: Running, timeout: Duration) {
    listener::daemon::shutdown_signal().await;
    tracing::info!(timeout = ?timeout, "shutting down; finishing in-flight requests");
    running.shutdown(timeout);
    running.wait(timeout).await;
}
