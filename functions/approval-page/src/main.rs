//! The approval page Lambda function (a function URL): the page per request.
//!
//! The function takes the function URL event as JSON and reads it itself
//! ([`ApprovalPage::handle_event`]), so that no request, however odd, fails before the page can
//! answer it.

use lambda_runtime::{LambdaEvent, service_fn};
use shipgate_approval_page::ApprovalPage;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (page, _) = shipgate::lambda::start::<ApprovalPage>().await?;
    let page = &page;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // Boxed as `shipgate::lambda::serve` does, for the compiler's layout depth.
            Ok::<_, std::convert::Infallible>(Box::pin(page.handle_event(event.payload)).await)
        },
    ))
    .await
}
