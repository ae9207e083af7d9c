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
//! - `schedule.rs`: refresh and idle deadlines;
//! - `config.rs`: the settings;
//! - `tests.rs`: the behaviour under paused time.
//!
//! About 400 lines: the request path (`get`) and the STS call's life
//! (`flight`, `complete`) stay together because they share the entry's
//! locking rules.

mod config;
mod entry;
mod key;
mod schedule;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
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
use crate::metrics::Metrics;
use crate::packed::{CachedCredentials, PackedToken, TokenDictionary};
use crate::secret::{scrub, Secret};
use crate::sts::{AssumeRequest, Credentials, Exchanger, StsError, StsErrorKind};
use entry::{Entry, Failure, Issued, Slot, State, Tick};
use key::PackedKey;
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

#[derive(Clone, Debug)]
pub struct Served {
    pub credentials: CachedCredentials,
    pub source: Source,
}

type Outcome = Result<CachedCredentials, StsError>;
type Flight = Shared<BoxFuture<'static, Outcome>>;

struct Inner {
    entries: Mutex<HashSet<Slot>>,
    clock: Clock,
    /// Where this cache's `Tick`s count from.
    epoch: Instant,
    /// What the pods' tokens are compressed against.
    tokens: TokenDictionary,
    exchanger: Arc<dyn Exchanger>,
    cfg: CacheConfig,
    jitter: Jitter,
    metrics: Arc<Metrics>,
    /// Refresh and idle deadlines of all entries; one task serves them.
    heap: Mutex<BinaryHeap<Reverse<Due>>>,
    wake: Notify,
    sts_permits: tokio::sync::Semaphore,
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
        let sts_permits = tokio::sync::Semaphore::new(cfg.max_concurrent_sts.max(1));
        Cache {
            inner: Arc::new(Inner {
                entries: Mutex::new(HashSet::new()),
                epoch: clock.now(),
                clock,
                tokens: TokenDictionary::default(),
                exchanger,
                cfg,
                jitter,
                metrics,
                heap: Mutex::new(BinaryHeap::new()),
                wake: Notify::new(),
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
        self.inner.map().contains(key.packed().as_slice())
    }

    /// Credentials for a verified identity: from the cache while they have
    /// at least `min_remaining` left, else from the (shared) STS call.
    pub async fn get(&self, lookup: Lookup) -> Result<Served, StsError> {
        let now = self.inner.clock.now();
        let entry = self.inner.entry_for(&lookup, now);
        let token_fp = lookup.token.fingerprint();
        let inner = &self.inner;
        let flight = {
            let mut st = entry.lock();
            st.last_used = inner.tick(now);
            if st.token.fingerprint() != token_fp {
                st.token = PackedToken::new(&lookup.token, &inner.tokens);
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
                    return Err(f.error.clone());
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
                None => Err(e),
            },
        }
    }
}

impl Inner {
    fn map(&self) -> MutexGuard<'_, HashSet<Slot>> {
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

    fn entry_for(self: &Arc<Self>, lookup: &Lookup, now: Instant) -> Arc<Entry> {
        let packed = lookup.key.packed();
        let mut map = self.map();
        if let Some(e) = map.get(packed.as_slice()) {
            return e.0.clone();
        }
        while map.len() >= self.cfg.max_entries {
            let lru = map
                .iter()
                .min_by_key(|e| e.0.lock().last_used)
                .map(|e| e.0.clone());
            let Some(old) = lru else { break };
            map.remove(old.key.key_bytes());
            let _st = old.lock();
            old.set_removed();
            self.metrics.eviction("capacity");
        }
        let entry = Arc::new(Entry::new(
            PackedKey::new(&lookup.key, &lookup.session_name),
            State {
                token: PackedToken::new(&lookup.token, &self.tokens),
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
        map.insert(Slot(entry.clone()));
        self.metrics.identities.set(map.len() as i64);
        drop(map);
        // No wake-up yet: the caller starts an STS call at once, and its
        // completion schedules the entry (a second heap item now would only
        // go stale).
        if !self.scheduler_started.swap(true, AtomicOrdering::SeqCst) {
            tokio::spawn(scheduler(self.clone()));
        }
        entry
    }

    /// The STS call in flight for this entry, started if there is none.
    fn flight(self: &Arc<Self>, entry: &Arc<Entry>, st: &mut State, background: bool) -> Flight {
        if let Some(f) = &st.inflight {
            return Flight::clone(f);
        }
        let token = st.token.unpack(&self.tokens);
        let req = AssumeRequest {
            role_arn: entry.key.role_arn().to_string(),
            session_name: entry.key.session_name(),
            token: token.clone(),
            duration_seconds: self.cfg.session_duration.as_secs() as i32,
        };
        let token_fp = st.token.fingerprint();
        let inner = self.clone();
        let entry = entry.clone();
        // Spawned, so the call completes (and is cached) even when every
        // HTTP request waiting on it has gone away.
        let handle =
            tokio::spawn(async move {
                // At most `max_concurrent_sts` calls at once: a node starting
                // a hundred pods must not fire a hundred calls at STS.
                let _permit = inner.sts_permits.acquire().await;
                let started = inner.clock.now();
                let result =
                    match tokio::time::timeout(inner.cfg.sts_timeout, inner.exchanger.assume(req))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(StsError::timeout(inner.cfg.sts_timeout)),
                    };
                // Whatever the exchanger put in a message, the token stays out.
                let result = result.map_err(|mut e| {
                    e.message = scrub(&e.message, &token);
                    e.code = scrub(&e.code, &token);
                    e
                });
                inner.metrics.sts_call(
                    started.elapsed(),
                    result.as_ref().err().map(|e| e.code.as_str()),
                );
                inner.complete(&entry, result, token_fp, background)
            });
        let flight = handle
            .map(|joined| {
                joined.unwrap_or_else(|_| {
                    Err(StsError::new(
                        StsErrorKind::Failed,
                        "Internal",
                        "the STS call was aborted",
                    ))
                })
            })
            .boxed()
            .shared();
        st.inflight = Some(Box::new(flight.clone()));
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
