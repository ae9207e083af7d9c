//! `iam.podIdentityAssociations` of an eksctl `ClusterConfig`, with eksctl's
//! field names, into the same [`Flags`] the command line gives (and so the
//! same checks). Refused by name rather than ignored: `wellKnownPolicies`
//! and `permissionPolicy` (inline documents; use `permissionPolicyARNs`),
//! and any field eksctl does not have.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::spec::Flags;
use crate::error::{Error, Result};

contract::message_error! {
    /// Why a ClusterConfig's podIdentityAssociations cannot be used.
    ConfigError
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterConfig {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    iam: Option<Iam>,
}

#[derive(Debug, Default, Deserialize)]
struct Metadata {
    name: Option<String>,
    region: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Iam {
    #[serde(default)]
    pod_identity_associations: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    namespace: String,
    service_account_name: String,
    #[serde(rename = "roleARN")]
    role_arn: Option<String>,
    role_name: Option<String>,
    #[serde(default, rename = "permissionPolicyARNs")]
    permission_policy_arns: Vec<String>,
    #[serde(rename = "permissionsBoundaryARN")]
    permissions_boundary_arn: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    create_service_account: bool,
    #[serde(rename = "targetRoleARN")]
    target_role_arn: Option<String>,
    #[serde(default)]
    disable_session_tags: bool,
    // Read so that they are refused by name below.
    permission_policy: Option<serde_yaml::Value>,
    well_known_policies: Option<serde_yaml::Value>,
}

/// The cluster name, region and associations of a file.
#[derive(Debug, Clone)]
pub struct File {
    pub cluster: Option<String>,
    pub region: Option<String>,
    pub entries: Vec<Flags>,
}

pub fn parse(text: &str, broker_role_arn: Option<&str>) -> std::result::Result<File, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let config: ClusterConfig =
        serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    crate::iamsa::config_file::is_cluster_config(
        config.kind.as_deref(),
        config.api_version.as_deref(),
    )?;
    let entries = config
        .iam
        .map(|i| i.pod_identity_associations)
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let at = format!("iam.podIdentityAssociations[{i}]");
        if e.permission_policy.is_some() {
            return Err(ConfigError(format!("{at}.permissionPolicy (an inline policy) is not supported: attach managed policies with permissionPolicyARNs")));
        }
        if e.well_known_policies.is_some() {
            return Err(ConfigError(format!("{at}.wellKnownPolicies is not supported for Pod Identity associations: name the policies with permissionPolicyARNs")));
        }
        out.push(Flags {
            cluster: config.metadata.name.clone().unwrap_or_default(),
            namespace: e.namespace,
            service_account: e.service_account_name,
            role_arn: e.role_arn,
            role_name: e.role_name,
            permission_policy_arns: e.permission_policy_arns,
            permissions_boundary_arn: e.permissions_boundary_arn,
            target_role_arn: e.target_role_arn,
            disable_session_tags: e.disable_session_tags,
            tags: e.tags.into_iter().collect(),
            create_service_account: e.create_service_account,
            broker_role_arn: broker_role_arn.map(str::to_string),
        });
    }
    Ok(File {
        cluster: config.metadata.name,
        region: config.metadata.region,
        entries: out,
    })
}

pub fn read(path: &Path, broker_role_arn: Option<&str>) -> Result<File> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, broker_role_arn).map_err(|e| Error::InvalidFile {
        path: path.to_path_buf(),
        message: e.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata: {name: prod, region: eu-west-1}
iam:
  podIdentityAssociations:
    - namespace: shop
      serviceAccountName: web
      roleName: shop-web
      permissionPolicyARNs: ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
      createServiceAccount: true
      tags: {team: shop}
    - namespace: shop
      serviceAccountName: api
      roleARN: arn:aws:iam::111122223333:role/legacy
      targetRoleARN: arn:aws:iam::444455556666:role/target
"#;

    #[test]
    fn eksctls_fields() {
        let f = parse(FILE, Some("arn:aws:iam::111122223333:role/broker")).unwrap();
        assert_eq!(f.cluster.as_deref(), Some("prod"));
        assert_eq!(f.entries.len(), 2);
        let specs: Vec<_> = f
            .entries
            .into_iter()
            .map(|e| e.validate().unwrap())
            .collect();
        assert_eq!(specs[0].role_name(), "shop-web");
        assert!(specs[0].create_service_account);
        assert_eq!(specs[0].tags, [("team".to_string(), "shop".to_string())]);
        assert_eq!(
            specs[1].target_role_arn.as_ref().unwrap().account(),
            "444455556666"
        );
    }

    #[test]
    fn refused_by_name_never_ignored() {
        for (patch, want) in [
            (
                "      wellKnownPolicies: {ebsCSIController: true}\n",
                "wellKnownPolicies",
            ),
            (
                "      permissionPolicy: {Version: '2012-10-17'}\n",
                "permissionPolicy",
            ),
            ("      roleArn: x\n", "unknown field"),
        ] {
            let text = format!("{FILE}{patch}");
            let e = parse(&text, None).unwrap_err().0;
            assert!(e.contains(want), "{patch}: {e}");
        }
        assert!(parse("kind: Pod", None)
            .unwrap_err()
            .0
            .contains("ClusterConfig"));
    }
}
