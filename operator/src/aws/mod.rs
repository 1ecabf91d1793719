//! The AWS calls the operator makes: one module per service, each taking a concrete SDK client
//! and returning plain data (or the SDK error, kept whole).

pub mod cloudformation;
pub mod ec2;
pub mod events;
pub mod iam;
pub mod lambda;
pub mod secrets;
pub mod ses;
pub mod sqs;
pub mod sts;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A call that failed, as a decision reads it: AWS's error code and the HTTP status when there
/// was an answer, and the error with its sources on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    pub code: Option<String>,
    pub status: Option<u16>,
    pub text: String,
}

impl CallFailure {
    pub fn new<E>(error: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        Self {
            code: error.code().map(str::to_owned),
            status: error.raw_response().map(|r| r.status().as_u16()),
            text: crate::error::report(error),
        }
    }

    /// Whether AWS answered with error code `code`.
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// The outcome of a call (`client.op()...send()`), its error read as a [`CallFailure`].
pub async fn sent<T, E>(
    call: impl std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
) -> Result<T, CallFailure>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    call.await.map_err(|e| CallFailure::new(&e))
}

/// `Ok(None)` when a call failed with error code `code` (the service's "no such thing"), else
/// the failure.
pub fn absent_if<T, E>(
    error: &SdkError<E, HttpResponse>,
    code: &str,
) -> Result<Option<T>, CallFailure>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let failure = CallFailure::new(error);
    if failure.is(code) {
        Ok(None)
    } else {
        Err(failure)
    }
}
