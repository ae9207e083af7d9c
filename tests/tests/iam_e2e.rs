//! The `pod-identity` CLI end to end, as the IRSA setup guides do it, against
//! moto (IAM, S3, STS) and the suite's kube-apiserver, whose issuer is its
//! own HTTPS URL: publish and associate the issuer, bind a role to a
//! ServiceAccount, create a pod that the real webhook injects, mint the
//! pod's token with TokenRequest and call `aws sts get-caller-identity` with
//! it. moto evaluates no trust policy, so the trust policies the tool writes
//! are checked with the project's own evaluator. Every command runs twice
//! (the second changes nothing); plans without --approve change nothing and
//! match golden files.

use anyhow::{ensure, Context, Result};
use e2e_tests::agent::{Fault, FaultProxy, Moto};
use e2e_tests::clients::{caller_arn, Client};
use e2e_tests::harness::{wait_for_webhook, Cluster, Webhook};
use e2e_tests::iam::{associated_cluster, ca_flag, golden, public_discovery, top_cert_sha1, Tools};
use pod_identity::policy::evaluate::{evaluate, Request};
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";
const NO_CHANGES: &str = "no changes; everything is already in place";

struct Env {
    cluster: Cluster,
    moto: Moto,
    tools: Tools,
    issuer: String,
    provider_arn: String,
}

impl Env {
    /// Placeholders for what differs per run (ports, thumbprints).
    fn redact(&self, text: &str) -> String {
        let host = self.issuer.trim_start_matches("https://");
        let mut s = text.replace(host, "ISSUER");
        if let Ok(tp) = top_cert_sha1(&self.cluster.serving_ca_file()) {
            s = s.replace(&tp, "THUMBPRINT");
        }
        s.replace(self.cluster.dir.path().to_str().unwrap(), "TMP")
    }
}

/// A cluster and moto, with the issuer associated.
async fn setup() -> Result<Env> {
    let moto = Moto::start_with_managed_policies().await?;
    let (cluster, tools) = associated_cluster(&moto).await?;
    let issuer = cluster.url.clone();
    let provider_arn = format!(
        "arn:aws:iam::{ACCOUNT}:oidc-provider/{}",
        issuer.trim_start_matches("https://")
    );
    Ok(Env {
        cluster,
        moto,
        tools,
        issuer,
        provider_arn,
    })
}

