//! Reads the [`Facts`] of one pod or ServiceAccount: the cluster (namespace,
//! ServiceAccount, pod, webhook configurations and the webhook's serving
//! certificate, agent pods), IAM (provider, role) and, with `--exchange`,
//! STS. Nothing is changed; tokens minted for `--exchange` are never printed.
//! Long because it is every read doctor makes (cluster, IAM, STS, the
//! webhook's TLS), kept apart from the pure checks.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, ListParams};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::json;

use contract::mode::FailurePolicy;

use super::cert::pem_certs;
use super::facts::*;
use crate::aws::Aws;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::iam::{find_provider, get_role};

/// The webhook name the chart and upstream register.
pub const WEBHOOK_NAME: &str = "pod-identity-webhook.amazonaws.com";
/// The webhook name of EKS's managed pod identity webhook (configuration
/// `pod-identity-webhook`).
pub const EKS_WEBHOOK_NAME: &str = "iam-for-pods.amazonaws.com";
/// Upstream's ConfigMap of ServiceAccount settings (`--watch-config-map`).
pub const CONFIG_MAP_NAME: &str = "pod-identity-webhook";

/// Whether a webhook of a configuration is a pod identity webhook: by the
/// webhook names this project, upstream and EKS use, by the configuration
/// doctor was pointed at, or by a configuration or Service named like
/// upstream's (`pod-identity-webhook`).
pub fn is_pod_identity_webhook(
    configuration: &str,
    webhook: &str,
    service: Option<&str>,
    asked: Option<&str>,
) -> bool {
    webhook == WEBHOOK_NAME
        || webhook == EKS_WEBHOOK_NAME
        || asked == Some(configuration)
        || configuration.contains("pod-identity-webhook")
        || service.is_some_and(|s| s.contains("pod-identity-webhook"))
}

/// Whether `host` is a loopback name or address.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What doctor was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub prefix: String,
    pub default_mode: contract::mode::CredentialMode,
    pub sidecar_name: String,
    /// Also consider this MutatingWebhookConfiguration (by name).
    pub webhook_configuration: Option<String>,
    pub exchange: bool,
    /// The broker's URL and CA for a Pod Identity pod's `--exchange`.
    pub broker_url: Option<String>,
    pub broker_ca_file: Option<std::path::PathBuf>,
}

pub fn now() -> i64 {
    crate::clock::now_unix()
}

fn unix(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_second()
}

/// When `key` of the object's annotations was last written, from managedFields.
fn annotated_at(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<i64> {
    let field = format!("f:{key}");
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:metadata"))
                .and_then(|m| m.get("f:annotations"))
                .is_some_and(|a| a.get(&field).is_some())
        })
        .filter_map(|m| m.time.as_ref().map(unix))
        .max()
}

pub fn pod_facts(p: &Pod) -> PodFacts {
    let spec = p.spec.clone().unwrap_or_default();
    let status = p.status.clone().unwrap_or_default();
    let ready =
        |name: &str, statuses: &Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>| {
            statuses
                .iter()
                .flatten()
                .find(|s| s.name == name)
                .map(|s| s.ready)
        };
    let convert = |c: &k8s_openapi::api::core::v1::Container, init: bool| ContainerFacts {
        role_arn: c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "AWS_ROLE_ARN")
            .and_then(|e| e.value.clone()),
        name: c.name.clone(),
        env: c.env.iter().flatten().map(|e| e.name.clone()).collect(),
        mounts: c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.clone(), m.mount_path.clone()))
            .collect(),
        ready: if init {
            ready(&c.name, &status.init_container_statuses)
        } else {
            ready(&c.name, &status.container_statuses)
        },
        init,
    };
    let mut containers: Vec<ContainerFacts> =
        spec.containers.iter().map(|c| convert(c, false)).collect();
    containers.extend(
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| convert(c, true)),
    );
    let token_volumes = spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            let sources = v.projected.as_ref()?.sources.as_ref()?;
            let t = sources
                .iter()
                .find_map(|s| s.service_account_token.as_ref())?;
            Some(TokenVolume {
                name: v.name.clone(),
                audience: t.audience.clone(),
                expiration_seconds: t.expiration_seconds,
            })
        })
        // The API server's own kube-api-access volume has no audience.
        .filter(|v| v.audience.is_some())
        .collect();
    PodFacts {
        labels: p.metadata.labels.clone().unwrap_or_default(),
        annotations: p.metadata.annotations.clone().unwrap_or_default(),
        created: p.metadata.creation_timestamp.as_ref().map(unix),
        node: spec.node_name.clone(),
        host_network: spec.host_network.unwrap_or(false),
        service_account: spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        containers,
        token_volumes,
    }
}

