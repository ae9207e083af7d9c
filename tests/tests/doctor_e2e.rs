//! `pod-identity doctor` against the suite's kube-apiserver (its own HTTPS
//! issuer), moto's IAM and STS, and the real webhook registered by URL on
//! 127.0.0.1. A healthy setup passes every check; then a table of planted
//! faults, one per check, each failing exactly its check and naming the
//! cause. The cluster audit finds the pod created while the webhook was
//! unregistered, and no other.

use std::collections::BTreeSet;

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use e2e_tests::agent::Moto;
use e2e_tests::harness::{make_certs, make_certs_until, Cluster, Webhook};
use e2e_tests::iam::{associated_cluster, ca_flag, golden, Tools};
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";
const CONFIG: &str = "pod-identity";
const CONFIGS: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";

/// The chart's MutatingWebhookConfiguration, by URL on 127.0.0.1.
async fn register(cluster: &Cluster, port: u16, ca_pem: &str) -> Result<()> {
    register_as(
        cluster,
        port,
        ca_pem,
        CONFIG,
        "pod-identity-webhook.amazonaws.com",
    )
    .await
}

/// The configuration under other names (EKS's: `pod-identity-webhook` with
/// the webhook `iam-for-pods.amazonaws.com`).
async fn register_as(
    cluster: &Cluster,
    port: u16,
    ca_pem: &str,
    config: &str,
    webhook: &str,
) -> Result<()> {
    let _ = cluster.delete(&format!("{CONFIGS}/{config}")).await;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let skip = json!({"matchExpressions": [{"key": "pod-identity.amazonaws.com/skip", "operator": "NotIn", "values": ["true"]}]});
    cluster
        .create(
            CONFIGS,
            &json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": config},
                "webhooks": [{
                    "name": webhook,
                    "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate"), "caBundle": ca},
                    "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                    "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
                    "reinvocationPolicy": "IfNeeded", "timeoutSeconds": 10,
                    "namespaceSelector": skip, "objectSelector": skip,
                }]
            }),
        )
        .await?;
    Ok(())
}

/// Creates a pod of `sa` until the API server calls the webhook (its
/// configuration informer takes a moment); returns the stored pod. Pods
/// created before that are deleted again.
async fn create_mutated_pod(cluster: &Cluster, ns: &str, name: &str, sa: &str) -> Result<Value> {
    create_mutated(cluster, ns, name, &pod_json(name, sa)).await
}

/// [`create_mutated_pod`] for any pod.
async fn create_mutated(cluster: &Cluster, ns: &str, name: &str, pod: &Value) -> Result<Value> {
    for _ in 0..150 {
        let stored = cluster
            .create(&format!("/api/v1/namespaces/{ns}/pods"), pod)
            .await?
            .0;
        let mutated = stored["spec"]["containers"][0]["env"]
            .as_array()
            .is_some_and(|e| {
                e.iter().any(|v| {
                    v["name"] == "AWS_ROLE_ARN" || v["name"] == "AWS_CONTAINER_CREDENTIALS_FULL_URI"
                })
            });
        if mutated {
            return Ok(stored);
        }
        cluster
            .delete(&format!("/api/v1/namespaces/{ns}/pods/{name}"))
            .await?;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!("the webhook never mutated {ns}/{name}")
}

fn pod_json(name: &str, sa: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"serviceAccountName": sa, "automountServiceAccountToken": false,
                 "containers": [{"name": "app", "image": "amazon/aws-cli"}]}})
}

async fn create_pod(cluster: &Cluster, ns: &str, name: &str, sa: &str) -> Result<Value> {
    Ok(cluster
        .create(
            &format!("/api/v1/namespaces/{ns}/pods"),
            &pod_json(name, sa),
        )
        .await?
        .0)
}

async fn service_account(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    annotations: Value,
) -> Result<()> {
    cluster
        .create(
            &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "annotations": annotations}}),
        )
        .await?;
    Ok(())
}

struct Env {
    cluster: Cluster,
    _moto: Moto,
    tools: Tools,
    hook: Webhook,
    ca_flag: String,
}

