//! Token verification for node mode: signature against the issuer's JWKS,
//! issuer, audience, time window, asymmetric algorithms only, and the
//! Kubernetes claims the cache key is built from.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::secret::Secret;

/// Projected tokens are around 1 KiB; STS takes at most 20,000 characters.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

const TOO_LARGE: &str =
    "the token is larger than 16 KiB; send the pod's projected ServiceAccount token";

/// What a verified token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenIdentity {
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub expires: SystemTime,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a token at all (400).
    #[error("{0}")]
    Malformed(&'static str),
    /// A token, but not one we accept (403). The reason names the check.
    #[error("{0}")]
    Rejected(String),
    /// We cannot check it now: the issuer's keys are not loaded (503).
    #[error("the token issuer's keys are not available yet: {0}")]
    KeysUnavailable(String),
}

impl VerifyError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Malformed(_) => "malformed",
            VerifyError::Rejected(_) => "rejected",
            VerifyError::KeysUnavailable(_) => "keys_unavailable",
        }
    }
}

#[derive(Deserialize)]
struct NameUid {
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    #[serde(default)]
    namespace: String,
    serviceaccount: Option<NameUid>,
    pod: Option<NameUid>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    exp: u64,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

/// Accepted signature algorithms: asymmetric only. `none` is not even an
/// `Algorithm` variant, and HMAC is refused before any key is looked at.
fn family_of(alg: Algorithm) -> Option<Family> {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Some(Family::Rsa),
        Algorithm::ES256 => Some(Family::Ec(EllipticCurve::P256)),
        Algorithm::ES384 => Some(Family::Ec(EllipticCurve::P384)),
        Algorithm::EdDSA => Some(Family::Ed),
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Family {
    Rsa,
    Ec(EllipticCurve),
    Ed,
}

struct PublicKey {
    family: Family,
    /// The JWK's own `alg`, when it names one.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// Parsed public keys by `kid` (keys without a `kid` under "").
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, Vec<PublicKey>>,
    /// Each usable JWK as JSON text, to tell whether a key was withdrawn.
    members: std::collections::BTreeSet<String>,
}

impl KeySet {
    /// Parses a JWKS document; keys that are symmetric or unusable are
    /// skipped. Errors only when the document is not a JWKS at all.
    pub fn parse(json: &[u8]) -> Result<(KeySet, usize), String> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut set = KeySet::default();
        let mut skipped = 0;
        for raw in doc.keys {
            let text = raw.to_string();
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
                skipped += 1;
                continue;
            };
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(p) => Family::Ec(p.curve.clone()),
                AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
                // Symmetric keys in a public key set are never used.
                _ => {
                    skipped += 1;
                    continue;
                }
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                skipped += 1;
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            set.keys
                .entry(jwk.common.key_id.clone().unwrap_or_default())
                .or_default()
                .push(PublicKey { family, alg, key });
            set.members.insert(text);
        }
        Ok((set, skipped))
    }

    pub fn len(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn candidates(&self, kid: Option<&str>) -> Option<&[PublicKey]> {
        match kid {
            Some(k) => self.keys.get(k).map(Vec::as_slice),
            // No kid: only a set with exactly one key is unambiguous.
            None if self.keys.len() == 1 => self.keys.values().next().map(Vec::as_slice),
            None => None,
        }
    }
}

/// Checks the signed claims; `keys` must already hold the signing key.
pub fn verify_with(
    token: &Secret,
    keys: &KeySet,
    issuer: &str,
    audiences: &[String],
    leeway: Duration,
) -> Result<TokenIdentity, VerifyError> {
    let raw = token.expose();
    let header = precheck(token)?;
    let family = family_of(header.alg).ok_or_else(|| {
        VerifyError::Rejected(format!(
            "signature algorithm {:?} is not accepted (only RS*, PS*, ES256, ES384, EdDSA)",
            header.alg
        ))
    })?;
    let candidates = keys.candidates(header.kid.as_deref()).ok_or_else(|| {
        VerifyError::Rejected("the token's key id is not in the issuer's key set".into())
    })?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = leeway.as_secs();
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let mut last = VerifyError::Rejected("no key of the issuer matches the token".into());
    for key in candidates {
        if key.family != family || key.alg.is_some_and(|a| a != header.alg) {
            last = VerifyError::Rejected(
                "the token's algorithm does not match the issuer's key".into(),
            );
            continue;
        }
        match jsonwebtoken::decode::<Claims>(raw, &key.key, &validation) {
            Ok(data) => return identity(data.claims),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                last = VerifyError::Rejected(
                    match e.kind() {
                        K::InvalidSignature => "the signature does not verify",
                        K::ExpiredSignature => "the token has expired",
                        K::ImmatureSignature => "the token is not valid yet (nbf)",
                        K::InvalidIssuer => "the token's issuer is not the configured issuer",
                        K::InvalidAudience => "the token's audience is not an accepted audience",
                        K::MissingRequiredClaim(_) => "the token lacks exp, iss or aud",
                        K::InvalidAlgorithm => "the token's algorithm does not match the key",
                        _ => "the token's claims cannot be read",
                    }
                    .to_string(),
                );
                if matches!(e.kind(), K::InvalidSignature | K::InvalidAlgorithm) {
                    continue;
                }
                return Err(last);
            }
        }
    }
    Err(last)
}

