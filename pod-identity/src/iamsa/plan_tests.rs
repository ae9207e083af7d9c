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
            Change::DeletePermissionsBoundary { .. } => "unbound",
            Change::CreateNamespace { .. } => "create-ns",
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
    assert!(allows(&w, "pod-identity_ns_app", "ns", "app"));
    assert!(!allows(&w, "pod-identity_ns_app", "ns", "other"));
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
        CreateOptions {
            adopt_role: true,
            ..Default::default()
        },
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
            ..Default::default()
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

const DECLARATIVE: CreateOptions = CreateOptions {
    adopt_role: false,
    declarative: true,
};

fn role<'a>(w: &'a World, name: &str) -> &'a RoleState {
    w.roles[name].as_ref().unwrap()
}

#[test]
fn default_role_names_never_collide() {
    let name = |cluster: Option<&str>, ns: &str, sa: &str| spec(ns, sa).default_role_name(cluster);
    // The two collisions of the old `pod-identity-[cluster-]ns-name` rule.
    assert_ne!(name(None, "a-b", "c"), name(None, "a", "b-c"));
    assert_ne!(name(Some("prod"), "app", "x"), name(None, "prod-app", "x"));
    assert_ne!(
        name(Some("prod"), "app", "x"),
        name(Some("prod-app"), "x", "y")
    );
    assert_eq!(name(Some("prod"), "app", "x"), "pod-identity_prod_app_x");
    // Long names stay within IAM's 64 characters, distinct and stable.
    let long_a = name(Some("c"), &"n".repeat(63), &"a".repeat(200));
    let long_b = name(Some("c"), &"n".repeat(63), &"b".repeat(200));
    assert_eq!(long_a.len(), 64);
    assert_ne!(long_a, long_b);
    assert_eq!(long_a, name(Some("c"), &"n".repeat(63), &"a".repeat(200)));
    assert_eq!(contract::RoleArn::sanitize_name(&long_a), long_a);
}

#[test]
fn two_service_accounts_of_once_ambiguous_names_get_two_roles() {
    let mut w = world();
    let a = Spec {
        policy_arns: vec!["arn:aws:iam::aws:policy/A".into()],
        ..spec("a-b", "c")
    };
    let b = Spec {
        policy_arns: vec!["arn:aws:iam::aws:policy/B".into()],
        ..spec("a", "b-c")
    };
    plan_create(&mut w, std::slice::from_ref(&a), CreateOptions::default()).unwrap();
    let p = plan_create(&mut w, std::slice::from_ref(&b), CreateOptions::default()).unwrap();
    assert_eq!(kinds(&p), ["create-role", "attach", "create-sa"]);
    assert!(allows(&w, "pod-identity_a-b_c", "a-b", "c"));
    assert!(!allows(&w, "pod-identity_a-b_c", "a", "b-c"));
    assert_eq!(
        role(&w, "pod-identity_a-b_c").attached,
        ["arn:aws:iam::aws:policy/A"]
    );
    assert_eq!(
        role(&w, "pod-identity_a_b-c").attached,
        ["arn:aws:iam::aws:policy/B"]
    );
    // Each role records what it was made for.
    let r = role(&w, "pod-identity_a_b-c").record().unwrap();
    assert_eq!(
        (r.issuer.as_str(), r.namespace.as_str(), r.name.as_str()),
        ("oidc.example/c1", "a", "b-c")
    );
}

#[test]
fn a_default_name_reaching_another_service_accounts_role_is_refused() {
    let mut w = world();
    // An owned role with the default name of ns/app, made for other/x.
    let mut made_for_other = world();
    plan_create(
        &mut made_for_other,
        &[Spec {
            role_name: Some("pod-identity_ns_app".into()),
            ..spec("other", "x")
        }],
        CreateOptions::default(),
    )
    .unwrap();
    w.roles = made_for_other.roles.clone();
    let before = w.clone();
    let err = plan_create(&mut w, &[spec("ns", "app")], CreateOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Refused(_)), "{msg}");
    assert!(
        msg.contains("ServiceAccount other/x")
            && msg.contains("ns/app")
            && msg.contains("--role-name pod-identity_ns_app"),
        "{msg}"
    );
    assert_eq!(w, before);
    // Asked for by name, it is shared on purpose.
    let shared = Spec {
        role_name: Some("pod-identity_ns_app".into()),
        ..spec("ns", "app")
    };
    let p = plan_create(&mut w, &[shared], CreateOptions::default()).unwrap();
    assert_eq!(kinds(&p), ["trust", "create-sa"]);
    // An owned role without a record that does not trust it: refused too.
    let mut w = world();
    w.roles.insert(
        "pod-identity_ns_app".into(),
        Some(RoleState {
            arn: "arn:aws:iam::123456789012:role/pod-identity_ns_app".into(),
            tags: [(OWNER_TAG.to_string(), OWNER_VALUE.to_string())].into(),
            ..Default::default()
        }),
    );
    let err = plan_create(&mut w, &[spec("ns", "app")], CreateOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no record"), "{err}");
}

