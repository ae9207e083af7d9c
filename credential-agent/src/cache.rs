//! The credential cache: one entry per verified identity and role, a single
//! STS call per entry at a time (detached from the HTTP requests waiting on
//! it), refresh ahead of expiry in the background, backoff and negative
//! caching when STS fails, idle eviction and a bound on the entry count.
//!
//! All timing runs on tokio's clock (`tokio::time::Instant`), so tests drive
//! it with paused time; the wall-clock expiration STS returns is turned into
//! an instant once, when the credentials arrive. Jitter is injected.

use std::borrow::{Borrow, Cow};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::hash::{Hash, Hasher};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::packed::{CachedCredentials, PackedToken, TokenDictionary};
use crate::secret::{scrub, Secret};
use crate::sts::{session_name, AssumeRequest, Credentials, Exchanger, StsError, StsErrorKind};

/// What credentials are cached under. Built only from verified token claims
/// and the requested role, never from anything else a caller sends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    pub role_arn: String,
    /// Set with `--cache-scope pod`.
    pub pod_uid: Option<String>,
}

#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// DurationSeconds asked of STS.
    pub session_duration: Duration,
    /// Never hand out credentials with less left than this while STS works
    /// (botocore refreshes 15 minutes before expiry).
    pub min_remaining: Duration,
    /// Refresh starts when this much more than `min_remaining` is left...
    pub refresh_margin: Duration,
    /// ...plus a random part of this (spreads refreshes of many identities).
    pub refresh_jitter: Duration,
    /// How long a permanent STS refusal for one token is remembered.
    pub negative_ttl: Duration,
    /// First retry delay after a failed STS call; doubles per failure.
    pub backoff_base: Duration,
    /// Cap of the retry delay.
    pub backoff_max: Duration,
    /// Identities not asked for within this time are dropped.
    pub idle_timeout: Duration,
    /// Most identities kept; the least recently used one makes room.
    pub max_entries: usize,
    /// One STS call may take this long.
    pub sts_timeout: Duration,
    /// STS calls in flight at once, over all identities.
    pub max_concurrent_sts: usize,
}

impl Key {
    /// One string for the map and the entry: the fields joined by NUL (no
    /// field can hold one: names, uids and a validated role ARN).
    pub fn compact(&self) -> String {
        let pod = self.pod_uid.as_deref().unwrap_or("");
        format!(
            "{}\0{}\0{}\0{}\0{pod}",
            self.namespace, self.service_account, self.service_account_uid, self.role_arn
        )
    }

    fn role_of(compact: &str) -> &str {
        compact.split('\0').nth(3).unwrap_or("")
    }

    /// The session name a key gives when the pod is not part of it.
    fn default_session_name(compact: &str) -> String {
        let mut fields = compact.split('\0');
        let namespace = fields.next().unwrap_or("");
        let service_account = fields.next().unwrap_or("");
        session_name(namespace, service_account, None)
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            session_duration: Duration::from_secs(3600),
            min_remaining: Duration::from_secs(15 * 60),
            refresh_margin: Duration::from_secs(5 * 60),
            refresh_jitter: Duration::from_secs(5 * 60),
            negative_ttl: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5 * 60),
            idle_timeout: Duration::from_secs(90 * 60),
            max_entries: 20_000,
            sts_timeout: Duration::from_secs(10),
            max_concurrent_sts: 16,
        }
    }
}

impl CacheConfig {
    /// Rejects settings under which refresh-ahead cannot work.
    pub fn validate(&self) -> Result<(), String> {
        let secs = self.session_duration.as_secs();
        if !(900..=43200).contains(&secs) {
            return Err(format!(
                "session duration {secs}s is outside STS's range of 900 to 43200 seconds"
            ));
        }
        let lead = self.min_remaining + self.refresh_margin + self.refresh_jitter;
        if self.session_duration <= lead + Duration::from_secs(60) {
            return Err(format!(
                "session duration {secs}s leaves no time between refreshes: it must exceed \
                 min-remaining + refresh margin + refresh jitter + 60s = {}s",
                lead.as_secs() + 60
            ));
        }
        if self.max_entries == 0 {
            return Err("max entries must be at least 1".into());
        }
        if self.max_concurrent_sts == 0 {
            return Err("max concurrent STS calls must be at least 1".into());
        }
        if self.backoff_base.is_zero() || self.backoff_max < self.backoff_base {
            return Err("backoff base must be positive and at most backoff max".into());
        }
        Ok(())
    }
}

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

/// An instant on a cache's clock in 8 bytes (also as `Option<Tick>`):
/// nanoseconds since the cache was made, plus one. Exact both ways for 584
/// years, so paused-time tests see the same instants as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Tick(NonZeroU64);

struct Issued {
    creds: CachedCredentials,
    valid_until: Tick,
}

struct Failure {
    error: StsError,
    until: Instant,
    token_fp: u64,
    /// STS calls failed in a row.
    failures: u32,
}

