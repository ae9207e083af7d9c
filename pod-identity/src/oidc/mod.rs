//! The cluster's OIDC issuer: its discovery document and keys ([`discovery`],
//! [`keys`], pure), the TLS thumbprint IAM wants ([`thumbprint`], through [`proxy`] when
//! `HTTPS_PROXY` says so), and the
//! three `oidc` commands ([`show`], [`publish`], [`associate`]).

pub mod associate;
pub mod discovery;
pub mod keys;
pub mod proxy;
pub mod publish;
pub mod show;
pub mod thumbprint;
