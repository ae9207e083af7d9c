//! `doctor`: why a pod has no credentials, and which pods silently missed
//! injection. [`gather`] reads everything (cluster, IAM, the webhook's
//! certificate) into [`facts::Facts`]; [`checks`] turns facts into an
//! ordered checklist, purely, so every fault is a table test; [`audit`] runs
//! the cluster-wide sweep.

pub mod association_checks;
pub mod audit;
pub mod cert;
pub mod checks;
pub mod facts;
pub mod gather;
pub mod report;
pub mod selector;
