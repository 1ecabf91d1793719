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
use aws_sdk_dynamodb::types::AttributeValue;

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
