//! Pod Identity's IAM side, pure:
//!
//! - the statement a role bound by a PodIdentityAssociation carries so the
//!   broker's role may assume it: `sts:AssumeRole` and `sts:TagSession` by
//!   the broker's role, only with the session tags `eks-cluster-name`,
//!   `kubernetes-namespace` and `kubernetes-service-account` of that
//!   association (the tags the broker sets, `contract::association`), so IAM
//!   enforces the binding too, not only RBAC on the CRD (EKS's trust names
//!   only its service principal). One statement per (cluster, namespace,
//!   ServiceAccount); statements this tool did not write are kept;
//! - the broker role's own permission: `sts:AssumeRole` and `sts:TagSession`
//!   only on roles tagged [`CLUSTER_TAG`] with its cluster's name, the tag
//!   this tool puts on the roles it creates for associations.

use serde_json::{json, Value};

use super::string_or_list;

/// The role tag that marks a role for one cluster's broker.
pub const CLUSTER_TAG: &str = "pod-identity.io/cluster";
/// The actions the broker needs on an association's role.
pub const ACTIONS: [&str; 2] = ["sts:AssumeRole", "sts:TagSession"];

/// An association's place in a role's trust policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub broker_role_arn: String,
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
}

impl Grant {
    fn conditions(&self) -> Value {
        json!({
            "aws:RequestTag/eks-cluster-name": self.cluster,
            "aws:RequestTag/kubernetes-namespace": self.namespace,
            "aws:RequestTag/kubernetes-service-account": self.service_account,
        })
    }

    /// The statement this grant is.
    pub fn statement(&self) -> Value {
        json!({
            "Effect": "Allow",
            "Principal": {"AWS": self.broker_role_arn},
            "Action": ACTIONS,
            "Condition": {"StringEquals": self.conditions()},
        })
    }

    /// Whether `s` is this grant's statement (as written, or as IAM returns
    /// it: a one-element list may come back as a string).
    fn is(&self, s: &Value) -> bool {
        let principal = string_or_list(s.pointer("/Principal/AWS"));
        let mut actions = string_or_list(s.get("Action"));
        actions.sort();
        s.get("Effect").and_then(Value::as_str) == Some("Allow")
            && principal == [self.broker_role_arn.clone()]
            && actions == ACTIONS
            && s.pointer("/Condition/StringEquals") == Some(&self.conditions())
            && s.get("Condition")
                .and_then(Value::as_object)
                .map(|c| c.len())
                == Some(1)
    }
}

/// A new trust policy with only this grant.
pub fn new_document(g: &Grant) -> Value {
    json!({"Version": "2012-10-17", "Statement": [g.statement()]})
}

/// Whether the document holds the grant.
pub fn has(doc: &Value, g: &Grant) -> bool {
    doc.get("Statement")
        .and_then(Value::as_array)
        .is_some_and(|st| st.iter().any(|s| g.is(s)))
}

/// The document with the grant added; `None` when it is there already.
pub fn add(doc: &Value, g: &Grant) -> Option<Value> {
    if has(doc, g) {
        return None;
    }
    let mut out = doc.clone();
    let statements = match out.get_mut("Statement") {
        Some(Value::Array(a)) => a,
        Some(single) => {
            // IAM allows one statement as an object: make it a list.
            let one = single.take();
            *single = Value::Array(vec![one]);
            single.as_array_mut()?
        }
        None => {
            out["Statement"] = json!([]);
            out["Statement"].as_array_mut()?
        }
    };
    statements.push(g.statement());
    if out.get("Version").is_none() {
        out["Version"] = json!("2012-10-17");
    }
    Some(out)
}

/// The document without the grant; `None` when it was not there.
pub fn remove(doc: &Value, g: &Grant) -> Option<Value> {
    if !has(doc, g) {
        return None;
    }
    let mut out = doc.clone();
    if let Some(Value::Array(st)) = out.get_mut("Statement") {
        st.retain(|s| !g.is(s));
    }
    Some(out)
}

/// The (cluster, namespace, ServiceAccount) of every grant to
/// `broker_role_arn` the document holds.
pub fn grants_to(doc: &Value, broker_role_arn: &str) -> Vec<(String, String, String)> {
    let Some(st) = doc.get("Statement").and_then(Value::as_array) else {
        return Vec::new();
    };
    st.iter()
        .filter(|s| string_or_list(s.pointer("/Principal/AWS")) == [broker_role_arn.to_string()])
        .filter_map(|s| {
            let c = s.pointer("/Condition/StringEquals")?;
            let get = |k: &str| c.get(k)?.as_str().map(str::to_string);
            Some((
                get("aws:RequestTag/eks-cluster-name")?,
                get("aws:RequestTag/kubernetes-namespace")?,
                get("aws:RequestTag/kubernetes-service-account")?,
            ))
        })
        .collect()
}