fn trust_allows(env: &Env, trust: &Value, ns: &str, sa: &str, aud: &str) -> bool {
    let doc = match trust {
        Value::String(s) => pod_identity::policy::parse_document(s).unwrap(),
        v => v.clone(),
    };
    let sub = format!("system:serviceaccount:{ns}:{sa}");
    evaluate(
        &doc,
        &Request::web_identity(&env.provider_arn, &env.issuer, &sub, aud),
    )
    .is_allowed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_publish_show_and_associate() -> Result<()> {
    let cluster = Cluster::start_self_issuer().await?;
    let moto = Moto::start().await?;
    let tools = Tools::new(&cluster, &moto)?;
    public_discovery(&cluster).await?;
    let issuer = cluster.url.clone();
    let api_jwks = cluster.get("/openid/v1/jwks").await?;

    // show: the issuer and keys from the API server; no provider yet.
    let show: Value = serde_json::from_str(&tools.ok(&["oidc", "show", "-o", "json"])?)?;
    assert_eq!(show["issuer"], json!(issuer));
    assert_eq!(show["jwks"], api_jwks);
    assert_eq!(show["provider"], Value::Null);

    // publish: the plan changes nothing; --approve writes both documents.
    tools.aws(&["s3api", "create-bucket", "--bucket", "issuer"])?;
    let sa_pub = cluster.dir.path().join("sa.pub");
    let key_flag = format!("--signing-key-pub={}", sa_pub.display());
    let publish = [
        "oidc",
        "publish",
        "--bucket",
        "issuer",
        "--prefix",
        "c1",
        "--issuer-url",
        &issuer,
        &key_flag,
    ];
    let plan = tools.ok(&publish)?;
    ensure!(
        plan.contains("+ write s3://issuer/c1/openid/v1/jwks"),
        "{plan}"
    );
    ensure!(
        plan.contains(&format!("--service-account-issuer={issuer}")),
        "{plan}"
    );
    ensure!(
        plan.contains(&format!(
            "--service-account-jwks-uri={issuer}/openid/v1/jwks"
        )),
        "{plan}"
    );
    // The API server's audience stays its own: a token minted for STS must
    // not also log in to the Kubernetes API.
    let audiences = plan
        .lines()
        .find(|l| l.contains("--api-audiences="))
        .context("--api-audiences")?;
    ensure!(!audiences.contains("sts.amazonaws.com"), "{audiences}");
    ensure!(
        plan.contains("Keep sts.amazonaws.com out of --api-audiences"),
        "{plan}"
    );
    assert!(
        tools.s3_json("issuer", "c1/openid/v1/jwks").is_err(),
        "a plan wrote to S3"
    );
    tools.ok(&[&publish[..], &["--approve"]].concat())?;
    // The key set from the PEM file is exactly the API server's (same kid).
    assert_eq!(tools.s3_json("issuer", "c1/openid/v1/jwks")?, api_jwks);
    let doc = tools.s3_json("issuer", "c1/.well-known/openid-configuration")?;
    assert_eq!(doc["issuer"], json!(issuer));
    assert_eq!(doc["jwks_uri"], json!(format!("{issuer}/openid/v1/jwks")));
    ensure!(tools
        .ok(&[&publish[..], &["--approve"]].concat())?
        .contains(NO_CHANGES));
    // Taken from the API server instead of a file: the same documents.
    let from_cluster = tools.ok(&[
        "oidc",
        "publish",
        "--bucket",
        "issuer",
        "--prefix",
        "c1",
        "--issuer-url",
        &issuer,
    ])?;
    ensure!(from_cluster.contains(NO_CHANGES), "{from_cluster}");

    // Rotation: the new key is published beside the old one until --prune.
    let new_key = rcgen::KeyPair::generate()?;
    let new_pub = cluster.dir.path().join("new.pub");
    std::fs::write(&new_pub, new_key.public_key_pem())?;
    let new_flag = format!("--signing-key-pub={}", new_pub.display());
    let rotate = [
        "oidc",
        "publish",
        "--bucket",
        "issuer",
        "--prefix",
        "c1",
        "--issuer-url",
        &issuer,
        &new_flag,
        "--approve",
    ];
    tools.ok(&rotate)?;
    let keys = tools.s3_json("issuer", "c1/openid/v1/jwks")?["keys"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(keys, 2);
    tools.ok(&[&rotate[..], &["--prune"]].concat())?;
    let after = tools.s3_json("issuer", "c1/openid/v1/jwks")?;
    assert_eq!(after["keys"].as_array().unwrap().len(), 1);
    assert_ne!(after, api_jwks);

    // Bad input: a private key, a missing bucket; nothing changes.
    let bad = tools.run(&[
        "oidc",
        "publish",
        "--bucket",
        "issuer",
        "--issuer-url",
        &issuer,
        &format!(
            "--signing-key-pub={}",
            cluster.dir.path().join("sa.key").display()
        ),
    ])?;
    assert_eq!(bad.code, 2, "{bad:?}");
    ensure!(bad.stderr.contains("not a public key"), "{bad:?}");
    let missing = tools.run(&[
        "oidc",
        "publish",
        "--bucket",
        "nope",
        "--issuer-url",
        &issuer,
        &key_flag,
    ])?;
    ensure!(
        missing.code != 0 && missing.stderr.contains("bucket nope does not exist"),
        "{missing:?}"
    );

    // associate: the plan (golden), then the provider with the thumbprint of
    // the top certificate the issuer presents and sts.amazonaws.com.
    let ca = format!("--issuer-ca-file={}", cluster.serving_ca_file().display());
    let plan = tools.ok(&["oidc", "associate", &ca])?;
    let thumbprint = top_cert_sha1(&cluster.serving_ca_file())?;
    let redacted = plan
        .replace(issuer.trim_start_matches("https://"), "ISSUER")
        .replace(&thumbprint, "THUMBPRINT");
    golden("oidc-associate-plan.txt", &redacted)?;
    assert!(
        tools.aws(&["iam", "list-open-id-connect-providers"])?["OpenIDConnectProviderList"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    tools.ok(&["oidc", "associate", &ca, "--approve"])?;
    let arn = format!(
        "arn:aws:iam::{ACCOUNT}:oidc-provider/{}",
        issuer.trim_start_matches("https://")
    );
    let provider = tools.aws(&[
        "iam",
        "get-open-id-connect-provider",
        "--open-id-connect-provider-arn",
        &arn,
    ])?;
    assert_eq!(provider["ClientIDList"], json!(["sts.amazonaws.com"]));
    assert_eq!(provider["ThumbprintList"], json!([thumbprint]));
    ensure!(tools
        .ok(&["oidc", "associate", &ca, "--approve"])?
        .contains(NO_CHANGES));
    let show: Value = serde_json::from_str(&tools.ok(&["oidc", "show", "-o", "json"])?)?;
    assert_eq!(show["provider"]["arn"], json!(arn));
    assert_eq!(show["provider"]["stsClientId"], json!(true));
    // The issuer's certificate chain changed (the provider still has the
    // old thumbprint): associate adds the new one first, keeping the old.
    let old = "0".repeat(40);
    tools.aws(&[
        "iam",
        "update-open-id-connect-provider-thumbprint",
        "--open-id-connect-provider-arn",
        &arn,
        "--thumbprint-list",
        &old,
    ])?;
    let plan = tools.ok(&["oidc", "associate", &ca])?;
    ensure!(plan.contains("~ set the thumbprints"), "{plan}");
    tools.ok(&["oidc", "associate", &ca, "--approve"])?;
    let provider = tools.aws(&[
        "iam",
        "get-open-id-connect-provider",
        "--open-id-connect-provider-arn",
        &arn,
    ])?;
    assert_eq!(provider["ThumbprintList"], json!([thumbprint, old]));
    ensure!(tools
        .ok(&["oidc", "associate", &ca, "--approve"])?
        .contains(NO_CHANGES));

    // An issuer that is not HTTPS-reachable, or not trusted, says so.
    let dead = tools.run(&[
        "oidc",
        "associate",
        "--issuer-url",
        "https://127.0.0.1:1",
        "--approve",
    ])?;
    ensure!(
        dead.code != 0 && dead.stderr.contains("not reachable over HTTPS"),
        "{dead:?}"
    );
    let untrusted = tools.run(&["oidc", "associate", "--approve"])?;
    ensure!(
        untrusted.code != 0 && untrusted.stderr.contains("not reachable over HTTPS"),
        "{untrusted:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iamserviceaccount_to_a_pod_with_its_own_role() -> Result<()> {
    let env = setup().await?;
    let (cluster, tools) = (&env.cluster, &env.tools);
    let policy = tools.aws(&["iam", "create-policy", "--policy-name", "app-read",
        "--policy-document", r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#])?;
    let policy_arn = policy["Policy"]["Arn"]
        .as_str()
        .context("policy ARN")?
        .to_string();
    cluster.create_namespace("app").await?;
    let create = [
        "iamserviceaccount",
        "create",
        "--namespace",
        "app",
        "--name",
        "reader",
        "--role-name",
        "app-reader",
        "--attach-policy-arn",
        &policy_arn,
        "--tags",
        "Team=payments",
    ];

    // The plan: golden, and nothing made.
    let plan = tools.ok(&create)?;
    golden("iamserviceaccount-create-plan.txt", &env.redact(&plan))?;
    assert!(tools.role("app-reader")?.is_none());
    assert!(cluster
        .get("/api/v1/namespaces/app/serviceaccounts/reader")
        .await
        .is_err());

    // Approved: the role (owned, tagged, trusting exactly this
    // ServiceAccount), the policy, the annotated ServiceAccount.
    tools.ok(&[&create[..], &["--approve"]].concat())?;
    let role = tools.role("app-reader")?.context("role created")?;
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/app-reader");
    assert_eq!(role["Arn"], json!(role_arn));
    let tags = tools.aws(&["iam", "list-role-tags", "--role-name", "app-reader"])?;
    ensure!(
        tags.to_string().contains("pod-identity.io/managed-by")
            && tags.to_string().contains("payments"),
        "{tags}"
    );
    let attached = tools.aws(&[
        "iam",
        "list-attached-role-policies",
        "--role-name",
        "app-reader",
    ])?;
    assert_eq!(
        attached["AttachedPolicies"][0]["PolicyArn"],
        json!(policy_arn)
    );
    let trust = role["AssumeRolePolicyDocument"].clone();
    assert!(trust_allows(
        &env,
        &trust,
        "app",
        "reader",
        "sts.amazonaws.com"
    ));
    assert!(!trust_allows(
        &env,
        &trust,
        "app",
        "other",
        "sts.amazonaws.com"
    ));
    assert!(!trust_allows(
        &env,
        &trust,
        "other",
        "reader",
        "sts.amazonaws.com"
    ));
    assert!(!trust_allows(
        &env,
        &trust,
        "app",
        "reader",
        "https://kubernetes.default.svc"
    ));
    let sa = cluster
        .get("/api/v1/namespaces/app/serviceaccounts/reader")
        .await?;
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        json!(role_arn)
    );
    assert_eq!(
        sa["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        json!("pod-identity")
    );

    // Twice: nothing changes.
    let again = tools.ok(&[&create[..], &["--approve"]].concat())?;
    ensure!(again.contains(NO_CHANGES), "{again}");
    assert_eq!(
        tools.role("app-reader")?.unwrap()["AssumeRolePolicyDocument"],
        trust
    );

    // The webhook injects the role; the pod's own token gets it from STS.
    let hook = Webhook::start(cluster, &[]).await?;
    hook.register(cluster, "pod-identity").await?;
    wait_for_webhook(cluster, &role_arn).await?;
    let (pod, _) = cluster
        .create(
            "/api/v1/namespaces/app/pods",
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
                "spec": {"serviceAccountName": "reader", "automountServiceAccountToken": false,
                         "containers": [{"name": "app", "image": "amazon/aws-cli"}]}}),
        )
        .await?;
    let vars: Vec<(String, String)> = pod["spec"]["containers"][0]["env"]
        .as_array()
        .context("injected env")?
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let var = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(var("AWS_ROLE_ARN"), Some(role_arn.clone()));
    let token = cluster
        .token_request(
            "app",
            "reader",
            "sts.amazonaws.com",
            3600,
            Some(("app", pod["metadata"]["uid"].as_str().unwrap())),
        )
        .await?;
    // The token's own claims pass the trust policy; moto will not check.
    let claims = decode_claims(&token)?;
    assert_eq!(claims["iss"], json!(env.issuer));
    let sub = claims["sub"].as_str().unwrap();
    let aud = claims["aud"][0].as_str().unwrap();
    let doc =
        pod_identity::policy::parse_document(trust.as_str().unwrap_or(&trust.to_string())).unwrap();
    assert!(evaluate(
        &doc,
        &Request::web_identity(&env.provider_arn, &env.issuer, sub, aud)
    )
    .is_allowed());
    let home = tempfile::tempdir()?;
    let token_file = home.path().join("token");
    std::fs::write(&token_file, &token)?;
    let client_env = vec![
        ("AWS_ROLE_ARN".to_string(), var("AWS_ROLE_ARN").unwrap()),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
            token_file.display().to_string(),
        ),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
        ("AWS_ENDPOINT_URL_STS".into(), tools.moto_url.clone()),
    ];
    let arn =
        tokio::task::spawn_blocking(move || caller_arn(Client::AwsCli, &client_env, home.path()))
            .await??;
    ensure!(
        arn.contains(":assumed-role/app-reader/"),
        "caller ARN {arn}"
    );

    // get: the table and JSON.
    let table = tools.ok(&["iamserviceaccount", "get", "--namespace", "app"])?;
    golden("iamserviceaccount-get.txt", &env.redact(&table))?;
    let rows: Value = serde_json::from_str(&tools.ok(&[
        "iamserviceaccount",
        "get",
        "--namespace",
        "app",
        "--name",
        "reader",
        "-o",
        "json",
    ])?)?;
    assert_eq!(rows[0]["roleARN"], json!(role_arn));
    assert_eq!(rows[0]["trustOk"], json!(true));
    assert_eq!(rows[0]["annotationOk"], json!(true));
    let yaml = tools.ok(&["iamserviceaccount", "get", "-o", "yaml"])?;
    ensure!(
        yaml.contains("roleARN: arn:aws:iam::123456789012:role/app-reader"),
        "{yaml}"
    );

    // A second ServiceAccount sharing the role joins the trust policy, and
    // leaves it again on delete; the role stays while the first uses it.
    let second = [
        "iamserviceaccount",
        "create",
        "--allow-no-policy",
        "--namespace",
        "app",
        "--name",
        "writer",
        "--role-name",
        "app-reader",
        "--approve",
    ];
    tools.ok(&second)?;
    let shared = tools.role("app-reader")?.unwrap()["AssumeRolePolicyDocument"].clone();
    assert!(trust_allows(
        &env,
        &shared,
        "app",
        "reader",
        "sts.amazonaws.com"
    ));
    assert!(trust_allows(
        &env,
        &shared,
        "app",
        "writer",
        "sts.amazonaws.com"
    ));
    tools.ok(&[
        "iamserviceaccount",
        "delete",
        "--namespace",
        "app",
        "--name",
        "writer",
        "--approve",
    ])?;
    let back = tools
        .role("app-reader")?
        .context("the role is still used")?["AssumeRolePolicyDocument"]
        .clone();
    assert!(trust_allows(
        &env,
        &back,
        "app",
        "reader",
        "sts.amazonaws.com"
    ));
    assert!(!trust_allows(
        &env,
        &back,
        "app",
        "writer",
        "sts.amazonaws.com"
    ));
    assert!(cluster
        .get("/api/v1/namespaces/app/serviceaccounts/writer")
        .await
        .is_err());

    // delete: plan (golden), then nothing left behind; twice is a no-op.
    let delete = [
        "iamserviceaccount",
        "delete",
        "--namespace",
        "app",
        "--name",
        "reader",
    ];
    golden(
        "iamserviceaccount-delete-plan.txt",
        &env.redact(&tools.ok(&delete)?),
    )?;
    assert!(tools.role("app-reader")?.is_some());
    tools.ok(&[&delete[..], &["--approve"]].concat())?;
    assert!(tools.role("app-reader")?.is_none());
    assert!(cluster
        .get("/api/v1/namespaces/app/serviceaccounts/reader")
        .await
        .is_err());
    ensure!(tools
        .ok(&[&delete[..], &["--approve"]].concat())?
        .contains(NO_CHANGES));
    // The policy itself is the user's: still there.
    tools.aws(&["iam", "get-policy", "--policy-arn", &policy_arn])?;
    drop(hook);
    Ok(())
}

fn decode_claims(token: &str) -> Result<Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).context("JWT")?;
    Ok(serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?,
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_existing_serviceaccounts_and_eksctl_config() -> Result<()> {
    let env = setup().await?;
    let (cluster, tools) = (&env.cluster, &env.tools);
    cluster.create_namespace("team").await?;

    // A role pod-identity did not create is refused and left unchanged.
    let foreign_trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    tools.aws(&[
        "iam",
        "create-role",
        "--role-name",
        "hand-made",
        "--assume-role-policy-document",
        foreign_trust,
    ])?;
    let before = tools.role("hand-made")?.unwrap();
    let refused = tools.run(&[
        "iamserviceaccount",
        "create",
        "--allow-no-policy",
        "--namespace",
        "team",
        "--name",
        "a",
        "--role-name",
        "hand-made",
        "--approve",
    ])?;
    assert_eq!(refused.code, 3, "{refused:?}");
    ensure!(
        refused.stderr.contains("was not created by pod-identity"),
        "{refused:?}"
    );
    assert_eq!(tools.role("hand-made")?.unwrap(), before);
    assert!(cluster
        .get("/api/v1/namespaces/team/serviceaccounts/a")
        .await
        .is_err());
    // --attach-role-arn uses it as it is; delete then leaves the role alone.
    let hand_arn = format!("arn:aws:iam::{ACCOUNT}:role/hand-made");
    tools.ok(&[
        "iamserviceaccount",
        "create",
        "--namespace",
        "team",
        "--name",
        "a",
        "--attach-role-arn",
        &hand_arn,
        "--approve",
    ])?;
    assert_eq!(tools.role("hand-made")?.unwrap(), before);
    let sa = cluster
        .get("/api/v1/namespaces/team/serviceaccounts/a")
        .await?;
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        json!(hand_arn)
    );
    let out = tools.ok(&[
        "iamserviceaccount",
        "delete",
        "--namespace",
        "team",
        "--name",
        "a",
        "--approve",
    ])?;
    ensure!(out.contains("left alone"), "{out}");
    assert_eq!(tools.role("hand-made")?.unwrap(), before);
    // --adopt-role: tagged and managed from then on.
    tools.ok(&[
        "iamserviceaccount",
        "create",
        "--allow-no-policy",
        "--namespace",
        "team",
        "--name",
        "a",
        "--role-name",
        "hand-made",
        "--adopt-role",
        "--approve",
    ])?;
    let adopted = tools.role("hand-made")?.unwrap()["AssumeRolePolicyDocument"].clone();
    assert!(trust_allows(
        &env,
        &adopted,
        "team",
        "a",
        "sts.amazonaws.com"
    ));
    ensure!(
        adopted.to_string().contains("ec2.amazonaws.com"),
        "the foreign statement was kept: {adopted}"
    );
    tools.ok(&[
        "iamserviceaccount",
        "delete",
        "--namespace",
        "team",
        "--name",
        "a",
        "--approve",
    ])?;
    let kept = tools
        .role("hand-made")?
        .context("still trusted by EC2: kept")?;
    assert!(!trust_allows(
        &env,
        &kept["AssumeRolePolicyDocument"],
        "team",
        "a",
        "sts.amazonaws.com"
    ));

    // A ServiceAccount naming another role is refused unless overridden; one
    // the user created keeps existing after delete, without the annotation.
    cluster
        .create(
            "/api/v1/namespaces/team/serviceaccounts",
            &json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "b", "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/other"}}}),
        )
        .await?;
    let create_b = [
        "iamserviceaccount",
        "create",
        "--allow-no-policy",
        "--namespace",
        "team",
        "--name",
        "b",
        "--approve",
    ];
    let refused = tools.run(&create_b)?;
    assert_eq!(refused.code, 3, "{refused:?}");
    ensure!(refused.stderr.contains("already annotated"), "{refused:?}");
    assert!(
        tools.role("pod-identity_team_b")?.is_none(),
        "a refused create made the role"
    );
    tools.ok(&[&create_b[..], &["--override-existing-serviceaccounts"]].concat())?;
    let sa = cluster
        .get("/api/v1/namespaces/team/serviceaccounts/b")
        .await?;
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        json!(format!("arn:aws:iam::{ACCOUNT}:role/pod-identity_team_b"))
    );
    tools.ok(&[
        "iamserviceaccount",
        "delete",
        "--namespace",
        "team",
        "--name",
        "b",
        "--approve",
    ])?;
    let sa = cluster
        .get("/api/v1/namespaces/team/serviceaccounts/b")
        .await?;
    assert_eq!(
        sa["metadata"]["annotations"].get("eks.amazonaws.com/role-arn"),
        None
    );
    assert!(tools.role("pod-identity_team_b")?.is_none());

    // An eksctl ClusterConfig: applied, then applied again with no change.
    let config = env.cluster.dir.path().join("cluster.yaml");
    std::fs::write(
        &config,
        r#"apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata:
  name: prod
  region: us-east-1
vpc:
  cidr: 10.10.0.0/16
iam:
  withOIDC: true
  serviceAccounts:
  - metadata:
      name: s3-reader
      namespace: team
      labels: {aws-usage: "application"}
    attachPolicyARNs:
    - "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
    roleName: s3-reader
    tags:
      Owner: "John Doe"
  - metadata:
      name: cache
      namespace: team
    roleOnly: true
    attachPolicy:
      Version: "2012-10-17"
      Statement:
      - Effect: Allow
        Action: ["elasticache:Connect"]
        Resource: "*"
"#,
    )?;
    let file = format!("--file={}", config.display());
    // withOIDC: the provider is checked (it exists) over the issuer's HTTPS.
    let ca = ca_flag(cluster);
    let plan = tools.ok(&["iamserviceaccount", "apply", &file, &ca])?;
    golden("iamserviceaccount-apply-plan.txt", &env.redact(&plan))?;
    tools.ok(&["iamserviceaccount", "apply", &file, &ca, "--approve"])?;
    let reader = tools.role("s3-reader")?.context("s3-reader")?;
    assert!(trust_allows(
        &env,
        &reader["AssumeRolePolicyDocument"],
        "team",
        "s3-reader",
        "sts.amazonaws.com"
    ));
    let cache = tools
        .role("pod-identity_prod_team_cache")?
        .context("role-only role with the cluster's name")?;
    assert!(trust_allows(
        &env,
        &cache["AssumeRolePolicyDocument"],
        "team",
        "cache",
        "sts.amazonaws.com"
    ));
    // attachPolicy became the role's inline policy "pod-identity".
    let inline = tools.aws(&[
        "iam",
        "get-role-policy",
        "--role-name",
        "pod-identity_prod_team_cache",
        "--policy-name",
        "pod-identity",
    ])?;
    assert_eq!(
        inline["PolicyDocument"]["Statement"][0]["Action"],
        json!(["elasticache:Connect"]),
        "{inline}"
    );
    let sa = cluster
        .get("/api/v1/namespaces/team/serviceaccounts/s3-reader")
        .await?;
    assert_eq!(sa["metadata"]["labels"]["aws-usage"], json!("application"));
    assert!(
        cluster
            .get("/api/v1/namespaces/team/serviceaccounts/cache")
            .await
            .is_err(),
        "roleOnly made a ServiceAccount"
    );
    ensure!(tools
        .ok(&["iamserviceaccount", "apply", &file, &ca, "--approve"])?
        .contains(NO_CHANGES));

    // Bad input changes nothing and says why.
    std::fs::write(&config, "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  serviceAccounts:\n  - metadata: {name: x}\n    wellKnownPolicies: {autoscaler: true}\n")?;
    let bad = tools.run(&["iamserviceaccount", "apply", &file, &ca, "--approve"])?;
    assert_eq!(bad.code, 2, "{bad:?}");
    ensure!(
        bad.stderr
            .contains("\"autoscaler\" is not one of eksctl's sets"),
        "{bad:?}"
    );
    std::fs::write(&config, "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  serviceAccounts:\n  - metadata: {name: x}\n    attachPolicy: {Statement: []}\n")?;
    let bad = tools.run(&["iamserviceaccount", "apply", &file, &ca, "--approve"])?;
    assert_eq!(bad.code, 2, "{bad:?}");
    ensure!(bad.stderr.contains("at least one Statement"), "{bad:?}");
    let bad = tools.run(&[
        "iamserviceaccount",
        "create",
        "--namespace",
        "team",
        "--name",
        "x",
        "--attach-policy-arn",
        "ReadOnly",
        "--approve",
    ])?;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(tools.role("pod-identity_team_x")?.is_none());
    Ok(())
}

