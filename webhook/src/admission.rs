//! AdmissionReview handling: decoding (admission.k8s.io/v1 and v1beta1), the
//! decision for one pod, and the response.
//!
//! What each kind of bad input gets, on purpose:
//! - body over the limit: HTTP 413; wrong Content-Type: HTTP 415;
//! - not JSON, not an AdmissionReview, unknown apiVersion, or no `request`:
//!   HTTP 400 (there is no uid to answer to);
//! - a review of anything but a Pod CREATE: allowed, no patch;
//! - a Pod object we cannot read: allowed, no patch, with a warning (the API
//!   server's own validation will report what is wrong with it);
//! - a ServiceAccount that cannot be looked up in time: denied with code 503,
//!   so the pod is not created without the credentials it asked for and its
//!   controller retries.

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::injection::mutate;
use crate::injection::patch::PatchOp;
use crate::injection::InjectionConfig;
use crate::injection::{self, Mode, PodView, WarningKind};
use crate::metrics::Metrics;
use crate::sources::associations::Associations;
use crate::sources::cache::ServiceAccountCache;
use crate::sources::containercreds::ContainerCredentialsIdentities;
use crate::{Error, Result};

pub const V1: &str = "admission.k8s.io/v1";
pub const V1BETA1: &str = "admission.k8s.io/v1beta1";

/// Draws the container-credentials expiration jitter, in seconds.
pub type Jitter = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Everything a decision needs; shared by the server and the `mutate` command.
pub struct AdmissionContext {
    pub config: InjectionConfig,
    pub cache: Arc<ServiceAccountCache>,
    pub container_credentials: Arc<ContainerCredentialsIdentities>,
    /// PodIdentityAssociations (off unless `--watch-pod-identity-associations`).
    pub associations: Arc<Associations>,
    pub metrics: Arc<Metrics>,
    pub jitter: Jitter,
}

/// The review as it arrives. The object stays raw JSON, borrowed from the
/// body, until it is known to be a Pod; then only the fields the webhook
/// reads are decoded ([`PodView`]).
#[derive(Debug, Deserialize)]
struct ReviewIn<'a> {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(borrow)]
    request: Option<RequestIn<'a>>,
}

#[derive(Debug, Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct GroupVersionResource {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resource: String,
}

#[derive(Debug, Deserialize)]
struct RequestIn<'a> {
    uid: String,
    kind: Option<GroupVersionKind>,
    resource: Option<GroupVersionResource>,
    #[serde(rename = "subResource", default)]
    sub_resource: Option<String>,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(borrow, default)]
    object: Option<&'a serde_json::value::RawValue>,
}

/// What the webhook did with a review: its metrics label and, for a
/// denial, the status the API server reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not a pod CREATE.
    Skipped,
    /// The ServiceAccount asks for no role.
    NoIdentity,
    /// The ServiceAccount's role annotation is not a role ARN (admitted with a warning).
    InvalidRoleArn,
    /// Already carries everything.
    Unchanged,
    Injected,
    /// A pod the webhook cannot read: admitted unchanged with a warning.
    InvalidPod,
    /// Denied: the ServiceAccount could not be looked up, so the pod would
    /// start without the credentials it asks for.
    LookupFailed(String),
    /// Denied: the patch would exceed --max-patch-bytes.
    PatchTooLarge(String),
}

impl Outcome {
    /// The `outcome` label of the admissions metric.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Skipped => "skipped",
            Outcome::NoIdentity => "no_identity",
            Outcome::InvalidRoleArn => "invalid_role_arn",
            Outcome::Unchanged => "unchanged",
            Outcome::Injected => "injected",
            Outcome::InvalidPod => "invalid_pod",
            Outcome::LookupFailed(_) => "lookup_failed",
            Outcome::PatchTooLarge(_) => "patch_too_large",
        }
    }

    /// For a denial, the status code and message of the answer; `None`
    /// when the pod is admitted.
    pub fn denial(&self) -> Option<(u16, &str)> {
        match self {
            // The API server may retry: the cause is on our side.
            Outcome::LookupFailed(m) => Some((503, m)),
            // The pod itself is too large to be given its credentials.
            Outcome::PatchTooLarge(m) => Some((400, m)),
            _ => None,
        }
    }

    pub fn allowed(&self) -> bool {
        self.denial().is_none()
    }
}

