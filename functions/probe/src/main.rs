//! The test probe Lambda function (deployed in each environment account by environment.yaml).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shipgate::lambda::serve::<shipgate_probe::Probe>().await
}
