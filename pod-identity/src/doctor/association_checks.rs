//! Pure: the checks of a pod served by this project's Pod Identity (a
//! PodIdentityAssociation, the broker, the node agent's Pod Identity
//! backend), in the places of the IRSA checks they replace:
//!
//! - `association` (for `provider`): an association binds the
//!   ServiceAccount, and the broker marked it Ready;
//! - `role` (trust): the association's role lets the broker's role call
//!   sts:AssumeRole and sts:TagSession with this pod's session tags, as our
//!   evaluator reads its trust policy;
//! - `broker` (for `exchange`): with `--exchange --broker-url`, the
//!   broker's answer to a token minted for the pod; else its pods ready;
//! - the agent check's extra: the node's agent has the Pod Identity backend.

use std::collections::BTreeMap;

use contract::association::{Association, PodRef};

use super::facts::{AssociationFacts, Facts, Lookup};
use super::report::Check;
use crate::policy::evaluate::{evaluate, Request};

fn sa_ref(f: &Facts) -> String {
    format!("{}/{}", f.namespace, f.service_account_name)
}

/// `association`: the ServiceAccount's association and its status.
pub fn association(f: &Facts, a: &AssociationFacts) -> Check {
    const ID: &str = "association";
    let Some(b) = &a.bound else {
        return Check::fail(
            ID,
            format!("no PodIdentityAssociation binds ServiceAccount {}", sa_ref(f)),
            format!(
                "pod-identity podidentityassociation create --cluster <cluster> --namespace {} --service-account-name {} --role-arn <role> --approve",
                f.namespace, f.service_account_name
            ),
        );
    };
    let shadowed = if a.shadowed.is_empty() {
        String::new()
    } else {
        format!("; ignored (newer): {}", a.shadowed.join(", "))
    };
    match b.ready.as_str() {
        "True" => Check::pass(
            ID,
            format!("PodIdentityAssociation {} ({}) binds {} to {}{shadowed}", b.name, b.id, sa_ref(f), b.role_arn),
        ),
        "" => Check::warn(
            ID,
            format!("PodIdentityAssociation {} binds {} to {}, but no broker has marked it Ready{shadowed}", b.name, sa_ref(f), b.role_arn),
            "check that the broker runs (chart value broker.enabled) and can write the association's status",
        ),
        _ => Check::fail(
            ID,
            format!("PodIdentityAssociation {} is not Ready: {}", b.name, b.message),
            format!("kubectl describe podidentityassociation {}", b.name),
        ),
    }
}

/// `role`: the association's role trusts the broker's role with this pod's
/// session tags.
pub fn broker_trust(f: &Facts, a: &AssociationFacts) -> Check {
    const ID: &str = "role";
    let Some(b) = &a.bound else {
        return Check::skip(ID, "no association");
    };
    let Some(broker) = &a.broker.role_arn else {
        return Check::skip(
            ID,
            "the broker's own role is unknown (its ServiceAccount has no role-arn annotation): the trust was not evaluated",
        );
    };
    let role = match &f.role {
        Lookup::Found(r) => r,
        Lookup::Missing => {
            return Check::fail(
                ID,
                format!("the association's role {} does not exist", b.role_arn),
                "create the role, or bind another: pod-identity podidentityassociation create --role-name ...",
            )
        }
        Lookup::Unreadable(why) => {
            return Check::skip(ID, format!("the role {} cannot be read: {why}", b.role_arn))
        }
        Lookup::NotAsked => return Check::skip(ID, "the role was not read"),
    };
    let cluster = a.broker.cluster_name.clone().unwrap_or_default();
    let (pod_name, pod_uid) = f
        .pod
        .as_ref()
        .map(|_| (f.pod_name.clone().unwrap_or_default(), "uid".to_string()))
        .unwrap_or_default();
    let assoc = Association {
        name: b.name.clone(),
        uid: String::new(),
        created: String::new(),
        namespace: f.namespace.clone(),
        service_account: f.service_account_name.clone(),
        role_arn: b.role_arn.clone(),
        target_role_arn: b.target_role_arn.clone(),
        disable_session_tags: b.disable_session_tags,
        session_tags: BTreeMap::new(),
        transitive_session_tags: None,
    };
    let tags: BTreeMap<String, String> = assoc
        .session_tags(
            &cluster,
            None,
            &PodRef {
                namespace: &f.namespace,
                service_account: &f.service_account_name,
                name: &pod_name,
                uid: &pod_uid,
            },
        )
        .tags
        .into_iter()
        .collect();
    let mut actions = vec!["sts:AssumeRole"];
    if !tags.is_empty() {
        actions.push("sts:TagSession");
    }
    for action in &actions {
        let d = evaluate(
            &role.trust,
            &Request::with_session_tags(broker, action, &tags),
        );
        if !d.is_allowed() {
            return Check::fail(
                ID,
                format!(
                    "the trust policy of {} does not let the broker's role {broker} call {action} with the session tags of {} (cluster {cluster}): {d:?}",
                    role.arn,
                    sa_ref(f)
                ),
                format!(
                    "pod-identity podidentityassociation create --cluster {cluster} --namespace {} --service-account-name {} --role-arn {} --broker-role-arn {broker} --approve (adds the grant)",
                    f.namespace, f.service_account_name, role.arn
                ),
            );
        }
    }
    Check::pass(
        ID,
        format!(
            "{} trusts the broker's role {broker} for {}",
            role.arn,
            actions.join(" and ")
        ),
    )
}

/// `broker`: with `--exchange`, what the broker answered a token minted
/// for the pod; else its pods.
pub fn broker(f: &Facts, a: &AssociationFacts) -> Check {
    const ID: &str = "broker";
    match &f.exchange {
        Some(Ok(arn)) => {
            return Check::pass(ID, format!("the broker answered a token of this pod with {arn}"))
        }
        Some(Err(e)) => {
            return Check::fail(
                ID,
                format!("the broker refused a token of this pod: {e}"),
                "fix what the message names (the association, the role's trust, the broker's own credentials)",
            )
        }
        None => {}
    }
    match (a.broker.ready, a.broker.total) {
        (0, 0) => Check::fail(
            ID,
            "no broker pod runs in the cluster",
            "install the broker (chart value broker.enabled=true)",
        ),
        (0, n) => Check::fail(
            ID,
            format!("none of the {n} broker pod(s) is ready"),
            "kubectl logs -l app.kubernetes.io/component=broker -n <release namespace>",
        ),
        (r, n) => Check::pass(ID, format!("{r} of {n} broker pod(s) ready")),
    }
}

/// The agent check, for a Pod Identity pod: a ready agent must have the
/// Pod Identity backend. `None`: nothing to add to the agent check.
pub fn agent_backend(f: &Facts) -> Option<Check> {
    const ID: &str = "agent";
    let agent = f.agent.as_ref()?;
    let ready: Vec<&String> = agent
        .pods
        .iter()
        .filter(|(_, r)| *r)
        .map(|(n, _)| n)
        .collect();
    let name = ready.first()?;
    match agent.eks_auth.get(*name) {
        Some(endpoint) => Some(Check::pass(
            ID,
            format!("credential agent {name} is ready and exchanges Pod Identity tokens at {endpoint}"),
        )),
        None => Some(Check::fail(
            ID,
            format!("credential agent {name} has no Pod Identity backend (no --eks-auth-endpoint)"),
            "set the chart value agent.podIdentity.enabled (with broker.enabled, or agent.podIdentity.endpoint)",
        )),
    }
}
