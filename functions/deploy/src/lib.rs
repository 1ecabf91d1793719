//! The deploy action: a CodePipeline Lambda-invoke action that executes the release's approved
//! change sets in an environment's account and waits, across invocations, until every stack
//! settles.
//!
//! Each invocation reads the change sets the change-set action recorded for the release in this
//! environment (they must exist and come from this pipeline execution: they are what was
//! approved), assumes the deploy role in the environment's account and, for each stack:
//! - a `Ready` change set is executed unless CloudFormation says it already is being or was
//!   executed (`EXECUTE_IN_PROGRESS`, `EXECUTE_COMPLETE`, `EXECUTE_FAILED`), so a duplicated
//!   invocation or a retried stage never executes it twice;
//! - a `NoChanges` stack is left alone (it only has to be stable).
//!
//! Then it reads each stack (`DescribeStacks`). While one is in progress the action answers
//! with a continuation token (never a sleep) up to `SHIPGATE_DEPLOY_TIMEOUT_SECONDS`; a stack
//! rolling back or rolled back fails the action with CloudFormation's reasons (the first failed
//! resources of its latest operation, from `DescribeStackEvents`). When every stack settled,
//! the stacks' `Shipgate*` outputs become the action's output variables
//! ([`progress::merge_outputs`]), and the ones the traffic actions move and watch (listeners,
//! target groups, service, Lambda alias, alarms) are recorded for them in the table
//! ([`StageTargets`](shipgate::store::StageTargets), [`progress::stage_targets`]): as variables in
//! the traffic actions' `UserParameters`, resolved ARNs would exceed CodePipeline's 1,000
//! characters per configuration value.
//!
//! ECS blue/green: when the outputs name an ECS service (`ShipgateService`, deployment
//! controller `EXTERNAL`), the action then places the release's task definition as a task set
//! behind the idle target group of the production listener (`CreateTaskSet`, `externalId` =
//! the release id, so it is found again rather than created twice), points the test listener
//! at that target group, and waits (continuations) until the task set is steady; the checks
//! that follow test it on the test listener. It records green and blue
//! ([`PreparedGreen`](shipgate::store::PreparedGreen)) for the traffic action, which drains
//! blue after the bake. See [`green`].

mod config;
mod error;
pub mod green;
mod parameters;
mod progress;

pub use config::DeployConfig;
pub use error::DeployError;
pub use parameters::{ActionParameters, Target};
pub use progress::{
    OUTPUT_PREFIX, Phase, Settlement, StackView, decide, failure_causes, failure_message,
    merge_outputs, phase, stage_targets,
};

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use shipgate::aws::cloudformation::{
    ExecutionStatus, describe_stack, execute_change_set, find_change_set, last_operation_events,
};
use shipgate::aws::sts::Sessions;
use shipgate::error::{AwsError, RoleCallError};
use shipgate::job::{Call, JobAction, Outcome, ParameterError, RetryLimit, Scope, Verdict};
use shipgate::metrics::{MetricName, StageMetrics};
use shipgate::store::{ChangeSetOutcome, PreparedGreen, StackChanges, Store};
use tracing::{info, warn};

use crate::green::{EcsOutputs, GreenInput, GreenStep, decide_green};
use shipgate::job::minutes;

/// The clients the action uses, built once per process. The environment account's
/// CloudFormation client is built per invocation, from the role its parameters name.
#[derive(Debug, Clone)]
pub struct DeployFunction {
    pub config: DeployConfig,
    /// The environment accounts' roles, assumed from the function's own (tooling) account.
    pub sessions: Sessions,
    pub store: Store,
}

shipgate::function!(DeployFunction, DeployConfig);

impl JobAction for DeployFunction {
    const NAME: &'static str = "deploy";
    const PARAMETERS: &'static str = "environment, roleArn, releaseId and executionId";
    type Parameters = ActionParameters;
    type Target = Target;
    /// Every invocation reads the stacks and task sets again: nothing to carry.
    type State = ();
    type Error = DeployError;

    fn target(&self, parameters: ActionParameters) -> Result<Target, ParameterError> {
        parameters.target()
    }

