//! The command line (clap). Flags are eksctl's where the two overlap.
//!
//! Long because clap stays in `args.rs` and `main.rs` (a structure test
//! checks it): the whole command tree, each flag with its help, is here.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::cluster::KubeTarget;

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
    /// EKS Pod Identity on any cluster: PodIdentityAssociations and the
    /// roles they bind (eksctl's `podidentityassociation`).
    #[command(
        subcommand,
        name = "podidentityassociation",
        alias = "podidentityassociations"
    )]
    PodIdentityAssociation(Pia),
    /// eksctl's `utils` verbs.
    #[command(subcommand)]
    Utils(Utils),
}

#[derive(Debug, Subcommand)]
pub enum Utils {
    /// Move ServiceAccounts annotated with a role (IRSA) to Pod Identity:
    /// an association for each, the broker's grant in each role's trust;
    /// with --remove-oidc-provider-trust-relationship also the IRSA trust
    /// and the annotation. Pods get Pod Identity once restarted.
    MigrateToPodIdentity {
        /// The cluster's name (the broker's --cluster-name).
        #[arg(long)]
        cluster: String,
        /// The role the broker runs as.
        #[arg(long, env = "POD_IDENTITY_BROKER_ROLE_ARN")]
        broker_role_arn: String,
        /// Only this namespace (default: all).
        #[arg(long)]
        namespace: Option<String>,
        /// Also remove each ServiceAccount from its role's IRSA trust and
        /// its role-arn annotation (after the pods were restarted).
        #[arg(long)]
        remove_oidc_provider_trust_relationship: bool,
        /// Make the changes (without it, print them and change nothing).
        #[arg(long)]
        approve: bool,
    },
}

