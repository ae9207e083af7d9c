//! The broker's STS side behind the shared cache: an [`Exchanger`] whose
//! calls are `sts:AssumeRole` with the pod's session tags (and the chain to
//! `targetRoleArn`), signed by the broker's own credentials. The cache keeps
//! what it needs to refresh a session (the pod's verified token); the
//! association and the pod are read again from them at each call, so a
//! refresh after the association is deleted or changed is refused.

use std::sync::Arc;

use contract::association::PodRef;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::associations::AssociationStore;
use crate::role_session::{RoleSessions, SessionRequest};
use crate::sts::{AssumeRequest, Credentials, Exchanger, StsError, StsErrorKind};
use crate::verify::unverified_identity;

pub struct PodIdentityExchanger {
    pub sessions: RoleSessions,
    pub store: Arc<AssociationStore>,
    pub cluster_name: String,
    pub cluster_arn: Option<String>,
}

fn refused(message: impl Into<String>) -> StsError {
    StsError::new(StsErrorKind::Denied, "AccessDenied", message)
}

impl PodIdentityExchanger {
    /// The AssumeRole calls for one cached session. The token was verified
    /// when the session was first asked for (and by every request since).
    pub fn session_request(&self, req: &AssumeRequest) -> Result<SessionRequest, StsError> {
        let id = unverified_identity(&req.token)
            .ok_or_else(|| refused("the cached token cannot be read"))?;
        let (Some(pod_name), Some(pod_uid)) = (id.pod_name.as_deref(), id.pod_uid.as_deref())
        else {
            return Err(refused("the token is not bound to a pod"));
        };
        let bound = self
            .store
            .get(&id.namespace, &id.service_account)
            .ok_or_else(|| {
                refused(format!(
                    "no PodIdentityAssociation binds {}/{} any more",
                    id.namespace, id.service_account
                ))
            })?;
        let a = &bound.association;
        if a.role_arn != req.role_arn {
            return Err(refused(format!(
                "the association of {}/{} now names another role",
                id.namespace, id.service_account
            )));
        }
        let tags = a.session_tags(
            &self.cluster_name,
            self.cluster_arn.as_deref(),
            &PodRef {
                namespace: &id.namespace,
                service_account: &id.service_account,
                name: pod_name,
                uid: pod_uid,
            },
        );
        Ok(SessionRequest {
            role_arn: a.role_arn.clone(),
            session_name: req.session_name.clone(),
            tags: tags.tags,
            transitive: tags.transitive,
            then: a.target_role_arn.clone().map(|t| (t, bound.id.clone())),
            duration_seconds: req.duration_seconds,
        })
    }
}

impl Exchanger for PodIdentityExchanger {
    fn assume(&self, req: AssumeRequest) -> BoxFuture<'static, Result<Credentials, StsError>> {
        let sessions = self.sessions.clone();
        let call = self.session_request(&req);
        async move {
            let call = call?;
            Ok(sessions.assume(&call).await?.credentials)
        }
        .boxed()
    }
}
