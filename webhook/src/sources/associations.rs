//! `PodIdentityAssociation` objects (`--watch-pod-identity-associations`):
//! ServiceAccounts with a (valid, winning) association get EKS Pod
//! Identity's injection (container credentials from the node agent, the
//! `eks-pod-identity-token` volume with audience `pods.eks.amazonaws.com`),
//! exactly as those listed in upstream's container-credentials file, and
//! instead of web identity when the ServiceAccount is also annotated (as
//! upstream and EKS: container credentials take precedence). Which
//! association counts and what makes one valid is `contract::association`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use contract::association::{self, Association};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

/// The associations the webhook knows, and the (namespace, ServiceAccount)
/// pairs they bind.
#[derive(Debug, Default)]
pub struct Associations {
    /// Whether the watch is on (off: nothing is ever bound, and readiness
    /// does not wait for it).
    enabled: bool,
    synced: AtomicBool,
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    by_name: HashMap<String, Association>,
    bound: HashSet<(String, String)>,
}

impl State {
    fn recompute(&mut self) {
        let all: Vec<Association> = self.by_name.values().cloned().collect();
        self.bound = association::winners(&all).into_keys().collect();
    }
}

/// The API resource of the CRD.
pub fn api_resource() -> ApiResource {
    ApiResource {
        group: association::GROUP.into(),
        version: association::VERSION.into(),
        api_version: format!("{}/{}", association::GROUP, association::VERSION),
        kind: association::KIND.into(),
        plural: association::PLURAL.into(),
    }
}

/// The association an object describes, if it has the required fields
/// (validity is `Association::problems`).
pub fn from_object(obj: &DynamicObject) -> Option<Association> {
    Association::from_json(
        obj.metadata.name.as_deref()?,
        obj.metadata.uid.as_deref().unwrap_or_default(),
        &obj.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        obj.data.get("spec")?,
    )
}

impl Associations {
    /// A watch-backed set; call [`Associations::spawn`] to fill it.
    pub fn watched() -> Self {
        Associations {
            enabled: true,
            ..Default::default()
        }
    }

    /// Whether a pod of `namespace`/`service_account` gets Pod Identity.
    pub fn contains(&self, namespace: &str, service_account: &str) -> bool {
        self.enabled
            && self
                .state
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .bound
                .contains(&(namespace.to_string(), service_account.to_string()))
    }

    /// Synced (or off): the webhook may answer reviews.
    pub fn is_ready(&self) -> bool {
        !self.enabled || self.synced.load(Ordering::Acquire)
    }

    /// Replaces every association (a watch's initial list).
    pub fn replace(&self, all: Vec<Association>) {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        st.by_name = all.into_iter().map(|a| (a.name.clone(), a)).collect();
        st.recompute();
        drop(st);
        self.synced.store(true, Ordering::Release);
    }

    /// One association added or changed (`None`: unusable, dropped).
    pub fn apply(&self, name: &str, a: Option<Association>) {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        match a {
            Some(a) => st.by_name.insert(name.to_string(), a),
            None => st.by_name.remove(name),
        };
        st.recompute();
    }

    pub fn delete(&self, name: &str) {
        self.apply(name, None);
    }

    /// Starts the watch; it runs until the process ends, retrying with
    /// backoff (and saying so when the CRD is not installed).
    pub fn spawn(self: &Arc<Self>, client: kube::Client) {
        let api: Api<DynamicObject> = Api::all_with(client, &api_resource());
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut buffer = Vec::new();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::Init) => buffer.clear(),
                    Ok(Event::InitApply(obj)) => buffer.extend(usable(&obj)),
                    Ok(Event::InitDone) => {
                        let n = buffer.len();
                        this.replace(std::mem::take(&mut buffer));
                        tracing::info!(associations = n, "PodIdentityAssociations synced");
                    }
                    Ok(Event::Apply(obj)) => {
                        if let Some(name) = obj.metadata.name.clone() {
                            this.apply(&name, usable(&obj));
                        }
                    }
                    Ok(Event::Delete(obj)) => {
                        if let Some(name) = &obj.metadata.name {
                            this.delete(name);
                        }
                    }
                    Err(e) => {
                        let hint = if format!("{e}").contains("404") {
                            " (is the PodIdentityAssociation CRD installed? the chart's crds/ folder has it)"
                        } else {
                            ""
                        };
                        tracing::warn!(error = %e, "PodIdentityAssociation watch failed; retrying{hint}");
                    }
                }
            }
        });
    }
}

/// The association of an object, logged and dropped when it cannot be used.
fn usable(obj: &DynamicObject) -> Option<Association> {
    let name = obj.metadata.name.as_deref().unwrap_or("");
    let Some(a) = from_object(obj) else {
        tracing::warn!(
            association = name,
            "PodIdentityAssociation without namespace, serviceAccount or roleArn; ignored"
        );
        return None;
    };
    let problems = a.problems();
    if !problems.is_empty() {
        tracing::warn!(association = name, problems = %problems.join("; "), "PodIdentityAssociation ignored");
        return None;
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, created: &str, ns: &str, sa: &str, role: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "pod-identity.io/v1alpha1", "kind": "PodIdentityAssociation",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "creationTimestamp": created},
            "spec": {"namespace": ns, "serviceAccount": sa, "roleArn": role,
                     "sessionTags": {"team": "payments"}, "transitiveSessionTags": ["team"]}
        }))
        .unwrap()
    }

    const ROLE: &str = "arn:aws:iam::111122223333:role/app";

    #[test]
    fn objects_become_associations() {
        let a = from_object(&obj("a", "2026-01-02T03:04:05Z", "app", "web", ROLE)).unwrap();
        assert_eq!(a.namespace, "app");
        assert_eq!(
            a.session_tags.get("team").map(String::as_str),
            Some("payments")
        );
        assert_eq!(a.transitive_session_tags, Some(vec!["team".to_string()]));
        assert!(a.created.starts_with("2026-01-02T03:04:05"));
        let no_spec: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "pod-identity.io/v1alpha1", "kind": "PodIdentityAssociation",
            "metadata": {"name": "x"}}))
        .unwrap();
        assert!(from_object(&no_spec).is_none());
    }

    #[test]
    fn bound_follows_events_and_off_binds_nothing() {
        let set = Associations::watched();
        assert!(!set.is_ready());
        set.replace(vec![]);
        assert!(set.is_ready());
        let a = usable(&obj("a", "2026-01-01T00:00:00Z", "app", "web", ROLE));
        set.apply("a", a);
        assert!(set.contains("app", "web"));
        assert!(!set.contains("app", "other"));
        // An invalid one binds nothing.
        set.apply(
            "bad",
            usable(&obj(
                "bad",
                "2026-01-01T00:00:00Z",
                "app",
                "api",
                "arn:nope",
            )),
        );
        assert!(!set.contains("app", "api"));
        // Two for one ServiceAccount: deleting the older keeps it bound.
        set.apply(
            "b",
            usable(&obj("b", "2026-02-01T00:00:00Z", "app", "web", ROLE)),
        );
        set.delete("a");
        assert!(set.contains("app", "web"));
        set.delete("b");
        assert!(!set.contains("app", "web"));
        let off = Associations::default();
        off.replace(vec![from_object(&obj(
            "a",
            "2026-01-01T00:00:00Z",
            "app",
            "web",
            ROLE,
        ))
        .unwrap()]);
        assert!(off.is_ready() && !off.contains("app", "web"));
    }
}