#[test]
fn a_role_made_before_records_is_kept_by_the_service_account_naming_it() {
    // `pod-identity-ns-app` from the old naming rule, trusted by ns/app.
    let mut w = world();
    let mut legacy = world();
    plan_create(
        &mut legacy,
        &[Spec {
            role_name: Some("pod-identity-ns-app".into()),
            ..spec("ns", "app")
        }],
        CreateOptions::default(),
    )
    .unwrap();
    let mut r = legacy.roles["pod-identity-ns-app"].clone().unwrap();
    for t in crate::iam::RECORD_TAGS {
        r.tags.remove(t);
    }
    w.roles.insert("pod-identity-ns-app".into(), Some(r));
    w.service_accounts = legacy.service_accounts.clone();
    let p = plan_create(&mut w, &[spec("ns", "app")], CreateOptions::default()).unwrap();
    assert!(p.is_empty(), "{p:?}");
    let d = plan_delete(&mut w, &[spec("ns", "app")]).unwrap();
    assert_eq!(kinds(&d), ["delete-sa", "delete-role"]);
}

#[test]
fn apply_removes_what_the_file_no_longer_asks_for_from_owned_roles() {
    let a = "arn:aws:iam::aws:policy/A".to_string();
    let b = "arn:aws:iam::aws:policy/B".to_string();
    let boundary = "arn:aws:iam::123456789012:policy/boundary".to_string();
    let doc =
        json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
    let full = Spec {
        policy_arns: vec![a.clone(), b.clone()],
        inline_policy: Some(doc),
        permissions_boundary: Some(boundary.clone()),
        well_known: vec!["autoScaler".into()],
        ..spec("ns", "app")
    };
    let mut w = world();
    plan_create(&mut w, std::slice::from_ref(&full), DECLARATIVE).unwrap();
    let r = role(&w, "pod-identity_ns_app");
    assert_eq!(r.inline, ["pod-identity", "pod-identity-PolicyAutoScaling"]);
    assert!(
        plan_create(&mut w, std::slice::from_ref(&full), DECLARATIVE)
            .unwrap()
            .is_empty()
    );
    let less = Spec {
        policy_arns: vec![a.clone()],
        inline_policy: None,
        permissions_boundary: None,
        well_known: vec!["externalDNS".into()],
        ..full.clone()
    };
    // `create` only adds ...
    let mut additive = w.clone();
    let p = plan_create(
        &mut additive,
        std::slice::from_ref(&less),
        CreateOptions::default(),
    )
    .unwrap();
    assert_eq!(kinds(&p), ["inline", "inline"]);
    // ... `apply` / `update` also remove, after adding.
    let p = plan_create(&mut w, std::slice::from_ref(&less), DECLARATIVE).unwrap();
    assert_eq!(
        kinds(&p),
        [
            "inline",
            "inline",
            "detach",
            "delete-inline",
            "delete-inline",
            "unbound"
        ]
    );
    let r = role(&w, "pod-identity_ns_app");
    assert_eq!(r.attached, std::slice::from_ref(&a));
    assert_eq!(
        r.inline,
        [
            "pod-identity-PolicyExternalDNSChangeSet",
            "pod-identity-PolicyExternalDNSHostedZones"
        ]
    );
    assert_eq!(r.boundary, None);
    assert!(p.notes.is_empty(), "{:?}", p.notes);
    assert!(plan_create(&mut w, &[less], DECLARATIVE)
        .unwrap()
        .is_empty());
}

