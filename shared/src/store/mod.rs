//! The DynamoDB store: one table for everything shipgate remembers (single-table design).
//!
//! Keys are `pk`/`sk` strings; the `gsi1` index (`gsi1pk`/`gsi1sk`) serves the listings that
//! must not scan; `expires_at` (epoch seconds) is the table's TTL attribute. A release item is
//! also the intake's idempotency claim: it is created by a conditional write, so one object
//! version is one release however many times S3 delivers its event.

mod release;

pub use release::{Claim, ReleaseRecord, ReleaseState};

use aws_sdk_dynamodb::Client;

use crate::error::AwsError;

/// The name of the index listing items by `gsi1pk`, newest `gsi1sk` first.
pub const GSI1: &str = "gsi1";

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("item {pk}/{sk} does not match the release record shape: {source}")]
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
}
