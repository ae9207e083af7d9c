//! Table tests of the checklist: a healthy set of facts passes every check;
//! each fault, planted in memory, fails exactly its check.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde_json::json;

use super::*;
use crate::doctor::facts::{AgentFacts, ContainerFacts, ServiceAccountFacts, TokenVolume};
use crate::iam::{Provider, RoleState};

const ROLE: &str = "arn:aws:iam::123456789012:role/app";
const ISSUER: &str = "https://oidc.example/c1";
const PROVIDER: &str = "arn:aws:iam::123456789012:oidc-provider/oidc.example/c1";
const NOW: i64 = 1_800_000_000;

fn certs(not_after: (i32, u8, u8)) -> (String, Vec<Vec<u8>>) {
    super::cert::test_pki(&["pod-identity.kube-system.svc"], not_after)
}

fn skip_selector() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "pod-identity.amazonaws.com/skip".into(),
            operator: "NotIn".into(),
            values: Some(vec!["true".into()]),
        }]),
        match_labels: None,
    }
}

fn webhook(ca: &str, chain: Vec<Vec<u8>>) -> WebhookFacts {
    WebhookFacts {
        configuration: "pod-identity".into(),
        name: "pod-identity-webhook.amazonaws.com".into(),
        failure_policy: contract::mode::FailurePolicy::Fail,
        namespace_selector: Some(skip_selector()),
        object_selector: Some(skip_selector()),
        ca_bundle: ca.as_bytes().to_vec(),
        server_name: "pod-identity.kube-system.svc".into(),
        cert: ServingCert::Secret {
            name: "kube-system/pod-identity".into(),
            chain,
        },
    }
}

fn env(names: &[&str]) -> Vec<String> {
    names.iter().map(|k| k.to_string()).collect()
}

fn web_identity_container(name: &str) -> ContainerFacts {
    ContainerFacts {
        name: name.into(),
        env: env(&["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_REGION"]),
        mounts: vec![(
            "aws-iam-token".into(),
            "/var/run/secrets/eks.amazonaws.com/serviceaccount".into(),
        )],
        ready: Some(true),
        init: false,
        role_arn: Some(ROLE.into()),
    }
}

fn healthy() -> Facts {
    let (ca, chain) = certs((2030, 1, 1));
    let trust = json!({"Statement": [{"Effect": "Allow", "Principal": {"Federated": PROVIDER},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {"oidc.example/c1:sub": "system:serviceaccount:app:reader", "oidc.example/c1:aud": "sts.amazonaws.com"}}}]});
    Facts {
        now: NOW,
        prefix: "eks.amazonaws.com".into(),
        namespace: "app".into(),
        service_account_name: "reader".into(),
        namespace_labels: Some(BTreeMap::new()),
        service_account: Some(ServiceAccountFacts {
            annotations: BTreeMap::from([("eks.amazonaws.com/role-arn".into(), ROLE.into())]),
            role_annotated_at: Some(NOW - 1000),
        }),
        config_map: None,
        pod: Some(PodFacts {
            created: Some(NOW - 500),
            node: Some("node-1".into()),
            service_account: "reader".into(),
            containers: vec![web_identity_container("app")],
            token_volumes: vec![TokenVolume {
                name: "aws-iam-token".into(),
                audience: Some("sts.amazonaws.com".into()),
                expiration_seconds: Some(86400),
            }],
            ..Default::default()
        }),
        pod_name: Some("web".into()),
        webhooks: vec![webhook(&ca, chain)],
        issuer: Ok(ISSUER.into()),
        provider: Lookup::Found(Provider {
            arn: PROVIDER.into(),
            client_ids: vec!["sts.amazonaws.com".into()],
            thumbprints: vec![],
            tags: BTreeMap::new(),
        }),
        role: Lookup::Found(RoleState {
            arn: ROLE.into(),
            trust,
            ..Default::default()
        }),
        exchange: None,
        agent: Some(AgentFacts::default()),
        associations: None,
        default_mode: contract::mode::CredentialMode::WebIdentity,
        sidecar_name: "aws-credential-agent".into(),
    }
}

fn outcome(f: &Facts) -> (BTreeSet<&'static str>, BTreeSet<&'static str>, Vec<Check>) {
    let checks = run(f);
    let by = |s: Status| {
        checks
            .iter()
            .filter(|c| c.status == s)
            .map(|c| c.id)
            .collect()
    };
    (by(Status::Fail), by(Status::Warn), checks)
}

