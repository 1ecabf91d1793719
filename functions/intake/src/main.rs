//! The intake Lambda function.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shipgate::lambda::serve::<shipgate_intake::Intake>().await
}
