//! Why the promote action fails: each variant's message is what the operator reads in the
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
use shipgate::registry::{CopyError, DigestError, RegistryError};
use shipgate::store::StoreError;

use crate::parameters::ParameterError;

/// A failure of the promote action.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// The invocation is not a CodePipeline job: there is no job to fail.
    #[error("the event is not a CodePipeline job: {0}")]
    Event(#[source] JobEventError),
    #[error(
        "{0}: the action's UserParameters must be JSON with releaseId, executionId, \
         from {{environment, roleArn?}} and to {{environment, roleArn}}"
    )]
    UserParameters(#[source] JobEventError),
    #[error("the action's UserParameters cannot be used: {0}")]
    Parameters(#[from] ParameterError),
    #[error("{0}: this invocation cannot resume the action; retry the stage")]
    Continuation(#[source] JobEventError),
    #[error(
        "release {release_id} is not in the release table: only a release intake accepted is \
         promoted (is releaseId the pipeline's ReleaseId variable?)"
    )]
    ReleaseNotFound { release_id: String },
    #[error("release {release_id} is {state}: only a release intake accepted is promoted")]
    ReleaseNotAccepted {
        release_id: String,
        state: &'static str,
    },
    #[error("release {release_id} has no recorded manifest: intake never accepted it")]
    ManifestMissing { release_id: String },
    #[error("the manifest recorded for release {release_id} cannot be read: {source}")]
    ManifestUnreadable {
        release_id: String,
        #[source]
        source: serde_json::Error,
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
    #[error("image {image} of the release has digest {digest:?}, which is not usable: {source}")]
    InvalidDigest {
        image: String,
        digest: String,
        #[source]
        source: DigestError,
    },
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
        "{environment}: the ECR registry could not be reached: {source}{}",
        registry_hint(.source)
    )]
    Registry {
        environment: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error(
        "{environment}: ECR {} of repository {repository} failed: {}{}",
        .source.operation,
        code_and_message(.source),
        repository_hint(.source)
    )]
    Repository {
        environment: String,
        repository: String,
        source: Box<AwsError>,
    },
    #[error("image {image} ({from} → {to}): {source}{}", copy_hint(.source))]
    Copy {
        image: String,
        from: String,
        to: String,
        #[source]
        source: Box<CopyError>,
    },
    #[error("the release table could not be used: {0}")]
    Store(#[source] Box<StoreError>),
    #[error("CodePipeline could not be told the job's result: {0}")]
    Answer(#[source] Box<AwsError>),
}

impl From<StoreError> for PromoteError {
    fn from(e: StoreError) -> Self {
        PromoteError::Store(Box::new(e))
    }
}

impl PromoteError {
    /// A stable name for the runtime's error report and for metrics.
    pub fn error_type(&self) -> &'static str {
        match self {
            PromoteError::Event(_) => "MalformedEvent",
            PromoteError::UserParameters(_) | PromoteError::Parameters(_) => "InvalidParameters",
            PromoteError::Continuation(_) => "InvalidContinuation",
            PromoteError::ReleaseNotFound { .. } => "ReleaseNotFound",
            PromoteError::ReleaseNotAccepted { .. } => "ReleaseNotAccepted",
            PromoteError::ManifestMissing { .. } | PromoteError::ManifestUnreadable { .. } => {
                "ReleaseNotValidated"
            }
            PromoteError::NotForEnvironment { .. } => "NotForEnvironment",
            PromoteError::InvalidDigest { .. } => "InvalidImage",
            PromoteError::AssumeRole { .. } => "AssumeRoleFailed",
            PromoteError::Registry { .. } => "RegistryUnavailable",
            PromoteError::Repository { .. } => "RepositoryError",
            PromoteError::Copy { source, .. } => match source.as_ref() {
                CopyError::SourceNotFound { .. } => "SourceImageNotFound",
                CopyError::TagConflict { .. } => "ImmutableTagConflict",
                CopyError::CorruptBlob { .. } => "CorruptSourceBlob",
                CopyError::Verification { .. } => "DigestMismatch",
                _ => "CopyFailed",
            },
            PromoteError::Store(_) => "StoreError",
            PromoteError::Answer(_) => "CodePipelineError",
        }
    }

    /// Throttling, timeouts and 5xx: the next invocation may succeed, so the action tries
    /// again (within its bound) instead of failing.
    pub fn is_retryable(&self) -> bool {
        match self {
            PromoteError::AssumeRole { source, .. } | PromoteError::Repository { source, .. } => {
                source.retryable
            }
            PromoteError::Registry { source, .. } => source.is_retryable(),
            PromoteError::Copy { source, .. } => source.is_retryable(),
            PromoteError::Store(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// How CodePipeline classifies the failure.
    pub fn failure_kind(&self) -> JobFailureKind {
        match self {
            PromoteError::UserParameters(_) | PromoteError::Parameters(_) => {
                JobFailureKind::ConfigurationError
            }
            PromoteError::AssumeRole { source, .. } | PromoteError::Repository { source, .. }
                if is_access_denied(source) =>
            {
                JobFailureKind::PermissionError
            }
            PromoteError::Registry { source, .. }
                if matches!(source.as_ref(), RegistryError::Unauthorized { .. }) =>
            {
                JobFailureKind::PermissionError
            }
            PromoteError::Copy { source, .. } if copy_unauthorized(source) => {
                JobFailureKind::PermissionError
            }
            _ => JobFailureKind::JobFailed,
        }
    }
}

fn copy_unauthorized(e: &CopyError) -> bool {
    matches!(e, CopyError::Source { source, .. } | CopyError::Target { source, .. }
        if matches!(source.as_ref(), RegistryError::Unauthorized { .. }))
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

fn registry_hint(e: &RegistryError) -> &'static str {
    match e {
        RegistryError::Unauthorized { .. } | RegistryError::Ecr { .. } => {
            ": check that the role allows ecr:GetAuthorizationToken and the repository's pull \
             or push actions"
        }
        e if e.is_retryable() => " (temporary: the action tries again)",
        _ => "",
    }
}

fn repository_hint(e: &AwsError) -> &'static str {
    if is_access_denied(e) {
        ": check that the role allows ecr:DescribeRepositories and ecr:CreateRepository"
    } else if e.retryable {
        " (temporary: the action tries again)"
    } else {
        ""
    }
}

fn copy_hint(e: &CopyError) -> &'static str {
    match e {
        CopyError::SourceNotFound { .. } => {
            ": it was deleted from the source after intake accepted the release (a lifecycle \
             policy?); push it again by digest and retry the stage"
        }
        CopyError::TagConflict { .. } => {
            ": a different image already carries this version's tag in the target; remove that \
             image or release under a new version"
        }
        CopyError::CorruptBlob { .. } => {
            ": the source registry serves content that does not match its digest; nothing \
             corrupt was copied"
        }
        e if copy_unauthorized(e) => {
            ": check that the role allows pulling from the source repository and pushing to \
             the target one"
        }
        e if e.is_retryable() => " (temporary: the action tries again)",
        _ => "",
    }
}

/// The STS error behind a failed `AssumeRole` credentials request, as an [`AwsError`]: its
/// code and message, and whether another try may succeed. Credentials are resolved eagerly so
/// that a refusal is this error, not a transport failure on the first ECR call.
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
    use shipgate::registry::Digest;

    use super::*;

    fn copy(source: CopyError) -> PromoteError {
        PromoteError::Copy {
            image: "web".into(),
            from: "int".into(),
            to: "stg".into(),
            source: Box::new(source),
        }
    }

    #[test]
    fn a_tag_conflict_names_both_digests_and_what_to_do() {
        let existing = Digest::sha256_of(b"old");
        let wanted = Digest::sha256_of(b"new");
        let e = copy(CopyError::TagConflict {
            registry: "333333333333.dkr.ecr.eu-west-1.amazonaws.com".into(),
            repo: "orders/web".into(),
            tag: "1.4.2".into(),
            existing: existing.clone(),
            wanted: wanted.clone(),
        });
        let text = e.to_string();
        assert!(
            text.starts_with("image web (int → stg): tag 1.4.2"),
            "{text}"
        );
        assert!(text.contains(existing.as_str()) && text.contains(wanted.as_str()));
        assert!(text.contains("new version"), "{text}");
        assert_eq!(e.error_type(), "ImmutableTagConflict");
        assert!(!e.is_retryable());
        assert_eq!(e.failure_kind(), JobFailureKind::JobFailed);
    }

    #[test]
    fn registry_refusals_are_permission_errors_and_5xx_are_retried() {
        let refused = copy(CopyError::Target {
            registry: "r".into(),
            repo: "a".into(),
            what: "uploading blob".into(),
            source: Box::new(RegistryError::Unauthorized {
                registry: "r".into(),
                status: 403,
                code: Some("DENIED".into()),
            }),
        });
        assert_eq!(refused.failure_kind(), JobFailureKind::PermissionError);
        assert!(refused.to_string().contains("pushing to the target"));
        let flaky = copy(CopyError::Source {
            registry: "r".into(),
            repo: "a".into(),
            what: "reading blob".into(),
            source: Box::new(RegistryError::Http {
                method: "GET".into(),
                path: "/v2/a/blobs/x".into(),
                status: 503,
                code: None,
                excerpt: String::new(),
            }),
        });
        assert!(flaky.is_retryable());
        assert!(
            flaky
                .to_string()
                .ends_with("(temporary: the action tries again)")
        );
    }

    #[test]
    fn a_missing_source_image_says_what_happened() {
        let e = copy(CopyError::SourceNotFound {
            registry: "222222222222.dkr.ecr.eu-west-1.amazonaws.com".into(),
            repo: "orders/web".into(),
            digest: Digest::sha256_of(b"gone"),
        });
        let text = e.to_string();
        assert!(
            text.contains("is not in the source registry 222222222222"),
            "{text}"
        );
        assert!(text.contains("push it again by digest"), "{text}");
        assert_eq!(e.error_type(), "SourceImageNotFound");
    }
}
