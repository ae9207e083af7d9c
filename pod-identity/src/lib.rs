//! `pod-identity`: the IAM half of workload identity. The cluster's OIDC
//! issuer ([`oidc`]), IAM roles bound to ServiceAccounts ([`iamsa`]), on
//! policy logic that is pure and tested on its own ([`policy`], [`plan`]).
//! Every command that changes something computes a [`plan::Plan`] first and
//! changes nothing without `--approve`.

pub mod args;
pub mod aws;
pub mod clock;
pub mod cluster;
pub mod doctor;
pub mod error;
pub mod execute;
pub mod iam;
pub mod iamsa;
pub mod oidc;
pub mod plan;
pub mod policy;

use std::io::Write;

use args::{Args, Command, IamSa, Oidc, Output};
use error::{Error, Result};
use iamsa::spec::{parse_tags, Spec};

fn serialize<T: serde::Serialize>(v: &T, output: Output) -> Result<String> {
    match output {
        Output::Json => serde_json::to_string_pretty(v)
            .map(|s| s + "\n")
            .map_err(|e| Error::Usage(e.to_string())),
        Output::Yaml => serde_yaml::to_string(v).map_err(|e| Error::Usage(e.to_string())),
        Output::Text | Output::Table => unreachable!("callers render text themselves"),
    }
}

/// Prints the plan; with `approve`, carries it out.
async fn plan_or_apply(
    subject: &str,
    plan: &plan::Plan,
    approve: bool,
    aws: &aws::Aws,
    cluster: Option<&cluster::Cluster>,
    out: &mut dyn Write,
) -> Result<()> {
    let _ = write!(out, "{}", plan.render(subject));
    if plan.is_empty() {
        return Ok(());
    }
    if !approve {
        let _ = writeln!(
            out,
            "Nothing was changed: re-run with --approve to make these changes."
        );
        return Ok(());
    }
    execute::execute(plan, aws, cluster, out).await
}

/// Runs the command; output goes to `out`.
pub async fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    match args.command {
        Command::Oidc(cmd) => {
            let aws = aws::Aws::load(args.region.as_deref()).await;
            match cmd {
                Oidc::Show { output } => {
                    let cluster = cluster::Cluster::connect(&args.kube).await?;
                    let report = oidc::show::run(&aws, &cluster).await?;
                    let text = match output {
                        Output::Text | Output::Table => oidc::show::render(&report),
                        o => serialize(&report, o)?,
                    };
                    let _ = write!(out, "{text}");
                }
                Oidc::Publish {
                    bucket,
                    prefix,
                    issuer_url,
                    signing_key_pub,
                    prune,
                    approve,
                } => {
                    let cluster = if signing_key_pub.is_empty() || args.kube.kubeconfig.is_some() {
                        Some(cluster::Cluster::connect(&args.kube).await?)
                    } else {
                        None
                    };
                    let req = oidc::publish::Request {
                        bucket,
                        prefix,
                        issuer_url,
                        signing_key_pub,
                        prune,
                    };
                    let outcome = oidc::publish::plan(&aws, cluster.as_ref(), &req).await?;
                    let subject = format!("issuer {}", outcome.issuer);
                    plan_or_apply(&subject, &outcome.plan, approve, &aws, None, out).await?;
                    let _ = write!(out, "\n{}", oidc::publish::apiserver_flags(&outcome));
                }
                Oidc::Associate {
                    issuer_url,
                    issuer_ca_file,
                    client_id,
                    approve,
                } => {
                    let cluster = if issuer_url.is_none() {
                        Some(cluster::Cluster::connect(&args.kube).await?)
                    } else {
                        None
                    };
                    let req = oidc::associate::Request {
                        issuer_url,
                        issuer_ca_file,
                        client_ids: client_id,
                    };
                    let (issuer, plan) =
                        oidc::associate::plan(&aws, cluster.as_ref(), &req).await?;
                    plan_or_apply(
                        &format!("IAM OIDC provider for {issuer}"),
                        &plan,
                        approve,
                        &aws,
                        None,
                        out,
                    )
                    .await?;
                }
            }
        }
        Command::IamServiceAccount(cmd) => run_iamsa(cmd, &args.kube, args.region, out).await?,
        Command::Doctor(cmd) => run_doctor(cmd, &args.kube, args.region, out).await?,
    }
    Ok(())
}

