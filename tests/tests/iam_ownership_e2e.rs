//! `pod-identity iamserviceaccount` is never silently wrong about IAM, end
//! to end against moto and the suite's kube-apiserver: default role names
//! never make two ServiceAccounts share a role, every owned role records
//! what it was made for, `apply -f` / `update` remove what the file no
//! longer asks for, eksctl's own example file applies unchanged (with
//! `withOIDC` and `wellKnownPolicies`), `delete` always finishes, labels are
//! merged, `get` survives an unreadable role, and the issuer's HTTPS visit
//! goes through `HTTPS_PROXY`.

use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context, Result};
use e2e_tests::agent::{Fault, FaultProxy, Moto};
use e2e_tests::harness::Cluster;
use e2e_tests::iam::{associated_cluster, ca_flag, public_discovery, Tools};
use pod_identity::policy::evaluate::{evaluate, Request};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = "123456789012";
const NO_CHANGES: &str = "no changes; everything is already in place";
const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const S3_READ: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";
const SQS_READ: &str = "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess";

struct Env {
    cluster: Cluster,
    moto: Moto,
    tools: Tools,
}

impl Env {
    fn provider_arn(&self) -> String {
        format!(
            "arn:aws:iam::{ACCOUNT}:oidc-provider/{}",
            self.cluster.url.trim_start_matches("https://")
        )
    }

    /// Whether `role`'s trust policy lets ns/sa's STS tokens of this cluster in.
    fn trusts(&self, role: &str, ns: &str, sa: &str) -> Result<bool> {
        let r = self.tools.role(role)?.context(role.to_string())?;
        let doc = match &r["AssumeRolePolicyDocument"] {
            Value::String(s) => pod_identity::policy::parse_document(s).unwrap(),
            v => v.clone(),
        };
        let sub = format!("system:serviceaccount:{ns}:{sa}");
        Ok(evaluate(
            &doc,
            &Request::web_identity(
                &self.provider_arn(),
                &self.cluster.url,
                &sub,
                "sts.amazonaws.com",
            ),
        )
        .is_allowed())
    }

