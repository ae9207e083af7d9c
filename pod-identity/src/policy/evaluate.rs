//! Evaluates a trust policy for one `sts:AssumeRoleWithWebIdentity` request,
//! the way IAM does for the parts this project writes and users commonly
//! add: Effect Allow/Deny (an explicit Deny wins), `Principal.Federated`,
//! `Action` (with `*` wildcards), and conditions with the operators
//! StringEquals, StringNotEquals, StringEqualsIgnoreCase,
//! StringNotEqualsIgnoreCase, StringLike, StringNotLike (each also with
//! `IfExists`). A condition with any other operator (or a statement of any
//! other shape) is not understood: in an Allow it counts as not matching,
//! and a Deny that might apply makes the answer [`Decision::Unknown`], so
//! the evaluator never claims a role can be assumed when it cannot tell.

use std::collections::BTreeMap;

use serde_json::Value;

use super::string_or_list;

/// One AssumeRoleWithWebIdentity request, as IAM sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub provider_arn: String,
    pub action: String,
    /// Condition keys (`<host/path>:sub`, `<host/path>:aud`, ...) and values.
    pub context: BTreeMap<String, String>,
}

impl Request {
    /// The request a token with this `sub` and `aud` makes for the issuer.
    pub fn web_identity(provider_arn: &str, issuer: &str, sub: &str, aud: &str) -> Request {
        let host = super::issuer_host_path(issuer);
        Request {
            provider_arn: provider_arn.into(),
            action: super::ASSUME_WEB_IDENTITY.into(),
            context: BTreeMap::from([
                (format!("{host}:sub"), sub.into()),
                (format!("{host}:aud"), aud.into()),
            ]),
        }
    }
}

/// The outcome, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Statement `index` allows it and no statement denies it.
    Allowed { statement: usize },
    /// Statement `index` denies it explicitly.
    Denied { statement: usize },
    /// No statement allows it; one reason per statement.
    NotAllowed { reasons: Vec<String> },
    /// Statement `allow` allows it, but Deny statement `deny` has a part this
    /// evaluator does not understand, so whether IAM denies it is unknown.
    Unknown {
        allow: usize,
        deny: usize,
        reason: String,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

/// Evaluates `policy` (a parsed trust policy document) for `req`.
pub fn evaluate(policy: &Value, req: &Request) -> Decision {
    let statements: Vec<&Value> = match policy.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    };
    let mut allowed = None;
    let mut unreadable_deny = None;
    let mut reasons = Vec::new();
    for (i, s) in statements.iter().enumerate() {
        let effect = s.get("Effect").and_then(Value::as_str);
        match applies(s, req) {
            Ok(()) => match effect {
                Some("Deny") => return Decision::Denied { statement: i },
                Some("Allow") => {
                    allowed.get_or_insert(i);
                }
                other => reasons.push(format!("statement {i}: unknown Effect {other:?}")),
            },
            Err(Why::NotUnderstood(why)) if effect == Some("Deny") => {
                unreadable_deny.get_or_insert((i, why.clone()));
                reasons.push(format!("statement {i}: {why}"));
            }
            Err(Why::NoMatch(why) | Why::NotUnderstood(why)) => {
                reasons.push(format!("statement {i}: {why}"))
            }
        }
    }
    match (allowed, unreadable_deny) {
        (Some(allow), Some((deny, reason))) => Decision::Unknown {
            allow,
            deny,
            reason,
        },
        (Some(statement), None) => Decision::Allowed { statement },
        (None, _) => {
            if statements.is_empty() {
                reasons.push("the policy has no statement".into());
            }
            Decision::NotAllowed { reasons }
        }
    }
}

/// Why a statement does not apply: it does not match, or this evaluator
/// cannot tell.
enum Why {
    NoMatch(String),
    NotUnderstood(String),
}

/// Whether the statement matches the request (principal, action,
/// conditions), or why not.
fn applies(s: &Value, req: &Request) -> Result<(), Why> {
    if s.get("NotPrincipal").is_some() || s.get("NotAction").is_some() {
        return Err(Why::NotUnderstood(
            "NotPrincipal / NotAction are not understood by this evaluator".into(),
        ));
    }
    let federated = string_or_list(s.get("Principal").and_then(|p| p.get("Federated")));
    let any_principal = s.get("Principal").and_then(Value::as_str) == Some("*")
        || s.get("Principal")
            .and_then(|p| p.get("AWS"))
            .and_then(Value::as_str)
            == Some("*");
    if !any_principal && !federated.contains(&req.provider_arn) {
        return Err(Why::NoMatch(format!(
            "principal {federated:?} is not the OIDC provider {}",
            req.provider_arn
        )));
    }
    let actions = string_or_list(s.get("Action"));
    if !actions.iter().any(|a| like(a, &req.action, true)) {
        return Err(Why::NoMatch(format!(
            "action {actions:?} does not include {}",
            req.action
        )));
    }
    let Some(conditions) = s.get("Condition") else {
        return Ok(());
    };
    let Some(conditions) = conditions.as_object() else {
        return Err(Why::NotUnderstood("Condition is not an object".into()));
    };
    for (operator, clauses) in conditions {
        let Some(clauses) = clauses.as_object() else {
            return Err(Why::NotUnderstood(format!(
                "condition {operator} is not an object"
            )));
        };
        for (key, expected) in clauses {
            let expected = string_or_list(Some(expected));
            condition(
                operator,
                key,
                &expected,
                req.context.get(key).map(String::as_str),
            )?;
        }
    }
    Ok(())
}

