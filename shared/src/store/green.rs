//! The new version's task set, as the deploy action placed it for a deployment (`pk =
//! DEPLOYMENT#<id>`, `sk = GREEN`, the id of [`crate::deploy::deployment_id`]): what the traffic
//! action needs to drain blue after the bake, handed over through the table so the pipeline
//! passes nothing more than it did.
//!
//! Written by the deploy action each time it finds green steady (the same facts each time: a
//! plain put is idempotent), read once by the traffic action when it creates the deployment.

use serde::{Deserialize, Serialize};

use super::deployment::{RETENTION_SECONDS, deployment_pk};
use super::{Keys, Store, StoreError};

const GREEN_SK: &str = "GREEN";

/// The new version's task set behind the idle target group, with the test listener pointed at
/// it, ready for the checks and the traffic shift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedGreen {
    pub deployment_id: String,
    pub release_id: String,
    pub environment: String,
    pub execution_id: String,
    pub cluster: String,
    pub service: String,
    pub task_definition: String,
    pub green_task_set: String,
    /// The idle target group when green was placed: the traffic action's green one.
    pub green_target_group: String,
    /// The primary task set then (the previous version); `None` for a service's first release.
    pub blue_task_set: Option<String>,
    /// The target group carrying the production traffic then.
    pub live_target_group: String,
    pub test_listener: String,
    /// The release's task set was live already (it serves the live target group): nothing to
    /// shift.
    #[serde(default)]
    pub already_live: bool,
    /// Epoch milliseconds.
    pub prepared_at_ms: i64,
}

impl Store {
    /// Records green for the deployment (overwriting: the facts are the same each time).
    pub async fn put_prepared_green(&self, green: &PreparedGreen) -> Result<(), StoreError> {
        let keys = Keys::new(deployment_pk(&green.deployment_id), GREEN_SK)
            .expiring(green.prepared_at_ms / 1000 + RETENTION_SECONDS);
        self.put_record(keys, green).await
    }

    /// Green as the deploy action placed it for the deployment (strongly consistent).
    pub async fn get_prepared_green(
        &self,
        deployment_id: &str,
    ) -> Result<Option<PreparedGreen>, StoreError> {
        self.get_record(deployment_pk(deployment_id), GREEN_SK)
            .await
    }
}
