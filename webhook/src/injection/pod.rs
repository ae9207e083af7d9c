//! The pure mutation: (pod, resolved identity, configuration) -> JSON Patch.
//!
//! It follows the upstream webhook's rules so the resulting pods match its
//! fixtures, but emits one precise `add` per env var, mount, volume or label
//! instead of rewriting whole containers. It reads the pod through a
//! [`PodView`] (only the fields it needs) and stops once the patch would
//! exceed `InjectionConfig::max_patch_bytes`.

use std::collections::HashSet;

use serde_json::json;

use super::annotations::{read_pod, POD_IDENTITY_LABEL};
use super::config::{defaults, InjectionConfig, TOKEN_NAME, VOLUME_NAME};
use super::identity::{Identity, MAX_EXPIRATION_JITTER};
use super::mode::{self, Mode, PodFacts};
use super::patch::{
    escape_token, EnvVar, Ops, PatchOp, PatchValue, Projected, ProjectedSource,
    ServiceAccountToken, TokenVolume, VolumeMount,
};
use super::sidecar::sidecar_container;
use super::view::{ContainerView, MetadataView, Named, PodView, StrPairs};
use super::warning::Warning;
use crate::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodMutation {
    pub ops: Vec<PatchOp>,
    pub warnings: Vec<Warning>,
}

/// Per-mode names of what is injected.
struct Plan<'a> {
    volume_name: &'a str,
    mount_path: &'a str,
    /// The token file's name inside the volume.
    token_file_name: &'a str,
    /// The two variables that carry the identity, with their values.
    identity_vars: [(&'static str, String); 2],
}

fn invalid(msg: impl std::fmt::Display) -> Error {
    Error::InvalidPod(msg.to_string())
}

/// Names of the items of a list of objects with a `name` field.
fn names<'a>(list: Option<&'a Vec<Named<'_>>>, what: &str) -> Result<HashSet<&'a str>> {
    let mut out = HashSet::new();
    for (i, item) in list.into_iter().flatten().enumerate() {
        let name = item
            .name
            .as_deref()
            .ok_or_else(|| invalid(format!("{what}[{i}] has no name")))?;
        out.insert(name);
    }
    Ok(out)
}

/// What the variables, volume and mount of `mode` are.
fn plan<'a>(mode: &Mode, cfg: &'a InjectionConfig, windows: bool) -> Plan<'a> {
    let cc = &cfg.container_credentials;
    let cc_token_file = || token_path(&cc.mount_path, &cc.token_path, windows);
    let container_credentials = |uri: String| Plan {
        volume_name: &cc.volume_name,
        mount_path: &cc.mount_path,
        token_file_name: &cc.token_path,
        identity_vars: [
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", cc_token_file()),
        ],
    };
    match mode {
        Mode::WebIdentity { role_arn } => Plan {
            volume_name: VOLUME_NAME,
            mount_path: &cfg.token_mount_path,
            token_file_name: TOKEN_NAME,
            identity_vars: [
                ("AWS_ROLE_ARN", role_arn.to_string()),
                (
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    token_path(&cfg.token_mount_path, TOKEN_NAME, windows),
                ),
            ],
        },
        Mode::Agent { role_arn } => {
            container_credentials(contract::agent::role_uri(&cfg.agent_url, role_arn.as_str()))
        }
        Mode::Sidecar { .. } => container_credentials(cfg.sidecar.ports.credentials_url()),
        Mode::ContainerCredentials => container_credentials(cc.full_uri.clone()),
    }
}

