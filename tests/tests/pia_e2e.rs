//! `pod-identity podidentityassociation` end to end: the real CLI against
//! the suite's kube-apiserver (the chart's CRD) and moto's IAM, the broker
//! with moto's STS behind the recording proxy, which decides each AssumeRole
//! by the trust policy the CLI wrote into IAM (read back from moto), and a
//! pod's SDKs (boto3 and aws-sdk-rust) through the node agent's Pod
//! Identity backend.
//!
//! From a bare self-managed cluster (its issuer's IAM OIDC provider made
//! by `oidc associate`): the broker's own role (`setup-broker`), then the
//! association's plan printed (golden) and nothing changed
//! without `--approve`; with it, the role (trust for the broker with the
//! association's tags, the cluster tag, the policy), the ServiceAccount and
//! the association; a second run changes nothing; the pod gets the role's
//! session with its tags; an association made with kubectl for another
//! namespace naming the same role is refused by IAM (the trust's tag
//! conditions), not only by RBAC; `get` shows the broker's status; `delete`
//! removes the association and the role it made.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e_tests::agent::Moto;
use e2e_tests::broker::*;
use e2e_tests::clients::{caller_arns, Client};
use e2e_tests::harness::wait_for;
use e2e_tests::iam::{golden, Tools};
use e2e_tests::sts_recorder::StsRecorder;
use serde_json::{json, Value};

