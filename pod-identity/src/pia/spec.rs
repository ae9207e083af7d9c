//! What a `podidentityassociation` command asks for, from eksctl's flags,
//! checked before anything is read: names as the API server takes them,
//! role ARNs by `contract::RoleArn`, and eksctl's combinations (a role is
//! either named by ARN and used as it is, or created with its policies).

use contract::RoleArn;

use crate::error::{Error, Result};
use crate::iamsa::spec::validate_names;

/// Which role the association binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChoice {
    /// An existing role (`--role-arn`): its trust gets the broker's grant
    /// (and the cluster tag), nothing else changes.
    Existing(RoleArn),
    /// A role this tool creates (`--role-name`) with these policies.
    Create {
        name: String,
        policy_arns: Vec<String>,
        permissions_boundary: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationSpec {
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
    pub role: RoleChoice,
    pub target_role_arn: Option<RoleArn>,
    pub disable_session_tags: bool,
    pub tags: Vec<(String, String)>,
    pub create_service_account: bool,
    /// The role the broker runs as: the principal of the trust grant.
    pub broker_role_arn: RoleArn,
}

/// The flags as given.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: Option<String>,
    pub role_name: Option<String>,
    pub permission_policy_arns: Vec<String>,
    pub permissions_boundary_arn: Option<String>,
    pub target_role_arn: Option<String>,
    pub disable_session_tags: bool,
    pub tags: Vec<(String, String)>,
    pub create_service_account: bool,
    pub broker_role_arn: Option<String>,
}

fn role_arn(flag: &str, s: &str) -> Result<RoleArn> {
    RoleArn::parse(s).map_err(|e| Error::Usage(format!("{flag} {s:?} is not an IAM role ARN: {e}")))
}

/// The object name of the association of namespace/ServiceAccount: a
/// namespace has no dots, so `<namespace>.<serviceaccount>` is unique.
pub fn object_name(namespace: &str, service_account: &str) -> String {
    format!("{namespace}.{service_account}")
}

impl Flags {
    pub fn validate(self) -> Result<AssociationSpec> {
        crate::iamsa::spec::validate_cluster_name(&self.cluster)?;
        validate_names(&self.namespace, &self.service_account)?;
        if object_name(&self.namespace, &self.service_account).len() > 253 {
            return Err(Error::Usage(
                "namespace and ServiceAccount name together exceed 252 characters".into(),
            ));
        }
        let role = match (self.role_arn, self.role_name) {
            (Some(_), Some(_)) => {
                return Err(Error::Usage(
                    "--role-arn and --role-name exclude each other: name an existing role by ARN, or a role to create".into(),
                ))
            }
            (None, None) => {
                return Err(Error::Usage(
                    "one of --role-arn (an existing role) or --role-name (a role to create, with --permission-policy-arns) is required".into(),
                ))
            }
            (Some(arn), None) => {
                if !self.permission_policy_arns.is_empty() || self.permissions_boundary_arn.is_some() {
                    return Err(Error::Usage(
                        "--permission-policy-arns and --permissions-boundary-arn apply to a role created with --role-name; with --role-arn the role is used as it is".into(),
                    ));
                }
                RoleChoice::Existing(role_arn("--role-arn", &arn)?)
            }
            (None, Some(name)) => {
                if !RoleArn::is_valid_name(&name) {
                    return Err(Error::Usage(format!(
                        "--role-name {name:?} is not an IAM role name (1-64 of letters, digits and +=,.@_-)"
                    )));
                }
                if self.permission_policy_arns.is_empty() {
                    return Err(Error::Usage(
                        "--role-name creates a role: give it --permission-policy-arns".into(),
                    ));
                }
                if self.disable_session_tags {
                    return Err(Error::Usage(
                        "--disable-session-tags with --role-name: a created role trusts the broker only with the association's session tags (namespace and ServiceAccount), which --disable-session-tags turns off; use --role-arn with a role whose trust you manage".into(),
                    ));
                }
                RoleChoice::Create {
                    name,
                    policy_arns: self.permission_policy_arns,
                    permissions_boundary: self.permissions_boundary_arn,
                }
            }
        };
        let broker_role_arn = self.broker_role_arn.ok_or_else(|| {
            Error::Usage(
                "--broker-role-arn (or POD_IDENTITY_BROKER_ROLE_ARN) is required: the role the broker runs as, which the association's role must trust".into(),
            )
        })?;
        Ok(AssociationSpec {
            cluster: self.cluster,
            namespace: self.namespace,
            service_account: self.service_account,
            role,
            target_role_arn: self
                .target_role_arn
                .map(|t| role_arn("--target-role-arn", &t))
                .transpose()?,
            disable_session_tags: self.disable_session_tags,
            tags: self.tags,
            create_service_account: self.create_service_account,
            broker_role_arn: role_arn("--broker-role-arn", &broker_role_arn)?,
        })
    }
}

