//! `iamserviceaccount`'s commands: flags and files into specs, the state
//! read, the plan made, printed and (with `--approve`) carried out.

use std::io::Write;

use super::spec::{parse_tags, Spec};
use crate::args::{self, IamSa, Output};
use crate::error::{Error, Result};
use crate::{aws, cluster, iamsa, oidc, plan, plan_or_apply, serialize};

/// `base` with what the grant flags ask for.
fn with_grants(base: Spec, grants: args::GrantFlags) -> Spec {
    Spec {
        policy_arns: grants.attach_policy_arn,
        permissions_boundary: grants.permissions_boundary,
        allow_no_policy: grants.allow_no_policy,
        ..base
    }
}

pub async fn run(
    cmd: IamSa,
    kube: &cluster::KubeTarget,
    region: Option<String>,
    out: &mut dyn Write,
) -> Result<()> {
    match cmd {
        IamSa::Get {
            namespace,
            name,
            output,
        } => {
            let aws = aws::Aws::load(region.as_deref()).await;
            let cluster = cluster::Cluster::connect(kube).await?;
            let report =
                iamsa::get::run(&aws, &cluster, namespace.as_deref(), name.as_deref()).await?;
            if let (Some(ns), Some(n), true) = (&namespace, &name, report.rows.is_empty()) {
                return Err(iamsa::get::not_found(ns, n));
            }
            let text = match output {
                Output::Text | Output::Table => iamsa::get::table(&report),
                o => serialize(&report.rows, o)?,
            };
            let _ = write!(out, "{text}");
            if !report.unreadable.is_empty() {
                return Err(iamsa::get::unreadable(&report));
            }
            Ok(())
        }
        IamSa::Create {
            sa,
            attach_role_arn,
            grants,
            override_existing_serviceaccounts,
            tags,
            adopt_role,
            approve,
        } => {
            let spec = with_grants(
                Spec {
                    namespace: sa.namespace,
                    name: sa.name,
                    role_name: sa.role_name,
                    attach_role_arn,
                    role_only: sa.role_only,
                    override_existing: override_existing_serviceaccounts,
                    tags: tags
                        .as_deref()
                        .map(parse_tags)
                        .transpose()?
                        .unwrap_or_default(),
                    ..Default::default()
                },
                grants,
            );
            let run = Run {
                cluster_name: sa.cluster,
                region,
                with_oidc: false,
                issuer_ca_file: None,
                opts: iamsa::plan::CreateOptions {
                    adopt_role,
                    declarative: false,
                },
                verb: "iamserviceaccount",
            };
            create(vec![spec], run, kube, approve, out).await
        }
        IamSa::Update {
            target,
            grants,
            file,
            approve,
        } => {
            let t = targets(file, target, region, |base| with_grants(base, grants))?;
            // Like eksctl's update, the IAM OIDC provider is not planned
            // here (apply does that).
            let (specs, cluster_name, region, with_oidc) = (t.specs, t.cluster, t.region, false);
            let run = Run {
                cluster_name,
                region,
                with_oidc,
                issuer_ca_file: None,
                opts: iamsa::plan::CreateOptions {
                    adopt_role: false,
                    declarative: true,
                },
                verb: "update iamserviceaccount",
            };
            create(specs, run, kube, approve, out).await
        }
        IamSa::Apply {
            file,
            override_existing_serviceaccounts,
            adopt_role,
            issuer_ca_file,
            approve,
        } => {
            let config = iamsa::config_file::read_cluster_config(&file)?;
            let specs = config
                .specs
                .into_iter()
                .map(|s| Spec {
                    override_existing: override_existing_serviceaccounts,
                    ..s
                })
                .collect();
            let run = Run {
                cluster_name: config.cluster,
                region: region.or(config.region),
                with_oidc: config.with_oidc,
                issuer_ca_file,
                opts: iamsa::plan::CreateOptions {
                    adopt_role,
                    declarative: true,
                },
                verb: "iamserviceaccount",
            };
            create(specs, run, kube, approve, out).await
        }
        IamSa::Delete {
            target,
            role_only,
            file,
            approve,
        } => {
            let t = targets(file, target, region, |base| Spec { role_only, ..base })?;
            let (specs, cluster_name, region) = (t.specs, t.cluster, t.region);
            for s in &specs {
                iamsa::spec::validate_names(&s.namespace, &s.name)?;
            }
            if let Some(c) = &cluster_name {
                iamsa::spec::validate_cluster_name(c)?;
            }
            let aws = aws::Aws::load(region.as_deref()).await;
            let cluster = cluster::Cluster::connect(kube).await?;
            let mut world = iamsa::state::read(
                &aws,
                &cluster,
                cluster_name.as_deref(),
                &specs,
                iamsa::state::ProviderNeed::ArnOnly,
                iamsa::state::Purpose::Delete,
            )
            .await?;
            let plan = iamsa::plan::plan_delete(&mut world, &specs)?;
            let subject = format!("delete iamserviceaccount {}", names(&specs));
            plan_or_apply(&subject, &plan, approve, &aws, Some(&cluster), out).await
        }
    }
}

