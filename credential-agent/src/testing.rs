//! Helpers for the unit tests: an issuer's signing key, Kubernetes token
//! claims, and an STS that counts its calls. Compiled only for tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures::future::{BoxFuture, FutureExt};
use serde_json::{json, Value};

use crate::secret::Secret;
use crate::sts::{AssumeRequest, Credentials, Exchanger, StsError};

pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "sts.amazonaws.com";
pub const ROLE: &str = "arn:aws:iam::111122223333:role/app";

/// Wall-clock time the tests start at.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub fn t0_secs() -> u64 {
    1_800_000_000
}

pub fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// An ES256 key of the issuer, with a key id.
pub struct TestKey {
    pub kid: String,
    key: rcgen::KeyPair,
}

impl TestKey {
    pub fn new(kid: &str) -> Self {
        TestKey {
            kid: kid.into(),
            key: rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key"),
        }
    }

    pub fn jwk(&self) -> Value {
        let raw = self.key.public_key_raw(); // 0x04 || X || Y
        json!({
            "use": "sig", "kty": "EC", "crv": "P-256", "alg": "ES256",
            "kid": self.kid, "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
        })
    }

    pub fn public_pem(&self) -> String {
        self.key.public_key_pem()
    }

    pub fn sign_with(&self, header: &jsonwebtoken::Header, claims: &Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.key.serialize_der());
        jsonwebtoken::encode(header, claims, &key).expect("signs")
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        self.sign_with(&h, claims)
    }
}

/// A JWKS document of `keys`.
pub fn jwks(keys: &[&TestKey]) -> Vec<u8> {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
        .to_string()
        .into_bytes()
}

/// A projected ServiceAccount token's claims, issued at `now` (Unix seconds).
pub fn claims(ns: &str, sa: &str, uid: &str, pod: Option<(&str, &str)>, now: u64) -> Value {
    let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": sa, "uid": uid}});
    if let Some((name, uid)) = pod {
        k8s["pod"] = json!({"name": name, "uid": uid});
    }
    json!({
        "aud": [AUDIENCE], "exp": now + 3600, "iat": now, "nbf": now, "iss": ISSUER,
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "kubernetes.io": k8s,
    })
}

/// An STS that answers at once with credentials valid for the session's
/// duration from `t0()`, counting calls and keeping the requests.
#[derive(Default)]
pub struct CountingSts {
    pub calls: AtomicUsize,
    pub requests: std::sync::Mutex<Vec<(String, String)>>,
}

impl CountingSts {
    pub fn new() -> Arc<Self> {
        Arc::new(CountingSts::default())
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Exchanger for CountingSts {
    fn assume(&self, req: AssumeRequest) -> BoxFuture<'static, Result<Credentials, StsError>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((req.role_arn.clone(), req.session_name.clone()));
        async move {
            Ok(Credentials {
                access_key_id: format!("AKIA{n}"),
                secret_access_key: Secret::new(format!("secret{n}")),
                session_token: Secret::new(format!("session{n}")),
                account_id: Some("111122223333".into()),
                expiration: t0() + Duration::from_secs(req.duration_seconds as u64),
                assumed_role: None,
            })
        }
        .boxed()
    }
}
