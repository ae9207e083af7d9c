//! Input the CLI reads from files, from IAM and from S3, malformed on
//! purpose: every function answers with a value or an error, never a panic,
//! and what it does answer keeps its promises.
//!
//! Inputs: eksctl ClusterConfig files (`apply -f`), PEM public keys
//! (`oidc publish --signing-key-pub`), `--tags`, trust policies as IAM returns
//! them (edited by hand, so any JSON), and a published JWKS read back from S3.

use pod_identity::iamsa::config_file::parse_cluster_config;
use pod_identity::iamsa::spec::parse_tags;
use pod_identity::oidc::discovery::{keys_of, merge};
use pod_identity::oidc::keys::jwks_from_pem;
use pod_identity::policy::evaluate::{evaluate, Request};
use pod_identity::policy::parse_document;
use pod_identity::policy::trust::{self, Binding};
use serde_json::{json, Value};

const CONFIG: &str = r#"apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata:
  name: prod
  region: eu-west-1
iam:
  withOIDC: true
  serviceAccounts:
  - metadata:
      name: s3-reader
      namespace: team
    attachPolicyARNs: ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]
    roleName: s3-reader
    permissionsBoundary: "arn:aws:iam::123456789012:policy/boundary"
    tags: {Owner: "John Doe"}
  - metadata: {name: cache, namespace: team}
    roleOnly: true
    wellKnownPolicies: {autoScaler: true}
"#;

/// Every value kind, to put where another kind belongs.
fn odd_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1.5),
        json!(""),
        json!("x"),
        json!("*"),
        json!([]),
        json!([null, 1, "s"]),
        json!({}),
        json!({"": null}),
        json!({"StringEquals": "x"}),
    ]
}

/// `doc` with the value at each path in turn replaced by each odd value:
/// every place a wrong type can appear, one at a time.
fn type_confusions(doc: &Value) -> Vec<Value> {
    fn paths(v: &Value, here: Vec<Value>, out: &mut Vec<Vec<Value>>) {
        out.push(here.clone());
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let mut p = here.clone();
                    p.push(json!(k));
                    paths(c, p, out);
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    let mut p = here.clone();
                    p.push(json!(i));
                    paths(c, p, out);
                }
            }
            _ => {}
        }
    }
    let mut all = Vec::new();
    paths(doc, Vec::new(), &mut all);
    let mut out = Vec::new();
    for path in all {
        for odd in odd_values() {
            let mut d = doc.clone();
            let mut at = &mut d;
            for step in &path {
                at = match step {
                    Value::String(k) => &mut at[k.as_str()],
                    Value::Number(i) => &mut at[i.as_u64().unwrap() as usize],
                    _ => unreachable!(),
                };
            }
            *at = odd.clone();
            out.push(d);
        }
    }
    out
}

fn binding(sub: &str) -> Binding {
    Binding {
        provider_arn: "arn:aws:iam::123456789012:oidc-provider/oidc.example/c1".into(),
        issuer: "https://oidc.example/c1".into(),
        subject: format!("system:serviceaccount:team:{sub}"),
    }
}

