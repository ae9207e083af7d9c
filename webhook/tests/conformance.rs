//! Conformance with the upstream webhook (aws/amazon-eks-pod-identity-webhook).
//!
//! - `own_cases`: the repository's own cases (`conformance/cases.yaml`),
//!   upstream's behaviour stated in this repository's words and data; they
//!   always run.
//! - `upstream_fixtures_match_in_meaning`: every upstream fixture
//!   (pkg/handler/testdata) compared in meaning: the expected patch and ours
//!   are applied to the same input pod and the results compared after
//!   dropping empty `resources` and null values. Deliberate deviations are
//!   named in `DEVIATIONS`. The fixtures are not part of this repository:
//!   the directory is `$UPSTREAM_FIXTURES_DIR`, or
//!   `../shared/conformance/upstream-webhook` next to it; without either the
//!   test compares nothing (scripts/test.sh prints a line saying so).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pod_identity_webhook::admission::{decide_pod, AdmissionContext};
use pod_identity_webhook::injection::config::{ContainerCredentialsConfig, InjectionConfig};
use pod_identity_webhook::metrics::Metrics;
use pod_identity_webhook::sources::cache::ServiceAccountCache;
use pod_identity_webhook::sources::containercreds::ContainerCredentialsIdentities;
use pod_identity_webhook::sources::manifests::ServiceAccountManifest;
use serde_json::Value;

const T: &str = "testing.eks.amazonaws.com/";

fn fixtures_dir() -> PathBuf {
    if let Ok(d) = std::env::var("UPSTREAM_FIXTURES_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/upstream-webhook")
}

