//! The HTTPS admission server and the plain-HTTP metrics server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_server::Handle;

use crate::admission::{review, AdmissionContext};
use crate::clock::Clock;
use crate::config::{ClusterSource, ServerConfig, ServiceAccountSource};
use crate::injection::identity::MAX_EXPIRATION_JITTER;
use crate::metrics::Metrics;
use crate::sources::associations::Associations;
use crate::sources::cache::ServiceAccountCache;
use crate::sources::containercreds::ContainerCredentialsIdentities;
use crate::{Error, Result};

pub struct AppState {
    pub ctx: AdmissionContext,
    pub clock: Clock,
    pub max_body: usize,
    /// Reviews read and answered at once (`--max-requests-in-flight`); a
    /// review waits here before its body is read.
    pub in_flight: tokio::sync::Semaphore,
}

fn error_response(e: &Error) -> Response {
    (
        e.status(),
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{e}\n"),
    )
        .into_response()
}

fn is_json(headers: &HeaderMap) -> std::result::Result<(), Error> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(ct.to_string()))
    }
}

async fn mutate_handler(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = state.clock.now();
    let result = async {
        is_json(&headers)?;
        // Closed never: the semaphore lives as long as the state.
        let _slot = state.in_flight.acquire().await.ok();
        let bytes = axum::body::to_bytes(body, state.max_body)
            .await
            .map_err(|_| Error::BodyTooLarge {
                limit: state.max_body,
            })?;
        review(&state.ctx, &bytes).await
    }
    .await;
    let response = match result {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "rejected admission request");
            state.ctx.metrics.outcome("bad_request");
            error_response(&e)
        }
    };
    state.ctx.metrics.duration.observe(
        state
            .clock
            .now()
            .saturating_duration_since(started)
            .as_secs_f64(),
    );
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.ctx.cache.is_ready() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceAccount cache not synced yet\n",
        )
            .into_response()
    } else if !state.ctx.associations.is_ready() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "PodIdentityAssociations not listed yet (is the CRD installed?)\n",
        )
            .into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    state.ctx.metrics.cache_synced.set(i64::from(
        state.ctx.cache.is_ready() && state.ctx.associations.is_ready(),
    ));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.ctx.metrics.encode(),
    )
        .into_response()
}

/// The admission router: `POST /mutate`, `GET /healthz`, `GET /readyz`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// The metrics router: `GET /metrics`, `/healthz`, `/readyz`.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// The default jitter: uniform in 0..=2 h.
pub fn random_jitter() -> i64 {
    rand::random_range(0..=MAX_EXPIRATION_JITTER)
}

async fn kube_client(c: &ClusterSource) -> Result<kube::Client> {
    let mut config = match &c.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::kube(format!("cannot read kubeconfig {}", path.display()), e))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| Error::kube(format!("invalid kubeconfig {}", path.display()), e))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            Error::kube(
                "no cluster connection; run in a cluster, pass --kubeconfig, or use --service-accounts FILE to run without a cluster",
                e,
            )
        })?,
    };
    if let Some(url) = &c.kube_api {
        config.cluster_url = url.clone();
    }
    kube::Client::try_from(config).map_err(|e| Error::kube("building the Kubernetes client", e))
}

/// Native sidecars (init containers with `restartPolicy: Always`) are on by
/// default from Kubernetes 1.29.
async fn detect_native_sidecars(client: &kube::Client) -> bool {
    match client.apiserver_version().await {
        Ok(info) => {
            let major: u32 = info.major.trim_end_matches('+').parse().unwrap_or(0);
            let minor: u32 = info.minor.trim_end_matches('+').parse().unwrap_or(0);
            let native = (major, minor) >= (1, 29);
            tracing::info!(version = %info.git_version, native_sidecars = native, "API server version");
            native
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the API server version; assuming no native sidecars (sidecar mode falls back to web identity; set --native-sidecars=true to override)");
            false
        }
    }
}

/// Builds the shared state from the flags: connects to the cluster (or reads
/// the ServiceAccounts file), loads the container credentials config and
/// starts the watchers.
pub async fn build_state(cfg: &ServerConfig, metrics: Arc<Metrics>) -> Result<Arc<AppState>> {
    let mut config = cfg.injection.clone();
    if cfg.in_cluster_requested {
        tracing::warn!("--in-cluster=true: the upstream CSR certificate flow is not implemented; serving --tls-cert/--tls-key");
    }
    let mut associations = Arc::new(Associations::default());
    let cache = match &cfg.service_accounts {
        ServiceAccountSource::File(path) => {
            let cache =
                ServiceAccountCache::from_file(&config.annotation_prefix, path, metrics.clone())?;
            tracing::info!(serviceaccounts = cache.len(), file = %path.display(), "ServiceAccounts from file; no cluster connection");
            cache
        }
        ServiceAccountSource::Cluster(c) => {
            let client = kube_client(c).await?;
            if c.detect_native_sidecars {
                config.native_sidecars = detect_native_sidecars(&client).await;
            }
            let cache = ServiceAccountCache::for_cluster(
                &config.annotation_prefix,
                client.clone(),
                c.lookups,
                metrics.clone(),
            );
            cache.spawn_watchers(c.config_map_namespace.as_deref())?;
            if c.pod_identity_associations {
                let set = Arc::new(Associations::watched());
                set.spawn(client.clone());
                associations = set;
            }
            if let Some(interval) = c.missing_injection_audit {
                crate::sources::audit::spawn(
                    client.clone(),
                    Arc::clone(&cache),
                    metrics.clone(),
                    interval,
                    config.annotation_prefix.clone(),
                    config.sidecar.name.clone(),
                );
            }
            cache
        }
    };
    let container_credentials = match &cfg.container_credentials_config {
        Some(path) => {
            let ids = Arc::new(ContainerCredentialsIdentities::load(path)?);
            ids.spawn_poller(path.clone(), cfg.reload_interval, metrics.clone());
            ids
        }
        None => Arc::new(ContainerCredentialsIdentities::default()),
    };
    Ok(Arc::new(AppState {
        ctx: AdmissionContext {
            config,
            cache,
            container_credentials,
            associations,
            metrics,
            jitter: Arc::new(random_jitter),
        },
        clock: Clock::system(),
        max_body: cfg.max_request_bytes,
        in_flight: tokio::sync::Semaphore::new(cfg.max_requests_in_flight),
    }))
}

