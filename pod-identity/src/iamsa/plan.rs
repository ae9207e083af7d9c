//! Planning `create` and `delete` for a list of ServiceAccounts, pure: the
//! state read from IAM and the cluster goes in ([`World`]), the changes come
//! out in the order they must be made, and the world is updated as if they
//! were made, so that several ServiceAccounts sharing a role plan correctly
//! in one run.

use std::collections::BTreeMap;

use contract::annotations::{DEFAULT_PREFIX, ROLE_ARN};

use super::spec::Spec;
use crate::cluster::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::error::{Error, Result};
pub use crate::iam::RoleState;
use crate::iam::{INLINE_POLICY_NAME, OWNER_TAG, OWNER_VALUE};
use crate::plan::{Change, Plan};
use crate::policy::service_account_subject;
use crate::policy::trust::{self, Binding};

/// A ServiceAccount as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaState {
    pub annotation: Option<String>,
    /// Labelled as created by this tool.
    pub managed: bool,
}

/// Everything planning needs to know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct World {
    pub account: String,
    pub partition: String,
    pub issuer: String,
    pub provider_arn: String,
    pub cluster: Option<String>,
    /// Role name -> the role, or `None` when it does not exist.
    pub roles: BTreeMap<String, Option<RoleState>>,
    /// (namespace, name) -> the ServiceAccount, or `None`.
    pub service_accounts: BTreeMap<(String, String), Option<SaState>>,
}

/// The annotation key this tool writes.
pub fn role_annotation() -> String {
    format!("{DEFAULT_PREFIX}/{ROLE_ARN}")
}

impl World {
    fn binding(&self, spec: &Spec) -> Binding {
        Binding {
            provider_arn: self.provider_arn.clone(),
            issuer: self.issuer.clone(),
            subject: service_account_subject(&spec.namespace, &spec.name),
        }
    }

    fn role_arn(&self, name: &str) -> String {
        format!("arn:{}:iam::{}:role/{name}", self.partition, self.account)
    }
}

/// Options of `create` beyond the specs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateOptions {
    /// Let this tool manage (tag, change, later delete) a role it did not create.
    pub adopt_role: bool,
}

/// Plans `create` for every spec, in order; refuses (changing nothing) when
/// any of them would touch a role or a ServiceAccount it must not.
pub fn plan_create(world: &mut World, specs: &[Spec], opts: CreateOptions) -> Result<Plan> {
    // All or nothing: a refusal leaves the world as it was.
    let before = world.clone();
    let planned = plan_create_all(world, specs, opts).and_then(|mut plan| {
        super::limits::check_trust_lengths(&world.roles, &plan.changes, &mut plan.notes)?;
        Ok(plan)
    });
    if planned.is_err() {
        *world = before;
    }
    planned
}

fn plan_create_all(world: &mut World, specs: &[Spec], opts: CreateOptions) -> Result<Plan> {
    // A role has one inline policy of ours: two ServiceAccounts of one run
    // asking for different ones is a contradiction, not a last-one-wins.
    let mut inline: BTreeMap<String, (&Spec, &serde_json::Value)> = BTreeMap::new();
    for spec in specs {
        if let Some(doc) = &spec.inline_policy {
            let role = spec.role_name(world.cluster.as_deref());
            if let Some((first, other)) = inline.get(&role) {
                if *other != doc {
                    return Err(Error::Refused(format!(
                        "{}/{} and {}/{} share IAM role {role} but ask for different attachPolicy documents; nothing was changed",
                        first.namespace, first.name, spec.namespace, spec.name
                    )));
                }
            }
            inline.insert(role, (spec, doc));
        }
    }
    let mut plan = Plan::default();
    for spec in specs {
        let role_name = spec.role_name(world.cluster.as_deref());
        let role_arn = match &spec.attach_role_arn {
            Some(arn) => {
                plan.notes.push(format!(
                    "{}/{}: uses the existing role {arn} as it is (--attach-role-arn); its trust policy is not checked or changed",
                    spec.namespace, spec.name
                ));
                arn.clone()
            }
            None => plan_role(world, spec, &role_name, opts, &mut plan.changes)?,
        };
        if !spec.role_only {
            plan_service_account(world, spec, &role_arn, &mut plan)?;
        }
    }
    Ok(plan)
}

