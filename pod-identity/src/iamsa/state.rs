//! Reads the [`World`] a plan starts from: the cluster's issuer and its IAM
//! OIDC provider, each named role, each named ServiceAccount.

use contract::annotations::{DEFAULT_PREFIX, ROLE_ARN};

use super::plan::{SaState, World};
use super::spec::Spec;
use crate::aws::Aws;
use crate::cluster::{Cluster, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::error::{Error, Result};
use crate::iam::{arn_account, find_provider, get_role};

/// The issuer's provider, or an error saying to associate it first.
pub async fn provider_arn(aws: &Aws, issuer: &str) -> Result<String> {
    match find_provider(&aws.iam, issuer).await? {
        Some(p) => Ok(p.arn),
        None => Err(Error::Precondition(format!(
            "there is no IAM OIDC provider for the cluster's issuer {issuer}: run `pod-identity oidc associate --approve` first"
        ))),
    }
}

pub async fn read(
    aws: &Aws,
    cluster: &Cluster,
    cluster_name: Option<&str>,
    specs: &[Spec],
) -> Result<World> {
    let issuer = cluster.issuer().await?;
    let provider_arn = provider_arn(aws, &issuer).await?;
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
