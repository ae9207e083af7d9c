//! The command line, and nothing else: `serve` (node agent), `sidecar`
//! (in-pod) and `setup-link` (node init step). Every flag has an environment
//! variable `CREDENTIAL_AGENT_<FLAG>`; the AWS ones also read the SDK's
//! variables. Addresses, ports and the sidecar's flag names are the
//! webhook's contract (`contract::agent`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use contract::agent::{
    node_listen_addrs, SidecarPorts, HEALTH_PORT, METRICS_PORT, NODE_IPV4, NODE_IPV6,
};
use contract::duration::parse as duration;
use contract::RoleArn;

#[derive(Parser, Debug)]
#[command(
    name = "credential-agent",
    version,
    about = "Exchanges projected ServiceAccount tokens for AWS STS credentials and serves them over the container credentials protocol"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Node mode (DaemonSet, hostNetwork): verifies each pod's token and
    /// serves credentials for the role named in the request.
    Serve(ServeArgs),
    /// In-pod mode: serves credentials for one role to the holder of the
    /// pod's token file.
    Sidecar(SidecarArgs),
    /// Node init step: adds the agent's link-local addresses to a dummy
    /// interface (needs NET_ADMIN).
    SetupLink(LinkArgs),
    /// Pod Identity broker (Deployment): answers the EKS Auth API's
    /// AssumeRoleForPodIdentity over HTTPS for the pods of
    /// PodIdentityAssociations, with sts:AssumeRole and session tags.
    Broker(BrokerArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--cache-scope` (the runtime's is `config::CacheScope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CacheScope {
    /// One credential per ServiceAccount (uid) and role, shared by its pods.
    #[value(name = "service-account")]
    ServiceAccount,
    /// One credential per pod, with the pod in the session name.
    Pod,
}

/// Settings both serving modes share.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// AWS region; selects the regional STS endpoint. Falls back to
    /// AWS_DEFAULT_REGION.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// STS endpoint URL (default: https://sts.<region>.amazonaws.com).
    #[arg(long, env = "AWS_ENDPOINT_URL_STS")]
    pub sts_endpoint: Option<String>,
    /// DurationSeconds of the sessions asked of STS (900-43200).
    #[arg(long, env = "CREDENTIAL_AGENT_SESSION_DURATION", default_value = "3600", value_parser = duration)]
    pub session_duration: Duration,
    /// Listener for /healthz and /readyz.
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_HEALTH_LISTEN",
        default_value_t = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), HEALTH_PORT)
    )]
    pub health_listen: SocketAddr,
    /// Listener for Prometheus /metrics.
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_METRICS_LISTEN",
        default_value_t = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), METRICS_PORT)
    )]
    pub metrics_listen: SocketAddr,
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Least lifetime a served credential has while STS works.
    #[arg(long, env = "CREDENTIAL_AGENT_MIN_REMAINING", default_value = "15m", value_parser = duration)]
    pub min_remaining: Duration,
    /// Refresh starts when min-remaining plus this (plus jitter) is left.
    #[arg(long, env = "CREDENTIAL_AGENT_REFRESH_MARGIN", default_value = "5m", value_parser = duration)]
    pub refresh_margin: Duration,
    /// Random spread added to the refresh point.
    #[arg(long, env = "CREDENTIAL_AGENT_REFRESH_JITTER", default_value = "5m", value_parser = duration)]
    pub refresh_jitter: Duration,
    /// How long a refusal by STS (AccessDenied, InvalidIdentityToken, ...) is
    /// remembered for the same token.
    #[arg(long, env = "CREDENTIAL_AGENT_NEGATIVE_CACHE_TTL", default_value = "10s", value_parser = duration)]
    pub negative_cache_ttl: Duration,
    /// Cap of the retry backoff when STS fails.
    #[arg(long, env = "CREDENTIAL_AGENT_MAX_BACKOFF", default_value = "5m", value_parser = duration)]
    pub max_backoff: Duration,
    /// Identities not asked for within this time are dropped.
    #[arg(long, env = "CREDENTIAL_AGENT_IDLE_TIMEOUT", default_value = "90m", value_parser = duration)]
    pub idle_timeout: Duration,
    /// Most identities cached.
    #[arg(long, env = "CREDENTIAL_AGENT_MAX_ENTRIES", default_value = "20000")]
    pub max_entries: usize,
    /// STS calls in flight at once, over all identities (more wait).
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_MAX_CONCURRENT_STS",
        default_value = "16"
    )]
    pub max_concurrent_sts: usize,
    /// How long a call waits for one of the STS slots before it is
    /// refused with 429 (slots go round-robin across identities).
    #[arg(long, env = "CREDENTIAL_AGENT_STS_QUEUE_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub sts_queue_timeout: Duration,
    /// Roles one identity (namespace + ServiceAccount uid) may have cached or
    /// being fetched; a request for one more gets 429.
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_MAX_ROLES_PER_IDENTITY",
        default_value_t = 8
    )]
    pub max_roles_per_identity: usize,
    /// Timeout of one STS call.
    #[arg(long, env = "CREDENTIAL_AGENT_STS_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub sts_timeout: Duration,
    /// A connection must send a complete request head within this time,
    /// and an idle keep-alive connection is closed after it (every listener).
    #[arg(long, env = "CREDENTIAL_AGENT_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// Connections open at once on one listener; more are closed at once.
    #[arg(long, env = "CREDENTIAL_AGENT_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Connections open at once from one IP address on one listener (a pod;
    /// hostNetwork pods share the node's address); more are closed at once.
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_MAX_CONNECTIONS_PER_PEER",
        default_value_t = 64
    )]
    pub max_connections_per_peer: usize,
    /// Time to finish in-flight requests after SIGTERM.
    #[arg(long, env = "CREDENTIAL_AGENT_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to serve credentials on (repeatable). One that cannot be
    /// bound is logged and skipped.
    #[arg(
        long = "listen",
        env = "CREDENTIAL_AGENT_LISTEN",
        value_delimiter = ',',
        default_values_t = node_listen_addrs()
    )]
    pub listen: Vec<SocketAddr>,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Accepted audiences (repeatable); a token must carry one of them.
    #[arg(long = "audience", env = "CREDENTIAL_AGENT_AUDIENCE", value_delimiter = ',', default_values = ["sts.amazonaws.com"])]
    pub audiences: Vec<String>,
    /// EKS Auth API endpoint for Pod Identity: a request without `?role=`
    /// presenting an eks-pod-identity-token is exchanged there (this
    /// project's broker, or https://eks-auth.<region>.api.aws on EKS). Off
    /// when not set.
    #[arg(long, env = "CREDENTIAL_AGENT_EKS_AUTH_ENDPOINT")]
    pub eks_auth_endpoint: Option<String>,
    /// The cluster name sent to EKS Auth (required with --eks-auth-endpoint).
    #[arg(long, env = "CREDENTIAL_AGENT_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Extra CA bundle for the EKS Auth endpoint (a broker's private CA).
    #[arg(long, env = "CREDENTIAL_AGENT_EKS_AUTH_CA_FILE")]
    pub eks_auth_ca_file: Option<PathBuf>,
    /// Send EKS Auth requests unsigned (the broker reads only the token);
    /// by default they are SigV4-signed with the node's credentials, as EKS
    /// Auth requires.
    #[arg(long, env = "CREDENTIAL_AGENT_EKS_AUTH_UNSIGNED")]
    pub eks_auth_unsigned: bool,
    /// What one cached credential is shared by.
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_CACHE_SCOPE",
        value_enum,
        default_value = "service-account"
    )]
    pub cache_scope: CacheScope,
}

