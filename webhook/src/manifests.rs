//! Reading ServiceAccount and Pod manifests from files (for `mutate` and
//! `serve --service-accounts`).

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// A ServiceAccount as read from a manifest: only what the webhook uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountManifest {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub annotations: Vec<(String, String)>,
}

fn invalid(path: &Path, message: impl Into<String>) -> Error {
    Error::InvalidFile {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &Path) -> Result<String> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| Error::ReadFile {
                path: path.to_path_buf(),
                source,
            })?;
    } else {
        text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(text)
}

/// Parses every document of a (multi-document) YAML or JSON text. Empty
/// documents are skipped; `kind: List` documents are flattened.
pub fn parse_documents(path: &Path, text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc)
            .map_err(|e| invalid(path, format!("document {}: {e}", i + 1)))?;
        match value {
            Value::Null => {}
            Value::Object(ref m)
                if m.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List")) =>
            {
                match m.get("items") {
                    Some(Value::Array(items)) => out.extend(items.iter().cloned()),
                    Some(Value::Null) | None => {}
                    Some(_) => {
                        return Err(invalid(
                            path,
                            format!("document {}: items must be a list", i + 1),
                        ))
                    }
                }
            }
            v => out.push(v),
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct SaDoc {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<MetaDoc>,
    #[serde(default)]
    items: Option<Vec<SaDoc>>,
}

#[derive(Deserialize)]
struct MetaDoc {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    annotations: Option<std::collections::BTreeMap<String, Value>>,
}

/// Reads ServiceAccounts from a file. Every document must be a ServiceAccount
/// (or a List of them) with a name; a missing namespace means `default`.
/// Parsed straight into small typed structs, so a file of 50,000
/// ServiceAccounts does not inflate the process.
pub fn load_service_accounts(path: &Path) -> Result<Vec<ServiceAccountManifest>> {
    let text = read_input(path)?;
    let mut docs: Vec<SaDoc> = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        for (i, doc) in serde_json::Deserializer::from_str(&text)
            .into_iter::<SaDoc>()
            .enumerate()
        {
            docs.push(doc.map_err(|e| invalid(path, format!("document {}: {e}", i + 1)))?);
        }
    } else {
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let d: Option<SaDoc> = Option::deserialize(doc)
                .map_err(|e| invalid(path, format!("document {}: {e}", i + 1)))?;
            docs.extend(d);
        }
    }
    drop(text);
    let mut out = Vec::new();
    let mut n = 0;
    for doc in docs {
        let kind = doc.kind.as_deref().unwrap_or("");
        if kind.ends_with("List") {
            for item in doc.items.into_iter().flatten() {
                n += 1;
                out.push(service_account(path, n, item)?);
            }
        } else {
            n += 1;
            out.push(service_account(path, n, doc)?);
        }
    }
    out.shrink_to_fit();
    Ok(out)
}

fn service_account(path: &Path, n: usize, doc: SaDoc) -> Result<ServiceAccountManifest> {
    let kind = doc.kind.as_deref().unwrap_or("");
    if kind != "ServiceAccount" {
        return Err(invalid(
            path,
            format!("object {n}: kind is {kind:?}, expected ServiceAccount"),
        ));
    }
    let meta = doc
        .metadata
        .ok_or_else(|| invalid(path, format!("object {n}: metadata is missing")))?;
    let name = meta
        .name
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(path, format!("object {n}: metadata.name is missing")))?;
    let mut annotations = Vec::new();
    for (k, v) in meta.annotations.into_iter().flatten() {
        let Value::String(v) = v else {
            return Err(invalid(
                path,
                format!("object {n}: annotation {k:?} must be a string"),
            ));
        };
        annotations.push((k, v));
    }
    Ok(ServiceAccountManifest {
        namespace: meta.namespace.unwrap_or_else(|| "default".to_string()),
        name,
        uid: meta.uid.unwrap_or_default(),
        annotations,
    })
}

/// Reads one Pod manifest.
pub fn load_pod(path: &Path) -> Result<Value> {
    let text = read_input(path)?;
    let mut docs = parse_documents(path, &text)?;
    if docs.len() != 1 {
        return Err(invalid(
            path,
            format!("expected exactly one Pod, found {} objects", docs.len()),
        ));
    }
    let pod = docs.remove(0);
    let kind = pod.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "Pod" {
        return Err(invalid(path, format!("kind is {kind:?}, expected Pod")));
    }
    Ok(pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_json_and_lists() {
        let p = Path::new("sa.yaml");
        let text = r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: a
  namespace: ns1
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/a
---
---
{"apiVersion": "v1", "kind": "List", "items": [{"kind": "ServiceAccount", "metadata": {"name": "b"}}]}
"#;
        let sas = load_from_text(p, text).unwrap();
        assert_eq!(sas.len(), 2);
        assert_eq!(sas[0].namespace, "ns1");
        assert_eq!(sas[0].annotations.len(), 1);
        assert_eq!(sas[1].namespace, "default");
        assert_eq!(sas[1].name, "b");
    }

    fn load_from_text(p: &Path, text: &str) -> Result<Vec<ServiceAccountManifest>> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(p);
        std::fs::write(&f, text).unwrap();
        load_service_accounts(&f)
    }

    #[test]
    fn bad_manifests_have_clear_errors() {
        let p = Path::new("sa.yaml");
        let cases = [
            (
                "kind: Pod\nmetadata: {name: a}\n",
                "expected ServiceAccount",
            ),
            ("kind: ServiceAccount\n", "metadata is missing"),
            (
                "kind: ServiceAccount\nmetadata: {namespace: x}\n",
                "metadata.name is missing",
            ),
            (
                "kind: ServiceAccount\nmetadata: {name: a, annotations: {x: 1}}\n",
                "must be a string",
            ),
            ("kind: [unclosed\n", "document 1"),
        ];
        for (text, want) in cases {
            let err = load_from_text(p, text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.contains("sa.yaml"), "{err}");
        }
        let missing = load_service_accounts(Path::new("/nonexistent/sa.yaml")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/sa.yaml"));
    }
}
