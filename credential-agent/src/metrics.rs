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
pub struct StsErrorLabels {
    /// denied, invalid, throttled, unavailable, failed.
    pub kind: &'static str,
    /// One of `sts::METRIC_CODES`, or `other`.
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Every `status` of [`Metrics::requests`] (`Error::status` and 200).
pub const STATUSES: &[u16] = &[200, 400, 403, 404, 429, 500, 502, 503];
/// Every `result` of [`Metrics::refreshes`].
pub const REFRESH_RESULTS: &[&str] = &["ok", "error", "skipped_token_expired"];
/// Every `reason` of [`Metrics::evictions`].
pub const EVICTION_REASONS: &[&str] = &["idle", "capacity"];
/// Every `reason` of [`Metrics::token_rejections`].
pub const REJECTION_REASONS: &[&str] = &[
    "malformed",
    "rejected",
    "keys_unavailable",
    "token_mismatch",
];
/// Every `result` of [`Metrics::jwks_fetches`].
pub const JWKS_RESULTS: &[&str] = &["ok", "error"];
/// Every `result` of [`Metrics::pod_checks`] (the broker's `pods.rs`).
pub const POD_CHECK_RESULTS: &[&str] = &[
    "recent",
    "confirmed",
    "gone",
    "outage_tolerated",
    "unavailable",
];
/// Every `source` of [`Metrics::served`].
pub const SOURCES: &[&str] = &["cached", "fetched", "stale"];

/// Every metric of the agent. Every label value is created at 0 when the
/// process starts, so that each series exists from the first scrape and
/// `rate()` sees its first increase.
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
    /// Failed STS calls by kind and error code.
    pub sts_errors: Family<StsErrorLabels, Counter>,
    /// Credentials served, by source (cached, fetched, stale).
    pub served: Family<SourceLabel, Counter>,
    /// The lifetime served credentials had left, in seconds.
    pub served_remaining: Histogram,
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
    /// Broker: AssumeRoleForPodIdentity answers, by result (`ok` or the
    /// EKS Auth error type).
    pub eks_auth_answers: Family<ResultLabel, Counter>,
    /// Broker: checks that a token's pod still exists, by result.
    pub pod_checks: Family<ResultLabel, Counter>,
    /// 1 when `/readyz` passes, else 0; set at each scrape from the same
    /// check (agent: the issuer's keys read; broker: keys read and the
    /// PodIdentityAssociations listed).
    pub ready: Gauge,
    /// Broker: the serving certificate's notAfter (Unix seconds), set at
    /// start and at each reload; 0 when it could not be read (and always in
    /// the agent, which serves plain HTTP).
    pub tls_certificate_expiry: Gauge,
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
            "Failed AssumeRoleWithWebIdentity calls, by kind and error code",
            sts_errors.clone(),
        );
        let served = Family::default();
        registry.register(
            "credentials_served",
            "Credentials served, by source: cached, fetched (waited for STS), stale (past the refresh point because STS fails)",
            served.clone(),
        );
        let served_remaining = Histogram::new([
            60.0, 300.0, 600.0, 900.0, 1800.0, 2700.0, 3600.0, 7200.0, 21600.0, 43200.0,
        ]);
        registry.register(
            "served_credentials_remaining_seconds",
            "Lifetime the served credentials had left",
            served_remaining.clone(),
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
        let eks_auth_answers = Family::default();
        registry.register(
            "eks_auth_answers",
            "Broker: AssumeRoleForPodIdentity answers, by result (ok or the EKS Auth error type)",
            eks_auth_answers.clone(),
        );
        let pod_checks = Family::default();
        registry.register(
            "pod_checks",
            "Broker: checks that a token's pod still exists, by result (recent: confirmed within the recheck interval)",
            pod_checks.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when /readyz passes (agent: the issuer's keys read; broker: keys read and the PodIdentityAssociations listed), else 0",
            ready.clone(),
        );
        let tls_certificate_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "Broker: the serving certificate's notAfter, Unix seconds (set at start and at each reload)",
            tls_certificate_expiry.clone(),
        );
        for result in std::iter::once("ok").chain(crate::eks_auth::ErrorType::ALL.map(|t| t.name()))
        {
            let _ = eks_auth_answers.get_or_create(&ResultLabel { result });
        }
        for &result in POD_CHECK_RESULTS {
            let _ = pod_checks.get_or_create(&ResultLabel { result });
        }
        for &status in STATUSES {
            let _ = requests.get_or_create(&StatusLabel { status });
        }
        for &result in REFRESH_RESULTS {
            let _ = refreshes.get_or_create(&ResultLabel { result });
        }
        for &reason in EVICTION_REASONS {
            let _ = evictions.get_or_create(&ReasonLabel { reason });
        }
        for &reason in REJECTION_REASONS {
            let _ = token_rejections.get_or_create(&ReasonLabel { reason });
        }
        for &result in JWKS_RESULTS {
            let _ = jwks_fetches.get_or_create(&ResultLabel { result });
        }
        for &source in SOURCES {
            let _ = served.get_or_create(&SourceLabel { source });
        }
        for reason in listener::Rejected::ALL.map(listener::Rejected::as_str) {
            let _ = connections_rejected.get_or_create(&ReasonLabel { reason });
        }
        for (kind, code) in crate::sts::metric_series() {
            let _ = sts_errors.get_or_create(&StsErrorLabels { kind, code });
        }
        Metrics {
            registry,
            ready,
            tls_certificate_expiry,
            eks_auth_answers,
            pod_checks,
            connections_rejected,
            sts_call_abandoned,
            served,
            served_remaining,
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

    /// One STS call; `error` is its (kind label, code) when it failed.
    pub fn sts_call(&self, elapsed: Duration, error: Option<(&'static str, &str)>) {
        self.sts_calls.inc();
        self.sts_duration.observe(elapsed.as_secs_f64());
        if let Some((kind, code)) = error {
            self.sts_errors
                .get_or_create(&StsErrorLabels {
                    kind,
                    code: crate::sts::metric_code(code),
                })
                .inc();
        }
    }

    /// Credentials served from `source` with `left` of their lifetime.
    pub fn served(&self, source: &'static str, left: Duration) {
        self.served.get_or_create(&SourceLabel { source }).inc();
        self.served_remaining.observe(left.as_secs_f64());
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

    pub fn eks_auth_answer(&self, result: &'static str) {
        self.eks_auth_answers
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn pod_check(&self, result: &'static str) {
        self.pod_checks.get_or_create(&ResultLabel { result }).inc();
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
