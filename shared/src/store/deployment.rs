//! Deployments: one item per progressive traffic shift (`pk = DEPLOYMENT#<id>`, `sk =
//! DEPLOYMENT`), listed while in flight through `gsi1` (`gsi1pk = DEPLOYMENTS#active`, a sparse
//! index: the attribute is removed when the deployment ends), and found by alarm through one
//! index item per watched alarm (`pk = ALARM#<account>#<alarm name>`, `sk = DEPLOYMENT#<id>`).
//!
//! Every write of a step is conditional on the `revision` read (optimistic concurrency): two
//! invocations at once, or the traffic action and the rollback function, can never both move
//! traffic from the same state. The record is written after each AWS call that moves traffic;
//! a crash between the two is reconciled from the alias's or listener's actual weights by the
//! next invocation.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, PutRequest, TransactWriteItem, WriteRequest};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{BATCH_ATTEMPTS, GSI1, Store, StoreError, batch_backoff, keys_of};
use crate::error::{AwsError, aws_err};

/// What carries the traffic being shifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrafficTarget {
    /// A Lambda function's weighted alias between two published versions.
    LambdaAlias {
        function: String,
        alias: String,
        previous_version: String,
        new_version: String,
    },
    /// An ALB listener's weighted forward between the blue (previous) and green (new) target
    /// groups of an ECS service; `test_listener_arn` forwards to green only.
    AlbListener {
        listener_arn: String,
        test_listener_arn: Option<String>,
        blue_target_group: String,
        green_target_group: String,
        /// The service's task sets behind the two target groups, when the deploy action placed
        /// the new version as a task set: blue is drained after the bake. `None`: only the
        /// listener moves.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_sets: Option<EcsTaskSets>,
    },
}

/// The blue/green task sets of an ECS service (deployment controller `EXTERNAL`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcsTaskSets {
    pub cluster: String,
    pub service: String,
    /// The new version's task set (ARN), registered with the green target group.
    pub green_task_set: String,
    /// The previous version's (the service's primary task set when green was placed); `None`
    /// for a service's first release.
    pub blue_task_set: Option<String>,
    /// Set when the bake ends: blue is being drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
}

/// Draining blue after the bake: wait for its target group's deregistration delay, scale it to
/// 0, make green the primary task set, delete blue. Each step is decided again from the task
/// sets as they are, so a crash between a call and its record is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// Epoch milliseconds: blue is scaled in from then on (the bake's end plus the delay).
    pub after_ms: i64,
    /// Blue's `deregistration_delay.timeout_seconds` when the drain started.
    pub delay_seconds: u32,
    /// The steps applied, for the record.
    #[serde(default)]
    pub steps: Vec<AppliedDrainStep>,
}

/// A step of the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainStep {
    /// `UpdateTaskSet` blue to 0%.
    ScaleIn,
    /// `UpdateServicePrimaryTaskSet` green.
    Promote,
    /// `DeleteTaskSet` blue.
    Delete,
}

impl DrainStep {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainStep::ScaleIn => "scale_in",
            DrainStep::Promote => "promote",
            DrainStep::Delete => "delete",
        }
    }
}

/// One drain step, for the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedDrainStep {
    pub step: DrainStep,
    pub at_ms: i64,
}

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Traffic is being moved (or baking at 100%).
    Shifting,
    /// All traffic on the new version, bake over.
    Succeeded,
    /// All traffic back on the previous version.
    RolledBack,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Shifting => "shifting",
            DeploymentState::Succeeded => "succeeded",
            DeploymentState::RolledBack => "rolled_back",
        }
    }
}

