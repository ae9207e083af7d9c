//! `iamserviceaccount`: IAM roles bound to ServiceAccounts. [`spec`] is what
//! the user asks for (flags or an eksctl `ClusterConfig`), [`plan`] the pure
//! planning against the state read by [`state`], [`get`] the report.

pub mod get;
pub mod plan;
pub mod spec;
pub mod state;

/// Tag on IAM roles and OIDC providers this tool created (and so may change
/// or delete).
pub const OWNER_TAG: &str = "pod-identity.io/managed-by";
pub const OWNER_VALUE: &str = "pod-identity";
