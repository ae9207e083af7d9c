//! `iamserviceaccount`: IAM roles bound to ServiceAccounts. [`spec`] is what
//! the user asks for (flags or an eksctl `ClusterConfig`), [`plan`] the pure
//! planning against the state read by [`state`], [`get`] the report,
//! [`well_known`] eksctl's named permission sets.

pub mod cli;
pub mod config_file;
pub mod get;
pub mod limits;
pub mod plan;
pub mod spec;
pub mod state;
pub mod well_known;

pub use crate::iam::{OWNER_TAG, OWNER_VALUE, RECORD_TAGS, RECORD_TAG_PREFIX};
