//! The node agent against a real STS-protocol server (moto) behind the
//! tests' fault-injecting proxy: single flight, detached calls, error
//! mapping, negative caching, and serving from cache during an outage.

use std::time::Duration;

use e2e_tests::agent::*;
use futures::future::join_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_faults() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(&moto.url).await?;
    let mut args = node_args(&issuer, &proxy.url);
    args.push("--sts-timeout=2s".into());
    // 100 pods played from one loopback address: above the per-peer cap,
    // which stands for one pod (tests/tests/agent_hostile.rs tests the cap).
    args.push("--max-connections-per-peer=1000".into());
    let agent = Agent::start("serve", &args, &[]).await?;
    let q = role_query(ROLE);
    // Uids as Kubernetes makes them (UUIDs), one per name.
    let uid = |name: &str| {
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            h >> 32,
            h & 0xffff,
            h >> 52,
            (h >> 20) & 0xfff,
            h >> 16
        )
    };
    let token_of =
        |sa: &str, pod: &str| issuer.token(&claims("team-a", sa, &uid(sa), Some((pod, &uid(pod)))));

    // 1. 100 concurrent cold requests from 100 pods of one ServiceAccount,
    //    STS slow: one call, one credential for all.
    proxy.set(Fault::Latency(Duration::from_millis(800)));
    let tokens: Vec<String> = (0..100)
        .map(|i| token_of("shared", &format!("pod-{i}")))
        .collect();
    let results = join_all(tokens.iter().map(|t| agent.get(Some(t), &q))).await;
    let mut keys = std::collections::HashSet::new();
    for r in results {
        let (status, _, body) = r?;
        assert_eq!(status, 200, "{body}");
        keys.insert(body["AccessKeyId"].as_str().unwrap().to_string());
    }
    assert_eq!(keys.len(), 1);
    assert_eq!(
        proxy.assume_calls(),
        1,
        "cold concurrent requests made several STS calls"
    );
    // STS got one of the pods' tokens byte for byte (the cache keeps it
    // compressed).
    let sent = proxy.tokens();
    assert!(tokens.contains(&sent[0]), "STS got a token no pod sent");

    // 2. A client that gives up does not cancel the call: its result is cached.
    proxy.set(Fault::Latency(Duration::from_millis(1500)));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()?;
    let gave_up = impatient
        .get(format!("{}/v1/credentials{q}", agent.url))
        .header("authorization", token_of("impatient", "p"))
        .send()
        .await;
    assert!(gave_up.is_err(), "the request should have timed out");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    proxy.set(Fault::Pass);
    let calls = proxy.assume_calls();
    let (status, _, _) = agent.get(Some(&token_of("impatient", "p")), &q).await?;
    assert_eq!(status, 200);
    assert_eq!(
        proxy.assume_calls(),
        calls,
        "the abandoned call was not cached"
    );
    assert_eq!(calls, 2);

    // 3. Error mapping: status and code for each STS failure.
    let cases: Vec<(Fault, u16, &str)> = vec![
        (Fault::Error(500, "InternalFailure"), 503, "InternalFailure"),
        (
            Fault::Error(503, "ServiceUnavailable"),
            503,
            "ServiceUnavailable",
        ),
        (Fault::Error(400, "Throttling"), 429, "Throttling"),
        (Fault::Error(403, "AccessDenied"), 403, "AccessDenied"),
        (
            Fault::Error(400, "InvalidIdentityToken"),
            403,
            "InvalidIdentityToken",
        ),
        (
            Fault::Error(400, "ExpiredTokenException"),
            403,
            "ExpiredTokenException",
        ),
        (
            Fault::Error(403, "IDPRejectedClaim"),
            403,
            "IDPRejectedClaim",
        ),
        (
            Fault::Error(400, "IDPCommunicationError"),
            503,
            "IDPCommunicationError",
        ),
        (Fault::Garbage, 502, "StsBadResponse"),
        (Fault::Latency(Duration::from_secs(4)), 503, "StsTimeout"),
    ];
    for (i, (fault, want, code)) in cases.into_iter().enumerate() {
        proxy.set(fault.clone());
        let t = token_of(&format!("fault-{i}"), "p");
        let (status, ct, body) = agent.get(Some(&t), &q).await?;
        assert_eq!(
            (status, ct.as_str(), body["code"].as_str()),
            (want, "application/json", Some(code)),
            "{fault:?}: {body}"
        );
        assert!(!body.to_string().contains(&t), "token in error body");
    }

    // 4. A refusal is remembered briefly: a retrying SDK does not hammer STS.
    proxy.set(Fault::Error(403, "AccessDenied"));
    let t = token_of("denied", "p");
    let before = proxy.assume_calls();
    for _ in 0..5 {
        let (status, _, _) = agent.get(Some(&t), &q).await?;
        assert_eq!(status, 403);
    }
    assert_eq!(proxy.assume_calls() - before, 1);

    // 5. Transient failure, then recovery after the short backoff.
    proxy.set(Fault::Error(500, "InternalFailure"));
    let t = token_of("recovers", "p");
    assert_eq!(agent.get(Some(&t), &q).await?.0, 503);
    proxy.set(Fault::Pass);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = agent.get(Some(&t), &q).await?;
    assert_eq!(status, 200, "{body}");

    // 6. STS unreachable: new identities get 503, cached ones are still served.
    proxy.refuse().await;
    let (status, _, body) = agent
        .get(Some(&token_of("new-during-outage", "p")), &q)
        .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("StsUnreachable")),
        "{body}"
    );
    let (status, _, body) = agent.get(Some(&tokens[0]), &q).await?;
    assert_eq!(
        status, 200,
        "cached credential not served during outage: {body}"
    );
    assert!(keys.contains(body["AccessKeyId"].as_str().unwrap()));
    proxy.accept().await?;

    let errors = agent.metric("credential_agent_sts_errors_total").await?;
    assert!(errors >= 12.0, "sts error metric {errors}");
    Ok(())
}
