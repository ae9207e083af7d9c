//! The PodIdentityAssociations the broker answers with: a list, then a watch
//! from its resourceVersion (listed again when the watch ends, expires or
//! fails), kept as the association that counts for each (namespace,
//! ServiceAccount) by `contract::association`'s rules; and each
//! association's `status` (Ready, `associationId`, why it does not count),
//! written only when it differs from what the object has, so two replicas
//! writing agree and a steady state writes nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use contract::association::{self, Association};
use contract::RoleArn;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::kube_api::{KubeApi, KubeError};

/// The association that counts for a ServiceAccount, as requests use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub association: Association,
    /// `association.role_arn`, parsed (a winner is valid, so it parses).
    pub role_arn: RoleArn,
    /// EKS's `a-` id (the `ExternalId` of a `targetRoleArn` chain).
    pub id: String,
    /// uid and generation: credentials are cached per version, so an update
    /// of the association gets new ones.
    pub version: String,
}

#[derive(Debug, Clone)]
struct Stored {
    association: Association,
    generation: i64,
    status: Value,
}

#[derive(Debug, Default)]
struct State {
    by_name: HashMap<String, Stored>,
    /// namespace -> ServiceAccount -> the association that counts (looked
    /// up by `&str`, without allocating, on every request).
    bound: HashMap<String, HashMap<String, Arc<Bound>>>,
}

/// What the broker knows of the associations.
#[derive(Debug, Default)]
pub struct AssociationStore {
    synced: AtomicBool,
    state: RwLock<State>,
}

/// The resource path of the CRD's objects.
pub fn collection_path() -> String {
    format!(
        "/apis/{}/{}/{}",
        association::GROUP,
        association::VERSION,
        association::PLURAL
    )
}

/// The association an object describes, with its generation and status.
fn from_object(obj: &Value) -> Option<Stored> {
    let meta = obj.get("metadata")?;
    let s = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or_default();
    let association = Association::from_json(
        meta.get("name")?.as_str()?,
        s("uid"),
        s("creationTimestamp"),
        obj.get("spec")?,
    )?;
    Some(Stored {
        association,
        generation: meta.get("generation").and_then(Value::as_i64).unwrap_or(0),
        status: obj.get("status").cloned().unwrap_or(Value::Null),
    })
}

impl State {
    fn recompute(&mut self) {
        let all: Vec<Association> = self
            .by_name
            .values()
            .map(|s| s.association.clone())
            .collect();
        let generation: HashMap<&str, i64> = self
            .by_name
            .iter()
            .map(|(n, s)| (n.as_str(), s.generation))
            .collect();
        let mut bound: HashMap<String, HashMap<String, Arc<Bound>>> = HashMap::new();
        for ((ns, sa), a) in association::winners(&all) {
            let Ok(role_arn) = RoleArn::parse(&a.role_arn) else {
                continue;
            };
            let version = format!(
                "{}/{}",
                a.uid,
                generation.get(a.name.as_str()).copied().unwrap_or(0)
            );
            let b = Bound {
                association: a.clone(),
                role_arn,
                id: association::association_id(&a.uid),
                version,
            };
            bound.entry(ns).or_default().insert(sa, Arc::new(b));
        }
        self.bound = bound;
    }
}

