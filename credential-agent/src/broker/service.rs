//! `POST /clusters/{clusterName}/assume-role-for-pod-identity`: one pod's
//! token in, its association's role session out, in EKS Auth's wire format
//! (`eks_auth.rs`). The token alone decides: the caller is not
//! authenticated (EKS checks the node's SigV4 signature; here whoever holds
//! a pod's token gets that pod's credentials and nothing more, as from the
//! node agent). Each request:
//!
//! 1. the cluster name must be this broker's;
//! 2. the token is verified (signature, issuer, audience, expiry) and must
//!    be bound to a pod;
//! 3. the association of its (namespace, ServiceAccount) is looked up;
//! 4. the pod must still exist with that uid (`pods.rs`);
//! 5. the session comes from the cache, per (association version, pod uid),
//!    or per association version with `disableSessionTags` (no pod in it).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use contract::association;
use contract::RoleArn;

use super::associations::AssociationStore;
use super::pods::{BoundPod, PodCheck};
use crate::cache::{Cache, Key, Lookup};
use crate::eks_auth::{self, EksAuthError, ErrorType};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::stored::CachedCredentials;
use crate::sts::StsErrorKind;
use crate::verify::{Verifier, VerifyError};

/// A request body holds one token (at most 16 KiB) and two short fields.
pub const MAX_BODY: usize = 32 * 1024;

#[derive(Clone)]
pub struct BrokerState {
    pub verifier: Arc<Verifier>,
    pub audiences: Arc<[String]>,
    pub store: Arc<AssociationStore>,
    pub pods: Arc<PodCheck>,
    pub cache: Cache,
    pub metrics: Arc<Metrics>,
    pub cluster_name: String,
    /// For `associationArn`: `arn:<partition>:eks:<region>:<account>:...`.
    pub cluster_arn: Option<String>,
    pub region: String,
}

