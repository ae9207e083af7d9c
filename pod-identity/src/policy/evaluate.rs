//! Evaluates a trust policy for one STS request, the way IAM does for the
//! parts this project writes and users commonly add: Effect Allow/Deny (an
//! explicit Deny wins), `Principal` (`Federated` for
//! `sts:AssumeRoleWithWebIdentity`; `AWS` — the role ARN, its account's
//! root or id, `*` — and `Service` for `sts:AssumeRole` and
//! `sts:TagSession`, which IAM checks as two requests), `Action` (with `*`
//! wildcards), and conditions with the operators StringEquals,
//! StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase,
//! StringLike, StringNotLike, ArnEquals, ArnLike, ArnNotEquals, ArnNotLike
//! (each also with `IfExists`), over single-valued keys
//! (`aws:RequestTag/<key>`, `aws:PrincipalArn`, the token's `sub`/`aud`)
//! and, with `ForAllValues:` / `ForAnyValue:`, multi-valued ones
//! (`aws:TagKeys`). A condition with any other operator (or a statement of any
//! other shape) is not understood: in an Allow it counts as not matching,
//! and a Deny that might apply makes the answer [`Decision::Unknown`], so
//! the evaluator never claims a role can be assumed when it cannot tell.

use std::collections::BTreeMap;

use serde_json::Value;

use super::string_or_list;

/// Who makes the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A web identity of this IAM OIDC provider (ARN).
    Federated(String),
    /// A session of this IAM role (its role ARN, as trust policies name it).
    Aws(String),
    /// An AWS service principal, e.g. `pods.eks.amazonaws.com`.
    Service(String),
}

/// One STS request, as IAM sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub principal: Principal,
    pub action: String,
    /// Single-valued condition keys (`<host/path>:sub`,
    /// `aws:RequestTag/<key>`, `aws:PrincipalArn`, ...) and values.
    pub context: BTreeMap<String, String>,
    /// Multi-valued condition keys (`aws:TagKeys`).
    pub multi: BTreeMap<String, Vec<String>>,
}

impl Request {
    /// The request a token with this `sub` and `aud` makes for the issuer.
    pub fn web_identity(provider_arn: &str, issuer: &str, sub: &str, aud: &str) -> Request {
        let host = super::issuer_host_path(issuer);
        Request {
            principal: Principal::Federated(provider_arn.into()),
            action: super::ASSUME_WEB_IDENTITY.into(),
            context: BTreeMap::from([
                (format!("{host}:sub"), sub.into()),
                (format!("{host}:aud"), aud.into()),
            ]),
            multi: BTreeMap::new(),
        }
    }

    /// `action` (`sts:AssumeRole` or `sts:TagSession`) by a session of
    /// `caller_role_arn` asking for these session tags.
    pub fn with_session_tags(
        caller_role_arn: &str,
        action: &str,
        tags: &BTreeMap<String, String>,
    ) -> Request {
        let mut context: BTreeMap<String, String> = tags
            .iter()
            .map(|(k, v)| (format!("aws:RequestTag/{k}"), v.clone()))
            .collect();
        context.insert("aws:PrincipalArn".into(), caller_role_arn.into());
        Request {
            principal: Principal::Aws(caller_role_arn.into()),
            action: action.into(),
            context,
            multi: BTreeMap::from([("aws:TagKeys".into(), tags.keys().cloned().collect())]),
        }
    }
}

