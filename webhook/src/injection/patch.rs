//! JSON Patch (RFC 6902) operations with RFC 6901 pointer escaping.

use serde::Serialize;
use serde_json::Value;

/// One JSON Patch operation. The webhook only ever adds: a single env var, a
/// single volume mount, a single volume or a single label, never a whole
/// container, so fields this program does not know are never lost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchOp {
    pub op: &'static str,
    pub path: String,
    pub value: Value,
}

impl PatchOp {
    pub fn add(path: impl Into<String>, value: Value) -> Self {
        PatchOp {
            op: "add",
            path: path.into(),
            value,
        }
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
    fn serializes_as_rfc6902() {
        let op = PatchOp::add("/spec/volumes/0", serde_json::json!({"name": "x"}));
        assert_eq!(
            serde_json::to_string(&op).unwrap(),
            r#"{"op":"add","path":"/spec/volumes/0","value":{"name":"x"}}"#
        );
    }
}
