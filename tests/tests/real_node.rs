//! Real pods on a real node (tests/src/node.rs: kubelet 1.20.2, containerd,
//! runc): the real webhook registered by URL, moto as STS, the kubelet
//! mounting the projected tokens, aws-sdk-rust inside the containers, and
//! the real `kubectl` for exec, logs and apply, as a user would.
//!
//! 1. web identity: a non-root container reads the token the kubelet
//!    mounted (audience, lifetime, bound to the pod) and the SDK gets the
//!    role's assumed-role ARN from moto;
//! 2. agent mode: the chart's agent pod, from the project's image, with
//!    `setup-link` on a test-made interface; a pod in its own network
//!    namespace reaches 169.254.170.23 and gets credentials;
//! 3. a PodIdentityAssociation applied with kubectl: EKS Pod Identity's
//!    variables, the `eks-pod-identity-token` the kubelet mounted (audience
//!    pods.eks.amazonaws.com, bound to the pod) read by a non-root
//!    container, and credentials for it through the chart's agent pod (its
//!    Pod Identity backend) and the chart's broker pod (host network here,
//!    with moto behind the recording STS proxy): the association's role
//!    with the pod's session tags;
//! 4. sidecar mode on this 1.20 node: the webhook's fallback (web identity,
//!    with a warning kubectl prints) on a pod that runs;
//! 5. the webhook down: `failurePolicy: Fail` refuses the pod, `Ignore`
//!    starts it uninjected, and `pod-identity doctor` says so on the real pod.
//!
//! One node per test binary: all scenarios run in one test, in order.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use e2e_tests::agent::{Moto, ROLE};
use e2e_tests::clients::{caller_arn, Client};
use e2e_tests::harness::{free_port, wait_for_webhook, Cluster, Webhook};
use e2e_tests::helm::{chart_dir, helm_ok};
use e2e_tests::iam::Tools;
use e2e_tests::node::*;
use e2e_tests::sts_recorder::StsRecorder;
use serde_json::{json, Value};

const BROKER_ROLE: &str = "arn:aws:iam::123456789012:role/pod-identity-broker";
const TOKEN_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

struct Env {
    cluster: Cluster,
    moto: Moto,
    /// The broker's port (the chart's broker pod, on the host's network)
    /// and its certificate; the STS its AssumeRole calls go through.
    broker_port: u16,
    broker_certs: e2e_tests::harness::TestCerts,
    sts: StsRecorder,
    node: Node,
    hook: Option<Webhook>,
    agent_port: u16,
    project_image: String,
    home: tempfile::TempDir,
}