impl AssociationStore {
    /// The association that counts for `namespace`/`service_account`.
    pub fn get(&self, namespace: &str, service_account: &str) -> Option<Arc<Bound>> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        st.bound.get(namespace)?.get(service_account).cloned()
    }

    /// Whether the first list has arrived.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Associations known (valid or not).
    pub fn len(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces everything with a list's items.
    pub fn replace(&self, items: &[Value]) {
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        st.by_name = items
            .iter()
            .filter_map(from_object)
            .map(|s| (s.association.name.clone(), s))
            .collect();
        st.recompute();
        self.synced.store(true, Ordering::Relaxed);
    }

    /// Applies one watch event; returns the resourceVersion it carries.
    pub fn apply(&self, event: &Value) -> Option<String> {
        let kind = event.get("type").and_then(Value::as_str)?;
        let obj = event.get("object")?;
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        let name = obj.pointer("/metadata/name").and_then(Value::as_str);
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        match (kind, name) {
            ("ADDED" | "MODIFIED", Some(name)) => {
                match from_object(obj) {
                    Some(s) => st.by_name.insert(name.to_string(), s),
                    None => st.by_name.remove(name),
                };
                st.recompute();
            }
            ("DELETED", Some(name)) => {
                st.by_name.remove(name);
                st.recompute();
            }
            _ => {}
        }
        rv
    }

    /// The status each association should have, for those whose status
    /// differs: (name, status).
    pub fn status_changes(&self, now: SystemTime) -> Vec<(String, Value)> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (name, s) in &st.by_name {
            let a = &s.association;
            let problems = a.problems();
            let winner = st
                .bound
                .get(&a.namespace)
                .and_then(|m| m.get(&a.service_account));
            let (ready, reason, message) = if !problems.is_empty() {
                ("False", "Invalid", problems.join("; "))
            } else {
                match winner {
                    Some(w) if w.association.name == *name => (
                        "True",
                        "Bound",
                        format!(
                            "pods of {}/{} get {}",
                            a.namespace,
                            a.service_account,
                            a.target_role_arn.as_deref().unwrap_or(&a.role_arn)
                        ),
                    ),
                    Some(w) => (
                        "False",
                        "Conflict",
                        format!(
                            "{}/{} is bound by the older association {}; this one does not count",
                            a.namespace, a.service_account, w.association.name
                        ),
                    ),
                    None => ("Unknown", "Pending", String::new()),
                }
            };
            let current = s.status.pointer("/conditions").and_then(Value::as_array);
            let current_ready = current.and_then(|c| {
                c.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
            });
            let same = |k: &str, v: &str| {
                current_ready.and_then(|c| c.get(k)).and_then(Value::as_str) == Some(v)
            };
            let id = association::association_id(&a.uid);
            let unchanged = same("status", ready)
                && same("reason", reason)
                && same("message", &message)
                && s.status.get("associationId").and_then(Value::as_str) == Some(id.as_str())
                && s.status.get("observedGeneration").and_then(Value::as_i64) == Some(s.generation);
            if unchanged {
                continue;
            }
            let since = match current_ready {
                Some(c) if same("status", ready) => c
                    .get("lastTransitionTime")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => None,
            }
            .unwrap_or_else(|| humantime::format_rfc3339_seconds(now).to_string());
            out.push((
                name.clone(),
                json!({
                    "associationId": id,
                    "observedGeneration": s.generation,
                    "conditions": [{
                        "type": "Ready",
                        "status": ready,
                        "reason": reason,
                        "message": message,
                        "lastTransitionTime": since,
                    }],
                }),
            ));
        }
        out
    }
}

