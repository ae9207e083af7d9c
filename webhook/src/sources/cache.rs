//! The ServiceAccount cache.
//!
//! Filled by a kube-runtime metadata watcher (only metadata crosses the wire,
//! and only uid plus the annotations we read are kept), or from a file. A pod
//! whose ServiceAccount is not in the cache triggers one direct GET, shared by
//! every concurrent request for the same ServiceAccount and bounded by the
//! lookup grace period, so a ServiceAccount created a moment before its pod is
//! still injected.
//!
//! Those direct GETs are bounded so that reviews naming ServiceAccounts that
//! do not exist cannot flood the API server with the webhook's credentials:
//! a not-found answer is remembered for `not_found_ttl` (forgotten the
//! moment the watch sees that ServiceAccount appear), and new GETs are
//! rate-limited (token bucket); a lookup over the rate fails like any other
//! (the pod is denied with 503 and its controller retries).
//!
//! Over 400 lines because the watcher, the direct lookup and its single
//! flight share one map and its invariants; splitting them would spread
//! those invariants over files.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use crate::clock::Clock;
use crate::injection::{ConfigMapEntry, ServiceAccountEntry};
use crate::metrics::Metrics;
use crate::sources::manifests::ServiceAccountManifest;
use crate::{Error, Result};

contract::message_error! {
    /// Why a ServiceAccount lookup failed (shared by the reviews waiting on it).
    LookupError
}

pub const CONFIG_MAP_NAME: &str = "pod-identity-webhook";

type FetchResult = std::result::Result<Option<Arc<ServiceAccountEntry>>, LookupError>;

/// Bounds of the direct lookups.
#[derive(Debug, Clone, Copy)]
pub struct LookupLimits {
    /// How long a review waits for a lookup.
    pub timeout: Duration,
    /// How long a not-found answer is remembered.
    pub not_found_ttl: Duration,
    /// New GETs per second, on average...
    pub per_second: f64,
    /// ...and at most this many at once after a quiet period.
    pub burst: f64,
}

impl Default for LookupLimits {
    fn default() -> Self {
        LookupLimits {
            timeout: Duration::from_secs(2),
            not_found_ttl: Duration::from_secs(2),
            per_second: 20.0,
            burst: 50.0,
        }
    }
}

/// Most not-found answers remembered; past this, the oldest expire first.
const MAX_NOT_FOUND: usize = 10_000;

struct Bucket {
    tokens: f64,
    last: tokio::time::Instant,
}

struct Fetcher {
    client: kube::Client,
    limits: LookupLimits,
    clock: Clock,
    inflight: Mutex<HashMap<String, Shared<BoxFuture<'static, FetchResult>>>>,
    /// Not-found answers, until when they hold.
    not_found: Mutex<HashMap<String, tokio::time::Instant>>,
    bucket: Mutex<Bucket>,
}

impl Fetcher {
    fn remembered_not_found(&self, k: &str) -> bool {
        let now = self.clock.now();
        let mut nf = self.not_found.lock().unwrap_or_else(|e| e.into_inner());
        match nf.get(k) {
            Some(until) if *until > now => true,
            Some(_) => {
                nf.remove(k);
                false
            }
            None => false,
        }
    }

    fn remember_not_found(&self, k: String) {
        let now = self.clock.now();
        let mut nf = self.not_found.lock().unwrap_or_else(|e| e.into_inner());
        if nf.len() >= MAX_NOT_FOUND {
            nf.retain(|_, until| *until > now);
            if nf.len() >= MAX_NOT_FOUND {
                return;
            }
        }
        nf.insert(k, now + self.limits.not_found_ttl);
    }

    fn forget_not_found(&self, k: &str) {
        self.not_found
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(k);
    }

