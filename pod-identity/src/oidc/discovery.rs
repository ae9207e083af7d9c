//! The two documents an OIDC issuer serves, as kube-apiserver writes them,
//! and how a published key set changes when keys rotate: the keys in use
//! are added, the ones already published stay (tokens they signed are still
//! valid) until `--prune` drops them.

use serde_json::{json, Value};

contract::message_error! {
    /// A published key set that is not a JWKS.
    JwksShapeError
}

/// Where an issuer serves its discovery document, under the issuer URL.
pub const DISCOVERY_PATH: &str = ".well-known/openid-configuration";
/// Where this tool publishes the key set (the path kube-apiserver uses).
pub const JWKS_PATH: &str = "openid/v1/jwks";

/// The issuer URL of a bucket's prefix in S3's virtual-hosted form.
pub fn s3_issuer_url(bucket: &str, region: &str, prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    let host = if region == "us-east-1" {
        format!("https://{bucket}.s3.amazonaws.com")
    } else {
        format!("https://{bucket}.s3.{region}.amazonaws.com")
    };
    if prefix.is_empty() {
        host
    } else {
        format!("{host}/{prefix}")
    }
}

/// The S3 key of `path` under `prefix`.
pub fn object_key(prefix: &str, path: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        path.to_string()
    } else {
        format!("{prefix}/{path}")
    }
}

/// The discovery document for `issuer` with keys of these algorithms.
pub fn document(issuer: &str, keys: &[Value]) -> Value {
    let issuer = issuer.trim_end_matches('/');
    let mut algs: Vec<&str> = keys.iter().filter_map(|k| k["alg"].as_str()).collect();
    algs.sort();
    algs.dedup();
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/{JWKS_PATH}"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    })
}

/// What publishing changes in the key set.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyChanges {
    pub added: Vec<String>,
    pub kept: Vec<String>,
    pub removed: Vec<String>,
}

/// The key set to publish: `current` (the keys that sign now) plus, unless
/// `prune`, every key of `published` not among them. Keys are told apart by
/// `kid`.
pub fn merge(published: &[Value], current: &[Value], prune: bool) -> (Value, KeyChanges) {
    let kid = |k: &Value| k["kid"].as_str().unwrap_or_default().to_string();
    let current_ids: Vec<String> = current.iter().map(kid).collect();
    let published_ids: Vec<String> = published.iter().map(kid).collect();
    let mut changes = KeyChanges::default();
    let mut keys: Vec<Value> = current.to_vec();
    for id in &current_ids {
        if published_ids.contains(id) {
            changes.kept.push(id.clone());
        } else {
            changes.added.push(id.clone());
        }
    }
    for k in published {
        let id = kid(k);
        if current_ids.contains(&id) {
            continue;
        }
        if prune {
            changes.removed.push(id);
        } else {
            changes.kept.push(id);
            keys.push(k.clone());
        }
    }
    (json!({ "keys": keys }), changes)
}

/// The `keys` of a JWKS document.
pub fn keys_of(jwks: &Value) -> Result<Vec<Value>, JwksShapeError> {
    jwks.get("keys")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| "the JWKS document has no \"keys\" list".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str) -> Value {
        json!({"kid": kid, "kty": "EC", "alg": "ES256"})
    }

    #[test]
    fn rotation_keeps_old_keys_until_pruned() {
        let (first, c) = merge(&[], &[key("a")], false);
        assert_eq!(c.added, ["a"]);
        assert_eq!(keys_of(&first).unwrap(), [key("a")]);
        // Same key again: nothing added.
        let (same, c) = merge(&keys_of(&first).unwrap(), &[key("a")], false);
        assert_eq!(same, first);
        assert!(c.added.is_empty() && c.removed.is_empty());
        // Rotated: both keys published, the new one first.
        let (both, c) = merge(&keys_of(&first).unwrap(), &[key("b")], false);
        assert_eq!(keys_of(&both).unwrap(), [key("b"), key("a")]);
        assert_eq!(
            (c.added, c.kept),
            (vec!["b".to_string()], vec!["a".to_string()])
        );
        // Pruned: only the key in use.
        let (pruned, c) = merge(&keys_of(&both).unwrap(), &[key("b")], true);
        assert_eq!(keys_of(&pruned).unwrap(), [key("b")]);
        assert_eq!(c.removed, ["a"]);
    }

    #[test]
    fn documents_and_urls() {
        let d = document(
            "https://b.s3.eu-west-1.amazonaws.com/c1/",
            &[key("a"), key("b")],
        );
        assert_eq!(d["issuer"], "https://b.s3.eu-west-1.amazonaws.com/c1");
        assert_eq!(
            d["jwks_uri"],
            "https://b.s3.eu-west-1.amazonaws.com/c1/openid/v1/jwks"
        );
        assert_eq!(d["id_token_signing_alg_values_supported"], json!(["ES256"]));
        assert_eq!(
            s3_issuer_url("b", "us-east-1", ""),
            "https://b.s3.amazonaws.com"
        );
        assert_eq!(
            s3_issuer_url("b", "eu-west-1", "/x/y/"),
            "https://b.s3.eu-west-1.amazonaws.com/x/y"
        );
        assert_eq!(object_key("/x/", JWKS_PATH), "x/openid/v1/jwks");
        assert_eq!(
            object_key("", DISCOVERY_PATH),
            ".well-known/openid-configuration"
        );
        assert!(keys_of(&json!({})).is_err());
    }
}
