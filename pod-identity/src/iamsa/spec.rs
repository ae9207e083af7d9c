//! What the user asks for, from flags or from the `iam.serviceAccounts`
//! part of an eksctl `ClusterConfig` file, validated before anything is
//! read or changed.

use std::collections::BTreeMap;
use std::path::Path;

use contract::RoleArn;
use serde::Deserialize;

use crate::error::{Error, Result};

/// One ServiceAccount bound to one IAM role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    pub namespace: String,
    pub name: String,
    /// The role's name (default: derived from the cluster, namespace and name).
    pub role_name: Option<String>,
    /// An existing role to annotate with, changing nothing in IAM (eksctl's
    /// `attachRoleARN`).
    pub attach_role_arn: Option<String>,
    pub policy_arns: Vec<String>,
    /// An inline policy document for the role (eksctl's `attachPolicy`),
    /// written as the role's inline policy [`crate::iam::INLINE_POLICY_NAME`].
    pub inline_policy: Option<serde_json::Value>,
    pub permissions_boundary: Option<String>,
    /// eksctl's `wellKnownPolicies`, by set name ([`super::well_known::NAMES`]).
    pub well_known: Vec<String>,
    pub role_only: bool,
    pub override_existing: bool,
    /// Create the role with no permissions on purpose (eksctl refuses a role
    /// without any policy).
    pub allow_no_policy: bool,
    pub tags: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
}

/// An `attachPolicy` document: a JSON object with a `Statement`.
fn inline_policy(v: &serde_yaml::Value) -> Result<serde_json::Value, String> {
    let doc: serde_json::Value = serde_json::to_value(v)
        .map_err(|e| format!("attachPolicy is not a policy document: {e}"))?;
    match doc.get("Statement") {
        Some(serde_json::Value::Array(a)) if !a.is_empty() => {}
        Some(serde_json::Value::Object(_)) => {}
        _ => {
            return Err(
                "attachPolicy must be an IAM policy document with at least one Statement".into(),
            )
        }
    }
    let len = crate::policy::trust::counted_len(&doc);
    if len > MAX_INLINE_POLICY_LEN {
        return Err(format!(
            "attachPolicy is {len} characters; IAM allows at most {MAX_INLINE_POLICY_LEN} for a role's inline policies (use attachPolicyARNs with managed policies)"
        ));
    }
    Ok(doc)
}

/// IAM's limit on the total size of a role's inline policies (characters,
/// whitespace not counted).
const MAX_INLINE_POLICY_LEN: usize = 10_240;

/// A DNS-1123 label, as Kubernetes requires of a namespace: at most 63
/// lower-case letters, digits and '-', starting and ending alphanumeric.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A DNS-1123 subdomain, as Kubernetes requires of a ServiceAccount name:
/// at most 253 characters of '.'-separated labels.
fn dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns_label)
}

/// Checks a namespace and a ServiceAccount name as the API server would.
pub fn validate_names(namespace: &str, name: &str) -> Result<()> {
    if !dns_label(namespace) {
        return Err(Error::Usage(format!(
            "namespace {namespace:?} is not a valid Kubernetes namespace name (a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"
        )));
    }
    if !dns_subdomain(name) {
        return Err(Error::Usage(format!(
            "ServiceAccount name {name:?} is not a valid Kubernetes name (a DNS-1123 subdomain: '.'-separated labels of lower-case letters, digits and '-', at most 253 characters)"
        )));
    }
    Ok(())
}

/// A cluster name as eksctl accepts it: a letter, then letters, digits and
/// '-', at most 100 characters. It is part of default role names, where
/// this rule keeps them unambiguous.
pub fn validate_cluster_name(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 100
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "cluster name {s:?} is not valid (a letter, then letters, digits and '-', at most 100 characters)"
        )))
    }
}

fn valid_policy_arn(s: &str) -> Result<()> {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "iam"
        && parts[3].is_empty()
        && (parts[4] == "aws"
            || (parts[4].len() == 12 && parts[4].bytes().all(|b| b.is_ascii_digit())))
        && parts[5]
            .strip_prefix("policy/")
            .and_then(|rest| rest.rsplit('/').next())
            .is_some_and(|name| {
                !name.is_empty()
                    && name.len() <= 128
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c))
            });
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{s:?} is not an IAM policy ARN (arn:aws:iam::<account>:policy/<name>, or arn:aws:iam::aws:policy/<name> for an AWS managed policy)"
        )))
    }
}

