//! Table tests of `podidentityassociation`'s plans.

use serde_json::json;

use super::*;
use crate::pia::spec::Flags;
use crate::policy::evaluate::{evaluate, Request};

const BROKER: &str = "arn:aws:iam::111122223333:role/broker";

fn flags() -> Flags {
    Flags {
        cluster: "prod".into(),
        namespace: "shop".into(),
        service_account: "web".into(),
        role_name: Some("shop-web".into()),
        permission_policy_arns: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
        broker_role_arn: Some(BROKER.into()),
        ..Flags::default()
    }
}

fn world() -> World {
    World {
        partition: "aws".into(),
        account: "111122223333".into(),
        namespace_exists: true,
        service_account_exists: true,
        ..World::default()
    }
}

fn kinds(p: &Plan) -> Vec<String> {
    p.changes
        .iter()
        .map(|c| {
            format!("{c:?}")
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn owned_role(trust: Value) -> RoleState {
    RoleState {
        arn: "arn:aws:iam::111122223333:role/shop-web".into(),
        trust,
        tags: [
            (OWNER_TAG, OWNER_VALUE),
            (CLUSTER_TAG, "prod"),
            (NAMESPACE_TAG, "shop"),
            (SERVICE_ACCOUNT_TAG, "web"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        attached: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
        ..RoleState::default()
    }
}

#[test]
fn a_new_role_trusts_the_broker_only_with_the_associations_tags() {
    let spec = flags().validate().unwrap();
    let p = plan_create(&spec, &world()).unwrap();
    assert_eq!(
        kinds(&p),
        ["CreateRole", "AttachPolicy", "ApplyAssociation"]
    );
    let Change::CreateRole {
        trust, tags, arn, ..
    } = &p.changes[0]
    else {
        panic!()
    };
    assert_eq!(arn, "arn:aws:iam::111122223333:role/shop-web");
    assert!(tags.contains(&(CLUSTER_TAG.into(), "prod".into())));
    // IAM's decision on the trust written, by our evaluator.
    let tags_of = |ns: &str| {
        [
            ("eks-cluster-name", "prod"),
            ("kubernetes-namespace", ns),
            ("kubernetes-service-account", "web"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    for action in ["sts:AssumeRole", "sts:TagSession"] {
        assert!(evaluate(
            trust,
            &Request::with_session_tags(BROKER, action, &tags_of("shop"))
        )
        .is_allowed());
        assert!(!evaluate(
            trust,
            &Request::with_session_tags(BROKER, action, &tags_of("other"))
        )
        .is_allowed());
    }
    let Change::ApplyAssociation { name, spec } = &p.changes[2] else {
        panic!()
    };
    assert_eq!(name, "shop.web");
    assert_eq!(
        spec,
        &json!({"namespace": "shop", "serviceAccount": "web", "roleArn": "arn:aws:iam::111122223333:role/shop-web"})
    );
    assert!(p.render("x").contains("sts:TagSession"));
}

#[test]
fn a_second_run_changes_nothing_and_an_owned_role_gets_what_it_lacks() {
    let spec = flags().validate().unwrap();
    let first = plan_create(&spec, &world()).unwrap();
    let Change::CreateRole { trust, .. } = &first.changes[0] else {
        panic!()
    };
    let Change::ApplyAssociation { spec: obj, .. } = &first.changes[2] else {
        panic!()
    };
    let done = World {
        role: Some(owned_role(trust.clone())),
        associations: vec![ExistingAssociation {
            name: "shop.web".into(),
            spec: obj.clone(),
            managed: true,
        }],
        ..world()
    };
    assert!(plan_create(&spec, &done).unwrap().is_empty());
    // The grant gone from the trust (someone edited it): put back.
    let edited = World {
        role: Some(owned_role(
            json!({"Version": "2012-10-17", "Statement": []}),
        )),
        ..done
    };
    assert_eq!(
        kinds(&plan_create(&spec, &edited).unwrap()),
        ["UpdateTrust"]
    );
}

#[test]
fn refusals_change_nothing() {
    let spec = flags().validate().unwrap();
    let foreign = RoleState {
        arn: "arn:aws:iam::111122223333:role/shop-web".into(),
        ..RoleState::default()
    };
    let other_cluster = RoleState {
        tags: [(CLUSTER_TAG.to_string(), "staging".to_string())].into(),
        ..foreign.clone()
    };
    let by_arn = Flags {
        role_name: None,
        permission_policy_arns: vec![],
        role_arn: Some("arn:aws:iam::111122223333:role/shop-web".into()),
        ..flags()
    }
    .validate()
    .unwrap();
    let conflict = ExistingAssociation {
        name: "mine".into(),
        spec: json!({"namespace": "shop", "serviceAccount": "web", "roleArn": "x"}),
        managed: false,
    };
    let cases: Vec<(&AssociationSpec, World, &str)> = vec![
        (
            &spec,
            World {
                role: Some(foreign.clone()),
                ..world()
            },
            "--role-arn",
        ),
        (
            &by_arn,
            World {
                role: Some(other_cluster),
                ..world()
            },
            "another cluster",
        ),
        (&by_arn, world(), "does not exist"),
        (
            &spec,
            World {
                associations: vec![conflict],
                ..world()
            },
            "already has",
        ),
        (
            &spec,
            World {
                associations: vec![ExistingAssociation {
                    name: "shop.web".into(),
                    spec: json!({"namespace": "shop", "serviceAccount": "web", "roleArn": "other"}),
                    managed: true,
                }],
                ..world()
            },
            "another spec",
        ),
    ];
    for (s, w, want) in cases {
        let e = plan_create(s, &w).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
}

#[test]
fn an_existing_role_gets_the_grant_and_the_cluster_tag_only() {
    let by_arn = Flags {
        role_name: None,
        permission_policy_arns: vec![],
        role_arn: Some("arn:aws:iam::111122223333:role/legacy".into()),
        target_role_arn: Some("arn:aws:iam::444455556666:role/target".into()),
        create_service_account: true,
        ..flags()
    }
    .validate()
    .unwrap();
    let legacy = RoleState {
        arn: "arn:aws:iam::111122223333:role/legacy".into(),
        trust: json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
        ..RoleState::default()
    };
    let w = World {
        role: Some(legacy),
        namespace_exists: false,
        service_account_exists: false,
        ..world()
    };
    let p = plan_create(&by_arn, &w).unwrap();
    assert_eq!(
        kinds(&p),
        [
            "TagRole",
            "UpdateTrust",
            "CreateNamespace",
            "CreateServiceAccount",
            "ApplyAssociation"
        ]
    );
    let Change::UpdateTrust { trust, .. } = &p.changes[1] else {
        panic!()
    };
    assert_eq!(
        trust["Statement"].as_array().unwrap().len(),
        2,
        "the foreign statement is kept"
    );
    assert!(p.notes.iter().any(|n| n.contains("sts:ExternalId")));
}

#[test]
fn delete_removes_what_it_made_and_only_its_grant_elsewhere() {
    let spec = flags().validate().unwrap();
    let created = plan_create(&spec, &world()).unwrap();
    let Change::CreateRole { trust, .. } = &created.changes[0] else {
        panic!()
    };
    let assoc = ExistingAssociation {
        name: "shop.web".into(),
        spec: json!({"namespace": "shop", "serviceAccount": "web", "roleArn": "arn:aws:iam::111122223333:role/shop-web"}),
        managed: true,
    };
    let w = World {
        role: Some(owned_role(trust.clone())),
        associations: vec![assoc.clone()],
        ..world()
    };
    let p = plan_delete("prod", "shop", "web", BROKER, &w).unwrap();
    assert_eq!(
        kinds(&p),
        ["DeleteAssociation", "DetachPolicy", "DeleteRole"]
    );
    // A role it did not make keeps everything but the grant.
    let mut foreign = owned_role(trust.clone());
    foreign.tags.clear();
    let w = World {
        role: Some(foreign),
        associations: vec![assoc.clone()],
        ..world()
    };
    let p = plan_delete("prod", "shop", "web", BROKER, &w).unwrap();
    assert_eq!(kinds(&p), ["DeleteAssociation", "UpdateTrust"]);
    // Not made by this tool, or absent: refused.
    let unmanaged = World {
        associations: vec![ExistingAssociation {
            managed: false,
            ..assoc
        }],
        ..world()
    };
    assert!(plan_delete("prod", "shop", "web", BROKER, &unmanaged).is_err());
    assert!(plan_delete("prod", "shop", "web", BROKER, &world()).is_err());
}

#[test]
fn apply_creates_what_the_file_has_and_deletes_what_it_dropped() {
    let web = flags().validate().unwrap();
    let api = Flags {
        service_account: "api".into(),
        role_name: Some("shop-api".into()),
        create_service_account: true,
        ..flags()
    }
    .validate()
    .unwrap();
    let dropped = ExistingAssociation {
        name: "shop.old".into(),
        spec: json!({"namespace": "shop", "serviceAccount": "old", "roleArn": "arn:aws:iam::111122223333:role/shop-old"}),
        managed: true,
    };
    let foreign = ExistingAssociation {
        name: "byhand".into(),
        spec: json!({"namespace": "ops", "serviceAccount": "x", "roleArn": "arn:aws:iam::111122223333:role/x"}),
        managed: false,
    };
    let mut old_role = owned_role(json!({"Statement": []}));
    old_role.arn = "arn:aws:iam::111122223333:role/shop-old".into();
    old_role
        .tags
        .insert(SERVICE_ACCOUNT_TAG.into(), "old".into());
    let w = ApplyWorld {
        partition: "aws".into(),
        account: "111122223333".into(),
        roles: [("shop-old".to_string(), old_role)].into(),
        associations: vec![dropped, foreign],
        namespaces: ["shop".to_string()].into(),
        service_accounts: [("shop".to_string(), "web".to_string())].into(),
    };
    let kept = plan_apply(&[web.clone(), api.clone()], "prod", BROKER, &w, false).unwrap();
    assert!(!kinds(&kept).contains(&"DeleteAssociation".to_string()));
    let p = plan_apply(&[web.clone(), api], "prod", BROKER, &w, true).unwrap();
    assert_eq!(
        kinds(&p),
        [
            "CreateRole",
            "AttachPolicy",
            "ApplyAssociation",
            "CreateRole",
            "AttachPolicy",
            "CreateServiceAccount",
            "ApplyAssociation",
            "DeleteAssociation",
            "DetachPolicy",
            "DeleteRole",
        ]
    );
    // The same role name twice, or one ServiceAccount twice: refused.
    let twice = Flags {
        service_account: "other".into(),
        ..flags()
    }
    .validate()
    .unwrap();
    assert!(plan_apply(&[web.clone(), twice], "prod", BROKER, &w, true).is_err());
    assert!(plan_apply(&[web.clone(), web], "prod", BROKER, &w, true).is_err());
}

#[test]
fn update_changes_the_role_of_an_association_it_made() {
    let by_arn = |role: &str| {
        Flags {
            role_name: None,
            permission_policy_arns: vec![],
            role_arn: Some(format!("arn:aws:iam::111122223333:role/{role}")),
            ..flags()
        }
        .validate()
        .unwrap()
    };
    let old = ExistingAssociation {
        name: "shop.web".into(),
        spec: json!({"namespace": "shop", "serviceAccount": "web", "roleArn": "arn:aws:iam::111122223333:role/old"}),
        managed: true,
    };
    let new_role = RoleState {
        arn: "arn:aws:iam::111122223333:role/new".into(),
        tags: [(CLUSTER_TAG.to_string(), "prod".to_string())].into(),
        ..RoleState::default()
    };
    let w = World {
        role: Some(new_role),
        associations: vec![old.clone()],
        ..world()
    };
    // create refuses the change, update makes it.
    assert!(plan_create(&by_arn("new"), &w)
        .unwrap_err()
        .to_string()
        .contains("update"));
    let p = plan_update(&by_arn("new"), &w).unwrap();
    assert_eq!(kinds(&p), ["UpdateTrust", "ApplyAssociation"]);
    // Nothing to update, or not ours: refused.
    assert!(plan_update(
        &by_arn("new"),
        &World {
            associations: vec![],
            ..w.clone()
        }
    )
    .is_err());
    let foreign = World {
        associations: vec![ExistingAssociation {
            managed: false,
            ..old
        }],
        ..w
    };
    assert!(plan_update(&by_arn("new"), &foreign).is_err());
}