/// Computes the patch for `pod` given its resolved identity. Returns an empty
/// patch when the pod already carries everything (so re-running the webhook on
/// its own output changes nothing).
pub fn mutate(
    pod: &PodView<'_>,
    identity: &Identity,
    cfg: &InjectionConfig,
) -> Result<PodMutation> {
    let metadata = pod.metadata.as_ref();
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| invalid("spec is missing"))?;
    let empty = StrPairs::default();
    let annotations: Vec<(&str, &str)> = metadata
        .and_then(|m| m.annotations.as_ref())
        .unwrap_or(&empty)
        .iter()
        .collect();
    let labels = metadata.and_then(|m| m.labels.as_ref());
    let containers = spec
        .containers
        .as_ref()
        .ok_or_else(|| invalid("spec.containers is missing"))?;
    let init_containers = spec.init_containers.as_ref();
    let volumes = spec.volumes.as_ref();

    let mut warnings = Vec::new();
    let pod_annotations = read_pod(
        &annotations,
        &cfg.annotation_prefix,
        identity.token_expiration,
        &mut warnings,
    );
    let mut token_expiration = pod_annotations
        .token_expiration
        .unwrap_or(identity.token_expiration);
    let facts = PodFacts {
        requested: pod_annotations.credential_mode,
        host_network: spec.host_network == Some(true),
    };
    let (mode, fallback) = mode::choose(&identity.mode, facts, cfg.native_sidecars);
    warnings.extend(fallback);

    let windows = spec.node_selector.as_ref().is_some_and(|n| {
        n.iter().any(|(k, v)| {
            (k == "kubernetes.io/os" || k == "beta.kubernetes.io/os") && v == "windows"
        })
    });
    let plan = plan(&mode, cfg, windows);
    if mode == Mode::ContainerCredentials && token_expiration == defaults::TOKEN_EXPIRATION {
        token_expiration -= identity.expiration_jitter.clamp(0, MAX_EXPIRATION_JITTER);
    }

    let mut ops = Ops::new(cfg.max_patch_bytes);
    if matches!(mode, Mode::ContainerCredentials | Mode::Agent { .. }) {
        label_ops(metadata, labels, &mut ops)?;
    }
    // The projected token volume, first in the list as upstream puts it.
    if !names(volumes, "spec.volumes")?.contains(plan.volume_name) {
        let volume = TokenVolume {
            name: plan.volume_name.to_string(),
            projected: Projected {
                sources: [ProjectedSource {
                    service_account_token: ServiceAccountToken {
                        audience: identity.audience.clone(),
                        expiration_seconds: token_expiration,
                        path: plan.token_file_name.to_string(),
                    },
                }],
            },
        };
        match volumes {
            Some(_) => ops.push(PatchOp::add("/spec/volumes/0", PatchValue::Volume(volume)))?,
            None => ops.push(PatchOp::add(
                "/spec/volumes",
                PatchValue::Volumes(vec![volume]),
            ))?,
        }
    }

    let region_vars: Vec<(&'static str, &str)> = match cfg.region.as_deref() {
        Some(r) => vec![("AWS_DEFAULT_REGION", r), ("AWS_REGION", r)],
        None => Vec::new(),
    };
    for (list, field) in [
        (Some(containers), "containers"),
        (init_containers, "initContainers"),
    ] {
        for (i, c) in list.into_iter().flatten().enumerate() {
            let what = format!("spec.{field}[{i}]");
            let name = c
                .name
                .as_deref()
                .ok_or_else(|| invalid(format!("{what} has no name")))?;
            if pod_annotations.skip_containers.contains(name) {
                continue;
            }
            if field == "initContainers" && name == cfg.sidecar.name {
                continue; // our own sidecar (on reinvocation)
            }
            container_ops(
                &format!("/spec/{field}/{i}"),
                &what,
                c,
                &plan,
                identity.regional_sts,
                &region_vars,
                &mut ops,
            )?;
        }
    }
    // The sidecar goes first among the init containers; added last so the
    // indices used above still name the pod's own init containers.
    if let Mode::Sidecar { role_arn } = &mode {
        // Every init container has a name: the loop above checked.
        let present = init_containers
            .into_iter()
            .flatten()
            .any(|c| c.name.as_deref() == Some(cfg.sidecar.name.as_str()));
        if !present {
            let sidecar =
                sidecar_container(cfg, role_arn, &plan.identity_vars[1].1, plan.mount_path);
            match init_containers {
                Some(_) => ops.push(PatchOp::add("/spec/initContainers/0", sidecar))?,
                None => ops.push(PatchOp::add("/spec/initContainers", json!([sidecar])))?,
            }
        }
    }
    Ok(PodMutation {
        ops: ops.into_ops(),
        warnings,
    })
}

