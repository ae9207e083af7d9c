//! `sts:AssumeRole` with session tags, for EKS Pod Identity's broker: the
//! association's role with the pod's tags (`contract::association`), then,
//! for a `targetRoleArn`, that role from the first session with the
//! association id as `ExternalId` (a chained session lasts at most an hour,
//! IAM's limit for role chaining). Signed with whatever credentials the
//! given client has (the broker's own identity).

use std::time::SystemTime;

use crate::secret::Secret;
use crate::sts::{map_sdk_error, AssumedRole, Credentials, StsError, StsErrorKind};

/// One pod's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRequest {
    pub role_arn: String,
    pub session_name: String,
    pub tags: Vec<(String, String)>,
    pub transitive: Vec<String>,
    /// `targetRoleArn` and the `ExternalId` to assume it with.
    pub then: Option<(String, String)>,
    pub duration_seconds: i32,
}

/// The credentials, and the assumed-role user (ARN and id) of the last role.
#[derive(Clone, Debug)]
pub struct Session {
    pub credentials: Credentials,
    pub assumed_role_arn: String,
    pub assumed_role_id: String,
}

/// IAM's cap on a chained role session.
pub const CHAINED_MAX_SECONDS: i32 = 3600;

#[derive(Clone)]
pub struct RoleSessions {
    client: aws_sdk_sts::Client,
}

impl RoleSessions {
    /// Sessions signed with `client`'s credentials.
    pub fn new(client: aws_sdk_sts::Client) -> Self {
        RoleSessions { client }
    }

    pub async fn assume(&self, req: &SessionRequest) -> Result<Session, StsError> {
        let tags = req
            .tags
            .iter()
            .map(|(k, v)| {
                aws_sdk_sts::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| StsError::new(StsErrorKind::Invalid, "InvalidTag", e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let first = once(
            &self.client,
            &req.role_arn,
            &req.session_name,
            Some(tags),
            &req.transitive,
            None,
            req.duration_seconds,
        )
        .await?;
        let Some((target, external_id)) = &req.then else {
            return Ok(first);
        };
        let creds = aws_sdk_sts::config::Credentials::new(
            first.credentials.access_key_id.clone(),
            first.credentials.secret_access_key.expose(),
            Some(first.credentials.session_token.expose().to_string()),
            Some(first.credentials.expiration),
            "pod-identity-chain",
        );
        let chained = aws_sdk_sts::Client::from_conf(
            self.client
                .config()
                .to_builder()
                .credentials_provider(creds)
                .build(),
        );
        once(
            &chained,
            target,
            &req.session_name,
            None,
            &[],
            Some(external_id),
            req.duration_seconds.min(CHAINED_MAX_SECONDS),
        )
        .await
    }
}

async fn once(
    client: &aws_sdk_sts::Client,
    role: &str,
    session_name: &str,
    tags: Option<Vec<aws_sdk_sts::types::Tag>>,
    transitive: &[String],
    external_id: Option<&str>,
    duration_seconds: i32,
) -> Result<Session, StsError> {
    let mut call = client
        .assume_role()
        .role_arn(role)
        .role_session_name(session_name)
        .duration_seconds(duration_seconds)
        .set_tags(tags.filter(|t| !t.is_empty()))
        .set_external_id(external_id.map(str::to_string));
    for k in transitive {
        call = call.transitive_tag_keys(k);
    }
    let out = call
        .send()
        .await
        .map_err(|e| map_sdk_error(e, &Secret::new("")))?;
    let malformed =
        |what: &str| StsError::new(StsErrorKind::Failed, "MalformedResponse", what.to_string());
    let c = out
        .credentials
        .ok_or_else(|| malformed("STS answered without credentials"))?;
    let expiration = SystemTime::try_from(c.expiration)
        .map_err(|_| malformed("STS answered with an unusable expiration time"))?;
    let user = out
        .assumed_role_user
        .ok_or_else(|| malformed("STS answered without the assumed-role user"))?;
    Ok(Session {
        credentials: Credentials {
            access_key_id: c.access_key_id,
            secret_access_key: Secret::new(c.secret_access_key),
            session_token: Secret::new(c.session_token),
            account_id: user.arn.split(':').nth(4).map(str::to_string),
            expiration,
            assumed_role: Some(AssumedRole {
                arn: user.arn.clone(),
                id: user.assumed_role_id.clone(),
            }),
        },
        assumed_role_arn: user.arn,
        assumed_role_id: user.assumed_role_id,
    })
}
