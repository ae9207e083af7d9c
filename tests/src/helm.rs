//! helm and kubernetes-validate for the chart tests (installed by
//! scripts/ensure-helm.sh and scripts/ensure-python.sh).

use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

use crate::agent::venv;
use crate::harness::workspace_root;

pub fn helm() -> Result<PathBuf> {
    let path = std::env::var_os("POD_IDENTITY_HELM")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/pod-identity-rs/helm/2.2.2/helm"))
        })
        .context("no HOME")?;
    if !path.exists() {
        bail!(
            "{} is missing: run ./scripts/test.sh (it installs helm), or scripts/ensure-helm.sh",
            path.display()
        );
    }
    Ok(path)
}

pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/pod-identity")
}

/// Runs helm with `args`; returns its output (not failing on a non-zero exit).
pub fn run_helm(args: &[&str]) -> Result<Output> {
    Ok(Command::new(helm()?)
        .args(args)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("pod-identity-helm/cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("pod-identity-helm/config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("pod-identity-helm/data"),
        )
        .output()?)
}

/// `helm` that must succeed; returns stdout.
pub fn helm_ok(args: &[&str]) -> Result<String> {
    let out = run_helm(args)?;
    if !out.status.success() {
        bail!(
            "helm {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Validates multi-document YAML against the Kubernetes `version` schemas
/// with `kubernetes-validate --strict`; returns (success, output).
pub fn kubernetes_validate(yaml: &str, version: &str) -> Result<(bool, String)> {
    use std::io::Write;
    let mut child = Command::new(venv()?.join("bin/kubernetes-validate"))
        .args(["--strict", "-k", version, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// `helm template` of the chart (release `pod-identity` in namespace
/// `pod-identity`) with `extra` arguments: the text and its documents.
pub fn render(extra: &[&str]) -> Result<(String, Vec<serde_json::Value>)> {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        "pod-identity",
        chart.to_str().unwrap_or_default(),
        "-n",
        "pod-identity",
    ];
    args.extend_from_slice(extra);
    let rendered = helm_ok(&args)?;
    let docs = rendered
        .split("\n---")
        .filter_map(|doc| {
            let v: serde_json::Value = serde_yaml::from_str(doc).ok()?;
            (!v.is_null()).then_some(v)
        })
        .collect();
    Ok((rendered, docs))
}