    /// Takes a token for one GET, if the rate allows.
    fn allow_get(&self) -> bool {
        let now = self.clock.now();
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let refill = now.saturating_duration_since(b.last).as_secs_f64() * self.limits.per_second;
        b.tokens = (b.tokens + refill).min(self.limits.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct ServiceAccountCache {
    prefix: String,
    entries: RwLock<HashMap<String, Arc<ServiceAccountEntry>>>,
    config_map: RwLock<HashMap<String, ConfigMapEntry>>,
    sa_synced: AtomicBool,
    cm_synced: AtomicBool,
    fetcher: Option<Fetcher>,
    metrics: Arc<Metrics>,
}

fn key(namespace: &str, name: &str) -> String {
    let mut k = String::with_capacity(namespace.len() + name.len() + 1);
    k.push_str(namespace);
    k.push('/');
    k.push_str(name);
    k
}

fn entry_from_meta(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    prefix: &str,
) -> ServiceAccountEntry {
    let annotations = meta
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    ServiceAccountEntry::from_annotations(meta.uid.as_deref().unwrap_or(""), annotations, prefix)
}

impl ServiceAccountCache {
    /// A cache filled once from manifests; it never talks to a cluster and is
    /// ready at once.
    pub fn from_manifests(
        prefix: &str,
        sas: &[ServiceAccountManifest],
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let cache = Self::empty(prefix, None, metrics);
        {
            let mut map = cache.entries.write().unwrap_or_else(|e| e.into_inner());
            for sa in sas {
                let e = ServiceAccountEntry::from_annotations(
                    &sa.uid,
                    sa.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    prefix,
                );
                map.insert(key(&sa.namespace, &sa.name), Arc::new(e));
            }
            map.shrink_to_fit();
            cache.metrics.cache_size.set(map.len() as i64);
        }
        cache.sa_synced.store(true, Ordering::Release);
        cache.cm_synced.store(true, Ordering::Release);
        Arc::new(cache)
    }

    /// A cache filled once from a ServiceAccounts file, entry by entry as the
    /// file is parsed.
    pub fn from_file(
        prefix: &str,
        path: &std::path::Path,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>> {
        let cache = Self::empty(prefix, None, metrics);
        {
            let mut map = cache.entries.write().unwrap_or_else(|e| e.into_inner());
            crate::sources::manifests::for_each_service_account(path, &mut |sa| {
                let e = ServiceAccountEntry::from_annotations(
                    &sa.uid,
                    sa.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    prefix,
                );
                map.insert(key(&sa.namespace, &sa.name), Arc::new(e));
            })?;
            map.shrink_to_fit();
            cache.metrics.cache_size.set(map.len() as i64);
        }
        cache.sa_synced.store(true, Ordering::Release);
        cache.cm_synced.store(true, Ordering::Release);
        Ok(Arc::new(cache))
    }

    /// A cache backed by the cluster; call [`Self::spawn_watchers`] to fill it.
    pub fn for_cluster(
        prefix: &str,
        client: kube::Client,
        limits: LookupLimits,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let clock = Clock::system();
        let fetcher = Fetcher {
            client,
            limits,
            clock,
            inflight: Mutex::new(HashMap::new()),
            not_found: Mutex::new(HashMap::new()),
            bucket: Mutex::new(Bucket {
                tokens: limits.burst,
                last: clock.now(),
            }),
        };
        Arc::new(Self::empty(prefix, Some(fetcher), metrics))
    }

    fn empty(prefix: &str, fetcher: Option<Fetcher>, metrics: Arc<Metrics>) -> Self {
        ServiceAccountCache {
            prefix: prefix.to_string(),
            entries: RwLock::new(HashMap::new()),
            config_map: RwLock::new(HashMap::new()),
            sa_synced: AtomicBool::new(false),
            cm_synced: AtomicBool::new(true),
            fetcher,
            metrics,
        }
    }

    /// True once the initial list of ServiceAccounts (and the ConfigMap, when
    /// watched) has been loaded.
    pub fn is_ready(&self) -> bool {
        self.sa_synced.load(Ordering::Acquire) && self.cm_synced.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get_cached(&self, namespace: &str, name: &str) -> Option<Arc<ServiceAccountEntry>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(namespace, name))
            .cloned()
    }

    pub fn config_map_entry(&self, namespace: &str, name: &str) -> Option<ConfigMapEntry> {
        let map = self.config_map.read().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return None;
        }
        map.get(&key(namespace, name)).cloned()
    }

    fn insert(&self, namespace: &str, name: &str, entry: ServiceAccountEntry) {
        let k = key(namespace, name);
        if let Some(f) = &self.fetcher {
            f.forget_not_found(&k);
        }
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        map.insert(k, Arc::new(entry));
        self.metrics.cache_size.set(map.len() as i64);
    }

    fn remove(&self, namespace: &str, name: &str) {
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        map.remove(&key(namespace, name));
        self.metrics.cache_size.set(map.len() as i64);
    }

    /// The ServiceAccount's entry: from the cache, or on a miss from one direct
    /// GET shared by concurrent callers. `Ok(None)` means it does not exist.
    pub async fn lookup(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ServiceAccountEntry>>> {
        if let Some(e) = self.get_cached(namespace, name) {
            return Ok(Some(e));
        }
        self.metrics.cache_misses.inc();
        let Some(fetcher) = &self.fetcher else {
            return Ok(None);
        };
        let k = key(namespace, name);
        if fetcher.remembered_not_found(&k) {
            self.metrics.fallback("not_found_remembered");
            return Ok(None);
        }
        let lookup_error = |reason: LookupError| Error::ServiceAccountLookup {
            namespace: namespace.to_string(),
            name: name.to_string(),
            reason,
        };
        let fut = {
            let mut inflight = fetcher.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match inflight.get(&k) {
                Some(f) => f.clone(),
                None => {
                    if !fetcher.allow_get() {
                        drop(inflight);
                        self.metrics.fallback("rate_limited");
                        return Err(lookup_error(
                            "too many lookups of ServiceAccounts that are not in the cache; this one was rate-limited"
                                .into(),
                        ));
                    }
                    let f = self.start_fetch(namespace, name, k.clone());
                    inflight.insert(k.clone(), f.clone());
                    f
                }
            }
        };
        match tokio::time::timeout(fetcher.limits.timeout, fut).await {
            Ok(Ok(entry)) => Ok(entry),
            Ok(Err(e)) => Err(lookup_error(e)),
            Err(_) => {
                self.metrics.fallback("timeout");
                Err(lookup_error(
                    format!(
                        "no answer from the API server within {:?}",
                        fetcher.limits.timeout
                    )
                    .into(),
                ))
            }
        }
    }

    /// Starts the GET in its own task so a caller that gives up does not cancel
    /// it for the others; the result also lands in the cache.
    fn start_fetch(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        k: String,
    ) -> Shared<BoxFuture<'static, FetchResult>> {
        let this = Arc::clone(self);
        let (namespace, name) = (namespace.to_string(), name.to_string());
        let task = tokio::spawn(async move {
            let Some(fetcher) = &this.fetcher else {
                return Ok(None);
            };
            let api: Api<ServiceAccount> = Api::namespaced(fetcher.client.clone(), &namespace);
            let result = match api.get_metadata_opt(&name).await {
                Ok(Some(sa)) => {
                    let entry = entry_from_meta(&sa.metadata, &this.prefix);
                    this.insert(&namespace, &name, entry.clone());
                    this.metrics.fallback("found");
                    Ok(Some(Arc::new(entry)))
                }
                Ok(None) => {
                    this.metrics.fallback("not_found");
                    fetcher.remember_not_found(k.clone());
                    Ok(None)
                }
                Err(e) => {
                    this.metrics.fallback("error");
                    Err(LookupError(e.to_string()))
                }
            };
            fetcher
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&k);
            result
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(LookupError(format!("lookup task failed: {e}"))))
        }
        .boxed()
        .shared()
    }

    /// Starts the ServiceAccount watcher (and the ConfigMap watcher when
    /// `config_map_namespace` is given). They run until the process ends,
    /// retrying with backoff.
    pub fn spawn_watchers(self: &Arc<Self>, config_map_namespace: Option<&str>) -> Result<()> {
        let Some(fetcher) = &self.fetcher else {
            return Err(Error::Config("this cache has no cluster connection".into()));
        };
        let client = fetcher.client.clone();
        let this = Arc::clone(self);
        // Api<PartialObjectMeta<_>> makes metadata-only list and watch requests.
        let api: Api<PartialObjectMeta<ServiceAccount>> = Api::all(client.clone());
        tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut buffer: Option<HashMap<String, Arc<ServiceAccountEntry>>> = None;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::Init) => buffer = Some(HashMap::new()),
                    Ok(Event::InitApply(sa)) => {
                        let ns = sa.metadata.namespace.as_deref().unwrap_or("");
                        let name = sa.metadata.name.as_deref().unwrap_or("");
                        let e = entry_from_meta(&sa.metadata, &this.prefix);
                        buffer
                            .get_or_insert_with(HashMap::new)
                            .insert(key(ns, name), Arc::new(e));
                    }
                    Ok(Event::InitDone) => {
                        let mut fresh = buffer.take().unwrap_or_default();
                        fresh.shrink_to_fit();
                        if let Some(f) = &this.fetcher {
                            f.not_found
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .clear();
                        }
                        let mut map = this.entries.write().unwrap_or_else(|e| e.into_inner());
                        *map = fresh;
                        this.metrics.cache_size.set(map.len() as i64);
                        drop(map);
                        if !this.sa_synced.swap(true, Ordering::AcqRel) {
                            tracing::info!(
                                serviceaccounts = this.len(),
                                "ServiceAccount cache synced"
                            );
                        }
                    }
                    Ok(Event::Apply(sa)) => {
                        let ns = sa.metadata.namespace.as_deref().unwrap_or("");
                        let name = sa.metadata.name.as_deref().unwrap_or("");
                        this.insert(ns, name, entry_from_meta(&sa.metadata, &this.prefix));
                    }
                    Ok(Event::Delete(sa)) => {
                        let ns = sa.metadata.namespace.as_deref().unwrap_or("");
                        let name = sa.metadata.name.as_deref().unwrap_or("");
                        this.remove(ns, name);
                    }
                    Err(e) => tracing::warn!(error = %e, "ServiceAccount watch failed; retrying"),
                }
            }
        });

        if let Some(ns) = config_map_namespace {
            self.cm_synced.store(false, Ordering::Release);
            let this = Arc::clone(self);
            let api: Api<ConfigMap> = Api::namespaced(client, ns);
            let cfg =
                watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP_NAME}"));
            tokio::spawn(async move {
                let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
                let mut seen_in_init = false;
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(Event::Init) => seen_in_init = false,
                        Ok(Event::InitApply(cm)) | Ok(Event::Apply(cm)) => {
                            seen_in_init = true;
                            this.apply_config_map(&cm);
                        }
                        Ok(Event::InitDone) => {
                            if !seen_in_init {
                                this.replace_config_map(HashMap::new());
                            }
                            this.cm_synced.store(true, Ordering::Release);
                        }
                        Ok(Event::Delete(_)) => this.replace_config_map(HashMap::new()),
                        Err(e) => tracing::warn!(error = %e, "ConfigMap watch failed; retrying"),
                    }
                }
            });
        }
        Ok(())
    }

    fn replace_config_map(&self, map: HashMap<String, ConfigMapEntry>) {
        *self.config_map.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    fn apply_config_map(&self, cm: &ConfigMap) {
        let config = cm
            .data
            .as_ref()
            .and_then(|d| d.get("config"))
            .map(String::as_str)
            .unwrap_or("");
        match parse_config_map(config) {
            Ok(map) => {
                tracing::info!(entries = map.len(), "loaded ConfigMap {CONFIG_MAP_NAME}");
                self.replace_config_map(map);
            }
            Err(e) => {
                tracing::error!(error = %e, "invalid ConfigMap {CONFIG_MAP_NAME}; keeping the previous entries")
            }
        }
    }
}

