//! Every error of the `pod-identity` CLI, each worded so that the user can
//! act on it. Exit codes are chosen in [`Error::exit_code`].

use std::path::PathBuf;

/// The CLI's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or a bad input file: nothing was changed.
    #[error("{0}")]
    Usage(String),
    #[error("could not read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    InvalidFile { path: PathBuf, message: String },
    /// AWS refused an action for lack of a permission.
    #[error("AWS denied {action} on {resource}: the credentials in use lack the permission {action} for {resource} ({message})")]
    AccessDenied {
        action: String,
        resource: String,
        message: String,
    },
    /// Any other failed AWS call. `code` is the service's error code
    /// (`MalformedPolicyDocument`), matched on instead of the message.
    #[error("{action} on {resource} failed: {message}")]
    Aws {
        action: String,
        resource: String,
        code: Option<String>,
        message: String,
    },
    /// A Kubernetes API call or the client's set-up failed; the cause is kept.
    #[error("Kubernetes API: {context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: BoxError,
    },
    /// The issuer cannot be fetched the way AWS fetches it.
    #[error("the OIDC issuer {issuer} is not reachable over HTTPS: {reason}")]
    IssuerUnreachable { issuer: String, reason: String },
    /// A precondition a later step relies on is missing.
    #[error("{0}")]
    Precondition(String),
    /// Something the tool will not do without an explicit flag.
    #[error("{0}")]
    Refused(String),
    /// doctor found problems (already printed).
    #[error("{0}")]
    ChecksFailed(String),
    /// Some changes were made before a step failed.
    #[error("{error}\n{done}\nThe steps above were applied; the commands are idempotent, so re-running this one after fixing the cause finishes the job.")]
    Partial { done: String, error: Box<Error> },
}

/// A cause of any type, kept for `source()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The CLI's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code: 2 for input the user must fix (nothing was
    /// read or changed), 3 for a refusal (nothing was changed), 4 for a run
    /// that made some of its changes (re-running finishes), 1 otherwise
    /// (AWS, the cluster, the issuer, or doctor's findings).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::InvalidFile { .. } | Error::ReadFile { .. } => 2,
            Error::Refused(_) => 3,
            Error::Partial { .. } => 4,
            _ => 1,
        }
    }
}

impl Error {
    /// A Kubernetes error with what was being done.
    pub fn kube(context: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Kube {
            context: context.into(),
            source: source.into(),
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::kube("request", e)
    }
}
