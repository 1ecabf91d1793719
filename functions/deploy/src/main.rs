//! The deploy Lambda function.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shipgate::lambda::serve_job::<shipgate_deploy::DeployFunction>().await
}