async fn setup() -> Result<Env> {
    let moto = Moto::start().await?;
    let (cluster, tools) = associated_cluster(&moto).await?;
    let ca_flag = ca_flag(&cluster);
    let hook = Webhook::start(&cluster, &["--missing-injection-audit-interval=500ms"]).await?;
    register(&cluster, hook.port, &hook.ca_pem).await?;
    cluster.create_namespace("app").await?;
    tools.ok(&[
        "iamserviceaccount",
        "create",
        "--allow-no-policy",
        "--namespace",
        "app",
        "--name",
        "reader",
        "--approve",
    ])?;
    Ok(Env {
        cluster,
        _moto: moto,
        tools,
        hook,
        ca_flag,
    })
}

/// Runs doctor with JSON output: (exit code, checks by id).
/// (id, status, evidence) of each check.
type Checks = Vec<(String, String, String)>;

fn doctor(tools: &Tools, args: &[&str]) -> Result<(i32, Checks)> {
    let out = tools.run(&[&["doctor"], args, &["-o", "json"]].concat())?;
    let report: Value =
        serde_json::from_str(&out.stdout).with_context(|| format!("doctor {args:?}: {out:?}"))?;
    let checks = report["checks"]
        .as_array()
        .context("checks")?
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["evidence"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    Ok((out.code, checks))
}

fn failed(checks: &[(String, String, String)]) -> BTreeSet<String> {
    checks
        .iter()
        .filter(|c| c.1 == "fail")
        .map(|c| c.0.clone())
        .collect()
}

/// Placeholders for what differs per run.
fn redact(text: &str, cluster: &Cluster, hook_port: u16) -> String {
    let host = cluster.url.trim_start_matches("https://").to_string();
    let days = regex_lite_days(
        &text
            .replace(&host, "ISSUER")
            .replace(&format!("127.0.0.1:{hook_port}"), "WEBHOOK"),
    );
    days
}

/// "expires in 12345 days" -> "expires in N days".
fn regex_lite_days(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("expires in ") {
        let (head, tail) = rest.split_at(i + "expires in ".len());
        out.push_str(head);
        let digits = tail.chars().take_while(|c| c.is_ascii_digit()).count();
        out.push('N');
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_table_of_planted_faults() -> Result<()> {
    let env = setup().await?;
    let (cluster, tools) = (&env.cluster, &env.tools);
    let reader_arn = format!("arn:aws:iam::{ACCOUNT}:role/pod-identity_app_reader");
    create_mutated_pod(cluster, "app", "web", "reader").await?;

    // Healthy: nothing fails, in both forms; the human output is golden.
    for target in [["pod", "app/web"], ["serviceaccount", "app/reader"]] {
        let (code, checks) = doctor(tools, &target)?;
        assert_eq!(code, 0, "{checks:?}");
        assert!(failed(&checks).is_empty(), "{checks:?}");
        assert_eq!(
            checks.iter().filter(|c| c.1 == "warn").count(),
            0,
            "{checks:?}"
        );
        let ids: Vec<&str> = checks.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            ids,
            [
                "serviceaccount",
                "webhook",
                "mutation",
                "token",
                "provider",
                "role",
                "exchange",
                "agent",
                "sdk",
                "region"
            ]
        );
    }
    let (_, checks) = doctor(tools, &["pod", "app/web"])?;
    let status = |id: &str| {
        checks
            .iter()
            .find(|c| c.0 == id)
            .map(|c| c.1.clone())
            .unwrap()
    };
    for id in [
        "serviceaccount",
        "webhook",
        "mutation",
        "token",
        "provider",
        "role",
        "sdk",
    ] {
        assert_eq!(status(id), "pass", "{id}: {checks:?}");
    }
    let text = tools.ok(&["doctor", "pod", "app/web"])?;
    golden(
        "doctor-pod-healthy.txt",
        &redact(&text, cluster, env.hook.port),
    )?;
    // --exchange: a real TokenRequest token exchanged with STS (moto).
    let (code, checks) = doctor(tools, &["serviceaccount", "app/reader", "--exchange"])?;
    assert_eq!(code, 0, "{checks:?}");
    let exchange = checks.iter().find(|c| c.0 == "exchange").unwrap();
    ensure!(
        exchange.1 == "pass"
            && exchange
                .2
                .contains(":assumed-role/pod-identity_app_reader/"),
        "{exchange:?}"
    );
    // STS not answering at all: the cause is printed, not "no message".
    let unreachable = tools.run_env(
        &["doctor", "serviceaccount", "app/reader", "--exchange"],
        &[("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1")],
    )?;
    assert_eq!(unreachable.code, 1, "{unreachable:?}");
    ensure!(
        unreachable.stdout.contains("no answer from STS")
            && !unreachable.stdout.contains("no message")
            && (unreachable.stdout.contains("onnection refused")
                || unreachable.stdout.contains("dispatch failure")),
        "{unreachable:?}"
    );
    // Secrets stay out of every output, even with trace logging: the minted
    // token (a JWT, "eyJ..."), STS's credentials, the caller's secret key and
    // session token, the kubeconfig's bearer token.
    let traced = tools.run_env(
        &[
            "doctor",
            "serviceaccount",
            "app/reader",
            "--exchange",
            "--log-level",
            "trace",
        ],
        &[
            ("AWS_SECRET_ACCESS_KEY", "SECRET-MARKER-4f1c"),
            ("AWS_SESSION_TOKEN", "SESSION-MARKER-9b2e"),
        ],
    )?;
    assert_eq!(traced.code, 0, "{traced:?}");
    ensure!(
        traced.stderr.len() > 1000,
        "trace logging printed little: {traced:?}"
    );
    for marker in [
        "eyJ",
        "SECRET-MARKER-4f1c",
        "SESSION-MARKER-9b2e",
        // The kubeconfig's bearer token.
        e2e_tests::harness::ADMIN_TOKEN,
        "SecretAccessKey",
        "SessionToken",
    ] {
        ensure!(
            !traced.stdout.contains(marker) && !traced.stderr.contains(marker),
            "{marker} was printed"
        );
    }

    // The faults that need pods go first, while the webhook is registered.
    // Pod created before its ServiceAccount was annotated.
    service_account(cluster, "app", "late", json!({})).await?;
    create_pod(cluster, "app", "early", "late").await?;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    tools.ok(&[
        "iamserviceaccount",
        "create",
        "--allow-no-policy",
        "--namespace",
        "app",
        "--name",
        "late",
        "--approve",
    ])?;

    // ServiceAccount-level faults.
    service_account(cluster, "app", "bare", json!({})).await?;
    service_account(
        cluster,
        "app",
        "typo",
        json!({"eks.amazonaws.con/role-arn": reader_arn}),
    )
    .await?;
    service_account(
        cluster,
        "app",
        "badarn",
        json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::123:role/x"}),
    )
    .await?;
    service_account(cluster, "app", "ghost", json!({"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/does-not-exist")})).await?;
    let provider_arn = format!(
        "arn:aws:iam::{ACCOUNT}:oidc-provider/{}",
        cluster.url.trim_start_matches("https://")
    );
    let host = cluster.url.trim_start_matches("https://");
    for (role, sub, aud) in [
        (
            "other-sa-role",
            "system:serviceaccount:app:someone-else",
            "sts.amazonaws.com",
        ),
        (
            "other-aud-role",
            "system:serviceaccount:app:wrongaud",
            "other",
        ),
    ] {
        let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {format!("{host}:sub"): sub, format!("{host}:aud"): aud}}}]});
        tools.aws(&[
            "iam",
            "create-role",
            "--role-name",
            role,
            "--assume-role-policy-document",
            &trust.to_string(),
        ])?;
    }
    service_account(
        cluster,
        "app",
        "wrongsub",
        json!({"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/other-sa-role")}),
    )
    .await?;
    service_account(cluster, "app", "wrongaud", json!({"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/other-aud-role")})).await?;
    // A namespace that opts out of the webhook, with a role set up properly.
    cluster
        .create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "optout", "labels": {"pod-identity.amazonaws.com/skip": "true"}}}),
        )
        .await?;
    tools.ok(&[
        "iamserviceaccount",
        "create",
        "--allow-no-policy",
        "--namespace",
        "optout",
        "--name",
        "reader",
        "--approve",
    ])?;

    struct Fault {
        name: &'static str,
        target: [&'static str; 2],
        check: &'static str,
        cause: &'static str,
    }
    let simple = [
        Fault {
            name: "missing annotation",
            target: ["serviceaccount", "app/bare"],
            check: "serviceaccount",
            cause: "has no annotation eks.amazonaws.com/role-arn",
        },
        Fault {
            name: "typo'd prefix",
            target: ["serviceaccount", "app/typo"],
            check: "serviceaccount",
            cause: "\"eks.amazonaws.con/role-arn\" looks like a typo",
        },
        Fault {
            name: "invalid ARN",
            target: ["serviceaccount", "app/badarn"],
            check: "serviceaccount",
            cause: "is not a role ARN",
        },
        Fault {
            name: "namespace excluded by selector",
            target: ["serviceaccount", "optout/reader"],
            check: "webhook",
            cause: "namespace optout is excluded by the namespaceSelector",
        },
        Fault {
            name: "pod created before the annotation",
            target: ["pod", "app/early"],
            check: "mutation",
            cause: "before its ServiceAccount got the role annotation",
        },
        Fault {
            name: "role missing",
            target: ["serviceaccount", "app/ghost"],
            check: "role",
            cause: "role/does-not-exist does not exist",
        },
        Fault {
            name: "trust policy naming another ServiceAccount",
            target: ["serviceaccount", "app/wrongsub"],
            check: "role",
            cause: "system:serviceaccount:app:someone-else",
        },
        Fault {
            name: "trust policy with another audience",
            target: ["serviceaccount", "app/wrongaud"],
            check: "role",
            cause: "the condition wants one of [\"other\"]",
        },
    ];
    let mut seen = BTreeSet::new();
    let mut assert_fault = |f: &Fault| -> Result<()> {
        let (code, checks) = doctor(tools, &f.target)?;
        assert_eq!(code, 1, "{}: {checks:?}", f.name);
        assert_eq!(
            failed(&checks),
            BTreeSet::from([f.check.to_string()]),
            "{}: {checks:?}",
            f.name
        );
        let evidence = &checks.iter().find(|c| c.0 == f.check).unwrap().2;
        ensure!(evidence.contains(f.cause), "{}: {evidence}", f.name);
        seen.insert(f.name);
        Ok(())
    };
    for f in &simple {
        assert_fault(f)?;
    }
    let text = tools.run(&["doctor", "pod", "app/early"])?;
    assert_eq!(text.code, 1);
    golden(
        "doctor-pod-created-before-annotation.txt",
        &redact(&text.stdout, cluster, env.hook.port),
    )?;

    // Faults of shared state, each undone after.
    let reader = Fault {
        name: "",
        target: ["serviceaccount", "app/reader"],
        check: "",
        cause: "",
    };
    cluster.delete(&format!("{CONFIGS}/{CONFIG}")).await?;
    assert_fault(&Fault {
        name: "webhook configuration absent",
        check: "webhook",
        cause: "no MutatingWebhookConfiguration",
        ..reader
    })?;
    let other_ca = make_certs()?.ca_pem;
    register(cluster, env.hook.port, &other_ca).await?;
    assert_fault(&Fault {
        name: "caBundle from another CA",
        check: "webhook",
        cause: "signed by another CA",
        ..reader
    })?;
    let expired = make_certs_until(Some((2021, 1, 1)))?;
    let expired_ca = expired.ca_pem.clone();
    let old_hook = Webhook::start_with_certs(cluster, &[], "debug", expired).await?;
    register(cluster, old_hook.port, &expired_ca).await?;
    assert_fault(&Fault {
        name: "expired serving certificate",
        check: "webhook",
        cause: "expired",
        ..reader
    })?;
    register(cluster, env.hook.port, &env.hook.ca_pem).await?;

    let providers = tools.aws(&["iam", "list-open-id-connect-providers"])?;
    let arn = providers["OpenIDConnectProviderList"][0]["Arn"]
        .as_str()
        .context("provider")?
        .to_string();
    tools.aws(&[
        "iam",
        "delete-open-id-connect-provider",
        "--open-id-connect-provider-arn",
        &arn,
    ])?;
    assert_fault(&Fault {
        name: "issuer without an IAM OIDC provider",
        check: "provider",
        cause: "has no IAM OIDC provider",
        ..reader
    })?;
    tools.aws(&[
        "iam",
        "create-open-id-connect-provider",
        "--url",
        &cluster.url,
        "--client-id-list",
        "other",
        "--thumbprint-list",
        &"0".repeat(40),
    ])?;
    assert_fault(&Fault {
        name: "provider without the sts.amazonaws.com client id",
        check: "provider",
        cause: "does not list the token audience sts.amazonaws.com",
        ..reader
    })?;
    tools.aws(&[
        "iam",
        "delete-open-id-connect-provider",
        "--open-id-connect-provider-arn",
        &arn,
    ])?;
    tools.ok(&["oidc", "associate", &env.ca_flag, "--approve"])?;

    assert_eq!(seen.len(), 13, "{seen:?}");
    // Everything restored: healthy again.
    let (code, checks) = doctor(tools, &["serviceaccount", "app/reader"])?;
    assert_eq!(code, 0, "{checks:?}");
    // Bad input: a clear error, exit 2.
    let bad = tools.run(&["doctor", "pod", "no-slash"])?;
    ensure!(
        bad.code == 2 && bad.stderr.contains("expected NAMESPACE/NAME"),
        "{bad:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_finds_the_pod_that_slipped_through() -> Result<()> {
    let env = setup().await?;
    let (cluster, tools) = (&env.cluster, &env.tools);
    create_mutated_pod(cluster, "app", "before", "reader").await?;
    // Pods of ServiceAccounts without a role, and opted-out pods, are fine.
    service_account(cluster, "app", "plain", json!({})).await?;
    create_pod(cluster, "app", "no-role", "plain").await?;
    service_account(
        cluster,
        "app",
        "typo",
        json!({"eks.amazon.com/role-arn": "arn:aws:iam::123456789012:role/x"}),
    )
    .await?;

    // The webhook is unregistered for a moment; a pod is created meanwhile.
    cluster.delete(&format!("{CONFIGS}/{CONFIG}")).await?;
    // The API server drops the webhook once its informer sees the delete.
    let mut slipped = None;
    for i in 0..50 {
        let name = format!("slipped-{i}");
        let pod = create_pod(cluster, "app", &name, "reader").await?;
        if pod["spec"]["volumes"]
            .as_array()
            .is_none_or(|v| v.is_empty())
        {
            slipped = Some(name);
            break;
        }
        cluster
            .delete(&format!("/api/v1/namespaces/app/pods/{name}"))
            .await?;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let slipped = slipped.context("the API server kept calling the deleted webhook")?;
    register(cluster, env.hook.port, &env.hook.ca_pem).await?;
    create_mutated_pod(cluster, "app", "after", "reader").await?;
    let text = tools.run(&["doctor", "cluster"])?;
    assert_eq!(text.code, 1, "{text:?}");
    golden(
        "doctor-cluster.txt",
        &redact(&text.stdout, cluster, env.hook.port).replace(&slipped, "slipped-I"),
    )?;

    // More ServiceAccounts than one page of a list (500): the audit reads
    // every page.
    cluster.create_namespace("many").await?;
    use futures::StreamExt as _;
    let created: Vec<Result<()>> = futures::stream::iter(0..600)
        .map(|i| async move {
            let name = format!("sa-{i}");
            service_account(
                cluster,
                "many",
                &name,
                json!({"role-arn": "arn:aws:iam::123456789012:role/x"}),
            )
            .await
        })
        .buffer_unordered(16)
        .collect()
        .await;
    created.into_iter().collect::<Result<Vec<()>>>()?;
    let out = tools.run(&["doctor", "cluster", "-o", "json"])?;
    assert_eq!(out.code, 1, "{out:?}");
    let audit: Value = serde_json::from_str(&out.stdout)?;
    let missed: Vec<String> = audit["podsMissingInjection"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["namespace"].as_str().unwrap(),
                p["pod"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(missed, [format!("app/{slipped}")], "{audit}");
    ensure!(
        audit["podsMissingInjection"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("while the webhook was not registered"),
        "{audit}"
    );
    assert_eq!(audit["webhook"]["status"], json!("pass"), "{audit}");
    let sas = audit["serviceAccounts"].to_string();
    ensure!(
        sas.contains("typo") && sas.contains("eks.amazon.com/role-arn"),
        "{audit}"
    );
    assert_eq!(
        audit["serviceAccounts"].as_array().unwrap().len(),
        601,
        "600 in namespace many, and typo"
    );
    let text = tools.run(&["doctor", "cluster"])?;
    ensure!(
        text.stdout.contains("pods missing injection: 1"),
        "{}",
        text.stdout
    );

    // Once it is recreated, the audit is clean.
    cluster
        .delete(&format!("/api/v1/namespaces/app/pods/{slipped}"))
        .await?;
    create_mutated_pod(cluster, "app", "recreated", "reader").await?;
    let clean = tools.run(&["doctor", "cluster"])?;
    assert_eq!(clean.code, 0, "{clean:?}");
    wait_for_gauge(&env.hook, 0).await?;
    Ok(())
}

/// Waits until the webhook's missing-injection gauge reads `want`.
async fn wait_for_gauge(hook: &Webhook, want: i64) -> Result<()> {
    let name = "pod_identity_webhook_pods_missing_injection";
    let mut last = String::new();
    for _ in 0..100 {
        let text = hook.metrics().await?;
        last = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string();
        if last
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<i64>().ok())
            == Some(want)
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!("{name} never read {want}; last: {last:?}\n{}", hook.log())
}

/// doctor on clusters as they come: EKS's own webhook configuration, a
/// service mesh's token volume listed first, a pod still running with the
/// role its ServiceAccount named before, a role from the webhook's
/// ConfigMap, an EKS Pod Identity pod, and a near-miss annotation name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_understands_stock_clusters() -> Result<()> {
    let env = setup().await?;
    let (cluster, tools) = (&env.cluster, &env.tools);
    // EKS names its configuration pod-identity-webhook and the webhook
    // iam-for-pods.amazonaws.com.
    cluster.delete(&format!("{CONFIGS}/{CONFIG}")).await?;
    register_as(
        cluster,
        env.hook.port,
        &env.hook.ca_pem,
        "pod-identity-webhook",
        "iam-for-pods.amazonaws.com",
    )
    .await?;
    let (code, checks) = doctor(tools, &["serviceaccount", "app/reader"])?;
    assert_eq!(code, 0, "{checks:?}");
    let webhook = checks.iter().find(|c| c.0 == "webhook").unwrap();
    ensure!(
        webhook.1 == "pass" && webhook.2.contains("iam-for-pods.amazonaws.com"),
        "{webhook:?}"
    );

    // A mesh's projected token listed before the injected one.
    let mut meshed = pod_json("meshed", "reader");
    meshed["spec"]["volumes"] = json!([{"name": "istio-token", "projected": {"sources": [
        {"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}}]);
    meshed["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "istio-token", "mountPath": "/var/run/secrets/tokens"}]);
    create_mutated(cluster, "app", "meshed", &meshed).await?;
    let (code, checks) = doctor(tools, &["pod", "app/meshed"])?;
    assert_eq!(code, 0, "{checks:?}");
    let token = checks.iter().find(|c| c.0 == "token").unwrap();
    ensure!(
        token
            .2
            .contains("volume aws-iam-token: audience sts.amazonaws.com"),
        "{token:?}"
    );

    // Right after --override-existing-serviceaccounts: the running pod
    // still has the old role.
    create_mutated_pod(cluster, "app", "before-switch", "reader").await?;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    tools.ok(&[
        "iamserviceaccount",
        "create",
        "--namespace",
        "app",
        "--name",
        "reader",
        "--role-name",
        "switched",
        "--allow-no-policy",
        "--override-existing-serviceaccounts",
        "--approve",
    ])?;
    let (code, checks) = doctor(tools, &["pod", "app/before-switch"])?;
    assert_eq!(code, 1, "{checks:?}");
    assert_eq!(
        failed(&checks),
        BTreeSet::from(["mutation".to_string()]),
        "{checks:?}"
    );
    let mutation = checks.iter().find(|c| c.0 == "mutation").unwrap();
    ensure!(
        mutation.2.contains(&format!(
            "AWS_ROLE_ARN=arn:aws:iam::{ACCOUNT}:role/pod-identity_app_reader"
        )) && mutation.2.contains("role/switched now"),
        "{mutation:?}"
    );

    // A role given through the webhook's ConfigMap (--watch-config-map).
    tools.ok(&[
        "iamserviceaccount",
        "create",
        "--namespace",
        "app",
        "--name",
        "cmsa",
        "--role-only",
        "--allow-no-policy",
        "--approve",
    ])?;
    service_account(cluster, "app", "cmsa", json!({})).await?;
    cluster.create_namespace("eks").await?;
    let config = json!({"app/cmsa": {"RoleARN": format!("arn:aws:iam::{ACCOUNT}:role/pod-identity_app_cmsa"), "Audience": "sts.amazonaws.com"}});
    cluster
        .create(
            "/api/v1/namespaces/eks/configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pod-identity-webhook"},
                "data": {"config": config.to_string()}}),
        )
        .await?;
    let (code, checks) = doctor(tools, &["serviceaccount", "app/cmsa"])?;
    assert_eq!(code, 0, "{checks:?}");
    ensure!(
        checks[0]
            .2
            .contains("from the webhook's ConfigMap eks/pod-identity-webhook"),
        "{checks:?}"
    );
    let role = checks.iter().find(|c| c.0 == "role").unwrap();
    ensure!(role.1 == "pass", "{role:?}");

    // An EKS Pod Identity pod: no annotation, container credentials and a
    // token for pods.eks.amazonaws.com (the webhook leaves it alone).
    service_account(cluster, "app", "associated", json!({})).await?;
    let mut associated = pod_json("associated", "associated");
    associated["spec"]["volumes"] = json!([{"name": "eks-pod-identity-token", "projected": {"sources": [
        {"serviceAccountToken": {"audience": "pods.eks.amazonaws.com", "expirationSeconds": 86400, "path": "eks-pod-identity-token"}}]}}]);
    associated["spec"]["containers"][0]["env"] = json!([
        {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.23/v1/credentials"},
        {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"}]);
    associated["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "eks-pod-identity-token",
        "mountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount", "readOnly": true}]);
    cluster
        .create("/api/v1/namespaces/app/pods", &associated)
        .await?;
    let (code, checks) = doctor(tools, &["pod", "app/associated"])?;
    assert_eq!(code, 0, "{checks:?}");
    ensure!(checks[0].2.contains("EKS Pod Identity"), "{checks:?}");
    for id in ["provider", "role"] {
        let c = checks.iter().find(|c| c.0 == id).unwrap();
        ensure!(c.1 == "skip", "{c:?}");
    }

    // A near-miss annotation name.
    service_account(
        cluster,
        "app",
        "underscore",
        json!({"eks.amazonaws.com/role_arn": format!("arn:aws:iam::{ACCOUNT}:role/x")}),
    )
    .await?;
    let (code, checks) = doctor(tools, &["serviceaccount", "app/underscore"])?;
    assert_eq!(code, 1, "{checks:?}");
    ensure!(
        checks[0].1 == "fail"
            && checks[0]
                .2
                .contains("\"eks.amazonaws.com/role_arn\" looks like a typo"),
        "{checks:?}"
    );
    Ok(())
}
