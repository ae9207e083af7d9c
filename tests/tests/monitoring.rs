//! The chart's monitoring, tested against Debian's Prometheus
//! (`scripts/ensure-prometheus.sh`):
//!
//! - `promtool check rules` on the rendered PrometheusRule, and `promtool
//!   test rules` with `charts/pod-identity/tests/alerts/alerts_test.yaml`,
//!   which makes every alert fire on the series that should fire it and stay
//!   quiet on healthy ones;
//! - a real Prometheus server scraping the release webhook and agent (the
//!   image's static builds) and the Pod Identity broker during a small
//!   scenario: admissions, a warning, credential requests, an STS error, a
//!   role over the per-identity cap, connections over the per-peer cap, a
//!   pod missing injection, a broker AssumeRole denied. Every
//!   metric an alert or a dashboard query names exists in what the binaries
//!   export, every dashboard panel returns series, and the alerts the
//!   scenario should trigger are pending or firing (their `for:` durations
//!   are promtool's to test), the health alerts not;
//! - the chart renders with monitoring on and off.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e_tests::agent::*;
use e2e_tests::harness::*;
use e2e_tests::helm::{chart_dir, helm_ok, run_helm};
use serde_json::{json, Value};

const WEBHOOK_JOB: &str = "pod-identity-webhook";
const AGENT_JOB: &str = "pod-identity/pod-identity-agent";
const BROKER_JOB: &str = "pod-identity-broker";
/// The chart's values that add the broker, and with it its alerts.
const BROKER: [&str; 3] = [
    "broker.enabled=true",
    "broker.clusterName=prod",
    "broker.issuer=https://kubernetes.default.svc",
];

fn prometheus_dir() -> Result<std::path::PathBuf> {
    if let Some(d) = std::env::var_os("POD_IDENTITY_PROMETHEUS") {
        return Ok(d.into());
    }
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/ensure-prometheus.sh"))
        .stderr(Stdio::inherit())
        .output()?;
    ensure!(out.status.success(), "scripts/ensure-prometheus.sh failed");
    Ok(String::from_utf8(out.stdout)?.trim().into())
}

fn render(sets: &[&str], show_only: Option<&str>) -> Result<String> {
    let chart = chart_dir().display().to_string();
    let mut args = vec![
        "template",
        "pod-identity",
        chart.as_str(),
        "--namespace",
        "pod-identity",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    if let Some(t) = show_only {
        args.extend(["--show-only", t]);
    }
    helm_ok(&args)
}

/// The rendered PrometheusRule's groups, as a Prometheus rule file.
fn rule_file(sets: &[&str]) -> Result<Value> {
    let mut all = vec!["metrics.prometheusRule.enabled=true"];
    all.extend_from_slice(sets);
    let rendered = render(&all, Some("templates/prometheusrule.yaml"))?;
    let rule: Value = serde_yaml::from_str(&rendered)?;
    ensure!(rule["kind"] == "PrometheusRule", "{rendered}");
    Ok(json!({"groups": rule["spec"]["groups"]}))
}

fn alerts(rules: &Value) -> Vec<Value> {
    rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn promtool(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(prometheus_dir()?.join("promtool"))
        .args(args)
        .current_dir(dir)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "promtool {args:?} failed:\n{text}");
    Ok(text)
}

#[test]
fn promtool_checks_and_unit_tests_every_alert() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = rule_file(&BROKER)?;
    std::fs::write(dir.path().join("full.yaml"), serde_yaml::to_string(&rules)?)?;
    let checked = promtool(dir.path(), &["check", "rules", "full.yaml"])?;
    let list = alerts(&rules);
    ensure!(
        checked.contains(&format!("SUCCESS: {} rules found", list.len())),
        "{checked}"
    );
    // Every alert carries its runbook, and is unit tested both ways.
    let tests = std::fs::read_to_string(chart_dir().join("tests/alerts/alerts_test.yaml"))?;
    for a in &list {
        let name = a["alert"].as_str().context("an alert without a name")?;
        for k in ["summary", "description", "runbook"] {
            ensure!(
                a["annotations"][k].as_str().is_some_and(|s| s.len() > 10),
                "{name} has no {k}"
            );
        }
        ensure!(
            tests.contains(&format!("\"{name} fires\""))
                && tests.contains(&format!("\"{name} stays quiet when healthy\"")),
            "{name} has no promtool test of firing and of staying quiet"
        );
    }
    // promtool compares annotations exactly; the unit tests check when an
    // alert fires, so they run on the rules without them.
    let mut bare = rules.clone();
    for g in bare["groups"].as_array_mut().into_iter().flatten() {
        for r in g["rules"].as_array_mut().into_iter().flatten() {
            r.as_object_mut().map(|o| o.remove("annotations"));
        }
    }
    std::fs::write(dir.path().join("rules.yaml"), serde_yaml::to_string(&bare)?)?;
    std::fs::write(dir.path().join("alerts_test.yaml"), &tests)?;
    promtool(dir.path(), &["test", "rules", "alerts_test.yaml"])?;
    // And they can fail: an alert whose threshold is off by a lot does not
    // fire when its test says it should.
    let mut broken = bare.clone();
    for g in broken["groups"].as_array_mut().into_iter().flatten() {
        for r in g["rules"].as_array_mut().into_iter().flatten() {
            if r["alert"] == "PodIdentityPodsMissingInjection" {
                r["expr"] = json!(r["expr"].as_str().unwrap_or_default().replace("> 0", "> 5"));
            }
        }
    }
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(&broken)?,
    )?;
    let failed = promtool(dir.path(), &["test", "rules", "alerts_test.yaml"]);
    ensure!(
        failed
            .as_ref()
            .is_err_and(|e| format!("{e}").contains("PodIdentityPodsMissingInjection fires")),
        "a broken rule passed its test: {failed:?}"
    );
    Ok(())
}

