//! The server's validated configuration: `ServerConfig::try_from(&ServeArgs)`
//! checks every flag and combination before any port is bound or task
//! started; the server takes only this (clap stays in `args.rs`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::args::{NativeSidecars, ServeArgs};
use crate::injection::InjectionConfig;
use crate::sources::cache::LookupLimits;
use crate::{Error, Result};

/// Where ServiceAccounts come from.
#[derive(Debug, Clone)]
pub enum ServiceAccountSource {
    /// A file of ServiceAccounts (no cluster connection).
    File(PathBuf),
    /// The cluster: watched, with direct lookups on a miss.
    Cluster(ClusterSource),
}

/// How the cluster is reached and watched.
#[derive(Debug, Clone)]
pub struct ClusterSource {
    pub kubeconfig: Option<PathBuf>,
    /// Overrides the API server URL of the kubeconfig.
    pub kube_api: Option<http::Uri>,
    pub lookups: LookupLimits,
    /// The namespace of the `pod-identity-webhook` ConfigMap to watch.
    pub config_map_namespace: Option<String>,
    /// The missing-injection audit's interval, when on.
    pub missing_injection_audit: Option<Duration>,
    /// `--watch-pod-identity-associations`.
    pub pod_identity_associations: bool,
    /// Ask the API server whether native sidecars exist (`--native-sidecars=auto`).
    pub detect_native_sidecars: bool,
}

/// Everything `serve` runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub injection: InjectionConfig,
    pub service_accounts: ServiceAccountSource,
    pub container_credentials_config: Option<PathBuf>,
    pub reload_interval: Duration,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub bind_address: IpAddr,
    pub port: u16,
    pub metrics_port: u16,
    pub max_request_bytes: usize,
    pub max_requests_in_flight: usize,
    pub limits: listener::Limits,
    pub idle_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// `--in-cluster=true`: accepted, with a warning at start.
    pub in_cluster_requested: bool,
}

impl TryFrom<&ServeArgs> for ServerConfig {
    type Error = Error;

    fn try_from(args: &ServeArgs) -> Result<ServerConfig> {
        let injection = args.injection.to_config()?;
        if args.compat.compose_role_arn == Some(true) {
            return Err(Error::Config(
                "--compose-role-arn is not supported: annotate ServiceAccounts with full role ARNs"
                    .into(),
            ));
        }
        if args.header_read_timeout.is_zero() {
            return Err(Error::Config(
                "--header-read-timeout must be positive".into(),
            ));
        }
        if args.idle_timeout.is_zero() {
            return Err(Error::Config("--idle-timeout must be positive".into()));
        }
        let service_accounts = match &args.service_accounts {
            Some(path) => ServiceAccountSource::File(path.clone()),
            None => {
                if !(args.service_account_lookups_per_second > 0.0
                    && args.service_account_lookups_per_second.is_finite()
                    && args.service_account_lookup_burst >= 1.0
                    && args.service_account_lookup_burst.is_finite())
                {
                    return Err(Error::Config(
                        "--service-account-lookups-per-second must be positive and --service-account-lookup-burst at least 1".into(),
                    ));
                }
                let kube_api = match &args.kube_api {
                    Some(url) => Some(url.parse().map_err(|e| {
                        Error::Config(format!("--kube-api {url:?} is not a URL: {e}"))
                    })?),
                    None => None,
                };
                ServiceAccountSource::Cluster(ClusterSource {
                    kubeconfig: args.kubeconfig.clone(),
                    kube_api,
                    lookups: LookupLimits {
                        timeout: args.service_account_lookup_grace_period,
                        not_found_ttl: args.service_account_not_found_ttl,
                        per_second: args.service_account_lookups_per_second,
                        burst: args.service_account_lookup_burst,
                    },
                    config_map_namespace: args.watch_config_map.then(|| args.namespace.clone()),
                    missing_injection_audit: (!args.missing_injection_audit_interval.is_zero())
                        .then_some(args.missing_injection_audit_interval),
                    pod_identity_associations: args.watch_pod_identity_associations,
                    detect_native_sidecars: args.injection.native_sidecars == NativeSidecars::Auto,
                })
            }
        };
        Ok(ServerConfig {
            injection,
            service_accounts,
            container_credentials_config: args.injection.watch_container_credentials_config.clone(),
            reload_interval: args.reload_interval,
            tls_cert: args.tls_cert.clone(),
            tls_key: args.tls_key.clone(),
            bind_address: args.bind_address,
            port: args.port,
            metrics_port: args.metrics_port,
            max_request_bytes: args.max_request_bytes,
            max_requests_in_flight: args.max_requests_in_flight.max(1),
            limits: listener::Limits {
                header_read_timeout: args.header_read_timeout,
                max_connections: args.max_connections.max(1),
                max_connections_per_peer: args.max_connections_per_peer.max(1),
                ..listener::Limits::default()
            },
            idle_timeout: args.idle_timeout,
            shutdown_timeout: args.shutdown_timeout,
            in_cluster_requested: args.in_cluster,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{with_default_subcommand, Cli, Command};

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv: Vec<std::ffi::OsString> = vec!["pod-identity-webhook".into()];
        argv.extend(extra.iter().map(Into::into));
        match Cli::try_parse_from(with_default_subcommand(argv))
            .unwrap()
            .command
        {
            Command::Serve(a) => *a,
            _ => unreachable!(),
        }
    }

    /// Every combination refused is refused here, before anything binds.
    #[test]
    fn bad_flags_are_refused_before_start() {
        for (flags, want) in [
            (&["--header-read-timeout=0s"][..], "--header-read-timeout"),
            (&["--idle-timeout=0s"], "--idle-timeout"),
            (&["--compose-role-arn=true"], "--compose-role-arn"),
            (
                &["--service-account-lookups-per-second=0"],
                "lookups-per-second",
            ),
            (&["--service-account-lookup-burst=0.5"], "lookup-burst"),
            (&["--kube-api=http://a b"], "--kube-api"),
        ] {
            let e = ServerConfig::try_from(&args(flags))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{flags:?}: {e}");
        }
        let ok = ServerConfig::try_from(&args(&["--service-accounts=x.yaml"])).unwrap();
        assert!(matches!(ok.service_accounts, ServiceAccountSource::File(_)));
        let cluster =
            ServerConfig::try_from(&args(&["--watch-config-map", "--namespace=eks"])).unwrap();
        let ServiceAccountSource::Cluster(c) = cluster.service_accounts else {
            panic!("a cluster source")
        };
        assert_eq!(c.config_map_namespace.as_deref(), Some("eks"));
        assert_eq!(c.missing_injection_audit, None);
        assert!(c.detect_native_sidecars);
    }
}
