//! The credential agent: verifies a pod's projected ServiceAccount token,
//! exchanges it with STS (AssumeRoleWithWebIdentity) and serves the result
//! over the container credentials HTTP protocol, with a single-flight cache
//! and refresh ahead of expiry.

pub mod cache;
pub mod config;
pub mod error;
pub mod link;
pub mod metrics;
pub mod packed;
pub mod secret;
pub mod server;
pub mod sidecar;
pub mod sts;
pub mod verify;

pub use error::{Error, Result};