fn set_annotation(f: &mut Facts, key: &str, value: Option<&str>) {
    let sa = f.service_account.as_mut().unwrap();
    sa.annotations.remove("eks.amazonaws.com/role-arn");
    if let Some(v) = value {
        sa.annotations.insert(key.into(), v.into());
    }
}

fn uninjected(f: &mut Facts) {
    let p = f.pod.as_mut().unwrap();
    p.containers = vec![ContainerFacts {
        name: "app".into(),
        ..Default::default()
    }];
    p.token_volumes.clear();
}

#[test]
fn healthy_passes_everything() {
    let (failed, warned, checks) = outcome(&healthy());
    assert!(failed.is_empty() && warned.is_empty(), "{checks:#?}");
    let mut sa_only = healthy();
    sa_only.pod = None;
    sa_only.pod_name = None;
    let (failed, warned, checks) = outcome(&sa_only);
    assert!(failed.is_empty() && warned.is_empty(), "{checks:#?}");
}

type Plant = fn(&mut Facts);

#[test]
fn each_fault_fails_exactly_its_check() {
    let faults: Vec<(&str, Plant, &str, &str)> = vec![
        (
            "namespace missing",
            |f| f.namespace_labels = None,
            "serviceaccount",
            "namespace app does not exist",
        ),
        (
            "ServiceAccount missing",
            |f| f.service_account = None,
            "serviceaccount",
            "does not exist",
        ),
        (
            "missing annotation",
            |f| set_annotation(f, "", None),
            "serviceaccount",
            "has no annotation",
        ),
        (
            "typo'd prefix",
            |f| set_annotation(f, "eks.amazonaws.co/role-arn", Some(ROLE)),
            "serviceaccount",
            "looks like a typo",
        ),
        (
            "role_arn instead of role-arn",
            |f| set_annotation(f, "eks.amazonaws.com/role_arn", Some(ROLE)),
            "serviceaccount",
            "looks like a typo",
        ),
        (
            "running with the role the ServiceAccount named before",
            |f| {
                f.pod.as_mut().unwrap().containers[0].role_arn =
                    Some("arn:aws:iam::123456789012:role/old".into());
                f.service_account.as_mut().unwrap().role_annotated_at = Some(NOW - 100);
            },
            "mutation",
            "app has AWS_ROLE_ARN=arn:aws:iam::123456789012:role/old, but ServiceAccount app/reader names arn:aws:iam::123456789012:role/app now: the annotation changed after the pod was created",
        ),
        (
            "invalid ARN",
            |f| {
                set_annotation(
                    f,
                    "eks.amazonaws.com/role-arn",
                    Some("arn:aws:iam::1:role/x"),
                )
            },
            "serviceaccount",
            "not a role ARN",
        ),
        (
            "no webhook",
            |f| f.webhooks.clear(),
            "webhook",
            "no MutatingWebhookConfiguration",
        ),
        (
            "namespace opted out",
            |f| {
                f.namespace_labels = Some(BTreeMap::from([(
                    "pod-identity.amazonaws.com/skip".into(),
                    "true".into(),
                )]));
            },
            "webhook",
            "namespaceSelector",
        ),
        (
            "caBundle of another CA",
            |f| f.webhooks[0].ca_bundle = certs((2030, 1, 1)).0.into_bytes(),
            "webhook",
            "another CA",
        ),
        (
            "expired certificate",
            |f| {
                let (ca, chain) = certs((2026, 1, 1));
                f.webhooks[0] = webhook(&ca, chain);
            },
            "webhook",
            "expired",
        ),
        (
            "certificate for another name",
            |f| f.webhooks[0].server_name = "other.ns.svc".into(),
            "webhook",
            "not valid for other.ns.svc",
        ),
        (
            "certificate not found",
            |f| f.webhooks[0].cert = ServingCert::NotFound("no Secret".into()),
            "webhook",
            "no Secret",
        ),
        (
            "created before the annotation",
            |f| {
                uninjected(f);
                f.service_account.as_mut().unwrap().role_annotated_at = Some(NOW);
            },
            "mutation",
            "before its ServiceAccount got the role annotation",
        ),
        (
            "created while the webhook was unregistered (failurePolicy Fail)",
            uninjected,
            "mutation",
            "while the webhook was not registered (with failurePolicy Fail an unavailable webhook rejects pods",
        ),
        (
            "created while the webhook was down (failurePolicy Ignore)",
            |f| {
                uninjected(f);
                f.webhooks[0].failure_policy = contract::mode::FailurePolicy::Ignore;
            },
            "mutation",
            "while the webhook was unavailable (failurePolicy Ignore admits pods unmutated)",
        ),
        (
            "hostNetwork in sidecar mode",
            |f| {
                uninjected(f);
                f.default_mode = contract::mode::CredentialMode::Sidecar;
                f.pod.as_mut().unwrap().host_network = true;
            },
            "mutation",
            "hostNetwork",
        ),
        (
            "variables without the mount",
            |f| f.pod.as_mut().unwrap().containers[0].mounts.clear(),
            "mutation",
            "no projected token volume mounted",
        ),
        (
            "one container missed",
            |f| {
                f.pod.as_mut().unwrap().containers.push(ContainerFacts {
                    name: "second".into(),
                    ..Default::default()
                })
            },
            "mutation",
            "second",
        ),
        (
            "issuer unreadable",
            |f| f.issuer = Err("forbidden".into()),
            "provider",
            "forbidden",
        ),
        (
            "no provider",
            |f| f.provider = Lookup::Missing,
            "provider",
            "has no IAM OIDC provider",
        ),
        (
            "provider without the audience",
            |f| {
                f.provider = Lookup::Found(Provider {
                    arn: PROVIDER.into(),
                    client_ids: vec!["other".into()],
                    thumbprints: vec![],
                    tags: BTreeMap::new(),
                })
            },
            "provider",
            "does not list the token audience",
        ),
        (
            "role missing",
            |f| f.role = Lookup::Missing,
            "role",
            "does not exist",
        ),
        (
            "trust for another ServiceAccount",
            |f| {
                if let Lookup::Found(r) = &mut f.role {
                    r.trust["Statement"][0]["Condition"]["StringEquals"]["oidc.example/c1:sub"] =
                        json!("system:serviceaccount:app:other");
                }
            },
            "role",
            "system:serviceaccount:app:other",
        ),
        (
            "trust for another audience",
            |f| {
                if let Lookup::Found(r) = &mut f.role {
                    r.trust["Statement"][0]["Condition"]["StringEquals"]["oidc.example/c1:aud"] =
                        json!("other");
                }
            },
            "role",
            "\"other\"",
        ),
        (
            "trust for another provider",
            |f| {
                if let Lookup::Found(r) = &mut f.role {
                    r.trust["Statement"][0]["Principal"]["Federated"] =
                        json!("arn:aws:iam::123456789012:oidc-provider/x");
                }
            },
            "role",
            "principal",
        ),
        (
            "explicit deny",
            |f| {
                if let Lookup::Found(r) = &mut f.role {
                    let mut deny = r.trust["Statement"][0].clone();
                    deny["Effect"] = json!("Deny");
                    r.trust["Statement"].as_array_mut().unwrap().push(deny);
                }
            },
            "role",
            "denies",
        ),
        (
            "STS refuses",
            |f| f.exchange = Some(Err("AccessDenied: not authorized".into())),
            "exchange",
            "AccessDenied",
        ),
        (
            "agent not ready",
            |f| {
                let p = f.pod.as_mut().unwrap();
                p.containers[0].env = env(&[
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                ]);
                f.agent = Some(AgentFacts {
                    eks_auth: Default::default(),
                    pods: vec![("agent-x".into(), false)],
                });
            },
            "agent",
            "not ready",
        ),
        (
            "no agent on the node",
            |f| {
                let p = f.pod.as_mut().unwrap();
                p.containers[0].env = env(&[
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                ]);
            },
            "agent",
            "no credential agent pod runs on node node-1",
        ),
        (
            "sidecar not ready",
            |f| {
                let p = f.pod.as_mut().unwrap();
                p.containers[0].env = env(&[
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                ]);
                p.containers.push(ContainerFacts {
                    name: "aws-credential-agent".into(),
                    ready: Some(false),
                    init: true,
                    ..Default::default()
                });
            },
            "agent",
            "sidecar aws-credential-agent is not ready",
        ),
    ];
    for (name, plant, check, cause) in faults {
        let mut f = healthy();
        plant(&mut f);
        let (failed, _, checks) = outcome(&f);
        assert_eq!(failed, BTreeSet::from([check]), "{name}: {checks:#?}");
        let c = checks.iter().find(|c| c.id == check).unwrap();
        assert!(c.evidence.contains(cause), "{name}: {}", c.evidence);
        assert!(c.fix.is_some(), "{name}: a failure says what to do");
    }
}