/// One association's ServiceAccount (eksctl's flag names).
#[derive(Debug, Clone, clap::Args)]
pub struct PiaTarget {
    /// The cluster's name: the session tag eks-cluster-name the broker sets
    /// (its --cluster-name), which the role's trust requires.
    #[arg(long)]
    pub cluster: String,
    /// The ServiceAccount's namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The ServiceAccount's name.
    #[arg(long)]
    pub service_account_name: String,
    /// The role the broker runs as (the principal its trust grants).
    #[arg(long, env = "POD_IDENTITY_BROKER_ROLE_ARN")]
    pub broker_role_arn: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Pia {
    /// Bind a ServiceAccount to a role: the PodIdentityAssociation object,
    /// and the role's trust for the broker with the association's session
    /// tags (a role named with --role-name is created).
    Create {
        /// An eksctl ClusterConfig: create each of its
        /// iam.podIdentityAssociations (nothing is deleted; `apply -f` also
        /// removes what the file no longer has).
        #[arg(long, short = 'f', conflicts_with_all = ["cluster", "service_account_name", "role_arn", "role_name"])]
        file: Option<PathBuf>,
        /// The cluster's name: the session tag eks-cluster-name the broker
        /// sets (its --cluster-name), which the role's trust requires.
        #[arg(long, required_unless_present = "file")]
        cluster: Option<String>,
        /// The ServiceAccount's namespace.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// The ServiceAccount's name.
        #[arg(long, required_unless_present = "file")]
        service_account_name: Option<String>,
        /// The role the broker runs as (the principal its trust grants).
        #[arg(long, env = "POD_IDENTITY_BROKER_ROLE_ARN")]
        broker_role_arn: Option<String>,
        /// An existing role: its trust gets the broker's grant and it is
        /// tagged for the cluster; nothing else changes.
        #[arg(long)]
        role_arn: Option<String>,
        /// A role to create (with --permission-policy-arns).
        #[arg(long)]
        role_name: Option<String>,
        /// Managed policies for the role created with --role-name
        /// (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        permission_policy_arns: Vec<String>,
        /// Permissions boundary of the role created with --role-name.
        #[arg(long)]
        permissions_boundary_arn: Option<String>,
        /// A role to chain to (another account's): assumed from the first
        /// role's session with the association's id as ExternalId.
        #[arg(long)]
        target_role_arn: Option<String>,
        /// No session tags (then the role's trust cannot check the
        /// namespace and ServiceAccount; only with --role-arn).
        #[arg(long)]
        disable_session_tags: bool,
        /// Tags for the created role: "Owner=John,Team=Some Team".
        #[arg(long)]
        tags: Option<String>,
        /// Create the ServiceAccount (and its namespace) when missing.
        #[arg(long)]
        create_service_account: bool,
        /// Make the changes (without it, print them and change nothing).
        #[arg(long)]
        approve: bool,
    },
    /// Change an association pod-identity made (eksctl's `update
    /// podidentityassociation`): bind another existing role, chain to
    /// another target, turn session tags on or off.
    Update {
        #[command(flatten)]
        target: PiaTarget,
        /// The existing role to bind (it gets the broker's grant and tag).
        #[arg(long)]
        role_arn: String,
        /// A role to chain to (another account's).
        #[arg(long)]
        target_role_arn: Option<String>,
        /// No session tags.
        #[arg(long)]
        disable_session_tags: bool,
        /// Make the changes (without it, print them and change nothing).
        #[arg(long)]
        approve: bool,
    },
    /// Make the associations of an eksctl ClusterConfig's
    /// iam.podIdentityAssociations exist as `create` would, and delete the
    /// ones pod-identity made that the file no longer has (with the roles it
    /// created for them).
    Apply {
        /// The eksctl ClusterConfig (metadata.name is the cluster's name).
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// The role the broker runs as.
        #[arg(long, env = "POD_IDENTITY_BROKER_ROLE_ARN")]
        broker_role_arn: Option<String>,
        /// Make the changes (without it, print them and change nothing).
        #[arg(long)]
        approve: bool,
    },
    /// The associations, with their role, target and whether they count.
    Get {
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only this ServiceAccount (with --namespace).
        #[arg(long)]
        service_account_name: Option<String>,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// The role the broker runs as (IRSA for its ServiceAccount, which the
    /// chart creates): trusted by the cluster's IAM OIDC provider for that
    /// ServiceAccount only, allowed sts:AssumeRole and sts:TagSession only on
    /// roles tagged pod-identity.io/cluster=<cluster>.
    SetupBroker {
        /// The cluster's name (the broker's --cluster-name).
        #[arg(long)]
        cluster: String,
        /// The broker's namespace (the chart's release namespace).
        #[arg(long, default_value = "pod-identity")]
        namespace: String,
        /// The broker's ServiceAccount (the chart's <release>-pod-identity-broker).
        #[arg(long, default_value = "pod-identity-broker")]
        service_account_name: String,
        /// The role's name (default: pod-identity-broker-<cluster>).
        #[arg(long)]
        role_name: Option<String>,
        /// Make the changes (without it, print them and change nothing).
        #[arg(long)]
        approve: bool,
    },
    /// Remove a ServiceAccount's association; a role pod-identity created
    /// for it is deleted, another role loses the broker's grant.
    Delete {
        #[command(flatten)]
        target: PiaTarget,
        /// Make the changes (without it, print them and change nothing).
        #[arg(long)]
        approve: bool,
    },
}

/// Which cluster to talk to.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeArgs {
    /// Path to a kubeconfig (else KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (else its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
}

impl From<&KubeArgs> for KubeTarget {
    fn from(a: &KubeArgs) -> KubeTarget {
        KubeTarget {
            kubeconfig: a.kubeconfig.clone(),
            context: a.context.clone(),
        }
    }
}

/// Options of every doctor command.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorFlags {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
    /// The webhook's --annotation-prefix.
    #[arg(long, default_value = contract::annotations::DEFAULT_PREFIX)]
    pub annotation_prefix: String,
    /// The webhook's --credential-mode (its default for pods that do not say).
    #[arg(long, default_value = "web-identity", value_parser = contract::mode::CredentialMode::NAMES)]
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
        /// The pod, as NAMESPACE/NAME.
        target: String,
        /// Also mint a token for the ServiceAccount and exchange it with STS
        /// (a Pod Identity pod's: with the broker at --broker-url).
        #[arg(long)]
        exchange: bool,
        /// The Pod Identity broker's URL for --exchange, e.g. after
        /// `kubectl port-forward -n pod-identity svc/pod-identity-broker 8443:443`:
        /// https://127.0.0.1:8443.
        #[arg(long)]
        broker_url: Option<String>,
        /// CA bundle of the broker's certificate (the `ca.crt` of its TLS
        /// Secret).
        #[arg(long)]
        broker_ca_file: Option<PathBuf>,
        #[command(flatten)]
        flags: DoctorFlags,
    },
    /// The checklist for one ServiceAccount: NAMESPACE/NAME.
    #[command(alias = "sa")]
    Serviceaccount {
        /// The ServiceAccount, as NAMESPACE/NAME.
        target: String,
        /// Also mint a token for the ServiceAccount and exchange it with STS.
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
        /// Output format.
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
        /// Make the changes (without it, print them and change nothing).
        #[arg(long)]
        approve: bool,
    },
}

/// The flags of one ServiceAccount (eksctl's names).
#[derive(Debug, Clone, clap::Args)]
pub struct SaFlags {
    /// The ServiceAccount's namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The ServiceAccount's name.
    #[arg(long)]
    pub name: String,
    /// A name for this cluster, part of the default role name
    /// (pod-identity_<cluster>_<namespace>_<name>); eksctl's --cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// The IAM role's name (default: pod-identity_[<cluster>_]<namespace>_<name>,
    /// with a hash when over 64 characters). Naming a role another
    /// ServiceAccount uses shares it on purpose.
    #[arg(long)]
    pub role_name: Option<String>,
    /// Only the IAM role: the ServiceAccount is neither created nor annotated.
    #[arg(long)]
    pub role_only: bool,
}

