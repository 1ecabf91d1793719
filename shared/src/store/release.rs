//! Release records: one per dropped object version, created by a conditional write.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};

use super::{Keys, Store, StoreError, condition_held, release_pk, to_item};
use crate::aws::s3::ObjectVersion;
use crate::error::aws_err;

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    /// Claimed by an intake invocation that is validating it (see `lease_expires_at`).
    Validating,
    /// Valid; its pipeline execution is being started.
    Accepted,
    /// Its pipeline execution is running (`execution_id`).
    Started,
    /// Refused: `problems` says why; the drop was moved to `rejected_key`.
    Rejected,
}

impl ReleaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Validating => "validating",
            ReleaseState::Accepted => "accepted",
            ReleaseState::Started => "started",
            ReleaseState::Rejected => "rejected",
        }
    }
}

/// A release as the table holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub release_id: String,
    pub state: ReleaseState,
    /// The dropped object version this release is.
    pub source: ObjectVersion,
    pub size: u64,
    pub etag: Option<String>,
    /// Who uploaded it, as S3 reported (the principal id).
    pub uploaded_by: Option<String>,
    /// RFC 3339.
    pub received_at: String,
    pub updated_at: String,
    pub application: Option<String>,
    pub version: Option<String>,
    pub message: Option<String>,
    pub integrator_email: Option<String>,
    pub manifest_sha256: Option<String>,
    /// The validated manifest as JSON, for the functions after intake.
    pub manifest: Option<serde_json::Value>,
    /// The validated copy the pipeline's source action reads.
    pub accepted_object: Option<ObjectVersion>,
    pub pipeline: Option<String>,
    pub execution_id: Option<String>,
    /// For rejected drops: the problems (as in the report) and where the drop was moved.
    pub problems: Option<serde_json::Value>,
    pub rejected_key: Option<String>,
    pub report_key: Option<String>,
    /// The intake invocation holding the claim, and until when (epoch seconds).
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    /// How many deliveries of the drop have claimed it so far (1 for the first): the last one
    /// Lambda makes decides, whatever fails.
    #[serde(default)]
    pub attempts: u32,
}

impl ReleaseRecord {
    /// A release just received: validating, everything else still unknown.
    pub fn received(release_id: String, source: ObjectVersion, received_at: String) -> Self {
        Self {
            release_id,
            state: ReleaseState::Validating,
            source,
            size: 0,
            etag: None,
            uploaded_by: None,
            updated_at: received_at.clone(),
            received_at,
            application: None,
            version: None,
            message: None,
            integrator_email: None,
            manifest_sha256: None,
            manifest: None,
            accepted_object: None,
            pipeline: None,
            execution_id: None,
            problems: None,
            rejected_key: None,
            report_key: None,
            lease_owner: None,
            lease_expires_at: None,
            attempts: 0,
        }
    }
}

/// The one release an application's version is: written when a release is accepted, so that a
/// version is released once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub application: String,
    pub version: String,
    pub release_id: String,
    /// What identifies the release's contents ([`crate::release::Inspection::content_sha256`]).
    pub content_sha256: String,
    /// RFC 3339.
    pub claimed_at: String,
}

/// The newest upload of an application that intake started: a drop uploaded before it is never
/// started (S3 delivers notifications out of order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestUpload {
    pub application: String,
    pub release_id: String,
    /// The object's key, and its `LastModified` (epoch seconds) as S3 records it.
    pub key: String,
    pub uploaded_at: i64,
    /// The S3 event's `sequencer` for that object, which orders uploads of one key.
    pub sequencer: Option<String>,
}

impl LatestUpload {
    /// Whether `self` was uploaded before `other`: for one key by the events' sequencers when
    /// both have one (S3 User Guide, "Event message structure": of two events for the same
    /// key, the greater hexadecimal sequencer is the later), otherwise by `LastModified`.
    /// Uploads in the same second under different keys cannot be told apart: neither is before
    /// the other.
    pub fn is_before(&self, other: &LatestUpload) -> bool {
        if self.key == other.key
            && let (Some(mine), Some(theirs)) = (&self.sequencer, &other.sequencer)
        {
            return hex_order(mine, theirs) == std::cmp::Ordering::Less;
        }
        self.uploaded_at < other.uploaded_at
    }
}

