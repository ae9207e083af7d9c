//! JSON Patch (RFC 6902) operations with RFC 6901 pointer escaping, and the
//! typed values the webhook adds. The common values (variables, mounts, the
//! token volume) are plain structs, serialized without building a
//! `serde_json::Value` first: that tree of maps was most of the webhook's
//! work per review (docs/benchmarks.md).

use serde::Serialize;
use serde_json::Value;

use crate::{Error, Result};

/// One JSON Patch operation. The webhook only ever adds: a single env var, a
/// single volume mount, a single volume or a single label, never a whole
/// container, so fields this program does not know are never lost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchOp {
    pub op: &'static str,
    pub path: String,
    pub value: PatchValue,
}

impl PatchOp {
    pub fn add(path: impl Into<String>, value: impl Into<PatchValue>) -> Self {
        PatchOp {
            op: "add",
            path: path.into(),
            value: value.into(),
        }
    }
}

/// What an operation adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PatchValue {
    Env(EnvVar),
    Envs(Vec<EnvVar>),
    Mount(VolumeMount),
    Mounts(Vec<VolumeMount>),
    Volume(TokenVolume),
    Volumes(Vec<TokenVolume>),
    /// Anything else (labels, the sidecar container).
    Json(Value),
}

impl From<Value> for PatchValue {
    fn from(v: Value) -> Self {
        PatchValue::Json(v)
    }
}

/// A container's environment variable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvVar {
    pub name: &'static str,
    pub value: String,
}

/// A container's read-only mount of a volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub read_only: bool,
    pub mount_path: String,
}

/// A projected ServiceAccount token volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenVolume {
    pub name: String,
    pub projected: Projected,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Projected {
    pub sources: [ProjectedSource; 1],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectedSource {
    pub service_account_token: ServiceAccountToken,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountToken {
    pub audience: String,
    pub expiration_seconds: i64,
    pub path: String,
}

/// The patch as it is built, with its serialized size kept under a bound.
pub struct Ops {
    ops: Vec<PatchOp>,
    bytes: usize,
    limit: usize,
}

impl Ops {
    pub fn new(limit: usize) -> Self {
        Ops {
            ops: Vec::new(),
            // "[", then each op with the "," or "]" after it: exactly what
            // serde_json writes for the list.
            bytes: 1,
            limit,
        }
    }

    pub fn into_ops(self) -> Vec<PatchOp> {
        self.ops
    }

    /// Adds `op`, unless the patch would then exceed the limit.
    pub fn push(&mut self, op: PatchOp) -> Result<()> {
        let mut counter = ByteCounter(0);
        // Serializing into a counter allocates nothing.
        let _ = serde_json::to_writer(&mut counter, &op);
        self.bytes += counter.0 + 1;
        if self.bytes > self.limit {
            return Err(Error::PatchTooLarge { limit: self.limit });
        }
        self.ops.push(op);
        Ok(())
    }
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Escapes one reference token of a JSON Pointer (RFC 6901): `~` becomes `~0`
/// and `/` becomes `~1`.
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_per_rfc6901() {
        assert_eq!(
            escape_token("eks.amazonaws.com/pod-identity"),
            "eks.amazonaws.com~1pod-identity"
        );
        assert_eq!(escape_token("a~b/c"), "a~0b~1c");
        assert_eq!(escape_token("~1"), "~01");
        assert_eq!(escape_token("plain"), "plain");
    }

    #[test]
    fn typed_values_serialize_as_kubernetes_writes_them() {
        let volume = TokenVolume {
            name: "aws-iam-token".into(),
            projected: Projected {
                sources: [ProjectedSource {
                    service_account_token: ServiceAccountToken {
                        audience: "sts.amazonaws.com".into(),
                        expiration_seconds: 86400,
                        path: "token".into(),
                    },
                }],
            },
        };
        let mount = VolumeMount {
            name: "aws-iam-token".into(),
            read_only: true,
            mount_path: "/var/run/x".into(),
        };
        let env = EnvVar {
            name: "AWS_REGION",
            value: "eu-west-1".into(),
        };
        assert_eq!(
            serde_json::to_value(PatchValue::Volumes(vec![volume])).unwrap(),
            serde_json::json!([{"name": "aws-iam-token", "projected": {"sources": [
                {"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}}])
        );
        assert_eq!(
            serde_json::to_string(&PatchValue::Mount(mount)).unwrap(),
            r#"{"name":"aws-iam-token","readOnly":true,"mountPath":"/var/run/x"}"#
        );
        assert_eq!(
            serde_json::to_string(&PatchValue::Envs(vec![env])).unwrap(),
            r#"[{"name":"AWS_REGION","value":"eu-west-1"}]"#
        );
    }

    #[test]
    fn serializes_as_rfc6902() {
        let op = PatchOp::add("/spec/volumes/0", serde_json::json!({"name": "x"}));
        assert_eq!(
            serde_json::to_string(&op).unwrap(),
            r#"{"op":"add","path":"/spec/volumes/0","value":{"name":"x"}}"#
        );
    }
}
