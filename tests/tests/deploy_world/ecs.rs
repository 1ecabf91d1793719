//! ECS blue/green with task sets against the local stack: the int account's platform from
//! `environment.yaml` (cluster, ALB with its `:80` production and `:9000` test listeners, blue and
//! green target groups), the sample app's own template (`examples/orders/templates/service.yaml`,
//! an `EXTERNAL` service) deployed through a change set, and the deploy and traffic actions wired
//! to the stack, the traffic action's clock in the test's hands (`run_at`).
//!
//! What moto (5.2, as pinned) does here, and what `local/moto-patches` restores:
//! - CloudFormation cannot create an `EXTERNAL` service without a task definition and forgets
//!   the controller: patched (fix 5).
//! - A task set is `STEADY_STATE` the moment it is created, with no counts: patched to stabilise
//!   on its first `DescribeTaskSets` (fix 6), as tasks take a while to start in AWS.
//! - `CreateTaskSet` with the default launch type (EC2) needs container instances; the sample
//!   app names `FARGATE` (`ShipgateLaunchType`), as its task definition requires.
//! - `DeleteTaskSet` removes the task set at once (AWS shows it `DRAINING` for a while: the
//!   product counts a draining task set as gone, so both read the same).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use aws_sdk_cloudformation::types::{ChangeSetType, Parameter};
use serde_json::{Value, json};
use shipgate::aws::ecs::TaskSetView;
use shipgate::changes::ChangeSummary;
use shipgate::job::{Job, JobAction, Outcome};
use shipgate::store::{ChangeSetOutcome, Deployment, StackChanges, Store};
use shipgate_deploy::{DeployConfig, DeployFunction};
use shipgate_local::accounts;
use shipgate_local::stack::Stack;
use shipgate_tests::jobs::{JobEvent, run_to_end};
use shipgate_tests::releases::PipelineRelease as Release;
use shipgate_tests::support::{in_account, start_stack, store};
use shipgate_traffic::{TrafficConfig, TrafficFunction};

use crate::deploy_world::{configure, function_env};

pub const STACK: &str = "orders-int-service";

pub struct EcsWorld {
    pub stack: Stack,
    pub deploy: DeployFunction,
    pub traffic: TrafficFunction,
    pub store: Store,
    pub cf: aws_sdk_cloudformation::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub ecs: aws_sdk_ecs::Client,
}