/// Where tokens are verified against: the issuer and its keys (`serve` and
/// `broker`).
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// The `iss` every token must carry (the cluster's service account
    /// issuer, e.g. https://oidc.eks.<region>.amazonaws.com/id/<id>).
    #[arg(long, env = "CREDENTIAL_AGENT_ISSUER")]
    pub issuer: String,
    /// URL of the issuer's JWKS. Default: the in-cluster API server's
    /// /openid/v1/jwks, with the agent's own ServiceAccount token and CA.
    #[arg(long, env = "CREDENTIAL_AGENT_JWKS_URL", conflicts_with = "jwks_file")]
    pub jwks_url: Option<String>,
    /// A JWKS document on disk instead of a URL.
    #[arg(long, env = "CREDENTIAL_AGENT_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// CA bundle for the JWKS URL (default with the in-cluster URL: the
    /// ServiceAccount CA).
    #[arg(long, env = "CREDENTIAL_AGENT_JWKS_CA_FILE")]
    pub jwks_ca_file: Option<PathBuf>,
    /// Bearer token file for the JWKS URL (default with the in-cluster URL:
    /// the agent's ServiceAccount token).
    #[arg(long, env = "CREDENTIAL_AGENT_JWKS_TOKEN_FILE")]
    pub jwks_token_file: Option<PathBuf>,
    /// How often the key set is re-read.
    #[arg(long, env = "CREDENTIAL_AGENT_JWKS_REFRESH_INTERVAL", default_value = "1h", value_parser = duration)]
    pub jwks_refresh_interval: Duration,
    /// At most one re-read per this interval when a token names an unknown key.
    #[arg(long, env = "CREDENTIAL_AGENT_JWKS_MIN_REFETCH_INTERVAL", default_value = "10s", value_parser = duration)]
    pub jwks_min_refetch_interval: Duration,
    /// Clock skew allowed on exp and nbf.
    #[arg(long, env = "CREDENTIAL_AGENT_TOKEN_LEEWAY", default_value = "10s", value_parser = duration)]
    pub token_leeway: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct BrokerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Accepted audiences (repeatable); a token must carry one of them.
    #[arg(long = "audience", env = "CREDENTIAL_AGENT_AUDIENCE", value_delimiter = ',', default_values = ["pods.eks.amazonaws.com"])]
    pub audiences: Vec<String>,
    /// HTTPS address of the EKS Auth API.
    #[arg(long, env = "CREDENTIAL_AGENT_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Serving certificate (PEM chain); re-read when it changes.
    #[arg(long, env = "CREDENTIAL_AGENT_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// Serving key (PEM); re-read when it changes.
    #[arg(long, env = "CREDENTIAL_AGENT_TLS_KEY")]
    pub tls_key: PathBuf,
    /// How often the certificate and key files are checked for a change.
    #[arg(long, env = "CREDENTIAL_AGENT_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = duration)]
    pub tls_reload_interval: Duration,
    /// An HTTPS connection on which nothing moves for this long is closed
    /// (HTTP/2 connections included).
    #[arg(long, env = "CREDENTIAL_AGENT_CONNECTION_IDLE_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub connection_idle_timeout: Duration,
    /// The cluster name requests must name (the session tag
    /// eks-cluster-name and the session name carry it).
    #[arg(long, env = "CREDENTIAL_AGENT_CLUSTER_NAME")]
    pub cluster_name: String,
    /// The session tag eks-cluster-arn (none when not set) and the
    /// account of associationArn.
    #[arg(long, env = "CREDENTIAL_AGENT_CLUSTER_ARN")]
    pub cluster_arn: Option<String>,
    /// The API server (default: the in-cluster one).
    #[arg(long, env = "CREDENTIAL_AGENT_KUBE_API_URL")]
    pub kube_api_url: Option<String>,
    /// CA bundle of the API server (default in a cluster: the
    /// ServiceAccount CA).
    #[arg(long, env = "CREDENTIAL_AGENT_KUBE_CA_FILE")]
    pub kube_ca_file: Option<PathBuf>,
    /// Bearer token file for the API server, re-read for each call (default
    /// in a cluster: the broker's ServiceAccount token).
    #[arg(long, env = "CREDENTIAL_AGENT_KUBE_TOKEN_FILE")]
    pub kube_token_file: Option<PathBuf>,
    /// Timeout of one API server call.
    #[arg(long, env = "CREDENTIAL_AGENT_KUBE_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub kube_timeout: Duration,
    /// A pod confirmed to exist is not asked for again within this time: a
    /// deleted pod's token is refused at most this long after.
    #[arg(long, env = "CREDENTIAL_AGENT_POD_RECHECK_INTERVAL", default_value = "5s", value_parser = duration)]
    pub pod_recheck_interval: Duration,
    /// Pod lookups in flight at once (round-robin by namespace).
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_MAX_CONCURRENT_POD_LOOKUPS",
        default_value_t = 16
    )]
    pub max_concurrent_pod_lookups: usize,
    /// Write each association's status (Ready, associationId, conflicts).
    #[arg(long, env = "CREDENTIAL_AGENT_WRITE_STATUS", default_value_t = true, action = clap::ArgAction::Set)]
    pub write_status: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SidecarArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to serve credentials on (loopback: only the pod reaches it).
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_LISTEN",
        default_value_t = SidecarPorts::default().listen()
    )]
    pub listen: SocketAddr,
    /// The role to assume.
    #[arg(long, env = "AWS_ROLE_ARN", value_parser = parse_role_arn)]
    pub role_arn: RoleArn,
    /// The pod's projected ServiceAccount token; re-read when it changes.
    #[arg(long, env = "AWS_WEB_IDENTITY_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// How often the token file is re-read in the background.
    #[arg(long, env = "CREDENTIAL_AGENT_TOKEN_RELOAD_INTERVAL", default_value = "30s", value_parser = duration)]
    pub token_reload_interval: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct LinkArgs {
    /// Interface to put the addresses on; created as a dummy link if missing.
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_INTERFACE",
        default_value = "pod-identity0"
    )]
    pub interface: String,
    /// Addresses to add (repeatable).
    #[arg(
        long = "address",
        env = "CREDENTIAL_AGENT_ADDRESS",
        value_delimiter = ',',
        default_values_t = [IpAddr::V4(NODE_IPV4), IpAddr::V6(NODE_IPV6)]
    )]
    pub addresses: Vec<IpAddr>,
}