    fn attached(&self, role: &str) -> Result<Vec<String>> {
        let v = self
            .tools
            .aws(&["iam", "list-attached-role-policies", "--role-name", role])?;
        let mut out: Vec<String> = v["AttachedPolicies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["PolicyArn"].as_str().map(String::from))
            .collect();
        out.sort();
        Ok(out)
    }

    fn inline(&self, role: &str) -> Result<Vec<String>> {
        let v = self
            .tools
            .aws(&["iam", "list-role-policies", "--role-name", role])?;
        let mut out: Vec<String> = v["PolicyNames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(String::from))
            .collect();
        out.sort();
        Ok(out)
    }

    fn tags(&self, role: &str) -> Result<Value> {
        let v = self
            .tools
            .aws(&["iam", "list-role-tags", "--role-name", role])?;
        let mut map = serde_json::Map::new();
        for t in v["Tags"].as_array().into_iter().flatten() {
            map.insert(
                t["Key"].as_str().unwrap_or_default().into(),
                t["Value"].clone(),
            );
        }
        Ok(Value::Object(map))
    }

    async fn annotation(&self, ns: &str, name: &str) -> Result<Value> {
        let sa = self
            .cluster
            .get(&format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}"))
            .await?;
        Ok(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].clone())
    }

    fn write(&self, name: &str, text: &str) -> Result<String> {
        let path = self.cluster.dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(format!("--file={}", path.display()))
    }
}

async fn setup() -> Result<Env> {
    let moto = Moto::start_with_managed_policies().await?;
    let (cluster, tools) = associated_cluster(&moto).await?;
    Ok(Env {
        cluster,
        moto,
        tools,
    })
}

/// `a-b/c` and `a/b-c` had one default role name; so had `--cluster prod`
/// with `app/x` and `prod-app/x`. Each now gets its own role, recording
/// what it was made for, and a default name that reaches another
/// ServiceAccount's role is refused naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_ambiguous_service_accounts_get_roles_of_their_own() -> Result<()> {
    let env = setup().await?;
    let tools = &env.tools;
    let create = |ns: &'static str, name: &'static str, extra: &[&str], policy: &str| {
        let mut args = vec![
            "iamserviceaccount".to_string(),
            "create".into(),
            "--namespace".into(),
            ns.into(),
            "--name".into(),
            name.into(),
            "--attach-policy-arn".into(),
            policy.into(),
            "--approve".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tools.ok(&refs)
    };
    // Namespaces that do not exist are created (as eksctl does).
    run(create("a-b", "c", &[], S3_READ))?;
    run(create("a", "b-c", &[], SQS_READ))?;
    assert!(env.trusts("pod-identity_a-b_c", "a-b", "c")?);
    assert!(!env.trusts("pod-identity_a-b_c", "a", "b-c")?);
    assert!(env.trusts("pod-identity_a_b-c", "a", "b-c")?);
    assert!(!env.trusts("pod-identity_a_b-c", "a-b", "c")?);
    assert_eq!(env.attached("pod-identity_a-b_c")?, [S3_READ]);
    assert_eq!(env.attached("pod-identity_a_b-c")?, [SQS_READ]);
    let issuer = env.cluster.url.trim_start_matches("https://").to_string();
    let tags = env.tags("pod-identity_a_b-c")?;
    assert_eq!(tags["pod-identity.io/issuer"], json!(issuer));
    assert_eq!(tags["pod-identity.io/namespace"], "a");
    assert_eq!(tags["pod-identity.io/service-account"], "b-c");

    run(create("app", "x", &["--cluster", "prod"], S3_READ))?;
    run(create("prod-app", "x", &[], SQS_READ))?;
    assert!(env.trusts("pod-identity_prod_app_x", "app", "x")?);
    assert!(!env.trusts("pod-identity_prod_app_x", "prod-app", "x")?);
    assert_eq!(env.attached("pod-identity_prod-app_x")?, [SQS_READ]);

    // A role named on purpose for another ServiceAccount takes the default
    // name of team/web: create for team/web is refused, naming both.
    run(create(
        "other",
        "job",
        &["--role-name", "pod-identity_team_web"],
        READ_ONLY,
    ))?;
    let before = tools.role("pod-identity_team_web")?;
    let refused = tools.run(&[
        "iamserviceaccount",
        "create",
        "--namespace",
        "team",
        "--name",
        "web",
        "--attach-policy-arn",
        SQS_READ,
        "--approve",
    ])?;
    assert_eq!(refused.code, 3, "{refused:?}");
    ensure!(
        refused.stderr.contains("ServiceAccount other/job")
            && refused.stderr.contains("team/web")
            && refused.stderr.contains("--role-name pod-identity_team_web"),
        "{refused:?}"
    );
    assert_eq!(tools.role("pod-identity_team_web")?, before);
    assert_eq!(env.attached("pod-identity_team_web")?, [READ_ONLY]);
    assert!(env
        .cluster
        .get("/api/v1/namespaces/team/serviceaccounts/web")
        .await
        .is_err());
    // Shared on purpose with --role-name: allowed.
    run(create(
        "team",
        "web",
        &["--role-name", "pod-identity_team_web"],
        READ_ONLY,
    ))?;
    assert!(env.trusts("pod-identity_team_web", "team", "web")?);
    assert!(env.trusts("pod-identity_team_web", "other", "job")?);
    Ok(())
}

/// `apply -f` and `update` are declarative for roles the tool owns: a
/// policy ARN, attachPolicy, a well-known set or the permissions boundary
/// dropped from the file is removed, shown in the plan first. Both flag
/// forms of --attach-policy-arn work. Roles it does not own keep all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_update_remove_what_the_file_drops() -> Result<()> {
    let env = setup().await?;
    let tools = &env.tools;
    let boundary = tools.aws(&[
        "iam",
        "create-policy",
        "--policy-name",
        "boundary",
        "--policy-document",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    ])?["Policy"]["Arn"]
        .as_str()
        .context("policy ARN")?
        .to_string();
    let full = env.write(
        "full.yaml",
        &format!(
            r#"apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata: {{name: prod}}
iam:
  serviceAccounts:
  - metadata: {{name: app, namespace: shop}}
    attachPolicyARNs: ["{S3_READ}", "{SQS_READ}"]
    permissionsBoundary: "{boundary}"
    wellKnownPolicies: {{autoScaler: true}}
    attachPolicy:
      Version: "2012-10-17"
      Statement:
      - {{Effect: Allow, Action: ["s3:PutObject"], Resource: "*"}}
"#
        ),
    )?;
    tools.ok(&["iamserviceaccount", "apply", &full, "--approve"])?;
    let role = "pod-identity_prod_shop_app";
    assert_eq!(env.attached(role)?, [S3_READ, SQS_READ]);
    assert_eq!(
        env.inline(role)?,
        ["pod-identity", "pod-identity-PolicyAutoScaling"]
    );
    let got = tools.role(role)?.context("role")?;
    assert_eq!(
        got["PermissionsBoundary"]["PermissionsBoundaryArn"],
        json!(boundary)
    );
    ensure!(tools
        .ok(&["iamserviceaccount", "apply", &full])?
        .contains(NO_CHANGES));

