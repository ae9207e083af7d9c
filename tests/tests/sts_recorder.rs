//! The recording STS proxy (tests/src/sts_recorder.rs) the Pod Identity
//! tests stand on, proven with aws-sdk-sts signing real requests to moto
//! through it: tags, transitive keys, session name and external id are
//! recorded; a trust policy without `sts:TagSession`, for another
//! namespace's tags, or for another caller is refused as STS refuses it;
//! a chained call is seen as the first role's session.

use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use aws_sdk_sts::types::Tag;
use e2e_tests::agent::Moto;
use e2e_tests::sts_recorder::StsRecorder;
use serde_json::json;

const BROKER: &str = "arn:aws:iam::123456789012:role/pod-identity-broker";
const APP: &str = "arn:aws:iam::123456789012:role/app";
const TARGET: &str = "arn:aws:iam::210987654321:role/cross-account";

fn sts(url: &str, key: &str, secret: &str, token: Option<&str>) -> aws_sdk_sts::Client {
    let creds =
        aws_sdk_sts::config::Credentials::new(key, secret, token.map(str::to_string), None, "test");
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(url)
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

fn tags(ns: &str) -> Vec<Tag> {
    [
        ("eks-cluster-name", "prod"),
        ("kubernetes-namespace", ns),
        ("kubernetes-service-account", "web"),
    ]
    .iter()
    .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap())
    .collect()
}

