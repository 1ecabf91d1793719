//! Why the checks action fails before or around its checks (a failed check itself is an
//! outcome, not an error): each message is what the operator reads in the pipeline.

use shipgate::error::AwsError;
use shipgate::job::{ActionError, JobFailureKind, ParameterError};
use shipgate::release::SourceError;
use shipgate::store::StoreError;

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
    #[error(
        "the job has {0} input artifacts: the action takes one, the release (the pipeline's \
         source output)"
    )]
    InputArtifacts(usize),
    #[error(
        "release {release_id} is not in the release table (is releaseId the pipeline's \
         ReleaseId variable?)"
    )]
    ReleaseNotFound { release_id: String },
    #[error(
        "the release artifact s3://{bucket}/{key} does not exist: the pipeline lost its input; \
         start a new execution of the release"
    )]
    ArtifactMissing { bucket: String, key: String },
    #[error("could not read the release artifact s3://{bucket}/{key}: {source}")]
    ArtifactAws {
        bucket: String,
        key: String,
        source: Box<AwsError>,
    },
    #[error("could not read the release artifact s3://{bucket}/{key}: {source}")]
    ArtifactRead {
        bucket: String,
        key: String,
        source: SourceError,
    },
    #[error("the release artifact is refused, it has {count} problem(s): {summary}")]
    ArtifactProblems { count: usize, summary: String },
    #[error(
        "the release artifact is not the release intake validated (release.json has SHA-256 \
         {found}, release {release_id} was recorded with {recorded}): its checks are not run"
    )]
    ManifestMismatch {
        release_id: String,
        found: String,
        recorded: String,
    },
    #[error("the release table could not be used: {0}")]
    Store(#[source] Box<StoreError>),
    #[error("the HTTP client could not be built: {0}")]
    Client(#[source] reqwest::Error),
}

impl From<StoreError> for ChecksError {
    fn from(e: StoreError) -> Self {
        ChecksError::Store(Box::new(e))
    }
}

impl ActionError for ChecksError {
    /// A stable name for logs and metrics.
    fn error_type(&self) -> &'static str {
        match self {
            ChecksError::Parameters(_) => "InvalidParameters",
            ChecksError::ForeignProgress { .. } => "InvalidContinuation",
            ChecksError::InputArtifacts(_) => "InvalidInputArtifacts",
            ChecksError::ReleaseNotFound { .. } => "ReleaseNotFound",
            ChecksError::ArtifactMissing { .. } => "ArtifactMissing",
            ChecksError::ArtifactAws { .. } | ChecksError::ArtifactRead { .. } => {
                "ArtifactUnreadable"
            }
            ChecksError::ArtifactProblems { .. } => "ArtifactInvalid",
            ChecksError::ManifestMismatch { .. } => "ArtifactTampered",
            ChecksError::Store(_) => "StoreError",
            ChecksError::Client(_) => "HttpClientError",
        }
    }

    /// Reading the release may fail for a moment (S3 or DynamoDB throttling, 5xx); a failed
    /// check is an outcome, never retried here.
    fn is_retryable(&self) -> bool {
        match self {
            ChecksError::ArtifactAws { source, .. } => source.retryable,
            ChecksError::ArtifactRead { source, .. } => std::error::Error::source(source)
                .and_then(|s| s.downcast_ref::<AwsError>())
                .is_some_and(|e| e.retryable),
            ChecksError::Store(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// How CodePipeline classifies the failure.
    fn failure_kind(&self) -> JobFailureKind {
        match self {
            ChecksError::Parameters(_) | ChecksError::InputArtifacts(_) => {
                JobFailureKind::ConfigurationError
            }
            ChecksError::ArtifactAws { source, .. } if source.is_access_denied() => {
                JobFailureKind::PermissionError
            }
            _ => JobFailureKind::JobFailed,
        }
    }
}
