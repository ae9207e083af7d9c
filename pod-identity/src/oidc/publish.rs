//! `oidc publish`: for a self-managed cluster, write the issuer's discovery
//! document and key set to S3 so that the issuer URL serves them, keeping
//! keys already published (rotation) until `--prune`.

use std::path::PathBuf;

use serde_json::Value;

use super::discovery::{self, KeyChanges};
use super::keys::jwks_from_pem;
use crate::aws::{code, sdk_error, Aws};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::plan::{Change, Plan};

/// Largest published document read back (a key set of hundreds of keys fits).
const MAX_DOCUMENT_BYTES: i64 = 1 << 20;

/// What `publish` was asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub bucket: String,
    pub prefix: String,
    /// Else the bucket's S3 URL.
    pub issuer_url: Option<String>,
    /// Else the keys the API server serves.
    pub signing_key_pub: Vec<PathBuf>,
    pub prune: bool,
}

/// The plan and what the user must then set on kube-apiserver.
#[derive(Debug)]
pub struct Outcome {
    pub plan: Plan,
    pub issuer: String,
    pub keys: KeyChanges,
    pub current_issuer: Option<String>,
}

async fn read_object(aws: &Aws, bucket: &str, key: &str) -> Result<Option<Value>> {
    match aws.s3.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => {
            if o.content_length().unwrap_or(0) > MAX_DOCUMENT_BYTES {
                return Err(Error::Aws {
code: None,
                    action: "s3:GetObject".into(),
                    resource: format!("arn:aws:s3:::{bucket}/{key}"),
                    message: format!(
                        "the published document is larger than {MAX_DOCUMENT_BYTES} bytes: not a discovery document or key set"
                    ),
                });
            }
            let bytes = o.body.collect().await.map_err(|e| Error::Aws {
                code: None,
                action: "s3:GetObject".into(),
                resource: format!("arn:aws:s3:::{bucket}/{key}"),
                message: e.to_string(),
            })?;
            let v = serde_json::from_slice(&bytes.into_bytes()).map_err(|e| Error::Aws {
                code: None,
                action: "s3:GetObject".into(),
                resource: format!("arn:aws:s3:::{bucket}/{key}"),
                message: format!("the published document is not JSON: {e}"),
            })?;
            Ok(Some(v))
        }
        Err(e) => {
            if code(&e) == Some("NoSuchKey") {
                return Ok(None);
            }
            if code(&e) == Some("NoSuchBucket") {
                return Err(Error::Precondition(format!("the S3 bucket {bucket} does not exist: create it first (objects under the prefix must be publicly readable)")));
            }
            Err(sdk_error(
                "s3:GetObject",
                &format!("arn:aws:s3:::{bucket}/{key}"),
                e,
            ))
        }
    }
}

pub async fn plan(aws: &Aws, cluster: Option<&Cluster>, req: &Request) -> Result<Outcome> {
    let issuer = req
        .issuer_url
        .clone()
        .unwrap_or_else(|| discovery::s3_issuer_url(&req.bucket, &aws.region, &req.prefix));
    if !issuer.starts_with("https://") {
        return Err(Error::Usage(format!(
            "--issuer-url {issuer:?} must be an https:// URL: IAM only fetches issuers over HTTPS"
        )));
    }
    let current: Vec<Value> = if req.signing_key_pub.is_empty() {
        let cluster = cluster.ok_or_else(|| {
            Error::Usage(
                "give --signing-key-pub or a cluster (--kubeconfig) to take the keys from".into(),
            )
        })?;
        discovery::keys_of(&cluster.jwks().await?)
            .map_err(|e| Error::kube("the API server's key set", e))?
    } else {
        let mut keys = Vec::new();
        for path in &req.signing_key_pub {
            let pem = std::fs::read(path).map_err(|source| Error::ReadFile {
                path: path.clone(),
                source,
            })?;
            keys.extend(jwks_from_pem(&pem).map_err(|e| Error::InvalidFile {
                path: path.clone(),
                message: e.to_string(),
            })?);
        }
        keys
    };
    let current_issuer = match cluster {
        Some(c) => c.issuer().await.ok(),
        None => None,
    };
    let jwks_key = discovery::object_key(&req.prefix, discovery::JWKS_PATH);
    let discovery_key = discovery::object_key(&req.prefix, discovery::DISCOVERY_PATH);
    let published_jwks = read_object(aws, &req.bucket, &jwks_key).await?;
    let published_keys = match &published_jwks {
        Some(v) => discovery::keys_of(v).map_err(|m| Error::Aws {
            code: None,
            action: "s3:GetObject".into(),
            resource: format!("arn:aws:s3:::{}/{jwks_key}", req.bucket),
            message: m.to_string(),
        })?,
        None => Vec::new(),
    };
    let (jwks, keys) = discovery::merge(&published_keys, &current, req.prune);
    let doc = discovery::document(&issuer, &discovery::keys_of(&jwks).unwrap_or_default());
    let published_doc = read_object(aws, &req.bucket, &discovery_key).await?;
    let mut plan = Plan::default();
    if published_doc.as_ref() != Some(&doc) {
        plan.changes.push(Change::PutObject {
            bucket: req.bucket.clone(),
            key: discovery_key,
            body: doc,
        });
    }
    if published_jwks.as_ref() != Some(&jwks) {
        plan.changes.push(Change::PutObject {
            bucket: req.bucket.clone(),
            key: jwks_key,
            body: jwks,
        });
    }
    if !keys.added.is_empty() {
        plan.notes
            .push(format!("keys added: {}", keys.added.join(", ")));
    }
    if !keys.removed.is_empty() {
        plan.notes.push(format!(
            "keys removed (--prune): {}",
            keys.removed.join(", ")
        ));
    }
    Ok(Outcome {
        plan,
        issuer,
        keys,
        current_issuer,
    })
}

/// The kube-apiserver flags that make the cluster issue tokens for `issuer`.
pub fn apiserver_flags(o: &Outcome) -> String {
    let issuer = o.issuer.trim_end_matches('/');
    let mut s = format!(
        "Issuer URL: {issuer}\nSet these kube-apiserver flags (then restart it) so that its tokens name this issuer:\n"
    );
    s.push_str(&format!("  --service-account-issuer={issuer}\n"));
    if let Some(old) = o.current_issuer.as_deref().filter(|c| *c != issuer) {
        s.push_str(&format!(
            "  --service-account-issuer={old}   # second, on Kubernetes 1.22+: tokens already issued stay valid\n"
        ));
    }
    s.push_str(&format!(
        "  --service-account-jwks-uri={issuer}/{}\n",
        discovery::JWKS_PATH
    ));
    // The API server's own audience: what in-cluster clients' tokens carry
    // now (the current issuer), so that they keep working.
    let api_audience = o
        .current_issuer
        .clone()
        .unwrap_or_else(|| issuer.to_string());
    s.push_str(&format!("  --api-audiences={api_audience}\n"));
    s.push_str(&format!(
        "Keep {} out of --api-audiences: pods get tokens for STS through their projected token volume's audience, which the API server issues without listing it, and every audience listed there also logs in to the Kubernetes API, so a token handed to STS would be a Kubernetes credential too.\n",
        crate::policy::STS_AUDIENCE
    ));
    s
}
