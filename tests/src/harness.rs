//! The test cluster: etcd and a real kube-apiserver on loopback with a
//! ServiceAccount signing key, an admin client, and the webhook binary
//! registered by URL. Long because it is the whole harness of the
//! end-to-end tests in one place; nothing here ships.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// Admin bearer token of the test API server (loopback only, per test).
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The path of a workspace binary built by `cargo build` (the test command
/// builds them first).
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    workspace_bin_in(name, "debug")
}

/// The path of a workspace binary of the given profile directory (`debug`, `release`).
pub fn workspace_bin_in(name: &str, profile: &str) -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join(profile).join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the workspace binaries ({profile}) first",
            path.display()
        );
    }
    Ok(path)
}

/// The target triple of the static release binaries the image is built
/// from (`scripts/build-image.sh`).
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds the static release binaries of the given workspace binaries
/// (release, `crt-static`, [`STATIC_TARGET`]: what `scripts/build-image.sh`
/// builds, so the two share one build) and returns their directory.
pub fn static_release_bins(packages: &[&str], bins: &[&str]) -> Result<PathBuf> {
    let root = workspace_root();
    let flags = format!(
        "{} -C target-feature=+crt-static",
        std::env::var("RUSTFLAGS").unwrap_or_default()
    );
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root).env("RUSTFLAGS", flags.trim()).args([
        "build",
        "--release",
        "--locked",
        "--target",
        STATIC_TARGET,
    ]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    for b in bins {
        cmd.args(["--bin", b]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!("{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(STATIC_TARGET)
        .join("release");
    Ok(dir)
}

/// The directory with kube-apiserver and etcd: `scripts/ensure-kube.sh`
/// honours KUBE_ASSETS / KUBEBUILDER_ASSETS, else builds and caches them.
pub fn kube_assets() -> Result<PathBuf> {
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/ensure-kube.sh"))
        .stderr(Stdio::inherit())
        .output()
        .context("running scripts/ensure-kube.sh")?;
    if !out.status.success() {
        bail!("scripts/ensure-kube.sh failed ({})", out.status);
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// A TCP connection to `to` from the loopback address `local` (tests play
/// distinct pods or clients as 127.0.0.1, 127.0.0.2, ...).
pub async fn connect_from(
    local: std::net::IpAddr,
    to: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(std::net::SocketAddr::new(local, 0))?;
    s.connect(to).await
}

/// A loopback port nothing listens on now, and that this process has not
/// handed out before: the OS may offer the same free port twice in a row,
/// and two processes of one test (etcd and kube-apiserver) must not get it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

pub struct Proc {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Whether the process has exited (a zombie until it is reaped).
    pub fn exited(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/status", self.child.id())) {
            Ok(status) => status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z')),
            Err(_) => true,
        }
    }

    /// A line of /proc/<pid>/status in KiB (`VmRSS`, `VmHWM`: the peak).
    pub fn memory_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(name: &'static str, program: &Path, args: &[String], dir: &Path) -> Result<Proc> {
    spawn_env(name, program, args, dir, &[])
}

/// [`spawn`] with extra environment variables.
pub fn spawn_env(
    name: &'static str,
    program: &Path,
    args: &[String],
    dir: &Path,
    env: &[(&str, &str)],
) -> Result<Proc> {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log)?;
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdout(file.try_clone()?)
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Proc { name, child, log })
}

pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// etcd and kube-apiserver, stopped when dropped.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub kubeconfig: PathBuf,
    pub client: reqwest::Client,
    procs: Vec<Proc>,
    /// How the API server was started, to start it again.
    api_command: (PathBuf, Vec<String>),
}

impl Cluster {
    pub async fn start() -> Result<Cluster> {
        Self::start_with(false).await
    }

    /// A cluster whose ServiceAccount issuer is its own HTTPS URL
    /// (`https://127.0.0.1:<port>`), so that discovery, keys and the TLS
    /// thumbprint can be fetched from the issuer URL itself, as from EKS's.
    pub async fn start_self_issuer() -> Result<Cluster> {
        Self::start_with(true).await
    }

    /// Starts etcd and kube-apiserver; again with other ports when one was
    /// taken between choosing it and binding it (by a process outside this
    /// one).
    async fn start_with(self_issuer: bool) -> Result<Cluster> {
        let mut attempt = 0;
        loop {
            match Self::start_once(self_issuer).await {
                Err(e) if attempt < 2 && format!("{e:#}").contains("address already in use") => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn start_once(self_issuer: bool) -> Result<Cluster> {
        let assets = kube_assets()?;
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd = spawn(
            "etcd",
            &assets.join("etcd"),
            &[
                "--name=e2e".into(),
                format!("--data-dir={}", d.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=e2e=http://127.0.0.1:{peer_port}"),
            ],
            d,
        )?;
        let sa_key = rcgen::KeyPair::generate()?;
        std::fs::write(d.join("sa.key"), sa_key.serialize_pem())?;
        std::fs::write(d.join("sa.pub"), sa_key.public_key_pem())?;
        std::fs::write(
            d.join("tokens.csv"),
            format!("{ADMIN_TOKEN},admin,admin-uid,system:masters\n"),
        )?;
        std::fs::create_dir_all(d.join("certs"))?;
        let api_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", d.join("certs").display()),
            format!("--token-auth-file={}", d.join("tokens.csv").display()),
            "--authorization-mode=RBAC".into(),
            if self_issuer {
                format!("--service-account-issuer=https://127.0.0.1:{api_port}")
            } else {
                "--service-account-issuer=https://kubernetes.default.svc".into()
            },
            format!("--service-account-key-file={}", d.join("sa.pub").display()),
            format!(
                "--service-account-signing-key-file={}",
                d.join("sa.key").display()
            ),
            "--api-audiences=https://kubernetes.default.svc,sts.amazonaws.com".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
        ];
        let api = spawn(
            "kube-apiserver",
            &assets.join("kube-apiserver"),
            &api_args,
            d,
        )?;
        let url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = d.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {url}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: admin}}\ncurrent-context: e2e\n"
            ),
        )?;
        let client = reqwest::Client::builder()
            // The API server's self-signed serving certificate on loopback.
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        let cluster = Cluster {
            dir,
            url,
            kubeconfig,
            client,
            procs: vec![etcd, api],
            api_command: (assets.join("kube-apiserver"), api_args),
        };
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Stops the API server (etcd keeps the data).
    pub fn stop_api_server(&mut self) {
        if self.procs.len() > 1 {
            drop(self.procs.remove(1));
        }
    }

    /// Starts the API server again on the same port and waits until ready.
    pub async fn start_api_server(&mut self) -> Result<()> {
        let (program, args) = self.api_command.clone();
        let api = spawn("kube-apiserver", &program, &args, self.dir.path())?;
        self.procs.insert(1, api);
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/readyz", self.url))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
            {
                if r.status().is_success() {
                    // The default namespace is created by a bootstrap controller.
                    if self.get("/api/v1/namespaces/default").await.is_ok() {
                        return Ok(());
                    }
                }
            }
            if let Some(p) = self.procs.iter().find(|p| p.exited()) {
                bail!(
                    "{} exited before the cluster was ready:\n{}",
                    p.name,
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                bail!("kube-apiserver not ready in 90 s:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Mints the token the kubelet would mount: a TokenRequest for the
    /// ServiceAccount with this audience and lifetime, bound to the pod when
    /// given (name, uid).
    pub async fn token_request(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
        expiration_seconds: i64,
        pod: Option<(&str, &str)>,
    ) -> Result<String> {
        let mut spec = json!({"audiences": [audience], "expirationSeconds": expiration_seconds});
        if let Some((name, uid)) = pod {
            spec["boundObjectRef"] =
                json!({"kind": "Pod", "apiVersion": "v1", "name": name, "uid": uid});
        }
        let body =
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
        let (resp, _) = self
            .create(
                &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"),
                &body,
            )
            .await?;
        resp["status"]["token"]
            .as_str()
            .map(str::to_string)
            .context("TokenRequest returned no token")
    }

    /// The admin token in a file (for clients that read a bearer token file).
    pub fn admin_token_file(&self) -> Result<PathBuf> {
        let p = self.dir.path().join("admin-token");
        std::fs::write(&p, ADMIN_TOKEN)?;
        Ok(p)
    }

    /// The CA bundle of the API server's self-signed serving certificate.
    pub fn serving_ca_file(&self) -> PathBuf {
        self.dir.path().join("certs").join("apiserver.crt")
    }

    /// The ServiceAccount signing key (PKCS#8 PEM) the API server uses.
    pub fn sa_signing_key_pem(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join("sa.key"))?)
    }

    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("--- {}:\n{}", p.name, tail(&p.log)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Sends a request with the admin token; returns status, headers and JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, HeaderMap, Value)> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, headers, value))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let (status, _, v) = self.request(reqwest::Method::GET, path, None).await?;
        if status != 200 {
            bail!("GET {path}: {status} {v}");
        }
        Ok(v)
    }

    /// POSTs an object and returns it as stored, with the response headers.
    pub async fn create(&self, path: &str, body: &Value) -> Result<(Value, HeaderMap)> {
        let (status, headers, v) = self
            .request(reqwest::Method::POST, path, Some(body))
            .await?;
        if status != 201 && status != 200 {
            bail!("POST {path}: {status} {v}");
        }
        Ok((v, headers))
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        let (status, _, v) = self.request(reqwest::Method::DELETE, path, None).await?;
        if status != 200 && status != 202 {
            bail!("DELETE {path}: {status} {v}");
        }
        Ok(())
    }

    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        self.create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .await?;
        Ok(())
    }
}

