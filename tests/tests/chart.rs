//! The Helm chart: `helm lint --strict`, `helm template` of each values file
//! in charts/pod-identity/ci compared with the committed golden output (set
//! UPDATE_GOLDEN=1 to rewrite it), the rendered manifests validated against
//! the Kubernetes 1.30 and 1.37 schemas, and the values schema refusing bad
//! input with a clear message.

use e2e_tests::helm::{chart_dir, helm_ok, kubernetes_validate, run_helm};

/// Certificates the chart generates differ on every render: masked.
fn mask_generated(yaml: &str) -> String {
    yaml.lines()
        .map(|l| {
            let t = l.trim_start();
            for key in ["caBundle: ", "ca.crt: ", "tls.crt: ", "tls.key: "] {
                if t.starts_with(key) && t.len() > key.len() + 40 {
                    let indent = &l[..l.len() - t.len()];
                    return format!("{indent}{key}<generated>");
                }
            }
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn values_files() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(chart_dir().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    assert!(v.len() >= 4, "expected the ci values files");
    v
}

#[test]
fn lint_template_golden_and_schemas() {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for values in values_files() {
        let name = values
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches("-values")
            .to_string();
        let v = values.to_str().unwrap();
        helm_ok(&["lint", "--strict", chart, "-f", v]).unwrap();
        let rendered = helm_ok(&[
            "template",
            "pod-identity",
            chart,
            "--namespace",
            "pod-identity",
            "-f",
            v,
        ])
        .unwrap();
        let masked = mask_generated(&rendered);
        let golden = chart_dir()
            .join("tests/golden")
            .join(format!("{name}.yaml"));
        if update {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &masked).unwrap();
        } else {
            let want = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
                panic!("{} missing: run with UPDATE_GOLDEN=1", golden.display())
            });
            if want != masked {
                failures.push(format!(
                    "{name}: rendered output differs from {}; review and run with UPDATE_GOLDEN=1",
                    golden.display()
                ));
            }
        }
        for k8s in ["1.30.0", "1.37.0"] {
            let (ok, out) = kubernetes_validate(&rendered, k8s).unwrap();
            if !ok {
                failures.push(format!("{name} on {k8s}:\n{out}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn validator_can_fail() {
    // The schema check is real: a Deployment with a misspelled field fails.
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicaz: 2\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: i}]}\n";
    let (ok, out) = kubernetes_validate(bad, "1.30.0").unwrap();
    assert!(!ok, "{out}");
}

#[test]
fn bad_values_are_refused_clearly() {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "webhook.credentialMode=magic"], "credentialMode"),
        (&["--set", "webhook.replicaz=2"], "replicaz"),
        (
            &["--set", "webhook.admission.failurePolicy=Sometimes"],
            "failurePolicy",
        ),
        (&["--set", "agent.enabled=true"], "agent.issuer is required"),
        (
            &["--set", "webhook.tls.mode=secret"],
            "existingSecret is required",
        ),
        (
            &["--set", "webhook.admission.url=https://127.0.0.1:1/mutate"],
            "caBundle is required",
        ),
        (&["--set", "agent.sessionDuration=60"], "sessionDuration"),
        (
            &["--set", "broker.enabled=true"],
            "broker.clusterName is required",
        ),
        (
            &[
                "--set",
                "agent.enabled=true",
                "--set",
                "agent.issuer=https://i",
                "--set",
                "agent.podIdentity.enabled=true",
            ],
            "needs broker.enabled",
        ),
        (
            &[
                "--set",
                "broker.enabled=true",
                "--set",
                "broker.clusterName=prod",
                "--set",
                "broker.issuer=https://i",
                "--set",
                "broker.tls.mode=cert-manager",
            ],
            "issuerRef is required",
        ),
        (&["--set", "broker.clusterName=bad name"], "clusterName"),
    ];
    for (args, want) in cases {
        let mut all = vec!["template", "x", chart];
        all.extend_from_slice(args);
        let out = run_helm(&all).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} rendered");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn rendered_defaults_are_hardened() {
    let (rendered, docs) = render(&[
        "--set",
        "agent.enabled=true",
        "--set",
        "agent.issuer=https://issuer",
    ]);
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let dep = find("Deployment");
    assert_eq!(dep["spec"]["replicas"], 2);
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
        "9999"
    );
    let mwc = find("MutatingWebhookConfiguration");
    let w = &mwc["webhooks"][0];
    // The chart's own pods are never sent to the webhook (it could not start
    // while down with failurePolicy Fail).
    let opt_out = &w["objectSelector"]["matchExpressions"][0];
    assert_eq!(opt_out["operator"], "NotIn");
    let label = opt_out["key"].as_str().unwrap();
    assert_eq!(dep["spec"]["template"]["metadata"]["labels"][label], "true");
    assert_eq!(w["sideEffects"], "None");
    assert_eq!(w["reinvocationPolicy"], "IfNeeded");
    assert_eq!(w["admissionReviewVersions"][0], "v1");
    assert!(w["timeoutSeconds"].is_number() && w["failurePolicy"].is_string());
    assert!(w["clientConfig"]["caBundle"]
        .as_str()
        .is_some_and(|s| s.len() > 100));
    let ds = find("DaemonSet");
    assert_eq!(ds["spec"]["template"]["metadata"]["labels"][label], "true");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    assert_eq!(spec["tolerations"][0]["operator"], "Exists");
    assert_eq!(
        ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        "10%"
    );
    let init = &spec["initContainers"][0];
    assert_eq!(
        init["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN"])
    );
    assert_eq!(init["securityContext"]["privileged"], false);
    let agent = &spec["containers"][0];
    assert_eq!(
        agent["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_BIND_SERVICE"])
    );
    assert!(agent.get("ports").is_none(), "hostPorts only when asked");
    assert!(
        rendered.contains("/openid/v1/jwks"),
        "agent RBAC reads the JWKS"
    );
    assert!(!rendered.contains("privileged: true"));
}

