//! The STS side: AssumeRoleWithWebIdentity through aws-sdk-sts, the error
//! classification the cache and the HTTP layer rely on, and RoleSessionName.

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::secret::{scrub, Secret};

/// Credentials as STS issued them.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    /// The account of the assumed role (5th field of the assumed-role ARN).
    pub account_id: Option<String>,
    pub expiration: SystemTime,
}

/// One AssumeRoleWithWebIdentity call.
#[derive(Clone, Debug)]
pub struct AssumeRequest {
    pub role_arn: String,
    pub session_name: String,
    pub token: Secret,
    pub duration_seconds: i32,
}

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
        | "InvalidClientTokenId" => StsErrorKind::Denied,
        "ValidationError" | "MalformedPolicyDocument" | "PackedPolicyTooLarge" => {
            StsErrorKind::Invalid
        }
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequests" => {
            StsErrorKind::Throttled
        }
        "IDPCommunicationError" | "ServiceUnavailable" | "InternalFailure" | "InternalError" => {
            StsErrorKind::Unavailable
        }
        _ => match http_status {
            Some(429) => StsErrorKind::Throttled,
            Some(s) if s >= 500 => StsErrorKind::Unavailable,
            Some(403) => StsErrorKind::Denied,
            _ => StsErrorKind::Failed,
        },
    }
}

/// Something that exchanges a web identity token for credentials. The real
/// one is [`AwsSts`]; unit tests use scripted fakes.
pub trait Exchanger: Send + Sync + 'static {
    fn assume(&self, req: AssumeRequest) -> BoxFuture<'static, Result<Credentials, StsError>>;
}

/// AssumeRoleWithWebIdentity through aws-sdk-sts (unsigned, as the API
/// allows). Retries are the cache's business, so the SDK makes one attempt.
#[derive(Clone)]
pub struct AwsSts {
    client: aws_sdk_sts::Client,
}

impl AwsSts {
    pub fn new(region: &str, endpoint: Option<&str>, attempt_timeout: Duration) -> Self {
        use aws_sdk_sts::config::{retry::RetryConfig, timeout::TimeoutConfig, Region};
        let mut builder = aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3).min(attempt_timeout))
                    .operation_attempt_timeout(attempt_timeout)
                    .operation_timeout(attempt_timeout)
                    .build(),
            );
        if let Some(url) = endpoint {
            builder = builder.endpoint_url(url);
        }
        // A burst of concurrent first requests opens as many connections;
        // keep a few warm, not all of them (each idle one holds buffers).
        use aws_smithy_http_client::tls;
        let http = aws_smithy_http_client::Builder::new()
            .pool_max_idle_per_host(4)
            .pool_idle_timeout(Duration::from_secs(60))
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build_https();
        builder = builder.http_client(http);
        AwsSts {
            client: aws_sdk_sts::Client::from_conf(builder.build()),
        }
    }
}

