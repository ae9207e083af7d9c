//! Pure: what `podidentityassociation create` and `delete` change, from the
//! spec and what exists. All or nothing: a refusal changes nothing.
//!
//! create:
//! - a role to create (`--role-name`) that does not exist is created with
//!   the broker's grant as its trust, tagged as this tool's for this
//!   cluster, namespace and ServiceAccount, with its policies; one that
//!   exists must be this tool's for the same cluster (else refused: pass
//!   `--role-arn` to use it), and gets what it lacks;
//! - an existing role (`--role-arn`) gets the grant in its trust (unless
//!   session tags are off: then its trust is the user's, and a note says
//!   what it needs) and the cluster tag, refused when tagged for another
//!   cluster;
//! - the ServiceAccount (and namespace) with `--create-service-account`;
//! - the object `<namespace>.<serviceaccount>`; another association for the
//!   same ServiceAccount is refused (the oldest would keep counting).
//!
//! delete: the association's object; a role this tool created for it is
//! deleted (policies detached first), another role loses the broker's grant
//! for it. update and apply: as create, changing an association this tool
//! made; apply also deletes what the file dropped.
//!
//! Long because create, update, apply and delete share the refusal rules
//! (whose role, whose association), which stay right only read together.

use serde_json::Value;

use super::spec::{object_name, AssociationSpec, RoleChoice};
use crate::error::{Error, Result};
use crate::iam::{RoleState, NAMESPACE_TAG, OWNER_TAG, OWNER_VALUE, SERVICE_ACCOUNT_TAG};
use crate::plan::{Change, Plan};
use crate::policy::broker_trust::{self, Grant, CLUSTER_TAG};

/// An association object as read.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingAssociation {
    pub name: String,
    pub spec: Value,
    /// Labelled as made by this tool.
    pub managed: bool,
}

/// What exists, as read by `cli.rs`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct World {
    pub partition: String,
    pub account: String,
    /// The role the spec names (by name), if it exists.
    pub role: Option<RoleState>,
    /// Every association object.
    pub associations: Vec<ExistingAssociation>,
    pub namespace_exists: bool,
    pub service_account_exists: bool,
}

fn grant(spec: &AssociationSpec) -> Grant {
    Grant {
        broker_role_arn: spec.broker_role_arn.as_str().to_string(),
        cluster: spec.cluster.clone(),
        namespace: spec.namespace.clone(),
        service_account: spec.service_account.clone(),
    }
}

fn binds(a: &ExistingAssociation, namespace: &str, sa: &str) -> bool {
    a.spec.get("namespace").and_then(Value::as_str) == Some(namespace)
        && a.spec.get("serviceAccount").and_then(Value::as_str) == Some(sa)
}

/// Whether the role was made by this tool for this association.
fn made_for(role: &RoleState, cluster: &str, namespace: &str, sa: &str) -> bool {
    let tag = |k: &str| role.tags.get(k).map(String::as_str);
    role.owned()
        && tag(CLUSTER_TAG) == Some(cluster)
        && tag(NAMESPACE_TAG) == Some(namespace)
        && tag(SERVICE_ACCOUNT_TAG) == Some(sa)
}

pub fn plan_create(spec: &AssociationSpec, world: &World) -> Result<Plan> {
    plan_write(spec, world, false)
}

/// `update`: the association this tool made for the ServiceAccount gets the
/// spec's role, target and session tags setting (the role's trust and tag
/// as `create` plans them); one that does not exist is refused.
pub fn plan_update(spec: &AssociationSpec, world: &World) -> Result<Plan> {
    let name = object_name(&spec.namespace, &spec.service_account);
    match world.associations.iter().find(|a| a.name == name) {
        None => Err(Error::Precondition(format!(
            "no PodIdentityAssociation {name} to update (create it with `podidentityassociation create`)"
        ))),
        Some(a) if !a.managed => Err(Error::Refused(format!(
            "PodIdentityAssociation {name} was not made by pod-identity; change it with kubectl"
        ))),
        Some(_) => plan_write(spec, world, true),
    }
}

