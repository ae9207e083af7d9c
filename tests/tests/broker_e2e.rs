//! The Pod Identity broker (`credential-agent broker`) end to end: the
//! suite's real kube-apiserver with the chart's CRD, pods and tokens the API
//! server minted (TokenRequest bound to the pod, audience
//! pods.eks.amazonaws.com), moto's STS behind the recording proxy that
//! checks tags, session names and external ids and decides trust policies
//! as IAM would, and AWS's own clients of the EKS Auth API (boto3's
//! `eks-auth` client, the aws CLI) over HTTPS.
//!
//! One cluster and one broker for all scenarios (a kube-apiserver start
//! costs seconds): answers and their session tags, the cache (one STS call
//! per pod), status written on the objects, every refusal the issue names
//! (no association, wrong audience, expired token, deleted pod, deleted
//! association, trust without sts:TagSession, another cluster), the
//! targetRoleArn chain with the association id as ExternalId,
//! disableSessionTags (one call per association), and an API server outage
//! (pods already confirmed are still answered, new ones are told to retry).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e_tests::agent::{venv, Moto};
use e2e_tests::broker::*;
use e2e_tests::clients::{caller_arns, Client, WITH_JS};
use e2e_tests::harness::*;
use e2e_tests::sts_recorder::StsRecorder;
use serde_json::{json, Value};

const BROKER_ROLE: &str = "arn:aws:iam::123456789012:role/pod-identity-broker";
const APP: &str = "arn:aws:iam::123456789012:role/app";
const NO_TAG: &str = "arn:aws:iam::123456789012:role/no-tag-session";
const FIRST: &str = "arn:aws:iam::123456789012:role/chain-first";
const TARGET: &str = "arn:aws:iam::210987654321:role/cross-account";
const PLAIN: &str = "arn:aws:iam::123456789012:role/plain";

fn error_of(v: &Value) -> (String, String) {
    (
        v["error"][0].as_str().unwrap_or("(answered)").to_string(),
        v["error"][1].as_str().unwrap_or_default().to_string(),
    )
}

fn association(name: &str, sa: &str, spec: Value) -> Value {
    let mut s = json!({"namespace": "apps", "serviceAccount": sa});
    for (k, v) in spec.as_object().cloned().unwrap_or_default() {
        s[k] = v;
    }
    json!({"apiVersion": "pod-identity.io/v1alpha1", "kind": "PodIdentityAssociation",
           "metadata": {"name": name}, "spec": s})
}

const ASSOCIATIONS: &str = "/apis/pod-identity.io/v1alpha1/podidentityassociations";