/// Why and by whom a deployment was rolled back, and which of the rollback's tasks are done.
///
/// A rollback is claimed first (the deployment saved as `RolledBack`, conditional on the revision
/// read, so exactly one invocation claims it), then its tasks run in order, each recorded when
/// done: traffic back to the previous version, the pipeline job failed, the team emailed. An
/// invocation that crashes in between leaves the remaining tasks to the next one (see [`Lease`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    /// The alarm that fired, when an alarm caused it.
    pub alarm: Option<String>,
    pub reason: String,
    /// `alarm`, `operator:<name>`, or `traffic-action`.
    pub by: String,
    /// Epoch milliseconds.
    pub at_ms: i64,
    /// The share of traffic the new version had when the rollback was claimed.
    #[serde(default)]
    pub percent_before: u8,
    /// All traffic is back on the previous version.
    #[serde(default)]
    pub traffic_restored: bool,
    /// The pipeline job was failed (or was answered already, or its caller answers it).
    #[serde(default)]
    pub job_answered: bool,
    /// How the job was answered, for the record (`failed job <id>`, `already answered`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_outcome: Option<String>,
    /// The environment's team was emailed (or has no address configured).
    #[serde(default)]
    pub team_notified: bool,
}

/// What the holder of a [`Lease`] is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LeaseIntent {
    /// Moving traffic to `to` percent on the new version.
    Shift { to: u8 },
    /// Carrying out the rollback's tasks.
    RollBack,
    /// A step of blue's drain.
    Drain { step: DrainStep },
}

/// An invocation's claim on the deployment while it calls AWS: written (conditionally) before
/// traffic moves and cleared with the record of the move, so two invocations never both move
/// traffic. It expires, so a crashed holder blocks nobody for long; the next invocation then
/// reconciles the record with the actual weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The job id (traffic action) or invocation that holds it.
    pub owner: String,
    /// Epoch milliseconds.
    pub until_ms: i64,
    pub intent: LeaseIntent,
}

/// One applied step, for the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedStep {
    pub percent: u8,
    pub at_ms: i64,
}

/// A progressive traffic shift of one release in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub deployment_id: String,
    pub release_id: String,
    pub environment: String,
    pub execution_id: String,
    /// The release's application and version (from the release record), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Who is told of a rollback: the environment's team addresses as the release's application
    /// declared them when the deployment started (empty: nobody). `None` on deployments
    /// recorded before applications were declared: `SHIPGATE_TEAM_EMAIL_<ENV>` then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<Vec<String>>,
    /// The environment account and the role that reaches it.
    pub account_id: String,
    pub role_arn: String,
    pub target: TrafficTarget,
    /// The plan as configured (`Canary10Percent5Minutes`, `custom:…`).
    pub plan: String,
    /// Epoch milliseconds: the plan's clock starts here.
    pub started_at_ms: i64,
    pub state: DeploymentState,
    /// The share of traffic on the new version as last applied.
    pub percent: u8,
    /// When the traffic action should next look (epoch milliseconds).
    pub next_step_at_ms: Option<i64>,
    /// CloudWatch alarm names (in the environment account) that roll the deployment back.
    pub alarms: Vec<String>,
    /// The latest CodePipeline job working on this deployment: the one to fail on rollback.
    pub job_id: Option<String>,
    pub rollback: Option<Rollback>,
    /// Held while an invocation moves traffic or rolls back (see [`Lease`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    pub steps: Vec<AppliedStep>,
    /// Incremented by every write; writes are conditional on it.
    pub revision: u64,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
}

/// How long finished deployments (and their alarm index items) are kept.
pub(super) const RETENTION_SECONDS: i64 = 90 * 24 * 3600;
const ACTIVE: &str = "DEPLOYMENTS#active";

pub(super) fn deployment_pk(id: &str) -> String {
    format!("DEPLOYMENT#{id}")
}
const DEPLOYMENT_SK: &str = "DEPLOYMENT";

/// The primary key of deployment `id`'s item.
fn deployment_key(id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(deployment_pk(id))),
        ("sk".to_owned(), AttributeValue::S(DEPLOYMENT_SK.into())),
    ])
}

fn alarm_pk(account_id: &str, alarm: &str) -> String {
    format!("ALARM#{account_id}#{alarm}")
}

#[derive(Serialize, Deserialize)]
struct Item {
    pk: String,
    sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1sk: Option<String>,
    expires_at: i64,
    #[serde(flatten)]
    deployment: Deployment,
}

/// The outcome of creating a deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum DeploymentCreation {
    Created(Deployment),
    /// It exists (a retried or duplicated invocation): here it is.
    Existing(Deployment),
}

