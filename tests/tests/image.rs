//! The container image the chart installs, built here (scripts/build-image.sh:
//! static binaries, FROM scratch, podman) and run, not only described:
//! the webhook's dry run inside it; the webhook serving with the chart's
//! rendered arguments against the suite's kube-apiserver, answering a pod
//! CREATE; and the agent in node mode inside it against moto with boto3 on
//! the host getting credentials through it. All run read-only, as user
//! 65532, on the host network (loopback only).
//! Also: the Dockerfile and the Containerfile describe the same image.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e_tests::agent::*;
use e2e_tests::clients::{caller_arn, Client};
use e2e_tests::harness::{free_port, make_certs, register_webhook, workspace_root, Cluster};

/// The final stage's claims: files copied to where, user, entrypoint.
fn claims_of(path: &Path) -> Result<(Vec<String>, String, String)> {
    let text = std::fs::read_to_string(path)?;
    let last_stage = text.rsplit("\nFROM ").next().context("no FROM")?;
    let mut binaries = Vec::new();
    let (mut user, mut entrypoint) = (String::new(), String::new());
    for line in last_stage.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"COPY") => {
                let dest = words.last().copied().unwrap_or_default();
                if !dest.starts_with("/etc/") {
                    binaries.push(dest.to_string());
                }
            }
            Some(&"USER") => user = words[1..].join(" "),
            Some(&"ENTRYPOINT") => entrypoint = words[1..].join(" "),
            _ => {}
        }
    }
    binaries.sort();
    Ok((binaries, user, entrypoint))
}

