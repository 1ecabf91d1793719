//! Why the promote action fails: each variant's message is what the operator reads in the
//! pipeline (PutJobFailureResult), so it says what happened, where, and what to do.

use shipgate::aws::sts::AssumeRoleError;
use shipgate::error::{AwsError, code_and_message};
use shipgate::job::release::{ReleaseError, TableError};
use shipgate::job::{ActionError, JobFailureKind};
use shipgate::registry::{CopyError, DigestError, RegistryError};

/// A failure of the promote action.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error("image {image} of the release has digest {digest:?}, which is not usable: {source}")]
    InvalidDigest {
        image: String,
        digest: String,
        #[source]
        source: DigestError,
    },
    #[error("{environment}: {source}")]
    AssumeRole {
        environment: String,
        #[source]
        source: AssumeRoleError,
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
    #[error(transparent)]
    Store(#[from] TableError),
}

shipgate::from_store_error!(PromoteError);

impl ActionError for PromoteError {
    /// A stable name for logs and metrics.
    fn error_type(&self) -> &'static str {
        match self {
            PromoteError::Release(e) => e.error_type(),
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
        }
    }

    /// Throttling, timeouts and 5xx: the next invocation may succeed, so the action tries
    /// again (within its bound) instead of failing.
    fn is_retryable(&self) -> bool {
        match self {
            PromoteError::AssumeRole { source, .. } => source.is_retryable(),
            PromoteError::Repository { source, .. } => source.retryable,
            PromoteError::Registry { source, .. } => source.is_retryable(),
            PromoteError::Copy { source, .. } => source.is_retryable(),
            PromoteError::Store(e) => e.is_retryable(),
            PromoteError::Release(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// How CodePipeline classifies the failure.
    fn failure_kind(&self) -> JobFailureKind {
        match self {
            PromoteError::AssumeRole { source, .. } if source.is_access_denied() => {
                JobFailureKind::PermissionError
            }
            PromoteError::Repository { source, .. } if source.is_access_denied() => {
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
    if e.is_access_denied() {
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
