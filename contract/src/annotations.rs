//! Annotation and label names users write on ServiceAccounts and pods.
//! Annotations live under a configurable domain (`--annotation-prefix`,
//! default [`DEFAULT_PREFIX`]); the names below are what follows `<prefix>/`.

/// The annotation domain of EKS and of the upstream webhook.
pub const DEFAULT_PREFIX: &str = "eks.amazonaws.com";

/// ServiceAccount: the IAM role its pods get.
pub const ROLE_ARN: &str = "role-arn";
/// ServiceAccount: the projected token's audience.
pub const AUDIENCE: &str = "audience";
/// ServiceAccount: `AWS_STS_REGIONAL_ENDPOINTS=regional` (a Go boolean).
pub const STS_REGIONAL_ENDPOINTS: &str = "sts-regional-endpoints";
/// ServiceAccount or pod: the projected token's lifetime in seconds.
pub const TOKEN_EXPIRATION: &str = "token-expiration";
/// Pod: containers (comma-separated names) left alone.
pub const SKIP_CONTAINERS: &str = "skip-containers";
/// ServiceAccount or pod: `web-identity`, `agent` or `sidecar`.
pub const CREDENTIAL_MODE: &str = "credential-mode";

/// Names read from ServiceAccounts.
pub const SERVICE_ACCOUNT_NAMES: &[&str] = &[
    ROLE_ARN,
    AUDIENCE,
    STS_REGIONAL_ENDPOINTS,
    TOKEN_EXPIRATION,
    CREDENTIAL_MODE,
];
/// Names read from pods.
pub const POD_NAMES: &[&str] = &[TOKEN_EXPIRATION, SKIP_CONTAINERS, CREDENTIAL_MODE];

/// Label set on pods that get container credentials (value `enabled`).
pub const POD_IDENTITY_LABEL: &str = "eks.amazonaws.com/pod-identity";