pub fn service_account_facts(sa: &ServiceAccount, prefix: &str) -> ServiceAccountFacts {
    ServiceAccountFacts {
        annotations: sa.metadata.annotations.clone().unwrap_or_default(),
        role_annotated_at: annotated_at(&sa.metadata, &format!("{prefix}/role-arn")),
    }
}

/// Accepts any certificate: used only to read the chain a webhook presents,
/// which is then verified against the caBundle by `cert::verify`.
#[derive(Debug)]
struct CaptureOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for CaptureOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate chain presented at `url` (https).
async fn served_chain(url: &str) -> std::result::Result<Vec<Vec<u8>>, Unavailable> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    let host = uri
        .host()
        .ok_or("no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CaptureOnly(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
        let chain: Vec<Vec<u8>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.to_vec())
            .collect();
        Ok::<_, String>(chain)
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), connect)
        .await
        .map_err(|_| Unavailable::from("no TLS answer in 10 s"))?
        .map_err(Unavailable)
}

/// The serving certificate of a Service-backed webhook: the TLS Secret in
/// its namespace whose certificate names the Service.
async fn secret_chain(cluster: &Cluster, namespace: &str, server_name: &str) -> ServingCert {
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    let list = match api
        .list(&ListParams::default().fields("type=kubernetes.io/tls"))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            return ServingCert::NotFound(format!("cannot list TLS Secrets in {namespace}: {e}"))
        }
    };
    let mut first = None;
    for s in list.items {
        let Some(crt) = s.data.as_ref().and_then(|d| d.get("tls.crt")) else {
            continue;
        };
        let chain = pem_certs(&crt.0);
        let name = format!(
            "{namespace}/{}",
            s.metadata.name.clone().unwrap_or_default()
        );
        let names = chain
            .first()
            .and_then(|leaf| super::cert::leaf_facts(leaf).ok())
            .map(|(_, n)| n)
            .unwrap_or_default();
        if names.iter().any(|n| n.contains(server_name)) {
            return ServingCert::Secret { name, chain };
        }
        first.get_or_insert(ServingCert::Secret { name, chain });
    }
    first.unwrap_or_else(|| {
        ServingCert::NotFound(format!(
            "no kubernetes.io/tls Secret in namespace {namespace}"
        ))
    })
}

/// Every pod-identity webhook for pods CREATE.
pub async fn webhooks(cluster: &Cluster, configuration: Option<&str>) -> Result<Vec<WebhookFacts>> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(cluster.client.clone());
    let mut out = Vec::new();
    for config in api.list(&ListParams::default()).await?.items {
        let config_name = config.metadata.name.clone().unwrap_or_default();
        for w in config.webhooks.iter().flatten() {
            let ours = is_pod_identity_webhook(
                &config_name,
                &w.name,
                w.client_config.service.as_ref().map(|s| s.name.as_str()),
                configuration,
            );
            let pods_create = w.rules.iter().flatten().any(|r| {
                let has = |v: &Option<Vec<String>>, x: &str| {
                    v.iter().flatten().any(|s| s == x || s == "*")
                };
                has(&r.operations, "CREATE") && has(&r.resources, "pods") && has(&r.api_groups, "")
            });
            if !(ours && pods_create) {
                continue;
            }
            let (server_name, cert) = match (&w.client_config.url, &w.client_config.service) {
                (Some(url), _) => {
                    let host = url
                        .parse::<http::Uri>()
                        .ok()
                        .and_then(|u| u.host().map(str::to_string))
                        .unwrap_or_default();
                    // A loopback URL is the API server's own machine: reach
                    // it only when this is that machine (the API server is
                    // on loopback too); from a workstation it would be the
                    // workstation's own port.
                    let local_api = cluster.api_host.as_deref().is_some_and(is_loopback);
                    let cert = if is_loopback(&host) && !local_api {
                        ServingCert::ControlPlane { url: url.clone() }
                    } else {
                        match served_chain(url).await {
                            Ok(chain) => ServingCert::Served {
                                url: url.clone(),
                                chain,
                            },
                            Err(e) => ServingCert::NotFound(format!("{url}: {e}")),
                        }
                    };
                    (
                        host.trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string(),
                        cert,
                    )
                }
                (None, Some(svc)) => {
                    let name = format!("{}.{}.svc", svc.name, svc.namespace);
                    let cert = secret_chain(cluster, &svc.namespace, &name).await;
                    (name, cert)
                }
                (None, None) => (
                    String::new(),
                    ServingCert::NotFound("clientConfig has neither url nor service".into()),
                ),
            };
            out.push(WebhookFacts {
                configuration: config_name.clone(),
                name: w.name.clone(),
                // The API server refuses other values; absent is its default.
                failure_policy: FailurePolicy::parse(w.failure_policy.as_deref())
                    .unwrap_or_default(),
                namespace_selector: w.namespace_selector.clone(),
                object_selector: w.object_selector.clone(),
                ca_bundle: w
                    .client_config
                    .ca_bundle
                    .as_ref()
                    .map(|b| b.0.clone())
                    .unwrap_or_default(),
                server_name,
                cert,
            });
        }
    }
    Ok(out)
}

