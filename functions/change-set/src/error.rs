//! Why the change-set action fails: each variant's message is what the operator reads in the
//! pipeline (PutJobFailureResult), so it says what happened, where, and what to do.

use shipgate::aws::sts::AssumeRoleError;
use shipgate::error::{AwsError, code_and_message};
use shipgate::job::artifact::ArtifactError;
use shipgate::job::release::{ReleaseError, TableError};
use shipgate::job::{ActionError, JobFailureKind};
use shipgate::release::PlaceholderError;
use shipgate::store::StoreError;

/// A failure of the change-set action.
#[derive(Debug, thiserror::Error)]
pub enum ChangeSetError {
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{0}")]
    Placeholder(#[from] PlaceholderError),
    #[error("{environment}: {source}")]
    AssumeRole {
        environment: String,
        #[source]
        source: AssumeRoleError,
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
    #[error(
        "the template for CloudFormation could not be written to s3://{bucket}/{key} (over \
         TemplateBody's 51,200 bytes, it goes by TemplateURL): {}{}",
        code_and_message(.source),
        if .source.is_access_denied() { ": check that the change-set function's role may s3:PutObject on templates/* of the artifact bucket" } else { "" }
    )]
    TemplateUpload {
        bucket: String,
        key: String,
        source: Box<AwsError>,
    },
    #[error(transparent)]
    Store(#[from] TableError),
}

shipgate::from_store_error!(ChangeSetError);

impl ActionError for ChangeSetError {
    /// A stable name for logs and metrics.
    fn error_type(&self) -> &'static str {
        match self {
            ChangeSetError::Release(e) => e.error_type(),
            ChangeSetError::Artifact(e) => e.error_type(),
            ChangeSetError::Placeholder(_) => "UnresolvedParameter",
            ChangeSetError::AssumeRole { .. } => "AssumeRoleFailed",
            ChangeSetError::CloudFormation { .. } => "CloudFormationError",
            ChangeSetError::TemplateUpload { .. } => "TemplateUploadFailed",
            ChangeSetError::Store(_) => "StoreError",
        }
    }

    /// Throttling, timeouts and 5xx: the next invocation may succeed, so the action waits
    /// (within its bound) instead of failing.
    fn is_retryable(&self) -> bool {
        match self {
            ChangeSetError::AssumeRole { source, .. } => source.is_retryable(),
            ChangeSetError::CloudFormation { source, .. } => source.retryable,
            ChangeSetError::TemplateUpload { source, .. } => source.retryable,
            ChangeSetError::Artifact(e) => e.is_retryable(),
            ChangeSetError::Release(e) => e.is_retryable(),
            ChangeSetError::Store(e) => {
                matches!(e.store_error(), StoreError::Aws(e) if e.retryable)
            }
            _ => false,
        }
    }

    /// How CodePipeline classifies the failure.
    fn failure_kind(&self) -> JobFailureKind {
        match self {
            ChangeSetError::Artifact(e) if e.is_configuration() => {
                JobFailureKind::ConfigurationError
            }
            ChangeSetError::Artifact(e) if e.is_access_denied() => JobFailureKind::PermissionError,
            ChangeSetError::AssumeRole { source, .. } if source.is_access_denied() => {
                JobFailureKind::PermissionError
            }
            ChangeSetError::CloudFormation { source, .. } if source.is_access_denied() => {
                JobFailureKind::PermissionError
            }
            ChangeSetError::TemplateUpload { source, .. } if source.is_access_denied() => {
                JobFailureKind::PermissionError
            }
            _ => JobFailureKind::JobFailed,
        }
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
    } else if e.is_code("ValidationError") && e.message.contains("S3") {
        format!(
            ": CloudFormation reads a template over 51,200 bytes from the artifact bucket with \
             {role_arn}'s credentials: check that role's s3:GetObject on the bucket's templates/* \
             (environment.yaml) and the bucket policy's grant to it (template.yaml)"
        )
    } else if e.is_access_denied() {
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

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::222222222222:role/shipgate-deploy";

    /// CloudFormation's answer to `operation` on int's orders-int-service, called as [`ROLE`]
    /// (throttling is worth another try).
    fn cloudformation(operation: &'static str, code: &str, message: &str) -> ChangeSetError {
        let retryable = code.contains("Throttl");
        ChangeSetError::CloudFormation {
            environment: "int".into(),
            stack: "orders-int-service".into(),
            role_arn: ROLE.into(),
            source: Box::new(shipgate::testing::aws_error(
                "CloudFormation",
                operation,
                code,
                message,
                retryable,
            )),
        }
    }

    #[test]
    fn cloudformation_errors_name_environment_stack_operation_and_a_next_step() {
        let refused = cloudformation(
            "CreateChangeSet",
            "ValidationError",
            "Template format error: Unrecognized resource types: [AWS::Nope::Thing]",
        );
        assert_eq!(
            refused.to_string(),
            "int: CloudFormation CreateChangeSet for stack orders-int-service failed: \
             ValidationError: Template format error: Unrecognized resource types: \
             [AWS::Nope::Thing]: CloudFormation refused the template or its parameters; fix \
             them and drop a new release"
        );
        assert!(!refused.is_retryable());

        let denied = cloudformation("DescribeStacks", "AccessDenied", "no");
        assert!(denied.to_string().contains(&format!(
            "check that {ROLE} allows cloudformation:DescribeStacks"
        )));
        assert_eq!(denied.failure_kind(), JobFailureKind::PermissionError);

        let throttled = cloudformation("DescribeChangeSet", "Throttling", "Rate exceeded");
        assert!(throttled.is_retryable());
        assert_eq!(throttled.error_type(), "CloudFormationError");
    }

    #[test]
    fn a_service_role_that_cannot_be_used_says_which_side_to_fix() {
        let stack_role = "arn:aws:iam::222222222222:role/shipgate-cloudformation";
        let failed =
            |code: &str, message: String| cloudformation("CreateChangeSet", code, &message);

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
                .contains(&format!("check that {ROLE} may pass the service role")),
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
        let several = ChangeSetError::from(ArtifactError::SeveralInputArtifacts(vec![
            "Release".into(),
            "Other".into(),
        ]));
        assert_eq!(several.failure_kind(), JobFailureKind::ConfigurationError);
        assert_eq!(several.error_type(), "InvalidInputArtifacts");
    }
}