#[test]
fn warnings() {
    let cases: Vec<(&str, Plant, &str)> = vec![
        (
            "failurePolicy Ignore",
            |f| f.webhooks[0].failure_policy = contract::mode::FailurePolicy::Ignore,
            "webhook",
        ),
        (
            "certificate expiring soon",
            |f| {
                let (ca, chain) = certs((2027, 1, 20));
                f.webhooks[0] = webhook(&ca, chain);
            },
            "webhook",
        ),
        (
            "typo beside a valid annotation",
            |f| {
                f.service_account
                    .as_mut()
                    .unwrap()
                    .annotations
                    .insert("eks.amazonaws.con/audience".into(), "x".into());
            },
            "serviceaccount",
        ),
        (
            "role unreadable",
            |f| f.role = Lookup::Unreadable("AccessDenied".into()),
            "role",
        ),
        (
            "a Deny the evaluator cannot read",
            |f| {
                let Lookup::Found(r) = &mut f.role else {
                    unreachable!()
                };
                r.trust["Statement"].as_array_mut().unwrap().push(json!({
                    "Effect": "Deny", "Principal": {"Federated": PROVIDER},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}}));
            },
            "role",
        ),
        (
            "another AWS_ROLE_ARN in a pod newer than the annotation",
            |f| {
                f.pod.as_mut().unwrap().containers[0].role_arn =
                    Some("arn:aws:iam::123456789012:role/own".into());
            },
            "mutation",
        ),
        (
            "regional STS without a region",
            |f| {
                f.pod.as_mut().unwrap().containers[0].env = env(&[
                    "AWS_ROLE_ARN",
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "AWS_STS_REGIONAL_ENDPOINTS",
                ]);
            },
            "region",
        ),
        (
            "sts-regional-endpoints of another value",
            |f| {
                f.service_account.as_mut().unwrap().annotations.insert(
                    "eks.amazonaws.com/sts-regional-endpoints".into(),
                    "yes".into(),
                );
            },
            "region",
        ),
    ];
    for (name, plant, check) in cases {
        let mut f = healthy();
        plant(&mut f);
        let (failed, warned, checks) = outcome(&f);
        assert!(failed.is_empty(), "{name}: {checks:#?}");
        assert_eq!(warned, BTreeSet::from([check]), "{name}: {checks:#?}");
    }
}

