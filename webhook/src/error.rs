use std::path::PathBuf;

/// Every error of the webhook crate. Each maps to an HTTP status on purpose in
/// [`Error::status`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("unsupported Content-Type {0:?}: expected application/json")]
    UnsupportedMediaType(String),
    #[error("request body is not a valid AdmissionReview: {0}")]
    MalformedReview(String),
    #[error("AdmissionReview has no request")]
    MissingRequest,
    #[error("unsupported AdmissionReview apiVersion {0:?}: expected admission.k8s.io/v1 or admission.k8s.io/v1beta1")]
    UnsupportedApiVersion(String),
    #[error("object is not a valid Pod: {0}")]
    InvalidPod(String),
    #[error("the patch that gives this pod its AWS credentials would be larger than {limit} bytes (--max-patch-bytes); the pod has too many containers or variables for the webhook to answer")]
    PatchTooLarge { limit: usize },
    #[error("could not look up ServiceAccount {namespace}/{name}: {reason}")]
    ServiceAccountLookup {
        namespace: String,
        name: String,
        #[source]
        reason: crate::sources::cache::LookupError,
    },
    #[error("could not read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    InvalidFile { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    /// The Kubernetes client could not be set up; the cause is kept.
    #[error("Kubernetes client: {context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A Kubernetes client error with what was being done.
    pub fn kube(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Kube {
            context: context.into(),
            source: source.into(),
        }
    }

    /// The HTTP status a request failing with this error gets.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::MalformedReview(_) | Error::MissingRequest | Error::UnsupportedApiVersion(_) => {
                StatusCode::BAD_REQUEST
            }
            // A pod we cannot read is answered with an allowed review (see
            // admission.rs); should it ever surface as an HTTP error, it is the
            // caller's input.
            Error::InvalidPod(_) => StatusCode::UNPROCESSABLE_ENTITY,
            // Answered as a denied review (admission.rs); as an HTTP error,
            // the request was too large to answer.
            Error::PatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::ServiceAccountLookup { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::ReadFile { .. }
            | Error::InvalidFile { .. }
            | Error::Config(_)
            | Error::Tls(_)
            | Error::Kube { .. }
            | Error::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
