//! Carries out an approved [`Plan`], one change at a time, printing each as
//! it is done. When a change fails, the error says which were made: every
//! command re-reads the state and plans again, so re-running it finishes.

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
            iam.create_role()
                .role_name(name)
                .assume_role_policy_document(trust.to_string())
                .set_tags(Some(iam_tags(tags)?))
                .set_permissions_boundary(permissions_boundary.clone())
                .description("Bound to Kubernetes ServiceAccounts by pod-identity")
                .send()
                .await
                .map_err(|e| sdk_error("iam:CreateRole", name, e))?;
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
            iam.update_assume_role_policy()
                .role_name(name)
                .policy_document(trust.to_string())
                .send()
                .await
                .map_err(|e| sdk_error("iam:UpdateAssumeRolePolicy", name, e))?;
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
    }
    Ok(())
}
