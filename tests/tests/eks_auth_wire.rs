//! The EKS Auth wire format (`credential_agent::eks_auth`) against AWS's
//! own definition and clients: botocore's service model for eks-auth (error
//! names and HTTP statuses, the response's members), and boto3's `eks-auth`
//! client and the aws CLI parsing real answers and every error type from a
//! server that answers with the module (the Pod Identity broker's wire
//! layer), on loopback.

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use credential_agent::eks_auth::*;
use credential_agent::secret::Secret;
use e2e_tests::agent::venv;
use e2e_tests::broker::{python_json, NO_AWS_CONFIG};
use serde_json::Value;

fn model() -> Result<Value> {
    let path = venv()?
        .join("lib")
        .read_dir()?
        .flatten()
        .map(|d| {
            d.path()
                .join("site-packages/botocore/data/eks-auth/2023-11-26/service-2.json.gz")
        })
        .find(|p| p.exists())
        .context("botocore's eks-auth model is not in the venv")?;
    let out = std::process::Command::new(venv()?.join("bin/python"))
        .args([
            "-c",
            "import gzip,sys; sys.stdout.write(gzip.open(sys.argv[1]).read().decode())",
        ])
        .arg(&path)
        .output()?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn sample() -> AssumeRoleForPodIdentityResponse {
    AssumeRoleForPodIdentityResponse {
        subject: Subject {
            namespace: "apps".into(),
            service_account: "web".into(),
        },
        audience: "pods.eks.amazonaws.com".into(),
        pod_identity_association: PodIdentityAssociation {
            association_arn:
                "arn:aws:eks:us-east-1:111122223333:podidentityassociation/prod/a-0123456789abcdef0"
                    .into(),
            association_id: "a-0123456789abcdef0".into(),
        },
        assumed_role_user: AssumedRoleUser {
            arn: "arn:aws:sts::111122223333:assumed-role/app/eks-prod-web-7d9f".into(),
            assume_role_id: "AROAEXAMPLE:eks-prod-web-7d9f".into(),
        },
        credentials: Credentials {
            session_token: Secret::new("session-token"),
            secret_access_key: Secret::new("secret-key"),
            access_key_id: "ASIAEXAMPLE".into(),
            expiration: UNIX_EPOCH + Duration::from_secs(1_900_000_000),
        },
    }
}

#[test]
fn matches_botocores_service_model() -> Result<()> {
    let m = model()?;
    let op = &m["operations"]["AssumeRoleForPodIdentity"];
    ensure!(op["http"]["method"] == "POST");
    ensure!(op["http"]["requestUri"] == "/clusters/{clusterName}/assume-role-for-pod-identity");
    // Every error type of the operation, with its status; no other.
    let names: BTreeSet<String> = op["errors"]
        .as_array()
        .context("errors")?
        .iter()
        .filter_map(|e| e["shape"].as_str().map(str::to_string))
        .collect();
    let ours: BTreeSet<String> = ErrorType::ALL
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    ensure!(names == ours, "model {names:?}, ours {ours:?}");
    for kind in ErrorType::ALL {
        let shape = &m["shapes"][kind.name()];
        ensure!(
            shape["error"]["httpStatusCode"] == kind.status().as_u16(),
            "{}: model {}, ours {}",
            kind.name(),
            shape["error"],
            kind.status()
        );
    }
    // Every member the response and its structures declare, and no other.
    let ours = serde_json::to_value(sample())?;
    fn check(m: &Value, shape: &str, ours: &Value, at: &str) -> Result<()> {
        let s = &m["shapes"][shape];
        let members = s["members"].as_object().context("members")?;
        let keys: BTreeSet<&String> = ours.as_object().context("object")?.keys().collect();
        let declared: BTreeSet<&String> = members.keys().collect();
        let required: BTreeSet<String> = s["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        ensure!(
            keys.is_subset(&declared),
            "{at}: we send members the model does not declare: {:?}",
            keys.difference(&declared).collect::<Vec<_>>()
        );
        ensure!(
            required.iter().all(|r| keys.contains(r)),
            "{at}: the model requires {required:?}, we send {keys:?}"
        );
        for (name, member) in members.iter().filter(|(n, _)| keys.contains(n)) {
            let target = member["shape"].as_str().unwrap_or_default();
            if m["shapes"][target]["type"] == "structure" {
                check(m, target, &ours[name], &format!("{at}.{name}"))?;
            }
        }
        Ok(())
    }
    check(&m, "AssumeRoleForPodIdentityResponse", &ours, "response")?;
    // The request: what we read is declared, and what is required we need.
    let req = &m["shapes"]["AssumeRoleForPodIdentityRequest"];
    for member in ["clusterName", "token", "eksNodeName", "instanceId"] {
        ensure!(
            req["members"].get(member).is_some(),
            "the request has no {member} any more"
        );
    }
    ensure!(
        req["required"] == serde_json::json!(["clusterName", "token"]),
        "{}",
        req["required"]
    );
    Ok(())
}

/// Answers `token` "good" with the sample, "err:<ErrorType name>" with that
/// error, anything else with an InvalidTokenException.
async fn answer(Path(cluster): Path<String>, body: axum::body::Bytes) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let token = req.token.expose();
    if token == "good" && cluster == "prod" {
        return sample().into_response();
    }
    let kind = token
        .strip_prefix("err:")
        .and_then(|n| ErrorType::ALL.into_iter().find(|k| k.name() == n))
        .unwrap_or(ErrorType::InvalidToken);
    EksAuthError::new(kind, format!("planted {}", kind.name())).into_response()
}

