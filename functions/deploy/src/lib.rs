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
//! ([`progress::merge_outputs`]).

mod config;
mod error;
mod parameters;
mod progress;

pub use config::DeployConfig;
pub use error::DeployError;
pub use parameters::{ActionParameters, ParameterError, Target, account_of_role, session_name};
pub use progress::{
    OUTPUT_PREFIX, Phase, Progress, StackView, Verdict, decide, failure_causes, failure_message,
    merge_outputs, phase,
};

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use shipgate::aws::cloudformation::{
    ExecutionStatus, describe_stack, execute_change_set, find_change_set, last_operation_events,
};
use shipgate::error::AwsError;
use shipgate::job::{Answer, Job, Outcome};
use shipgate::metrics::{MetricName, StageMetrics};
use shipgate::store::{ChangeSetOutcome, StackChanges, Store};
use time::OffsetDateTime;
use tracing::{Instrument, info, info_span, warn};

/// The clients the action uses, built once per process. The environment account's
/// CloudFormation client is built per invocation, from the role its parameters name.
#[derive(Debug, Clone)]
pub struct DeployFunction {
    pub config: DeployConfig,
    /// The function's own SDK configuration (tooling account): the base for assuming roles.
    pub sdk: SdkConfig,
    pub store: Store,
    pub codepipeline: aws_sdk_codepipeline::Client,
}

impl DeployFunction {
    /// Builds the clients from one SDK configuration.
    pub fn new(config: DeployConfig, sdk: &SdkConfig) -> Self {
        Self {
            store: Store::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone()),
            codepipeline: aws_sdk_codepipeline::Client::new(sdk),
            sdk: sdk.clone(),
            config,
        }
    }

    /// Handles one `CodePipeline.job` event and answers the job (success, continuation or
    /// failure). `Err` only when there is no job to answer or CodePipeline could not be told.
    pub async fn handle(&self, event: serde_json::Value) -> Result<Answer, DeployError> {
        let job = Job::from_event(event).map_err(DeployError::Event)?;
        // Boxed: the future is deep enough to overflow the compiler's layout query depth when
        // nested in the runtime's service future.
        let outcome = Box::pin(self.run(&job)).await;
        shipgate::job::answer(&self.codepipeline, &job, Ok::<_, DeployError>(outcome))
            .await
            .map_err(|e| DeployError::Answer(Box::new(e)))
    }

    /// Does the job's work and decides its outcome; every failure becomes `Outcome::Failed`
    /// with a message for the operator.
    pub async fn run(&self, job: &Job) -> Outcome {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let target = match job
            .parameters::<ActionParameters>()
            .map_err(DeployError::UserParameters)
            .and_then(|p| p.target().map_err(DeployError::from))
        {
            Ok(target) => target,
            Err(e) => return failed(&e),
        };
        let progress = match job.continuation::<Progress>() {
            Ok(progress) => progress,
            Err(e) => return failed(&DeployError::Continuation(e)),
        };
        let span = info_span!(
            "deploy",
            release_id = %target.release_id,
            execution_id = %target.execution_id,
            env = %target.environment,
            job_id = %job.id,
        );
        self.run_for(&target, progress, now).instrument(span).await
    }

    async fn run_for(&self, target: &Target, progress: Option<Progress>, now: i64) -> Outcome {
        let since = progress.map_or(now, |p| p.since);
        let polls = progress.map_or(0, |p| p.polls) + 1;
        let waited = now - since;
        let timeout = self.config.timeout_seconds;
        let next = Progress { since, polls };
        let metrics = StageMetrics::new(
            &target.environment,
            &target.release_id,
            &target.execution_id,
        );
        let e = match self.look(target, progress.is_some()).await {
            Ok(stacks) => {
                return match decide(
                    &target.environment,
                    &target.account_id,
                    &stacks,
                    waited,
                    timeout,
                ) {
                    Verdict::Done { summary, variables } => {
                        info!(polls, waited, outcome = "done", summary = %summary, "stacks deployed");
                        metrics.count(MetricName::DeploysSucceeded);
                        Outcome::Done {
                            summary,
                            output_variables: variables,
                        }
                    }
                    Verdict::Wait => {
                        info!(polls, waited, outcome = "continue", "stacks still updating");
                        Outcome::continue_with(&next)
                    }
                    Verdict::Fail { message } => {
                        warn!(polls, waited, outcome = "failed", reason = %message, "deployment failed");
                        metrics.count(MetricName::DeploysFailed);
                        Outcome::failed(message)
                    }
                };
            }
            Err(e) => e,
        };
        if !e.is_retryable() {
            metrics.count(MetricName::DeploysFailed);
            return failed(&e);
        }
        if !progress::out_of_time(waited, timeout) {
            warn!(polls, waited, error = %e, error_type = e.error_type(), outcome = "continue", "temporary failure; trying again on the next invocation");
            return Outcome::continue_with(&next);
        }
        let message = format!(
            "{}: gave up after {} (SHIPGATE_DEPLOY_TIMEOUT_SECONDS) of temporary failures; the \
             last: {e}",
            target.environment,
            progress::minutes(waited)
        );
        warn!(polls, waited, error_type = e.error_type(), outcome = "failed", reason = %message, "gave up");
        metrics.count(MetricName::DeploysFailed);
        Outcome::failed(message)
    }

    /// Executes what is still to execute, then reads every stack.
    async fn look(&self, target: &Target, continuing: bool) -> Result<Vec<StackView>, DeployError> {
        let changes = self
            .store
            .list_stack_changes(&target.release_id, &target.environment)
            .await?;
        check_changes(target, &changes)?;
        let cf = aws_sdk_cloudformation::Client::new(&self.assume(target).await?);
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
        Ok(stacks)
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

    /// The environment account's SDK configuration, credentials fetched now so that a refused
    /// `AssumeRole` is reported as such.
    async fn assume(&self, target: &Target) -> Result<SdkConfig, DeployError> {
        let assumed = shipgate::aws::assume_role(
            &self.sdk,
            &target.role_arn,
            &session_name(&target.release_id),
        )
        .await;
        let fail = |source: AwsError| DeployError::AssumeRole {
            role_arn: target.role_arn.clone(),
            environment: target.environment.clone(),
            source: Box::new(source),
        };
        let provider = assumed.credentials_provider().ok_or_else(|| {
            fail(AwsError {
                service: "STS",
                operation: "AssumeRole",
                code: None,
                message: "no credentials provider was configured".into(),
                retryable: false,
                source: "no credentials provider".into(),
            })
        })?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| fail(error::assume_role_error(e)))?;
        Ok(assumed
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build())
    }
}

fn cloudformation_error(target: &Target, stack: &str) -> impl Fn(AwsError) -> DeployError {
    let environment = target.environment.clone();
    let role_arn = target.role_arn.clone();
    let stack = stack.to_owned();
    move |source| DeployError::CloudFormation {
        environment: environment.clone(),
        stack: stack.clone(),
        role_arn: role_arn.clone(),
        source: Box::new(source),
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

fn failed(e: &DeployError) -> Outcome {
    warn!(error_type = e.error_type(), outcome = "failed", reason = %e, "deploy action failed");
    Outcome::Failed {
        kind: e.failure_kind(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests;
