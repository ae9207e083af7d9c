//! Token verification for node mode.
//!
//! - `jwt.rs`: the pure rules: a token, a key set, the settings and the time
//!   in; an identity or the reason for refusal out. Unit-tested rule by rule.
//! - `jwks.rs`: the [`Verifier`]: when the key set is read again, and the
//!   cache of tokens already verified;
//! - `source.rs`: where the key set comes from (URL or file).

mod jwks;
mod jwt;
mod source;

use std::time::SystemTime;

pub use jwks::{Verifier, VerifierConfig};
pub use jwt::{unverified_identity, verify, KeySet, Rules};
pub use source::JwksSource;

/// Projected tokens are around 1 KiB; STS takes at most 20,000 characters.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

const TOO_LARGE: &str =
    "the token is larger than 16 KiB; send the pod's projected ServiceAccount token";

/// What a verified token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenIdentity {
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub expires: SystemTime,
    /// The accepted audiences the token carries, as a bitmask over the
    /// agent's `--audience` list (bit i: the i-th); 0 for the sidecar's
    /// unverified token.
    pub audiences: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a token at all (400).
    #[error("{0}")]
    Malformed(&'static str),
    /// A token, but not one we accept (403). The reason names the check.
    #[error("{0}")]
    Rejected(String),
    /// We cannot check it now: the issuer's keys are not loaded (503).
    #[error("the token issuer's keys are not available yet: {0}")]
    KeysUnavailable(String),
}

/// The refusal of a token past its `exp` (the broker answers it as EKS
/// Auth's `ExpiredTokenException`).
pub const EXPIRED: &str = "the token has expired";

impl VerifyError {
    pub fn is_expired(&self) -> bool {
        matches!(self, VerifyError::Rejected(m) if m == EXPIRED)
    }

    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Malformed(_) => "malformed",
            VerifyError::Rejected(_) => "rejected",
            VerifyError::KeysUnavailable(_) => "keys_unavailable",
        }
    }
}

#[cfg(test)]
mod tests;
