//! The agent's errors, each mapped on purpose to the HTTP status and the
//! JSON `code` the container credential providers of the AWS SDKs read.
//! No variant carries a token or a secret: messages say what to fix.

use http::StatusCode;

use crate::sts::StsError;
use crate::verify::VerifyError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no Authorization header: send the pod's projected ServiceAccount token as its raw value \
         (set AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)"
    )]
    MissingToken,

    #[error("{0}")]
    MalformedToken(&'static str),

    #[error("token rejected: {0}")]
    TokenRejected(String),

    #[error("the token is not this pod's: the Authorization header must equal the content of the token file the agent was given")]
    TokenMismatch,

    #[error("{0}")]
    InvalidRole(String),

    #[error("Host {0:?} is not an address this agent listens on (DNS rebinding guard)")]
    HostNotAllowed(String),

    #[error("{0}")]
    Unavailable(String),

    #[error("{0}")]
    TooManyRoles(String),

    #[error("the credential exchange failed ({}): {}", .0.code, .0.message)]
    Sts(StsError),

    #[error("no such path: the credentials endpoint is GET /v1/credentials")]
    NotFound,

    #[error("{0}")]
    Config(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Link(String),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::MissingToken | Error::MalformedToken(_) | Error::InvalidRole(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::TokenRejected(_) | Error::TokenMismatch | Error::HostNotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::TooManyRoles(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Sts(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY),
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Config(_) | Error::Io { .. } | Error::Link(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The JSON `code`.
    pub fn code(&self) -> &str {
        match self {
            Error::MissingToken => "MissingToken",
            Error::MalformedToken(_) => "InvalidToken",
            Error::TokenRejected(_) | Error::TokenMismatch => "AccessDenied",
            Error::InvalidRole(_) => "InvalidRoleArn",
            Error::HostNotAllowed(_) => "HostNotAllowed",
            Error::Unavailable(_) => "ServiceUnavailable",
            Error::TooManyRoles(_) => "TooManyRoles",
            Error::Sts(e) => &e.code,
            Error::NotFound => "NotFound",
            Error::Config(_) | Error::Io { .. } | Error::Link(_) => "InternalError",
        }
    }
}

impl From<VerifyError> for Error {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Malformed(m) => Error::MalformedToken(m),
            VerifyError::Rejected(m) => Error::TokenRejected(m),
            VerifyError::KeysUnavailable(m) => Error::Unavailable(m),
        }
    }
}

impl From<StsError> for Error {
    fn from(e: StsError) -> Self {
        Error::Sts(e)
    }
}
