//! Table tests of planning: every path of create and delete on a world
//! built in memory.

use serde_json::json;

use super::*;
use crate::policy::evaluate::{evaluate, Request};

const ISSUER: &str = "https://oidc.example/c1";
const PROVIDER: &str = "arn:aws:iam::123456789012:oidc-provider/oidc.example/c1";

fn world() -> World {
    World {
        account: "123456789012".into(),
        partition: "aws".into(),
        issuer: ISSUER.into(),
        provider_arn: PROVIDER.into(),
        cluster: None,
        ..Default::default()
    }
}

fn spec(ns: &str, name: &str) -> Spec {
    Spec {
        namespace: ns.into(),
        name: name.into(),
        ..Default::default()
    }
}

fn allows(w: &World, role: &str, ns: &str, name: &str) -> bool {
    let trust = &w.roles[role].as_ref().unwrap().trust;
    let sub = crate::policy::service_account_subject(ns, name);
    evaluate(
        trust,
        &Request::web_identity(PROVIDER, ISSUER, &sub, "sts.amazonaws.com"),
    )
    .is_allowed()
}

fn kinds(p: &Plan) -> Vec<&'static str> {
    p.changes
        .iter()
        .map(|c| match c {
            Change::CreateRole { .. } => "create-role",
            Change::AttachPolicy { .. } => "attach",
            Change::UpdateTrust { .. } => "trust",
            Change::TagRole { .. } => "tag",
            Change::PutPermissionsBoundary { .. } => "boundary",
            Change::PutInlinePolicy { .. } => "inline",
            Change::ApplyServiceAccount { create: true, .. } => "create-sa",
            Change::ApplyServiceAccount { force: true, .. } => "override-sa",
            Change::ApplyServiceAccount { .. } => "annotate-sa",
            Change::RemoveAnnotation { .. } => "unannotate-sa",
            Change::DeleteServiceAccount { .. } => "delete-sa",
            Change::DetachPolicy { .. } => "detach",
            Change::DeleteInlinePolicy { .. } => "delete-inline",
            Change::DeleteRole { .. } => "delete-role",
            _ => "other",
        })
        .collect()
}

