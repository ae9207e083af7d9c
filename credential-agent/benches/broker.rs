//! Benchmarks of the Pod Identity broker (`credential-agent broker`, release
//! build) next to the node agent's own cached path, in the same run, with
//! the same load generator:
//!
//! 1. cached answers per second and latency percentiles at 1 and 16
//!    connections: the broker (HTTPS, AssumeRoleForPodIdentity, its pod
//!    check within the recheck interval) against the agent (plain HTTP/1.1,
//!    `GET /v1/credentials?role=`), the ratio broker / agent, and against a
//!    bare axum route over the same TLS (the share TLS takes); the broker
//!    and the bare route over HTTP/1.1 (the agent's protocol) and HTTP/2
//!    (what the agent's aws-sdk-eksauth client negotiates);
//! 2. STS calls for 1,000 pods of one ServiceAccount with session tags (one
//!    session per pod) and 1,000 of one with `disableSessionTags` (one per
//!    association), all at once;
//! 3. RSS of the broker holding 10,000 pods' sessions.
//!
//! The API server is canned here (a bench measures the broker, not the API
//! server): the association list, a watch that stays open, status patches,
//! and each pod's GET answering the uid its token carries; STS is the same
//! canned STS as the agent's bench.
//!
//! Run: `cargo bench -p credential-agent --bench broker`; BENCH_SECONDS sets
//! the load duration, BENCH_ONLY=throughput|calls|rss one part, BENCH_N the
//! pod count of the RSS part.

// A benchmark measures the real clocks.
#![allow(clippy::disallowed_methods)]

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use common::*;

mod common;

const CLUSTER: &str = "bench";
const AUDIENCE: &str = "pods.eks.amazonaws.com";

/// The canned API server over TLS: associations `app` (bench/app, session
/// tags) and `plain` (bench/plain, disableSessionTags); every pod exists
/// with the uid `stable_uuid(its name)`.
async fn fake_kube(cert: &str, key: &str) -> String {
    use axum::extract::Path;
    use axum::routing::{get, patch};
    let list = json!({"apiVersion": "pod-identity.io/v1alpha1", "kind": "PodIdentityAssociationList",
    "metadata": {"resourceVersion": "1"},
    "items": [
        {"metadata": {"name": "app", "uid": "0b5c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d", "generation": 1,
                      "creationTimestamp": "2026-01-01T00:00:00Z"},
         "spec": {"namespace": "bench", "serviceAccount": "app",
                  "roleArn": "arn:aws:iam::123456789012:role/bench"}},
        {"metadata": {"name": "plain", "uid": "1c6d2e3f-4051-4b6c-9d7e-8f9a0b1c2d3e", "generation": 1,
                      "creationTimestamp": "2026-01-01T00:00:00Z"},
         "spec": {"namespace": "bench", "serviceAccount": "plain", "disableSessionTags": true,
                  "roleArn": "arn:aws:iam::123456789012:role/bench"}},
    ]});
    let app = axum::Router::new()
        .route(
            "/apis/pod-identity.io/v1alpha1/podidentityassociations",
            get(move |q: axum::extract::RawQuery| {
                let list = list.clone();
                async move {
                    if q.0.unwrap_or_default().contains("watch=1") {
                        // A watch with nothing to say: open until the broker ends.
                        axum::body::Body::from_stream(futures::stream::pending::<
                            Result<Vec<u8>, std::io::Error>,
                        >())
                    } else {
                        axum::body::Body::from(list.to_string())
                    }
                }
            }),
        )
        .route(
            "/apis/pod-identity.io/v1alpha1/podidentityassociations/{name}/status",
            patch(|| async { "{}" }),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            get(|Path((_, name)): Path<(String, String)>| async move {
                let sa = if name.starts_with("plain-") {
                    "plain"
                } else {
                    "app"
                };
                json!({"metadata": {"name": name, "uid": stable_uuid(&name)},
                       "spec": {"serviceAccountName": sa}})
                .to_string()
            }),
        );
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.as_bytes().to_vec(),
        key.as_bytes().to_vec(),
    )
    .await
    .unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum_server::from_tcp_rustls(l, config)
            .unwrap()
            .serve(app.into_make_service())
            .await
            .unwrap()
    });
    format!("https://{addr}")
}

struct Broker {
    proc: Proc,
    url: String,
}

async fn start_broker(dir: &std::path::Path, sts: &str, kube: &str) -> Broker {
    let (port, health) = (free_port(), free_port());
    let path = |f: &str| dir.join(f).display().to_string();
    let child = Command::new(BIN)
        .args([
            "broker",
            &format!("--listen=127.0.0.1:{port}"),
            &format!("--health-listen=127.0.0.1:{health}"),
            &format!("--metrics-listen=127.0.0.1:{}", free_port()),
            &format!("--tls-cert={}", path("tls.crt")),
            &format!("--tls-key={}", path("tls.key")),
            &format!("--cluster-name={CLUSTER}"),
            &format!("--issuer={ISSUER}"),
            &format!("--jwks-file={}", path("jwks.json")),
            &format!("--kube-api-url={kube}"),
            &format!("--kube-ca-file={}", path("ca.crt")),
            &format!("--sts-endpoint={sts}"),
            "--region=us-east-1",
            "--max-entries=20000",
            // Every node agent is played from one loopback address.
            "--max-connections-per-peer=100000",
            "--max-connections=100000",
        ])
        .env("RUST_LOG", "warn")
        .env("AWS_ACCESS_KEY_ID", "AKIDBROKER")
        .env("AWS_SECRET_ACCESS_KEY", "broker-secret")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_http(&format!("http://127.0.0.1:{health}/readyz")).await;
    Broker {
        proc: Proc(child),
        url: format!("https://127.0.0.1:{port}/clusters/{CLUSTER}/assume-role-for-pod-identity"),
    }
}

