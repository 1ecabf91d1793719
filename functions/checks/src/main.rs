//! The checks Lambda function: config and clients once, then the handler per job.

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use shipgate::config::Env;
use shipgate_checks::{ChecksConfig, ChecksError, ChecksFunction};

#[derive(Debug)]
struct Failure(ChecksError);

impl From<Failure> for Diagnostic {
    fn from(f: Failure) -> Self {
        Diagnostic {
            error_type: f.0.error_type().to_owned(),
            error_message: f.0.to_string(),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shipgate::telemetry::init();
    let config = ChecksConfig::from_env(&Env::from_process())?;
    let sdk = shipgate::aws::load_sdk_config().await;
    let function = ChecksFunction::new(config, &sdk)?;
    let function = &function;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            function.handle(event.payload).await.map_err(Failure)
        },
    ))
    .await
}
