//! Is the pod a token is bound to still there? A projected token outlives a
//! deleted pod (until its `exp`), so the broker asks the API server, by the
//! pod's name, and requires the token's uid and ServiceAccount:
//!
//! - a pod confirmed within `recheck` is not asked again (a cached answer
//!   costs no API call; a deleted pod is refused within `recheck`);
//! - not found, or a pod of that name with another uid (deleted and made
//!   again): refused, and forgotten;
//! - the API server down, slow or failing: a pod confirmed before is still
//!   answered (an outage must not take credentials away from running pods),
//!   one never seen is refused as unavailable, to be retried;
//! - API calls are bounded: at most `max_concurrent` at once, handed out
//!   round-robin by namespace (one namespace's many pods wait behind each
//!   other, not in front of another namespace's), each waiting at most
//!   `queue_timeout`;
//! - the confirmed set is bounded (`max_pods`): when full, the half confirmed
//!   longest ago is dropped (they are asked again on their next request).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::time::Instant;

use crate::cache::permits::{FairPermits, IdentityId};
use crate::clock::Clock;
use crate::config::PodCheckConfig;
use crate::eks_auth::{EksAuthError, ErrorType};
use crate::kube_api::{KubeApi, KubeError};
use crate::metrics::Metrics;

/// The pod a verified token names.
#[derive(Debug, Clone, Copy)]
pub struct BoundPod<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub service_account: &'a str,
}

pub struct PodCheck {
    api: Arc<KubeApi>,
    cfg: PodCheckConfig,
    clock: Clock,
    /// uid -> when the API server last said the pod exists.
    confirmed: Mutex<HashMap<String, Instant>>,
    permits: Arc<FairPermits>,
    hasher: RandomState,
    metrics: Arc<Metrics>,
}

/// Names in a path: Kubernetes names are DNS labels or subdomains; anything
/// else in a (signed) token is refused rather than put in a URL.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl PodCheck {
    pub fn new(
        api: Arc<KubeApi>,
        cfg: PodCheckConfig,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        PodCheck {
            api,
            permits: FairPermits::new(cfg.max_concurrent),
            cfg,
            clock,
            confirmed: Mutex::default(),
            hasher: RandomState::new(),
            metrics,
        }
    }

    fn confirmed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.confirmed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, result: &'static str) {
        self.metrics.pod_check(result);
    }

    /// Pods confirmed now.
    pub fn len(&self) -> usize {
        self.confirmed().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remember(&self, uid: &str, at: Instant) {
        let mut m = self.confirmed();
        if m.len() >= self.cfg.max_pods && !m.contains_key(uid) {
            let mut times: Vec<Instant> = m.values().copied().collect();
            let mid = times.len() / 2;
            let (_, cutoff, _) = times.select_nth_unstable(mid);
            let cutoff = *cutoff;
            m.retain(|_, t| *t > cutoff);
        }
        m.insert(uid.to_string(), at);
    }

    /// `Ok` when the pod may be answered.
    pub async fn check(&self, pod: BoundPod<'_>) -> Result<(), EksAuthError> {
        let now = self.clock.now();
        let seen = self.confirmed().get(pod.uid).copied();
        if seen.is_some_and(|t| now.saturating_duration_since(t) < self.cfg.recheck) {
            self.count("recent");
            return Ok(());
        }
        if !is_name(pod.namespace) || !is_name(pod.name) {
            return Err(EksAuthError::new(
                ErrorType::InvalidToken,
                "the token's pod name or namespace is not a Kubernetes name",
            ));
        }
        let id = IdentityId(self.hasher.hash_one(pod.namespace));
        let permit = tokio::time::timeout(self.cfg.queue_timeout, self.permits.acquire(id)).await;
        let Ok(_permit) = permit else {
            if seen.is_some() {
                self.count("outage_tolerated");
                return Ok(());
            }
            self.count("unavailable");
            return Err(EksAuthError::new(
                ErrorType::Throttling,
                "too many pod lookups waiting; retry",
            ));
        };
        let path = format!("/api/v1/namespaces/{}/pods/{}", pod.namespace, pod.name);
        match self.api.get(&path).await {
            Ok(obj) => {
                let uid = obj.pointer("/metadata/uid").and_then(Value::as_str);
                let sa = obj
                    .pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str);
                if uid == Some(pod.uid) && sa.is_none_or(|s| s == pod.service_account) {
                    self.remember(pod.uid, self.clock.now());
                    self.count("confirmed");
                    Ok(())
                } else {
                    self.confirmed().remove(pod.uid);
                    self.count("gone");
                    Err(EksAuthError::new(
                        ErrorType::InvalidToken,
                        format!(
                            "the pod {}/{} this token was issued for no longer exists (a pod of that name has another uid or ServiceAccount)",
                            pod.namespace, pod.name
                        ),
                    ))
                }
            }
            Err(KubeError::NotFound) => {
                self.confirmed().remove(pod.uid);
                self.count("gone");
                Err(EksAuthError::new(
                    ErrorType::InvalidToken,
                    format!(
                        "the pod {}/{} this token was issued for no longer exists",
                        pod.namespace, pod.name
                    ),
                ))
            }
            Err(e) if seen.is_some() && e.is_outage() => {
                tracing::warn!(error = %e, namespace = pod.namespace, pod = pod.name, "cannot confirm the pod; answering, as it was confirmed before");
                self.count("outage_tolerated");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, namespace = pod.namespace, pod = pod.name, "cannot confirm the pod");
                self.count("unavailable");
                Err(EksAuthError::new(
                    ErrorType::ServiceUnavailable,
                    format!("cannot confirm the pod with the API server ({e}); retry"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_that_may_go_in_a_path() {
        for ok in ["app", "app-1.x", "a"] {
            assert!(is_name(ok), "{ok}");
        }
        for bad in ["", "App", "a/b", "..%2f", "a b", &"a".repeat(254)] {
            assert!(!is_name(bad), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_confirmed_set_is_bounded_and_keeps_the_newest() {
        let api = Arc::new(
            KubeApi::from_settings(
                Some("https://127.0.0.1:1"),
                None,
                None,
                Duration::from_secs(1),
            )
            .unwrap(),
        );
        let check = PodCheck::new(
            api,
            PodCheckConfig {
                recheck: Duration::from_secs(5),
                max_pods: 10,
                max_concurrent: 1,
                queue_timeout: Duration::from_secs(1),
            },
            Clock::system(),
            Arc::new(Metrics::new()),
        );
        for i in 0..25 {
            tokio::time::advance(Duration::from_millis(10)).await;
            check.remember(&format!("uid-{i}"), Clock::system().now());
            assert!(check.len() <= 10);
        }
        assert!(check.confirmed().contains_key("uid-24"));
        assert!(!check.confirmed().contains_key("uid-0"));
    }
}