fn claims_of(jwt: &str) -> Result<Value> {
    let payload = jwt.trim().split('.').nth(1).context("not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Applies `doc` with `kubectl apply -f -` (via a file), returning what
/// kubectl printed on stderr (its admission warnings).
fn apply(env: &Env, doc: &Value) -> Result<String> {
    let file = env.home.path().join(format!("apply-{}.json", free_port()));
    std::fs::write(&file, doc.to_string())?;
    let out = kubectl_output(&env.cluster, &["apply", "-f", &file.display().to_string()])?;
    ensure!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn service_account(ns: &str, name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": name, "namespace": ns, "annotations": annotations}})
}

/// A pod of the test client image on this node, running as UID 1000 with
/// no fsGroup.
fn client_pod(ns: &str, name: &str, sa: &str, host_network: bool, moto: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": name, "namespace": ns},
    "spec": {
        "nodeName": NODE_NAME,
        "serviceAccountName": sa,
        "automountServiceAccountToken": false,
        "hostNetwork": host_network,
        "terminationGracePeriodSeconds": 1,
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
        "containers": [{
            "name": "app",
            "image": CLIENT_IMAGE,
            "imagePullPolicy": "Never",
            "env": [{"name": "AWS_ENDPOINT_URL_STS", "value": moto}],
        }],
    }})
}

fn exec(env: &Env, ns: &str, pod: &str, cmd: &[&str]) -> Result<String> {
    let mut args = vec!["exec", "-n", ns, pod, "--"];
    args.extend_from_slice(cmd);
    kubectl(&env.cluster, &args)
}

async fn web_identity(env: &Env) -> Result<()> {
    env.cluster.create_namespace("irsa").await?;
    apply(
        env,
        &service_account("irsa", "app", json!({"eks.amazonaws.com/role-arn": ROLE})),
    )?;
    let started = Instant::now();
    apply(env, &client_pod("irsa", "web", "app", true, &env.moto.url))?;
    let pod = wait_pod(&env.cluster, "irsa", "web", &["Running"]).await?;
    eprintln!(
        "real node: pod running {:?} after creation",
        started.elapsed()
    );
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The kubelet mounted the projected token the webhook asked for, and a
    // non-root container without fsGroup reads it.
    let whoami = exec(env, "irsa", "web", &["id", "-u"])?;
    ensure!(whoami.trim() == "1000", "the container runs as {whoami}");
    let token = exec(env, "irsa", "web", &["cat", TOKEN_PATH])?;
    let claims = claims_of(&token)?;
    ensure!(claims["aud"] == json!(["sts.amazonaws.com"]), "{claims}");
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    ensure!(
        lifetime == 86400,
        "token lifetime {lifetime} s, want the webhook's default 86400"
    );
    ensure!(
        claims["kubernetes.io"]["pod"] == json!({"name": "web", "uid": uid}),
        "the token is bound to the pod: {claims}"
    );
    ensure!(
        claims["sub"] == "system:serviceaccount:irsa:app",
        "{claims}"
    );
    // The SDK's default chain inside the container: web identity with moto.
    let arn = exec(env, "irsa", "web", &["/aws-sdk-probe"])?;
    ensure!(
        arn.trim()
            .starts_with("arn:aws:sts::123456789012:assumed-role/app-role/"),
        "aws-sdk-rust in the pod got {arn}"
    );
    Ok(())
}

/// The chart's agent DaemonSet (rendered by `helm template` with these
/// values) as a pod named `name` on the node (no scheduler here). Applies
/// the ServiceAccount and RBAC objects it renders with it.
async fn chart_agent_pod(env: &Env, name: &str, interface: &str) -> Result<()> {
    let (health, metrics) = (free_port(), free_port());
    let (repo, tag) = env.project_image.rsplit_once(':').context("image tag")?;
    let sets = [
        "agent.enabled=true".to_string(),
        "agent.issuer=https://kubernetes.default.svc".into(),
        // The default (the `kubernetes` Service's ClusterIP) needs kube-proxy,
        // and this test talks to loopback only.
        format!("agent.jwksURL={}/openid/v1/jwks", env.cluster.url),
        "agent.extraArgs[0]=--jwks-ca-file=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
            .into(),
        "agent.extraArgs[1]=--jwks-token-file=/var/run/secrets/kubernetes.io/serviceaccount/token"
            .into(),
        format!("agent.stsEndpoint={}", env.moto.url),
        "agent.region=us-east-1".into(),
        format!("agent.listen[0]={AGENT_ADDRESS}:{}", env.agent_port),
        format!("agent.healthPort={health}"),
        format!("agent.metricsPort={metrics}"),
        format!("agent.setupLink.interface={interface}"),
        format!("image.repository={repo}"),
        format!("image.tag={tag}"),
        "image.pullPolicy=Never".into(),
        // Pod Identity through the chart's broker pod (on the host's
        // network here, as the agent), trusting the CA of its TLS Secret.
        "agent.podIdentity.enabled=true".into(),
        format!(
            "agent.podIdentity.endpoint=https://127.0.0.1:{}",
            env.broker_port
        ),
        "agent.podIdentity.clusterName=prod".into(),
        "agent.podIdentity.sign=false".into(),
        "agent.podIdentity.caSecret=broker-tls".into(),
    ];
    apply(env, &broker_tls_secret(env))?;
    let ds = chart_workload(env, &sets, "templates/agent.yaml", "DaemonSet").await?;
    run_template(env, &ds, name, |_| {}).await
}

/// `helm template pi <chart> -n pod-identity --set <sets> --show-only
/// <template>`: applies every object it renders but the `kind` one (the
/// workload), which it returns.
async fn chart_workload(env: &Env, sets: &[String], template: &str, kind: &str) -> Result<Value> {
    let kubeconfig = env.cluster.kubeconfig.display().to_string();
    let chart = chart_dir().display().to_string();
    let mut args: Vec<String> = [
        "template",
        "pi",
        &chart,
        "--namespace",
        "pod-identity",
        "--kubeconfig",
        &kubeconfig,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    args.extend(["--show-only".into(), template.into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let rendered = helm_ok(&refs).context("helm template")?;
    let mut workload = None;
    for doc in serde_yaml::Deserializer::from_str(&rendered) {
        let v = Value::deserialize(doc)?;
        if v["kind"] == kind {
            workload = Some(v);
        } else if v.is_object() {
            apply(env, &v)?;
        }
    }
    workload.with_context(|| format!("no {kind} rendered"))
}

/// The workload's pod template as a pod named `name` on the node (no
/// scheduler here), `adapt`ed first.
async fn run_template(
    env: &Env,
    workload: &Value,
    name: &str,
    adapt: impl FnOnce(&mut Value),
) -> Result<()> {
    let mut template = workload["spec"]["template"].clone();
    template["apiVersion"] = json!("v1");
    template["kind"] = json!("Pod");
    template["metadata"]["name"] = json!(name);
    template["metadata"]["namespace"] = json!("pod-identity");
    template["spec"]["nodeName"] = json!(NODE_NAME);
    template["spec"]["terminationGracePeriodSeconds"] = json!(1);
    adapt(&mut template["spec"]);
    // The token controller gives a ServiceAccount its token Secret a moment
    // after the ServiceAccount exists; until then the API server refuses
    // pods that mount it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match env
            .cluster
            .create("/api/v1/namespaces/pod-identity/pods", &template)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline && format!("{e}").contains("token") => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The broker's TLS Secret (a certificate for 127.0.0.1, where the agent
/// reaches it on this node), with the `ca.crt` the agent trusts.
fn broker_tls_secret(env: &Env) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": "broker-tls", "namespace": "pod-identity"},
           "stringData": {"tls.crt": env.broker_certs.cert_pem, "tls.key": env.broker_certs.key_pem,
                          "ca.crt": env.broker_certs.ca_pem}})
}

/// The chart's broker (rendered by `helm template`, TLS from the Secret
/// above) as a pod named `broker` on the node, with the objects it renders
/// with it (ServiceAccount, RBAC, Service). Adapted, as the agent's, to a
/// test that talks to loopback only: host network (the pod network here
/// routes nowhere but the agent's address), the API server and its keys by
/// URL with the pod's own ServiceAccount token and CA, STS at the recording
/// proxy, static AWS keys as the broker's own identity.
async fn chart_broker_pod(env: &Env, sts: &str) -> Result<()> {
    let (repo, tag) = env.project_image.rsplit_once(':').context("image tag")?;
    let sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let sets = [
        "broker.enabled=true".to_string(),
        "broker.replicas=1".into(),
        "broker.clusterName=prod".into(),
        "broker.issuer=https://kubernetes.default.svc".into(),
        format!("broker.jwksURL={}/openid/v1/jwks", env.cluster.url),
        format!("broker.stsEndpoint={sts}"),
        "broker.region=us-east-1".into(),
        format!("broker.port={}", env.broker_port),
        format!("broker.healthPort={}", free_port()),
        format!("broker.metricsPort={}", free_port()),
        "broker.tls.mode=secret".into(),
        "broker.tls.existingSecret=broker-tls".into(),
        format!("broker.extraArgs[0]=--jwks-ca-file={sa_dir}/ca.crt"),
        format!("broker.extraArgs[1]=--jwks-token-file={sa_dir}/token"),
        format!("broker.extraArgs[2]=--kube-api-url={}", env.cluster.url),
        format!("broker.extraArgs[3]=--kube-ca-file={sa_dir}/ca.crt"),
        format!("broker.extraArgs[4]=--kube-token-file={sa_dir}/token"),
        "broker.extraEnv[0].name=AWS_ACCESS_KEY_ID".into(),
        "broker.extraEnv[0].value=testing".into(),
        "broker.extraEnv[1].name=AWS_SECRET_ACCESS_KEY".into(),
        "broker.extraEnv[1].value=testing".into(),
        format!("image.repository={repo}"),
        format!("image.tag={tag}"),
        "image.pullPolicy=Never".into(),
    ];
    let d = chart_workload(env, &sets, "templates/broker.yaml", "Deployment").await?;
    run_template(env, &d, "broker", |spec| {
        spec["hostNetwork"] = json!(true);
        spec["dnsPolicy"] = json!("ClusterFirstWithHostNet");
    })
    .await?;
    wait_ready(env, "pod-identity", "broker").await
}

/// Whether this kernel can make dummy links (the chart's default
/// `setup-link`); some here cannot.
fn kernel_has_dummy_links() -> bool {
    let name = format!("pd{}", free_port());
    let made = std::process::Command::new("ip")
        .args(["link", "add", &name, "type", "dummy"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &name])
            .status();
    }
    made
}

/// The chart's agent pod as a user first meets it: `setup-link` making its
/// dummy interface. On a kernel without dummy links the init container
/// fails with a message saying what to set; with them, the link is made.
async fn default_setup_link(env: &mut Env) -> Result<()> {
    let interface = format!("pd{}", free_port());
    let dummy = kernel_has_dummy_links();
    if dummy {
        env.node.delete_on_drop(&interface);
    }
    chart_agent_pod(env, "agent-dummy", &interface).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pod = env
            .cluster
            .get("/api/v1/namespaces/pod-identity/pods/agent-dummy")
            .await?;
        let init = &pod["status"]["initContainerStatuses"][0];
        let terminated = [
            &init["state"]["terminated"],
            &init["lastState"]["terminated"],
        ]
        .into_iter()
        .find(|t| t.is_object())
        .cloned();
        if let Some(t) = terminated {
            if dummy {
                ensure!(
                    t["exitCode"] == 0,
                    "setup-link failed on a kernel with dummy links: {t}"
                );
            } else {
                ensure!(
                    t["exitCode"] != 0,
                    "setup-link succeeded without dummy links: {t}"
                );
                let logs = kubectl(
                    &env.cluster,
                    &[
                        "logs",
                        "-n",
                        "pod-identity",
                        "agent-dummy",
                        "-c",
                        "setup-link",
                    ],
                )
                .or_else(|_| {
                    kubectl(
                        &env.cluster,
                        &[
                            "logs",
                            "-n",
                            "pod-identity",
                            "agent-dummy",
                            "-c",
                            "setup-link",
                            "--previous",
                        ],
                    )
                })?;
                ensure!(
                    logs.contains("no dummy") && logs.contains("--interface"),
                    "setup-link's message does not say what to do: {logs}"
                );
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("setup-link never finished: {}", pod["status"]);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    kubectl(
        &env.cluster,
        &[
            "delete",
            "pod",
            "-n",
            "pod-identity",
            "agent-dummy",
            "--grace-period=0",
            "--force",
        ],
    )?;
    Ok(())
}

/// The chart's agent pod with `agent.setupLink.interface` naming an
/// existing interface (a veth pair made by the test).
async fn start_agent(env: &mut Env) -> Result<()> {
    let interface = env.node.add_veth()?;
    chart_agent_pod(env, "agent", &interface).await?;
    wait_ready(env, "pod-identity", "agent").await
}

async fn wait_ready(env: &Env, ns: &str, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pod = env
            .cluster
            .get(&format!("/api/v1/namespaces/{ns}/pods/{name}"))
            .await?;
        let ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            let logs = kubectl_output(&env.cluster, &["logs", "-n", ns, name, "--all-containers"])?;
            bail!(
                "{ns}/{name} not Ready in 90 s: {}\nlogs: {}{}",
                pod["status"],
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn agent_mode(env: &mut Env) -> Result<()> {
    env.cluster.create_namespace("pod-identity").await?;
    default_setup_link(env)
        .await
        .context("the chart's default setup-link")?;
    start_agent(env).await.context("the chart's agent pod")?;
    env.cluster.create_namespace("agent").await?;
    apply(
        env,
        &service_account(
            "agent",
            "app",
            json!({"eks.amazonaws.com/role-arn": ROLE, "eks.amazonaws.com/credential-mode": "agent"}),
        ),
    )?;
    // Its own network namespace: the only route is to the agent's address.
    apply(
        env,
        &client_pod("agent", "app", "app", false, &env.moto.url),
    )?;
    let pod = wait_pod(&env.cluster, "agent", "app", &["Running"]).await?;
    let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
    ensure!(
        ip.starts_with(&format!("169.254.{}.", env.node.subnet)),
        "pod IP {ip} is not on the node's link-local bridge"
    );
    let vars = exec(env, "agent", "app", &["env"])?;
    ensure!(
        vars.contains(&format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://{AGENT_ADDRESS}:{}/v1/credentials?role=",
            env.agent_port
        )) && !vars.contains("AWS_ROLE_ARN"),
        "agent mode env: {vars}"
    );
    let out = exec(env, "agent", "app", &["/aws-sdk-probe", "credentials"])?;
    let creds: Value = serde_json::from_str(out.trim()).with_context(|| out.clone())?;
    // The credentials are moto's for the role: STS says whose they are.
    let caller = caller_arn(
        Client::Boto3,
        &[
            (
                "AWS_ACCESS_KEY_ID".into(),
                creds["AccessKeyId"].as_str().unwrap_or_default().into(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                creds["SecretAccessKey"].as_str().unwrap_or_default().into(),
            ),
            (
                "AWS_SESSION_TOKEN".into(),
                creds["SessionToken"].as_str().unwrap_or_default().into(),
            ),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT_URL_STS".into(), env.moto.url.clone()),
        ],
        env.home.path(),
    )?;
    ensure!(
        caller.starts_with("arn:aws:sts::123456789012:assumed-role/app-role/"),
        "the agent's credentials belong to {caller}"
    );
    // The pod reaches nothing else: not the host's loopback services.
    let blocked = kubectl_output(
        &env.cluster,
        &[
            "exec",
            "-n",
            "agent",
            "app",
            "--",
            "wget",
            "-q",
            "-T",
            "2",
            "-O",
            "-",
            &env.moto.url,
        ],
    )?;
    ensure!(
        !blocked.status.success(),
        "the pod reached moto on the host's loopback"
    );
    Ok(())
}

/// A PodIdentityAssociation: the webhook injects EKS Pod Identity, the
/// kubelet mounts the `eks-pod-identity-token` (audience
/// pods.eks.amazonaws.com, bound to the pod), readable by a non-root
/// container, and aws-sdk-rust in the container gets the role's session,
/// tagged with the pod, through the chart's agent pod and the broker.
async fn pod_identity_token(env: &Env) -> Result<()> {
    const TOKEN: &str =
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token";
    chart_broker_pod(env, &env.sts.url)
        .await
        .context("the chart's broker pod")?;
    env.cluster.create_namespace("pia").await?;
    apply(env, &service_account("pia", "app", json!({})))?;
    apply(
        env,
        &json!({"apiVersion": "pod-identity.io/v1alpha1", "kind": "PodIdentityAssociation",
                "metadata": {"name": "pia-app"},
                "spec": {"namespace": "pia", "serviceAccount": "app", "roleArn": ROLE}}),
    )?;
    // The webhook's watch sees it a moment later: ask the API server for a
    // dry-run pod until it comes back injected.
    let pod = client_pod("pia", "app", "app", false, &env.moto.url);
    let file = env.home.path().join("pia-pod.json");
    std::fs::write(&file, pod.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = kubectl(
            &env.cluster,
            &[
                "create",
                "--dry-run=server",
                "-o",
                "json",
                "-f",
                &file.display().to_string(),
            ],
        )?;
        if out.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the association never reached the webhook"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    apply(env, &pod)?;
    let running = wait_pod(&env.cluster, "pia", "app", &["Running"]).await?;
    let uid = running["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let vars = exec(env, "pia", "app", &["env"])?;
    ensure!(
        vars.contains(&format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://{AGENT_ADDRESS}:{}/v1/credentials\n",
            env.agent_port
        )) && vars.contains(&format!("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE={TOKEN}"))
            && !vars.contains("AWS_ROLE_ARN"),
        "EKS Pod Identity's variables: {vars}"
    );
    let claims = claims_of(&exec(env, "pia", "app", &["cat", TOKEN])?)?;
    ensure!(
        claims["aud"] == json!(["pods.eks.amazonaws.com"]),
        "{claims}"
    );
    ensure!(
        claims["kubernetes.io"]["pod"] == json!({"name": "app", "uid": uid}),
        "the token is bound to the pod: {claims}"
    );
    // Credentials: the SDK's container provider in the pod, the agent's
    // Pod Identity backend, the broker, sts:AssumeRole with the pod's tags.
    let out = exec(env, "pia", "app", &["/aws-sdk-probe", "credentials"]).with_context(|| {
        let logs = kubectl_output(&env.cluster, &["logs", "-n", "pod-identity", "broker"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        format!("broker log:\n{logs}")
    })?;
    let creds: Value = serde_json::from_str(out.trim()).with_context(|| out.clone())?;
    let caller = caller_arn(
        Client::Boto3,
        &[
            (
                "AWS_ACCESS_KEY_ID".into(),
                creds["AccessKeyId"].as_str().unwrap_or_default().into(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                creds["SecretAccessKey"].as_str().unwrap_or_default().into(),
            ),
            (
                "AWS_SESSION_TOKEN".into(),
                creds["SessionToken"].as_str().unwrap_or_default().into(),
            ),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT_URL_STS".into(), env.moto.url.clone()),
        ],
        env.home.path(),
    )?;
    let session = format!("eks-prod-app-{}", &uid[..8]);
    ensure!(
        caller == format!("arn:aws:sts::123456789012:assumed-role/app-role/{session}"),
        "the pod's credentials belong to {caller}"
    );
    let calls = env.sts.calls();
    let call = calls
        .iter()
        .find(|c| c.session_name == session)
        .with_context(|| format!("no AssumeRole for the pod: {calls:?}"))?;
    ensure!(
        call.tags.get("kubernetes-pod-name").map(String::as_str) == Some("app")
            && call.tags.get("kubernetes-pod-uid") == Some(&uid)
            && call.tags.get("kubernetes-namespace").map(String::as_str) == Some("pia")
            && call.tags.get("eks-cluster-name").map(String::as_str) == Some("prod")
            && call.denied.is_none(),
        "{call:?}"
    );
    Ok(())
}

async fn sidecar_fallback(env: &Env) -> Result<()> {
    env.cluster.create_namespace("sidecar").await?;
    apply(
        env,
        &service_account(
            "sidecar",
            "app",
            json!({"eks.amazonaws.com/role-arn": ROLE, "eks.amazonaws.com/credential-mode": "sidecar"}),
        ),
    )?;
    let warnings = apply(
        env,
        &client_pod("sidecar", "app", "app", false, &env.moto.url),
    )?;
    ensure!(
        warnings.contains("Warning:") && warnings.contains("native sidecars"),
        "kubectl printed no fallback warning: {warnings}"
    );
    let pod = wait_pod(&env.cluster, "sidecar", "app", &["Running"]).await?;
    let inits = pod["spec"]["initContainers"].as_array().map_or(0, Vec::len);
    ensure!(
        inits == 0,
        "a sidecar was injected on 1.20: {}",
        pod["spec"]
    );
    let vars = exec(env, "sidecar", "app", &["env"])?;
    ensure!(
        vars.contains(&format!("AWS_ROLE_ARN={ROLE}"))
            && vars.contains(&format!("AWS_WEB_IDENTITY_TOKEN_FILE={TOKEN_PATH}")),
        "web identity instead: {vars}"
    );
    let token = exec(env, "sidecar", "app", &["cat", TOKEN_PATH])?;
    ensure!(claims_of(&token)?["aud"] == json!(["sts.amazonaws.com"]));
    Ok(())
}

async fn webhook_down(env: &mut Env) -> Result<()> {
    env.cluster.create_namespace("down").await?;
    apply(
        env,
        &service_account("down", "app", json!({"eks.amazonaws.com/role-arn": ROLE})),
    )?;
    env.hook = None; // the webhook process is stopped
    let file = env.home.path().join("down-pod.json");
    std::fs::write(
        &file,
        client_pod("down", "app", "app", true, &env.moto.url).to_string(),
    )?;
    let refused = kubectl_output(&env.cluster, &["apply", "-f", &file.display().to_string()])?;
    let said = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && said.contains("failed calling webhook"),
        "failurePolicy Fail should refuse the pod: {said}"
    );
    ensure!(env
        .cluster
        .get("/api/v1/namespaces/down/pods/app")
        .await
        .is_err());
    kubectl(
        &env.cluster,
        &[
            "patch",
            "mutatingwebhookconfiguration",
            "pod-identity-webhook",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]"#,
        ],
    )?;
    kubectl(&env.cluster, &["apply", "-f", &file.display().to_string()])?;
    wait_pod(&env.cluster, "down", "app", &["Running"]).await?;
    let vars = exec(env, "down", "app", &["env"])?;
    ensure!(!vars.contains("AWS_ROLE_ARN"), "started uninjected: {vars}");
    // doctor, on the real pod: the mutation check fails with the reason.
    let tools = Tools::new(&env.cluster, &env.moto)?;
    let out = tools.run(&["doctor", "pod", "down/app", "-o", "json"])?;
    ensure!(out.code == 1, "doctor pod should fail: {out:?}");
    let report: Value = serde_json::from_str(&out.stdout).with_context(|| format!("{out:?}"))?;
    let check = |id: &str| {
        report["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == id))
            .cloned()
            .unwrap_or_default()
    };
    let (mutation, webhook) = (check("mutation"), check("webhook"));
    ensure!(
        mutation["status"] == "fail"
            && mutation["evidence"]
                .as_str()
                .unwrap_or_default()
                .contains("failurePolicy Ignore admits pods unmutated"),
        "doctor pod's mutation check: {mutation}"
    );
    ensure!(
        webhook["status"] == "fail"
            && webhook["evidence"]
                .as_str()
                .unwrap_or_default()
                .contains("onnection refused"),
        "doctor pod's webhook check: {webhook}"
    );
    let out = tools.run(&["doctor", "cluster", "-o", "json"])?;
    ensure!(out.code == 1, "doctor cluster should fail: {out:?}");
    let audit: Value = serde_json::from_str(&out.stdout).with_context(|| format!("{out:?}"))?;
    let missed = audit["podsMissingInjection"]
        .as_array()
        .and_then(|p| {
            p.iter()
                .find(|p| p["namespace"] == "down" && p["pod"] == "app")
        })
        .cloned()
        .unwrap_or_default();
    ensure!(
        missed["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("failurePolicy Ignore"),
        "doctor cluster does not list down/app with its reason: {audit}"
    );
    ensure!(
        audit["webhook"]["status"] == "fail",
        "doctor cluster's webhook: {}",
        audit["webhook"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_pods_on_a_real_node() {
    let cluster = Cluster::start()
        .await
        .expect("start etcd and kube-apiserver");
    let moto = Moto::start().await.expect("moto");
    let home = tempfile::tempdir().unwrap();
    let images = home.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let started = Instant::now();
    let node = Node::start(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    eprintln!(
        "real node: Ready {:?} after the kubelet started ({:?} with containerd)",
        node.ready_after,
        started.elapsed()
    );
    let client = client_archive(&images).expect("test client image");
    node.import(&client).expect("import the client image");
    let (project, project_image) = project_archive(&images).expect("the project's image");
    node.import(&project).expect("import the project's image");
    let agent_port = free_port();
    // The chart's PodIdentityAssociation CRD, so the webhook can watch it.
    e2e_tests::broker::install_crd(&cluster).expect("the CRD");
    let sts = StsRecorder::new(&moto.url, BROKER_ROLE)
        .await
        .expect("the recording STS proxy");
    sts.set_trust(
        ROLE,
        json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": BROKER_ROLE},
               "Action": ["sts:AssumeRole", "sts:TagSession"]}]}),
    );
    let broker_certs = e2e_tests::harness::make_certs().expect("the broker's certificate");
    let hook = Webhook::start(
        &cluster,
        &[
            "--aws-default-region=us-east-1",
            &format!("--agent-url=http://{AGENT_ADDRESS}:{agent_port}/v1/credentials"),
            &format!(
                "--container-credentials-full-uri=http://{AGENT_ADDRESS}:{agent_port}/v1/credentials"
            ),
            "--watch-pod-identity-associations",
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    hook.register(&cluster, "pod-identity-webhook")
        .await
        .unwrap();
    wait_for_webhook(&cluster, ROLE).await.unwrap();
    let mut env = Env {
        cluster,
        moto,
        broker_port: free_port(),
        broker_certs,
        sts,
        node,
        hook: Some(hook),
        agent_port,
        project_image,
        home,
    };
    let mut failures = Vec::new();
    if let Err(e) = web_identity(&env).await {
        failures.push(format!("web identity: {e:#}"));
    }
    if let Err(e) = agent_mode(&mut env).await {
        failures.push(format!("agent mode: {e:#}"));
    }
    if let Err(e) = pod_identity_token(&env).await {
        failures.push(format!("pod identity association: {e:#}"));
    }
    if let Err(e) = sidecar_fallback(&env).await {
        failures.push(format!("sidecar fallback: {e:#}"));
    }
    if let Err(e) = webhook_down(&mut env).await {
        failures.push(format!("webhook down: {e:#}"));
    }
    // Teardown, on a panic too: the node dropped while a thread unwinds
    // leaves no process, cgroup, mount or link behind.
    let node_logs = env.node.logs();
    let Env {
        node,
        hook,
        cluster,
        moto,
        home,
        ..
    } = env;
    let (pid, bridge, links) = (node.containerd_pid(), node.bridge.clone(), node.links());
    let unwound = std::thread::spawn(move || {
        let _node = node;
        panic!("planted panic with the node alive");
    })
    .join();
    assert!(unwound.is_err());
    if let Err(e) = leftovers(pid, &bridge, &links) {
        failures.push(format!("teardown: {e:#}"));
    }
    let env = (hook, cluster, moto, home);
    if !failures.is_empty() {
        panic!(
            "{}\n--- webhook:\n{}\n{}\n{}",
            failures.join("\n\n"),
            env.0.as_ref().map(Webhook::log).unwrap_or_default(),
            node_logs,
            env.1.logs()
        );
    }
}

/// What a dropped node left behind: its processes, containers' cgroups,
/// links, or mounts of its folders.
fn leftovers(containerd_pid: u32, bridge: &str, links: &[String]) -> Result<()> {
    ensure!(
        !std::path::Path::new(&format!("/proc/{containerd_pid}")).exists(),
        "containerd (pid {containerd_pid}) still runs"
    );
    let procs = std::process::Command::new("pgrep")
        .args(["-af", "containerd-shim|kubelet --config"])
        .output()?;
    let procs = String::from_utf8_lossy(&procs.stdout);
    ensure!(
        !procs.lines().any(|l| l.contains("/node/")),
        "processes of the node still run: {procs}"
    );
    let out = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()?;
    let out = String::from_utf8_lossy(&out.stdout);
    for l in links.iter().map(String::as_str).chain([bridge]) {
        ensure!(
            !out.contains(&format!(": {l}:")) && !out.contains(&format!(": {l}@")),
            "link {l} left: {out}"
        );
    }
    for controller in std::fs::read_dir("/sys/fs/cgroup")?.flatten() {
        for e in std::fs::read_dir(controller.path().join("k8s.io"))
            .into_iter()
            .flatten()
            .flatten()
        {
            ensure!(!e.path().is_dir(), "cgroup {} left", e.path().display());
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    ensure!(
        !mounts.contains("/node/"),
        "mounts of the node left: {mounts}"
    );
    Ok(())
}

use serde::Deserialize as _;
