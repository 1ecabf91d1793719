//! Change sets of a release, one item per stack and environment, kept with the release
//! (`pk = RELEASE#<id>`, `sk = CHANGES#<environment>#<stack>`): the change-set action writes
//! them, the mailer and the approval page read every stack of a gate with one query, and the
//! deploy action finds the change set it must execute.

use serde::{Deserialize, Serialize};

use super::{Keys, Store, StoreError, release_pk};
use crate::changes::ChangeSummary;

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

impl Store {
    /// Records a stack's change set (a later change set for the same stack and environment,
    /// from a retried stage, replaces it).
    pub async fn put_stack_changes(&self, changes: &StackChanges) -> Result<(), StoreError> {
        let keys = Keys::new(
            release_pk(&changes.release_id),
            changes_sk(&changes.environment, &changes.stack_name),
        );
        self.put_record(keys, changes).await
    }

    /// Every stack's change set of `release_id` in `environment`, by stack name.
    pub async fn list_stack_changes(
        &self,
        release_id: &str,
        environment: &str,
    ) -> Result<Vec<StackChanges>, StoreError> {
        self.query_records(&release_pk(release_id), &format!("CHANGES#{environment}#"))
            .await
    }
}
