//! The trust policy of a role bound to ServiceAccounts: one statement per
//! cluster issuer (IAM OIDC provider) allowing `sts:AssumeRoleWithWebIdentity`
//! when `<issuer>:aud` is `sts.amazonaws.com` and `<issuer>:sub` is one of the
//! ServiceAccounts' subjects. Adding a ServiceAccount adds its subject to the
//! statement of its issuer (or a statement for a new issuer); removing it
//! removes the subject, then the statement once it has none. Statements this
//! tool did not write are kept as they are.

use serde_json::{json, Map, Value};

use super::{issuer_host_path, string_or_list, ASSUME_WEB_IDENTITY, STS_AUDIENCE};

/// A ServiceAccount's place in a trust policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// `arn:aws:iam::<account>:oidc-provider/<host/path>`.
    pub provider_arn: String,
    /// `https://host/path`.
    pub issuer: String,
    pub subject: String,
}

impl Binding {
    fn sub_key(&self) -> String {
        format!("{}:sub", issuer_host_path(&self.issuer))
    }
    fn aud_key(&self) -> String {
        format!("{}:aud", issuer_host_path(&self.issuer))
    }
}

/// A new trust policy with only this binding.
pub fn new_document(binding: &Binding) -> Value {
    json!({"Version": "2012-10-17", "Statement": [statement(binding, vec![binding.subject.clone()])]})
}

fn statement(b: &Binding, subjects: Vec<String>) -> Value {
    let sub = if subjects.len() == 1 {
        Value::String(subjects[0].clone())
    } else {
        Value::Array(subjects.into_iter().map(Value::String).collect())
    };
    let mut equals = Map::new();
    equals.insert(b.sub_key(), sub);
    equals.insert(b.aud_key(), Value::String(STS_AUDIENCE.into()));
    json!({
        "Effect": "Allow",
        "Principal": {"Federated": b.provider_arn},
        "Action": ASSUME_WEB_IDENTITY,
        "Condition": {"StringEquals": Value::Object(equals)},
    })
}

/// The index of the statement this tool manages for the binding's issuer:
/// Allow, this provider, the web-identity action, and a StringEquals
/// condition on exactly `aud` = sts.amazonaws.com and `sub`.
fn managed_statement(doc: &Value, b: &Binding) -> Option<usize> {
    let statements = doc.get("Statement")?.as_array()?;
    statements.iter().position(|s| {
        let cond = s.get("Condition").and_then(Value::as_object);
        let equals = cond
            .filter(|c| c.len() == 1)
            .and_then(|c| c.get("StringEquals"))
            .and_then(Value::as_object);
        s.get("Effect").and_then(Value::as_str) == Some("Allow")
            && string_or_list(s.get("Principal").and_then(|p| p.get("Federated")))
                == [b.provider_arn.clone()]
            && string_or_list(s.get("Action")) == [ASSUME_WEB_IDENTITY]
            && equals.is_some_and(|e| {
                e.len() == 2
                    && string_or_list(e.get(&b.aud_key())) == [STS_AUDIENCE]
                    && e.contains_key(&b.sub_key())
            })
    })
}

/// The subjects the managed statement of this binding's issuer allows.
pub fn subjects(doc: &Value, b: &Binding) -> Vec<String> {
    managed_statement(doc, b)
        .map(|i| string_or_list(doc["Statement"][i]["Condition"]["StringEquals"].get(b.sub_key())))
        .unwrap_or_default()
}

/// The document with the binding's subject added; `None` when it is
/// already there (nothing to change).
pub fn add(doc: &Value, b: &Binding) -> Option<Value> {
    let mut doc = normalized(doc);
    match managed_statement(&doc, b) {
        Some(i) => {
            let mut subs = subjects(&doc, b);
            if subs.contains(&b.subject) {
                return None;
            }
            subs.push(b.subject.clone());
            subs.sort();
            replace_statement(&mut doc, i, statement(b, subs));
        }
        None => doc["Statement"]
            .as_array_mut()
            .expect("normalized")
            .push(statement(b, vec![b.subject.clone()])),
    }
    Some(doc)
}

/// The document with the binding's subject removed (and its statement once
/// empty); `None` when the subject is not there.
pub fn remove(doc: &Value, b: &Binding) -> Option<Value> {
    let mut doc = normalized(doc);
    let i = managed_statement(&doc, b)?;
    let mut subs = subjects(&doc, b);
    let before = subs.len();
    subs.retain(|s| s != &b.subject);
    if subs.len() == before {
        return None;
    }
    if subs.is_empty() {
        doc["Statement"]
            .as_array_mut()
            .expect("normalized")
            .remove(i);
    } else {
        replace_statement(&mut doc, i, statement(b, subs));
    }
    Some(doc)
}

/// Replaces statement `i`, keeping its `Sid` (a user's or another tool's
/// name for it).
fn replace_statement(doc: &mut Value, i: usize, mut new: Value) {
    if let Some(sid) = doc["Statement"][i].get("Sid").cloned() {
        new["Sid"] = sid;
    }
    doc["Statement"][i] = new;
}