#[test]
fn create_then_again_changes_nothing() {
    let mut w = world();
    let s = Spec {
        policy_arns: vec!["arn:aws:iam::aws:policy/X".into()],
        ..spec("ns", "app")
    };
    let p = plan_create(&mut w, std::slice::from_ref(&s), CreateOptions::default()).unwrap();
    assert_eq!(kinds(&p), ["create-role", "attach", "create-sa"]);
    assert!(allows(&w, "pod-identity-ns-app", "ns", "app"));
    assert!(!allows(&w, "pod-identity-ns-app", "ns", "other"));
    let again = plan_create(&mut w, &[s], CreateOptions::default()).unwrap();
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn two_service_accounts_sharing_a_role_in_one_run() {
    let mut w = world();
    let a = Spec {
        role_name: Some("shared".into()),
        ..spec("ns", "a")
    };
    let b = Spec {
        role_name: Some("shared".into()),
        ..spec("ns", "b")
    };
    let p = plan_create(&mut w, &[a.clone(), b.clone()], CreateOptions::default()).unwrap();
    assert_eq!(
        kinds(&p),
        ["create-role", "create-sa", "trust", "create-sa"]
    );
    assert!(allows(&w, "shared", "ns", "a") && allows(&w, "shared", "ns", "b"));
    // Deleting one keeps the role for the other; deleting both removes it.
    let d = plan_delete(&mut w, std::slice::from_ref(&a)).unwrap();
    assert_eq!(kinds(&d), ["delete-sa", "trust"]);
    assert!(!allows(&w, "shared", "ns", "a") && allows(&w, "shared", "ns", "b"));
    let d = plan_delete(&mut w, &[b]).unwrap();
    assert_eq!(kinds(&d), ["delete-sa", "delete-role"]);
    assert_eq!(w.roles["shared"], None);
    assert!(plan_delete(&mut w, &[a]).unwrap().is_empty());
}

#[test]
fn roles_not_owned_are_refused_unless_adopted() {
    let foreign = RoleState {
        arn: "arn:aws:iam::123456789012:role/hand".into(),
        trust: json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
        ..Default::default()
    };
    let s = Spec {
        role_name: Some("hand".into()),
        ..spec("ns", "app")
    };
    let mut w = world();
    w.roles.insert("hand".into(), Some(foreign.clone()));
    let before = w.clone();
    let e = plan_create(&mut w, std::slice::from_ref(&s), CreateOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    // Delete leaves it alone, with a note.
    let d = plan_delete(&mut w, std::slice::from_ref(&s)).unwrap();
    assert!(d.is_empty() && d.notes[0].contains("left alone"), "{d:?}");
    assert_eq!(w.roles, before.roles);
    // Adopted: tagged, trust extended, the EC2 statement kept.
    let p = plan_create(
        &mut w,
        std::slice::from_ref(&s),
        CreateOptions { adopt_role: true },
    )
    .unwrap();
    assert_eq!(kinds(&p), ["tag", "trust", "create-sa"]);
    assert!(allows(&w, "hand", "ns", "app"));
    let d = plan_delete(&mut w, &[s]).unwrap();
    assert_eq!(
        kinds(&d),
        ["delete-sa", "trust"],
        "the EC2 statement keeps the role in use"
    );
}

#[test]
fn service_accounts_of_others() {
    let mut w = world();
    let key = ("ns".to_string(), "app".to_string());
    w.service_accounts.insert(
        key.clone(),
        Some(SaState {
            annotation: Some("arn:aws:iam::123456789012:role/other".into()),
            managed: false,
        }),
    );
    let s = spec("ns", "app");
    let before = w.clone();
    let e = plan_create(&mut w, std::slice::from_ref(&s), CreateOptions::default()).unwrap_err();
    assert!(e.to_string().contains("already annotated"), "{e}");
    assert_eq!(w, before, "a refused plan changed the world");
    let over = Spec {
        override_existing: true,
        ..s.clone()
    };
    let p = plan_create(&mut w, &[over], CreateOptions::default()).unwrap();
    assert_eq!(kinds(&p), ["create-role", "override-sa"]);
    // A ServiceAccount the user made loses only the annotation on delete.
    let d = plan_delete(&mut w, std::slice::from_ref(&s)).unwrap();
    assert_eq!(kinds(&d), ["unannotate-sa", "delete-role"]);
    assert!(w.service_accounts[&key].is_some());
    // An unannotated one is annotated without force.
    let p = plan_create(&mut w, &[s], CreateOptions::default()).unwrap();
    assert_eq!(kinds(&p), ["create-role", "annotate-sa"]);
}

#[test]
fn role_only_attach_role_and_boundaries() {
    let mut w = world();
    let role_only = Spec {
        role_only: true,
        ..spec("ns", "job")
    };
    let p = plan_create(
        &mut w,
        std::slice::from_ref(&role_only),
        CreateOptions::default(),
    )
    .unwrap();
    assert_eq!(kinds(&p), ["create-role"]);
    assert!(w.service_accounts.is_empty());
    let d = plan_delete(&mut w, &[role_only]).unwrap();
    assert_eq!(kinds(&d), ["delete-role"]);

    let attach = Spec {
        attach_role_arn: Some("arn:aws:iam::123456789012:role/given".into()),
        ..spec("ns", "x")
    };
    let p = plan_create(&mut w, &[attach], CreateOptions::default()).unwrap();
    assert_eq!(kinds(&p), ["create-sa"]);
    assert!(!w.roles.contains_key("given"));

    let bounded = Spec {
        permissions_boundary: Some("arn:aws:iam::123456789012:policy/b".into()),
        ..spec("ns", "y")
    };
    plan_create(
        &mut w,
        std::slice::from_ref(&bounded),
        CreateOptions::default(),
    )
    .unwrap();
    let changed = Spec {
        permissions_boundary: Some("arn:aws:iam::123456789012:policy/c".into()),
        ..bounded
    };
    let p = plan_create(&mut w, &[changed], CreateOptions::default()).unwrap();
    assert_eq!(kinds(&p), ["boundary"]);
}

/// `n` ServiceAccounts of one namespace bound to the role `shared`.
fn sharing(n: usize) -> Vec<Spec> {
    (0..n)
        .map(|i| Spec {
            role_name: Some("shared".into()),
            ..spec("team", &format!("app-{i:03}"))
        })
        .collect()
}

#[test]
fn a_trust_policy_over_the_default_quota_is_noted() {
    let mut w = world();
    let p = plan_create(&mut w, &sharing(10), CreateOptions::default()).unwrap();
    assert!(p.notes.is_empty(), "{:?}", p.notes);
    let len = |w: &World| trust::counted_len(&w.roles["shared"].as_ref().unwrap().trust);
    assert!(len(&w) <= trust::DEFAULT_MAX_LEN, "{}", len(&w));

    let mut w = world();
    let p = plan_create(&mut w, &sharing(60), CreateOptions::default()).unwrap();
    let over = len(&w);
    assert!(
        (trust::DEFAULT_MAX_LEN..=trust::MAX_LEN).contains(&over),
        "{over}"
    );
    assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    assert!(
        p.notes[0].contains(&format!(
            "shared will be {over} characters (60 ServiceAccounts)"
        )) && p.notes[0].contains("LimitExceeded"),
        "{}",
        p.notes[0]
    );
    assert!(allows(&w, "shared", "team", "app-059"));
}

#[test]
fn a_trust_policy_over_the_most_iam_allows_is_refused_changing_nothing() {
    let mut w = world();
    let before = w.clone();
    let err = plan_create(&mut w, &sharing(120), CreateOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("IAM role shared")
            && msg.contains("120 ServiceAccounts")
            && msg.contains("4096"),
        "{msg}"
    );
    assert_eq!(w, before, "a refusal leaves the world as it was");
    // An existing owned role growing past it is refused the same way.
    plan_create(&mut w, &sharing(60), CreateOptions::default()).unwrap();
    let grown = w.clone();
    assert!(plan_create(&mut w, &sharing(120), CreateOptions::default()).is_err());
    assert_eq!(w, grown);
}

#[test]
fn the_counted_length_ignores_whitespace() {
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Sid": "a b"}]});
    assert_eq!(
        trust::counted_len(&doc),
        doc.to_string().len() - 1,
        "the space inside \"a b\" is not counted"
    );
}

#[test]
fn an_inline_policy_is_put_once_and_replaced_when_it_changes() {
    let read = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
    let write = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]});
    let mut w = world();
    let s = Spec {
        inline_policy: Some(read.clone()),
        ..spec("ns", "app")
    };
    let p = plan_create(&mut w, std::slice::from_ref(&s), CreateOptions::default()).unwrap();
    assert_eq!(kinds(&p), ["create-role", "inline", "create-sa"]);
    assert!(p.changes.iter().any(|c| matches!(c,
        Change::PutInlinePolicy { policy_name, document, .. } if policy_name == "pod-identity" && *document == read)));
    assert!(
        plan_create(&mut w, std::slice::from_ref(&s), CreateOptions::default())
            .unwrap()
            .is_empty()
    );
    let changed = Spec {
        inline_policy: Some(write.clone()),
        ..s.clone()
    };
    let p = plan_create(&mut w, &[changed], CreateOptions::default()).unwrap();
    assert_eq!(kinds(&p), ["inline"]);
    // Deleting the last ServiceAccount deletes the inline policy with the role.
    let d = plan_delete(&mut w, &[s]).unwrap();
    assert_eq!(kinds(&d), ["delete-sa", "delete-inline", "delete-role"]);
}

#[test]
fn two_service_accounts_asking_one_role_for_different_inline_policies_are_refused() {
    let mut w = world();
    let before = w.clone();
    let a = Spec {
        role_name: Some("shared".into()),
        inline_policy: Some(
            json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}),
        ),
        ..spec("ns", "a")
    };
    let b = Spec {
        inline_policy: Some(
            json!({"Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}),
        ),
        ..Spec {
            name: "b".into(),
            ..a.clone()
        }
    };
    let err = plan_create(&mut w, &[a.clone(), b], CreateOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("ns/a and ns/b share IAM role shared"),
        "{err}"
    );
    assert_eq!(w, before);
    // The same document twice is fine.
    let same = Spec {
        name: "c".into(),
        ..a.clone()
    };
    let p = plan_create(&mut w, &[a, same], CreateOptions::default()).unwrap();
    assert_eq!(
        kinds(&p),
        ["create-role", "inline", "create-sa", "trust", "create-sa"]
    );
}