/// Kept small on purpose (88 bytes): a node may hold thousands.
struct State {
    /// Holds its fingerprint too.
    token: PackedToken,
    token_valid_until: Option<Tick>,
    creds: Option<Issued>,
    /// Boxed: `Option<Flight>` would be 24 bytes in every entry.
    inflight: Option<Box<Flight>>,
    /// Boxed: rare, and entries should stay small.
    failure: Option<Box<Failure>>,
    next_refresh: Option<Tick>,
    last_used: Tick,
    /// The deadline of this entry's one live item in the scheduler's heap.
    scheduled_at: Option<Tick>,
}

struct Entry {
    /// `Key::compact()` (the first `key_len` bytes), then the session name.
    names: Box<str>,
    key_len: u32,
    /// Out of the map: no longer refreshed or scheduled. Changed only with
    /// the state locked.
    removed: AtomicBool,
    state: Mutex<State>,
}

impl Entry {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(&self) -> &str {
        self.names.get(..self.key_len as usize).unwrap_or("")
    }

    /// Stored only when it is not the one the key gives.
    fn session_name(&self) -> Cow<'_, str> {
        match self.names.get(self.key_len as usize..) {
            Some(s) if !s.is_empty() => Cow::Borrowed(s),
            _ => Cow::Owned(Key::default_session_name(self.key())),
        }
    }

    fn removed(&self) -> bool {
        self.removed.load(AtomicOrdering::Relaxed)
    }

    fn set_removed(&self) {
        self.removed.store(true, AtomicOrdering::Relaxed);
    }
}

/// An entry in the map, found by its key (`Key::compact()`): the map holds
/// one pointer per identity and no second copy of the key.
struct Slot(Arc<Entry>);

impl Borrow<str> for Slot {
    fn borrow(&self) -> &str {
        self.0.key()
    }
}
impl Hash for Slot {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.key().hash(h)
    }
}
impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}
impl Eq for Slot {}