impl EcsWorld {
    pub async fn start(name: &str) -> Result<Self> {
        let stack = start_stack(name, |o| {
            configure(o);
            o.environment_template =
                Some(shipgate_local::process::project_root().join("environment.yaml"));
        })
        .await?;
        let env = function_env(&stack)?;
        let int = in_account(&stack, accounts::INT).await;
        Ok(Self {
            deploy: DeployFunction::new(DeployConfig::from_env(&env)?, &stack.sdk),
            traffic: TrafficFunction::new(TrafficConfig::from_env(&env)?, &stack.sdk),
            store: store(&stack)?,
            cf: aws_sdk_cloudformation::Client::new(&int),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&int),
            ecs: aws_sdk_ecs::Client::new(&int),
            stack,
        })
    }

    pub async fn stop(self) {
        self.stack.stop().await;
    }

    /// What the change-set action leaves for an approved release of `version`: the sample
    /// app's change set in int (a `CREATE` the first time), recorded with the release.
    pub async fn approved(&self, version: &str) -> Result<Release> {
        let release = Release::new();
        let exists = self
            .cf
            .describe_stacks()
            .stack_name(STACK)
            .send()
            .await
            .is_ok();
        let kind = if exists {
            ChangeSetType::Update
        } else {
            ChangeSetType::Create
        };
        let template = std::fs::read_to_string(
            shipgate_local::process::project_root().join("examples/orders/templates/service.yaml"),
        )?;
        let name = format!("shipgate-{}", release.release_id);
        let parameter = |k: &str, v: &str| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        };
        let out = self
            .cf
            .create_change_set()
            .stack_name(STACK)
            .change_set_name(&name)
            .change_set_type(kind.clone())
            .template_body(template)
            .parameters(parameter(
                "ImageUri",
                &format!("registry.int/orders@sha256:{}", "ab".repeat(32)),
            ))
            .parameters(parameter("AppVersion", version))
            .parameters(parameter("Environment", "int"))
            .send()
            .await
            .context("CreateChangeSet")?;
        self.store
            .put_stack_changes(&StackChanges {
                release_id: release.release_id.clone(),
                environment: "int".into(),
                execution_id: release.execution_id.clone(),
                template_path: "templates/service.yaml".into(),
                stack_name: STACK.into(),
                account_id: accounts::INT.into(),
                change_set_name: name,
                change_set_id: out.id().map(str::to_owned),
                creates_stack: kind == ChangeSetType::Create,
                outcome: ChangeSetOutcome::Ready,
                summary: ChangeSummary::default(),
                created_at: "2026-11-26T10:00:00Z".into(),
            })
            .await?;
        Ok(release)
    }

    fn job(&self, function: &str, parameters: &Value, continuation: Option<&str>) -> Result<Job> {
        JobEvent::new(function, parameters.clone())
            .continuation(continuation)
            .job()
    }

    /// Runs the deploy action as CodePipeline does (again with the token while it continues):
    /// its output variables, and how many invocations it took.
    pub async fn deploy_to_end(&self, r: &Release) -> Result<(BTreeMap<String, String>, u32)> {
        let parameters = json!({
            "environment": "int",
            "roleArn": accounts::deploy_role_arn(accounts::INT),
            "releaseId": r.release_id,
            "executionId": r.execution_id,
        });
        let (outcome, invocations) = run_to_end(6, |token| {
            let job = self.job("DeployFunction", &parameters, token.as_deref());
            async move { Ok(self.deploy.run(&job?).await) }
        })
        .await?;
        match outcome {
            Outcome::Done {
                output_variables, ..
            } => Ok((output_variables, invocations)),
            failed => bail!("the deploy action failed: {failed:?}"),
        }
    }

    /// The traffic action's parameters, as the pipeline writes them: the listener, its target
    /// groups and the service come from what the deploy action recorded for the release's
    /// execution.
    pub fn traffic_parameters(&self, r: &Release, plan: &str) -> Value {
        json!({
            "environment": "int",
            "roleArn": accounts::deploy_role_arn(accounts::INT),
            "releaseId": r.release_id,
            "executionId": r.execution_id,
            "plan": plan,
            "target": "alb_listener",
        })
    }

    pub async fn traffic_at(&self, parameters: &Value, now_ms: i64) -> Result<Outcome> {
        let job = self.job("TrafficFunction", parameters, None)?;
        Ok(self.traffic.run_at(&job, now_ms).await)
    }

    pub async fn deployment(&self, r: &Release) -> Result<Deployment> {
        let id = shipgate::deploy::deployment_id(&r.release_id, "int", &r.execution_id);
        self.store
            .get_deployment(&id)
            .await?
            .context("the deployment record")
    }

    /// The share of `listener`'s traffic on `target_group`, in percent.
    pub async fn percent_on(&self, listener: &str, target_group: &str) -> Result<u8> {
        Ok(shipgate::aws::elbv2::percent_on(
            &self.weights(listener).await?,
            target_group,
        ))
    }

    /// The listener's weight on each target group.
    pub async fn weights(&self, listener: &str) -> Result<Vec<(String, i32)>> {
        Ok(shipgate::aws::elbv2::listener_weights(&self.elb, listener).await?)
    }

    pub async fn task_sets(&self, vars: &BTreeMap<String, String>) -> Result<Vec<TaskSetView>> {
        Ok(shipgate::aws::ecs::task_sets(
            &self.ecs,
            &vars["ShipgateCluster"],
            &vars["ShipgateService"],
        )
        .await?)
    }

    pub async fn deregistration_delay(&self, target_group: &str) -> Result<u32> {
        Ok(shipgate::aws::elbv2::deregistration_delay_seconds(&self.elb, target_group).await?)
    }
}
