//! The webhook against a real kube-apiserver: registered by URL on 127.0.0.1,
//! pods created through the API, stored pods asserted.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e_tests::harness::{Cluster, Webhook};
use serde_json::{json, Value};

const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";
const MOUNT: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";

fn sa(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "annotations": annotations}})
}

fn pod(name: &str, sa: &str, containers: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"serviceAccountName": sa, "automountServiceAccountToken": false, "containers": containers}
    })
}

fn env_of(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap_or("").to_string(),
                        e["value"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn assert_injected(stored: &Value, role: &str) -> Result<()> {
    let c = &stored["spec"]["containers"][0];
    let env = env_of(c);
    let want = [
        ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
        ("AWS_DEFAULT_REGION", "us-west-2"),
        ("AWS_REGION", "us-west-2"),
        ("AWS_ROLE_ARN", role),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
        ),
    ];
    for (k, v) in want {
        ensure!(
            env.iter().any(|(n, val)| n == k && val == v),
            "missing {k}={v} in {env:?}"
        );
    }
    let mounts = c["volumeMounts"].as_array().context("no volumeMounts")?;
    ensure!(
        mounts.iter().any(|m| m["name"] == "aws-iam-token"
            && m["mountPath"] == MOUNT
            && m["readOnly"] == true),
        "no token mount in {mounts:?}"
    );
    let vols = stored["spec"]["volumes"].as_array().context("no volumes")?;
    let v = vols
        .iter()
        .find(|v| v["name"] == "aws-iam-token")
        .context("no aws-iam-token volume")?;
    let token = &v["projected"]["sources"][0]["serviceAccountToken"];
    ensure!(token["audience"] == "sts.amazonaws.com", "audience {token}");
    ensure!(token["expirationSeconds"] == 86400, "expiration {token}");
    ensure!(token["path"] == "token", "path {token}");
    Ok(())
}

async fn wait_for_webhook(cluster: &Cluster) -> Result<()> {
    e2e_tests::harness::wait_for_webhook(cluster, ROLE).await
}

async fn annotated_and_plain(cluster: &Cluster) -> Result<()> {
    cluster.create_namespace("apps").await?;
    cluster
        .create(
            "/api/v1/namespaces/apps/serviceaccounts",
            &sa("reader", json!({"eks.amazonaws.com/role-arn": ROLE})),
        )
        .await?;
    cluster
        .create(
            "/api/v1/namespaces/apps/serviceaccounts",
            &sa("plain", json!({})),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let containers =
        json!([{"name": "app", "image": "x", "env": [{"name": "KEEP", "value": "1"}]}]);
    cluster
        .create(
            "/api/v1/namespaces/apps/pods",
            &pod("injected", "reader", containers.clone()),
        )
        .await?;
    let stored = cluster.get("/api/v1/namespaces/apps/pods/injected").await?;
    assert_injected(&stored, ROLE).context("annotated ServiceAccount")?;
    ensure!(
        env_of(&stored["spec"]["containers"][0])[0] == ("KEEP".into(), "1".into()),
        "existing env kept first"
    );

    cluster
        .create(
            "/api/v1/namespaces/apps/pods",
            &pod("untouched", "plain", containers.clone()),
        )
        .await?;
    let stored = cluster
        .get("/api/v1/namespaces/apps/pods/untouched")
        .await?;
    ensure!(
        stored["spec"]["volumes"]
            .as_array()
            .is_none_or(|v| v.is_empty()),
        "plain pod got volumes: {stored}"
    );
    ensure!(
        env_of(&stored["spec"]["containers"][0]) == vec![("KEEP".into(), "1".into())],
        "plain pod env changed"
    );
    Ok(())
}

async fn already_has_everything(cluster: &Cluster) -> Result<()> {
    let containers = json!([{
        "name": "app", "image": "x",
        "env": [
            {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
            {"name": "AWS_DEFAULT_REGION", "value": "us-west-2"},
            {"name": "AWS_REGION", "value": "us-west-2"},
            {"name": "AWS_ROLE_ARN", "value": ROLE},
            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}
        ],
        "volumeMounts": [{"name": "aws-iam-token", "mountPath": MOUNT, "readOnly": true}]
    }]);
    let mut p = pod("complete", "reader", containers);
    p["spec"]["volumes"] = json!([{"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}}]);
    cluster.create("/api/v1/namespaces/apps/pods", &p).await?;
    let stored = cluster.get("/api/v1/namespaces/apps/pods/complete").await?;
    assert_injected(&stored, ROLE)?;
    ensure!(
        stored["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .len()
            == 5,
        "env duplicated: {stored}"
    );
    ensure!(
        stored["spec"]["volumes"].as_array().unwrap().len() == 1,
        "volume duplicated"
    );
    ensure!(
        stored["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .len()
            == 1,
        "mount duplicated"
    );
    Ok(())
}

/// ServiceAccounts created a moment before their pods (no wait at all) are
/// injected: the cache miss falls back to a direct GET.
async fn sa_created_right_before_pod(cluster: &Cluster, hook: &Webhook) -> Result<()> {
    cluster.create_namespace("race").await?;
    for i in 0..15 {
        let role = format!("arn:aws:iam::111122223333:role/race-{i}");
        cluster
            .create(
                "/api/v1/namespaces/race/serviceaccounts",
                &sa(
                    &format!("sa-{i}"),
                    json!({"eks.amazonaws.com/role-arn": role}),
                ),
            )
            .await?;
        let (stored, _) = cluster
            .create(
                "/api/v1/namespaces/race/pods",
                &pod(
                    &format!("p-{i}"),
                    &format!("sa-{i}"),
                    json!([{"name": "c", "image": "x"}]),
                ),
            )
            .await?;
        assert_injected(&stored, &role)
            .with_context(|| format!("pod p-{i} of a just-created ServiceAccount"))?;
    }
    // How many of those went through the fallback GET depends on the race
    // with the watch; report it for the log.
    let m = hook.metrics().await?;
    for line in m
        .lines()
        .filter(|l| l.starts_with("pod_identity_webhook_fallback_fetches_total"))
    {
        eprintln!("{line}");
    }
    Ok(())
}

async fn invalid_arn_warns_through_api(cluster: &Cluster) -> Result<()> {
    cluster
        .create(
            "/api/v1/namespaces/apps/serviceaccounts",
            &sa("typo", json!({"eks.amazonaws.com/role-arn": "s3-reader"})),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (stored, headers) = cluster
        .create(
            "/api/v1/namespaces/apps/pods",
            &pod("warned", "typo", json!([{"name": "c", "image": "x"}])),
        )
        .await?;
    ensure!(
        stored["spec"]["volumes"]
            .as_array()
            .is_none_or(|v| v.is_empty()),
        "invalid ARN injected: {stored}"
    );
    let warning = headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" | ");
    ensure!(
        warning.contains("not a valid IAM role ARN"),
        "no warning header: {warning:?}"
    );
    Ok(())
}

async fn deleted_sa_is_forgotten(cluster: &Cluster) -> Result<()> {
    cluster
        .create(
            "/api/v1/namespaces/apps/serviceaccounts",
            &sa("gone", json!({"eks.amazonaws.com/role-arn": ROLE})),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster
        .delete("/api/v1/namespaces/apps/serviceaccounts/gone")
        .await?;
    cluster
        .create(
            "/api/v1/namespaces/apps/serviceaccounts",
            &sa("gone", json!({})),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (stored, _) = cluster
        .create(
            "/api/v1/namespaces/apps/pods",
            &pod("after-delete", "gone", json!([{"name": "c", "image": "x"}])),
        )
        .await?;
    ensure!(
        stored["spec"]["volumes"]
            .as_array()
            .is_none_or(|v| v.is_empty()),
        "stale cache entry used: {stored}"
    );
    Ok(())
}

/// A ServiceAccount without annotations, configured through the upstream
/// `pod-identity-webhook` ConfigMap (`--watch-config-map`).
async fn config_map_mapping(cluster: &Cluster) -> Result<()> {
    cluster.create_namespace("cmns").await?;
    cluster
        .create(
            "/api/v1/namespaces/cmns/serviceaccounts",
            &sa("cm-sa", json!({})),
        )
        .await?;
    let (stored, _) = cluster
        .create(
            "/api/v1/namespaces/cmns/pods",
            &pod("from-cm", "cm-sa", json!([{"name": "c", "image": "x"}])),
        )
        .await?;
    let env = env_of(&stored["spec"]["containers"][0]);
    ensure!(
        env.contains(&("AWS_ROLE_ARN".into(), CM_ROLE.into())),
        "ConfigMap role not injected: {env:?}"
    );
    let token = &stored["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
    ensure!(
        token["expirationSeconds"] == 3600,
        "ConfigMap token expiration not used: {token}"
    );
    Ok(())
}

/// The sum of the webhook's fallback fetches (GETs made) so far.
async fn gets_made(hook: &Webhook) -> Result<f64> {
    let m = hook.metrics().await?;
    Ok(m.lines()
        .filter(|l| l.starts_with("pod_identity_webhook_fallback_fetches_total{"))
        .filter(|l| {
            ["\"found\"", "\"not_found\"", "\"error\""]
                .iter()
                .any(|r| l.contains(r))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// A client trusting the webhook, and its /mutate URL, to send reviews
/// straight to it (as the API server would).
fn direct(hook: &Webhook) -> Result<(reqwest::Client, String)> {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(hook.ca_pem.as_bytes())?)
        .timeout(Duration::from_secs(10))
        .build()?;
    Ok((client, format!("https://127.0.0.1:{}/mutate", hook.port)))
}

/// The AdmissionReview of a pod of ServiceAccount `sa` in `ns`.
fn review_of(ns: &str, sa: &str) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "CREATE", "namespace": ns,
        "object": pod("p", sa, json!([{"name": "c", "image": "x"}]))}})
}

/// Creates ServiceAccount `sa_name` with `role`, then a pod of it through the
/// API; the stored pod must carry the role.
async fn sa_then_pod(
    cluster: &Cluster,
    ns: &str,
    sa_name: &str,
    pod_name: &str,
    role: &str,
) -> Result<()> {
    cluster
        .create(
            &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            &sa(sa_name, json!({"eks.amazonaws.com/role-arn": role})),
        )
        .await?;
    let (stored, _) = cluster
        .create(
            &format!("/api/v1/namespaces/{ns}/pods"),
            &pod(pod_name, sa_name, json!([{"name": "c", "image": "x"}])),
        )
        .await?;
    assert_injected(&stored, role)
}

/// Reviews sent straight to the webhook naming 300 ServiceAccounts that do
/// not exist cost the API server a bounded number of GETs; a ServiceAccount
/// found missing and then created is injected as soon as the watch has seen
/// it, though the not-found answer would otherwise be remembered for 60 s.
async fn lookup_flood_is_bounded(cluster: &Cluster, hook: &Webhook) -> Result<()> {
    let (client, url) = direct(hook)?;
    let before = gets_made(hook).await?;
    let started = Instant::now();
    for batch in 0..15 {
        let calls = (0..20).map(|i| {
            client
                .post(&url)
                .json(&review_of("flood", &format!("ghost-{batch}-{i}")))
                .send()
        });
        for r in futures::future::join_all(calls).await {
            ensure!(r?.status() == 200, "every review is answered");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let made = gets_made(hook).await? - before;
    // Burst 50, then 20 per second (the defaults).
    let bound = 50.0 + 20.0 * elapsed + 1.0;
    ensure!(
        made <= bound,
        "{made} GETs for 300 unknown names in {elapsed:.1}s (bound {bound:.0})"
    );
    let m = hook.metrics().await?;
    let limited: f64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix("pod_identity_webhook_fallback_fetches_total{result=\"rate_limited\"} ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    ensure!(limited > 0.0, "nothing was rate-limited:\n{m}");
    eprintln!("lookup flood: {made} GETs for 300 unknown names in {elapsed:.1}s");

    // Found missing, then created: the not-found answer is forgotten.
    tokio::time::sleep(Duration::from_secs(3)).await; // the bucket refills
    cluster.create_namespace("late").await?;
    let r = client
        .post(&url)
        .json(&review_of("late", "late-sa"))
        .send()
        .await?;
    ensure!(r.status() == 200);
    let role = "arn:aws:iam::111122223333:role/late";
    cluster
        .create(
            "/api/v1/namespaces/late/serviceaccounts",
            &sa("late-sa", json!({"eks.amazonaws.com/role-arn": role})),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // the watch event
    let (stored, _) = cluster
        .create(
            "/api/v1/namespaces/late/pods",
            &pod("late-pod", "late-sa", json!([{"name": "c", "image": "x"}])),
        )
        .await?;
    assert_injected(&stored, role).context("pod of a ServiceAccount found missing, then created")
}

/// With the API server down, reviews for ServiceAccounts in the cache are
/// still answered from it, one not in the cache is denied (never admitted
/// without its credentials); when the API server is back, so is the webhook.
async fn api_server_outage(cluster: &mut Cluster, hook: &Webhook) -> Result<()> {
    cluster.create_namespace("outage").await?;
    let outage_role = "arn:aws:iam::111122223333:role/outage";
    sa_then_pod(cluster, "outage", "cached", "before", outage_role).await?;
    let (client, url) = direct(hook)?;
    cluster.stop_api_server();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let v: Value = client
            .post(&url)
            .json(&review_of("outage", "cached"))
            .send()
            .await?
            .json()
            .await?;
        slowest = slowest.max(started.elapsed());
        ensure!(
            v["response"]["allowed"] == true && v["response"]["patch"].is_string(),
            "a cached ServiceAccount during the outage: {v}"
        );
    }
    let v: Value = client
        .post(&url)
        .json(&review_of("outage", "unknown"))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        v["response"]["allowed"] == false && v["response"]["status"]["code"] == 503,
        "an unknown ServiceAccount during the outage: {v}"
    );
    eprintln!("API server down: 20 reviews from the cache, the slowest in {slowest:?}");

    cluster.start_api_server().await?;
    let after_role = "arn:aws:iam::111122223333:role/after";
    sa_then_pod(cluster, "outage", "after", "after", after_role)
        .await
        .context("after the API server came back")
}

const CM_ROLE: &str = "arn:aws:iam::111122223333:role/from-config-map";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_against_real_api_server() {
    let mut cluster = Cluster::start()
        .await
        .expect("start etcd and kube-apiserver");
    cluster.create_namespace("pod-identity").await.unwrap();
    let mapping = json!({"cmns/cm-sa": {"RoleARN": CM_ROLE, "Audience": "sts.amazonaws.com", "UseRegionalSTS": true, "TokenExpiration": 3600}});
    cluster
        .create(
            "/api/v1/namespaces/pod-identity/configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pod-identity-webhook"},
                    "data": {"config": mapping.to_string()}}),
        )
        .await
        .unwrap();
    let hook = Webhook::start(
        &cluster,
        &[
            "--aws-default-region=us-west-2",
            "--sts-regional-endpoint=true",
            "--watch-config-map",
            "--namespace=pod-identity",
            // Longer than the test's wait for the watch: only the watch can
            // make the webhook forget a not-found answer in time.
            "--service-account-not-found-ttl=60s",
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    hook.register(&cluster, "pod-identity-webhook")
        .await
        .unwrap();
    let result = async {
        wait_for_webhook(&cluster)
            .await
            .context("webhook registration")?;
        annotated_and_plain(&cluster)
            .await
            .context("annotated and plain ServiceAccounts")?;
        already_has_everything(&cluster)
            .await
            .context("pod that already carries everything")?;
        sa_created_right_before_pod(&cluster, &hook)
            .await
            .context("ServiceAccount created right before its pod")?;
        invalid_arn_warns_through_api(&cluster)
            .await
            .context("invalid role ARN")?;
        deleted_sa_is_forgotten(&cluster)
            .await
            .context("deleted ServiceAccount")?;
        config_map_mapping(&cluster)
            .await
            .context("ConfigMap mapping")?;
        lookup_flood_is_bounded(&cluster, &hook)
            .await
            .context("lookup flood")?;
        api_server_outage(&mut cluster, &hook)
            .await
            .context("API server outage")?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        panic!(
            "{e:#}\n--- webhook log:\n{}\n{}",
            hook.log(),
            cluster.logs()
        );
    }
}
