//! The command line (clap). Flags are eksctl's where the two overlap.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::cluster::KubeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "pod-identity",
    version,
    about = "IAM roles for Kubernetes ServiceAccounts: the cluster's OIDC issuer, its IAM OIDC provider, roles bound to ServiceAccounts, and why a pod has no credentials"
)]
pub struct Args {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// AWS region (else AWS_REGION, the profile, or us-east-1). Endpoints
    /// follow AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE> as in every AWS SDK.
    #[arg(long, env = "AWS_REGION", global = true)]
    pub region: Option<String>,
    /// Log level of the tool's own diagnostics on stderr.
    #[arg(long, env = "POD_IDENTITY_LOG", default_value = "warn", global = true)]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The cluster's OIDC issuer and its IAM OIDC provider.
    #[command(subcommand)]
    Oidc(Oidc),
    /// IAM roles bound to ServiceAccounts.
    #[command(subcommand, name = "iamserviceaccount", alias = "iamserviceaccounts")]
    IamServiceAccount(IamSa),
    /// Why a pod has no AWS credentials, and which pods missed injection.
    #[command(subcommand)]
    Doctor(Doctor),
}

/// Options of every doctor command.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorFlags {
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
    /// The webhook's --annotation-prefix.
    #[arg(long, default_value = contract::annotations::DEFAULT_PREFIX)]
    pub annotation_prefix: String,
    /// The webhook's --credential-mode (its default for pods that do not say).
    #[arg(long, default_value = "web-identity", value_parser = ["web-identity", "agent", "sidecar"])]
    pub credential_mode: String,
    /// The webhook's sidecar container name.
    #[arg(long, default_value = "aws-credential-agent")]
    pub sidecar_name: String,
    /// Also treat this MutatingWebhookConfiguration as the pod-identity
    /// webhook (default: webhooks named pod-identity-webhook.amazonaws.com).
    #[arg(long)]
    pub webhook_configuration: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Doctor {
    /// The checklist for one pod: NAMESPACE/NAME.
    Pod {
        target: String,
        /// Also mint a token for the ServiceAccount and exchange it with STS.
        #[arg(long)]
        exchange: bool,
        #[command(flatten)]
        flags: DoctorFlags,
    },
    /// The checklist for one ServiceAccount: NAMESPACE/NAME.
    #[command(alias = "sa")]
    Serviceaccount {
        target: String,
        #[arg(long)]
        exchange: bool,
        #[command(flatten)]
        flags: DoctorFlags,
    },
    /// Every pod that asks for a role but missed injection; ServiceAccounts
    /// with broken annotations; the webhook's health. Exits 1 when a pod
    /// missed injection.
    Cluster {
        #[command(flatten)]
        flags: DoctorFlags,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Oidc {
    /// The issuer (from the API server), its keys, and whether an IAM OIDC
    /// provider with sts.amazonaws.com as a client id exists for it.
    Show {
        #[arg(long, short = 'o', value_enum, default_value = "text")]
        output: Output,
    },
    /// Self-managed clusters: write the discovery document and the keys to S3
    /// so that the issuer URL serves them.
    Publish {
        /// The S3 bucket (it must exist; the prefix must be publicly readable).
        #[arg(long)]
        bucket: String,
        /// Key prefix inside the bucket (part of the issuer URL).
        #[arg(long, default_value = "")]
        prefix: String,
        /// The URL the objects are served at (default: the bucket's S3 URL),
        /// for a CloudFront distribution or a custom domain.
        #[arg(long)]
        issuer_url: Option<String>,
        /// Public signing key(s) in PEM (the public half of
        /// --service-account-signing-key-file), for a cluster not yet
        /// configured; default: the keys the API server serves.
        #[arg(long)]
        signing_key_pub: Vec<PathBuf>,
        /// Drop published keys that are no longer in use.
        #[arg(long)]
        prune: bool,
        /// Make the changes (without it, print them and change nothing).
        #[arg(long)]
        approve: bool,
    },
    /// Create (or complete) the IAM OIDC provider for the issuer.
    Associate {
        /// The issuer (default: the cluster's).
        #[arg(long)]
        issuer_url: Option<String>,
        /// Extra CA certificates (PEM) to verify the issuer's HTTPS with.
        #[arg(long)]
        issuer_ca_file: Option<PathBuf>,
        /// Client ids besides sts.amazonaws.com.
        #[arg(long)]
        client_id: Vec<String>,
        #[arg(long)]
        approve: bool,
    },
}

/// The flags of one ServiceAccount (eksctl's names).
#[derive(Debug, Clone, clap::Args)]
pub struct SaFlags {
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[arg(long)]
    pub name: String,
    /// A name for this cluster, part of the default role name.
    #[arg(long)]
    pub cluster: Option<String>,
    #[arg(long)]
    pub role_name: Option<String>,
    #[arg(long)]
    pub role_only: bool,
}

#[derive(Debug, Subcommand)]
pub enum IamSa {
    /// Create the role (or add this ServiceAccount to its trust policy) and
    /// annotate or create the ServiceAccount.
    Create {
        #[command(flatten)]
        sa: SaFlags,
        /// Use this existing role as it is (no IAM change).
        #[arg(long)]
        attach_role_arn: Option<String>,
        #[arg(long)]
        attach_policy_arn: Vec<String>,
        #[arg(long)]
        permissions_boundary: Option<String>,
        /// Replace another role's annotation on an existing ServiceAccount.
        #[arg(long)]
        override_existing_serviceaccounts: bool,
        /// Tags for the role: "Owner=John,Team=Some Team".
        #[arg(long)]
        tags: Option<String>,
        /// Manage an existing role pod-identity did not create (tag it,
        /// change its trust policy, delete it once unused).
        #[arg(long)]
        adopt_role: bool,
        #[arg(long)]
        approve: bool,
    },
    /// ServiceAccounts bound to roles, with whether the trust policy and the
    /// annotation are right.
    Get {
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Remove what create made, in the safe order.
    Delete {
        #[command(flatten)]
        sa: SaFlags,
        #[arg(long)]
        approve: bool,
    },
    /// Create every ServiceAccount of an eksctl ClusterConfig's
    /// iam.serviceAccounts.
    Apply {
        #[arg(long, short = 'f')]
        file: PathBuf,
        #[arg(long)]
        override_existing_serviceaccounts: bool,
        #[arg(long)]
        adopt_role: bool,
        #[arg(long)]
        approve: bool,
    },
}