/// One ServiceAccount, or `-f` (a ClusterConfig) instead: `update` and
/// `delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetFlags {
    /// The ServiceAccount's namespace.
    #[arg(long, default_value = "default", conflicts_with = "file")]
    pub namespace: String,
    /// The ServiceAccount's name.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub name: Option<String>,
    /// A name for this cluster, part of the default role name.
    #[arg(long, conflicts_with = "file")]
    pub cluster: Option<String>,
    /// The IAM role's name, when not the default one (delete also finds it
    /// through the annotation and the role's ownership record).
    #[arg(long, conflicts_with = "file")]
    pub role_name: Option<String>,
}

/// What a role is granted (eksctl's flags).
#[derive(Debug, Clone, clap::Args)]
pub struct GrantFlags {
    /// Managed policy ARN(s) to attach to the role: repeat the flag or
    /// separate with commas (arn:aws:iam::aws:policy/A,arn:aws:iam::aws:policy/B).
    #[arg(long, value_delimiter = ',')]
    pub attach_policy_arn: Vec<String>,
    /// A managed policy ARN to set as the role's permissions boundary.
    #[arg(long)]
    pub permissions_boundary: Option<String>,
    /// Create or keep the role with no policy at all, on purpose (without
    /// it, a role needs --attach-policy-arn or --attach-role-arn).
    #[arg(long)]
    pub allow_no_policy: bool,
}

#[derive(Debug, Subcommand)]
pub enum IamSa {
    /// Create the role (or add this ServiceAccount to its trust policy) and
    /// annotate or create the ServiceAccount. Adds what is asked; removes
    /// nothing (see update).
    Create {
        #[command(flatten)]
        sa: SaFlags,
        /// Use this existing role as it is (no IAM change); eksctl refuses it
        /// with --role-name, --attach-policy-arn, --permissions-boundary,
        /// --role-only and --tags, and so does this tool.
        #[arg(long)]
        attach_role_arn: Option<String>,
        #[command(flatten)]
        grants: GrantFlags,
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
        /// Make the changes (without it, print them and change nothing).
        #[arg(long)]
        approve: bool,
    },
    /// Set a role's policies to exactly those given (eksctl's `update
    /// iamserviceaccount`): on a role pod-identity owns, policies,
    /// pod-identity's inline policies and the boundary no longer asked for
    /// are removed. With -f, every ServiceAccount of a ClusterConfig.
    Update {
        #[command(flatten)]
        target: TargetFlags,
        #[command(flatten)]
        grants: GrantFlags,
        /// An eksctl ClusterConfig: update each of its iam.serviceAccounts.
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
        /// Make the changes (without it, print them and change nothing).
        #[arg(long)]
        approve: bool,
    },
    /// ServiceAccounts bound to roles, with whether the trust policy and the
    /// annotation are right.
    Get {
        /// Only this namespace (default: all).
        #[arg(long)]
        namespace: Option<String>,
        /// Only this ServiceAccount.
        #[arg(long)]
        name: Option<String>,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Remove what create made, in the safe order: the annotation (or the
    /// ServiceAccount pod-identity created), the trust entry, then the role
    /// once unused. Finds the role through the annotation, --role-name, the
    /// role's ownership record, or the default name.
    Delete {
        #[command(flatten)]
        target: TargetFlags,
        /// Leave the ServiceAccount and its annotation alone.
        #[arg(long, conflicts_with = "file")]
        role_only: bool,
        /// An eksctl ClusterConfig: delete each of its iam.serviceAccounts.
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
        /// Make the changes (without it, print them and change nothing).
        #[arg(long)]
        approve: bool,
    },
    /// Make every ServiceAccount of an eksctl ClusterConfig's
    /// iam.serviceAccounts exist as the file says: created, and on roles
    /// pod-identity owns, what the file no longer lists removed.
    Apply {
        /// The ClusterConfig file.
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Replace another role's annotation on existing ServiceAccounts.
        #[arg(long)]
        override_existing_serviceaccounts: bool,
        /// Manage existing roles pod-identity did not create.
        #[arg(long)]
        adopt_role: bool,
        /// With iam.withOIDC: extra CA certificates (PEM) to verify the
        /// issuer's HTTPS with when planning its IAM OIDC provider.
        #[arg(long)]
        issuer_ca_file: Option<PathBuf>,
        /// Make the changes (without it, print them and change nothing).
        #[arg(long)]
        approve: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag and argument of every command says what it is for.
    #[test]
    fn every_flag_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Args::command(), "pod-identity", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
