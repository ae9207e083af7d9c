//! Kubernetes label selectors, as the API server applies a webhook's
//! `namespaceSelector` and `objectSelector`: every `matchLabels` pair and
//! every `matchExpressions` requirement must hold; an absent selector
//! matches everything.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

contract::message_error! {
    /// The selector requirement labels do not meet.
    Mismatch
}

/// Whether `labels` satisfy `selector`, or the requirement that fails.
pub fn matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> Result<(), Mismatch> {
    let Some(s) = selector else {
        return Ok(());
    };
    for (k, v) in s.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Err(format!("matchLabels {k}={v}").into());
        }
    }
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default();
        let value = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !ok {
            return Err(format!("{} {} {:?}", e.key, e.operator, values).into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn table() {
        let labels: BTreeMap<String, String> = [
            ("kubernetes.io/metadata.name".to_string(), "app".to_string()),
            ("team".into(), "a".into()),
        ]
        .into();
        let sel = |exprs: Vec<LabelSelectorRequirement>, ml: &[(&str, &str)]| LabelSelector {
            match_expressions: Some(exprs),
            match_labels: Some(
                ml.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        };
        let cases = [
            (
                sel(
                    vec![req(
                        "kubernetes.io/metadata.name",
                        "NotIn",
                        &["kube-system"],
                    )],
                    &[],
                ),
                true,
            ),
            (
                sel(
                    vec![req("kubernetes.io/metadata.name", "NotIn", &["app"])],
                    &[],
                ),
                false,
            ),
            (sel(vec![req("team", "In", &["a", "b"])], &[]), true),
            (sel(vec![req("team", "In", &["b"])], &[]), false),
            (sel(vec![req("skip", "DoesNotExist", &[])], &[]), true),
            (
                sel(vec![req("team", "Exists", &[])], &[("team", "a")]),
                true,
            ),
            (sel(vec![], &[("team", "b")]), false),
            (sel(vec![req("team", "Bogus", &[])], &[]), false),
        ];
        for (i, (s, want)) in cases.iter().enumerate() {
            assert_eq!(matches(Some(s), &labels).is_ok(), *want, "case {i}");
        }
        assert!(matches(None, &labels).is_ok());
    }
}