#[test]
fn apply_leaves_roles_it_does_not_own_and_says_who_else_a_removal_touches() {
    let x = "arn:aws:iam::aws:policy/X".to_string();
    // Not owned (adopted roles are owned from then on): nothing removed.
    let mut w = world();
    w.roles.insert(
        "hand".into(),
        Some(RoleState {
            arn: "arn:aws:iam::123456789012:role/hand".into(),
            trust: json!({"Statement": []}),
            attached: vec![x.clone()],
            inline: vec!["pod-identity".into()],
            ..Default::default()
        }),
    );
    w.service_accounts.insert(
        ("ns".into(), "app".into()),
        Some(SaState {
            annotation: Some("arn:aws:iam::123456789012:role/hand".into()),
            ..Default::default()
        }),
    );
    let attach = Spec {
        attach_role_arn: Some("arn:aws:iam::123456789012:role/hand".into()),
        ..spec("ns", "app")
    };
    assert!(plan_create(&mut w, &[attach], DECLARATIVE)
        .unwrap()
        .is_empty());
    // A shared owned role: removal is planned, with a note naming the others.
    let mut w = world();
    let shared = |name: &str, policies: Vec<String>| Spec {
        role_name: Some("shared".into()),
        policy_arns: policies,
        ..spec("ns", name)
    };
    plan_create(
        &mut w,
        &[shared("a", vec![x.clone()]), shared("b", vec![x.clone()])],
        DECLARATIVE,
    )
    .unwrap();
    let p = plan_create(
        &mut w,
        &[shared("a", vec!["arn:aws:iam::aws:policy/Y".into()])],
        DECLARATIVE,
    )
    .unwrap();
    assert_eq!(kinds(&p), ["attach", "detach"]);
    assert!(
        p.notes[0].contains("system:serviceaccount:ns:b"),
        "{:?}",
        p.notes
    );
}

#[test]
fn a_missing_namespace_is_created_first() {
    let mut w = world();
    w.namespaces.insert("new".into(), false);
    w.namespaces.insert("old".into(), true);
    let p = plan_create(
        &mut w,
        &[spec("old", "a"), spec("new", "b"), spec("new", "c")],
        CreateOptions::default(),
    )
    .unwrap();
    assert_eq!(
        kinds(&p),
        [
            "create-ns",
            "create-role",
            "create-sa",
            "create-role",
            "create-sa",
            "create-role",
            "create-sa"
        ]
    );
}

#[test]
fn labels_and_annotations_are_merged_on_existing_service_accounts() {
    let mut w = world();
    w.service_accounts.insert(
        ("ns".into(), "app".into()),
        Some(SaState {
            labels: [("keep".to_string(), "me".to_string())].into(),
            ..Default::default()
        }),
    );
    let s = Spec {
        labels: vec![("team".into(), "b".into())],
        annotations: vec![("note".into(), "x".into())],
        ..spec("ns", "app")
    };
    let p = plan_create(&mut w, std::slice::from_ref(&s), CreateOptions::default()).unwrap();
    let Some(Change::ApplyServiceAccount {
        labels,
        extra_annotations,
        create: false,
        ..
    }) = p.changes.last()
    else {
        panic!("{p:?}")
    };
    assert_eq!(labels, &[("team".to_string(), "b".to_string())]);
    assert_eq!(extra_annotations, &[("note".to_string(), "x".to_string())]);
    let sa = w.service_accounts[&("ns".to_string(), "app".to_string())]
        .clone()
        .unwrap();
    assert_eq!(sa.labels["keep"], "me");
    assert!(
        plan_create(&mut w, std::slice::from_ref(&s), CreateOptions::default())
            .unwrap()
            .is_empty()
    );
    // A changed label value is applied again.
    let relabelled = Spec {
        labels: vec![("team".into(), "c".into())],
        ..s
    };
    assert_eq!(
        kinds(&plan_create(&mut w, &[relabelled], CreateOptions::default()).unwrap()),
        ["annotate-sa"]
    );
}

#[test]
fn role_arns_with_a_path_are_the_same_role_in_create_and_delete() {
    let mut w = world();
    let pathed = "arn:aws:iam::123456789012:role/team/given";
    let mut made = world();
    plan_create(
        &mut made,
        &[Spec {
            role_name: Some("given".into()),
            ..spec("ns", "app")
        }],
        CreateOptions::default(),
    )
    .unwrap();
    let mut r = made.roles["given"].clone().unwrap();
    r.arn = pathed.into();
    w.roles.insert("given".into(), Some(r));
    w.service_accounts.insert(
        ("ns".into(), "app".into()),
        Some(SaState {
            annotation: Some("arn:aws:iam::123456789012:role/given".into()),
            ..Default::default()
        }),
    );
    let again = Spec {
        role_name: Some("given".into()),
        ..spec("ns", "app")
    };
    assert!(plan_create(
        &mut w,
        std::slice::from_ref(&again),
        CreateOptions::default()
    )
    .unwrap()
    .is_empty());
    let d = plan_delete(&mut w, &[spec("ns", "app")]).unwrap();
    assert_eq!(kinds(&d), ["unannotate-sa", "delete-role"]);
    assert!(same_role(pathed, "arn:aws:iam::123456789012:role/given"));
    assert!(!same_role(pathed, "arn:aws:iam::210987654321:role/given"));
    assert!(!same_role(
        pathed,
        "arn:aws:iam::123456789012:role/team/other"
    ));
}

