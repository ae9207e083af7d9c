//! `iamserviceaccount get`: every ServiceAccount bound to a role, from both
//! sides: ServiceAccounts annotated with a role, and roles owned by this tool
//! whose trust policy names a ServiceAccount of this cluster's issuer.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use serde::Serialize;

use super::plan::role_annotation;
use crate::aws::{sdk_error, Aws};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::iam::get_role;
use crate::policy::evaluate::{evaluate, Request};
use crate::policy::{issuer_host_path, parse_document, trust, STS_AUDIENCE};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub name: String,
    #[serde(rename = "roleARN")]
    pub role_arn: String,
    pub policies: Vec<String>,
    /// The role's trust policy lets this ServiceAccount's tokens assume it.
    pub trust_ok: bool,
    /// The ServiceAccount exists and is annotated with the role.
    pub annotation_ok: bool,
    /// The role carries this tool's ownership tag.
    pub managed: bool,
}

/// What `get` found: the rows, and the roles it could not read (reported,
/// not fatal: the other rows are still right).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub rows: Vec<Row>,
    /// (role name, why it could not be read).
    pub unreadable: Vec<(String, String)>,
}

pub async fn run(
    aws: &Aws,
    cluster: &Cluster,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<Report> {
    let issuer = cluster.issuer().await?;
    let provider = crate::iam::find_provider(&aws.iam, &issuer).await?;
    let provider_arn = provider.map(|p| p.arn).unwrap_or_default();
    let annotation = role_annotation();
    let api: Api<ServiceAccount> = match namespace {
        Some(ns) => Api::namespaced(cluster.client.clone(), ns),
        None => Api::all(cluster.client.clone()),
    };
    let sas = crate::cluster::list_all(&api).await?;
    // (namespace, name) -> annotated role ARN.
    let mut annotated: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
    for sa in sas {
        let key = (
            sa.metadata.namespace.clone().unwrap_or_default(),
            sa.metadata.name.clone().unwrap_or_default(),
        );
        let role = sa
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(&annotation))
            .cloned();
        annotated.insert(key, role);
    }
    // Bindings: from annotations, then from owned roles' trust policies.
    let mut bindings: BTreeMap<(String, String), String> = annotated
        .iter()
        .filter_map(|(k, v)| v.clone().map(|r| (k.clone(), r)))
        .collect();
    let host = issuer_host_path(&issuer).to_string();
    let mut marker = None;
    loop {
        let page = aws
            .iam
            .list_roles()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| sdk_error("iam:ListRoles", "*", e))?;
        for role in page.roles() {
            let Some(doc) = role
                .assume_role_policy_document()
                .and_then(|d| parse_document(d).ok())
            else {
                continue;
            };
            for (iss, sub) in trust::all_subjects(&doc) {
                let Some(rest) = sub.strip_prefix("system:serviceaccount:") else {
                    continue;
                };
                let Some((ns, n)) = rest.split_once(':') else {
                    continue;
                };
                if iss != host || namespace.is_some_and(|x| x != ns) {
                    continue;
                }
                bindings
                    .entry((ns.to_string(), n.to_string()))
                    .or_insert_with(|| role.arn().to_string());
            }
        }
        if !page.is_truncated() {
            break;
        }
        marker = page.marker().map(str::to_string);
    }
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    let mut roles: BTreeMap<String, Option<crate::iam::RoleState>> = BTreeMap::new();
    let account = crate::iam::arn_account(&provider_arn).ok().map(|(_, a)| a);
    for ((ns, n), role_arn) in bindings {
        if name.is_some_and(|x| x != n) {
            continue;
        }
        let parsed = contract::RoleArn::parse(&role_arn).ok();
        let role_name = parsed
            .as_ref()
            .map(|r| r.name().to_string())
            .unwrap_or_else(|| role_arn.rsplit('/').next().unwrap_or_default().to_string());
        // A role of another account cannot be read with these credentials.
        let ours = parsed
            .as_ref()
            .is_some_and(|r| account.as_deref().is_none_or(|a| a == r.account()));
        if ours && !roles.contains_key(&role_name) {
            match get_role(&aws.iam, &role_name).await {
                Ok(r) => {
                    roles.insert(role_name.clone(), r);
                }
                Err(e) => {
                    unreadable.push((role_name.clone(), e.to_string()));
                    roles.insert(role_name.clone(), None);
                }
            }
        }
        let role = roles.get(&role_name).cloned().flatten();
        let sub = crate::policy::service_account_subject(&ns, &n);
        let trust_ok = role.as_ref().is_some_and(|r| {
            evaluate(
                &r.trust,
                &Request::web_identity(&provider_arn, &issuer, &sub, STS_AUDIENCE),
            )
            .is_allowed()
        });
        rows.push(Row {
            annotation_ok: annotated
                .get(&(ns.clone(), n.clone()))
                .cloned()
                .flatten()
                .as_deref()
                .is_some_and(|a| super::plan::same_role(a, &role_arn)),
            namespace: ns,
            name: n,
            policies: role
                .as_ref()
                .map(|r| {
                    let inline = r.inline.iter().map(|n| format!("inline:{n}"));
                    r.attached.iter().cloned().chain(inline).collect()
                })
                .unwrap_or_default(),
            managed: role.as_ref().is_some_and(|r| r.owned()),
            trust_ok,
            role_arn,
        });
    }
    unreadable.dedup();
    Ok(Report { rows, unreadable })
}

/// The error `get` ends with when some roles could not be read (after
/// printing every row).
pub fn unreadable(report: &Report) -> Error {
    Error::Precondition(format!(
        "{} role(s) could not be read; their rows show NO for trust and no policies:\n{}",
        report.unreadable.len(),
        report
            .unreadable
            .iter()
            .map(|(r, e)| format!("  {r}: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

/// The report as a table.
pub fn table(report: &Report) -> String {
    let rows = &report.rows;
    let yes = |b: bool| if b { "yes" } else { "NO" };
    let mut lines = vec![[
        "NAMESPACE".to_string(),
        "NAME".into(),
        "ROLE ARN".into(),
        "POLICIES".into(),
        "TRUST OK".into(),
        "ANNOTATION OK".into(),
    ]];
    for r in rows {
        lines.push([
            r.namespace.clone(),
            r.name.clone(),
            r.role_arn.clone(),
            if r.policies.is_empty() {
                "-".into()
            } else {
                r.policies.join(",")
            },
            yes(r.trust_ok).into(),
            yes(r.annotation_ok).into(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    lines
        .iter()
        .map(|l| {
            l.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
                + "\n"
        })
        .collect()
}

/// `Error` when `get` found nothing for an exact name (as eksctl does).
pub fn not_found(namespace: &str, name: &str) -> Error {
    Error::Precondition(format!("no iamserviceaccount {namespace}/{name}"))
}