/// With moto enforcing IAM permissions (after the first four requests, which
/// set up a limited user and the OIDC provider): a missing permission names
/// the action and the resource, and never the credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_permissions_are_named() -> Result<()> {
    let cluster = Cluster::start_self_issuer().await?;
    let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "4")]).await?;
    let tools = Tools::new(&cluster, &moto)?;
    tools.aws(&["iam", "create-user", "--user-name", "deployer"])?;
    let key = tools.aws(&["iam", "create-access-key", "--user-name", "deployer"])?;
    let (id, secret) = (
        key["AccessKey"]["AccessKeyId"]
            .as_str()
            .context("key id")?
            .to_string(),
        key["AccessKey"]["SecretAccessKey"]
            .as_str()
            .context("secret")?
            .to_string(),
    );
    tools.aws(&["iam", "put-user-policy", "--user-name", "deployer", "--policy-name", "limited", "--policy-document",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:ListOpenIDConnectProviders","iam:GetOpenIDConnectProvider"],"Resource":"*"}]}"#])?;
    tools.aws(&[
        "iam",
        "create-open-id-connect-provider",
        "--url",
        &cluster.url,
        "--client-id-list",
        "sts.amazonaws.com",
        "--thumbprint-list",
        &"0".repeat(40),
    ])?;
    let keys = [
        ("AWS_ACCESS_KEY_ID", id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
    ];
    let out = tools.run_env(
        &[
            "iamserviceaccount",
            "create",
            "--allow-no-policy",
            "--namespace",
            "app",
            "--name",
            "reader",
            "--role-name",
            "app-reader",
        ],
        &keys,
    )?;
    assert_eq!(out.code, 1, "{out:?}");
    ensure!(
        out.stderr.contains("AWS denied iam:GetRole on app-reader")
            && out.stderr.contains("lack the permission iam:GetRole"),
        "{out:?}"
    );
    ensure!(
        !out.stderr.contains(&secret) && !out.stdout.contains(&secret),
        "the secret key was printed"
    );
    Ok(())
}

/// A run that fails half-way (here: a policy that does not exist yet) says
/// what it did; re-running once the cause is fixed finishes the job. The
/// missing namespace is created first, as eksctl does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_runs_say_what_was_done_and_resume() -> Result<()> {
    let env = setup().await?;
    let (cluster, tools) = (&env.cluster, &env.tools);
    let policy_arn = format!("arn:aws:iam::{ACCOUNT}:policy/later");
    let create = [
        "iamserviceaccount",
        "create",
        "--namespace",
        "later",
        "--name",
        "app",
        "--attach-policy-arn",
        &policy_arn,
        "--approve",
    ];
    let first = tools.run(&create)?;
    assert_eq!(first.code, 4, "{first:?}");
    ensure!(
        first.stdout.contains("done: + create namespace later")
            && first
                .stderr
                .contains("done: + create IAM role pod-identity_later_app"),
        "{first:?}"
    );
    ensure!(
        first.stderr.contains("iam:AttachRolePolicy") && first.stderr.contains("re-running"),
        "{first:?}"
    );
    assert!(tools.role("pod-identity_later_app")?.is_some());
    cluster.get("/api/v1/namespaces/later").await?;
    tools.aws(&[
        "iam",
        "create-policy",
        "--policy-name",
        "later",
        "--policy-document",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}"#,
    ])?;
    let second = tools.ok(&create)?;
    ensure!(
        second.contains("2 change(s)")
            && second.contains(&format!("+ attach policy {policy_arn}"))
            && second.contains("+ create ServiceAccount later/app"),
        "{second}"
    );
    let sa = cluster
        .get("/api/v1/namespaces/later/serviceaccounts/app")
        .await?;
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        json!(format!(
            "arn:aws:iam::{ACCOUNT}:role/pod-identity_later_app"
        ))
    );
    Ok(())
}