fn unreadable<T>(e: Error) -> Lookup<T> {
    Lookup::Unreadable(e.to_string())
}

/// Reads the facts of `namespace/name`: a pod when `pod` is set, else a ServiceAccount.
pub async fn gather(
    aws: &Aws,
    cluster: &Cluster,
    opts: &Options,
    namespace: &str,
    name: &str,
    pod: bool,
) -> Result<Facts> {
    let ns_api: Api<Namespace> = Api::all(cluster.client.clone());
    let namespace_labels = ns_api
        .get_opt(namespace)
        .await?
        .map(|n| n.metadata.labels.unwrap_or_default());
    let mut pod_uid = None;
    let (pod_facts, sa_name) = if pod {
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
        let p = api
            .get_opt(name)
            .await?
            .ok_or_else(|| Error::Precondition(format!("pod {namespace}/{name} does not exist")))?;
        let facts = pod_facts(&p);
        let sa = facts.service_account.clone();
        pod_uid = p.metadata.uid.clone();
        (Some(facts), sa)
    } else {
        (None, name.to_string())
    };
    let sa = cluster.service_account(namespace, &sa_name).await?;
    let service_account = sa.as_ref().map(|s| service_account_facts(s, &opts.prefix));
    let config_map = config_map_role(cluster, namespace, &sa_name).await;
    let issuer = cluster
        .issuer()
        .await
        .map_err(|e| Unavailable(e.to_string()));
    let provider = match &issuer {
        Ok(i) => match find_provider(&aws.iam, i).await {
            Ok(Some(p)) => Lookup::Found(p),
            Ok(None) => Lookup::Missing,
            Err(e) => unreadable(e),
        },
        Err(_) => Lookup::NotAsked,
    };
    let associations = associations(cluster, namespace, &sa_name).await?;
    let annotated = service_account
        .as_ref()
        .and_then(|s| s.annotations.get(&format!("{}/role-arn", opts.prefix)))
        .or(config_map.as_ref().map(|c| &c.role_arn))
        .and_then(|a| contract::RoleArn::parse(a.trim()).ok());
    // A Pod Identity pod's role is its association's (read for the trust
    // check; the exchange below is IRSA's and stays off for it).
    let association_role = associations
        .as_ref()
        .and_then(|a| a.bound.as_ref())
        .and_then(|b| contract::RoleArn::parse(&b.role_arn).ok());
    let irsa = annotated.is_some();
    let role_arn = annotated.or(association_role);
    let role = match &role_arn {
        None => Lookup::NotAsked,
        Some(arn) => {
            let account = arn.as_str().split(':').nth(4).unwrap_or_default();
            let other_account =
                matches!(&provider, Lookup::Found(p) if p.arn.split(':').nth(4) != Some(account));
            if other_account {
                Lookup::Unreadable(format!(
                    "the role is in account {account}, not the provider's"
                ))
            } else {
                match get_role(
                    &aws.iam,
                    arn.as_str().rsplit('/').next().unwrap_or_default(),
                )
                .await
                {
                    Ok(Some(r)) => Lookup::Found(r),
                    Ok(None) => Lookup::Missing,
                    Err(e) => unreadable(e),
                }
            }
        }
    };
    let exchange = match (&role_arn, opts.exchange && sa.is_some() && irsa) {
        (Some(arn), true) => Some(
            exchange(
                aws,
                cluster,
                namespace,
                &sa_name,
                arn.as_str(),
                &opts.prefix,
                service_account.as_ref(),
            )
            .await,
        ),
        _ => None,
    };
    // A Pod Identity pod's exchange: with the broker, for a token bound to
    // the pod (the broker checks that it exists).
    let exchange = match (&associations, &pod_uid, opts.exchange && !irsa) {
        (Some(a), Some(uid), true) if a.bound.is_some() => Some(match &opts.broker_url {
            None => Err(Unavailable(
                "--exchange for a Pod Identity pod needs --broker-url (the broker is usually reachable only inside the cluster: kubectl port-forward -n <namespace> svc/<broker> 8443:443)".into(),
            )),
            Some(url) => {
                broker_exchange(
                    cluster,
                    url,
                    opts.broker_ca_file.as_deref(),
                    a.broker.cluster_name.as_deref().unwrap_or_default(),
                    namespace,
                    &sa_name,
                    (name, uid),
                )
                .await
            }
        }),
        _ => exchange,
    };
    let agent = match pod_facts.as_ref().and_then(|p| p.node.clone()) {
        Some(node) => Some(agent_pods(cluster, &node).await?),
        None => None,
    };
    Ok(Facts {
        now: now(),
        prefix: opts.prefix.clone(),
        namespace: namespace.to_string(),
        service_account_name: sa_name,
        namespace_labels,
        service_account,
        config_map,
        pod: pod_facts,
        pod_name: pod.then(|| name.to_string()),
        webhooks: webhooks(cluster, opts.webhook_configuration.as_deref()).await?,
        issuer,
        provider,
        role,
        exchange,
        agent,
        associations,
        default_mode: opts.default_mode,
        sidecar_name: opts.sidecar_name.clone(),
    })
}

