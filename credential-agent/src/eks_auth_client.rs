//! The node agent's Pod Identity backend: a pod's `eks-pod-identity-token`
//! (verified here first, like every token the agent takes) exchanged through
//! the EKS Auth API's `AssumeRoleForPodIdentity` with aws-sdk-eksauth, at a
//! configured endpoint: this project's broker, or EKS Auth itself
//! (`https://eks-auth.<region>.api.aws`), which wants the request SigV4
//! signed with the node's credentials (the SDK's default chain). The broker
//! reads only the token, so with it the agent may send unsigned requests
//! (`--eks-auth-unsigned`) and needs no AWS credentials on the node.
//!
//! Errors are classified as STS ones (`sts::classify` knows EKS Auth's
//! types), so the cache's backoff and negative caching apply unchanged.

use std::path::Path;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::sts::{
    map_service_error, AssumeRequest, AssumedRole, Credentials, Exchanger, StsError, StsErrorKind,
};

/// Where and how the agent reaches EKS Auth.
#[derive(Debug, Clone)]
pub struct EksAuthSettings {
    pub endpoint: String,
    pub cluster_name: String,
    /// Extra CA bundle for the endpoint (a broker with a private CA).
    pub ca_file: Option<std::path::PathBuf>,
    /// Send requests unsigned (the broker); else signed with the default chain.
    pub unsigned: bool,
}

pub struct EksAuthExchanger {
    client: aws_sdk_eksauth::Client,
    cluster_name: String,
}

fn http_client(ca_file: Option<&Path>) -> Result<aws_sdk_eksauth::config::SharedHttpClient> {
    use aws_smithy_http_client::tls;
    let Some(ca) = ca_file else {
        return Ok(crate::sts::http_client());
    };
    let pem = std::fs::read(ca).map_err(|e| {
        Error::Config(format!(
            "cannot read --eks-auth-ca-file {}: {e}",
            ca.display()
        ))
    })?;
    let ctx = tls::TlsContext::builder()
        .with_trust_store(tls::TrustStore::default().with_pem_certificate(pem))
        .build()
        .map_err(|e| Error::Config(format!("--eks-auth-ca-file {}: {e}", ca.display())))?;
    Ok(crate::sts::http_client_with(Some(ctx)))
}

impl EksAuthExchanger {
    pub async fn new(s: &EksAuthSettings, region: &str, attempt_timeout: Duration) -> Result<Self> {
        use aws_sdk_eksauth::config::{retry::RetryConfig, timeout::TimeoutConfig, Region};
        let http = http_client(s.ca_file.as_deref())?;
        let mut builder = aws_sdk_eksauth::Config::builder()
            .behavior_version(aws_sdk_eksauth::config::BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(&s.endpoint)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3).min(attempt_timeout))
                    .operation_attempt_timeout(attempt_timeout)
                    .operation_timeout(attempt_timeout)
                    .build(),
            )
            .http_client(http.clone());
        if s.unsigned {
            builder = builder.allow_no_auth();
        } else {
            let provider =
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .configure(
                        aws_config::provider_config::ProviderConfig::default()
                            .with_http_client(http)
                            .with_region(Some(Region::new(region.to_string()))),
                    )
                    .build()
                    .await;
            builder = builder.credentials_provider(provider);
        }
        Ok(EksAuthExchanger {
            client: aws_sdk_eksauth::Client::from_conf(builder.build()),
            cluster_name: s.cluster_name.clone(),
        })
    }
}

impl Exchanger for EksAuthExchanger {
    fn assume(&self, req: AssumeRequest) -> BoxFuture<'static, Result<Credentials, StsError>> {
        let call = self
            .client
            .assume_role_for_pod_identity()
            .cluster_name(&self.cluster_name)
            .token(req.token.expose());
        async move {
            let out = call
                .send()
                .await
                .map_err(|e| map_service_error(e, &req.token, "EKS Auth"))?;
            let malformed = |what: &str| {
                StsError::new(StsErrorKind::Failed, "MalformedResponse", what.to_string())
            };
            let c = out
                .credentials
                .ok_or_else(|| malformed("EKS Auth answered without credentials"))?;
            let expiration = SystemTime::try_from(*c.expiration())
                .map_err(|_| malformed("EKS Auth answered with an unusable expiration time"))?;
            let user = out.assumed_role_user;
            Ok(Credentials {
                access_key_id: c.access_key_id().to_string(),
                secret_access_key: Secret::new(c.secret_access_key()),
                session_token: Secret::new(c.session_token()),
                account_id: user
                    .as_ref()
                    .and_then(|u| u.arn().split(':').nth(4))
                    .filter(|a| !a.is_empty())
                    .map(str::to_string),
                expiration,
                assumed_role: user.map(|u| AssumedRole {
                    arn: u.arn().to_string(),
                    id: u.assume_role_id().to_string(),
                }),
            })
        }
        .boxed()
    }
}
