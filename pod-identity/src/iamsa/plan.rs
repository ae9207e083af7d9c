//! Planning `create`, `update`/`apply` and `delete` for a list of
//! ServiceAccounts, pure: the state read from IAM and the cluster goes in
//! ([`World`]), the changes come out in the order they must be made, and the
//! world is updated as if they were made, so that several ServiceAccounts
//! sharing a role plan correctly in one run.
//!
//! Long because create, the declarative pass and delete share the world
//! and its helpers; the grants a spec asks for are in [`Grants`].

use std::collections::BTreeMap;

use contract::annotations::{DEFAULT_PREFIX, ROLE_ARN};
use contract::RoleArn;
use serde_json::Value;

use super::spec::Spec;
use super::well_known;
use crate::cluster::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::error::{Error, Result};
pub use crate::iam::RoleState;
use crate::iam::{owned_inline_policy, Record, INLINE_POLICY_NAME, OWNER_TAG, OWNER_VALUE};
use crate::plan::{Change, Plan};
use crate::policy::service_account_subject;
use crate::policy::trust::{self, Binding};

/// A ServiceAccount as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaState {
    pub annotation: Option<String>,
    /// Labelled as created by this tool.
    pub managed: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
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
    /// Namespace -> whether it exists (only those of ServiceAccounts to write).
    pub namespaces: BTreeMap<String, bool>,
    /// (namespace, name) -> the owned role found through its ownership
    /// record or trust policy (delete, when no annotation names it).
    pub found: BTreeMap<(String, String), String>,
}

/// The annotation key this tool writes.
pub fn role_annotation() -> String {
    format!("{DEFAULT_PREFIX}/{ROLE_ARN}")
}

/// Whether two role ARNs name one role: IAM role names are unique in an
/// account whatever their path, so `role/a/b/x` and `role/x` are one role.
pub fn same_role(a: &str, b: &str) -> bool {
    match (RoleArn::parse(a), RoleArn::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.partition() == b.partition() && a.account() == b.account() && a.name() == b.name()
        }
        _ => a == b,
    }
}

impl World {
    fn binding(&self, spec: &Spec) -> Binding {
        Binding {
            provider_arn: self.provider_arn.clone(),
            issuer: self.issuer.clone(),
            subject: service_account_subject(&spec.namespace, &spec.name),
        }
    }

    fn record(&self, spec: &Spec) -> Record {
        Record::new(&self.issuer, &spec.namespace, &spec.name)
    }

    /// The role's ARN: as read (with its path), else without a path.
    fn role_arn(&self, name: &str) -> String {
        match self.roles.get(name) {
            Some(Some(r)) => r.arn.clone(),
            _ => format!("arn:{}:iam::{}:role/{name}", self.partition, self.account),
        }
    }

    /// The name of a role of this account that `arn` names.
    fn own_role_name(&self, arn: &str) -> Option<String> {
        let parsed = RoleArn::parse(arn).ok()?;
        (parsed.partition() == self.partition && parsed.account() == self.account)
            .then(|| parsed.name().to_string())
    }

    fn annotation_of(&self, spec: &Spec) -> Option<String> {
        self.service_accounts
            .get(&(spec.namespace.clone(), spec.name.clone()))
            .cloned()
            .flatten()
            .and_then(|s| s.annotation)
    }

    /// The role a spec is about when creating: `--role-name`, the attached
    /// role, a role made before ownership records existed that the
    /// ServiceAccount already names and that trusts it, else the default name.
    pub fn role_name_for(&self, spec: &Spec) -> String {
        if spec.role_name.is_some() || spec.attach_role_arn.is_some() {
            return spec.role_name(self.cluster.as_deref());
        }
        if let Some(name) = self
            .annotation_of(spec)
            .and_then(|arn| self.own_role_name(&arn))
        {
            if let Some(Some(role)) = self.roles.get(&name) {
                let binding = self.binding(spec);
                if role.owned()
                    && role.record().is_none()
                    && trust::subjects(&role.trust, &binding).contains(&binding.subject)
                {
                    return name;
                }
            }
        }
        spec.default_role_name(self.cluster.as_deref())
    }
}

