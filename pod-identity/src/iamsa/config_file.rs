//! The `iam` part of an eksctl `ClusterConfig` file, read into [`Spec`]s
//! (`apply -f`, `update -f`, `delete -f`), each validated.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::spec::{validate_cluster_name, Spec};
use crate::error::{Error, Result};

contract::message_error! {
    /// A ClusterConfig file that cannot be applied, and why.
    ConfigFileError
}

/// An `attachPolicy` document: a JSON object with a `Statement`.
fn inline_policy(v: &serde_yaml::Value) -> Result<serde_json::Value, ConfigFileError> {
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
        ).into());
    }
    Ok(doc)
}

/// IAM's limit on the total size of a role's inline policies (characters,
/// whitespace not counted).
const MAX_INLINE_POLICY_LEN: usize = 10_240;

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
    parse_cluster_config(&text).map_err(|e| Error::InvalidFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `Ok` for an eksctl ClusterConfig's kind and apiVersion (the files of
/// `iamserviceaccount` and `podidentityassociation` both).
pub(crate) fn is_cluster_config(
    kind: Option<&str>,
    api_version: Option<&str>,
) -> std::result::Result<(), &'static str> {
    if kind == Some("ClusterConfig") && api_version.unwrap_or_default().starts_with("eksctl.io/") {
        Ok(())
    } else {
        Err("not an eksctl ClusterConfig (apiVersion eksctl.io/v1alpha5, kind ClusterConfig)")
    }
}

pub fn parse_cluster_config(text: &str) -> Result<ConfigFile, ConfigFileError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let config: ClusterConfig =
        serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    is_cluster_config(config.kind.as_deref(), config.api_version.as_deref())?;
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
        ).into());
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
            return Err(format!("{at}: status is written by eksctl, not read: remove it").into());
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
            )
            .into());
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
#[path = "config_file_tests.rs"]
mod tests;
