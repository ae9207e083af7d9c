//! Pure: `utils migrate-to-pod-identity` (eksctl's verb). For every
//! ServiceAccount annotated with a role: the association binding it to that
//! role, the broker's grant in the role's trust (and the cluster tag), as
//! `create --role-arn` plans them; with
//! `--remove-oidc-provider-trust-relationship`, also the ServiceAccount's
//! subject removed from the role's IRSA statement and the annotation
//! removed. Roles shared by several ServiceAccounts get one trust update
//! with everything; any refusal refuses the whole migration.

use std::collections::BTreeMap;

use serde_json::Value;

use super::plan::{plan_create, World};
use super::spec::{AssociationSpec, RoleChoice};
use crate::error::{Error, Result};
use crate::iam::RoleState;
use crate::plan::{Change, Plan};
use crate::policy::trust::{self, Binding};

/// One annotated ServiceAccount as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotated {
    pub namespace: String,
    pub name: String,
    pub annotation_key: String,
    pub role_arn: String,
}

/// What the migration reads besides the ServiceAccounts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Migration {
    pub world: World,
    /// The roles the annotations name, by role name (absent: not found).
    pub roles: BTreeMap<String, RoleState>,
    /// The cluster's issuer and its IAM OIDC provider (for the IRSA
    /// statement to remove).
    pub issuer: String,
    pub provider_arn: String,
}

pub struct Options {
    pub cluster: String,
    pub broker_role_arn: contract::RoleArn,
    pub remove_irsa: bool,
}

fn role_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or_default()
}