/// Options of `create` beyond the specs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateOptions {
    /// Let this tool manage (tag, change, later delete) a role it did not create.
    pub adopt_role: bool,
    /// `apply -f` and `update`: what the specs no longer ask for is removed
    /// from the roles this tool owns (policies, inline policies, boundary).
    pub declarative: bool,
}

/// What a spec grants its role, in the account's partition.
#[derive(Debug, Clone, Default, PartialEq)]
struct Grants {
    managed: Vec<String>,
    inline: BTreeMap<String, Value>,
    boundary: Option<String>,
}

fn grants(spec: &Spec, partition: &str) -> Grants {
    let wk = well_known::expand(&spec.well_known, partition);
    let mut managed = spec.policy_arns.clone();
    for m in wk.managed {
        if !managed.contains(&m) {
            managed.push(m);
        }
    }
    let mut inline = wk.inline;
    if let Some(doc) = &spec.inline_policy {
        inline.insert(INLINE_POLICY_NAME.into(), doc.clone());
    }
    Grants {
        managed,
        inline,
        boundary: spec.permissions_boundary.clone(),
    }
}

/// Plans `create` for every spec, in order; refuses (changing nothing) when
/// any of them would touch a role or a ServiceAccount it must not.
pub fn plan_create(world: &mut World, specs: &[Spec], opts: CreateOptions) -> Result<Plan> {
    // All or nothing: a refusal leaves the world as it was.
    let before = world.clone();
    let planned = plan_create_all(world, specs, opts).and_then(|mut plan| {
        super::limits::check_trust_lengths(&world.roles, &plan.changes, &mut plan.notes)?;
        super::limits::check_inline_lengths(&world.roles, &plan.changes)?;
        Ok(plan)
    });
    if planned.is_err() {
        *world = before;
    }
    planned
}

/// The union of what the specs of one run grant each role, refusing
/// contradictions (one inline policy name or boundary asked two ways).
fn wanted_per_role<'a>(
    world: &World,
    specs: &'a [Spec],
) -> Result<BTreeMap<String, (Vec<&'a Spec>, Grants)>> {
    let mut out: BTreeMap<String, (Vec<&Spec>, Grants)> = BTreeMap::new();
    for spec in specs.iter().filter(|s| s.attach_role_arn.is_none()) {
        let role = world.role_name_for(spec);
        let g = grants(spec, &world.partition);
        let (members, acc) = out.entry(role.clone()).or_default();
        if let Some(first) = members.first() {
            for (name, doc) in &g.inline {
                if acc.inline.get(name).is_some_and(|d| d != doc) {
                    let what = if name == INLINE_POLICY_NAME {
                        "attachPolicy documents".to_string()
                    } else {
                        format!("documents for inline policy {name}")
                    };
                    return Err(Error::Refused(format!(
                        "{}/{} and {}/{} share IAM role {role} but ask for different {what}; nothing was changed",
                        first.namespace, first.name, spec.namespace, spec.name
                    )));
                }
            }
            if let (Some(a), Some(b)) = (&acc.boundary, &g.boundary) {
                if a != b {
                    return Err(Error::Refused(format!(
                        "{}/{} and {}/{} share IAM role {role} but ask for different permissions boundaries ({a}, {b}); nothing was changed",
                        first.namespace, first.name, spec.namespace, spec.name
                    )));
                }
            }
        }
        members.push(spec);
        for m in g.managed {
            if !acc.managed.contains(&m) {
                acc.managed.push(m);
            }
        }
        acc.inline.extend(g.inline);
        if acc.boundary.is_none() {
            acc.boundary = g.boundary;
        }
    }
    Ok(out)
}

