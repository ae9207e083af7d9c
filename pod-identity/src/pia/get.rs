//! `podidentityassociation get`: every association object as a row (its
//! ServiceAccount, role, target, and the Ready condition and id the broker
//! wrote), as a table or JSON/YAML.

use serde::Serialize;
use serde_json::Value;

/// One row of `get`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    pub target_role_arn: Option<String>,
    /// The Ready condition's status the broker wrote (`True`, `False`), or
    /// empty before a broker has seen it.
    pub ready: String,
    pub reason: String,
    pub association_id: String,
}

pub fn rows(objects: &[kube::api::DynamicObject]) -> Vec<Row> {
    let mut out: Vec<Row> = objects
        .iter()
        .map(|o| {
            let s = |p: &str| {
                o.data
                    .pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let ready = o
                .data
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
            let field = |k: &str| {
                ready
                    .and_then(|c| c.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            Row {
                name: o.metadata.name.clone().unwrap_or_default(),
                namespace: s("/spec/namespace"),
                service_account: s("/spec/serviceAccount"),
                role_arn: s("/spec/roleArn"),
                target_role_arn: Some(s("/spec/targetRoleArn")).filter(|t| !t.is_empty()),
                ready: field("status"),
                reason: field("reason"),
                association_id: s("/status/associationId"),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.namespace, &a.service_account, &a.name).cmp(&(
            &b.namespace,
            &b.service_account,
            &b.name,
        ))
    });
    out
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "NAMESPACE\tSERVICE ACCOUNT\tROLE\tTARGET ROLE\tREADY\tASSOCIATION ID\tNAME\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            r.namespace,
            r.service_account,
            r.role_arn,
            r.target_role_arn.as_deref().unwrap_or("-"),
            if r.ready.is_empty() { "-" } else { &r.ready },
            if r.association_id.is_empty() {
                "-"
            } else {
                &r.association_id
            },
            r.name
        ));
    }
    out
}
