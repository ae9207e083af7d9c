//! Carries out an approved [`Plan`], one change at a time, printing each as
//! it is done. When a change fails, the error says which were made: every
//! command re-reads the state and plans again, so re-running it finishes.

use std::future::Future;
use std::time::Duration;

use aws_sdk_iam::types::Tag;

use crate::aws::{sdk_error, Aws};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::plan::{Change, Plan};

fn iam_tags(tags: &[(String, String)]) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Error::Usage(format!("tag {k}: {e}")))
        })
        .collect()
}

/// Makes the changes in order; `out` receives one line per change made.
pub async fn execute(
    plan: &Plan,
    aws: &Aws,
    cluster: Option<&Cluster>,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let mut done = Vec::new();
    for change in &plan.changes {
        if let Err(e) = apply(change, aws, cluster).await {
            if done.is_empty() {
                return Err(e);
            }
            return Err(Error::Partial {
                done: done
                    .iter()
                    .map(|d| format!("done: {d}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                error: Box::new(e),
            });
        }
        let line = change.describe();
        let first = line.lines().next().unwrap_or_default().to_string();
        let _ = writeln!(out, "done: {first}");
        done.push(first);
    }
    Ok(())
}

fn need_cluster(cluster: Option<&Cluster>) -> Result<&Cluster> {
    cluster.ok_or_else(|| Error::Usage("this change needs a cluster (--kubeconfig)".into()))
}

async fn apply(change: &Change, aws: &Aws, cluster: Option<&Cluster>) -> Result<()> {
    let iam = &aws.iam;
    match change {
        Change::CreateOidcProvider {
            url,
            client_ids,
            thumbprints,
            tags,
        } => {
            iam.create_open_id_connect_provider()
                .url(url)
                .set_client_id_list(Some(client_ids.clone()))
                .set_thumbprint_list(Some(thumbprints.clone()))
                .set_tags(Some(iam_tags(tags)?))
                .send()
                .await
                .map_err(|e| sdk_error("iam:CreateOpenIDConnectProvider", url, e))?;
        }
        Change::AddClientId {
            provider_arn,
            client_id,
        } => {
            iam.add_client_id_to_open_id_connect_provider()
                .open_id_connect_provider_arn(provider_arn)
                .client_id(client_id)
                .send()
                .await
                .map_err(|e| {
                    sdk_error("iam:AddClientIDToOpenIDConnectProvider", provider_arn, e)
                })?;
        }
        Change::UpdateThumbprints {
            provider_arn,
            thumbprints,
        } => {
            iam.update_open_id_connect_provider_thumbprint()
                .open_id_connect_provider_arn(provider_arn)
                .set_thumbprint_list(Some(thumbprints.clone()))
                .send()
                .await
                .map_err(|e| {
                    sdk_error("iam:UpdateOpenIDConnectProviderThumbprint", provider_arn, e)
                })?;
        }
        Change::PutObject { bucket, key, body } => {
            let bytes = serde_json::to_vec_pretty(body).map_err(|e| Error::Usage(e.to_string()))?;
            aws.s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type("application/json")
                .body(bytes.into())
                .send()
                .await
                .map_err(|e| {
                    sdk_error("s3:PutObject", &format!("arn:aws:s3:::{bucket}/{key}"), e)
                })?;
        }
        Change::CreateRole {
            name,
            trust,
            tags,
            permissions_boundary,
            ..
        } => {
            let tags = iam_tags(tags)?;
            retry_while_propagating(PROPAGATION_BUDGET, || async {
                iam.create_role()
                    .role_name(name)
                    .assume_role_policy_document(trust.to_string())
                    .set_tags(Some(tags.clone()))
                    .set_permissions_boundary(permissions_boundary.clone())
                    .description("Bound to Kubernetes ServiceAccounts by pod-identity")
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| sdk_error("iam:CreateRole", name, e))
            })
            .await?;
        }
        Change::TagRole { name, tags } => {
            iam.tag_role()
                .role_name(name)
                .set_tags(Some(iam_tags(tags)?))
                .send()
                .await
                .map_err(|e| sdk_error("iam:TagRole", name, e))?;
        }
        Change::UpdateTrust { name, trust } => {
            retry_while_propagating(PROPAGATION_BUDGET, || async {
                iam.update_assume_role_policy()
                    .role_name(name)
                    .policy_document(trust.to_string())
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| sdk_error("iam:UpdateAssumeRolePolicy", name, e))
            })
            .await?;
        }
        Change::AttachPolicy { role, policy_arn } => {
            iam.attach_role_policy()
                .role_name(role)
                .policy_arn(policy_arn)
                .send()
                .await
                .map_err(|e| {
                    sdk_error("iam:AttachRolePolicy", &format!("{role} ({policy_arn})"), e)
                })?;
        }
        Change::PutInlinePolicy {
            role,
            policy_name,
            document,
        } => {
            iam.put_role_policy()
                .role_name(role)
                .policy_name(policy_name)
                .policy_document(document.to_string())
                .send()
                .await
                .map_err(|e| {
                    sdk_error("iam:PutRolePolicy", &format!("{role} ({policy_name})"), e)
                })?;
        }
        Change::PutPermissionsBoundary { role, policy_arn } => {
            iam.put_role_permissions_boundary()
                .role_name(role)
                .permissions_boundary(policy_arn)
                .send()
                .await
                .map_err(|e| sdk_error("iam:PutRolePermissionsBoundary", role, e))?;
        }
        Change::DetachPolicy { role, policy_arn } => {
            iam.detach_role_policy()
                .role_name(role)
                .policy_arn(policy_arn)
                .send()
                .await
                .map_err(|e| {
                    sdk_error("iam:DetachRolePolicy", &format!("{role} ({policy_arn})"), e)
                })?;
        }
        Change::DeleteInlinePolicy { role, policy_name } => {
            iam.delete_role_policy()
                .role_name(role)
                .policy_name(policy_name)
                .send()
                .await
                .map_err(|e| {
                    sdk_error(
                        "iam:DeleteRolePolicy",
                        &format!("{role} ({policy_name})"),
                        e,
                    )
                })?;
        }
        Change::DeletePermissionsBoundary { role, .. } => {
            iam.delete_role_permissions_boundary()
                .role_name(role)
                .send()
                .await
                .map_err(|e| sdk_error("iam:DeleteRolePermissionsBoundary", role, e))?;
        }
        Change::CreateNamespace { name } => {
            need_cluster(cluster)?.create_namespace(name).await?;
        }
        Change::DeleteRole { name } => {
            iam.delete_role()
                .role_name(name)
                .send()
                .await
                .map_err(|e| sdk_error("iam:DeleteRole", name, e))?;
        }
        Change::ApplyServiceAccount {
            namespace,
            name,
            annotation,
            extra_annotations,
            labels,
            create,
            force,
        } => {
            let mut annotations = vec![annotation.clone()];
            annotations.extend(extra_annotations.iter().cloned());
            need_cluster(cluster)?
                .apply_annotation(namespace, name, &annotations, labels, *create, *force)
                .await?;
        }
        Change::RemoveAnnotation {
            namespace,
            name,
            key,
            value,
        } => {
            need_cluster(cluster)?
                .remove_annotation(namespace, name, key, value)
                .await?;
        }
        Change::DeleteServiceAccount { namespace, name } => {
            need_cluster(cluster)?
                .delete_service_account(namespace, name)
                .await?;
        }
        Change::CreateServiceAccount { namespace, name } => {
            need_cluster(cluster)?
                .apply_annotation(namespace, name, &[], &[], true, false)
                .await?;
        }
        Change::ApplyAssociation { name, spec } => {
            need_cluster(cluster)?.apply_association(name, spec).await?;
        }
        Change::DeleteAssociation { name } => {
            need_cluster(cluster)?.delete_association(name).await?;
        }
    }
    Ok(())
}

