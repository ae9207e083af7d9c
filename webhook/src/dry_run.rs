//! `pod-identity-webhook mutate`: the offline dry run. It runs the same
//! decision code as `/mutate`, on ServiceAccounts read from a file.

use std::sync::Arc;

use serde_json::Value;

use crate::admission::{decide_pod, AdmissionContext};
use crate::args::{MutateArgs, OutputFormat};
use crate::metrics::Metrics;
use crate::sources::cache::ServiceAccountCache;
use crate::sources::containercreds::ContainerCredentialsIdentities;
use crate::sources::manifests::load_pod;
use crate::{Error, Result};

/// What the dry run produced: the text for stdout and the warnings for stderr.
#[derive(Debug)]
pub struct DryRun {
    pub output: String,
    pub warnings: Vec<String>,
}

pub async fn run_mutate(args: &MutateArgs) -> Result<DryRun> {
    let config = args.injection.to_config()?;
    let metrics = Arc::new(Metrics::new());
    let cache = ServiceAccountCache::from_file(
        &config.annotation_prefix,
        &args.service_accounts,
        metrics.clone(),
    )?;
    let container_credentials = match &args.injection.watch_container_credentials_config {
        Some(path) => Arc::new(ContainerCredentialsIdentities::load(path)?),
        None => Arc::new(ContainerCredentialsIdentities::default()),
    };
    let ctx = AdmissionContext {
        config,
        cache,
        container_credentials,
        associations: Default::default(),
        metrics,
        // Deterministic output: no jitter in a dry run.
        jitter: Arc::new(|| 0),
    };
    let pod = load_pod(&args.pod_file)?;
    let namespace = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(&args.namespace)
        .to_string();
    let decision = decide_pod(&ctx, &namespace, &pod).await;
    if let Some((_, message)) = decision.outcome.denial() {
        let msg = message.to_string();
        return Err(Error::Config(msg));
    }
    let output = match args.output {
        OutputFormat::Patch => {
            serde_json::to_string_pretty(&decision.ops).unwrap_or_default() + "\n"
        }
        OutputFormat::Json | OutputFormat::Yaml => {
            let patch: json_patch::Patch =
                serde_json::from_value(serde_json::to_value(&decision.ops).unwrap_or_default())
                    .map_err(|e| Error::InvalidPod(e.to_string()))?;
            let mut mutated = pod.clone();
            json_patch::patch(&mut mutated, &patch)
                .map_err(|e| Error::InvalidPod(e.to_string()))?;
            if args.output == OutputFormat::Json {
                serde_json::to_string_pretty(&mutated).unwrap_or_default() + "\n"
            } else {
                serde_yaml::to_string(&mutated).map_err(|e| Error::InvalidPod(e.to_string()))?
            }
        }
    };
    Ok(DryRun {
        output,
        warnings: decision.warnings,
    })
}
