//! Kubernetes mutating admission webhook that injects AWS workload identity
//! (IRSA web identity, the node credential agent, a credential-agent sidecar,
//! or container credentials) into pods.
//!
//! The mutation itself is pure ([`injection`]): from a pod, the
//! ServiceAccount's settings and the configuration to a list of precise JSON
//! Patch operations. Everything else is I/O around it: [`admission`] (the
//! AdmissionReview envelope), [`sources`] (where ServiceAccounts come from),
//! [`server`] (HTTPS, TLS, start-up), [`dry_run`] (the offline `mutate`
//! command) and [`args`] (the command line). See ARCHITECTURE.md.

pub mod admission;
pub mod args;
pub mod clock;
pub mod config;
pub mod dry_run;
pub mod error;
pub mod injection;
pub mod metrics;
pub mod server;
pub mod sources;

pub use error::{Error, Result};
