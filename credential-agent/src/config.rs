//! Command line: `serve` (node agent), `sidecar` (in-pod) and `setup-link`
//! (node init step). Every flag has an environment variable
//! `CREDENTIAL_AGENT_<FLAG>`; the AWS ones also read the SDK's variables.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cache::CacheConfig;
use crate::error::{Error, Result};

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CacheScope {
    /// One credential per ServiceAccount (uid) and role, shared by its pods.
    #[value(name = "service-account")]
    ServiceAccount,
    /// One credential per pod, with the pod in the session name.
    Pod,
}

fn duration(s: &str) -> std::result::Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration (\"90s\", \"15m\", \"1h\"): {e}"))
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
        default_value = "127.0.0.1:2703"
    )]
    pub health_listen: SocketAddr,
    /// Listener for Prometheus /metrics.
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_METRICS_LISTEN",
        default_value = "0.0.0.0:2705"
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
    /// Timeout of one STS call.
    #[arg(long, env = "CREDENTIAL_AGENT_STS_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub sts_timeout: Duration,
    /// Time to finish in-flight requests after SIGTERM.
    #[arg(long, env = "CREDENTIAL_AGENT_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,
}

impl CommonArgs {
    pub fn cache_config(&self) -> Result<CacheConfig> {
        let cfg = CacheConfig {
            session_duration: self.session_duration,
            min_remaining: self.min_remaining,
            refresh_margin: self.refresh_margin,
            refresh_jitter: self.refresh_jitter,
            negative_ttl: self.negative_cache_ttl,
            backoff_base: Duration::from_secs(1),
            backoff_max: self.max_backoff.max(Duration::from_secs(1)),
            idle_timeout: self.idle_timeout,
            max_entries: self.max_entries,
            sts_timeout: self.sts_timeout,
            max_concurrent_sts: self.max_concurrent_sts,
        };
        cfg.validate().map_err(Error::Config)?;
        Ok(cfg)
    }