/// Two hexadecimal strings compared by value (leading zeros do not count), case-insensitively.
fn hex_order(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.trim_start_matches('0').to_ascii_uppercase();
    let b = b.trim_start_matches('0').to_ascii_uppercase();
    a.len().cmp(&b.len()).then_with(|| a.cmp(&b))
}

/// The outcome of claiming an application's version for a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionClaim {
    /// The version is this release's (new, or claimed before by this same release).
    Claimed,
    /// An earlier release with the same contents has it: the drop repeats that release.
    Same(VersionRecord),
    /// An earlier release with other contents has it.
    Conflict(VersionRecord),
}

/// The outcome of claiming a release.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This invocation owns the release now (new, or taken over from an expired lease).
    Owned(ReleaseRecord),
    /// Another delivery got there first; here is where it stands.
    Existing(ReleaseRecord),
}

const RELEASE_SK: &str = "RELEASE";
const RELEASES_LIST: &str = "RELEASES";
const VERSION_SK: &str = "VERSION";
const LATEST_UPLOAD_SK: &str = "LATEST_UPLOAD";

fn application_pk(application: &str) -> String {
    format!("APPLICATION#{application}")
}

/// Where an application's version is recorded (`\u{1f}` cannot appear in either: the manifest
/// refuses control characters).
fn version_pk(application: &str, version: &str) -> String {
    format!("VERSION#{application}\u{1f}{version}")
}

impl Store {
    /// Creates the release, or takes over one still in flight whose lease has expired (a
    /// crashed invocation) or is held by this same invocation (Lambda's retry of an async
    /// invocation keeps its request id); otherwise returns the existing record. `now` is epoch
    /// seconds.
    /// The claim counts the deliveries (`attempts`): it is one more than the record it takes
    /// over, 1 for a new one.
    pub async fn claim_release(
        &self,
        record: &ReleaseRecord,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let previous = self.get_release(&record.release_id).await?;
        let record = &ReleaseRecord {
            attempts: previous.as_ref().map_or(0, |p| p.attempts) + 1,
            ..record.clone()
        };
        let put = self
            .put(to_item(release_keys(record), record)?)
            .condition_expression(
                "attribute_not_exists(pk) OR (#state IN (:validating, :accepted) AND (lease_expires_at < :now OR lease_owner = :owner))",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":validating", AttributeValue::S("validating".into()))
            .expression_attribute_values(":accepted", AttributeValue::S("accepted".into()))
            .expression_attribute_values(
                ":owner",
                AttributeValue::S(record.lease_owner.clone().unwrap_or_default()),
            )
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        if condition_held("PutItem", put)?.is_some() {
            return Ok(Claim::Owned(record.clone()));
        }
        let existing = self
            .get_release(&record.release_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(record.release_id.clone()))?;
        Ok(Claim::Existing(existing))
    }

