//! A real aws-sdk-rust client for the tests: loads credentials through the
//! SDK's default chain (exactly as an application would, from the
//! environment it is given) and prints the caller's ARN from STS
//! GetCallerIdentity. Exit code 1 with the SDK's error otherwise.
//!
//! `aws-sdk-probe credentials` stops after the default chain and prints the
//! credentials it resolved as JSON (for pods that may reach only the
//! credential agent, not STS: the test calls STS with them from outside).
//! They are the test's own moto credentials.

use std::process::ExitCode;

use aws_credential_types::provider::ProvideCredentials as _;

#[tokio::main]
async fn main() -> ExitCode {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    if std::env::args().nth(1).as_deref() == Some("credentials") {
        let Some(provider) = config.credentials_provider() else {
            eprintln!("aws-sdk-probe: the default chain has no credentials provider");
            return ExitCode::FAILURE;
        };
        return match provider.provide_credentials().await {
            Ok(c) => {
                let expiry = c
                    .expiry()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs());
                let out = serde_json::json!({
                    "AccessKeyId": c.access_key_id(),
                    "SecretAccessKey": c.secret_access_key(),
                    "SessionToken": c.session_token(),
                    "Expiration": expiry,
                });
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "aws-sdk-probe: no credentials: {}",
                    aws_sdk_sts::error::DisplayErrorContext(&e)
                );
                ExitCode::FAILURE
            }
        };
    }
    let sts = aws_sdk_sts::Client::new(&config);
    match sts.get_caller_identity().send().await {
        Ok(out) => {
            println!("{}", out.arn().unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "aws-sdk-probe: {}",
                aws_sdk_sts::error::DisplayErrorContext(&e)
            );
            ExitCode::FAILURE
        }
    }
}