/// One role for a ServiceAccount in each of two clusters (two issuers): the
/// second cluster gets a statement of its own beside the first's, and
/// deleting it from one cluster leaves the other's trust as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_shared_by_two_clusters() -> Result<()> {
    let moto = Moto::start().await?;
    let (a, ta) = associated_cluster(&moto).await?;
    let (b, tb) = associated_cluster(&moto).await?;
    for cluster in [&a, &b] {
        cluster.create_namespace("app").await?;
    }
    let create = [
        "iamserviceaccount",
        "create",
        "--allow-no-policy",
        "--namespace",
        "app",
        "--name",
        "reader",
        "--role-name",
        "shared",
        "--approve",
    ];
    ta.ok(&create)?;
    tb.ok(&create)?;
    let provider = |c: &Cluster| {
        format!(
            "arn:aws:iam::{ACCOUNT}:oidc-provider/{}",
            c.url.trim_start_matches("https://")
        )
    };
    let allows = |trust: &Value, c: &Cluster| {
        let doc =
            pod_identity::policy::parse_document(trust.as_str().unwrap_or(&trust.to_string()))
                .unwrap();
        evaluate(
            &doc,
            &Request::web_identity(
                &provider(c),
                &c.url,
                "system:serviceaccount:app:reader",
                "sts.amazonaws.com",
            ),
        )
        .is_allowed()
    };
    let trust = ta.role("shared")?.context("role")?["AssumeRolePolicyDocument"].clone();
    let doc =
        pod_identity::policy::parse_document(trust.as_str().unwrap_or(&trust.to_string())).unwrap();
    assert_eq!(doc["Statement"].as_array().unwrap().len(), 2, "{doc}");
    assert!(allows(&trust, &a) && allows(&trust, &b));
    // Each cluster's ServiceAccount names the same role.
    for c in [&a, &b] {
        let sa = c
            .get("/api/v1/namespaces/app/serviceaccounts/reader")
            .await?;
        assert_eq!(
            sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
            json!(format!("arn:aws:iam::{ACCOUNT}:role/shared"))
        );
    }
    ensure!(tb.ok(&create)?.contains(NO_CHANGES));
    tb.ok(&[
        "iamserviceaccount",
        "delete",
        "--namespace",
        "app",
        "--name",
        "reader",
        "--role-name",
        "shared",
        "--approve",
    ])?;
    let trust =
        ta.role("shared")?.context("still used by cluster a")?["AssumeRolePolicyDocument"].clone();
    assert!(allows(&trust, &a) && !allows(&trust, &b));
    ta.ok(&[
        "iamserviceaccount",
        "delete",
        "--namespace",
        "app",
        "--name",
        "reader",
        "--role-name",
        "shared",
        "--approve",
    ])?;
    assert!(ta.role("shared")?.is_none());
    Ok(())
}

