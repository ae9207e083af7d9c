//! The Kubernetes side: a client from the kubeconfig, the cluster's issuer
//! and keys as its API server serves them, and ServiceAccounts (read,
//! annotated by server-side apply with this tool's field manager, the
//! annotation removed with a guarded JSON patch, deleted).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The field manager of this tool's server-side applies.
pub const FIELD_MANAGER: &str = "pod-identity";
/// Label on ServiceAccounts this tool created (and so may delete).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "pod-identity";

/// Which cluster to talk to (from `--kubeconfig` / `--context`).
#[derive(Debug, Clone, Default)]
pub struct KubeTarget {
    /// A kubeconfig file (else KUBECONFIG, ~/.kube/config, or in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (else its current context).
    pub context: Option<String>,
}

/// A connected cluster.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    /// The API server's host, as the kubeconfig names it.
    pub api_host: Option<String>,
}

impl Cluster {
    pub async fn connect(args: &KubeTarget) -> Result<Cluster> {
        let options = kube::config::KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        let config = match &args.kubeconfig {
            Some(path) => {
                let kc =
                    kube::config::Kubeconfig::read_from(path).map_err(|e| Error::InvalidFile {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| Error::kube(format!("kubeconfig {}", path.display()), e))?
            }
            None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| Error::kube("kubeconfig", e))?,
            None => kube::Config::infer()
                .await
                .map_err(|e| Error::kube("no cluster configured (--kubeconfig)", e))?,
        };
        let api_host = config.cluster_url.host().map(str::to_string);
        let client = kube::Client::try_from(config)?;
        Ok(Cluster { client, api_host })
    }

    async fn get_json(&self, path: &str) -> Result<Value> {
        let req = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| Error::kube(format!("GET {path}"), e))?;
        let text = self
            .client
            .request_text(req)
            .await
            .map_err(|e| Error::kube(format!("GET {path}"), e))?;
        serde_json::from_str(&text).map_err(|e| Error::kube(format!("GET {path}: not JSON"), e))
    }

    /// The API server's discovery document (`issuer`, `jwks_uri`).
    pub async fn discovery(&self) -> Result<Value> {
        self.get_json("/.well-known/openid-configuration").await
    }

    /// The issuer URL of the cluster's ServiceAccount tokens.
    pub async fn issuer(&self) -> Result<String> {
        let d = self.discovery().await?;
        d["issuer"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::kube("the API server's discovery document", "it has no issuer"))
    }

    /// The keys that verify the cluster's ServiceAccount tokens.
    pub async fn jwks(&self) -> Result<Value> {
        self.get_json("/openid/v1/jwks").await
    }

    fn service_accounts(&self, namespace: &str) -> Api<ServiceAccount> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ServiceAccount>> {
        self.service_accounts(namespace)
            .get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("reading ServiceAccount {namespace}/{name}"), e))
    }

    pub async fn namespace_exists(&self, name: &str) -> Result<bool> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.get_opt(name)
            .await
            .map(|n| n.is_some())
            .map_err(|e| Error::kube(format!("reading namespace {name}"), e))
    }

    /// Creates a namespace (one that exists already is fine).
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&kube::api::PostParams::default(), &ns).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(Error::kube(format!("creating namespace {name}"), e)),
        }
    }

    /// Sets the annotation by server-side apply; `create` also labels the
    /// ServiceAccount as made by this tool; `force` takes the field over
    /// from another manager (`--override-existing-serviceaccounts`).
    pub async fn apply_annotation(
        &self,
        namespace: &str,
        name: &str,
        annotations: &[(String, String)],
        labels: &[(String, String)],
        create: bool,
        force: bool,
    ) -> Result<()> {
        let mut annotation_map = serde_json::Map::new();
        for (k, v) in annotations {
            annotation_map.insert(k.clone(), json!(v));
        }
        let mut label_map = serde_json::Map::new();
        for (k, v) in labels {
            label_map.insert(k.clone(), json!(v));
        }
        if create {
            label_map.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY_VALUE));
        }
        let mut metadata =
            json!({"name": name, "namespace": namespace, "annotations": annotation_map});
        if !label_map.is_empty() {
            metadata["labels"] = Value::Object(label_map);
        }
        let body = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata});
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = force;
        self.service_accounts(namespace)
            .patch(name, &params, &Patch::Apply(&body))
            .await
            .map_err(|e| Error::kube(format!("applying ServiceAccount {namespace}/{name}"), e))?;
        Ok(())
    }

    /// Removes annotation `key` if it still has `value`.
    pub async fn remove_annotation(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        let pointer = format!(
            "/metadata/annotations/{}",
            key.replace('~', "~0").replace('/', "~1")
        );
        let patch: Vec<Value> = vec![
            json!({"op": "test", "path": pointer, "value": value}),
            json!({"op": "remove", "path": pointer}),
        ];
        let req = http::Request::patch(format!(
            "/api/v1/namespaces/{namespace}/serviceaccounts/{name}?fieldManager={FIELD_MANAGER}"
        ))
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(serde_json::to_vec(&patch).map_err(|e| Error::kube("encoding a JSON patch", e))?)
        .map_err(|e| Error::kube("building a JSON patch request", e))?;
        self.client.request_text(req).await.map_err(|e| {
            Error::kube(
                format!("removing {key} from ServiceAccount {namespace}/{name}"),
                e,
            )
        })?;
        Ok(())
    }

    pub async fn delete_service_account(&self, namespace: &str, name: &str) -> Result<()> {
        match self
            .service_accounts(namespace)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(Error::kube(
                format!("deleting ServiceAccount {namespace}/{name}"),
                e,
            )),
        }
    }
}

