//! Where ServiceAccount settings come from: the API server (a metadata-only
//! watch plus a direct lookup on a miss), manifest files (the dry run and
//! `serve --service-accounts`), and the container credentials config file.

pub mod cache;
pub mod containercreds;
pub mod manifests;
