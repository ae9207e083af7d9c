//! Benchmarks of the real `credential-agent` binary (release build), with
//! a canned STS of the bench's own on loopback:
//!
//! 1. cached-credential requests per second and latency percentiles, next to
//!    a bare axum route (same JSON size, same runtime, own process) measured
//!    in the same run, by the same load generator;
//! 2. STS calls made for 1,000 concurrent cold requests of one identity;
//! 3. RSS of the agent holding 10,000 cached identities.
//!
//! Run: `cargo bench -p credential-agent --bench agent` (results are copied
//! into docs/benchmarks.md by hand). BENCH_SECONDS sets the load duration,
//! BENCH_ONLY=throughput|cold|rss one part, BENCH_N the identity count, and
//! BENCH_WRAPPER a command the agent runs under, e.g.
//! `valgrind --tool=massif --massif-out-file=/tmp/massif.out`.

// A benchmark measures the real clocks.
#![allow(clippy::disallowed_methods)]

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use common::*;

mod common;

/// The bare axum server: the same JSON body, no work.
fn bare_axum(port: u16) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let body = json!({"AccessKeyId": "ASIA0000000000000000", "SecretAccessKey": "s".repeat(40),
            "Token": "F".repeat(1001), "AccountId": "123456789012", "Expiration": "2030-01-01T00:00:00Z"})
        .to_string();
        let app = axum::Router::new().route(
            "/v1/credentials",
            axum::routing::get(move || {
                let b = body.clone();
                async move { ([("content-type", "application/json")], b) }
            }),
        );
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        axum::serve(l, app).await.unwrap();
    });
}

fn main() {
    if let Ok(port) = std::env::var("BENCH_BARE_AXUM_PORT") {
        bare_axum(port.parse().unwrap());
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
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::new();
        std::fs::write(dir.path().join("jwks.json"), key.jwks()).unwrap();

        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        let run = |part: &str| only.is_empty() || only == part;
        if run("throughput") {
        // 1. Throughput, cached credential vs bare axum.
        let (sts, _) = fake_sts(Duration::from_millis(20)).await;
        let (_agent, addr) = start_agent(dir.path(), &sts, 20_000).await;
        let bare_port = free_port();
        let _bare = Proc(
            Command::new(std::env::current_exe().unwrap())
                .env("BENCH_BARE_AXUM_PORT", bare_port.to_string())
                .spawn()
                .unwrap(),
        );
        wait_http(&format!("http://127.0.0.1:{bare_port}/v1/credentials")).await;
        let token = key.token("app", "app-1");
        let agent_url = format!("http://{addr}/v1/credentials{ROLE_QUERY}");
        let warm = reqwest::Client::new().get(&agent_url).header("authorization", &token).send().await.unwrap();
        assert_eq!(warm.status(), 200, "{}", warm.text().await.unwrap());
        for conns in [1usize, 16] {
            let bare = load(format!("http://127.0.0.1:{bare_port}/v1/credentials"), None, conns, secs).await;
            let agent = load(agent_url.clone(), Some(token.clone()), conns, secs).await;
            println!(
                "cached credentials, {conns} connection(s), {secs} s: agent {:.0} req/s (p50 {:?}, p99 {:?}, p99.9 {:?}, errors {}); bare axum {:.0} req/s (p50 {:?}, p99 {:?}, p99.9 {:?}); ratio {:.2}",
                agent.rps, agent.p50, agent.p99, agent.p999, agent.errors,
                bare.rps, bare.p50, bare.p99, bare.p999,
                agent.rps / bare.rps
            );
        }

        }
        if run("cold") {
        // 2. 1,000 concurrent cold requests of one identity (1,000 pods of
        //    one ServiceAccount), STS answering after 200 ms.
        let (sts, calls) = fake_sts(Duration::from_millis(200)).await;
        let (_agent2, addr2) = start_agent(dir.path(), &sts, 20_000).await;
        let tokens: Vec<String> = (0..1000).map(|i| key.token("cold", &format!("pod-{i}"))).collect();
        let url = format!("http://{addr2}/v1/credentials{ROLE_QUERY}");
        let started = Instant::now();
        let reqs = tokens.into_iter().map(|t| {
            let url = url.clone();
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                c.get(&url).header("authorization", t).send().await.map(|r| r.status().as_u16())
            })
        });
        let results = futures::future::join_all(reqs).await;
        let ok = results.iter().filter(|r| matches!(r, Ok(Ok(200)))).count();
        println!(
            "1,000 concurrent cold requests of one identity: {ok} x 200 in {:?}, STS calls: {}",
            started.elapsed(),
            calls.load(Ordering::SeqCst)
        );

        }
        if run("rss") {
        // 3. RSS with 10,000 cached identities.
        let (sts, calls) = fake_sts(Duration::ZERO).await;
        let (agent3, addr3) = start_agent(dir.path(), &sts, 20_000).await;
        let pid = agent3.0.id();
        let idle = rss_kib(pid);
        let url = format!("http://{addr3}/v1/credentials{ROLE_QUERY}");
        let client = reqwest::Client::new();
        let n: usize = std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
        let tokens: Vec<String> = (0..n).map(|i| key.token(&format!("sa-{i}"), "p")).collect();
        let filled = fill(&tokens, |t| client.get(&url).header("authorization", t)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let full = rss_kib(pid);
        println!(
            "RSS: idle {:.1} MiB; with {n} cached identities {:.1} MiB (STS calls {}, filled in {filled:?}, tokens of {} characters)",
            idle as f64 / 1024.0,
            full as f64 / 1024.0,
            calls.load(Ordering::SeqCst),
            tokens[0].len()
        );
        if let Some(secs) = std::env::var("BENCH_HOLD").ok().and_then(|v| v.parse().ok()) {
            // Time to look at the process (gdb, /proc/PID/smaps) before it ends.
            println!("agent pid {pid}; holding {secs} s");
            tokio::time::sleep(Duration::from_secs(secs)).await;
        }
        }
    });
}
