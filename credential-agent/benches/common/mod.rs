//! What the agent's and the broker's benchmarks share: the issuer's key and
//! EKS-sized tokens, a canned STS (AssumeRoleWithWebIdentity and AssumeRole,
//! counting calls), processes that stop on drop, and the load generator.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::json;

pub const BIN: &str = env!("CARGO_BIN_EXE_credential-agent");
pub const ISSUER: &str =
    "https://oidc.eks.us-west-2.amazonaws.com/id/9F3B1C2D4E5A6B7C8D9E0F1A2B3C4D5E";
pub const ROLE_QUERY: &str = "?role=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fbench";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The issuer's signing key: RSA 2048 and RS256, as EKS signs projected
/// tokens, so tokens have their real size (about 1,250 characters).
pub struct Key {
    pub key: aws_lc_rs::rsa::KeyPair,
    pub kid: String,
}

pub fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// 32 hex digits as a UUID.
pub fn dashed(h: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The same uid for the same name: a ServiceAccount keeps its uid across
/// the tokens of its pods.
pub fn stable_uuid(name: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
    dashed(
        &d.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

pub fn uuid() -> String {
    dashed(&format!("{:032x}", rand::random::<u128>()))
}

impl Key {
    pub fn new() -> Self {
        Key {
            key: aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
            kid: format!("{:040x}", rand::random::<u128>()),
        }
    }
    pub fn jwks(&self) -> String {
        use aws_lc_rs::signature::KeyPair as _;
        let public = self.key.public_key();
        json!({"keys": [{"kty": "RSA", "alg": "RS256", "kid": self.kid, "use": "sig",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero())}]})
        .to_string()
    }
    /// A projected ServiceAccount token with the claims Kubernetes 1.30+
    /// puts in one (node, jti, warnafter).
    pub fn token(&self, sa: &str, pod: &str) -> String {
        self.token_for(
            "sts.amazonaws.com",
            sa,
            &format!("{pod}-7d9f8b6c5-x2k4p"),
            &uuid(),
        )
    }

    /// A token of ServiceAccount `sa` in namespace `bench`, for `aud`,
    /// bound to the pod `pod` with uid `pod_uid`.
    pub fn token_for(&self, aud: &str, sa: &str, pod: &str, pod_uid: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = json!({"alg": "RS256", "kid": self.kid});
        let claims = json!({
            "aud": [aud], "exp": now + 86400, "iat": now,
            "iss": ISSUER, "jti": uuid(),
            "kubernetes.io": {"namespace": "bench",
                "node": {"name": "ip-10-0-12-34.us-west-2.compute.internal", "uid": uuid()},
                "pod": {"name": pod, "uid": pod_uid},
                "serviceaccount": {"name": sa, "uid": stable_uuid(sa)},
                "warnafter": now + 3607},
            "nbf": now, "sub": format!("system:serviceaccount:bench:{sa}"),
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{signing_input}.{}", b64(&sig))
    }
}

/// A canned STS: answers AssumeRoleWithWebIdentity or AssumeRole (the
/// request's Action) after `delay` with credentials of realistic size,
/// counting calls.
pub async fn fake_sts(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let app = axum::Router::new().fallback(move |body: String| {
        let c = c.clone();
        async move {
            let n = c.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            let exp = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600));
            // STS session tokens are ~1,000 characters of base64.
            let raw: Vec<u8> = (0..750u32).map(|i| (i.wrapping_mul(2654435761).wrapping_add(n as u32) >> 13) as u8).collect();
            let token = base64::engine::general_purpose::STANDARD.encode(raw);
            let op = if body.contains("Action=AssumeRoleWithWebIdentity") {
                "AssumeRoleWithWebIdentity"
            } else {
                "AssumeRole"
            };
            (
                [("content-type", "text/xml")],
                format!("<{op}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{op}Result><Credentials><AccessKeyId>ASIA{n:016}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>{token}</SessionToken><Expiration>{exp}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROA:x</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/bench/x</Arn></AssumedRoleUser></{op}Result><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></{op}Response>", "s".repeat(40)),
            )
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), calls)
}

pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first, so a profiler wrapping the agent writes its output.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..100 {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn wait_http(url: &str) {
    // Long enough for an agent started under valgrind.
    for _ in 0..1200 {
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never became ready");
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// CPU time (user + system) the process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 here.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    let hz = 100.0; // USER_HZ on Linux
    ticks / hz
}

pub struct Load {
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub errors: usize,
}

/// `conns` keep-alive connections, each sending requests back to back for
/// `secs` seconds.
pub async fn load(url: String, token: Option<String>, conns: usize, secs: f64) -> Load {
    load_with(reqwest::Client::builder, url, token, None, conns, secs).await
}

/// [`load`] with clients from `builder` (one per connection), and a POST of
/// `body` instead of a GET when given.
pub async fn load_with(
    builder: impl Fn() -> reqwest::ClientBuilder,
    url: String,
    token: Option<String>,
    body: Option<String>,
    conns: usize,
    secs: f64,
) -> Load {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let clients: Vec<reqwest::Client> = (0..conns)
        .map(|_| builder().pool_max_idle_per_host(1).build().unwrap())
        .collect();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let url = url.clone();
            let token = token.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                let mut errors = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let mut req = match &body {
                        Some(b) => client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(b.clone()),
                        None => client.get(&url),
                    };
                    if let Some(tok) = &token {
                        req = req.header("authorization", tok);
                    }
                    match req.send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            lat.push(t.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Load {
        rps: all.len() as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
        errors,
    }
}

/// The release agent in node mode against `sts`, keys from `dir`/jwks.json,
/// under `BENCH_WRAPPER` when set; waits until ready.
pub async fn start_agent(dir: &Path, sts: &str, max_entries: usize) -> (Proc, SocketAddr) {
    let port = free_port();
    let health = free_port();
    let wrapper = std::env::var("BENCH_WRAPPER").unwrap_or_default();
    let mut cmd = if wrapper.is_empty() {
        Command::new(BIN)
    } else {
        let mut parts = wrapper.split_whitespace();
        let mut c = Command::new(parts.next().unwrap());
        c.args(parts).arg(BIN);
        c
    };
    let child = cmd
        .args([
            "serve",
            &format!("--listen=127.0.0.1:{port}"),
            &format!("--health-listen=127.0.0.1:{health}"),
            &format!("--metrics-listen=127.0.0.1:{}", free_port()),
            &format!("--issuer={ISSUER}"),
            &format!("--jwks-file={}", dir.join("jwks.json").display()),
            &format!("--sts-endpoint={sts}"),
            "--region=us-east-1",
            &format!("--max-entries={max_entries}"),
            // Every pod is played from one loopback address.
            "--max-connections-per-peer=100000",
            "--max-connections=100000",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_http(&format!("http://127.0.0.1:{health}/readyz")).await;
    (Proc(child), format!("127.0.0.1:{port}").parse().unwrap())
}

/// Sends one request per token, 50 at a time, each answered 200; the time
/// it took.
pub async fn fill(
    tokens: &[String],
    request: impl Fn(&str) -> reqwest::RequestBuilder,
) -> Duration {
    let started = Instant::now();
    for chunk in tokens.chunks(50) {
        let futs = chunk.iter().map(|t| request(t).send());
        for r in futures::future::join_all(futs).await {
            assert_eq!(r.unwrap().status(), 200);
        }
    }
    started.elapsed()
}