fn condition(
    operator: &str,
    key: &str,
    expected: &[String],
    actual: Option<&str>,
) -> Result<(), Why> {
    let (base, if_exists) = match operator.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (operator, false),
    };
    let test: fn(&str, &str) -> bool = match base {
        "StringEquals" | "StringNotEquals" => |p, v| p == v,
        "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => |p, v| p.eq_ignore_ascii_case(v),
        "StringLike" | "StringNotLike" => |p, v| like(p, v, false),
        _ => {
            return Err(Why::NotUnderstood(format!(
                "condition operator {operator} is not understood by this evaluator"
            )))
        }
    };
    let negated = base.starts_with("StringNot");
    let Some(actual) = actual else {
        // An absent key: IfExists passes; negated operators pass as IAM's do.
        return if if_exists || negated {
            Ok(())
        } else {
            Err(Why::NoMatch(format!(
                "{operator}: the request has no {key}"
            )))
        };
    };
    let any = expected.iter().any(|p| test(p, actual));
    if any != negated {
        Ok(())
    } else {
        Err(Why::NoMatch(format!(
            "{operator}: {key} is {actual:?}, the condition wants {}{expected:?}",
            if negated { "none of " } else { "one of " }
        )))
    }
}

/// IAM's wildcard match: `*` any run, `?` one character (case-insensitive
/// for actions).
fn like(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let norm = |s: &str| {
        if ignore_case {
            s.to_ascii_lowercase()
        } else {
            s.to_string()
        }
    };
    let p: Vec<char> = norm(pattern).chars().collect();
    let v: Vec<char> = norm(value).chars().collect();
    // Iterative glob match with backtracking to the last star.
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROVIDER: &str = "arn:aws:iam::123456789012:oidc-provider/oidc.example/id";
    const ISSUER: &str = "https://oidc.example/id";

    fn req(sub: &str, aud: &str) -> Request {
        Request::web_identity(PROVIDER, ISSUER, sub, aud)
    }

    fn doc(effect: &str, operator: &str, sub: Value, aud: Value) -> Value {
        json!({"Statement": [{
            "Effect": effect,
            "Principal": {"Federated": PROVIDER},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {operator: {"oidc.example/id:sub": sub, "oidc.example/id:aud": aud}}
        }]})
    }

    #[test]
    fn table() {
        let app = "system:serviceaccount:ns:app";
        let other = "system:serviceaccount:ns:other";
        let sts = "sts.amazonaws.com";
        let cases: Vec<(&str, Value, Request, bool)> = vec![
            (
                "equals: own sub and aud",
                doc("Allow", "StringEquals", json!(app), json!(sts)),
                req(app, sts),
                true,
            ),
            (
                "equals: another sub",
                doc("Allow", "StringEquals", json!(app), json!(sts)),
                req(other, sts),
                false,
            ),
            (
                "equals: another aud",
                doc("Allow", "StringEquals", json!(app), json!(sts)),
                req(app, "other"),
                false,
            ),
            (
                "equals: list of subs",
                doc("Allow", "StringEquals", json!([other, app]), json!(sts)),
                req(app, sts),
                true,
            ),
            (
                "equals: case matters",
                doc(
                    "Allow",
                    "StringEquals",
                    json!(app.to_uppercase()),
                    json!(sts),
                ),
                req(app, sts),
                false,
            ),
            (
                "ignore case",
                doc(
                    "Allow",
                    "StringEqualsIgnoreCase",
                    json!(app.to_uppercase()),
                    json!(sts),
                ),
                req(app, sts),
                true,
            ),
            (
                "like: namespace wildcard",
                doc(
                    "Allow",
                    "StringLike",
                    json!("system:serviceaccount:ns:*"),
                    json!(sts),
                ),
                req(app, sts),
                true,
            ),
            (
                "like: other namespace",
                doc(
                    "Allow",
                    "StringLike",
                    json!("system:serviceaccount:prod:*"),
                    json!(sts),
                ),
                req(app, sts),
                false,
            ),
            (
                "like: question mark",
                doc(
                    "Allow",
                    "StringLike",
                    json!("system:serviceaccount:ns:ap?"),
                    json!("sts.*.com"),
                ),
                req(app, sts),
                true,
            ),
            (
                "like: no partial match",
                doc(
                    "Allow",
                    "StringLike",
                    json!("system:serviceaccount:ns:a"),
                    json!(sts),
                ),
                req(app, sts),
                false,
            ),
            (
                "deny wins",
                doc("Deny", "StringEquals", json!(app), json!(sts)),
                req(app, sts),
                false,
            ),
            (
                "not equals",
                doc("Allow", "StringNotEquals", json!(other), json!("x")),
                req(app, sts),
                true,
            ),
            (
                "not like excludes",
                doc("Allow", "StringNotLike", json!("*:app"), json!("x")),
                req(app, sts),
                false,
            ),
            (
                "unknown operator",
                doc("Allow", "ArnLike", json!(app), json!(sts)),
                req(app, sts),
                false,
            ),
        ];
        for (name, policy, request, want) in cases {
            assert_eq!(
                evaluate(&policy, &request).is_allowed(),
                want,
                "{name}: {:?}",
                evaluate(&policy, &request)
            );
        }
    }

    #[test]
    fn principal_action_and_missing_keys() {
        let app = "system:serviceaccount:ns:app";
        let mut p = doc(
            "Allow",
            "StringEquals",
            json!(app),
            json!("sts.amazonaws.com"),
        );
        p["Statement"][0]["Principal"]["Federated"] =
            json!("arn:aws:iam::123456789012:oidc-provider/other");
        let d = evaluate(&p, &req(app, "sts.amazonaws.com"));
        assert!(
            matches!(&d, Decision::NotAllowed { reasons } if reasons[0].contains("principal")),
            "{d:?}"
        );
        let mut p = doc(
            "Allow",
            "StringEquals",
            json!(app),
            json!("sts.amazonaws.com"),
        );
        p["Statement"][0]["Action"] = json!(["sts:AssumeRole*"]);
        assert!(evaluate(&p, &req(app, "sts.amazonaws.com")).is_allowed());
        p["Statement"][0]["Action"] = json!("sts:AssumeRole");
        assert!(!evaluate(&p, &req(app, "sts.amazonaws.com")).is_allowed());
        // A key the request lacks: StringEquals fails, IfExists passes.
        let missing = json!({"Statement": {"Effect": "Allow", "Principal": {"Federated": PROVIDER},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"oidc.example/id:amr": "x"}}}});
        assert!(!evaluate(&missing, &req(app, "sts.amazonaws.com")).is_allowed());
        let if_exists = json!({"Statement": {"Effect": "Allow", "Principal": {"Federated": PROVIDER},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEqualsIfExists": {"oidc.example/id:amr": "x"}}}});
        assert!(evaluate(&if_exists, &req(app, "sts.amazonaws.com")).is_allowed());
        assert!(!evaluate(&json!({}), &req(app, "x")).is_allowed());
    }

    #[test]
    fn a_deny_it_cannot_read_makes_the_answer_unknown() {
        let app = "system:serviceaccount:ns:app";
        let sts = "sts.amazonaws.com";
        let allow = doc("Allow", "StringEquals", json!(app), json!(sts))["Statement"][0].clone();
        let deny_with = |condition: Value| {
            json!({"Effect": "Deny", "Principal": {"Federated": PROVIDER},
                   "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition})
        };
        let unreadable = [
            deny_with(json!({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}})),
            deny_with(json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})),
            deny_with(json!("not an object")),
            json!({"Effect": "Deny", "NotPrincipal": {"Federated": "x"}, "Action": "*"}),
        ];
        for deny in unreadable {
            let policy = json!({"Statement": [allow.clone(), deny.clone()]});
            let d = evaluate(&policy, &req(app, sts));
            assert!(
                matches!(
                    d,
                    Decision::Unknown {
                        allow: 0,
                        deny: 1,
                        ..
                    }
                ),
                "{deny}: {d:?}"
            );
            assert!(!d.is_allowed());
        }
        // A Deny it reads and that does not match leaves the Allow alone; an
        // unreadable Allow is simply not an allow.
        let other_deny = deny_with(json!({"StringEquals": {"oidc.example/id:sub": "x"}}));
        let policy = json!({"Statement": [allow.clone(), other_deny]});
        assert_eq!(
            evaluate(&policy, &req(app, sts)),
            Decision::Allowed { statement: 0 }
        );
        let odd_allow = json!({"Statement": [{"Effect": "Allow", "Principal": {"Federated": PROVIDER},
            "Action": "sts:AssumeRoleWithWebIdentity", "Condition": {"DateGreaterThan": {"aws:CurrentTime": "x"}}}]});
        assert!(matches!(
            evaluate(&odd_allow, &req(app, sts)),
            Decision::NotAllowed { .. }
        ));
    }

    #[test]
    fn glob() {
        for (p, v, want) in [
            ("*", "", true),
            ("a*b", "axxb", true),
            ("a*b", "axxc", false),
            ("*a*", "bab", true),
            ("??", "abc", false),
            ("a**", "a", true),
        ] {
            assert_eq!(like(p, v, false), want, "{p} {v}");
        }
    }
}
