//! `PodIdentityAssociation` (group `pod-identity.io`, cluster-scoped): what
//! binds a ServiceAccount to a role for EKS Pod Identity on any cluster.
//! The rules every reader applies the same way: which association of a
//! ServiceAccount counts when there are several (the oldest), its id (from
//! its uid, EKS's `a-` + 17 characters form, stable for the object's life),
//! and what makes a spec valid (the CRD's schema checks the same, and a
//! test holds the two together against a real API server).

use std::collections::BTreeMap;

use crate::RoleArn;

pub const GROUP: &str = "pod-identity.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "PodIdentityAssociation";
pub const PLURAL: &str = "podidentityassociations";

/// The session tags EKS sets on every role session of a pod (unless
/// `disableSessionTags`); an association's own `sessionTags` may not name them.
pub const EKS_SESSION_TAGS: [&str; 6] = [
    "eks-cluster-arn",
    "eks-cluster-name",
    "kubernetes-namespace",
    "kubernetes-service-account",
    "kubernetes-pod-name",
    "kubernetes-pod-uid",
];

/// STS allows 50 session tags; the six EKS ones leave 44.
pub const MAX_EXTRA_SESSION_TAGS: usize = 44;

/// The pattern the CRD's schema puts on `roleArn` and `targetRoleArn`: the
/// same strings as [`RoleArn::parse`] (with `minLength: 20`, `maxLength:
/// 2048`).
pub const ROLE_ARN_PATTERN: &str =
    r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/([A-Za-z0-9_+=,.@-]+/)*[A-Za-z0-9_+=,.@-]{1,64}$";

