//! Support for the `pod-identity` CLI tests: the real binary and the real
//! aws CLI, both pointed at moto (IAM, S3, STS) and the suite's
//! kube-apiserver, with an environment of their own (no user AWS config).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::agent::{venv, Moto};
use crate::harness::{workspace_bin, Cluster};

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `pod-identity` and the aws CLI against one cluster and one moto.
pub struct Tools {
    pub kubeconfig: PathBuf,
    pub moto_url: String,
    pub home: tempfile::TempDir,
}

impl Tools {
    pub fn new(cluster: &Cluster, moto: &Moto) -> Result<Tools> {
        Ok(Tools {
            kubeconfig: cluster.kubeconfig.clone(),
            moto_url: moto.url.clone(),
            home: tempfile::tempdir()?,
        })
    }

    fn env(&self, c: &mut Command) {
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.moto_url)
            .env("AWS_EC2_METADATA_DISABLED", "true");
    }

    /// `pod-identity ARGS --kubeconfig ...`.
    pub fn run(&self, args: &[&str]) -> Result<Outcome> {
        self.run_env(args, &[])
    }

    /// [`Tools::run`] with environment variables set or replaced.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Outcome> {
        let mut c = Command::new(workspace_bin("pod-identity")?);
        self.env(&mut c);
        c.envs(env.iter().copied());
        c.args(args)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        let out = c.output().context("running pod-identity")?;
        Ok(Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        })
    }

    /// `pod-identity ARGS`, which must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let o = self.run(args)?;
        if o.code != 0 {
            bail!(
                "pod-identity {args:?} exited {}:\n{}\n{}",
                o.code,
                o.stdout,
                o.stderr
            );
        }
        Ok(o.stdout)
    }

    /// The aws CLI with JSON output; `Err` when it fails.
    pub fn aws(&self, args: &[&str]) -> Result<Value> {
        let mut c = Command::new(venv()?.join("bin/aws"));
        self.env(&mut c);
        c.args(args).args(["--output", "json"]);
        let out = c.output().context("running aws")?;
        if !out.status.success() {
            bail!("aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// An S3 object's JSON content.
    pub fn s3_json(&self, bucket: &str, key: &str) -> Result<Value> {
        let file = self.home.path().join("object.json");
        self.aws(&[
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            key,
            file.to_str().unwrap(),
        ])?;
        Ok(serde_json::from_slice(&std::fs::read(&file)?)?)
    }

    /// The trust policy of a role, or `None` when the role does not exist.
    pub fn role(&self, name: &str) -> Result<Option<Value>> {
        match self.aws(&["iam", "get-role", "--role-name", name]) {
            Ok(v) => Ok(Some(v["Role"].clone())),
            Err(e) if e.to_string().contains("NoSuchEntity") => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Lets anyone read the API server's discovery document and keys, as a
/// public issuer must (the documented RBAC binding for this).
pub async fn public_discovery(cluster: &Cluster) -> Result<()> {
    cluster
        .create(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            &serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "oidc-reviewer"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:service-account-issuer-discovery"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}]}),
        )
        .await?;
    Ok(())
}

/// A kube-apiserver whose issuer is its own HTTPS URL, readable by anyone,
/// with its IAM OIDC provider created in `moto` by `pod-identity oidc
/// associate --approve`.
pub async fn associated_cluster(moto: &Moto) -> Result<(Cluster, Tools)> {
    let cluster = Cluster::start_self_issuer().await?;
    let tools = Tools::new(&cluster, moto)?;
    public_discovery(&cluster).await?;
    tools.ok(&["oidc", "associate", &ca_flag(&cluster), "--approve"])?;
    Ok((cluster, tools))
}

/// `--issuer-ca-file` for the cluster's self-signed serving certificate.
pub fn ca_flag(cluster: &Cluster) -> String {
    format!("--issuer-ca-file={}", cluster.serving_ca_file().display())
}

/// Compares `actual` with the golden file `tests/golden/<name>`; with
/// UPDATE_GOLDEN=1 writes it instead.
pub fn golden(name: &str, actual: &str) -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, actual)?;
        return Ok(());
    }
    let want = std::fs::read_to_string(&path)
        .with_context(|| format!("{} is missing (UPDATE_GOLDEN=1 writes it)", path.display()))?;
    if want != actual {
        bail!(
            "output differs from {}:\n--- want\n{want}\n--- got\n{actual}",
            path.display()
        );
    }
    Ok(())
}

/// SHA-1 (lower-case hex) of the last certificate of a PEM chain.
pub fn top_cert_sha1(pem_file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(pem_file)?;
    let last = text
        .split("-----BEGIN CERTIFICATE-----")
        .filter(|b| b.contains("-----END CERTIFICATE-----"))
        .last()
        .context("no certificate")?;
    let b64: String = last
        .split("-----END CERTIFICATE-----")
        .next()
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD.decode(b64)?;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    Ok(d.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}
