//! Kubernetes mutating admission webhook that injects AWS workload identity
//! (IRSA web identity or container credentials) into pods.
//!
//! The mutation itself is a pure function ([`mutate::mutate_pod`]) from a pod,
//! the ServiceAccount's settings and the webhook configuration to a list of
//! precise JSON Patch operations. Everything else (HTTP, TLS, the
//! ServiceAccount cache, metrics) is I/O around it.

pub mod cache;
pub mod cli;
pub mod config;
pub mod containercreds;
pub mod duration;
pub mod error;
pub mod identity;
pub mod manifests;
pub mod metrics;
pub mod mutate;
pub mod patch;
pub mod review;
pub mod server;
pub mod tls;

pub use error::{Error, Result};
