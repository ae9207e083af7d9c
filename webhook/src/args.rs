//! The command line, and nothing else: flags named like the upstream Go
//! webhook's where they overlap, each also settable from the environment as
//! `POD_IDENTITY_WEBHOOK_<FLAG>`; their defaults come from
//! `injection::config::defaults`. [`InjectionArgs::to_config`] validates them
//! into the pure [`InjectionConfig`].
//!
//! Long because every flag carries its documentation, environment variable
//! and default (`--help` is generated from it); there is no logic here
//! beyond `to_config`.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use contract::agent::SidecarPorts;
use contract::duration::parse as parse_duration;

use crate::injection::config::{
    defaults, ContainerCredentialsConfig, InjectionConfig, SidecarConfig, MIN_TOKEN_EXPIRATION,
};
use crate::injection::CredentialMode;

fn credential_mode_parser() -> impl TypedValueParser<Value = CredentialMode> {
    PossibleValuesParser::new(CredentialMode::NAMES)
        .map(|s| CredentialMode::parse(&s).unwrap_or_default())
}

/// Whether the cluster runs native sidecars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NativeSidecars {
    /// Ask the API server's version at start (the dry run assumes yes).
    Auto,
    True,
    False,
}

#[derive(Debug, Parser)]
#[command(
    name = "pod-identity-webhook",
    version,
    about = "Injects AWS workload identity (IRSA) into pods; drop-in for amazon-eks-pod-identity-webhook"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admission webhook over HTTPS (the default when no subcommand is given).
    Serve(Box<ServeArgs>),
    /// Offline dry run: print the pod as the webhook would mutate it.
    Mutate(Box<MutateArgs>),
}

