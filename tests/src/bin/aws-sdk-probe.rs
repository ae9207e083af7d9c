//! A real aws-sdk-rust client for the tests: loads credentials through the
//! SDK's default chain (exactly as an application would, from the
//! environment it is given) and prints the caller's ARN from STS
//! GetCallerIdentity. Exit code 1 with the SDK's error otherwise.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
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