fn plan_write(spec: &AssociationSpec, world: &World, update: bool) -> Result<Plan> {
    let mut plan = Plan::default();
    let name = object_name(&spec.namespace, &spec.service_account);
    let role_arn = spec.role_arn(&world.partition, &world.account);
    let desired = spec.object_spec(&role_arn);
    let mut unchanged_object = false;
    for a in &world.associations {
        if a.name == name {
            if a.spec == desired {
                unchanged_object = true;
                continue;
            }
            if update {
                continue;
            }
            return Err(Error::Refused(format!(
                "PodIdentityAssociation {name} exists with another spec ({}); change it with `podidentityassociation update`, or delete it first",
                a.spec
            )));
        }
        if binds(a, &spec.namespace, &spec.service_account) {
            return Err(Error::Refused(format!(
                "ServiceAccount {}/{} already has the PodIdentityAssociation {} (the oldest association counts; a second would be ignored)",
                spec.namespace, spec.service_account, a.name
            )));
        }
    }
    let g = grant(spec);
    let role_name = spec.role_name().to_string();
    match (&spec.role, &world.role) {
        (
            RoleChoice::Create {
                policy_arns,
                permissions_boundary,
                ..
            },
            None,
        ) => {
            let mut tags = vec![
                (OWNER_TAG.to_string(), OWNER_VALUE.to_string()),
                (CLUSTER_TAG.to_string(), spec.cluster.clone()),
                (NAMESPACE_TAG.to_string(), spec.namespace.clone()),
                (
                    SERVICE_ACCOUNT_TAG.to_string(),
                    spec.service_account.clone(),
                ),
            ];
            tags.extend(spec.tags.iter().cloned());
            plan.changes.push(Change::CreateRole {
                name: role_name.clone(),
                arn: role_arn.clone(),
                trust: broker_trust::new_document(&g),
                tags,
                permissions_boundary: permissions_boundary.clone(),
            });
            for p in policy_arns {
                plan.changes.push(Change::AttachPolicy {
                    role: role_name.clone(),
                    policy_arn: p.clone(),
                });
            }
        }
        (RoleChoice::Create { policy_arns, .. }, Some(role)) => {
            if !made_for(role, &spec.cluster, &spec.namespace, &spec.service_account) {
                return Err(Error::Refused(format!(
                    "IAM role {role_name} exists and pod-identity did not create it for {}/{} on cluster {}; pass --role-arn {} to bind it as it is",
                    spec.namespace, spec.service_account, spec.cluster, role.arn
                )));
            }
            if let Some(trust) = broker_trust::add(&role.trust, &g) {
                plan.changes.push(Change::UpdateTrust {
                    name: role_name.clone(),
                    trust,
                });
            }
            for p in policy_arns.iter().filter(|p| !role.attached.contains(p)) {
                plan.changes.push(Change::AttachPolicy {
                    role: role_name.clone(),
                    policy_arn: p.clone(),
                });
            }
        }
        (RoleChoice::Existing(arn), None) => {
            return Err(Error::Precondition(format!(
                "IAM role {arn} does not exist (or is in another account, which --role-arn does not reach: bind a role of this account and chain with --target-role-arn)"
            )));
        }
        (RoleChoice::Existing(_), Some(role)) => {
            match role.tags.get(CLUSTER_TAG) {
                Some(c) if *c != spec.cluster => {
                    return Err(Error::Refused(format!(
                        "IAM role {} is tagged {CLUSTER_TAG}={c}: it is another cluster's; retagging it would take it from that cluster's broker",
                        role.arn
                    )));
                }
                Some(_) => {}
                None => plan.changes.push(Change::TagRole {
                    name: role_name.clone(),
                    tags: vec![(CLUSTER_TAG.to_string(), spec.cluster.clone())],
                }),
            }
            if spec.disable_session_tags {
                if !broker_trust::has(&role.trust, &g) {
                    plan.notes.push(format!(
                        "session tags are off: the trust of {} is left as it is; it must let {} call sts:AssumeRole without session tags",
                        role.arn, spec.broker_role_arn
                    ));
                }
            } else if let Some(trust) = broker_trust::add(&role.trust, &g) {
                plan.changes.push(Change::UpdateTrust {
                    name: role_name.clone(),
                    trust,
                });
            }
        }
    }
    if !world.service_account_exists {
        if spec.create_service_account {
            if !world.namespace_exists {
                plan.changes.push(Change::CreateNamespace {
                    name: spec.namespace.clone(),
                });
            }
            plan.changes.push(Change::CreateServiceAccount {
                namespace: spec.namespace.clone(),
                name: spec.service_account.clone(),
            });
        } else {
            plan.notes.push(format!(
                "ServiceAccount {}/{} does not exist (yet); its pods get the role once it does (--create-service-account creates it)",
                spec.namespace, spec.service_account
            ));
        }
    }
    if !unchanged_object {
        plan.changes.push(Change::ApplyAssociation {
            name: name.clone(),
            spec: desired,
        });
    }
    if let Some(t) = &spec.target_role_arn {
        plan.notes.push(format!(
            "{t} must trust {role_arn} for sts:AssumeRole with sts:ExternalId equal to the association's id (status.associationId of {name}, once created)"
        ));
    }
    plan.notes.push(format!(
        "the broker's role {} needs sts:AssumeRole and sts:TagSession on {role_arn} (the broker role's policy allows roles tagged {CLUSTER_TAG}={})",
        spec.broker_role_arn, spec.cluster
    ));
    Ok(plan)
}

