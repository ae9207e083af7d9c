//! The Pod Identity broker and its callers as the tests run them: the
//! broker (`credential-agent broker`) on loopback against the suite's API
//! server, a cluster with the CRD, pods and their tokens, the node agent
//! with its Pod Identity backend pointed at the broker, and boto3's
//! `eks-auth` client.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::agent::{venv, Agent};
use crate::harness::{make_certs, Cluster};
use crate::helm::chart_dir;
use crate::node::kubectl;

/// The cluster name the tests' brokers serve.
pub const CLUSTER: &str = "prod";
pub const CLUSTER_ARN: &str = "arn:aws:eks:us-east-1:123456789012:cluster/prod";
/// The audience of Pod Identity tokens.
pub const AUDIENCE: &str = "pods.eks.amazonaws.com";

/// Calls AssumeRoleForPodIdentity with boto3's eks-auth client for each
/// (cluster, token) on argv; prints one JSON result per call.
const BOTO3: &str = r#"
import json, sys, boto3, botocore
url, ca = sys.argv[1], sys.argv[2]
c = boto3.client("eks-auth", region_name="us-east-1", endpoint_url=url, verify=ca,
                 aws_access_key_id="AKIDNODE", aws_secret_access_key="x")
out = []
for call in json.loads(sys.argv[3]):
    try:
        r = c.assume_role_for_pod_identity(clusterName=call[0], token=call[1])
        r.pop("ResponseMetadata", None)
        r["credentials"]["expiration"] = r["credentials"]["expiration"].timestamp()
        out.append({"ok": r})
    except botocore.exceptions.ClientError as e:
        out.append({"error": [e.response["Error"]["Code"], e.response["Error"]["Message"],
                              e.response["ResponseMetadata"]["HTTPStatusCode"]]})
print(json.dumps(out))
"#;

/// No AWS configuration of the user reaches a client.
pub const NO_AWS_CONFIG: [(&str, &str); 3] = [
    ("AWS_CONFIG_FILE", "/dev/null"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Runs `script` with the suite's Python (boto3 in it) and `args`, with
/// no AWS configuration of the user; its standard output as JSON.
pub async fn python_json(script: &'static str, args: Vec<String>) -> Result<Value> {
    let out = tokio::task::spawn_blocking(move || -> Result<std::process::Output> {
        Ok(std::process::Command::new(venv()?.join("bin/python"))
            .arg("-c")
            .arg(script)
            .args(&args)
            .envs(NO_AWS_CONFIG)
            .output()?)
    })
    .await??;
    ensure!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

pub struct Broker {
    pub agent: Agent,
    pub url: String,
    pub ca: std::path::PathBuf,
}

impl Broker {
    /// boto3's answers to each (cluster, token).
    pub async fn call(&self, calls: &[(&str, &str)]) -> Result<Vec<Value>> {
        let (url, ca) = (self.url.clone(), self.ca.display().to_string());
        let arg = serde_json::to_string(calls)?;
        let out: Vec<Value> =
            serde_json::from_value(python_json(BOTO3, vec![url, ca, arg]).await?)?;
        Ok(out)
    }

    pub async fn one(&self, token: &str) -> Result<Value> {
        Ok(self.call(&[(CLUSTER, token)]).await?.remove(0))
    }
}

/// The broker on loopback against the cluster (its keys and API through the
/// admin token), STS at `sts`, signed with static keys as its own identity.
pub async fn start_broker(
    cluster: &Cluster,
    sts: &str,
    dir: &Path,
    extra: &[&str],
) -> Result<Broker> {
    let certs = make_certs()?;
    let write = |name: &str, text: &str| -> Result<String> {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        Ok(p.display().to_string())
    };
    let (cert, key, _) = (
        write("tls.crt", &certs.cert_pem)?,
        write("tls.key", &certs.key_pem)?,
        write("ca.crt", &certs.ca_pem)?,
    );
    let api_ca = cluster.serving_ca_file().display().to_string();
    let api_token = cluster.admin_token_file()?.display().to_string();
    let mut args = vec![
        format!("--tls-cert={cert}"),
        format!("--tls-key={key}"),
        format!("--cluster-name={CLUSTER}"),
        format!("--cluster-arn={CLUSTER_ARN}"),
        // The suite's default issuer, unless the caller names another.
        if extra.iter().any(|a| a.starts_with("--issuer=")) {
            String::new()
        } else {
            "--issuer=https://kubernetes.default.svc".into()
        },
        format!("--jwks-url={}/openid/v1/jwks", cluster.url),
        format!("--jwks-ca-file={api_ca}"),
        format!("--jwks-token-file={api_token}"),
        format!("--kube-api-url={}", cluster.url),
        format!("--kube-ca-file={api_ca}"),
        format!("--kube-token-file={api_token}"),
        format!("--sts-endpoint={sts}"),
        "--region=us-east-1".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.retain(|a| !a.is_empty());
    let agent = Agent::start(
        "broker",
        &args,
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
    .await?;
    Ok(Broker {
        url: format!("https://127.0.0.1:{}", agent.port),
        agent,
        ca: dir.join("ca.crt"),
    })
}

/// The chart's PodIdentityAssociation CRD, installed with kubectl and
/// established.
pub fn install_crd(cluster: &Cluster) -> Result<()> {
    let crd = chart_dir().join("crds/podidentityassociations.pod-identity.io.yaml");
    kubectl(cluster, &["apply", "-f", &crd.display().to_string()])?;
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/podidentityassociations.pod-identity.io",
        ],
    )?;
    Ok(())
}

/// The cluster with the chart's CRD, namespace `apps` and these
/// ServiceAccounts in it.
pub async fn cluster_with(sas: &[&str]) -> Result<Cluster> {
    let cluster = Cluster::start().await?;
    install_crd(&cluster)?;
    cluster.create_namespace("apps").await?;
    for sa in sas {
        cluster
            .create(
                "/api/v1/namespaces/apps/serviceaccounts",
                &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}}),
            )
            .await?;
    }
    Ok(cluster)
}