contract::message_error! {
    /// A `pod-identity-webhook` ConfigMap whose `config` cannot be read.
    ConfigMapError
}

/// Parses the ConfigMap's `config` value: `{"ns/sa": {"RoleARN": ..}}`.
pub fn parse_config_map(
    config: &str,
) -> std::result::Result<HashMap<String, ConfigMapEntry>, ConfigMapError> {
    if config.trim().is_empty() {
        return Ok(HashMap::new());
    }
    let raw: HashMap<String, ConfigMapEntry> =
        serde_json::from_str(config).map_err(|e| e.to_string())?;
    for k in raw.keys() {
        k.parse::<contract::mode::ServiceAccountKey>()
            .map_err(|_| format!("key {k:?} is not namespace/serviceaccount"))?;
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_map_parse_table() {
        let m = parse_config_map(
            r#"{"ns/sa": {"RoleARN": "arn:aws:iam::111122223333:role/x", "Audience": "a", "UseRegionalSTS": true, "TokenExpiration": 3600}}"#,
        )
        .unwrap();
        let e = &m["ns/sa"];
        assert_eq!(e.role_arn, "arn:aws:iam::111122223333:role/x");
        assert_eq!(e.audience, "a");
        assert!(e.use_regional_sts);
        assert_eq!(e.token_expiration, 3600);
        assert!(parse_config_map("").unwrap().is_empty());
        assert!(parse_config_map("{").is_err());
        assert!(parse_config_map(r#"{"nosep": {}}"#).is_err());
        assert!(parse_config_map(r#"{"a/b/c": {}}"#).is_err());
    }

    #[tokio::test]
    async fn file_cache_is_ready_and_misses_are_not_found() {
        let sas = vec![ServiceAccountManifest {
            namespace: "ns".into(),
            name: "sa".into(),
            uid: "u".into(),
            annotations: vec![(
                "eks.amazonaws.com/role-arn".into(),
                "arn:aws:iam::111122223333:role/x".into(),
            )],
        }];
        let metrics = Arc::new(Metrics::new());
        let c = ServiceAccountCache::from_manifests("eks.amazonaws.com", &sas, metrics.clone());
        assert!(c.is_ready());
        assert_eq!(c.len(), 1);
        let e = c.lookup("ns", "sa").await.unwrap().unwrap();
        assert_eq!(e.get("role-arn"), Some("arn:aws:iam::111122223333:role/x"));
        assert!(c.lookup("ns", "other").await.unwrap().is_none());
        assert!(metrics
            .encode()
            .contains("pod_identity_webhook_cache_misses_total 1"));
    }
}