/// A user who removed the issuer's IAM OIDC provider first (tearing a cluster
/// down) can still delete: the provider's ARN is derived from the caller's
/// account, the trust entry naming it goes, and so does the owned role and the
/// ServiceAccount's annotation. `create` still refuses without a provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_after_the_provider_is_gone() -> Result<()> {
    let env = setup().await?;
    let (cluster, tools) = (&env.cluster, &env.tools);
    cluster.create_namespace("gone").await?;
    let sa = ["--namespace", "gone", "--name", "app"];
    tools.ok(&[
        &["iamserviceaccount", "create", "--allow-no-policy"],
        &sa[..],
        &["--approve"],
    ]
    .concat())?;
    assert!(tools.role("pod-identity_gone_app")?.is_some());
    tools.aws(&[
        "iam",
        "delete-open-id-connect-provider",
        "--open-id-connect-provider-arn",
        &env.provider_arn,
    ])?;

    let refused = tools.run(&[
        "iamserviceaccount",
        "create",
        "--allow-no-policy",
        "--namespace",
        "gone",
        "--name",
        "other",
    ])?;
    assert_eq!(refused.code, 1, "{refused:?}");
    ensure!(
        refused.stderr.contains("no IAM OIDC provider")
            && refused.stderr.contains("oidc associate"),
        "{refused:?}"
    );

    let plan = tools.ok(&[&["iamserviceaccount", "delete"], &sa[..]].concat())?;
    ensure!(
        plan.contains("delete IAM role pod-identity_gone_app"),
        "the plan deletes the owned role:\n{plan}"
    );
    tools.ok(&[&["iamserviceaccount", "delete"], &sa[..], &["--approve"]].concat())?;
    assert!(tools.role("pod-identity_gone_app")?.is_none());
    let sa = cluster
        .get("/api/v1/namespaces/gone/serviceaccounts/app")
        .await;
    ensure!(sa.is_err(), "the ServiceAccount it created is gone: {sa:?}");
    Ok(())
}