fn parse_role_arn(s: &str) -> std::result::Result<RoleArn, contract::RoleArnError> {
    RoleArn::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let cli = Cli::try_parse_from([
            "credential-agent",
            "serve",
            "--issuer",
            "https://issuer",
            "--jwks-file",
            "/x",
            "--region",
            "eu-west-1",
        ])
        .unwrap();
        let Command::Serve(a) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(a.listen.len(), 2);
        assert_eq!(a.audiences, ["sts.amazonaws.com"]);
        assert_eq!(a.common.health_listen.port(), 2703);
        assert_eq!(a.common.metrics_listen.port(), 2705);
        let cfg = crate::config::NodeConfig::try_from(&a).unwrap();
        assert_eq!(cfg.common.region, "eu-west-1");
        assert_eq!(cfg.verifier.audiences, ["sts.amazonaws.com"]);
    }

    /// Every flag and combination refused is refused by the configuration,
    /// before anything binds.
    #[test]
    fn bad_flags_are_refused_before_start() {
        let base = [
            "credential-agent",
            "serve",
            "--issuer",
            "https://issuer",
            "--jwks-file",
            "/x",
        ];
        for (extra, want) in [
            (&["--header-read-timeout=0s"][..], "--header-read-timeout"),
            (&["--max-connections=0"], "--max-connections"),
            (&["--session-duration=100"], "session duration"),
            (&["--sts-endpoint=ftp://x"], "--sts-endpoint"),
            (&["--region=eu west"], "--region"),
            (&["--audience="], "--audience"),
            (
                &["--jwks-url=http://example.com/keys", "--jwks-file="],
                "https://",
            ),
        ] {
            let mut argv: Vec<&str> = base.to_vec();
            if extra[0].starts_with("--jwks-url") {
                argv.truncate(4);
            }
            argv.extend(
                extra
                    .iter()
                    .filter(|e| !e.is_empty() && **e != "--jwks-file="),
            );
            let Command::Serve(a) = Cli::try_parse_from(&argv).unwrap().command else {
                panic!("not serve")
            };
            let e = crate::config::NodeConfig::try_from(&a)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{extra:?}: {e}");
        }
        let empty_issuer = [
            "credential-agent",
            "serve",
            "--issuer",
            "",
            "--jwks-file",
            "/x",
        ];
        let Command::Serve(a) = Cli::try_parse_from(empty_issuer).unwrap().command else {
            panic!("not serve")
        };
        assert!(crate::config::NodeConfig::try_from(&a).is_err());
    }
}
