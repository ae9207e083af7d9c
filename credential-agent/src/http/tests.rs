//! The routers of both modes through `oneshot`: the wire format, each
//! refusal with its status and code, and what reaches STS.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::cache::{CacheConfig, Jitter};
use crate::clock::Clock;
use crate::config::CacheScope;
use crate::secret::Secret;
use crate::sidecar::TokenFile;
use crate::sts::Credentials;
use crate::testing::{claims, jwks, t0, t0_secs, CountingSts, TestKey, AUDIENCE, ISSUER, ROLE};
use crate::verify::{JwksSource, Verifier, VerifierConfig};

const HOST: &str = "169.254.170.23";

fn state(auth: Auth, sts: Arc<CountingSts>, clock: Clock) -> AppState {
    let metrics = Arc::new(Metrics::new());
    let jitter: Jitter = Arc::new(|| 0.0);
    AppState {
        auth: Arc::new(auth),
        cache: Cache::new(sts, CacheConfig::default(), jitter, metrics.clone(), clock),
        metrics,
        hosts: Arc::new(HostGuard::for_addrs(&[format!("{HOST}:80")
            .parse()
            .unwrap()])),
    }
}

async fn get(app: &Router, uri: &str, host: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::get(uri).header(header::HOST, host);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, t);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/json",
        "{uri}"
    );
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn role_uri(role: &str) -> String {
    contract::agent::role_uri(contract::agent::CREDENTIALS_PATH, role)
}

/// A node-mode router accepting `audiences`, its STS and its issuer's key.
async fn node_app(audiences: &[&str]) -> (Router, Arc<CountingSts>, TestKey, tempfile::TempDir) {
    let clock = Clock::starting_at(t0());
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::new("key-1");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[&key])).unwrap();
    let verifier = Arc::new(Verifier::new(
        VerifierConfig {
            issuer: ISSUER.into(),
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            leeway: Duration::from_secs(10),
            min_refetch_interval: Duration::from_secs(10),
        },
        JwksSource::File(jwks_file),
        Arc::new(Metrics::new()),
        clock,
    ));
    verifier.refresh().await.unwrap();
    let sts = CountingSts::new();
    let auth = Auth::Node {
        verifier,
        scope: CacheScope::ServiceAccount,
        pod_identity: None,
    };
    (router(state(auth, sts.clone(), clock)), sts, key, dir)
}

#[tokio::test(start_paused = true)]
async fn node_router() {
    let (app, sts, key, _dir) = node_app(&[AUDIENCE]).await;
    let now = t0_secs();
    let token = key.sign(&claims(
        "team-a",
        "app",
        "uid-app",
        Some(("app-1", "p1")),
        now,
    ));
    let uri = role_uri(ROLE);

    let (status, body) = get(&app, &uri, HOST, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["AccessKeyId"], "AKIA1");
    assert_eq!(body["SecretAccessKey"], "secret1");
    assert_eq!(body["Token"], "session1");
    assert_eq!(body["AccountId"], "111122223333");
    assert!(body["Expiration"].as_str().unwrap().ends_with('Z'));
    // "Bearer " is accepted too, and served from the cache.
    let (status, _) = get(
        &app,
        &uri,
        &format!("{HOST}:80"),
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sts.calls(), 1);
    assert_eq!(
        sts.requests.lock().unwrap()[0],
        (ROLE.to_string(), "team-a.app".to_string())
    );

    let other_issuer = key.sign(&{
        let mut c = claims("team-a", "app", "uid-app", None, now);
        c["iss"] = "https://evil.example".into();
        c
    });
    type Case<'a> = (
        &'a str,
        String,
        &'a str,
        Option<&'a str>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "no token",
            uri.clone(),
            HOST,
            None,
            StatusCode::BAD_REQUEST,
            "MissingToken",
        ),
        (
            "not a JWT",
            uri.clone(),
            HOST,
            Some("garbage"),
            StatusCode::BAD_REQUEST,
            "InvalidToken",
        ),
        (
            "no role",
            "/v1/credentials".into(),
            HOST,
            Some(&token),
            StatusCode::BAD_REQUEST,
            "InvalidRoleArn",
        ),
        (
            "invalid role",
            role_uri("arn:aws:iam::111122223333:role//x"),
            HOST,
            Some(&token),
            StatusCode::BAD_REQUEST,
            "InvalidRoleArn",
        ),
        (
            "unparsable query",
            "/v1/credentials?role=%ZZ".into(),
            HOST,
            Some(&token),
            StatusCode::BAD_REQUEST,
            "InvalidRoleArn",
        ),
        (
            "foreign Host",
            uri.clone(),
            "rebind.example.com",
            Some(&token),
            StatusCode::FORBIDDEN,
            "HostNotAllowed",
        ),
        (
            "other issuer",
            uri.clone(),
            HOST,
            Some(&other_issuer),
            StatusCode::FORBIDDEN,
            "AccessDenied",
        ),
        (
            "unknown path",
            "/latest/meta-data/".into(),
            HOST,
            Some(&token),
            StatusCode::NOT_FOUND,
            "NotFound",
        ),
    ];
    for (name, uri, host, token, want, code) in cases {
        let (status, body) = get(&app, &uri, host, token).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (want, Some(code)),
            "{name}: {body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}"
        );
        assert!(
            !body
                .to_string()
                .contains(&uri_token_part(&token_or_empty(token))),
            "{name} echoes the token"
        );
    }
    assert_eq!(sts.calls(), 1, "no refused request reached STS");
}