#[test]
fn agent_and_sidecar_modes_pass_when_ready() {
    let mut f = healthy();
    f.pod.as_mut().unwrap().containers[0].env = env(&[
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    ]);
    f.agent = Some(AgentFacts {
        eks_auth: Default::default(),
        pods: vec![("agent-x".into(), true)],
    });
    let (failed, _, checks) = outcome(&f);
    assert!(failed.is_empty(), "{checks:#?}");
    assert!(checks
        .iter()
        .any(|c| c.id == "sdk" && c.evidence.contains("container credentials")));
    // An opted-out pod is named as such.
    let mut f = healthy();
    uninjected(&mut f);
    f.pod
        .as_mut()
        .unwrap()
        .labels
        .insert("pod-identity.amazonaws.com/skip".into(), "true".into());
    let (failed, _, checks) = outcome(&f);
    assert_eq!(
        failed,
        BTreeSet::from(["webhook", "mutation"]),
        "{checks:#?}"
    );
    let m = checks.iter().find(|c| c.id == "mutation").unwrap();
    assert!(m.evidence.contains("objectSelector"), "{}", m.evidence);
}

#[test]
fn the_audience_is_the_injected_volumes_not_the_first() {
    // A service mesh's token listed before the injected one.
    let mut f = healthy();
    let p = f.pod.as_mut().unwrap();
    p.token_volumes.insert(
        0,
        TokenVolume {
            name: "istio-token".into(),
            audience: Some("istio-ca".into()),
            expiration_seconds: Some(43200),
        },
    );
    p.containers[0]
        .mounts
        .push(("istio-token".into(), "/var/run/secrets/tokens".into()));
    let (failed, warned, checks) = outcome(&f);
    assert!(failed.is_empty() && warned.is_empty(), "{checks:#?}");
    let token = checks.iter().find(|c| c.id == "token").unwrap();
    assert!(
        token
            .evidence
            .contains("volume aws-iam-token: audience sts.amazonaws.com"),
        "{}",
        token.evidence
    );
    // A renamed injected volume is found by where it is mounted.
    let mut f = healthy();
    let p = f.pod.as_mut().unwrap();
    p.token_volumes.insert(
        0,
        TokenVolume {
            name: "istio-token".into(),
            audience: Some("istio-ca".into()),
            expiration_seconds: None,
        },
    );
    p.token_volumes[1].name = "custom".into();
    p.containers[0].mounts[0].0 = "custom".into();
    let (failed, _, checks) = outcome(&f);
    assert!(failed.is_empty(), "{checks:#?}");
}

