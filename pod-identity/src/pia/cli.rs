//! `podidentityassociation`'s commands: flags into a spec, what exists read
//! (the caller's account, the role, every association object, the
//! ServiceAccount), the plan printed or carried out; `get` as a table or
//! JSON/YAML.

use std::io::Write;

use serde_json::Value;

use super::plan::{plan_create, plan_delete, World};
use super::spec::{object_name, Flags};
use super::state::{existing, read_world};
use crate::args::{Output, Pia, PiaTarget, Utils};
use crate::error::{Error, Result};
use crate::iamsa::spec::parse_tags;
use crate::{aws, cluster, iam, plan_or_apply, serialize};

fn broker_role(t: &PiaTarget) -> Result<String> {
    t.broker_role_arn.clone().ok_or_else(|| {
        Error::Usage(
            "--broker-role-arn (or POD_IDENTITY_BROKER_ROLE_ARN) is required: the role the broker runs as".into(),
        )
    })
}

pub async fn run(
    cmd: Pia,
    kube: &cluster::KubeTarget,
    region: Option<String>,
    out: &mut dyn Write,
) -> Result<()> {
    match cmd {
        Pia::Get {
            namespace,
            service_account_name,
            output,
        } => {
            let cluster = cluster::Cluster::connect(kube).await?;
            let all = super::get::rows(&cluster.association_objects().await?);
            let picked: Vec<super::get::Row> = all
                .into_iter()
                .filter(|r| namespace.as_deref().is_none_or(|n| n == r.namespace))
                .filter(|r| {
                    service_account_name
                        .as_deref()
                        .is_none_or(|n| n == r.service_account)
                })
                .collect();
            let text = match output {
                Output::Text | Output::Table => super::get::table(&picked),
                o => serialize(&picked, o)?,
            };
            let _ = write!(out, "{text}");
            Ok(())
        }
        Pia::Create {
            file: Some(file),
            broker_role_arn,
            approve,
            ..
        } => from_file(&file, broker_role_arn, false, kube, region, approve, out).await,
        Pia::Create {
            file: None,
            cluster: cluster_name,
            namespace,
            service_account_name,
            broker_role_arn,
            role_arn,
            role_name,
            permission_policy_arns,
            permissions_boundary_arn,
            target_role_arn,
            disable_session_tags,
            tags,
            create_service_account,
            approve,
        } => {
            let spec = Flags {
                cluster: cluster_name.unwrap_or_default(),
                namespace,
                service_account: service_account_name.unwrap_or_default(),
                role_arn,
                role_name,
                permission_policy_arns,
                permissions_boundary_arn,
                target_role_arn,
                disable_session_tags,
                tags: tags
                    .as_deref()
                    .map(parse_tags)
                    .transpose()?
                    .unwrap_or_default(),
                create_service_account,
                broker_role_arn,
            }
            .validate()?;
            let (aws, cluster, world) = read_world(&spec, kube, region).await?;
            let plan = plan_create(&spec, &world)?;
            let subject = format!(
                "PodIdentityAssociation {}",
                object_name(&spec.namespace, &spec.service_account)
            );
            plan_or_apply(&subject, &plan, approve, &aws, Some(&cluster), out).await
        }
        Pia::Apply {
            file,
            broker_role_arn,
            approve,
        } => from_file(&file, broker_role_arn, true, kube, region, approve, out).await,
        Pia::SetupBroker {
            cluster,
            namespace,
            service_account_name,
            role_name,
            approve,
        } => {
            let role_name = role_name.unwrap_or_else(|| format!("pod-identity-broker-{cluster}"));
            let spec = crate::iamsa::spec::Spec {
                namespace: namespace.clone(),
                name: service_account_name.clone(),
                role_name: Some(role_name.clone()),
                inline_policy: Some(crate::policy::broker_trust::broker_permissions(&cluster)),
                role_only: true,
                ..Default::default()
            };
            let run = crate::iamsa::cli::Run {
                cluster_name: Some(cluster.clone()),
                region,
                with_oidc: false,
                issuer_ca_file: None,
                opts: crate::iamsa::plan::CreateOptions {
                    adopt_role: false,
                    declarative: true,
                },
                verb: "podidentityassociation setup-broker",
            };
            crate::iamsa::cli::create(vec![spec], run, kube, approve, out).await?;
            let _ = writeln!(
                out,
                "\nThe broker runs as this role once its ServiceAccount {namespace}/{service_account_name} carries eks.amazonaws.com/role-arn=<the role's ARN> (Helm: --set broker.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=<ARN>) and the webhook serves its namespace; pass the ARN as --broker-role-arn to `podidentityassociation create`."
            );
            Ok(())
        }
        Pia::Update {
            target,
            role_arn,
            target_role_arn,
            disable_session_tags,
            approve,
        } => {
            let spec = Flags {
                cluster: target.cluster,
                namespace: target.namespace,
                service_account: target.service_account_name,
                role_arn: Some(role_arn),
                target_role_arn,
                disable_session_tags,
                broker_role_arn: target.broker_role_arn,
                ..Flags::default()
            }
            .validate()?;
            let (aws, cluster, world) = read_world(&spec, kube, region).await?;
            let plan = super::plan::plan_update(&spec, &world)?;
            let subject = format!(
                "PodIdentityAssociation {}",
                object_name(&spec.namespace, &spec.service_account)
            );
            plan_or_apply(&subject, &plan, approve, &aws, Some(&cluster), out).await
        }
        Pia::Delete { target, approve } => {
            crate::iamsa::spec::validate_names(&target.namespace, &target.service_account_name)?;
            let broker = broker_role(&target)?;
            let aws = aws::Aws::load(region.as_deref()).await;
            let cluster = cluster::Cluster::connect(kube).await?;
            let associations = existing(&cluster.association_objects().await?);
            let name = object_name(&target.namespace, &target.service_account_name);
            let role_name = associations
                .iter()
                .find(|a| a.name == name)
                .and_then(|a| a.spec.get("roleArn").and_then(Value::as_str))
                .and_then(|arn| arn.rsplit('/').next())
                .map(str::to_string);
            let role = match role_name {
                Some(r) => iam::get_role(&aws.iam, &r).await?,
                None => None,
            };
            let world = World {
                role,
                associations,
                ..World::default()
            };
            let plan = plan_delete(
                &target.cluster,
                &target.namespace,
                &target.service_account_name,
                &broker,
                &world,
            )?;
            plan_or_apply(
                &format!("PodIdentityAssociation {name}"),
                &plan,
                approve,
                &aws,
                Some(&cluster),
                out,
            )
            .await
        }
    }
}