    fn scope(target: &Target) -> Scope<'_> {
        target.scope()
    }

    fn retry_limit(&self) -> RetryLimit {
        self.config.timeout
    }

    fn finished(&self, target: &Target, outcome: &Outcome) {
        let metrics = StageMetrics::new(
            &target.environment,
            &target.release_id,
            &target.execution_id,
        );
        match outcome {
            Outcome::Done { .. } => metrics.count(MetricName::DeploysSucceeded),
            Outcome::Failed { .. } => metrics.count(MetricName::DeploysFailed),
            Outcome::Continue { .. } => {}
        }
    }

    async fn work(&self, call: Call<'_, Target, ()>) -> Result<Verdict<()>, DeployError> {
        // Boxed: the future is deep enough to overflow the compiler's layout query depth when
        // nested in the runtime's service future.
        Box::pin(self.deploy(&call)).await
    }
}

impl DeployFunction {
    /// Builds the clients from one SDK configuration.
    pub fn new(config: DeployConfig, sdk: &SdkConfig) -> Self {
        Self {
            store: Store::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone()),
            sessions: Sessions::new(sdk, "deploy"),
            config,
        }
    }

    /// Executes what is to execute, reads the stacks, and when they settled places green.
    async fn deploy(&self, call: &Call<'_, Target, ()>) -> Result<Verdict<()>, DeployError> {
        let target = call.target;
        let waited = call.waited_seconds();
        let (stacks, sdk) = self.look(target, !call.is_first()).await?;
        let settled = decide(
            &target.environment,
            &target.account_id,
            &stacks,
            waited,
            self.config.timeout.seconds,
        );
        let (summary, mut variables) = match settled {
            Settlement::Done { summary, variables } => (summary, variables),
            Settlement::Wait => {
                info!(waited, outcome = "continue", "stacks still updating");
                return Ok(Verdict::Continue(()));
            }
            Settlement::Fail { message } => return Ok(Verdict::fail(message)),
        };
        // Before green, which may take more invocations: the traffic actions need the record
        // whatever the release holds (a release without a Lambda function included).
        let targets = stage_targets(target, &variables, call.now_ms);
        self.store.put_stage_targets(&targets).await?;
        info!(
            alarms = targets.alarms.len(),
            listener = targets.prod_listener.is_some(),
            lambda = targets.lambda_function.is_some(),
            outcome = "targets_recorded",
            "stage targets recorded for the traffic actions"
        );
        let ecs = match EcsOutputs::from_variables(&target.environment, &variables) {
            Ok(None) => {
                return Ok(Verdict::Done {
                    summary,
                    output_variables: variables,
                });
            }
            Ok(Some(ecs)) => ecs,
            Err(message) => return Ok(Verdict::fail(message)),
        };
        match self
            .place_green(target, &sdk, &ecs, call.now_seconds())
            .await?
        {
            Placed::Ready {
                summary: green,
                variables: more,
            } => {
                variables.extend(more);
                Ok(Verdict::Done {
                    summary: format!("{summary}; {green}"),
                    output_variables: variables,
                })
            }
            Placed::Wait => Ok(Verdict::Continue(())),
            Placed::Fail(message) => Ok(Verdict::fail(message)),
        }
    }

    /// Places the release's task set behind the idle target group and points the test
    /// listener at it, as far as it goes in one invocation: each round reads the task sets and
    /// the test listener (fetch), asks [`decide_green`] for the next step (decide) and takes it
    /// ([`Self::apply_green`]), so a retried or crashed invocation neither creates twice nor
    /// skips a step.
    async fn place_green(
        &self,
        target: &Target,
        sdk: &SdkConfig,
        o: &EcsOutputs,
        now: i64,
    ) -> Result<Placed, DeployError> {
        let clients = GreenClients {
            ecs: aws_sdk_ecs::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
        };
        let aws = green_error(target);
        let weights = shipgate::aws::elbv2::listener_weights(&clients.elb, &o.prod_listener)
            .await
            .map_err(&aws)?;
        let (live, idle) = match shipgate::aws::elbv2::live_target_group(
            &weights,
            &o.blue_target_group,
            &o.green_target_group,
        ) {
            Ok(pair) => pair,
            Err(reason) => {
                return Ok(Placed::Fail(format!(
                    "{}: the production listener {}: {reason}",
                    target.environment, o.prod_listener
                )));
            }
        };
        let now_ms = now.saturating_mul(1000);
        let timeout_ms = i64::try_from(self.config.task_set_timeout_seconds)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        let groups = TargetGroups {
            live: &live,
            idle: &idle,
        };
        // Create, scale up, point the test listener: one of each at most, then a verdict.
        for _ in 0..4 {
            let task_sets = shipgate::aws::ecs::task_sets(&clients.ecs, &o.cluster, &o.service)
                .await
                .map_err(&aws)?;
            let test_weights =
                shipgate::aws::elbv2::listener_weights(&clients.elb, &o.test_listener)
                    .await
                    .map_err(&aws)?;
            let step = decide_green(GreenInput {
                release_id: &target.release_id,
                live_target_group: &live,
                idle_target_group: &idle,
                task_sets: &task_sets,
                test_listener: &test_weights,
                now_ms,
                timeout_ms,
            });
            match self
                .apply_green(target, o, &clients, groups, step, now_ms)
                .await?
            {
                GreenApplied::Changed => {}
                GreenApplied::Settled(placed) => return Ok(placed),
            }
        }
        Ok(Placed::Wait)
    }

    /// Takes one step of placing green.
    async fn apply_green(
        &self,
        target: &Target,
        o: &EcsOutputs,
        clients: &GreenClients,
        groups: TargetGroups<'_>,
        step: GreenStep,
        now_ms: i64,
    ) -> Result<GreenApplied, DeployError> {
        let aws = green_error(target);
        let TargetGroups { live, idle } = groups;
        match step {
            GreenStep::Create => {
                let created = shipgate::aws::ecs::create_task_set(
                    &clients.ecs,
                    &shipgate::aws::ecs::NewTaskSet {
                        cluster: o.cluster.clone(),
                        service: o.service.clone(),
                        task_definition: o.task_definition.clone(),
                        external_id: target.release_id.clone(),
                        target_group: idle.to_owned(),
                        container_name: o.container_name.clone(),
                        container_port: o.container_port,
                        launch_type: o.launch_type.clone(),
                        subnets: o.subnets.clone(),
                        security_groups: o.security_groups.clone(),
                        assign_public_ip: false,
                    },
                )
                .await
                .map_err(&aws)?;
                info!(task_set = %created.arn, target_group = %idle, task_definition = %o.task_definition, outcome = "task_set_created", "green task set created");
                Ok(GreenApplied::Changed)
            }
            GreenStep::ScaleUp { green } => {
                shipgate::aws::ecs::scale_task_set(
                    &clients.ecs,
                    &o.cluster,
                    &o.service,
                    &green.arn,
                    100.0,
                )
                .await
                .map_err(&aws)?;
                info!(task_set = %green.arn, from = green.scale_percent, outcome = "task_set_scaled_up", "green task set scaled back to 100%");
                Ok(GreenApplied::Changed)
            }
            GreenStep::PointTestListener => {
                shipgate::aws::elbv2::forward_to(&clients.elb, &o.test_listener, idle)
                    .await
                    .map_err(&aws)?;
                info!(listener = %o.test_listener, target_group = %idle, outcome = "test_listener_pointed", "test listener forwards to green");
                Ok(GreenApplied::Changed)
            }
            GreenStep::Wait { green } => {
                info!(task_set = %green.arn, steady = green.steady, running = green.running_count, desired = green.computed_desired_count, pending = green.pending_count, outcome = "continue", "green task set starting");
                Ok(GreenApplied::Settled(Placed::Wait))
            }
            GreenStep::TimedOut { green, waited_ms } => {
                Ok(GreenApplied::Settled(Placed::Fail(format!(
                    "{}: the new version's task set {} ({}) is not steady {} after its last \
                     change (SHIPGATE_TASK_SET_TIMEOUT_SECONDS): {} of {} tasks running, {} \
                     pending; look at service {}'s events in account {} (image, health \
                     check, capacity), then retry the stage",
                    target.environment,
                    green.arn,
                    green.task_definition,
                    minutes(waited_ms / 1000),
                    green.running_count,
                    green.computed_desired_count,
                    green.pending_count,
                    o.service,
                    target.account_id
                ))))
            }
            GreenStep::Refuse { reason } => Ok(GreenApplied::Settled(Placed::Fail(format!(
                "{}: service {}: {reason}",
                target.environment, o.service
            )))),
            GreenStep::AlreadyLive { green } => {
                let facts = GreenFacts {
                    green: &green.arn,
                    green_target_group: live,
                    blue: None,
                    live_target_group: live,
                    already_live: true,
                };
                self.record_green(target, o, facts, now_ms).await?;
                info!(task_set = %green.arn, target_group = %live, outcome = "already_live", "the release's task set is live already");
                Ok(GreenApplied::Settled(Placed::Ready {
                    summary: format!(
                        "task set {} of this release serves the live target group already",
                        green.id
                    ),
                    variables: green_variables(&green.arn, None),
                }))
            }
            GreenStep::Ready { green, blue, stale } => {
                for leftover in &stale {
                    // Task sets of rolled-back releases, carrying no tasks: not worth failing a
                    // deployment over.
                    match shipgate::aws::ecs::delete_task_set(
                        &clients.ecs,
                        &o.cluster,
                        &o.service,
                        &leftover.arn,
                    )
                    .await
                    {
                        Ok(_) => {
                            info!(task_set = %leftover.arn, outcome = "stale_task_set_deleted", "leftover task set deleted");
                        }
                        Err(e) => {
                            warn!(task_set = %leftover.arn, error = %e, "could not delete a leftover task set");
                        }
                    }
                }
                let blue_arn = blue.as_ref().map(|b| b.arn.as_str());
                let facts = GreenFacts {
                    green: &green.arn,
                    green_target_group: idle,
                    blue: blue_arn,
                    live_target_group: live,
                    already_live: false,
                };
                self.record_green(target, o, facts, now_ms).await?;
                info!(task_set = %green.arn, blue = blue_arn.unwrap_or("-"), target_group = %idle, running = green.running_count, outcome = "green_ready", "green task set steady; test listener on it");
                Ok(GreenApplied::Settled(Placed::Ready {
                    summary: format!(
                        "green task set {} steady ({} tasks) behind {}, test listener on it",
                        green.id,
                        green.running_count,
                        short_name(idle)
                    ),
                    variables: green_variables(&green.arn, blue_arn),
                }))
            }
        }
    }

    /// Hands green and blue over to the traffic action (see [`PreparedGreen`]).
    async fn record_green(
        &self,
        target: &Target,
        o: &EcsOutputs,
        facts: GreenFacts<'_>,
        now_ms: i64,
    ) -> Result<(), DeployError> {
        let record = PreparedGreen {
            deployment_id: shipgate::deploy::deployment_id(
                &target.release_id,
                &target.environment,
                &target.execution_id,
            ),
            release_id: target.release_id.clone(),
            environment: target.environment.clone(),
            execution_id: target.execution_id.clone(),
            cluster: o.cluster.clone(),
            service: o.service.clone(),
            task_definition: o.task_definition.clone(),
            green_task_set: facts.green.to_owned(),
            green_target_group: facts.green_target_group.to_owned(),
            blue_task_set: facts.blue.map(str::to_owned),
            live_target_group: facts.live_target_group.to_owned(),
            test_listener: o.test_listener.clone(),
            already_live: facts.already_live,
            prepared_at_ms: now_ms,
        };
        self.store.put_prepared_green(&record).await?;
        Ok(())
    }

    /// Executes what is still to execute, then reads every stack. Also returns the
    /// environment account's configuration, for what comes after the stacks.
    async fn look(
        &self,
        target: &Target,
        continuing: bool,
    ) -> Result<(Vec<StackView>, SdkConfig), DeployError> {
        let changes = self
            .store
            .list_stack_changes(&target.release_id, &target.environment)
            .await?;
        check_changes(target, &changes)?;
        let sdk = self.assume(target).await?;
        let cf = aws_sdk_cloudformation::Client::new(&sdk);
        for change in &changes {
            if change.outcome == ChangeSetOutcome::Ready {
                self.execute_once(&cf, target, change, continuing).await?;
            } else {
                info!(stack = %change.stack_name, outcome = "skipped", "no changes to execute");
            }
        }
        let mut stacks = Vec::with_capacity(changes.len());
        for change in &changes {
            let cfn = cloudformation_error(target, &change.stack_name);
            let state = describe_stack(&cf, &change.stack_name)
                .await
                .map_err(&cfn)?;
            let mut view = StackView {
                stack_name: change.stack_name.clone(),
                executed: change.outcome == ChangeSetOutcome::Ready,
                status: state.as_ref().map(|s| s.status.clone()),
                status_reason: state.as_ref().and_then(|s| s.status_reason.clone()),
                outputs: state.map(|s| s.outputs).unwrap_or_default(),
                events: Vec::new(),
            };
            if view.phase() == Phase::Failed && view.status.is_some() {
                view.events = last_operation_events(&cf, &change.stack_name)
                    .await
                    .map_err(&cfn)?;
            }
            info!(stack = %view.stack_name, status = view.status.as_deref().unwrap_or("missing"), "stack read");
            stacks.push(view);
        }
        Ok((stacks, sdk))
    }

    /// Executes the stack's change set unless CloudFormation says it is being or was executed.
    async fn execute_once(
        &self,
        cf: &aws_sdk_cloudformation::Client,
        target: &Target,
        change: &StackChanges,
        continuing: bool,
    ) -> Result<(), DeployError> {
        let stack = &change.stack_name;
        let change_set = change
            .change_set_id
            .as_deref()
            .unwrap_or(&change.change_set_name);
        let cfn = cloudformation_error(target, stack);
        let Some(state) = find_change_set(cf, stack, change_set).await.map_err(&cfn)? else {
            if continuing {
                // An earlier invocation of this job executed it (AWS may remove change sets of
                // a stack once one is executed): the stack's status says how it went.
                return Ok(());
            }
            return Err(DeployError::ChangeSetGone {
                environment: target.environment.clone(),
                stack: stack.clone(),
                change_set: change.change_set_name.clone(),
            });
        };
        match &state.execution_status {
            Some(ExecutionStatus::Available) => {}
            Some(
                ExecutionStatus::ExecuteInProgress
                | ExecutionStatus::ExecuteComplete
                | ExecutionStatus::ExecuteFailed,
            ) => {
                info!(stack = %stack, change_set = %change.change_set_name, outcome = "already_executed", "change set already executed");
                return Ok(());
            }
            other => {
                return Err(DeployError::NotExecutable {
                    environment: target.environment.clone(),
                    stack: stack.clone(),
                    change_set: change.change_set_name.clone(),
                    status: execution_status_name(other.as_ref()),
                    reason: state.status_reason.clone(),
                });
            }
        }
        match execute_change_set(cf, stack, change_set).await {
            Ok(()) => {
                info!(stack = %stack, change_set = %change.change_set_name, outcome = "executed", "change set executed");
                Ok(())
            }
            // Another invocation executed it between our look and our call.
            Err(err) if err.is_code("InvalidChangeSetStatus") => {
                let again = find_change_set(cf, stack, change_set).await.map_err(&cfn)?;
                match again.and_then(|s| s.execution_status) {
                    Some(
                        ExecutionStatus::ExecuteInProgress
                        | ExecutionStatus::ExecuteComplete
                        | ExecutionStatus::ExecuteFailed,
                    ) => Ok(()),
                    _ => Err(cfn(err)),
                }
            }
            Err(err) => Err(cfn(err)),
        }
    }

    /// The environment account's SDK configuration, as the deploy role.
    async fn assume(&self, target: &Target) -> Result<SdkConfig, DeployError> {
        self.sessions
            .config(&target.role_arn, &target.release_id)
            .await
            .map_err(|source| DeployError::AssumeRole {
                environment: target.environment.clone(),
                source,
            })
    }
}