/// Cheap checks before any key is involved.
fn precheck(token: &Secret) -> Result<jsonwebtoken::Header, VerifyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::Malformed(TOO_LARGE));
    }
    let raw = token.expose();
    if raw.split('.').count() != 3 {
        return Err(VerifyError::Malformed(
            "the Authorization header is not a JWT; send the pod's projected ServiceAccount token, without 'Bearer '",
        ));
    }
    jsonwebtoken::decode_header(raw).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            // A header naming `none`, HS-family variants we refuse anyway,
            // or an unknown algorithm: a JWT, but not acceptable.
            K::Json(_) if raw_header_mentions_alg(raw) => VerifyError::Rejected(
                "signature algorithm is not accepted (only RS*, PS*, ES256, ES384, EdDSA)".into(),
            ),
            _ => VerifyError::Malformed(
                "the Authorization header is not a JWT; send the pod's projected ServiceAccount token",
            ),
        }
    })
}

fn raw_header_mentions_alg(raw: &str) -> bool {
    use base64::Engine;
    let head = raw.split('.').next().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("alg").is_some())
}

fn identity(c: Claims) -> Result<TokenIdentity, VerifyError> {
    let missing = |what: &str| {
        VerifyError::Rejected(format!(
            "the token lacks the kubernetes.io {what} claim; use a projected ServiceAccount token"
        ))
    };
    let k = c
        .kubernetes
        .ok_or_else(|| missing("namespace/serviceaccount"))?;
    if k.namespace.is_empty() {
        return Err(missing("namespace"));
    }
    let sa = k
        .serviceaccount
        .filter(|s| !s.name.is_empty() && !s.uid.is_empty())
        .ok_or_else(|| missing("serviceaccount name/uid"))?;
    if let Some(sub) = &c.sub {
        if *sub != format!("system:serviceaccount:{}:{}", k.namespace, sa.name) {
            return Err(VerifyError::Rejected(
                "the token's subject does not match its kubernetes.io claims".into(),
            ));
        }
    }
    let (pod_name, pod_uid) = match k.pod {
        Some(p) if p.name.is_empty() || p.uid.is_empty() => return Err(missing("pod name/uid")),
        Some(p) => (Some(p.name), Some(p.uid)),
        None => (None, None),
    };
    Ok(TokenIdentity {
        namespace: k.namespace,
        service_account: sa.name,
        service_account_uid: sa.uid,
        pod_name,
        pod_uid,
        expires: UNIX_EPOCH + Duration::from_secs(c.exp),
    })
}

/// Reads `exp` and the Kubernetes names from a token without checking its
/// signature. Only for the sidecar, which holds the token the kubelet wrote
/// and only needs the names for RoleSessionName and refresh scheduling.
pub fn unverified_identity(token: &Secret) -> Option<TokenIdentity> {
    use base64::Engine;
    let payload = token.expose().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    identity(claims).ok()
}

/// Where the issuer's keys come from.
#[derive(Clone, Debug)]
pub enum JwksSource {
    /// An HTTPS (or loopback HTTP) URL, optionally with a bearer token file
    /// (the agent's own ServiceAccount token for the API server).
    Url {
        url: String,
        client: reqwest::Client,
        bearer_token_file: Option<PathBuf>,
    },
    /// A JWKS document on disk, re-read on every refresh.
    File(PathBuf),
}

impl JwksSource {
    async fn fetch(&self) -> Result<Vec<u8>, String> {
        match self {
            JwksSource::File(p) => tokio::fs::read(p)
                .await
                .map_err(|e| format!("cannot read {}: {e}", p.display())),
            JwksSource::Url {
                url,
                client,
                bearer_token_file,
            } => {
                let mut req = client.get(url.as_str());
                if let Some(f) = bearer_token_file {
                    let token = tokio::fs::read_to_string(f)
                        .await
                        .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
                    req = req.bearer_auth(token.trim());
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| format!("cannot fetch {url}: {}", error_chain(&e)))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(format!("{url} answered HTTP {status}"));
                }
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| format!("cannot read {url}: {e}"))?;
                Ok(body.to_vec())
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[derive(Clone, Debug)]
pub struct VerifierConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub leeway: Duration,
    /// At most one re-fetch per this interval on an unknown `kid`.
    pub min_refetch_interval: Duration,
}

/// Tokens already verified, by SHA-256 of the exact token bytes, until the
/// token's `exp` (plus leeway). Cleared when a re-read of the key set withdraws a key.
/// Saves the signature check on the hot path: a pod presents the same token
/// on every credential fetch until the kubelet rotates it.
const VERIFIED_CACHE_MAX: usize = 1024;

type Digest = [u8; 32];

fn digest(token: &Secret) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.expose().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The issuer's keys, loaded at start, refreshed periodically and on an
/// unknown `kid` (rate-limited), used to verify each presented token.
pub struct Verifier {
    cfg: VerifierConfig,
    source: JwksSource,
    verified: Mutex<HashMap<Digest, Arc<TokenIdentity>>>,
    keys: RwLock<Option<Arc<KeySet>>>,
    last_fetch: Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

impl Verifier {
    pub fn new(cfg: VerifierConfig, source: JwksSource, metrics: Arc<Metrics>) -> Self {
        Verifier {
            cfg,
            source,
            verified: Mutex::new(HashMap::new()),
            keys: RwLock::new(None),
            last_fetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            metrics,
        }
    }

