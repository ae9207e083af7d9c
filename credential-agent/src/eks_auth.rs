//! The EKS Auth API's wire format (service `eks-auth`, rest-json,
//! `AssumeRoleForPodIdentity`), as AWS's own clients read it: the request
//! body, the response, and the nine error types with their HTTP status,
//! `x-amzn-ErrorType` header and JSON `message` (all `no-store`, as every
//! credential answer of the agent). The Pod Identity broker
//! answers in it, so boto3's `eks-auth` client, `aws eks-auth` and
//! aws-sdk-eksauth work against it unchanged (tests/tests/eks_auth_wire.rs
//! checks it against botocore's service model and boto3).
//!
//! Pure: no I/O. The pod's token is a [`Secret`] from the moment it is
//! read, so no `Debug` of a request shows it.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// `POST /clusters/{clusterName}/assume-role-for-pod-identity`.
pub const PATH: &str = "/clusters/{cluster_name}/assume-role-for-pod-identity";

/// The request body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssumeRoleForPodIdentityRequest {
    #[serde(deserialize_with = "secret")]
    pub token: Secret,
    #[serde(default)]
    pub eks_node_name: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
}

impl std::fmt::Debug for AssumeRoleForPodIdentityRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRoleForPodIdentityRequest")
            .field("token", &self.token)
            .field("eks_node_name", &self.eks_node_name)
            .field("instance_id", &self.instance_id)
            .finish()
    }
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    Ok(Secret::new(String::deserialize(d)?))
}

/// Parses a request body; every failure is an `InvalidRequestException`
/// whose message never quotes the body (it holds a token).
pub fn parse_request(body: &[u8]) -> Result<AssumeRoleForPodIdentityRequest, EksAuthError> {
    let req: AssumeRoleForPodIdentityRequest = serde_json::from_slice(body).map_err(|e| {
        EksAuthError::new(
            ErrorType::InvalidRequest,
            format!(
                "the body is not an AssumeRoleForPodIdentity request ({:?} at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })?;
    if req.token.is_empty() {
        return Err(EksAuthError::new(
            ErrorType::InvalidParameter,
            "token must not be empty",
        ));
    }
    Ok(req)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    pub namespace: String,
    pub service_account: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentityAssociation {
    pub association_arn: String,
    pub association_id: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AssumedRoleUser {
    pub arn: String,
    pub assume_role_id: String,
}

/// The credentials; `expiration` in epoch seconds, rest-json's default
/// timestamp format.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    #[serde(serialize_with = "expose")]
    pub session_token: Secret,
    #[serde(serialize_with = "expose")]
    pub secret_access_key: Secret,
    pub access_key_id: String,
    #[serde(serialize_with = "epoch_seconds")]
    pub expiration: SystemTime,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .field("expiration", &self.expiration)
            .finish()
    }
}

fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

fn epoch_seconds<S: serde::Serializer>(t: &SystemTime, ser: S) -> Result<S::Ok, S::Error> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    ser.serialize_u64(secs)
}

/// The 200 body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssumeRoleForPodIdentityResponse {
    pub subject: Subject,
    /// Always `pods.eks.amazonaws.com`, as EKS answers.
    pub audience: String,
    pub pod_identity_association: PodIdentityAssociation,
    pub assumed_role_user: AssumedRoleUser,
    pub credentials: Credentials,
}

impl IntoResponse for AssumeRoleForPodIdentityResponse {
    fn into_response(self) -> Response {
        crate::response::json_response(
            StatusCode::OK,
            serde_json::to_string(&self).unwrap_or_default(),
        )
    }
}

/// The error types of the operation (botocore's service model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    AccessDenied,
    ExpiredToken,
    InternalServer,
    InvalidParameter,
    InvalidRequest,
    InvalidToken,
    ResourceNotFound,
    ServiceUnavailable,
    Throttling,
}

impl ErrorType {
    pub const ALL: [ErrorType; 9] = [
        ErrorType::AccessDenied,
        ErrorType::ExpiredToken,
        ErrorType::InternalServer,
        ErrorType::InvalidParameter,
        ErrorType::InvalidRequest,
        ErrorType::InvalidToken,
        ErrorType::ResourceNotFound,
        ErrorType::ServiceUnavailable,
        ErrorType::Throttling,
    ];

    /// The shape name, sent as `x-amzn-ErrorType`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::AccessDenied => "AccessDeniedException",
            ErrorType::ExpiredToken => "ExpiredTokenException",
            ErrorType::InternalServer => "InternalServerException",
            ErrorType::InvalidParameter => "InvalidParameterException",
            ErrorType::InvalidRequest => "InvalidRequestException",
            ErrorType::InvalidToken => "InvalidTokenException",
            ErrorType::ResourceNotFound => "ResourceNotFoundException",
            ErrorType::ServiceUnavailable => "ServiceUnavailableException",
            ErrorType::Throttling => "ThrottlingException",
        }
    }

    /// The HTTP status the service model gives it.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::InternalServer => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::ResourceNotFound => StatusCode::NOT_FOUND,
            ErrorType::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Throttling => StatusCode::TOO_MANY_REQUESTS,
            ErrorType::AccessDenied
            | ErrorType::ExpiredToken
            | ErrorType::InvalidParameter
            | ErrorType::InvalidRequest
            | ErrorType::InvalidToken => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answer: its type and the message the caller reads (never a
/// token or a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.name())]
pub struct EksAuthError {
    pub kind: ErrorType,
    pub message: String,
}

impl EksAuthError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        EksAuthError {
            kind,
            message: message.into(),
        }
    }
}

