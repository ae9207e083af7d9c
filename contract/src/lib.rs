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
//!   keys both sides name;
//! - [`association`]: `PodIdentityAssociation`'s rules (which one counts,
//!   its id, a valid spec).
//!
//! No I/O and no dependencies beyond `thiserror`: every item here is pure.

pub mod agent;
pub mod annotations;
pub mod association;
pub mod duration;
pub mod injected;
pub mod mode;
mod role_arn;

pub use role_arn::{RoleArn, RoleArnError};

/// Declares an error type that is a message, for the errors whose whole
/// content is what the user reads: `Display` is the message, `.0` holds it,
/// `From<String>` and `From<&str>` build it (so `?` converts a `String`
/// error). Each use is a type of its own, named for its concern. Needs
/// `thiserror` in the calling crate.
#[macro_export]
macro_rules! message_error {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("{0}")]
        pub struct $name(pub String);

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }
    };
}
