//! `oidc show`: the cluster's issuer, its keys, and its IAM OIDC provider.

use serde::Serialize;

use crate::aws::Aws;
use crate::cluster::Cluster;
use crate::error::Result;
use crate::iam::{find_provider, Provider};
use crate::policy::STS_AUDIENCE;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub issuer: String,
    pub jwks: serde_json::Value,
    pub provider: Option<ProviderReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderReport {
    pub arn: String,
    pub client_ids: Vec<String>,
    pub thumbprints: Vec<String>,
    /// `sts.amazonaws.com` is among the client ids.
    pub sts_client_id: bool,
}

pub async fn run(aws: &Aws, cluster: &Cluster) -> Result<Report> {
    let issuer = cluster.issuer().await?;
    let jwks = cluster.jwks().await?;
    let provider = find_provider(&aws.iam, &issuer)
        .await?
        .map(|p: Provider| ProviderReport {
            sts_client_id: p.client_ids.iter().any(|c| c == STS_AUDIENCE),
            arn: p.arn,
            client_ids: p.client_ids,
            thumbprints: p.thumbprints,
        });
    Ok(Report {
        issuer,
        jwks,
        provider,
    })
}

pub fn render(r: &Report) -> String {
    let mut out = format!("issuer: {}\n", r.issuer);
    let keys = r.jwks["keys"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("keys: {}\n", keys.len()));
    for k in keys {
        out.push_str(&format!(
            "  - kid {} ({} {})\n",
            k["kid"].as_str().unwrap_or("?"),
            k["kty"].as_str().unwrap_or("?"),
            k["alg"].as_str().unwrap_or("?")
        ));
    }
    match &r.provider {
        None => {
            out.push_str("IAM OIDC provider: none (run `pod-identity oidc associate --approve`)\n")
        }
        Some(p) => {
            out.push_str(&format!("IAM OIDC provider: {}\n", p.arn));
            out.push_str(&format!("  client ids: {}\n", p.client_ids.join(", ")));
            out.push_str(&format!("  thumbprints: {}\n", p.thumbprints.join(", ")));
            if !p.sts_client_id {
                out.push_str(&format!(
                    "  problem: {STS_AUDIENCE} is not a client id, so STS refuses the cluster's tokens (run `pod-identity oidc associate --approve`)\n"
                ));
            }
        }
    }
    out
}
