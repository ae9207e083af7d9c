//! `doctor cluster`: every live pod whose ServiceAccount asks for a role but
//! that has no credentials (with the reason per pod), ServiceAccounts with
//! invalid or mistyped annotations, and the webhook's health.

use std::collections::BTreeMap;

use contract::annotations::{is_near_miss, ROLE_ARN, SERVICE_ACCOUNT_NAMES, SKIP_CONTAINERS};
use contract::injected::{missing_injection, Container};
use contract::RoleArn;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::Api;
use serde::Serialize;

use super::checks::{webhook_health, why_not_injected};
use super::facts::{Facts, Lookup, PodFacts, ServiceAccountFacts, WebhookFacts};
use super::gather::{now, pod_facts, service_account_facts, webhooks, Options};
use super::report::Check;
use crate::cluster::Cluster;
use crate::error::Result;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MissedPod {
    pub namespace: String,
    pub pod: String,
    pub service_account: String,
    pub reason: String,
    pub fix: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AnnotationProblem {
    pub namespace: String,
    pub service_account: String,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    pub webhook: Check,
    pub pods_missing_injection: Vec<MissedPod>,
    pub service_accounts: Vec<AnnotationProblem>,
}

impl Audit {
    pub fn failed(&self) -> bool {
        !self.pods_missing_injection.is_empty()
    }

    pub fn render(&self) -> String {
        let w = &self.webhook;
        let mut out = format!("webhook: {} {}\n", w.status.label(), w.evidence);
        if let Some(fix) = &w.fix {
            out.push_str(&format!("  fix: {fix}\n"));
        }
        out.push_str(&format!(
            "pods missing injection: {}\n",
            self.pods_missing_injection.len()
        ));
        for p in &self.pods_missing_injection {
            out.push_str(&format!(
                "  {}/{} (ServiceAccount {}): {}\n    fix: {}\n",
                p.namespace, p.pod, p.service_account, p.reason, p.fix
            ));
        }
        out.push_str(&format!(
            "ServiceAccounts with annotation problems: {}\n",
            self.service_accounts.len()
        ));
        for s in &self.service_accounts {
            out.push_str(&format!(
                "  {}/{}: {}\n",
                s.namespace, s.service_account, s.problem
            ));
        }
        out
    }
}

/// The annotation problems of one ServiceAccount.
pub fn annotation_problems(prefix: &str, annotations: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let key = format!("{prefix}/{ROLE_ARN}");
    if let Some(v) = annotations.get(&key) {
        if let Err(e) = RoleArn::parse(v.trim()) {
            out.push(format!("{key}={v:?} is not a role ARN: {e}"));
        }
    }
    for k in annotations
        .keys()
        .filter(|k| is_near_miss(k, prefix, SERVICE_ACCOUNT_NAMES))
    {
        out.push(format!(
            "annotation {k:?} looks like a typo of {prefix}/{} and is ignored",
            k.rsplit('/').next().unwrap_or(k)
        ));
    }
    out
}

/// Whether a pod (as facts) asks for a role and has no credentials.
pub fn pod_missed(
    prefix: &str,
    sidecar: &str,
    sa: Option<&ServiceAccountFacts>,
    p: &PodFacts,
) -> bool {
    let role = sa
        .and_then(|s| s.annotations.get(&format!("{prefix}/{ROLE_ARN}")))
        .map(String::as_str);
    let skip: Vec<&str> = p
        .annotations
        .get(&format!("{prefix}/{SKIP_CONTAINERS}"))
        .map(|s| s.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let containers: Vec<Container> = p
        .containers
        .iter()
        .map(|c| Container {
            name: &c.name,
            env: c.env.iter().map(String::as_str).collect(),
        })
        .collect();
    missing_injection(role, &containers, &skip, sidecar)
}

fn facts_for(
    opts: &Options,
    hooks: &[WebhookFacts],
    namespace: &str,
    ns_labels: Option<BTreeMap<String, String>>,
    sa_name: &str,
    sa: Option<ServiceAccountFacts>,
    pod: Option<PodFacts>,
) -> Facts {
    Facts {
        now: now(),
        prefix: opts.prefix.clone(),
        namespace: namespace.to_string(),
        service_account_name: sa_name.to_string(),
        namespace_labels: ns_labels,
        service_account: sa,
        config_map: None,
        pod,
        pod_name: None,
        webhooks: hooks.to_vec(),
        issuer: Err("not read by the audit".into()),
        provider: Lookup::NotAsked,
        role: Lookup::NotAsked,
        exchange: None,
        agent: None,
        default_mode: opts.default_mode,
        sidecar_name: opts.sidecar_name.clone(),
    }
}

pub async fn run(cluster: &Cluster, opts: &Options) -> Result<Audit> {
    let hooks = webhooks(cluster, opts.webhook_configuration.as_deref()).await?;
    let namespaces: BTreeMap<String, BTreeMap<String, String>> =
        crate::cluster::list_all(&Api::<Namespace>::all(cluster.client.clone()))
            .await?
            .into_iter()
            .map(|n| {
                (
                    n.metadata.name.unwrap_or_default(),
                    n.metadata.labels.unwrap_or_default(),
                )
            })
            .collect();
    let mut accounts: BTreeMap<(String, String), ServiceAccountFacts> = BTreeMap::new();
    let mut problems = Vec::new();
    for sa in crate::cluster::list_all(&Api::<ServiceAccount>::all(cluster.client.clone())).await? {
        let key = (
            sa.metadata.namespace.clone().unwrap_or_default(),
            sa.metadata.name.clone().unwrap_or_default(),
        );
        let facts = service_account_facts(&sa, &opts.prefix);
        for problem in annotation_problems(&opts.prefix, &facts.annotations) {
            problems.push(AnnotationProblem {
                namespace: key.0.clone(),
                service_account: key.1.clone(),
                problem,
            });
        }
        accounts.insert(key, facts);
    }
    let mut missed = Vec::new();
    for pod in crate::cluster::list_all(&Api::<Pod>::all(cluster.client.clone())).await? {
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() || phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let p = pod_facts(&pod);
        let sa = accounts
            .get(&(ns.clone(), p.service_account.clone()))
            .cloned();
        if !pod_missed(&opts.prefix, &opts.sidecar_name, sa.as_ref(), &p) {
            continue;
        }
        let sa_name = p.service_account.clone();
        let f = facts_for(
            opts,
            &hooks,
            &ns,
            namespaces.get(&ns).cloned(),
            &sa_name,
            sa,
            Some(p.clone()),
        );
        let (reason, fix) = why_not_injected(&f, &p);
        missed.push(MissedPod {
            namespace: ns,
            pod: name,
            service_account: sa_name,
            reason,
            fix,
        });
    }
    let health = facts_for(opts, &hooks, "", Some(BTreeMap::new()), "", None, None);
    let webhook = webhook_health(&health);
    Ok(Audit {
        webhook,
        pods_missing_injection: missed,
        service_accounts: problems,
    })
}