/// Settings that decide what gets injected; shared by `serve` and `mutate`.
#[derive(Debug, Clone, Args)]
pub struct InjectionArgs {
    /// Annotation domain to look for on ServiceAccounts and pods.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_ANNOTATION_PREFIX", default_value = defaults::ANNOTATION_PREFIX)]
    pub annotation_prefix: String,
    /// Default token audience; a ServiceAccount's `<prefix>/audience` overrides it.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_TOKEN_AUDIENCE", default_value = defaults::TOKEN_AUDIENCE)]
    pub token_audience: String,
    /// Where the projected token is mounted in containers.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_TOKEN_MOUNT_PATH", default_value = defaults::TOKEN_MOUNT_PATH)]
    pub token_mount_path: String,
    /// Default token lifetime in seconds (never below 600).
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_TOKEN_EXPIRATION", default_value_t = defaults::TOKEN_EXPIRATION)]
    pub token_expiration: i64,
    /// If set, AWS_DEFAULT_REGION and AWS_REGION are injected with this value.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_AWS_DEFAULT_REGION",
        default_value = ""
    )]
    pub aws_default_region: String,
    /// Inject AWS_STS_REGIONAL_ENDPOINTS=regional (a ServiceAccount's
    /// `<prefix>/sts-regional-endpoints` overrides it).
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_STS_REGIONAL_ENDPOINT", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub sts_regional_endpoint: bool,
    /// Container credentials config file (upstream format:
    /// `{"identities":[{"namespace":..,"serviceAccount":..}]}`), re-read when it changes.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_WATCH_CONTAINER_CREDENTIALS_CONFIG")]
    pub watch_container_credentials_config: Option<PathBuf>,
    /// Token audience for container credentials mode.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_CONTAINER_CREDENTIALS_AUDIENCE",
        default_value = defaults::CONTAINER_CREDENTIALS_AUDIENCE
    )]
    pub container_credentials_audience: String,
    /// Token mount path for container credentials mode.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_CONTAINER_CREDENTIALS_TOKEN_MOUNT_PATH",
        default_value = defaults::CONTAINER_CREDENTIALS_MOUNT_PATH
    )]
    pub container_credentials_token_mount_path: String,
    /// Projected volume name for container credentials mode.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_CONTAINER_CREDENTIALS_TOKEN_VOLUME_NAME",
        default_value = defaults::CONTAINER_CREDENTIALS_VOLUME_NAME
    )]
    pub container_credentials_token_volume_name: String,
    /// Token file name inside the volume for container credentials mode.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_CONTAINER_CREDENTIALS_TOKEN_PATH",
        default_value = defaults::CONTAINER_CREDENTIALS_TOKEN_PATH
    )]
    pub container_credentials_token_path: String,
    /// AWS_CONTAINER_CREDENTIALS_FULL_URI injected in container credentials mode.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_CONTAINER_CREDENTIALS_FULL_URI",
        default_value = defaults::CONTAINER_CREDENTIALS_FULL_URI
    )]
    pub container_credentials_full_uri: String,
    /// How pods with a role get credentials, unless their ServiceAccount or
    /// the pod itself says otherwise with `<prefix>/credential-mode`.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_CREDENTIAL_MODE",
        value_parser = credential_mode_parser(),
        default_value = defaults::CREDENTIAL_MODE
    )]
    pub credential_mode: CredentialMode,
    /// The node credential-agent's credentials URL (agent mode); the role is
    /// appended as `?role=<URL-encoded ARN>`.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_AGENT_URL",
        default_value = defaults::AGENT_URL
    )]
    pub agent_url: String,
    /// Image of the credential-agent sidecar (sidecar mode).
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_SIDECAR_IMAGE",
        default_value = defaults::SIDECAR_IMAGE
    )]
    pub sidecar_image: String,
    /// imagePullPolicy of the sidecar.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_SIDECAR_IMAGE_PULL_POLICY", default_value = defaults::SIDECAR_IMAGE_PULL_POLICY,
          value_parser = ["Always", "IfNotPresent", "Never"])]
    pub sidecar_image_pull_policy: String,
    /// Name of the sidecar container.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_SIDECAR_NAME",
        default_value = defaults::SIDECAR_NAME
    )]
    pub sidecar_name: String,
    /// Loopback port the sidecar serves credentials on.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_SIDECAR_PORT",
        default_value_t = defaults::SIDECAR_PORT
    )]
    pub sidecar_port: u16,
    /// Port of the sidecar's /healthz and /readyz (its startup probe).
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_SIDECAR_HEALTH_PORT",
        default_value_t = defaults::SIDECAR_HEALTH_PORT
    )]
    pub sidecar_health_port: u16,
    /// Port of the sidecar's Prometheus /metrics.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_SIDECAR_METRICS_PORT",
        default_value_t = defaults::SIDECAR_METRICS_PORT
    )]
    pub sidecar_metrics_port: u16,
    /// CPU request of the sidecar.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_SIDECAR_CPU_REQUEST",
        default_value = defaults::SIDECAR_CPU_REQUEST
    )]
    pub sidecar_cpu_request: String,
    /// Memory request of the sidecar.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_SIDECAR_MEMORY_REQUEST",
        default_value = defaults::SIDECAR_MEMORY_REQUEST
    )]
    pub sidecar_memory_request: String,
    /// Whether the cluster runs native sidecars (Kubernetes 1.29+): `auto`
    /// asks the API server's version at start (the dry run assumes yes).
    /// Without them, sidecar mode falls back to web identity with a warning.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_NATIVE_SIDECARS", value_enum, default_value_t = NativeSidecars::Auto)]
    pub native_sidecars: NativeSidecars,
    /// Largest JSON Patch answered, in bytes; a pod whose patch would be
    /// larger (thousands of containers) is refused with a message saying so.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_MAX_PATCH_BYTES", default_value_t = defaults::MAX_PATCH_BYTES)]
    pub max_patch_bytes: usize,
    /// Memory limit of the sidecar.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_SIDECAR_MEMORY_LIMIT",
        default_value = defaults::SIDECAR_MEMORY_LIMIT
    )]
    pub sidecar_memory_limit: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub injection: InjectionArgs,
    /// HTTPS port for /mutate, /healthz and /readyz.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_PORT", default_value_t = 443)]
    pub port: u16,
    /// Plain-HTTP port for /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_METRICS_PORT",
        default_value_t = 9999
    )]
    pub metrics_port: u16,
    /// Address both listeners bind to.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_BIND_ADDRESS",
        default_value = "0.0.0.0"
    )]
    pub bind_address: std::net::IpAddr,
    /// TLS certificate chain (PEM); re-read when it changes.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_TLS_CERT",
        default_value = "/etc/webhook/certs/tls.crt"
    )]
    pub tls_cert: PathBuf,
    /// TLS private key (PEM); re-read when it changes.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_TLS_KEY",
        default_value = "/etc/webhook/certs/tls.key"
    )]
    pub tls_key: PathBuf,
    /// How often the TLS files and the container credentials config are checked for changes.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// Kubeconfig file (out of cluster); default: in-cluster config, then ~/.kube/config.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// API server URL, overriding the kubeconfig's.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_KUBE_API")]
    pub kube_api: Option<String>,
    /// Accepted for compatibility. Certificates always come from --tls-cert/--tls-key
    /// (the chart provides them); the upstream CSR flow is not implemented.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_IN_CLUSTER", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub in_cluster: bool,
    /// Namespace of the `pod-identity-webhook` ConfigMap (with --watch-config-map).
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_NAMESPACE", default_value = "eks")]
    pub namespace: String,
    /// Also take ServiceAccount settings from the `pod-identity-webhook` ConfigMap
    /// (upstream format: data.config = {"ns/sa": {"RoleARN":..,"Audience":..,
    /// "UseRegionalSTS":..,"TokenExpiration":..}}).
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_WATCH_CONFIG_MAP", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub watch_config_map: bool,
    /// Count live pods whose ServiceAccount asks for a role but that have no
    /// injected credentials, at this interval, as the metric
    /// pod_identity_webhook_pods_missing_injection (needs list/watch on pods;
    /// 0s: off).
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_MISSING_INJECTION_AUDIT_INTERVAL",
          default_value = "0s", value_parser = parse_duration)]
    pub missing_injection_audit_interval: Duration,
    /// Watch PodIdentityAssociation objects (group pod-identity.io, the
    /// chart's CRD): their ServiceAccounts get EKS Pod Identity (container
    /// credentials from the node agent), also when annotated with a role.
    /// /readyz waits for the first list.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_WATCH_POD_IDENTITY_ASSOCIATIONS")]
    pub watch_pod_identity_associations: bool,
    /// How long a pod whose ServiceAccount is not in the cache waits for a direct
    /// lookup before it is answered. Keep it well under the webhook timeout.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_SERVICE_ACCOUNT_LOOKUP_GRACE_PERIOD",
          default_value = "2s", value_parser = parse_duration)]
    pub service_account_lookup_grace_period: Duration,
    /// How long a ServiceAccount the API server said does not exist is
    /// remembered (forgotten at once when the watch sees it created).
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_SERVICE_ACCOUNT_NOT_FOUND_TTL",
          default_value = "2s", value_parser = parse_duration)]
    pub service_account_not_found_ttl: Duration,
    /// Direct ServiceAccount GETs per second on average (the rest of the
    /// lookups of ServiceAccounts not in the cache fail, and their pods are
    /// denied with 503 and retried).
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_SERVICE_ACCOUNT_LOOKUPS_PER_SECOND",
        default_value_t = 20.0
    )]
    pub service_account_lookups_per_second: f64,
    /// Direct ServiceAccount GETs allowed at once after a quiet period.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_SERVICE_ACCOUNT_LOOKUP_BURST",
        default_value_t = 50.0
    )]
    pub service_account_lookup_burst: f64,
    /// Take ServiceAccounts from this file (YAML/JSON, multi-document) instead of a cluster.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_SERVICE_ACCOUNTS")]
    pub service_accounts: Option<PathBuf>,
    /// Largest AdmissionReview body accepted, in bytes (the API server's own
    /// request limit is 3 MiB).
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_MAX_REQUEST_BYTES", default_value_t = 3 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// AdmissionReviews read and answered at once; more wait (their bodies
    /// unread) until one finishes. Bounds memory: at most this many bodies of
    /// --max-request-bytes are held.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_MAX_REQUESTS_IN_FLIGHT",
        default_value_t = 16
    )]
    pub max_requests_in_flight: usize,
    /// A connection must send a complete request head within this time, and
    /// an idle HTTP/1.1 keep-alive connection is closed after it (both ports).
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// An HTTPS connection on which nothing was read or written for this
    /// long is closed, whatever its protocol (HTTP/2 connections, which the
    /// header-read timeout does not cover, included). Longer than any one
    /// review takes.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Connections open at once on each port; more are closed at once.
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub max_connections: usize,
    /// Connections open at once from one IP address on each port (the API
    /// servers reach /mutate from a few addresses: keep it generous).
    #[arg(
        long,
        env = "POD_IDENTITY_WEBHOOK_MAX_CONNECTIONS_PER_PEER",
        default_value_t = 256
    )]
    pub max_connections_per_peer: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Log format.
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub compat: CompatArgs,
}

