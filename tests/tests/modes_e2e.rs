//! The three credential modes end to end: a real kube-apiserver calls the
//! webhook (registered by URL on 127.0.0.1), the stored pod is read back, the
//! token the kubelet would mount is minted with TokenRequest and laid out at
//! the injected path (under a temp directory), and real SDK clients (boto3,
//! the aws CLI, aws-sdk-rust, the AWS SDK for JavaScript v3) run with exactly
//! the container's environment and must get the annotated role from STS
//! GetCallerIdentity (moto). The node agent verifies tokens against this API
//! server's JWKS and issuer; the sidecar runs from the injected container spec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e_tests::agent::{now_secs, Agent, FaultProxy, Moto, SigningKey, ROLE};
use e2e_tests::clients::{caller_arns, WITH_JS};
use e2e_tests::harness::{free_port, wait_for_webhook, workspace_bin, Cluster, Webhook};
use serde_json::{json, Value};

const ISSUER: &str = "https://kubernetes.default.svc";
const ASSUMED: &str = "arn:aws:sts::123456789012:assumed-role/app-role/";

fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `/var/run/...` under `root`.
fn mapped(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

struct Env {
    cluster: Cluster,
    moto: Moto,
    proxy: FaultProxy,
    agent: Agent,
    sidecar_port: u16,
    sidecar_health_port: u16,
    sidecar_metrics_port: u16,
    root: tempfile::TempDir,
}

/// Creates namespace `ns`, ServiceAccount `app` with the role (and mode
/// annotation) and pod `name`; returns the stored pod.
async fn create_pod(env: &Env, ns: &str, mode: Option<&str>, name: &str) -> Result<Value> {
    let _ = env.cluster.create_namespace(ns).await;
    let mut annotations = json!({"eks.amazonaws.com/role-arn": ROLE});
    if let Some(m) = mode {
        annotations["eks.amazonaws.com/credential-mode"] = json!(m);
    }
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "annotations": annotations}});
    let _ = env
        .cluster
        .create(&format!("/api/v1/namespaces/{ns}/serviceaccounts"), &sa)
        .await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"serviceAccountName": "app", "automountServiceAccountToken": false,
                 "containers": [{"name": "app", "image": "app:1"}]}
    });
    let (stored, _) = env
        .cluster
        .create(&format!("/api/v1/namespaces/{ns}/pods"), &pod)
        .await?;
    Ok(stored)
}

/// What the kubelet would do for the pod's projected token volume: mint the
/// token and write it (no trailing newline) at the injected path under the
/// test root. Returns the token.
async fn mount_token(env: &Env, ns: &str, stored: &Value, token_path: &str) -> Result<String> {
    let vol = stored["spec"]["volumes"]
        .as_array()
        .context("no volumes")?
        .iter()
        .find_map(|v| v["projected"]["sources"][0]["serviceAccountToken"].as_object())
        .context("no projected token volume")?
        .clone();
    let audience = vol["audience"].as_str().context("audience")?;
    let expiration = vol["expirationSeconds"]
        .as_i64()
        .context("expirationSeconds")?;
    let pod = (
        stored["metadata"]["name"].as_str().unwrap(),
        stored["metadata"]["uid"].as_str().unwrap(),
    );
    let token = env
        .cluster
        .token_request(ns, "app", audience, expiration, Some(pod))
        .await?;
    let file = mapped(env.root.path(), token_path);
    std::fs::create_dir_all(file.parent().unwrap())?;
    std::fs::write(&file, &token)?;
    Ok(token)
}

