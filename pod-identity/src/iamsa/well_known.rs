//! eksctl's `wellKnownPolicies`: named permission sets for common add-ons,
//! kept as data (`well_known.json`, from eksctl's definitions). Each set is
//! some AWS managed policies and some inline policies; the inline ones are
//! written as the role's inline policies `pod-identity-<eksctl's name>`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

/// The sets eksctl defines, by their ClusterConfig field name.
pub const NAMES: [&str; 7] = [
    "imageBuilder",
    "autoScaler",
    "awsLoadBalancerController",
    "externalDNS",
    "certManager",
    "ebsCSIController",
    "efsCSIController",
];

/// Prefix of the inline policies written for well-known sets.
pub const INLINE_PREFIX: &str = "pod-identity-";

#[derive(Debug, Deserialize)]
struct Set {
    managed: Vec<String>,
    inline: BTreeMap<String, Vec<Value>>,
}

fn sets() -> &'static BTreeMap<String, Set> {
    static SETS: OnceLock<BTreeMap<String, Set>> = OnceLock::new();
    SETS.get_or_init(|| {
        let all: BTreeMap<String, Value> = serde_json::from_str(include_str!("well_known.json"))
            .expect("well_known.json is checked by a unit test");
        all.into_iter()
            .filter(|(k, _)| !k.starts_with('_'))
            .map(|(k, v)| {
                let set: Set =
                    serde_json::from_value(v).expect("well_known.json is checked by a unit test");
                (k, set)
            })
            .collect()
    })
}

/// What the named sets grant in `partition`: managed policy ARNs and inline
/// policy documents by the name they are written under.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    pub managed: Vec<String>,
    pub inline: BTreeMap<String, Value>,
}

/// Expands set names (already validated against [`NAMES`]).
pub fn expand(names: &[String], partition: &str) -> Grants {
    let mut g = Grants::default();
    for name in names {
        let Some(set) = sets().get(name) else {
            continue;
        };
        for m in &set.managed {
            let arn = format!("arn:{partition}:iam::aws:policy/{m}");
            if !g.managed.contains(&arn) {
                g.managed.push(arn);
            }
        }
        for (policy, statements) in &set.inline {
            let text = serde_json::to_string(statements)
                .unwrap_or_default()
                .replace("{partition}", partition);
            let statements: Value = serde_json::from_str(&text).unwrap_or_default();
            g.inline.insert(
                format!("{INLINE_PREFIX}{policy}"),
                serde_json::json!({"Version": "2012-10-17", "Statement": statements}),
            );
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(doc: &Value) -> Vec<Value> {
        doc["Statement"].as_array().cloned().unwrap_or_default()
    }

    fn actions(doc: &Value) -> Vec<String> {
        statements(doc)
            .iter()
            .flat_map(|s| match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                _ => vec![],
            })
            .collect()
    }

    #[test]
    fn the_data_names_exactly_eksctls_sets() {
        let names: Vec<&str> = sets().keys().map(String::as_str).collect();
        let mut want = NAMES.to_vec();
        want.sort();
        assert_eq!(names, want);
    }

    /// An inline policy's name and actions it must grant.
    type Inline<'a> = (&'a str, &'a [&'a str]);

    /// One row per set: the managed policies, the inline policy names, and
    /// actions each inline set must grant (from eksctl's definitions).
    #[test]
    fn each_set_grants_what_eksctl_grants() {
        let table: [(&str, &[&str], &[Inline]); 7] = [
            (
                "imageBuilder",
                &["arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser"],
                &[],
            ),
            (
                "autoScaler",
                &[],
                &[(
                    "pod-identity-PolicyAutoScaling",
                    &[
                        "autoscaling:SetDesiredCapacity",
                        "autoscaling:TerminateInstanceInAutoScalingGroup",
                        "eks:DescribeNodegroup",
                    ],
                )],
            ),
            (
                "awsLoadBalancerController",
                &[],
                &[(
                    "pod-identity-PolicyAWSLoadBalancerController",
                    &[
                        "elasticloadbalancing:CreateLoadBalancer",
                        "elasticloadbalancing:RegisterTargets",
                        "ec2:CreateSecurityGroup",
                        "wafv2:AssociateWebACL",
                    ],
                )],
            ),
            (
                "externalDNS",
                &[],
                &[
                    (
                        "pod-identity-PolicyExternalDNSChangeSet",
                        &["route53:ChangeResourceRecordSets"],
                    ),
                    (
                        "pod-identity-PolicyExternalDNSHostedZones",
                        &["route53:ListHostedZones", "route53:ListTagsForResource"],
                    ),
                ],
            ),
            (
                "certManager",
                &[],
                &[
                    (
                        "pod-identity-PolicyCertManagerChangeSet",
                        &["route53:ChangeResourceRecordSets"],
                    ),
                    (
                        "pod-identity-PolicyCertManagerGetChange",
                        &["route53:GetChange"],
                    ),
                    (
                        "pod-identity-PolicyCertManagerHostedZones",
                        &["route53:ListHostedZonesByName"],
                    ),
                ],
            ),
            (
                "ebsCSIController",
                &[],
                &[(
                    "pod-identity-PolicyEBSCSIController",
                    &["ec2:CreateVolume", "ec2:DeleteVolume", "ec2:AttachVolume"],
                )],
            ),
            (
                "efsCSIController",
                &[],
                &[(
                    "pod-identity-PolicyEFSCSIController",
                    &[
                        "elasticfilesystem:CreateAccessPoint",
                        "elasticfilesystem:DeleteAccessPoint",
                    ],
                )],
            ),
        ];
        for (set, managed, inline) in table {
            let g = expand(&[set.to_string()], "aws");
            assert_eq!(g.managed, managed.to_vec(), "{set}");
            let names: Vec<&str> = g.inline.keys().map(String::as_str).collect();
            let want: Vec<&str> = inline.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, want, "{set}");
            for (name, must) in inline {
                let doc = &g.inline[*name];
                let got = actions(doc);
                for a in *must {
                    assert!(got.iter().any(|g| g == a), "{set}: {name} lacks {a}");
                }
                // Every statement is an Allow with a resource, and the
                // document fits IAM's inline policy limit on its own.
                for s in statements(doc) {
                    assert_eq!(s["Effect"], "Allow", "{set}");
                    assert!(!s["Resource"].is_null(), "{set}");
                }
                assert!(crate::policy::trust::counted_len(doc) < 10_240, "{set}");
                assert!(!doc.to_string().contains("{partition}"), "{set}");
            }
        }
    }

    #[test]
    fn the_partition_is_filled_in() {
        let g = expand(&["externalDNS".into(), "imageBuilder".into()], "aws-cn");
        assert_eq!(
            g.inline["pod-identity-PolicyExternalDNSChangeSet"]["Statement"][0]["Resource"],
            "arn:aws-cn:route53:::hostedzone/*"
        );
        assert_eq!(
            g.managed,
            ["arn:aws-cn:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser"]
        );
        // Sets asked twice grant once.
        let twice = expand(&["imageBuilder".into(), "imageBuilder".into()], "aws");
        assert_eq!(twice.managed.len(), 1);
    }
}
