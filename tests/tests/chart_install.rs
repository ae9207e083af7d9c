//! `helm install` of the chart into a real kube-apiserver (1.20): server-side
//! validation of everything it creates (the PodDisruptionBudget falls back to
//! policy/v1beta1 there), the webhook configuration pointed by URL at the
//! real webhook running on 127.0.0.1 so the installed configuration (rules,
//! selectors) is exercised, the generated certificate kept across `helm
//! upgrade`, and `helm uninstall` removing it all.

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use e2e_tests::harness::{Cluster, Webhook};
use e2e_tests::helm::{chart_dir, helm_ok};
use serde_json::{json, Value};

const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";

async fn pod_is_injected(cluster: &Cluster, ns: &str, name: &str, labels: Value) -> Result<bool> {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"serviceAccountName": "app", "automountServiceAccountToken": false,
                 "containers": [{"name": "c", "image": "x"}]}});
    let (stored, _) = cluster
        .create(&format!("/api/v1/namespaces/{ns}/pods"), &pod)
        .await?;
    Ok(stored["spec"]["volumes"]
        .as_array()
        .is_some_and(|v| !v.is_empty()))
}

async fn run(cluster: &Cluster, hook: &Webhook) -> Result<()> {
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let chart = chart_dir().display().to_string();
    let ca = base64::engine::general_purpose::STANDARD.encode(&hook.ca_pem);
    let url = format!("https://127.0.0.1:{}/mutate", hook.port);
    let set = [
        format!("webhook.admission.url={url}"),
        format!("webhook.tls.caBundle={ca}"),
        "agent.enabled=true".into(),
        "agent.issuer=https://kubernetes.default.svc".into(),
        "agent.region=us-east-1".into(),
        "webhook.watchConfigMap=true".into(),
    ];
    let mut args: Vec<String> = [
        "install",
        "pod-identity",
        &chart,
        "--namespace",
        "pod-identity",
        "--create-namespace",
        "--kubeconfig",
        &kubeconfig,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in &set {
        args.push("--set".into());
        args.push(s.clone());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    helm_ok(&refs).context("helm install")?;
    // The chart's crds/ folder: the PodIdentityAssociation CRD, served.
    let crd = cluster
        .get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/podidentityassociations.pod-identity.io")
        .await
        .context("the PodIdentityAssociation CRD was not installed")?;
    ensure!(crd["spec"]["scope"] == "Cluster", "{crd}");

    // Everything the chart made is there, as the API server stored it.
    for path in [
        "/apis/apps/v1/namespaces/pod-identity/deployments/pod-identity-webhook",
        "/apis/apps/v1/namespaces/pod-identity/daemonsets/pod-identity-agent",
        "/apis/policy/v1beta1/namespaces/pod-identity/poddisruptionbudgets/pod-identity-webhook",
        "/api/v1/namespaces/pod-identity/services/pod-identity-webhook",
        "/api/v1/namespaces/pod-identity/serviceaccounts/pod-identity-webhook",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/pod-identity-agent",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/pod-identity/roles/pod-identity-webhook",
    ] {
        cluster
            .get(path)
            .await
            .with_context(|| format!("GET {path}"))?;
    }
    let mwc = cluster
        .get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/pod-identity-webhook")
        .await?;
    ensure!(
        mwc["webhooks"][0]["clientConfig"]["url"] == url.as_str(),
        "{mwc}"
    );
    let secret_path = "/api/v1/namespaces/pod-identity/secrets/pod-identity-webhook-tls";
    let secret_before = cluster.get(secret_path).await?["data"].clone();
    ensure!(secret_before["tls.crt"]
        .as_str()
        .is_some_and(|s| s.len() > 100));

    // The installed configuration sends pods to the webhook...
    cluster.create_namespace("apps").await?;
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "annotations": {"eks.amazonaws.com/role-arn": ROLE}}});
    cluster
        .create("/api/v1/namespaces/apps/serviceaccounts", &sa)
        .await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut i = 0;
    while !pod_is_injected(cluster, "apps", &format!("p{i}"), json!({})).await? {
        ensure!(
            std::time::Instant::now() < deadline,
            "the installed webhook configuration never called the webhook"
        );
        i += 1;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // ...except opted-out pods and namespaces.
    ensure!(
        !pod_is_injected(
            cluster,
            "apps",
            "opted-out",
            json!({"pod-identity.amazonaws.com/skip": "true"})
        )
        .await?
    );
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "skipped", "labels": {"pod-identity.amazonaws.com/skip": "true"}}});
    cluster.create("/api/v1/namespaces", &ns).await?;
    cluster
        .create("/api/v1/namespaces/skipped/serviceaccounts", &sa)
        .await?;
    ensure!(!pod_is_injected(cluster, "skipped", "p", json!({})).await?);

    // Upgrade: the generated certificate stays (the caBundle stays valid).
    args[0] = "upgrade".into();
    args.retain(|a| a != "--create-namespace");
    args.push("--set".into());
    args.push("webhook.replicas=3".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    helm_ok(&refs).context("helm upgrade")?;
    let dep = cluster
        .get("/apis/apps/v1/namespaces/pod-identity/deployments/pod-identity-webhook")
        .await?;
    ensure!(dep["spec"]["replicas"] == 3);
    ensure!(
        cluster.get(secret_path).await?["data"] == secret_before,
        "the certificate changed on upgrade"
    );

    // Uninstall removes it.
    helm_ok(&[
        "uninstall",
        "pod-identity",
        "--namespace",
        "pod-identity",
        "--kubeconfig",
        &kubeconfig,
    ])
    .context("helm uninstall")?;
    ensure!(
        cluster
            .get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/pod-identity-webhook")
            .await
            .is_err(),
        "webhook configuration left behind"
    );
    ensure!(cluster
        .get("/apis/apps/v1/namespaces/pod-identity/daemonsets/pod-identity-agent")
        .await
        .is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_upgrade_uninstall() {
    let cluster = Cluster::start()
        .await
        .expect("start etcd and kube-apiserver");
    let hook = Webhook::start(&cluster, &[])
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    if let Err(e) = run(&cluster, &hook).await {
        panic!(
            "{e:#}\n--- webhook log:\n{}\n{}",
            hook.log(),
            cluster.logs()
        );
    }
}