    /// Writes the record's new state, only while `owner` still holds the claim (a takeover by a
    /// later delivery makes a late writer fail rather than overwrite).
    pub async fn update_release(
        &self,
        record: &ReleaseRecord,
        owner: &str,
    ) -> Result<(), StoreError> {
        self.put(to_item(release_keys(record), record)?)
            .condition_expression("lease_owner = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .return_values(ReturnValue::None)
            .send()
            .await
            .map_err(aws_err("DynamoDB", "PutItem"))?;
        Ok(())
    }

    /// Claims `version.application` `version.version` for `version.release_id`, once: the
    /// same release claiming it again (a retried delivery) gets it again; another release gets
    /// the record that holds it, as [`VersionClaim::Same`] when its contents are the same.
    pub async fn claim_version(&self, version: &VersionRecord) -> Result<VersionClaim, StoreError> {
        let pk = version_pk(&version.application, &version.version);
        let put = self
            .put(to_item(Keys::new(pk.clone(), VERSION_SK), version)?)
            .condition_expression("attribute_not_exists(pk) OR release_id = :release")
            .expression_attribute_values(":release", AttributeValue::S(version.release_id.clone()))
            .send()
            .await;
        if condition_held("PutItem", put)?.is_some() {
            return Ok(VersionClaim::Claimed);
        }
        let holder: VersionRecord = self
            .get_record(pk.clone(), VERSION_SK)
            .await?
            .ok_or(StoreError::NotFound(pk))?;
        Ok(if holder.content_sha256 == version.content_sha256 {
            VersionClaim::Same(holder)
        } else {
            VersionClaim::Conflict(holder)
        })
    }

    /// The newest upload of `application` that intake started, if any.
    pub async fn latest_upload(
        &self,
        application: &str,
    ) -> Result<Option<LatestUpload>, StoreError> {
        self.get_record(application_pk(application), LATEST_UPLOAD_SK)
            .await
    }

    /// Records `upload` as its application's newest started upload unless one uploaded after
    /// it was recorded meanwhile: `Ok(None)` when it was recorded, else the newer one. A
    /// compare-and-set on the record read, tried again when another release wrote in between.
    pub async fn record_latest_upload(
        &self,
        upload: &LatestUpload,
    ) -> Result<Option<LatestUpload>, StoreError> {
        const TRIES: usize = 5;
        for _ in 0..TRIES {
            let current = self.latest_upload(&upload.application).await?;
            if let Some(current) = &current
                && current.release_id != upload.release_id
                && upload.is_before(current)
            {
                return Ok(Some(current.clone()));
            }
            let put = self.put(to_item(
                Keys::new(application_pk(&upload.application), LATEST_UPLOAD_SK),
                upload,
            )?);
            let put = match &current {
                Some(current) => put
                    .condition_expression("release_id = :seen")
                    .expression_attribute_values(
                        ":seen",
                        AttributeValue::S(current.release_id.clone()),
                    ),
                None => put.condition_expression("attribute_not_exists(pk)"),
            };
            if condition_held("PutItem", put.send().await)?.is_some() {
                return Ok(None);
            }
        }
        Err(StoreError::Contended {
            what: format!("the latest upload of {}", upload.application),
            tries: TRIES,
        })
    }

    /// A release by id (strongly consistent).
    pub async fn get_release(&self, release_id: &str) -> Result<Option<ReleaseRecord>, StoreError> {
        self.get_record(release_pk(release_id), RELEASE_SK).await
    }

    /// The newest releases first, at most `limit`.
    pub async fn list_releases(&self, limit: i32) -> Result<Vec<ReleaseRecord>, StoreError> {
        self.list_records(RELEASES_LIST, true, Some(limit)).await
    }
}

/// Where a release is stored: its own partition, listed among all releases by reception time.
fn release_keys(record: &ReleaseRecord) -> Keys {
    Keys::new(release_pk(&record.release_id), RELEASE_SK).listed(
        RELEASES_LIST,
        format!("{}#{}", record.received_at, record.release_id),
    )
}

#[cfg(test)]
mod order_tests {
    use super::*;

    fn upload(key: &str, at: i64, sequencer: Option<&str>) -> LatestUpload {
        LatestUpload {
            application: "orders".into(),
            release_id: format!("rel-{key}-{at}"),
            key: key.into(),
            uploaded_at: at,
            sequencer: sequencer.map(str::to_owned),
        }
    }

    #[test]
    fn one_key_is_ordered_by_sequencer_and_keys_by_upload_time() {
        // The same second, one key: the sequencer decides, by value.
        let older = upload("incoming/o.zip", 100, Some("0055AED6DCD90281E5"));
        let newer = upload("incoming/o.zip", 100, Some("0055AED6DCD90281E6"));
        assert!(older.is_before(&newer) && !newer.is_before(&older));
        let longer = upload("incoming/o.zip", 100, Some("0155AED6DCD90281E5"));
        assert!(newer.is_before(&longer));
        let padded = upload("incoming/o.zip", 100, Some("000055aed6dcd90281e6"));
        assert!(!newer.is_before(&padded) && !padded.is_before(&newer));
        // Across keys: S3's LastModified; the same second orders neither.
        let other = upload("incoming/p.zip", 101, Some("00"));
        assert!(newer.is_before(&other) && !other.is_before(&newer));
        let same_second = upload("incoming/p.zip", 100, None);
        assert!(!newer.is_before(&same_second) && !same_second.is_before(&newer));
    }
}
