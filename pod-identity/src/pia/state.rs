//! What `podidentityassociation`'s commands read before planning: the
//! association objects (and which this tool made), the caller's account,
//! the role, the namespace and ServiceAccount.

use serde_json::Value;

use super::plan::{ExistingAssociation, World};
use crate::error::Result;
use crate::{aws, cluster, iam};

pub fn existing(objects: &[kube::api::DynamicObject]) -> Vec<ExistingAssociation> {
    objects
        .iter()
        .map(|o| ExistingAssociation {
            name: o.metadata.name.clone().unwrap_or_default(),
            spec: o.data.get("spec").cloned().unwrap_or(Value::Null),
            managed: o
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(cluster::MANAGED_BY_LABEL))
                .map(String::as_str)
                == Some(cluster::MANAGED_BY_VALUE),
        })
        .collect()
}

/// What `create` and `update` read: the caller's account, the role, every
/// association, the namespace and ServiceAccount.
pub async fn read_world(
    spec: &super::spec::AssociationSpec,
    kube: &cluster::KubeTarget,
    region: Option<String>,
) -> Result<(aws::Aws, cluster::Cluster, World)> {
    let aws = aws::Aws::load(region.as_deref()).await;
    let cluster = cluster::Cluster::connect(kube).await?;
    let (partition, account) = crate::iamsa::state::caller_account(&aws).await?;
    let world = World {
        partition,
        account,
        role: iam::get_role(&aws.iam, spec.role_name()).await?,
        associations: existing(&cluster.association_objects().await?),
        namespace_exists: cluster.namespace_exists(&spec.namespace).await?,
        service_account_exists: cluster
            .service_account(&spec.namespace, &spec.service_account)
            .await?
            .is_some(),
    };
    Ok((aws, cluster, world))
}
