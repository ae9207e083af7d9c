//! The agent's validated configuration: `NodeConfig::try_from(&ServeArgs)`
//! `SidecarConfig::try_from(&SidecarArgs)` and `BrokerConfig::try_from(&BrokerArgs)` check every flag and
//! combination (cache timings, listener bounds, region, STS endpoint,
//! issuer, audiences, key source) before any port is bound or task
//! started; `app.rs` takes only these. clap stays in `args.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use contract::RoleArn;

use crate::args::{BrokerArgs, CommonArgs, KeyArgs, ServeArgs, SidecarArgs};
use crate::cache::CacheConfig;
use crate::eks_auth_client::EksAuthSettings;
use crate::error::{Error, Result};
use crate::kube_api::KubeApi;
use crate::verify::{JwksSource, VerifierConfig};
use contract::injected::POD_IDENTITY_AUDIENCE;

/// What one cached credential is shared by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheScope {
    /// One credential per ServiceAccount (uid) and role, shared by its pods.
    ServiceAccount,
    /// One credential per pod, with the pod in the session name.
    Pod,
}

impl From<crate::args::CacheScope> for CacheScope {
    fn from(s: crate::args::CacheScope) -> Self {
        match s {
            crate::args::CacheScope::ServiceAccount => CacheScope::ServiceAccount,
            crate::args::CacheScope::Pod => CacheScope::Pod,
        }
    }
}

/// What both serving modes run with.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub cache: CacheConfig,
    pub limits: listener::Limits,
    pub region: String,
    pub sts_endpoint: Option<String>,
    pub sts_timeout: Duration,
    pub health_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub shutdown_timeout: Duration,
}

/// `serve`: the node agent.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub common: CommonConfig,
    pub listen: Vec<SocketAddr>,
    pub verifier: VerifierConfig,
    pub jwks: JwksSource,
    pub jwks_refresh_interval: Duration,
    pub cache_scope: CacheScope,
    /// The Pod Identity backend, when configured.
    pub eks_auth: Option<EksAuthSettings>,
}

/// `sidecar`: one pod's agent.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    pub common: CommonConfig,
    pub listen: SocketAddr,
    pub role_arn: RoleArn,
    pub token_file: PathBuf,
    pub token_reload_interval: Duration,
}

impl TryFrom<&CommonArgs> for CommonConfig {
    type Error = Error;

    fn try_from(a: &CommonArgs) -> Result<CommonConfig> {
        if a.max_connections == 0 || a.max_connections_per_peer == 0 {
            return Err(Error::Config(
                "--max-connections and --max-connections-per-peer must be at least 1".into(),
            ));
        }
        if a.header_read_timeout.is_zero() {
            return Err(Error::Config(
                "--header-read-timeout must be positive".into(),
            ));
        }
        let cache = CacheConfig {
            session_duration: a.session_duration,
            min_remaining: a.min_remaining,
            refresh_margin: a.refresh_margin,
            refresh_jitter: a.refresh_jitter,
            negative_ttl: a.negative_cache_ttl,
            backoff_base: Duration::from_secs(1),
            backoff_max: a.max_backoff.max(Duration::from_secs(1)),
            idle_timeout: a.idle_timeout,
            max_entries: a.max_entries,
            sts_timeout: a.sts_timeout,
            max_concurrent_sts: a.max_concurrent_sts,
            sts_queue_timeout: a.sts_queue_timeout,
            max_roles_per_identity: a.max_roles_per_identity,
        };
        cache.validate().map_err(|e| Error::Config(e.to_string()))?;
        let sts_endpoint = match a.sts_endpoint.as_deref().filter(|u| !u.is_empty()) {
            None => None,
            Some(u) => {
                let ok = u.parse::<http::Uri>().ok().is_some_and(|p| {
                    matches!(p.scheme_str(), Some("http") | Some("https")) && p.host().is_some()
                });
                if !ok {
                    return Err(Error::Config(format!(
                        "--sts-endpoint {u:?} is not an http(s) URL"
                    )));
                }
                Some(u.to_string())
            }
        };
        let region = a.region.clone().filter(|r| !r.is_empty()).or_else(|| {
            std::env::var("AWS_DEFAULT_REGION")
                .ok()
                .filter(|r| !r.is_empty())
        });
        let region = match (region, &sts_endpoint) {
            (Some(r), _) if r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => r,
            (Some(r), _) => {
                return Err(Error::Config(format!(
                    "--region {r:?} is not a region name"
                )))
            }
            (None, Some(_)) => "us-east-1".into(),
            (None, None) => {
                tracing::warn!("no --region (or AWS_REGION): using STS in us-east-1; set the region to use the regional endpoint");
                "us-east-1".into()
            }
        };
        Ok(CommonConfig {
            cache,
            limits: listener::Limits {
                header_read_timeout: a.header_read_timeout,
                max_connections: a.max_connections,
                max_connections_per_peer: a.max_connections_per_peer,
                ..listener::Limits::default()
            },
            region,
            sts_endpoint,
            sts_timeout: a.sts_timeout,
            health_listen: a.health_listen,
            metrics_listen: a.metrics_listen,
            shutdown_timeout: a.shutdown_timeout,
        })
    }
}

