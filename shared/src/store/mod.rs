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
mod targets;

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
pub use release::{Claim, LatestUpload, ReleaseRecord, ReleaseState, VersionClaim, VersionRecord};
pub use targets::StageTargets;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
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
    /// DynamoDB kept answering that it could not process part of a batch (throttling, or its
    /// per-call size limit): another try later may succeed.
    #[error(
        "DynamoDB {operation} left {left} item(s) unprocessed after {attempts} attempts \
         (throttled or over its size limit); try again"
    )]
    Unprocessed {
        operation: &'static str,
        left: usize,
        attempts: u32,
    },
    /// A compare-and-set lost to other writers every time it was tried: another try later may
    /// win.
    #[error("{what} kept changing under {tries} tries to update it; try again")]
    Contended { what: String, tries: usize },
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Aws(e) => e.retryable,
            StoreError::Unprocessed { .. } | StoreError::Contended { .. } => true,
            StoreError::Shape { .. } | StoreError::NotFound(_) => false,
        }
    }
}

/// `BatchGetItem` reads at most 100 items per request.
pub(crate) const BATCH_GET_KEYS: usize = 100;

/// How many requests a batch makes for its unprocessed part before giving up.
pub(crate) const BATCH_ATTEMPTS: u32 = 5;

/// The wait before asking again for what a batch left unprocessed (`attempt` ≥ 1): 20 ms,
/// doubling, 160 ms at most (0.3 s in all): AWS asks for an exponential backoff, as DynamoDB
/// leaves items unprocessed mostly when the table is throttled.
pub(crate) fn batch_backoff(attempt: u32) -> Duration {
    Duration::from_millis(20 << attempt.saturating_sub(1).min(3))
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

impl Store {
    /// The items with these primary keys (strongly consistent), in no particular order; keys
    /// without an item are left out.
    ///
    /// `BatchGetItem` (DynamoDB API Reference,
    /// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html>):
    /// at most 100 keys per request, and a request may come back with part of its keys in
    /// `UnprocessedKeys` (throttling, or more than 16 MB of items); those are asked for again
    /// "with exponential backoff", as the reference recommends, [`BATCH_ATTEMPTS`] requests
    /// at most, then [`StoreError::Unprocessed`].
    pub(crate) async fn batch_get(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_KEYS) {
            let mut pending = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(true)
                .build()
                .map_err(|e| AwsError {
                    service: "DynamoDB",
                    operation: "BatchGetItem",
                    code: None,
                    message: e.to_string(),
                    retryable: false,
                    source: Box::new(e),
                })?;
            let mut attempts = 0;
            loop {
                attempts += 1;
                let out = self
                    .ddb
                    .batch_get_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(aws_err("DynamoDB", "BatchGetItem"))?;
                if let Some(mut responses) = out.responses {
                    items.extend(responses.remove(&self.table).unwrap_or_default());
                }
                let left = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
                match left {
                    None => break,
                    Some(left) if attempts >= BATCH_ATTEMPTS => {
                        return Err(StoreError::Unprocessed {
                            operation: "BatchGetItem",
                            left: left.keys().len(),
                            attempts,
                        });
                    }
                    Some(mut left) => {
                        tokio::time::sleep(batch_backoff(attempts)).await;
                        left.consistent_read = Some(true);
                        pending = left;
                    }
                }
            }
        }
        Ok(items)
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock};

    use super::*;

    /// A DynamoDB client whose calls `rules` answer, whichever matches.
    pub(crate) fn mock_ddb(rules: &[&Rule]) -> Client {
        crate::aws::mock::mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules)
    }

    fn key(n: usize) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(format!("ITEM#{n}"))),
            ("sk".to_owned(), AttributeValue::S("ITEM".into())),
        ])
    }

    /// A table that answers at most `per_call` keys of each request (the rest unprocessed),
    /// recording how many keys each request asked for and whether it read consistently.
    fn throttled_table(per_call: usize, asked: Arc<Mutex<Vec<(usize, bool)>>>) -> Rule {
        mock!(Client::batch_get_item).then_compute_output(move |input| {
            let wanted = input
                .request_items()
                .and_then(|r| r.get("t"))
                .map(|k| (k.keys().to_vec(), k.consistent_read() == Some(true)))
                .unwrap_or_default();
            if let Ok(mut asked) = asked.lock() {
                asked.push((wanted.0.len(), wanted.1));
            }
            let (answered, left) = wanted.0.split_at(per_call.min(wanted.0.len()));
            let mut out = BatchGetItemOutput::builder().responses("t", answered.to_vec());
            if !left.is_empty() {
                out = out.unprocessed_keys(
                    "t",
                    KeysAndAttributes::builder()
                        .set_keys(Some(left.to_vec()))
                        .build()
                        .expect("keys"),
                );
            }
            out.build()
        })
    }

    #[tokio::test]
    async fn a_batch_read_asks_again_for_the_unprocessed_keys_until_it_has_them_all() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let table = throttled_table(40, asked.clone());
        let store = Store::new(mock_ddb(&[&table]), "t");
        let keys: Vec<_> = (0..150).map(key).collect();
        let mut items = store.batch_get(keys.clone()).await.unwrap();
        items.sort_by_key(|i| keys_of(i).0);
        let mut expected = keys;
        expected.sort_by_key(|i| keys_of(i).0);
        assert_eq!(items, expected);
        // 100 keys per request at most; what was left unprocessed, and only that, asked again,
        // always strongly consistent.
        let asked = asked.lock().unwrap().clone();
        assert_eq!(
            asked,
            [(100, true), (60, true), (20, true), (50, true), (10, true)]
        );
    }

    #[tokio::test]
    async fn a_batch_left_unprocessed_too_long_is_a_retryable_error() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let table = throttled_table(0, asked.clone());
        let store = Store::new(mock_ddb(&[&table]), "t");
        let err = store
            .batch_get((0..3).map(key).collect())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Unprocessed {
                    operation: "BatchGetItem",
                    left: 3,
                    attempts: BATCH_ATTEMPTS
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert_eq!(asked.lock().unwrap().len(), BATCH_ATTEMPTS as usize);
    }

    #[test]
    fn the_backoff_doubles_and_stays_short() {
        let waits: Vec<u128> = (1..BATCH_ATTEMPTS)
            .map(|a| batch_backoff(a).as_millis())
            .collect();
        assert_eq!(waits, [20, 40, 80, 160]);
        assert_eq!(batch_backoff(30).as_millis(), 160);
    }
}
