//! RSS of the real webhook binary whose ServiceAccount cache is filled from a
//! real kube-apiserver (metadata-only paged list + watch) with 50,000
//! ServiceAccounts, half annotated.
//!
//! Run: `cargo build --release -p pod-identity-webhook && cargo bench -p e2e-tests --bench cluster_rss`
//! Bounded: 50,000 creates on 127.0.0.1, 16 at a time, then everything is stopped.

use std::time::{Duration, Instant};

use e2e_tests::harness::{Cluster, Webhook};
use futures::StreamExt;
use serde_json::json;

const COUNT: usize = 50_000;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cluster = Cluster::start().await.unwrap();
        for n in 0..50 {
            cluster.create_namespace(&format!("ns-{n}")).await.unwrap();
        }
        let started = Instant::now();
        futures::stream::iter(0..COUNT)
            .for_each_concurrent(16, |i| {
                let cluster = &cluster;
                async move {
                    let ann = if i % 2 == 0 {
                        json!({"eks.amazonaws.com/role-arn": format!("arn:aws:iam::111122223333:role/role-{i}")})
                    } else {
                        json!({"app.kubernetes.io/name": "x"})
                    };
                    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                                    "metadata": {"name": format!("sa-{i}"), "annotations": ann}});
                    cluster
                        .create(&format!("/api/v1/namespaces/ns-{}/serviceaccounts", i % 50), &sa)
                        .await
                        .unwrap();
                }
            })
            .await;
        eprintln!("created {COUNT} ServiceAccounts in {:?}", started.elapsed());
        let started = Instant::now();
        let hook = Webhook::start_with_profile(&cluster, &[], "release").await.unwrap();
        let synced = started.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let metrics = hook.metrics().await.unwrap();
        let cached = metrics
            .lines()
            .find(|l| l.starts_with("pod_identity_webhook_serviceaccounts_cached "))
            .unwrap_or("")
            .to_string();
        println!(
            "webhook (release) synced {} from a real kube-apiserver in {synced:?}; RSS {:.1} MiB",
            cached,
            rss_kib(hook.pid()) as f64 / 1024.0
        );
    });
}
