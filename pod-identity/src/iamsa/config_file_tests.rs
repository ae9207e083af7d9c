//! ClusterConfig files: what is read, what is refused and why.

use super::*;
#[test]
fn cluster_config() {
    let text = r#"
apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata: {name: prod, region: eu-west-1}
vpc: {cidr: 10.0.0.0/16}
iam:
  withOIDC: true
  serviceAccounts:
  - metadata: {name: s3-reader, namespace: backend, labels: {team: b}}
    attachPolicyARNs: ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]
    roleName: s3-reader
    tags: {Owner: john}
  - metadata: {name: cache}
    attachPolicyARNs: ["arn:aws:iam::aws:policy/AmazonElastiCacheFullAccess"]
    roleOnly: true
    permissionsBoundary: "arn:aws:iam::123456789012:policy/boundary"
"#;
    let c = parse_cluster_config(text).unwrap();
    assert_eq!(c.cluster.as_deref(), Some("prod"));
    assert_eq!(c.region.as_deref(), Some("eu-west-1"));
    assert_eq!(c.specs.len(), 2);
    assert_eq!(c.specs[0].role_name.as_deref(), Some("s3-reader"));
    assert_eq!(c.specs[0].labels, vec![("team".into(), "b".into())]);
    assert_eq!(c.specs[1].namespace, "default");
    assert!(c.specs[1].role_only);
    for (bad, want) in [
            ("kind: Pod", "not an eksctl ClusterConfig"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: []}", "empty"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: a}, wellKnownPolicies: {autoscaler: true}}]}", "not one of eksctl's sets"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: a}, wellKnownPolicies: {autoScaler: false}}]}", "no permissions"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {podIdentityAssociations: [{namespace: a}], serviceAccounts: [{metadata: {name: a}, attachPolicyARNs: [\"arn:aws:iam::aws:policy/X\"]}]}", "iam.podIdentityAssociations"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: a}, attachPolicyARNs: [\"arn:aws:iam::aws:policy/X\"]}, {metadata: {name: a}, attachPolicyARNs: [\"arn:aws:iam::aws:policy/Y\"]}]}", "listed twice"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: my_cluster}\niam: {serviceAccounts: [{metadata: {name: a}, attachPolicyARNs: [\"arn:aws:iam::aws:policy/X\"]}]}", "cluster name"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: a}, attachRoleARN: \"arn:aws:iam::123456789012:role/r\", attachPolicy: {Statement: {Effect: Allow}}}]}", "cannot be combined with attachPolicy"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: a}, roleNmae: x}]}", "roleNmae"),
            ("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam: {serviceAccounts: [{metadata: {name: A}}]}", "valid Kubernetes name"),
            (": :", ""),
        ] {
            let e = parse_cluster_config(bad).unwrap_err();
            assert!(e.0.contains(want), "{bad}: {e}");
        }
}

#[test]
fn attach_policy_is_read_as_the_role_inline_policy() {
    let text = "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  serviceAccounts:\n  - metadata: {name: app, namespace: ns}\n    attachPolicy:\n      Version: \"2012-10-17\"\n      Statement:\n      - Effect: Allow\n        Action: [\"s3:GetObject\"]\n        Resource: \"arn:aws:s3:::b/*\"\n";
    let c = parse_cluster_config(text).unwrap();
    assert_eq!(
        c.specs[0].inline_policy,
        Some(serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}]}))
    );
    for bad in [
        "attachPolicy: {Statement: []}",
        "attachPolicy: [1]",
        "attachPolicy: {Version: x}",
    ] {
        let text = format!("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  serviceAccounts:\n  - metadata: {{name: app}}\n    {bad}\n");
        let err = parse_cluster_config(&text).unwrap_err();
        assert!(err.0.contains("at least one Statement"), "{bad}: {err}");
    }
    let huge = format!(
            "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  serviceAccounts:\n  - metadata: {{name: app}}\n    attachPolicy: {{Statement: [{{Effect: Allow, Action: \"s3:*\", Resource: [{}]}}]}}\n",
            (0..400).map(|i| format!("\"arn:aws:s3:::bucket-{i}/*\"")).collect::<Vec<_>>().join(", ")
        );
    let err = parse_cluster_config(&huge).unwrap_err();
    assert!(err.0.contains("IAM allows at most 10240"), "{err}");
}

#[test]
fn eksctls_own_example_file_reads_unchanged() {
    let text = include_str!("../../tests/data/eksctl-13-iamserviceaccounts.yaml");
    let c = parse_cluster_config(text).unwrap();
    assert_eq!(c.cluster.as_deref(), Some("cluster-13"));
    assert!(c.with_oidc);
    let names: Vec<String> = c
        .specs
        .iter()
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    assert_eq!(
        names,
        [
            "backend-apps/s3-reader",
            "kube-system/aws-load-balancer-controller",
            "backend-apps/cache-access",
            "kube-system/cluster-autoscaler"
        ]
    );
    assert_eq!(c.specs[1].well_known, ["awsLoadBalancerController"]);
    assert_eq!(c.specs[2].policy_arns.len(), 2);
    assert!(c.specs[3].inline_policy.is_some());
    assert_eq!(
        c.specs[3].labels,
        [("aws-usage".to_string(), "cluster-ops".to_string())]
    );
}