/// IAM's default quota for a role's trust policy, in characters.
pub const DEFAULT_MAX_LEN: usize = 2048;
/// The most the quota can be raised to.
pub const MAX_LEN: usize = 4096;

/// The length IAM counts against the trust-policy quota: the document's
/// characters without whitespace.
pub fn counted_len(doc: &Value) -> usize {
    doc.to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .count()
}

/// Whether any statement is left: a role with an empty trust policy is no
/// longer used by anyone.
pub fn is_empty(doc: &Value) -> bool {
    doc.get("Statement")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
}

/// Every ServiceAccount subject the document's managed statements allow,
/// with the issuer (`host/path`) of each.
pub fn all_subjects(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in doc
        .get("Statement")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(equals) = s
            .get("Condition")
            .and_then(|c| c.get("StringEquals"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (key, v) in equals {
            if let Some(issuer) = key.strip_suffix(":sub") {
                for sub in string_or_list(Some(v)) {
                    out.push((issuer.to_string(), sub));
                }
            }
        }
    }
    out
}

/// `Statement` as an array (IAM allows a single object), `Version` set.
fn normalized(doc: &Value) -> Value {
    let mut doc = if doc.is_object() {
        doc.clone()
    } else {
        json!({})
    };
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => Vec::new(),
    };
    doc["Statement"] = Value::Array(statements);
    if doc.get("Version").is_none() {
        doc["Version"] = json!("2012-10-17");
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(issuer: &str, sub: &str) -> Binding {
        Binding {
            provider_arn: format!(
                "arn:aws:iam::123456789012:oidc-provider/{}",
                issuer_host_path(issuer)
            ),
            issuer: issuer.into(),
            subject: sub.into(),
        }
    }

    const A: &str = "https://oidc.example/a";
    const B: &str = "https://oidc.example/b";

    #[test]
    fn table() {
        let a1 = binding(A, "system:serviceaccount:ns:one");
        let a2 = binding(A, "system:serviceaccount:ns:two");
        let b1 = binding(B, "system:serviceaccount:ns:one");
        let doc = new_document(&a1);
        assert_eq!(subjects(&doc, &a1), ["system:serviceaccount:ns:one"]);
        assert_eq!(
            doc["Statement"][0]["Condition"]["StringEquals"]["oidc.example/a:aud"],
            "sts.amazonaws.com"
        );
        // Adding again changes nothing.
        assert_eq!(add(&doc, &a1), None);
        // A second ServiceAccount of the same issuer joins the statement.
        let two = add(&doc, &a2).unwrap();
        assert_eq!(two["Statement"].as_array().unwrap().len(), 1);
        assert_eq!(subjects(&two, &a1).len(), 2);
        // A second cluster gets a statement of its own.
        let three = add(&two, &b1).unwrap();
        assert_eq!(three["Statement"].as_array().unwrap().len(), 2);
        assert_eq!(all_subjects(&three).len(), 3);
        // Removing goes back step by step.
        assert_eq!(remove(&three, &b1).unwrap(), two);
        let back = remove(&two, &a2).unwrap();
        assert_eq!(subjects(&back, &a1), ["system:serviceaccount:ns:one"]);
        assert_eq!(remove(&back, &a2), None);
        let empty = remove(&back, &a1).unwrap();
        assert!(is_empty(&empty));
    }

    #[test]
    fn foreign_statements_are_kept() {
        let a1 = binding(A, "system:serviceaccount:ns:one");
        let ec2 = json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"});
        // A single statement object (not a list) is accepted.
        let doc = json!({"Version": "2012-10-17", "Statement": ec2.clone()});
        let added = add(&doc, &a1).unwrap();
        assert_eq!(added["Statement"][0], ec2);
        let removed = remove(&added, &a1).unwrap();
        assert_eq!(removed["Statement"], json!([ec2]));
        assert!(!is_empty(&removed));
        // A statement with an extra condition is not ours: a new one is added.
        let mut custom = new_document(&a1);
        custom["Statement"][0]["Condition"]["StringLike"] = json!({"x": "y"});
        let added = add(&custom, &a1).unwrap();
        assert_eq!(added["Statement"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_managed_statement_keeps_its_sid() {
        let a1 = binding(A, "system:serviceaccount:ns:one");
        let a2 = binding(A, "system:serviceaccount:ns:two");
        let mut doc = new_document(&a1);
        doc["Statement"][0]["Sid"] = json!("AppReaders");
        let added = add(&doc, &a2).unwrap();
        assert_eq!(added["Statement"][0]["Sid"], "AppReaders");
        assert_eq!(subjects(&added, &a1).len(), 2);
        let removed = remove(&added, &a2).unwrap();
        assert_eq!(removed["Statement"][0]["Sid"], "AppReaders");
        assert_eq!(removed, doc);
    }

    #[test]
    fn url_encoded_documents_parse() {
        let doc = new_document(&binding(A, "system:serviceaccount:ns:one"));
        let encoded = percent_encoding::utf8_percent_encode(
            &doc.to_string(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        assert_eq!(super::super::parse_document(&encoded).unwrap(), doc);
        assert_eq!(super::super::parse_document(&doc.to_string()).unwrap(), doc);
        assert!(super::super::parse_document("%7Bnot").is_err());
    }
}
