//! Why the change-set action fails: each variant's message is what the operator reads in the
//! pipeline (PutJobFailureResult), so it says what happened, where, and what to do.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use shipgate::aws::codepipeline::JobFailureKind;
use shipgate::error::AwsError;
use shipgate::job::JobEventError;
use shipgate::release::{PlaceholderError, SourceError};
use shipgate::store::StoreError;

use crate::parameters::ParameterError;

/// A failure of the change-set action.
#[derive(Debug, thiserror::Error)]
pub enum ChangeSetError {
    /// The invocation is not a CodePipeline job: there is no job to fail.
    #[error("the event is not a CodePipeline job: {0}")]
    Event(#[source] JobEventError),
    #[error(
        "{0}: the action's UserParameters must be JSON with environment, roleArn, releaseId, \
         executionId and optionally registry and stackRoleArn"
    )]
    UserParameters(#[source] JobEventError),
    #[error("the action's UserParameters cannot be used: {0}")]
    Parameters(#[from] ParameterError),
    #[error("{0}: this invocation cannot resume the action; retry the stage")]
    Continuation(#[source] JobEventError),
    #[error(
        "the job has no input artifact: the action's input must be the release (the pipeline's \
         source output)"
    )]
    NoInputArtifact,
    #[error(
        "the job has {} input artifacts ({}): the action takes one, the release",
        .0.len(),
        .0.join(", ")
    )]
    SeveralInputArtifacts(Vec<String>),
    #[error(
        "release {release_id} is not in the release table: only a release intake accepted gets \
         change sets (is releaseId the pipeline's ReleaseId variable?)"
    )]
    ReleaseNotFound { release_id: String },
    #[error("release {release_id} is {state}: only a release intake accepted gets change sets")]
    ReleaseNotAccepted {
        release_id: String,
        state: &'static str,
    },
    #[error(
        "the release artifact s3://{bucket}/{key} does not exist: the pipeline lost its input; \
         start a new execution of the release"
    )]
    ArtifactMissing { bucket: String, key: String },
    #[error(
        "could not read the release artifact s3://{bucket}/{key}: {}: check the function's \
         access to the artifact bucket",
        words(.source)
    )]
    ArtifactAws {
        bucket: String,
        key: String,
        source: Box<AwsError>,
    },
    #[error("could not read the release artifact s3://{bucket}/{key}: {detail}")]
    ArtifactRead {
        bucket: String,
        key: String,
        detail: String,
        retryable: bool,
        source: SourceError,
    },
    #[error(
        "the release artifact is refused, it has {count} problem(s): {summary}; only a release \
         intake accepted gets change sets"
    )]
    ArtifactProblems { count: usize, summary: String },
    #[error(
        "release {release_id} has no recorded manifest digest: intake never accepted it, so it \
         gets no change sets"
    )]
    NotValidated { release_id: String },
    #[error(
        "the release artifact is not the release intake validated: its release.json has SHA-256 \
         {found}, release {release_id} was recorded with {recorded}; the artifact changed after \
         intake, so nothing is created: drop the release again"
    )]
    ManifestMismatch {
        release_id: String,
        found: String,
        recorded: String,
    },
    #[error(
        "release {release_id} does not go to {environment}: its manifest lists {}",
        .listed.join(", ")
    )]
    NotForEnvironment {
        release_id: String,
        environment: String,
        listed: Vec<String>,
    },
    #[error("{0}")]
    Placeholder(#[from] PlaceholderError),
    #[error(
        "could not assume {role_arn} in {environment}: {}{}",
        words(.source),
        assume_hint(.source)
    )]
    AssumeRole {
        role_arn: String,
        environment: String,
        source: Box<AwsError>,
    },
    #[error(
        "{environment}: CloudFormation {} for stack {stack} failed: {}{}",
        .source.operation,
        code_and_message(.source),
        cloudformation_hint(.source, .role_arn)
    )]
    CloudFormation {
        environment: String,
        stack: String,
        role_arn: String,
        source: Box<AwsError>,
    },
    #[error("the release table could not be used: {0}")]
    Store(#[source] Box<StoreError>),
    #[error("CodePipeline could not be told the job's result: {0}")]
    Answer(#[source] Box<AwsError>),
}

impl From<StoreError> for ChangeSetError {
    fn from(e: StoreError) -> Self {
        ChangeSetError::Store(Box::new(e))
    }
}

impl ChangeSetError {
    /// A stable name for the runtime's error report and for metrics.
    pub fn error_type(&self) -> &'static str {
        match self {
            ChangeSetError::Event(_) => "MalformedEvent",
            ChangeSetError::UserParameters(_) | ChangeSetError::Parameters(_) => {
                "InvalidParameters"
            }
            ChangeSetError::Continuation(_) => "InvalidContinuation",
            ChangeSetError::NoInputArtifact | ChangeSetError::SeveralInputArtifacts(_) => {
                "InvalidInputArtifacts"
            }
            ChangeSetError::ReleaseNotFound { .. } => "ReleaseNotFound",
            ChangeSetError::ReleaseNotAccepted { .. } => "ReleaseNotAccepted",
            ChangeSetError::ArtifactMissing { .. } => "ArtifactMissing",
            ChangeSetError::ArtifactAws { .. } | ChangeSetError::ArtifactRead { .. } => {
                "ArtifactUnreadable"
            }
            ChangeSetError::ArtifactProblems { .. } => "ArtifactInvalid",
            ChangeSetError::NotValidated { .. } => "ReleaseNotValidated",
            ChangeSetError::ManifestMismatch { .. } => "ArtifactTampered",
            ChangeSetError::NotForEnvironment { .. } => "NotForEnvironment",
            ChangeSetError::Placeholder(_) => "UnresolvedParameter",
            ChangeSetError::AssumeRole { .. } => "AssumeRoleFailed",
            ChangeSetError::CloudFormation { .. } => "CloudFormationError",
            ChangeSetError::Store(_) => "StoreError",
            ChangeSetError::Answer(_) => "CodePipelineError",
        }
    }

    /// Throttling, timeouts and 5xx: the next invocation may succeed, so the action waits
    /// (within its bound) instead of failing.
    pub fn is_retryable(&self) -> bool {
        match self {
            ChangeSetError::ArtifactAws { source, .. }
            | ChangeSetError::AssumeRole { source, .. }
            | ChangeSetError::CloudFormation { source, .. } => source.retryable,
            ChangeSetError::ArtifactRead { retryable, .. } => *retryable,
            ChangeSetError::Store(e) => matches!(e.as_ref(), StoreError::Aws(e) if e.retryable),
            _ => false,
        }
    }

    /// How CodePipeline classifies the failure.
    pub fn failure_kind(&self) -> JobFailureKind {
        match self {
            ChangeSetError::UserParameters(_)
            | ChangeSetError::Parameters(_)
            | ChangeSetError::NoInputArtifact
            | ChangeSetError::SeveralInputArtifacts(_) => JobFailureKind::ConfigurationError,
            ChangeSetError::AssumeRole { source, .. }
            | ChangeSetError::CloudFormation { source, .. }
            | ChangeSetError::ArtifactAws { source, .. }
                if is_access_denied(source) =>
            {
                JobFailureKind::PermissionError
            }
            _ => JobFailureKind::JobFailed,
        }
    }
}