/// IAM's limit on tags per role.
pub const MAX_ROLE_TAGS: usize = 50;

/// Characters IAM allows in tag keys and values.
fn tag_chars(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

impl Spec {
    /// Checks every field; called before anything is read from AWS.
    pub fn validate(&self) -> Result<()> {
        validate_names(&self.namespace, &self.name)?;
        if let Some(r) = &self.role_name {
            if r.is_empty() || r.len() > 64 || contract::RoleArn::sanitize_name(r) != *r {
                return Err(Error::Usage(format!(
                    "role name {r:?} is not 1-64 characters of [A-Za-z0-9_+=,.@-]"
                )));
            }
        }
        if let Some(a) = &self.attach_role_arn {
            RoleArn::parse(a).map_err(|e| Error::Usage(format!("--attach-role-arn {a:?}: {e}")))?;
            // eksctl's rule: an attached role is used as it is, so nothing
            // that would shape a role may come with it.
            let conflicts: Vec<&str> = [
                ("roleName (--role-name)", self.role_name.is_some()),
                (
                    "attachPolicyARNs (--attach-policy-arn)",
                    !self.policy_arns.is_empty(),
                ),
                ("attachPolicy", self.inline_policy.is_some()),
                ("wellKnownPolicies", !self.well_known.is_empty()),
                (
                    "permissionsBoundary (--permissions-boundary)",
                    self.permissions_boundary.is_some(),
                ),
                ("roleOnly (--role-only)", self.role_only),
                ("tags (--tags)", !self.tags.is_empty()),
            ]
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| name)
            .collect();
            if !conflicts.is_empty() {
                return Err(Error::Usage(format!(
                    "attachRoleARN (--attach-role-arn) uses an existing role as it is: it cannot be combined with {}",
                    conflicts.join(", ")
                )));
            }
        }
        for p in self.policy_arns.iter().chain(&self.permissions_boundary) {
            valid_policy_arn(p)?;
        }
        for w in &self.well_known {
            if !super::well_known::NAMES.contains(&w.as_str()) {
                return Err(Error::Usage(format!(
                    "wellKnownPolicies: {w:?} is not one of eksctl's sets ({})",
                    super::well_known::NAMES.join(", ")
                )));
            }
        }
        let reserved = super::RECORD_TAGS.len() + 1;
        if self.tags.len() + reserved > MAX_ROLE_TAGS {
            return Err(Error::Usage(format!(
                "{} tags: IAM allows {MAX_ROLE_TAGS} per role and pod-identity writes {reserved} of its own, so at most {} may be given",
                self.tags.len(),
                MAX_ROLE_TAGS - reserved
            )));
        }
        for (k, v) in &self.tags {
            if k.is_empty()
                || k.chars().count() > 128
                || v.chars().count() > 256
                || !tag_chars(k)
                || !tag_chars(v)
                || k.to_ascii_lowercase().starts_with("aws:")
            {
                return Err(Error::Usage(format!("tag {k:?}={v:?}: keys are 1-128 characters and may not start with aws: (in any case), values at most 256; both only letters, digits, spaces and _ . : / = + - @")));
            }
            if k.to_ascii_lowercase().starts_with(super::RECORD_TAG_PREFIX) {
                return Err(Error::Usage(format!(
                    "tag {k}: tags under {} are set by pod-identity itself",
                    super::RECORD_TAG_PREFIX
                )));
            }
        }
        if self.attach_role_arn.is_none()
            && self.policy_arns.is_empty()
            && self.inline_policy.is_none()
            && self.well_known.is_empty()
            && !self.allow_no_policy
        {
            return Err(Error::Usage(format!(
                "{}/{}: the role would have no permissions. Give --attach-policy-arn (or attachPolicyARNs, attachPolicy, wellKnownPolicies in a file), use an existing role with --attach-role-arn, or pass --allow-no-policy to create it without permissions on purpose",
                self.namespace, self.name
            )));
        }
        Ok(())
    }

    /// The IAM role's default name when `--role-name` is not given:
    /// `pod-identity_[<cluster>_]<namespace>_<name>`. '_' occurs in no
    /// namespace, ServiceAccount or cluster name, so two different
    /// ServiceAccounts never get one name (`a-b/c` and `a/b-c` differ).
    /// Over IAM's 64 characters, the first 55 and a hash of the whole.
    pub fn default_role_name(&self, cluster: Option<&str>) -> String {
        let full = match cluster {
            Some(c) => format!("pod-identity_{c}_{}_{}", self.namespace, self.name),
            None => format!("pod-identity_{}_{}", self.namespace, self.name),
        };
        if full.len() <= 64 {
            return full;
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, full.as_bytes());
        let hash: String = digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}-{hash}", &full[..55])
    }

    /// The IAM role's name: `--role-name`, the attached role's, else the
    /// [default](Spec::default_role_name). The same inputs always give the
    /// same name, so re-running finds the same role.
    pub fn role_name(&self, cluster: Option<&str>) -> String {
        if let Some(r) = &self.role_name {
            return r.clone();
        }
        if let Some(a) = &self.attach_role_arn {
            return a.rsplit('/').next().unwrap_or_default().to_string();
        }
        self.default_role_name(cluster)
    }
}