/// The role `setup-broker --cluster prod` makes for the broker.
const BROKER_ROLE: &str = "arn:aws:iam::123456789012:role/pod-identity-broker-prod";
const ROLE: &str = "arn:aws:iam::123456789012:role/shop-web";
const POLICY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associations_from_the_cli_to_a_pods_sdk() -> Result<()> {
    // A bare self-managed cluster with its issuer's IAM OIDC provider
    // (`oidc associate`), the CRD, then the broker's own role.
    let moto = Moto::start_with_managed_policies().await?;
    let (cluster, tools) = e2e_tests::iam::associated_cluster(&moto).await?;
    e2e_tests::broker::install_crd(&cluster)?;
    tools.ok(&[
        "podidentityassociation",
        "setup-broker",
        "--cluster=prod",
        "--approve",
    ])?;
    ensure!(
        tools.role("pod-identity-broker-prod")?.is_some(),
        "the broker's role"
    );
    let issuer = format!("--issuer={}", cluster.url);
    let create = [
        "podidentityassociation",
        "create",
        "--cluster=prod",
        "--namespace=shop",
        "--service-account-name=web",
        "--role-name=shop-web",
        &format!("--permission-policy-arns={POLICY}"),
        "--create-service-account",
        &format!("--broker-role-arn={BROKER_ROLE}"),
        "--tags=team=shop",
    ];

    // The plan, and nothing changed without --approve.
    let plan = tools.ok(&create)?;
    golden("pia_create.txt", &plan)?;
    ensure!(tools.role("shop-web")?.is_none(), "a plan changed IAM");
    ensure!(
        cluster
            .get("/apis/pod-identity.io/v1alpha1/podidentityassociations/shop.web")
            .await
            .is_err(),
        "a plan changed the cluster"
    );

    // Approved: the role, the ServiceAccount, the association.
    let mut approved = create.to_vec();
    approved.push("--approve");
    tools.ok(&approved)?;
    let role = tools
        .role("shop-web")?
        .context("the role was not created")?;
    let trust = role["AssumeRolePolicyDocument"].clone();
    let trust: Value = match trust {
        Value::String(s) => {
            serde_json::from_str(&percent_encoding::percent_decode_str(&s).decode_utf8()?)?
        }
        v => v,
    };
    ensure!(
        trust["Statement"][0]["Principal"]["AWS"] == BROKER_ROLE
            && trust["Statement"][0]["Condition"]["StringEquals"]
                ["aws:RequestTag/kubernetes-namespace"]
                == "shop",
        "{trust}"
    );
    let tags = tools.aws(&["iam", "list-role-tags", "--role-name", "shop-web"])?;
    ensure!(
        tags["Tags"].as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["Key"] == "pod-identity.io/cluster" && t["Value"] == "prod")
            && t.iter().any(|t| t["Key"] == "team")),
        "{tags}"
    );
    cluster
        .get("/api/v1/namespaces/shop/serviceaccounts/web")
        .await
        .context("the ServiceAccount")?;
    let again = tools.ok(&approved)?;
    ensure!(
        again.contains("no changes"),
        "a second run planned: {again}"
    );

    // The broker, deciding AssumeRole by the trust the CLI wrote.
    let sts = StsRecorder::new(&moto.url, BROKER_ROLE).await?;
    sts.set_trust(ROLE, trust.clone());
    let dir = tempfile::tempdir()?;
    let broker = start_broker(&cluster, &sts.url, dir.path(), &[&issuer]).await?;
    wait_for("the association Ready", || async {
        let rows = tools.ok(&["podidentityassociation", "get", "-o", "json"])?;
        let rows: Value = serde_json::from_str(&rows)?;
        Ok(rows[0]["ready"] == "True")
    })
    .await?;
    let table = tools.ok(&["podidentityassociation", "get", "--namespace=shop"])?;
    ensure!(
        table.contains("shop\tweb\tarn:aws:iam::123456789012:role/shop-web\t-\tTrue\ta-"),
        "{table}"
    );

    // A pod's SDKs, through the node agent's Pod Identity backend.
    let (uid, token) = pod_in(&cluster, "shop", "web", "web-1", AUDIENCE).await?;
    let agent = node_agent(
        &cluster,
        &broker,
        &sts.url,
        &["--eks-auth-unsigned".into(), issuer.clone()],
    )
    .await?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token)?;
    let env = pod_identity_env(&agent, &token_file, &moto.url);
    let home = tempfile::tempdir()?;
    let want = format!(
        "arn:aws:sts::123456789012:assumed-role/shop-web/eks-prod-web-1-{}",
        &uid[..8]
    );
    for (client, arn) in caller_arns(&[Client::Boto3, Client::RustSdk], &env, home.path()).await {
        let arn = arn.with_context(|| format!("{client:?}:\n{}", broker.agent.logs()))?;
        ensure!(arn == want, "{client:?}: {arn}");
    }
    let calls = sts.calls();
    ensure!(
        calls.iter().any(|c| c.role_arn == ROLE
            && c.denied.is_none()
            && c.tags.get("kubernetes-pod-name").map(String::as_str) == Some("web-1")),
        "{calls:?}"
    );

    // Bound another way (kubectl, another namespace, the same role): IAM
    // itself refuses it, by the trust's tag conditions.
    cluster.create_namespace("other").await?;
    cluster
        .create(
            "/api/v1/namespaces/other/serviceaccounts",
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}}),
        )
        .await?;
    cluster
        .create(
            "/apis/pod-identity.io/v1alpha1/podidentityassociations",
            &json!({"apiVersion": "pod-identity.io/v1alpha1", "kind": "PodIdentityAssociation",
                    "metadata": {"name": "sneaky"},
                    "spec": {"namespace": "other", "serviceAccount": "web", "roleArn": ROLE}}),
        )
        .await?;
    let (_, other) = pod_in(&cluster, "other", "web", "web-1", AUDIENCE).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let r = broker.one(&other).await?;
        if r["error"][0] != "ResourceNotFoundException" || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(
        refused["error"][0] == "AccessDeniedException"
            && refused["error"][1]
                .as_str()
                .unwrap_or_default()
                .contains("sts:"),
        "{refused}"
    );

    // Delete: the association and the role it made.
    let delete = [
        "podidentityassociation",
        "delete",
        "--cluster=prod",
        "--namespace=shop",
        "--service-account-name=web",
        &format!("--broker-role-arn={BROKER_ROLE}"),
        "--approve",
    ];
    let out = tools.ok(&delete)?;
    ensure!(out.contains("- delete IAM role shop-web"), "{out}");
    ensure!(tools.role("shop-web")?.is_none(), "the role is still there");
    ensure!(
        cluster
            .get("/apis/pod-identity.io/v1alpha1/podidentityassociations/shop.web")
            .await
            .is_err(),
        "the association is still there"
    );
    // What it did not make, it refuses to delete.
    let o = tools.run(&[
        "podidentityassociation",
        "delete",
        "--cluster=prod",
        "--namespace=other",
        "--service-account-name=web",
        &format!("--broker-role-arn={BROKER_ROLE}"),
    ])?;
    ensure!(o.code != 0 && o.stderr.contains("kubectl"), "{o:?}");
    Ok(())
}

