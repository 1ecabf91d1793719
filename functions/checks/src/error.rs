//! Why the checks action fails before or around its checks (a failed check itself is an
//! outcome, not an error): each message is what the operator reads in the pipeline.

use shipgate::job::artifact::ArtifactError;
use shipgate::job::release::{ReleaseError, TableError};
use shipgate::job::{ActionError, JobFailureKind, ParameterError};

/// A failure of the checks action.
#[derive(Debug, thiserror::Error)]
pub enum ChecksError {
    /// The endpoint, checked once there are checks to run.
    #[error("the action's UserParameters cannot be used: {0}")]
    Parameters(#[from] ParameterError),
    #[error(
        "the continuation token is for {total} checks but the release has {found}: retry the \
         stage"
    )]
    ForeignProgress { total: usize, found: usize },
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Store(#[from] TableError),
    #[error("the HTTP client could not be built: {0}")]
    Client(#[source] reqwest::Error),
}

shipgate::from_store_error!(ChecksError);

impl ActionError for ChecksError {
    /// A stable name for logs and metrics.
    fn error_type(&self) -> &'static str {
        match self {
            ChecksError::Parameters(_) => "InvalidParameters",
            ChecksError::ForeignProgress { .. } => "InvalidContinuation",
            ChecksError::Release(e) => e.error_type(),
            ChecksError::Artifact(e) => e.error_type(),
            ChecksError::Store(_) => "StoreError",
            ChecksError::Client(_) => "HttpClientError",
        }
    }

    /// Reading the release may fail for a moment (S3 or DynamoDB throttling, 5xx); a failed
    /// check is an outcome, never retried here.
    fn is_retryable(&self) -> bool {
        match self {
            ChecksError::Artifact(e) => e.is_retryable(),
            ChecksError::Release(e) => e.is_retryable(),
            ChecksError::Store(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// How CodePipeline classifies the failure.
    fn failure_kind(&self) -> JobFailureKind {
        match self {
            ChecksError::Parameters(_) => JobFailureKind::ConfigurationError,
            ChecksError::Artifact(e) if e.is_configuration() => JobFailureKind::ConfigurationError,
            ChecksError::Artifact(e) if e.is_access_denied() => JobFailureKind::PermissionError,
            _ => JobFailureKind::JobFailed,
        }
    }
}
