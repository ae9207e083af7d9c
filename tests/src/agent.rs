//! Support for credential-agent tests: a token issuer of the tests' own
//! (ES256 keys, JWKS on disk), moto as the STS server, a fault-injecting
//! proxy in front of it, and the real `credential-agent` binary.
//!
//! Long because it is one harness (issuer, moto, proxy, agent process);
//! nothing here ships.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::harness::{free_port, tail, workspace_bin, Proc};

pub const ISSUER: &str = "https://issuer.test.invalid";
pub const ROLE: &str = "arn:aws:iam::123456789012:role/app-role";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An ES256 signing key with a key id.
pub struct SigningKey {
    pub kid: String,
    key: rcgen::KeyPair,
}

impl SigningKey {
    pub fn generate(kid: &str) -> Result<Self> {
        Ok(SigningKey {
            kid: kid.to_string(),
            key: rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        })
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        let raw = self.key.public_key_raw(); // 0x04 || X || Y
        json!({
            "use": "sig", "kty": "EC", "crv": "P-256", "alg": "ES256",
            "kid": self.kid,
            "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
        })
    }

    pub fn public_pem(&self) -> String {
        self.key.public_key_pem()
    }

    /// Signs `claims` with this key and the given header fields.
    pub fn sign_with(&self, header: jsonwebtoken::Header, claims: &Value) -> Result<String> {
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.key.serialize_der());
        Ok(jsonwebtoken::encode(&header, claims, &key)?)
    }

    pub fn sign(&self, claims: &Value) -> Result<String> {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        self.sign_with(h, claims)
    }
}

/// Claims of a projected ServiceAccount token, as the kubelet's would be.
pub fn claims(ns: &str, sa: &str, sa_uid: &str, pod: Option<(&str, &str)>) -> Value {
    let now = now_secs();
    let mut k8s = json!({
        "namespace": ns,
        "serviceaccount": { "name": sa, "uid": sa_uid },
    });
    if let Some((name, uid)) = pod {
        k8s["pod"] = json!({ "name": name, "uid": uid });
    }
    json!({
        "aud": ["sts.amazonaws.com"],
        "exp": now + 3600,
        "iat": now,
        "nbf": now,
        "iss": ISSUER,
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "kubernetes.io": k8s,
    })
}

/// The tests' issuer: keys whose JWKS is a file the agent reads.
pub struct Issuer {
    pub keys: Vec<SigningKey>,
    pub jwks_file: PathBuf,
}

impl Issuer {
    pub fn new(dir: &Path) -> Result<Self> {
        let issuer = Issuer {
            keys: vec![SigningKey::generate("key-1")?],
            jwks_file: dir.join("jwks.json"),
        };
        issuer.write_jwks()?;
        Ok(issuer)
    }

    pub fn write_jwks(&self) -> Result<()> {
        let doc = json!({ "keys": self.keys.iter().map(SigningKey::jwk).collect::<Vec<_>>() });
        std::fs::write(&self.jwks_file, doc.to_string())?;
        Ok(())
    }

    pub fn token(&self, claims: &Value) -> String {
        self.keys[0].sign(claims).expect("signing")
    }
}

/// A Python venv with moto, boto3 and the aws CLI (scripts/ensure-python.sh).
pub fn venv() -> Result<PathBuf> {
    let dir = std::env::var_os("POD_IDENTITY_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/pod-identity-rs/venv"))
        })
        .context("no HOME")?;
    if !dir.join("bin/moto_server").exists() {
        bail!(
            "{} has no moto_server: run ./scripts/test.sh (it installs the Python tools), or scripts/ensure-python.sh",
            dir.display()
        );
    }
    Ok(dir)
}

/// moto's server on loopback, the STS the tests use.
pub struct Moto {
    pub url: String,
    pub dir: tempfile::TempDir,
    _proc: Proc,
}

impl Moto {
    pub async fn start() -> Result<Moto> {
        Self::start_with_env(&[]).await
    }

