//! The admission HTTP handler through `oneshot`, and the real TLS server on a
//! socket: both TLS versions, certificate rotation, bad input, graceful
//! shutdown, and no key material in errors.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::BodyExt;
use pod_identity_webhook::args::{with_default_subcommand, Cli, Command, ServeArgs};
use pod_identity_webhook::config::ServerConfig;
use pod_identity_webhook::metrics::Metrics;
use pod_identity_webhook::server::{build_state, metrics_router, router, start, AppState};
use serde_json::{json, Value};
use tower::ServiceExt;

const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";

const SAS: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: team
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/s3-reader
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: broken
  namespace: team
  annotations:
    eks.amazonaws.com/role-arn: s3-reader
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: typo
  namespace: team
  annotations:
    eks.amazon.com/role-arn: arn:aws:iam::111122223333:role/s3-reader
"#;

fn serve_args(dir: &Path, extra: &[&str]) -> ServeArgs {
    std::fs::write(dir.join("sas.yaml"), SAS).unwrap();
    let mut argv: Vec<String> = vec![
        "pod-identity-webhook".into(),
        "--bind-address=127.0.0.1".into(),
        "--port=0".into(),
        "--metrics-port=0".into(),
        format!("--service-accounts={}", dir.join("sas.yaml").display()),
        format!("--tls-cert={}", dir.join("tls.crt").display()),
        format!("--tls-key={}", dir.join("tls.key").display()),
        "--reload-interval=50ms".into(),
        "--aws-default-region=eu-west-1".into(),
    ];
    for e in extra {
        let flag = e.split('=').next().unwrap();
        argv.retain(|a| a.split('=').next() != Some(flag));
        argv.push(e.to_string());
    }
    let cli = Cli::try_parse_from(with_default_subcommand(
        argv.into_iter().map(Into::into).collect(),
    ))
    .unwrap();
    match cli.command {
        Command::Serve(a) => *a,
        _ => unreachable!(),
    }
}

use clap::Parser as _;

/// `start` on the flags, through the validated configuration.
async fn start_args(
    a: &ServeArgs,
) -> pod_identity_webhook::Result<pod_identity_webhook::server::Running> {
    start(&ServerConfig::try_from(a)?).await
}

async fn state_of(a: &ServeArgs) -> Arc<AppState> {
    build_state(
        &ServerConfig::try_from(a).unwrap(),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap()
}

async fn state(dir: &Path) -> Arc<AppState> {
    state_of(&serve_args(dir, &[])).await
}

fn review(api_version: &str, sa: &str, operation: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": "0df28fbd-5f5f-11e8-bc74-36e6bb280816",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": if kind == "Pod" {"pods"} else {"configmaps"}},
            "namespace": "team",
            "operation": operation,
            "object": {"apiVersion": "v1", "kind": kind, "metadata": {"name": "p"},
                       "spec": {"serviceAccountName": sa, "containers": [{"name": "c", "image": "x"}]}}
        }
    })
}

async fn post(app: axum::Router, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let req = http::Request::post("/mutate")
        .header("content-type", content_type)
        .body(axum::body::Body::from(body))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

fn decoded_patch(resp: &Value) -> Vec<Value> {
    let b64 = resp["response"]["patch"].as_str().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn v1_and_v1beta1_reviews_are_answered_in_kind() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path()).await;
    for v in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
        let (status, body) = post(
            router(st.clone()),
            "application/json",
            serde_json::to_vec(&review(v, "app", "CREATE", "Pod")).unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        let resp: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(resp["apiVersion"], v);
        assert_eq!(resp["kind"], "AdmissionReview");
        assert_eq!(
            resp["response"]["uid"],
            "0df28fbd-5f5f-11e8-bc74-36e6bb280816"
        );
        assert_eq!(resp["response"]["allowed"], true);
        assert_eq!(resp["response"]["patchType"], "JSONPatch");
        let patch = decoded_patch(&resp);
        let env = patch
            .iter()
            .find(|op| op["path"] == "/spec/containers/0/env")
            .unwrap();
        let names: Vec<&str> = env["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "AWS_DEFAULT_REGION",
                "AWS_REGION",
                "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE"
            ]
        );
        assert_eq!(env["value"][2]["value"], ROLE);
    }
}

#[tokio::test]
async fn not_a_pod_create_is_allowed_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path()).await;
    for (op, kind) in [
        ("UPDATE", "Pod"),
        ("DELETE", "Pod"),
        ("CREATE", "ConfigMap"),
    ] {
        let (status, body) = post(
            router(st.clone()),
            "application/json",
            serde_json::to_vec(&review("admission.k8s.io/v1", "app", op, kind)).unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{op} {kind}");
        let resp: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(resp["response"]["allowed"], true);
        assert!(
            resp["response"].get("patch").is_none(),
            "{op} {kind} must not be patched"
        );
    }
    // Unannotated or unknown ServiceAccount: allowed, no patch, no warning.
    let (_, body) = post(
        router(st.clone()),
        "application/json",
        serde_json::to_vec(&review("admission.k8s.io/v1", "nobody", "CREATE", "Pod")).unwrap(),
    )
    .await;
    let resp: Value = serde_json::from_slice(&body).unwrap();
    assert!(resp["response"].get("patch").is_none());
    assert!(resp["response"].get("warnings").is_none());
}