/// The container's environment with token paths mapped under the root, plus
/// the tests' STS endpoint.
fn client_env(env: &Env, container_env: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = container_env
        .iter()
        .map(|(k, v)| {
            let v = if k.ends_with("_TOKEN_FILE") {
                mapped(env.root.path(), v).display().to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    out.push(("AWS_ENDPOINT_URL_STS".into(), env.moto.url.clone()));
    out
}

async fn all_clients(
    env: &Env,
    vars: &[(String, String)],
    session_suffix: Option<&str>,
) -> Result<()> {
    for (client, arn) in caller_arns(&WITH_JS, vars, env.root.path()).await {
        let arn = arn?;
        ensure!(arn.starts_with(ASSUMED), "{client:?}: {arn}");
        if let Some(s) = session_suffix {
            ensure!(arn.ends_with(s), "{client:?}: {arn} does not end with {s}");
        }
    }
    Ok(())
}

async fn web_identity(env: &Env) -> Result<()> {
    let stored = create_pod(env, "mode-web", None, "web-1").await?;
    let app = &stored["spec"]["containers"][0];
    let vars = env_of(app);
    ensure!(
        vars.get("AWS_ROLE_ARN").map(String::as_str) == Some(ROLE),
        "{vars:?}"
    );
    ensure!(
        !vars.contains_key("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        "{vars:?}"
    );
    mount_token(
        env,
        "mode-web",
        &stored,
        &vars["AWS_WEB_IDENTITY_TOKEN_FILE"],
    )
    .await?;
    // The seed's verification step: the env shows the AWS variables...
    for k in [
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        ensure!(vars.contains_key(k), "{k} missing from {vars:?}");
    }
    // ...and `aws sts get-caller-identity` (and every other SDK) answers.
    all_clients(env, &client_env(env, &vars), None).await
}

async fn agent_mode(env: &Env) -> Result<()> {
    let stored = create_pod(env, "mode-agent", Some("agent"), "agent-1").await?;
    ensure!(
        stored["metadata"]["labels"]["eks.amazonaws.com/pod-identity"] == "enabled",
        "label missing: {}",
        stored["metadata"]
    );
    let vars = env_of(&stored["spec"]["containers"][0]);
    ensure!(
        !vars.contains_key("AWS_ROLE_ARN") && !vars.contains_key("AWS_WEB_IDENTITY_TOKEN_FILE"),
        "{vars:?}"
    );
    let uri = &vars["AWS_CONTAINER_CREDENTIALS_FULL_URI"];
    ensure!(
        uri.starts_with(&format!(
            "{}/v1/credentials?role=arn%3Aaws%3Aiam",
            env.agent.url
        )),
        "{uri}"
    );
    let token_file = vars["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"].clone();
    let token = mount_token(env, "mode-agent", &stored, &token_file).await?;
    let before = env.proxy.assume_calls();
    all_clients(env, &client_env(env, &vars), Some("/mode-agent.app")).await?;
    ensure!(
        env.proxy.assume_calls() - before == 1,
        "four SDKs of one identity made {} STS calls",
        env.proxy.assume_calls() - before
    );

    // A token the API server did not sign: refused.
    let query = &uri[uri.find('?').unwrap()..];
    let claims: Value = decode_claims(&token)?;
    let foreign = SigningKey::generate("whatever")?.sign(&claims)?;
    let (status, _, body) = env.agent.get(Some(&foreign), query).await?;
    ensure!(status == 403, "foreign token: {status} {body}");
    // Signed with the API server's own key but expired: refused; the same
    // claims unexpired: served (so it is the expiry that is refused).
    let kid = token_kid(&token)?;
    let own_key = env.cluster.sa_signing_key_pem()?;
    let mut expired = claims.clone();
    expired["exp"] = json!(now_secs() - 600);
    expired["iat"] = json!(now_secs() - 4000);
    expired["nbf"] = json!(now_secs() - 4000);
    let (status, _, body) = env
        .agent
        .get(Some(&sign_es256(&own_key, &kid, &expired)?), query)
        .await?;
    ensure!(status == 403, "expired token: {status} {body}");
    let (status, _, body) = env
        .agent
        .get(Some(&sign_es256(&own_key, &kid, &claims)?), query)
        .await?;
    ensure!(status == 200, "control token: {status} {body}");

    // Deleted and recreated ServiceAccount (new uid): not the old entry.
    let (status, _, old) = env.agent.get(Some(&token), query).await?;
    ensure!(status == 200, "{old}");
    env.cluster
        .delete("/api/v1/namespaces/mode-agent/serviceaccounts/app")
        .await?;
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "annotations": {"eks.amazonaws.com/role-arn": ROLE, "eks.amazonaws.com/credential-mode": "agent"}}});
    env.cluster
        .create("/api/v1/namespaces/mode-agent/serviceaccounts", &sa)
        .await?;
    let fresh = env
        .cluster
        .token_request("mode-agent", "app", "sts.amazonaws.com", 3600, None)
        .await?;
    ensure!(
        decode_claims(&fresh)?["kubernetes.io"]["serviceaccount"]["uid"]
            != claims["kubernetes.io"]["serviceaccount"]["uid"],
        "uid did not change"
    );
    let calls = env.proxy.assume_calls();
    let (status, _, new) = env.agent.get(Some(&fresh), query).await?;
    ensure!(status == 200, "{new}");
    ensure!(
        new["AccessKeyId"] != old["AccessKeyId"],
        "recreated ServiceAccount reused the old credential"
    );
    ensure!(env.proxy.assume_calls() == calls + 1);
    Ok(())
}

/// The pod as the webhook would mutate it with native sidecars on, from the
/// dry run (`pod-identity-webhook mutate`, the same code as /mutate).
fn dry_run_with_native_sidecars(env: &Env, ns: &str, name: &str) -> Result<Value> {
    let dir = env.root.path().join("dry-run");
    std::fs::create_dir_all(&dir)?;
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "app", "namespace": ns, "annotations": {"eks.amazonaws.com/role-arn": ROLE, "eks.amazonaws.com/credential-mode": "sidecar"}}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
        "spec": {"serviceAccountName": "app", "automountServiceAccountToken": false,
                 "containers": [{"name": "app", "image": "app:1"}]}});
    std::fs::write(dir.join("sa.json"), sa.to_string())?;
    std::fs::write(dir.join("pod.json"), pod.to_string())?;
    let out = Command::new(workspace_bin("pod-identity-webhook")?)
        .args([
            "mutate".to_string(),
            format!("--service-accounts={}", dir.join("sa.json").display()),
            "--native-sidecars=true".into(),
            "--aws-default-region=us-east-1".into(),
            "--sidecar-image=credential-agent:e2e".into(),
            format!("--sidecar-port={}", env.sidecar_port),
            format!("--sidecar-health-port={}", env.sidecar_health_port),
            format!("--sidecar-metrics-port={}", env.sidecar_metrics_port),
            "-o".into(),
            "json".into(),
            dir.join("pod.json").display().to_string(),
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "dry run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn sidecar_mode(env: &Env) -> Result<()> {
    // This API server (1.20) has no native sidecars: the webhook sees that,
    // gives the pod web identity instead, and says why in a warning.
    let _ = env.cluster.create_namespace("mode-sidecar").await;
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "annotations": {"eks.amazonaws.com/role-arn": ROLE, "eks.amazonaws.com/credential-mode": "sidecar"}}});
    env.cluster
        .create("/api/v1/namespaces/mode-sidecar/serviceaccounts", &sa)
        .await?;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "side-1"},
        "spec": {"serviceAccountName": "app", "automountServiceAccountToken": false, "containers": [{"name": "app", "image": "app:1"}]}});
    let (stored, headers) = env
        .cluster
        .create("/api/v1/namespaces/mode-sidecar/pods", &pod)
        .await?;
    let warning = headers
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    ensure!(
        warning.contains("native sidecars"),
        "no fallback warning: {headers:?}"
    );
    ensure!(
        stored["spec"]["initContainers"].is_null(),
        "sidecar injected on a cluster without native sidecars"
    );
    ensure!(env_of(&stored["spec"]["containers"][0]).contains_key("AWS_ROLE_ARN"));

    // The sidecar pod spec (as on 1.29+), run for real: the sidecar from its
    // container spec, the SDKs with the app container's environment, the
    // token minted for the stored pod.
    let mutated = dry_run_with_native_sidecars(env, "mode-sidecar", "side-1")?;
    let inits = mutated["spec"]["initContainers"]
        .as_array()
        .context("no init containers")?;
    let sidecar = &inits[0];
    ensure!(
        sidecar["name"] == "aws-credential-agent" && sidecar["restartPolicy"] == "Always",
        "{sidecar}"
    );
    ensure!(sidecar["image"] == "credential-agent:e2e");
    let stored =
        json!({"metadata": stored["metadata"], "spec": {"volumes": mutated["spec"]["volumes"]}});
    let app_vars = env_of(&mutated["spec"]["containers"][0]);
    ensure!(
        app_vars["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
            == format!("http://127.0.0.1:{}/v1/credentials", env.sidecar_port),
        "{app_vars:?}"
    );
    let side_vars = env_of(sidecar);
    let token = mount_token(
        env,
        "mode-sidecar",
        &stored,
        &side_vars["AWS_WEB_IDENTITY_TOKEN_FILE"],
    )
    .await?;
    ensure!(
        side_vars["AWS_WEB_IDENTITY_TOKEN_FILE"]
            == app_vars["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"],
        "sidecar and app must share the token file"
    );
    // Run the sidecar exactly as its container spec says.
    let args: Vec<String> = sidecar["args"]
        .as_array()
        .context("sidecar args")?
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mut cmd = Command::new(workspace_bin("credential-agent")?);
    cmd.args(&args).env_clear().stdin(Stdio::null());
    for (k, v) in client_env(env, &side_vars) {
        if k != "AWS_ENDPOINT_URL_STS" {
            cmd.env(k, v);
        }
    }
    cmd.env("AWS_ENDPOINT_URL_STS", &env.proxy.url);
    let log = env.root.path().join("sidecar.log");
    let f = std::fs::File::create(&log)?;
    cmd.stdout(f.try_clone()?).stderr(f);
    let mut child = KillOnDrop(cmd.spawn()?);
    // Its startup probe, as the kubelet would run it.
    let probe = &sidecar["startupProbe"]["httpGet"];
    let probe_url = format!(
        "http://127.0.0.1:{}{}",
        probe["port"],
        probe["path"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if reqwest::get(&probe_url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        if Instant::now() > deadline || child.0.try_wait()?.is_some() {
            bail!("sidecar never ready:\n{}", std::fs::read_to_string(&log)?);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The contract: the ports the spec names for liveness and metrics are
    // the ones the agent serves them on.
    let liveness = &sidecar["livenessProbe"]["httpGet"];
    let metrics_port = &sidecar["ports"][0]["containerPort"];
    ensure!(
        *metrics_port == json!(env.sidecar_metrics_port),
        "{sidecar}"
    );
    for url in [
        format!(
            "http://127.0.0.1:{}{}",
            liveness["port"],
            liveness["path"].as_str().unwrap_or("")
        ),
        format!("http://127.0.0.1:{metrics_port}/metrics"),
    ] {
        let r = reqwest::get(&url).await?;
        ensure!(r.status().is_success(), "{url}: {}", r.status());
    }
    let before = env.proxy.assume_calls();
    all_clients(
        env,
        &client_env(env, &app_vars),
        Some("/mode-sidecar.app.side-1"),
    )
    .await?;
    ensure!(env.proxy.assume_calls() - before == 1);
    // A token that is not this pod's: 403, even one the API server signed.
    let other = create_pod(env, "mode-sidecar", None, "side-2").await?;
    let other_token = env
        .cluster
        .token_request(
            "mode-sidecar",
            "app",
            "sts.amazonaws.com",
            3600,
            Some(("side-2", other["metadata"]["uid"].as_str().unwrap())),
        )
        .await?;
    let url = &app_vars["AWS_CONTAINER_CREDENTIALS_FULL_URI"];
    for (t, want) in [(other_token.as_str(), 403), (token.as_str(), 200)] {
        let r = reqwest::Client::new()
            .get(url)
            .header("authorization", t)
            .send()
            .await?;
        ensure!(
            r.status().as_u16() == want,
            "sidecar answered {} for a token, want {want}",
            r.status()
        );
    }
    Ok(())
}

async fn unannotated_gets_nothing(env: &Env) -> Result<()> {
    env.cluster.create_namespace("mode-none").await?;
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "plain"}});
    env.cluster
        .create("/api/v1/namespaces/mode-none/serviceaccounts", &sa)
        .await?;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain", "annotations": {"eks.amazonaws.com/credential-mode": "sidecar"}},
        "spec": {"serviceAccountName": "plain", "automountServiceAccountToken": false, "containers": [{"name": "app", "image": "app:1"}]}});
    let (stored, _) = env
        .cluster
        .create("/api/v1/namespaces/mode-none/pods", &pod)
        .await?;
    ensure!(
        env_of(&stored["spec"]["containers"][0])
            .keys()
            .all(|k| !k.starts_with("AWS_")),
        "{stored}"
    );
    ensure!(
        stored["spec"]["volumes"].is_null() && stored["spec"]["initContainers"].is_null(),
        "{stored}"
    );
    Ok(())
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn b64d(s: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s)?)
}

