//! The AWS clients (the SDK's default credential chain, `--region`, and
//! `AWS_ENDPOINT_URL*` as the SDK reads them) and the one translation of an
//! SDK error into an [`Error`] that names the action and the resource.

use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::Error;

/// IAM is global; the SDK still needs a region to sign with.
const DEFAULT_REGION: &str = "us-east-1";

/// The clients every command uses.
#[derive(Clone, Debug)]
pub struct Aws {
    pub iam: aws_sdk_iam::Client,
    pub s3: aws_sdk_s3::Client,
    pub sts: aws_sdk_sts::Client,
    pub region: String,
}

impl Aws {
    /// Loads the SDK configuration: credentials by the default chain, the
    /// region from `region`, else the environment or profile, else us-east-1.
    pub async fn load(region: Option<&str>) -> Aws {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r.to_string()));
        }
        let mut sdk = loader.load().await;
        if sdk.region().is_none() {
            sdk = sdk
                .into_builder()
                .region(aws_config::Region::new(DEFAULT_REGION))
                .build();
        }
        let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
        // A custom S3 endpoint (MinIO, moto, a VPC endpoint by IP) rarely
        // serves virtual-hosted bucket names: use path-style there.
        let custom_s3 = std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(custom_s3)
            .build();
        Aws {
            iam: aws_sdk_iam::Client::new(&sdk),
            s3: aws_sdk_s3::Client::from_conf(s3),
            sts: aws_sdk_sts::Client::new(&sdk),
            region,
        }
    }
}

/// The error code of an SDK error, if the service answered with one.
pub fn code<E: ProvideErrorMetadata>(e: &E) -> Option<&str> {
    e.code()
}

/// An SDK error as an [`Error`] naming `action` (`iam:CreateRole`) and
/// `resource` (the ARN or name it was called for). An HTTP 403 without an
/// error code the SDK could read is still a denial.
pub fn sdk_error<E>(action: &str, resource: &str, e: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let request_id = e.meta().extra("aws_request_id").map(str::to_string);
    match e {
        SdkError::ServiceError(s) => classify(action, resource, s.into_err(), status, request_id),
        other => Error::Aws {
            code: None,
            action: action.to_string(),
            resource: resource.to_string(),
            message: DisplayErrorContext(&other).to_string(),
        },
    }
}

/// A service error as an [`Error`] (see [`sdk_error`]).
pub fn error<E>(action: &str, resource: &str, e: E) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    classify(action, resource, e, None, None)
}

fn classify<E>(
    action: &str,
    resource: &str,
    e: E,
    status: Option<u16>,
    request_id: Option<String>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = match (e.message(), e.code(), status) {
        (Some(m), _, _) => m.to_string(),
        (None, None, Some(s)) => format!(
            "HTTP {s} without an error the SDK could read (request id {})",
            request_id.as_deref().unwrap_or("unknown")
        ),
        _ => DisplayErrorContext(&e).to_string(),
    };
    let denied = matches!(
        e.code(),
        Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "Forbidden")
    ) || (e.code().is_none() && status == Some(403));
    if denied {
        return Error::AccessDenied {
            action: action.to_string(),
            resource: resource.to_string(),
            message,
        };
    }
    Error::Aws {
        action: action.to_string(),
        resource: resource.to_string(),
        code: e.code().map(str::to_string),
        message: match e.code() {
            Some(c) => format!("{c}: {message}"),
            None => message,
        },
    }
}
