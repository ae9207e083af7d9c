//! Reads the [`World`] a plan starts from: the cluster's issuer and its IAM
//! OIDC provider, each named role, each named ServiceAccount.

use contract::annotations::{DEFAULT_PREFIX, ROLE_ARN};

use super::plan::{SaState, World};
use super::spec::Spec;
use crate::aws::Aws;
use crate::cluster::{Cluster, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::error::{Error, Result};
use crate::iam::{arn_account, find_provider, get_role};
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
async fn caller_account(aws: &Aws) -> Result<(String, String)> {
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
            action: "sts:GetCallerIdentity".into(),
            resource: "*".into(),
            message: format!("no account or partition in the answer (ARN {arn:?})"),
        }),
    }
}

pub async fn read(
    aws: &Aws,
    cluster: &Cluster,
    cluster_name: Option<&str>,
    specs: &[Spec],
    need: ProviderNeed,
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
    let annotation = format!("{DEFAULT_PREFIX}/{ROLE_ARN}");
    for spec in specs {
        let key = (spec.namespace.clone(), spec.name.clone());
        if !world.service_accounts.contains_key(&key) {
            let sa = cluster.service_account(&spec.namespace, &spec.name).await?;
            let state = sa.map(|sa| SaState {
                annotation: sa
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(&annotation))
                    .cloned(),
                managed: sa
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(MANAGED_BY_LABEL))
                    .map(String::as_str)
                    == Some(MANAGED_BY_VALUE),
            });
            world.service_accounts.insert(key.clone(), state);
        }
        let mut names = vec![spec.role_name(cluster_name)];
        // delete follows the ServiceAccount's annotation to its role.
        if let Some(Some(SaState {
            annotation: Some(arn),
            ..
        })) = world.service_accounts.get(&key)
        {
            if let Some(n) = arn.rsplit('/').next() {
                names.push(n.to_string());
            }
        }
        if spec.attach_role_arn.is_some() {
            continue;
        }
        for name in names {
            if let std::collections::btree_map::Entry::Vacant(slot) = world.roles.entry(name) {
                let role = get_role(&aws.iam, slot.key()).await?;
                slot.insert(role);
            }
        }
    }
    Ok(world)
}
