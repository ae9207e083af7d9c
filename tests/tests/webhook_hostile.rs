//! Hostile admission reviews against the real webhook binary on loopback:
//! each is answered, bounded, and the process stays inside the chart's
//! memory limit. Bounded in count and time.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e_tests::harness::{connect_from, free_port, spawn, workspace_bin, workspace_root, Proc};
use serde_json::{json, Value};

/// The chart's memory limit of the webhook container.
const CHART_LIMIT_MIB: f64 = 128.0;

struct Webhook {
    proc: Proc,
    port: u16,
    metrics_port: u16,
    ca_pem: String,
    url: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Webhook {
    async fn start() -> Result<Webhook> {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[&str]) -> Result<Webhook> {
        let dir = tempfile::tempdir()?;
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hostile");
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        std::fs::write(dir.path().join("tls.crt"), cert.pem())?;
        std::fs::write(dir.path().join("tls.key"), key.serialize_pem())?;
        let (port, metrics_port) = (free_port(), free_port());
        let sas = workspace_root().join("examples/serviceaccounts.yaml");
        let args = vec![
            "serve".to_string(),
            "--bind-address=127.0.0.1".into(),
            format!("--port={port}"),
            format!("--metrics-port={metrics_port}"),
            format!("--tls-cert={}", dir.path().join("tls.crt").display()),
            format!("--tls-key={}", dir.path().join("tls.key").display()),
            format!("--service-accounts={}", sas.display()),
        ];
        let args: Vec<String> = args
            .into_iter()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect();
        let proc = spawn(
            "webhook",
            &workspace_bin("pod-identity-webhook")?,
            &args,
            dir.path(),
        )?;
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes())?)
            .timeout(Duration::from_secs(30))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = format!("http://127.0.0.1:{metrics_port}/readyz");
        while !reqwest::get(&ready)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ensure!(Instant::now() < deadline, "webhook not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Webhook {
            proc,
            port,
            metrics_port,
            ca_pem: cert.pem(),
            url: format!("https://localhost:{port}/mutate"),
            client,
            _dir: dir,
        })
    }

    async fn post(&self, body: Vec<u8>) -> Result<(u16, Vec<u8>)> {
        let r = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.bytes().await?.to_vec()))
    }

    fn peak_mib(&self) -> f64 {
        self.proc.memory_kib("VmHWM").unwrap_or(0) as f64 / 1024.0
    }
}

fn review_with_object(object: &str) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u1","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"operation":"CREATE","namespace":"default","object":{object}}}}}"#
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_reviews_stay_bounded() -> Result<()> {
    let webhook = Webhook::start().await?;
    let before = webhook.peak_mib();

    // 1. Reviews of almost 3 MiB whose object is one large JSON array,
    //    four at a time, five rounds.
    let array = format!("[{}0]", "0,".repeat(1_500_000));
    let body = review_with_object(&array);
    ensure!(body.len() < 3 * 1024 * 1024, "{}", body.len());
    for _ in 0..5 {
        let answers = futures::future::join_all((0..4).map(|_| webhook.post(body.clone()))).await;
        for a in answers {
            let (status, resp) = a?;
            ensure!(status == 200, "status {status}");
            let v: Value = serde_json::from_slice(&resp)?;
            ensure!(v["response"]["allowed"] == true, "{v}");
            ensure!(v["response"].get("patch").is_none());
            ensure!(
                v["response"]["warnings"][0]
                    .as_str()
                    .is_some_and(|w| w.contains("not a valid Pod")),
                "{v}"
            );
        }
    }

    // 2. A pod with 20,000 containers: refused with a clear message, not
    //    answered with megabytes of patch.
    let containers: Vec<Value> = (0..20_000)
        .map(|i| json!({"name": format!("c{i}"), "image": "i"}))
        .collect();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "wide", "namespace": "default"},
        "spec": {"serviceAccountName": "s3-reader", "containers": containers}});
    let (status, resp) = webhook.post(review_with_object(&pod.to_string())).await?;
    ensure!(status == 200, "status {status}");
    ensure!(resp.len() < 4096, "a {} byte answer", resp.len());
    let v: Value = serde_json::from_slice(&resp)?;
    ensure!(v["response"]["allowed"] == false, "{v}");
    let message = v["response"]["status"]["message"]
        .as_str()
        .context("message")?;
    ensure!(message.contains("--max-patch-bytes"), "{message}");

    // 3. A body over the limit: 413, nothing parsed.
    let (status, _) = webhook.post(vec![b' '; 8 * 1024 * 1024]).await?;
    ensure!(status == 413, "status {status}");

    // A normal pod is still injected.
    let pod = json!({"metadata": {"name": "ok"}, "spec": {"serviceAccountName": "s3-reader", "containers": [{"name": "app", "image": "i"}]}});
    let (status, resp) = webhook.post(review_with_object(&pod.to_string())).await?;
    let v: Value = serde_json::from_slice(&resp)?;
    ensure!(status == 200 && v["response"]["patch"].is_string(), "{v}");

    let peak = webhook.peak_mib();
    eprintln!("hostile reviews: peak RSS {before:.1} -> {peak:.1} MiB");
    ensure!(peak < CHART_LIMIT_MIB, "peak RSS {peak:.1} MiB");
    Ok(())
}

