//! Releases as the pipeline's actions find them after intake: ids no other test uses, the
//! record intake wrote when it started the execution (`started`, with the validated manifest),
//! and the release zip where the source action puts its output artifact.

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use serde_json::Value;
use shipgate::aws::s3::ObjectVersion;
use shipgate::release::{Limits, inspect_release};
use shipgate::store::{ReleaseRecord, ReleaseState, Store};

use crate::support::put;

/// When the tests' releases were received (intake's claim time).
const RECEIVED_AT: &str = "2026-11-26T10:00:00Z";

/// A release in a pipeline execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRelease {
    pub release_id: String,
    pub execution_id: String,
    /// Where the source action put the release zip in the artifact bucket.
    pub artifact_key: String,
}

impl Default for PipelineRelease {
    fn default() -> Self {
        Self::new()
    }
}

impl PipelineRelease {
    /// A release and an execution of their own.
    pub fn new() -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        Self {
            release_id: format!("rel-{}", &unique[..20]),
            execution_id: uuid::Uuid::new_v4().to_string(),
            artifact_key: format!("shipgate-pipeline/Release/{}", &unique[..7]),
        }
    }

    /// Records the release as intake does once it started the execution: `started`, with the
    /// validated `manifest` (and the digest of its bytes, when known), dropped into `bucket`.
    pub async fn record_started(
        &self,
        store: &Store,
        bucket: &str,
        manifest: &Value,
        manifest_sha256: Option<String>,
    ) -> Result<()> {
        let mut record = ReleaseRecord::received(
            self.release_id.clone(),
            ObjectVersion {
                bucket: bucket.to_owned(),
                key: format!("incoming/{}.zip", self.release_id),
                version_id: Some("1".into()),
            },
            RECEIVED_AT.into(),
        );
        record.state = ReleaseState::Started;
        record.application = manifest["application"].as_str().map(str::to_owned);
        record.version = manifest["version"].as_str().map(str::to_owned);
        record.manifest_sha256 = manifest_sha256;
        // Intake records where the release goes in its application's chain: a manifest that
        // lists no environments goes through the whole of the local stack's (int → stg → prod).
        let mut manifest = manifest.clone();
        if manifest["environments"]
            .as_array()
            .is_none_or(|listed| listed.is_empty())
        {
            manifest["environments"] = serde_json::json!(["int", "stg", "prod"]);
        }
        record.manifest = Some(manifest);
        record.execution_id = Some(self.execution_id.clone());
        let received = time::OffsetDateTime::parse(
            RECEIVED_AT,
            &time::format_description::well_known::Rfc3339,
        )?;
        store
            .claim_release(&record, received.unix_timestamp())
            .await
            .with_context(|| format!("recording {}", self.release_id))?;
        Ok(())
    }
}

/// A release intake validated from the zip `validated`, recorded as intake records it, whose
/// execution's source artifact is `artifact` (the same zip, unless a test swaps it).
pub async fn validated_release(
    store: &Store,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    validated: &[u8],
    artifact: &[u8],
) -> Result<PipelineRelease> {
    let inspection = inspect_release(&Bytes::copy_from_slice(validated), &Limits::default()).await;
    ensure!(inspection.is_acceptable(), "{:#?}", inspection.problems);
    let manifest = inspection.manifest.context("a manifest")?;
    let release = PipelineRelease::new();
    put(s3, bucket, &release.artifact_key, artifact.to_vec()).await?;
    release
        .record_started(
            store,
            bucket,
            &serde_json::to_value(&manifest)?,
            inspection.manifest_sha256.clone(),
        )
        .await?;
    Ok(release)
}
