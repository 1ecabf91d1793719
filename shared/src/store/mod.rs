//! The DynamoDB store: one table for everything shipgate remembers (single-table design).
//!
//! Keys are `pk`/`sk` strings; the `gsi1` index (`gsi1pk`/`gsi1sk`) serves the listings that
//! must not scan; `expires_at` (epoch seconds) is the table's TTL attribute. A release item is
//! also the intake's idempotency claim: it is created by a conditional write, so one object
//! version is one release however many times S3 delivers its event.

mod changes;
mod deployment;
mod gate;
mod green;
mod promotion;
mod release;

pub use changes::{ChangeSetOutcome, StackChanges};
pub use deployment::{
    AppliedDrainStep, AppliedStep, Deployment, DeploymentCreation, DeploymentState, Drain,
    DrainStep, EcsTaskSets, Lease, LeaseIntent, Rollback, SaveError, TrafficTarget,
};
pub use gate::{
    ApprovalToken, Decision, DecisionClaim, Gate, GateOpening, GateState, IssuedLink, Verdict,
};
pub use green::PreparedGreen;
pub use promotion::{PromotedImage, Promotion, PromotionState};
pub use release::{Claim, ReleaseRecord, ReleaseState};

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{AwsError, aws_err};

/// The name of the index listing items by `gsi1pk`, newest `gsi1sk` first.
pub const GSI1: &str = "gsi1";

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("item {pk}/{sk} does not have the shape this code reads: {source}")]
    Shape {
        pk: String,
        sk: String,
        #[source]
        source: serde_dynamo::Error,
    },
    #[error("release {0} is not in the table")]
    NotFound(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Aws(e) if e.retryable)
    }
}

/// The table and its client.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) ddb: Client,
    pub(crate) table: String,
}

impl Store {
    pub fn new(ddb: Client, table: impl Into<String>) -> Self {
        Self {
            ddb,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The record stored under `pk`/`sk`, if there is one (strongly consistent).
    pub(crate) async fn get_record<T: DeserializeOwned>(
        &self,
        pk: String,
        sk: impl Into<String>,
    ) -> Result<Option<T>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws_err("DynamoDB", "GetItem"))?;
        out.item.map(from_item).transpose()
    }

    /// Writes `record` under `keys`, replacing whatever was there: for records whose every
    /// write states the same facts again or supersedes the last one.
    pub(crate) async fn put_record<T: Serialize>(
        &self,
        keys: Keys,
        record: &T,
    ) -> Result<(), StoreError> {
        self.put(to_item(keys, record)?)
            .send()
            .await
            .map_err(aws_err("DynamoDB", "PutItem"))?;
        Ok(())
    }

    /// A `PutItem` of `item` into the table, for the caller to add its condition to.
    pub(crate) fn put(&self, item: HashMap<String, AttributeValue>) -> PutItemFluentBuilder {
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
    }

    /// An `UpdateItem` of the item under `pk`/`sk`, for the caller to add its expressions to.
    pub(crate) fn update(&self, pk: String, sk: impl Into<String>) -> UpdateItemFluentBuilder {
        self.ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.into()))
    }

    /// The records listed under `gsi1pk` in [`GSI1`], oldest first or newest first, at most
    /// `limit` (one page).
    pub(crate) async fn list_records<T: DeserializeOwned>(
        &self,
        gsi1pk: &str,
        newest_first: bool,
        limit: Option<i32>,
    ) -> Result<Vec<T>, StoreError> {
        let out = self
            .ddb
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("gsi1pk = :list")
            .expression_attribute_values(":list", AttributeValue::S(gsi1pk.to_owned()))
            .scan_index_forward(!newest_first)
            .set_limit(limit)
            .send()
            .await
            .map_err(aws_err("DynamoDB", "Query"))?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(from_item)
            .collect()
    }

    /// The records of partition `pk` whose sort key starts with `prefix`, by sort key.
    pub(crate) async fn query_records<T: DeserializeOwned>(
        &self,
        pk: &str,
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.query_prefix(pk, prefix)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    /// Every item of partition `pk` whose sort key starts with `prefix`, all pages.
    pub(crate) async fn query_prefix(
        &self,
        pk: &str,
        prefix: &str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(aws_err("DynamoDB", "Query"))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}

/// The partition of a release and everything recorded with it.
pub(crate) fn release_pk(release_id: &str) -> String {
    format!("RELEASE#{release_id}")
}

/// `pk` and `sk` of an item, for error messages.
pub(crate) fn keys_of(item: &HashMap<String, AttributeValue>) -> (String, String) {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => String::new(),
    };
    (text("pk"), text("sk"))
}

/// Where a record is stored: its keys, and the index and TTL attributes written with it. Each
/// record type says what they are; [`to_item`] puts them around the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    pub pk: String,
    pub sk: String,
    /// Its place in the [`GSI1`] listing (`gsi1pk`, `gsi1sk`), if it is listed.
    pub gsi1: Option<(String, String)>,
    /// When the table's TTL removes it (`expires_at`, epoch seconds), if it expires.
    pub expires_at: Option<i64>,
}

impl Keys {
    pub fn new(pk: String, sk: impl Into<String>) -> Self {
        Self {
            pk,
            sk: sk.into(),
            gsi1: None,
            expires_at: None,
        }
    }

    /// Listed in [`GSI1`] under `gsi1pk`, in `gsi1sk` order.
    pub fn listed(self, gsi1pk: impl Into<String>, gsi1sk: String) -> Self {
        Self {
            gsi1: Some((gsi1pk.into(), gsi1sk)),
            ..self
        }
    }

    /// Removed by the table's TTL after `epoch_seconds`.
    pub fn expiring(self, epoch_seconds: i64) -> Self {
        Self {
            expires_at: Some(epoch_seconds),
            ..self
        }
    }
}

/// A record as the table stores it: its attributes, with its keys beside them.
#[derive(Serialize)]
struct Stored<'a, T> {
    pk: &'a str,
    sk: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi1pk: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi1sk: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(flatten)]
    record: &'a T,
}

/// `record` as a table item under `keys`.
pub(crate) fn to_item<T: Serialize>(
    keys: Keys,
    record: &T,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let (gsi1pk, gsi1sk) = match &keys.gsi1 {
        Some((pk, sk)) => (Some(pk.as_str()), Some(sk.as_str())),
        None => (None, None),
    };
    let stored = Stored {
        pk: &keys.pk,
        sk: &keys.sk,
        gsi1pk,
        gsi1sk,
        expires_at: keys.expires_at,
        record,
    };
    serde_dynamo::to_item(&stored).map_err(|source| StoreError::Shape {
        pk: keys.pk.clone(),
        sk: keys.sk.clone(),
        source,
    })
}

/// The record a table item holds (its keys and index attributes are not part of it).
pub(crate) fn from_item<T: DeserializeOwned>(
    item: HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    let (pk, sk) = keys_of(&item);
    serde_dynamo::from_item(item).map_err(|source| StoreError::Shape { pk, sk, source })
}

/// Whether a conditional write's condition held: the output when it did, `None` when DynamoDB
/// refused the write for it (`ConditionalCheckFailedException`); any other failure is an error.
pub(crate) fn condition_held<O, E, R>(
    operation: &'static str,
    result: Result<O, SdkError<E, R>>,
) -> Result<Option<O>, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) => {
            let err = aws_err("DynamoDB", operation)(e);
            if err.is_code("ConditionalCheckFailedException") {
                Ok(None)
            } else {
                Err(err.into())
            }
        }
    }
}
