//! Planted marker tokens and secrets never reach the agent's log (at debug
//! level, JSON), an error body, or a response other than the credential's.

use e2e_tests::agent::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_stay_out_of_logs_and_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(&moto.url).await?;
    let mut args = node_args(&issuer, &proxy.url);
    args.push("--log-format=json".into());
    let agent = Agent::start("serve", &args, &[("RUST_LOG", "debug")]).await?;
    let q = role_query(ROLE);

    const SECRET: &str = "SECRETMARKER0123456789abcdefghijklmnopqrs";
    const SESSION: &str = "SESSIONTOKENMARKER0123456789abcdefghijklmnop";
    let mut claims_with_marker = claims("team-a", "app", "uid-app", None);
    claims_with_marker["marker"] = serde_json::json!("TOKENMARKER-claims");
    let token = issuer.token(&claims_with_marker);
    let signature = token.rsplit('.').next().unwrap().to_string();

    let mut bodies = Vec::new();
    // A success with planted secrets.
    proxy.set(Fault::Respond(sts_success(
        "AKIAMARKER",
        SECRET,
        SESSION,
        3600,
    )));
    let (status, _, body) = agent.get(Some(&token), &q).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["SecretAccessKey"], SECRET);
    assert_eq!(body["Token"], SESSION);
    // STS errors that echo the token back, for other identities.
    for (i, (status, code)) in [
        (400, "InvalidIdentityToken"),
        (500, "InternalFailure"),
        (403, "AccessDenied"),
    ]
    .into_iter()
    .enumerate()
    {
        proxy.set(Fault::EchoToken(status, code));
        let t = issuer.token(&{
            let mut c = claims("team-a", &format!("echo-{i}"), "uid", None);
            c["marker"] = serde_json::json!("TOKENMARKER-echo");
            c
        });
        let (_, _, body) = agent.get(Some(&t), &q).await?;
        assert!(
            !body.to_string().contains(&t),
            "token echoed in error: {body}"
        );
        assert!(!body.to_string().contains(t.rsplit('.').next().unwrap()));
        bodies.push(body.to_string());
    }
    // Refused tokens carrying markers.
    let garbage = "TOKENMARKER-garbage-0123456789";
    let forged = SigningKey::generate("key-1")?.sign(&claims_with_marker)?;
    let huge = format!("TOKENMARKER-huge.{}", "A".repeat(20_000));
    for t in [
        garbage,
        forged.as_str(),
        huge.as_str(),
        &format!("{token}x"),
    ] {
        let (status, _, body) = agent.get(Some(t), &q).await?;
        assert!(status == 400 || status == 403, "{status}");
        bodies.push(body.to_string());
    }
    // Let the log flush.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logs = agent.logs();
    assert!(
        logs.contains("\"level\":\"DEBUG\""),
        "debug logging was not on:\n{logs}"
    );
    for marker in ["TOKENMARKER", &token, &signature, &forged, SECRET, SESSION] {
        assert!(!logs.contains(marker), "marker {marker:.20} in the log");
        for b in &bodies {
            assert!(
                !b.contains(marker),
                "marker {marker:.20} in an error body: {b}"
            );
        }
    }
    let metrics = reqwest::get(format!("{}/metrics", agent.metrics))
        .await?
        .text()
        .await?;
    assert!(!metrics.contains("MARKER"));
    Ok(())
}