#[tokio::test]
async fn invalid_arn_and_typo_prefix_warn_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path()).await;
    for (sa, needle) in [
        ("broken", "not a valid IAM role ARN"),
        ("typo", "mistyped \\\"eks.amazonaws.com/role-arn\\\""),
    ] {
        let (status, body) = post(
            router(st.clone()),
            "application/json",
            serde_json::to_vec(&review("admission.k8s.io/v1", sa, "CREATE", "Pod")).unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        let resp: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            resp["response"].get("patch").is_none(),
            "{sa} must not be injected"
        );
        let warnings = resp["response"]["warnings"].to_string();
        assert!(warnings.contains(needle), "{sa}: {warnings}");
    }
    let req = http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let text = metrics_router(st.clone())
        .oneshot(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert!(
        text.contains(r#"pod_identity_webhook_warnings_total{kind="invalid_role_arn"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"pod_identity_webhook_warnings_total{kind="near_miss_annotation"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"pod_identity_webhook_mutations_total{outcome="invalid_role_arn"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("pod_identity_webhook_serviceaccounts_cached 3"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_and_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = serve_args(dir.path(), &[]);
    args.max_request_bytes = 4096;
    let st = state_of(&args).await;
    let ok = serde_json::to_vec(&review("admission.k8s.io/v1", "app", "CREATE", "Pod")).unwrap();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("text/plain", ok.clone(), 415, "Content-Type"),
        ("application/json", vec![b' '; 5000], 413, "larger than the limit"),
        ("application/json", b"{not json".to_vec(), 400, "not a valid AdmissionReview"),
        ("application/json", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), 400, "no request"),
        ("application/json", br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"x"}}"#.to_vec(), 400, "apiVersion"),
        ("application/json", br#"{"apiVersion":"admission.k8s.io/v1","kind":"Other","request":{"uid":"x"}}"#.to_vec(), 400, "AdmissionReview"),
        ("application/json", br#"[1,2,3]"#.to_vec(), 400, "not a valid AdmissionReview"),
    ];
    for (ct, body, want, needle) in cases {
        let (status, text) = post(router(st.clone()), ct, body).await;
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, want, "{text}");
        assert!(text.contains(needle), "{want}: {text}");
    }
    // A Pod object that is not a valid pod: allowed, no patch, with a warning.
    let mut r = review("admission.k8s.io/v1", "app", "CREATE", "Pod");
    r["request"]["object"]["spec"]["containers"] = json!("nope");
    let (status, body) = post(
        router(st.clone()),
        "application/json",
        serde_json::to_vec(&r).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let resp: Value = serde_json::from_slice(&body).unwrap();
    assert!(resp["response"].get("patch").is_none());
    assert!(resp["response"]["warnings"][0]
        .as_str()
        .unwrap()
        .contains("spec.containers: invalid type"));
    // Still serving.
    let (status, _) = post(router(st.clone()), "application/json", ok).await;
    assert_eq!(status, 200);
}

fn write_cert(dir: &Path, cn: &str) -> Vec<u8> {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    // Key first then cert, as a rotation might: the reloader must cope.
    std::fs::write(dir.join("tls.key.tmp"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("tls.crt.tmp"), cert.pem()).unwrap();
    std::fs::rename(dir.join("tls.key.tmp"), dir.join("tls.key")).unwrap();
    std::fs::rename(dir.join("tls.crt.tmp"), dir.join("tls.crt")).unwrap();
    cert.pem().into_bytes()
}

fn client(roots: &[&[u8]], tls12_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
    for pem in roots {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
    }
    if tls12_only {
        b = b.tls_version_max(reqwest::tls::Version::TLS_1_2);
    } else {
        b = b.tls_version_min(reqwest::tls::Version::TLS_1_3);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn tls_server_serves_both_versions_and_rotates_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca1 = write_cert(dir.path(), "first");
    let running = start_args(&serve_args(dir.path(), &[])).await.unwrap();
    let url = format!("https://localhost:{}/mutate", running.https_addr.port());
    let body = serde_json::to_vec(&review("admission.k8s.io/v1", "app", "CREATE", "Pod")).unwrap();

    for tls12 in [true, false] {
        let resp = client(&[&ca1], tls12)
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert!(!decoded_patch(&v).is_empty());
    }
    let health = format!("https://localhost:{}/readyz", running.https_addr.port());
    assert_eq!(
        client(&[&ca1], false)
            .get(&health)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = format!("http://127.0.0.1:{}/metrics", running.metrics_addr.port());
    let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    assert!(
        text.contains("pod_identity_webhook_request_duration_seconds_bucket{le=\"0.00005\"}"),
        "{text}"
    );

    // Rotate to a certificate from another CA while a client keeps calling with
    // both CAs trusted: no request fails, and a client trusting only the new CA
    // gets through once the reload happened.
    let ca2 = write_cert(dir.path(), "second");
    let both = client(&[&ca1, &ca2], false);
    let only_new = client(&[&ca2], false);
    let mut rotated = false;
    for _ in 0..200 {
        let r = both
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        if only_new.get(&health).send().await.is_ok() {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(rotated, "the new certificate was never served");
    assert!(
        client(&[&ca1], false).get(&health).send().await.is_err(),
        "old certificate still served"
    );
    let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"pod_identity_webhook_reloads_total{kind="tls"}"#),
        "{text}"
    );

    running.shutdown(Duration::from_secs(5));
    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_request() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write_cert(dir.path(), "drain");
    let running = start_args(&serve_args(dir.path(), &[])).await.unwrap();
    let url = format!("https://localhost:{}/mutate", running.https_addr.port());
    let body = serde_json::to_vec(&review("admission.k8s.io/v1", "app", "CREATE", "Pod")).unwrap();
    let total = body.len();
    let (first, rest) = body.split_at(total / 2);
    let (first, rest) = (first.to_vec(), rest.to_vec());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    tx.send(Ok(first)).await.unwrap();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let c = client(&[&ca], false);
    let in_flight = tokio::spawn(async move {
        c.post(&url)
            .header("content-type", "application/json")
            .header("content-length", total)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.shutdown(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(Ok(rest)).await.unwrap();
    drop(tx);
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "the in-flight request completes");
    let v: Value = resp.json().await.unwrap();
    assert!(!decoded_patch(&v).is_empty());
    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn startup_errors_are_clear_and_never_show_key_material() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), "x");
    let marker = "SECRET-MARKER-7f3a9c";
    std::fs::write(
        dir.path().join("tls.key"),
        format!("-----BEGIN PRIVATE KEY-----\n{marker}{marker}\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    let err = start_args(&serve_args(dir.path(), &[]))
        .await
        .err()
        .expect("must fail");
    let text = format!("{err} {err:?}");
    assert!(text.contains("tls.key"), "{text}");
    assert!(!text.contains(marker), "key material leaked: {text}");

    let err = start_args(&serve_args(
        dir.path(),
        &["--tls-cert=/nonexistent/tls.crt"],
    ))
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("/nonexistent/tls.crt"), "{err}");

    write_cert(dir.path(), "z");
    let err = start_args(&serve_args(dir.path(), &["--compose-role-arn=true"]))
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("--compose-role-arn is not supported"),
        "{err}"
    );

    // No cluster and no --service-accounts: a clear message.
    write_cert(dir.path(), "y");
    let mut args = serve_args(dir.path(), &["--kubeconfig=/nonexistent/kubeconfig"]);
    args.service_accounts = None;
    let err = start_args(&args).await.err().unwrap();
    assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
}

/// Eight clients post reviews without pause while the certificate is
/// replaced: not one request fails, and the new certificate is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_loses_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let ca1 = write_cert(dir.path(), "first");
    let running = start_args(&serve_args(dir.path(), &["--reload-interval=100ms"]))
        .await
        .unwrap();
    let url = format!("https://localhost:{}/mutate", running.https_addr.port());
    let health = format!("https://localhost:{}/healthz", running.https_addr.port());
    let body = serde_json::to_vec(&review("admission.k8s.io/v1", "app", "CREATE", "Pod")).unwrap();
    let ca2 = {
        // The next certificate's CA is trusted by the clients from the start.
        let next = tempfile::tempdir().unwrap();
        let pem = write_cert(next.path(), "second");
        (next, pem)
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (url, body, stop) = (url.clone(), body.clone(), stop.clone());
        let c = client(&[&ca1, &ca2.1], false);
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            // Bounded: at most 2,000 requests per client.
            for _ in 0..2000 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                match c
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::copy(ca2.0.path().join("tls.key"), dir.path().join("tls.key.new")).unwrap();
    std::fs::copy(ca2.0.path().join("tls.crt"), dir.path().join("tls.crt.new")).unwrap();
    std::fs::rename(dir.path().join("tls.key.new"), dir.path().join("tls.key")).unwrap();
    std::fs::rename(dir.path().join("tls.crt.new"), dir.path().join("tls.crt")).unwrap();
    let only_new = client(&[&ca2.1], false);
    let mut rotated = false;
    for _ in 0..100 {
        if only_new.get(&health).send().await.is_ok() {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut total, mut failures) = (0, Vec::new());
    for c in clients {
        let (ok, failed) = c.await.unwrap();
        total += ok;
        failures.extend(failed);
    }
    assert!(rotated, "the new certificate was never served");
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(total > 100, "only {total} requests");
    running.shutdown(Duration::from_secs(5));
    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .unwrap()
        .unwrap();
}