/// A token of namespace/sa from a TokenRequest with this body.
async fn mint_token(
    cluster: &Cluster,
    namespace: &str,
    sa: &str,
    body: &serde_json::Value,
) -> std::result::Result<String, Unavailable> {
    let req = http::Request::post(format!(
        "/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token"
    ))
    .header(http::header::CONTENT_TYPE, "application/json")
    .body(serde_json::to_vec(&body).map_err(|e| e.to_string())?)
    .map_err(|e| e.to_string())?;
    let text = cluster
        .client
        .request_text(req)
        .await
        .map_err(|e| format!("TokenRequest for {namespace}/{sa}: {e}"))?;
    let resp: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("TokenRequest answer: {e}"))?;
    let token = resp["status"]["token"]
        .as_str()
        .ok_or("TokenRequest returned no token")?
        .to_string();
    Ok(token)
}

/// AssumeRoleForPodIdentity at the broker (aws-sdk-eksauth, unsigned: the
/// broker reads only the token) with a token minted for the pod.
async fn broker_exchange(
    cluster: &Cluster,
    url: &str,
    ca_file: Option<&std::path::Path>,
    cluster_name: &str,
    namespace: &str,
    sa: &str,
    (pod, uid): (&str, &str),
) -> std::result::Result<String, Unavailable> {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [contract::injected::POD_IDENTITY_AUDIENCE], "expirationSeconds": 600,
                 "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod, "uid": uid}}});
    let token = mint_token(cluster, namespace, sa, &body).await?;
    use aws_smithy_http_client::tls;
    let mut http = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::AwsLc,
    ));
    if let Some(ca) = ca_file {
        let pem =
            std::fs::read(ca).map_err(|e| format!("--broker-ca-file {}: {e}", ca.display()))?;
        let ctx = tls::TlsContext::builder()
            .with_trust_store(tls::TrustStore::default().with_pem_certificate(pem))
            .build()
            .map_err(|e| format!("--broker-ca-file {}: {e}", ca.display()))?;
        http = http.tls_context(ctx);
    }
    let conf = aws_sdk_eksauth::Config::builder()
        .behavior_version(aws_sdk_eksauth::config::BehaviorVersion::latest())
        .region(aws_sdk_eksauth::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .allow_no_auth()
        .http_client(http.build_https())
        .build();
    match aws_sdk_eksauth::Client::from_conf(conf)
        .assume_role_for_pod_identity()
        .cluster_name(cluster_name)
        .token(token)
        .send()
        .await
    {
        Ok(out) => Ok(out.assumed_role_user.map(|u| u.arn).unwrap_or_default()),
        Err(e) => {
            use aws_sdk_eksauth::error::ProvideErrorMetadata;
            let code = e.code().unwrap_or("no error type").to_string();
            let message = e.message().unwrap_or_default().to_string();
            Err(Unavailable(if message.is_empty() {
                format!(
                    "the broker at {url} could not be asked: {}",
                    crate::doctor::gather::error_chain(&e)
                )
            } else {
                format!("{code}: {message}")
            }))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn exchange(
    aws: &Aws,
    cluster: &Cluster,
    namespace: &str,
    sa: &str,
    role_arn: &str,
    prefix: &str,
    facts: Option<&ServiceAccountFacts>,
) -> std::result::Result<String, Unavailable> {
    let audience = facts
        .and_then(|f| f.annotations.get(&format!("{prefix}/audience")).cloned())
        .unwrap_or_else(|| crate::policy::STS_AUDIENCE.to_string());
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                      "spec": {"audiences": [audience], "expirationSeconds": 600}});
    let token = mint_token(cluster, namespace, sa, &body).await?;
    let out = aws
        .sts
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name("pod-identity-doctor")
        .web_identity_token(token)
        .send()
        .await
        .map_err(|e| sts_error_text(&e))?;
    out.assumed_role_user()
        .map(|u| u.arn().to_string())
        .ok_or_else(|| "STS returned no assumed-role user".into())
}

/// An STS error as the user needs it: STS's code and message, or for a
/// request that never got an answer (DNS, connection, TLS, timeout) the
/// whole chain of causes.
fn sts_error_text<E, R>(e: &aws_sdk_sts::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sts::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sts::error::{DisplayErrorContext, SdkError};
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => format!("{}", DisplayErrorContext(e)),
            }
        }
        other => format!("no answer from STS: {}", DisplayErrorContext(other)),
    }
}