fn is_access_denied(e: &AwsError) -> bool {
    e.code.as_deref().is_some_and(|c| {
        c.starts_with("AccessDenied") || c == "UnauthorizedOperation" || c == "AuthorizationError"
    })
}

/// "STS AssumeRole failed: AccessDenied: User … is not authorized …"
fn words(e: &AwsError) -> String {
    format!(
        "{} {} failed: {}",
        e.service,
        e.operation,
        code_and_message(e)
    )
}

fn code_and_message(e: &AwsError) -> String {
    match &e.code {
        Some(code) => format!("{code}: {}", e.message),
        None => e.message.clone(),
    }
}

fn assume_hint(e: &AwsError) -> &'static str {
    if is_access_denied(e) {
        ": check that the role exists and that its trust policy names the tooling account (the \
         role this function runs as)"
    } else if e.retryable {
        " (temporary: the action tries again)"
    } else {
        ""
    }
}

fn cloudformation_hint(e: &AwsError, role_arn: &str) -> String {
    // CloudFormation checks that the caller may pass the service role (RoleARN) before it
    // takes the request.
    if e.message.contains("iam:PassRole") {
        format!(
            ": check that {role_arn} may pass the service role to CloudFormation (iam:PassRole \
             with iam:PassedToService cloudformation.amazonaws.com; environment.yaml grants it on \
             shipgate-cloudformation)"
        )
    } else if is_access_denied(e) {
        format!(
            ": check that {role_arn} allows cloudformation:{} (and what the template's resources \
             need)",
            e.operation
        )
    } else if e.is_code("ValidationError") && e.message.contains("cannot be assumed") {
        ": the action's stackRoleArn must name a role of the environment's account that trusts \
         cloudformation.amazonaws.com (environment.yaml's StackRoleArn output)"
            .to_owned()
    } else if e.is_code("ValidationError") && e.operation == "CreateChangeSet" {
        ": CloudFormation refused the template or its parameters; fix them and drop a new release"
            .to_owned()
    } else if e.is_code("LimitExceededException") {
        ": the stack or account reached a CloudFormation quota (delete old change sets)".to_owned()
    } else if e.retryable {
        " (temporary: the action tries again)".to_owned()
    } else {
        String::new()
    }
}

