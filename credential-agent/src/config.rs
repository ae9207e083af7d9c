//! The agent's validated configuration: `NodeConfig::try_from(&ServeArgs)`
//! and `SidecarConfig::try_from(&SidecarArgs)` check every flag and
//! combination (cache timings, listener bounds, region, STS endpoint,
//! issuer, audiences, key source) before any port is bound or task
//! started; `app.rs` takes only these. clap stays in `args.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use contract::RoleArn;

use crate::args::{CommonArgs, ServeArgs, SidecarArgs};
use crate::cache::CacheConfig;
use crate::error::{Error, Result};
use crate::verify::{JwksSource, VerifierConfig};

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

impl TryFrom<&ServeArgs> for NodeConfig {
    type Error = Error;

    fn try_from(a: &ServeArgs) -> Result<NodeConfig> {
        let common = CommonConfig::try_from(&a.common)?;
        if a.issuer.is_empty() {
            return Err(Error::Config("--issuer must not be empty".into()));
        }
        let audiences: Vec<String> = a
            .audiences
            .iter()
            .filter(|x| !x.is_empty())
            .cloned()
            .collect();
        if audiences.is_empty() {
            return Err(Error::Config(
                "--audience must name at least one audience".into(),
            ));
        }
        if a.audiences.len() > 32 {
            return Err(Error::Config(
                "--audience names more than 32 audiences".into(),
            ));
        }
        let jwks = JwksSource::from_settings(
            a.jwks_url.as_deref(),
            a.jwks_file.as_deref(),
            a.jwks_ca_file.as_deref(),
            a.jwks_token_file.as_deref(),
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        Ok(NodeConfig {
            common,
            listen: a.listen.clone(),
            verifier: VerifierConfig {
                issuer: a.issuer.clone(),
                audiences,
                leeway: a.token_leeway,
                min_refetch_interval: a.jwks_min_refetch_interval,
            },
            jwks,
            jwks_refresh_interval: a.jwks_refresh_interval,
            cache_scope: a.cache_scope.into(),
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