/// The reference for the TLS share: a bare axum server over the same
/// rustls (axum-server), answering the route with a body of the broker's
/// size, no work. Runs in its own process, like the broker.
fn bare_tls(port: u16, dir: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let body = json!({"subject": {"namespace": "bench", "serviceAccount": "app"},
            "audience": AUDIENCE,
            "podIdentityAssociation": {"associationArn": "arn:aws:eks:us-east-1:123456789012:podidentityassociation/bench/a-0b5c1d2e3f404a5b8", "associationId": "a-0b5c1d2e3f404a5b8"},
            "assumedRoleUser": {"arn": "arn:aws:sts::123456789012:assumed-role/bench/eks-bench-app-1-12345678", "assumeRoleId": "AROA:x"},
            "credentials": {"sessionToken": "F".repeat(1001), "secretAccessKey": "s".repeat(40),
                            "accessKeyId": "ASIA0000000000000000", "expiration": 1900000000}})
        .to_string();
        let app = axum::Router::new().route(
            "/clusters/{name}/assume-role-for-pod-identity",
            axum::routing::post(move |_b: axum::body::Bytes| {
                let b = body.clone();
                async move { ([("content-type", "application/json")], b) }
            }),
        );
        let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(
            format!("{dir}/tls.crt"),
            format!("{dir}/tls.key"),
        )
        .await
        .unwrap();
        // The broker's own TLS acceptor (listener::tls: TCP_NODELAY, caps
        // set out of reach), so only the work per request differs.
        let limits = listener::Limits {
            max_connections: 100_000,
            max_connections_per_peer: 100_000,
            ..listener::Limits::default()
        };
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        axum_server::from_tcp(l)
            .unwrap()
            .acceptor(listener::tls::acceptor(
                config,
                listener::Limiter::new(limits),
                std::sync::Arc::new(|_| {}),
                Duration::from_secs(60),
            ))
            .serve(app.into_make_service())
            .await
            .unwrap();
    });
}

fn pod_token(key: &Key, sa: &str, pod: &str) -> String {
    key.token_for(AUDIENCE, sa, pod, &stable_uuid(pod))
}

fn body(token: &str) -> String {
    json!({ "token": token }).to_string()
}