/// A started server.
pub struct Running {
    pub https_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub state: Arc<AppState>,
    handle: Handle<SocketAddr>,
    metrics_shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Stops accepting connections and lets in-flight requests finish within `timeout`.
    pub fn shutdown(&self, timeout: Duration) {
        self.handle.graceful_shutdown(Some(timeout));
        let _ = self.metrics_shutdown.send(true);
    }

    /// Waits for both servers to end.
    pub async fn wait(self) -> Result<()> {
        for t in self.tasks {
            t.await.map_err(|e| Error::Io(std::io::Error::other(e)))??;
        }
        Ok(())
    }
}

fn metrics_for_rejects(state: &Arc<AppState>) -> listener::OnReject {
    let metrics = state.ctx.metrics.clone();
    Arc::new(move |why: listener::Rejected| metrics.connection_rejected(why.as_str()))
}

/// `serve`: starts, waits for SIGTERM / Ctrl-C, then drains in-flight
/// requests for up to --shutdown-timeout.
pub async fn run(cfg: &ServerConfig) -> Result<()> {
    let running = start(cfg).await?;
    listener::daemon::shutdown_signal().await;
    tracing::info!(timeout = ?cfg.shutdown_timeout, "shutting down; draining in-flight requests");
    running.shutdown(cfg.shutdown_timeout);
    running.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Binds both listeners and starts serving.
pub async fn start(args: &ServerConfig) -> Result<Running> {
    let metrics = Arc::new(Metrics::new());
    let (tls_config, not_after) = listener::tls::load(&args.tls_cert, &args.tls_key)
        .await
        .map_err(|e| Error::Tls(e.to_string()))?;
    if let Some(t) = not_after {
        metrics.tls_not_after.set(t);
    }
    let state = build_state(args, metrics.clone()).await?;
    listener::tls::spawn_reloader(
        tls_config.clone(),
        args.tls_cert.clone(),
        args.tls_key.clone(),
        args.reload_interval,
        Arc::new(move |r| match r {
            listener::tls::Reloaded::Loaded { not_after } => {
                metrics.reload("tls");
                if let Some(t) = not_after {
                    metrics.tls_not_after.set(t);
                }
            }
            listener::tls::Reloaded::Unusable => metrics.reload("tls_error"),
        }),
    );

    let bind = |port| {
        let addr = SocketAddr::new(args.bind_address, port);
        let l = std::net::TcpListener::bind(addr).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr}: {e}"),
            ))
        })?;
        l.set_nonblocking(true)?;
        Ok::<_, Error>(l)
    };
    let https = bind(args.port)?;
    let https_addr = https.local_addr()?;
    let metrics_listener = tokio::net::TcpListener::from_std(bind(args.metrics_port)?)?;
    let metrics_addr = metrics_listener.local_addr()?;

    let limits = args.limits;
    let handle = Handle::new();
    let counted = metrics_for_rejects(&state);
    let acceptor = listener::tls::acceptor(
        tls_config,
        listener::Limiter::new(limits),
        counted.clone(),
        args.idle_timeout,
    );
    let mut server = axum_server::from_tcp(https)?
        .acceptor(acceptor)
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    let app = router(state.clone());
    let https_task = tokio::spawn(async move { server.serve(app.into_make_service()).await });

    // Plain HTTP: the shared loop with header-read and idle timeouts and
    // connection caps (the HTTPS port has axum-server's TLS handshake bound).
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let metrics_app = metrics_router(state.clone());
    let metrics_task = tokio::spawn(async move {
        listener::serve(metrics_listener, metrics_app, limits, counted, async move {
            let _ = rx.wait_for(|v| *v).await;
        })
        .await;
        Ok(())
    });
    tracing::info!(%https_addr, %metrics_addr, "serving");
    Ok(Running {
        https_addr,
        metrics_addr,
        state,
        handle,
        metrics_shutdown: tx,
        tasks: vec![https_task, metrics_task],
    })
}
