//! Attacks on the node agent from a hostile pod on the same node, against
//! the real binary on loopback (127.0.0.1 is the attacker's address,
//! 127.0.0.2 the victim's), each bounded in count and time. Each shows the
//! attack no longer does harm.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use e2e_tests::agent::*;
use e2e_tests::harness::connect_from;
use tokio::io::AsyncReadExt;

/// The chart's memory limit of the agent container.
const CHART_LIMIT_MIB: f64 = 96.0;

/// 5,000 connections that never send a request, from one address: the agent
/// keeps its share of them open only until the header-read timeout, closes
/// the rest at once, stays within the chart's memory limit, and serves
/// another pod meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_neither_exhaust_nor_block() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(&moto.url).await?;
    let mut args = node_args(&issuer, &proxy.url);
    args.push("--header-read-timeout=3s".into());
    let agent = Agent::start("serve", &args, &[]).await?;
    let (rss_before, _) = agent.rss_mib();
    let addr: SocketAddr = format!("127.0.0.1:{}", agent.port).parse()?;
    let attacker: IpAddr = "127.0.0.1".parse()?;
    let victim: IpAddr = "127.0.0.2".parse()?;

    let mut held = Vec::with_capacity(5000);
    for _ in 0..5000 {
        if let Ok(s) = connect_from(attacker, addr).await {
            held.push(s);
        }
    }
    anyhow::ensure!(held.len() > 4000, "only {} connects", held.len());

    // The victim pod is served while the flood is held.
    let client = reqwest::Client::builder()
        .local_address(victim)
        .timeout(Duration::from_secs(5))
        .build()?;
    let token = issuer.token(&claims("team-b", "victim", "uid-victim", None));
    let started = std::time::Instant::now();
    let resp = client
        .get(format!("{}/v1/credentials{}", agent.url, role_query(ROLE)))
        .header("authorization", token)
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "victim got {}", resp.status());
    let victim_wait = started.elapsed();

    let rejected = agent
        .metric("credential_agent_connections_rejected_total{reason=\"max_connections_per_peer\"}")
        .await?;
    // Each held connection was admitted (64 at a time, more as admitted ones
    // reach the header-read timeout while a slow machine is still
    // connecting) or rejected at once: nearly all are rejections.
    anyhow::ensure!(
        rejected >= 0.9 * held.len() as f64,
        "rejected {rejected} of {} connections",
        held.len()
    );
    let (rss_during, peak) = agent.rss_mib();
    anyhow::ensure!(peak < CHART_LIMIT_MIB, "peak RSS {peak:.1} MiB");

    // The attacker's admitted connections end at the header-read timeout.
    let mut still_open = 0;
    for s in held.iter_mut() {
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            _ => still_open += 1,
        }
    }
    anyhow::ensure!(still_open <= 64, "{still_open} open right after the flood");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut open_after_timeout = 0;
    for s in held.iter_mut() {
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(1), s.read(&mut b))
            .await
            .is_err()
        {
            open_after_timeout += 1;
        }
    }
    anyhow::ensure!(
        open_after_timeout == 0,
        "{open_after_timeout} connections outlived the header-read timeout"
    );
    eprintln!(
        "half-open flood: {} connections held, victim served in {victim_wait:?}, \
         RSS {rss_before:.1} -> {rss_during:.1} MiB (peak {peak:.1})",
        held.len()
    );
    Ok(())
}