/// `helm template pod-identity <chart> -n pod-identity <extra>`: the text
/// and its documents.
fn render(extra: &[&str]) -> (String, Vec<serde_json::Value>) {
    e2e_tests::helm::render(extra).unwrap()
}

/// The flags the chart renders are the binaries' real flags: both start
/// with exactly the rendered arguments (ports, files and addresses swapped
/// for loopback and temp files).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_flags_are_accepted_by_the_binaries() {
    use e2e_tests::agent::SigningKey;
    use e2e_tests::harness::{free_port, make_certs};
    let agent_values = chart_dir().join("ci/agent-values.yaml");
    let (_, docs) = render(&[
        "-f",
        agent_values.to_str().unwrap(),
        "--set",
        "webhook.missingInjectionAudit.enabled=true",
    ]);
    let args_of = |kind: &str| -> Vec<String> {
        let d = docs.iter().find(|d| d["kind"] == kind).unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &certs.key_pem).unwrap();
    std::fs::write(
        dir.path().join("sa.json"),
        r#"{"apiVersion":"v1","kind":"List","items":[]}"#,
    )
    .unwrap();
    let key = SigningKey::generate("k").unwrap();
    std::fs::write(
        dir.path().join("jwks.json"),
        serde_json::json!({"keys": [key.jwk()]}).to_string(),
    )
    .unwrap();

    let (wport, wmetrics) = (free_port(), free_port());
    let mut webhook: Vec<String> = args_of("Deployment")
        .into_iter()
        .map(|a| match a.split_once('=') {
            Some(("--port", _)) => format!("--port={wport}"),
            Some(("--metrics-port", _)) => format!("--metrics-port={wmetrics}"),
            Some(("--tls-cert", _)) => {
                format!("--tls-cert={}", dir.path().join("tls.crt").display())
            }
            Some(("--tls-key", _)) => format!("--tls-key={}", dir.path().join("tls.key").display()),
            _ => a,
        })
        .collect();
    assert!(
        webhook.contains(&"--missing-injection-audit-interval=1m".to_string()),
        "{webhook:?}"
    );
    webhook.push("--bind-address=127.0.0.1".into());
    webhook.push(format!(
        "--service-accounts={}",
        dir.path().join("sa.json").display()
    ));

    let (aport, ahealth, ametrics) = (free_port(), free_port(), free_port());
    let mut agent: Vec<String> = args_of("DaemonSet")
        .into_iter()
        .filter(|a| !a.starts_with("--listen="))
        .map(|a| match a.split_once('=') {
            Some(("--health-listen", _)) => format!("--health-listen=127.0.0.1:{ahealth}"),
            Some(("--metrics-listen", _)) => format!("--metrics-listen=127.0.0.1:{ametrics}"),
            _ => a,
        })
        .collect();
    agent.push(format!("--listen=127.0.0.1:{aport}"));
    agent.push(format!(
        "--jwks-file={}",
        dir.path().join("jwks.json").display()
    ));

    for (bin, args, ready) in [
        (
            "pod-identity-webhook",
            webhook,
            format!("http://127.0.0.1:{wmetrics}/readyz"),
        ),
        (
            "credential-agent",
            agent,
            format!("http://127.0.0.1:{ahealth}/readyz"),
        ),
    ] {
        starts(bin, &args, &ready).await;
    }

    // Pod Identity: the broker (its API server and keys swapped for
    // loopback; /healthz, as readiness needs the associations listed) and
    // the agent's Pod Identity backend pointed at it.
    let broker_values = chart_dir().join("ci/broker-values.yaml");
    let (_, docs) = render(&["-f", broker_values.to_str().unwrap()]);
    let args_of = |kind: &str, component: &str| -> Vec<String> {
        let d = docs
            .iter()
            .find(|d| {
                d["kind"] == kind
                    && d["metadata"]["labels"]["app.kubernetes.io/component"] == component
            })
            .unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    std::fs::write(dir.path().join("ca.crt"), &certs.ca_pem).unwrap();
    let (bport, bhealth, bmetrics) = (free_port(), free_port(), free_port());
    let path = |f: &str| dir.path().join(f).display().to_string();
    let mut broker: Vec<String> = args_of("Deployment", "broker")
        .into_iter()
        .map(|a| match a.split_once('=') {
            Some(("--listen", _)) => format!("--listen=127.0.0.1:{bport}"),
            Some(("--health-listen", _)) => format!("--health-listen=127.0.0.1:{bhealth}"),
            Some(("--metrics-listen", _)) => format!("--metrics-listen=127.0.0.1:{bmetrics}"),
            Some(("--tls-cert", _)) => format!("--tls-cert={}", path("tls.crt")),
            Some(("--tls-key", _)) => format!("--tls-key={}", path("tls.key")),
            _ => a,
        })
        .collect();
    assert!(
        broker.contains(&"--cluster-name=prod".to_string()),
        "{broker:?}"
    );
    broker.push("--kube-api-url=https://127.0.0.1:1".into());
    broker.push(format!("--jwks-file={}", path("jwks.json")));
    starts(
        "credential-agent",
        &broker,
        &format!("http://127.0.0.1:{bhealth}/healthz"),
    )
    .await;
    let (aport, ahealth, ametrics) = (free_port(), free_port(), free_port());
    let mut agent: Vec<String> = args_of("DaemonSet", "agent")
        .into_iter()
        .filter(|a| !a.starts_with("--listen="))
        .map(|a| match a.split_once('=') {
            Some(("--health-listen", _)) => format!("--health-listen=127.0.0.1:{ahealth}"),
            Some(("--metrics-listen", _)) => format!("--metrics-listen=127.0.0.1:{ametrics}"),
            Some(("--eks-auth-ca-file", _)) => format!("--eks-auth-ca-file={}", path("ca.crt")),
            _ => a,
        })
        .collect();
    assert!(
        agent
            .iter()
            .any(|a| a.starts_with("--eks-auth-endpoint=https://pod-identity-broker."))
            && agent.contains(&"--eks-auth-unsigned".to_string()),
        "{agent:?}"
    );
    agent.push(format!("--listen=127.0.0.1:{aport}"));
    agent.push(format!("--jwks-file={}", path("jwks.json")));
    starts(
        "credential-agent",
        &agent,
        &format!("http://127.0.0.1:{ahealth}/readyz"),
    )
    .await;
}

/// Starts `bin` with `args` and waits for `ready` to answer 200.
async fn starts(bin: &str, args: &[String], ready: &str) {
    use e2e_tests::harness::workspace_bin;
    let mut child = std::process::Command::new(workspace_bin(bin).unwrap())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut ok = false;
    while std::time::Instant::now() < deadline {
        if reqwest::get(ready)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ok = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        ok,
        "{bin} {args:?} did not become ready:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