fn fixture_files() -> Vec<PathBuf> {
    let dir = fixtures_dir();
    if !dir.is_dir() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for sub in [dir.clone(), dir.join("containercredentials")] {
        let entries = std::fs::read_dir(&sub)
            .unwrap_or_else(|e| panic!("upstream fixtures missing at {}: {e}", sub.display()));
        for e in entries {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Removes null values and empty `resources` objects, recursively.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, v| {
                !(v.is_null() || (k == "resources" && v.as_object().is_some_and(|o| o.is_empty())))
            });
            m.values_mut().for_each(normalize);
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn apply(pod: &Value, patch: Value) -> Value {
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

/// Deliberate differences from the reference webhook: (fixture, why, how the
/// expected result is adjusted to what we produce on purpose).
type Adjust = fn(&Value, &mut Value);
const DEVIATIONS: &[(&str, &str, Adjust)] = &[(
    "rawPodHasVolumeMount.pod.yaml",
    "upstream rewrites the whole container through Go types, dropping the mount's unknown `path` field and \
     adding `mountPath: \"\"`; we never rewrite a container, so the user's mount is kept as written",
    |input, expected| {
        expected["spec"]["containers"][0]["volumeMounts"][0] = input["spec"]["containers"][0]["volumeMounts"][0].clone();
    },
)];

/// A decision context with one ServiceAccount `default/<name>` and the
/// container-credentials identities `listed`; the jitter drawn is 2 h.
fn context(
    config: InjectionConfig,
    name: &str,
    uid: &str,
    annotations: Vec<(String, String)>,
    listed: std::collections::HashSet<(String, String)>,
) -> AdmissionContext {
    let sas = vec![ServiceAccountManifest {
        namespace: "default".into(),
        name: name.into(),
        uid: uid.into(),
        annotations,
    }];
    let metrics = Arc::new(Metrics::new());
    AdmissionContext {
        cache: ServiceAccountCache::from_manifests(
            &config.annotation_prefix,
            &sas,
            metrics.clone(),
        ),
        config,
        container_credentials: Arc::new(ContainerCredentialsIdentities::from_set(listed)),
        associations: Default::default(),
        metrics,
        jitter: Arc::new(|| 7200),
    }
}

async fn run_fixture(path: &Path) -> (Value, Value, Value, AdmissionContext) {
    let pod: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ann = |k: &str| {
        pod["metadata"]["annotations"]
            .get(format!("{T}{k}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    assert_eq!(ann("skip").as_deref(), Some("false"));

    let mut sa_annotations = Vec::new();
    if let Some(r) = ann("serviceAccount/roleArn") {
        sa_annotations.push(("eks.amazonaws.com/role-arn".to_string(), r));
    }
    if let Some(a) = ann("serviceAccount/audience") {
        sa_annotations.push(("eks.amazonaws.com/audience".to_string(), a));
    }
    if let Some(s) = ann("serviceAccount/sts-regional-endpoints") {
        sa_annotations.push(("eks.amazonaws.com/sts-regional-endpoints".to_string(), s));
    }
    if let Some(e) = ann("serviceAccount/token-expiration") {
        sa_annotations.push(("eks.amazonaws.com/token-expiration".to_string(), e));
    }
    let mut config = InjectionConfig {
        region: ann("handler/region").filter(|r| !r.is_empty()),
        sts_regional_endpoint: ann("handler/injectSTS").is_some_and(|v| v == "true"),
        token_expiration: ann("handler/expiration").map_or(86400, |e| e.parse().unwrap()),
        ..Default::default()
    };
    if let Some(m) = ann("handler/mountPath") {
        config.token_mount_path = m;
    }
    let mut cc_ids = std::collections::HashSet::new();
    if let Some(uri) = ann("containercredentials/uri").filter(|u| !u.is_empty()) {
        cc_ids.insert(("default".to_string(), "default".to_string()));
        config.container_credentials = ContainerCredentialsConfig {
            audience: ann("containercredentials/audience").unwrap_or_default(),
            mount_path: ann("containercredentials/mountPath").unwrap_or_default(),
            volume_name: ann("containercredentials/volumeName").unwrap_or_default(),
            token_path: ann("containercredentials/tokenPath").unwrap_or_default(),
            full_uri: uri,
        };
    }
    // The reference harness fixes its random source so the jitter is 2 h.
    let ctx = context(config, "default", "uid", sa_annotations, cc_ids);
    let decision = decide_pod(&ctx, "default", &pod).await;
    assert!(decision.outcome.allowed());
    assert!(
        decision.warnings.is_empty(),
        "{}: unexpected warnings {:?}",
        path.display(),
        decision.warnings
    );
    let expected_patch: Value = serde_json::from_str(&ann("expectedPatch").unwrap()).unwrap();
    let expected = apply(&pod, expected_patch);
    let ours = apply(&pod, serde_json::to_value(&decision.ops).unwrap());
    (pod, expected, ours, ctx)
}

#[tokio::test]
async fn upstream_fixtures_match_in_meaning() {
    let files = fixture_files();
    if files.is_empty() && std::env::var_os("UPSTREAM_FIXTURES_DIR").is_none() {
        eprintln!(
            "upstream fixtures not found at {}: not compared",
            fixtures_dir().display()
        );
        return;
    }
    assert_eq!(
        files.len(),
        24,
        "expected the 24 upstream fixtures in {}",
        fixtures_dir().display()
    );
    let mut failures = Vec::new();
    let mut deviations_used = 0;
    for path in &files {
        let (input, mut expected, mut ours, ctx) = run_fixture(path).await;
        let file = path.file_name().unwrap().to_str().unwrap();
        if let Some((_, why, adjust)) = DEVIATIONS.iter().find(|(f, _, _)| *f == file) {
            eprintln!("{file}: deliberate deviation: {why}");
            adjust(&input, &mut expected);
            deviations_used += 1;
        }
        normalize(&mut expected);
        normalize(&mut ours);
        if expected != ours {
            failures.push(format!(
                "{}:\n expected {}\n ours     {}",
                path.display(),
                serde_json::to_string(&expected).unwrap(),
                serde_json::to_string(&ours).unwrap()
            ));
            continue;
        }
        // Idempotent: the webhook on its own output patches nothing.
        let again = decide_pod(&ctx, "default", &ours).await;
        if !again.ops.is_empty() {
            failures.push(format!(
                "{}: second run patched {:?}",
                path.display(),
                again.ops
            ));
        }
    }
    assert_eq!(
        deviations_used,
        DEVIATIONS.len(),
        "every named deviation is exercised"
    );
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The repository's own statement of upstream's behaviour.
#[tokio::test]
async fn own_cases() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases.yaml");
    let cases: Vec<Value> = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(cases.len() >= 10, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        if let Err(e) = run_case(case).await {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn run_case(case: &Value) -> Result<(), String> {
    let settings = &case["settings"];
    let mut config = InjectionConfig {
        region: settings["region"].as_str().map(Into::into),
        sts_regional_endpoint: settings["regionalSts"].as_bool().unwrap_or(false),
        token_expiration: settings["expiration"].as_i64().unwrap_or(86400),
        ..Default::default()
    };
    if let Some(m) = settings["mountPath"].as_str() {
        config.token_mount_path = m.into();
    }
    let mut listed = std::collections::HashSet::new();
    let cc = &settings["containerCredentials"];
    if cc.is_object() {
        let s = |k: &str| cc[k].as_str().unwrap_or_default().to_string();
        config.container_credentials = ContainerCredentialsConfig {
            audience: s("audience"),
            mount_path: s("mountPath"),
            volume_name: s("volumeName"),
            token_path: s("tokenPath"),
            full_uri: s("uri"),
        };
        listed.insert(("default".to_string(), "app".to_string()));
    }
    let annotations = case["serviceAccount"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                format!("eks.amazonaws.com/{k}"),
                v.as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ctx = context(config, "app", "uid-app", annotations, listed);
    let spec = &case["pod"];
    let mut pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": spec.get("metadata").cloned().unwrap_or(serde_json::json!({})),
        "spec": spec.clone(),
    });
    pod["metadata"]["name"] = "pod".into();
    pod["spec"].as_object_mut().unwrap().remove("metadata");
    pod["spec"]["serviceAccountName"] = "app".into();
    let decision = decide_pod(&ctx, "default", &pod).await;
    if !decision.outcome.allowed() || !decision.warnings.is_empty() {
        return Err(format!("not allowed or warned: {decision:?}"));
    }
    let out = apply(&pod, serde_json::to_value(&decision.ops).unwrap());
    let expect = &case["expect"];
    if expect["unchanged"].as_bool() == Some(true) {
        return if out == pod {
            Ok(())
        } else {
            Err(format!("changed: {out}"))
        };
    }
    let labels = out["metadata"]["labels"].clone();
    let want_labels = expect
        .get("labels")
        .cloned()
        .unwrap_or(pod["metadata"]["labels"].clone());
    if labels != want_labels {
        return Err(format!("labels {labels}, want {want_labels}"));
    }
    if out["spec"]["volumes"] != expect["volumes"] {
        return Err(format!(
            "volumes {}, want {}",
            out["spec"]["volumes"], expect["volumes"]
        ));
    }
    let containers = ["initContainers", "containers"]
        .iter()
        .flat_map(|f| out["spec"][f].as_array().cloned().unwrap_or_default());
    let originals: Vec<Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|f| pod["spec"][f].as_array().cloned().unwrap_or_default())
        .collect();
    for (c, original) in containers.zip(&originals) {
        let name = c["name"].as_str().unwrap();
        let Some(want) = expect["containers"].get(name) else {
            if c != *original {
                return Err(format!("{name} changed: {c}"));
            }
            continue;
        };
        let mut env = serde_json::Map::new();
        for e in c["env"].as_array().into_iter().flatten() {
            let k = e["name"].as_str().unwrap();
            if env.insert(k.into(), e["value"].clone()).is_some() {
                return Err(format!("{name}: {k} twice"));
            }
        }
        if Value::Object(env.clone()) != want["env"] {
            return Err(format!(
                "{name} env {}, want {}",
                Value::Object(env),
                want["env"]
            ));
        }
        if c["volumeMounts"] != want["mounts"] {
            return Err(format!(
                "{name} mounts {}, want {}",
                c["volumeMounts"], want["mounts"]
            ));
        }
    }
    // Idempotent: the webhook on its own output patches nothing.
    let again = decide_pod(&ctx, "default", &out).await;
    if !again.ops.is_empty() {
        return Err(format!("second run patched {:?}", again.ops));
    }
    Ok(())
}