/// The ServiceAccount's entry in the webhook's ConfigMap (upstream's
/// `pod-identity-webhook`, in whichever namespace it is), when one exists
/// and can be read; doctor without permission to list ConfigMaps goes on
/// without it.
async fn config_map_role(cluster: &Cluster, namespace: &str, name: &str) -> Option<ConfigMapRole> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::all(cluster.client.clone());
    let list = api
        .list(&ListParams::default().fields(&format!("metadata.name={CONFIG_MAP_NAME}")))
        .await
        .ok()?;
    let key = format!("{namespace}/{name}");
    list.items.iter().find_map(|cm| {
        let config = cm.data.as_ref()?.get("config")?;
        let entries: BTreeMap<String, serde_json::Value> = serde_json::from_str(config).ok()?;
        let entry = entries.get(&key)?;
        Some(ConfigMapRole {
            source: format!(
                "{}/{}",
                cm.metadata.namespace.clone().unwrap_or_default(),
                CONFIG_MAP_NAME
            ),
            role_arn: entry.get("RoleARN")?.as_str()?.to_string(),
            audience: entry
                .get("Audience")
                .and_then(|a| a.as_str())
                .filter(|a| !a.is_empty())
                .map(str::to_string),
        })
    })
}

/// Labels of the node agents doctor knows, and the subcommand a pod of that
/// label must run to count: this project's chart (`credential-agent
/// serve`; other charts label their agents component=agent too, Datadog's
/// among them), and EKS's eks-pod-identity-agent add-on (any).
const AGENT_SELECTORS: [(&str, Option<&str>); 2] = [
    ("app.kubernetes.io/component=agent", Some("serve")),
    ("app.kubernetes.io/name=eks-pod-identity-agent", None),
];

/// Whether one of the pod's containers runs `credential-agent <subcommand>`
/// (its first argument), as the chart's agent and broker containers do:
/// labels alone also match other projects' agents and message brokers.
pub(crate) fn runs_subcommand(pod: &Pod, subcommand: &str) -> bool {
    pod.spec
        .as_ref()
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .any(|c| c.args.as_ref().and_then(|a| a.first()).map(String::as_str) == Some(subcommand))
}

async fn agent_pods(cluster: &Cluster, node: &str) -> Result<AgentFacts> {
    let api: Api<Pod> = Api::all(cluster.client.clone());
    let mut items = Vec::new();
    for (selector, subcommand) in AGENT_SELECTORS {
        let params = ListParams::default()
            .labels(selector)
            .fields(&format!("spec.nodeName={node}"));
        items.extend(
            api.list(&params)
                .await?
                .items
                .into_iter()
                .filter(|p| subcommand.is_none_or(|s| runs_subcommand(p, s))),
        );
    }
    let mut by_name = BTreeMap::new();
    let mut eks_auth = BTreeMap::new();
    for p in items {
        let endpoint = p
            .spec
            .as_ref()
            .into_iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.args.iter().flatten())
            .find_map(|a| a.strip_prefix("--eks-auth-endpoint="));
        if let Some(e) = endpoint {
            eks_auth.insert(p.metadata.name.clone().unwrap_or_default(), e.to_string());
        }
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        by_name.insert(p.metadata.name.unwrap_or_default(), ready);
    }
    Ok(AgentFacts {
        pods: by_name.into_iter().collect(),
        eks_auth,
    })
}

