//! Where ServiceAccount settings come from: the API server (a metadata-only
//! watch plus a direct lookup on a miss), manifest files (the dry run and
//! `serve --service-accounts`), and the container credentials config file;
//! and the pod watch of the missing-injection audit.

pub mod associations;
pub mod audit;
pub mod cache;
pub mod containercreds;
pub mod manifests;
