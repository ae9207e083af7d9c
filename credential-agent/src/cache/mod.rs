//! The credential cache: one entry per verified identity and role, a single
//! STS call per entry at a time (detached from the HTTP requests waiting on
//! it), refresh ahead of expiry in the background, backoff and negative
//! caching when STS fails, idle eviction and a bound on the entry count.
//!
//! All timing runs on the injected [`Clock`] (tokio's clock for deadlines),
//! so tests drive it with paused time; the wall-clock expiration STS returns
//! is turned into an instant once, when the credentials arrive. Jitter is
//! injected.
//!
//! - `key.rs`: the typed key and its packed form;
//! - `entry.rs`: one cached identity;
//! - `map.rs`: the entries, indexed per identity in eviction order;
//! - `schedule.rs`: refresh and idle deadlines;
//! - `config.rs`: the settings;
//! - `tests.rs`: the behaviour under paused time.
//!
//! Long because the request path (`get`) and the STS call's life
//! (`flight`, `complete`) stay together: they share the entry's locking
//! rules, which are only checkable read side by side.

mod config;
mod entry;
mod key;
mod map;
pub(crate) mod permits;
mod schedule;

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Notify;
use tokio::time::Instant;

pub use config::CacheConfig;
pub use key::Key;

use crate::clock::Clock;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::secret::{scrub, Secret};
use crate::stored::{CachedCredentials, StoredToken, TokenDictionary};
use crate::sts::{AssumeRequest, Credentials, Exchanger, StsError, StsErrorKind};
use entry::{Entry, Failure, Issued, State, Tick};
use key::PackedKey;
use map::Map;
use permits::{FairPermits, IdentityId};
use schedule::{scheduler, Due};

/// Returns a number in [0, 1).
pub type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

pub fn random_jitter() -> Jitter {
    Arc::new(rand::random::<f64>)
}

/// One request for credentials, after the token was verified.
#[derive(Clone, Debug)]
pub struct Lookup {
    pub key: Key,
    pub session_name: String,
    pub token: Secret,
    /// The token's `exp`: background refreshes stop using it after this.
    pub token_expires: Option<SystemTime>,
}

/// Where served credentials came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The cache, no waiting.
    Cached,
    /// An STS call this request waited for.
    Fetched,
    /// The cache, past the refresh point, because STS is failing.
    Stale,
}