/// `delete`: the association of namespace/ServiceAccount and what this tool
/// made for it.
pub fn plan_delete(
    cluster: &str,
    namespace: &str,
    service_account: &str,
    broker_role_arn: &str,
    world: &World,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let name = object_name(namespace, service_account);
    let Some(a) = world.associations.iter().find(|a| a.name == name) else {
        let others: Vec<&str> = world
            .associations
            .iter()
            .filter(|a| binds(a, namespace, service_account))
            .map(|a| a.name.as_str())
            .collect();
        if others.is_empty() {
            return Err(Error::Precondition(format!(
                "no PodIdentityAssociation for ServiceAccount {namespace}/{service_account}"
            )));
        }
        return Err(Error::Refused(format!(
            "the associations of {namespace}/{service_account} ({}) were not made by pod-identity; delete them with kubectl",
            others.join(", ")
        )));
    };
    if !a.managed {
        return Err(Error::Refused(format!(
            "PodIdentityAssociation {name} was not made by pod-identity; delete it with kubectl"
        )));
    }
    plan.changes
        .push(Change::DeleteAssociation { name: name.clone() });
    let g = Grant {
        broker_role_arn: broker_role_arn.into(),
        cluster: cluster.into(),
        namespace: namespace.into(),
        service_account: service_account.into(),
    };
    if let Some(role) = &world.role {
        let role_name = role.arn.rsplit('/').next().unwrap_or_default().to_string();
        if made_for(role, cluster, namespace, service_account) {
            for p in &role.attached {
                plan.changes.push(Change::DetachPolicy {
                    role: role_name.clone(),
                    policy_arn: p.clone(),
                });
            }
            for p in &role.inline {
                plan.changes.push(Change::DeleteInlinePolicy {
                    role: role_name.clone(),
                    policy_name: p.clone(),
                });
            }
            plan.changes.push(Change::DeleteRole { name: role_name });
        } else if let Some(trust) = broker_trust::remove(&role.trust, &g) {
            plan.changes.push(Change::UpdateTrust {
                name: role_name,
                trust,
            });
            plan.notes.push(format!(
                "IAM role {} is kept (pod-identity did not create it for this association); only the broker's grant for {namespace}/{service_account} is removed",
                role.arn
            ));
        }
    }
    Ok(plan)
}

/// What `apply -f` reads: every role the file or a dropped association
/// names, every association, which namespaces and ServiceAccounts exist.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApplyWorld {
    pub partition: String,
    pub account: String,
    pub roles: std::collections::BTreeMap<String, RoleState>,
    pub associations: Vec<ExistingAssociation>,
    pub namespaces: std::collections::BTreeSet<String>,
    pub service_accounts: std::collections::BTreeSet<(String, String)>,
}

/// The role name an association object's roleArn names.
pub fn role_name_of(a: &ExistingAssociation) -> Option<&str> {
    a.spec
        .get("roleArn")
        .and_then(Value::as_str)
        .and_then(|arn| arn.rsplit('/').next())
}

/// `apply -f`: every association of the file as `create` plans it, and
/// every association this tool made that the file no longer has deleted as
/// `delete` plans it. All or nothing.
pub fn plan_apply(
    specs: &[AssociationSpec],
    cluster: &str,
    broker_role_arn: &str,
    w: &ApplyWorld,
    remove_dropped: bool,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut created_roles = std::collections::BTreeSet::new();
    let mut names = std::collections::BTreeSet::new();
    for spec in specs {
        if !names.insert(object_name(&spec.namespace, &spec.service_account)) {
            return Err(Error::Refused(format!(
                "{}/{} appears twice in the file",
                spec.namespace, spec.service_account
            )));
        }
        if let RoleChoice::Create { name, .. } = &spec.role {
            if !created_roles.insert(name.clone()) {
                return Err(Error::Refused(format!(
                    "roleName {name} is given to two associations: each created role is for one ServiceAccount (bind a shared role with roleARN)"
                )));
            }
        }
        let world = World {
            partition: w.partition.clone(),
            account: w.account.clone(),
            role: w.roles.get(spec.role_name()).cloned(),
            associations: w.associations.clone(),
            namespace_exists: w.namespaces.contains(&spec.namespace),
            service_account_exists: w
                .service_accounts
                .contains(&(spec.namespace.clone(), spec.service_account.clone())),
        };
        let name = object_name(&spec.namespace, &spec.service_account);
        if w.associations.iter().any(|a| a.name == name && !a.managed) {
            return Err(Error::Refused(format!(
                "PodIdentityAssociation {name} exists and was not made by pod-identity; delete it with kubectl, or drop it from the file"
            )));
        }
        let sub = plan_write(spec, &world, true)?;
        for c in sub.changes {
            if matches!(&c, Change::CreateNamespace { .. }) && plan.changes.contains(&c) {
                continue;
            }
            plan.changes.push(c);
        }
        for n in sub.notes {
            if !plan.notes.contains(&n) {
                plan.notes.push(n);
            }
        }
    }
    for a in w
        .associations
        .iter()
        .filter(|a| remove_dropped && a.managed && !names.contains(&a.name))
    {
        let (Some(ns), Some(sa)) = (
            a.spec.get("namespace").and_then(Value::as_str),
            a.spec.get("serviceAccount").and_then(Value::as_str),
        ) else {
            continue;
        };
        let world = World {
            role: role_name_of(a).and_then(|r| w.roles.get(r)).cloned(),
            associations: w.associations.clone(),
            ..World::default()
        };
        let sub = plan_delete(cluster, ns, sa, broker_role_arn, &world)?;
        plan.changes.extend(sub.changes);
        plan.notes.extend(sub.notes);
    }
    Ok(plan)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