/// `Key=Value,Key2=Value 2` (eksctl's `--tags`).
pub fn parse_tags(s: &str) -> Result<Vec<(String, String)>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| Error::Usage(format!("--tags: {p:?} is not Key=Value")))
        })
        .collect()
}

/// The parts of an eksctl `ClusterConfig` this tool reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterConfig {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: ClusterMetadata,
    #[serde(default)]
    iam: Option<Iam>,
}

#[derive(Debug, Default, Deserialize)]
struct ClusterMetadata {
    name: Option<String>,
    region: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Iam {
    #[serde(default, rename = "withOIDC")]
    with_oidc: bool,
    #[serde(default)]
    service_accounts: Vec<IamServiceAccount>,
    /// Read so that it is refused by name, never ignored.
    #[serde(default)]
    pod_identity_associations: Vec<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IamServiceAccount {
    metadata: SaMetadata,
    #[serde(default, rename = "attachPolicyARNs")]
    attach_policy_arns: Vec<String>,
    #[serde(default, rename = "attachRoleARN")]
    attach_role_arn: Option<String>,
    role_name: Option<String>,
    #[serde(default)]
    role_only: bool,
    permissions_boundary: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    attach_policy: Option<serde_yaml::Value>,
    #[serde(default)]
    well_known_policies: BTreeMap<String, bool>,
    // Read so that it is named in the error below, not as an unknown field.
    status: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaMetadata {
    name: String,
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The cluster name, region and ServiceAccounts of a `ClusterConfig` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub cluster: Option<String>,
    pub region: Option<String>,
    /// `iam.withOIDC`: make sure the issuer's IAM OIDC provider exists.
    pub with_oidc: bool,
    pub specs: Vec<Spec>,
}

/// Reads the `iam.serviceAccounts` of an eksctl `ClusterConfig`.
pub fn read_cluster_config(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse_cluster_config(&text).map_err(|message| Error::InvalidFile {
        path: path.to_path_buf(),
        message,
    })
}

pub fn parse_cluster_config(text: &str) -> Result<ConfigFile, String> {
    let de = serde_yaml::Deserializer::from_str(text);
    let config: ClusterConfig =
        serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    if config.kind.as_deref() != Some("ClusterConfig")
        || !config
            .api_version
            .as_deref()
            .unwrap_or_default()
            .starts_with("eksctl.io/")
    {
        return Err(
            "not an eksctl ClusterConfig (apiVersion eksctl.io/v1alpha5, kind ClusterConfig)"
                .into(),
        );
    }
    if let Some(name) = &config.metadata.name {
        validate_cluster_name(name).map_err(|e| format!("metadata.name: {e}"))?;
    }
    let iam = config.iam.unwrap_or(Iam {
        with_oidc: false,
        service_accounts: Vec::new(),
        pod_identity_associations: Vec::new(),
    });
    if !iam.pod_identity_associations.is_empty() {
        return Err(format!(
            "iam.podIdentityAssociations ({} entries) is not supported by `iamserviceaccount`: nothing was applied. Remove it from this file (EKS Pod Identity associations are not IAM roles for ServiceAccounts)",
            iam.pod_identity_associations.len()
        ));
    }
    let with_oidc = iam.with_oidc;
    let accounts = iam.service_accounts;
    if accounts.is_empty() {
        return Err("iam.serviceAccounts is empty: nothing to apply".into());
    }
    let mut specs: Vec<Spec> = Vec::new();
    for (i, sa) in accounts.into_iter().enumerate() {
        let at = format!("iam.serviceAccounts[{i}] ({})", sa.metadata.name);
        if sa.status.is_some() {
            return Err(format!(
                "{at}: status is written by eksctl, not read: remove it"
            ));
        }
        let inline = match &sa.attach_policy {
            Some(v) => Some(inline_policy(v).map_err(|e| format!("{at}: {e}"))?),
            None => None,
        };
        let spec = Spec {
            namespace: sa.metadata.namespace.unwrap_or_else(|| "default".into()),
            name: sa.metadata.name,
            role_name: sa.role_name,
            attach_role_arn: sa.attach_role_arn,
            policy_arns: sa.attach_policy_arns,
            inline_policy: inline,
            permissions_boundary: sa.permissions_boundary,
            well_known: sa
                .well_known_policies
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(k, _)| k)
                .collect(),
            role_only: sa.role_only,
            override_existing: false,
            allow_no_policy: false,
            tags: sa.tags.into_iter().collect(),
            labels: sa.metadata.labels.into_iter().collect(),
            annotations: sa.metadata.annotations.into_iter().collect(),
        };
        spec.validate().map_err(|e| format!("{at}: {e}"))?;
        if let Some(j) = specs
            .iter()
            .position(|s| s.namespace == spec.namespace && s.name == spec.name)
        {
            return Err(format!(
                "{at}: ServiceAccount {}/{} is listed twice (also iam.serviceAccounts[{j}])",
                spec.namespace, spec.name
            ));
        }
        specs.push(spec);
    }
    Ok(ConfigFile {
        cluster: config.metadata.name,
        region: config.metadata.region,
        with_oidc,
        specs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_stable_and_bounded() {
        let s = Spec {
            namespace: "ns".into(),
            name: "app".into(),
            ..Default::default()
        };
        assert_eq!(s.role_name(None), "pod-identity_ns_app");
        assert_eq!(s.role_name(Some("prod")), "pod-identity_prod_ns_app");
        let long = Spec {
            namespace: "n".repeat(60),
            name: "a".repeat(60),
            ..Default::default()
        };
        let name = long.role_name(None);
        assert_eq!(name.len(), 64);
        assert_eq!(name, long.role_name(None));
        let other = Spec {
            namespace: "n".repeat(60),
            name: "b".repeat(60),
            ..Default::default()
        };
        assert_ne!(other.role_name(None), name);
        let given = Spec {
            role_name: Some("mine".into()),
            ..s.clone()
        };
        assert_eq!(given.role_name(Some("x")), "mine");
    }

    #[test]
    fn validation() {
        let ok = Spec {
            namespace: "ns".into(),
            name: "app".into(),
            policy_arns: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
            ..Default::default()
        };
        ok.validate().unwrap();
        let bad: Vec<(&str, Spec)> = vec![
            (
                "namespace",
                Spec {
                    namespace: "NS".into(),
                    ..ok.clone()
                },
            ),
            (
                "name",
                Spec {
                    name: "".into(),
                    ..ok.clone()
                },
            ),
            (
                "role name",
                Spec {
                    role_name: Some("a b".into()),
                    ..ok.clone()
                },
            ),
            (
                "policy",
                Spec {
                    policy_arns: vec!["ReadOnlyAccess".into()],
                    ..ok.clone()
                },
            ),
            (
                "boundary",
                Spec {
                    permissions_boundary: Some("arn:aws:iam::1:role/x".into()),
                    ..ok.clone()
                },
            ),
            (
                "attach role",
                Spec {
                    attach_role_arn: Some("arn:aws:iam::1:role/x".into()),
                    ..ok.clone()
                },
            ),
            (
                "attach + policy",
                Spec {
                    attach_role_arn: Some("arn:aws:iam::123456789012:role/x".into()),
                    policy_arns: vec!["arn:aws:iam::aws:policy/X".into()],
                    ..ok.clone()
                },
            ),
            (
                "owner tag",
                Spec {
                    tags: vec![(super::super::OWNER_TAG.into(), "me".into())],
                    ..ok.clone()
                },
            ),
            (
                "aws tag",
                Spec {
                    tags: vec![("aws:x".into(), "me".into())],
                    ..ok.clone()
                },
            ),
            (
                "AWS tag in another case",
                Spec {
                    tags: vec![("AWS:x".into(), "me".into())],
                    ..ok.clone()
                },
            ),
            (
                "a record tag",
                Spec {
                    tags: vec![("pod-identity.io/namespace".into(), "x".into())],
                    ..ok.clone()
                },
            ),
            (
                "too many tags",
                Spec {
                    tags: (0..47).map(|i| (format!("k{i}"), "v".into())).collect(),
                    ..ok.clone()
                },
            ),
            (
                "tag character",
                Spec {
                    tags: vec![("a;b".into(), "v".into())],
                    ..ok.clone()
                },
            ),
            (
                "no policy",
                Spec {
                    policy_arns: vec![],
                    ..ok.clone()
                },
            ),
            (
                "namespace with a dot",
                Spec {
                    namespace: "a.b".into(),
                    ..ok.clone()
                },
            ),
            (
                "namespace of 64",
                Spec {
                    namespace: "n".repeat(64),
                    ..ok.clone()
                },
            ),
            (
                "name ending in -",
                Spec {
                    name: "app-".into(),
                    ..ok.clone()
                },
            ),
            (
                "name with an empty label",
                Spec {
                    name: "a..b".into(),
                    ..ok.clone()
                },
            ),
            (
                "name with _",
                Spec {
                    name: "a_b".into(),
                    ..ok.clone()
                },
            ),
            (
                "unknown well-known set",
                Spec {
                    well_known: vec!["autoscaler".into()],
                    ..ok.clone()
                },
            ),
            (
                "policy ARN of a role",
                Spec {
                    policy_arns: vec!["arn:aws:iam::123456789012:role/x".into()],
                    ..ok.clone()
                },
            ),
            (
                "policy ARN with a region",
                Spec {
                    policy_arns: vec!["arn:aws:iam:us-east-1:123456789012:policy/x".into()],
                    ..ok.clone()
                },
            ),
        ];
        // eksctl's refusals with attachRoleARN, each alone.
        let attach = Spec {
            attach_role_arn: Some("arn:aws:iam::123456789012:role/x".into()),
            policy_arns: vec![],
            ..ok.clone()
        };
        attach.validate().unwrap();
        for (field, s) in [
            (
                "roleName",
                Spec {
                    role_name: Some("r".into()),
                    ..attach.clone()
                },
            ),
            (
                "attachPolicyARNs",
                Spec {
                    policy_arns: vec!["arn:aws:iam::aws:policy/X".into()],
                    ..attach.clone()
                },
            ),
            (
                "attachPolicy",
                Spec {
                    inline_policy: Some(serde_json::json!({"Statement": {}})),
                    ..attach.clone()
                },
            ),
            (
                "wellKnownPolicies",
                Spec {
                    well_known: vec!["autoScaler".into()],
                    ..attach.clone()
                },
            ),
            (
                "permissionsBoundary",
                Spec {
                    permissions_boundary: Some("arn:aws:iam::aws:policy/X".into()),
                    ..attach.clone()
                },
            ),
            (
                "roleOnly",
                Spec {
                    role_only: true,
                    ..attach.clone()
                },
            ),
            (
                "tags",
                Spec {
                    tags: vec![("a".into(), "b".into())],
                    ..attach.clone()
                },
            ),
        ] {
            let e = s.validate().unwrap_err().to_string();
            assert!(
                e.contains("cannot be combined with") && e.contains(field),
                "{field}: {e}"
            );
        }
        // The explicit flag allows a role without policies; names as
        // Kubernetes allows them pass; 46 tags fit beside pod-identity's 4.
        for good in [
            Spec {
                policy_arns: vec![],
                allow_no_policy: true,
                ..ok.clone()
            },
            Spec {
                name: "a.b-c.d".into(),
                namespace: "a-1".into(),
                ..ok.clone()
            },
            Spec {
                tags: (0..46).map(|i| (format!("k{i}"), "v v".into())).collect(),
                ..ok.clone()
            },
            Spec {
                policy_arns: vec![
                    "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy".into(),
                ],
                ..ok.clone()
            },
        ] {
            good.validate().unwrap();
        }
        assert!(validate_cluster_name("prod-1").is_ok());
        for bad in ["1prod", "pro_d", "", &"c".repeat(101)] {
            assert!(validate_cluster_name(bad).is_err(), "{bad}");
        }
        for (what, s) in bad {
            assert!(s.validate().is_err(), "{what}");
        }
        assert_eq!(
            parse_tags("Owner=John, Team=Some Team").unwrap(),
            vec![
                ("Owner".into(), "John".into()),
                ("Team".into(), "Some Team".into())
            ]
        );
        assert!(parse_tags("Owner").is_err());
    }

    #[test]
    fn cluster_config() {
        let text = r#"
apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata: {name: prod, region: eu-west-1}
vpc: {cidr: 10.0.0.0/16}
iam:
  withOIDC: true
  serviceAccounts:
  - metadata: {name: s3-reader, namespace: backend, labels: {team: b}}
    attachPolicyARNs: ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]
    roleName: s3-reader
    tags: {Owner: john}
  - metadata: {name: cache}
    attachPolicyARNs: ["arn:aws:iam::aws:policy/AmazonElastiCacheFullAccess"]
    roleOnly: true
    permissionsBoundary: "arn:aws:iam::123456789012:policy/boundary"
"#;
        let c = parse_cluster_config(text).unwrap();
        assert_eq!(c.cluster.as_deref(), Some("prod"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.specs.len(), 2);
        assert_eq!(c.specs[0].role_name.as_deref(), Some("s3-reader"));
        assert_eq!(c.specs[0].labels, vec![("team".into(), "b".into())]);
        assert_eq!(c.specs[1].namespace, "default");
        assert!(c.specs[1].role_only);
        for (bad, want) in [
            ("kind: Pod", "not an eksctl ClusterConfig"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: []}", "empty"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: a}, wellKnownPolicies: {autoscaler: true}}]}", "not one of eksctl's sets"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: a}, wellKnownPolicies: {autoScaler: false}}]}", "no permissions"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {podIdentityAssociations: [{namespace: a}], serviceAccounts: [{metadata: {name: a}, attachPolicyARNs: [\"arn:aws:iam::aws:policy/X\"]}]}", "iam.podIdentityAssociations"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: a}, attachPolicyARNs: [\"arn:aws:iam::aws:policy/X\"]}, {metadata: {name: a}, attachPolicyARNs: [\"arn:aws:iam::aws:policy/Y\"]}]}", "listed twice"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: my_cluster}\niam: {serviceAccounts: [{metadata: {name: a}, attachPolicyARNs: [\"arn:aws:iam::aws:policy/X\"]}]}", "cluster name"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: a}, attachRoleARN: \"arn:aws:iam::123456789012:role/r\", attachPolicy: {Statement: {Effect: Allow}}}]}", "cannot be combined with attachPolicy"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: a}, roleNmae: x}]}", "roleNmae"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: A}}]}", "valid Kubernetes name"),
            (": :", ""),
        ] {
            let e = parse_cluster_config(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn attach_policy_is_read_as_the_role_inline_policy() {
        let text = "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  serviceAccounts:\n  - metadata: {name: app, namespace: ns}\n    attachPolicy:\n      Version: \"2012-10-17\"\n      Statement:\n      - Effect: Allow\n        Action: [\"s3:GetObject\"]\n        Resource: \"arn:aws:s3:::b/*\"\n";
        let c = parse_cluster_config(text).unwrap();
        assert_eq!(
            c.specs[0].inline_policy,
            Some(serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}]}))
        );
        for bad in [
            "attachPolicy: {Statement: []}",
            "attachPolicy: [1]",
            "attachPolicy: {Version: x}",
        ] {
            let text = format!("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  serviceAccounts:\n  - metadata: {{name: app}}\n    {bad}\n");
            let err = parse_cluster_config(&text).unwrap_err();
            assert!(err.contains("at least one Statement"), "{bad}: {err}");
        }
        let huge = format!(
            "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  serviceAccounts:\n  - metadata: {{name: app}}\n    attachPolicy: {{Statement: [{{Effect: Allow, Action: \"s3:*\", Resource: [{}]}}]}}\n",
            (0..400).map(|i| format!("\"arn:aws:s3:::bucket-{i}/*\"")).collect::<Vec<_>>().join(", ")
        );
        let err = parse_cluster_config(&huge).unwrap_err();
        assert!(err.contains("IAM allows at most 10240"), "{err}");
    }

    #[test]
    fn eksctls_own_example_file_reads_unchanged() {
        let text = include_str!("../../tests/data/eksctl-13-iamserviceaccounts.yaml");
        let c = parse_cluster_config(text).unwrap();
        assert_eq!(c.cluster.as_deref(), Some("cluster-13"));
        assert!(c.with_oidc);
        let names: Vec<String> = c
            .specs
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect();
        assert_eq!(
            names,
            [
                "backend-apps/s3-reader",
                "kube-system/aws-load-balancer-controller",
                "backend-apps/cache-access",
                "kube-system/cluster-autoscaler"
            ]
        );
        assert_eq!(c.specs[1].well_known, ["awsLoadBalancerController"]);
        assert_eq!(c.specs[2].policy_arns.len(), 2);
        assert!(c.specs[3].inline_policy.is_some());
        assert_eq!(
            c.specs[3].labels,
            [("aws-usage".to_string(), "cluster-ops".to_string())]
        );
    }
}
