//! Reads the [`World`] a plan starts from: the cluster's issuer and its IAM
//! OIDC provider, each named role, each named ServiceAccount.

use super::plan::{role_annotation, SaState, World};
use super::spec::Spec;
use crate::aws::Aws;
use crate::cluster::{Cluster, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::error::{Error, Result};
use crate::iam::{arn_account, find_provider, get_role, Record};
use crate::policy::provider_arn_for;

/// What a command needs of the issuer's IAM OIDC provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderNeed {
    /// `create`: a trust policy may only name a provider that exists.
    Existing,
    /// `delete`: the provider may be gone already; its ARN is derived from
    /// the caller's account, so the trust entries naming it are still found.
    ArnOnly,
}

/// The issuer's provider ARN. With [`ProviderNeed::Existing`], an error saying
/// to associate it first when there is none.
pub async fn provider_arn(aws: &Aws, issuer: &str, need: ProviderNeed) -> Result<String> {
    match (find_provider(&aws.iam, issuer).await?, need) {
        (Some(p), _) => Ok(p.arn),
        (None, ProviderNeed::Existing) => Err(Error::Precondition(format!(
            "there is no IAM OIDC provider for the cluster's issuer {issuer}: run `pod-identity oidc associate --approve` first"
        ))),
        (None, ProviderNeed::ArnOnly) => {
            let (partition, account) = caller_account(aws).await?;
            Ok(provider_arn_for(&partition, &account, issuer))
        }
    }
}

/// The partition and account of the credentials in use (sts:GetCallerIdentity).
pub(crate) async fn caller_account(aws: &Aws) -> Result<(String, String)> {
    let me = aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| crate::aws::sdk_error("sts:GetCallerIdentity", "*", e))?;
    let arn = me.arn().unwrap_or_default();
    let partition = arn.split(':').nth(1).filter(|p| !p.is_empty());
    match (partition, me.account()) {
        (Some(partition), Some(account)) => Ok((partition.to_string(), account.to_string())),
        _ => Err(Error::Aws {
            code: None,
            action: "sts:GetCallerIdentity".into(),
            resource: "*".into(),
            message: format!("no account or partition in the answer (ARN {arn:?})"),
        }),
    }
}

fn sa_state(sa: &k8s_openapi::api::core::v1::ServiceAccount) -> SaState {
    let annotations = sa.metadata.annotations.clone().unwrap_or_default();
    let labels = sa.metadata.labels.clone().unwrap_or_default();
    SaState {
        annotation: annotations.get(&role_annotation()).cloned(),
        managed: labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE),
        labels,
        annotations,
    }
}

/// What a command reads besides the specs' own roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Create,
    /// Also looks for each ServiceAccount's owned role through ownership
    /// records and trust policies when no annotation names it.
    Delete,
}

pub async fn read(
    aws: &Aws,
    cluster: &Cluster,
    cluster_name: Option<&str>,
    specs: &[Spec],
    need: ProviderNeed,
    purpose: Purpose,
) -> Result<World> {
    let issuer = cluster.issuer().await?;
    let provider_arn = provider_arn(aws, &issuer, need).await?;
    let (partition, account) = arn_account(&provider_arn)?;
    let mut world = World {
        account,
        partition,
        issuer,
        provider_arn,
        cluster: cluster_name.map(str::to_string),
        ..Default::default()
    };
    for spec in specs {
        let key = (spec.namespace.clone(), spec.name.clone());
        if !world.service_accounts.contains_key(&key) {
            let sa = cluster.service_account(&spec.namespace, &spec.name).await?;
            world
                .service_accounts
                .insert(key.clone(), sa.as_ref().map(sa_state));
        }
        if purpose == Purpose::Create
            && !spec.role_only
            && !world.namespaces.contains_key(&spec.namespace)
        {
            let exists = cluster.namespace_exists(&spec.namespace).await?;
            world.namespaces.insert(spec.namespace.clone(), exists);
        }
        if spec.attach_role_arn.is_some() {
            continue;
        }
        let mut names = vec![spec.role_name(cluster_name)];
        // The role the ServiceAccount names (delete follows it; create
        // keeps a role made before ownership records existed).
        if let Some(Some(SaState {
            annotation: Some(arn),
            ..
        })) = world.service_accounts.get(&key)
        {
            if let Ok(parsed) = contract::RoleArn::parse(arn) {
                if parsed.account() == world.account {
                    names.push(parsed.name().to_string());
                }
            }
        }
        for name in names {
            load_role(aws, &mut world, &name).await?;
        }
    }
    if purpose == Purpose::Delete {
        find_owned_roles(aws, &mut world, specs).await?;
    }
    Ok(world)
}

