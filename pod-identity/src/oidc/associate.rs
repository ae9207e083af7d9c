//! `oidc associate`: the IAM OIDC provider for the cluster's issuer, with
//! `sts.amazonaws.com` as a client id and the thumbprint of the issuer's
//! certificate chain; created, completed, or left alone when it matches.

use std::path::PathBuf;

use super::thumbprint;
use crate::aws::Aws;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::iam::{find_provider, Provider};
use crate::iam::{OWNER_TAG, OWNER_VALUE};
use crate::plan::{Change, Plan};
use crate::policy::STS_AUDIENCE;

/// IAM keeps at most five thumbprints per provider.
const MAX_THUMBPRINTS: usize = 5;

#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Else the cluster's.
    pub issuer_url: Option<String>,
    pub issuer_ca_file: Option<PathBuf>,
    /// Client ids beyond sts.amazonaws.com.
    pub client_ids: Vec<String>,
}

/// The changes that make `existing` match: pure.
pub fn changes(
    issuer: &str,
    existing: Option<&Provider>,
    client_ids: &[String],
    thumbprint: &str,
) -> Vec<Change> {
    let mut wanted: Vec<String> = vec![STS_AUDIENCE.to_string()];
    for c in client_ids {
        if !wanted.contains(c) {
            wanted.push(c.clone());
        }
    }
    match existing {
        None => vec![Change::CreateOidcProvider {
            url: issuer.trim_end_matches('/').to_string(),
            client_ids: wanted,
            thumbprints: vec![thumbprint.to_string()],
            tags: vec![(OWNER_TAG.into(), OWNER_VALUE.into())],
        }],
        Some(p) => {
            let mut out: Vec<Change> = wanted
                .into_iter()
                .filter(|c| !p.client_ids.contains(c))
                .map(|client_id| Change::AddClientId {
                    provider_arn: p.arn.clone(),
                    client_id,
                })
                .collect();
            if !p
                .thumbprints
                .iter()
                .any(|t| t.eq_ignore_ascii_case(thumbprint))
            {
                let mut thumbprints = vec![thumbprint.to_string()];
                thumbprints.extend(p.thumbprints.iter().take(MAX_THUMBPRINTS - 1).cloned());
                out.push(Change::UpdateThumbprints {
                    provider_arn: p.arn.clone(),
                    thumbprints,
                });
            }
            out
        }
    }
}

pub async fn plan(aws: &Aws, cluster: Option<&Cluster>, req: &Request) -> Result<(String, Plan)> {
    let issuer = match (&req.issuer_url, cluster) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => c.issuer().await?,
        (None, None) => {
            return Err(Error::Usage(
                "give --issuer-url or a cluster (--kubeconfig)".into(),
            ))
        }
    };
    let probe = thumbprint::probe(&issuer, req.issuer_ca_file.as_deref()).await?;
    let served = probe.discovery["issuer"].as_str().unwrap_or_default();
    if served.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(Error::IssuerUnreachable {
            issuer: issuer.clone(),
            reason: format!("its discovery document names the issuer {served:?}, so STS would refuse its tokens"),
        });
    }
    let existing = find_provider(&aws.iam, &issuer).await?;
    let mut plan = Plan {
        changes: changes(
            &issuer,
            existing.as_ref(),
            &req.client_ids,
            &probe.thumbprint,
        ),
        notes: Vec::new(),
    };
    if let Some(p) = &existing {
        plan.notes
            .push(format!("IAM OIDC provider {} exists", p.arn));
    }
    Ok((issuer, plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let tp = "aa".repeat(20);
        let created = changes("https://i.example/", None, &[], &tp);
        assert!(
            matches!(&created[..], [Change::CreateOidcProvider { url, client_ids, .. }] if url == "https://i.example" && client_ids == &["sts.amazonaws.com"])
        );
        let p = Provider {
            arn: "arn:aws:iam::1:oidc-provider/i.example".into(),
            client_ids: vec![STS_AUDIENCE.into()],
            thumbprints: vec![tp.to_uppercase()],
            tags: Default::default(),
        };
        assert!(changes("https://i.example", Some(&p), &[], &tp).is_empty());
        let no_sts = Provider {
            client_ids: vec!["other".into()],
            ..p.clone()
        };
        assert_eq!(
            changes("https://i.example", Some(&no_sts), &[], &tp),
            vec![Change::AddClientId {
                provider_arn: p.arn.clone(),
                client_id: STS_AUDIENCE.into()
            }]
        );
        let rotated = changes("https://i.example", Some(&p), &[], &"bb".repeat(20));
        assert!(
            matches!(&rotated[..], [Change::UpdateThumbprints { thumbprints, .. }] if thumbprints.len() == 2 && thumbprints[0] == "bb".repeat(20))
        );
    }
}