impl Exchanger for AwsSts {
    fn assume(&self, req: AssumeRequest) -> BoxFuture<'static, Result<Credentials, StsError>> {
        let client = self.client.clone();
        async move {
            let result = client
                .assume_role_with_web_identity()
                .role_arn(&req.role_arn)
                .role_session_name(&req.session_name)
                .web_identity_token(req.token.expose())
                .duration_seconds(req.duration_seconds)
                .send()
                .await;
            match result {
                Ok(out) => {
                    let c = out.credentials.ok_or_else(|| {
                        StsError::new(
                            StsErrorKind::Failed,
                            "MalformedResponse",
                            "STS answered without credentials",
                        )
                    })?;
                    let expiration = SystemTime::try_from(c.expiration).map_err(|_| {
                        StsError::new(
                            StsErrorKind::Failed,
                            "MalformedResponse",
                            "STS answered with an unusable expiration time",
                        )
                    })?;
                    let account_id = out
                        .assumed_role_user
                        .as_ref()
                        .and_then(|u| u.arn.split(':').nth(4))
                        .filter(|a| !a.is_empty())
                        .map(str::to_string);
                    Ok(Credentials {
                        access_key_id: c.access_key_id,
                        secret_access_key: Secret::new(c.secret_access_key),
                        session_token: Secret::new(c.session_token),
                        account_id,
                        expiration,
                    })
                }
                Err(err) => Err(map_sdk_error(err, &req.token)),
            }
        }
        .boxed()
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
                    format!("STS answered HTTP {status} with a body that is not an STS response"),
                );
            };
            let message = se
                .err()
                .message()
                .map(|m| scrub(m, token))
                .unwrap_or_else(|| format!("STS answered HTTP {status}"));
            StsError::new(classify(&code, Some(status)), code, message)
        }
        SdkError::TimeoutError(_) => StsError::new(
            StsErrorKind::Unavailable,
            "StsTimeout",
            "STS did not answer in time",
        ),
        SdkError::DispatchFailure(df) => {
            let what = if df.is_timeout() {
                "timed out connecting to STS"
            } else if df.is_io() {
                "could not connect to STS"
            } else {
                "could not send the request to STS"
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
                format!("STS answered HTTP {status} with a body that is not an STS response"),
            )
        }
        _ => StsError::new(
            StsErrorKind::Failed,
            "StsRequestFailed",
            "the STS request could not be built",
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

/// A RoleSessionName from namespace, ServiceAccount and (optionally) pod:
/// `ns.sa` or `ns.sa.pod`, characters outside `[\w+=,.@-]` replaced by `-`,
/// at most 64 characters (a long name keeps its start and gets a hash
/// suffix so two long names stay distinct), at least 2.
pub fn session_name(namespace: &str, service_account: &str, pod: Option<&str>) -> String {
    let mut raw = format!("{namespace}.{service_account}");
    if let Some(p) = pod.filter(|p| !p.is_empty()) {
        raw.push('.');
        raw.push_str(p);
    }
    let clean = contract::RoleArn::sanitize_name(&raw);
    let mut out = if clean.len() > 64 {
        // FNV-1a: stable across releases, unlike DefaultHasher.
        let mut h: u32 = 0x811c9dc5;
        for b in clean.bytes() {
            h ^= b as u32;
            h = h.wrapping_mul(0x01000193);
        }
        format!("{}-{h:08x}", &clean[..55])
    } else {
        clean
    };
    while out.len() < 2 {
        out.push('-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_codes_are_bounded() {
        // Every code the classifier knows is a label value of its own...
        for code in [
            "AccessDenied",
            "Throttling",
            "IDPCommunicationError",
            "StsUnreachable",
        ] {
            assert_eq!(metric_code(code), code);
        }
        // ...and whatever else an endpoint sends is `other`.
        for code in ["", "Surprise", "AccessDenied ", &"x".repeat(10_000)] {
            assert_eq!(metric_code(code), "other");
        }
        let labels: std::collections::BTreeSet<_> =
            StsErrorKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels.len(), StsErrorKind::ALL.len());
        // The series exported from the start are the ones errors produce:
        // a documented code with any status keeps its kind.
        let series = metric_series();
        for code in METRIC_CODES.iter().filter(|c| !c.starts_with("Sts")) {
            for status in [None, Some(400), Some(403), Some(429), Some(500)] {
                let pair = (classify(code, status).label(), *code);
                assert!(series.contains(&pair), "{pair:?}");
            }
        }
        for status in [None, Some(400), Some(403), Some(429), Some(500), Some(502)] {
            let pair = (classify("Surprise", status).label(), "other");
            assert!(series.contains(&pair), "{pair:?}");
        }
    }

    #[test]
    fn classification_table() {
        let cases: &[(&str, Option<u16>, StsErrorKind, u16)] = &[
            ("AccessDenied", Some(403), StsErrorKind::Denied, 403),
            ("InvalidIdentityToken", Some(400), StsErrorKind::Denied, 403),
            (
                "ExpiredTokenException",
                Some(400),
                StsErrorKind::Denied,
                403,
            ),
            ("IDPRejectedClaim", Some(403), StsErrorKind::Denied, 403),
            ("ValidationError", Some(400), StsErrorKind::Invalid, 400),
            ("Throttling", Some(400), StsErrorKind::Throttled, 429),
            (
                "IDPCommunicationError",
                Some(400),
                StsErrorKind::Unavailable,
                503,
            ),
            ("InternalFailure", Some(500), StsErrorKind::Unavailable, 503),
            ("Whatever", Some(503), StsErrorKind::Unavailable, 503),
            ("Whatever", Some(429), StsErrorKind::Throttled, 429),
            ("Whatever", Some(400), StsErrorKind::Failed, 502),
            ("Whatever", None, StsErrorKind::Failed, 502),
        ];
        for (code, status, kind, http) in cases {
            let k = classify(code, *status);
            assert_eq!(k, *kind, "{code} {status:?}");
            assert_eq!(StsError::new(k, *code, "m").status(), *http, "{code}");
        }
        assert!(StsError::new(StsErrorKind::Denied, "x", "y").is_permanent());
        assert!(!StsError::new(StsErrorKind::Throttled, "x", "y").is_permanent());
    }

    #[test]
    fn session_names_follow_sts_rules() {
        let valid = |s: &str| {
            (2..=64).contains(&s.len())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        };
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            ("default", "app", None, Some("default.app")),
            (
                "default",
                "app",
                Some("app-7d9f"),
                Some("default.app.app-7d9f"),
            ),
            ("ns", "sa", Some(""), Some("ns.sa")),
            ("ns", "s a/ü", None, Some("ns.s-a--")),
            ("", "", None, Some(".-")),
        ];
        for (ns, sa, pod, want) in cases {
            let got = session_name(ns, sa, *pod);
            assert!(valid(&got), "{got}");
            if let Some(w) = want {
                assert_eq!(&got, w);
            }
        }
        let long_a = session_name(&"n".repeat(63), &"a".repeat(253), Some("p1"));
        let long_b = session_name(&"n".repeat(63), &"a".repeat(253), Some("p2"));
        assert!(valid(&long_a) && valid(&long_b));
        assert_eq!(long_a.len(), 64);
        assert_ne!(long_a, long_b);
    }
}