pub fn router(state: BrokerState) -> Router {
    Router::new()
        .route(eks_auth::PATH, post(assume_role_for_pod_identity))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn not_found(State(state): State<BrokerState>) -> Response {
    answer(
        &state.metrics,
        Err(EksAuthError::new(
            ErrorType::ResourceNotFound,
            "no such operation: POST /clusters/{clusterName}/assume-role-for-pod-identity",
        )),
    )
}

fn answer(
    metrics: &Metrics,
    result: Result<eks_auth::AssumeRoleForPodIdentityResponse, EksAuthError>,
) -> Response {
    match result {
        Ok(r) => {
            metrics.eks_auth_answer("ok");
            metrics.request(200);
            r.into_response()
        }
        Err(e) => {
            metrics.eks_auth_answer(e.kind.name());
            metrics.request(e.kind.status().as_u16());
            tracing::info!(error = %e, "refused");
            e.into_response()
        }
    }
}

async fn assume_role_for_pod_identity(
    State(state): State<BrokerState>,
    Path(cluster): Path<String>,
    body: Bytes,
) -> Response {
    let result = handle(&state, &cluster, &body).await;
    answer(&state.metrics, result)
}

fn verify_error(e: VerifyError) -> EksAuthError {
    match e {
        e if e.is_expired() => EksAuthError::new(ErrorType::ExpiredToken, e.to_string()),
        VerifyError::Malformed(m) => EksAuthError::new(ErrorType::InvalidToken, m),
        VerifyError::Rejected(m) => EksAuthError::new(ErrorType::InvalidToken, m),
        VerifyError::KeysUnavailable(m) => EksAuthError::new(
            ErrorType::ServiceUnavailable,
            format!("the token issuer's keys are not available yet: {m}"),
        ),
    }
}

/// The cache's refusals, as EKS Auth error types.
fn cache_error(e: Error) -> EksAuthError {
    match e {
        Error::Sts(s) => {
            let kind = match s.kind {
                StsErrorKind::Denied => ErrorType::AccessDenied,
                StsErrorKind::Invalid => ErrorType::InvalidParameter,
                StsErrorKind::Throttled => ErrorType::Throttling,
                StsErrorKind::Unavailable => ErrorType::ServiceUnavailable,
                StsErrorKind::Failed => ErrorType::InternalServer,
            };
            EksAuthError::new(kind, format!("STS AssumeRole: {}: {}", s.code, s.message))
        }
        Error::TooManyRoles(m) => EksAuthError::new(ErrorType::Throttling, m),
        Error::Unavailable(m) => EksAuthError::new(ErrorType::ServiceUnavailable, m),
        Error::MalformedToken(m) => EksAuthError::new(ErrorType::InvalidToken, m),
        e => EksAuthError::new(ErrorType::InternalServer, e.to_string()),
    }
}

async fn handle(
    state: &BrokerState,
    cluster: &str,
    body: &[u8],
) -> Result<eks_auth::AssumeRoleForPodIdentityResponse, EksAuthError> {
    if cluster != state.cluster_name {
        return Err(EksAuthError::new(
            ErrorType::ResourceNotFound,
            format!(
                "no cluster {cluster:?} here; this broker serves {:?}",
                state.cluster_name
            ),
        ));
    }
    let req = eks_auth::parse_request(body)?;
    let id = state.verifier.verify(&req.token).await.map_err(|e| {
        state.metrics.rejection(e.reason());
        verify_error(e)
    })?;
    let (Some(pod_name), Some(pod_uid)) = (id.pod_name.as_deref(), id.pod_uid.as_deref()) else {
        return Err(EksAuthError::new(
            ErrorType::InvalidToken,
            "the token is not bound to a pod: send the pod's projected eks-pod-identity-token",
        ));
    };
    if !state.store.is_synced() {
        return Err(EksAuthError::new(
            ErrorType::ServiceUnavailable,
            "the broker has not read the PodIdentityAssociations yet; retry",
        ));
    }
    let bound = state
        .store
        .get(&id.namespace, &id.service_account)
        .ok_or_else(|| {
            EksAuthError::new(
                ErrorType::ResourceNotFound,
                format!(
                    "no PodIdentityAssociation for ServiceAccount {}/{}",
                    id.namespace, id.service_account
                ),
            )
        })?;
    state
        .pods
        .check(BoundPod {
            namespace: &id.namespace,
            name: pod_name,
            uid: pod_uid,
            service_account: &id.service_account,
        })
        .await?;
    let a = &bound.association;
    let role_arn = &bound.role_arn;
    // With session tags off, nothing of the pod is in the session: one per
    // association, named after the ServiceAccount.
    let per_pod = !a.disable_session_tags;
    let session_name = if per_pod {
        association::session_name(&state.cluster_name, pod_name, pod_uid)
    } else {
        association::session_name(&state.cluster_name, &a.service_account, &bound.id[2..])
    };
    let served = state
        .cache
        .get(Lookup {
            key: Key {
                namespace: id.namespace.clone(),
                service_account: id.service_account.clone(),
                service_account_uid: id.service_account_uid.clone(),
                role_arn: role_arn.clone(),
                pod_uid: per_pod.then(|| pod_uid.to_string()),
                association: Some(bound.version.clone()),
                audiences: id.audiences,
            },
            session_name: session_name.clone(),
            token: req.token,
            token_expires: Some(id.expires),
        })
        .await
        .map_err(cache_error)?;
    let audience = state
        .audiences
        .get(id.audiences.trailing_zeros() as usize)
        .cloned()
        .unwrap_or_default();
    let c = &served.credentials;
    let last_role = a
        .target_role_arn
        .as_deref()
        .and_then(|t| RoleArn::parse(t).ok());
    let last_role = last_role.as_ref().unwrap_or(role_arn);
    Ok(eks_auth::AssumeRoleForPodIdentityResponse {
        subject: eks_auth::Subject {
            namespace: id.namespace.clone(),
            service_account: id.service_account.clone(),
        },
        audience,
        pod_identity_association: eks_auth::PodIdentityAssociation {
            association_arn: association_arn(state, role_arn, &bound.id),
            association_id: bound.id.clone(),
        },
        assumed_role_user: assumed_role_user(c, last_role, &session_name),
        credentials: eks_auth::Credentials {
            session_token: c.session_token().clone(),
            secret_access_key: c.secret_access_key().clone(),
            access_key_id: c.access_key_id().to_string(),
            expiration: c.expiration(),
        },
    })
}

/// `arn:<partition>:eks:<region>:<account>:podidentityassociation/<cluster>/<id>`,
/// the account of the cluster ARN when configured, else of the role.
fn association_arn(state: &BrokerState, role: &RoleArn, id: &str) -> String {
    let from_cluster = state.cluster_arn.as_deref().and_then(|arn| {
        let parts: Vec<&str> = arn.split(':').collect();
        (parts.len() >= 6).then(|| {
            (
                parts[1].to_string(),
                parts[3].to_string(),
                parts[4].to_string(),
            )
        })
    });
    let (partition, region, account) = from_cluster.unwrap_or_else(|| {
        (
            role.partition().to_string(),
            state.region.clone(),
            role.account().to_string(),
        )
    });
    format!(
        "arn:{partition}:eks:{region}:{account}:podidentityassociation/{}/{id}",
        state.cluster_name
    )
}

/// STS's assumed-role user when the session carries it, else its form.
fn assumed_role_user(
    c: &CachedCredentials,
    role: &RoleArn,
    session_name: &str,
) -> eks_auth::AssumedRoleUser {
    match c.assumed_role() {
        Some(u) => eks_auth::AssumedRoleUser {
            arn: u.arn.clone(),
            assume_role_id: u.id.clone(),
        },
        None => eks_auth::AssumedRoleUser {
            arn: format!(
                "arn:{}:sts::{}:assumed-role/{}/{session_name}",
                role.partition(),
                role.account(),
                role.name()
            ),
            assume_role_id: String::new(),
        },
    }
}