fn plan_role(
    world: &mut World,
    spec: &Spec,
    name: &str,
    opts: CreateOptions,
    changes: &mut Vec<Change>,
) -> Result<String> {
    let binding = world.binding(spec);
    let mut wanted_tags: Vec<(String, String)> = vec![(OWNER_TAG.into(), OWNER_VALUE.into())];
    wanted_tags.extend(spec.tags.iter().cloned());
    let role_arn = world.role_arn(name);
    let entry = world.roles.entry(name.to_string()).or_default();
    match entry {
        None => {
            changes.push(Change::CreateRole {
                name: name.into(),
                arn: role_arn.clone(),
                trust: trust::new_document(&binding),
                tags: wanted_tags.clone(),
                permissions_boundary: spec.permissions_boundary.clone(),
            });
            for p in &spec.policy_arns {
                changes.push(Change::AttachPolicy {
                    role: name.into(),
                    policy_arn: p.clone(),
                });
            }
            if let Some(doc) = &spec.inline_policy {
                changes.push(Change::PutInlinePolicy {
                    role: name.into(),
                    policy_name: INLINE_POLICY_NAME.into(),
                    document: doc.clone(),
                });
            }
            *entry = Some(RoleState {
                arn: role_arn.clone(),
                trust: trust::new_document(&binding),
                tags: wanted_tags.into_iter().collect(),
                attached: spec.policy_arns.clone(),
                inline: spec
                    .inline_policy
                    .iter()
                    .map(|_| INLINE_POLICY_NAME.to_string())
                    .collect(),
                inline_document: spec.inline_policy.clone(),
                boundary: spec.permissions_boundary.clone(),
            });
            Ok(role_arn)
        }
        Some(role) => {
            if !role.owned() && !opts.adopt_role {
                return Err(Error::Refused(format!(
                    "IAM role {name} exists and was not created by pod-identity (it has no tag {OWNER_TAG}={OWNER_VALUE}), so it is left alone and nothing was changed. \
                     To annotate {}/{} with it unchanged, use --attach-role-arn {}; to let pod-identity manage it (add this ServiceAccount to its trust policy, and delete it once unused), use --adopt-role.",
                    spec.namespace, spec.name, role.arn
                )));
            }
            let missing_tags: Vec<(String, String)> = wanted_tags
                .into_iter()
                .filter(|(k, v)| role.tags.get(k) != Some(v))
                .collect();
            if !missing_tags.is_empty() {
                changes.push(Change::TagRole {
                    name: name.into(),
                    tags: missing_tags.clone(),
                });
                role.tags.extend(missing_tags);
            }
            if let Some(doc) = trust::add(&role.trust, &binding) {
                changes.push(Change::UpdateTrust {
                    name: name.into(),
                    trust: doc.clone(),
                });
                role.trust = doc;
            }
            if let Some(b) = &spec.permissions_boundary {
                if role.boundary.as_ref() != Some(b) {
                    changes.push(Change::PutPermissionsBoundary {
                        role: name.into(),
                        policy_arn: b.clone(),
                    });
                    role.boundary = Some(b.clone());
                }
            }
            for p in &spec.policy_arns {
                if !role.attached.contains(p) {
                    changes.push(Change::AttachPolicy {
                        role: name.into(),
                        policy_arn: p.clone(),
                    });
                    role.attached.push(p.clone());
                }
            }
            if let Some(doc) = &spec.inline_policy {
                if role.inline_document.as_ref() != Some(doc) {
                    changes.push(Change::PutInlinePolicy {
                        role: name.into(),
                        policy_name: INLINE_POLICY_NAME.into(),
                        document: doc.clone(),
                    });
                    role.inline_document = Some(doc.clone());
                    if !role.inline.iter().any(|n| n == INLINE_POLICY_NAME) {
                        role.inline.push(INLINE_POLICY_NAME.into());
                    }
                }
            }
            Ok(role.arn.clone())
        }
    }
}