/// A CA and a serving certificate for 127.0.0.1 signed by it.
pub struct TestCerts {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn make_certs() -> Result<TestCerts> {
    make_certs_until(None)
}

/// [`make_certs`] with the serving certificate valid until `not_after`
/// (e.g. in the past, for an expired certificate).
pub fn make_certs_until(not_after: Option<(i32, u8, u8)>) -> Result<TestCerts> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "e2e webhook CA");
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pod-identity-webhook");
    if let Some((y, m, d)) = not_after {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(y, m, d);
    }
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(TestCerts {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Waits until the API server calls the webhook (its configuration informer
/// takes a moment after registration): creates pods of an annotated
/// ServiceAccount in namespace `probe` until one comes back with a volume.
pub async fn wait_for_webhook(cluster: &Cluster, role: &str) -> Result<()> {
    cluster.create_namespace("probe").await?;
    cluster
        .create(
            "/api/v1/namespaces/probe/serviceaccounts",
            &json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "probe", "annotations": {"eks.amazonaws.com/role-arn": role}}}),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("probe-{i}")},
            "spec": {"serviceAccountName": "probe", "automountServiceAccountToken": false,
                     "containers": [{"name": "c", "image": "x"}]}
        });
        let (stored, _) = cluster
            .create("/api/v1/namespaces/probe/pods", &pod)
            .await?;
        if stored["spec"]["volumes"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the API server never called the webhook");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unreachable!()
}