/// Many ServiceAccounts bound to one role: a trust policy over IAM's default
/// quota (2,048 characters) is noted in the plan; one over the most IAM ever
/// allows (4,096) is refused before anything is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_policy_too_long_for_iam_is_refused_up_front() -> Result<()> {
    let env = setup().await?;
    let (cluster, tools) = (&env.cluster, &env.tools);
    let config = |n: usize| -> Result<String> {
        let mut yaml = String::from(
            "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: prod, region: us-east-1}\niam:\n  serviceAccounts:\n",
        );
        for i in 0..n {
            yaml.push_str(&format!(
                "  - metadata: {{name: app-{i:03}, namespace: team}}\n    roleName: shared\n    attachPolicyARNs: [arn:aws:iam::aws:policy/ReadOnlyAccess]\n"
            ));
        }
        let path = cluster.dir.path().join(format!("many-{n}.yaml"));
        std::fs::write(&path, yaml)?;
        Ok(format!("--file={}", path.display()))
    };

    let refused = tools.run(&["iamserviceaccount", "apply", &config(120)?, "--approve"])?;
    assert_eq!(refused.code, 3, "{refused:?}");
    ensure!(
        refused.stderr.contains("IAM role shared would be")
            && refused.stderr.contains("(120 ServiceAccounts)")
            && refused.stderr.contains("nothing was changed"),
        "{refused:?}"
    );
    assert!(tools.role("shared")?.is_none(), "no role was created");
    let sas = cluster.get("/api/v1/namespaces/team/serviceaccounts").await;
    ensure!(
        sas.as_ref()
            .map(|l| l["items"].as_array().is_none_or(Vec::is_empty))
            .unwrap_or(true),
        "no ServiceAccount was created: {sas:?}"
    );

    let plan = tools.ok(&["iamserviceaccount", "apply", &config(60)?])?;
    ensure!(
        plan.contains("note: the trust policy of IAM role shared will be")
            && plan.contains("(60 ServiceAccounts), over IAM's default quota of 2048"),
        "{plan}"
    );
    Ok(())
}

