//! Reads from IAM shared by the commands: the OIDC provider of an issuer and
//! a role with its tags, trust policy and policies.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::aws::{code, sdk_error};
use crate::error::{Error, Result};
use crate::policy::{issuer_host_path, parse_document};

/// Tag on IAM roles and OIDC providers this tool created (and so may change
/// or delete).
pub const OWNER_TAG: &str = "pod-identity.io/managed-by";
pub const OWNER_VALUE: &str = "pod-identity";

/// The name of the inline policy written for eksctl's `attachPolicy`.
pub const INLINE_POLICY_NAME: &str = "pod-identity";

/// Whether an inline policy is one this tool writes (`attachPolicy`, or a
/// well-known set's `pod-identity-<name>`), so one it may replace or delete.
pub fn owned_inline_policy(name: &str) -> bool {
    name == INLINE_POLICY_NAME || name.starts_with("pod-identity-")
}

/// Every tag this tool sets on roles starts with this.
pub const RECORD_TAG_PREFIX: &str = "pod-identity.io/";
/// The ownership record on a role this tool created: which cluster (by its
/// issuer), namespace and ServiceAccount it was made for.
pub const ISSUER_TAG: &str = "pod-identity.io/issuer";
pub const NAMESPACE_TAG: &str = "pod-identity.io/namespace";
pub const SERVICE_ACCOUNT_TAG: &str = "pod-identity.io/service-account";
pub const RECORD_TAGS: [&str; 3] = [ISSUER_TAG, NAMESPACE_TAG, SERVICE_ACCOUNT_TAG];

/// Which ServiceAccount of which cluster an owned role was made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The issuer as a tag value: `host/path`, or `sha256:<hex>` of it when
    /// longer than IAM's 256 characters for a tag value.
    pub issuer: String,
    pub namespace: String,
    pub name: String,
}

impl Record {
    pub fn new(issuer: &str, namespace: &str, name: &str) -> Record {
        let host_path = issuer_host_path(issuer);
        let issuer = if host_path.chars().count() <= 256 {
            host_path.to_string()
        } else {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, host_path.as_bytes());
            let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        };
        Record {
            issuer,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn tags(&self) -> Vec<(String, String)> {
        vec![
            (ISSUER_TAG.into(), self.issuer.clone()),
            (NAMESPACE_TAG.into(), self.namespace.clone()),
            (SERVICE_ACCOUNT_TAG.into(), self.name.clone()),
        ]
    }

    /// `namespace/name of issuer` for messages.
    pub fn describe(&self) -> String {
        format!(
            "ServiceAccount {}/{} of the cluster with issuer {}",
            self.namespace, self.name, self.issuer
        )
    }
}

/// An IAM role as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleState {
    pub arn: String,
    pub trust: Value,
    pub tags: BTreeMap<String, String>,
    pub attached: Vec<String>,
    pub inline: Vec<String>,
    /// The documents of the inline policies this tool writes
    /// ([`owned_inline_policy`]) that the role has.
    pub inline_documents: BTreeMap<String, Value>,
    pub boundary: Option<String>,
}

impl RoleState {
    pub fn owned(&self) -> bool {
        self.tags.get(OWNER_TAG).map(String::as_str) == Some(OWNER_VALUE)
    }

    /// The ownership record, when the role carries all of it.
    pub fn record(&self) -> Option<Record> {
        Some(Record {
            issuer: self.tags.get(ISSUER_TAG)?.clone(),
            namespace: self.tags.get(NAMESPACE_TAG)?.clone(),
            name: self.tags.get(SERVICE_ACCOUNT_TAG)?.clone(),
        })
    }
}

/// An IAM OIDC provider as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub arn: String,
    pub client_ids: Vec<String>,
    pub thumbprints: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// The IAM OIDC provider whose URL is `issuer`, if any.
pub async fn find_provider(iam: &aws_sdk_iam::Client, issuer: &str) -> Result<Option<Provider>> {
    let suffix = format!(":oidc-provider/{}", issuer_host_path(issuer));
    let list = iam
        .list_open_id_connect_providers()
        .send()
        .await
        .map_err(|e| sdk_error("iam:ListOpenIDConnectProviders", "*", e))?;
    let Some(arn) = list
        .open_id_connect_provider_list()
        .iter()
        .filter_map(|p| p.arn())
        .find(|a| a.ends_with(&suffix))
        .map(str::to_string)
    else {
        return Ok(None);
    };
    let p = iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .send()
        .await
        .map_err(|e| sdk_error("iam:GetOpenIDConnectProvider", &arn, e))?;
    Ok(Some(Provider {
        client_ids: p.client_id_list().to_vec(),
        thumbprints: p.thumbprint_list().to_vec(),
        tags: p
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        arn,
    }))
}

/// `arn:<partition>:iam::<account>:...` -> (partition, account).
pub fn arn_account(arn: &str) -> Result<(String, String)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts[..] {
        ["arn", partition, "iam", _, account, _] => {
            Ok((partition.to_string(), account.to_string()))
        }
        _ => Err(Error::Aws {
            code: None,
            action: "reading ARN".into(),
            resource: arn.into(),
            message: "not an IAM ARN".into(),
        }),
    }
}

/// A role with its trust policy, tags and policies, or `None` if it does not exist.
pub async fn get_role(iam: &aws_sdk_iam::Client, name: &str) -> Result<Option<RoleState>> {
    let role = match iam.get_role().role_name(name).send().await {
        Ok(r) => r,
        Err(e) => {
            if code(&e) == Some("NoSuchEntity") {
                return Ok(None);
            }
            return Err(sdk_error("iam:GetRole", name, e));
        }
    };
    let Some(role) = role.role() else {
        return Ok(None);
    };
    let trust = match role.assume_role_policy_document() {
        Some(doc) => parse_document(doc).map_err(|m| Error::Aws {
            code: None,
            action: "iam:GetRole".into(),
            resource: name.into(),
            message: format!("unreadable trust policy: {m}"),
        })?,
        None => serde_json::json!({}),
    };
    let tags_out = iam
        .list_role_tags()
        .role_name(name)
        .send()
        .await
        .map_err(|e| sdk_error("iam:ListRoleTags", name, e))?;
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(|e| sdk_error("iam:ListAttachedRolePolicies", name, e))?;
    let inline = iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(|e| sdk_error("iam:ListRolePolicies", name, e))?;
    let names = inline.policy_names().to_vec();
    let mut inline_documents = BTreeMap::new();
    for policy in names.iter().filter(|n| owned_inline_policy(n)) {
        let p = iam
            .get_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await
            .map_err(|e| sdk_error("iam:GetRolePolicy", &format!("{name} ({policy})"), e))?;
        let doc = parse_document(p.policy_document()).map_err(|m| Error::Aws {
            code: None,
            action: "iam:GetRolePolicy".into(),
            resource: name.into(),
            message: format!("unreadable inline policy {policy}: {m}"),
        })?;
        inline_documents.insert(policy.clone(), doc);
    }
    Ok(Some(RoleState {
        arn: role.arn().to_string(),
        trust,
        tags: tags_out
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        attached: attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect(),
        inline: names,
        inline_documents,
        boundary: role
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string),
    }))
}
