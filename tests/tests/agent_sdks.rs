//! Real SDK clients (boto3, the aws CLI, aws-sdk-rust) fetch credentials
//! through the agent, in node mode and in sidecar mode, and call
//! GetCallerIdentity against the same STS server (moto).

use e2e_tests::agent::*;
use e2e_tests::clients::{caller_arns, WITH_JS as ALL};

const ASSUMED: &str = "arn:aws:sts::123456789012:assumed-role/app-role/";

fn env(full_uri: &str, token_file: &std::path::Path, sts: &str) -> Vec<(String, String)> {
    [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", full_uri.to_string()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL_STS", sts.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_through_node_agent() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(&moto.url).await?;
    let agent = Agent::start("serve", &node_args(&issuer, &proxy.url), &[]).await?;
    let token_file = dir.path().join("token");
    let token = issuer.token(&claims(
        "team-a",
        "app",
        "uid-app",
        Some(("app-1", "uid-p1")),
    ));
    std::fs::write(&token_file, &token)?; // no trailing newline, as the kubelet writes it
    let uri = format!("{}/v1/credentials{}", agent.url, role_query(ROLE));
    let env = env(&uri, &token_file, &moto.url);
    for (client, arn) in caller_arns(&ALL, &env, dir.path()).await {
        let arn = arn?;
        assert!(
            arn.starts_with(ASSUMED) && arn.ends_with("/team-a.app"),
            "{client:?}: {arn}\n{}",
            agent.log_tail()
        );
    }
    // Three SDKs, three processes, one identity: one STS call.
    assert_eq!(proxy.assume_calls(), 1);

    // A token the issuer did not sign gets the SDKs nothing.
    let forged = SigningKey::generate("key-1")?.sign(&claims("team-a", "app", "uid-app", None))?;
    std::fs::write(&token_file, &forged)?;
    for (client, res) in caller_arns(&ALL, &env, dir.path()).await {
        assert!(
            res.is_err(),
            "{client:?} got credentials with a forged token"
        );
    }
    assert_eq!(proxy.assume_calls(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_through_sidecar() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(&moto.url).await?;
    let token_file = dir.path().join("token");
    let token = issuer.token(&claims(
        "team-b",
        "worker",
        "uid-w",
        Some(("worker-7", "uid-p7")),
    ));
    std::fs::write(&token_file, &token)?;
    let agent = Agent::start(
        "sidecar",
        &[
            format!("--sts-endpoint={}", proxy.url),
            "--token-reload-interval=1s".into(),
        ],
        &[
            ("AWS_ROLE_ARN", ROLE),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
            ("AWS_REGION", "us-east-1"),
        ],
    )
    .await?;
    let uri = format!("{}/v1/credentials", agent.url);
    let env = env(&uri, &token_file, &moto.url);
    for (client, arn) in caller_arns(&ALL, &env, dir.path()).await {
        let arn = arn?;
        assert!(
            arn.starts_with(ASSUMED) && arn.ends_with("/team-b.worker.worker-7"),
            "{client:?}: {arn}\n{}",
            agent.log_tail()
        );
    }
    assert_eq!(proxy.assume_calls(), 1);

    // Any other token, even one the issuer signed, is refused.
    let other = issuer.token(&claims(
        "team-b",
        "worker",
        "uid-w",
        Some(("worker-8", "uid-p8")),
    ));
    let (status, _, body) = agent.get(Some(&other), "").await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("AccessDenied")),
        "{body}"
    );
    // The kubelet rotates the file: the new token works at once, the
    // replaced one still does, an older one does not.
    let rotated = issuer
        .token(&claims("team-b", "worker", "uid-w", Some(("worker-7", "uid-p7"))).tap_exp(7200));
    std::fs::write(&token_file, &rotated)?;
    assert_eq!(agent.get(Some(&rotated), "").await?.0, 200);
    assert_eq!(agent.get(Some(&token), "").await?.0, 200);
    let third = issuer
        .token(&claims("team-b", "worker", "uid-w", Some(("worker-7", "uid-p7"))).tap_exp(9000));
    std::fs::write(&token_file, &third)?;
    assert_eq!(agent.get(Some(&third), "").await?.0, 200);
    assert_eq!(agent.get(Some(&token), "").await?.0, 403);
    Ok(())
}

trait TapExp {
    fn tap_exp(self, secs: u64) -> Self;
}

impl TapExp for serde_json::Value {
    fn tap_exp(mut self, secs: u64) -> Self {
        self["exp"] = serde_json::json!(now_secs() + secs);
        self
    }
}