/// `setup-broker`: the broker's own role, IRSA for the chart's broker
/// ServiceAccount only, allowed to assume only roles tagged for its
/// cluster; planned (golden), approved, idempotent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_broker_makes_the_brokers_own_role() -> Result<()> {
    let moto = Moto::start().await?;
    let (cluster, tools) = e2e_tests::iam::associated_cluster(&moto).await?;
    let setup = ["podidentityassociation", "setup-broker", "--cluster=prod"];
    let plan = tools.ok(&setup)?;
    let issuer = cluster.url.clone();
    golden(
        "pia_setup_broker.txt",
        &plan.replace(issuer.trim_start_matches("https://"), "<issuer>"),
    )?;
    ensure!(
        tools.role("pod-identity-broker-prod")?.is_none(),
        "a plan changed IAM"
    );
    let mut approved = setup.to_vec();
    approved.push("--approve");
    let out = tools.ok(&approved)?;
    ensure!(out.contains("--broker-role-arn"), "{out}");
    let role = tools
        .role("pod-identity-broker-prod")?
        .context("the broker's role")?;
    let trust = role["AssumeRolePolicyDocument"].to_string();
    ensure!(
        trust.contains("system:serviceaccount:pod-identity:pod-identity-broker")
            && trust.contains("oidc-provider"),
        "{trust}"
    );
    let inline = tools.aws(&[
        "iam",
        "get-role-policy",
        "--role-name",
        "pod-identity-broker-prod",
        "--policy-name",
        "pod-identity",
    ])?;
    let doc = inline["PolicyDocument"].to_string();
    ensure!(
        doc.contains("iam:ResourceTag/pod-identity.io/cluster") && doc.contains("sts:TagSession"),
        "{doc}"
    );
    ensure!(tools.ok(&approved)?.contains("no changes"));
    Ok(())
}