    /// The region, from --region / AWS_REGION, then AWS_DEFAULT_REGION, else
    /// us-east-1 (with a warning); with an explicit STS endpoint any region
    /// will do.
    pub fn resolved_region(&self) -> Result<String> {
        let region = self.region.clone().filter(|r| !r.is_empty()).or_else(|| {
            std::env::var("AWS_DEFAULT_REGION")
                .ok()
                .filter(|r| !r.is_empty())
        });
        match (region, &self.sts_endpoint) {
            (Some(r), _) => {
                if r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    Ok(r)
                } else {
                    Err(Error::Config(format!(
                        "--region {r:?} is not a region name"
                    )))
                }
            }
            (None, Some(_)) => Ok("us-east-1".into()),
            (None, None) => {
                tracing::warn!("no --region (or AWS_REGION): using STS in us-east-1; set the region to use the regional endpoint");
                Ok("us-east-1".into())
            }
        }
    }

    pub fn sts_endpoint(&self) -> Result<Option<String>> {
        match &self.sts_endpoint {
            None => Ok(None),
            Some(u) if u.is_empty() => Ok(None),
            Some(u) => {
                let parsed = u.parse::<http::Uri>().ok().filter(|p| {
                    matches!(p.scheme_str(), Some("http") | Some("https")) && p.host().is_some()
                });
                match parsed {
                    Some(_) => Ok(Some(u.clone())),
                    None => Err(Error::Config(format!(
                        "--sts-endpoint {u:?} is not an http(s) URL"
                    ))),
                }
            }
        }
    }
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
        default_values = ["169.254.170.23:80", "[fd00:ec2::23]:80"]
    )]
    pub listen: Vec<SocketAddr>,
    /// The `iss` every token must carry (the cluster's service account
    /// issuer, e.g. https://oidc.eks.<region>.amazonaws.com/id/<id>).
    #[arg(long, env = "CREDENTIAL_AGENT_ISSUER")]
    pub issuer: String,
    /// Accepted audiences (repeatable); a token must carry one of them.
    #[arg(long = "audience", env = "CREDENTIAL_AGENT_AUDIENCE", value_delimiter = ',', default_values = ["sts.amazonaws.com"])]
    pub audiences: Vec<String>,
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
    /// What one cached credential is shared by.
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_CACHE_SCOPE",
        value_enum,
        default_value = "service-account"
    )]
    pub cache_scope: CacheScope,
}

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl ServeArgs {
    /// The key source, with in-cluster defaults filled in.
    pub fn jwks_source(&self) -> Result<crate::verify::JwksSource> {
        if let Some(f) = &self.jwks_file {
            return Ok(crate::verify::JwksSource::File(f.clone()));
        }
        let (url, in_cluster) = match &self.jwks_url {
            Some(u) => (u.clone(), false),
            None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
                    Error::Config(
                        "no --jwks-url and not running in a cluster (KUBERNETES_SERVICE_HOST unset)"
                            .into(),
                    )
                })?;
                let port =
                    std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                (format!("https://{host}:{port}/openid/v1/jwks"), true)
            }
        };
        let parsed = url.parse::<http::Uri>().ok().filter(|u| {
            matches!(u.scheme_str(), Some("https") | Some("http")) && u.host().is_some()
        });
        if parsed.is_none() {
            return Err(Error::Config(format!(
                "--jwks-url {url:?} is not an http(s) URL"
            )));
        }
        let ca = self
            .jwks_ca_file
            .clone()
            .or_else(|| in_cluster.then(|| PathBuf::from(SA_DIR).join("ca.crt")));
        let bearer = self
            .jwks_token_file
            .clone()
            .or_else(|| in_cluster.then(|| PathBuf::from(SA_DIR).join("token")));
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &ca {
            let pem = std::fs::read(ca).map_err(|e| Error::Io {
                context: format!("cannot read --jwks-ca-file {}", ca.display()),
                source: e,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Config(format!(
                    "{} holds no usable PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot build the JWKS client: {e}")))?;
        Ok(crate::verify::JwksSource::Url {
            url,
            client,
            bearer_token_file: bearer,
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct SidecarArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to serve credentials on (loopback: only the pod reaches it).
    #[arg(
        long,
        env = "CREDENTIAL_AGENT_LISTEN",
        default_value = "127.0.0.1:2702"
    )]
    pub listen: SocketAddr,
    /// The role to assume.
    #[arg(long, env = "AWS_ROLE_ARN")]
    pub role_arn: String,
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
        default_values = ["169.254.170.23", "fd00:ec2::23"]
    )]
    pub addresses: Vec<IpAddr>,
}

/// A role ARN as IAM writes it: `arn:<partition>:iam::<12 digits>:role/<path/name>`.
pub fn validate_role_arn(arn: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[1].chars().all(|c| c.is_ascii_lowercase() || c == '-')
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|name| {
            !name.is_empty()
                && !name.ends_with('/')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
        })
        && (20..=2048).contains(&arn.len());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{arn:?} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        for good in [
            "arn:aws:iam::123456789012:role/app",
            "arn:aws-cn:iam::123456789012:role/path/to/app",
            "arn:aws-us-gov:iam::123456789012:role/a+b=c,d.e@f_g-h",
        ] {
            assert!(validate_role_arn(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "app",
            "arn:aws:iam::12345678901:role/app",
            "arn:aws:iam::123456789012:user/app",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:s3::123456789012:role/app",
            "arn:aws:iam:us-east-1:123456789012:role/app",
            "arn:aws:iam::123456789012:role/a b",
            "arn:aws:iam::123456789012:role/app\n",
        ] {
            assert!(validate_role_arn(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("15m").unwrap(), Duration::from_secs(900));
        assert!(duration("soon").is_err());
    }

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
        assert!(a.common.cache_config().is_ok());
        assert_eq!(a.common.resolved_region().unwrap(), "eu-west-1");
    }
}