fn trust(principal: &str, actions: &[&str]) -> Value {
    json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": actions}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_answers_eks_auth_for_associated_pods() -> Result<()> {
    let mut cluster = cluster_with(&["web", "other", "notag", "chain", "plain", "gone"]).await?;
    let moto = Moto::start().await?;
    let sts = StsRecorder::new(&moto.url, BROKER_ROLE).await?;
    let tags_trust = trust(BROKER_ROLE, &["sts:AssumeRole", "sts:TagSession"]);
    for role in [APP, FIRST, PLAIN] {
        sts.set_trust(role, tags_trust.clone());
    }
    sts.set_trust(NO_TAG, trust(BROKER_ROLE, &["sts:AssumeRole"]));

    let dir = tempfile::tempdir()?;
    for (name, sa, spec) in [
        ("web", "web", json!({"roleArn": APP})),
        ("notag", "notag", json!({"roleArn": NO_TAG})),
        (
            "chain",
            "chain",
            json!({"roleArn": FIRST, "targetRoleArn": TARGET,
                   "sessionTags": {"team": "payments"}, "transitiveSessionTags": ["kubernetes-namespace"]}),
        ),
        (
            "plain",
            "plain",
            json!({"roleArn": PLAIN, "disableSessionTags": true}),
        ),
        ("gone", "gone", json!({"roleArn": APP})),
    ] {
        cluster
            .create(ASSOCIATIONS, &association(name, sa, spec))
            .await?;
    }

    let broker = start_broker(
        &cluster,
        &sts.url,
        dir.path(),
        &["--pod-recheck-interval=1s"],
    )
    .await?;

    // Status: each association says whether it counts, with its id.
    wait_for("status of association web", || async {
        let a = cluster.get(&format!("{ASSOCIATIONS}/web")).await?;
        Ok(a["status"]["conditions"][0]["status"] == "True")
    })
    .await?;
    let web_id = cluster.get(&format!("{ASSOCIATIONS}/web")).await?["status"]["associationId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(web_id.starts_with("a-") && web_id.len() == 19, "{web_id}");

    // A pod of an associated ServiceAccount gets the role, tagged as EKS tags it.
    let (uid1, token1) = pod(&cluster, "web", "web-1", AUDIENCE).await?;
    let answer = broker.one(&token1).await?;
    let ok = &answer["ok"];
    ensure!(!ok.is_null(), "{answer}");
    let session = format!("eks-{CLUSTER}-web-1-{}", &uid1[..8]);
    ensure!(
        ok["subject"] == json!({"namespace": "apps", "serviceAccount": "web"})
            && ok["audience"] == AUDIENCE
            && ok["podIdentityAssociation"]["associationId"] == web_id.as_str()
            && ok["podIdentityAssociation"]["associationArn"]
                == format!(
                    "arn:aws:eks:us-east-1:123456789012:podidentityassociation/{CLUSTER}/{web_id}"
                )
            && ok["assumedRoleUser"]["arn"]
                == format!("arn:aws:sts::123456789012:assumed-role/app/{session}"),
        "{ok}"
    );
    let calls = sts.calls();
    ensure!(calls.len() == 1, "{calls:?}");
    let c = &calls[0];
    let want: BTreeMap<String, String> = [
        ("eks-cluster-arn", CLUSTER_ARN),
        ("eks-cluster-name", CLUSTER),
        ("kubernetes-namespace", "apps"),
        ("kubernetes-service-account", "web"),
        ("kubernetes-pod-name", "web-1"),
        ("kubernetes-pod-uid", uid1.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    ensure!(
        c.caller == BROKER_ROLE && c.role_arn == APP && c.session_name == session && c.tags == want,
        "{c:?}"
    );
    let mut transitive = c.transitive.clone();
    transitive.sort();
    ensure!(
        transitive == want.keys().cloned().collect::<Vec<_>>(),
        "{transitive:?}"
    );
    // The credentials are the role's session (STS itself says so).
    let creds = &ok["credentials"];
    let arn = moto_caller(&moto.url, creds).await?;
    ensure!(
        arn == format!("arn:aws:sts::123456789012:assumed-role/app/{session}"),
        "{arn}"
    );

    // Cached: the same pod again, one STS call in all; the aws CLI parses it.
    let again = broker.one(&token1).await?;
    ensure!(
        again["ok"]["credentials"]["accessKeyId"] == creds["accessKeyId"],
        "{again}"
    );
    let cli = aws_cli(&broker, &token1).await?;
    ensure!(
        cli["credentials"]["accessKeyId"] == creds["accessKeyId"]
            && cli["subject"]["serviceAccount"] == "web",
        "{cli}"
    );
    ensure!(sts.calls().len() == 1, "{:?}", sts.calls());
    // Another pod of the same ServiceAccount: its own session.
    let (uid2, token2) = pod(&cluster, "web", "web-2", AUDIENCE).await?;
    let second = broker.one(&token2).await?;
    ensure!(
        second["ok"]["assumedRoleUser"]["arn"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&format!("/eks-{CLUSTER}-web-2-{}", &uid2[..8])),
        "{second}"
    );
    ensure!(sts.calls().len() == 2);

    // Refusals, each with EKS Auth's error type.
    let (_, other) = pod(&cluster, "other", "other-1", AUDIENCE).await?;
    let (_, sts_audience) = pod(&cluster, "web", "web-3", "sts.amazonaws.com").await?;
    let (_, notag) = pod(&cluster, "notag", "notag-1", AUDIENCE).await?;
    let unbound = cluster
        .token_request("apps", "web", AUDIENCE, 3600, None)
        .await?;
    let answers = broker
        .call(&[
            (CLUSTER, &other),
            (CLUSTER, &sts_audience),
            (CLUSTER, &notag),
            (CLUSTER, &unbound),
            ("staging", &token1),
            (CLUSTER, "not-a-token"),
            (CLUSTER, &expired_token(&cluster, "web-1", &uid1)?),
        ])
        .await?;
    let got: Vec<(String, String)> = answers.iter().map(error_of).collect();
    let expect = [
        (
            "ResourceNotFoundException",
            "no PodIdentityAssociation for ServiceAccount apps/other",
        ),
        ("InvalidTokenException", "audience"),
        ("AccessDeniedException", "sts:TagSession"),
        ("InvalidTokenException", "not bound to a pod"),
        ("ResourceNotFoundException", "this broker serves \"prod\""),
        ("InvalidTokenException", ""),
        ("ExpiredTokenException", "expired"),
    ];
    for (i, ((code, msg), (want_code, want_msg))) in got.iter().zip(expect).enumerate() {
        ensure!(
            code == want_code && msg.contains(want_msg),
            "case {i}: {code} {msg:?}, want {want_code} with {want_msg:?}"
        );
    }

    // The chain: FIRST with tags (only the transitive ones asked), then the
    // target with the association id as ExternalId, as the first role's session.
    let chain_id = cluster.get(&format!("{ASSOCIATIONS}/chain")).await?["metadata"]["uid"]
        .as_str()
        .map(contract_id)
        .context("chain uid")?;
    sts.set_trust(
        TARGET,
        json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": FIRST}, "Action": "sts:AssumeRole",
               "Condition": {"StringEquals": {"sts:ExternalId": chain_id}}}]}),
    );
    let (_, chain) = pod(&cluster, "chain", "chain-1", AUDIENCE).await?;
    let before = sts.calls().len();
    let chained = broker.one(&chain).await?;
    ensure!(
        chained["ok"]["assumedRoleUser"]["arn"]
            .as_str()
            .unwrap_or_default()
            .starts_with("arn:aws:sts::210987654321:assumed-role/cross-account/eks-prod-chain-1-"),
        "{chained}"
    );
    let calls = sts.calls();
    let (first, second) = (&calls[before], &calls[before + 1]);
    ensure!(
        first.role_arn == FIRST
            && first.tags.get("team").map(String::as_str) == Some("payments")
            && first.transitive == ["kubernetes-namespace"]
            && second.role_arn == TARGET
            && second.caller == FIRST
            && second.external_id.as_deref() == Some(chain_id.as_str())
            && second.denied.is_none(),
        "{first:?}\n{second:?}"
    );

    // disableSessionTags: no tags, one session for the association.
    let (_, p1) = pod(&cluster, "plain", "plain-1", AUDIENCE).await?;
    let (_, p2) = pod(&cluster, "plain", "plain-2", AUDIENCE).await?;
    let before = sts.calls().len();
    let plain = broker.call(&[(CLUSTER, &p1), (CLUSTER, &p2)]).await?;
    ensure!(
        plain[0]["ok"]["credentials"]["accessKeyId"]
            == plain[1]["ok"]["credentials"]["accessKeyId"]
            && !plain[0]["ok"].is_null(),
        "{plain:?}"
    );
    let calls = sts.calls();
    ensure!(
        calls.len() == before + 1
            && calls[before].tags.is_empty()
            && calls[before].transitive.is_empty(),
        "{:?}",
        &calls[before..]
    );

    // The node agent's Pod Identity backend, through aws-sdk-eksauth to the
    // broker: apps with EKS's injected variables get the role with their
    // pod in the session name. Signed with the node's credentials (as EKS
    // Auth wants), and unsigned (the broker reads only the token).
    let signed = node_agent(&cluster, &broker, &sts.url, &[]).await?;
    let unsigned = node_agent(
        &cluster,
        &broker,
        &sts.url,
        &["--eks-auth-unsigned".to_string()],
    )
    .await?;
    let (uid5, token5) = pod(&cluster, "web", "web-5", AUDIENCE).await?;
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, &token5)?;
    let want_arn = format!(
        "arn:aws:sts::123456789012:assumed-role/app/eks-{CLUSTER}-web-5-{}",
        &uid5[..8]
    );
    let home = tempfile::tempdir()?;
    for agent in [&signed, &unsigned] {
        let env = pod_identity_env(agent, &token_file, &moto.url);
        let clients: &[Client] = if std::ptr::eq(agent, &signed) {
            &WITH_JS
        } else {
            &[Client::Boto3]
        };
        for (client, arn) in caller_arns(clients, &env, home.path()).await {
            let arn =
                arn.with_context(|| format!("{client:?} through the agent:\n{}", agent.logs()))?;
            ensure!(arn == want_arn, "{client:?}: {arn}, want {want_arn}");
        }
    }
    // An IRSA-style request (no Pod Identity audience, no ?role=) is refused
    // with what to send instead.
    let (status, _, body) = signed.get(Some(&token1.replace('a', "b")), "").await?;
    ensure!(status == 403 || status == 400, "{status} {body}");
    let irsa = cluster
        .token_request(
            "apps",
            "web",
            "sts.amazonaws.com",
            3600,
            Some(("web-5", &uid5)),
        )
        .await?;
    let (status, _, body) = signed.get(Some(&irsa), "").await?;
    ensure!(
        status == 400
            && body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("eks-pod-identity-token"),
        "{status} {body}"
    );
    // The broker's refusals reach the app's SDK through the agent.
    let (_, other2) = pod(&cluster, "other", "other-2", AUDIENCE).await?;
    let (status, _, body) = signed.get(Some(&other2), "").await?;
    ensure!(
        status == 403 && body["code"] == "ResourceNotFoundException",
        "{status} {body}"
    );
    // An EKS Auth endpoint nobody answers: 503, naming EKS Auth.
    let nowhere = format!("https://127.0.0.1:{}", e2e_tests::harness::free_port());
    let down = node_agent_at(
        &cluster,
        &nowhere,
        &broker.ca,
        &sts.url,
        &["--eks-auth-unsigned".into()],
    )
    .await?;
    let (status, _, body) = down.get(Some(&token5), "").await?;
    ensure!(
        status == 503
            && body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("could not connect to EKS Auth"),
        "{status} {body}"
    );

    // A deleted pod's token gets nothing within the recheck interval.
    cluster
        .delete("/api/v1/namespaces/apps/pods/web-2?gracePeriodSeconds=0")
        .await?;
    wait_for("deleted pod refused", || async {
        let (code, msg) = error_of(&broker.one(&token2).await?);
        Ok(code == "InvalidTokenException" && msg.contains("no longer exists"))
    })
    .await?;

    // A deleted association: its pods are refused at once.
    let (_, gone) = pod(&cluster, "gone", "gone-1", AUDIENCE).await?;
    ensure!(!broker.one(&gone).await?["ok"].is_null());
    cluster.delete(&format!("{ASSOCIATIONS}/gone")).await?;
    wait_for("deleted association refused", || async {
        Ok(error_of(&broker.one(&gone).await?).0 == "ResourceNotFoundException")
    })
    .await?;

    // Two associations for one ServiceAccount: the newer one is reported.
    cluster
        .create(
            ASSOCIATIONS,
            &association("web-again", "web", json!({"roleArn": PLAIN})),
        )
        .await?;
    wait_for("conflict reported", || async {
        let a = cluster.get(&format!("{ASSOCIATIONS}/web-again")).await?;
        Ok(a["status"]["conditions"][0]["reason"] == "Conflict")
    })
    .await?;
    ensure!(
        broker.one(&token1).await?["ok"]["assumedRoleUser"]["arn"]
            .as_str()
            .unwrap_or_default()
            .contains("assumed-role/app/"),
        "the older association must keep counting"
    );

    // The API server goes away: a pod confirmed before is still answered;
    // one never seen is told to retry.
    let (_, fresh) = pod(&cluster, "web", "web-4", AUDIENCE).await?;
    cluster.stop_api_server();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = broker
        .call(&[(CLUSTER, &token1), (CLUSTER, &fresh)])
        .await?;
    cluster.start_api_server().await?;
    ensure!(!during[0]["ok"].is_null(), "{:?}", during[0]);
    ensure!(
        error_of(&during[1]).0 == "ServiceUnavailableException",
        "{:?}",
        during[1]
    );

    // Metrics count the answers; no token or secret reached the log.
    let metrics = reqwest::get(format!("{}/metrics", broker.agent.metrics))
        .await?
        .text()
        .await?;
    for line in [
        "credential_agent_eks_auth_answers_total{result=\"ok\"}",
        "credential_agent_eks_auth_answers_total{result=\"ResourceNotFoundException\"}",
    ] {
        let v: f64 = metrics
            .lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{line} in\n{metrics}"))?;
        ensure!(v >= 1.0, "{line} = {v}");
    }
    // Ready (keys and associations read), and the serving certificate's
    // notAfter for the expiry alert.
    let gauge = |name: &str| -> Result<f64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .with_context(|| format!("{name} in\n{metrics}"))
    };
    ensure!(gauge("credential_agent_ready")? == 1.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    ensure!(
        gauge("credential_agent_tls_certificate_expiry_timestamp_seconds")? > now.as_secs_f64(),
        "{metrics}"
    );
    let log = broker.agent.logs();
    for secret in [
        token1.as_str(),
        creds["secretAccessKey"].as_str().unwrap_or("?"),
        creds["sessionToken"].as_str().unwrap_or("?"),
    ] {
        let sig = secret.rsplit('.').next().unwrap_or(secret);
        ensure!(!log.contains(sig), "a secret reached the broker's log");
    }
    Ok(())
}

