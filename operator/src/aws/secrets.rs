//! Secrets Manager: whether a secret is there to be read, without reading its value
//! (`DescribeSecret`: the operator needs no access to the link-signing key itself).

use aws_sdk_secretsmanager::Client;

use super::{CallFailure, absent_if};

/// What `DescribeSecret` says of a secret.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretState {
    pub arn: String,
    /// Scheduled for deletion (`DeletedDate` set): reads fail until it is restored.
    pub deleted: bool,
    /// A version holds the `AWSCURRENT` stage: what the functions read.
    pub has_current: bool,
}

/// The secret `id` (name or ARN); `Ok(None)` when Secrets Manager has no such secret.
pub async fn describe(client: &Client, id: &str) -> Result<Option<SecretState>, CallFailure> {
    match client.describe_secret().secret_id(id).send().await {
        Ok(out) => Ok(Some(SecretState {
            arn: out.arn().unwrap_or(id).to_owned(),
            deleted: out.deleted_date().is_some(),
            has_current: out
                .version_ids_to_stages()
                .into_iter()
                .flatten()
                .any(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT")),
        })),
        Err(e) => absent_if(&e, "ResourceNotFoundException"),
    }
}
