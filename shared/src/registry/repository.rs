//! ECR repositories as image promotion needs them: a repository's settings, and the target
//! repository created with the source repository's settings when it does not exist yet.
//!
//! ECR replication is criticised for creating target repositories with default settings: tag
//! immutability and scan-on-push are lost on the way. Promotion mirrors them instead (and the
//! encryption type; a KMS key belongs to its account, so a KMS-encrypted source gives a target
//! encrypted with that account's AWS-managed ECR key). An existing target repository is never
//! changed: its own settings decide, tag immutability included.

use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability,
};
use serde::{Deserialize, Serialize};

use crate::error::{AwsError, aws_err};

/// The settings of a repository that promotion carries over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositorySettings {
    /// ECR's `imageTagMutability`: `MUTABLE`, `IMMUTABLE`, or their `_WITH_EXCLUSION` forms.
    pub tag_mutability: String,
    pub scan_on_push: bool,
    /// ECR's `encryptionType`: `AES256`, `KMS` or `KMS_DSSE`.
    pub encryption: String,
}

impl RepositorySettings {
    /// What ECR gives a repository created without settings.
    pub fn ecr_defaults() -> Self {
        Self {
            tag_mutability: "MUTABLE".into(),
            scan_on_push: false,
            encryption: "AES256".into(),
        }
    }

    /// Whether a tag, once pushed, may not be moved. `IMMUTABLE_WITH_EXCLUSION` counts as
    /// immutable: its exclusion filters are not known here, and ECR itself refuses what it must.
    pub fn immutable_tags(&self) -> bool {
        self.tag_mutability.starts_with("IMMUTABLE")
    }
}

/// The repository images are promoted into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRepository {
    pub name: String,
    pub settings: RepositorySettings,
    /// Created by this promotion (with the source's settings), rather than found.
    pub created: bool,
}

/// The settings of repository `name` in the account of `ecr`'s credentials, `None` if it does
/// not exist.
pub async fn describe_repository(
    ecr: &aws_sdk_ecr::Client,
    name: &str,
) -> Result<Option<RepositorySettings>, AwsError> {
    let out = ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
        .map_err(aws_err("ECR", "DescribeRepositories"));
    let out = match out {
        Ok(out) => out,
        Err(e) if e.is_code("RepositoryNotFoundException") => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(out
        .repositories()
        .iter()
        .find(|r| r.repository_name() == Some(name))
        .map(|r| RepositorySettings {
            tag_mutability: r
                .image_tag_mutability()
                .map_or("MUTABLE", ImageTagMutability::as_str)
                .to_owned(),
            scan_on_push: r
                .image_scanning_configuration()
                .is_some_and(ImageScanningConfiguration::scan_on_push),
            encryption: r
                .encryption_configuration()
                .map_or("AES256", |e| e.encryption_type().as_str())
                .to_owned(),
        }))
}

/// Repository `name` as it is, or created with `template`'s settings if it does not exist (a
/// concurrent creation is found, not an error).
pub async fn ensure_repository(
    ecr: &aws_sdk_ecr::Client,
    name: &str,
    template: &RepositorySettings,
) -> Result<TargetRepository, AwsError> {
    if let Some(settings) = describe_repository(ecr, name).await? {
        return Ok(TargetRepository {
            name: name.to_owned(),
            settings,
            created: false,
        });
    }
    // `*_WITH_EXCLUSION` needs the exclusion filters, which are not carried: the base setting.
    let mutability = template
        .tag_mutability
        .strip_suffix("_WITH_EXCLUSION")
        .unwrap_or(&template.tag_mutability);
    let encryption = EncryptionConfiguration::builder()
        .encryption_type(EncryptionType::from(template.encryption.as_str()))
        .build()
        .map_err(|e| AwsError {
            service: "ECR",
            operation: "CreateRepository",
            code: None,
            message: e.to_string(),
            retryable: false,
            source: Box::new(e),
        })?;
    let created = ecr
        .create_repository()
        .repository_name(name)
        .image_tag_mutability(ImageTagMutability::from(mutability))
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(template.scan_on_push)
                .build(),
        )
        .encryption_configuration(encryption)
        .send()
        .await
        .map_err(aws_err("ECR", "CreateRepository"));
    match created {
        Ok(_) => {}
        Err(e) if e.is_code("RepositoryAlreadyExistsException") => {
            if let Some(settings) = describe_repository(ecr, name).await? {
                return Ok(TargetRepository {
                    name: name.to_owned(),
                    settings,
                    created: false,
                });
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    }
    // What ECR recorded, not what was asked.
    let settings = describe_repository(ecr, name)
        .await?
        .unwrap_or(RepositorySettings {
            tag_mutability: mutability.to_owned(),
            ..template.clone()
        });
    Ok(TargetRepository {
        name: name.to_owned(),
        settings,
        created: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immutability_reads_every_immutable_form() {
        let mut s = RepositorySettings::ecr_defaults();
        assert!(!s.immutable_tags());
        for (mutability, immutable) in [
            ("IMMUTABLE", true),
            ("IMMUTABLE_WITH_EXCLUSION", true),
            ("MUTABLE_WITH_EXCLUSION", false),
            ("MUTABLE", false),
        ] {
            s.tag_mutability = mutability.into();
            assert_eq!(s.immutable_tags(), immutable, "{mutability}");
        }
    }
}
