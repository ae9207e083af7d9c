//! `PodIdentityAssociation` against the suite's real kube-apiserver: the
//! chart's CRD installed with kubectl, its schema refusing exactly the role
//! ARNs `contract::RoleArn` refuses, and the real webhook
//! (`--watch-pod-identity-associations`) injecting EKS Pod Identity for
//! associated ServiceAccounts: before the CRD exists it is not ready (and
//! says why), then ready; an association beats a role-arn annotation;
//! deleting it gives new pods web identity again; the oldest of two wins.

use anyhow::{ensure, Context, Result};
use e2e_tests::harness::*;
use e2e_tests::node::kubectl;
use serde_json::{json, Value};

const ROLE: &str = "arn:aws:iam::111122223333:role/app";
const OTHER_ROLE: &str = "arn:aws:iam::111122223333:role/other";
const POD_IDENTITY_TOKEN: &str =
    "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token";

fn association(name: &str, ns: &str, sa: &str, role: &str) -> Value {
    json!({"apiVersion": "pod-identity.io/v1alpha1", "kind": "PodIdentityAssociation",
           "metadata": {"name": name},
           "spec": {"namespace": ns, "serviceAccount": sa, "roleArn": role}})
}

async fn readyz(port: u16) -> Result<(u16, String)> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await?;
    Ok((r.status().as_u16(), r.text().await?))
}

/// The env of the first container of a pod created for `sa` in `ns`, and
/// its volumes.
async fn pod_of(
    cluster: &Cluster,
    ns: &str,
    sa: &str,
    name: &str,
) -> Result<(Vec<(String, String)>, Value)> {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"serviceAccountName": sa, "automountServiceAccountToken": false,
                 "containers": [{"name": "c", "image": "x"}]}});
    let (stored, _) = cluster
        .create(&format!("/api/v1/namespaces/{ns}/pods"), &pod)
        .await?;
    let env = stored["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    Ok((env, stored["spec"]["volumes"].clone()))
}