const BOTO3: &str = r#"
import json, sys, boto3, botocore
c = boto3.client("eks-auth", endpoint_url=sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x",
                 config=botocore.config.Config(retries={"max_attempts": 1}))
out = {}
r = c.assume_role_for_pod_identity(clusterName="prod", token="good")
r.pop("ResponseMetadata")
r["credentials"]["expiration"] = int(r["credentials"]["expiration"].timestamp())
out["ok"] = r
errs = {}
for name in sys.argv[2:]:
    try:
        c.assume_role_for_pod_identity(clusterName="prod", token="err:" + name)
        errs[name] = "no error"
    except c.exceptions.ClientError as e:
        errs[name] = [e.response["Error"]["Code"], e.response["Error"]["Message"],
                      e.response["ResponseMetadata"]["HTTPStatusCode"], type(e).__name__]
out["errors"] = errs
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_and_the_aws_cli_parse_it() -> Result<()> {
    let app = axum::Router::new().route(
        "/clusters/{cluster}/assume-role-for-pod-identity",
        axum::routing::post(answer),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let names: Vec<&str> = ErrorType::ALL.iter().map(|k| k.name()).collect();
    let mut args = vec![url.clone()];
    args.extend(names.iter().map(|n| n.to_string()));
    let got = python_json(BOTO3, args).await?;
    let want = serde_json::to_value(sample())?;
    ensure!(got["ok"] == want, "boto3 parsed {}, sent {want}", got["ok"]);
    for kind in ErrorType::ALL {
        let e = &got["errors"][kind.name()];
        ensure!(
            e[0] == kind.name()
                && e[1] == format!("planted {}", kind.name())
                && e[2] == kind.status().as_u16()
                && e[3] == kind.name(),
            "boto3 read {} as {e}",
            kind.name()
        );
    }
    // The aws CLI, as a user would call it.
    let u = url.clone();
    let cli = tokio::task::spawn_blocking(move || -> Result<std::process::Output> {
        Ok(std::process::Command::new(venv()?.join("bin/aws"))
            .args([
                "eks-auth",
                "assume-role-for-pod-identity",
                "--cluster-name",
                "prod",
                "--token",
                "good",
                "--endpoint-url",
                &u,
                "--region",
                "us-east-1",
                "--output",
                "json",
            ])
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "x")
            .envs(NO_AWS_CONFIG)
            .output()?)
    })
    .await??;
    ensure!(
        cli.status.success(),
        "aws eks-auth: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let printed: Value = serde_json::from_slice(&cli.stdout)?;
    ensure!(
        printed["assumedRoleUser"] == want["assumedRoleUser"]
            && printed["credentials"]["accessKeyId"] == "ASIAEXAMPLE",
        "{printed}"
    );
    server.abort();
    Ok(())
}