    let less = env.write(
        "less.yaml",
        &format!(
            r#"apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata: {{name: prod}}
iam:
  serviceAccounts:
  - metadata: {{name: app, namespace: shop}}
    attachPolicyARNs: ["{S3_READ}"]
"#
        ),
    )?;
    let plan = tools.ok(&["iamserviceaccount", "apply", &less])?;
    for line in [
        format!("- detach policy {SQS_READ} from IAM role {role}"),
        format!("- delete inline policy pod-identity of IAM role {role}"),
        format!("- delete inline policy pod-identity-PolicyAutoScaling of IAM role {role}"),
        format!("- remove the permissions boundary {boundary} of IAM role {role}"),
    ] {
        ensure!(plan.contains(&line), "{line} missing from:\n{plan}");
    }
    assert_eq!(env.attached(role)?.len(), 2, "a plan changed IAM");
    tools.ok(&["iamserviceaccount", "apply", &less, "--approve"])?;
    assert_eq!(env.attached(role)?, [S3_READ]);
    assert!(env.inline(role)?.is_empty());
    assert!(tools.role(role)?.context("role")?["PermissionsBoundary"].is_null());
    assert!(env.trusts(role, "shop", "app")?, "the binding stays");
    ensure!(tools
        .ok(&["iamserviceaccount", "apply", &less])?
        .contains(NO_CHANGES));

    // `update` with the flag forms: comma-separated, then repeated.
    let update = |policies: &[&str]| {
        let mut args = vec![
            "iamserviceaccount",
            "update",
            "--cluster",
            "prod",
            "--namespace",
            "shop",
            "--name",
            "app",
        ];
        for p in policies {
            args.extend(["--attach-policy-arn", p]);
        }
        args.push("--approve");
        tools.ok(&args)
    };
    let both = format!("{READ_ONLY},{SQS_READ}");
    let out = update(&[&both])?;
    ensure!(out.contains(&format!("- detach policy {S3_READ}")), "{out}");
    assert_eq!(env.attached(role)?, [SQS_READ, READ_ONLY]);
    ensure!(update(&[SQS_READ, READ_ONLY])?.contains(NO_CHANGES));
    // Every ARN is checked before anything changes.
    let bad = tools.run(&[
        "iamserviceaccount",
        "update",
        "--cluster",
        "prod",
        "--namespace",
        "shop",
        "--name",
        "app",
        "--attach-policy-arn",
        &format!("{S3_READ},ReadOnlyAccess"),
        "--approve",
    ])?;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert_eq!(env.attached(role)?, [SQS_READ, READ_ONLY]);