/// The broker role's permission policy: assume, with session tags, only the
/// roles tagged for this cluster.
pub fn broker_permissions(cluster: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ACTIONS,
            "Resource": "*",
            "Condition": {"StringEquals": {format!("iam:ResourceTag/{CLUSTER_TAG}"): cluster}},
        }],
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::evaluate::{evaluate, Request};

    const BROKER: &str = "arn:aws:iam::111122223333:role/pod-identity-broker";

    fn grant(ns: &str, sa: &str) -> Grant {
        Grant {
            broker_role_arn: BROKER.into(),
            cluster: "prod".into(),
            namespace: ns.into(),
            service_account: sa.into(),
        }
    }

    fn tags(cluster: &str, ns: &str, sa: &str) -> BTreeMap<String, String> {
        [
            ("eks-cluster-name", cluster),
            ("kubernetes-namespace", ns),
            ("kubernetes-service-account", sa),
            ("kubernetes-pod-name", "web-1"),
            ("kubernetes-pod-uid", "0b5c1d2e"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// What IAM would decide for the broker's AssumeRole with these tags:
    /// both actions must be allowed.
    fn allowed(doc: &Value, caller: &str, t: &BTreeMap<String, String>) -> bool {
        ACTIONS
            .iter()
            .all(|a| evaluate(doc, &Request::with_session_tags(caller, a, t)).is_allowed())
    }

    #[test]
    fn the_grant_admits_exactly_its_association() {
        let doc = new_document(&grant("shop", "web"));
        assert!(allowed(&doc, BROKER, &tags("prod", "shop", "web")));
        for (cluster, ns, sa) in [
            ("staging", "shop", "web"),
            ("prod", "other", "web"),
            ("prod", "shop", "admin"),
        ] {
            assert!(
                !allowed(&doc, BROKER, &tags(cluster, ns, sa)),
                "{cluster}/{ns}/{sa}"
            );
        }
        let other = "arn:aws:iam::111122223333:role/someone";
        assert!(!allowed(&doc, other, &tags("prod", "shop", "web")));
        // Without tags (disableSessionTags) the grant does not apply: the
        // condition keys are absent.
        assert!(!allowed(&doc, BROKER, &BTreeMap::new()));
    }

    #[test]
    fn grants_are_added_once_removed_exactly_and_foreign_statements_kept() {
        let foreign = json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"});
        let doc = json!({"Version": "2012-10-17", "Statement": foreign.clone()});
        let a = add(&doc, &grant("shop", "web")).unwrap();
        assert!(add(&a, &grant("shop", "web")).is_none());
        let b = add(&a, &grant("shop", "api")).unwrap();
        assert_eq!(b["Statement"].as_array().unwrap().len(), 3);
        assert_eq!(
            grants_to(&b, BROKER),
            [
                ("prod".into(), "shop".into(), "web".into()),
                ("prod".into(), "shop".into(), "api".into())
            ]
        );
        let c = remove(&b, &grant("shop", "web")).unwrap();
        assert!(remove(&c, &grant("shop", "web")).is_none());
        assert_eq!(c["Statement"][0], foreign);
        assert!(has(&c, &grant("shop", "api")));
        // As IAM returns it: one action as a list, principal as a string.
        let mut returned = grant("shop", "api").statement();
        returned["Action"] = json!(["sts:TagSession", "sts:AssumeRole"]);
        assert!(has(
            &json!({"Statement": [returned]}),
            &grant("shop", "api")
        ));
    }

    /// The broker's own permission, as IAM evaluates an identity policy:
    /// AssumeRole and TagSession on a role tagged for its cluster, nothing
    /// on an untagged role or another cluster's.
    #[test]
    fn the_broker_may_assume_only_roles_tagged_for_its_cluster() {
        use crate::policy::evaluate::evaluate_identity;
        let p = broker_permissions("prod");
        let on = |tag: Option<&str>, action: &str| {
            let mut req = Request::with_session_tags(BROKER, action, &tags("prod", "shop", "web"));
            req.context.insert(
                "resource".into(),
                "arn:aws:iam::111122223333:role/shop-web".into(),
            );
            if let Some(t) = tag {
                req.context
                    .insert(format!("iam:ResourceTag/{CLUSTER_TAG}"), t.into());
            }
            evaluate_identity(&p, &req).is_allowed()
        };
        for action in ACTIONS {
            assert!(on(Some("prod"), action), "{action}");
            assert!(!on(Some("staging"), action), "{action}");
            assert!(!on(None, action), "{action}");
        }
        assert!(!on(Some("prod"), "sts:AssumeRoleWithWebIdentity"));
    }
}
