//! The upstream container credentials config file:
//! `{"identities": [{"namespace": "ns", "serviceAccount": "sa"}]}`. Listed
//! identities get container credentials instead of web identity. The file is
//! polled and re-read when its content changes; an invalid new version is
//! logged and the previous one kept.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;

use crate::metrics::Metrics;
use crate::{Error, Result};

contract::message_error! {
    /// A container-credentials file that cannot be read as one.
    ContainerCredsError
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    identities: Option<Vec<IdentityItem>>,
}

#[derive(Debug, Deserialize)]
struct IdentityItem {
    namespace: String,
    #[serde(rename = "serviceAccount")]
    service_account: String,
}

/// The set of (namespace, ServiceAccount) pairs listed for container credentials.
#[derive(Debug, Default)]
pub struct ContainerCredentialsIdentities {
    /// namespace -> ServiceAccount names, so a lookup needs no allocation.
    set: RwLock<HashMap<String, HashSet<String>>>,
}

fn by_namespace(set: HashSet<(String, String)>) -> HashMap<String, HashSet<String>> {
    let mut map: HashMap<String, HashSet<String>> = HashMap::new();
    for (ns, sa) in set {
        map.entry(ns).or_default().insert(sa);
    }
    map
}

/// Parses the file's content. Empty content means no identities (as upstream).
pub fn parse(
    content: &[u8],
) -> std::result::Result<HashSet<(String, String)>, ContainerCredsError> {
    if content.iter().all(u8::is_ascii_whitespace) {
        return Ok(HashSet::new());
    }
    let file: ConfigFile = serde_json::from_slice(content).map_err(|e| e.to_string())?;
    Ok(file
        .identities
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.namespace, i.service_account))
        .collect())
}

impl ContainerCredentialsIdentities {
    pub fn from_set(set: HashSet<(String, String)>) -> Self {
        ContainerCredentialsIdentities {
            set: RwLock::new(by_namespace(set)),
        }
    }

    /// Loads the file once; a missing or invalid file is an error.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let set = parse(&bytes).map_err(|message| Error::InvalidFile {
            path: path.to_path_buf(),
            message: message.to_string(),
        })?;
        Ok(Self::from_set(set))
    }

    pub fn contains(&self, namespace: &str, service_account: &str) -> bool {
        self.set
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .is_some_and(|sas| sas.contains(service_account))
    }

    pub fn len(&self) -> usize {
        self.set
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(HashSet::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn replace(&self, set: HashSet<(String, String)>) {
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = by_namespace(set);
    }

    /// Re-reads `path` every `interval` and applies changed, valid content.
    pub fn spawn_poller(
        self: &Arc<Self>,
        path: PathBuf,
        interval: Duration,
        metrics: Arc<Metrics>,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        // The content as of now, not as of the task's first run: a change
        // made in between is then seen as one.
        let mut last = std::fs::read(&path).ok();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Ok(bytes) = tokio::fs::read(&path).await else {
                    continue;
                };
                if last.as_deref() == Some(bytes.as_slice()) {
                    continue;
                }
                match parse(&bytes) {
                    Ok(set) => {
                        tracing::info!(path = %path.display(), identities = set.len(), "reloaded container credentials config");
                        this.replace(set);
                        metrics.reload("container_credentials");
                    }
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "invalid container credentials config; keeping the previous one");
                        metrics.reload("container_credentials_error");
                    }
                }
                last = Some(bytes);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok = parse(br#"{"identities":[{"namespace":"a","serviceAccount":"b"},{"namespace":"c","serviceAccount":"d","workloadIdentity":true}]}"#).unwrap();
        assert_eq!(ok.len(), 2);
        assert!(ok.contains(&("a".into(), "b".into())));
        assert!(parse(b"").unwrap().is_empty());
        assert!(parse(b"{}").unwrap().is_empty());
        assert!(parse(b"{\"identities\": 3}").is_err());
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{"identities":[{"namespace":"a"}]}"#).is_err());
    }

    // Real time: the poller reads the file on tokio's blocking pool, which
    // paused time does not wait for (it skipped the broken version).
    #[tokio::test]
    async fn poller_applies_valid_changes_and_keeps_old_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cc.json");
        std::fs::write(
            &path,
            br#"{"identities":[{"namespace":"a","serviceAccount":"b"}]}"#,
        )
        .unwrap();
        let ids = Arc::new(ContainerCredentialsIdentities::load(&path).unwrap());
        let metrics = Arc::new(Metrics::new());
        let task = ids.spawn_poller(path.clone(), Duration::from_millis(20), metrics.clone());
        assert!(ids.contains("a", "b"));

        let failed_reload_counted = || {
            !metrics
                .encode()
                .contains("reloads_total{kind=\"container_credentials_error\"} 0")
        };
        std::fs::write(&path, b"{broken").unwrap();
        for _ in 0..250 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if failed_reload_counted() {
                break;
            }
        }
        assert!(
            failed_reload_counted(),
            "the failed reload is counted: {}",
            metrics.encode()
        );
        assert!(
            ids.contains("a", "b"),
            "invalid content keeps the previous config"
        );

        std::fs::write(
            &path,
            br#"{"identities":[{"namespace":"x","serviceAccount":"y"}]}"#,
        )
        .unwrap();
        for _ in 0..250 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if ids.contains("x", "y") {
                break;
            }
        }
        assert!(ids.contains("x", "y"));
        assert!(!ids.contains("a", "b"));
        task.abort();
    }
}