    /// With AWS managed policies (`arn:aws:iam::aws:policy/...`) loaded.
    pub async fn start_with_managed_policies() -> Result<Moto> {
        Self::start_with_env(&[("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")]).await
    }

    pub async fn start_with_env(env: &[(&str, &str)]) -> Result<Moto> {
        let venv = venv()?;
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let proc = crate::harness::spawn_env(
            "moto",
            &venv.join("bin/moto_server"),
            &[
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ],
            dir.path(),
            env,
        )?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::get(format!("{url}/moto-api/")).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!("moto did not start:\n{}", tail(&proc.log));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Moto {
            url,
            dir,
            _proc: proc,
        })
    }
}

/// What the proxy does to the next STS requests.
#[derive(Clone, Debug)]
pub enum Fault {
    Pass,
    /// Wait, then forward.
    Latency(Duration),
    /// Answer with this status and an STS error document of this code.
    Error(u16, &'static str),
    /// Answer 200 with a body that is not an STS response.
    Garbage,
    /// Answer 200 with this AssumeRoleWithWebIdentity result.
    Respond(String),
    /// Answer with this status and code, and a message that echoes the
    /// web identity token the request carried.
    EchoToken(u16, &'static str),
    /// The first `times` requests of this Query API action (the `Action=`
    /// form field) are answered with this status, code and message; the
    /// rest are forwarded.
    FailAction {
        action: &'static str,
        times: usize,
        status: u16,
        code: &'static str,
        message: &'static str,
    },
}

/// An AssumeRoleWithWebIdentity success document with the given secrets.
pub fn sts_success(access_key: &str, secret: &str, session_token: &str, expires_in: u64) -> String {
    let exp =
        humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(expires_in));
    format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{access_key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey><SessionToken>{session_token}</SessionToken><Expiration>{exp}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROA:s</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/app-role/s</Arn></AssumedRoleUser><SubjectFromWebIdentityToken>x</SubjectFromWebIdentityToken></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
    )
}

#[derive(Default)]
struct ProxyState {
    fault: Mutex<Option<Fault>>,
    assume_calls: AtomicUsize,
    all_calls: AtomicUsize,
    /// Requests answered by [`Fault::FailAction`], and all requests of its action.
    failed: AtomicUsize,
    action_calls: AtomicUsize,
    /// The WebIdentityToken of each AssumeRoleWithWebIdentity call.
    tokens: Mutex<Vec<String>>,
    upstream: String,
    client: reqwest::Client,
}

/// A fault-injecting HTTP proxy in front of moto that counts
/// AssumeRoleWithWebIdentity calls. `refuse()` closes its port so
/// connections are refused; `accept()` opens it again.
pub struct FaultProxy {
    pub url: String,
    port: u16,
    state: Arc<ProxyState>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// An error answer of the AWS Query protocol (STS, IAM).
fn query_error(status: u16, code: &str, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let xml = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    );
    (
        http::StatusCode::from_u16(status).unwrap(),
        [("content-type", "text/xml")],
        xml,
    )
        .into_response()
}

async fn proxy_handler(
    axum::extract::State(s): axum::extract::State<Arc<ProxyState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    s.all_calls.fetch_add(1, Ordering::SeqCst);
    let is_assume = String::from_utf8_lossy(&body).contains("Action=AssumeRoleWithWebIdentity");
    if is_assume {
        s.assume_calls.fetch_add(1, Ordering::SeqCst);
        // JWT characters are all unreserved: the form value is the token.
        let token = String::from_utf8_lossy(&body)
            .split('&')
            .find_map(|kv| kv.strip_prefix("WebIdentityToken="))
            .unwrap_or_default()
            .to_string();
        s.tokens.lock().unwrap().push(token);
    }
    let fault = s.fault.lock().unwrap().clone().unwrap_or(Fault::Pass);
    match fault {
        Fault::Pass => {}
        Fault::Latency(d) => tokio::time::sleep(d).await,
        Fault::Error(status, code) => {
            return query_error(status, code, &format!("injected {code}"));
        }
        Fault::FailAction {
            action,
            times,
            status,
            code,
            message,
        } => {
            let form = String::from_utf8_lossy(&body).to_string();
            if form.split('&').any(|kv| kv == format!("Action={action}")) {
                s.action_calls.fetch_add(1, Ordering::SeqCst);
                if s.failed.load(Ordering::SeqCst) < times {
                    s.failed.fetch_add(1, Ordering::SeqCst);
                    return query_error(status, code, message);
                }
            }
        }
        Fault::Garbage => {
            return (http::StatusCode::OK, "<html>captive portal</html>").into_response();
        }
        Fault::Respond(xml) => {
            return (http::StatusCode::OK, [("content-type", "text/xml")], xml).into_response();
        }
        Fault::EchoToken(status, code) => {
            let text = String::from_utf8_lossy(&body).to_string();
            let token = text
                .split('&')
                .find_map(|kv| kv.strip_prefix("WebIdentityToken="))
                .unwrap_or_default()
                .to_string();
            let xml = format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>token {token} rejected</Message></Error><RequestId>1</RequestId></ErrorResponse>"
            );
            return (
                http::StatusCode::from_u16(status).unwrap(),
                [("content-type", "text/xml")],
                xml,
            )
                .into_response();
        }
    }
    match forward(&s.client, &s.upstream, &parts, body).await {
        Ok((status, ct, bytes)) => {
            (status, [(http::header::CONTENT_TYPE, ct)], bytes).into_response()
        }
        Err(e) => (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Sends a request on to `upstream` (moto) as it came, without Host and
/// Content-Length; returns the status, content type and body.
pub async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    parts: &http::request::Parts,
    body: axum::body::Bytes,
) -> reqwest::Result<(http::StatusCode, http::HeaderValue, axum::body::Bytes)> {
    let uri = format!(
        "{upstream}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut fwd = client.request(parts.method.clone(), uri).body(body);
    for (k, v) in parts.headers.iter() {
        if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
            fwd = fwd.header(k, v);
        }
    }
    let r = fwd.send().await?;
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .cloned()
        .unwrap_or(http::HeaderValue::from_static("text/xml"));
    Ok((status, ct, r.bytes().await?))
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Result<FaultProxy> {
        let port = free_port();
        let state = Arc::new(ProxyState {
            upstream: upstream.to_string(),
            client: reqwest::Client::new(),
            ..Default::default()
        });
        let proxy = FaultProxy {
            url: format!("http://127.0.0.1:{port}"),
            port,
            state,
            server: Mutex::new(None),
        };
        proxy.accept().await?;
        Ok(proxy)
    }

    /// (Re)opens the port.
    pub async fn accept(&self) -> Result<()> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await?;
        let app = axum::Router::new()
            .fallback(proxy_handler)
            .with_state(self.state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.server.lock().unwrap() = Some(task);
        Ok(())
    }

    /// Closes the port: new connections are refused.
    pub async fn refuse(&self) {
        if let Some(t) = self.server.lock().unwrap().take() {
            t.abort();
        }
        // Let the aborted task drop its listener.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = Some(fault);
    }

    /// AssumeRoleWithWebIdentity calls seen so far.
    pub fn assume_calls(&self) -> usize {
        self.state.assume_calls.load(Ordering::SeqCst)
    }

    /// Requests of the [`Fault::FailAction`] action: (all seen, answered
    /// with the injected error).
    pub fn action_calls(&self) -> (usize, usize) {
        (
            self.state.action_calls.load(Ordering::SeqCst),
            self.state.failed.load(Ordering::SeqCst),
        )
    }

    /// The WebIdentityToken each of those calls carried, in order.
    pub fn tokens(&self) -> Vec<String> {
        self.state.tokens.lock().unwrap().clone()
    }
}

/// The real credential-agent binary.
pub struct Agent {
    pub url: String,
    pub port: u16,
    pub health: String,
    pub metrics: String,
    pub dir: tempfile::TempDir,
    proc: Proc,
}

impl Agent {
    /// `credential-agent <mode> <args>` on free loopback ports, waiting
    /// until /readyz answers 200.
    pub async fn start(mode: &str, args: &[String], env: &[(&str, &str)]) -> Result<Agent> {
        Self::start_bin(&workspace_bin("credential-agent")?, mode, args, env).await
    }

    /// [`Agent::start`] with another build of the binary (e.g. the release
    /// build of the image).
    pub async fn start_bin(
        bin: &Path,
        mode: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<Agent> {
        let dir = tempfile::tempdir()?;
        let (port, health, metrics) = (free_port(), free_port(), free_port());
        let mut all = vec![
            mode.to_string(),
            format!("--listen=127.0.0.1:{port}"),
            format!("--health-listen=127.0.0.1:{health}"),
            format!("--metrics-listen=127.0.0.1:{metrics}"),
        ];
        all.extend(args.iter().cloned());
        let log = dir.path().join("agent.log");
        let file = std::fs::File::create(&log)?;
        let mut cmd = std::process::Command::new(bin);
        cmd.args(&all)
            .stdout(file.try_clone()?)
            .stderr(file)
            .stdin(std::process::Stdio::null())
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_ENDPOINT_URL_STS")
            .env_remove("AWS_ROLE_ARN")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting credential-agent")?;
        let agent = Agent {
            url: format!("http://127.0.0.1:{port}"),
            port,
            health: format!("http://127.0.0.1:{health}"),
            metrics: format!("http://127.0.0.1:{metrics}"),
            dir,
            proc: Proc {
                name: "credential-agent",
                child,
                log,
            },
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", agent.health)).await {
                if r.status().is_success() {
                    return Ok(agent);
                }
            }
            if Instant::now() > deadline {
                bail!("credential-agent not ready:\n{}", agent.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    /// The process's resident memory now and at its peak, in MiB.
    pub fn rss_mib(&self) -> (f64, f64) {
        let mib = |f| self.proc.memory_kib(f).unwrap_or(0) as f64 / 1024.0;
        (mib("VmRSS"), mib("VmHWM"))
    }

    pub fn log_tail(&self) -> String {
        tail(&self.proc.log)
    }

    /// GET /v1/credentials with the given Authorization value and query.
    pub async fn get(&self, token: Option<&str>, query: &str) -> Result<(u16, String, Value)> {
        let mut req = reqwest::Client::new().get(format!("{}/v1/credentials{query}", self.url));
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body: Value = serde_json::from_str(&resp.text().await?).unwrap_or(Value::Null);
        Ok((status, ct, body))
    }

    /// The value of a metric line that starts with `prefix`, summed.
    pub async fn metric(&self, prefix: &str) -> Result<f64> {
        let text = reqwest::get(format!("{}/metrics", self.metrics))
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> Result<Option<i32>> {
        let pid = self.proc.child.id();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.proc.child.try_wait()? {
                return Ok(s.code());
            }
            if Instant::now() > deadline {
                bail!("credential-agent did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Node-mode arguments for an agent that verifies tokens of `issuer` and
/// calls STS at `sts`.
pub fn node_args(issuer: &Issuer, sts: &str) -> Vec<String> {
    vec![
        format!("--issuer={ISSUER}"),
        format!("--jwks-file={}", issuer.jwks_file.display()),
        format!("--sts-endpoint={sts}"),
        "--region=us-east-1".into(),
        "--jwks-min-refetch-interval=1s".into(),
    ]
}

/// `?role=<URL-encoded ARN>`.
pub fn role_query(role: &str) -> String {
    let enc: String = role
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("?role={enc}")
}