/// A pod of `sa` in `apps` (never scheduled: the API server alone) and the
/// token the kubelet would mount for it.
pub async fn pod(
    cluster: &Cluster,
    sa: &str,
    name: &str,
    audience: &str,
) -> Result<(String, String)> {
    pod_in(cluster, "apps", sa, name, audience).await
}

pub async fn pod_in(
    cluster: &Cluster,
    ns: &str,
    sa: &str,
    name: &str,
    audience: &str,
) -> Result<(String, String)> {
    let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"serviceAccountName": sa, "automountServiceAccountToken": false,
                 "containers": [{"name": "c", "image": "x"}]}});
    let (stored, _) = cluster
        .create(&format!("/api/v1/namespaces/{ns}/pods"), &body)
        .await?;
    let uid = stored["metadata"]["uid"]
        .as_str()
        .context("pod uid")?
        .to_string();
    let token = cluster
        .token_request(ns, sa, audience, 3600, Some((name, &uid)))
        .await?;
    Ok((uid, token))
}

/// The node agent in node mode with the Pod Identity backend pointed at the
/// broker (its CA added), verifying tokens against the cluster's keys.
pub async fn node_agent(
    cluster: &Cluster,
    broker: &Broker,
    sts: &str,
    extra: &[String],
) -> Result<Agent> {
    node_agent_at(cluster, &broker.url, &broker.ca, sts, extra).await
}

/// [`node_agent`] with an EKS Auth endpoint and CA of its own.
pub async fn node_agent_at(
    cluster: &Cluster,
    endpoint: &str,
    ca: &Path,
    sts: &str,
    extra: &[String],
) -> Result<Agent> {
    let api_ca = cluster.serving_ca_file().display().to_string();
    let api_token = cluster.admin_token_file()?.display().to_string();
    let mut args = vec![
        // The suite's default issuer, unless the caller names another.
        if extra.iter().any(|a| a.starts_with("--issuer=")) {
            String::new()
        } else {
            "--issuer=https://kubernetes.default.svc".to_string()
        },
        format!("--jwks-url={}/openid/v1/jwks", cluster.url),
        format!("--jwks-ca-file={api_ca}"),
        format!("--jwks-token-file={api_token}"),
        format!("--sts-endpoint={sts}"),
        "--region=us-east-1".into(),
        format!("--eks-auth-endpoint={endpoint}"),
        format!("--eks-auth-ca-file={}", ca.display()),
        format!("--cluster-name={CLUSTER}"),
    ];
    args.extend(extra.iter().cloned());
    args.retain(|a| !a.is_empty());
    Agent::start(
        "serve",
        &args,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDNODE"),
            ("AWS_SECRET_ACCESS_KEY", "node-secret"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
    .await
}

/// The environment EKS injects into a Pod Identity container, pointed at
/// this agent and the token file, with STS at `sts` for the app's own calls.
pub fn pod_identity_env(agent: &Agent, token_file: &Path, sts: &str) -> Vec<(String, String)> {
    [
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/v1/credentials", agent.url),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AWS_ENDPOINT_URL_STS", sts.to_string()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