/// How long a trust policy naming an OIDC provider IAM does not know yet is
/// retried. IAM is eventually consistent: right after `oidc associate`
/// creates the provider, CreateRole can fail with "Invalid principal in
/// policy" for some seconds.
const PROPAGATION_BUDGET: Duration = Duration::from_secs(60);

/// The waits between attempts: 1, 2, 4, 8 s, then every 10 s, as long as the
/// total stays within `budget`.
fn propagation_delays(budget: Duration) -> Vec<Duration> {
    let mut out = Vec::new();
    let mut total = Duration::ZERO;
    let mut next = Duration::from_secs(1);
    while total + next <= budget {
        out.push(next);
        total += next;
        next = (next * 2).min(Duration::from_secs(10));
    }
    out
}

/// IAM's answer while a just-created principal has not propagated.
fn is_propagation(e: &Error) -> bool {
    matches!(e, Error::Aws { code: Some(code), message, .. }
        if code == "MalformedPolicyDocument" && message.contains("Invalid principal"))
}

/// Runs `op` until it succeeds, fails otherwise than [`is_propagation`], or
/// the waits of [`propagation_delays`] are used up; the last error then says
/// how long it waited.
async fn retry_while_propagating<F, Fut>(budget: Duration, mut op: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut delays = propagation_delays(budget).into_iter();
    let mut waited = Duration::ZERO;
    loop {
        match op().await {
            Err(e) if is_propagation(&e) => match delays.next() {
                Some(d) => {
                    tracing::info!(wait = ?d, "IAM does not know the OIDC provider yet; retrying");
                    tokio::time::sleep(d).await;
                    waited += d;
                }
                None => {
                    return Err(match e {
                        Error::Aws { code, action, resource, message } => Error::Aws {
                            code,
                            action,
                            resource,
                            message: format!(
                                "{message} (still after retrying for {} s: check that the IAM OIDC provider exists, `pod-identity oidc show`, then re-run)",
                                waited.as_secs()
                            ),
                        },
                        other => other,
                    })
                }
            },
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An IAM error as `aws::classify` makes it: the code, and the
    /// message prefixed with it.
    fn aws_error(message: &str) -> Error {
        Error::Aws {
            code: message.split_once(": ").map(|(c, _)| c.to_string()),
            action: "iam:CreateRole".into(),
            resource: "r".into(),
            message: message.into(),
        }
    }

    const INVALID_PRINCIPAL: &str = "MalformedPolicyDocument: Invalid principal in policy: \"FEDERATED\":\"arn:aws:iam::1:oidc-provider/x\"";

    #[test]
    fn the_waits_back_off_and_stay_within_the_budget() {
        let secs = |b| -> Vec<u64> {
            propagation_delays(Duration::from_secs(b))
                .iter()
                .map(Duration::as_secs)
                .collect()
        };
        assert_eq!(secs(60), [1, 2, 4, 8, 10, 10, 10, 10]);
        assert_eq!(secs(3), [1, 2]);
        assert!(secs(0).is_empty());
    }

    #[test]
    fn only_an_unknown_principal_is_retried() {
        assert!(is_propagation(&aws_error(INVALID_PRINCIPAL)));
        for other in [
            "MalformedPolicyDocument: Syntax errors in policy.",
            "LimitExceeded: Cannot exceed quota for ACLSizePerRole: 2048",
            "EntityAlreadyExists: Role with name r already exists.",
        ] {
            assert!(!is_propagation(&aws_error(other)), "{other}");
        }
        // The code decides, not text that reads like it.
        assert!(!is_propagation(&Error::Aws {
            code: None,
            action: "iam:CreateRole".into(),
            resource: "r".into(),
            message: INVALID_PRINCIPAL.into(),
        }));
        assert!(!is_propagation(&Error::AccessDenied {
            action: "iam:CreateRole".into(),
            resource: "r".into(),
            message: "Invalid principal".into(),
        }));
    }

    #[tokio::test(start_paused = true)]
    // Paused time: the clock only moves by the sleeps being measured.
    #[allow(clippy::disallowed_methods)]
    async fn retries_until_iam_knows_the_provider() {
        let calls = AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let r = retry_while_propagating(PROPAGATION_BUDGET, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0..=2 => Err(aws_error(INVALID_PRINCIPAL)),
                _ => Ok(()),
            }
        })
        .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(started.elapsed(), Duration::from_secs(1 + 2 + 4));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_budget_saying_how_long_it_waited() {
        let calls = AtomicUsize::new(0);
        let r = retry_while_propagating(PROPAGATION_BUDGET, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(aws_error(INVALID_PRINCIPAL))
        })
        .await;
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("still after retrying for 55 s"), "{msg}");
        assert_eq!(calls.load(Ordering::SeqCst), 9, "first try and 8 retries");
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_fail_at_once() {
        let calls = AtomicUsize::new(0);
        let r = retry_while_propagating(PROPAGATION_BUDGET, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(aws_error(
                "MalformedPolicyDocument: Syntax errors in policy.",
            ))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