    // A role pod-identity does not own (attachRoleARN) keeps everything.
    tools.aws(&[
        "iam",
        "create-role",
        "--role-name",
        "hand-made",
        "--assume-role-policy-document",
        r#"{"Version":"2012-10-17","Statement":[]}"#,
    ])?;
    tools.aws(&[
        "iam",
        "attach-role-policy",
        "--role-name",
        "hand-made",
        "--policy-arn",
        READ_ONLY,
    ])?;
    let attach = env.write(
        "attach.yaml",
        &format!(
            "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  serviceAccounts:\n  - metadata: {{name: given, namespace: shop}}\n    attachRoleARN: arn:aws:iam::{ACCOUNT}:role/hand-made\n"
        ),
    )?;
    tools.ok(&["iamserviceaccount", "apply", &attach, "--approve"])?;
    assert_eq!(env.attached("hand-made")?, [READ_ONLY]);
    assert_eq!(
        env.annotation("shop", "given").await?,
        json!(format!("arn:aws:iam::{ACCOUNT}:role/hand-made"))
    );
    Ok(())
}

/// eksctl's `examples/13-iamserviceaccounts.yaml`, unchanged: `withOIDC`
/// plans the IAM OIDC provider, the namespace is created, the well-known
/// set becomes the role's inline policy, labels land on the
/// ServiceAccounts; applied twice, the second run changes nothing; and
/// `delete -f` removes it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eksctls_example_file_applies_unchanged() -> Result<()> {
    let moto = Moto::start_with_managed_policies().await?;
    let cluster = Cluster::start_self_issuer().await?;
    let tools = Tools::new(&cluster, &moto)?;
    public_discovery(&cluster).await?;
    let env = Env {
        cluster,
        moto,
        tools,
    };
    let tools = &env.tools;
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pod-identity/tests/data/eksctl-13-iamserviceaccounts.yaml"
    );
    let file = format!("--file={example}");
    let ca = ca_flag(&env.cluster);
    let plan = tools.ok(&["iamserviceaccount", "apply", &file, &ca])?;
    for line in [
        "+ create IAM OIDC provider",
        "+ create namespace backend-apps",
        "+ create IAM role pod-identity_cluster-13_backend-apps_s3-reader",
        "+ put inline policy pod-identity-PolicyAWSLoadBalancerController on IAM role pod-identity_cluster-13_kube-system_aws-load-balancer-controller",
        "+ put inline policy pod-identity on IAM role pod-identity_cluster-13_kube-system_cluster-autoscaler",
        "labels: aws-usage=application",
    ] {
        ensure!(plan.contains(line), "{line} missing from:\n{plan}");
    }
    let providers = tools.aws(&["iam", "list-open-id-connect-providers"])?;
    assert_eq!(
        providers["OpenIDConnectProviderList"]
            .as_array()
            .map(Vec::len),
        Some(0),
        "a plan changed IAM"
    );
    tools.ok(&["iamserviceaccount", "apply", &file, &ca, "--approve"])?;
    assert!(env.trusts(
        "pod-identity_cluster-13_backend-apps_s3-reader",
        "backend-apps",
        "s3-reader"
    )?);
    assert_eq!(
        env.attached("pod-identity_cluster-13_backend-apps_cache-access")?,
        [
            "arn:aws:iam::aws:policy/AmazonDynamoDBReadOnlyAccess",
            "arn:aws:iam::aws:policy/AmazonElastiCacheFullAccess"
        ]
    );
    let lbc = "pod-identity_cluster-13_kube-system_aws-load-balancer-controller";
    assert_eq!(
        env.inline(lbc)?,
        ["pod-identity-PolicyAWSLoadBalancerController"]
    );
    let doc = tools.aws(&[
        "iam",
        "get-role-policy",
        "--role-name",
        lbc,
        "--policy-name",
        "pod-identity-PolicyAWSLoadBalancerController",
    ])?;
    ensure!(
        doc.to_string()
            .contains("elasticloadbalancing:CreateLoadBalancer"),
        "{doc}"
    );
    let sa = env
        .cluster
        .get("/api/v1/namespaces/kube-system/serviceaccounts/cluster-autoscaler")
        .await?;
    assert_eq!(sa["metadata"]["labels"]["aws-usage"], "cluster-ops");
    ensure!(tools
        .ok(&["iamserviceaccount", "apply", &file, &ca])?
        .contains(NO_CHANGES));

    // delete -f: every ServiceAccount and role of the file goes.
    tools.ok(&["iamserviceaccount", "delete", &file, "--approve"])?;
    for role in [
        "pod-identity_cluster-13_backend-apps_s3-reader",
        "pod-identity_cluster-13_backend-apps_cache-access",
        lbc,
        "pod-identity_cluster-13_kube-system_cluster-autoscaler",
    ] {
        assert!(tools.role(role)?.is_none(), "{role} is left");
    }
    assert!(env
        .cluster
        .get("/api/v1/namespaces/backend-apps/serviceaccounts/s3-reader")
        .await
        .is_err());
    ensure!(tools
        .ok(&["iamserviceaccount", "delete", &file])?
        .contains(NO_CHANGES));
    Ok(())
}