/// The STS error behind a failed `AssumeRole` credentials request, as an [`AwsError`]: its
/// code and message, and whether another try may succeed. Credentials are resolved eagerly so
/// that a refusal is this error, not a transport failure on the first CloudFormation call.
pub(crate) fn assume_role_error(err: CredentialsError) -> AwsError {
    let sdk = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>());
    let (code, message, retryable) = match sdk {
        Some(e) => {
            let code = e.code().map(str::to_owned);
            let retryable = match e {
                SdkError::ServiceError(context) => {
                    context.raw().status().is_server_error()
                        || code
                            .as_deref()
                            .is_some_and(|c| c.contains("Throttl") || c == "RequestLimitExceeded")
                }
                SdkError::ConstructionFailure(_) => false,
                // Timeouts, connection and response failures.
                _ => true,
            };
            let message = e
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| DisplayErrorContext(e).to_string());
            (code, message, retryable)
        }
        None => (
            None,
            DisplayErrorContext(&err).to_string(),
            matches!(err, CredentialsError::ProviderTimedOut(_)),
        ),
    };
    AwsError {
        service: "STS",
        operation: "AssumeRole",
        code,
        message,
        retryable,
        source: Box::new(err),
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    fn aws(service: &'static str, operation: &'static str, code: &str, message: &str) -> AwsError {
        AwsError {
            service,
            operation,
            code: Some(code.into()),
            message: message.into(),
            retryable: code.contains("Throttl"),
            source: "test".into(),
        }
    }

    fn refused_assume_role(status: u16, code: &str, message: &str) -> CredentialsError {
        let error =
            AssumeRoleError::generic(ErrorMetadata::builder().code(code).message(message).build());
        let response = HttpResponse::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::empty(),
        );
        CredentialsError::provider_error(SdkError::service_error(error, response))
    }

    #[test]
    fn a_refused_assume_role_says_which_role_where_and_what_to_check() {
        let source = assume_role_error(refused_assume_role(
            403,
            "AccessDenied",
            "User: arn:aws:sts::123456789012:assumed-role/change-set/x is not authorized to \
             perform: sts:AssumeRole on resource: arn:aws:iam::222222222222:role/shipgate-deploy",
        ));
        assert!(!source.retryable);
        let err = ChangeSetError::AssumeRole {
            role_arn: "arn:aws:iam::222222222222:role/shipgate-deploy".into(),
            environment: "int".into(),
            source: Box::new(source),
        };

        let message = err.to_string();
        assert!(
            message.starts_with(
                "could not assume arn:aws:iam::222222222222:role/shipgate-deploy in int: STS \
                 AssumeRole failed: AccessDenied: User: "
            ),
            "{message}"
        );
        assert!(
            message.ends_with(
                "trust policy names the tooling account (the role this function runs as)"
            ),
            "{message}"
        );
        assert!(!err.is_retryable());
        assert_eq!(err.failure_kind(), JobFailureKind::PermissionError);
    }

    #[test]
    fn a_throttled_or_failing_sts_is_worth_another_try() {
        for (status, code) in [(400, "Throttling"), (503, "ServiceUnavailable")] {
            let e = assume_role_error(refused_assume_role(status, code, "slow down"));
            assert!(e.retryable, "{code}");
        }
        let timed_out = assume_role_error(CredentialsError::provider_timed_out(
            std::time::Duration::from_secs(5),
        ));
        assert!(timed_out.retryable);
        assert_eq!(timed_out.code, None);
    }

    #[test]
    fn cloudformation_errors_name_environment_stack_operation_and_a_next_step() {
        let role = "arn:aws:iam::222222222222:role/shipgate-deploy";
        let refused = ChangeSetError::CloudFormation {
            environment: "int".into(),
            stack: "orders-int-service".into(),
            role_arn: role.into(),
            source: Box::new(aws(
                "CloudFormation",
                "CreateChangeSet",
                "ValidationError",
                "Template format error: Unrecognized resource types: [AWS::Nope::Thing]",
            )),
        };
        assert_eq!(
            refused.to_string(),
            "int: CloudFormation CreateChangeSet for stack orders-int-service failed: \
             ValidationError: Template format error: Unrecognized resource types: \
             [AWS::Nope::Thing]: CloudFormation refused the template or its parameters; fix \
             them and drop a new release"
        );
        assert!(!refused.is_retryable());

        let denied = ChangeSetError::CloudFormation {
            environment: "int".into(),
            stack: "orders-int-service".into(),
            role_arn: role.into(),
            source: Box::new(aws(
                "CloudFormation",
                "DescribeStacks",
                "AccessDenied",
                "no",
            )),
        };
        assert!(denied.to_string().contains(&format!(
            "check that {role} allows cloudformation:DescribeStacks"
        )));
        assert_eq!(denied.failure_kind(), JobFailureKind::PermissionError);

        let throttled = ChangeSetError::CloudFormation {
            environment: "int".into(),
            stack: "orders-int-service".into(),
            role_arn: role.into(),
            source: Box::new(aws(
                "CloudFormation",
                "DescribeChangeSet",
                "Throttling",
                "Rate exceeded",
            )),
        };
        assert!(throttled.is_retryable());
        assert_eq!(throttled.error_type(), "CloudFormationError");
    }

    #[test]
    fn a_service_role_that_cannot_be_used_says_which_side_to_fix() {
        let role = "arn:aws:iam::222222222222:role/shipgate-deploy";
        let stack_role = "arn:aws:iam::222222222222:role/shipgate-cloudformation";
        let failed = |code: &str, message: String| ChangeSetError::CloudFormation {
            environment: "int".into(),
            stack: "orders-int-service".into(),
            role_arn: role.into(),
            source: Box::new(aws("CloudFormation", "CreateChangeSet", code, &message)),
        };

        let not_passable = failed(
            "AccessDenied",
            format!(
                "User: arn:aws:sts::222222222222:assumed-role/shipgate-deploy/s is not authorized \
                 to perform: iam:PassRole on resource: {stack_role}"
            ),
        );
        assert!(
            not_passable
                .to_string()
                .contains(&format!("check that {role} may pass the service role")),
            "{not_passable}"
        );
        assert_eq!(not_passable.failure_kind(), JobFailureKind::PermissionError);

        let not_assumable = failed(
            "ValidationError",
            format!("Role {stack_role} is invalid or cannot be assumed"),
        );
        assert!(
            not_assumable
                .to_string()
                .contains("stackRoleArn must name a role of the environment's account"),
            "{not_assumable}"
        );
        assert!(!not_assumable.to_string().contains("drop a new release"));
    }

    #[test]
    fn configuration_mistakes_are_configuration_errors() {
        let err = ChangeSetError::Parameters(ParameterError::Empty { field: "roleArn" });
        assert_eq!(err.failure_kind(), JobFailureKind::ConfigurationError);
        assert_eq!(
            err.to_string(),
            "the action's UserParameters cannot be used: `roleArn` is missing or empty"
        );
        let several = ChangeSetError::SeveralInputArtifacts(vec!["Release".into(), "Other".into()]);
        assert_eq!(
            several.to_string(),
            "the job has 2 input artifacts (Release, Other): the action takes one, the release"
        );
    }
}