/// A token for another accepted audience of the same ServiceAccount and role
/// is its own identity: it never gets the credentials the first token got.
#[tokio::test(start_paused = true)]
async fn audiences_do_not_share_credentials() {
    let (app, sts, key, _dir) = node_app(&[AUDIENCE, "vault"]).await;
    let uri = role_uri(ROLE);
    let mut c = claims("team-a", "app", "uid-app", None, t0_secs());
    let sts_token = key.sign(&c);
    c["aud"] = serde_json::json!(["vault"]);
    let vault_token = key.sign(&c);
    let (status, first) = get(&app, &uri, HOST, Some(&sts_token)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, second) = get(&app, &uri, HOST, Some(&vault_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sts.calls(), 2, "the vault token is exchanged on its own");
    assert_ne!(first["AccessKeyId"], second["AccessKeyId"]);
}

fn token_or_empty(t: Option<&str>) -> String {
    t.unwrap_or_default().to_string()
}

/// The signature of a token (what must never be echoed).
fn uri_token_part(t: &str) -> String {
    match t.rsplit('.').next() {
        Some(s) if s.len() > 8 => s.to_string(),
        _ => "\u{0}never".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn sidecar_router() {
    let clock = Clock::starting_at(t0());
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::new("key-1");
    let token = key.sign(&claims(
        "team-a",
        "app",
        "uid-app",
        Some(("app-1", "p1")),
        t0_secs(),
    ));
    let path = dir.path().join("token");
    std::fs::write(&path, &token).unwrap();
    let token_file = Arc::new(TokenFile::new(&path));
    token_file.reload().await.unwrap();
    let sts = CountingSts::new();
    let auth = Auth::Sidecar {
        token_file,
        role_arn: ROLE.parse().unwrap(),
    };
    let ports = contract::agent::SidecarPorts::default();
    let mut st = state(auth, sts.clone(), clock);
    st.hosts = Arc::new(HostGuard::for_addrs(&[ports.listen()]));
    let app = router(st);
    let host = ports.listen().to_string();

    // The sidecar's one role; a ?role= is ignored.
    for uri in [
        "/v1/credentials",
        "/v1/credentials?role=arn:aws:iam::999999999999:role/x",
    ] {
        let (status, body) = get(&app, uri, &host, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_eq!(body["AccessKeyId"], "AKIA1");
    }
    assert_eq!(sts.calls(), 1);
    assert_eq!(
        sts.requests.lock().unwrap()[0],
        (ROLE.to_string(), "team-a.app.app-1".to_string())
    );
    let other = key.sign(&claims("team-a", "app", "uid-app", None, t0_secs()));
    for (name, token, want, code) in [
        (
            "another token",
            Some(other.as_str()),
            StatusCode::FORBIDDEN,
            "AccessDenied",
        ),
        ("no token", None, StatusCode::BAD_REQUEST, "MissingToken"),
    ] {
        let (status, body) = get(&app, "/v1/credentials", &host, token).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (want, Some(code)),
            "{name}: {body}"
        );
    }
    let (status, _) = get(&app, "/v1/credentials", HOST, Some(&token)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the node address is not the sidecar's"
    );
    assert_eq!(sts.calls(), 1);
}

#[tokio::test]
async fn health_and_metrics() {
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ready.clone();
    let app = health_router(Arc::new(move || {
        r.load(std::sync::atomic::Ordering::SeqCst)
    }));
    let status = |app: &Router, uri: &'static str| {
        let app = app.clone();
        async move {
            app.oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status(&app, "/healthz").await, StatusCode::OK);
    assert_eq!(
        status(&app, "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(status(&app, "/readyz").await, StatusCode::OK);
    // The ready gauge follows the same check at each scrape.
    let metrics = Arc::new(Metrics::new());
    metrics.request(200);
    let r = ready.clone();
    let app = metrics_router(
        metrics,
        Arc::new(move || r.load(std::sync::atomic::Ordering::SeqCst)),
    );
    let scrape = |app: &Router| {
        let app = app.clone();
        async move {
            let resp = app
                .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let text = resp.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8_lossy(&text).into_owned()
        }
    };
    let text = scrape(&app).await;
    assert!(
        text.contains("credential_agent_requests_total{status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("\ncredential_agent_ready 1\n"), "{text}");
    ready.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(scrape(&app).await.contains("\ncredential_agent_ready 0\n"));
}

#[test]
fn body_has_the_sdk_fields_and_z_expiration() {
    let c = Credentials {
        access_key_id: "AKIA1".into(),
        secret_access_key: Secret::new("s"),
        session_token: Secret::new("t"),
        account_id: Some("123456789012".into()),
        expiration: std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        assumed_role: None,
    };
    let v: serde_json::Value =
        serde_json::from_str(&credentials_body(&CachedCredentials::new(&c))).unwrap();
    assert_eq!(v["AccessKeyId"], "AKIA1");
    assert_eq!(v["SecretAccessKey"], "s");
    assert_eq!(v["Token"], "t");
    assert_eq!(v["AccountId"], "123456789012");
    assert_eq!(v["Expiration"], "2027-01-15T08:00:00Z");
}
