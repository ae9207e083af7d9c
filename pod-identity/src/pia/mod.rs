//! `podidentityassociation` (eksctl's verbs for EKS Pod Identity, on any
//! cluster): PodIdentityAssociation objects, and the IAM roles they bind,
//! whose trust lets the broker's role assume them only with the
//! association's session tags (`policy::broker_trust`).
//!
//! - `spec.rs`: what is asked (eksctl's flags), validated;
//! - `plan.rs`: pure: (spec, what exists) -> the plan, or a refusal;
//! - `config_file.rs`: `iam.podIdentityAssociations` of a ClusterConfig;
//! - `migrate.rs`: pure: `utils migrate-to-pod-identity`'s plan;
//! - `get.rs`: the report;
//! - `state.rs`: what exists, read;
//! - `cli.rs`: the commands: state read, plan printed or carried out.

pub mod cli;
pub mod config_file;
pub mod get;
pub mod migrate;
pub mod plan;
pub mod spec;
pub mod state;
