//! ECS task sets: the blue/green halves of a service whose deployment controller is `EXTERNAL`.
//!
//! CloudFormation owns the service and each release's task definition; shipgate places the new
//! version as a task set behind the idle target group (`CreateTaskSet`, tagged with the release
//! id as its `externalId` so a retried invocation finds it instead of creating a second one),
//! and after the traffic shift and bake drains the previous one (`UpdateTaskSet` to 0%,
//! `UpdateServicePrimaryTaskSet`, `DeleteTaskSet`). This is what CodeDeploy does under the hood
//! for an ECS blue/green deployment.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, LaunchType, LoadBalancer, NetworkConfiguration, Scale,
    ScaleUnit, StabilityStatus, TaskSet,
};

use crate::error::{AwsError, aws_err};

/// A task set as shipgate reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSetView {
    pub arn: String,
    /// `ecs-svc/…`.
    pub id: String,
    /// What created it said who it is: shipgate writes the release id.
    pub external_id: Option<String>,
    /// `PRIMARY`, `ACTIVE` or `DRAINING` (being deleted).
    pub status: String,
    /// Every task running and registered (`STEADY_STATE`), or not yet (`STABILIZING`).
    pub steady: bool,
    /// Its share of the service's desired count, in percent.
    pub scale_percent: f64,
    pub computed_desired_count: i32,
    pub running_count: i32,
    pub pending_count: i32,
    pub task_definition: String,
    /// The target groups its tasks register with.
    pub target_groups: Vec<String>,
    /// Epoch milliseconds of its last change (`updatedAt`, else `createdAt`).
    pub updated_at_ms: Option<i64>,
}

impl TaskSetView {
    pub fn is_primary(&self) -> bool {
        self.status == "PRIMARY"
    }

    /// Being deleted (`DeleteTaskSet` was accepted): as good as gone.
    pub fn is_draining(&self) -> bool {
        self.status == "DRAINING"
    }

    pub fn serves(&self, target_group: &str) -> bool {
        self.target_groups.iter().any(|tg| tg == target_group)
    }

    fn from_sdk(t: &TaskSet) -> Self {
        let millis = |d: &aws_smithy_types::DateTime| {
            d.to_millis().ok() // out of range: unknown
        };
        Self {
            arn: t.task_set_arn().unwrap_or_default().to_owned(),
            id: t.id().unwrap_or_default().to_owned(),
            external_id: t.external_id().filter(|e| !e.is_empty()).map(str::to_owned),
            status: t.status().unwrap_or_default().to_owned(),
            steady: t.stability_status() == Some(&StabilityStatus::SteadyState),
            scale_percent: t.scale().map_or(100.0, |s| s.value()),
            computed_desired_count: t.computed_desired_count(),
            running_count: t.running_count(),
            pending_count: t.pending_count(),
            task_definition: t.task_definition().unwrap_or_default().to_owned(),
            target_groups: t
                .load_balancers()
                .iter()
                .filter_map(|lb| lb.target_group_arn().map(str::to_owned))
                .collect(),
            updated_at_ms: t
                .updated_at()
                .and_then(millis)
                .or_else(|| t.created_at().and_then(millis)),
        }
    }
}

/// Every task set of the service (`DescribeTaskSets` without names).
pub async fn task_sets(
    ecs: &Client,
    cluster: &str,
    service: &str,
) -> Result<Vec<TaskSetView>, AwsError> {
    let out = ecs
        .describe_task_sets()
        .cluster(cluster)
        .service(service)
        .send()
        .await
        .map_err(aws_err("ECS", "DescribeTaskSets"))?;
    Ok(out.task_sets().iter().map(TaskSetView::from_sdk).collect())
}

/// What a new task set runs, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTaskSet {
    pub cluster: String,
    pub service: String,
    pub task_definition: String,
    /// The release id: how a later invocation recognises the task set.
    pub external_id: String,
    pub target_group: String,
    pub container_name: String,
    pub container_port: i32,
    /// `FARGATE`, `EC2`, … (`None`: ECS's default).
    pub launch_type: Option<String>,
    /// `awsvpc` networking; empty for other network modes.
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
}

/// `CreateTaskSet` at 100% of the service's desired count, registered with one target group.
pub async fn create_task_set(ecs: &Client, new: &NewTaskSet) -> Result<TaskSetView, AwsError> {
    let mut request = ecs
        .create_task_set()
        .cluster(&new.cluster)
        .service(&new.service)
        .task_definition(&new.task_definition)
        .external_id(&new.external_id)
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(&new.target_group)
                .container_name(&new.container_name)
                .container_port(new.container_port)
                .build(),
        )
        .scale(percent(100.0))
        // Idempotency token: a retried request (the SDK's own retries) creates one task set.
        .client_token(client_token(&new.external_id, &new.target_group));
    if let Some(launch_type) = &new.launch_type {
        request = request.launch_type(LaunchType::from(launch_type.as_str()));
    }
    if !new.subnets.is_empty() {
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(new.subnets.clone()))
            .set_security_groups(
                (!new.security_groups.is_empty()).then(|| new.security_groups.clone()),
            )
            .assign_public_ip(if new.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| AwsError {
                service: "ECS",
                operation: "CreateTaskSet",
                code: None,
                message: format!("the network configuration cannot be built: {e}"),
                retryable: false,
                source: Box::new(e),
            })?;
        request = request.network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(vpc)
                .build(),
        );
    }
    let out = request
        .send()
        .await
        .map_err(aws_err("ECS", "CreateTaskSet"))?;
    out.task_set()
        .map(TaskSetView::from_sdk)
        .ok_or_else(|| AwsError {
            service: "ECS",
            operation: "CreateTaskSet",
            code: None,
            message: "the answer names no task set".into(),
            retryable: true,
            source: "no taskSet in the CreateTaskSet answer".into(),
        })
}