/// Lists and watches the associations into `store` for ever; with
/// `write_status`, writes each one's status when it changes.
pub async fn run(api: Arc<KubeApi>, store: Arc<AssociationStore>, write_status: bool) {
    let path = collection_path();
    let mut backoff = Duration::from_secs(1);
    loop {
        let rv = match api.get(&path).await {
            Ok(list) => {
                let items = list
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                store.replace(&items);
                backoff = Duration::from_secs(1);
                list.pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("0")
                    .to_string()
            }
            Err(e) => {
                match e {
                    KubeError::NotFound => tracing::warn!(
                        "the PodIdentityAssociation CRD is not installed (install the chart's crds/); retrying"
                    ),
                    e => tracing::warn!(error = %e, "cannot list PodIdentityAssociations; retrying"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if write_status {
            write_statuses(&api, &store).await;
        }
        // Watch from there; a watch the API server ends (timeoutSeconds)
        // resumes from the last version seen; an error or an expired
        // version lists again.
        let mut rv = rv;
        'watch: loop {
            let events = match api.watch(&path, &rv, 300).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "the PodIdentityAssociation watch failed; listing again");
                    tokio::time::sleep(backoff).await;
                    break 'watch;
                }
            };
            let mut events = std::pin::pin!(events);
            while let Some(ev) = events.next().await {
                let Ok(ev) = ev else { break 'watch };
                let kind = ev.get("type").and_then(Value::as_str).unwrap_or_default();
                if kind == "ERROR" {
                    break 'watch;
                }
                if let Some(v) = store.apply(&ev) {
                    rv = v;
                }
                if write_status && kind != "BOOKMARK" {
                    write_statuses(&api, &store).await;
                }
            }
        }
    }
}

async fn write_statuses(api: &KubeApi, store: &AssociationStore) {
    for (name, status) in store.status_changes(crate::clock::Clock::system().wall()) {
        let path = format!("{}/{name}/status", collection_path());
        match api.merge_patch(&path, &json!({ "status": status })).await {
            Ok(()) => tracing::debug!(association = %name, "status written"),
            Err(e) => {
                tracing::warn!(association = %name, error = %e, "cannot write the association's status")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, created: &str, sa: &str, gen: i64) -> Value {
        json!({
            "metadata": {"name": name, "uid": format!("uid-{name}-0123456789abcdef"), "creationTimestamp": created,
                         "generation": gen, "resourceVersion": "7"},
            "spec": {"namespace": "ns", "serviceAccount": sa, "roleArn": "arn:aws:iam::111122223333:role/app"},
        })
    }

    #[test]
    fn the_oldest_counts_and_updates_change_the_version() {
        let store = AssociationStore::default();
        assert!(!store.is_synced());
        store.replace(&[
            obj("new", "2026-01-02T00:00:00Z", "app", 1),
            obj("old", "2026-01-01T00:00:00Z", "app", 1),
        ]);
        assert!(store.is_synced());
        let b = store.get("ns", "app").unwrap();
        assert_eq!(b.association.name, "old");
        assert!(b.id.starts_with("a-"));
        let v1 = b.version.clone();
        store.apply(
            &json!({"type": "MODIFIED", "object": obj("old", "2026-01-01T00:00:00Z", "app", 2)}),
        );
        assert_ne!(store.get("ns", "app").unwrap().version, v1);
        store.apply(
            &json!({"type": "DELETED", "object": obj("old", "2026-01-01T00:00:00Z", "app", 2)}),
        );
        assert_eq!(store.get("ns", "app").unwrap().association.name, "new");
        store.apply(
            &json!({"type": "DELETED", "object": obj("new", "2026-01-02T00:00:00Z", "app", 1)}),
        );
        assert!(store.get("ns", "app").is_none());
        assert!(store.is_empty());
    }

    #[test]
    fn statuses_say_bound_conflict_or_invalid_and_settle() {
        let store = AssociationStore::default();
        let mut bad = obj("bad", "2026-01-01T00:00:00Z", "other", 1);
        bad["spec"]["roleArn"] = json!("not-an-arn");
        store.replace(&[
            obj("new", "2026-01-02T00:00:00Z", "app", 1),
            obj("old", "2026-01-01T00:00:00Z", "app", 3),
            bad,
        ]);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let changes: HashMap<String, Value> = store.status_changes(now).into_iter().collect();
        assert_eq!(changes.len(), 3);
        let ready = |n: &str| changes[n]["conditions"][0].clone();
        assert_eq!(ready("old")["status"], "True");
        assert_eq!(ready("old")["reason"], "Bound");
        assert_eq!(changes["old"]["observedGeneration"], 3);
        assert_eq!(ready("new")["reason"], "Conflict");
        assert!(ready("new")["message"].as_str().unwrap().contains("old"));
        assert_eq!(ready("bad")["reason"], "Invalid");
        // Written back (as the watch would show it), nothing more to write.
        for (name, status) in &changes {
            let mut o = match name.as_str() {
                "old" => obj("old", "2026-01-01T00:00:00Z", "app", 3),
                "new" => obj("new", "2026-01-02T00:00:00Z", "app", 1),
                _ => {
                    let mut b = obj("bad", "2026-01-01T00:00:00Z", "other", 1);
                    b["spec"]["roleArn"] = json!("not-an-arn");
                    b
                }
            };
            o["status"] = status.clone();
            store.apply(&json!({"type": "MODIFIED", "object": o}));
        }
        assert!(store.status_changes(now).is_empty());
        // The older one goes: the newer one becomes Bound, with a new time.
        store.apply(
            &json!({"type": "DELETED", "object": obj("old", "2026-01-01T00:00:00Z", "app", 3)}),
        );
        let later = now + Duration::from_secs(60);
        let changes = store.status_changes(later);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].1["conditions"][0]["status"], "True");
        assert_eq!(
            changes[0].1["conditions"][0]["lastTransitionTime"],
            humantime::format_rfc3339_seconds(later).to_string()
        );
    }
}
