//! What the user asks for, from flags or from the `iam.serviceAccounts`
//! part of an eksctl `ClusterConfig` file, validated before anything is
//! read or changed.

use contract::RoleArn;

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

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