/// The `eks.amazonaws.com/pod-identity: enabled` label, keeping the pod's
/// other labels.
fn label_ops(
    metadata: Option<&MetadataView<'_>>,
    labels: Option<&StrPairs<'_>>,
    ops: &mut Ops,
) -> Result<()> {
    if labels.is_some_and(|l| {
        l.iter()
            .any(|(k, v)| k == POD_IDENTITY_LABEL && v == "enabled")
    }) {
        return Ok(());
    }
    if labels.is_some() {
        return ops.push(PatchOp::add(
            format!("/metadata/labels/{}", escape_token(POD_IDENTITY_LABEL)),
            json!("enabled"),
        ));
    }
    if metadata.is_none() {
        ops.push(PatchOp::add("/metadata", json!({})))?;
    }
    ops.push(PatchOp::add(
        "/metadata/labels",
        json!({ POD_IDENTITY_LABEL: "enabled" }),
    ))
}

fn container_ops(
    base: &str,
    what: &str,
    c: &ContainerView<'_>,
    plan: &Plan<'_>,
    regional_sts: bool,
    region_vars: &[(&'static str, &str)],
    ops: &mut Ops,
) -> Result<()> {
    let env = c.env.as_ref();
    let env_names = names(env, &format!("{what}.env"))?;
    let reserved_defined = plan
        .identity_vars
        .iter()
        .any(|(n, _)| env_names.contains(n));
    let region_defined =
        env_names.contains("AWS_REGION") || env_names.contains("AWS_DEFAULT_REGION");
    let sts_defined = env_names.contains("AWS_STS_REGIONAL_ENDPOINTS");
    if reserved_defined && region_defined && sts_defined {
        // Upstream's "already has everything" rule: leave the container alone.
        return Ok(());
    }

    let mut new_env: Vec<EnvVar> = Vec::new();
    if !sts_defined && regional_sts {
        new_env.push(EnvVar {
            name: "AWS_STS_REGIONAL_ENDPOINTS",
            value: "regional".into(),
        });
    }
    if !region_defined {
        for (name, value) in region_vars {
            new_env.push(EnvVar {
                name,
                value: value.to_string(),
            });
        }
    }
    if !reserved_defined {
        for (name, value) in &plan.identity_vars {
            new_env.push(EnvVar {
                name,
                value: value.clone(),
            });
        }
    }
    push_items(
        ops,
        base,
        "env",
        env.is_some(),
        new_env,
        PatchValue::Env,
        PatchValue::Envs,
    )?;

    let mounts = c.volume_mounts.as_ref();
    if !names(mounts, &format!("{what}.volumeMounts"))?.contains(plan.volume_name) {
        let mount = VolumeMount {
            name: plan.volume_name.to_string(),
            read_only: true,
            mount_path: plan.mount_path.to_string(),
        };
        push_items(
            ops,
            base,
            "volumeMounts",
            mounts.is_some(),
            vec![mount],
            PatchValue::Mount,
            PatchValue::Mounts,
        )?;
    }
    Ok(())
}

/// Appends `items` to the list `field` of the object at `base`: one `add` per
/// item when the list exists, a single `add` of the list when it does not.
fn push_items<T>(
    ops: &mut Ops,
    base: &str,
    field: &str,
    exists: bool,
    items: Vec<T>,
    one: fn(T) -> PatchValue,
    list: fn(Vec<T>) -> PatchValue,
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    if exists {
        for item in items {
            ops.push(PatchOp::add(format!("{base}/{field}/-"), one(item)))?;
        }
        Ok(())
    } else {
        ops.push(PatchOp::add(format!("{base}/{field}"), list(items)))
    }
}

/// `<mount path>/<file>`, cleaned like Go's filepath.Join, or its Windows form
/// (`C:\var\run\...`) for Windows pods.
pub fn token_path(mount_path: &str, file: &str, windows: bool) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in mount_path.split('/').chain(file.split('/')) {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let unix = format!("/{}", parts.join("/"));
    if windows {
        format!("C:{}", unix.replace('/', "\\"))
    } else {
        unix
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Computes the patch for `pod` given its resolved identity. Returns an empty
    /// patch when the pod already carries everything (so re-running the webhook on
    /// its own output changes nothing). The tests' entry point: the webhook
    /// itself decodes the pod once, as a `PodView`, and calls `mutate`.
    fn mutate_pod(pod: &Value, identity: &Identity, cfg: &InjectionConfig) -> Result<PodMutation> {
        mutate(&PodView::from_value(pod).map_err(invalid)?, identity, cfg)
    }
    use crate::injection::{CredentialMode, WarningKind};

    const ARN: &str = "arn:aws:iam::111122223333:role/s3-reader";

    fn web(role: &str) -> Identity {
        Identity {
            mode: Mode::WebIdentity {
                role_arn: role.parse().unwrap(),
            },
            audience: "sts.amazonaws.com".into(),
            regional_sts: false,
            token_expiration: 86400,
            expiration_jitter: 0,
        }
    }

    fn apply(pod: &Value, ops: &[PatchOp]) -> Value {
        let patch: json_patch::Patch =
            serde_json::from_value(serde_json::to_value(ops).unwrap()).unwrap();
        let mut out = pod.clone();
        json_patch::patch(&mut out, &patch).unwrap();
        out
    }

    fn pod(containers: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    fn env_of(c: &Value) -> std::collections::BTreeMap<String, String> {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    fn with_mode(mode: CredentialMode) -> Identity {
        let mut id = web(ARN);
        id.mode = crate::injection::mode::with_role(mode, ARN.parse().unwrap());
        id
    }

    /// (mode from ServiceAccount/flags, pod annotation, hostNetwork, expected
    /// env, sidecar injected, label added, warnings)
    type ModeCase<'a> = (
        CredentialMode,
        Option<&'a str>,
        bool,
        Vec<(&'a str, &'a str)>,
        bool,
        bool,
        usize,
    );

    #[test]
    fn modes_table() {
        let cfg = InjectionConfig {
            region: Some("eu-west-1".into()),
            ..InjectionConfig::default()
        };
        let agent_uri_want = "http://169.254.170.23/v1/credentials?role=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fs3-reader";
        // (mode from SA/flags, pod annotation, hostNetwork) -> (expected env keys and values, sidecar?, label?)
        let cases: Vec<ModeCase> = vec![
            (CredentialMode::WebIdentity, None, false,
             vec![("AWS_ROLE_ARN", ARN), ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token")], false, false, 0),
            (CredentialMode::Agent, None, false,
             vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", agent_uri_want),
                  ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token")], false, true, 0),
            (CredentialMode::Sidecar, None, false,
             vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:2702/v1/credentials"),
                  ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token")], true, false, 0),
            // The pod's annotation wins over the ServiceAccount's choice.
            (CredentialMode::WebIdentity, Some("agent"), false,
             vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", agent_uri_want)], false, true, 0),
            (CredentialMode::Sidecar, Some("web-identity"), false, vec![("AWS_ROLE_ARN", ARN)], false, false, 0),
            (CredentialMode::Agent, Some("sidecar"), false,
             vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:2702/v1/credentials")], true, false, 0),
            // An invalid annotation is ignored with a warning.
            (CredentialMode::Agent, Some("magic"), false, vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", agent_uri_want)], false, true, 1),
            // hostNetwork: no sidecar, web identity instead, with a warning.
            (CredentialMode::Sidecar, None, true, vec![("AWS_ROLE_ARN", ARN)], false, false, 1),
        ];
        for (
            i,
            (mode, annotation, host_network, want_env, want_sidecar, want_label, want_warnings),
        ) in cases.into_iter().enumerate()
        {
            let mut p = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "annotations": {}},
                "spec": {"containers": [{"name": "app", "image": "app"}],
                         "initContainers": [{"name": "setup", "image": "setup"}]}});
            if let Some(a) = annotation {
                p["metadata"]["annotations"]["eks.amazonaws.com/credential-mode"] = json!(a);
            }
            if host_network {
                p["spec"]["hostNetwork"] = json!(true);
            }
            let m = mutate_pod(&p, &with_mode(mode), &cfg).unwrap();
            assert_eq!(
                m.warnings.len(),
                want_warnings,
                "case {i}: {:?}",
                m.warnings
            );
            let out = apply(&p, &m.ops);
            let inits = out["spec"]["initContainers"].as_array().unwrap();
            let app = &out["spec"]["containers"][0];
            let setup = inits.iter().find(|c| c["name"] == "setup").unwrap();
            for c in [app, setup] {
                let env = env_of(c);
                for (k, v) in &want_env {
                    assert_eq!(
                        env.get(*k).map(String::as_str),
                        Some(*v),
                        "case {i}: {k} in {c}"
                    );
                }
                assert_eq!(env.get("AWS_REGION").map(String::as_str), Some("eu-west-1"));
                let web_identity = env.contains_key("AWS_ROLE_ARN");
                let container = env.contains_key("AWS_CONTAINER_CREDENTIALS_FULL_URI");
                assert!(
                    web_identity != container,
                    "case {i}: both or neither credential sources: {env:?}"
                );
                assert!(!env.contains_key("AWS_WEB_IDENTITY_TOKEN_FILE") || web_identity);
            }
            let sidecar = inits.iter().find(|c| c["name"] == "aws-credential-agent");
            assert_eq!(sidecar.is_some(), want_sidecar, "case {i}");
            if let Some(sc) = sidecar {
                assert_eq!(
                    inits[0]["name"], "aws-credential-agent",
                    "sidecar must be first"
                );
                assert_eq!(sc["restartPolicy"], "Always");
                assert_eq!(sc["startupProbe"]["httpGet"]["port"], 2703);
                let sec = &sc["securityContext"];
                assert_eq!(sec["runAsNonRoot"], true);
                assert_eq!(sec["readOnlyRootFilesystem"], true);
                assert_eq!(sec["allowPrivilegeEscalation"], false);
                assert_eq!(sec["privileged"], false);
                assert_eq!(sec["capabilities"]["drop"], json!(["ALL"]));
                let env = env_of(sc);
                assert_eq!(env["AWS_ROLE_ARN"], ARN);
                assert_eq!(
                    env["AWS_WEB_IDENTITY_TOKEN_FILE"],
                    "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"
                );
                assert!(!env.contains_key("AWS_CONTAINER_CREDENTIALS_FULL_URI"));
                assert_eq!(sc["volumeMounts"][0]["name"], "eks-pod-identity-token");
                assert!(sc["args"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("--listen=127.0.0.1:2702")));
            }
            let label = out["metadata"]["labels"][POD_IDENTITY_LABEL].as_str();
            assert_eq!(label == Some("enabled"), want_label, "case {i}");
            // Idempotent: running again on the output changes nothing.
            let again = mutate_pod(&out, &with_mode(mode), &cfg).unwrap();
            assert!(
                again.ops.is_empty(),
                "case {i}: reinvocation added {:?}",
                again.ops
            );
            // The projected volume has the identity's audience.
            let vol = &out["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
            assert_eq!(vol["audience"], "sts.amazonaws.com");
        }
    }

    #[test]
    fn sidecar_needs_native_sidecars() {
        let cfg = InjectionConfig {
            native_sidecars: false,
            ..InjectionConfig::default()
        };
        let p = pod(json!([{"name": "app", "image": "app"}]));
        let m = mutate_pod(&p, &with_mode(CredentialMode::Sidecar), &cfg).unwrap();
        assert_eq!(m.warnings.len(), 1);
        assert_eq!(m.warnings[0].kind, WarningKind::SidecarNotInjected);
        assert!(m.warnings[0].message.contains("native sidecars"));
        let out = apply(&p, &m.ops);
        assert!(out["spec"]["initContainers"].is_null());
        assert_eq!(env_of(&out["spec"]["containers"][0])["AWS_ROLE_ARN"], ARN);
    }

    #[test]
    fn token_path_table() {
        let cases = [
            ("/var/run/x", "token", false, "/var/run/x/token"),
            ("/var/run/x/", "token", false, "/var/run/x/token"),
            ("/a//b/./c", "t", false, "/a/b/c/t"),
            ("/var/run/x", "token", true, "C:\\var\\run\\x\\token"),
        ];
        for (m, f, w, want) in cases {
            assert_eq!(token_path(m, f, w), want);
        }
    }

    #[test]
    fn precise_ops_keep_unknown_fields() {
        let p = pod(json!([{
            "name": "app", "image": "x",
            "env": [{"name": "A", "value": "1"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "someFutureField": {"keep": true},
            "restartPolicy": "Always"
        }]));
        let m = mutate_pod(&p, &web(ARN), &InjectionConfig::default()).unwrap();
        let paths: Vec<&str> = m.ops.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "/spec/volumes",
                "/spec/containers/0/env/-",
                "/spec/containers/0/env/-",
                "/spec/containers/0/volumeMounts/-"
            ]
        );
        let out = apply(&p, &m.ops);
        let c = &out["spec"]["containers"][0];
        assert_eq!(c["someFutureField"], json!({"keep": true}));
        assert_eq!(c["restartPolicy"], "Always");
        assert_eq!(c["env"][0], json!({"name": "A", "value": "1"}));
        assert_eq!(c["env"][1], json!({"name": "AWS_ROLE_ARN", "value": ARN}));
        assert_eq!(
            c["volumeMounts"][1]["mountPath"],
            defaults::TOKEN_MOUNT_PATH
        );
    }

    #[test]
    fn idempotent_on_own_output_table() {
        let configs = [
            InjectionConfig::default(),
            InjectionConfig {
                region: Some("eu-west-1".into()),
                sts_regional_endpoint: true,
                ..Default::default()
            },
        ];
        let pods = [
            pod(json!([{"name": "a"}])),
            pod(
                json!([{"name": "a", "env": []}, {"name": "b", "env": [{"name": "AWS_REGION", "value": "x"}]}]),
            ),
            json!({"metadata": {"labels": {"x": "y"}, "annotations": {"eks.amazonaws.com/skip-containers": "b"}},
                   "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i", "restartPolicy": "Always"}],
                            "volumes": [{"name": "v", "emptyDir": {}}]}}),
        ];
        let mut cc = web(ARN);
        cc.mode = Mode::ContainerCredentials;
        cc.expiration_jitter = 3600;
        for cfg in &configs {
            for p in &pods {
                for id in [web(ARN), cc.clone()] {
                    let first = mutate_pod(p, &id, cfg).unwrap();
                    assert!(!first.ops.is_empty());
                    let once = apply(p, &first.ops);
                    let second = mutate_pod(&once, &id, cfg).unwrap();
                    assert!(
                        second.ops.is_empty(),
                        "second run patched {:?} for {p}",
                        second.ops
                    );
                }
            }
        }
    }

    #[test]
    fn skip_containers_trims_whitespace_and_ephemeral_untouched() {
        let p = json!({
            "metadata": {"annotations": {"eks.amazonaws.com/skip-containers": " a , c "}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                     "ephemeralContainers": [{"name": "debug"}]}
        });
        let m = mutate_pod(&p, &web(ARN), &InjectionConfig::default()).unwrap();
        let out = apply(&p, &m.ops);
        assert!(out["spec"]["containers"][0].get("env").is_none());
        assert!(out["spec"]["containers"][1].get("env").is_some());
        assert!(out["spec"]["containers"][2].get("env").is_none());
        assert_eq!(
            out["spec"]["ephemeralContainers"],
            json!([{"name": "debug"}])
        );
    }

    #[test]
    fn pod_token_expiration_table() {
        let cases = [
            (None, 86400, 0),
            (Some("3600"), 3600, 0),
            (Some("0"), 600, 0),
            (Some("99999999999999"), 1i64 << 32, 0),
            (Some("soon"), 86400, 1),
        ];
        for (ann, want, warnings) in cases {
            let mut p = pod(json!([{"name": "a"}]));
            if let Some(a) = ann {
                p["metadata"]["annotations"] = json!({"eks.amazonaws.com/token-expiration": a});
            }
            let m = mutate_pod(&p, &web(ARN), &InjectionConfig::default()).unwrap();
            let out = apply(&p, &m.ops);
            assert_eq!(
                out["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
                    ["expirationSeconds"],
                json!(want),
                "{ann:?}"
            );
            assert_eq!(m.warnings.len(), warnings, "{ann:?}");
        }
    }

    #[test]
    fn pod_annotation_near_miss_warns() {
        let mut p = pod(json!([{"name": "a"}]));
        p["metadata"]["annotations"] = json!({"eks.amazon.com/skip-containers": "a"});
        let m = mutate_pod(&p, &web(ARN), &InjectionConfig::default()).unwrap();
        assert_eq!(m.warnings.len(), 1);
        assert_eq!(m.warnings[0].kind, WarningKind::NearMissAnnotation);
        // ...and the typo'd annotation did not skip the container.
        assert!(apply(&p, &m.ops)["spec"]["containers"][0]
            .get("env")
            .is_some());
    }

    #[test]
    fn label_is_added_without_replacing_existing_labels() {
        let mut id = web(ARN);
        id.mode = Mode::ContainerCredentials;
        let mut p = pod(json!([{"name": "a"}]));
        p["metadata"]["labels"] = json!({"app": "x"});
        let out = apply(
            &p,
            &mutate_pod(&p, &id, &InjectionConfig::default())
                .unwrap()
                .ops,
        );
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "x", POD_IDENTITY_LABEL: "enabled"})
        );
        let p = json!({"spec": {"containers": [{"name": "a"}]}});
        let out = apply(
            &p,
            &mutate_pod(&p, &id, &InjectionConfig::default())
                .unwrap()
                .ops,
        );
        assert_eq!(
            out["metadata"]["labels"],
            json!({POD_IDENTITY_LABEL: "enabled"})
        );
    }

    #[test]
    fn the_patch_is_bounded() {
        let cfg = InjectionConfig {
            max_patch_bytes: 64 * 1024,
            ..InjectionConfig::default()
        };
        let containers: Vec<Value> = (0..2000)
            .map(|i| json!({"name": format!("c{i}")}))
            .collect();
        let wide = json!({"spec": {"containers": containers}});
        assert!(matches!(
            mutate_pod(&wide, &web(ARN), &cfg),
            Err(Error::PatchTooLarge { limit: 65536 })
        ));
        // A pod of ordinary size is far from the bound, and the bound counts
        // what is sent: the serialized patch fits.
        let narrow = pod(json!([{"name": "a"}, {"name": "b"}]));
        let m = mutate_pod(&narrow, &web(ARN), &cfg).unwrap();
        assert!(serde_json::to_vec(&m.ops).unwrap().len() < 2048);
        let just = InjectionConfig {
            max_patch_bytes: serde_json::to_vec(&m.ops).unwrap().len(),
            ..InjectionConfig::default()
        };
        assert_eq!(mutate_pod(&narrow, &web(ARN), &just).unwrap().ops, m.ops);
        let under = InjectionConfig {
            max_patch_bytes: just.max_patch_bytes - 1,
            ..InjectionConfig::default()
        };
        assert!(mutate_pod(&narrow, &web(ARN), &under).is_err());
    }

    #[test]
    fn malformed_pods_are_errors_not_panics() {
        let bad = [
            json!(null),
            json!([]),
            json!({"spec": null}),
            json!({"spec": {}}),
            json!({"spec": {"containers": {}}}),
            json!({"spec": {"containers": [1]}}),
            json!({"spec": {"containers": [{}]}}),
            json!({"spec": {"containers": [{"name": "a", "env": "x"}]}}),
            json!({"spec": {"containers": [{"name": "a", "env": [{"value": "x"}]}]}}),
            json!({"spec": {"containers": [{"name": "a", "volumeMounts": 3}]}}),
            json!({"spec": {"containers": [{"name": "a"}], "volumes": "x"}}),
            json!({"metadata": {"annotations": {"a": 1}}, "spec": {"containers": [{"name": "a"}]}}),
            json!({"metadata": 5, "spec": {"containers": [{"name": "a"}]}}),
            json!({"spec": {"containers": [{"name": "a"}], "nodeSelector": []}}),
        ];
        for p in bad {
            let err = mutate_pod(&p, &web(ARN), &InjectionConfig::default()).unwrap_err();
            assert!(matches!(err, Error::InvalidPod(_)), "{p}: {err}");
        }
    }
}
