//! `iamserviceaccount`: IAM roles bound to ServiceAccounts. [`spec`] is what
//! the user asks for (flags or an eksctl `ClusterConfig`), [`plan`] the pure
//! planning against the state read by [`state`], [`get`] the report.

pub mod get;
pub mod limits;
pub mod plan;
pub mod spec;
pub mod state;

pub use crate::iam::{OWNER_TAG, OWNER_VALUE};