/// The fields of an association that decide who gets what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// The object's name (cluster-scoped).
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.creationTimestamp` as RFC 3339 (sorts as time does).
    pub created: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    pub target_role_arn: Option<String>,
    pub disable_session_tags: bool,
    /// Extra static session tags (beyond EKS).
    pub session_tags: BTreeMap<String, String>,
    /// Which tags are transitive; `None`: all of them, as EKS.
    pub transitive_session_tags: Option<Vec<String>>,
}

/// EKS's association id form, `a-` and 17 lowercase alphanumerics, taken
/// from the object's uid: stable while the object lives, new when it is
/// re-created (so a broker's `ExternalId` changes with it, as on EKS).
pub fn association_id(uid: &str) -> String {
    let hex: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .chain(std::iter::repeat('0'))
        .take(17)
        .collect();
    format!("a-{hex}")
}

/// A Kubernetes DNS label (namespaces) or subdomain (ServiceAccounts).
fn dns_name(s: &str, max: usize, dots: bool) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && l.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        && (dots || !s.contains('.'))
}

/// Characters STS allows in tag keys and values.
fn tag_chars(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

impl Association {
    /// Why the spec cannot be used, if it cannot (each problem a sentence).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !dns_name(&self.namespace, 63, false) {
            out.push(format!(
                "namespace {:?} is not a namespace name",
                self.namespace
            ));
        }
        if !dns_name(&self.service_account, 253, true) {
            out.push(format!(
                "serviceAccount {:?} is not a ServiceAccount name",
                self.service_account
            ));
        }
        if let Err(e) = RoleArn::parse(&self.role_arn) {
            out.push(format!("roleArn {:?}: {e}", self.role_arn));
        }
        if let Some(t) = &self.target_role_arn {
            if let Err(e) = RoleArn::parse(t) {
                out.push(format!("targetRoleArn {t:?}: {e}"));
            }
        }
        if self.session_tags.len() > MAX_EXTRA_SESSION_TAGS {
            out.push(format!(
                "{} sessionTags: STS allows 50 session tags, {} of them EKS's",
                self.session_tags.len(),
                EKS_SESSION_TAGS.len()
            ));
        }
        for (k, v) in &self.session_tags {
            if EKS_SESSION_TAGS.contains(&k.as_str()) {
                out.push(format!(
                    "sessionTags may not set {k:?}: EKS's session tags are set per pod"
                ));
            } else if k.to_ascii_lowercase().starts_with("aws:") {
                out.push(format!(
                    "sessionTags key {k:?}: the aws: prefix is reserved"
                ));
            } else if k.is_empty() || k.chars().count() > 128 || !tag_chars(k) {
                out.push(format!(
                    "sessionTags key {k:?} is not 1-128 characters STS allows"
                ));
            }
            if v.chars().count() > 256 || !tag_chars(v) {
                out.push(format!(
                    "sessionTags[{k:?}] is not 0-256 characters STS allows"
                ));
            }
        }
        for t in self.transitive_session_tags.iter().flatten() {
            if !EKS_SESSION_TAGS.contains(&t.as_str()) && !self.session_tags.contains_key(t) {
                out.push(format!(
                    "transitiveSessionTags names {t:?}, which is neither one of EKS's session tags nor in sessionTags"
                ));
            }
        }
        out
    }
}

#[cfg(feature = "json")]
impl Association {
    /// The association a `PodIdentityAssociation` object's `spec` describes
    /// (with the object's name, uid and creationTimestamp), if it has the
    /// required fields; whether it is valid is [`Association::problems`].
    pub fn from_json(
        name: &str,
        uid: &str,
        created: &str,
        spec: &serde_json::Value,
    ) -> Option<Association> {
        use serde_json::Value;
        let s = |k: &str| spec.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Association {
            name: name.to_string(),
            uid: uid.to_string(),
            created: created.to_string(),
            namespace: s("namespace")?,
            service_account: s("serviceAccount")?,
            role_arn: s("roleArn")?,
            target_role_arn: s("targetRoleArn"),
            disable_session_tags: spec
                .get("disableSessionTags")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            session_tags: spec
                .get("sessionTags")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            transitive_session_tags: spec
                .get("transitiveSessionTags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                }),
        })
    }
}

/// The pod a session is for, from its verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

/// The session tags of a pod's session and which of them are transitive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionTags {
    /// In a stable order: EKS's six (`eks-cluster-arn` only when the
    /// cluster has an ARN), then the association's own, by key.
    pub tags: Vec<(String, String)>,
    pub transitive: Vec<String>,
}

impl Association {
    /// What EKS would tag the pod's session with (nothing with
    /// `disableSessionTags`), plus the association's `sessionTags`; all
    /// transitive, as EKS, unless `transitiveSessionTags` names some. The
    /// broker sets exactly these, and trust policies the CLI writes
    /// condition on them, so both read them from here.
    pub fn session_tags(
        &self,
        cluster_name: &str,
        cluster_arn: Option<&str>,
        pod: &PodRef,
    ) -> SessionTags {
        if self.disable_session_tags {
            return SessionTags::default();
        }
        let mut tags: Vec<(String, String)> = Vec::new();
        if let Some(arn) = cluster_arn {
            tags.push(("eks-cluster-arn".into(), arn.into()));
        }
        tags.extend([
            ("eks-cluster-name".to_string(), cluster_name.to_string()),
            ("kubernetes-namespace".into(), pod.namespace.into()),
            (
                "kubernetes-service-account".into(),
                pod.service_account.into(),
            ),
            ("kubernetes-pod-name".into(), pod.name.into()),
            ("kubernetes-pod-uid".into(), pod.uid.into()),
        ]);
        tags.extend(
            self.session_tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let transitive = match &self.transitive_session_tags {
            None => tags.iter().map(|(k, _)| k.clone()).collect(),
            Some(keys) => tags
                .iter()
                .map(|(k, _)| k.clone())
                .filter(|k| keys.contains(k))
                .collect(),
        };
        SessionTags { tags, transitive }
    }
}

/// The role session name of a pod's session: `eks-<cluster>-<pod>`, cut to
/// fit, then `-` and the first 8 characters of the pod's uid, in IAM's
/// characters (`[A-Za-z0-9_+=,.@-]`), at most 64: the pod's name shows in
/// CloudTrail, and the name is the same for every session of one pod.
pub fn session_name(cluster_name: &str, pod_name: &str, pod_uid: &str) -> String {
    let uid: String = RoleArn::sanitize_name(pod_uid).chars().take(8).collect();
    let base = RoleArn::sanitize_name(&format!("eks-{cluster_name}-{pod_name}"));
    let room = RoleArn::MAX_NAME_LEN - 1 - uid.len();
    let base: String = base.chars().take(room).collect();
    format!("{base}-{uid}")
}

/// The association that counts for each (namespace, ServiceAccount) among
/// valid ones: the oldest (then the first name), as EKS allows only one and
/// the first one made is the one that was working. The others are reported
/// by whoever writes status.
pub fn winners(all: &[Association]) -> BTreeMap<(String, String), &Association> {
    let mut out: BTreeMap<(String, String), &Association> = BTreeMap::new();
    for a in all.iter().filter(|a| a.problems().is_empty()) {
        let key = (a.namespace.clone(), a.service_account.clone());
        match out.get(&key) {
            Some(cur) if (&cur.created, &cur.name) <= (&a.created, &a.name) => {}
            _ => {
                out.insert(key, a);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assoc(name: &str, created: &str, ns: &str, sa: &str) -> Association {
        Association {
            name: name.into(),
            uid: format!("uid-{name}"),
            created: created.into(),
            namespace: ns.into(),
            service_account: sa.into(),
            role_arn: "arn:aws:iam::111122223333:role/app".into(),
            target_role_arn: None,
            disable_session_tags: false,
            session_tags: BTreeMap::new(),
            transitive_session_tags: None,
        }
    }

    #[test]
    fn ids_have_ekss_form_and_follow_the_uid() {
        let id = association_id("6f1d2c3b-4a5e-11ee-be56-0242ac120002");
        assert_eq!(id, "a-6f1d2c3b4a5e11eeb");
        assert_eq!(id.len(), 19);
        assert_ne!(id, association_id("7f1d2c3b-4a5e-11ee-be56-0242ac120002"));
        assert_eq!(association_id(""), "a-00000000000000000");
    }

    #[test]
    fn the_oldest_valid_association_wins() {
        let mut bad = assoc("0-invalid", "2020-01-01T00:00:00Z", "app", "web");
        bad.role_arn = "not-an-arn".into();
        let all = vec![
            assoc("newer", "2026-03-01T00:00:00Z", "app", "web"),
            assoc("older", "2026-01-01T00:00:00Z", "app", "web"),
            assoc("b-same-time", "2026-02-01T00:00:00Z", "app", "api"),
            assoc("a-same-time", "2026-02-01T00:00:00Z", "app", "api"),
            bad,
            assoc("other-ns", "2026-05-01T00:00:00Z", "other", "web"),
        ];
        let w = winners(&all);
        let name = |ns: &str, sa: &str| w.get(&(ns.into(), sa.into())).map(|a| a.name.as_str());
        assert_eq!(name("app", "web"), Some("older"));
        assert_eq!(name("app", "api"), Some("a-same-time"));
        assert_eq!(name("other", "web"), Some("other-ns"));
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn session_tags_and_names() {
        let pod = PodRef {
            namespace: "apps",
            service_account: "web",
            name: "web-7d9f-x2",
            uid: "0f3c2d1e-aaaa-bbbb-cccc-000000000000",
        };
        let mut a = assoc("a", "2026-01-01T00:00:00Z", "apps", "web");
        let t = a.session_tags("prod", None, &pod);
        let keys: Vec<&str> = t.tags.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, &EKS_SESSION_TAGS[1..]);
        assert_eq!(
            t.tags[2],
            ("kubernetes-service-account".into(), "web".into())
        );
        assert_eq!(t.transitive.len(), 5, "all transitive, as EKS");
        let t = a.session_tags(
            "prod",
            Some("arn:aws:eks:us-east-1:111122223333:cluster/prod"),
            &pod,
        );
        assert_eq!(t.tags[0].0, "eks-cluster-arn");
        a.session_tags.insert("team".into(), "payments".into());
        a.transitive_session_tags = Some(vec!["kubernetes-namespace".into(), "team".into()]);
        let t = a.session_tags("prod", None, &pod);
        assert_eq!(
            t.tags.last().unwrap(),
            &("team".to_string(), "payments".to_string())
        );
        assert_eq!(t.transitive, ["kubernetes-namespace", "team"]);
        a.disable_session_tags = true;
        assert_eq!(a.session_tags("prod", None, &pod), SessionTags::default());

        assert_eq!(
            session_name("prod", "web-7d9f-x2", pod.uid),
            "eks-prod-web-7d9f-x2-0f3c2d1e"
        );
        let long = session_name(&"c".repeat(40), &"p".repeat(253), pod.uid);
        assert_eq!(long.len(), 64);
        assert!(long.ends_with("-0f3c2d1e"));
        let odd = session_name("prod", "we b/x", "uid");
        assert!(
            odd.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)),
            "{odd}"
        );
        assert_eq!(
            session_name("prod", "web", pod.uid),
            session_name("prod", "web", pod.uid)
        );
    }

    #[test]
    fn problems_table() {
        // (mutation, expected problem fragment or "" for valid)
        type Edit = fn(&mut Association);
        let cases: &[(Edit, &str)] = &[
            (|_| {}, ""),
            (|a| a.namespace = "Bad_NS".into(), "namespace"),
            (|a| a.namespace = "a.b".into(), "namespace"),
            (|a| a.service_account = "sa.with.dots".into(), ""),
            (|a| a.service_account = "-sa".into(), "serviceAccount"),
            (|a| a.role_arn = "arn:aws:iam::123:role/x".into(), "roleArn"),
            (
                |a| a.role_arn = "arn:aws-cn:iam::111122223333:role/path/to/r".into(),
                "",
            ),
            (
                |a| a.target_role_arn = Some("arn:aws:s3:::bucket".into()),
                "targetRoleArn",
            ),
            (
                |a| {
                    a.session_tags.insert("team".into(), "payments".into());
                },
                "",
            ),
            (
                |a| {
                    a.session_tags
                        .insert("kubernetes-pod-name".into(), "x".into());
                },
                "EKS's session tags",
            ),
            (
                |a| {
                    a.session_tags.insert("AWS:x".into(), "x".into());
                },
                "reserved",
            ),
            (
                |a| {
                    a.session_tags.insert("k".into(), "v;".into());
                },
                "STS allows",
            ),
            (
                |a| {
                    a.session_tags.insert("k".repeat(129), "v".into());
                },
                "1-128",
            ),
            (
                |a| a.transitive_session_tags = Some(vec!["kubernetes-namespace".into()]),
                "",
            ),
            (
                |a| a.transitive_session_tags = Some(vec!["team".into()]),
                "transitiveSessionTags",
            ),
            (
                |a| {
                    for i in 0..45 {
                        a.session_tags.insert(format!("t{i}"), "v".into());
                    }
                },
                "50 session tags",
            ),
        ];
        for (i, (edit, want)) in cases.iter().enumerate() {
            let mut a = assoc("a", "2026-01-01T00:00:00Z", "app", "web");
            edit(&mut a);
            let p = a.problems();
            if want.is_empty() {
                assert!(p.is_empty(), "case {i}: {p:?}");
            } else {
                assert!(p.iter().any(|m| m.contains(want)), "case {i}: {p:?}");
            }
        }
    }
}