#[test]
fn monitoring_renders_only_when_enabled() -> Result<()> {
    let off = render(
        &["agent.enabled=true", "agent.issuer=https://issuer.example"],
        None,
    )?;
    ensure!(!off.contains("kind: PrometheusRule") && !off.contains("grafana_dashboard"));
    let on = render(
        &[
            "agent.enabled=true",
            "agent.issuer=https://issuer.example",
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.labels.release=kube-prometheus-stack",
            "metrics.dashboard.enabled=true",
            "metrics.dashboard.namespace=monitoring",
        ],
        None,
    )?;
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&on)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or(Value::Null))
        .collect();
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .context("no PrometheusRule")?;
    ensure!(rule["metadata"]["labels"]["release"] == "kube-prometheus-stack");
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .context("no dashboard ConfigMap")?;
    ensure!(cm["metadata"]["namespace"] == "monitoring");
    let dash: Value =
        serde_json::from_str(cm["data"]["pod-identity.json"].as_str().unwrap_or_default())?;
    ensure!(
        dash["panels"].as_array().is_some_and(|p| p.len() >= 10),
        "{dash}"
    );
    // The broker's alerts come with the broker.
    let groups = |rules: &Value| -> Vec<String> {
        rules["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["name"].as_str().map(str::to_string))
            .collect()
    };
    let without = groups(&rule_file(&[])?);
    ensure!(
        !without.iter().any(|g| g == "pod-identity-broker"),
        "{without:?}"
    );
    let with = groups(&rule_file(&BROKER)?);
    ensure!(with.iter().any(|g| g == "pod-identity-broker"), "{with:?}");
    // Thresholds follow the values: the API server timeout and the days.
    let rules = rule_file(&[
        "webhook.admission.timeoutSeconds=4",
        "metrics.prometheusRule.certificateExpiryDays=30",
    ])?;
    let expr = |name: &str| {
        alerts(&rules)
            .into_iter()
            .find(|a| a["alert"] == name)
            .and_then(|a| a["expr"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    ensure!(
        expr("PodIdentityWebhookSlow").trim_end().ends_with("> 2"),
        "{}",
        expr("PodIdentityWebhookSlow")
    );
    ensure!(expr("PodIdentityWebhookCertificateExpiresSoon").ends_with("< 2592000"));
    // The schema refuses nonsense, and lint passes with everything on.
    let chart = chart_dir().display().to_string();
    let bad = run_helm(&[
        "template",
        "x",
        &chart,
        "--set",
        "metrics.prometheusRule.certificateExpiryDays=0",
    ])?;
    ensure!(!bad.status.success(), "certificateExpiryDays=0 accepted");
    let bad = run_helm(&[
        "template",
        "x",
        &chart,
        "--set",
        "metrics.dashboard.enabeld=true",
    ])?;
    ensure!(!bad.status.success(), "a misspelled value accepted");
    helm_ok(&[
        "lint",
        "--strict",
        &chart,
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.dashboard.enabled=true",
    ])?;
    Ok(())
}

/// A Prometheus server on loopback scraping `targets` (job, port) every second.
struct Prometheus {
    url: String,
    client: reqwest::Client,
    _proc: Proc,
}

impl Prometheus {
    async fn start(dir: &Path, rules: &Value, targets: &[(&str, u16)]) -> Result<Prometheus> {
        std::fs::write(dir.join("rules.yaml"), serde_yaml::to_string(rules)?)?;
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [dir.join("rules.yaml")],
            "scrape_configs": targets.iter().map(|(job, port)| json!(
                {"job_name": job, "static_configs": [{"targets": [format!("127.0.0.1:{port}")]}]}
            )).collect::<Vec<_>>(),
        });
        std::fs::write(dir.join("prometheus.yml"), serde_yaml::to_string(&config)?)?;
        let port = free_port();
        let proc = spawn(
            "prometheus",
            &prometheus_dir()?.join("prometheus"),
            &[
                format!("--config.file={}", dir.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn".into(),
            ],
            dir,
        )?;
        let p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            _proc: proc,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = p.client.get(format!("{}/-/ready", p.url)).send().await {
                if r.status().is_success() {
                    return Ok(p);
                }
            }
            if p._proc.exited() || Instant::now() > deadline {
                bail!("prometheus did not start:\n{}", tail(&p._proc.log));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let v: Value = self
            .client
            .get(format!("{}{path}?{}", self.url, q.join("&")))
            .send()
            .await?
            .json()
            .await?;
        ensure!(v["status"] == "success", "{path} {query:?}: {v}");
        Ok(v["data"].clone())
    }

    async fn query(&self, q: &str) -> Result<Vec<Value>> {
        Ok(self.api("/api/v1/query", &[("query", q)]).await?["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Metric family names of the scraped targets' metadata (families with
    /// samples).
    async fn exported(&self) -> Result<BTreeSet<String>> {
        let data = self.api("/api/v1/targets/metadata", &[]).await?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["metric"].as_str().map(str::to_string))
            .collect())
    }

    async fn alert_states(&self) -> Result<Vec<(String, String)>> {
        let data = self.api("/api/v1/alerts", &[]).await?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    a["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The project's metric names an expression refers to, as families (a
/// counter's `_total`, a histogram's `_bucket`, `_sum`, `_count` removed).
fn metric_families(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if word.starts_with("pod_identity_webhook_") || word.starts_with("credential_agent_") {
            let mut w = word.as_str();
            for suffix in ["_total", "_bucket", "_count", "_sum"] {
                w = w.strip_suffix(suffix).unwrap_or(w);
            }
            out.insert(w.to_string());
        }
        word.clear();
    }
    out
}

fn dashboard_queries(dash: &Value) -> Vec<(String, Vec<String>)> {
    dash["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let exprs = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str())
                .map(|e| {
                    e.replace("$__rate_interval", "1m")
                        .replace("$webhook_job", WEBHOOK_JOB)
                        .replace("$agent_job", AGENT_JOB)
                        .replace("$broker_job", BROKER_JOB)
                })
                .collect();
            (p["title"].as_str().unwrap_or_default().to_string(), exprs)
        })
        .collect()
}

async fn scenario(
    cluster: &Cluster,
    agent: &Agent,
    issuer: &Issuer,
    proxy: &FaultProxy,
    round: usize,
) -> Result<()> {
    // Admissions: an injected pod, and one whose role ARN is invalid (a warning).
    for sa in ["app", "typo"] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{sa}-{round}")},
            "spec": {"serviceAccountName": sa, "automountServiceAccountToken": false,
                     "containers": [{"name": "c", "image": "x"}]}});
        cluster.create("/api/v1/namespaces/apps/pods", &pod).await?;
    }
    // Credentials: fetched, then cached.
    let q = role_query(ROLE);
    let ok = issuer.token(&claims("apps", "app", "uid-app", None));
    for _ in 0..2 {
        let (status, _, body) = agent.get(Some(&ok), &q).await?;
        ensure!(status == 200, "{body}");
    }
    // Over the per-identity role cap (--max-roles-per-identity=1): 429.
    let (status, _, body) = agent
        .get(
            Some(&ok),
            &role_query("arn:aws:iam::123456789012:role/second-role"),
        )
        .await?;
    ensure!(status == 429, "{status} {body}");
    // An STS error, for an identity not cached yet.
    proxy.set(Fault::Error(403, "AccessDenied"));
    let sa = format!("denied-{round}");
    let denied = issuer.token(&claims("apps", &sa, &format!("uid-{sa}"), None));
    let (status, _, body) = agent.get(Some(&denied), &q).await?;
    proxy.set(Fault::Pass);
    ensure!(status == 403, "{status} {body}");
    // Connections over the per-peer cap (--max-connections-per-peer=2).
    let to: std::net::SocketAddr = format!("127.0.0.1:{}", agent.port).parse()?;
    let from: std::net::IpAddr = "127.0.0.7".parse()?;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(from, to).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(held);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_real_binaries() -> Result<()> {
    let bins = static_release_bins(&["pod-identity-webhook", "credential-agent"], &[])?;
    let profile = format!("{STATIC_TARGET}/release");
    let cluster = Cluster::start().await?;
    e2e_tests::broker::install_crd(&cluster)?;
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(&moto.url).await?;
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    let mut args = node_args(&issuer, &proxy.url);
    args.extend([
        "--max-roles-per-identity=1".to_string(),
        "--max-connections-per-peer=2".into(),
    ]);
    let agent = Agent::start_bin(&bins.join("credential-agent"), "serve", &args, &[]).await?;
    let hook = Webhook::start_with_profile(
        &cluster,
        &[
            "--missing-injection-audit-interval=1s",
            "--aws-default-region=us-east-1",
        ],
        &profile,
    )
    .await?;
    hook.register(&cluster, "pod-identity-webhook").await?;
    wait_for_webhook(&cluster, ROLE).await?;
    cluster.create_namespace("apps").await?;
    for (sa, role) in [
        ("app", ROLE),
        ("typo", "arn:aws:iam::123:role/short-account"),
    ] {
        cluster
            .create(
                "/api/v1/namespaces/apps/serviceaccounts",
                &json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": sa, "annotations": {"eks.amazonaws.com/role-arn": role}}}),
            )
            .await?;
    }
    // A pod created before its ServiceAccount asked for a role: missing
    // injection once the annotation is added.
    cluster
        .create(
            "/api/v1/namespaces/apps/serviceaccounts",
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "late"}}),
        )
        .await?;
    cluster
        .create(
            "/api/v1/namespaces/apps/pods",
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "uninjected"},
                    "spec": {"serviceAccountName": "late", "automountServiceAccountToken": false,
                             "containers": [{"name": "c", "image": "x"}]}}),
        )
        .await?;
    // The broker, with an association for apps/pia and a pod of it.
    let broker_dir = tempfile::tempdir()?;
    let broker =
        e2e_tests::broker::start_broker(&cluster, &proxy.url, broker_dir.path(), &[]).await?;
    cluster
        .create(
            "/api/v1/namespaces/apps/serviceaccounts",
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "pia"}}),
        )
        .await?;
    cluster
        .create(
            "/apis/pod-identity.io/v1alpha1/podidentityassociations",
            &json!({"apiVersion": "pod-identity.io/v1alpha1", "kind": "PodIdentityAssociation",
                    "metadata": {"name": "pia"},
                    "spec": {"namespace": "apps", "serviceAccount": "pia", "roleArn": ROLE}}),
        )
        .await?;
    let (_, pia_token) =
        e2e_tests::broker::pod(&cluster, "pia", "pia-1", e2e_tests::broker::AUDIENCE).await?;
    let (status, _, body) = cluster
        .request(
            reqwest::Method::PUT,
            "/api/v1/namespaces/apps/serviceaccounts/late",
            Some(&json!({"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": "late", "annotations": {"eks.amazonaws.com/role-arn": ROLE}}})),
        )
        .await?;
    ensure!(
        status == 200,
        "annotating the ServiceAccount: {status} {body}"
    );

    let metrics_port = |url: &str| -> Result<u16> {
        Ok(url
            .rsplit(':')
            .next()
            .context("port")?
            .trim_end_matches('/')
            .parse()?)
    };
    let rules = rule_file(&BROKER)?;
    let prom = Prometheus::start(
        dir.path(),
        &rules,
        &[
            (WEBHOOK_JOB, hook.metrics_port),
            (AGENT_JOB, metrics_port(&agent.metrics)?),
            (BROKER_JOB, metrics_port(&broker.agent.metrics)?),
        ],
    )
    .await?;

    // Prometheus applies its targets a few seconds after start: the
    // scenario starts once both have been scraped, so that every increase
    // is seen.
    let result = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while prom.query("up == 1").await?.len() < 3 {
            ensure!(Instant::now() < deadline, "Prometheus never scraped the three targets");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for round in 0..2 {
            scenario(&cluster, &agent, &issuer, &proxy, round).await?;
            // The broker's AssumeRole denied by STS.
            proxy.set(Fault::Error(403, "AccessDenied"));
            let answer = broker.one(&pia_token).await;
            proxy.set(Fault::Pass);
            let answer = answer?;
            ensure!(answer.to_string().contains("AccessDenied"), "{answer}");
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        // What the binaries export: every family they declare (`# TYPE`),
        // with samples or not yet (Prometheus keeps metadata only for the
        // families with samples).
        let mut exported = BTreeSet::new();
        for url in [
            format!("http://127.0.0.1:{}/metrics", hook.metrics_port),
            format!("{}/metrics", agent.metrics),
            format!("{}/metrics", broker.agent.metrics),
        ] {
            let text = reqwest::get(&url).await?.text().await?;
            exported.extend(text.lines().filter_map(|l| {
                Some(l.strip_prefix("# TYPE ")?.split(' ').next()?.to_string())
            }));
        }
        let scraped = prom.exported().await?;
        ensure!(
            scraped.contains("credential_agent_sts_errors") && scraped.contains("pod_identity_webhook_mutations"),
            "Prometheus did not scrape both binaries: {scraped:?}"
        );
        let known = |family: &str| exported.contains(family) || exported.contains(&format!("{family}_total"));
        // Every alert expression: it names only exported metrics, and runs.
        for a in alerts(&rules) {
            let expr = a["expr"].as_str().unwrap_or_default();
            for f in metric_families(expr) {
                ensure!(known(&f), "alert {} names {f}, which neither binary exports: {exported:?}", a["alert"]);
            }
            prom.query(expr).await.with_context(|| format!("alert {}", a["alert"]))?;
        }
        // Every dashboard panel: its metrics exported, and series to show.
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(chart_dir().join("files/dashboard.json"))?)?;
        for (title, exprs) in dashboard_queries(&dash) {
            let mut series = 0;
            for e in &exprs {
                for f in metric_families(e) {
                    ensure!(known(&f), "panel {title:?} names {f}, which neither binary exports");
                }
                series += prom.query(e).await.with_context(|| format!("panel {title:?}: {e}"))?.len();
            }
            ensure!(series > 0, "panel {title:?} shows nothing: {exprs:?}");
        }
        // The alerts this scenario triggers are pending (or firing); the
        // health alerts are not.
        let deadline = Instant::now() + Duration::from_secs(30);
        let want = [
            "PodIdentityAgentStsErrors",
            "PodIdentityAgentIdentityLimited",
            "PodIdentityAgentConnectionsRejected",
            "PodIdentityPodsMissingInjection",
            "PodIdentityBrokerStsErrors",
        ];
        loop {
            let states = prom.alert_states().await?;
            let active = |name: &str| states.iter().any(|(n, s)| n == name && (s == "pending" || s == "firing"));
            for quiet in [
                "PodIdentityWebhookDown",
                "PodIdentityAgentDown",
                "PodIdentityWebhookNotReady",
                "PodIdentityAgentServingStale",
                "PodIdentityBrokerDown",
                "PodIdentityBrokerNotReady",
                "PodIdentityBrokerCertificateExpiresSoon",
            ] {
                ensure!(!active(quiet), "{quiet} is active on a healthy setup: {states:?}");
            }
            if want.iter().all(|w| active(w)) {
                break;
            }
            if Instant::now() > deadline {
                let data = prom
                    .query(r#"{__name__=~"credential_agent_requests_total|credential_agent_sts_errors_total|pod_identity_webhook_pods_missing_injection|up"}"#)
                    .await?;
                let data: Vec<String> = data
                    .iter()
                    .filter(|s| s["value"][1] != "0")
                    .map(|s| format!("{} {}", s["metric"], s["value"][1]))
                    .collect();
                bail!("expected {want:?} pending or firing, got {states:?}; series: {data:#?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::Ok(())
    }
    .await;
    result.map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n--- prometheus:\n{}\n--- agent:\n{}\n--- broker:\n{}\n--- webhook:\n{}",
            tail(&prom._proc.log),
            agent.log_tail(),
            broker.agent.log_tail(),
            hook.log()
        )
    })
}