/// `delete` finishes when an earlier run (or a person) already removed the
/// ServiceAccount: the role created under --role-name is found through its
/// trust policy and ownership record. Role ARNs with a path are the same
/// role in create and delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_always_finishes() -> Result<()> {
    let env = setup().await?;
    let tools = &env.tools;
    tools.ok(&[
        "iamserviceaccount",
        "create",
        "--namespace",
        "ns",
        "--name",
        "app",
        "--role-name",
        "custom",
        "--attach-policy-arn",
        READ_ONLY,
        "--approve",
    ])?;
    env.cluster
        .delete("/api/v1/namespaces/ns/serviceaccounts/app")
        .await?;
    let plan = tools.ok(&[
        "iamserviceaccount",
        "delete",
        "--namespace",
        "ns",
        "--name",
        "app",
    ])?;
    ensure!(plan.contains("- delete IAM role custom"), "{plan}");
    tools.ok(&[
        "iamserviceaccount",
        "delete",
        "--namespace",
        "ns",
        "--name",
        "app",
        "--approve",
    ])?;
    assert!(tools.role("custom")?.is_none());

    // A role with a path, adopted: annotated with its full ARN; delete
    // takes the annotation off and leaves the role (it trusts EC2 too).
    tools.aws(&[
        "iam",
        "create-role",
        "--path",
        "/team/",
        "--role-name",
        "pathed",
        "--assume-role-policy-document",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
    ])?;
    let pathed = format!("arn:aws:iam::{ACCOUNT}:role/team/pathed");
    tools.ok(&[
        "iamserviceaccount",
        "create",
        "--namespace",
        "ns",
        "--name",
        "web",
        "--role-name",
        "pathed",
        "--adopt-role",
        "--allow-no-policy",
        "--approve",
    ])?;
    assert_eq!(env.annotation("ns", "web").await?, json!(pathed));
    ensure!(tools
        .ok(&[
            "iamserviceaccount",
            "create",
            "--namespace",
            "ns",
            "--name",
            "web",
            "--role-name",
            "pathed",
            "--allow-no-policy",
        ])?
        .contains(NO_CHANGES));
    tools.ok(&[
        "iamserviceaccount",
        "delete",
        "--namespace",
        "ns",
        "--name",
        "web",
        "--approve",
    ])?;
    assert!(
        env.cluster
            .get("/api/v1/namespaces/ns/serviceaccounts/web")
            .await
            .is_err(),
        "the ServiceAccount pod-identity created is deleted"
    );
    assert!(!env.trusts("pathed", "ns", "web")?);
    assert!(tools.role("pathed")?.is_some());
    Ok(())
}

