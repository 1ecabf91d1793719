//! Why the checks action fails before or around its checks (a failed check itself is an
//! outcome, not an error): each message is what the operator reads in the pipeline.

use shipgate::aws::sts::AssumeRoleError;
use shipgate::job::artifact::ArtifactError;
use shipgate::job::release::{ReleaseError, TableError};
use shipgate::job::{ActionError, JobFailureKind, ParameterError};
use shipgate::probe::InvokeError;

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
    /// The environment's `shipgate-checks` role could not be assumed.
    #[error("{environment}: {source}")]
    AssumeRole {
        environment: String,
        #[source]
        source: AssumeRoleError,
    },
    /// The test probe could not be invoked, or refused the request.
    #[error("{environment}: the test probe {function} gave no answer: {source}{}", probe_hint(.source, .role_arn))]
    Probe {
        environment: String,
        function: String,
        role_arn: String,
        #[source]
        source: InvokeError,
    },
}

/// What to look at, by why the probe gave no answer.
fn probe_hint(e: &InvokeError, role_arn: &str) -> String {
    match e {
        InvokeError::Lambda(e) if e.is_access_denied() => format!(
            ". Check that {role_arn} allows lambda:InvokeFunction on it (environment.yaml's \
             ChecksRole)"
        ),
        InvokeError::Lambda(e) if e.is_code("ResourceNotFoundException") => {
            ". Deploy environment.yaml (its TestProbe function) in this environment's account"
                .to_owned()
        }
        InvokeError::Function { error_type, .. } if error_type == "ForeignOrigin" => {
            ". The application's stack must output environment.yaml's TestEndpoint export as \
             ShipgateTestEndpoint"
                .to_owned()
        }
        _ => String::new(),
    }
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
            ChecksError::AssumeRole { .. } => "AssumeRoleFailed",
            ChecksError::Probe { .. } => "ProbeFailed",
        }
    }

    /// Reading the release may fail for a moment (S3 or DynamoDB throttling, 5xx); a failed
    /// check is an outcome, never retried here.
    fn is_retryable(&self) -> bool {
        match self {
            ChecksError::Artifact(e) => e.is_retryable(),
            ChecksError::Release(e) => e.is_retryable(),
            ChecksError::Store(e) => e.is_retryable(),
            ChecksError::AssumeRole { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// How CodePipeline classifies the failure.
    fn failure_kind(&self) -> JobFailureKind {
        match self {
            ChecksError::Parameters(_) => JobFailureKind::ConfigurationError,
            ChecksError::Artifact(e) if e.is_configuration() => JobFailureKind::ConfigurationError,
            ChecksError::Artifact(e) if e.is_access_denied() => JobFailureKind::PermissionError,
            ChecksError::AssumeRole { source, .. } if source.is_access_denied() => {
                JobFailureKind::PermissionError
            }
            ChecksError::Probe { source, .. } if source.is_access_denied() => {
                JobFailureKind::PermissionError
            }
            ChecksError::Probe { .. } => JobFailureKind::ConfigurationError,
            _ => JobFailureKind::JobFailed,
        }
    }
}