/// The issuer, audiences and key source, checked (`serve` and `broker`).
fn verification(
    keys: &KeyArgs,
    audiences: &[String],
) -> Result<(VerifierConfig, JwksSource, Duration)> {
    if keys.issuer.is_empty() {
        return Err(Error::Config("--issuer must not be empty".into()));
    }
    let audiences: Vec<String> = audiences
        .iter()
        .filter(|x| !x.is_empty())
        .cloned()
        .collect();
    if audiences.is_empty() {
        return Err(Error::Config(
            "--audience must name at least one audience".into(),
        ));
    }
    if audiences.len() > 32 {
        return Err(Error::Config(
            "--audience names more than 32 audiences".into(),
        ));
    }
    let jwks = JwksSource::from_settings(
        keys.jwks_url.as_deref(),
        keys.jwks_file.as_deref(),
        keys.jwks_ca_file.as_deref(),
        keys.jwks_token_file.as_deref(),
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    Ok((
        VerifierConfig {
            issuer: keys.issuer.clone(),
            audiences,
            leeway: keys.token_leeway,
            min_refetch_interval: keys.jwks_min_refetch_interval,
        },
        jwks,
        keys.jwks_refresh_interval,
    ))
}

impl TryFrom<&ServeArgs> for NodeConfig {
    type Error = Error;

    fn try_from(a: &ServeArgs) -> Result<NodeConfig> {
        let common = CommonConfig::try_from(&a.common)?;
        let eks_auth = match a.eks_auth_endpoint.as_deref().filter(|e| !e.is_empty()) {
            None => None,
            Some(endpoint) => {
                let ok = endpoint
                    .parse::<http::Uri>()
                    .ok()
                    .is_some_and(|u| u.scheme_str() == Some("https") && u.host().is_some());
                if !ok {
                    return Err(Error::Config(format!(
                        "--eks-auth-endpoint {endpoint:?} is not an https:// URL"
                    )));
                }
                let cluster_name = a
                    .cluster_name
                    .clone()
                    .filter(|c| is_cluster_name(c))
                    .ok_or_else(|| {
                        Error::Config(
                        "--eks-auth-endpoint needs --cluster-name (1-100 letters, digits, - and _)"
                            .into(),
                    )
                    })?;
                Some(EksAuthSettings {
                    endpoint: endpoint.to_string(),
                    cluster_name,
                    ca_file: a.eks_auth_ca_file.clone(),
                    unsigned: a.eks_auth_unsigned,
                })
            }
        };
        // Pod Identity tokens carry their own audience: accept it too.
        let mut audiences = a.audiences.clone();
        if eks_auth.is_some() && !audiences.iter().any(|x| x == POD_IDENTITY_AUDIENCE) {
            audiences.push(POD_IDENTITY_AUDIENCE.to_string());
        }
        let (verifier, jwks, jwks_refresh_interval) = verification(&a.keys, &audiences)?;
        Ok(NodeConfig {
            common,
            listen: a.listen.clone(),
            verifier,
            jwks,
            jwks_refresh_interval,
            cache_scope: a.cache_scope.into(),
            eks_auth,
        })
    }
}

/// The broker's checks that a token's pod still exists (`broker/pods.rs`).
#[derive(Debug, Clone)]
pub struct PodCheckConfig {
    pub recheck: Duration,
    pub max_pods: usize,
    pub max_concurrent: usize,
    pub queue_timeout: Duration,
}

/// `broker`: the Pod Identity broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub common: CommonConfig,
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub tls_reload_interval: Duration,
    pub connection_idle_timeout: Duration,
    pub cluster_name: String,
    pub cluster_arn: Option<String>,
    pub verifier: VerifierConfig,
    pub jwks: JwksSource,
    pub jwks_refresh_interval: Duration,
    pub kube: KubeApi,
    pub pods: PodCheckConfig,
    pub write_status: bool,
}

