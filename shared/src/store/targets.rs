//! What a stage's traffic actions move and watch, as the deploy action found it in the release's
//! `Shipgate*` stack outputs (`pk = DEPLOYMENT#<id>`, `sk = TARGETS`, the id of
//! [`crate::deploy::deployment_id`] for the stage's release, environment and execution): the
//! production and test listeners, the two target groups, the ECS service, the Lambda alias and
//! the alarms.
//!
//! Handed over through the table rather than as pipeline variables in the traffic actions'
//! `UserParameters`: resolved, the ARNs would take those past CodePipeline's 1,000 characters per
//! action configuration value. Written by the deploy action each time it finds the stacks
//! settled (the same facts each time: a plain put is idempotent), read by the traffic action
//! when it starts a deployment.

use serde::{Deserialize, Serialize};

use super::deployment::{RETENTION_SECONDS, deployment_pk};
use super::{Keys, Store, StoreError};

const TARGETS_SK: &str = "TARGETS";

/// The stage's traffic targets and alarms, one field per `Shipgate*` output; `None` (or no
/// alarm) where no stack outputs it, or outputs it empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTargets {
    /// The stage's deployment id (release, environment and execution; no deployment name).
    pub deployment_id: String,
    pub release_id: String,
    pub environment: String,
    pub execution_id: String,
    /// `ShipgateAlarms`: the CloudWatch alarms in the environment account that roll the
    /// stage's deployments back.
    #[serde(default)]
    pub alarms: Vec<String>,
    /// `ShipgateProdListener`: the listener whose weighted forward moves.
    pub prod_listener: Option<String>,
    /// `ShipgateTestListener`: the listener that forwards to the new version only.
    pub test_listener: Option<String>,
    /// `ShipgateBlueTargetGroup`, `ShipgateGreenTargetGroup`: the two target groups that take
    /// turns carrying the production traffic.
    pub blue_target_group: Option<String>,
    pub green_target_group: Option<String>,
    /// `ShipgateService`: the ECS service whose task sets are behind the target groups.
    pub service: Option<String>,
    /// `ShipgateLambdaFunction`, `ShipgateLambdaAlias`, `ShipgateLambdaVersion`: the function
    /// whose weighted alias moves to the new published version.
    pub lambda_function: Option<String>,
    pub lambda_alias: Option<String>,
    pub lambda_version: Option<String>,
    /// Epoch milliseconds.
    pub recorded_at_ms: i64,
}

impl Store {
    /// Records the stage's targets (overwriting: the facts are the same each time).
    pub async fn put_stage_targets(&self, targets: &StageTargets) -> Result<(), StoreError> {
        let keys = Keys::new(deployment_pk(&targets.deployment_id), TARGETS_SK)
            .expiring(targets.recorded_at_ms / 1000 + RETENTION_SECONDS);
        self.put_record(keys, targets).await
    }

    /// The stage's targets as the deploy action recorded them (strongly consistent).
    pub async fn get_stage_targets(
        &self,
        deployment_id: &str,
    ) -> Result<Option<StageTargets>, StoreError> {
        self.get_record(deployment_pk(deployment_id), TARGETS_SK)
            .await
    }
}