/// Upstream flags accepted so existing command lines keep working. They change
/// nothing here (certificates come from files, logs go to stderr); `-v` >= 4
/// turns on debug logging.
#[derive(Debug, Clone, Default, Args)]
pub struct CompatArgs {
    /// (upstream, in-cluster CSR flow) service name; accepted and ignored.
    #[arg(long, hide = true)]
    pub service_name: Option<String>,
    /// (upstream, in-cluster CSR flow) TLS secret name; accepted and ignored.
    #[arg(long, hide = true)]
    pub tls_secret: Option<String>,
    /// (upstream) debugging handlers; accepted and ignored.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub enable_debugging_handlers: Option<bool>,
    /// (upstream) compose role ARNs from instance metadata: not supported; true is an error.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub compose_role_arn: Option<bool>,
    /// (klog) accepted and ignored: logs always go to stderr.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub logtostderr: Option<bool>,
    /// (klog) accepted and ignored.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub alsologtostderr: Option<bool>,
    /// (klog) accepted and ignored.
    #[arg(long, hide = true)]
    pub stderrthreshold: Option<String>,
    /// (klog) accepted and ignored.
    #[arg(long, hide = true)]
    pub vmodule: Option<String>,
    /// (klog) verbosity: 4 or more enables debug logs (RUST_LOG wins when set).
    #[arg(short = 'v', long = "v", hide = true)]
    pub verbosity: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
    Patch,
}