/// What the deploy action found for green, recorded for the traffic action.
struct GreenFacts<'a> {
    green: &'a str,
    green_target_group: &'a str,
    blue: Option<&'a str>,
    live_target_group: &'a str,
    already_live: bool,
}

/// The environment account's clients that place green.
struct GreenClients {
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

/// The production listener's target groups: the one with traffic, the one green goes behind.
#[derive(Clone, Copy)]
struct TargetGroups<'a> {
    live: &'a str,
    idle: &'a str,
}

/// What one step of placing green did.
enum GreenApplied {
    /// Something changed: look again.
    Changed,
    /// Where placing green stands for this invocation.
    Settled(Placed),
}

/// Where placing green stands after one invocation.
enum Placed {
    /// Steady behind the idle target group, the test listener on it (or live already).
    Ready {
        summary: String,
        variables: BTreeMap<String, String>,
    },
    /// Still starting: a continuation.
    Wait,
    /// The action fails with this message.
    Fail(String),
}

/// `GreenTaskSet` and `BlueTaskSet` (empty for a service's first release): for the pipeline's
/// later actions and for people.
fn green_variables(green: &str, blue: Option<&str>) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("GreenTaskSet".to_owned(), green.to_owned()),
        (
            "BlueTaskSet".to_owned(),
            blue.unwrap_or_default().to_owned(),
        ),
    ])
}