fn decode_claims(token: &str) -> Result<Value> {
    Ok(serde_json::from_slice(&b64d(
        token.split('.').nth(1).context("not a JWT")?,
    )?)?)
}

fn token_kid(token: &str) -> Result<String> {
    let header: Value = serde_json::from_slice(&b64d(token.split('.').next().unwrap())?)?;
    header["kid"].as_str().map(str::to_string).context("no kid")
}

fn sign_es256(pkcs8_pem: &str, kid: &str, claims: &Value) -> Result<String> {
    use base64::Engine as _;
    let body: String = pkcs8_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body)?;
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(kid.to_string());
    Ok(jsonwebtoken::encode(
        &h,
        claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&der),
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_credential_modes_end_to_end() {
    let cluster = Cluster::start()
        .await
        .expect("start etcd and kube-apiserver");
    let moto = Moto::start().await.expect("moto");
    let proxy = FaultProxy::start(&moto.url).await.expect("proxy");
    let agent = Agent::start(
        "serve",
        &[
            format!("--issuer={ISSUER}"),
            format!("--jwks-url={}/openid/v1/jwks", cluster.url),
            format!("--jwks-ca-file={}", cluster.serving_ca_file().display()),
            format!(
                "--jwks-token-file={}",
                cluster.admin_token_file().unwrap().display()
            ),
            format!("--sts-endpoint={}", proxy.url),
            "--region=us-east-1".into(),
        ],
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    let (sidecar_port, sidecar_health, sidecar_metrics) = (free_port(), free_port(), free_port());
    let hook = Webhook::start(
        &cluster,
        &[
            "--aws-default-region=us-east-1",
            &format!("--agent-url={}/v1/credentials", agent.url),
            "--sidecar-image=credential-agent:e2e",
            &format!("--sidecar-port={sidecar_port}"),
            &format!("--sidecar-health-port={sidecar_health}"),
            &format!("--sidecar-metrics-port={sidecar_metrics}"),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    hook.register(&cluster, "pod-identity-webhook")
        .await
        .unwrap();
    let env = Env {
        cluster,
        moto,
        proxy,
        agent,
        sidecar_port,
        sidecar_health_port: sidecar_health,
        sidecar_metrics_port: sidecar_metrics,
        root: tempfile::tempdir().unwrap(),
    };
    let result = async {
        wait_for_webhook(&env.cluster, ROLE)
            .await
            .context("webhook registration")?;
        web_identity(&env).await.context("web-identity mode")?;
        agent_mode(&env).await.context("agent mode")?;
        sidecar_mode(&env).await.context("sidecar mode")?;
        unannotated_gets_nothing(&env)
            .await
            .context("unannotated ServiceAccount")?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        panic!(
            "{e:#}\n--- agent log:\n{}\n--- webhook log:\n{}\n{}",
            env.agent.log_tail(),
            hook.log(),
            env.cluster.logs()
        );
    }
}