#[test]
fn eks_webhook_config_map_roles_and_pod_identity_pods_are_understood() {
    // EKS's managed webhook, served on the control plane's loopback.
    let mut f = healthy();
    f.webhooks[0].configuration = "pod-identity-webhook".into();
    f.webhooks[0].name = crate::doctor::gather::EKS_WEBHOOK_NAME.into();
    f.webhooks[0].cert = ServingCert::ControlPlane {
        url: "https://127.0.0.1:23443/mutate".into(),
    };
    let (failed, warned, checks) = outcome(&f);
    assert!(failed.is_empty() && warned.is_empty(), "{checks:#?}");
    let w = checks.iter().find(|c| c.id == "webhook").unwrap();
    assert!(
        w.evidence.contains("served by the control plane"),
        "{}",
        w.evidence
    );
    use crate::doctor::gather::{is_loopback, is_pod_identity_webhook};
    for (config, hook, service, asked, want) in [
        (
            "pod-identity-webhook",
            "iam-for-pods.amazonaws.com",
            None,
            None,
            true,
        ),
        (
            "pod-identity",
            "pod-identity-webhook.amazonaws.com",
            None,
            None,
            true,
        ),
        (
            "my-release",
            "x.example.com",
            Some("my-pod-identity-webhook"),
            None,
            true,
        ),
        ("mine", "x.example.com", None, Some("mine"), true),
        (
            "istio-sidecar-injector",
            "sidecar-injector.istio.io",
            Some("istiod"),
            None,
            false,
        ),
    ] {
        assert_eq!(
            is_pod_identity_webhook(config, hook, service, asked),
            want,
            "{config}/{hook}"
        );
    }
    for (host, want) in [
        ("127.0.0.1", true),
        ("127.1.2.3", true),
        ("[::1]", true),
        ("localhost", true),
        ("10.0.0.1", false),
        ("example.com", false),
    ] {
        assert_eq!(is_loopback(host), want, "{host}");
    }

    // A role from the webhook's ConfigMap (--watch-config-map).
    let mut f = healthy();
    set_annotation(&mut f, "", None);
    f.config_map = Some(crate::doctor::facts::ConfigMapRole {
        source: "eks/pod-identity-webhook".into(),
        role_arn: ROLE.into(),
        audience: None,
    });
    let (failed, warned, checks) = outcome(&f);
    assert!(failed.is_empty() && warned.is_empty(), "{checks:#?}");
    assert!(
        checks[0]
            .evidence
            .contains("ConfigMap eks/pod-identity-webhook"),
        "{}",
        checks[0].evidence
    );

    // An EKS Pod Identity pod: container credentials, audience
    // pods.eks.amazonaws.com, no annotation.
    let mut f = healthy();
    set_annotation(&mut f, "", None);
    f.role = Lookup::NotAsked;
    with_pod_identity_container(&mut f);
    f.agent = Some(AgentFacts {
        eks_auth: Default::default(),
        pods: vec![("eks-pod-identity-agent-x".into(), true)],
    });
    let (failed, warned, checks) = outcome(&f);
    assert!(failed.is_empty() && warned.is_empty(), "{checks:#?}");
    assert!(
        checks[0].evidence.contains("EKS Pod Identity"),
        "{}",
        checks[0].evidence
    );
    for id in ["provider", "role", "exchange"] {
        let c = checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(c.status, Status::Skip, "{id}");
    }
}

