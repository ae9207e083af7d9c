//! Prometheus metrics, served on their own listener (default port 2705).
//! Names start with `credential_agent_`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// Credential requests answered, by HTTP status.
    pub requests: Family<StatusLabel, Counter>,
    /// Requests answered from the cache without waiting for STS.
    pub cache_hits: Counter,
    /// Requests that waited for an STS call (their own or a shared one).
    pub cache_misses: Counter,
    /// Background refreshes, by result (ok, error, skipped_token_expired).
    pub refreshes: Family<ResultLabel, Counter>,
    /// Time of each AssumeRoleWithWebIdentity call.
    pub sts_duration: Histogram,
    /// STS calls made (each one, whatever the result).
    pub sts_calls: Counter,
    /// Failed STS calls by error code.
    pub sts_errors: Family<CodeLabel, Counter>,
    /// Identities in the cache.
    pub identities: Gauge,
    /// Identities dropped, by reason (idle, capacity).
    pub evictions: Family<ReasonLabel, Counter>,
    /// Tokens refused before anything was served, by reason.
    pub token_rejections: Family<ReasonLabel, Counter>,
    /// Fetches of the issuer's key set, by result.
    pub jwks_fetches: Family<ResultLabel, Counter>,
    /// Calls that waited for an STS slot and were dropped because every
    /// caller left first (STS never saw them).
    pub sts_call_abandoned: Counter,
    /// Connections closed at once because a cap was reached, by reason.
    pub connections_rejected: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("credential_agent");
        let requests = Family::default();
        registry.register(
            "requests",
            "Credential requests answered, by HTTP status",
            requests.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "cache_hits",
            "Requests served from the cache without waiting for STS",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "cache_misses",
            "Requests that waited for an STS call",
            cache_misses.clone(),
        );
        let refreshes = Family::default();
        registry.register(
            "refreshes",
            "Background refreshes of cached credentials, by result",
            refreshes.clone(),
        );
        // 1 ms .. ~33 s.
        let sts_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "sts_request_duration_seconds",
            "Duration of AssumeRoleWithWebIdentity calls",
            sts_duration.clone(),
        );
        let sts_calls = Counter::default();
        registry.register(
            "sts_calls",
            "AssumeRoleWithWebIdentity calls made",
            sts_calls.clone(),
        );
        let sts_errors = Family::default();
        registry.register(
            "sts_errors",
            "Failed AssumeRoleWithWebIdentity calls, by error code",
            sts_errors.clone(),
        );
        let identities = Gauge::default();
        registry.register(
            "identities_cached",
            "Identities (ServiceAccount and role) in the cache",
            identities.clone(),
        );
        let evictions = Family::default();
        registry.register(
            "evictions",
            "Identities dropped from the cache, by reason",
            evictions.clone(),
        );
        let token_rejections = Family::default();
        registry.register(
            "token_rejections",
            "Presented tokens refused, by reason",
            token_rejections.clone(),
        );
        let jwks_fetches = Family::default();
        registry.register(
            "jwks_fetches",
            "Fetches of the token issuer's key set, by result",
            jwks_fetches.clone(),
        );
        let sts_call_abandoned = Counter::default();
        registry.register(
            "sts_calls_abandoned",
            "Calls dropped while waiting for an STS slot because every caller left",
            sts_call_abandoned.clone(),
        );
        let connections_rejected = Family::default();
        registry.register(
            "connections_rejected",
            "Connections closed at once because a connection cap was reached, by reason",
            connections_rejected.clone(),
        );
        Metrics {
            registry,
            connections_rejected,
            sts_call_abandoned,
            requests,
            cache_hits,
            cache_misses,
            refreshes,
            sts_duration,
            sts_calls,
            sts_errors,
            identities,
            evictions,
            token_rejections,
            jwks_fetches,
        }
    }

    pub fn request(&self, status: u16) {
        self.requests.get_or_create(&StatusLabel { status }).inc();
    }

    pub fn sts_call(&self, elapsed: Duration, error_code: Option<&str>) {
        self.sts_calls.inc();
        self.sts_duration.observe(elapsed.as_secs_f64());
        if let Some(code) = error_code {
            self.sts_errors
                .get_or_create(&CodeLabel {
                    code: code.to_string(),
                })
                .inc();
        }
    }

    pub fn refresh(&self, result: &'static str) {
        self.refreshes.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn eviction(&self, reason: &'static str) {
        self.evictions.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn rejection(&self, reason: &'static str) {
        self.token_rejections
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn connection_rejected(&self, reason: &'static str) {
        self.connections_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn jwks_fetch(&self, result: &'static str) {
        self.jwks_fetches
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