impl Source {
    /// The `source` label of `credential_agent_credentials_served_total`.
    pub fn label(self) -> &'static str {
        match self {
            Source::Cached => "cached",
            Source::Fetched => "fetched",
            Source::Stale => "stale",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Served {
    pub credentials: CachedCredentials,
    pub source: Source,
}

type Outcome = Result<CachedCredentials, StsError>;
type Flight = Shared<BoxFuture<'static, Outcome>>;
/// What an entry keeps of its STS call in flight: the callers hold the
/// call; when they all leave before it got an STS slot, it is dropped.
type WeakFlight = futures::future::WeakShared<BoxFuture<'static, Outcome>>;

struct Inner {
    entries: Mutex<Map>,
    /// Keys the identity hashes (random per process).
    identity_hasher: RandomState,
    clock: Clock,
    /// Where this cache's `Tick`s count from.
    epoch: Instant,
    exchanger: Arc<dyn Exchanger>,
    cfg: CacheConfig,
    jitter: Jitter,
    metrics: Arc<Metrics>,
    /// Refresh and idle deadlines of all entries; one task serves them.
    heap: Mutex<BinaryHeap<Reverse<Due>>>,
    wake: Notify,
    /// What the pods' tokens are compressed against.
    tokens: TokenDictionary,
    sts_permits: Arc<FairPermits>,
    scheduler_started: AtomicBool,
}

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Cache {
    pub fn new(
        exchanger: Arc<dyn Exchanger>,
        cfg: CacheConfig,
        jitter: Jitter,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Self {
        let sts_permits = FairPermits::new(cfg.max_concurrent_sts);
        Cache {
            inner: Arc::new(Inner {
                entries: Mutex::new(Map::default()),
                identity_hasher: RandomState::new(),
                epoch: clock.now(),
                clock,
                exchanger,
                cfg,
                jitter,
                metrics,
                heap: Mutex::new(BinaryHeap::new()),
                wake: Notify::new(),
                tokens: TokenDictionary::default(),
                sts_permits,
                scheduler_started: AtomicBool::new(false),
            }),
        }
    }

    /// Identities cached now.
    pub fn len(&self) -> usize {
        self.inner.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, key: &Key) -> bool {
        key.packed()
            .is_some_and(|p| self.inner.map().slots.contains(p.as_slice()))
    }

    /// Credentials for a verified identity: from the cache while they have
    /// at least `min_remaining` left, else from the (shared) STS call.
    /// Counted by source, with the lifetime they had left when served.
    pub async fn get(&self, lookup: Lookup) -> Result<Served, Error> {
        let served = self.lookup(lookup).await?;
        let left = served
            .credentials
            .expiration()
            .duration_since(self.inner.clock.wall())
            .unwrap_or_default();
        self.inner.metrics.served(served.source.label(), left);
        Ok(served)
    }

    async fn lookup(&self, lookup: Lookup) -> Result<Served, Error> {
        let now = self.inner.clock.now();
        let entry = self.inner.entry_for(&lookup, now)?;
        let token_fp = lookup.token.fingerprint();
        let inner = &self.inner;
        let flight = {
            let mut st = entry.lock();
            st.last_used = inner.tick(now);
            if st.token.fingerprint() != token_fp {
                st.token = StoredToken::new(&lookup.token, &inner.tokens);
                st.token_valid_until = lookup
                    .token_expires
                    .map(|t| inner.tick(inner.clock.instant_of(t)));
            }
            if let Some(issued) = &st.creds {
                if inner
                    .instant(issued.valid_until)
                    .saturating_duration_since(now)
                    >= inner.cfg.min_remaining
                {
                    self.inner.metrics.cache_hits.inc();
                    return Ok(Served {
                        credentials: issued.creds.clone(),
                        source: Source::Cached,
                    });
                }
            }
            if let Some(f) = &st.failure {
                let applies = !f.error.is_permanent() || f.token_fp == token_fp;
                if now < f.until && applies {
                    if let Some(stale) = inner.stale(&st, now) {
                        return Ok(stale);
                    }
                    return Err(Error::Sts(f.error.clone()));
                }
            }
            self.inner.metrics.cache_misses.inc();
            Inner::flight(&self.inner, &entry, &mut st, false)
        };
        match flight.await {
            Ok(credentials) => Ok(Served {
                credentials,
                source: Source::Fetched,
            }),
            Err(e) => match inner.stale(&entry.lock(), inner.clock.now()) {
                Some(s) => Ok(s),
                None => Err(Error::Sts(e)),
            },
        }
    }
}

/// Armed while a call waits for its STS slot. Dropped armed, the wait was
/// given up by every caller: the entry forgets the call and is scheduled
/// again (for its idle deadline), so it is neither stuck nor leaked.
struct Abandoned {
    inner: Arc<Inner>,
    entry: Option<Arc<Entry>>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some(entry) = self.entry.take() else {
            return;
        };
        let mut st = entry.lock();
        // Another caller may already have started a new call (this one was
        // unreachable the moment its last holder let go): keep that one.
        if st.inflight.as_ref().is_none_or(|w| w.upgrade().is_none()) {
            st.inflight = None;
        }
        if !entry.removed() {
            let at = self.inner.next_event(&st);
            self.inner.schedule(&entry, &mut st, at);
        }
        self.inner.metrics.sts_call_abandoned.inc();
    }
}

impl Inner {
    fn map(&self) -> MutexGuard<'_, Map> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tick(&self, at: Instant) -> Tick {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        Tick(NonZeroU64::MIN.saturating_add(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }

    fn instant(&self, t: Tick) -> Instant {
        self.epoch + Duration::from_nanos(t.0.get() - 1)
    }

    /// Cached credentials that are still valid, if any.
    fn stale(&self, st: &State, now: Instant) -> Option<Served> {
        st.creds
            .as_ref()
            .filter(|i| self.instant(i.valid_until) > now)
            .map(|i| Served {
                credentials: i.creds.clone(),
                source: Source::Stale,
            })
    }

    fn heap(&self) -> MutexGuard<'_, BinaryHeap<Reverse<Due>>> {
        self.heap.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The identity (namespace + ServiceAccount uid) fairness is counted by.
    fn identity_of(&self, namespace: &str, service_account_uid: &str) -> IdentityId {
        IdentityId(
            self.identity_hasher
                .hash_one((namespace, service_account_uid)),
        )
    }

    fn entry_identity(&self, entry: &Entry) -> IdentityId {
        self.identity_of(entry.key.namespace(), entry.key.service_account_uid())
    }

    /// Who holds an entry's role, for `--max-roles-per-identity` and the
    /// eviction order: the ServiceAccount, or, with per-pod keys (cache
    /// scope pod, Pod Identity), the pod. Otherwise nine pods of one
    /// ServiceAccount would be refused as nine roles of one identity.
    fn holder_of(&self, namespace: &str, service_account_uid: &str, pod_uid: &str) -> IdentityId {
        IdentityId(
            self.identity_hasher
                .hash_one((namespace, service_account_uid, pod_uid)),
        )
    }

    pub(super) fn entry_holder(&self, entry: &Entry) -> IdentityId {
        self.holder_of(
            entry.key.namespace(),
            entry.key.service_account_uid(),
            entry.key.pod_uid(),
        )
    }

    fn entry_for(self: &Arc<Self>, lookup: &Lookup, now: Instant) -> Result<Arc<Entry>, Error> {
        let packed = lookup.key.packed().ok_or(Error::MalformedToken(
            "a claim of the token is longer than 64 KiB",
        ))?;
        let id = self.holder_of(
            &lookup.key.namespace,
            &lookup.key.service_account_uid,
            lookup.key.pod_uid.as_deref().unwrap_or(""),
        );
        let mut map = self.map();
        if let Some(e) = map.slots.get(packed.as_slice()) {
            let e = e.0.clone();
            map.touch(id, self.tick(now));
            return Ok(e);
        }
        let roles = map.roles_of(id);
        if roles >= self.cfg.max_roles_per_identity {
            drop(map);
            return Err(Error::TooManyRoles(format!(
                "this ServiceAccount already has credentials for {roles} roles cached or being fetched \
                 (--max-roles-per-identity); wait for unused ones to expire"
            )));
        }
        while map.len() >= self.cfg.max_entries {
            let Some((old, old_id)) = map.victim() else {
                break;
            };
            map.remove(&old, old_id);
            let _st = old.lock();
            old.set_removed();
            self.metrics.eviction("capacity");
        }
        let entry = Arc::new(Entry::new(
            PackedKey::new(&lookup.key, packed, &lookup.session_name),
            State {
                token: StoredToken::new(&lookup.token, &self.tokens),
                token_valid_until: lookup
                    .token_expires
                    .map(|t| self.tick(self.clock.instant_of(t))),
                creds: None,
                inflight: None,
                failure: None,
                next_refresh: None,
                last_used: self.tick(now),
                scheduled_at: None,
            },
        ));
        map.insert(entry.clone(), id, self.tick(now));
        self.metrics.identities.set(map.len() as i64);
        drop(map);
        // No wake-up yet: the caller starts an STS call at once, and its
        // completion (or its abandonment) schedules the entry.
        if !self.scheduler_started.swap(true, AtomicOrdering::SeqCst) {
            tokio::spawn(scheduler(self.clone()));
        }
        Ok(entry)
    }

    /// The STS call in flight for this entry, started if there is none.
    ///
    /// The call first waits for an STS slot (fairly across identities, at
    /// most `sts_queue_timeout`). That wait belongs to the callers: if they
    /// all leave first, it is dropped and STS never sees the call. Once it
    /// has a slot the call is spawned, and completes (and is cached) even
    /// when every caller has gone away.
    fn flight(self: &Arc<Self>, entry: &Arc<Entry>, st: &mut State, background: bool) -> Flight {
        if let Some(f) = st.inflight.as_ref().and_then(|w| w.upgrade()) {
            return f;
        }
        let token = match st.token.token(&self.tokens) {
            Ok(t) => t,
            Err(e) => {
                // Never sent to STS as anything but the pod's own token: the
                // call fails, and the pod's next request stores its token anew.
                let failed: Outcome = Err(StsError::new(
                    StsErrorKind::Failed,
                    "CorruptToken",
                    e.to_string(),
                ));
                return futures::future::ready(failed).boxed().shared();
            }
        };
        let req = AssumeRequest {
            role_arn: entry.key.role_arn().to_string(),
            session_name: entry.key.session_name(),
            association: entry.key.association().map(str::to_string),
            token: token.clone(),
            duration_seconds: self.cfg.session_duration.as_secs() as i32,
        };
        let token_fp = st.token.fingerprint();
        let id = self.entry_identity(entry);
        let inner = self.clone();
        let abandoned = Abandoned {
            inner: self.clone(),
            entry: Some(entry.clone()),
        };
        let flight = async move {
            let mut abandoned = abandoned;
            let waited = tokio::time::timeout(
                inner.cfg.sts_queue_timeout,
                inner.sts_permits.acquire(id),
            )
            .await;
            let entry = abandoned.entry.take().expect("armed until here");
            let permit = match waited {
                Ok(p) => p,
                Err(_) => {
                    let e = StsError::new(
                        StsErrorKind::Throttled,
                        "StsQueueTimeout",
                        format!(
                            "no STS slot became free within {:?} (--max-concurrent-sts calls are running)",
                            inner.cfg.sts_queue_timeout
                        ),
                    );
                    return inner.complete(&entry, Err(e), token_fp, background);
                }
            };
            let call = inner.clone();
            let handle = tokio::spawn(async move {
                let _permit = permit;
                let started = call.clock.now();
                let result =
                    match tokio::time::timeout(call.cfg.sts_timeout, call.exchanger.assume(req))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(StsError::timeout(call.cfg.sts_timeout)),
                    };
                // Whatever the exchanger put in a message, the token stays out.
                let result = result.map_err(|mut e| {
                    e.message = scrub(&e.message, &token);
                    e.code = scrub(&e.code, &token);
                    e
                });
                call.metrics.sts_call(
                    call.clock.now().saturating_duration_since(started),
                    result.as_ref().err().map(|e| (e.kind.label(), e.code.as_str())),
                );
                call.complete(&entry, result, token_fp, background)
            });
            handle.await.unwrap_or_else(|_| {
                Err(StsError::new(
                    StsErrorKind::Failed,
                    "Internal",
                    "the STS call was aborted",
                ))
            })
        }
        .boxed()
        .shared();
        st.inflight = flight.downgrade().map(Box::new);
        flight
    }

    fn backoff(&self, failures: u32) -> Duration {
        let exp = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        exp.min(self.cfg.backoff_max)
            .mul_f64(0.5 + 0.5 * (self.jitter)().clamp(0.0, 1.0))
    }

    fn complete(
        &self,
        entry: &Arc<Entry>,
        result: Result<Credentials, StsError>,
        token_fp: u64,
        background: bool,
    ) -> Outcome {
        let now = self.clock.now();
        let mut st = entry.lock();
        st.inflight = None;
        let outcome = match result {
            Ok(creds) => {
                let valid_until = self.clock.instant_of(creds.expiration);
                let lifetime = valid_until.saturating_duration_since(now);
                let lead = self.cfg.min_remaining
                    + self.cfg.refresh_margin
                    + self
                        .cfg
                        .refresh_jitter
                        .mul_f64((self.jitter)().clamp(0.0, 1.0));
                let refresh_at = valid_until
                    .checked_sub(lead)
                    .unwrap_or(now)
                    .max(now + lifetime / 2);
                let creds = CachedCredentials::new(&creds);
                st.creds = Some(Issued {
                    creds: creds.clone(),
                    valid_until: self.tick(valid_until),
                });
                st.failure = None;
                st.next_refresh = Some(self.tick(refresh_at));
                Ok(creds)
            }
            Err(error) => {
                let failures = st
                    .failure
                    .as_ref()
                    .map_or(0, |f| f.failures)
                    .saturating_add(1);
                let retry = self.backoff(failures);
                let gate = if error.is_permanent() {
                    self.cfg.negative_ttl
                } else {
                    retry.min(self.cfg.negative_ttl)
                };
                st.failure = Some(Box::new(Failure {
                    error: error.clone(),
                    until: now + gate,
                    token_fp,
                    failures,
                }));
                st.next_refresh = Some(self.tick(now + retry));
                Err(error)
            }
        };
        if background {
            self.metrics
                .refresh(if outcome.is_ok() { "ok" } else { "error" });
        }
        let at = self.next_event(&st);
        if st.scheduled_at.is_none_or(|s| at < s) {
            self.schedule(entry, &mut st, at);
        }
        outcome
    }
}

#[cfg(test)]
mod tests;