/// `apply -f` (declarative) and `create -f` (nothing removed): the
/// associations of an eksctl ClusterConfig.
async fn from_file(
    file: &std::path::Path,
    broker_role_arn: Option<String>,
    remove_dropped: bool,
    kube: &cluster::KubeTarget,
    region: Option<String>,
    approve: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let f = super::config_file::read(file, broker_role_arn.as_deref())?;
    let cluster_name = f.cluster.clone().ok_or_else(|| Error::InvalidFile {
        path: file.to_path_buf(),
        message: "metadata.name (the cluster's name) is required".into(),
    })?;
    let broker = broker_role_arn.clone().ok_or_else(|| {
        Error::Usage("--broker-role-arn (or POD_IDENTITY_BROKER_ROLE_ARN) is required".into())
    })?;
    let specs = f
        .entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            e.validate().map_err(|err| Error::InvalidFile {
                path: file.to_path_buf(),
                message: format!("iam.podIdentityAssociations[{i}]: {err}"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let aws = aws::Aws::load(region.or(f.region).as_deref()).await;
    let cluster = cluster::Cluster::connect(kube).await?;
    let (partition, account) = crate::iamsa::state::caller_account(&aws).await?;
    let associations = existing(&cluster.association_objects().await?);
    let mut role_names: std::collections::BTreeSet<String> =
        specs.iter().map(|s| s.role_name().to_string()).collect();
    role_names.extend(
        associations
            .iter()
            .filter(|a| a.managed)
            .filter_map(|a| super::plan::role_name_of(a).map(str::to_string)),
    );
    let mut roles = std::collections::BTreeMap::new();
    for r in role_names {
        if let Some(state) = iam::get_role(&aws.iam, &r).await? {
            roles.insert(r, state);
        }
    }
    let mut namespaces = std::collections::BTreeSet::new();
    let mut accounts = std::collections::BTreeSet::new();
    for s in &specs {
        if cluster.namespace_exists(&s.namespace).await? {
            namespaces.insert(s.namespace.clone());
        }
        if cluster
            .service_account(&s.namespace, &s.service_account)
            .await?
            .is_some()
        {
            accounts.insert((s.namespace.clone(), s.service_account.clone()));
        }
    }
    let w = super::plan::ApplyWorld {
        partition,
        account,
        roles,
        associations,
        namespaces,
        service_accounts: accounts,
    };
    let plan = super::plan::plan_apply(&specs, &cluster_name, &broker, &w, remove_dropped)?;
    let subject = format!("PodIdentityAssociations of {}", file.display());
    plan_or_apply(&subject, &plan, approve, &aws, Some(&cluster), out).await
}

/// `utils migrate-to-pod-identity`.
pub async fn utils(
    cmd: Utils,
    kube: &cluster::KubeTarget,
    region: Option<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let Utils::MigrateToPodIdentity {
        cluster: cluster_name,
        broker_role_arn,
        namespace,
        remove_oidc_provider_trust_relationship,
        approve,
    } = cmd;
    crate::iamsa::spec::validate_cluster_name(&cluster_name)?;
    let broker = contract::RoleArn::parse(&broker_role_arn)
        .map_err(|e| Error::Usage(format!("--broker-role-arn {broker_role_arn:?}: {e}")))?;
    let aws = aws::Aws::load(region.as_deref()).await;
    let cluster = cluster::Cluster::connect(kube).await?;
    let key = format!(
        "{}/{}",
        contract::annotations::DEFAULT_PREFIX,
        contract::annotations::ROLE_ARN
    );
    let api: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> = match &namespace {
        Some(ns) => kube::Api::namespaced(cluster.client.clone(), ns),
        None => kube::Api::all(cluster.client.clone()),
    };
    let mut annotated: Vec<super::migrate::Annotated> = cluster::list_all(&api)
        .await?
        .into_iter()
        .filter_map(|sa| {
            let role = sa
                .metadata
                .annotations
                .as_ref()?
                .get(&key)?
                .trim()
                .to_string();
            Some(super::migrate::Annotated {
                namespace: sa.metadata.namespace.clone()?,
                name: sa.metadata.name.clone()?,
                annotation_key: key.clone(),
                role_arn: role,
            })
        })
        .collect();
    annotated.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let (partition, account) = crate::iamsa::state::caller_account(&aws).await?;
    let mut roles = std::collections::BTreeMap::new();
    for a in &annotated {
        let name = a
            .role_arn
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        if roles.contains_key(&name) {
            continue;
        }
        if let Some(r) = iam::get_role(&aws.iam, &name).await? {
            roles.insert(name, r);
        }
    }
    let issuer = cluster.issuer().await?;
    let provider_arn = match iam::find_provider(&aws.iam, &issuer).await? {
        Some(p) => p.arn,
        None => crate::policy::provider_arn_for(&partition, &account, &issuer),
    };
    let m = super::migrate::Migration {
        world: World {
            partition,
            account,
            associations: existing(&cluster.association_objects().await?),
            ..World::default()
        },
        roles,
        issuer,
        provider_arn,
    };
    let plan = super::migrate::plan_migration(
        &annotated,
        &m,
        &super::migrate::Options {
            cluster: cluster_name,
            broker_role_arn: broker,
            remove_irsa: remove_oidc_provider_trust_relationship,
        },
    )?;
    let subject = format!(
        "migration to Pod Identity ({} ServiceAccount(s))",
        annotated.len()
    );
    plan_or_apply(&subject, &plan, approve, &aws, Some(&cluster), out).await
}
