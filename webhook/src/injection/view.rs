//! The parts of a Pod the webhook reads, decoded straight from the review's
//! JSON into borrowed, typed fields; everything else is skipped without being
//! built. Memory per review is then proportional to what is read (names,
//! annotations), never a `serde_json::Value` of the whole object, and an
//! object that is not shaped like a Pod fails fast.

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

contract::message_error! {
    /// A Pod the webhook cannot read; the message names the field at fault.
    PodError
}

/// A JSON object of strings, in document order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StrPairs<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> StrPairs<'a> {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for StrPairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = StrPairs<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(0).min(64));
                while let Some((k, v)) = m.next_entry::<Str<'a>, Str<'a>>()? {
                    out.push((k.0, v.0));
                }
                Ok(StrPairs(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A string borrowed from the input when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PodView<'a> {
    #[serde(borrow, default)]
    pub metadata: Option<MetadataView<'a>>,
    #[serde(borrow, default)]
    pub spec: Option<SpecView<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataView<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub generate_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub annotations: Option<StrPairs<'a>>,
    #[serde(borrow, default)]
    pub labels: Option<StrPairs<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecView<'a> {
    #[serde(borrow, default)]
    pub containers: Option<Vec<ContainerView<'a>>>,
    #[serde(borrow, default)]
    pub init_containers: Option<Vec<ContainerView<'a>>>,
    #[serde(borrow, default)]
    pub volumes: Option<Vec<Named<'a>>>,
    #[serde(borrow, default)]
    pub node_selector: Option<StrPairs<'a>>,
    #[serde(default)]
    pub host_network: Option<bool>,
    #[serde(borrow, default)]
    pub service_account_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub service_account: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub env: Option<Vec<Named<'a>>>,
    #[serde(borrow, default)]
    pub volume_mounts: Option<Vec<Named<'a>>>,
}

/// An item of a list of objects with a `name`.
#[derive(Debug, Default, Deserialize)]
pub struct Named<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
}

fn describe<E: fmt::Display>(e: serde_path_to_error::Error<E>) -> String {
    let path = e.path().to_string();
    if path == "." {
        e.inner().to_string()
    } else {
        format!("{path}: {}", e.inner())
    }
}

impl<'a> PodView<'a> {
    /// Decodes a Pod's JSON text. An error names the field at fault
    /// (`spec.containers: invalid type: string, expected a sequence`).
    pub fn from_json(json: &'a str) -> Result<Self, PodError> {
        let mut de = serde_json::Deserializer::from_str(json);
        let pod = serde_path_to_error::deserialize(&mut de).map_err(describe)?;
        de.end().map_err(|e| e.to_string())?;
        Ok(pod)
    }

    /// Decodes an already parsed Pod (the dry run and tests).
    pub fn from_value(v: &'a serde_json::Value) -> Result<Self, PodError> {
        if !v.is_object() {
            return Err("a Pod must be a JSON object".into());
        }
        Ok(serde_path_to_error::deserialize(v).map_err(describe)?)
    }

    /// The pod's ServiceAccount (`default` when it names none).
    pub fn service_account(&self) -> &str {
        let spec = self.spec.as_ref();
        spec.and_then(|s| s.service_account_name.as_deref())
            .filter(|s| !s.is_empty())
            .or_else(|| {
                spec.and_then(|s| s.service_account.as_deref())
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or("default")
    }

    pub fn name(&self) -> &str {
        let m = self.metadata.as_ref();
        m.and_then(|m| m.name.as_deref())
            .filter(|s| !s.is_empty())
            .or_else(|| m.and_then(|m| m.generate_name.as_deref()))
            .unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.metadata
            .as_ref()
            .and_then(|m| m.namespace.as_deref())
            .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_webhook_needs_and_borrows_it() {
        let json = r#"{"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":"p","annotations":{"b":"2","a":"1"},"labels":{},"managedFields":[{"x":[1,2,3]}]},
            "spec":{"serviceAccountName":"app","hostNetwork":true,"nodeSelector":{"kubernetes.io/os":"linux"},
              "containers":[{"name":"c","image":"i","env":[{"name":"A","valueFrom":{"x":1}}],"volumeMounts":null}],
              "volumes":[{"name":"v","emptyDir":{}}],"unknown":{"deep":[{}]}}}"#;
        let pod = PodView::from_json(json).unwrap();
        assert_eq!(pod.service_account(), "app");
        assert_eq!(pod.name(), "p");
        let m = pod.metadata.as_ref().unwrap();
        let ann: Vec<_> = m.annotations.as_ref().unwrap().iter().collect();
        assert_eq!(ann, [("b", "2"), ("a", "1")], "document order");
        assert!(matches!(
            m.annotations.as_ref().unwrap().0[0].0,
            Cow::Borrowed(_)
        ));
        assert_eq!(m.labels, Some(StrPairs::default()));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.host_network, Some(true));
        let c = &spec.containers.as_ref().unwrap()[0];
        assert_eq!(c.name.as_deref(), Some("c"));
        assert_eq!(c.env.as_ref().unwrap()[0].name.as_deref(), Some("A"));
        assert!(c.volume_mounts.is_none());
    }

    #[test]
    fn what_is_not_a_pod_fails_fast() {
        for bad in [
            "[1,2,3]",
            r#"{"metadata":"x"}"#,
            r#"{"metadata":{"annotations":{"a":1}}}"#,
            r#"{"spec":{"containers":{}}}"#,
            r#"{"spec":{"containers":[1]}}"#,
            r#"{"spec":{"hostNetwork":"yes"}}"#,
        ] {
            assert!(PodView::from_json(bad).is_err(), "{bad}");
        }
        let escaped =
            PodView::from_json(r#"{"metadata":{"annotations":{"a\"b":"c\u00e9"}}}"#).unwrap();
        let ann = escaped.metadata.unwrap().annotations.unwrap();
        assert_eq!(ann.iter().collect::<Vec<_>>(), [("a\"b", "c\u{e9}")]);
        assert_eq!(
            PodView::from_json("{}").unwrap().service_account(),
            "default"
        );
    }
}
