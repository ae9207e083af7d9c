//! STS errors: how each failed call is treated (`StsErrorKind`: permanent
//! refusals are remembered, transient failures retried), the bounded error
//! codes of the metrics, and the mapping of SDK errors (aws-sdk-sts and
//! aws-sdk-eksauth share the smithy runtime's error types).

use std::time::Duration;

use crate::secret::{scrub, Secret};

/// How a failed call should be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StsErrorKind {
    /// STS refused this token or role (AccessDenied, InvalidIdentityToken,
    /// ExpiredTokenException, IDPRejectedClaim, ...): retrying the same
    /// request will not help. 403.
    Denied,
    /// STS rejected the request as malformed (ValidationError). 400.
    Invalid,
    /// Throttling. 429.
    Throttled,
    /// STS unreachable, timing out, or answering 5xx / IDPCommunicationError. 503.
    Unavailable,
    /// Anything else STS or the network answered that we cannot use. 502.
    Failed,
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("STS {code}: {message}")]
pub struct StsError {
    pub kind: StsErrorKind,
    pub code: String,
    pub message: String,
}

impl StsError {
    pub fn new(kind: StsErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        StsError {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }

    /// Errors that the same request would get again: remembered briefly.
    pub fn is_permanent(&self) -> bool {
        matches!(self.kind, StsErrorKind::Denied | StsErrorKind::Invalid)
    }

    pub fn status(&self) -> u16 {
        match self.kind {
            StsErrorKind::Denied => 403,
            StsErrorKind::Invalid => 400,
            StsErrorKind::Throttled => 429,
            StsErrorKind::Unavailable => 503,
            StsErrorKind::Failed => 502,
        }
    }

    pub fn timeout(after: Duration) -> Self {
        StsError::new(
            StsErrorKind::Unavailable,
            "StsTimeout",
            format!("STS did not answer within {after:?}"),
        )
    }
}

impl StsErrorKind {
    pub const ALL: [StsErrorKind; 5] = [
        StsErrorKind::Denied,
        StsErrorKind::Invalid,
        StsErrorKind::Throttled,
        StsErrorKind::Unavailable,
        StsErrorKind::Failed,
    ];

    /// The `kind` label of `credential_agent_sts_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            StsErrorKind::Denied => "denied",
            StsErrorKind::Invalid => "invalid",
            StsErrorKind::Throttled => "throttled",
            StsErrorKind::Unavailable => "unavailable",
            StsErrorKind::Failed => "failed",
        }
    }
}

/// The error codes a metric label may carry: STS's documented ones and the
/// agent's own; any other code an endpoint sends is counted as `other`, so
/// the label set stays bounded whatever the endpoint answers.
pub const METRIC_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "InvalidIdentityToken",
    "ExpiredTokenException",
    "ExpiredToken",
    "IDPRejectedClaim",
    "RegionDisabledException",
    "InvalidClientTokenId",
    "InvalidTokenException",
    "ResourceNotFoundException",
    "InvalidParameterException",
    "InvalidRequestException",
    "PodIdentityDisabled",
    "ServiceUnavailableException",
    "InternalServerException",
    "ValidationError",
    "MalformedPolicyDocument",
    "PackedPolicyTooLarge",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "IDPCommunicationError",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "StsBadResponse",
    "StsTimeout",
    "StsUnreachable",
    "StsRequestFailed",
];

/// The (kind, code) label pairs an STS error can produce: each documented
/// code with its kind, the agent's own codes with the kinds they come with,
/// and `other` with every kind (an unknown code is classified by its HTTP
/// status).
pub fn metric_series() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = METRIC_CODES
        .iter()
        .filter(|c| !c.starts_with("Sts"))
        .map(|c| (classify(c, None).label(), *c))
        .collect();
    out.extend([
        ("unavailable", "StsTimeout"),
        ("unavailable", "StsUnreachable"),
        ("unavailable", "StsBadResponse"),
        ("failed", "StsBadResponse"),
        ("failed", "StsRequestFailed"),
    ]);
    out.extend(StsErrorKind::ALL.iter().map(|k| (k.label(), "other")));
    out
}

