//! The approval page Lambda function (a function URL): the page per request.

use lambda_http::{Request, service_fn};
use shipgate_approval_page::ApprovalPage;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (page, _) = shipgate::lambda::start::<ApprovalPage>().await?;
    let page = &page;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, std::convert::Infallible>(page.handle(request).await)
    }))
    .await
}
