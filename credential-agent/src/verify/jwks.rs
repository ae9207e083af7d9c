//! When the issuer's keys are read again: loaded at
//! start (retrying), refreshed every interval, re-fetched on an unknown `kid`
//! at most once per minimum interval. The [`Verifier`] also remembers tokens
//! it has verified, until they expire, so the signature is checked once per
//! token rather than on every credential fetch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::jwt::{self, KeySet, Rules};
use super::source::JwksSource;
use super::{TokenIdentity, VerifyError, MAX_TOKEN_BYTES, TOO_LARGE};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::secret::Secret;

contract::message_error! {
    /// Why the issuer's keys could not be fetched or read.
    JwksError
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
    clock: Clock,
    source: JwksSource,
    verified: Mutex<HashMap<Digest, Arc<TokenIdentity>>>,
    keys: RwLock<Option<Arc<KeySet>>>,
    last_fetch: Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

impl Verifier {
    pub fn new(
        cfg: VerifierConfig,
        source: JwksSource,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Self {
        Verifier {
            cfg,
            clock,
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
    pub async fn refresh(&self) -> std::result::Result<usize, JwksError> {
        let _one_at_a_time = self.fetching.lock().await;
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> std::result::Result<usize, JwksError> {
        *self.last_fetch.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.clock.now());
        let parsed = self
            .source
            .fetch()
            .await
            .map_err(|e| JwksError(e.to_string()))
            .and_then(|body| KeySet::parse(&body).map_err(|e| JwksError(e.to_string())));
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
                    let withdrawn = keys.as_ref().is_some_and(|old| !old.is_subset_of(&set));
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
            .is_some_and(|t| {
                self.clock.now().saturating_duration_since(t) < self.cfg.min_refetch_interval
            });
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
    pub async fn verify(
        &self,
        token: &Secret,
    ) -> std::result::Result<Arc<TokenIdentity>, VerifyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::Malformed(TOO_LARGE));
        }
        let d = digest(token);
        let now = self.clock.wall();
        if let Some(id) = self.verified_cache().get(&d) {
            if id
                .expires
                .checked_add(self.cfg.leeway)
                .is_none_or(|t| now < t)
            {
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

    async fn verify_uncached(
        &self,
        token: &Secret,
    ) -> std::result::Result<TokenIdentity, VerifyError> {
        let header = jwt::precheck(token)?;
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
        if jwt::is_accepted(header.alg) && keys.candidates(header.kid.as_deref()).is_none() {
            self.refetch_for_unknown_kid().await;
            if let Some(fresh) = self.current() {
                return self.check(token, &fresh);
            }
        }
        self.check(token, &keys)
    }

    fn check(
        &self,
        token: &Secret,
        keys: &KeySet,
    ) -> std::result::Result<TokenIdentity, VerifyError> {
        let rules = Rules {
            issuer: &self.cfg.issuer,
            audiences: &self.cfg.audiences,
            leeway: self.cfg.leeway,
        };
        jwt::verify(token, keys, &rules, self.clock.wall())
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
