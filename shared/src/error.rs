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

    /// The caller lacks a permission (IAM, a trust policy, a resource policy): final until
    /// someone changes a policy.
    pub fn is_access_denied(&self) -> bool {
        self.code.as_deref().is_some_and(|c| {
            c.starts_with("AccessDenied")
                || c == "UnauthorizedOperation"
                || c == "AuthorizationError"
                || c == "UnrecognizedClientException"
        })
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

/// A call made as a role in an environment account failed. The message names the
/// environment, the call and, when AWS refused it, the role and the IAM action it needs.
#[derive(Debug, thiserror::Error)]
#[error(
    "{environment}: {} {}{} failed: {}{}",
    .source.service,
    .source.operation,
    .context,
    code_and_message(.source),
    role_hint(.source, .role_arn)
)]
pub struct RoleCallError {
    pub environment: String,
    pub role_arn: String,
    /// What the call was about, starting with a space (` for stack orders-int-service`), or
    /// empty.
    pub context: String,
    #[source]
    pub source: Box<AwsError>,
}

impl RoleCallError {
    pub fn new(environment: &str, role_arn: &str, context: &str, source: AwsError) -> Self {
        Self {
            environment: environment.to_owned(),
            role_arn: role_arn.to_owned(),
            context: context.to_owned(),
            source: Box::new(source),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.source.retryable
    }

    pub fn is_access_denied(&self) -> bool {
        self.source.is_access_denied()
    }
}

/// "AccessDenied: User … is not authorized …", or the message alone.
pub fn code_and_message(e: &AwsError) -> String {
    match &e.code {
        Some(code) => format!("{code}: {}", e.message),
        None => e.message.clone(),
    }
}

fn role_hint(e: &AwsError, role_arn: &str) -> String {
    if e.is_access_denied() {
        format!(
            ": check that {role_arn} allows {}:{}",
            iam_prefix(e.service),
            e.operation
        )
    } else if e.retryable {
        " (temporary: the action tries again)".to_owned()
    } else {
        String::new()
    }
}

/// The IAM action prefix of a service as [`AwsError`] names it (the Service Authorization
/// Reference's service prefixes).
pub fn iam_prefix(service: &str) -> &'static str {
    match service {
        "CloudFormation" => "cloudformation",
        "CloudWatch" => "cloudwatch",
        "CodePipeline" => "codepipeline",
        "DynamoDB" => "dynamodb",
        "ECR" => "ecr",
        "ECS" => "ecs",
        "ElasticLoadBalancingV2" => "elasticloadbalancing",
        "Lambda" => "lambda",
        "S3" => "s3",
        "SES" | "SESv2" => "ses",
        "STS" => "sts",
        "SecretsManager" => "secretsmanager",
        _ => "its service",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(
        service: &'static str,
        operation: &'static str,
        code: &str,
        retryable: bool,
    ) -> AwsError {
        crate::testing::aws_error(service, operation, code, "message", retryable)
    }

    #[test]
    fn a_refused_call_names_the_role_and_the_action_it_needs() {
        let role = "arn:aws:iam::222222222222:role/shipgate-deploy";
        let err = RoleCallError::new(
            "int",
            role,
            " for stack orders-int-service",
            aws("CloudFormation", "ExecuteChangeSet", "AccessDenied", false),
        );
        assert!(err.is_access_denied());
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "int: CloudFormation ExecuteChangeSet for stack orders-int-service failed: \
             AccessDenied: message: check that arn:aws:iam::222222222222:role/shipgate-deploy \
             allows cloudformation:ExecuteChangeSet"
        );
        let elb = RoleCallError::new(
            "stg",
            role,
            "",
            aws(
                "ElasticLoadBalancingV2",
                "ModifyListener",
                "AccessDenied",
                false,
            ),
        );
        assert!(
            elb.to_string()
                .ends_with("allows elasticloadbalancing:ModifyListener")
        );
    }

    #[test]
    fn a_throttled_call_says_it_is_tried_again() {
        let err = RoleCallError::new(
            "int",
            "r",
            "",
            aws("ECS", "DescribeTaskSets", "Throttling", true),
        );
        assert!(err.is_retryable());
        assert_eq!(
            err.to_string(),
            "int: ECS DescribeTaskSets failed: Throttling: message (temporary: the action tries again)"
        );
    }
}
