//! Cache misses against a hand-written fake API server (a unit test of the
//! fallback path; the end-to-end test uses a real kube-apiserver): concurrent
//! misses for one ServiceAccount share one GET, the result is cached, and a
//! slow API server is cut off by the lookup grace period.

// Elapsed wall time against a real HTTP server is what is measured.
#![allow(clippy::disallowed_methods)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use pod_identity_webhook::metrics::Metrics;
use pod_identity_webhook::sources::cache::{LookupLimits, ServiceAccountCache};
use serde_json::json;

async fn fake_api(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/api/v1/namespaces/{ns}/serviceaccounts/{name}",
            get(|State((hits, delay)): State<(Arc<AtomicUsize>, Duration)>, Path((ns, name)): Path<(String, String)>| async move {
                hits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                Json(json!({
                    "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                    "metadata": {"name": name, "namespace": ns, "uid": "u-1",
                                 "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/x"}}
                }))
            }),
        )
        .with_state((hits.clone(), delay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

fn cache(url: &str, grace: Duration) -> Arc<ServiceAccountCache> {
    let config = kube::Config::new(url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    ServiceAccountCache::for_cluster(
        "eks.amazonaws.com",
        client,
        LookupLimits {
            timeout: grace,
            ..LookupLimits::default()
        },
        Arc::new(Metrics::new()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_one_get_and_result_is_cached() {
    let (url, hits) = fake_api(Duration::from_millis(200)).await;
    let c = cache(&url, Duration::from_secs(5));
    let lookups: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.lookup("ns", "sa").await })
        })
        .collect();
    for l in lookups {
        let entry = l.await.unwrap().unwrap().expect("found");
        assert_eq!(
            entry.get("role-arn"),
            Some("arn:aws:iam::111122223333:role/x")
        );
        assert_eq!(entry.uid, "u-1");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "20 concurrent misses made one request"
    );
    c.lookup("ns", "sa").await.unwrap().unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "then served from the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_api_server_is_bounded_by_grace_period() {
    let (url, _) = fake_api(Duration::from_secs(3)).await;
    let c = cache(&url, Duration::from_millis(150));
    let started = std::time::Instant::now();
    let err = c.lookup("ns", "slow").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    let msg = err.to_string();
    assert!(msg.contains("ns/slow") && msg.contains("within"), "{msg}");
}

#[tokio::test]
async fn readyz_fails_until_the_cache_has_synced() {
    use http_body_util::BodyExt;
    use pod_identity_webhook::admission::AdmissionContext;
    use pod_identity_webhook::injection::InjectionConfig;
    use pod_identity_webhook::server::{metrics_router, router, AppState};
    use pod_identity_webhook::sources::containercreds::ContainerCredentialsIdentities;
    use tower::ServiceExt;

    // No watcher has listed anything yet.
    let (url, _) = fake_api(Duration::ZERO).await;
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(AppState {
        clock: Default::default(),
        in_flight: tokio::sync::Semaphore::new(16),
        ctx: AdmissionContext {
            config: InjectionConfig::default(),
            cache: cache(&url, Duration::from_secs(1)),
            container_credentials: Arc::new(ContainerCredentialsIdentities::default()),
            associations: Default::default(),
            metrics,
            jitter: Arc::new(|| 0),
        },
        max_body: 1 << 20,
    });
    for app in [router(state.clone()), metrics_router(state.clone())] {
        let req = http::Request::get("/readyz")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 503);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("not synced"));
        let req = http::Request::get("/healthz")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            app.oneshot(req).await.unwrap().status(),
            200,
            "alive all the same"
        );
    }
}
