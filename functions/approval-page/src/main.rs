//! The approval page Lambda function (a function URL): config and clients once, then the
//! handler per request.

use lambda_http::{Request, service_fn};
use shipgate::config::Env;
use shipgate_approval_page::{ApprovalPage, PageConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shipgate::telemetry::init();
    let config = PageConfig::from_env(&Env::from_process())?;
    let sdk = shipgate::aws::load_sdk_config().await;
    let page = ApprovalPage::new(config, &sdk);
    let page = &page;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, std::convert::Infallible>(page.handle(request).await)
    }))
    .await
}