#[derive(Debug, Clone, Args)]
pub struct MutateArgs {
    #[command(flatten)]
    pub injection: InjectionArgs,
    /// ServiceAccount manifests (multi-document YAML, JSON, or a List).
    #[arg(long, env = "POD_IDENTITY_WEBHOOK_SERVICE_ACCOUNTS")]
    pub service_accounts: PathBuf,
    /// What to print: the mutated pod as YAML or JSON, or the JSON Patch.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
    /// Namespace of the pod when its manifest names none.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Pod manifest (`-` for stdin).
    pub pod_file: PathBuf,
}

fn check_nonempty(flag: &str, value: &str) -> crate::Result<()> {
    if value.trim().is_empty() {
        return Err(crate::Error::Config(format!("--{flag} must not be empty")));
    }
    Ok(())
}

fn check_mount_path(flag: &str, value: &str) -> crate::Result<()> {
    check_nonempty(flag, value)?;
    if !value.starts_with('/') {
        return Err(crate::Error::Config(format!(
            "--{flag} must be an absolute path, got {value:?}"
        )));
    }
    Ok(())
}

impl InjectionArgs {
    /// Validates the flags and resolves them into an [`InjectionConfig`].
    pub fn to_config(&self) -> crate::Result<InjectionConfig> {
        check_nonempty("annotation-prefix", &self.annotation_prefix)?;
        if self.annotation_prefix.contains('/') {
            return Err(crate::Error::Config(format!(
                "--annotation-prefix must be a domain without '/', got {:?}",
                self.annotation_prefix
            )));
        }
        check_nonempty("token-audience", &self.token_audience)?;
        check_mount_path("token-mount-path", &self.token_mount_path)?;
        check_nonempty(
            "container-credentials-audience",
            &self.container_credentials_audience,
        )?;
        check_mount_path(
            "container-credentials-token-mount-path",
            &self.container_credentials_token_mount_path,
        )?;
        check_nonempty(
            "container-credentials-token-volume-name",
            &self.container_credentials_token_volume_name,
        )?;
        check_nonempty(
            "container-credentials-token-path",
            &self.container_credentials_token_path,
        )?;
        check_nonempty(
            "container-credentials-full-uri",
            &self.container_credentials_full_uri,
        )?;
        check_nonempty("sidecar-image", &self.sidecar_image)?;
        check_nonempty("sidecar-name", &self.sidecar_name)?;
        let agent_url = self.agent_url.trim();
        let parsed = agent_url.parse::<http::Uri>().ok().filter(|u| {
            u.scheme_str() == Some("http") && u.host().is_some() && !u.path().is_empty()
        });
        if parsed.is_none() {
            return Err(crate::Error::Config(format!(
                "--agent-url must be an http:// URL of the node agent, got {agent_url:?}"
            )));
        }
        let ports = [
            self.sidecar_port,
            self.sidecar_health_port,
            self.sidecar_metrics_port,
        ];
        if ports.contains(&0)
            || ports[0] == ports[1]
            || ports[0] == ports[2]
            || ports[1] == ports[2]
        {
            return Err(crate::Error::Config(
                "--sidecar-port, --sidecar-health-port and --sidecar-metrics-port must be distinct and non-zero".into(),
            ));
        }
        let region = self.aws_default_region.trim();
        Ok(InjectionConfig {
            annotation_prefix: self.annotation_prefix.clone(),
            token_audience: self.token_audience.clone(),
            token_mount_path: self.token_mount_path.clone(),
            token_expiration: self.token_expiration.max(MIN_TOKEN_EXPIRATION),
            region: (!region.is_empty()).then(|| region.to_string()),
            sts_regional_endpoint: self.sts_regional_endpoint,
            container_credentials: ContainerCredentialsConfig {
                audience: self.container_credentials_audience.clone(),
                mount_path: self.container_credentials_token_mount_path.clone(),
                volume_name: self.container_credentials_token_volume_name.clone(),
                token_path: self.container_credentials_token_path.clone(),
                full_uri: self.container_credentials_full_uri.clone(),
            },
            credential_mode: self.credential_mode,
            agent_url: agent_url.to_string(),
            sidecar: SidecarConfig {
                image: self.sidecar_image.trim().to_string(),
                image_pull_policy: self.sidecar_image_pull_policy.clone(),
                name: self.sidecar_name.trim().to_string(),
                ports: SidecarPorts {
                    credentials: self.sidecar_port,
                    health: self.sidecar_health_port,
                    metrics: self.sidecar_metrics_port,
                },
                cpu_request: self.sidecar_cpu_request.clone(),
                memory_request: self.sidecar_memory_request.clone(),
                memory_limit: self.sidecar_memory_limit.clone(),
            },
            native_sidecars: self.native_sidecars != NativeSidecars::False,
            max_patch_bytes: self.max_patch_bytes,
        })
    }
}