/// `UpdateTaskSet`: the task set's share of the service's desired count.
pub async fn scale_task_set(
    ecs: &Client,
    cluster: &str,
    service: &str,
    task_set: &str,
    percent_of_desired: f64,
) -> Result<(), AwsError> {
    ecs.update_task_set()
        .cluster(cluster)
        .service(service)
        .task_set(task_set)
        .scale(percent(percent_of_desired))
        .send()
        .await
        .map_err(aws_err("ECS", "UpdateTaskSet"))?;
    Ok(())
}

/// `UpdateServicePrimaryTaskSet`.
pub async fn make_primary(
    ecs: &Client,
    cluster: &str,
    service: &str,
    task_set: &str,
) -> Result<(), AwsError> {
    ecs.update_service_primary_task_set()
        .cluster(cluster)
        .service(service)
        .primary_task_set(task_set)
        .send()
        .await
        .map_err(aws_err("ECS", "UpdateServicePrimaryTaskSet"))?;
    Ok(())
}

/// `DeleteTaskSet`; a task set that is gone already is deleted (`Ok(false)`).
pub async fn delete_task_set(
    ecs: &Client,
    cluster: &str,
    service: &str,
    task_set: &str,
) -> Result<bool, AwsError> {
    match ecs
        .delete_task_set()
        .cluster(cluster)
        .service(service)
        .task_set(task_set)
        .send()
        .await
        .map_err(aws_err("ECS", "DeleteTaskSet"))
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_code("TaskSetNotFoundException") => Ok(false),
        Err(e) => Err(e),
    }
}

fn percent(value: f64) -> Scale {
    Scale::builder()
        .value(value)
        .unit(ScaleUnit::Percent)
        .build()
}

/// At most 36 ASCII characters, the same for the same release and target group.
fn client_token(external_id: &str, target_group: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{external_id}\n{target_group}").as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::operation::delete_task_set::DeleteTaskSetError;
    use aws_sdk_ecs::operation::describe_task_sets::DescribeTaskSetsOutput;
    use aws_sdk_ecs::types::error::TaskSetNotFoundException;
    use aws_smithy_mocks::{Rule, RuleMode, mock};

    use super::*;
    use crate::aws::mock::mock_client;

    fn mock_ecs(rules: &[&Rule]) -> Client {
        mock_client!(aws_sdk_ecs, RuleMode::Sequential, rules)
    }

    #[tokio::test]
    async fn task_sets_read_with_their_target_groups_scale_and_stability() {
        let rule = mock!(Client::describe_task_sets).then_output(|| {
            DescribeTaskSetsOutput::builder()
                .task_sets(
                    TaskSet::builder()
                        .task_set_arn("arn:aws:ecs:eu-west-1:1:task-set/c/s/ecs-svc/1")
                        .id("ecs-svc/1")
                        .external_id("rel-1")
                        .status("PRIMARY")
                        .stability_status(StabilityStatus::SteadyState)
                        .scale(percent(100.0))
                        .computed_desired_count(2)
                        .running_count(2)
                        .load_balancers(LoadBalancer::builder().target_group_arn("tg-blue").build())
                        .build(),
                )
                .task_sets(
                    TaskSet::builder()
                        .task_set_arn("arn:aws:ecs:eu-west-1:1:task-set/c/s/ecs-svc/2")
                        .status("ACTIVE")
                        .stability_status(StabilityStatus::Stabilizing)
                        .scale(percent(0.0))
                        .build(),
                )
                .build()
        });
        let ecs = mock_ecs(&[&rule]);
        let sets = task_sets(&ecs, "c", "s").await.unwrap();
        assert_eq!(sets.len(), 2);
        assert!(sets[0].is_primary() && sets[0].steady && sets[0].serves("tg-blue"));
        assert_eq!(sets[0].external_id.as_deref(), Some("rel-1"));
        assert_eq!(sets[0].running_count, 2);
        assert!(!sets[1].steady && sets[1].scale_percent == 0.0 && sets[1].external_id.is_none());
    }

    #[tokio::test]
    async fn deleting_a_task_set_that_is_gone_is_not_an_error() {
        let rule = mock!(Client::delete_task_set).then_error(|| {
            DeleteTaskSetError::TaskSetNotFoundException(
                TaskSetNotFoundException::builder()
                    .message("The specified task set does not exist.")
                    .meta(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("TaskSetNotFoundException")
                            .message("The specified task set does not exist.")
                            .build(),
                    )
                    .build(),
            )
        });
        let ecs = mock_ecs(&[&rule]);
        assert!(!delete_task_set(&ecs, "c", "s", "ts").await.unwrap());
    }

    #[test]
    fn the_client_token_is_stable_and_short() {
        let a = client_token("rel-1", "tg");
        assert_eq!(a, client_token("rel-1", "tg"));
        assert_ne!(a, client_token("rel-2", "tg"));
        assert!(a.len() <= 36);
    }
}
