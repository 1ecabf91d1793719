//! Why the deploy action fails: each variant's message is what the operator reads in the
//! pipeline (PutJobFailureResult), so it says what happened, where, and what to do.

use shipgate::aws::sts::AssumeRoleError;
use shipgate::error::RoleCallError;
use shipgate::job::release::TableError;
use shipgate::job::{ActionError, JobFailureKind};

/// A failure of the deploy action.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
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
    #[error("{environment}: {source}")]
    AssumeRole {
        environment: String,
        #[source]
        source: AssumeRoleError,
    },
    /// A CloudFormation call on one of the release's stacks.
    #[error(transparent)]
    CloudFormation(RoleCallError),
    /// An ECS or load balancer call while placing the new version's task set.
    #[error(transparent)]
    Green(RoleCallError),
    #[error(transparent)]
    Store(#[from] TableError),
}

shipgate::from_store_error!(DeployError);

impl ActionError for DeployError {
    /// A stable name for logs and metrics.
    fn error_type(&self) -> &'static str {
        match self {
            DeployError::NoChangeSets { .. } => "NoChangeSets",
            DeployError::OtherExecution { .. } => "OtherExecution",
            DeployError::OtherAccount { .. } => "OtherAccount",
            DeployError::ChangeSetGone { .. } => "ChangeSetGone",
            DeployError::NotExecutable { .. } => "ChangeSetNotExecutable",
            DeployError::AssumeRole { .. } => "AssumeRoleFailed",
            DeployError::CloudFormation(_) => "CloudFormationError",
            DeployError::Green(_) => "TaskSetError",
            DeployError::Store(_) => "StoreError",
        }
    }

    /// Throttling, timeouts and 5xx: the next invocation may succeed, so the action waits
    /// (within its bound) instead of failing.
    fn is_retryable(&self) -> bool {
        match self {
            DeployError::AssumeRole { source, .. } => source.is_retryable(),
            DeployError::CloudFormation(e) | DeployError::Green(e) => e.is_retryable(),
            DeployError::Store(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// How CodePipeline classifies the failure.
    fn failure_kind(&self) -> JobFailureKind {
        let denied = match self {
            DeployError::AssumeRole { source, .. } => source.is_access_denied(),
            DeployError::CloudFormation(e) | DeployError::Green(e) => e.is_access_denied(),
            _ => false,
        };
        if denied {
            JobFailureKind::PermissionError
        } else {
            JobFailureKind::JobFailed
        }
    }
}

#[cfg(test)]
mod tests {
    use shipgate::error::AwsError;

    use super::*;

    fn aws(operation: &'static str, code: &str, retryable: bool) -> AwsError {
        shipgate::testing::aws_error("CloudFormation", operation, code, "message", retryable)
    }

    #[test]
    fn access_denied_is_a_permission_error_naming_the_operation() {
        let refused = RoleCallError::new(
            "int",
            "arn:aws:iam::222222222222:role/shipgate-deploy",
            " for stack orders-int-service",
            aws("ExecuteChangeSet", "AccessDenied", false),
        );
        // The message is the refused call's, which names the operation (shipgate::error's tests).
        let message = refused.to_string();
        let err = DeployError::CloudFormation(refused);
        assert_eq!(err.failure_kind(), JobFailureKind::PermissionError);
        assert_eq!(err.error_type(), "CloudFormationError");
        assert!(!err.is_retryable());
        assert_eq!(err.to_string(), message);
        assert!(
            message.contains("allows cloudformation:ExecuteChangeSet"),
            "{message}"
        );
    }

    #[test]
    fn throttling_is_retried() {
        let err = DeployError::CloudFormation(RoleCallError::new(
            "int",
            "r",
            " for stack s",
            aws("DescribeStacks", "Throttling", true),
        ));
        assert!(err.is_retryable());
        assert_eq!(err.failure_kind(), JobFailureKind::JobFailed);
    }
}
