//! Why the deploy action fails: each variant's message is what the operator reads in the
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
use shipgate::store::StoreError;

use crate::parameters::ParameterError;

/// A failure of the deploy action.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The invocation is not a CodePipeline job: there is no job to fail.
    #[error("the event is not a CodePipeline job: {0}")]
    Event(#[source] JobEventError),
    #[error(
        "{0}: the action's UserParameters must be JSON with environment, roleArn, releaseId and \
         executionId"
    )]
    UserParameters(#[source] JobEventError),
    #[error("the action's UserParameters cannot be used: {0}")]
    Parameters(#[from] ParameterError),
    #[error("{0}: this invocation cannot resume the action; retry the stage")]
    Continuation(#[source] JobEventError),
    #[error(
        "{environment}: release {release_id} has no change sets recorded for {environment}: the \
         change-set action must create them (and they must be approved) before deploying"
    )]
    NoChangeSets {
        release_id: String,
        environment: String,
    },
    #[error(
        "{environment}: the change sets of release {release_id} were created by pipeline \
         execution {recorded}, not by this one ({execution_id}): only the change sets approved \
         in this execution are deployed; retry the change-set stage of this execution"
    )]
    OtherExecution {
        release_id: String,
        environment: String,
        recorded: String,
        execution_id: String,
    },
    #[error(
        "{environment}: the change set of stack {stack} is in account {recorded}, but roleArn \
         is in account {account}: the pipeline's roleArn for {environment} changed since the \
         change sets were created"
    )]
    OtherAccount {
        environment: String,
        stack: String,
        recorded: String,
        account: String,
    },
    #[error(
        "{environment}: change set {change_set} of stack {stack} no longer exists: it was \
         deleted, or another change set was executed since; run the change-set stage again"
    )]
    ChangeSetGone {
        environment: String,
        stack: String,
        change_set: String,
    },
    #[error(
        "{environment}: change set {change_set} of stack {stack} cannot be executed: it is \
         {status}{}; run the change-set stage again",
        .reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
    )]
    NotExecutable {
        environment: String,
        stack: String,
        change_set: String,
        status: String,
        reason: Option<String>,
    },
    #[error(
        "could not assume {role_arn} in {environment}: {} {} failed: {}{}",
        .source.service,
        .source.operation,
        code_and_message(.source),
        if is_access_denied(.source) {
            ": check that the role exists and that its trust policy names the tooling account"
        } else { "" }
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
        if is_access_denied(.source) {
            format!(": check that {role_arn} allows cloudformation:{}", .source.operation)
        } else if .source.retryable {
            " (temporary: the action tries again)".to_owned()
        } else { String::new() }
    )]
    CloudFormation {
        environment: String,
        stack: String,
        role_arn: String,
        source: Box<AwsError>,
    },
    /// An ECS or load balancer call while placing the new version's task set.
    #[error(
        "{environment}: {} {} failed while placing the new version's task set: {}{}",
        .source.service,
        .source.operation,
        code_and_message(.source),
        if is_access_denied(.source) {
            format!(": check that {role_arn} allows {}:{}", iam_prefix(.source.service), .source.operation)
        } else if .source.retryable {
            " (temporary: the action tries again)".to_owned()
        } else { String::new() }
    )]
    Green {
        environment: String,
        role_arn: String,
        source: Box<AwsError>,
    },
    #[error("the release table could not be used: {0}")]
    Store(#[source] Box<StoreError>),
    #[error("CodePipeline could not be told the job's result: {0}")]
    Answer(#[source] Box<AwsError>),
}

impl From<StoreError> for DeployError {
    fn from(e: StoreError) -> Self {
        DeployError::Store(Box::new(e))
    }
}

impl DeployError {
    /// A stable name for the runtime's error report and for metrics.
    pub fn error_type(&self) -> &'static str {
        match self {
            DeployError::Event(_) => "MalformedEvent",
            DeployError::UserParameters(_) | DeployError::Parameters(_) => "InvalidParameters",
            DeployError::Continuation(_) => "InvalidContinuation",
            DeployError::NoChangeSets { .. } => "NoChangeSets",
            DeployError::OtherExecution { .. } => "OtherExecution",
            DeployError::OtherAccount { .. } => "OtherAccount",
            DeployError::ChangeSetGone { .. } => "ChangeSetGone",
            DeployError::NotExecutable { .. } => "ChangeSetNotExecutable",
            DeployError::AssumeRole { .. } => "AssumeRoleFailed",
            DeployError::CloudFormation { .. } => "CloudFormationError",
            DeployError::Green { .. } => "TaskSetError",
            DeployError::Store(_) => "StoreError",
            DeployError::Answer(_) => "CodePipelineError",
        }
    }

    /// Throttling, timeouts and 5xx: the next invocation may succeed, so the action waits
    /// (within its bound) instead of failing.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeployError::AssumeRole { source, .. }
            | DeployError::CloudFormation { source, .. }
            | DeployError::Green { source, .. } => source.retryable,
            DeployError::Store(e) => matches!(e.as_ref(), StoreError::Aws(e) if e.retryable),
            _ => false,
        }
    }

    /// How CodePipeline classifies the failure.
    pub fn failure_kind(&self) -> JobFailureKind {
        match self {
            DeployError::UserParameters(_) | DeployError::Parameters(_) => {
                JobFailureKind::ConfigurationError
            }
            DeployError::AssumeRole { source, .. }
            | DeployError::CloudFormation { source, .. }
            | DeployError::Green { source, .. }
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

/// The IAM action prefix of a service as [`AwsError`] names it.
fn iam_prefix(service: &str) -> &'static str {
    match service {
        "ECS" => "ecs",
        "ElasticLoadBalancingV2" => "elasticloadbalancing",
        "CloudFormation" => "cloudformation",
        _ => "its service",
    }
}

fn code_and_message(e: &AwsError) -> String {
    match &e.code {
        Some(code) => format!("{code}: {}", e.message),
        None => e.message.clone(),
    }
}

/// The STS error behind a failed `AssumeRole` credentials request, as an [`AwsError`].
/// Credentials are resolved eagerly so that a refusal is this error, not a transport failure
/// on the first CloudFormation call.
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
    use super::*;

    fn aws(operation: &'static str, code: &str, retryable: bool) -> AwsError {
        AwsError {
            service: "CloudFormation",
            operation,
            code: Some(code.into()),
            message: "message".into(),
            retryable,
            source: "test".into(),
        }
    }

    #[test]
    fn access_denied_is_a_permission_error_naming_the_operation() {
        let err = DeployError::CloudFormation {
            environment: "int".into(),
            stack: "orders-int-service".into(),
            role_arn: "arn:aws:iam::222222222222:role/shipgate-deploy".into(),
            source: Box::new(aws("ExecuteChangeSet", "AccessDenied", false)),
        };
        assert_eq!(err.failure_kind(), JobFailureKind::PermissionError);
        assert_eq!(err.error_type(), "CloudFormationError");
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "int: CloudFormation ExecuteChangeSet for stack orders-int-service failed: \
             AccessDenied: message: check that arn:aws:iam::222222222222:role/shipgate-deploy \
             allows cloudformation:ExecuteChangeSet"
        );
    }

    #[test]
    fn throttling_is_retried() {
        let err = DeployError::CloudFormation {
            environment: "int".into(),
            stack: "s".into(),
            role_arn: "r".into(),
            source: Box::new(aws("DescribeStacks", "Throttling", true)),
        };
        assert!(err.is_retryable());
        assert!(
            err.to_string()
                .ends_with("(temporary: the action tries again)")
        );
    }
}