    /// True once a key set has been loaded.
    pub fn ready(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fetches the key set now and replaces the current one on success.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _one_at_a_time = self.fetching.lock().await;
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> Result<usize, String> {
        *self.last_fetch.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let parsed = self
            .source
            .fetch()
            .await
            .and_then(|body| KeySet::parse(&body));
        match parsed {
            Ok((set, skipped)) if !set.is_empty() => {
                let n = set.len();
                if skipped > 0 {
                    tracing::warn!(
                        skipped,
                        "ignored keys of the JWKS that cannot verify tokens"
                    );
                }
                let withdrawn = {
                    let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
                    let withdrawn = keys
                        .as_ref()
                        .is_some_and(|old| !old.members.is_subset(&set.members));
                    *keys = Some(Arc::new(set));
                    withdrawn
                };
                // A withdrawn key: tokens it signed are verified afresh. (Not
                // on every fetch: unknown kids trigger fetches, and clearing
                // then would let anyone empty the cache every few seconds.)
                if withdrawn {
                    self.verified_cache().clear();
                }
                self.metrics.jwks_fetch("ok");
                Ok(n)
            }
            Ok(_) => {
                self.metrics.jwks_fetch("error");
                Err("the JWKS has no usable public key".into())
            }
            Err(e) => {
                self.metrics.jwks_fetch("error");
                Err(e)
            }
        }
    }

    /// Re-fetches after an unknown `kid`, unless a fetch happened within
    /// the minimum interval. Returns true when a fetch was made.
    async fn refetch_for_unknown_kid(&self) -> bool {
        let _one_at_a_time = self.fetching.lock().await;
        let recent = self
            .last_fetch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < self.cfg.min_refetch_interval);
        if recent {
            // Either rate-limited, or another request just fetched: the
            // caller looks again either way.
            return true;
        }
        if let Err(e) = self.fetch_locked().await {
            tracing::warn!(error = %e, "re-fetching the issuer's keys failed");
        }
        true
    }

    fn verified_cache(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<TokenIdentity>>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Verifies a presented token (or finds it verified before and not
    /// expired since).
    pub async fn verify(&self, token: &Secret) -> Result<Arc<TokenIdentity>, VerifyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::Malformed(TOO_LARGE));
        }
        let d = digest(token);
        let now = SystemTime::now();
        if let Some(id) = self.verified_cache().get(&d) {
            if now < id.expires + self.cfg.leeway {
                return Ok(id.clone());
            }
        }
        let id = Arc::new(self.verify_uncached(token).await?);
        let mut cache = self.verified_cache();
        if cache.len() >= VERIFIED_CACHE_MAX {
            cache.retain(|_, v| now < v.expires);
            if cache.len() >= VERIFIED_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(d, id.clone());
        Ok(id)
    }

    async fn verify_uncached(&self, token: &Secret) -> Result<TokenIdentity, VerifyError> {
        let header = precheck(token)?;
        let Some(keys) = self.current() else {
            // Not loaded yet: try once (rate-limited) before giving up.
            self.refetch_for_unknown_kid().await;
            let Some(keys) = self.current() else {
                return Err(VerifyError::KeysUnavailable(
                    "the agent has not loaded the issuer's JWKS; see its log".into(),
                ));
            };
            return self.check(token, &keys);
        };
        if family_of(header.alg).is_some() && keys.candidates(header.kid.as_deref()).is_none() {
            self.refetch_for_unknown_kid().await;
            if let Some(fresh) = self.current() {
                return self.check(token, &fresh);
            }
        }
        self.check(token, &keys)
    }

    fn check(&self, token: &Secret, keys: &KeySet) -> Result<TokenIdentity, VerifyError> {
        verify_with(
            token,
            keys,
            &self.cfg.issuer,
            &self.cfg.audiences,
            self.cfg.leeway,
        )
    }

    /// Loads the keys, retrying until it works, then refreshes every
    /// `interval`. Runs until the process ends.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut delay = Duration::from_millis(500);
        while !self.ready() {
            match self.refresh().await {
                Ok(n) => tracing::info!(keys = n, "loaded the token issuer's keys"),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot load the token issuer's keys");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "refreshing the token issuer's keys failed; keeping the old ones");
            }
        }
    }
}