fn plan_create_all(world: &mut World, specs: &[Spec], opts: CreateOptions) -> Result<Plan> {
    let wanted = wanted_per_role(world, specs)?;
    let mut plan = Plan::default();
    let mut namespaces = Vec::new();
    for spec in specs {
        let role_arn = match &spec.attach_role_arn {
            Some(arn) => {
                plan.notes.push(format!(
                    "{}/{}: uses the existing role {arn} as it is (--attach-role-arn); its trust policy is not checked or changed",
                    spec.namespace, spec.name
                ));
                arn.clone()
            }
            None => {
                let name = world.role_name_for(spec);
                plan_role(world, spec, &name, opts, &mut plan.changes)?
            }
        };
        if !spec.role_only {
            if world.namespaces.get(&spec.namespace) == Some(&false) {
                namespaces.push(Change::CreateNamespace {
                    name: spec.namespace.clone(),
                });
                world.namespaces.insert(spec.namespace.clone(), true);
            }
            plan_service_account(world, spec, &role_arn, &mut plan)?;
        }
    }
    if opts.declarative {
        for (role, (members, want)) in &wanted {
            remove_unwanted(world, role, members, want, &mut plan);
        }
    }
    // Namespaces first: a ServiceAccount cannot be written without one, and
    // nothing in IAM is changed for a namespace that cannot be made.
    namespaces.append(&mut plan.changes);
    plan.changes = namespaces;
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
    let record = world.record(spec);
    let g = grants(spec, &world.partition);
    let mut wanted_tags: Vec<(String, String)> = vec![(OWNER_TAG.into(), OWNER_VALUE.into())];
    let role_arn = world.role_arn(name);
    let entry = world.roles.entry(name.to_string()).or_default();
    match entry {
        None => {
            wanted_tags.extend(record.tags());
            wanted_tags.extend(spec.tags.iter().cloned());
            changes.push(Change::CreateRole {
                name: name.into(),
                arn: role_arn.clone(),
                trust: trust::new_document(&binding),
                tags: wanted_tags.clone(),
                permissions_boundary: g.boundary.clone(),
            });
            for p in &g.managed {
                changes.push(Change::AttachPolicy {
                    role: name.into(),
                    policy_arn: p.clone(),
                });
            }
            for (policy_name, doc) in &g.inline {
                changes.push(Change::PutInlinePolicy {
                    role: name.into(),
                    policy_name: policy_name.clone(),
                    document: doc.clone(),
                });
            }
            *entry = Some(RoleState {
                arn: role_arn.clone(),
                trust: trust::new_document(&binding),
                tags: wanted_tags.into_iter().collect(),
                attached: g.managed.clone(),
                inline: g.inline.keys().cloned().collect(),
                inline_documents: g.inline.clone(),
                boundary: g.boundary.clone(),
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
            let trusted = trust::subjects(&role.trust, &binding).contains(&binding.subject);
            if role.owned() && spec.role_name.is_none() && !trusted {
                // A default name must never reach another ServiceAccount's role.
                match role.record() {
                    Some(r) if r == record => {}
                    Some(r) => {
                        return Err(Error::Refused(format!(
                            "IAM role {name} was made for {}; {}/{} (issuer {}) would get the same default role name, so nothing was changed. \
                             To share that role on purpose, give --role-name {name} (roleName in a file); otherwise give this ServiceAccount another --role-name.",
                            r.describe(), spec.namespace, spec.name, record.issuer
                        )))
                    }
                    None => {
                        return Err(Error::Refused(format!(
                            "IAM role {name} is managed by pod-identity but carries no record of the ServiceAccount it was made for, and does not trust {}/{}; nothing was changed. \
                             Give --role-name {name} to share it on purpose, or another --role-name.",
                            spec.namespace, spec.name
                        )))
                    }
                }
            }
            if !role.owned() {
                // Adopted: from now on it carries the record as well.
                wanted_tags.extend(record.tags());
            }
            wanted_tags.extend(spec.tags.iter().cloned());
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
            if let Some(b) = &g.boundary {
                if role.boundary.as_ref() != Some(b) {
                    changes.push(Change::PutPermissionsBoundary {
                        role: name.into(),
                        policy_arn: b.clone(),
                    });
                    role.boundary = Some(b.clone());
                }
            }
            for p in &g.managed {
                if !role.attached.contains(p) {
                    changes.push(Change::AttachPolicy {
                        role: name.into(),
                        policy_arn: p.clone(),
                    });
                    role.attached.push(p.clone());
                }
            }
            for (policy_name, doc) in &g.inline {
                if role.inline_documents.get(policy_name) != Some(doc) {
                    changes.push(Change::PutInlinePolicy {
                        role: name.into(),
                        policy_name: policy_name.clone(),
                        document: doc.clone(),
                    });
                    role.inline_documents
                        .insert(policy_name.clone(), doc.clone());
                    if !role.inline.contains(policy_name) {
                        role.inline.push(policy_name.clone());
                    }
                }
            }
            Ok(role.arn.clone())
        }
    }
}

/// The declarative pass of `apply` / `update` on one role: on a role this
/// tool owns, what none of its specs asks for any more is removed. Roles
/// it does not own keep everything (only their trust entry is managed).
fn remove_unwanted(
    world: &mut World,
    role_name: &str,
    members: &[&Spec],
    want: &Grants,
    plan: &mut Plan,
) {
    let Some(Some(role)) = world.roles.get_mut(role_name) else {
        return;
    };
    if !role.owned() {
        return;
    }
    let mut removed = false;
    for p in role.attached.clone() {
        if !want.managed.contains(&p) {
            plan.changes.push(Change::DetachPolicy {
                role: role_name.into(),
                policy_arn: p.clone(),
            });
            role.attached.retain(|a| a != &p);
            removed = true;
        }
    }
    for p in role.inline.clone() {
        if owned_inline_policy(&p) && !want.inline.contains_key(&p) {
            plan.changes.push(Change::DeleteInlinePolicy {
                role: role_name.into(),
                policy_name: p.clone(),
            });
            role.inline.retain(|n| n != &p);
            role.inline_documents.remove(&p);
            removed = true;
        }
    }
    if want.boundary.is_none() {
        if let Some(b) = role.boundary.take() {
            plan.changes.push(Change::DeletePermissionsBoundary {
                role: role_name.into(),
                policy_arn: b,
            });
            removed = true;
        }
    }
    if removed {
        // Say so when the role also serves ServiceAccounts this run does
        // not name: what is removed is removed for them too.
        let ours: Vec<String> = members
            .iter()
            .map(|s| service_account_subject(&s.namespace, &s.name))
            .collect();
        let others: Vec<String> = trust::all_subjects(&role.trust)
            .into_iter()
            .map(|(_, sub)| sub)
            .filter(|sub| !ours.contains(sub))
            .collect();
        if !others.is_empty() {
            plan.notes.push(format!(
                "IAM role {role_name} is also trusted by {} (not in this run): the policies removed from it are removed for them too",
                others.join(", ")
            ));
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
    let extra_annotations: Vec<(String, String)> = spec
        .annotations
        .iter()
        .filter(|(k, _)| *k != role_annotation())
        .cloned()
        .collect();
    let entry = world.service_accounts.entry(key).or_default();
    match entry {
        None => {
            plan.changes.push(Change::ApplyServiceAccount {
                namespace: spec.namespace.clone(),
                name: spec.name.clone(),
                annotation,
                extra_annotations: extra_annotations.clone(),
                labels: labels.clone(),
                create: true,
                force: false,
            });
            let mut state = SaState {
                annotation: Some(role_arn.into()),
                managed: true,
                labels: labels.into_iter().collect(),
                annotations: extra_annotations.into_iter().collect(),
            };
            state
                .labels
                .insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
            *entry = Some(state);
        }
        Some(sa) => {
            let force = match sa.annotation.as_deref() {
                Some(a) if same_role(a, role_arn) => false,
                Some(other) if !spec.override_existing => {
                    return Err(Error::Refused(format!(
                        "ServiceAccount {}/{} is already annotated with {}={other}, not {role_arn}, so it is left alone and nothing was changed. Use --override-existing-serviceaccounts to replace the annotation.",
                        spec.namespace, spec.name, annotation.0
                    )));
                }
                existing => existing.is_some(),
            };
            let annotated = sa
                .annotation
                .as_deref()
                .is_some_and(|a| same_role(a, role_arn));
            let labelled = labels.iter().all(|(k, v)| sa.labels.get(k) == Some(v));
            let extra_set = extra_annotations
                .iter()
                .all(|(k, v)| sa.annotations.get(k) == Some(v));
            if annotated && labelled && extra_set {
                return Ok(());
            }
            // Server-side apply of what this tool sets; what other field
            // managers set stays (labels and annotations are merged).
            let mut applied_labels = labels.clone();
            if sa.managed {
                // Re-applied so that this apply keeps the label it set.
                applied_labels.push((MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into()));
                applied_labels.sort();
            }
            let annotation = if annotated {
                // Keep the annotation exactly as it is (a path-less and a
                // pathed ARN of one role are the same role).
                (annotation.0, sa.annotation.clone().unwrap_or_default())
            } else {
                annotation
            };
            plan.changes.push(Change::ApplyServiceAccount {
                namespace: spec.namespace.clone(),
                name: spec.name.clone(),
                annotation: annotation.clone(),
                extra_annotations: extra_annotations.clone(),
                labels: applied_labels,
                create: false,
                force,
            });
            sa.annotation = Some(annotation.1);
            sa.labels.extend(labels);
            sa.annotations.extend(extra_annotations);
        }
    }
    Ok(())
}

/// Plans `delete`, in the safe order for each ServiceAccount: first the
/// annotation or the ServiceAccount (no new pod gets the role), then the
/// trust-policy entry, then the role once nothing else uses it. Roles this
/// tool does not own are left alone (with a note). The role is the one
/// `--role-name` names, else the one the ServiceAccount's annotation names,
/// else the one found through its ownership record, else the default name;
/// so a re-run after a failure that already removed the ServiceAccount
/// still finishes.
pub fn plan_delete(world: &mut World, specs: &[Spec]) -> Result<Plan> {
    let mut plan = Plan::default();
    for spec in specs {
        let key = (spec.namespace.clone(), spec.name.clone());
        let annotated = world.annotation_of(spec);
        let role_name = match (
            &spec.role_name,
            annotated.as_deref().and_then(|a| world.own_role_name(a)),
        ) {
            (Some(r), _) => r.clone(),
            (None, Some(name)) => name,
            (None, None) => match world.found.get(&key) {
                Some(name) => name.clone(),
                None => spec.default_role_name(world.cluster.as_deref()),
            },
        };
        let role_arn = world.role_arn(&role_name);
        if !spec.role_only {
            match world.service_accounts.get_mut(&key) {
                Some(Some(sa))
                    if sa
                        .annotation
                        .as_deref()
                        .is_some_and(|a| same_role(a, &role_arn)) =>
                {
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
                            value: sa.annotation.clone().unwrap_or_default(),
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
        let record = world.record(spec);
        match world.roles.get_mut(&role_name) {
            Some(Some(role)) if !role.owned() => plan.notes.push(format!(
                "IAM role {role_name} was not created by pod-identity (no tag {OWNER_TAG}={OWNER_VALUE}); its trust policy and the role are left alone"
            )),
            Some(Some(role)) => {
                let doc = match trust::remove(&role.trust, &binding) {
                    Some(doc) => {
                        plan.changes.push(Change::UpdateTrust {
                            name: role_name.clone(),
                            trust: doc.clone(),
                        });
                        role.trust = doc.clone();
                        doc
                    }
                    // Not trusted (any more): the role is this spec's to
                    // delete only when it was made for it and is unused.
                    None if role.record().as_ref() == Some(&record) => role.trust.clone(),
                    None => continue,
                };
                if trust::is_empty(&doc) {
                    // The trust-policy update above is not needed when the
                    // role goes: IAM deletes it with the role.
                    if matches!(plan.changes.last(), Some(Change::UpdateTrust { name, .. }) if *name == role_name) {
                        plan.changes.pop();
                    }
                    for p in &role.attached {
                        plan.changes.push(Change::DetachPolicy { role: role_name.clone(), policy_arn: p.clone() });
                    }
                    for p in &role.inline {
                        plan.changes.push(Change::DeleteInlinePolicy { role: role_name.clone(), policy_name: p.clone() });
                    }
                    plan.changes.push(Change::DeleteRole { name: role_name.clone() });
                    world.roles.insert(role_name, None);
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