#[test]
fn dockerfile_and_containerfile_agree() -> Result<()> {
    let root = workspace_root();
    let docker = claims_of(&root.join("Dockerfile"))?;
    let podman = claims_of(&root.join("Containerfile"))?;
    assert_eq!(docker, podman);
    assert_eq!(
        docker.0,
        ["/credential-agent", "/pod-identity-webhook"],
        "both binaries at the root"
    );
    assert_eq!(docker.1, "65532:65532");
    assert_eq!(docker.2, r#"["/credential-agent"]"#);
    // The chart and the webhook's sidecar run the binaries at those paths.
    let chart = std::fs::read_to_string(
        root.join("charts/pod-identity/templates/webhook-deployment.yaml"),
    )?;
    assert!(
        chart.contains("/pod-identity-webhook"),
        "the chart's webhook command"
    );
    Ok(())
}

fn podman() -> Command {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc", "--cgroup-manager=cgroupfs"]);
    c
}

/// `podman run` with the hardening the chart applies.
fn run_args(image: &str, mounts: &[(&Path, &str)], entrypoint: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = [
        "run",
        "--rm",
        "--network=host",
        "--read-only",
        "--user=65532:65532",
        "--cap-drop=ALL",
        "--ulimit=nofile=20000:20000",
        "--ulimit=nproc=1000:1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (host, inside) in mounts {
        a.push(format!("--volume={}:{inside}:ro", host.display()));
    }
    if let Some(e) = entrypoint {
        a.push(format!("--entrypoint={e}"));
    }
    a.push(image.to_string());
    a
}

fn build_image() -> Result<String> {
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/build-image.sh"))
        .stderr(Stdio::inherit())
        .output()
        .context("running scripts/build-image.sh")?;
    ensure!(out.status.success(), "scripts/build-image.sh failed");
    let image = String::from_utf8(out.stdout)?
        .lines()
        .last()
        .context("no image reference printed")?
        .trim()
        .to_string();
    ensure!(image.starts_with("localhost/pod-identity:"), "{image}");
    Ok(image)
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "--force", "--time=1", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_the_webhook_and_the_agent() -> Result<()> {
    let image = build_image()?;
    let root = workspace_root();

    // 1. The webhook's dry run, inside the image.
    let mut cmd = podman();
    cmd.args(run_args(
        &image,
        &[(&root.join("examples"), "/examples")],
        Some("/pod-identity-webhook"),
    ))
    .args([
        "mutate",
        "--service-accounts",
        "/examples/serviceaccounts.yaml",
        "/examples/pod.yaml",
    ]);
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("AWS_ROLE_ARN") && stdout.contains("aws-iam-token"),
        "dry run in the image: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 2. The webhook serving, inside the image, with the chart's arguments,
    //    registered by URL with the suite's kube-apiserver.
    let cluster = Cluster::start().await?;
    let wdir = tempfile::tempdir()?;
    std::fs::set_permissions(
        wdir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let certs = make_certs()?;
    std::fs::write(wdir.path().join("tls.crt"), &certs.cert_pem)?;
    std::fs::write(wdir.path().join("tls.key"), &certs.key_pem)?;
    std::fs::copy(&cluster.kubeconfig, wdir.path().join("kubeconfig"))?;
    for f in ["tls.crt", "tls.key", "kubeconfig"] {
        std::fs::set_permissions(
            wdir.path().join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )?;
    }
    let (_, docs) = e2e_tests::helm::render(&[])?;
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .context("no Deployment rendered")?;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let entrypoint = container["command"][0].as_str().context("command")?;
    let (wport, wmetrics) = (free_port(), free_port());
    let mut wargs: Vec<String> = container["args"]
        .as_array()
        .context("args")?
        .iter()
        .filter_map(|a| a.as_str())
        .map(|a| match a.split_once('=') {
            Some(("--port", _)) => format!("--port={wport}"),
            Some(("--metrics-port", _)) => format!("--metrics-port={wmetrics}"),
            Some(("--tls-cert", _)) => "--tls-cert=/certs/tls.crt".into(),
            Some(("--tls-key", _)) => "--tls-key=/certs/tls.key".into(),
            _ => a.to_string(),
        })
        .collect();
    wargs.push("--bind-address=127.0.0.1".into());
    wargs.push("--kubeconfig=/certs/kubeconfig".into());
    let wname = format!("pod-identity-webhook-{wport}");
    let mut args = run_args(&image, &[(wdir.path(), "/certs")], Some(entrypoint));
    args.insert(1, "--detach".into());
    args.insert(1, format!("--name={wname}"));
    let out = podman().args(args).args(&wargs).output()?;
    ensure!(
        out.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _webhook = Container(wname.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::get(format!("http://127.0.0.1:{wmetrics}/readyz"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if Instant::now() > deadline {
            let logs = podman().args(["logs", &wname]).output()?;
            bail!(
                "the webhook in the image never became ready:\n{}",
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    register_webhook(&cluster, "pod-identity-webhook", wport, &certs.ca_pem).await?;
    cluster.create_namespace("image").await?;
    let role = "arn:aws:iam::111122223333:role/from-the-image";
    cluster
        .create(
            "/api/v1/namespaces/image/serviceaccounts",
            &serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "app", "annotations": {"eks.amazonaws.com/role-arn": role}}}),
        )
        .await?;
    // The API server may try the webhook before its registration is seen.
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"serviceAccountName": "app", "automountServiceAccountToken": false, "containers": [{"name": "c", "image": "x"}]}});
    let mut stored = serde_json::Value::Null;
    for attempt in 0..50 {
        let (v, _) = cluster
            .create("/api/v1/namespaces/image/pods", &{
                let mut p = pod.clone();
                p["metadata"]["name"] = format!("p-{attempt}").into();
                p
            })
            .await?;
        if v.to_string().contains(role) {
            stored = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        stored["spec"]["containers"][0]["env"]
            .as_array()
            .is_some_and(|e| e
                .iter()
                .any(|v| v["name"] == "AWS_ROLE_ARN" && v["value"] == role)),
        "the webhook in the image did not inject the pod:\n{}",
        String::from_utf8_lossy(&podman().args(["logs", &wname]).output()?.stderr)
    );

    // 3. The agent in node mode, inside the image, against moto on the host;
    //    boto3 on the host gets credentials through it.
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(&moto.url).await?;
    let (port, health, metrics) = (free_port(), free_port(), free_port());
    let name = format!("pod-identity-agent-{port}");
    let mut cmd = podman();
    let mut args = run_args(&image, &[(dir.path(), "/issuer")], None);
    args.insert(1, "--detach".into());
    args.insert(1, format!("--name={name}"));
    cmd.args(args).args([
        "serve".to_string(),
        format!("--listen=127.0.0.1:{port}"),
        format!("--health-listen=127.0.0.1:{health}"),
        format!("--metrics-listen=127.0.0.1:{metrics}"),
        format!("--issuer={ISSUER}"),
        "--jwks-file=/issuer/jwks.json".into(),
        // A host name, not an address: the static binary resolves it on an
        // otherwise empty root file system (glibc 2.36 has files and dns
        // built in; podman provides /etc/hosts and /etc/resolv.conf).
        format!(
            "--sts-endpoint={}",
            proxy.url.replace("127.0.0.1", "localhost")
        ),
        "--region=us-east-1".into(),
    ]);
    // The jwks file must be readable by 65532.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let out = cmd.output()?;
    ensure!(
        out.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _container = Container(name.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if reqwest::get(format!("http://127.0.0.1:{health}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        if Instant::now() > deadline {
            let logs = podman().args(["logs", &name]).output()?;
            bail!(
                "the agent in the image never became ready:\n{}",
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        issuer.token(&claims(
            "team-a",
            "app",
            "uid-app",
            Some(("app-1", "uid-p1")),
        )),
    )?;
    let env: Vec<(String, String)> = [
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://127.0.0.1:{port}/v1/credentials{}", role_query(ROLE)),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL_STS", moto.url.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let home = tempfile::tempdir()?;
    let arn =
        tokio::task::spawn_blocking(move || caller_arn(Client::Boto3, &env, home.path())).await??;
    ensure!(arn.contains("assumed-role/app-role/"), "{arn}");
    ensure!(proxy.assume_calls() == 1);
    Ok(())
}
