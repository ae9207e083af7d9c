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
pub mod pia;
pub mod plan;
pub mod policy;

use std::io::Write;

use args::{Args, Command, Oidc, Output};
use error::{Error, Result};

pub(crate) fn serialize<T: serde::Serialize>(v: &T, output: Output) -> Result<String> {
    match output {
        Output::Json => serde_json::to_string_pretty(v)
            .map(|s| s + "\n")
            .map_err(|e| Error::Usage(e.to_string())),
        Output::Yaml => serde_yaml::to_string(v).map_err(|e| Error::Usage(e.to_string())),
        Output::Text | Output::Table => unreachable!("callers render text themselves"),
    }
}

/// Prints the plan; with `approve`, carries it out.
pub(crate) async fn plan_or_apply(
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
    let kube = cluster::KubeTarget::from(&args.kube);
    match args.command {
        Command::Oidc(cmd) => {
            let aws = aws::Aws::load(args.region.as_deref()).await;
            match cmd {
                Oidc::Show { output } => {
                    let cluster = cluster::Cluster::connect(&kube).await?;
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
                        Some(cluster::Cluster::connect(&kube).await?)
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
                        Some(cluster::Cluster::connect(&kube).await?)
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
        Command::IamServiceAccount(cmd) => iamsa::cli::run(cmd, &kube, args.region, out).await?,
        Command::Doctor(cmd) => run_doctor(cmd, &kube, args.region, out).await?,
        Command::PodIdentityAssociation(cmd) => pia::cli::run(cmd, &kube, args.region, out).await?,
        Command::Utils(cmd) => pia::cli::utils(cmd, &kube, args.region, out).await?,
    }
    Ok(())
}

fn split_target(target: &str) -> Result<(String, String)> {
    target
        .parse::<contract::mode::ServiceAccountKey>()
        .map(|k| (k.namespace, k.name))
        .map_err(|_| Error::Usage(format!("{target:?}: expected NAMESPACE/NAME")))
}

fn doctor_options(flags: &args::DoctorFlags, exchange: bool) -> doctor::gather::Options {
    doctor::gather::Options {
        prefix: flags.annotation_prefix.clone(),
        default_mode: contract::mode::CredentialMode::parse(&flags.credential_mode)
            .unwrap_or_default(),
        sidecar_name: flags.sidecar_name.clone(),
        webhook_configuration: flags.webhook_configuration.clone(),
        exchange,
        broker_url: None,
        broker_ca_file: None,
    }
}

async fn run_doctor(
    cmd: args::Doctor,
    kube: &cluster::KubeTarget,
    region: Option<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let (target, exchange, flags, pod, broker_url, broker_ca_file) = match cmd {
        args::Doctor::Cluster { flags } => {
            let cluster = cluster::Cluster::connect(kube).await?;
            let aws = aws::Aws::load(region.as_deref()).await;
            let audit =
                doctor::audit::run(Some(&aws), &cluster, &doctor_options(&flags, false)).await?;
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
            broker_url,
            broker_ca_file,
            flags,
        } => (target, exchange, flags, true, broker_url, broker_ca_file),
        args::Doctor::Serviceaccount {
            target,
            exchange,
            flags,
        } => (target, exchange, flags, false, None, None),
    };
    let (namespace, name) = split_target(&target)?;
    let cluster = cluster::Cluster::connect(kube).await?;
    let aws = aws::Aws::load(region.as_deref()).await;
    let facts = doctor::gather::gather(
        &aws,
        &cluster,
        &doctor::gather::Options {
            broker_url,
            broker_ca_file,
            ..doctor_options(&flags, exchange)
        },
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