/// One pod asks for 3,000 distinct roles, each client hanging up after
/// 50 ms, against an STS that takes 0.5 s. The agent refuses roles beyond
/// the identity's share, drops queued calls nobody waits for, and a pod of
/// another ServiceAccount still gets credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_flooding_roles_does_not_starve_another() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(&moto.url).await?;
    proxy.set(Fault::Latency(Duration::from_millis(500)));
    let agent = Agent::start("serve", &node_args(&issuer, &proxy.url), &[]).await?;
    let attacker_token = issuer.token(&claims("team-a", "flood", "uid-flood", None));
    let victim_token = issuer.token(&claims("team-b", "victim", "uid-victim", None));

    let attacker = reqwest::Client::builder()
        .local_address("127.0.0.1".parse::<IpAddr>()?)
        .timeout(Duration::from_millis(50))
        .build()?;
    let base = format!("{}/v1/credentials", agent.url);
    let flood = {
        let (attacker, token, base) = (attacker.clone(), attacker_token.clone(), base.clone());
        tokio::spawn(async move {
            let mut statuses = std::collections::BTreeMap::<String, usize>::new();
            // 3,000 requests, 50 at a time, each given up after 50 ms.
            for batch in 0..60 {
                let calls = (0..50).map(|i| {
                    let role = format!("arn:aws:iam::123456789012:role/r{}", batch * 50 + i);
                    attacker
                        .get(format!("{base}{}", role_query(&role)))
                        .header("authorization", &token)
                        .send()
                });
                for r in futures::future::join_all(calls).await {
                    let k = match r {
                        Ok(resp) => resp.status().as_u16().to_string(),
                        Err(_) => "gave up".to_string(),
                    };
                    *statuses.entry(k).or_default() += 1;
                }
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let victim = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<IpAddr>()?)
        .timeout(Duration::from_secs(15))
        .build()?;
    let started = std::time::Instant::now();
    let resp = victim
        .get(format!("{base}{}", role_query(ROLE)))
        .header("authorization", &victim_token)
        .send()
        .await?;
    let victim_wait = started.elapsed();
    anyhow::ensure!(resp.status() == 200, "victim got {}", resp.status());
    let statuses = flood.await?;
    anyhow::ensure!(
        statuses.get("429").copied().unwrap_or(0) > 2500,
        "the flood was not refused: {statuses:?}"
    );
    let attacker_calls = proxy
        .tokens()
        .iter()
        .filter(|t| **t == attacker_token)
        .count();
    anyhow::ensure!(
        attacker_calls <= 8,
        "{attacker_calls} STS calls for the attacker (its share is 8 roles)"
    );
    eprintln!(
        "role flood: {statuses:?}; attacker STS calls {attacker_calls}; victim served in {victim_wait:?}"
    );
    Ok(())
}

/// With two accepted audiences, a token for the other audience of the same
/// ServiceAccount and role is exchanged on its own: it never gets the
/// credentials another token got. Signed extreme time claims are refused
/// with a JSON 403, not a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_audience_and_extreme_claims() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(&moto.url).await?;
    let mut args = node_args(&issuer, &proxy.url);
    args.push("--audience=sts.amazonaws.com,vault".into());
    let agent = Agent::start("serve", &args, &[]).await?;
    let q = role_query(ROLE);

    let sts_token = issuer.token(&claims("team-a", "app", "uid-app", None));
    let mut vault = claims("team-a", "app", "uid-app", None);
    vault["aud"] = serde_json::json!(["vault"]);
    let vault_token = issuer.token(&vault);
    let (status, _, first) = agent.get(Some(&sts_token), &q).await?;
    anyhow::ensure!(status == 200, "{first}");
    let (status, _, second) = agent.get(Some(&vault_token), &q).await?;
    anyhow::ensure!(status == 200, "{second}");
    anyhow::ensure!(
        proxy.tokens().last() == Some(&vault_token),
        "the vault token was not sent to STS itself"
    );
    anyhow::ensure!(first["AccessKeyId"] != second["AccessKeyId"]);

    for (claim, value, want) in [
        ("exp", serde_json::json!(9_223_372_036_854_775_813u64), 403),
        ("exp", serde_json::json!(u64::MAX), 403),
        ("nbf", serde_json::json!(u64::MAX), 403),
        ("exp", serde_json::json!(-1), 403),
        // Signed, absurd but representable: served, and never an overflow.
        ("exp", serde_json::json!(4_000_000_000_000_000_000u64), 200),
        ("iat", serde_json::json!(u64::MAX), 200),
    ] {
        let mut c = claims("team-a", "extreme", "uid-extreme", None);
        c[claim] = value.clone();
        let (status, ct, body) = agent.get(Some(&issuer.token(&c)), &q).await?;
        anyhow::ensure!(
            status == want && ct == "application/json",
            "{claim}={value}: {status} {body}"
        );
    }
    // Still serving.
    let (status, _, _) = agent.get(Some(&sts_token), &q).await?;
    anyhow::ensure!(status == 200);
    Ok(())
}

/// Keys fetched in the clear from a non-loopback address could be replaced
/// on the way: the agent refuses to start with such a --jwks-url.
#[test]
fn plain_http_jwks_url_is_refused_at_start() -> anyhow::Result<()> {
    let out = std::process::Command::new(e2e_tests::harness::workspace_bin("credential-agent")?)
        .args([
            "serve",
            "--issuer=https://issuer.test.invalid",
            "--jwks-url=http://any-host.invalid/openid/v1/jwks",
            "--listen=127.0.0.1:0",
            "--health-listen=127.0.0.1:0",
            "--metrics-listen=127.0.0.1:0",
            "--region=us-east-1",
        ])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(!out.status.success(), "started: {err}");
    anyhow::ensure!(
        err.contains("https://") && err.contains("loopback"),
        "{err}"
    );
    Ok(())
}