/// EKS's association id of an object uid (`contract::association`).
fn contract_id(uid: &str) -> String {
    contract::association::association_id(uid)
}

/// A token signed by the cluster's own key (ES256, as the suite's API
/// server signs), bound to the pod, expired an hour ago (the API server does
/// not mint those).
fn expired_token(cluster: &Cluster, pod: &str, uid: &str) -> Result<String> {
    let key = rcgen::KeyPair::from_pem(&cluster.sa_signing_key_pem()?)?;
    let now = e2e_tests::agent::now_secs();
    let claims = json!({
        "iss": "https://kubernetes.default.svc", "aud": [AUDIENCE],
        "sub": "system:serviceaccount:apps:web", "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600,
        "kubernetes.io": {"namespace": "apps", "serviceaccount": {"name": "web", "uid": "u"},
                          "pod": {"name": pod, "uid": uid}},
    });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
    )?)
}

/// GetCallerIdentity with the credentials, through boto3 to moto.
async fn moto_caller(moto: &str, creds: &Value) -> Result<String> {
    let script = r#"
import sys, boto3
c = boto3.client("sts", region_name="us-east-1", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2],
                 aws_secret_access_key=sys.argv[3], aws_session_token=sys.argv[4])
print(c.get_caller_identity()["Arn"])
"#;
    let args: Vec<String> = [
        moto.to_string(),
        creds["accessKeyId"].as_str().unwrap_or_default().into(),
        creds["secretAccessKey"].as_str().unwrap_or_default().into(),
        creds["sessionToken"].as_str().unwrap_or_default().into(),
    ]
    .into();
    let out = tokio::task::spawn_blocking(move || -> Result<std::process::Output> {
        Ok(std::process::Command::new(venv()?.join("bin/python"))
            .args(["-c", script])
            .args(&args)
            .envs(NO_AWS_CONFIG)
            .output()?)
    })
    .await??;
    ensure!(
        out.status.success(),
        "boto3 sts: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// `aws eks-auth assume-role-for-pod-identity` against the broker.
async fn aws_cli(broker: &Broker, token: &str) -> Result<Value> {
    let (url, ca, token) = (
        broker.url.clone(),
        broker.ca.display().to_string(),
        token.to_string(),
    );
    let out = tokio::task::spawn_blocking(move || -> Result<std::process::Output> {
        Ok(std::process::Command::new(venv()?.join("bin/aws"))
            .args([
                "eks-auth",
                "assume-role-for-pod-identity",
                "--cluster-name",
                CLUSTER,
                "--token",
                &token,
                "--endpoint-url",
                &url,
                "--ca-bundle",
                &ca,
                "--region",
                "us-east-1",
                "--output",
                "json",
            ])
            .env("AWS_ACCESS_KEY_ID", "AKIDNODE")
            .env("AWS_SECRET_ACCESS_KEY", "x")
            .envs(NO_AWS_CONFIG)
            .output()?)
    })
    .await??;
    ensure!(
        out.status.success(),
        "aws eks-auth: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// A direct AssumeRoleForPodIdentity call (no SDK): the status and body.
async fn post(client: &reqwest::Client, url: &str, token: &str) -> Result<(u16, Value)> {
    let r = client
        .post(format!(
            "{url}/clusters/{CLUSTER}/assume-role-for-pod-identity"
        ))
        .json(&json!({ "token": token }))
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// One namespace's pods flooding the broker while STS is slow do not keep
/// another namespace's pod waiting: STS slots go round-robin across
/// ServiceAccounts, so the victim gets the next free one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_flooding_does_not_starve_another() -> Result<()> {
    let cluster = cluster_with(&["victim"]).await?;
    cluster.create_namespace("flood").await?;
    cluster
        .create(
            "/api/v1/namespaces/flood/serviceaccounts",
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "flood"}}),
        )
        .await?;
    let moto = Moto::start().await?;
    let sts = StsRecorder::new(&moto.url, BROKER_ROLE).await?;
    sts.set_trust(
        APP,
        trust(BROKER_ROLE, &["sts:AssumeRole", "sts:TagSession"]),
    );
    let slow = e2e_tests::agent::FaultProxy::start(&sts.url).await?;
    const LATENCY: Duration = Duration::from_millis(1000);
    slow.set(e2e_tests::agent::Fault::Latency(LATENCY));
    let mut flood_assoc = association("flood", "flood", json!({"roleArn": APP}));
    flood_assoc["spec"]["namespace"] = json!("flood");
    cluster.create(ASSOCIATIONS, &flood_assoc).await?;
    cluster
        .create(
            ASSOCIATIONS,
            &association("victim", "victim", json!({"roleArn": APP})),
        )
        .await?;
    let dir = tempfile::tempdir()?;
    let broker = start_broker(
        &cluster,
        &slow.url,
        dir.path(),
        &["--max-concurrent-sts=2", "--sts-queue-timeout=30s"],
    )
    .await?;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&broker.ca)?)?;
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()?;
    let mut flood_tokens = Vec::new();
    for i in 0..16 {
        flood_tokens.push(
            pod_in(&cluster, "flood", "flood", &format!("flood-{i}"), AUDIENCE)
                .await?
                .1,
        );
    }
    let (_, victim) = pod(&cluster, "victim", "victim-1", AUDIENCE).await?;

    let started = Instant::now();
    let flood: Vec<_> = flood_tokens
        .into_iter()
        .map(|t| {
            let (c, url) = (client.clone(), broker.url.clone());
            tokio::spawn(async move { post(&c, &url, &t).await.map(|(s, _)| s) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = post(&client, &broker.url, &victim).await?;
    let victim_wait = started.elapsed();
    let mut statuses = Vec::new();
    for f in flood {
        statuses.push(f.await??);
    }
    let flood_took = started.elapsed();
    ensure!(status == 200, "victim: {status} {body}");
    // 16 flood sessions through 2 slots of 1 s each take 8 s; the victim
    // waits for one slot to free, not for the flood.
    ensure!(
        victim_wait < LATENCY * 4 && flood_took >= LATENCY * 7,
        "victim served after {victim_wait:?}, flood took {flood_took:?}: {statuses:?}; STS calls {}",
        sts.calls().len()
    );
    ensure!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    eprintln!("flood of 16 pods: {flood_took:?}; victim served in {victim_wait:?}");
    Ok(())
}

/// The broker's HTTPS listener against what a hostile client tries: an
/// oversized body is refused before it is read, and connections beyond the
/// per-peer cap are closed at once while the ones inside it are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brokers_listener_is_bounded() -> Result<()> {
    let cluster = cluster_with(&["web"]).await?;
    let moto = Moto::start().await?;
    let dir = tempfile::tempdir()?;
    let broker = start_broker(
        &cluster,
        &moto.url,
        dir.path(),
        &["--max-connections-per-peer=8", "--header-read-timeout=2s"],
    )
    .await?;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&broker.ca)?)?;
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()?;
    // 1 MiB of body: 413, nothing parsed.
    let r = client
        .post(format!(
            "{}/clusters/{CLUSTER}/assume-role-for-pod-identity",
            broker.url
        ))
        .header("content-type", "application/json")
        .body(format!("{{\"token\": \"{}\"}}", "a".repeat(1 << 20)))
        .send()
        .await?;
    ensure!(r.status().as_u16() == 413, "{}", r.status());
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Eight idle connections are held; the ninth is closed before TLS.
    let addr = format!("127.0.0.1:{}", broker.agent.port);
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(tokio::net::TcpStream::connect(&addr).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ninth = tokio::net::TcpStream::connect(&addr).await?;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read(&mut ninth, &mut buf),
    )
    .await
    .context("the ninth connection was held open")?
    .unwrap_or(0);
    ensure!(n == 0, "the ninth connection was answered");
    // The held ones never send a request: closed by the handshake and
    // header-read bounds, after which a new connection is served again.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&broker.ca)?)?;
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .pool_max_idle_per_host(0)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = post(&client, &broker.url, "not-a-token")
            .await
            .unwrap_or((0, Value::Null));
        if status == 400 {
            ensure!(body["message"].is_string(), "{body}");
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the idle connections were never closed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(held);
    let metrics = reqwest::get(format!("{}/metrics", broker.agent.metrics))
        .await?
        .text()
        .await?;
    ensure!(
        metrics.lines().any(|l| l.starts_with(
            "credential_agent_connections_rejected_total{reason=\"max_connections_per_peer\"}"
        ) && !l.ends_with(" 0")),
        "{metrics}"
    );
    Ok(())
}
