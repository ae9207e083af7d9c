//! Prometheus metrics, served on the separate plain-HTTP metrics port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Every `outcome` of [`Metrics::mutations`] (`admission::Outcome::label`
/// and the server's `bad_request`).
pub const OUTCOMES: &[&str] = &[
    "injected",
    "unchanged",
    "no_identity",
    "invalid_role_arn",
    "skipped",
    "invalid_pod",
    "lookup_failed",
    "patch_too_large",
    "bad_request",
];
/// Every `kind` of [`Metrics::warnings`] (`WarningKind::as_str`).
pub const WARNING_KINDS: &[&str] = &[
    "invalid_role_arn",
    "near_miss_annotation",
    "invalid_annotation_value",
    "sidecar_not_injected",
];
/// Every `result` of [`Metrics::fallback_fetches`].
pub const FALLBACK_RESULTS: &[&str] = &["found", "not_found", "error", "timeout", "rate_limited"];
/// Every `kind` of [`Metrics::reloads`].
pub const RELOAD_KINDS: &[&str] = &[
    "tls",
    "tls_error",
    "container_credentials",
    "container_credentials_error",
];

/// Every metric of the webhook. Names start with `pod_identity_webhook_`.
/// Every label value is created at 0 when the process starts, so that each
/// series exists from the first scrape and `rate()` sees its first increase.
pub struct Metrics {
    registry: Registry,
    /// Admission reviews by outcome: injected, unchanged (already had
    /// everything), no_identity, invalid_role_arn, skipped (not a Pod CREATE),
    /// invalid_pod, lookup_failed, bad_request.
    pub mutations: Family<OutcomeLabel, Counter>,
    /// Warnings returned to the API server, by kind.
    pub warnings: Family<KindLabel, Counter>,
    /// Time to answer one /mutate request, in seconds.
    pub duration: Histogram,
    /// ServiceAccounts in the cache.
    pub cache_size: Gauge,
    /// Lookups of a ServiceAccount that was not in the cache.
    pub cache_misses: Counter,
    /// Direct GETs of a ServiceAccount after a miss, by result (found,
    /// not_found, error, timeout). Concurrent misses share one fetch.
    pub fallback_fetches: Family<ResultLabel, Counter>,
    /// Reloads of the TLS certificate or the container credentials config, by result.
    pub reloads: Family<KindLabel, Counter>,
    /// Connections to the metrics port closed at once because a cap was
    /// reached, by kind (max_connections, max_connections_per_peer).
    pub connections_rejected: Family<KindLabel, Counter>,
    /// Live pods whose ServiceAccount asks for a role but that have no
    /// injected credentials (--missing-injection-audit-interval; 0 when off).
    pub pods_missing_injection: Gauge,
    /// 1 once the ServiceAccount cache (and the ConfigMap, when watched) has
    /// synced, else 0: `/readyz` fails while it is 0. Set at each scrape.
    pub cache_synced: Gauge,
    /// The serving certificate's notAfter, Unix seconds (set at load and at
    /// each reload).
    pub tls_not_after: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pod_identity_webhook");
        let mutations = Family::default();
        registry.register(
            "mutations",
            "Admission reviews answered, by outcome",
            mutations.clone(),
        );
        let warnings = Family::default();
        registry.register(
            "warnings",
            "Warnings returned in admission responses, by kind",
            warnings.clone(),
        );
        // 50 us .. ~13 s: sub-millisecond resolution where this webhook
        // lives, and past the API server's 10 s default timeout, so that a
        // quantile near it is measured, not clipped.
        let duration = Histogram::new(exponential_buckets(0.00005, 2.0, 19));
        registry.register(
            "request_duration_seconds",
            "Time to answer one /mutate request",
            duration.clone(),
        );
        let cache_size = Gauge::default();
        registry.register(
            "serviceaccounts_cached",
            "ServiceAccounts in the cache",
            cache_size.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "cache_misses",
            "Lookups of ServiceAccounts that were not in the cache",
            cache_misses.clone(),
        );
        let fallback_fetches = Family::default();
        registry.register(
            "fallback_fetches",
            "Direct API lookups of ServiceAccounts after a cache miss, by result",
            fallback_fetches.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "reloads",
            "Reloads of watched files (tls, tls_error, container_credentials, container_credentials_error)",
            reloads.clone(),
        );
        let connections_rejected = Family::default();
        registry.register(
            "connections_rejected",
            "Connections to the metrics port closed at once because a cap was reached, by kind",
            connections_rejected.clone(),
        );
        let pods_missing_injection = Gauge::default();
        registry.register(
            "pods_missing_injection",
            "Live pods whose ServiceAccount asks for a role but that have no injected credentials (refreshed every --missing-injection-audit-interval when on)",
            pods_missing_injection.clone(),
        );
        let cache_synced = Gauge::default();
        registry.register(
            "cache_synced",
            "1 once the ServiceAccount cache (and the watched ConfigMap) has synced; /readyz fails while 0",
            cache_synced.clone(),
        );
        let tls_not_after = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "The serving certificate's notAfter, in Unix seconds",
            tls_not_after.clone(),
        );
        for &outcome in OUTCOMES {
            let _ = mutations.get_or_create(&OutcomeLabel { outcome });
        }
        for &kind in WARNING_KINDS {
            let _ = warnings.get_or_create(&KindLabel { kind });
        }
        for &result in FALLBACK_RESULTS {
            let _ = fallback_fetches.get_or_create(&ResultLabel { result });
        }
        for &kind in RELOAD_KINDS {
            let _ = reloads.get_or_create(&KindLabel { kind });
        }
        for kind in listener::Rejected::ALL.map(listener::Rejected::as_str) {
            let _ = connections_rejected.get_or_create(&KindLabel { kind });
        }
        Metrics {
            registry,
            cache_synced,
            tls_not_after,
            pods_missing_injection,
            connections_rejected,
            mutations,
            warnings,
            duration,
            cache_size,
            cache_misses,
            fallback_fetches,
            reloads,
        }
    }

    pub fn outcome(&self, outcome: &'static str) {
        self.mutations
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn warning(&self, kind: &'static str) {
        self.warnings.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn reload(&self, kind: &'static str) {
        self.reloads.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn connection_rejected(&self, kind: &'static str) {
        self.connections_rejected
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    pub fn fallback(&self, result: &'static str) {
        self.fallback_fetches
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Outcome;
    use crate::injection::warning::WarningKind;

    #[test]
    fn every_label_value_is_exported_from_the_start() {
        for o in [
            Outcome::Skipped,
            Outcome::NoIdentity,
            Outcome::InvalidRoleArn,
            Outcome::Unchanged,
            Outcome::Injected,
            Outcome::InvalidPod,
            Outcome::LookupFailed(String::new()),
            Outcome::PatchTooLarge(String::new()),
        ] {
            assert!(OUTCOMES.contains(&o.label()), "{o:?}");
        }
        for k in [
            WarningKind::InvalidRoleArn,
            WarningKind::NearMissAnnotation,
            WarningKind::InvalidAnnotationValue,
            WarningKind::SidecarNotInjected,
        ] {
            assert!(WARNING_KINDS.contains(&k.as_str()), "{k:?}");
        }
        let text = Metrics::new().encode();
        for outcome in OUTCOMES {
            assert!(
                text.contains(&format!(
                    "pod_identity_webhook_mutations_total{{outcome=\"{outcome}\"}} 0"
                )),
                "{outcome}: {text}"
            );
        }
        assert!(text.contains(
            "pod_identity_webhook_connections_rejected_total{kind=\"max_connections_per_peer\"} 0"
        ));
        assert!(
            text.contains("pod_identity_webhook_fallback_fetches_total{result=\"rate_limited\"} 0")
        );
    }
}
