//! The release a pipeline action works on: the job's one input artifact (the zip the source
//! action produced), read again over ranged S3 reads, validated again as intake did, and held
//! to what intake recorded (same manifest digest). An action never trusts an artifact just
//! because the pipeline handed it over: it could have been replaced after intake accepted it.

use aws_sdk_s3::Client;

use super::Job;
use crate::aws::s3::{ObjectVersion, S3RangeSource, head_object};
use crate::config::{ConfigError, Env};
use crate::error::{AwsError, code_and_message};
use crate::release::{Inspection, Limits, SourceError, inspect_release};
use crate::store::{ReleaseRecord, Store};

/// What an action that reads the release artifact again needs besides its clients.
#[derive(Debug, Clone)]
pub struct ArtifactConfig {
    /// `SHIPGATE_TABLE`: the release table (the artifact must be the release intake recorded).
    pub table: String,
    /// `SHIPGATE_S3_FORCE_PATH_STYLE` (default false).
    pub s3_force_path_style: bool,
    /// Limits the release artifact is re-validated against (`SHIPGATE_MAX_*`, as intake).
    pub limits: Limits,
}

impl ArtifactConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.required("SHIPGATE_TABLE")?,
            s3_force_path_style: env.parsed_or("SHIPGATE_S3_FORCE_PATH_STYLE", false)?,
            limits: Limits::from_env(env)?,
        })
    }

    /// The S3 client the artifact is read with and the release table, from one SDK
    /// configuration.
    pub fn clients(&self, sdk: &aws_config::SdkConfig) -> (Client, Store) {
        (
            crate::aws::s3_client(sdk, self.s3_force_path_style),
            Store::new(aws_sdk_dynamodb::Client::new(sdk), self.table.clone()),
        )
    }
}

/// The release artifact cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
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
        "the release artifact s3://{bucket}/{key} does not exist: the pipeline lost its input; \
         start a new execution of the release"
    )]
    Missing { bucket: String, key: String },
    #[error(
        "could not read the release artifact s3://{bucket}/{key}: {} {} failed: {}: check the \
         function's access to the artifact bucket",
        .source.service,
        .source.operation,
        code_and_message(.source)
    )]
    Aws {
        bucket: String,
        key: String,
        source: Box<AwsError>,
    },
    #[error("could not read the release artifact s3://{bucket}/{key}: {detail}")]
    Read {
        bucket: String,
        key: String,
        detail: String,
        retryable: bool,
        source: SourceError,
    },
    #[error(
        "the release artifact is refused, it has {count} problem(s): {summary}; only a release \
         intake accepted is worked on"
    )]
    Problems { count: usize, summary: String },
    #[error(
        "release {release_id} has no recorded manifest digest: intake never accepted it, so \
         nothing is done with it"
    )]
    NotValidated { release_id: String },
    #[error(
        "the release artifact is not the release intake validated: its release.json has SHA-256 \
         {found}, release {release_id} was recorded with {recorded}; the artifact changed after \
         intake, so nothing is done with it: drop the release again"
    )]
    ManifestMismatch {
        release_id: String,
        found: String,
        recorded: String,
    },
}

impl ArtifactError {
    pub fn error_type(&self) -> &'static str {
        match self {
            ArtifactError::NoInputArtifact | ArtifactError::SeveralInputArtifacts(_) => {
                "InvalidInputArtifacts"
            }
            ArtifactError::Missing { .. } => "ArtifactMissing",
            ArtifactError::Aws { .. } | ArtifactError::Read { .. } => "ArtifactUnreadable",
            ArtifactError::Problems { .. } => "ArtifactInvalid",
            ArtifactError::NotValidated { .. } => "ReleaseNotValidated",
            ArtifactError::ManifestMismatch { .. } => "ArtifactTampered",
        }
    }

    /// S3 throttled or failed for a moment: the next invocation may read it.
    pub fn is_retryable(&self) -> bool {
        match self {
            ArtifactError::Aws { source, .. } => source.retryable,
            ArtifactError::Read { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The pipeline is wired wrongly (configuration), or S3 refused the function.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            ArtifactError::NoInputArtifact | ArtifactError::SeveralInputArtifacts(_)
        )
    }

    pub fn is_access_denied(&self) -> bool {
        matches!(self, ArtifactError::Aws { source, .. } if source.is_access_denied())
    }
}

/// The job's one input artifact: the release.
pub fn release_artifact(job: &Job) -> Result<ObjectVersion, ArtifactError> {
    let mut artifacts = job.input_artifacts.iter();
    match (artifacts.next(), artifacts.next()) {
        (Some((_, object)), None) => Ok(object.clone()),
        (None, _) => Err(ArtifactError::NoInputArtifact),
        (Some(_), Some(_)) => Err(ArtifactError::SeveralInputArtifacts(
            job.input_artifacts.keys().cloned().collect(),
        )),
    }
}

/// Reads and validates the artifact as intake did (over ranged GETs: never the whole zip in
/// memory).
pub async fn inspect_artifact(
    s3: &Client,
    artifact: &ObjectVersion,
    limits: &Limits,
) -> Result<Inspection, ArtifactError> {
    let facts = head_object(s3, artifact)
        .await
        .map_err(|source| ArtifactError::Aws {
            bucket: artifact.bucket.clone(),
            key: artifact.key.clone(),
            source: Box::new(source),
        })?
        .ok_or_else(|| ArtifactError::Missing {
            bucket: artifact.bucket.clone(),
            key: artifact.key.clone(),
        })?;
    let source = S3RangeSource::new(s3.clone(), artifact.clone(), facts.size);
    let mut inspection = inspect_release(&source, limits).await;
    if let Some(error) = inspection.read_error.take() {
        let (detail, retryable) = read_failure(&error);
        return Err(ArtifactError::Read {
            bucket: artifact.bucket.clone(),
            key: artifact.key.clone(),
            detail,
            retryable,
            source: error,
        });
    }
    Ok(inspection)
}

