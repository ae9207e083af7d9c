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
    pub role_only: bool,
    pub override_existing: bool,
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

fn valid_name(what: &str, s: &str, max: usize) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{what} {s:?} is not a valid Kubernetes name (lower-case letters, digits, '-' and '.', at most {max} characters)"
        )))
    }
}

fn valid_policy_arn(s: &str) -> Result<()> {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    if parts.len() == 6 && parts[0] == "arn" && parts[2] == "iam" && parts[5].starts_with("policy/")
    {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{s:?} is not an IAM policy ARN (arn:aws:iam::<account>:policy/<name>)"
        )))
    }
}

impl Spec {
    /// Checks every field; called before anything is read from AWS.
    pub fn validate(&self) -> Result<()> {
        valid_name("namespace", &self.namespace, 63)?;
        valid_name("ServiceAccount name", &self.name, 253)?;
        if let Some(r) = &self.role_name {
            if r.is_empty() || r.len() > 64 || contract::RoleArn::sanitize_name(r) != *r {
                return Err(Error::Usage(format!(
                    "role name {r:?} is not 1-64 characters of [A-Za-z0-9_+=,.@-]"
                )));
            }
        }
        if let Some(a) = &self.attach_role_arn {
            RoleArn::parse(a).map_err(|e| Error::Usage(format!("--attach-role-arn {a:?}: {e}")))?;
            if self.role_name.is_some()
                || !self.policy_arns.is_empty()
                || self.permissions_boundary.is_some()
            {
                return Err(Error::Usage("--attach-role-arn uses an existing role as it is: it cannot be combined with --role-name, --attach-policy-arn or --permissions-boundary".into()));
            }
        }
        for p in self.policy_arns.iter().chain(&self.permissions_boundary) {
            valid_policy_arn(p)?;
        }
        for (k, v) in &self.tags {
            if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
                return Err(Error::Usage(format!("tag {k:?}={v:?}: keys are 1-128 characters and may not start with aws:, values at most 256")));
            }
            if k == super::OWNER_TAG {
                return Err(Error::Usage(format!(
                    "tag {k} is set by pod-identity itself"
                )));
            }
        }
        Ok(())
    }

    /// The IAM role's name: `--role-name`, else
    /// `pod-identity-[<cluster>-]<namespace>-<name>`, cut to 64 characters
    /// with a hash of the full name when longer. The same inputs always give
    /// the same name, so re-running finds the same role.
    pub fn role_name(&self, cluster: Option<&str>) -> String {
        if let Some(r) = &self.role_name {
            return r.clone();
        }
        if let Some(a) = &self.attach_role_arn {
            return a.rsplit('/').next().unwrap_or_default().to_string();
        }
        let full = match cluster {
            Some(c) => format!("pod-identity-{c}-{}-{}", self.namespace, self.name),
            None => format!("pod-identity-{}-{}", self.namespace, self.name),
        };
        let clean = contract::RoleArn::sanitize_name(&full);
        if clean.len() <= 64 {
            return clean;
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, full.as_bytes());
        let hash: String = digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}-{hash}", &clean[..55])
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
    #[serde(default)]
    service_accounts: Vec<IamServiceAccount>,
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
    // Read so that they are named in the error below, not as unknown fields.
    well_known_policies: Option<serde_yaml::Value>,
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
    let accounts = config.iam.map(|i| i.service_accounts).unwrap_or_default();
    if accounts.is_empty() {
        return Err("iam.serviceAccounts is empty: nothing to apply".into());
    }
    let mut specs = Vec::new();
    for (i, sa) in accounts.into_iter().enumerate() {
        let at = format!("iam.serviceAccounts[{i}] ({})", sa.metadata.name);
        for (field, present) in [
            ("wellKnownPolicies", sa.well_known_policies.is_some()),
            ("status", sa.status.is_some()),
        ] {
            if present {
                return Err(format!("{at}: {field} is not supported by pod-identity; use attachPolicyARNs with a managed policy, or attachPolicy with a policy document"));
            }
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
            role_only: sa.role_only,
            override_existing: false,
            tags: sa.tags.into_iter().collect(),
            labels: sa.metadata.labels.into_iter().collect(),
            annotations: sa.metadata.annotations.into_iter().collect(),
        };
        spec.validate().map_err(|e| format!("{at}: {e}"))?;
        specs.push(spec);
    }
    Ok(ConfigFile {
        cluster: config.metadata.name,
        region: config.metadata.region,
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
        assert_eq!(s.role_name(None), "pod-identity-ns-app");
        assert_eq!(s.role_name(Some("prod")), "pod-identity-prod-ns-app");
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
        ];
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
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: a}, wellKnownPolicies: {}}]}", "wellKnownPolicies is not supported"),
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
}
