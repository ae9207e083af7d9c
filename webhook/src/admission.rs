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

/// The answer for one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub ops: Vec<PatchOp>,
    pub warnings: Vec<String>,
    /// The metrics outcome label.
    pub outcome: &'static str,
    /// For a denial: HTTP-like code and message for the Status.
    pub status: Option<(u16, String)>,
}

impl Decision {
    fn allow(outcome: &'static str) -> Self {
        Decision {
            allowed: true,
            ops: Vec::new(),
            warnings: Vec::new(),
            outcome,
            status: None,
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
    let mut d = Decision::allow("invalid_pod");
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
            let mut d = Decision::allow("lookup_failed");
            d.allowed = false;
            d.status = Some((503, format!("{e}; the pod was not admitted so that it does not start without its AWS credentials, retry")));
            return d;
        }
    };
    let cm = ctx.cache.config_map_entry(namespace, sa_name);
    let cc_listed = ctx.container_credentials.contains(namespace, sa_name);
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
            Decision::allow(if invalid {
                "invalid_role_arn"
            } else {
                "no_identity"
            })
        }
        Some(mut id) => {
            if id.mode == Mode::ContainerCredentials {
                id.expiration_jitter = (ctx.jitter)();
            }
            match mutate(pod, &id, &ctx.config) {
                Ok(m) => {
                    warnings.extend(m.warnings);
                    let mut d = Decision::allow(if m.ops.is_empty() {
                        "unchanged"
                    } else {
                        "injected"
                    });
                    d.ops = m.ops;
                    d
                }
                Err(e @ Error::PatchTooLarge { .. }) => {
                    // Refused, not started without the credentials it asks for.
                    let mut d = Decision::allow("patch_too_large");
                    d.allowed = false;
                    d.status = Some((400, e.to_string()));
                    d
                }
                Err(e) => {
                    let mut d = Decision::allow("invalid_pod");
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
        Decision::allow("skipped")
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
                if d.allowed {
                    tracing::debug!(
                        namespace,
                        pod = pod.name(),
                        outcome = d.outcome,
                        patch_ops = d.ops.len(),
                        "admission review"
                    );
                } else {
                    tracing::info!(
                        namespace,
                        pod = pod.name(),
                        outcome = d.outcome,
                        "admission review: pod denied"
                    );
                }
                d
            }
            Some(Err(e)) => unreadable(&e.0),
            None => {
                let mut d = Decision::allow("invalid_pod");
                d.warnings.push(
                    "AWS credentials were not injected: the review carries no Pod object".into(),
                );
                d
            }
        }
    };
    ctx.metrics.outcome(decision.outcome);
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
            allowed: d.allowed,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: &d.warnings,
            status: d.status.as_ref().map(|(code, message)| StatusOut {
                code: *code,
                message,
            }),
        },
    };
    serde_json::to_vec(&out).unwrap_or_default()
}
