//! The resolved, validated settings the pure mutation works with, their
//! defaults (the flags in `args.rs` take theirs from here), and the bounds of
//! a projected token's lifetime.

use contract::agent::SidecarPorts;

use super::mode::CredentialMode;

/// Every default of the injection settings, written once: `args.rs` uses
/// them as the flags' defaults and [`InjectionConfig::default`] is built
/// from them.
pub mod defaults {
    pub const ANNOTATION_PREFIX: &str = contract::annotations::DEFAULT_PREFIX;
    pub const TOKEN_AUDIENCE: &str = "sts.amazonaws.com";
    pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
    pub const TOKEN_EXPIRATION: i64 = 86400;
    pub const CONTAINER_CREDENTIALS_AUDIENCE: &str = contract::injected::POD_IDENTITY_AUDIENCE;
    pub const CONTAINER_CREDENTIALS_MOUNT_PATH: &str =
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
    pub const CONTAINER_CREDENTIALS_VOLUME_NAME: &str =
        contract::injected::CONTAINER_CREDENTIALS_VOLUME;
    pub const CONTAINER_CREDENTIALS_TOKEN_PATH: &str = "eks-pod-identity-token";
    pub const CONTAINER_CREDENTIALS_FULL_URI: &str = contract::agent::NODE_URL;
    pub const CREDENTIAL_MODE: &str = "web-identity";
    pub const AGENT_URL: &str = contract::agent::NODE_URL;
    pub const SIDECAR_IMAGE: &str = "credential-agent:0.1.0";
    pub const SIDECAR_IMAGE_PULL_POLICY: &str = "IfNotPresent";
    pub const SIDECAR_NAME: &str = "aws-credential-agent";
    pub const SIDECAR_PORT: u16 = contract::agent::SIDECAR_PORT;
    pub const SIDECAR_HEALTH_PORT: u16 = contract::agent::HEALTH_PORT;
    pub const SIDECAR_METRICS_PORT: u16 = contract::agent::METRICS_PORT;
    pub const SIDECAR_CPU_REQUEST: &str = "10m";
    pub const SIDECAR_MEMORY_REQUEST: &str = "16Mi";
    pub const SIDECAR_MEMORY_LIMIT: &str = "64Mi";
    /// A pod with a few dozen containers needs well under 100 KiB.
    pub const MAX_PATCH_BYTES: usize = 1024 * 1024;
}

/// Name of the web identity token volume.
pub const VOLUME_NAME: &str = contract::injected::WEB_IDENTITY_VOLUME;
/// File name of the web identity token inside its volume.
pub const TOKEN_NAME: &str = "token";

/// Kubernetes refuses projected tokens that live shorter than this.
pub const MIN_TOKEN_EXPIRATION: i64 = 600;
/// Kubernetes refuses projected tokens that live longer than this.
pub const MAX_TOKEN_EXPIRATION: i64 = 1 << 32;

/// Raises a token lifetime to Kubernetes' minimum and caps it at its maximum.
pub fn clamp_expiration(seconds: i64) -> i64 {
    seconds.clamp(MIN_TOKEN_EXPIRATION, MAX_TOKEN_EXPIRATION)
}

/// The resolved, validated injection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectionConfig {
    pub annotation_prefix: String,
    pub token_audience: String,
    pub token_mount_path: String,
    pub token_expiration: i64,
    pub region: Option<String>,
    pub sts_regional_endpoint: bool,
    pub container_credentials: ContainerCredentialsConfig,
    pub credential_mode: CredentialMode,
    pub agent_url: String,
    pub sidecar: SidecarConfig,
    /// The cluster supports init containers with `restartPolicy: Always`.
    pub native_sidecars: bool,
    /// Largest JSON Patch answered; a pod whose patch would be larger is
    /// refused (a pod with thousands of containers).
    pub max_patch_bytes: usize,
}

/// The credential-agent sidecar injected in sidecar mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarConfig {
    pub image: String,
    pub image_pull_policy: String,
    pub name: String,
    pub ports: SidecarPorts,
    pub cpu_request: String,
    pub memory_request: String,
    pub memory_limit: String,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        SidecarConfig {
            image: defaults::SIDECAR_IMAGE.into(),
            image_pull_policy: defaults::SIDECAR_IMAGE_PULL_POLICY.into(),
            name: defaults::SIDECAR_NAME.into(),
            ports: SidecarPorts {
                credentials: defaults::SIDECAR_PORT,
                health: defaults::SIDECAR_HEALTH_PORT,
                metrics: defaults::SIDECAR_METRICS_PORT,
            },
            cpu_request: defaults::SIDECAR_CPU_REQUEST.into(),
            memory_request: defaults::SIDECAR_MEMORY_REQUEST.into(),
            memory_limit: defaults::SIDECAR_MEMORY_LIMIT.into(),
        }
    }
}

/// Upstream's container credentials (EKS Pod Identity) settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCredentialsConfig {
    pub audience: String,
    pub mount_path: String,
    pub volume_name: String,
    pub token_path: String,
    pub full_uri: String,
}

impl Default for ContainerCredentialsConfig {
    fn default() -> Self {
        ContainerCredentialsConfig {
            audience: defaults::CONTAINER_CREDENTIALS_AUDIENCE.into(),
            mount_path: defaults::CONTAINER_CREDENTIALS_MOUNT_PATH.into(),
            volume_name: defaults::CONTAINER_CREDENTIALS_VOLUME_NAME.into(),
            token_path: defaults::CONTAINER_CREDENTIALS_TOKEN_PATH.into(),
            full_uri: defaults::CONTAINER_CREDENTIALS_FULL_URI.into(),
        }
    }
}

impl Default for InjectionConfig {
    fn default() -> Self {
        InjectionConfig {
            annotation_prefix: defaults::ANNOTATION_PREFIX.into(),
            token_audience: defaults::TOKEN_AUDIENCE.into(),
            token_mount_path: defaults::TOKEN_MOUNT_PATH.into(),
            token_expiration: defaults::TOKEN_EXPIRATION,
            region: None,
            sts_regional_endpoint: false,
            container_credentials: ContainerCredentialsConfig::default(),
            credential_mode: CredentialMode::WebIdentity,
            agent_url: defaults::AGENT_URL.into(),
            sidecar: SidecarConfig::default(),
            native_sidecars: true,
            max_patch_bytes: defaults::MAX_PATCH_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mode_is_the_default_flag() {
        assert_eq!(
            CredentialMode::parse(defaults::CREDENTIAL_MODE),
            Some(InjectionConfig::default().credential_mode)
        );
    }

    #[test]
    fn expiration_bounds() {
        assert_eq!(clamp_expiration(5), MIN_TOKEN_EXPIRATION);
        assert_eq!(clamp_expiration(3600), 3600);
        assert_eq!(clamp_expiration(i64::MAX), MAX_TOKEN_EXPIRATION);
    }
}