/// The CRD's API resource.
fn association_resource() -> kube::api::ApiResource {
    use contract::association;
    kube::api::ApiResource {
        group: association::GROUP.into(),
        version: association::VERSION.into(),
        api_version: format!("{}/{}", association::GROUP, association::VERSION),
        kind: association::KIND.into(),
        plural: association::PLURAL.into(),
    }
}

impl Cluster {
    fn associations_api(&self) -> Api<kube::api::DynamicObject> {
        Api::all_with(self.client.clone(), &association_resource())
    }

    /// Every PodIdentityAssociation object; none when the CRD is not
    /// installed.
    pub async fn association_objects(&self) -> Result<Vec<kube::api::DynamicObject>> {
        match list_all(&self.associations_api()).await {
            Ok(o) => Ok(o),
            Err(Error::Kube { source, .. }) if matches!(source.downcast_ref::<kube::Error>(), Some(kube::Error::Api(e)) if e.code == 404) => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Every PodIdentityAssociation whose spec reads (contract's rules);
    /// none when the CRD is not installed.
    pub async fn associations(&self) -> Result<Vec<contract::association::Association>> {
        Ok(self
            .association_objects()
            .await?
            .iter()
            .filter_map(association_of)
            .collect())
    }

    /// Whether the PodIdentityAssociation CRD is installed.
    pub async fn association_crd_installed(&self) -> Result<bool> {
        let params = kube::api::ListParams::default().limit(1);
        match self.associations_api().list(&params).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(Error::kube("listing PodIdentityAssociations", e)),
        }
    }

    /// Writes the association by server-side apply (field manager
    /// `pod-identity`), labelled as made by this tool.
    pub async fn apply_association(&self, name: &str, spec: &Value) -> Result<()> {
        use contract::association;
        let body = json!({
            "apiVersion": format!("{}/{}", association::GROUP, association::VERSION),
            "kind": association::KIND,
            "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
            "spec": spec,
        });
        self.associations_api()
            .patch(name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&body))
            .await
            .map_err(|e| {
                let hint = if matches!(&e, kube::Error::Api(a) if a.code == 404) {
                    " (is the PodIdentityAssociation CRD installed? it comes with the Helm chart, crds/)"
                } else {
                    ""
                };
                Error::kube(format!("applying PodIdentityAssociation {name}{hint}"), e)
            })?;
        Ok(())
    }

    pub async fn delete_association(&self, name: &str) -> Result<()> {
        match self
            .associations_api()
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(Error::kube(
                format!("deleting PodIdentityAssociation {name}"),
                e,
            )),
        }
    }
}

/// Every object of `api`, listed in pages of 500 (a large cluster's pods
/// never arrive as one response).
pub async fn list_all<K>(api: &kube::Api<K>) -> Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = kube::api::ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        out.extend(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// The association an object holds, when its spec reads.
pub fn association_of(o: &kube::api::DynamicObject) -> Option<contract::association::Association> {
    contract::association::Association::from_json(
        o.metadata.name.as_deref()?,
        o.metadata.uid.as_deref().unwrap_or_default(),
        &o.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        o.data.get("spec")?,
    )
}