/// Whether a statement's `Principal` names the request's.
fn principal_matches(p: Option<&Value>, who: &Principal) -> Result<(), Why> {
    if p.and_then(Value::as_str) == Some("*") {
        return Ok(());
    }
    let field = |k: &str| string_or_list(p.and_then(|p| p.get(k)));
    let (kind, listed, ok) = match who {
        Principal::Federated(arn) => {
            let l = field("Federated");
            let ok = l.contains(arn);
            ("Federated", l, ok || field("AWS").iter().any(|a| a == "*"))
        }
        Principal::Service(name) => {
            let l = field("Service");
            let ok = l.contains(name);
            ("Service", l, ok)
        }
        Principal::Aws(role) => {
            // A role session is named by the role's ARN, or trusted through
            // its account (root ARN or bare id), or by `*`.
            let account = role.split(':').nth(4).unwrap_or_default();
            let partition = role.split(':').nth(1).unwrap_or("aws");
            let root = format!("arn:{partition}:iam::{account}:root");
            let l = field("AWS");
            let ok = l
                .iter()
                .any(|a| a == "*" || a == role || *a == root || a == account);
            ("AWS", l, ok)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Why::NoMatch(format!(
            "principal {kind} {listed:?} does not name {who:?}"
        )))
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

/// Which kind of policy: a trust (resource) policy names principals; an
/// identity policy names resources (the request's `resource` context key).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Trust,
    Identity,
}

/// Evaluates `policy` (a parsed trust policy document) for `req`.
pub fn evaluate(policy: &Value, req: &Request) -> Decision {
    evaluate_kind(policy, req, Kind::Trust)
}

/// Evaluates an identity policy (no `Principal`; `Resource` matched against
/// the request's `resource` context key, e.g. the role ARN of an
/// AssumeRole; the role's tags as `iam:ResourceTag/<key>`).
pub fn evaluate_identity(policy: &Value, req: &Request) -> Decision {
    evaluate_kind(policy, req, Kind::Identity)
}

fn evaluate_kind(policy: &Value, req: &Request, kind: Kind) -> Decision {
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
        match applies(s, req, kind) {
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
fn applies(s: &Value, req: &Request, kind: Kind) -> Result<(), Why> {
    if s.get("NotPrincipal").is_some()
        || s.get("NotAction").is_some()
        || s.get("NotResource").is_some()
    {
        return Err(Why::NotUnderstood(
            "NotPrincipal / NotAction / NotResource are not understood by this evaluator".into(),
        ));
    }
    match kind {
        Kind::Trust => principal_matches(s.get("Principal"), &req.principal)?,
        Kind::Identity => {
            let resources = string_or_list(s.get("Resource"));
            let target = req
                .context
                .get("resource")
                .map(String::as_str)
                .unwrap_or("");
            if !resources.iter().any(|r| like(r, target, false)) {
                return Err(Why::NoMatch(format!(
                    "resource {resources:?} does not include {target}"
                )));
            }
        }
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
            if let Some((set, op)) = operator.split_once(':') {
                multi_condition(set, op, key, &expected, req)?;
                continue;
            }
            if req.multi.contains_key(key) {
                return Err(Why::NotUnderstood(format!(
                    "{operator} on the multi-valued key {key} needs ForAllValues: or ForAnyValue:"
                )));
            }
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

/// `ForAllValues:<op>` (every value of the key matches; none at all
/// passes) and `ForAnyValue:<op>` (at least one does).
fn multi_condition(
    set: &str,
    op: &str,
    key: &str,
    expected: &[String],
    req: &Request,
) -> Result<(), Why> {
    let values: Vec<&str> = match (req.multi.get(key), req.context.get(key)) {
        (Some(v), _) => v.iter().map(String::as_str).collect(),
        (None, Some(v)) => vec![v.as_str()],
        (None, None) => Vec::new(),
    };
    let one = |v: &str| condition(op, key, expected, Some(v));
    match set {
        "ForAllValues" => {
            for v in &values {
                one(v)?;
            }
            Ok(())
        }
        "ForAnyValue" => {
            let mut last = Why::NoMatch(format!("{set}:{op}: the request has no {key}"));
            for v in &values {
                match one(v) {
                    Ok(()) => return Ok(()),
                    Err(e @ Why::NotUnderstood(_)) => return Err(e),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        _ => Err(Why::NotUnderstood(format!(
            "condition set operator {set} is not understood by this evaluator"
        ))),
    }
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
        "StringLike" | "StringNotLike" | "ArnLike" | "ArnNotLike" => |p, v| like(p, v, false),
        "ArnEquals" | "ArnNotEquals" => |p, v| p == v,
        _ => {
            return Err(Why::NotUnderstood(format!(
                "condition operator {operator} is not understood by this evaluator"
            )))
        }
    };
    let negated = base.starts_with("StringNot") || base.starts_with("ArnNot");
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
                doc("Allow", "NumericEquals", json!(app), json!(sts)),
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

    /// A trust policy for Pod Identity through this project's broker: its
    /// role may AssumeRole and TagSession only with the association's tags.
    fn broker_trust() -> Value {
        json!({"Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": BROKER},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {
                "aws:RequestTag/eks-cluster-name": "prod",
                "aws:RequestTag/kubernetes-namespace": "apps",
                "aws:RequestTag/kubernetes-service-account": "web"
            }}
        }]})
    }

    const BROKER: &str = "arn:aws:iam::123456789012:role/pod-identity-broker";

    fn tags(ns: &str, sa: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("eks-cluster-name".to_string(), "prod".to_string()),
            ("kubernetes-namespace".into(), ns.into()),
            ("kubernetes-service-account".into(), sa.into()),
            ("kubernetes-pod-name".into(), "web-7d9f".into()),
            ("kubernetes-pod-uid".into(), "0f3c".into()),
        ])
    }

    #[test]
    fn session_tag_table() {
        let other_role = "arn:aws:iam::123456789012:role/someone-else";
        let assume = "sts:AssumeRole";
        let tag = "sts:TagSession";
        let mut eks = broker_trust();
        eks["Statement"][0]["Principal"] = json!({"Service": "pods.eks.amazonaws.com"});
        let mut root = broker_trust();
        root["Statement"][0]["Principal"] = json!({"AWS": "arn:aws:iam::123456789012:root"});
        let mut only_assume = broker_trust();
        only_assume["Statement"][0]["Action"] = json!("sts:AssumeRole");
        let mut keys_limited = broker_trust();
        keys_limited["Statement"][0]["Condition"]["ForAllValues:StringEquals"] = json!({"aws:TagKeys": ["eks-cluster-name", "kubernetes-namespace", "kubernetes-service-account", "kubernetes-pod-name", "kubernetes-pod-uid"]});
        let mut any_team = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": BROKER},
            "Action": "sts:*", "Condition": {"ForAnyValue:StringLike": {"aws:TagKeys": "team*"}}}]});
        let mut principal_arn = broker_trust();
        principal_arn["Statement"][0]["Principal"] = json!({"AWS": "*"});
        principal_arn["Statement"][0]["Condition"]["ArnLike"] =
            json!({"aws:PrincipalArn": "arn:aws:iam::123456789012:role/pod-identity-*"});
        let mut plain_on_multi = broker_trust();
        plain_on_multi["Statement"][0]["Condition"]["StringEquals"]["aws:TagKeys"] = json!("x");
        let mut with_team = tags("apps", "web");
        with_team.insert("team-a".into(), "x".into());
        let with = Request::with_session_tags;
        let trust = broker_trust();
        let cases: Vec<(&str, &Value, Request, bool)> = vec![
            (
                "the association's tags",
                &trust,
                with(BROKER, assume, &tags("apps", "web")),
                true,
            ),
            (
                "TagSession too",
                &trust,
                with(BROKER, tag, &tags("apps", "web")),
                true,
            ),
            (
                "another namespace's tag",
                &trust,
                with(BROKER, assume, &tags("other", "web")),
                false,
            ),
            (
                "another ServiceAccount",
                &trust,
                with(BROKER, assume, &tags("apps", "api")),
                false,
            ),
            (
                "no tags (disableSessionTags)",
                &trust,
                with(BROKER, assume, &BTreeMap::new()),
                false,
            ),
            (
                "another role",
                &trust,
                with(other_role, assume, &tags("apps", "web")),
                false,
            ),
            (
                "account root trusts the account",
                &root,
                with(BROKER, assume, &tags("apps", "web")),
                true,
            ),
            (
                "EKS's service principal is not the broker",
                &eks,
                with(BROKER, assume, &tags("apps", "web")),
                false,
            ),
            (
                "TagSession not allowed",
                &only_assume,
                with(BROKER, tag, &tags("apps", "web")),
                false,
            ),
            (
                "ForAllValues: only known keys",
                &keys_limited,
                with(BROKER, assume, &tags("apps", "web")),
                true,
            ),
            (
                "ForAllValues: an extra key",
                &keys_limited,
                with(BROKER, assume, &with_team),
                false,
            ),
            (
                "ForAnyValue: a team tag",
                &any_team,
                with(BROKER, assume, &with_team),
                true,
            ),
            (
                "ForAnyValue: none",
                &any_team,
                with(BROKER, assume, &tags("apps", "web")),
                false,
            ),
            (
                "ArnLike on aws:PrincipalArn",
                &principal_arn,
                with(BROKER, assume, &tags("apps", "web")),
                true,
            ),
            (
                "ArnLike: another role",
                &principal_arn,
                with(other_role, assume, &tags("apps", "web")),
                false,
            ),
            (
                "plain operator on a multi-valued key",
                &plain_on_multi,
                with(BROKER, assume, &tags("apps", "web")),
                false,
            ),
        ];
        for (name, policy, request, want) in cases {
            let d = evaluate(policy, &request);
            assert_eq!(d.is_allowed(), want, "{name}: {d:?}");
        }
        // EKS's own trust: the service principal, not a role.
        let eks_req = Request {
            principal: Principal::Service("pods.eks.amazonaws.com".into()),
            ..with(BROKER, assume, &tags("apps", "web"))
        };
        assert!(evaluate(&eks, &eks_req).is_allowed());
        // A Deny the evaluator cannot read keeps the answer Unknown.
        any_team["Statement"].as_array_mut().unwrap().push(
            json!({"Effect": "Deny", "Principal": "*", "Action": "sts:*",
                         "Condition": {"StringEquals": {"aws:TagKeys": "x"}}}),
        );
        assert!(matches!(
            evaluate(&any_team, &with(BROKER, assume, &with_team)),
            Decision::Unknown { .. }
        ));
    }
}