/// The pod's container as EKS (and this project's webhook) injects Pod
/// Identity: container credentials, the eks-pod-identity-token volume.
fn with_pod_identity_container(f: &mut Facts) {
    let p = f.pod.as_mut().unwrap();
    p.containers[0] = ContainerFacts {
        name: "app".into(),
        env: env(&[
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        ]),
        mounts: vec![(
            "eks-pod-identity-token".into(),
            "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount".into(),
        )],
        ready: Some(true),
        ..Default::default()
    };
    p.token_volumes = vec![TokenVolume {
        name: "eks-pod-identity-token".into(),
        audience: Some("pods.eks.amazonaws.com".into()),
        expiration_seconds: Some(86400),
    }];
}

/// A pod served by this project's Pod Identity: association Ready, the
/// role trusting the broker's role with the pod's tags, broker pods ready,
/// the node agent with its Pod Identity backend.
fn our_pod_identity() -> Facts {
    use crate::doctor::facts::{AssociationFacts, BoundAssociation, BrokerFacts};
    use crate::policy::broker_trust::{new_document, Grant};
    let mut f = healthy();
    set_annotation(&mut f, "", None);
    with_pod_identity_container(&mut f);
    let broker = "arn:aws:iam::123456789012:role/broker";
    f.role = Lookup::Found(RoleState {
        arn: ROLE.into(),
        trust: new_document(&Grant {
            broker_role_arn: broker.into(),
            cluster: "prod".into(),
            namespace: "app".into(),
            service_account: "reader".into(),
        }),
        ..Default::default()
    });
    f.agent = Some(AgentFacts {
        pods: vec![("pod-identity-agent-x".into(), true)],
        eks_auth: [(
            "pod-identity-agent-x".to_string(),
            "https://pod-identity-broker.pod-identity.svc:443".to_string(),
        )]
        .into(),
    });
    f.associations = Some(AssociationFacts {
        bound: Some(BoundAssociation {
            name: "app.reader".into(),
            role_arn: ROLE.into(),
            ready: "True".into(),
            id: "a-0123456789abcdefg".into(),
            ..Default::default()
        }),
        shadowed: vec![],
        broker: BrokerFacts {
            ready: 2,
            total: 2,
            role_arn: Some(broker.into()),
            cluster_name: Some("prod".into()),
        },
    });
    f
}

#[test]
fn association_pods_are_checked_and_each_fault_fails_its_check() {
    let f = our_pod_identity();
    let (failed, warned, checks) = outcome(&f);
    assert!(failed.is_empty() && warned.is_empty(), "{checks:#?}");
    for id in ["association", "role", "broker", "agent"] {
        let c = checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(c.status, Status::Pass, "{id}: {c:?}");
    }
    type Fault = fn(&mut Facts);
    let faults: [(&str, Fault); 6] = [
        ("association", |f| {
            f.associations.as_mut().unwrap().bound = None
        }),
        ("association", |f| {
            let b = f.associations.as_mut().unwrap().bound.as_mut().unwrap();
            b.ready = "False".into();
            b.message = "roleArn: not a role ARN".into();
        }),
        ("role", |f| {
            if let Lookup::Found(r) = &mut f.role {
                r.trust = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/broker"}, "Action": "sts:AssumeRole"}]});
            }
        }),
        ("role", |f| {
            f.associations.as_mut().unwrap().broker.cluster_name = Some("staging".into())
        }),
        ("broker", |f| {
            f.associations.as_mut().unwrap().broker.ready = 0
        }),
        ("agent", |f| f.agent.as_mut().unwrap().eks_auth.clear()),
    ];
    for (want, plant) in faults {
        let mut f = our_pod_identity();
        plant(&mut f);
        let (failed, _, checks) = outcome(&f);
        assert_eq!(failed, BTreeSet::from([want]), "{want}: {checks:#?}");
    }
    // The TagSession refusal names the action.
    let mut f = our_pod_identity();
    if let Lookup::Found(r) = &mut f.role {
        r.trust = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/broker"}, "Action": "sts:AssumeRole"}]});
    }
    let (_, _, checks) = outcome(&f);
    let role = checks.iter().find(|c| c.id == "role").unwrap();
    assert!(
        role.evidence.contains("sts:TagSession"),
        "{}",
        role.evidence
    );
}