/// `targetgroup/<name>/…` of a target group ARN, for the summary.
fn short_name(arn: &str) -> &str {
    arn.find("targetgroup/").map_or(arn, |i| &arn[i..])
}

fn cloudformation_error(target: &Target, stack: &str) -> impl Fn(AwsError) -> DeployError {
    let environment = target.environment.clone();
    let role_arn = target.role_arn.to_string();
    let context = format!(" for stack {stack}");
    move |source| {
        DeployError::CloudFormation(RoleCallError::new(
            &environment,
            &role_arn,
            &context,
            source,
        ))
    }
}

fn green_error(target: &Target) -> impl Fn(AwsError) -> DeployError {
    let environment = target.environment.clone();
    let role_arn = target.role_arn.to_string();
    move |source| {
        DeployError::Green(RoleCallError::new(
            &environment,
            &role_arn,
            " (placing the new version's task set)",
            source,
        ))
    }
}

/// The recorded change sets must exist, come from this execution and live in the role's account.
fn check_changes(target: &Target, changes: &[StackChanges]) -> Result<(), DeployError> {
    if changes.is_empty() {
        return Err(DeployError::NoChangeSets {
            release_id: target.release_id.clone(),
            environment: target.environment.clone(),
        });
    }
    for change in changes {
        if change.execution_id != target.execution_id {
            return Err(DeployError::OtherExecution {
                release_id: target.release_id.clone(),
                environment: target.environment.clone(),
                recorded: change.execution_id.clone(),
                execution_id: target.execution_id.clone(),
            });
        }
        if change.account_id != target.account_id {
            return Err(DeployError::OtherAccount {
                environment: target.environment.clone(),
                stack: change.stack_name.clone(),
                recorded: change.account_id.clone(),
                account: target.account_id.clone(),
            });
        }
    }
    Ok(())
}

fn execution_status_name(status: Option<&ExecutionStatus>) -> String {
    match status {
        Some(ExecutionStatus::Unavailable) => "UNAVAILABLE".into(),
        Some(ExecutionStatus::Available) => "AVAILABLE".into(),
        Some(ExecutionStatus::ExecuteInProgress) => "EXECUTE_IN_PROGRESS".into(),
        Some(ExecutionStatus::ExecuteComplete) => "EXECUTE_COMPLETE".into(),
        Some(ExecutionStatus::ExecuteFailed) => "EXECUTE_FAILED".into(),
        Some(ExecutionStatus::Obsolete) => "OBSOLETE".into(),
        Some(ExecutionStatus::Other(s)) if !s.is_empty() => s.clone(),
        _ => "without an execution status".into(),
    }
}

#[cfg(test)]
mod tests;
