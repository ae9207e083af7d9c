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
    /// The AWS SDK for JavaScript v3 (`@aws-sdk/credential-providers`).
    JsSdk,
}

pub const ALL: [Client; 3] = [Client::Boto3, Client::AwsCli, Client::RustSdk];
pub const WITH_JS: [Client; 4] = [
    Client::Boto3,
    Client::AwsCli,
    Client::RustSdk,
    Client::JsSdk,
];

/// The npm folder with the JS SDK (scripts/ensure-node.sh).
pub fn npm_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::var_os("POD_IDENTITY_NPM")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".cache/pod-identity-rs/npm"))
        })
        .ok_or_else(|| anyhow::anyhow!("no HOME"))?;
    if !dir
        .join("node_modules/@aws-sdk/credential-providers")
        .exists()
    {
        bail!(
            "{} has no @aws-sdk/credential-providers: run ./scripts/test.sh (it installs it), or scripts/ensure-node.sh",
            dir.display()
        );
    }
    Ok(dir)
}

/// GetCallerIdentity with the SDK's default Node.js chain. The endpoint is
/// given explicitly from AWS_ENDPOINT_URL_STS (the tests' STS).
const JS_PROBE: &str = r#"
const { STSClient, GetCallerIdentityCommand } = require('@aws-sdk/client-sts');
const { fromNodeProviderChain } = require('@aws-sdk/credential-providers');
(async () => {
  const endpoint = process.env.AWS_ENDPOINT_URL_STS;
  const credentials = fromNodeProviderChain({ clientConfig: { endpoint } });
  const sts = new STSClient({ credentials, endpoint });
  const out = await sts.send(new GetCallerIdentityCommand({}));
  console.log(out.Arn);
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
"#;

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
        Client::JsSdk => {
            let mut c = Command::new("node");
            c.args(["-e", JS_PROBE]).current_dir(npm_dir()?);
            c
        }
    };
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true");
    if client == Client::JsSdk {
        cmd.env("NODE_PATH", npm_dir()?.join("node_modules"));
    }
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

/// Runs each client in turn (off the async runtime) with `env`; returns
/// what each got: the caller ARN or the failure.
pub async fn caller_arns(
    clients: &[Client],
    env: &[(String, String)],
    home: &Path,
) -> Vec<(Client, Result<String>)> {
    let mut out = Vec::new();
    for &client in clients {
        let (env, home) = (env.to_vec(), home.to_path_buf());
        let arn = tokio::task::spawn_blocking(move || caller_arn(client, &env, &home))
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("{client:?} panicked: {e}")));
        out.push((client, arn));
    }
    out
}