fn var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associations_inject_pod_identity() -> Result<()> {
    let cluster = Cluster::start().await?;
    // The webhook first, without the CRD: not ready, and it says why.
    let hook = Webhook::start_unready(
        &cluster,
        &[
            "--watch-pod-identity-associations",
            "--aws-default-region=us-east-1",
        ],
    )
    .await?;
    let (status, body) = readyz(hook.metrics_port).await?;
    ensure!(
        status == 503 && body.contains("PodIdentityAssociations"),
        "{status} {body}"
    );
    e2e_tests::broker::install_crd(&cluster)?;
    let port = hook.metrics_port;
    wait_for("webhook ready once the CRD exists", || async move {
        Ok(readyz(port).await?.0 == 200)
    })
    .await?;
    hook.register(&cluster, "pod-identity-webhook").await?;
    wait_for_webhook(&cluster, ROLE).await?;

    // The schema and the contract refuse the same role ARNs.
    let long_name = format!("arn:aws:iam::111122223333:role/{}", "n".repeat(65));
    for arn in [
        ROLE,
        "arn:aws-cn:iam::111122223333:role/path/to/app",
        "arn:aws-us-gov:iam::111122223333:role/a+b=c,d.e@f_g-h",
        "arn:aws:iam::11112222333:role/app",
        "arn:aws:iam:us-east-1:111122223333:role/app",
        "arn:aws:s3::111122223333:role/app",
        "arn:AWS:iam::111122223333:role/app",
        "arn:aws:iam::111122223333:user/app",
        "arn:aws:iam::111122223333:role//app",
        "arn:aws:iam::111122223333:role/app name",
        "arn:aws:iam::111122223333:role/",
        long_name.as_str(),
        " arn:aws:iam::111122223333:role/app",
    ] {
        let (status, _, body) = cluster
            .request(
                reqwest::Method::POST,
                "/apis/pod-identity.io/v1alpha1/podidentityassociations?dryRun=All",
                Some(&association("probe", "apps", "web", arn)),
            )
            .await?;
        let contract_ok = contract_accepts(arn);
        ensure!(
            (status == 201) == contract_ok,
            "{arn:?}: API server {status}, contract says {contract_ok}: {body}"
        );
    }

    cluster.create_namespace("apps").await?;
    for (sa, role) in [
        ("web", None),
        ("both", Some(OTHER_ROLE)),
        ("plain", Some(OTHER_ROLE)),
    ] {
        let mut obj =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}});
        if let Some(r) = role {
            obj["metadata"]["annotations"] = json!({"eks.amazonaws.com/role-arn": r});
        }
        cluster
            .create("/api/v1/namespaces/apps/serviceaccounts", &obj)
            .await?;
    }
    let file = cluster.dir.path().join("associations.json");
    std::fs::write(
        &file,
        json!({"apiVersion": "v1", "kind": "List", "items": [
            association("apps-web", "apps", "web", ROLE),
            association("apps-both", "apps", "both", ROLE),
        ]})
        .to_string(),
    )?;
    kubectl(&cluster, &["apply", "-f", &file.display().to_string()])?;
    let listed = kubectl(&cluster, &["get", "pia"])?;
    ensure!(
        listed.contains("NAMESPACE")
            && listed.contains("SERVICEACCOUNT")
            && listed.contains("apps-web")
            && listed.contains(ROLE),
        "kubectl get pia: {listed}"
    );

    // The webhook's watch delivers them a moment later.
    let c = &cluster;
    let mut n = 0;
    wait_for("an associated ServiceAccount's pod injected", || {
        n += 1;
        let name = format!("probe-web-{n}");
        async move {
            let (env, _) = pod_of(c, "apps", "web", &name).await?;
            Ok(var(&env, "AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some())
        }
    })
    .await?;
    let (env, volumes) = pod_of(&cluster, "apps", "web", "web").await?;
    ensure!(
        var(&env, "AWS_CONTAINER_CREDENTIALS_FULL_URI")
            == Some("http://169.254.170.23/v1/credentials"),
        "{env:?}"
    );
    ensure!(
        var(&env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") == Some(POD_IDENTITY_TOKEN),
        "{env:?}"
    );
    ensure!(
        var(&env, "AWS_REGION") == Some("us-east-1") && var(&env, "AWS_ROLE_ARN").is_none(),
        "{env:?}"
    );
    let volume = volumes
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "eks-pod-identity-token"))
        .context("no eks-pod-identity-token volume")?;
    ensure!(
        volume["projected"]["sources"][0]["serviceAccountToken"]["audience"]
            == "pods.eks.amazonaws.com",
        "{volume}"
    );

    // An association beats the role-arn annotation, as on EKS; a
    // ServiceAccount with only the annotation keeps web identity.
    let (env, _) = pod_of(&cluster, "apps", "both", "both-1").await?;
    ensure!(
        var(&env, "AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
            && var(&env, "AWS_ROLE_ARN").is_none(),
        "{env:?}"
    );
    let (env, _) = pod_of(&cluster, "apps", "plain", "plain-1").await?;
    ensure!(var(&env, "AWS_ROLE_ARN") == Some(OTHER_ROLE), "{env:?}");

    // doctor cluster names the ServiceAccount with both.
    let tools = e2e_tests::iam::Tools {
        kubeconfig: cluster.kubeconfig.clone(),
        moto_url: "http://127.0.0.1:1".into(),
        home: tempfile::tempdir()?,
    };
    let out = tools.run(&["doctor", "cluster", "-o", "json"])?;
    let audit: Value = serde_json::from_str(&out.stdout).with_context(|| format!("{out:?}"))?;
    let both = audit["associations"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["association"] == "apps-both"))
        .cloned()
        .unwrap_or_default();
    ensure!(
        both["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("also annotated"),
        "doctor cluster: {audit}"
    );
    ensure!(
        !audit["associations"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["association"] == "apps-web")),
        "apps-web is fine: {audit}"
    );

    // Deleted: new pods get web identity from the annotation again.
    kubectl(&cluster, &["delete", "pia", "apps-both"])?;
    let mut n = 0;
    wait_for(
        "web identity again after the association is deleted",
        || {
            n += 1;
            let name = format!("both-after-{n}");
            async move {
                let (env, _) = pod_of(c, "apps", "both", &name).await?;
                Ok(var(&env, "AWS_ROLE_ARN") == Some(OTHER_ROLE))
            }
        },
    )
    .await?;

    // Two associations for one ServiceAccount: the older one counts, so
    // deleting the newer changes nothing and deleting the older ends it
    // only when no other is left.
    kubectl(&cluster, &["delete", "pia", "apps-web"])?;
    let second = cluster.dir.path().join("second.json");
    std::fs::write(
        &second,
        association("apps-web-2", "apps", "web", OTHER_ROLE).to_string(),
    )?;
    kubectl(&cluster, &["apply", "-f", &second.display().to_string()])?;
    let mut n = 0;
    wait_for("the remaining association binds", || {
        n += 1;
        let name = format!("web-after-{n}");
        async move {
            let (env, _) = pod_of(c, "apps", "web", &name).await?;
            Ok(var(&env, "AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some())
        }
    })
    .await?;
    Ok(())
}

fn contract_accepts(arn: &str) -> bool {
    contract::RoleArn::parse(arn).is_ok()
}
