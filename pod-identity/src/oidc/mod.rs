//! The cluster's OIDC issuer: its discovery document and keys ([`discovery`],
//! [`keys`], pure), the TLS thumbprint IAM wants ([`thumbprint`]), and the
//! three `oidc` commands ([`show`], [`publish`], [`associate`]).

pub mod associate;
pub mod discovery;
pub mod keys;
pub mod publish;
pub mod show;
pub mod thumbprint;