fn main() {
    if let (Ok(port), Ok(dir)) = (
        std::env::var("BENCH_BARE_TLS_PORT"),
        std::env::var("BENCH_BARE_TLS_DIR"),
    ) {
        bare_tls(port.parse().unwrap(), &dir);
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` would not: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only == part;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::new();
        std::fs::write(dir.path().join("jwks.json"), key.jwks()).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        for (f, text) in [
            ("ca.crt", ca_cert.pem()),
            ("tls.crt", leaf.pem()),
            ("tls.key", leaf_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(f), text).unwrap();
        }
        let ca = reqwest::Certificate::from_pem(ca_cert.pem().as_bytes()).unwrap();
        let client = {
            let ca = ca.clone();
            move || reqwest::Client::builder().add_root_certificate(ca.clone())
        };
        let kube = fake_kube(&leaf.pem(), &leaf_key.serialize_pem()).await;

        if run("throughput") {
            let (sts, _) = fake_sts(Duration::from_millis(20)).await;
            let broker = start_broker(dir.path(), &sts, &kube).await;
            let (agent_proc, agent_addr) = start_agent(dir.path(), &sts, 20_000).await;
            let agent_url = format!("http://{agent_addr}/v1/credentials{ROLE_QUERY}");
            let (broker_pid, agent_pid) = (broker.proc.0.id(), agent_proc.0.id());
            let pod_tok = pod_token(&key, "app", "app-1");
            let warm = client()
                .build()
                .unwrap()
                .post(&broker.url)
                .body(body(&pod_tok))
                .send()
                .await
                .unwrap();
            assert_eq!(warm.status(), 200, "{}", warm.text().await.unwrap());
            let irsa_tok = key.token("app", "app-1");
            let warm = reqwest::Client::new()
                .get(&agent_url)
                .header("authorization", &irsa_tok)
                .send()
                .await
                .unwrap();
            assert_eq!(warm.status(), 200);
            let bare_port = free_port();
            let _bare = Proc(
                Command::new(std::env::current_exe().unwrap())
                    .env("BENCH_BARE_TLS_PORT", bare_port.to_string())
                    .env("BENCH_BARE_TLS_DIR", dir.path())
                    .spawn()
                    .unwrap(),
            );
            let bare_url = format!("https://127.0.0.1:{bare_port}/clusters/{CLUSTER}/assume-role-for-pod-identity");
            for _ in 0..100 {
                let up = client().build().unwrap().post(&bare_url).body("{}").send().await;
                if up.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The agent's cached path is HTTP/1.1 (the container credentials
            // protocol); the broker is measured over HTTP/1.1 too, and over
            // HTTP/2, which the agent's aws-sdk-eksauth client negotiates
            // by ALPN.
            let h1 = {
                let ca = ca.clone();
                move || reqwest::Client::builder().add_root_certificate(ca.clone()).http1_only()
            };
            for conns in [1usize, 16] {
                let cpu = cpu_seconds(agent_pid);
                let agent = load(agent_url.clone(), Some(irsa_tok.clone()), conns, secs).await;
                let agent_cpu = (cpu_seconds(agent_pid) - cpu) / (agent.rps * secs);
                println!(
                    "agent (plain HTTP/1.1), {conns} connection(s), {secs} s: {:.0} req/s (p50 {:?}, p99 {:?}, p99.9 {:?}), CPU per answer {:.1} µs",
                    agent.rps, agent.p50, agent.p99, agent.p999, agent_cpu * 1e6
                );
                for (proto, builder) in [
                    ("HTTP/1.1", &h1 as &dyn Fn() -> reqwest::ClientBuilder),
                    ("HTTP/2", &client as &dyn Fn() -> reqwest::ClientBuilder),
                ] {
                    let cpu = cpu_seconds(_bare.0.id());
                    let bare = load_with(builder, bare_url.clone(), None, Some(body(&pod_tok)), conns, secs).await;
                    let bare_cpu = (cpu_seconds(_bare.0.id()) - cpu) / (bare.rps * secs);
                    let cpu = cpu_seconds(broker_pid);
                    let b = load_with(builder, broker.url.clone(), None, Some(body(&pod_tok)), conns, secs).await;
                    let broker_cpu = (cpu_seconds(broker_pid) - cpu) / (b.rps * secs);
                    println!(
                        "broker over TLS {proto}, {conns} connection(s), {secs} s: {:.0} req/s (p50 {:?}, p99 {:?}, p99.9 {:?}, errors {}), CPU per answer {:.1} µs; bare axum over TLS {proto} {:.0} req/s (p99 {:?}), CPU per answer {:.1} µs; broker/agent {:.2} (CPU {:.2}), broker/bare TLS {:.2} (CPU {:.2})",
                        b.rps, b.p50, b.p99, b.p999, b.errors, broker_cpu * 1e6,
                        bare.rps, bare.p99, bare_cpu * 1e6,
                        b.rps / agent.rps, agent_cpu / broker_cpu,
                        b.rps / bare.rps, bare_cpu / broker_cpu
                    );
                }
            }
            drop(broker);
        }
        if run("calls") {
            // 1,000 pods of a tagged association and 1,000 of an untagged
            // one, all at once, STS answering after 200 ms.
            let (sts, calls) = fake_sts(Duration::from_millis(200)).await;
            let broker = start_broker(dir.path(), &sts, &kube).await;
            for sa in ["app", "plain"] {
                let before = calls.load(Ordering::SeqCst);
                let tokens: Vec<String> = (0..1000)
                    .map(|i| pod_token(&key, sa, &format!("{sa}-{i}")))
                    .collect();
                let c = client().build().unwrap();
                let started = Instant::now();
                let reqs = tokens.into_iter().map(|t| {
                    let (c, url) = (c.clone(), broker.url.clone());
                    tokio::spawn(async move {
                        c.post(&url).body(body(&t)).send().await.map(|r| r.status().as_u16())
                    })
                });
                let results = futures::future::join_all(reqs).await;
                let ok = results.iter().filter(|r| matches!(r, Ok(Ok(200)))).count();
                println!(
                    "1,000 pods of {sa} ({}) at once: {ok} x 200 in {:?}, STS calls: {}",
                    if sa == "app" { "session tags" } else { "disableSessionTags" },
                    started.elapsed(),
                    calls.load(Ordering::SeqCst) - before
                );
            }
            drop(broker);
        }
        if run("rss") {
            let (sts, calls) = fake_sts(Duration::ZERO).await;
            let broker = start_broker(dir.path(), &sts, &kube).await;
            let pid = broker.proc.0.id();
            let idle = rss_kib(pid);
            let n: usize = std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
            let tokens: Vec<String> = (0..n).map(|i| pod_token(&key, "app", &format!("app-{i}"))).collect();
            let c = client().build().unwrap();
            let filled = fill(&tokens, |t| c.post(&broker.url).body(body(t))).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let full = rss_kib(pid);
            println!(
                "RSS: idle {:.1} MiB; with {n} pods' sessions {:.1} MiB (STS calls {}, filled in {filled:?}, tokens of {} characters)",
                idle as f64 / 1024.0,
                full as f64 / 1024.0,
                calls.load(Ordering::SeqCst),
                tokens[0].len()
            );
        }
    });
}