#[test]
fn delete_finishes_after_a_run_that_already_removed_the_service_account() {
    // Created under --role-name; the ServiceAccount is gone.
    let mut w = world();
    let named = Spec {
        role_name: Some("custom".into()),
        policy_arns: vec!["arn:aws:iam::aws:policy/A".into()],
        ..spec("ns", "app")
    };
    plan_create(
        &mut w,
        std::slice::from_ref(&named),
        CreateOptions::default(),
    )
    .unwrap();
    w.service_accounts.insert(("ns".into(), "app".into()), None);
    // Without the record lookup, the default name finds nothing.
    let mut blind = w.clone();
    assert!(plan_delete(&mut blind, &[spec("ns", "app")])
        .unwrap()
        .is_empty());
    // state.rs found it through its trust policy / record.
    w.found.insert(("ns".into(), "app".into()), "custom".into());
    let d = plan_delete(&mut w, &[spec("ns", "app")]).unwrap();
    assert_eq!(kinds(&d), ["detach", "delete-role"]);
    // A run that failed after emptying the trust policy: the record finishes it.
    let mut w = world();
    plan_create(&mut w, &[spec("ns", "app")], CreateOptions::default()).unwrap();
    let r = w
        .roles
        .get_mut("pod-identity_ns_app")
        .unwrap()
        .as_mut()
        .unwrap();
    r.trust = json!({"Version": "2012-10-17", "Statement": []});
    w.service_accounts.insert(("ns".into(), "app".into()), None);
    let d = plan_delete(&mut w, &[spec("ns", "app")]).unwrap();
    assert_eq!(kinds(&d), ["delete-role"]);
    // Another ServiceAccount's role with an empty trust policy is not touched.
    let mut w = world();
    plan_create(&mut w, &[spec("ns", "other")], CreateOptions::default()).unwrap();
    let r = w
        .roles
        .get_mut("pod-identity_ns_other")
        .unwrap()
        .as_mut()
        .unwrap();
    r.trust = json!({"Statement": []});
    w.found
        .insert(("ns".into(), "app".into()), "pod-identity_ns_other".into());
    assert!(plan_delete(&mut w, &[spec("ns", "app")])
        .unwrap()
        .is_empty());
}

#[test]
fn well_known_sets_become_policies_in_the_partition() {
    let mut w = world();
    w.partition = "aws-cn".into();
    let s = Spec {
        well_known: vec!["imageBuilder".into(), "certManager".into()],
        ..spec("ns", "app")
    };
    let p = plan_create(&mut w, &[s], CreateOptions::default()).unwrap();
    assert_eq!(
        kinds(&p),
        [
            "create-role",
            "attach",
            "inline",
            "inline",
            "inline",
            "create-sa"
        ]
    );
    assert!(p.changes.iter().any(|c| matches!(c,
        Change::AttachPolicy { policy_arn, .. } if policy_arn == "arn:aws-cn:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser")));
}

#[test]
fn inline_policies_adding_up_past_iams_limit_are_refused() {
    let mut w = world();
    let before = w.clone();
    let big = json!({"Statement": [{"Effect": "Allow", "Action": "s3:*",
        "Resource": (0..240).map(|i| format!("arn:aws:s3:::bucket-{i}/*")).collect::<Vec<_>>()}]});
    assert!(trust::counted_len(&big) < 10_240);
    let s = Spec {
        inline_policy: Some(big),
        well_known: vec!["awsLoadBalancerController".into()],
        ..spec("ns", "app")
    };
    let err = plan_create(&mut w, &[s], CreateOptions::default()).unwrap_err();
    assert!(err.to_string().contains("over the 10240"), "{err}");
    assert_eq!(w, before);
}