/// What went wrong reading the artifact, and whether another try may help.
pub fn read_failure(error: &SourceError) -> (String, bool) {
    let aws = std::error::Error::source(error).and_then(|s| s.downcast_ref::<AwsError>());
    match aws {
        Some(e) => (e.to_string(), e.retryable),
        None => (
            error.to_string(),
            !matches!(error, SourceError::OutOfRange { .. }),
        ),
    }
}

/// The inspection is the release intake accepted: no problem, and the manifest intake recorded.
pub fn verify_recorded(
    record: &ReleaseRecord,
    inspection: &Inspection,
) -> Result<(), ArtifactError> {
    if !inspection.problems.is_empty() {
        let summary: Vec<String> = inspection
            .problems
            .iter()
            .take(3)
            .map(|p| format!("{}: {}", p.code.as_str(), p.message))
            .collect();
        return Err(ArtifactError::Problems {
            count: inspection.problems.len(),
            summary: summary.join("; "),
        });
    }
    let recorded = record
        .manifest_sha256
        .clone()
        .ok_or_else(|| ArtifactError::NotValidated {
            release_id: record.release_id.clone(),
        })?;
    let found = inspection.manifest_sha256.clone().unwrap_or_default();
    if found != recorded {
        return Err(ArtifactError::ManifestMismatch {
            release_id: record.release_id.clone(),
            found,
            recorded,
        });
    }
    Ok(())
}

/// The job's release, read and held to `record`.
pub async fn read_release(
    s3: &Client,
    job: &Job,
    record: &ReleaseRecord,
    limits: &Limits,
) -> Result<Inspection, ArtifactError> {
    let artifact = release_artifact(job)?;
    let inspection = inspect_artifact(s3, &artifact, limits).await?;
    verify_recorded(record, &inspection)?;
    Ok(inspection)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::release::{Problem, ProblemCode};
    use crate::store::ReleaseState;
    use crate::testing::aws_error;

    const MANIFEST_SHA: &str = "5f0c1d7e2b9a4c3d8e6f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";

    fn record() -> ReleaseRecord {
        let mut record = crate::testing::received_release("rel-1", "artifacts");
        record.state = ReleaseState::Started;
        record.manifest_sha256 = Some(MANIFEST_SHA.into());
        record
    }

    fn inspection() -> Inspection {
        Inspection {
            manifest_sha256: Some(MANIFEST_SHA.into()),
            ..Inspection::default()
        }
    }

    #[test]
    fn only_the_release_intake_recorded_is_accepted() {
        assert!(verify_recorded(&record(), &inspection()).is_ok());

        let mut tampered = inspection();
        tampered.manifest_sha256 = Some("0".repeat(64));
        let err = verify_recorded(&record(), &tampered).unwrap_err();
        assert_eq!(err.error_type(), "ArtifactTampered");
        let message = err.to_string();
        assert!(
            message.contains("not the release intake validated"),
            "{message}"
        );
        assert!(message.contains(MANIFEST_SHA), "{message}");

        let mut unvalidated = record();
        unvalidated.manifest_sha256 = None;
        assert!(matches!(
            verify_recorded(&unvalidated, &inspection()),
            Err(ArtifactError::NotValidated { .. })
        ));
    }

    #[test]
    fn an_artifact_with_problems_is_refused_listing_them() {
        let mut broken = inspection();
        broken.problems = vec![Problem {
            code: ProblemCode::PathTraversal,
            message: "entry ../x escapes the archive".into(),
            path: Some("../x".into()),
        }];
        let err = verify_recorded(&record(), &broken).unwrap_err();
        assert_eq!(err.error_type(), "ArtifactInvalid");
        assert!(
            err.to_string()
                .contains("path_traversal: entry ../x escapes the archive"),
            "{err}"
        );
    }

    #[test]
    fn the_job_takes_exactly_one_input_artifact() {
        let object = |key: &str| ObjectVersion {
            bucket: "artifacts".into(),
            key: key.into(),
            version_id: None,
        };
        let mut job: Job = Job::from_event(
            serde_json::from_str(include_str!("../../tests/fixtures/codepipeline-job.json"))
                .expect("AWS sample event"),
        )
        .expect("a job");
        assert_eq!(
            release_artifact(&job).expect("one").key,
            "the name of the application, for example CodePipelineDemoApplication.zip"
        );
        job.input_artifacts = BTreeMap::new();
        let none = release_artifact(&job).unwrap_err();
        assert!(matches!(none, ArtifactError::NoInputArtifact));
        assert!(none.is_configuration());
        job.input_artifacts = BTreeMap::from([
            ("Release".to_owned(), object("a.zip")),
            ("Other".to_owned(), object("b.zip")),
        ]);
        assert_eq!(
            release_artifact(&job).unwrap_err().to_string(),
            "the job has 2 input artifacts (Other, Release): the action takes one, the release"
        );
    }

    #[test]
    fn a_failed_s3_read_is_retried_unless_s3_refused_for_good() {
        let get_object_failed = |code, message, retryable| {
            SourceError::other(aws_error("S3", "GetObject", code, message, retryable))
        };
        let throttled = get_object_failed("SlowDown", "Please reduce your request rate.", true);
        assert_eq!(
            read_failure(&throttled),
            (
                "S3 GetObject failed: Please reduce your request rate.".to_owned(),
                true
            )
        );
        let denied = get_object_failed("AccessDenied", "Access Denied", false);
        assert!(!read_failure(&denied).1);
    }
}
