//! The pure rules of a node-mode token: a token, the issuer's key set, the
//! settings and the current time in; who the bearer is, or why the token is
//! refused, out. No I/O and no clock of its own.
//!
//! Checked, in order: size and shape; an asymmetric algorithm (`none` and
//! HMAC are refused before any key is looked at); a key of the issuer with
//! that `kid` and algorithm family; the signature; `iss`, `aud`; `exp` and
//! `nbf` against `now` with the leeway; the `kubernetes.io` claims the cache
//! key is built from, consistent with `sub`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{TokenIdentity, VerifyError, MAX_TOKEN_BYTES, TOO_LARGE};
use crate::secret::Secret;

contract::message_error! {
    /// A document that is not a JWKS.
    KeySetError
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
    /// Optional here so that a missing `exp` is named as such.
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    aud: Audiences,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

/// `aud`: one string or a list.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audiences {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audiences {
    fn contains(&self, a: &str) -> bool {
        match self {
            Audiences::None => false,
            Audiences::One(s) => s == a,
            Audiences::Many(v) => v.iter().any(|s| s == a),
        }
    }
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

/// True for the algorithms tokens may be signed with.
pub(super) fn is_accepted(alg: Algorithm) -> bool {
    family_of(alg).is_some()
}

#[derive(Clone, Debug, PartialEq)]
enum Family {
    Rsa,
    Ec(EllipticCurve),
    Ed,
}

pub(super) struct PublicKey {
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
    /// True when every key of `self` is also in `newer` (none was withdrawn).
    pub(super) fn is_subset_of(&self, newer: &KeySet) -> bool {
        self.members.is_subset(&newer.members)
    }
}

impl KeySet {
    /// Parses a JWKS document; keys that are symmetric or unusable are
    /// skipped. Errors only when the document is not a JWKS at all.
    pub fn parse(json: &[u8]) -> Result<(KeySet, usize), KeySetError> {
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

    pub(super) fn candidates(&self, kid: Option<&str>) -> Option<&[PublicKey]> {
        match kid {
            Some(k) => self.keys.get(k).map(Vec::as_slice),
            // No kid: only a set with exactly one key is unambiguous.
            None if self.keys.len() == 1 => self.keys.values().next().map(Vec::as_slice),
            None => None,
        }
    }
}

/// What a token must satisfy besides its signature.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    pub issuer: &'a str,
    pub audiences: &'a [String],
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Checks a presented token against `keys` (which must already hold its
/// signing key) and `rules`, at time `now`.
pub fn verify(
    token: &Secret,
    keys: &KeySet,
    rules: &Rules<'_>,
    now: SystemTime,
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
    // The time window is checked below against `now`, not the system clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_issuer(&[rules.issuer]);
    validation.set_audience(rules.audiences);
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
            Ok(data) => {
                check_window(&data.claims, rules.leeway, now)?;
                // The accepted audiences the token carries: part of the
                // cache key, so a token for another audience never gets
                // this one's credentials.
                let audiences = rules
                    .audiences
                    .iter()
                    .take(32)
                    .enumerate()
                    .filter(|(_, a)| data.claims.aud.contains(a))
                    .fold(0u32, |m, (i, _)| m | 1 << i);
                let mut id = identity(data.claims)?;
                id.audiences = audiences;
                return Ok(id);
            }
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                last = VerifyError::Rejected(
                    match e.kind() {
                        K::InvalidSignature => "the signature does not verify",
                        K::ExpiredSignature => super::EXPIRED,
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
pub(super) fn precheck(token: &Secret) -> Result<jsonwebtoken::Header, VerifyError> {
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

fn lacks_exp() -> VerifyError {
    VerifyError::Rejected("the token lacks exp, iss or aud".into())
}

/// `exp` and `nbf` against `now`, with `leeway` either side.
fn check_window(c: &Claims, leeway: Duration, now: SystemTime) -> Result<(), VerifyError> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let leeway = leeway.as_secs();
    let exp = c.exp.ok_or_else(lacks_exp)?;
    if exp.saturating_add(leeway) < now {
        return Err(VerifyError::Rejected(super::EXPIRED.into()));
    }
    if c.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(VerifyError::Rejected(
            "the token is not valid yet (nbf)".into(),
        ));
    }
    Ok(())
}

fn identity(c: Claims) -> Result<TokenIdentity, VerifyError> {
    let expires = UNIX_EPOCH
        .checked_add(Duration::from_secs(c.exp.ok_or_else(lacks_exp)?))
        .ok_or_else(|| VerifyError::Rejected("the token's exp is out of range".into()))?;
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
        expires,
        audiences: 0,
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
