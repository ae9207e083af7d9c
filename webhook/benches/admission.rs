//! Admission benchmark: latency and throughput in-process and over TLS with
//! keep-alive against the real binary, and the binary's RSS with 50,000
//! ServiceAccounts cached.
//!
//! Run: `cargo bench -p pod-identity-webhook --bench admission`
//! (results are printed as Markdown and written to target/bench-admission.md;
//! docs/benchmarks.md records a run). Bounded: a fixed number of requests,
//! everything on 127.0.0.1, and the server is stopped at the end.

// A benchmark measures the real clocks.
#![allow(clippy::disallowed_methods)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pod_identity_webhook::admission::{review, AdmissionContext};
use pod_identity_webhook::injection::InjectionConfig;
use pod_identity_webhook::metrics::Metrics;
use pod_identity_webhook::sources::cache::ServiceAccountCache;
use pod_identity_webhook::sources::containercreds::ContainerCredentialsIdentities;
use pod_identity_webhook::sources::manifests::ServiceAccountManifest;
use serde_json::json;

const SERVICE_ACCOUNTS: usize = 50_000;
const IN_PROCESS_REQUESTS: usize = 50_000;
const TLS_REQUESTS: usize = 20_000;
const TLS_CONCURRENCY: usize = 8;

fn review_body(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{i}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": format!("ns-{}", i % 500),
            "operation": "CREATE",
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "app-", "labels": {"app": "bench"}},
                "spec": {
                    "serviceAccountName": format!("sa-{i}"),
                    "containers": [
                        {"name": "app", "image": "example/app:1", "env": [{"name": "A", "value": "1"}],
                         "resources": {"requests": {"cpu": "100m"}}},
                        {"name": "proxy", "image": "example/proxy:1"}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}]
                }
            }
        }
    }))
    .unwrap()
}

fn manifests() -> Vec<ServiceAccountManifest> {
    (0..SERVICE_ACCOUNTS)
        .map(|i| ServiceAccountManifest {
            namespace: format!("ns-{}", i % 500),
            name: format!("sa-{i}"),
            uid: format!("{:08x}-0000-4000-8000-{:012x}", i, i),
            annotations: if i % 2 == 0 {
                vec![(
                    "eks.amazonaws.com/role-arn".into(),
                    format!("arn:aws:iam::111122223333:role/role-{i}"),
                )]
            } else {
                vec![("app.kubernetes.io/name".into(), "x".into())]
            },
        })
        .collect()
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    format!(
        "{:.1} | {:.1} | {:.1} | {:.1}",
        p(0.5).as_secs_f64() * 1e6,
        p(0.9).as_secs_f64() * 1e6,
        p(0.99).as_secs_f64() * 1e6,
        p(0.999).as_secs_f64() * 1e6
    )
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn write_sa_file(path: &Path, sas: &[ServiceAccountManifest]) {
    let items: Vec<_> = sas
        .iter()
        .map(|s| {
            let ann: serde_json::Map<String, serde_json::Value> =
                s.annotations.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": s.name, "namespace": s.namespace, "uid": s.uid, "annotations": ann}})
        })
        .collect();
    std::fs::write(
        path,
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": items})).unwrap(),
    )
    .unwrap();
}

async fn in_process(out: &mut String) {
    let metrics = Arc::new(Metrics::new());
    let ctx = AdmissionContext {
        config: InjectionConfig {
            region: Some("us-west-2".into()),
            ..Default::default()
        },
        cache: ServiceAccountCache::from_manifests(
            "eks.amazonaws.com",
            &manifests(),
            metrics.clone(),
        ),
        container_credentials: Arc::new(ContainerCredentialsIdentities::default()),
        associations: Default::default(),
        metrics,
        jitter: Arc::new(|| 0),
    };
    let bodies: Vec<Vec<u8>> = (0..1000).map(review_body).collect();
    for b in &bodies {
        review(&ctx, b).await.unwrap();
    }
    let mut samples = Vec::with_capacity(IN_PROCESS_REQUESTS);
    let started = Instant::now();
    for i in 0..IN_PROCESS_REQUESTS {
        let t = Instant::now();
        let resp = review(&ctx, &bodies[i % bodies.len()]).await.unwrap();
        samples.push(t.elapsed());
        std::hint::black_box(resp);
    }
    let rate = IN_PROCESS_REQUESTS as f64 / started.elapsed().as_secs_f64();
    writeln!(
        out,
        "| in-process `review()` (decode, cache lookup, mutate, encode), 1 thread | {IN_PROCESS_REQUESTS} | {rate:.0} | {} |",
        percentiles(samples)
    )
    .unwrap();
}

async fn over_tls(out: &mut String) {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
    let sas = dir.path().join("sas.json");
    write_sa_file(&sas, &manifests());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pod-identity-webhook"))
        .args([
            "serve",
            "--bind-address=127.0.0.1",
            &format!("--port={port}"),
            &format!("--metrics-port={metrics_port}"),
            &format!("--tls-cert={}", dir.path().join("tls.crt").display()),
            &format!("--tls-key={}", dir.path().join("tls.key").display()),
            &format!("--service-accounts={}", sas.display()),
            "--aws-default-region=us-west-2",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("http://127.0.0.1:{metrics_port}/readyz"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "webhook did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_kib(pid);

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .http1_only()
        .pool_max_idle_per_host(TLS_CONCURRENCY)
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/mutate");
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..1000).map(review_body).collect());
    // Warm up the connections.
    for b in bodies.iter().take(200) {
        client
            .post(&url)
            .header("content-type", "application/json")
            .body(b.clone())
            .send()
            .await
            .unwrap();
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..TLS_CONCURRENCY {
        let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut i = w;
            while i < TLS_REQUESTS {
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[i % bodies.len()].clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                samples.push(t.elapsed());
                i += TLS_CONCURRENCY;
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.unwrap());
    }
    let rate = TLS_REQUESTS as f64 / started.elapsed().as_secs_f64();
    let rss_loaded = rss_kib(pid);
    writeln!(
        out,
        "| HTTPS POST /mutate to the release binary, HTTP/1.1 keep-alive, {TLS_CONCURRENCY} connections (client on the same 2 cores) | {TLS_REQUESTS} | {rate:.0} | {} |",
        percentiles(samples)
    )
    .unwrap();
    writeln!(out).unwrap();
    writeln!(
        out,
        "RSS of the `pod-identity-webhook serve` process with {SERVICE_ACCOUNTS} ServiceAccounts cached (half annotated): \
         {:.1} MiB when ready, {:.1} MiB after the load above.",
        rss_idle as f64 / 1024.0,
        rss_loaded as f64 / 1024.0
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing useful.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut out = String::new();
    writeln!(
        out,
        "| what | requests | req/s | p50 µs | p90 µs | p99 µs | p99.9 µs |"
    )
    .unwrap();
    writeln!(out, "| --- | --- | --- | --- | --- | --- | --- |").unwrap();
    rt.block_on(in_process(&mut out));
    rt.block_on(over_tls(&mut out));
    print!("{out}");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-admission.md");
    if let Ok(mut f) = std::fs::File::create(&target) {
        let _ = f.write_all(out.as_bytes());
    }
}
