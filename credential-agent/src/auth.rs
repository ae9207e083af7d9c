//! Who is asking, and for what: a credentials request (its token, and in
//! node mode its `?role=`) turned into the cache [`Lookup`], or refused.
//!
//! - Node mode: the token is verified (signature, issuer, audience, time,
//!   Kubernetes claims); the cache key is built from its verified claims and
//!   the requested role, nothing else.
//! - Sidecar: the token must be the pod's token file (current or just
//!   rotated); the role is the sidecar's one role.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use contract::RoleArn;

use crate::cache::{Key, Lookup};
use crate::config::CacheScope;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::sidecar::TokenFile;
use crate::sts::session_name;
use crate::verify::{unverified_identity, Verifier};

/// How callers are authenticated.
pub enum Auth {
    /// Node mode: verify the token, take the role from `?role=`.
    Node {
        verifier: Arc<Verifier>,
        scope: CacheScope,
        /// With the Pod Identity backend: the bit of `pods.eks.amazonaws.com`
        /// in the verifier's audience list.
        pod_identity: Option<u32>,
    },
    /// Sidecar: the token must be the pod's token file; one role.
    Sidecar {
        token_file: Arc<TokenFile>,
        role_arn: RoleArn,
    },
}

/// The token a request presents: its `Authorization` header, with or without
/// `Bearer `.
pub fn presented_token(headers: &HeaderMap) -> Result<Secret> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Err(Error::MissingToken);
    };
    let s = v.to_str().map_err(|_| {
        Error::MalformedToken("the Authorization header is not a JWT (it holds non-ASCII bytes)")
    })?;
    let s = s.strip_prefix("Bearer ").unwrap_or(s);
    if s.is_empty() {
        return Err(Error::MissingToken);
    }
    Ok(Secret::new(s))
}

/// The role a node-mode request names (`role` is the decoded `?role=`).
pub fn requested_role(role: Option<String>) -> Result<RoleArn> {
    let role = role.ok_or_else(|| {
        Error::InvalidRole(
            "no role: the credentials URI must name it, /v1/credentials?role=<URL-encoded role ARN>"
                .into(),
        )
    })?;
    RoleArn::parse(&role)
        .map_err(|e| Error::InvalidRole(format!("{role:?} is not an IAM role ARN: {e}")))
}

/// The role a Pod Identity key carries: a placeholder (the role is the
/// association's, known to EKS Auth); keys are told apart by their
/// association marker (`sts::EKS_AUTH`), which no request can set.
pub const POD_IDENTITY_KEY_ROLE: &str = "arn:aws:iam::000000000000:role/eks-pod-identity";

/// A request without `?role=` on an agent with the Pod Identity backend:
/// the token must be a pod's, for `pods.eks.amazonaws.com`; one session per
/// pod, from EKS Auth.
async fn pod_identity_lookup(
    verifier: &Verifier,
    bit: u32,
    token: Secret,
    metrics: &Metrics,
) -> Result<Lookup> {
    let id = verifier
        .verify(&token)
        .await
        .inspect_err(|e| metrics.rejection(e.reason()))?;
    if id.audiences & bit == 0 {
        metrics.rejection("rejected");
        return Err(Error::InvalidRole(
            "no role: name it with ?role=<URL-encoded role ARN>, or send the pod's eks-pod-identity-token (audience pods.eks.amazonaws.com) for Pod Identity".into(),
        ));
    }
    let Some(pod_uid) = id.pod_uid.clone() else {
        metrics.rejection("rejected");
        return Err(Error::TokenRejected(
            "a Pod Identity token must be bound to a pod".into(),
        ));
    };
    Ok(Lookup {
        session_name: session_name(&id.namespace, &id.service_account, id.pod_name.as_deref()),
        key: Key {
            namespace: id.namespace.clone(),
            service_account: id.service_account.clone(),
            service_account_uid: id.service_account_uid.clone(),
            role_arn: RoleArn::parse(POD_IDENTITY_KEY_ROLE)
                .map_err(|e| Error::Config(e.to_string()))?,
            pod_uid: Some(pod_uid),
            association: Some(crate::sts::EKS_AUTH.to_string()),
            audiences: id.audiences,
        },
        token,
        token_expires: Some(id.expires),
    })
}