/// `utils migrate-to-pod-identity`: an IRSA ServiceAccount (made with
/// `iamserviceaccount create`) moved to Pod Identity; a restarted pod gets
/// the same role through the broker, with the trust the migration wrote
/// deciding; then the IRSA trust and the annotation removed, and Pod
/// Identity still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_an_irsa_service_account() -> Result<()> {
    let moto = Moto::start_with_managed_policies().await?;
    let (cluster, tools) = e2e_tests::iam::associated_cluster(&moto).await?;
    e2e_tests::broker::install_crd(&cluster)?;
    tools.ok(&[
        "iamserviceaccount",
        "create",
        "--cluster=prod",
        "--namespace=shop",
        "--name=web",
        &format!("--attach-policy-arn={POLICY}"),
        "--approve",
    ])?;
    let role_name = "pod-identity_prod_shop_web";
    let role_arn = format!("arn:aws:iam::123456789012:role/{role_name}");
    let migrate = [
        "utils",
        "migrate-to-pod-identity",
        "--cluster=prod",
        &format!("--broker-role-arn={BROKER_ROLE}"),
    ];
    let plan = tools.ok(&migrate)?;
    ensure!(
        plan.contains("+ apply PodIdentityAssociation shop.web") && plan.contains("restart"),
        "{plan}"
    );
    let mut approved = migrate.to_vec();
    approved.push("--approve");
    tools.ok(&approved)?;
    ensure!(
        tools.ok(&approved)?.contains("no changes"),
        "not idempotent"
    );

    let trust_of = |tools: &Tools| -> Result<Value> {
        let role = tools.role(role_name)?.context("the role")?;
        Ok(match &role["AssumeRolePolicyDocument"] {
            Value::String(s) => {
                serde_json::from_str(&percent_encoding::percent_decode_str(s).decode_utf8()?)?
            }
            v => v.clone(),
        })
    };
    let trust = trust_of(&tools)?;
    ensure!(
        trust.to_string().contains("sts:AssumeRoleWithWebIdentity")
            && trust.to_string().contains(BROKER_ROLE),
        "both trusts while pods move: {trust}"
    );

    let sts = StsRecorder::new(&moto.url, BROKER_ROLE).await?;
    sts.set_trust(&role_arn, trust);
    let dir = tempfile::tempdir()?;
    let issuer = format!("--issuer={}", cluster.url);
    let broker = start_broker(&cluster, &sts.url, dir.path(), &[&issuer]).await?;
    let (uid, token) = pod_in(&cluster, "shop", "web", "web-1", AUDIENCE).await?;
    let answer = broker.one(&token).await?;
    ensure!(
        answer["ok"]["assumedRoleUser"]["arn"]
            == format!(
                "arn:aws:sts::123456789012:assumed-role/{role_name}/eks-prod-web-1-{}",
                &uid[..8]
            ),
        "{answer}"
    );

    // Then IRSA goes: the subject from the trust, the annotation.
    let mut remove = approved.clone();
    remove.push("--remove-oidc-provider-trust-relationship");
    let out = tools.ok(&remove)?;
    ensure!(
        out.contains("- remove annotation eks.amazonaws.com/role-arn"),
        "{out}"
    );
    let trust = trust_of(&tools)?;
    ensure!(
        !trust.to_string().contains("sts:AssumeRoleWithWebIdentity"),
        "the IRSA statement is still there: {trust}"
    );
    let sa = cluster
        .get("/api/v1/namespaces/shop/serviceaccounts/web")
        .await?;
    ensure!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_null(),
        "{sa}"
    );
    sts.set_trust(&role_arn, trust);
    let (_, token2) = pod_in(&cluster, "shop", "web", "web-2", AUDIENCE).await?;
    let answer = broker.one(&token2).await?;
    ensure!(!answer["ok"].is_null(), "{answer}");
    Ok(())
}