pub fn plan_migration(sas: &[Annotated], m: &Migration, o: &Options) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut trusts: BTreeMap<String, Value> = BTreeMap::new();
    let mut tagged: BTreeMap<String, bool> = BTreeMap::new();
    let mut refusals = Vec::new();
    let mut other = Vec::new();
    for sa in sas {
        let arn = match contract::RoleArn::parse(&sa.role_arn) {
            Ok(a) => a,
            Err(e) => {
                refusals.push(format!(
                    "{}/{}: {} is not a role ARN: {e}",
                    sa.namespace, sa.name, sa.role_arn
                ));
                continue;
            }
        };
        let name = role_name(&sa.role_arn).to_string();
        let Some(role) = m.roles.get(&name) else {
            refusals.push(format!(
                "{}/{}: IAM role {} does not exist",
                sa.namespace, sa.name, sa.role_arn
            ));
            continue;
        };
        // The role as the earlier ServiceAccounts left it in this plan.
        let mut current = role.clone();
        if let Some(t) = trusts.get(&name) {
            current.trust = t.clone();
        }
        if tagged.get(&name).copied().unwrap_or(false) {
            current.tags.insert(
                crate::policy::broker_trust::CLUSTER_TAG.into(),
                o.cluster.clone(),
            );
        }
        let spec = AssociationSpec {
            cluster: o.cluster.clone(),
            namespace: sa.namespace.clone(),
            service_account: sa.name.clone(),
            role: RoleChoice::Existing(arn),
            target_role_arn: None,
            disable_session_tags: false,
            tags: Vec::new(),
            create_service_account: false,
            broker_role_arn: o.broker_role_arn.clone(),
        };
        let world = World {
            role: Some(current.clone()),
            service_account_exists: true,
            namespace_exists: true,
            ..m.world.clone()
        };
        let sub = match plan_create(&spec, &world) {
            Ok(p) => p,
            Err(e) => {
                refusals.push(format!("{}/{}: {e}", sa.namespace, sa.name));
                continue;
            }
        };
        let mut trust_now = current.trust.clone();
        for c in sub.changes {
            match c {
                Change::UpdateTrust { trust, .. } => trust_now = trust,
                Change::TagRole { .. } => {
                    tagged.insert(name.clone(), true);
                }
                c => other.push(c),
            }
        }
        if o.remove_irsa {
            let b = Binding {
                provider_arn: m.provider_arn.clone(),
                issuer: m.issuer.clone(),
                subject: crate::policy::service_account_subject(&sa.namespace, &sa.name),
            };
            if let Some(t) = trust::remove(&trust_now, &b) {
                trust_now = t;
            }
            other.push(Change::RemoveAnnotation {
                namespace: sa.namespace.clone(),
                name: sa.name.clone(),
                key: sa.annotation_key.clone(),
                value: sa.role_arn.clone(),
            });
        }
        trusts.insert(name, trust_now);
    }
    if !refusals.is_empty() {
        return Err(Error::Refused(format!(
            "nothing was migrated:\n  {}",
            refusals.join("\n  ")
        )));
    }
    // IAM first (the roles trust the broker before anything points pods at
    // it), then the associations, then the annotations.
    for (name, done) in &tagged {
        if *done {
            plan.changes.push(Change::TagRole {
                name: name.clone(),
                tags: vec![(
                    crate::policy::broker_trust::CLUSTER_TAG.into(),
                    o.cluster.clone(),
                )],
            });
        }
    }
    for (name, trust) in &trusts {
        if m.roles.get(name).is_some_and(|r| &r.trust != trust) {
            plan.changes.push(Change::UpdateTrust {
                name: name.clone(),
                trust: trust.clone(),
            });
        }
    }
    other.sort_by_key(|c| matches!(c, Change::RemoveAnnotation { .. }));
    plan.changes.extend(other);
    if sas.is_empty() {
        plan.notes
            .push("no ServiceAccount has a role-arn annotation: nothing to migrate".into());
    } else if !plan.is_empty() {
        plan.notes.push(
            "pods get Pod Identity when they are created: restart them afterwards (kubectl rollout restart ...); running pods keep their IRSA credentials"
                .into(),
        );
        if o.remove_irsa {
            plan.notes.push(
                "the IRSA trust goes now: pods not yet restarted lose their credentials at their next token refresh; without --remove-oidc-provider-trust-relationship, run it again once every pod was restarted"
                    .into(),
            );
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pia::plan::ExistingAssociation;
    use crate::policy::trust::new_document;

    const BROKER: &str = "arn:aws:iam::111122223333:role/broker";
    const ISSUER: &str = "https://oidc.example.com/id/1";
    const PROVIDER: &str = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/1";

    fn sa(ns: &str, name: &str, role: &str) -> Annotated {
        Annotated {
            namespace: ns.into(),
            name: name.into(),
            annotation_key: "eks.amazonaws.com/role-arn".into(),
            role_arn: format!("arn:aws:iam::111122223333:role/{role}"),
        }
    }

    fn irsa_role(role: &str, subjects: &[(&str, &str)]) -> RoleState {
        let mut trust = json!({"Version": "2012-10-17", "Statement": []});
        for (ns, name) in subjects {
            let b = Binding {
                provider_arn: PROVIDER.into(),
                issuer: ISSUER.into(),
                subject: crate::policy::service_account_subject(ns, name),
            };
            trust = trust::add(&trust, &b).unwrap_or_else(|| new_document(&b));
        }
        RoleState {
            arn: format!("arn:aws:iam::111122223333:role/{role}"),
            trust,
            ..RoleState::default()
        }
    }

    fn migration(roles: Vec<RoleState>) -> Migration {
        Migration {
            world: World {
                partition: "aws".into(),
                account: "111122223333".into(),
                ..World::default()
            },
            roles: roles
                .into_iter()
                .map(|r| (role_name(&r.arn).to_string(), r))
                .collect(),
            issuer: ISSUER.into(),
            provider_arn: PROVIDER.into(),
        }
    }

    fn opts(remove: bool) -> Options {
        Options {
            cluster: "prod".into(),
            broker_role_arn: contract::RoleArn::parse(BROKER).unwrap(),
            remove_irsa: remove,
        }
    }

    #[test]
    fn a_shared_role_gets_one_trust_update_with_every_grant() {
        let sas = [sa("shop", "web", "shared"), sa("shop", "api", "shared")];
        let m = migration(vec![irsa_role(
            "shared",
            &[("shop", "web"), ("shop", "api")],
        )]);
        let p = plan_migration(&sas, &m, &opts(false)).unwrap();
        let trusts: Vec<&Value> = p
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::UpdateTrust { trust, .. } => Some(trust),
                _ => None,
            })
            .collect();
        assert_eq!(trusts.len(), 1);
        let grants = crate::policy::broker_trust::grants_to(trusts[0], BROKER);
        assert_eq!(grants.len(), 2, "{grants:?}");
        // IRSA kept without --remove-oidc-provider-trust-relationship.
        assert_eq!(trust::all_subjects(trusts[0]).len(), 2);
        assert_eq!(
            p.changes
                .iter()
                .filter(|c| matches!(c, Change::TagRole { .. }))
                .count(),
            1
        );
        assert_eq!(
            p.changes
                .iter()
                .filter(|c| matches!(c, Change::ApplyAssociation { .. }))
                .count(),
            2
        );
        assert!(!p
            .changes
            .iter()
            .any(|c| matches!(c, Change::RemoveAnnotation { .. })));
    }

    #[test]
    fn removing_irsa_drops_the_subjects_and_annotations_last() {
        let sas = [sa("shop", "web", "web")];
        let m = migration(vec![irsa_role(
            "web",
            &[("shop", "web"), ("shop", "other")],
        )]);
        let p = plan_migration(&sas, &m, &opts(true)).unwrap();
        let Some(Change::UpdateTrust { trust, .. }) = p
            .changes
            .iter()
            .find(|c| matches!(c, Change::UpdateTrust { .. }))
        else {
            panic!("{p:?}")
        };
        let subjects: Vec<String> = trust::all_subjects(trust)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(subjects, ["system:serviceaccount:shop:other"]);
        assert!(matches!(
            p.changes.last(),
            Some(Change::RemoveAnnotation { .. })
        ));
        assert!(p.notes.iter().any(|n| n.contains("restart")));
    }

    #[test]
    fn any_refusal_refuses_everything() {
        let sas = [sa("shop", "web", "web"), sa("shop", "gone", "missing")];
        let m = migration(vec![irsa_role("web", &[("shop", "web")])]);
        let e = plan_migration(&sas, &m, &opts(false))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("shop/gone") && e.contains("does not exist"),
            "{e}"
        );
        // Already migrated: nothing to do.
        let first = plan_migration(&sas[..1], &m, &opts(false)).unwrap();
        let Some(Change::UpdateTrust { trust, .. }) = first
            .changes
            .iter()
            .find(|c| matches!(c, Change::UpdateTrust { .. }))
        else {
            panic!()
        };
        let Some(Change::ApplyAssociation { name, spec }) = first
            .changes
            .iter()
            .find(|c| matches!(c, Change::ApplyAssociation { .. }))
        else {
            panic!()
        };
        let mut done_role = irsa_role("web", &[("shop", "web")]);
        done_role.trust = trust.clone();
        done_role.tags.insert(
            crate::policy::broker_trust::CLUSTER_TAG.into(),
            "prod".into(),
        );
        let mut done = migration(vec![done_role]);
        done.world.associations = vec![ExistingAssociation {
            name: name.clone(),
            spec: spec.clone(),
            managed: true,
        }];
        assert!(plan_migration(&sas[..1], &done, &opts(false))
            .unwrap()
            .is_empty());
    }
}
