//! Change sets of a release, one item per stack and environment, kept with the release
//! (`pk = RELEASE#<id>`, `sk = CHANGES#<environment>#<stack>`): the change-set action writes
//! them, the mailer and the approval page read every stack of a gate with one query, and the
//! deploy action finds the change set it must execute.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, release_pk};
use crate::changes::ChangeSummary;
use crate::error::aws_err;

/// Where a stack's change set stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeSetOutcome {
    /// Ready to execute, with the summarised changes.
    Ready,
    /// CloudFormation found nothing to change: nothing to execute for this stack.
    NoChanges,
}

/// One stack's change set for a release in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackChanges {
    pub release_id: String,
    pub environment: String,
    /// The pipeline execution that created the change set.
    pub execution_id: String,
    /// The template's path in the release and the stack it deploys to.
    pub template_path: String,
    pub stack_name: String,
    /// The account the stack lives in (from the role assumed there).
    pub account_id: String,
    pub change_set_name: String,
    pub change_set_id: Option<String>,
    /// `true` when the change set creates the stack.
    pub creates_stack: bool,
    pub outcome: ChangeSetOutcome,
    pub summary: ChangeSummary,
    /// RFC 3339.
    pub created_at: String,
}

fn changes_sk(environment: &str, stack_name: &str) -> String {
    format!("CHANGES#{environment}#{stack_name}")
}

#[derive(Serialize, Deserialize)]
struct Item {
    pk: String,
    sk: String,
    #[serde(flatten)]
    changes: StackChanges,
}

impl Store {
    /// Records a stack's change set (a later change set for the same stack and environment,
    /// from a retried stage, replaces it).
    pub async fn put_stack_changes(&self, changes: &StackChanges) -> Result<(), StoreError> {
        let item = Item {
            pk: release_pk(&changes.release_id),
            sk: changes_sk(&changes.environment, &changes.stack_name),
            changes: changes.clone(),
        };
        let attrs: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(&item).map_err(|source| StoreError::Shape {
                pk: item.pk.clone(),
                sk: item.sk.clone(),
                source,
            })?;
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attrs))
            .send()
            .await
            .map_err(aws_err("DynamoDB", "PutItem"))?;
        Ok(())
    }

    /// Every stack's change set of `release_id` in `environment`, by stack name.
    pub async fn list_stack_changes(
        &self,
        release_id: &str,
        environment: &str,
    ) -> Result<Vec<StackChanges>, StoreError> {
        let items = self
            .query_prefix(&release_pk(release_id), &format!("CHANGES#{environment}#"))
            .await?;
        items
            .into_iter()
            .map(|item| {
                let (pk, sk) = super::keys_of(&item);
                serde_dynamo::from_item::<_, Item>(item)
                    .map(|i| i.changes)
                    .map_err(|source| StoreError::Shape { pk, sk, source })
            })
            .collect()
    }
}