/// `create -f` and `apply -f` with an eksctl ClusterConfig: what the file
/// has is made, and with `apply` what it drops is removed (the association and the role made for it);
/// what another tool made is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_a_cluster_config_declaratively() -> Result<()> {
    let cluster = cluster_with(&[]).await?;
    let moto = Moto::start_with_managed_policies().await?;
    let tools = Tools::new(&cluster, &moto)?;
    let dir = tempfile::tempdir()?;
    let config = |entries: &str| -> Result<String> {
        let p = dir.path().join("cluster.yaml");
        std::fs::write(
            &p,
            format!(
                "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {{name: prod, region: us-east-1}}\niam:\n  podIdentityAssociations:\n{entries}"
            ),
        )?;
        Ok(p.display().to_string())
    };
    let web = format!("    - {{namespace: shop, serviceAccountName: web, roleName: shop-web, createServiceAccount: true, permissionPolicyARNs: [\"{POLICY}\"]}}\n");
    let api = format!("    - {{namespace: shop, serviceAccountName: api, roleName: shop-api, createServiceAccount: true, permissionPolicyARNs: [\"{POLICY}\"]}}\n");
    let both = config(&format!("{web}{api}"))?;
    let broker = format!("--broker-role-arn={BROKER_ROLE}");
    // create -f makes them (and never deletes: a second run with one of
    // them gone changes nothing).
    tools.ok(&[
        "podidentityassociation",
        "create",
        "-f",
        &both,
        &broker,
        "--approve",
    ])?;
    for name in ["shop-web", "shop-api"] {
        ensure!(tools.role(name)?.is_some(), "{name} not created");
    }
    // One made by hand stays.
    cluster
        .create(
            "/apis/pod-identity.io/v1alpha1/podidentityassociations",
            &json!({"apiVersion": "pod-identity.io/v1alpha1", "kind": "PodIdentityAssociation",
                    "metadata": {"name": "byhand"},
                    "spec": {"namespace": "ops", "serviceAccount": "x", "roleArn": ROLE}}),
        )
        .await?;
    let only_web = config(&web)?;
    let kept = tools.ok(&["podidentityassociation", "create", "-f", &only_web, &broker])?;
    ensure!(
        kept.contains("no changes"),
        "create -f deleted something: {kept}"
    );
    let plan = tools.ok(&["podidentityassociation", "apply", "-f", &only_web, &broker])?;
    ensure!(
        plan.contains("- delete PodIdentityAssociation shop.api")
            && plan.contains("- delete IAM role shop-api")
            && !plan.contains("shop.web")
            && !plan.contains("byhand"),
        "{plan}"
    );
    tools.ok(&[
        "podidentityassociation",
        "apply",
        "-f",
        &only_web,
        &broker,
        "--approve",
    ])?;
    ensure!(
        tools.role("shop-api")?.is_none(),
        "the dropped role is still there"
    );
    ensure!(tools.role("shop-web")?.is_some());
    let rows: Value =
        serde_json::from_str(&tools.ok(&["podidentityassociation", "get", "-o", "json"])?)?;
    let names: Vec<&str> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    ensure!(names == ["byhand", "shop.web"], "{names:?}");
    // update: bind another existing role (it gets the grant and the tag).
    tools.aws(&[
        "iam",
        "create-role",
        "--role-name",
        "shop-web-v2",
        "--assume-role-policy-document",
        &json!({"Version": "2012-10-17", "Statement": []}).to_string(),
    ])?;
    let v2 = "arn:aws:iam::123456789012:role/shop-web-v2";
    tools.ok(&[
        "podidentityassociation",
        "update",
        "--cluster=prod",
        "--namespace=shop",
        "--service-account-name=web",
        &format!("--role-arn={v2}"),
        &broker,
        "--approve",
    ])?;
    let obj = cluster
        .get("/apis/pod-identity.io/v1alpha1/podidentityassociations/shop.web")
        .await?;
    ensure!(obj["spec"]["roleArn"] == v2, "{obj}");
    let trust = tools.role("shop-web-v2")?.context("v2")?["AssumeRolePolicyDocument"].to_string();
    ensure!(trust.contains("kubernetes-service-account"), "{trust}");

    // A field eksctl's file may have but this tool does not take: refused
    // by name, nothing changed.
    let bad = config(
        "    - namespace: shop\n      serviceAccountName: web\n      roleName: shop-web\n      wellKnownPolicies: {ebsCSIController: true}\n",
    )?;
    let o = tools.run(&[
        "podidentityassociation",
        "apply",
        "-f",
        &bad,
        &broker,
        "--approve",
    ])?;
    ensure!(
        o.code != 0 && o.stderr.contains("wellKnownPolicies"),
        "{o:?}"
    );
    Ok(())
}

