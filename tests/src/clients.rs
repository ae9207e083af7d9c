//! Real AWS SDK clients run as separate processes with exactly the
//! environment a container would have: boto3, the aws CLI (both from the
//! tests' venv) and aws-sdk-rust (the `aws-sdk-probe` binary). Each gets
//! credentials through its default chain and prints the ARN STS
//! GetCallerIdentity returns.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::agent::venv;
use crate::harness::workspace_bin;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    Boto3,
    AwsCli,
    RustSdk,
}

pub const ALL: [Client; 3] = [Client::Boto3, Client::AwsCli, Client::RustSdk];

/// Runs `client` with only `env` (plus PATH and an empty HOME) and returns
/// the caller ARN.
pub fn caller_arn(client: Client, env: &[(String, String)], home: &Path) -> Result<String> {
    let venv = venv()?;
    let mut cmd = match client {
        Client::Boto3 => {
            let mut c = Command::new(venv.join("bin/python"));
            c.args([
                "-c",
                "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])",
            ]);
            c
        }
        Client::AwsCli => {
            let mut c = Command::new(venv.join("bin/aws"));
            c.args([
                "sts",
                "get-caller-identity",
                "--query",
                "Arn",
                "--output",
                "text",
            ]);
            c
        }
        Client::RustSdk => Command::new(workspace_bin("aws-sdk-probe")?),
    };
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "{client:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