/// `code` if it is one of [`METRIC_CODES`], else `other`.
pub fn metric_code(code: &str) -> &'static str {
    METRIC_CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("other")
}

/// Maps an STS error code (and the HTTP status it came with) to a kind.
pub fn classify(code: &str, http_status: Option<u16>) -> StsErrorKind {
    match code {
        "AccessDenied"
        | "AccessDeniedException"
        | "InvalidIdentityToken"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "IDPRejectedClaim"
        | "RegionDisabledException"
        | "InvalidClientTokenId"
        | "InvalidTokenException"
        | "ResourceNotFoundException" => StsErrorKind::Denied,
        "ValidationError"
        | "MalformedPolicyDocument"
        | "PackedPolicyTooLarge"
        | "InvalidParameterException"
        | "InvalidRequestException"
        | "PodIdentityDisabled" => StsErrorKind::Invalid,
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequests" => {
            StsErrorKind::Throttled
        }
        "IDPCommunicationError"
        | "ServiceUnavailable"
        | "InternalFailure"
        | "InternalError"
        | "ServiceUnavailableException"
        | "InternalServerException" => StsErrorKind::Unavailable,
        _ => match http_status {
            Some(429) => StsErrorKind::Throttled,
            Some(s) if s >= 500 => StsErrorKind::Unavailable,
            Some(403) => StsErrorKind::Denied,
            _ => StsErrorKind::Failed,
        },
    }
}

pub(crate) fn map_sdk_error<E, R>(
    err: aws_sdk_sts::error::SdkError<E, R>,
    token: &Secret,
) -> StsError
where
    E: aws_sdk_sts::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    map_service_error(err, token, "STS")
}

/// [`map_sdk_error`] for another service of the same runtime (EKS Auth),
/// its name in the messages; the codes stay the agent's bounded ones.
pub(crate) fn map_service_error<E, R>(
    err: aws_sdk_sts::error::SdkError<E, R>,
    token: &Secret,
    service: &str,
) -> StsError
where
    E: aws_sdk_sts::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    use aws_sdk_sts::error::SdkError;
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status_code();
            let Some(code) = se.err().code().map(str::to_string) else {
                // Not an STS error document (a proxy's page, an empty body).
                return StsError::new(
                    if status >= 500 {
                        StsErrorKind::Unavailable
                    } else {
                        StsErrorKind::Failed
                    },
                    "StsBadResponse",
                    format!("{service} answered HTTP {status} with a body that is not a {service} response"),
                );
            };
            let message = se
                .err()
                .message()
                .map(|m| scrub(m, token))
                .unwrap_or_else(|| format!("{service} answered HTTP {status}"));
            StsError::new(classify(&code, Some(status)), code, message)
        }
        SdkError::TimeoutError(_) => StsError::new(
            StsErrorKind::Unavailable,
            "StsTimeout",
            format!("{service} did not answer in time"),
        ),
        SdkError::DispatchFailure(df) => {
            let what = if df.is_timeout() {
                format!("timed out connecting to {service}")
            } else if df.is_io() {
                format!("could not connect to {service}")
            } else {
                format!("could not send the request to {service}")
            };
            StsError::new(StsErrorKind::Unavailable, "StsUnreachable", what)
        }
        SdkError::ResponseError(re) => {
            let status = re.raw().status_code();
            StsError::new(
                if status >= 500 {
                    StsErrorKind::Unavailable
                } else {
                    StsErrorKind::Failed
                },
                "StsBadResponse",
                format!(
                    "{service} answered HTTP {status} with a body that is not a {service} response"
                ),
            )
        }
        _ => StsError::new(
            StsErrorKind::Failed,
            "StsRequestFailed",
            format!("the {service} request could not be built"),
        ),
    }
}

/// Lets `map_sdk_error` read a status from the SDK's raw response type.
pub trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_sts::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}