/// The real webhook binary, stopped when dropped.
pub struct Webhook {
    pub port: u16,
    pub metrics_port: u16,
    pub ca_pem: String,
    proc: Proc,
}

impl Webhook {
    pub async fn start(cluster: &Cluster, extra: &[&str]) -> Result<Webhook> {
        Self::start_with_profile(cluster, extra, "debug").await
    }

    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// Starts the binary built with the given profile (`debug` or `release`).
    pub async fn start_with_profile(
        cluster: &Cluster,
        extra: &[&str],
        profile: &str,
    ) -> Result<Webhook> {
        Self::start_with_certs(cluster, extra, profile, make_certs()?).await
    }

    /// Starts the webhook and waits only until it serves `/healthz` (for
    /// tests of what keeps it unready).
    pub async fn start_unready(cluster: &Cluster, extra: &[&str]) -> Result<Webhook> {
        Self::start_inner(cluster, extra, "debug", make_certs()?, "/healthz").await
    }

    /// Starts the webhook serving `certs` (files named after its port).
    pub async fn start_with_certs(
        cluster: &Cluster,
        extra: &[&str],
        profile: &str,
        certs: TestCerts,
    ) -> Result<Webhook> {
        Self::start_inner(cluster, extra, profile, certs, "/readyz").await
    }

    async fn start_inner(
        cluster: &Cluster,
        extra: &[&str],
        profile: &str,
        certs: TestCerts,
        wait_path: &str,
    ) -> Result<Webhook> {
        let d = cluster.dir.path();
        let (port, metrics_port) = (free_port(), free_port());
        let (crt, key) = (
            d.join(format!("tls-{port}.crt")),
            d.join(format!("tls-{port}.key")),
        );
        std::fs::write(&crt, &certs.cert_pem)?;
        std::fs::write(&key, &certs.key_pem)?;
        let mut args = vec![
            "serve".to_string(),
            "--bind-address=127.0.0.1".into(),
            format!("--port={port}"),
            format!("--metrics-port={metrics_port}"),
            format!("--tls-cert={}", crt.display()),
            format!("--tls-key={}", key.display()),
            format!("--kubeconfig={}", cluster.kubeconfig.display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = spawn(
            "pod-identity-webhook",
            &workspace_bin_in("pod-identity-webhook", profile)?,
            &args,
            d,
        )?;
        let hook = Webhook {
            port,
            metrics_port,
            ca_pem: certs.ca_pem,
            proc,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{metrics_port}{wait_path}")).await
            {
                if r.status().is_success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("webhook not ready in 120 s:\n{}", tail(&hook.proc.log));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(hook)
    }

    pub fn log(&self) -> String {
        tail(&self.proc.log)
    }

    pub async fn metrics(&self) -> Result<String> {
        Ok(
            reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
                .await?
                .text()
                .await?,
        )
    }

    /// Registers this webhook with the API server, by URL on 127.0.0.1.
    pub async fn register(&self, cluster: &Cluster, name: &str) -> Result<()> {
        register_webhook(cluster, name, self.port, &self.ca_pem).await
    }
}

/// Registers a webhook serving on 127.0.0.1:`port` with the API server, by URL.
pub async fn register_webhook(
    cluster: &Cluster,
    name: &str,
    port: u16,
    ca_pem: &str,
) -> Result<()> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "pod-identity-webhook.amazonaws.com",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate"), "caBundle": ca},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "admissionReviewVersions": ["v1", "v1beta1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "timeoutSeconds": 10,
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]}
        }]
    });
    cluster
        .create(
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
            &config,
        )
        .await?;
    Ok(())
}

/// Polls `check` every 200 ms until it says yes; fails after 60 s naming
/// `what`.
pub async fn wait_for<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
