//! The credential agent: verifies a pod's projected ServiceAccount token,
//! exchanges it with STS (AssumeRoleWithWebIdentity) and serves the result
//! over the container credentials HTTP protocol, with a single-flight cache
//! and refresh ahead of expiry. See ARCHITECTURE.md for where each concern
//! lives.

pub mod app;
pub mod args;
pub mod auth;
pub mod broker;
pub mod cache;
pub mod clock;
pub mod config;
pub mod eks_auth;
pub mod eks_auth_client;
pub mod error;
pub mod host_guard;
pub mod http;
pub mod kube_api;
pub mod link;
pub mod metrics;
pub mod response;
pub mod role_session;
pub mod secret;
pub mod sidecar;

pub mod stored;
pub mod sts;
pub mod verify;

#[cfg(test)]
mod testing;

pub use error::{Error, Result};