/// This project's Pod Identity as it concerns namespace/ServiceAccount:
/// `None` when the PodIdentityAssociation CRD is not installed.
async fn associations(
    cluster: &Cluster,
    namespace: &str,
    sa: &str,
) -> Result<Option<crate::doctor::facts::AssociationFacts>> {
    use crate::doctor::facts::{AssociationFacts, BoundAssociation, BrokerFacts};
    use contract::association::{self, Association};
    if !cluster.association_crd_installed().await? {
        return Ok(None);
    }
    let objects = cluster.association_objects().await?;
    let all: Vec<(Association, &kube::api::DynamicObject)> = objects
        .iter()
        .filter_map(|o| Some((crate::cluster::association_of(o)?, o)))
        .collect();
    let list: Vec<Association> = all.iter().map(|(a, _)| a.clone()).collect();
    let winners = association::winners(&list);
    let winner = winners.get(&(namespace.to_string(), sa.to_string()));
    let bound = winner.and_then(|w| {
        let (a, o) = all.iter().find(|(a, _)| a.name == w.name)?;
        let ready = o
            .data
            .pointer("/status/conditions")
            .and_then(serde_json::Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
        let field = |k: &str| {
            ready
                .and_then(|c| c.get(k))
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Some(BoundAssociation {
            name: a.name.clone(),
            role_arn: a.role_arn.clone(),
            target_role_arn: a.target_role_arn.clone(),
            disable_session_tags: a.disable_session_tags,
            ready: field("status"),
            message: field("message"),
            id: association::association_id(&a.uid),
        })
    });
    let shadowed = list
        .iter()
        .filter(|a| a.namespace == namespace && a.service_account == sa)
        .filter(|a| Some(&a.name) != winner.map(|w| &w.name))
        .map(|a| a.name.clone())
        .collect();
    // The broker: pods of the chart's broker component that run
    // `credential-agent broker` (a message broker may carry the label too).
    let api: Api<Pod> = Api::all(cluster.client.clone());
    let pods: Vec<Pod> = api
        .list(&ListParams::default().labels("app.kubernetes.io/component=broker"))
        .await?
        .items
        .into_iter()
        .filter(|p| runs_subcommand(p, "broker"))
        .collect();
    let ready = pods
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    let first = pods.first();
    let cluster_name = first
        .and_then(|p| p.spec.as_ref())
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.args.iter().flatten())
        .find_map(|a| a.strip_prefix("--cluster-name=").map(str::to_string));
    let role_arn = match first.and_then(|p| {
        Some((
            p.metadata.namespace.clone()?,
            p.spec.as_ref()?.service_account_name.clone()?,
        ))
    }) {
        Some((ns, name)) => cluster
            .service_account(&ns, &name)
            .await?
            .and_then(|s| s.metadata.annotations)
            .and_then(|a| a.get("eks.amazonaws.com/role-arn").cloned()),
        None => None,
    };
    Ok(Some(AssociationFacts {
        bound,
        shadowed,
        broker: BrokerFacts {
            ready,
            total: pods.len(),
            role_arn,
            cluster_name,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": containers}}),
        )
        .unwrap()
    }

    #[test]
    fn agents_and_brokers_are_known_by_their_subcommand_not_only_their_labels() {
        let ours = pod(json!([{"name": "agent", "args": ["serve", "--listen=169.254.170.23:80"]}]));
        assert!(runs_subcommand(&ours, "serve"));
        assert!(!runs_subcommand(&ours, "broker"));
        let broker = pod(json!([
            {"name": "sidecar", "args": ["--verbose"]},
            {"name": "broker", "args": ["broker", "--cluster-name=prod"]}
        ]));
        assert!(runs_subcommand(&broker, "broker"));
        // Datadog's agent (component=agent) and a message broker
        // (component=broker): not ours.
        let datadog = pod(json!([{"name": "agent", "command": ["agent", "run"]}]));
        assert!(!runs_subcommand(&datadog, "serve"));
        let kafka = pod(json!([{"name": "kafka", "args": ["--broker-id=1", "broker"]}]));
        assert!(!runs_subcommand(&kafka, "broker"));
    }
}
