//! Reading ServiceAccount and Pod manifests from files (for `mutate` and
//! `serve --service-accounts`).

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

contract::message_error! {
    /// A document of a ServiceAccounts file that is not a ServiceAccount.
    ManifestError
}

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

/// Annotations read straight into a vector (no map nodes), each value checked
/// to be a string.
struct Annotations(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Annotations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Annotations;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_unit<E>(self) -> std::result::Result<Annotations, E> {
                Ok(Annotations(Vec::new()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Annotations, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    let Value::String(v) = v else {
                        return Err(serde::de::Error::custom(format!(
                            "annotation {k:?} must be a string"
                        )));
                    };
                    out.push((k, v));
                }
                Ok(Annotations(out))
            }
        }
        d.deserialize_any(V)
    }
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
    annotations: Option<Annotations>,
}

type Sink<'a> = dyn FnMut(ServiceAccountManifest) + 'a;

/// Deserializes one document: a ServiceAccount, or a List whose items are
/// handed to the sink one at a time as they are parsed.
struct DocSeed<'a, 'b> {
    sink: &'a mut Sink<'b>,
    count: &'a mut usize,
}

fn to_manifest(
    kind: Option<&str>,
    meta: Option<MetaDoc>,
    n: usize,
) -> std::result::Result<ServiceAccountManifest, ManifestError> {
    let kind = kind.unwrap_or("");
    if kind != "ServiceAccount" {
        return Err(format!("object {n}: kind is {kind:?}, expected ServiceAccount").into());
    }
    let meta = meta.ok_or_else(|| format!("object {n}: metadata is missing"))?;
    let name = meta
        .name
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("object {n}: metadata.name is missing"))?;
    Ok(ServiceAccountManifest {
        namespace: meta.namespace.unwrap_or_else(|| "default".to_string()),
        name,
        uid: meta.uid.unwrap_or_default(),
        annotations: meta.annotations.map(|a| a.0).unwrap_or_default(),
    })
}

/// One List item: a ServiceAccount.
#[derive(Deserialize)]
struct ItemDoc {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<MetaDoc>,
}

struct ItemsSeed<'a, 'b> {
    sink: &'a mut Sink<'b>,
    count: &'a mut usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for ItemsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ItemsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of ServiceAccounts")
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<(), A::Error> {
        while let Some(item) = seq.next_element::<ItemDoc>()? {
            *self.count += 1;
            let m = to_manifest(item.kind.as_deref(), item.metadata, *self.count)
                .map_err(serde::de::Error::custom)?;
            (self.sink)(m);
        }
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for DocSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DocSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a ServiceAccount or a List of them")
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<(), A::Error> {
        let (mut kind, mut meta, mut had_items) = (None::<String>, None::<MetaDoc>, false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "kind" => kind = map.next_value()?,
                "metadata" => meta = map.next_value()?,
                "items" => {
                    had_items = true;
                    map.next_value_seed(ItemsSeed {
                        sink: &mut *self.sink,
                        count: &mut *self.count,
                    })?;
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let is_list = kind.as_deref().is_some_and(|k| k.ends_with("List"));
        if had_items && (is_list || kind.is_none()) {
            return Ok(());
        }
        *self.count += 1;
        let m =
            to_manifest(kind.as_deref(), meta, *self.count).map_err(serde::de::Error::custom)?;
        (self.sink)(m);
        Ok(())
    }
}

/// Reads ServiceAccounts from a file (multi-document YAML, JSON, or Lists) and
/// hands each to `sink` as soon as it is parsed, so a file of 50,000
/// ServiceAccounts is never held in memory as a whole. Every object must be a
/// ServiceAccount with a name; a missing namespace means `default`.
pub fn for_each_service_account(path: &Path, sink: &mut Sink<'_>) -> Result<()> {
    use serde::de::DeserializeSeed as _;
    let text = read_input(path)?;
    let mut count = 0usize;
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut de = serde_json::Deserializer::from_str(&text);
        let mut i = 0;
        loop {
            i += 1;
            let seed = DocSeed {
                sink: &mut *sink,
                count: &mut count,
            };
            seed.deserialize(&mut de)
                .map_err(|e| invalid(path, format!("document {i}: {e}")))?;
            // Further concatenated JSON documents, if any.
            if de.end().is_ok() {
                break;
            }
        }
    } else {
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let seed = DocSeed {
                sink: &mut *sink,
                count: &mut count,
            };
            seed.deserialize(doc)
                .map_err(|e| invalid(path, format!("document {}: {e}", i + 1)))?;
        }
    }
    Ok(())
}

/// Reads all ServiceAccounts of a file into a vector (see
/// [`for_each_service_account`]).
pub fn load_service_accounts(path: &Path) -> Result<Vec<ServiceAccountManifest>> {
    let mut out = Vec::new();
    for_each_service_account(path, &mut |m| out.push(m))?;
    Ok(out)
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
    fn concatenated_json_documents_and_large_lists_stream() {
        let p = Path::new("sa.json");
        let items: Vec<String> = (0..1000)
            .map(|i| format!(r#"{{"kind":"ServiceAccount","metadata":{{"name":"sa-{i}","namespace":"n{}"}}}}"#, i % 7))
            .collect();
        let text = format!(
            r#"{{"kind":"ServiceAccount","metadata":{{"name":"first","annotations":{{"a":"b"}}}}}}
{{"apiVersion":"v1","items":[{}],"kind":"ServiceAccountList"}}"#,
            items.join(",")
        );
        let sas = load_from_text(p, &text).unwrap();
        assert_eq!(sas.len(), 1001);
        assert_eq!(sas[0].annotations, vec![("a".to_string(), "b".to_string())]);
        assert_eq!(sas[1000].name, "sa-999");
        assert_eq!(sas[1000].namespace, "n5");
        let err = load_from_text(p, r#"{"kind":"List","items":[{"kind":"ServiceAccount","metadata":{"name":"a"}},{"kind":"Pod","metadata":{"name":"b"}}]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("object 2") && err.contains("expected ServiceAccount"),
            "{err}"
        );
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