/// `doctor pod` on a pod of an association: the association (Ready, from
/// the broker's status), the role's trust evaluated for the broker's role
/// (read from the broker pod's ServiceAccount) with the pod's tags, the
/// broker's pods; each planted fault fails exactly its check. (No webhook
/// is registered here: the pod carries what the webhook injects, and the
/// webhook check fails throughout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_explains_association_pods() -> Result<()> {
    let cluster = cluster_with(&["web"]).await?;
    let moto = Moto::start_with_managed_policies().await?;
    let tools = Tools::new(&cluster, &moto)?;
    tools.ok(&[
        "podidentityassociation",
        "create",
        "--cluster=prod",
        "--namespace=apps",
        "--service-account-name=web",
        "--role-name=apps-web",
        &format!("--permission-policy-arns={POLICY}"),
        &format!("--broker-role-arn={BROKER_ROLE}"),
        "--approve",
    ])?;
    // The broker writes the status; its pod object (what doctor reads) is
    // made by hand, Ready, running as a ServiceAccount with the role.
    let sts = StsRecorder::new(&moto.url, BROKER_ROLE).await?;
    let dir = tempfile::tempdir()?;
    let broker = start_broker(&cluster, &sts.url, dir.path(), &[]).await?;
    let role = tools.role("apps-web")?.context("the role")?;
    let trust: Value = match &role["AssumeRolePolicyDocument"] {
        Value::String(s) => {
            serde_json::from_str(&percent_encoding::percent_decode_str(s).decode_utf8()?)?
        }
        v => v.clone(),
    };
    cluster.create_namespace("pod-identity").await?;
    cluster
        .create(
            "/api/v1/namespaces/pod-identity/serviceaccounts",
            &json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "pod-identity-broker",
                                 "annotations": {"eks.amazonaws.com/role-arn": BROKER_ROLE}}}),
        )
        .await?;
    let (broker_pod, _) = cluster
        .create(
            "/api/v1/namespaces/pod-identity/pods",
            &json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "broker-1", "labels": {"app.kubernetes.io/component": "broker"}},
                    "spec": {"serviceAccountName": "pod-identity-broker", "automountServiceAccountToken": false,
                             "containers": [{"name": "broker", "image": "x", "args": ["broker", "--cluster-name=prod"]}]}}),
        )
        .await?;
    set_ready(&cluster, &broker_pod, "True").await?;
    // The pod as the webhook injects Pod Identity.
    cluster
        .create(
            "/api/v1/namespaces/apps/pods",
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"},
                "spec": {"serviceAccountName": "web", "automountServiceAccountToken": false,
                    "containers": [{"name": "app", "image": "x",
                        "env": [{"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.23/v1/credentials"},
                                {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"}],
                        "volumeMounts": [{"name": "eks-pod-identity-token", "mountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount", "readOnly": true}]}],
                    "volumes": [{"name": "eks-pod-identity-token", "projected": {"sources": [{"serviceAccountToken":
                        {"audience": "pods.eks.amazonaws.com", "expirationSeconds": 86400, "path": "eks-pod-identity-token"}}]}}]}}),
        )
        .await?;
    let doctor = || -> Result<Vec<(String, String, String)>> {
        let out = tools.run(&["doctor", "pod", "apps/web-1", "-o", "json"])?;
        checks_of(&out)
    };
    let status_of = |checks: &[(String, String, String)], id: &str| {
        checks
            .iter()
            .find(|c| c.0 == id)
            .map(|c| c.1.clone())
            .unwrap_or_default()
    };
    let failed = |checks: &[(String, String, String)]| -> Vec<String> {
        checks
            .iter()
            .filter(|c| c.1 == "fail")
            .map(|c| c.0.clone())
            .collect()
    };
    wait_for("the broker's status on the association", || async {
        Ok(status_of(&doctor()?, "association") == "pass")
    })
    .await?;
    let checks = doctor()?;
    for id in ["association", "role", "broker"] {
        ensure!(status_of(&checks, id) == "pass", "{id}: {checks:#?}");
    }
    ensure!(failed(&checks) == ["webhook"], "{checks:#?}");

    // --exchange: a token minted for the pod, through the real broker.
    let exchange = |tools: &Tools| -> Result<Vec<(String, String, String)>> {
        let out = tools.run(&[
            "doctor",
            "pod",
            "apps/web-1",
            "--exchange",
            &format!("--broker-url={}", broker.url),
            &format!("--broker-ca-file={}", broker.ca.display()),
            "-o",
            "json",
        ])?;
        checks_of(&out)
    };
    // The broker refused (STS, deciding by a trust without sts:TagSession
    // as IAM would): exactly the broker check fails, naming it; with the
    // real trust, it answers.
    sts.set_trust(
        "arn:aws:iam::123456789012:role/apps-web",
        json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": BROKER_ROLE}, "Action": "sts:AssumeRole"}]}),
    );
    let checks = exchange(&tools)?;
    ensure!(failed(&checks) == ["webhook", "broker"], "{checks:#?}");
    let b = checks.iter().find(|c| c.0 == "broker").unwrap();
    ensure!(b.2.contains("sts:TagSession"), "{b:?}");

    sts.set_trust("arn:aws:iam::123456789012:role/apps-web", trust.clone());
    let checks = exchange(&tools)?;
    let b = checks
        .iter()
        .find(|c| c.0 == "broker")
        .context("broker check")?;
    ensure!(
        b.1 == "pass" && b.2.contains("assumed-role/apps-web/eks-prod-web-1-"),
        "{checks:#?}"
    );
    // Faults, one at a time.
    set_ready(&cluster, &broker_pod, "False").await?;
    let checks = doctor()?;
    ensure!(failed(&checks) == ["webhook", "broker"], "{checks:#?}");
    set_ready(&cluster, &broker_pod, "True").await?;
    tools.aws(&[
        "iam",
        "update-assume-role-policy",
        "--role-name",
        "apps-web",
        "--policy-document",
        &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": BROKER_ROLE}, "Action": "sts:AssumeRole"}]})
        .to_string(),
    ])?;
    let checks = doctor()?;
    ensure!(failed(&checks) == ["webhook", "role"], "{checks:#?}");
    let role = checks.iter().find(|c| c.0 == "role").unwrap();
    ensure!(role.2.contains("sts:TagSession"), "{role:?}");
    cluster
        .delete("/apis/pod-identity.io/v1alpha1/podidentityassociations/apps.web")
        .await?;
    let checks = doctor()?;
    ensure!(
        failed(&checks).contains(&"association".to_string()),
        "{checks:#?}"
    );

    // doctor cluster: an association whose role IAM does not have.
    cluster
        .create(
            "/apis/pod-identity.io/v1alpha1/podidentityassociations",
            &json!({"apiVersion": "pod-identity.io/v1alpha1", "kind": "PodIdentityAssociation",
                    "metadata": {"name": "ghost-role"},
                    "spec": {"namespace": "apps", "serviceAccount": "web",
                             "roleArn": "arn:aws:iam::123456789012:role/never-made"}}),
        )
        .await?;
    let audit = tools.run(&["doctor", "cluster", "-o", "json"])?;
    let report: Value =
        serde_json::from_str(&audit.stdout).with_context(|| format!("{audit:?}"))?;
    ensure!(
        report["associations"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| {
                p["association"] == "ghost-role"
                    && p["problem"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("does not exist in IAM")
            })),
        "{report}"
    );
    Ok(())
}

/// Sets the Ready condition of the hand-made broker pod (no kubelet here).
async fn set_ready(cluster: &e2e_tests::harness::Cluster, pod: &Value, ready: &str) -> Result<()> {
    let mut p = pod.clone();
    let current = cluster
        .get("/api/v1/namespaces/pod-identity/pods/broker-1")
        .await?;
    p["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    p["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]});
    let (status, _, body) = cluster
        .request(
            reqwest::Method::PUT,
            "/api/v1/namespaces/pod-identity/pods/broker-1/status",
            Some(&p),
        )
        .await?;
    ensure!(status == 200, "{status} {body}");
    Ok(())
}

/// (id, status, evidence) of each check of a `doctor ... -o json` run.
fn checks_of(out: &e2e_tests::iam::Outcome) -> Result<Vec<(String, String, String)>> {
    let report: Value = serde_json::from_str(&out.stdout).with_context(|| format!("{out:?}"))?;
    Ok(report["checks"]
        .as_array()
        .context("checks")?
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_string(),
                c["status"].as_str().unwrap_or_default().to_string(),
                c["evidence"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}