/// Right after `oidc associate`, IAM may not know the provider yet and
/// refuses a trust policy naming it ("Invalid principal in policy"): create
/// waits and retries (1 s, 2 s, ...) instead of failing half-way. Any other
/// malformed-policy answer fails at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_waits_for_iam_to_know_a_new_provider() -> Result<()> {
    let env = setup().await?;
    let (cluster, tools) = (&env.cluster, &env.tools);
    cluster.create_namespace("fresh").await?;
    let proxy = FaultProxy::start(&env.moto.url).await?;
    let through_proxy = [("AWS_ENDPOINT_URL_IAM", proxy.url.as_str())];
    proxy.set(Fault::FailAction {
        action: "CreateRole",
        times: 2,
        status: 400,
        code: "MalformedPolicyDocument",
        message: "Invalid principal in policy: \"FEDERATED\":\"arn:aws:iam::123456789012:oidc-provider/x\"",
    });
    let create = [
        "iamserviceaccount",
        "create",
        "--allow-no-policy",
        "--namespace",
        "fresh",
        "--name",
        "app",
        "--approve",
    ];
    let out = tools.run_env(&create, &through_proxy)?;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(proxy.action_calls(), (3, 2), "two refusals, then created");
    assert!(tools.role("pod-identity_fresh_app")?.is_some());

    let proxy = FaultProxy::start(&env.moto.url).await?;
    proxy.set(Fault::FailAction {
        action: "CreateRole",
        times: 100,
        status: 400,
        code: "MalformedPolicyDocument",
        message: "Syntax errors in policy.",
    });
    let through_proxy = [("AWS_ENDPOINT_URL_IAM", proxy.url.as_str())];
    let out = tools.run_env(
        &[
            "iamserviceaccount",
            "create",
            "--allow-no-policy",
            "--namespace",
            "fresh",
            "--name",
            "other",
            "--approve",
        ],
        &through_proxy,
    )?;
    assert_eq!(out.code, 1, "{out:?}");
    ensure!(
        out.stderr.contains("iam:CreateRole") && out.stderr.contains("Syntax errors in policy"),
        "{out:?}"
    );
    assert_eq!(proxy.action_calls(), (1, 1), "not retried");
    Ok(())
}
