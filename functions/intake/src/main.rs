//! The intake Lambda function: config and clients once, then the handler per event.

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use shipgate::config::Env;
use shipgate_intake::{Intake, IntakeConfig, IntakeError};

#[derive(Debug)]
struct Failure(IntakeError);

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
    let config = IntakeConfig::from_env(&Env::from_process())?;
    let sdk = shipgate::aws::load_sdk_config().await;
    let intake = Intake::new(config, &sdk);
    let intake = &intake;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            intake
                .handle(event.payload, &event.context.request_id)
                .await
                .map_err(Failure)
        },
    ))
    .await
}
