//! What the webhook and the credential agent must agree on, written once:
//!
//! - [`RoleArn`]: the one rule for what an IAM role ARN is;
//! - [`agent`]: the credential agent's wire and command-line contract (the
//!   node address, the ports and flags of the sidecar the webhook renders,
//!   the `?role=` query);
//! - [`duration`]: the one duration syntax of both binaries' flags;
//! - [`annotations`]: the annotation and label names users write, and the
//!   near-miss rule that names a mistyped one;
//! - [`injected`]: whether a pod got what the webhook injects (doctor and
//!   the webhook's missing-injection metric);
//! - [`mode`]: the credential modes, failure policies and ServiceAccount
//!   keys both sides name.
//!
//! No I/O and no dependencies beyond `thiserror`: every item here is pure.

pub mod agent;
pub mod annotations;
pub mod duration;
pub mod injected;
pub mod mode;
mod role_arn;

pub use role_arn::{RoleArn, RoleArnError};
