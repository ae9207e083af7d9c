//! The missing-injection audit (`--missing-injection-audit-interval`): a
//! watch of pods, each kept only as a small summary (ServiceAccount,
//! skip-containers, what each container's environment shows), counted at an
//! interval against the ServiceAccount cache with the rule `pod-identity
//! doctor cluster` uses (`contract::injected`). The count is the gauge
//! `pod_identity_webhook_pods_missing_injection`, so an alert can fire when
//! a pod slips through (created while the webhook was down with
//! `failurePolicy: Ignore`, or before its ServiceAccount was annotated).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::injected::{self, Injected};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use super::cache::ServiceAccountCache;
use crate::injection::annotations::{ROLE_ARN, SKIP_CONTAINERS};
use crate::metrics::Metrics;

/// What the audit keeps of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    pub service_account: String,
    pub skip: Vec<String>,
    pub containers: Vec<(String, Injected)>,
}

/// The summary of a live pod; `None` for pods that finished or are being deleted.
pub fn summarize(pod: &Pod, prefix: &str) -> Option<PodSummary> {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    if pod.metadata.deletion_timestamp.is_some() || phase == "Succeeded" || phase == "Failed" {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let skip = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&format!("{prefix}/{SKIP_CONTAINERS}")))
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| {
            let env = c.env.iter().flatten().map(|e| e.name.as_str());
            (c.name.clone(), injected::container(env))
        })
        .collect();
    Some(PodSummary {
        service_account: spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        skip,
        containers,
    })
}

/// A pod: (namespace, name).
pub type PodKey = (String, String);

/// Pods (keyed (namespace, name)) whose ServiceAccount asks for a role but
/// that have no credentials.
pub fn count(
    pods: &HashMap<PodKey, PodSummary>,
    cache: &ServiceAccountCache,
    sidecar_name: &str,
) -> usize {
    pods.iter()
        .filter(|(key, p)| {
            let namespace = key.0.as_str();
            let entry = cache.get_cached(namespace, &p.service_account);
            let from_config_map = cache
                .config_map_entry(namespace, &p.service_account)
                .map(|e| e.role_arn);
            let role = entry
                .as_ref()
                .and_then(|e| e.get(ROLE_ARN).map(str::to_string))
                .or(from_config_map.filter(|r| !r.is_empty()));
            let skip: Vec<&str> = p.skip.iter().map(String::as_str).collect();
            injected::missing(
                role.as_deref(),
                p.containers.iter().map(|(n, i)| (n.as_str(), *i)),
                &skip,
                sidecar_name,
            )
        })
        .count()
}

fn key(pod: &Pod) -> PodKey {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// Starts the pod watch and the counting loop; they run until the process ends.
pub fn spawn(
    client: kube::Client,
    cache: Arc<ServiceAccountCache>,
    metrics: Arc<Metrics>,
    interval: Duration,
    prefix: String,
    sidecar_name: String,
) {
    let pods: Arc<Mutex<HashMap<PodKey, PodSummary>>> = Arc::default();
    let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let pods = Arc::clone(&pods);
        let synced = Arc::clone(&synced);
        let api: Api<Pod> = Api::all(client);
        tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut buffer: HashMap<PodKey, PodSummary> = HashMap::new();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::Init) => buffer.clear(),
                    Ok(Event::InitApply(p)) => {
                        if let Some(s) = summarize(&p, &prefix) {
                            buffer.insert(key(&p), s);
                        }
                    }
                    Ok(Event::InitDone) => {
                        *pods.lock().unwrap_or_else(|e| e.into_inner()) =
                            std::mem::take(&mut buffer);
                        synced.store(true, std::sync::atomic::Ordering::Release);
                    }
                    Ok(Event::Apply(p)) => {
                        let mut map = pods.lock().unwrap_or_else(|e| e.into_inner());
                        match summarize(&p, &prefix) {
                            Some(s) => map.insert(key(&p), s),
                            None => map.remove(&key(&p)),
                        };
                    }
                    Ok(Event::Delete(p)) => {
                        pods.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&key(&p));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "pod watch of the missing-injection audit failed; retrying")
                    }
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = None;
        loop {
            tick.tick().await;
            if !synced.load(std::sync::atomic::Ordering::Acquire) || !cache.is_ready() {
                continue;
            }
            let n = count(
                &pods.lock().unwrap_or_else(|e| e.into_inner()),
                &cache,
                &sidecar_name,
            );
            metrics.pods_missing_injection.set(n as i64);
            if last != Some(n) && n > 0 {
                tracing::warn!(pods = n, "pods whose ServiceAccount asks for a role run without injected credentials (pod-identity doctor cluster lists them)");
            }
            last = Some(n);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(sa: &str, env: &[&str], extra: serde_json::Value) -> Pod {
        let mut p = json!({"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "env": env.iter().map(|n| json!({"name": n, "value": "x"})).collect::<Vec<_>>()}]}});
        if let (Some(a), Some(b)) = (p.as_object_mut(), extra.as_object()) {
            for (k, v) in b {
                a.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn summaries() {
        let s = summarize(
            &pod(
                "reader",
                &["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"],
                json!({}),
            ),
            "eks.amazonaws.com",
        )
        .unwrap();
        assert_eq!(s.service_account, "reader");
        assert_eq!(
            s.containers,
            vec![("app".to_string(), Injected::WebIdentity)]
        );
        let done = pod("reader", &[], json!({"status": {"phase": "Succeeded"}}));
        assert_eq!(summarize(&done, "eks.amazonaws.com"), None);
        let skipped = pod(
            "r",
            &[],
            json!({"metadata": {"name": "p", "namespace": "ns", "annotations": {"eks.amazonaws.com/skip-containers": "app, x"}}}),
        );
        assert_eq!(
            summarize(&skipped, "eks.amazonaws.com").unwrap().skip,
            ["app", "x"]
        );
    }
}