/// A write that lost the race: the deployment as it stands now.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("deployment {} changed since it was read (revision {})", .0.deployment_id, .0.revision)]
    Conflict(Box<Deployment>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Deployment {
    /// Whether traffic may still move (not finished, not rolled back).
    pub fn is_active(&self) -> bool {
        self.state == DeploymentState::Shifting
    }

    /// The ECS task sets behind the traffic, if the deployment has them.
    pub fn task_sets(&self) -> Option<&EcsTaskSets> {
        match &self.target {
            TrafficTarget::AlbListener { task_sets, .. } => task_sets.as_ref(),
            TrafficTarget::LambdaAlias { .. } => None,
        }
    }

    /// Blue's drain, once the bake is over: traffic no longer moves, and an alarm no longer
    /// rolls the deployment back (blue may be scaled in already).
    pub fn drain(&self) -> Option<&Drain> {
        self.task_sets().and_then(|t| t.drain.as_ref())
    }
}

impl Store {
    /// Creates the deployment (revision 0) and its alarm index items; an existing one is
    /// returned as it stands.
    pub async fn create_deployment(
        &self,
        deployment: &Deployment,
    ) -> Result<DeploymentCreation, StoreError> {
        let attrs = deployment_item(deployment)?;
        let put = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attrs))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        if let Err(e) = put {
            let err = aws_err("DynamoDB", "PutItem")(e);
            if err.is_code("ConditionalCheckFailedException") {
                let existing = self.deployment_in_place(deployment).await?;
                // A creation that crashed between the two writes left the index incomplete:
                // writing it again is idempotent (same keys, same content).
                self.write_alarm_index(&existing).await?;
                return Ok(DeploymentCreation::Existing(existing));
            }
            return Err(err.into());
        }
        self.write_alarm_index(deployment).await?;
        Ok(DeploymentCreation::Created(deployment.clone()))
    }

    /// One alarm-index item per watched alarm. Written after the deployment, so an alarm that
    /// finds an index item always finds its deployment. Idempotent (same keys, same content).
    async fn write_alarm_index(&self, deployment: &Deployment) -> Result<(), StoreError> {
        let expires_at = deployment.started_at_ms / 1000 + RETENTION_SECONDS;
        let requests: Vec<WriteRequest> = deployment
            .alarms
            .iter()
            .filter_map(|alarm| {
                let item = HashMap::from([
                    (
                        "pk".to_owned(),
                        AttributeValue::S(alarm_pk(&deployment.account_id, alarm)),
                    ),
                    (
                        "sk".to_owned(),
                        AttributeValue::S(deployment_pk(&deployment.deployment_id)),
                    ),
                    (
                        "deployment_id".to_owned(),
                        AttributeValue::S(deployment.deployment_id.clone()),
                    ),
                    (
                        "expires_at".to_owned(),
                        AttributeValue::N(expires_at.to_string()),
                    ),
                ]);
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .ok()
                    .map(|put| WriteRequest::builder().put_request(put).build())
            })
            .collect();
        // `BatchWriteItem`: 25 items per request; what comes back unprocessed is written again
        // after a backoff, as for `BatchGetItem` (see `Store::batch_get`), and an index still
        // incomplete after that is an error: an alarm would not find the deployment.
        for chunk in requests.chunks(25) {
            let mut pending = HashMap::from([(self.table.clone(), chunk.to_vec())]);
            let mut attempts = 0;
            loop {
                attempts += 1;
                let out = self
                    .ddb
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(aws_err("DynamoDB", "BatchWriteItem"))?;
                let left: usize = out
                    .unprocessed_items
                    .as_ref()
                    .map_or(0, |u| u.values().map(Vec::len).sum());
                match out.unprocessed_items {
                    Some(items) if left > 0 => {
                        if attempts >= BATCH_ATTEMPTS {
                            return Err(StoreError::Unprocessed {
                                operation: "BatchWriteItem",
                                left,
                                attempts,
                            });
                        }
                        tokio::time::sleep(batch_backoff(attempts)).await;
                        pending = items;
                    }
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// The record of `deployment` as stored, which a refused conditional write found in place.
    async fn deployment_in_place(&self, deployment: &Deployment) -> Result<Deployment, StoreError> {
        self.get_deployment(&deployment.deployment_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(deployment.deployment_id.clone()))
    }

    /// A deployment by id (strongly consistent).
    pub async fn get_deployment(&self, id: &str) -> Result<Option<Deployment>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .set_key(Some(deployment_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws_err("DynamoDB", "GetItem"))?;
        out.item.map(decode_deployment).transpose()
    }

    /// Writes `deployment` as the next revision, only if nobody wrote since `deployment.revision`
    /// was read. Returns the saved deployment (revision + 1).
    pub async fn save_deployment(&self, deployment: &Deployment) -> Result<Deployment, SaveError> {
        let (next, attrs) = next_revision(deployment)?;
        let put = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attrs))
            .condition_expression(REVISION_READ)
            .expression_attribute_values(":read", revision_read(deployment))
            .send()
            .await;
        match put {
            Ok(_) => Ok(next),
            Err(e) => {
                let err = aws_err("DynamoDB", "PutItem")(e);
                if err.is_code("ConditionalCheckFailedException") {
                    let current = self.deployment_in_place(deployment).await?;
                    Err(SaveError::Conflict(Box::new(current)))
                } else {
                    Err(SaveError::Store(err.into()))
                }
            }
        }
    }

    /// Saves each deployment as [`Store::save_deployment`] does (the next revision, only if
    /// nobody wrote since its revision was read), answering in the same order.
    ///
    /// Several are written by one `TransactWriteItems` (at most 100 actions per call; DynamoDB
    /// API Reference, <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html>),
    /// each a put still conditional on its own revision: one call instead of one per
    /// deployment. A transaction is all or nothing, so when it is refused (a deployment changed
    /// since it was read, or anything else), each of its deployments is saved on its own: the
    /// one that changed is answered [`SaveError::Conflict`] with its current state, the others
    /// are saved.
    pub async fn save_deployments(
        &self,
        deployments: &[Deployment],
    ) -> Vec<Result<Deployment, SaveError>> {
        let mut results = Vec::with_capacity(deployments.len());
        for chunk in deployments.chunks(TRANSACT_ITEMS) {
            if let [single] = chunk {
                results.push(self.save_deployment(single).await);
                continue;
            }
            match self.save_together(chunk).await {
                Ok(saved) => results.extend(saved.into_iter().map(Ok)),
                Err(e) => {
                    tracing::info!(deployments = chunk.len(), error = %e, outcome = "saved_one_by_one", "transaction refused; saving each deployment on its own");
                    // Made first, then run: see `deploy::rollback`'s `bounded`.
                    let saves: Vec<_> = chunk.iter().map(|d| self.save_deployment(d)).collect();
                    let one_by_one: Vec<_> = futures::stream::iter(saves)
                        .buffered(ONE_BY_ONE_CONCURRENCY)
                        .collect()
                        .await;
                    results.extend(one_by_one);
                }
            }
        }
        results
    }

    /// One transaction writing every deployment of `chunk` as its next revision.
    async fn save_together(&self, chunk: &[Deployment]) -> Result<Vec<Deployment>, StoreError> {
        let mut saved = Vec::with_capacity(chunk.len());
        let mut items = Vec::with_capacity(chunk.len());
        for d in chunk {
            let (next, attrs) = next_revision(d)?;
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(attrs))
                .condition_expression(REVISION_READ)
                .expression_attribute_values(":read", revision_read(d))
                .build()
                .map_err(|e| AwsError {
                    service: "DynamoDB",
                    operation: "TransactWriteItems",
                    code: None,
                    message: e.to_string(),
                    retryable: false,
                    source: Box::new(e),
                })?;
            items.push(TransactWriteItem::builder().put(put).build());
            saved.push(next);
        }
        self.ddb
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(aws_err("DynamoDB", "TransactWriteItems"))?;
        Ok(saved)
    }

    /// The deployments that watch `alarm` in `account_id`, active or not (the caller decides),
    /// through the alarm index: a query, never a scan.
    pub async fn deployments_watching(
        &self,
        account_id: &str,
        alarm: &str,
    ) -> Result<Vec<Deployment>, StoreError> {
        let index = self
            .query_prefix(&alarm_pk(account_id, alarm), "DEPLOYMENT#")
            .await?;
        let keys = index
            .iter()
            .filter_map(|item| match item.get("deployment_id") {
                Some(AttributeValue::S(id)) => Some(deployment_key(id)),
                _ => None,
            })
            .collect();
        // One read for up to 100 deployments, not one each: an alarm watched by many
        // deployments is when a rollback must be fastest.
        let mut out = self
            .batch_get(keys)
            .await?
            .into_iter()
            .map(decode_deployment)
            .collect::<Result<Vec<_>, _>>()?;
        // The index's order (by id), whatever order the batch answered in.
        out.sort_by(|a, b| a.deployment_id.cmp(&b.deployment_id));
        Ok(out)
    }

    /// The deployments in flight, oldest first (the sparse `DEPLOYMENTS#active` listing).
    pub async fn active_deployments(&self) -> Result<Vec<Deployment>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .ddb
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :active")
                .expression_attribute_values(":active", AttributeValue::S(ACTIVE.into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(aws_err("DynamoDB", "Query"))?;
            for item in page.items.unwrap_or_default() {
                out.push(decode_deployment(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(out),
            }
        }
    }
}

/// The condition of every save: nobody wrote since the revision was read.
const REVISION_READ: &str = "revision = :read";

/// `TransactWriteItems` takes at most 100 actions.
const TRANSACT_ITEMS: usize = 100;

/// How many deployments are saved at once when a transaction was refused.
const ONE_BY_ONE_CONCURRENCY: usize = 8;

fn revision_read(d: &Deployment) -> AttributeValue {
    AttributeValue::N(d.revision.to_string())
}

/// `d` as its next revision, and its item.
fn next_revision(
    d: &Deployment,
) -> Result<(Deployment, HashMap<String, AttributeValue>), StoreError> {
    let mut next = d.clone();
    next.revision = d.revision + 1;
    let attrs = deployment_item(&next)?;
    Ok((next, attrs))
}

fn deployment_item(d: &Deployment) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let active = d.is_active();
    let item = Item {
        pk: deployment_pk(&d.deployment_id),
        sk: DEPLOYMENT_SK.into(),
        gsi1pk: active.then(|| ACTIVE.to_owned()),
        gsi1sk: active.then(|| format!("{}#{}", d.created_at, d.deployment_id)),
        expires_at: d.started_at_ms / 1000 + RETENTION_SECONDS,
        deployment: d.clone(),
    };
    serde_dynamo::to_item(&item).map_err(|source| StoreError::Shape {
        pk: item.pk.clone(),
        sk: item.sk.clone(),
        source,
    })
}

fn decode_deployment(item: HashMap<String, AttributeValue>) -> Result<Deployment, StoreError> {
    let (pk, sk) = keys_of(&item);
    serde_dynamo::from_item::<_, Item>(item)
        .map(|i| i.deployment)
        .map_err(|source| StoreError::Shape { pk, sk, source })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::operation::transact_write_items::{
        TransactWriteItemsError, TransactWriteItemsOutput,
    };
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, TransactionCanceledException,
    };
    use aws_smithy_mocks::mock;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;
    use crate::store::tests::mock_ddb;

    /// The deploy tests' deployment, as the `n`th, read at `revision`.
    fn deployment(n: usize, revision: u64) -> Deployment {
        Deployment {
            deployment_id: format!("int-{n:016}"),
            revision,
            ..crate::testing::deployment()
        }
    }

    fn pk_of(item: Option<&HashMap<String, AttributeValue>>) -> String {
        match item.and_then(|i| i.get("pk")) {
            Some(AttributeValue::S(pk)) => pk.clone(),
            _ => String::new(),
        }
    }

    #[tokio::test]
    async fn several_deployments_are_saved_by_one_transaction_each_on_its_revision() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let transaction = mock!(Client::transact_write_items).then_compute_output(move |input| {
            for item in input.transact_items() {
                let put = item.put();
                if let Ok(mut seen) = recorded.lock() {
                    seen.push((
                        pk_of(put.map(|p| p.item())),
                        put.map(|p| p.condition_expression().unwrap_or_default().to_owned()),
                        put.and_then(|p| p.expression_attribute_values())
                            .and_then(|v| v.get(":read"))
                            .cloned(),
                    ));
                }
            }
            TransactWriteItemsOutput::builder().build()
        });
        let store = Store::new(mock_ddb(&[&transaction]), "t");
        let deployments: Vec<Deployment> = (0..3).map(|n| deployment(n, n as u64)).collect();
        let saved = store.save_deployments(&deployments).await;
        assert_eq!(transaction.num_calls(), 1);
        let revisions: Vec<u64> = saved.into_iter().map(|s| s.unwrap().revision).collect();
        assert_eq!(revisions, [1, 2, 3]);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        for (n, (pk, condition, read)) in seen.into_iter().enumerate() {
            assert_eq!(pk, format!("DEPLOYMENT#int-{n:016}"));
            assert_eq!(condition.as_deref(), Some("revision = :read"));
            assert_eq!(read, Some(AttributeValue::N(n.to_string())));
        }
    }

    #[tokio::test]
    async fn a_refused_transaction_saves_each_on_its_own_and_the_changed_one_is_a_conflict() {
        // Deployment 1 changed since it was read (revision 7 now): the transaction is
        // cancelled, then its own put fails and it is read again; 0 and 2 are saved.
        let transaction = mock!(Client::transact_write_items).then_error(|| {
            let reason = |code: &str| CancellationReason::builder().code(code).build();
            TransactWriteItemsError::TransactionCanceledException(
                TransactionCanceledException::builder()
                    .cancellation_reasons(reason("None"))
                    .cancellation_reasons(reason("ConditionalCheckFailed"))
                    .cancellation_reasons(reason("None"))
                    .meta(
                        ErrorMetadata::builder()
                            .code("TransactionCanceledException")
                            .build(),
                    )
                    .build(),
            )
        });
        let changed = deployment_pk(&deployment(1, 0).deployment_id);
        let refused = {
            let changed = changed.clone();
            mock!(Client::put_item)
                .match_requests(move |input| pk_of(input.item()) == changed)
                .then_error(|| {
                    PutItemError::ConditionalCheckFailedException(
                        ConditionalCheckFailedException::builder()
                            .meta(
                                ErrorMetadata::builder()
                                    .code("ConditionalCheckFailedException")
                                    .build(),
                            )
                            .build(),
                    )
                })
        };
        let accepted = mock!(Client::put_item).then_output(|| PutItemOutput::builder().build());
        let current = mock!(Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .set_item(deployment_item(&deployment(1, 7)).ok())
                .build()
        });
        let store = Store::new(
            mock_ddb(&[&transaction, &refused, &accepted, &current]),
            "t",
        );
        let deployments: Vec<Deployment> = (0..3).map(|n| deployment(n, 0)).collect();
        let saved = store.save_deployments(&deployments).await;
        assert_eq!(transaction.num_calls(), 1);
        assert_eq!(accepted.num_calls(), 2);
        assert_eq!(refused.num_calls(), 1);
        match &saved[..] {
            [Ok(first), Err(SaveError::Conflict(now)), Ok(third)] => {
                assert_eq!(first.revision, 1);
                assert_eq!(third.revision, 1);
                assert_eq!(now.revision, 7);
                assert_eq!(now.deployment_id, deployments[1].deployment_id);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn one_deployment_is_saved_by_a_conditional_put_as_before() {
        let transaction = mock!(Client::transact_write_items)
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let put = mock!(Client::put_item)
            .match_requests(|input| input.condition_expression() == Some("revision = :read"))
            .then_output(|| PutItemOutput::builder().build());
        let store = Store::new(mock_ddb(&[&transaction, &put]), "t");
        let saved = store.save_deployments(&[deployment(0, 4)]).await;
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].as_ref().map(|d| d.revision).ok(), Some(5));
        assert_eq!((transaction.num_calls(), put.num_calls()), (0, 1));
    }
}
