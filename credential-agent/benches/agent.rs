//! Benchmarks of the real `credential-agent` binary (release build), with
//! a canned STS of the bench's own on loopback:
//!
//! 1. cached-credential requests per second and latency percentiles, next to
//!    a bare axum route (same JSON size, same runtime, own process) measured
//!    in the same run, by the same load generator;
//! 2. STS calls made for 1,000 concurrent cold requests of one identity;
//! 3. RSS of the agent holding 10,000 cached identities.
//!
//! Run: `cargo bench -p credential-agent --bench agent` (results are copied
//! into docs/benchmarks.md by hand). BENCH_SECONDS sets the load duration,
//! BENCH_ONLY=throughput|cold|rss one part, BENCH_N the identity count, and
//! BENCH_WRAPPER a command the agent runs under, e.g.
//! `valgrind --tool=massif --massif-out-file=/tmp/massif.out`.

// A benchmark measures the real clocks.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_credential-agent");
const ISSUER: &str = "https://oidc.eks.us-west-2.amazonaws.com/id/9F3B1C2D4E5A6B7C8D9E0F1A2B3C4D5E";
const ROLE_QUERY: &str = "?role=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fbench";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The issuer's signing key: RSA 2048 and RS256, as EKS signs projected
/// tokens, so tokens have their real size (about 1,250 characters).
struct Key {
    key: aws_lc_rs::rsa::KeyPair,
    kid: String,
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// 32 hex digits as a UUID.
fn dashed(h: &str) -> String {
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
fn stable_uuid(name: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
    dashed(
        &d.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

fn uuid() -> String {
    dashed(&format!("{:032x}", rand::random::<u128>()))
}

impl Key {
    fn new() -> Self {
        Key {
            key: aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
            kid: format!("{:040x}", rand::random::<u128>()),
        }
    }
    fn jwks(&self) -> String {
        use aws_lc_rs::signature::KeyPair as _;
        let public = self.key.public_key();
        json!({"keys": [{"kty": "RSA", "alg": "RS256", "kid": self.kid, "use": "sig",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero())}]})
        .to_string()
    }
    /// A projected ServiceAccount token with the claims Kubernetes 1.30+
    /// puts in one (node, jti, warnafter).
    fn token(&self, sa: &str, pod: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = json!({"alg": "RS256", "kid": self.kid});
        let claims = json!({
            "aud": ["sts.amazonaws.com"], "exp": now + 86400, "iat": now,
            "iss": ISSUER, "jti": uuid(),
            "kubernetes.io": {"namespace": "bench",
                "node": {"name": "ip-10-0-12-34.us-west-2.compute.internal", "uid": uuid()},
                "pod": {"name": format!("{pod}-7d9f8b6c5-x2k4p"), "uid": uuid()},
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

/// A canned STS: answers AssumeRoleWithWebIdentity after `delay` with
/// credentials of realistic size, counting calls.
async fn fake_sts(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let app = axum::Router::new().fallback(move || {
        let c = c.clone();
        async move {
            let n = c.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            let exp = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600));
            // STS session tokens are ~1,000 characters of base64.
            let raw: Vec<u8> = (0..750u32).map(|i| (i.wrapping_mul(2654435761).wrapping_add(n as u32) >> 13) as u8).collect();
            let token = base64::engine::general_purpose::STANDARD.encode(raw);
            (
                [("content-type", "text/xml")],
                format!("<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIA{n:016}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>{token}</SessionToken><Expiration>{exp}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROA:x</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/bench/x</Arn></AssumedRoleUser></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>", "s".repeat(40)),
            )
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), calls)
}

struct Proc(Child);
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

async fn wait_http(url: &str) {
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

async fn start_agent(dir: &Path, sts: &str, max_entries: usize) -> (Proc, SocketAddr) {
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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

struct Load {
    rps: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    errors: usize,
}

/// `conns` keep-alive connections, each sending requests back to back for
/// `secs` seconds.
async fn load(url: String, token: Option<String>, conns: usize, secs: f64) -> Load {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let url = url.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                let mut lat = Vec::with_capacity(100_000);
                let mut errors = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let mut req = client.get(&url);
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

/// The bare axum server: the same JSON body, no work.
fn bare_axum(port: u16) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let body = json!({"AccessKeyId": "ASIA0000000000000000", "SecretAccessKey": "s".repeat(40),
            "Token": "F".repeat(1001), "AccountId": "123456789012", "Expiration": "2030-01-01T00:00:00Z"})
        .to_string();
        let app = axum::Router::new().route(
            "/v1/credentials",
            axum::routing::get(move || {
                let b = body.clone();
                async move { ([("content-type", "application/json")], b) }
            }),
        );
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        axum::serve(l, app).await.unwrap();
    });
}

fn main() {
    if let Ok(port) = std::env::var("BENCH_BARE_AXUM_PORT") {
        bare_axum(port.parse().unwrap());
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` would not: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::new();
        std::fs::write(dir.path().join("jwks.json"), key.jwks()).unwrap();

        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        let run = |part: &str| only.is_empty() || only == part;
        if run("throughput") {
        // 1. Throughput, cached credential vs bare axum.
        let (sts, _) = fake_sts(Duration::from_millis(20)).await;
        let (_agent, addr) = start_agent(dir.path(), &sts, 20_000).await;
        let bare_port = free_port();
        let _bare = Proc(
            Command::new(std::env::current_exe().unwrap())
                .env("BENCH_BARE_AXUM_PORT", bare_port.to_string())
                .spawn()
                .unwrap(),
        );
        wait_http(&format!("http://127.0.0.1:{bare_port}/v1/credentials")).await;
        let token = key.token("app", "app-1");
        let agent_url = format!("http://{addr}/v1/credentials{ROLE_QUERY}");
        let warm = reqwest::Client::new().get(&agent_url).header("authorization", &token).send().await.unwrap();
        assert_eq!(warm.status(), 200, "{}", warm.text().await.unwrap());
        for conns in [1usize, 16] {
            let bare = load(format!("http://127.0.0.1:{bare_port}/v1/credentials"), None, conns, secs).await;
            let agent = load(agent_url.clone(), Some(token.clone()), conns, secs).await;
            println!(
                "cached credentials, {conns} connection(s), {secs} s: agent {:.0} req/s (p50 {:?}, p99 {:?}, p99.9 {:?}, errors {}); bare axum {:.0} req/s (p50 {:?}, p99 {:?}, p99.9 {:?}); ratio {:.2}",
                agent.rps, agent.p50, agent.p99, agent.p999, agent.errors,
                bare.rps, bare.p50, bare.p99, bare.p999,
                agent.rps / bare.rps
            );
        }

        }
        if run("cold") {
        // 2. 1,000 concurrent cold requests of one identity (1,000 pods of
        //    one ServiceAccount), STS answering after 200 ms.
        let (sts, calls) = fake_sts(Duration::from_millis(200)).await;
        let (_agent2, addr2) = start_agent(dir.path(), &sts, 20_000).await;
        let tokens: Vec<String> = (0..1000).map(|i| key.token("cold", &format!("pod-{i}"))).collect();
        let url = format!("http://{addr2}/v1/credentials{ROLE_QUERY}");
        let started = Instant::now();
        let reqs = tokens.into_iter().map(|t| {
            let url = url.clone();
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                c.get(&url).header("authorization", t).send().await.map(|r| r.status().as_u16())
            })
        });
        let results = futures::future::join_all(reqs).await;
        let ok = results.iter().filter(|r| matches!(r, Ok(Ok(200)))).count();
        println!(
            "1,000 concurrent cold requests of one identity: {ok} x 200 in {:?}, STS calls: {}",
            started.elapsed(),
            calls.load(Ordering::SeqCst)
        );

        }
        if run("rss") {
        // 3. RSS with 10,000 cached identities.
        let (sts, calls) = fake_sts(Duration::ZERO).await;
        let (agent3, addr3) = start_agent(dir.path(), &sts, 20_000).await;
        let pid = agent3.0.id();
        let idle = rss_kib(pid);
        let url = format!("http://{addr3}/v1/credentials{ROLE_QUERY}");
        let client = reqwest::Client::new();
        let n: usize = std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
        let tokens: Vec<String> = (0..n).map(|i| key.token(&format!("sa-{i}"), "p")).collect();
        let started = Instant::now();
        for chunk in tokens.chunks(50) {
            let futs = chunk.iter().map(|t| client.get(&url).header("authorization", t).send());
            for r in futures::future::join_all(futs).await {
                assert_eq!(r.unwrap().status(), 200);
            }
        }
        let filled = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let full = rss_kib(pid);
        println!(
            "RSS: idle {:.1} MiB; with {n} cached identities {:.1} MiB (STS calls {}, filled in {filled:?}, tokens of {} characters)",
            idle as f64 / 1024.0,
            full as f64 / 1024.0,
            calls.load(Ordering::SeqCst),
            tokens[0].len()
        );
        if let Some(secs) = std::env::var("BENCH_HOLD").ok().and_then(|v| v.parse().ok()) {
            // Time to look at the process (gdb, /proc/PID/smaps) before it ends.
            println!("agent pid {pid}; holding {secs} s");
            tokio::time::sleep(Duration::from_secs(secs)).await;
        }
        }
    });
}