async fn load_role(aws: &Aws, world: &mut World, name: &str) -> Result<()> {
    if let std::collections::btree_map::Entry::Vacant(slot) = world.roles.entry(name.to_string()) {
        let role = get_role(&aws.iam, slot.key()).await?;
        slot.insert(role);
    }
    Ok(())
}

/// For each spec whose role neither `--role-name`, the annotation nor the
/// default name finds: the owned roles of the account whose trust policy
/// names the ServiceAccount for this issuer, or whose ownership record
/// names it. One is used; several are refused as ambiguous.
async fn find_owned_roles(aws: &Aws, world: &mut World, specs: &[Spec]) -> Result<()> {
    let lost: Vec<&Spec> = specs
        .iter()
        .filter(|s| s.role_name.is_none())
        .filter(|s| {
            let annotated = world
                .service_accounts
                .get(&(s.namespace.clone(), s.name.clone()))
                .cloned()
                .flatten()
                .and_then(|sa| sa.annotation)
                .and_then(|a| contract::RoleArn::parse(&a).ok())
                .is_some_and(|a| a.account() == world.account);
            let default_exists = matches!(
                world
                    .roles
                    .get(&s.default_role_name(world.cluster.as_deref())),
                Some(Some(_))
            );
            !annotated && !default_exists
        })
        .collect();
    if lost.is_empty() {
        return Ok(());
    }
    let mut pages = aws.iam.list_roles().into_paginator().send();
    let mut candidates: Vec<(String, serde_json::Value)> = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| crate::aws::sdk_error("iam:ListRoles", "*", e))?;
        for r in page.roles() {
            let Ok(doc) =
                crate::policy::parse_document(r.assume_role_policy_document().unwrap_or("{}"))
            else {
                continue;
            };
            let subjects = crate::policy::trust::all_subjects(&doc);
            let names_one = lost.iter().any(|s| {
                let sub = crate::policy::service_account_subject(&s.namespace, &s.name);
                subjects.iter().any(|(_, x)| *x == sub)
            });
            if names_one || crate::policy::trust::is_empty(&doc) {
                candidates.push((r.role_name().to_string(), doc));
            }
        }
    }
    for (name, _) in &candidates {
        load_role(aws, world, name).await?;
    }
    for spec in lost {
        let record = Record::new(&world.issuer, &spec.namespace, &spec.name);
        let binding_sub = crate::policy::service_account_subject(&spec.namespace, &spec.name);
        let host = crate::policy::issuer_host_path(&world.issuer).to_string();
        let matches: Vec<String> = candidates
            .iter()
            .filter_map(|(name, _)| {
                let role = world.roles.get(name)?.as_ref()?;
                let trusted = crate::policy::trust::all_subjects(&role.trust)
                    .iter()
                    .any(|(iss, sub)| *iss == host && *sub == binding_sub);
                (role.owned() && (trusted || role.record().as_ref() == Some(&record)))
                    .then(|| name.clone())
            })
            .collect();
        match &matches[..] {
            [] => {}
            [one] => {
                world
                    .found
                    .insert((spec.namespace.clone(), spec.name.clone()), one.clone());
            }
            many => {
                return Err(Error::Refused(format!(
                    "ServiceAccount {}/{} names no role, and several roles managed by pod-identity are bound to it ({}): nothing was changed; give --role-name to say which",
                    spec.namespace,
                    spec.name,
                    many.join(", ")
                )))
            }
        }
    }
    Ok(())
}
