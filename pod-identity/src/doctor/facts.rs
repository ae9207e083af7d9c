//! Everything the checks look at, read once by `gather` and plain data here,
//! so that each check is a pure function of it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::iam::{Provider, RoleState};

contract::message_error! {
    /// What could not be read, and why (kept as text: facts are plain data).
    Unavailable
}

/// The ServiceAccount as read.
#[derive(Debug, Clone, Default)]
pub struct ServiceAccountFacts {
    pub annotations: BTreeMap<String, String>,
    /// When the role annotation was last written (unix seconds, from
    /// managedFields), if known.
    pub role_annotated_at: Option<i64>,
}

/// A projected ServiceAccount token volume of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenVolume {
    pub name: String,
    pub audience: Option<String>,
    pub expiration_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ContainerFacts {
    pub name: String,
    /// Variable names only: values (which may be secrets) are never kept.
    pub env: Vec<String>,
    /// (volume name, mount path).
    pub mounts: Vec<(String, String)>,
    pub ready: Option<bool>,
    /// An init container (native sidecars are init containers).
    pub init: bool,
    /// The value of `AWS_ROLE_ARN` (the one value kept: a role ARN is no
    /// secret, and it shows which role the running pod got).
    pub role_arn: Option<String>,
}

/// The pod as read.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Unix seconds.
    pub created: Option<i64>,
    pub node: Option<String>,
    pub host_network: bool,
    pub service_account: String,
    pub containers: Vec<ContainerFacts>,
    pub token_volumes: Vec<TokenVolume>,
}

/// Where the serving certificate was found, and what it is.
#[derive(Debug, Clone)]
pub enum ServingCert {
    /// Presented by the URL the configuration names (DER chain).
    Served {
        url: String,
        chain: Vec<Vec<u8>>,
    },
    /// In a kubernetes.io/tls Secret beside the Service.
    Secret {
        name: String,
        chain: Vec<Vec<u8>>,
    },
    NotFound(String),
    /// The URL is the control plane's own loopback address (a managed
    /// webhook, as on EKS): not reachable from here, so not checked.
    ControlPlane {
        url: String,
    },
}

/// One webhook of a MutatingWebhookConfiguration that mutates pods on CREATE.
#[derive(Debug, Clone)]
pub struct WebhookFacts {
    pub configuration: String,
    pub name: String,
    pub failure_policy: contract::mode::FailurePolicy,
    pub namespace_selector: Option<LabelSelector>,
    pub object_selector: Option<LabelSelector>,
    pub ca_bundle: Vec<u8>,
    /// The name the API server verifies: the URL's host or `<svc>.<ns>.svc`.
    pub server_name: String,
    pub cert: ServingCert,
}

/// An IAM lookup: found, absent, or not readable (permissions).
#[derive(Debug, Clone)]
pub enum Lookup<T> {
    Found(T),
    Missing,
    Unreadable(String),
    NotAsked,
}

/// The credential agent pods on the pod's node.
#[derive(Debug, Clone, Default)]
pub struct AgentFacts {
    /// (pod name, ready) of agent pods on the node.
    pub pods: Vec<(String, bool)>,
    /// The EKS Auth endpoint (`--eks-auth-endpoint`) of each of this
    /// project's agent pods that has the Pod Identity backend.
    pub eks_auth: BTreeMap<String, String>,
}

/// The association that counts for the ServiceAccount, with the status the
/// broker wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundAssociation {
    pub name: String,
    pub role_arn: String,
    pub target_role_arn: Option<String>,
    pub disable_session_tags: bool,
    /// The Ready condition's status (`True`, `False`), empty before a broker
    /// wrote one.
    pub ready: String,
    pub message: String,
    pub id: String,
}

/// The broker as read: its pods, its own role and its cluster name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerFacts {
    pub ready: usize,
    pub total: usize,
    /// Its ServiceAccount's role-arn annotation (the principal the
    /// associations' roles must trust).
    pub role_arn: Option<String>,
    /// Its `--cluster-name` (the session tag eks-cluster-name).
    pub cluster_name: Option<String>,
}

/// This project's Pod Identity (the PodIdentityAssociation CRD installed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssociationFacts {
    pub bound: Option<BoundAssociation>,
    /// Other associations for the ServiceAccount (ignored: the oldest counts).
    pub shadowed: Vec<String>,
    pub broker: BrokerFacts,
}

/// A role given to a ServiceAccount through the webhook's ConfigMap
/// (`--watch-config-map`, upstream's `pod-identity-webhook` ConfigMap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRole {
    /// `namespace/name` of the ConfigMap.
    pub source: String,
    pub role_arn: String,
    pub audience: Option<String>,
}

/// What `doctor` read.
#[derive(Debug, Clone)]
pub struct Facts {
    pub now: i64,
    pub prefix: String,
    pub namespace: String,
    pub service_account_name: String,
    /// `None`: the namespace does not exist.
    pub namespace_labels: Option<BTreeMap<String, String>>,
    pub service_account: Option<ServiceAccountFacts>,
    /// The ServiceAccount's entry in the webhook's ConfigMap, if any.
    pub config_map: Option<ConfigMapRole>,
    /// Only for `doctor pod`.
    pub pod: Option<PodFacts>,
    pub pod_name: Option<String>,
    pub webhooks: Vec<WebhookFacts>,
    pub issuer: Result<String, Unavailable>,
    pub provider: Lookup<Provider>,
    /// The account of the role's ARN is used for the provider ARN when the
    /// provider itself is missing.
    pub role: Lookup<RoleState>,
    /// `--exchange`: the assumed-role ARN or the STS error.
    pub exchange: Option<Result<String, Unavailable>>,
    pub agent: Option<AgentFacts>,
    /// `None` when the PodIdentityAssociation CRD is not installed (EKS's
    /// own Pod Identity, or none).
    pub associations: Option<AssociationFacts>,
    /// The webhook's default mode (`--credential-mode` of doctor).
    pub default_mode: contract::mode::CredentialMode,
    pub sidecar_name: String,
}