fn plan_service_account(
    world: &mut World,
    spec: &Spec,
    role_arn: &str,
    plan: &mut Plan,
) -> Result<()> {
    let key = (spec.namespace.clone(), spec.name.clone());
    let annotation = (role_annotation(), role_arn.to_string());
    let mut labels = spec.labels.clone();
    labels.sort();
    let entry = world.service_accounts.entry(key).or_default();
    match entry {
        None => {
            plan.changes.push(Change::ApplyServiceAccount {
                namespace: spec.namespace.clone(),
                name: spec.name.clone(),
                annotation,
                extra_annotations: spec
                    .annotations
                    .iter()
                    .filter(|(k, _)| *k != role_annotation())
                    .cloned()
                    .collect(),
                labels,
                create: true,
                force: false,
            });
            *entry = Some(SaState {
                annotation: Some(role_arn.into()),
                managed: true,
            });
        }
        Some(sa) => match sa.annotation.as_deref() {
            Some(a) if a == role_arn => {}
            Some(other) if !spec.override_existing => {
                return Err(Error::Refused(format!(
                    "ServiceAccount {}/{} is already annotated with {}={other}, not {role_arn}, so it is left alone and nothing was changed. Use --override-existing-serviceaccounts to replace the annotation.",
                    spec.namespace, spec.name, annotation.0
                )));
            }
            existing => {
                let force = existing.is_some();
                plan.changes.push(Change::ApplyServiceAccount {
                    namespace: spec.namespace.clone(),
                    name: spec.name.clone(),
                    annotation,
                    extra_annotations: Vec::new(),
                    // Re-applied so that this apply keeps the label it set.
                    labels: if sa.managed {
                        vec![(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into())]
                    } else {
                        Vec::new()
                    },
                    create: false,
                    force,
                });
                sa.annotation = Some(role_arn.into());
            }
        },
    }
    Ok(())
}

/// Plans `delete`, in the safe order for each ServiceAccount: first the
/// annotation or the ServiceAccount (no new pod gets the role), then the
/// trust-policy entry, then the role once nothing else uses it. Roles this
/// tool does not own are left alone (with a note).
pub fn plan_delete(world: &mut World, specs: &[Spec]) -> Result<Plan> {
    let mut plan = Plan::default();
    for spec in specs {
        let key = (spec.namespace.clone(), spec.name.clone());
        // The role: named, else the one the ServiceAccount names, else the default.
        let annotated = world
            .service_accounts
            .get(&key)
            .cloned()
            .flatten()
            .and_then(|s| s.annotation);
        let role_name = match (&spec.role_name, &annotated) {
            (Some(r), _) => r.clone(),
            (None, Some(arn))
                if arn.starts_with(&format!(
                    "arn:{}:iam::{}:role/",
                    world.partition, world.account
                )) =>
            {
                arn.rsplit('/').next().unwrap_or_default().to_string()
            }
            _ => spec.role_name(world.cluster.as_deref()),
        };
        let role_arn = world.role_arn(&role_name);
        if !spec.role_only {
            match world.service_accounts.get_mut(&key) {
                Some(Some(sa)) if sa.annotation.as_deref() == Some(role_arn.as_str()) => {
                    if sa.managed {
                        plan.changes.push(Change::DeleteServiceAccount {
                            namespace: key.0.clone(),
                            name: key.1.clone(),
                        });
                        world.service_accounts.insert(key.clone(), None);
                    } else {
                        plan.changes.push(Change::RemoveAnnotation {
                            namespace: key.0.clone(),
                            name: key.1.clone(),
                            key: role_annotation(),
                            value: role_arn.clone(),
                        });
                        sa.annotation = None;
                    }
                }
                Some(Some(sa)) if sa.annotation.is_some() => plan.notes.push(format!(
                    "ServiceAccount {}/{} names another role ({}); it is left alone",
                    key.0,
                    key.1,
                    sa.annotation.as_deref().unwrap_or_default()
                )),
                _ => {}
            }
        }
        let binding = world.binding(spec);
        match world.roles.get_mut(&role_name) {
            Some(Some(role)) if !role.owned() => plan.notes.push(format!(
                "IAM role {role_name} was not created by pod-identity (no tag {OWNER_TAG}={OWNER_VALUE}); its trust policy and the role are left alone"
            )),
            Some(Some(role)) => {
                let Some(doc) = trust::remove(&role.trust, &binding) else {
                    continue;
                };
                if trust::is_empty(&doc) {
                    for p in &role.attached {
                        plan.changes.push(Change::DetachPolicy { role: role_name.clone(), policy_arn: p.clone() });
                    }
                    for p in &role.inline {
                        plan.changes.push(Change::DeleteInlinePolicy { role: role_name.clone(), policy_name: p.clone() });
                    }
                    plan.changes.push(Change::DeleteRole { name: role_name.clone() });
                    world.roles.insert(role_name, None);
                } else {
                    plan.changes.push(Change::UpdateTrust { name: role_name.clone(), trust: doc.clone() });
                    role.trust = doc;
                }
            }
            _ => {}
        }
    }
    Ok(plan)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
