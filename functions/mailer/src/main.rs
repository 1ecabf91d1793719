//! The mailer Lambda function.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shipgate::lambda::serve::<shipgate_mailer::Mailer>().await
}
