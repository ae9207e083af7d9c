//! `iamserviceaccount`'s commands: flags and files into specs, the state
//! read, the plan made, printed and (with `--approve`) carried out.

use std::io::Write;

use super::spec::{parse_tags, Spec};
use crate::args::{self, IamSa, Output};
use crate::error::{Error, Result};
use crate::{aws, cluster, iamsa, oidc, plan, plan_or_apply, serialize};

fn grant_spec(grants: args::GrantFlags) -> Spec {
    Spec {
        policy_arns: grants.attach_policy_arn,
        permissions_boundary: grants.permissions_boundary,
        allow_no_policy: grants.allow_no_policy,
        ..Default::default()
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
            let spec = Spec {
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
                ..grant_spec(grants)
            };
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
            target:
                args::TargetFlags {
                    namespace,
                    name,
                    cluster,
                    role_name,
                },
            grants,
            file,
            approve,
        } => {
            let (specs, cluster_name, region, with_oidc) = match (file, name) {
                (Some(file), _) => {
                    let config = iamsa::config_file::read_cluster_config(&file)?;
                    (
                        config.specs,
                        config.cluster,
                        region.or(config.region),
                        config.with_oidc,
                    )
                }
                (None, Some(name)) => {
                    let spec = Spec {
                        namespace,
                        name,
                        role_name,
                        ..grant_spec(grants)
                    };
                    (vec![spec], cluster, region, false)
                }
                (None, None) => return Err(Error::Usage("give --name or -f".into())),
            };
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
            target:
                args::TargetFlags {
                    namespace,
                    name,
                    cluster,
                    role_name,
                },
            role_only,
            file,
            approve,
        } => {
            let (specs, cluster_name, region) = match (file, name) {
                (Some(file), _) => {
                    let config = iamsa::config_file::read_cluster_config(&file)?;
                    (config.specs, config.cluster, region.or(config.region))
                }
                (None, Some(name)) => {
                    let spec = Spec {
                        namespace,
                        name,
                        role_name,
                        role_only,
                        ..Default::default()
                    };
                    (vec![spec], cluster, region)
                }
                (None, None) => return Err(Error::Usage("give --name or -f".into())),
            };
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

fn names(specs: &[Spec]) -> String {
    specs
        .iter()
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How `create`, `update` and `apply` run.
struct Run {
    cluster_name: Option<String>,
    region: Option<String>,
    /// `iam.withOIDC`: plan the issuer's IAM OIDC provider first.
    with_oidc: bool,
    issuer_ca_file: Option<std::path::PathBuf>,
    opts: iamsa::plan::CreateOptions,
    verb: &'static str,
}

async fn create(
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