/// EKS cluster names: 1-100 of letters, digits, `-` and `_`, starting with
/// a letter or digit.
fn is_cluster_name(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl TryFrom<&BrokerArgs> for BrokerConfig {
    type Error = Error;

    fn try_from(a: &BrokerArgs) -> Result<BrokerConfig> {
        let common = CommonConfig::try_from(&a.common)?;
        let (verifier, jwks, jwks_refresh_interval) = verification(&a.keys, &a.audiences)?;
        if !is_cluster_name(&a.cluster_name) {
            return Err(Error::Config(format!(
                "--cluster-name {:?} is not a cluster name (1-100 letters, digits, - and _)",
                a.cluster_name
            )));
        }
        let cluster_arn = a.cluster_arn.clone().filter(|s| !s.is_empty());
        if let Some(arn) = &cluster_arn {
            let parts: Vec<&str> = arn.splitn(6, ':').collect();
            if parts.len() != 6
                || parts[0] != "arn"
                || parts[2] != "eks"
                || !parts[5].starts_with("cluster/")
            {
                return Err(Error::Config(format!(
                    "--cluster-arn {arn:?} is not an EKS cluster ARN (arn:aws:eks:<region>:<account>:cluster/<name>)"
                )));
            }
        }
        if a.pod_recheck_interval.is_zero() || a.connection_idle_timeout.is_zero() {
            return Err(Error::Config(
                "--pod-recheck-interval and --connection-idle-timeout must be positive".into(),
            ));
        }
        if a.max_concurrent_pod_lookups == 0 {
            return Err(Error::Config(
                "--max-concurrent-pod-lookups must be at least 1".into(),
            ));
        }
        let kube = KubeApi::from_settings(
            a.kube_api_url.as_deref(),
            a.kube_ca_file.as_deref(),
            a.kube_token_file.as_deref(),
            a.kube_timeout,
        )
        .map_err(|e| Error::Config(e.0))?;
        Ok(BrokerConfig {
            pods: PodCheckConfig {
                recheck: a.pod_recheck_interval,
                max_pods: common.cache.max_entries,
                max_concurrent: a.max_concurrent_pod_lookups,
                queue_timeout: common.cache.sts_queue_timeout,
            },
            common,
            listen: a.listen,
            tls_cert: a.tls_cert.clone(),
            tls_key: a.tls_key.clone(),
            tls_reload_interval: a.tls_reload_interval.max(Duration::from_secs(1)),
            connection_idle_timeout: a.connection_idle_timeout,
            cluster_name: a.cluster_name.clone(),
            cluster_arn,
            verifier,
            jwks,
            jwks_refresh_interval,
            kube,
            write_status: a.write_status,
        })
    }
}

impl TryFrom<&SidecarArgs> for SidecarConfig {
    type Error = Error;

    fn try_from(a: &SidecarArgs) -> Result<SidecarConfig> {
        Ok(SidecarConfig {
            common: CommonConfig::try_from(&a.common)?,
            listen: a.listen,
            role_arn: a.role_arn.clone(),
            token_file: a.token_file.clone(),
            token_reload_interval: a.token_reload_interval.max(Duration::from_secs(1)),
        })
    }
}