/// One pending wake-up of the scheduler for an entry.
struct Due {
    at: Tick,
    entry: Weak<Entry>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

struct Inner {
    entries: Mutex<HashSet<Slot>>,
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

fn to_instant(at: SystemTime, now: Instant) -> Instant {
    now + at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

impl Cache {
    pub fn new(
        exchanger: Arc<dyn Exchanger>,
        cfg: CacheConfig,
        jitter: Jitter,
        metrics: Arc<Metrics>,
    ) -> Self {
        let sts_permits = tokio::sync::Semaphore::new(cfg.max_concurrent_sts.max(1));
        Cache {
            inner: Arc::new(Inner {
                entries: Mutex::new(HashSet::new()),
                epoch: Instant::now(),
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
        self.inner.map().contains(key.compact().as_str())
    }

    /// Credentials for a verified identity: from the cache while they have
    /// at least `min_remaining` left, else from the (shared) STS call.
    pub async fn get(&self, lookup: Lookup) -> Result<Served, StsError> {
        let now = Instant::now();
        let entry = self.inner.entry_for(&lookup, now);
        let token_fp = lookup.token.fingerprint();
        let inner = &self.inner;
        let flight = {
            let mut st = entry.lock();
            st.last_used = inner.tick(now);
            if st.token.fingerprint() != token_fp {
                st.token = PackedToken::new(&lookup.token, &inner.tokens);
                st.token_valid_until = lookup.token_expires.map(|t| inner.tick(to_instant(t, now)));
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
            Err(e) => match inner.stale(&entry.lock(), Instant::now()) {
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
        let mut names = lookup.key.compact();
        let mut map = self.map();
        if let Some(e) = map.get(names.as_str()) {
            return e.0.clone();
        }
        while map.len() >= self.cfg.max_entries {
            let lru = map
                .iter()
                .min_by_key(|e| e.0.lock().last_used)
                .map(|e| e.0.clone());
            let Some(old) = lru else { break };
            map.remove(old.key());
            let _st = old.lock();
            old.set_removed();
            self.metrics.eviction("capacity");
        }
        // Keys are claim values of a size-limited token: far below 4 GiB.
        let key_len = u32::try_from(names.len()).unwrap_or(u32::MAX);
        if lookup.session_name != Key::default_session_name(&names) {
            names.push_str(&lookup.session_name);
        }
        let entry = Arc::new(Entry {
            names: names.into_boxed_str(),
            key_len,
            removed: AtomicBool::new(false),
            state: Mutex::new(State {
                token: PackedToken::new(&lookup.token, &self.tokens),
                token_valid_until: lookup.token_expires.map(|t| self.tick(to_instant(t, now))),
                creds: None,
                inflight: None,
                failure: None,
                next_refresh: None,
                last_used: self.tick(now),
                scheduled_at: None,
            }),
        });
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

    /// When the scheduler must next look at an entry: its refresh point
    /// (once it has credentials) or the moment it becomes idle.
    fn next_event(&self, st: &State) -> Tick {
        let idle_at = self.idle_at(st);
        match (&st.creds, st.next_refresh) {
            (Some(_), Some(due)) => due.min(idle_at),
            _ => idle_at,
        }
    }

    /// When the entry becomes idle unless asked for again.
    fn idle_at(&self, st: &State) -> Tick {
        self.tick(self.instant(st.last_used) + self.cfg.idle_timeout)
    }

    /// Makes `at` the entry's one live wake-up; older heap items for it
    /// become stale and are skipped when they come up.
    fn schedule(&self, entry: &Arc<Entry>, st: &mut State, at: Tick) {
        if st.scheduled_at == Some(at) {
            return;
        }
        st.scheduled_at = Some(at);
        let mut heap = self.heap();
        let earliest = heap.peek().is_none_or(|Reverse(d)| at < d.at);
        heap.push(Reverse(Due {
            at,
            entry: Arc::downgrade(entry),
        }));
        drop(heap);
        if earliest {
            self.wake.notify_one();
        }
    }

    /// The scheduler reached `at` for this entry: drop it if idle, start a
    /// refresh if due, else schedule the next look.
    fn on_due(self: &Arc<Self>, entry: &Arc<Entry>, at: Tick, now: Instant) {
        {
            let mut st = entry.lock();
            if entry.removed() || st.scheduled_at != Some(at) {
                return; // evicted, or a stale item
            }
            st.scheduled_at = None;
            if self.tick(now) < self.idle_at(&st) {
                return self.refresh_or_reschedule(entry, &mut st, now);
            }
        }
        if self.remove_if_idle(entry, now) {
            return;
        }
        let mut st = entry.lock();
        self.refresh_or_reschedule(entry, &mut st, now);
    }

    fn refresh_or_reschedule(self: &Arc<Self>, entry: &Arc<Entry>, st: &mut State, now: Instant) {
        if st.inflight.is_some() {
            return; // its completion schedules the next look
        }
        let now_tick = self.tick(now);
        let due = st.creds.is_some() && st.next_refresh.is_some_and(|d| now_tick >= d);
        if due {
            if st.token_valid_until.is_some_and(|t| t <= now_tick) {
                // Only a request can bring a newer token; until then there
                // is nothing STS would accept.
                st.next_refresh =
                    Some(self.tick(now + self.cfg.backoff_max.min(Duration::from_secs(30))));
                self.metrics.refresh("skipped_token_expired");
            } else {
                // Spawned; completion records the result and reschedules.
                drop(Inner::flight(self, entry, st, true));
                return;
            }
        }
        let at = self.next_event(st);
        self.schedule(entry, st, at);
    }

    /// The STS call in flight for this entry, started if there is none.
    fn flight(self: &Arc<Self>, entry: &Arc<Entry>, st: &mut State, background: bool) -> Flight {
        if let Some(f) = &st.inflight {
            return Flight::clone(f);
        }
        let token = st.token.unpack(&self.tokens);
        let req = AssumeRequest {
            role_arn: Key::role_of(entry.key()).to_string(),
            session_name: entry.session_name().into_owned(),
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
                let started = Instant::now();
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
        let now = Instant::now();
        let mut st = entry.lock();
        st.inflight = None;
        let outcome = match result {
            Ok(creds) => {
                let valid_until = to_instant(creds.expiration, now);
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

    /// Drops the entry if it is still idle; true if it is gone.
    fn remove_if_idle(&self, entry: &Arc<Entry>, now: Instant) -> bool {
        let mut map = self.map();
        let st = entry.lock();
        if entry.removed() {
            return true;
        }
        if self.tick(now) < self.idle_at(&st) {
            return false;
        }
        entry.set_removed();
        if map
            .get(entry.key())
            .is_some_and(|e| Arc::ptr_eq(&e.0, entry))
        {
            map.remove(entry.key());
        }
        self.metrics.identities.set(map.len() as i64);
        self.metrics.eviction("idle");
        true
    }
}

/// The one task that serves every entry's refresh and idle deadlines.
async fn scheduler(inner: Arc<Inner>) {
    loop {
        let next = inner.heap().peek().map(|Reverse(d)| inner.instant(d.at));
        match next {
            None => inner.wake.notified().await,
            Some(at) if at > Instant::now() => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = inner.wake.notified() => {}
                }
            }
            Some(_) => {}
        }
        let now = Instant::now();
        let now_tick = inner.tick(now);
        loop {
            let due = {
                let mut heap = inner.heap();
                match heap.peek() {
                    Some(Reverse(d)) if d.at <= now_tick => heap.pop().map(|Reverse(d)| d),
                    _ => None,
                }
            };
            let Some(due) = due else { break };
            if let Some(entry) = due.entry.upgrade() {
                inner.on_due(&entry, due.at, now);
            }
        }
    }
}

#[cfg(test)]
mod tests;
