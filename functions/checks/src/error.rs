//! Why the checks action fails before or around its checks (a failed check itself is an
//! outcome, not an error): each message is what the operator reads in the pipeline.

use shipgate::aws::codepipeline::JobFailureKind;
use shipgate::error::AwsError;
use shipgate::job::JobEventError;
use shipgate::release::SourceError;
use shipgate::store::StoreError;

use crate::parameters::ParameterError;

/// A failure of the checks action.
#[derive(Debug, thiserror::Error)]
pub enum ChecksError {
    /// The invocation is not a CodePipeline job: there is no job to fail.
    #[error("the event is not a CodePipeline job: {0}")]
    Event(#[source] JobEventError),
    #[error(
        "{0}: the action's UserParameters must be JSON with environment, releaseId, executionId \
         and endpoint"
    )]
    UserParameters(#[source] JobEventError),
    #[error("the action's UserParameters cannot be used: {0}")]
    Parameters(#[from] ParameterError),
    #[error("{0}: this invocation cannot resume the action; retry the stage")]
    Continuation(#[source] JobEventError),
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
    #[error("CodePipeline could not be told the job's result: {0}")]
    Answer(#[source] Box<AwsError>),
}

impl From<StoreError> for ChecksError {
    fn from(e: StoreError) -> Self {
        ChecksError::Store(Box::new(e))
    }
}

impl ChecksError {
    /// A stable name for the runtime's error report and for metrics.
    pub fn error_type(&self) -> &'static str {
        match self {
            ChecksError::Event(_) => "MalformedEvent",
            ChecksError::UserParameters(_) | ChecksError::Parameters(_) => "InvalidParameters",
            ChecksError::Continuation(_) | ChecksError::ForeignProgress { .. } => {
                "InvalidContinuation"
            }
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
            ChecksError::Answer(_) => "CodePipelineError",
        }
    }

    /// How CodePipeline classifies the failure.
    pub fn failure_kind(&self) -> JobFailureKind {
        match self {
            ChecksError::UserParameters(_)
            | ChecksError::Parameters(_)
            | ChecksError::InputArtifacts(_) => JobFailureKind::ConfigurationError,
            _ => JobFailureKind::JobFailed,
        }
    }
}
