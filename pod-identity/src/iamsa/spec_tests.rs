//! Table tests of what `iamserviceaccount` accepts: names, ARNs, tags,
//! eksctl's combinations.

use super::*;

#[test]
fn role_names_are_stable_and_bounded() {
    let s = Spec {
        namespace: "ns".into(),
        name: "app".into(),
        ..Default::default()
    };
    assert_eq!(s.role_name(None), "pod-identity_ns_app");
    assert_eq!(s.role_name(Some("prod")), "pod-identity_prod_ns_app");
    let long = Spec {
        namespace: "n".repeat(60),
        name: "a".repeat(60),
        ..Default::default()
    };
    let name = long.role_name(None);
    assert_eq!(name.len(), 64);
    assert_eq!(name, long.role_name(None));
    let other = Spec {
        namespace: "n".repeat(60),
        name: "b".repeat(60),
        ..Default::default()
    };
    assert_ne!(other.role_name(None), name);
    let given = Spec {
        role_name: Some("mine".into()),
        ..s.clone()
    };
    assert_eq!(given.role_name(Some("x")), "mine");
}

#[test]
fn validation() {
    let ok = Spec {
        namespace: "ns".into(),
        name: "app".into(),
        policy_arns: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
        ..Default::default()
    };
    ok.validate().unwrap();
    let bad: Vec<(&str, Spec)> = vec![
        (
            "namespace",
            Spec {
                namespace: "NS".into(),
                ..ok.clone()
            },
        ),
        (
            "name",
            Spec {
                name: "".into(),
                ..ok.clone()
            },
        ),
        (
            "role name",
            Spec {
                role_name: Some("a b".into()),
                ..ok.clone()
            },
        ),
        (
            "policy",
            Spec {
                policy_arns: vec!["ReadOnlyAccess".into()],
                ..ok.clone()
            },
        ),
        (
            "boundary",
            Spec {
                permissions_boundary: Some("arn:aws:iam::1:role/x".into()),
                ..ok.clone()
            },
        ),
        (
            "attach role",
            Spec {
                attach_role_arn: Some("arn:aws:iam::1:role/x".into()),
                ..ok.clone()
            },
        ),
        (
            "attach + policy",
            Spec {
                attach_role_arn: Some("arn:aws:iam::123456789012:role/x".into()),
                policy_arns: vec!["arn:aws:iam::aws:policy/X".into()],
                ..ok.clone()
            },
        ),
        (
            "owner tag",
            Spec {
                tags: vec![(super::super::OWNER_TAG.into(), "me".into())],
                ..ok.clone()
            },
        ),
        (
            "aws tag",
            Spec {
                tags: vec![("aws:x".into(), "me".into())],
                ..ok.clone()
            },
        ),
        (
            "AWS tag in another case",
            Spec {
                tags: vec![("AWS:x".into(), "me".into())],
                ..ok.clone()
            },
        ),
        (
            "a record tag",
            Spec {
                tags: vec![("pod-identity.io/namespace".into(), "x".into())],
                ..ok.clone()
            },
        ),
        (
            "too many tags",
            Spec {
                tags: (0..47).map(|i| (format!("k{i}"), "v".into())).collect(),
                ..ok.clone()
            },
        ),
        (
            "tag character",
            Spec {
                tags: vec![("a;b".into(), "v".into())],
                ..ok.clone()
            },
        ),
        (
            "no policy",
            Spec {
                policy_arns: vec![],
                ..ok.clone()
            },
        ),
        (
            "namespace with a dot",
            Spec {
                namespace: "a.b".into(),
                ..ok.clone()
            },
        ),
        (
            "namespace of 64",
            Spec {
                namespace: "n".repeat(64),
                ..ok.clone()
            },
        ),
        (
            "name ending in -",
            Spec {
                name: "app-".into(),
                ..ok.clone()
            },
        ),
        (
            "name with an empty label",
            Spec {
                name: "a..b".into(),
                ..ok.clone()
            },
        ),
        (
            "name with _",
            Spec {
                name: "a_b".into(),
                ..ok.clone()
            },
        ),
        (
            "unknown well-known set",
            Spec {
                well_known: vec!["autoscaler".into()],
                ..ok.clone()
            },
        ),
        (
            "policy ARN of a role",
            Spec {
                policy_arns: vec!["arn:aws:iam::123456789012:role/x".into()],
                ..ok.clone()
            },
        ),
        (
            "policy ARN with a region",
            Spec {
                policy_arns: vec!["arn:aws:iam:us-east-1:123456789012:policy/x".into()],
                ..ok.clone()
            },
        ),
    ];
    // eksctl's refusals with attachRoleARN, each alone.
    let attach = Spec {
        attach_role_arn: Some("arn:aws:iam::123456789012:role/x".into()),
        policy_arns: vec![],
        ..ok.clone()
    };
    attach.validate().unwrap();
    for (field, s) in [
        (
            "roleName",
            Spec {
                role_name: Some("r".into()),
                ..attach.clone()
            },
        ),
        (
            "attachPolicyARNs",
            Spec {
                policy_arns: vec!["arn:aws:iam::aws:policy/X".into()],
                ..attach.clone()
            },
        ),
        (
            "attachPolicy",
            Spec {
                inline_policy: Some(serde_json::json!({"Statement": {}})),
                ..attach.clone()
            },
        ),
        (
            "wellKnownPolicies",
            Spec {
                well_known: vec!["autoScaler".into()],
                ..attach.clone()
            },
        ),
        (
            "permissionsBoundary",
            Spec {
                permissions_boundary: Some("arn:aws:iam::aws:policy/X".into()),
                ..attach.clone()
            },
        ),
        (
            "roleOnly",
            Spec {
                role_only: true,
                ..attach.clone()
            },
        ),
        (
            "tags",
            Spec {
                tags: vec![("a".into(), "b".into())],
                ..attach.clone()
            },
        ),
    ] {
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("cannot be combined with") && e.contains(field),
            "{field}: {e}"
        );
    }
    // The explicit flag allows a role without policies; names as
    // Kubernetes allows them pass; 46 tags fit beside pod-identity's 4.
    for good in [
        Spec {
            policy_arns: vec![],
            allow_no_policy: true,
            ..ok.clone()
        },
        Spec {
            name: "a.b-c.d".into(),
            namespace: "a-1".into(),
            ..ok.clone()
        },
        Spec {
            tags: (0..46).map(|i| (format!("k{i}"), "v v".into())).collect(),
            ..ok.clone()
        },
        Spec {
            policy_arns: vec![
                "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy".into(),
            ],
            ..ok.clone()
        },
    ] {
        good.validate().unwrap();
    }
    assert!(validate_cluster_name("prod-1").is_ok());
    for bad in ["1prod", "pro_d", "", &"c".repeat(101)] {
        assert!(validate_cluster_name(bad).is_err(), "{bad}");
    }
    for (what, s) in bad {
        assert!(s.validate().is_err(), "{what}");
    }
    assert_eq!(
        parse_tags("Owner=John, Team=Some Team").unwrap(),
        vec![
            ("Owner".into(), "John".into()),
            ("Team".into(), "Some Team".into())
        ]
    );
    assert!(parse_tags("Owner").is_err());
}
