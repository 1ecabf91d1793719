//! Errors shared by the AWS adapters.
//!
//! An [`AwsError`] keeps the SDK error as its source (never flattened to a string) and exposes
//! what a caller decides on: the service's error code (e.g. `ConditionalCheckFailedException`)
//! and whether retrying may help.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed call to an AWS API.
#[derive(Debug, thiserror::Error)]
#[error("{service} {operation} failed: {message}")]
pub struct AwsError {
    pub service: &'static str,
    pub operation: &'static str,
    /// The service's error code, when it sent one.
    pub code: Option<String>,
    pub message: String,
    /// Throttling, timeouts, 5xx and transport failures: worth another try.
    pub retryable: bool,
    #[source]
    pub source: BoxError,
}

impl AwsError {
    /// Wraps an SDK error, keeping its metadata.
    pub fn from_sdk<E, R>(
        service: &'static str,
        operation: &'static str,
        err: SdkError<E, R>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let code = err.code().map(str::to_owned);
        let retryable = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
            SdkError::ResponseError(_) => true,
            SdkError::ServiceError(_) => code.as_deref().is_some_and(|c| {
                c.contains("Throttl")
                    || c == "RequestLimitExceeded"
                    || c == "ProvisionedThroughputExceededException"
                    || c == "InternalServerError"
                    || c == "InternalFailure"
                    || c == "ServiceUnavailable"
            }),
            _ => false,
        };
        let message = err
            .message()
            .map(str::to_owned)
            .unwrap_or_else(|| DisplayErrorContext(&err).to_string());
        Self {
            service,
            operation,
            code,
            message,
            retryable,
            source: Box::new(err),
        }
    }

    /// True when the service answered with this error code.
    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// `.map_err(aws_err("S3", "GetObject"))`
pub fn aws_err<E, R>(
    service: &'static str,
    operation: &'static str,
) -> impl FnOnce(SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |err| AwsError::from_sdk(service, operation, err)
}
