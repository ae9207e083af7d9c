//! `doctor cluster`: every live pod whose ServiceAccount asks for a role but
//! that has no credentials (with the reason per pod), ServiceAccounts with
//! invalid or mistyped annotations, and the webhook's health.

use std::collections::BTreeMap;

use contract::annotations::{is_near_miss, ROLE_ARN, SERVICE_ACCOUNT_NAMES, SKIP_CONTAINERS};
use contract::association::{self, Association};
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

/// Something about a PodIdentityAssociation a platform engineer should know.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AssociationProblem {
    pub association: String,
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
    /// Invalid associations, two for one ServiceAccount, an association
    /// next to a role-arn annotation, one for a missing ServiceAccount
    /// (empty when the CRD is not installed).
    pub associations: Vec<AssociationProblem>,
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
        if !self.associations.is_empty() {
            out.push_str(&format!(
                "PodIdentityAssociations to look at: {}\n",
                self.associations.len()
            ));
            for a in &self.associations {
                out.push_str(&format!(
                    "  {} ({}/{}): {}\n",
                    a.association, a.namespace, a.service_account, a.problem
                ));
            }
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

/// What is worth saying about the associations, given the ServiceAccounts
/// that exist (with their annotations) and the roles IAM says do not exist.
pub fn association_problems(
    all: &[Association],
    accounts: &BTreeMap<(String, String), ServiceAccountFacts>,
    prefix: &str,
    missing_roles: &std::collections::BTreeSet<String>,
) -> Vec<AssociationProblem> {
    let winners = association::winners(all);
    let mut out = Vec::new();
    let mut say = |a: &Association, problem: String| {
        out.push(AssociationProblem {
            association: a.name.clone(),
            namespace: a.namespace.clone(),
            service_account: a.service_account.clone(),
            problem,
        })
    };
    for a in all {
        let problems = a.problems();
        if !problems.is_empty() {
            say(a, format!("ignored: {}", problems.join("; ")));
            continue;
        }
        let key = (a.namespace.clone(), a.service_account.clone());
        match winners.get(&key) {
            Some(w) if w.name != a.name => {
                say(
                    a,
                    format!(
                        "not used: {} is an older association for the same ServiceAccount (one counts)",
                        w.name
                    ),
                );
                continue;
            }
            _ => {}
        }
        if missing_roles.contains(&a.role_arn) {
            say(
                a,
                format!(
                    "its role {} does not exist in IAM: its pods get no credentials",
                    a.role_arn
                ),
            );
        }
        match accounts.get(&key) {
            None => say(a, "the ServiceAccount does not exist (yet)".into()),
            Some(sa) => {
                if let Some(role) = sa.annotations.get(&format!("{prefix}/{ROLE_ARN}")) {
                    say(
                        a,
                        format!(
                            "the ServiceAccount is also annotated {prefix}/{ROLE_ARN}={role}: its pods get Pod Identity ({}), not web identity; remove one of the two",
                            a.role_arn
                        ),
                    );
                }
            }
        }
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
        associations: None,
        default_mode: opts.default_mode,
        sidecar_name: opts.sidecar_name.clone(),
    }
}

pub async fn run(
    aws: Option<&crate::aws::Aws>,
    cluster: &Cluster,
    opts: &Options,
) -> Result<Audit> {
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
    let all = cluster.associations().await?;
    // Roles of the associations that count, looked up in IAM when AWS is
    // reachable (one read per role; an unreadable role is not reported).
    let mut missing_roles = std::collections::BTreeSet::new();
    if let Some(aws) = aws {
        let roles: std::collections::BTreeSet<&str> = association::winners(&all)
            .values()
            .map(|a| a.role_arn.as_str())
            .collect();
        for arn in roles {
            let name = arn.rsplit('/').next().unwrap_or_default();
            if let Ok(None) = crate::iam::get_role(&aws.iam, name).await {
                missing_roles.insert(arn.to_string());
            }
        }
    }
    let associations = association_problems(&all, &accounts, &opts.prefix, &missing_roles);
    Ok(Audit {
        webhook,
        pods_missing_injection: missed,
        service_accounts: problems,
        associations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assoc(name: &str, created: &str, sa: &str, role: &str) -> Association {
        Association {
            name: name.into(),
            uid: format!("uid-{name}"),
            created: created.into(),
            namespace: "apps".into(),
            service_account: sa.into(),
            role_arn: role.into(),
            target_role_arn: None,
            disable_session_tags: false,
            session_tags: BTreeMap::new(),
            transitive_session_tags: None,
        }
    }

    #[test]
    fn association_problems_table() {
        const ROLE: &str = "arn:aws:iam::111122223333:role/app";
        let sa = |annotations: &[(&str, &str)]| ServiceAccountFacts {
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            role_annotated_at: None,
        };
        let accounts = BTreeMap::from([
            (("apps".to_string(), "web".to_string()), sa(&[])),
            (("apps".to_string(), "solo".to_string()), sa(&[])),
            (
                ("apps".to_string(), "both".to_string()),
                sa(&[(
                    "eks.amazonaws.com/role-arn",
                    "arn:aws:iam::111122223333:role/irsa",
                )]),
            ),
        ]);
        let all = vec![
            assoc("web-old", "2026-01-01T00:00:00Z", "web", ROLE),
            assoc("web-new", "2026-02-01T00:00:00Z", "web", ROLE),
            assoc("both", "2026-01-01T00:00:00Z", "both", ROLE),
            assoc("ghost", "2026-01-01T00:00:00Z", "ghost", ROLE),
            assoc("broken", "2026-01-01T00:00:00Z", "web", "not-an-arn"),
            assoc("norole", "2026-01-01T00:00:00Z", "solo", GONE),
        ];
        const GONE: &str = "arn:aws:iam::111122223333:role/gone";
        let missing = std::collections::BTreeSet::from([GONE.to_string()]);
        let found = association_problems(&all, &accounts, "eks.amazonaws.com", &missing);
        let about = |name: &str| {
            found
                .iter()
                .filter(|p| p.association == name)
                .map(|p| p.problem.clone())
                .collect::<Vec<_>>()
        };
        assert!(about("web-old").is_empty(), "{found:?}");
        assert!(
            about("web-new")[0].contains("web-old is an older association"),
            "{found:?}"
        );
        assert!(
            about("both")[0].contains("also annotated")
                && about("both")[0].contains("Pod Identity"),
            "{found:?}"
        );
        assert!(about("ghost")[0].contains("does not exist"), "{found:?}");
        assert!(
            about("broken")[0].starts_with("ignored: roleArn"),
            "{found:?}"
        );
        assert_eq!(
            about("norole"),
            [format!(
                "its role {GONE} does not exist in IAM: its pods get no credentials"
            )]
        );
        assert_eq!(found.len(), 5);
    }
}
