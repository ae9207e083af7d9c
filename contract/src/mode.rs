//! Names both sides compare: the credential modes (the webhook's
//! `--credential-mode` and `credential-mode` annotation, doctor's
//! `--credential-mode`), an admission webhook's failure policy (as the
//! chart writes it and doctor reads it), and the key of a ServiceAccount.

use std::fmt;

/// How a pod with a role gets its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub enum CredentialMode {
    /// IRSA: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE; the SDK calls STS.
    #[default]
    WebIdentity,
    /// The node's credential-agent, through AWS_CONTAINER_CREDENTIALS_FULL_URI.
    Agent,
    /// A credential-agent native sidecar in the pod.
    Sidecar,
}

impl CredentialMode {
    /// The annotation and flag values, in order.
    pub const NAMES: [&'static str; 3] = ["web-identity", "agent", "sidecar"];

    pub fn parse(v: &str) -> Option<Self> {
        match v.trim() {
            "web-identity" => Some(CredentialMode::WebIdentity),
            "agent" => Some(CredentialMode::Agent),
            "sidecar" => Some(CredentialMode::Sidecar),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CredentialMode::WebIdentity => "web-identity",
            CredentialMode::Agent => "agent",
            CredentialMode::Sidecar => "sidecar",
        }
    }
}

impl fmt::Display for CredentialMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the API server does with a pod when the webhook cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// The pod is refused (the API server's default).
    #[default]
    Fail,
    /// The pod is admitted unmutated, without credentials.
    Ignore,
}

impl FailurePolicy {
    pub const NAMES: [&'static str; 2] = ["Fail", "Ignore"];

    /// The policy as a MutatingWebhookConfiguration states it; absent
    /// means the API server's default, `Fail`. Unknown values are `None`.
    pub fn parse(v: Option<&str>) -> Option<Self> {
        match v {
            None | Some("Fail") => Some(FailurePolicy::Fail),
            Some("Ignore") => Some(FailurePolicy::Ignore),
            Some(_) => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Fail => "Fail",
            FailurePolicy::Ignore => "Ignore",
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ServiceAccount: its namespace and name, written `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceAccountKey {
    pub namespace: String,
    pub name: String,
}

/// A `namespace/name` that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not namespace/name")]
pub struct ServiceAccountKeyError(pub String);

impl ServiceAccountKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceAccountKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::str::FromStr for ServiceAccountKey {
    type Err = ServiceAccountKeyError;

    /// `namespace/name`, both non-empty, one '/'.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(ServiceAccountKey::new(ns, name))
            }
            _ => Err(ServiceAccountKeyError(s.to_string())),
        }
    }
}

impl fmt::Display for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in CredentialMode::NAMES {
            assert_eq!(CredentialMode::parse(n).unwrap().as_str(), n);
        }
        assert_eq!(
            CredentialMode::parse(" agent "),
            Some(CredentialMode::Agent)
        );
        assert_eq!(CredentialMode::parse("Agent"), None);
        for n in FailurePolicy::NAMES {
            assert_eq!(FailurePolicy::parse(Some(n)).unwrap().as_str(), n);
        }
        assert_eq!(FailurePolicy::parse(None), Some(FailurePolicy::Fail));
        assert_eq!(FailurePolicy::parse(Some("ignore")), None);
    }

    #[test]
    fn service_account_keys() {
        let k: ServiceAccountKey = "ns/app".parse().unwrap();
        assert_eq!(k, ServiceAccountKey::new("ns", "app"));
        assert_eq!(k.to_string(), "ns/app");
        for bad in ["", "ns", "/app", "ns/", "a/b/c"] {
            assert!(bad.parse::<ServiceAccountKey>().is_err(), "{bad}");
        }
    }
}