/// What `update` and `delete` act on: every `iam.serviceAccounts` entry of
/// `-f`, or the one ServiceAccount the flags name (shaped by `one`).
struct Targets {
    specs: Vec<Spec>,
    cluster: Option<String>,
    region: Option<String>,
}

fn targets(
    file: Option<std::path::PathBuf>,
    flags: args::TargetFlags,
    region: Option<String>,
    one: impl FnOnce(Spec) -> Spec,
) -> Result<Targets> {
    match (file, flags.name) {
        (Some(file), _) => {
            let config = iamsa::config_file::read_cluster_config(&file)?;
            Ok(Targets {
                specs: config.specs,
                cluster: config.cluster,
                region: region.or(config.region),
            })
        }
        (None, Some(name)) => Ok(Targets {
            specs: vec![one(Spec {
                namespace: flags.namespace,
                name,
                role_name: flags.role_name,
                ..Default::default()
            })],
            cluster: flags.cluster,
            region,
        }),
        (None, None) => Err(Error::Usage("give --name or -f".into())),
    }
}

fn names(specs: &[Spec]) -> String {
    specs
        .iter()
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How `create`, `update` and `apply` run.
pub(crate) struct Run {
    pub cluster_name: Option<String>,
    pub region: Option<String>,
    /// `iam.withOIDC`: plan the issuer's IAM OIDC provider first.
    pub with_oidc: bool,
    pub issuer_ca_file: Option<std::path::PathBuf>,
    pub opts: iamsa::plan::CreateOptions,
    pub verb: &'static str,
}

pub(crate) async fn create(
    specs: Vec<Spec>,
    run: Run,
    kube: &cluster::KubeTarget,
    approve: bool,
    out: &mut dyn Write,
) -> Result<()> {
    for s in &specs {
        s.validate()?;
    }
    if let Some(c) = &run.cluster_name {
        iamsa::spec::validate_cluster_name(c)?;
    }
    let aws = aws::Aws::load(run.region.as_deref()).await;
    let cluster = cluster::Cluster::connect(kube).await?;
    // iam.withOIDC: the provider is planned like `oidc associate`, and the
    // roles name the provider it creates.
    let (mut provider_plan, need) = if run.with_oidc {
        let req = oidc::associate::Request {
            issuer_url: None,
            issuer_ca_file: run.issuer_ca_file.clone(),
            client_ids: Vec::new(),
        };
        let (_, p) = oidc::associate::plan(&aws, Some(&cluster), &req).await?;
        (p, iamsa::state::ProviderNeed::ArnOnly)
    } else {
        (plan::Plan::default(), iamsa::state::ProviderNeed::Existing)
    };
    let mut world = iamsa::state::read(
        &aws,
        &cluster,
        run.cluster_name.as_deref(),
        &specs,
        need,
        iamsa::state::Purpose::Create,
    )
    .await?;
    let mut plan = iamsa::plan::plan_create(&mut world, &specs, run.opts)?;
    if !provider_plan.changes.is_empty() || run.with_oidc {
        provider_plan.changes.append(&mut plan.changes);
        provider_plan.notes.append(&mut plan.notes);
        plan = provider_plan;
    }
    let subject = format!("{} {}", run.verb, names(&specs));
    plan_or_apply(&subject, &plan, approve, &aws, Some(&cluster), out).await
}