/// 3,000 connections from one address that never start TLS: the webhook
/// keeps its per-peer share open (until the handshake timeout), closes the
/// rest at once, and the API server (another address) is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_does_not_block_the_api_server() -> Result<()> {
    use tokio::io::AsyncReadExt;
    let webhook = Webhook::start().await?;
    let addr: SocketAddr = format!("127.0.0.1:{}", webhook.port).parse()?;
    let attacker: IpAddr = "127.0.0.1".parse()?;
    let mut held = Vec::new();
    for _ in 0..3000 {
        if let Ok(s) = connect_from(attacker, addr).await {
            held.push(s);
        }
    }
    ensure!(held.len() > 2500, "only {} connects", held.len());
    let mut open = 0;
    for s in held.iter_mut() {
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(1), s.read(&mut b))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    ensure!(open <= 256, "{open} connections kept from one address");
    // The API server, from another address, over TLS with the right CA.
    let api_server = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(webhook.ca_pem.as_bytes())?)
        .local_address("127.0.0.2".parse::<IpAddr>()?)
        .timeout(Duration::from_secs(5))
        .build()?;
    let pod = json!({"metadata": {"name": "ok"}, "spec": {"serviceAccountName": "s3-reader", "containers": [{"name": "app", "image": "i"}]}});
    let r = api_server
        .post(&webhook.url)
        .header("content-type", "application/json")
        .body(review_with_object(&pod.to_string()))
        .send()
        .await?;
    ensure!(r.status() == 200, "{}", r.status());
    let m = reqwest::get(format!("http://127.0.0.1:{}/metrics", webhook.metrics_port))
        .await?
        .text()
        .await?;
    let rejected: f64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "pod_identity_webhook_connections_rejected_total{kind=\"max_connections_per_peer\"} ",
            )
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    ensure!(
        rejected > 0.0,
        "no connection was rejected at the cap:\n{m}"
    );
    eprintln!(
        "HTTPS connection flood: {} held, {open} kept open, peak RSS {:.1} MiB",
        held.len(),
        webhook.peak_mib()
    );
    ensure!(webhook.peak_mib() < CHART_LIMIT_MIB);
    Ok(())
}

/// Opens a TLS connection negotiating HTTP/2, sends the client preface and
/// an empty SETTINGS frame, then goes silent. Returns how long the server
/// kept it open, or `None` if it was still open after `wait`.
async fn silent_http2(hook: &Webhook, wait: Duration) -> Result<Option<Duration>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for block in hook
        .ca_pem
        .split("-----END CERTIFICATE-----")
        .filter(|b| b.contains("BEGIN"))
    {
        use base64::Engine as _;
        let b64: String = block
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>();
        roots.add(rustls::pki_types::CertificateDer::from(
            base64::engine::general_purpose::STANDARD.decode(b64.trim())?,
        ))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", hook.port)).await?;
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(rustls::pki_types::ServerName::try_from("localhost")?, tcp)
        .await?;
    ensure!(
        tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice()),
        "the webhook did not negotiate HTTP/2"
    );
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
    tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await?; // empty SETTINGS
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = wait.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, tls.read(&mut buf)).await {
            Err(_) => return Ok(None),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(Some(started.elapsed())),
            Ok(Ok(_)) => continue, // the server's SETTINGS and ACK
        }
    }
}

/// hyper's header-read timeout covers HTTP/1.1 only; --idle-timeout closes
/// an HTTP/2 connection on which nothing moves, and only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_http2_connection_is_closed_after_the_idle_timeout() -> Result<()> {
    let hook = Webhook::start_with(&["--idle-timeout=1s"]).await?;
    let open_for = silent_http2(&hook, Duration::from_secs(15))
        .await?
        .context("a silent HTTP/2 connection was still open after 15 s")?;
    ensure!(
        open_for >= Duration::from_millis(900) && open_for < Duration::from_secs(10),
        "closed after {open_for:?}"
    );
    // With the default (5 minutes) the same connection stays open.
    let default = Webhook::start().await?;
    ensure!(
        silent_http2(&default, Duration::from_secs(3))
            .await?
            .is_none(),
        "closed before any idle timeout"
    );
    Ok(())
}