impl IntoResponse for EksAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"message": self.message}).to_string();
        let mut resp = crate::response::json_response(self.kind.status(), body);
        resp.headers_mut().insert(
            "x-amzn-ErrorType",
            HeaderValue::from_static(self.kind.name()),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn requests_parse_and_never_show_the_token() {
        let r = parse_request(br#"{"token":"eyJ.MARKER.sig","eksNodeName":"node-1"}"#).unwrap();
        assert_eq!(r.token.expose(), "eyJ.MARKER.sig");
        assert_eq!(r.eks_node_name.as_deref(), Some("node-1"));
        assert!(!format!("{r:?}").contains("MARKER"));
        for bad in [
            &b"{}"[..],
            b"not json",
            br#"{"token": 3}"#,
            br#"{"token":"MARKER"#,
        ] {
            let e = parse_request(bad).unwrap_err();
            assert_eq!(e.kind, ErrorType::InvalidRequest, "{bad:?}");
            assert!(!e.message.contains("MARKER"), "{e}");
        }
        assert_eq!(
            parse_request(br#"{"token":""}"#).unwrap_err().kind,
            ErrorType::InvalidParameter
        );
    }

    #[test]
    fn responses_have_ekss_shape() {
        let r = AssumeRoleForPodIdentityResponse {
            subject: Subject {
                namespace: "apps".into(),
                service_account: "web".into(),
            },
            audience: "pods.eks.amazonaws.com".into(),
            pod_identity_association: PodIdentityAssociation {
                association_arn: "arn:aws:eks:us-east-1:111122223333:podidentityassociation/c/a-1"
                    .into(),
                association_id: "a-1".into(),
            },
            assumed_role_user: AssumedRoleUser {
                arn: "arn:aws:sts::111122223333:assumed-role/app/s".into(),
                assume_role_id: "AROA:s".into(),
            },
            credentials: Credentials {
                session_token: Secret::new("SESSION-MARKER"),
                secret_access_key: Secret::new("SECRET-MARKER"),
                access_key_id: "ASIA".into(),
                expiration: UNIX_EPOCH + Duration::from_secs(1_900_000_000),
            },
        };
        assert!(!format!("{r:?}").contains("MARKER"));
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["subject"]["serviceAccount"], "web");
        assert_eq!(v["podIdentityAssociation"]["associationId"], "a-1");
        assert_eq!(v["assumedRoleUser"]["assumeRoleId"], "AROA:s");
        assert_eq!(v["credentials"]["secretAccessKey"], "SECRET-MARKER");
        assert_eq!(v["credentials"]["expiration"], 1_900_000_000u64);
    }

    #[test]
    fn errors_carry_type_status_and_message() {
        for kind in ErrorType::ALL {
            let resp = EksAuthError::new(kind, "why").into_response();
            assert_eq!(resp.status(), kind.status());
            assert_eq!(resp.headers()["x-amzn-ErrorType"], kind.name());
        }
        assert_eq!(ErrorType::Throttling.status(), 429);
        assert_eq!(ErrorType::InvalidToken.status(), 400);
    }
}