fn split_target(target: &str) -> Result<(String, String)> {
    match target.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(Error::Usage(format!("{target:?}: expected NAMESPACE/NAME"))),
    }
}

fn doctor_options(flags: &args::DoctorFlags, exchange: bool) -> doctor::gather::Options {
    doctor::gather::Options {
        prefix: flags.annotation_prefix.clone(),
        default_mode: flags.credential_mode.clone(),
        sidecar_name: flags.sidecar_name.clone(),
        webhook_configuration: flags.webhook_configuration.clone(),
        exchange,
    }
}

async fn run_doctor(
    cmd: args::Doctor,
    kube: &cluster::KubeArgs,
    region: Option<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let (target, exchange, flags, pod) = match cmd {
        args::Doctor::Cluster { flags } => {
            let cluster = cluster::Cluster::connect(kube).await?;
            let audit = doctor::audit::run(&cluster, &doctor_options(&flags, false)).await?;
            let text = match flags.output {
                Output::Text | Output::Table => audit.render(),
                o => serialize(&audit, o)?,
            };
            let _ = write!(out, "{text}");
            if audit.failed() {
                return Err(Error::ChecksFailed(format!(
                    "{} pod(s) missed injection",
                    audit.pods_missing_injection.len()
                )));
            }
            return Ok(());
        }
        args::Doctor::Pod {
            target,
            exchange,
            flags,
        } => (target, exchange, flags, true),
        args::Doctor::Serviceaccount {
            target,
            exchange,
            flags,
        } => (target, exchange, flags, false),
    };
    let (namespace, name) = split_target(&target)?;
    let cluster = cluster::Cluster::connect(kube).await?;
    let aws = aws::Aws::load(region.as_deref()).await;
    let facts = doctor::gather::gather(
        &aws,
        &cluster,
        &doctor_options(&flags, exchange),
        &namespace,
        &name,
        pod,
    )
    .await?;
    let report = doctor::report::Report {
        target: format!(
            "{} {namespace}/{name}",
            if pod { "pod" } else { "serviceaccount" }
        ),
        checks: doctor::checks::run(&facts),
    };
    let text = match flags.output {
        Output::Text | Output::Table => report.render(),
        o => serialize(&report, o)?,
    };
    let _ = write!(out, "{text}");
    match report.failed() {
        0 => Ok(()),
        n => Err(Error::ChecksFailed(format!("{n} check(s) failed"))),
    }
}

fn grant_spec(grants: args::GrantFlags) -> Spec {
    Spec {
        policy_arns: grants.attach_policy_arn,
        permissions_boundary: grants.permissions_boundary,
        allow_no_policy: grants.allow_no_policy,
        ..Default::default()
    }
}

async fn run_iamsa(
    cmd: IamSa,
    kube: &cluster::KubeArgs,
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
            namespace,
            name,
            cluster,
            role_name,
            grants,
            file,
            approve,
        } => {
            let (specs, cluster_name, region, with_oidc) = match (file, name) {
                (Some(file), _) => {
                    let config = iamsa::spec::read_cluster_config(&file)?;
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
            let config = iamsa::spec::read_cluster_config(&file)?;
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
            namespace,
            name,
            cluster,
            role_name,
            role_only,
            file,
            approve,
        } => {
            let (specs, cluster_name, region) = match (file, name) {
                (Some(file), _) => {
                    let config = iamsa::spec::read_cluster_config(&file)?;
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
    kube: &cluster::KubeArgs,
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
