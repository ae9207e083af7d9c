//! IAM policy documents, pure: the trust policy this tool writes and edits
//! ([`trust`]), and the evaluation of the conditions it writes
//! ([`evaluate`]), which the tests and `doctor` use because no local STS
//! (moto included) evaluates trust policies.

pub mod evaluate;

contract::message_error! {
    /// A policy document that is neither JSON nor URL-encoded JSON.
    DocumentError
}
pub mod broker_trust;
pub mod trust;

/// The audience of tokens exchanged with STS, and the client id of the IAM
/// OIDC provider.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// The action a web-identity trust statement allows.
pub const ASSUME_WEB_IDENTITY: &str = "sts:AssumeRoleWithWebIdentity";

/// `https://host/path` -> `host/path`: the form IAM uses in OIDC provider
/// ARNs and in condition keys.
pub fn issuer_host_path(issuer: &str) -> &str {
    let s = issuer.strip_prefix("https://").unwrap_or(issuer);
    s.trim_end_matches('/')
}

/// The ARN IAM gives the OIDC provider of `issuer` in an account.
pub fn provider_arn_for(partition: &str, account: &str, issuer: &str) -> String {
    format!(
        "arn:{partition}:iam::{account}:oidc-provider/{}",
        issuer_host_path(issuer)
    )
}

/// The `sub` of a ServiceAccount's tokens.
pub fn service_account_subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Decodes a policy document as IAM returns it (URL-encoded JSON) or as
/// written (plain JSON).
pub fn parse_document(text: &str) -> Result<serde_json::Value, DocumentError> {
    let trimmed = text.trim_start();
    let decoded;
    let json = if trimmed.starts_with('{') {
        trimmed
    } else {
        decoded = percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map_err(|e| format!("policy document is not UTF-8 after URL-decoding: {e}"))?;
        &decoded
    };
    serde_json::from_str(json)
        .map_err(|e| DocumentError(format!("policy document is not JSON: {e}")))
}

/// A value that IAM lets be one string or a list of strings.
pub fn string_or_list(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}