fn trust(actions: &[&str]) -> serde_json::Value {
    json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": BROKER}, "Action": actions,
        "Condition": {"StringEquals": {"aws:RequestTag/kubernetes-namespace": "apps"}}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_decides_assume_role_like_iam() -> Result<()> {
    let moto = Moto::start().await?;
    let proxy = StsRecorder::new(&moto.url, BROKER).await?;
    proxy.set_trust(APP, trust(&["sts:AssumeRole", "sts:TagSession"]));
    let broker = sts(&proxy.url, "testing", "testing", None);

    // Allowed: recorded with everything moto would ignore.
    let out = broker
        .assume_role()
        .role_arn(APP)
        .role_session_name("eks-prod-web-7d9f")
        .set_tags(Some(tags("apps")))
        .transitive_tag_keys("kubernetes-namespace")
        .send()
        .await?;
    let creds = out.credentials().expect("credentials");
    let calls = proxy.calls();
    ensure!(calls.len() == 1 && calls[0].denied.is_none(), "{calls:?}");
    ensure!(calls[0].caller == BROKER && calls[0].session_name == "eks-prod-web-7d9f");
    ensure!(
        calls[0].tags
            == BTreeMap::from([
                ("eks-cluster-name".to_string(), "prod".to_string()),
                ("kubernetes-namespace".into(), "apps".into()),
                ("kubernetes-service-account".into(), "web".into()),
            ]),
        "{:?}",
        calls[0].tags
    );
    ensure!(calls[0].transitive == ["kubernetes-namespace"]);

    // Another namespace's tags: refused, naming the action.
    let e = broker
        .assume_role()
        .role_arn(APP)
        .role_session_name("s")
        .set_tags(Some(tags("other")))
        .send()
        .await
        .expect_err("another namespace's tags");
    let msg = format!("{}", aws_sdk_sts::error::DisplayErrorContext(&e));
    ensure!(
        msg.contains("AccessDenied") && msg.contains("sts:AssumeRole"),
        "{msg}"
    );

    // A trust without sts:TagSession refuses tagged sessions.
    proxy.set_trust(APP, trust(&["sts:AssumeRole"]));
    let e = broker
        .assume_role()
        .role_arn(APP)
        .role_session_name("s")
        .set_tags(Some(tags("apps")))
        .send()
        .await
        .expect_err("no TagSession");
    let msg = format!("{}", aws_sdk_sts::error::DisplayErrorContext(&e));
    ensure!(msg.contains("sts:TagSession"), "{msg}");

    // Another caller (the app's session) is not the broker.
    proxy.set_trust(TARGET, json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": APP},
        "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "a-0123456789abcdef0"}}}]}));
    let app = sts(
        &proxy.url,
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token()),
    );
    // Chained from the app role's session, with the association id.
    app.assume_role()
        .role_arn(TARGET)
        .role_session_name("eks-prod-web-7d9f")
        .external_id("a-0123456789abcdef0")
        .send()
        .await?;
    let last = proxy.calls().pop().unwrap();
    ensure!(
        last.caller == APP
            && last.external_id.as_deref() == Some("a-0123456789abcdef0")
            && last.denied.is_none(),
        "{last:?}"
    );
    // The wrong external id, or the broker itself: refused.
    let e = app
        .assume_role()
        .role_arn(TARGET)
        .role_session_name("s")
        .external_id("a-other")
        .send()
        .await
        .expect_err("wrong external id");
    ensure!(format!("{}", aws_sdk_sts::error::DisplayErrorContext(&e)).contains("AccessDenied"));
    ensure!(broker
        .assume_role()
        .role_arn(TARGET)
        .role_session_name("s")
        .external_id("a-0123456789abcdef0")
        .send()
        .await
        .is_err());
    Ok(())
}

/// The broker's building blocks together: contract's session tags and
/// name for a pod, sts:AssumeRole through `RoleSessions`, then the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_sessions_set_the_pods_tags_and_chain() -> Result<()> {
    use contract::association::{session_name, Association, PodRef};
    use credential_agent::role_session::{RoleSessions, SessionRequest};
    let moto = Moto::start().await?;
    let proxy = StsRecorder::new(&moto.url, BROKER).await?;
    let mut policy = trust(&["sts:AssumeRole", "sts:TagSession"]);
    policy["Statement"][0]["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-pod-name"] =
        json!("web-7d9f");
    proxy.set_trust(APP, policy);
    proxy.set_trust(TARGET, json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": APP},
        "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "a-0f3c2d1eaaaabbbbc"}}}]}));
    let assoc = Association {
        name: "apps-web".into(),
        uid: "0f3c2d1e-aaaa-bbbb-cccc-000000000000".into(),
        created: "2026-01-01T00:00:00Z".into(),
        namespace: "apps".into(),
        service_account: "web".into(),
        role_arn: APP.into(),
        target_role_arn: Some(TARGET.into()),
        disable_session_tags: false,
        session_tags: BTreeMap::from([("team".to_string(), "payments".to_string())]),
        transitive_session_tags: Some(vec!["team".into()]),
    };
    let pod = PodRef {
        namespace: "apps",
        service_account: "web",
        name: "web-7d9f",
        uid: "77aa88bb-0000",
    };
    let tags = assoc.session_tags("prod", None, &pod);
    let req = SessionRequest {
        role_arn: assoc.role_arn.clone(),
        session_name: session_name("prod", pod.name, pod.uid),
        tags: tags.tags.clone(),
        transitive: tags.transitive.clone(),
        then: Some((
            TARGET.into(),
            contract::association::association_id(&assoc.uid),
        )),
        duration_seconds: 7200,
    };
    let sessions = RoleSessions::new(sts(&proxy.url, "testing", "testing", None));
    let s = sessions
        .assume(&req)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(
        s.assumed_role_arn.contains("assumed-role/cross-account/"),
        "{}",
        s.assumed_role_arn
    );
    let calls = proxy.calls();
    ensure!(calls.len() == 2, "{calls:?}");
    let (first, second) = (&calls[0], &calls[1]);
    ensure!(first.caller == BROKER && first.session_name == "eks-prod-web-7d9f-77aa88bb");
    ensure!(first.tags.get("kubernetes-pod-uid").map(String::as_str) == Some("77aa88bb-0000"));
    ensure!(
        first.tags.get("team").map(String::as_str) == Some("payments")
            && first.transitive == ["team"]
    );
    ensure!(first.duration_seconds == Some(7200));
    ensure!(
        second.caller == APP
            && second.external_id.as_deref() == Some("a-0f3c2d1eaaaabbbbc")
            && second.tags.is_empty()
    );
    ensure!(
        second.duration_seconds == Some(3600),
        "chained sessions last at most an hour: {second:?}"
    );

    // A trust without TagSession: the error says so, as STS would.
    proxy.set_trust(APP, trust(&["sts:AssumeRole"]));
    let e = sessions.assume(&req).await.expect_err("no TagSession");
    ensure!(
        e.kind == credential_agent::sts::StsErrorKind::Denied
            && e.message.contains("sts:TagSession"),
        "{e}"
    );
    Ok(())
}