/// Inserts the default `serve` subcommand when the first argument is not a
/// subcommand, so `pod-identity-webhook --port 8443` keeps working like upstream.
pub fn with_default_subcommand(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let known = ["serve", "mutate", "help", "--help", "-h", "--version", "-V"];
    if !known.contains(&first) {
        args.insert(1.min(args.len()), "serve".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let argv = with_default_subcommand(args.iter().map(Into::into).collect());
        Cli::try_parse_from(argv).unwrap()
    }

    #[test]
    fn serve_is_default_and_upstream_flags_parse() {
        let cli = parse(&[
            "pod-identity-webhook",
            "--port=8443",
            "--sts-regional-endpoint=true",
            "--aws-default-region",
            "eu-west-1",
            "--service-account-lookup-grace-period=250ms",
            "--in-cluster=false",
        ]);
        let Command::Serve(s) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(s.port, 8443);
        assert!(s.injection.sts_regional_endpoint);
        assert_eq!(
            s.service_account_lookup_grace_period,
            Duration::from_millis(250)
        );
        let cfg = s.injection.to_config().unwrap();
        assert_eq!(cfg.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn upstream_deployment_command_line_parses() {
        // The args of upstream's deploy/deployment-base.yaml and common klog flags.
        let cli = parse(&[
            "/webhook",
            "--in-cluster=false",
            "--namespace=eks",
            "--service-name=pod-identity-webhook",
            "--annotation-prefix=eks.amazonaws.com",
            "--token-audience=sts.amazonaws.com",
            "--logtostderr",
            "--tls-secret=pod-identity-webhook",
            "--enable-debugging-handlers=false",
            "-v=4",
            "--stderrthreshold=INFO",
        ]);
        let Command::Serve(s) = cli.command else {
            panic!()
        };
        assert_eq!(s.namespace, "eks");
        assert_eq!(s.compat.verbosity, Some(4));
        assert_eq!(s.compat.logtostderr, Some(true));
    }

    #[test]
    fn bare_bool_flag_means_true() {
        let cli = parse(&["w", "serve", "--sts-regional-endpoint"]);
        let Command::Serve(s) = cli.command else {
            panic!()
        };
        assert!(s.injection.sts_regional_endpoint);
    }

    #[test]
    fn bad_values_are_rejected() {
        let mut a = parse(&["w"]);
        let Command::Serve(ref mut s) = a.command else {
            panic!()
        };
        s.injection.token_mount_path = "relative/path".into();
        assert!(s.injection.to_config().is_err());
        s.injection.token_mount_path = "/ok".into();
        s.injection.annotation_prefix = "a/b".into();
        assert!(s.injection.to_config().is_err());
        let argv = with_default_subcommand(
            ["w", "--service-account-lookup-grace-period=soon"]
                .iter()
                .map(Into::into)
                .collect(),
        );
        assert!(Cli::try_parse_from(argv).is_err());
    }

    #[test]
    fn token_expiration_is_raised_to_minimum() {
        let cli = parse(&["w", "--token-expiration=5"]);
        let Command::Serve(s) = cli.command else {
            panic!()
        };
        assert_eq!(s.injection.to_config().unwrap().token_expiration, 600);
    }
}
