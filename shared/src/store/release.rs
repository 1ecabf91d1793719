//! Release records: one per dropped object version, created by a conditional write.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};

use super::{GSI1, Store, StoreError};
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
        }
    }
}

/// The outcome of claiming a release.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This invocation owns the release now (new, or taken over from an expired lease).
    Owned(ReleaseRecord),
    /// Another delivery got there first; here is where it stands.
    Existing(ReleaseRecord),
}

fn pk(release_id: &str) -> String {
    super::release_pk(release_id)
}
const RELEASE_SK: &str = "RELEASE";
const RELEASES_LIST: &str = "RELEASES";

#[derive(Serialize, Deserialize)]
struct Item {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    #[serde(flatten)]
    record: ReleaseRecord,
}

impl Store {
    /// Creates the release, or takes over one still in flight whose lease has expired (a
    /// crashed invocation) or is held by this same invocation (Lambda's retry of an async
    /// invocation keeps its request id); otherwise returns the existing record. `now` is epoch
    /// seconds.
    pub async fn claim_release(
        &self,
        record: &ReleaseRecord,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let attrs = item(record)?;
        let put = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attrs))
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
        match put {
            Ok(_) => Ok(Claim::Owned(record.clone())),
            Err(e) => {
                let err = aws_err("DynamoDB", "PutItem")(e);
                if err.is_code("ConditionalCheckFailedException") {
                    let existing = self
                        .get_release(&record.release_id)
                        .await?
                        .ok_or_else(|| StoreError::NotFound(record.release_id.clone()))?;
                    Ok(Claim::Existing(existing))
                } else {
                    Err(err.into())
                }
            }
        }
    }

    /// Writes the record's new state, only while `owner` still holds the claim (a takeover by a
    /// later delivery makes a late writer fail rather than overwrite).
    pub async fn update_release(
        &self,
        record: &ReleaseRecord,
        owner: &str,
    ) -> Result<(), StoreError> {
        let attrs = item(record)?;
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attrs))
            .condition_expression("lease_owner = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .return_values(ReturnValue::None)
            .send()
            .await
            .map_err(aws_err("DynamoDB", "PutItem"))?;
        Ok(())
    }

    /// A release by id (strongly consistent).
    pub async fn get_release(&self, release_id: &str) -> Result<Option<ReleaseRecord>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk(release_id)))
            .key("sk", AttributeValue::S(RELEASE_SK.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws_err("DynamoDB", "GetItem"))?;
        out.item.map(decode).transpose()
    }

    /// The newest releases first, at most `limit`.
    pub async fn list_releases(&self, limit: i32) -> Result<Vec<ReleaseRecord>, StoreError> {
        let out = self
            .ddb
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("gsi1pk = :list")
            .expression_attribute_values(":list", AttributeValue::S(RELEASES_LIST.into()))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(aws_err("DynamoDB", "Query"))?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(decode)
            .collect()
    }
}

/// The release as a table item, with its keys and its place in the releases listing.
fn item(record: &ReleaseRecord) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let item = Item {
        pk: pk(&record.release_id),
        sk: RELEASE_SK.into(),
        gsi1pk: RELEASES_LIST.into(),
        gsi1sk: format!("{}#{}", record.received_at, record.release_id),
        record: record.clone(),
    };
    serde_dynamo::to_item(&item).map_err(|source| StoreError::Shape {
        pk: item.pk.clone(),
        sk: item.sk.clone(),
        source,
    })
}

fn decode(item: HashMap<String, AttributeValue>) -> Result<ReleaseRecord, StoreError> {
    let (pk, sk) = super::keys_of(&item);
    serde_dynamo::from_item::<_, Item>(item)
        .map(|i| i.record)
        .map_err(|source| StoreError::Shape { pk, sk, source })
}
