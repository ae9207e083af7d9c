//! What gets injected into a pod, decided without any I/O and without clap:
//!
//! - `config`: the resolved settings and their defaults;
//! - `annotations`: annotation names, the pod's own annotations, typo rules;
//! - `identity`: ServiceAccount + ConfigMap settings resolved against the flags;
//! - `mode`: the credential modes and the final choice for one pod;
//! - `pod`: the mutation itself, pod -> JSON Patch;
//! - `sidecar`: the credential-agent sidecar container;
//! - `view`: the fields of a Pod the webhook reads, decoded borrowed;
//! - `patch`: the JSON Patch operation type;
//! - `warning`: what the user is told about.
//!
//! Everything here must stay pure: the server and the dry run call it with
//! what they looked up.

pub mod annotations;
pub mod config;
pub mod identity;
pub mod mode;
pub mod patch;
pub mod pod;
pub mod sidecar;
pub mod view;
pub mod warning;

pub use config::InjectionConfig;
pub use identity::{resolve, ConfigMapEntry, Identity, Resolution, ServiceAccountEntry};
pub use mode::{CredentialMode, Mode};
pub use pod::{mutate, PodMutation};
pub use view::PodView;
pub use warning::{Warning, WarningKind};