#[test]
fn cluster_config_files_cut_or_retyped_are_errors_or_valid() {
    let good = parse_cluster_config(CONFIG).expect("the sample is valid");
    assert_eq!(good.specs.len(), 2);
    let mut errors = 0;
    // Every prefix of the file (a truncated download, a bad paste).
    for (i, _) in CONFIG.char_indices() {
        if parse_cluster_config(&CONFIG[..i]).is_err() {
            errors += 1;
        }
    }
    assert!(errors > CONFIG.len() / 2, "most prefixes are incomplete");
    // Every field given a value of the wrong kind.
    let doc: Value = serde_yaml::from_str(CONFIG).unwrap();
    for d in type_confusions(&doc) {
        let text = serde_yaml::to_string(&d).unwrap();
        if let Ok(c) = parse_cluster_config(&text) {
            for s in &c.specs {
                // What parsed is usable: a valid spec names its role.
                if s.validate().is_ok() {
                    assert!(!s.role_name(c.cluster.as_deref()).is_empty(), "{text}");
                }
            }
        }
    }
    // Not YAML at all.
    for junk in ["\u{0}\u{1}", "{{{{", "- - - -", "key: [unclosed", "\t\t:"] {
        assert!(parse_cluster_config(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn public_key_files_cut_or_flipped_are_errors_or_keys() {
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let pem = format!("{}{}", p256.public_key_pem(), p384.public_key_pem());
    let keys = jwks_from_pem(pem.as_bytes()).expect("two EC keys");
    assert_eq!(keys.len(), 2);
    let bytes = pem.as_bytes();
    for i in 0..bytes.len() {
        if let Ok(k) = jwks_from_pem(&bytes[..i]) {
            assert!(k.len() <= 2);
        }
        for flip in [0x01u8, 0x20, 0x80] {
            let mut b = bytes.to_vec();
            b[i] ^= flip;
            if let Ok(k) = jwks_from_pem(&b) {
                for key in k {
                    assert!(key["kid"].as_str().is_some_and(|s| !s.is_empty()), "{key}");
                }
            }
        }
    }
    // An Ed25519 key does not sign ServiceAccount tokens.
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    assert!(jwks_from_pem(ed.public_key_pem().as_bytes()).is_err());
    // The private half is refused, and not echoed back.
    let err = jwks_from_pem(p256.serialize_pem().as_bytes()).unwrap_err();
    assert!(!err.0.contains(&p256.serialize_pem()[30..60]), "{err}");
}

#[test]
fn tags_without_a_value_are_usage_errors() {
    assert_eq!(
        parse_tags("Owner=John Doe, Team=a=b").unwrap(),
        [
            ("Owner".to_string(), "John Doe".to_string()),
            ("Team".to_string(), "a=b".to_string())
        ]
    );
    for bad in ["Owner", "a=1,b", "=,=,x"] {
        assert!(parse_tags(bad).is_err(), "{bad}");
    }
    assert!(parse_tags(",, ,").unwrap().is_empty());
}

#[test]
fn trust_policies_of_any_shape_are_read_and_edited_without_panics() {
    let a = binding("a");
    let b = binding("b");
    let managed = trust::new_document(&a);
    let foreign = json!({
        "Version": "2012-10-17",
        "Statement": [
            managed["Statement"][0].clone(),
            {"Effect": "Deny", "Principal": "*", "Action": ["sts:*"],
             "Condition": {"StringLike": {"aws:PrincipalTag/x": ["a*", "b?"]},
                           "StringNotEqualsIfExists": {"oidc.example/c1:aud": "other"}}},
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    });
    let request =
        Request::web_identity(&a.provider_arn, &a.issuer, &a.subject, "sts.amazonaws.com");
    let mut seen = 0;
    for base in [&managed, &foreign] {
        for doc in type_confusions(base) {
            seen += 1;
            let _ = evaluate(&doc, &request);
            let _ = trust::all_subjects(&doc);
            let _ = trust::is_empty(&doc);
            if let Some(with_b) = trust::add(&doc, &b) {
                // What add promises: b is now trusted, and remove undoes it.
                assert!(trust::subjects(&with_b, &b).contains(&b.subject), "{doc}");
                let back = trust::remove(&with_b, &b).expect("b was added");
                assert!(!trust::subjects(&back, &b).contains(&b.subject), "{doc}");
            }
            let _ = trust::remove(&doc, &a);
            // IAM hands policies back URL-encoded.
            let text = doc.to_string();
            let _ = parse_document(&text);
            let _ = parse_document(&text[..text.len() / 2]);
        }
    }
    assert!(seen > 400, "{seen} documents");
    // The document as IAM stores it (URL-encoded) still parses.
    let encoded = percent_encode(&managed.to_string());
    assert_eq!(parse_document(&encoded).unwrap(), managed);
    for junk in ["", "%", "%zz", "%7B", "null", "[]", "\"s\""] {
        if let Ok(d) = parse_document(junk) {
            assert!(!evaluate(&d, &request).is_allowed(), "{junk:?}");
        }
    }
}

#[test]
fn a_published_jwks_of_any_shape_merges_or_is_an_error() {
    let key = |kid: &str| json!({"kty": "RSA", "kid": kid, "n": "AQAB", "e": "AQAB"});
    let good = json!({"keys": [key("a"), key("b")]});
    assert_eq!(keys_of(&good).unwrap().len(), 2);
    for doc in type_confusions(&good) {
        if let Ok(published) = keys_of(&doc) {
            for prune in [false, true] {
                let (merged, _) = merge(&published, &[key("c")], prune);
                let kids: Vec<&str> = merged["keys"]
                    .as_array()
                    .expect("keys")
                    .iter()
                    .filter_map(|k| k["kid"].as_str())
                    .collect();
                // The current key is always published.
                assert!(kids.contains(&"c"), "{doc} -> {merged}");
            }
        }
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