impl Auth {
    /// Authenticates a request presenting `token` (and, in node mode,
    /// naming `role`: the decoded `?role=`, or why the query string could not
    /// be read), returning what to look up in the cache.
    pub async fn lookup(
        &self,
        token: Secret,
        role: Result<Option<String>>,
        metrics: &Metrics,
    ) -> Result<Lookup> {
        match self {
            Auth::Node {
                verifier,
                scope,
                pod_identity,
            } => {
                let role = role?;
                if let (None, Some(bit)) = (&role, pod_identity) {
                    return pod_identity_lookup(verifier, *bit, token, metrics).await;
                }
                let role_arn = requested_role(role)?;
                let id = verifier
                    .verify(&token)
                    .await
                    .inspect_err(|e| metrics.rejection(e.reason()))?;
                let per_pod = *scope == CacheScope::Pod;
                let pod_name = id.pod_name.as_deref().filter(|_| per_pod);
                tracing::debug!(namespace = %id.namespace, service_account = %id.service_account, role = %role_arn, "verified token");
                Ok(Lookup {
                    session_name: session_name(&id.namespace, &id.service_account, pod_name),
                    key: Key {
                        namespace: id.namespace.clone(),
                        service_account: id.service_account.clone(),
                        service_account_uid: id.service_account_uid.clone(),
                        role_arn,
                        pod_uid: if per_pod { id.pod_uid.clone() } else { None },
                        association: None,
                        audiences: id.audiences,
                    },
                    token,
                    token_expires: Some(id.expires),
                })
            }
            Auth::Sidecar {
                token_file,
                role_arn,
            } => {
                let current = token_file
                    .authenticate(token.expose().as_bytes())
                    .await
                    .inspect_err(|_| metrics.rejection("token_mismatch"))?;
                let id = unverified_identity(&current);
                let (ns, sa, uid, pod) = match &id {
                    Some(i) => (
                        i.namespace.as_str(),
                        i.service_account.as_str(),
                        i.service_account_uid.as_str(),
                        i.pod_name.as_deref(),
                    ),
                    None => ("pod", "sidecar", "", None),
                };
                Ok(Lookup {
                    key: Key {
                        namespace: ns.into(),
                        service_account: sa.into(),
                        service_account_uid: uid.into(),
                        role_arn: role_arn.clone(),
                        pod_uid: None,
                        association: None,
                        audiences: 0,
                    },
                    session_name: session_name(ns, sa, pod),
                    token_expires: id.as_ref().map(|i| i.expires),
                    token: current,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn presented_tokens() {
        let mut h = HeaderMap::new();
        assert!(matches!(presented_token(&h), Err(Error::MissingToken)));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(matches!(presented_token(&h), Err(Error::MissingToken)));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer a.b.c"),
        );
        assert_eq!(presented_token(&h).unwrap().expose(), "a.b.c");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("a.b.c"));
        assert_eq!(presented_token(&h).unwrap().expose(), "a.b.c");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"a.\xff.c").unwrap(),
        );
        assert!(matches!(presented_token(&h), Err(Error::MalformedToken(_))));
    }

    #[test]
    fn requested_roles() {
        assert!(matches!(requested_role(None), Err(Error::InvalidRole(_))));
        for bad in ["", "app", "arn:aws:iam::111122223333:role//x"] {
            assert!(
                matches!(requested_role(Some(bad.into())), Err(Error::InvalidRole(_))),
                "{bad}"
            );
        }
        let ok = requested_role(Some("arn:aws:iam::111122223333:role/app".into())).unwrap();
        assert_eq!(ok.name(), "app");
    }
}