impl AssociationSpec {
    /// The role's ARN: the given one, or the one a role of that name gets
    /// in `account`.
    pub fn role_arn(&self, partition: &str, account: &str) -> String {
        match &self.role {
            RoleChoice::Existing(a) => a.as_str().to_string(),
            RoleChoice::Create { name, .. } => {
                format!("arn:{partition}:iam::{account}:role/{name}")
            }
        }
    }

    pub fn role_name(&self) -> &str {
        match &self.role {
            RoleChoice::Existing(a) => a.name(),
            RoleChoice::Create { name, .. } => name,
        }
    }

    /// The object's `spec`.
    pub fn object_spec(&self, role_arn: &str) -> serde_json::Value {
        let mut s = serde_json::json!({
            "namespace": self.namespace,
            "serviceAccount": self.service_account,
            "roleArn": role_arn,
        });
        if let Some(t) = &self.target_role_arn {
            s["targetRoleArn"] = t.as_str().into();
        }
        if self.disable_session_tags {
            s["disableSessionTags"] = true.into();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Flags {
        Flags {
            cluster: "prod".into(),
            namespace: "shop".into(),
            service_account: "web".into(),
            role_name: Some("shop-web".into()),
            permission_policy_arns: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
            broker_role_arn: Some("arn:aws:iam::111122223333:role/broker".into()),
            ..Flags::default()
        }
    }

    #[test]
    fn eksctls_combinations() {
        assert!(flags().validate().is_ok());
        let cases: Vec<(Flags, &str)> = vec![
            (
                Flags {
                    role_arn: Some("arn:aws:iam::111122223333:role/x".into()),
                    ..flags()
                },
                "exclude each other",
            ),
            (
                Flags {
                    role_name: None,
                    ..flags()
                },
                "is required",
            ),
            (
                Flags {
                    permission_policy_arns: vec![],
                    ..flags()
                },
                "--permission-policy-arns",
            ),
            (
                Flags {
                    disable_session_tags: true,
                    ..flags()
                },
                "--disable-session-tags",
            ),
            (
                Flags {
                    role_name: Some("a b".into()),
                    ..flags()
                },
                "IAM role name",
            ),
            (
                Flags {
                    broker_role_arn: None,
                    ..flags()
                },
                "--broker-role-arn",
            ),
            (
                Flags {
                    broker_role_arn: Some("broker".into()),
                    ..flags()
                },
                "--broker-role-arn",
            ),
            (
                Flags {
                    namespace: "Shop".into(),
                    ..flags()
                },
                "namespace",
            ),
            (
                Flags {
                    target_role_arn: Some("arn:aws:s3:::b".into()),
                    ..flags()
                },
                "--target-role-arn",
            ),
            (
                Flags {
                    role_name: None,
                    role_arn: Some("arn:aws:iam::111122223333:role/x".into()),
                    ..flags()
                },
                "used as it is",
            ),
        ];
        for (f, want) in cases {
            let e = f.clone().validate().unwrap_err().to_string();
            assert!(e.contains(want), "{f:?}: {e}");
        }
        let existing = Flags {
            role_name: None,
            permission_policy_arns: vec![],
            role_arn: Some("arn:aws:iam::111122223333:role/x".into()),
            disable_session_tags: true,
            ..flags()
        }
        .validate()
        .unwrap();
        assert_eq!(existing.role_name(), "x");
        assert_eq!(existing.object_spec("r")["disableSessionTags"], true);
    }
}