/// The answer to one review.
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    pub ops: Vec<PatchOp>,
    pub warnings: Vec<String>,
}

impl Decision {
    fn new(outcome: Outcome) -> Self {
        Decision {
            outcome,
            ops: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Decides what to do with a pod being created in `namespace`. The same code
/// serves `/mutate` and the offline `mutate` command.
pub async fn decide_pod(ctx: &AdmissionContext, namespace: &str, pod: &Value) -> Decision {
    match PodView::from_value(pod) {
        Ok(view) => decide(ctx, namespace, &view).await,
        Err(e) => unreadable(&e.0),
    }
}

/// The answer for a Pod that cannot be read: allowed, unchanged, with a
/// warning (the API server's own validation reports what is wrong with it).
fn unreadable(why: &str) -> Decision {
    let mut d = Decision::new(Outcome::InvalidPod);
    d.warnings.push(format!(
        "AWS credentials were not injected: {}",
        Error::InvalidPod(why.to_string())
    ));
    d
}

/// [`decide_pod`] on a pod as the server reads it.
pub async fn decide(ctx: &AdmissionContext, namespace: &str, pod: &PodView<'_>) -> Decision {
    let sa_name = pod.service_account();

    let sa = match ctx.cache.lookup(namespace, sa_name).await {
        Ok(sa) => sa,
        Err(e) => {
            tracing::warn!(namespace, serviceaccount = sa_name, error = %e, "denying pod: ServiceAccount lookup failed");
            return Decision::new(Outcome::LookupFailed(format!("{e}; the pod was not admitted so that it does not start without its AWS credentials, retry")));
        }
    };
    let cm = ctx.cache.config_map_entry(namespace, sa_name);
    let cc_listed = ctx.container_credentials.contains(namespace, sa_name)
        || ctx.associations.contains(namespace, sa_name);
    let resolution = injection::resolve(
        sa_name,
        namespace,
        sa.as_deref(),
        cm.as_ref(),
        cc_listed,
        &ctx.config,
    );
    let mut warnings: Vec<_> = resolution.warnings;

    let mut decision = match resolution.identity {
        None => {
            let invalid = warnings
                .iter()
                .any(|w| w.kind == WarningKind::InvalidRoleArn);
            Decision::new(if invalid {
                Outcome::InvalidRoleArn
            } else {
                Outcome::NoIdentity
            })
        }
        Some(mut id) => {
            if id.mode == Mode::ContainerCredentials {
                id.expiration_jitter = (ctx.jitter)();
            }
            match mutate(pod, &id, &ctx.config) {
                Ok(m) => {
                    warnings.extend(m.warnings);
                    let mut d = Decision::new(if m.ops.is_empty() {
                        Outcome::Unchanged
                    } else {
                        Outcome::Injected
                    });
                    d.ops = m.ops;
                    d
                }
                Err(e @ Error::PatchTooLarge { .. }) => {
                    // Refused, not started without the credentials it asks for.
                    Decision::new(Outcome::PatchTooLarge(e.to_string()))
                }
                Err(e) => {
                    let mut d = Decision::new(Outcome::InvalidPod);
                    d.warnings
                        .push(format!("AWS credentials were not injected: {e}"));
                    d
                }
            }
        }
    };
    for w in &warnings {
        ctx.metrics.warning(w.kind.as_str());
    }
    let mut all: Vec<String> = warnings.into_iter().map(|w| w.message).collect();
    all.append(&mut decision.warnings);
    decision.warnings = all;
    decision
}

/// Handles one AdmissionReview body and returns the response body.
pub async fn review(ctx: &AdmissionContext, body: &[u8]) -> Result<Vec<u8>> {
    let review: ReviewIn =
        serde_json::from_slice(body).map_err(|e| Error::MalformedReview(e.to_string()))?;
    if review.api_version != V1 && review.api_version != V1BETA1 {
        return Err(Error::UnsupportedApiVersion(review.api_version));
    }
    if review.kind != "AdmissionReview" {
        return Err(Error::MalformedReview(format!(
            "kind is {:?}, expected AdmissionReview",
            review.kind
        )));
    }
    let request = review.request.ok_or(Error::MissingRequest)?;

    let is_pod = request
        .kind
        .as_ref()
        .is_some_and(|k| k.group.is_empty() && k.kind == "Pod")
        && request
            .resource
            .as_ref()
            .is_none_or(|r| r.group.is_empty() && r.resource == "pods")
        && request.sub_resource.as_deref().unwrap_or("").is_empty();
    let decision = if !is_pod || request.operation != "CREATE" {
        Decision::new(Outcome::Skipped)
    } else {
        match request.object.map(|raw| PodView::from_json(raw.get())) {
            Some(Ok(pod)) => {
                let namespace = request
                    .namespace
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .or(pod.namespace())
                    .unwrap_or("default")
                    .to_string();
                let d = decide(ctx, &namespace, &pod).await;
                // One line per review costs about a tenth of the throughput
                // (docs/benchmarks.md): routine answers are counted in
                // metrics and logged at debug; refusals at info.
                if d.outcome.allowed() {
                    tracing::debug!(
                        namespace,
                        pod = pod.name(),
                        outcome = d.outcome.label(),
                        patch_ops = d.ops.len(),
                        "admission review"
                    );
                } else {
                    tracing::info!(
                        namespace,
                        pod = pod.name(),
                        outcome = d.outcome.label(),
                        "admission review: pod denied"
                    );
                }
                d
            }
            Some(Err(e)) => unreadable(&e.0),
            None => {
                let mut d = Decision::new(Outcome::InvalidPod);
                d.warnings.push(
                    "AWS credentials were not injected: the review carries no Pod object".into(),
                );
                d
            }
        }
    };
    ctx.metrics.outcome(decision.outcome.label());
    Ok(response_body(&review.api_version, &request.uid, &decision))
}

#[derive(Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
}

#[derive(Serialize)]
struct StatusOut<'a> {
    code: u16,
    message: &'a str,
}

/// Serializes the AdmissionReview response, in the request's apiVersion
/// (typed: no `serde_json::Value` is built).
pub fn response_body(api_version: &str, uid: &str, d: &Decision) -> Vec<u8> {
    let patch = (!d.ops.is_empty()).then(|| {
        let json = serde_json::to_vec(&d.ops).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    });
    let out = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid,
            allowed: d.outcome.allowed(),
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: &d.warnings,
            status: d
                .outcome
                .denial()
                .map(|(code, message)| StatusOut { code, message }),
        },
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every outcome: its label, whether the pod is admitted, and the
    /// status a denial answers with.
    #[test]
    fn outcomes_answer_as_they_say() {
        let table = [
            (Outcome::Skipped, "skipped", None),
            (Outcome::NoIdentity, "no_identity", None),
            (Outcome::InvalidRoleArn, "invalid_role_arn", None),
            (Outcome::Unchanged, "unchanged", None),
            (Outcome::Injected, "injected", None),
            (Outcome::InvalidPod, "invalid_pod", None),
            (
                Outcome::LookupFailed("down".into()),
                "lookup_failed",
                Some(503),
            ),
            (
                Outcome::PatchTooLarge("big".into()),
                "patch_too_large",
                Some(400),
            ),
        ];
        let mut labels = std::collections::BTreeSet::new();
        for (outcome, label, status) in table {
            assert_eq!(outcome.label(), label);
            assert!(labels.insert(label), "{label} twice");
            assert_eq!(outcome.denial().map(|(c, _)| c), status, "{label}");
            assert_eq!(outcome.allowed(), status.is_none(), "{label}");
            let body: serde_json::Value =
                serde_json::from_slice(&response_body(V1, "u", &Decision::new(outcome.clone())))
                    .unwrap();
            assert_eq!(body["response"]["allowed"], status.is_none(), "{label}");
            assert_eq!(
                body["response"]["status"]["code"].as_u64(),
                status.map(u64::from),
                "{label}"
            );
        }
    }
}