/// Labels and annotations of a ClusterConfig are merged into a
/// ServiceAccount that exists: what others set stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_merged_into_existing_service_accounts() -> Result<()> {
    let env = setup().await?;
    env.cluster.create_namespace("team").await?;
    env.cluster
        .create(
            "/api/v1/namespaces/team/serviceaccounts",
            &json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "app", "labels": {"keep": "me"}, "annotations": {"owner": "someone"}}}),
        )
        .await?;
    let file = env.write(
        "labels.yaml",
        &format!(
            "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  serviceAccounts:\n  - metadata: {{name: app, namespace: team, labels: {{team: b}}, annotations: {{note: x}}}}\n    attachPolicyARNs: [\"{READ_ONLY}\"]\n"
        ),
    )?;
    env.tools
        .ok(&["iamserviceaccount", "apply", &file, "--approve"])?;
    let sa = env
        .cluster
        .get("/api/v1/namespaces/team/serviceaccounts/app")
        .await?;
    let meta = &sa["metadata"];
    assert_eq!(meta["labels"]["keep"], "me");
    assert_eq!(meta["labels"]["team"], "b");
    assert_eq!(meta["annotations"]["owner"], "someone");
    assert_eq!(meta["annotations"]["note"], "x");
    assert_eq!(
        meta["annotations"]["eks.amazonaws.com/role-arn"],
        json!(format!("arn:aws:iam::{ACCOUNT}:role/pod-identity_team_app"))
    );
    ensure!(env
        .tools
        .ok(&["iamserviceaccount", "apply", &file])?
        .contains(NO_CHANGES));
    Ok(())
}

/// `get` reports a role it cannot read and goes on with the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_reports_an_unreadable_role_and_goes_on() -> Result<()> {
    let env = setup().await?;
    for name in ["a", "b"] {
        env.tools.ok(&[
            "iamserviceaccount",
            "create",
            "--namespace",
            "ns",
            "--name",
            name,
            "--attach-policy-arn",
            READ_ONLY,
            "--approve",
        ])?;
    }
    let proxy = FaultProxy::start(&env.moto.url).await?;
    proxy.set(Fault::FailAction {
        action: "GetRole",
        times: 1,
        status: 403,
        code: "AccessDenied",
        message: "not for you",
    });
    let out = env.tools.run_env(
        &["iamserviceaccount", "get", "--namespace", "ns"],
        &[("AWS_ENDPOINT_URL_IAM", proxy.url.as_str())],
    )?;
    assert_eq!(out.code, 1, "{out:?}");
    ensure!(
        out.stdout.contains("pod-identity_ns_a") && out.stdout.contains("pod-identity_ns_b"),
        "both rows are printed: {out:?}"
    );
    ensure!(
        out.stderr.contains("1 role(s) could not be read") && out.stderr.contains("iam:GetRole"),
        "{out:?}"
    );
    Ok(())
}

/// A CONNECT proxy on loopback that records where it was asked to go.
async fn connect_proxy() -> Result<(String, Arc<Mutex<Vec<String>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if client.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let target = text
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                record.lock().unwrap().push(target.clone());
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    Ok((url, seen))
}

/// The issuer's HTTPS visit (thumbprint) goes through HTTPS_PROXY, except
/// for hosts NO_PROXY lists. (The API server is reached through it too, as
/// kubectl does; here the issuer is the API server's own URL.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuer_is_visited_through_https_proxy() -> Result<()> {
    let env = setup().await?;
    let (proxy, seen) = connect_proxy().await?;
    let ca = ca_flag(&env.cluster);
    let host = env.cluster.url.trim_start_matches("https://").to_string();
    let out = env
        .tools
        .run_env(&["oidc", "associate", &ca], &[("HTTPS_PROXY", &proxy)])?;
    assert_eq!(out.code, 0, "{out:?}");
    let through = seen.lock().unwrap().clone();
    ensure!(
        !through.is_empty() && through.iter().all(|t| *t == host),
        "{through:?}"
    );
    let out = env.tools.run_env(
        &["oidc", "associate", &ca],
        &[("https_proxy", &proxy), ("NO_PROXY", "localhost,127.0.0.1")],
    )?;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        seen.lock().unwrap().len(),
        through.len(),
        "NO_PROXY went through the proxy"
    );
    // A proxy that is not there is an error naming it, not a silent bypass
    // (--issuer-url: no API server involved).
    let out = env.tools.run_env(
        &["oidc", "associate", &ca, "--issuer-url", &env.cluster.url],
        &[
            ("HTTPS_PROXY", "http://127.0.0.1:1"),
            ("NO_PROXY", "localhost"),
        ],
    )?;
    assert_eq!(out.code, 1, "{out:?}");
    ensure!(out.stderr.contains("proxy 127.0.0.1:1"), "{out:?}");
    Ok(())
}
