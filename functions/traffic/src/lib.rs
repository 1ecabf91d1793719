//! The traffic action: a CodePipeline Lambda-invoke action that moves a release's traffic to the
//! new version step by step, per its deployment plan, and rolls it back when a watched alarm
//! fires.
//!
//! The parameters name the stage, the plan and the kind of target only; what the target is
//! (listener, target groups, ECS service or Lambda alias and version) and which alarms it
//! watches, the traffic action reads from what the stage's deploy action recorded
//! ([`StageTargets`](shipgate::store::StageTargets)) when it creates the deployment: resolved
//! into the parameters, those ARNs would exceed CodePipeline's 1,000 characters per action
//! configuration value. A Lambda target whose release has no function succeeds with nothing to
//! shift; no record (the deploy action did not succeed in this execution) fails the action.
//!
//! Each invocation is one short look, never a wait: it finds (or creates) the deployment's
//! record, reads where the alias or listener actually is (the record catches up after a crash
//! between a move and its record), checks the watched alarms, and then either rolls back, moves
//! traffic to where the plan says it should be by now (claiming the record first, so two
//! invocations never both move it), or holds. It answers `Continue` until the plan, bake
//! included, is over (CodePipeline invokes it again; the local stand-in after a short delay),
//! then succeeds. A deployment the rollback function rolled back fails the action with the
//! recorded reason. Time compression for demos comes only from the plan (`scale=`).
//!
//! ECS blue/green with task sets: when the deploy action placed the new version as a task set
//! behind the idle target group (its [`PreparedGreen`](shipgate::store::PreparedGreen) record),
//! the deployment carries both task sets, and the end of the bake does not end it: blue is
//! drained first (its target group's deregistration delay, as a persisted time to look again,
//! then `UpdateTaskSet` to 0%, `UpdateServicePrimaryTaskSet` green, `DeleteTaskSet` blue), each
//! step claimed like a traffic move and decided again from the task sets as they are
//! ([`next_drain_step`]). Alarms are watched until the bake ends, not during the drain: by then
//! blue may be gone, and traffic cannot go back to it.

mod moves;
mod parameters;

pub use moves::{
    Context, Effect, Move, Planned, Reply, describe, needs_drain_delay, plan_drain, plan_step,
};
pub use parameters::{
    ActionParameters, AlbListener, NewDeployment, Recorded, Target, TargetError, TargetKind,
    TargetOutputs, named_execution, recorded_target,
};

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use serde::{Deserialize, Serialize};
use shipgate::application::directory::{Directory, DirectoryError};
use shipgate::config::{ConfigError, Env};
use shipgate::deploy::{
    AccountClients, DeployError, Deployer, DeployerConfig, JobHandling, MAX_RACES, RollbackNext,
    RollbackOutcome, RollbackReport, RollbackRequest, Step, StepInput, aws_failure, decide_step,
    deployment_id, failure_message, held_by_other, next_drain_step, rfc3339, rollback_next,
};
use shipgate::job::{
    ActionError, Call, Job, JobAction, JobFailureKind, ParameterError, RetryLimit, Scope, Verdict,
};
use shipgate::metrics::{MetricName, StageMetrics};
use shipgate::plan::{DeploymentPlan, Position, position};
use shipgate::store::{
    Deployment, DeploymentCreation, DeploymentState, DrainStep, EcsTaskSets, TrafficTarget,
};
use tracing::{info, warn};

/// The action's configuration, read once from the environment.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// The table, the team's addresses and the lease, as the rollback function reads them.
    pub deployer: DeployerConfig,
    /// `SHIPGATE_TRAFFIC_RETRY_SECONDS` (default 900): how long temporary failures in a row
    /// (throttling, 5xx, an unreachable endpoint) are retried before the action fails, leaving
    /// the traffic where it is.
    pub retry: RetryLimit,
}

impl TrafficConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            deployer: DeployerConfig::from_env(env)?,
            retry: RetryLimit::from_env(env, "SHIPGATE_TRAFFIC_RETRY_SECONDS", 900)?,
        })
    }
}

/// Why the traffic action fails.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("deployment {id} records the plan {plan:?}, which does not parse: {reason}")]
    RecordedPlan {
        id: String,
        plan: String,
        reason: String,
    },
    #[error(
        "{environment}: the deploy action recorded no targets for release {release_id} in \
         execution {execution_id} ({key}): the stage's Deploy action must succeed in this \
         execution before its traffic actions run"
    )]
    NoStageTargets {
        environment: String,
        release_id: String,
        execution_id: String,
        /// The record's keys, for an operator looking at the table.
        key: String,
    },
    #[error(
        "{environment}: the targets the deploy action recorded for execution {execution_id} \
         cannot be used: {reason}"
    )]
    StageTargets {
        environment: String,
        execution_id: String,
        reason: TargetError,
    },
    #[error("{0}")]
    Deploy(#[from] DeployError),
    #[error("application {application:?} could not be looked up: {source}")]
    Application {
        application: String,
        #[source]
        source: Box<DirectoryError>,
    },
}

impl From<shipgate::store::StoreError> for TrafficError {
    fn from(e: shipgate::store::StoreError) -> Self {
        TrafficError::Deploy(e.into())
    }
}

impl ActionError for TrafficError {
    fn error_type(&self) -> &'static str {
        match self {
            TrafficError::RecordedPlan { .. } => "InvalidRecord",
            TrafficError::NoStageTargets { .. } => "NoStageTargets",
            TrafficError::StageTargets { .. } => "InvalidStageTargets",
            TrafficError::Deploy(e) => e.error_type(),
            TrafficError::Application { .. } => "ApplicationDirectory",
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            TrafficError::Deploy(e) => e.is_retryable(),
            TrafficError::Application { source, .. } => {
                matches!(source.as_ref(), DirectoryError::Unavailable(e) if e.retryable)
            }
            _ => false,
        }
    }

    fn failure_kind(&self) -> JobFailureKind {
        match self {
            TrafficError::Deploy(e) if e.is_access_denied() => JobFailureKind::PermissionError,
            _ => JobFailureKind::JobFailed,
        }
    }
}

/// What the continuation token carries: informative only, the record is the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub deployment_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step_at_ms: Option<i64>,
}

/// The job's deployment as the table has it, or what it will be created from.
enum Record {
    Existing(Box<Deployment>),
    ToCreate(Box<NewDeployment>),
}

/// What starting a deployment found.
enum Started {
    Deployment(Box<Deployment>),
    /// Nothing to deploy, or nothing that can be: the job's answer.
    Answer(Verdict<Progress>),
}

/// What applying a move led to.
enum Applied {
    Answer(Verdict<Progress>),
    /// The record changed (a race lost, or a drain step done): look again.
    LookAgain(Box<Deployment>),
}

/// The action, its clients built once per process.
#[derive(Debug, Clone)]
pub struct TrafficFunction {
    pub config: TrafficConfig,
    pub deployer: Deployer,
    /// The applications' declarations: each deployment's team.
    pub applications: Arc<Directory>,
}

shipgate::function!(TrafficFunction, TrafficConfig);

impl JobAction for TrafficFunction {
    const NAME: &'static str = "traffic";
    const PARAMETERS: &'static str =
        "environment, roleArn, releaseId, executionId, plan, name and target";
    type Parameters = ActionParameters;
    type Target = Target;
    type State = Progress;
    type Error = TrafficError;

    fn target(&self, parameters: ActionParameters) -> Result<Target, ParameterError> {
        parameters.target()
    }

    fn scope(target: &Target) -> Scope<'_> {
        target.stage.scope()
    }

    fn retry_limit(&self) -> RetryLimit {
        self.config.retry
    }

    async fn work(
        &self,
        call: Call<'_, Target, Progress>,
    ) -> Result<Verdict<Progress>, TrafficError> {
        let target = call.target;
        let id = deployment_id(
            &target.stage.release_id,
            &target.stage.environment,
            &target.execution_key(),
        );
        Box::pin(self.step(call.job, target, &id, call.now_ms)).await
    }
}

impl TrafficFunction {
    pub fn new(config: TrafficConfig, sdk: &SdkConfig) -> Self {
        Self {
            deployer: Deployer::from_config(sdk, "traffic", &config.deployer),
            applications: Arc::new(Directory::new(aws_sdk_ssm::Client::new(sdk))),
            config,
        }
    }

    /// Who is told if the deployment is rolled back: `environment`'s team as `application`
    /// declares it now, recorded on the deployment so that a rollback, which must be quick,
    /// reads nothing more. `None` (the team variables) for a release without an application.
    async fn team(
        &self,
        application: Option<&str>,
        environment: &str,
    ) -> Result<Option<Vec<String>>, TrafficError> {
        let Some(name) = application else {
            return Ok(None);
        };
        let declared = self
            .applications
            .application(name)
            .await
            .map_err(|source| TrafficError::Application {
                application: name.to_owned(),
                source: Box::new(source),
            })?;
        Ok(Some(
            declared
                .and_then(|a| a.environment(environment).map(|e| e.team_emails.clone()))
                .unwrap_or_default(),
        ))
    }

    /// One look at the job's deployment: fetch what it is and what AWS shows, decide
    /// ([`decide_step`], then [`plan_step`] or [`plan_drain`]), apply the move; again when a
    /// race was lost or a drain step is done, at most a few times.
    async fn step(
        &self,
        job: &Job,
        target: &Target,
        id: &str,
        now_ms: i64,
    ) -> Result<Verdict<Progress>, TrafficError> {
        // Unique per invocation: two invocations of one job are two owners.
        let owner = format!("{}/{}", job.id, uuid::Uuid::new_v4());
        let record = match self.deployer.store.get_deployment(id).await? {
            Some(d) => Record::Existing(Box::new(d)),
            // A new deployment's target and alarms: what the deploy action recorded for the
            // stage (read before the role is assumed: no function, nothing to do there).
            None => match self.recorded(target).await? {
                Recorded::Shift(new) => Record::ToCreate(Box::new(new)),
                Recorded::Nothing => return Ok(nothing_to_shift(target)),
            },
        };
        let clients = self
            .deployer
            .account_clients(
                &target.stage.environment,
                target.stage.role_arn.as_str(),
                id,
            )
            .await?;
        let mut current = match record {
            Record::Existing(d) => *d,
            Record::ToCreate(new) => {
                match self.start(job, target, *new, id, &clients, now_ms).await? {
                    Started::Deployment(d) => *d,
                    Started::Answer(verdict) => return Ok(verdict),
                }
            }
        };
        let plan: DeploymentPlan =
            current
                .plan
                .parse()
                .map_err(|e: shipgate::plan::PlanError| TrafficError::RecordedPlan {
                    id: id.to_owned(),
                    plan: current.plan.clone(),
                    reason: e.to_string(),
                })?;
        // Races, plus the drain's steps (scale in, promote, delete) when they are all due.
        for _ in 0..MAX_RACES + 3 {
            let planned = if current.drain().is_some() && current.state == DeploymentState::Shifting
            {
                self.look_at_drain(&clients, &current, &job.id, &owner, now_ms)
                    .await?
            } else {
                self.look(&clients, &current, &plan, &job.id, &owner, now_ms)
                    .await?
            };
            match self
                .apply(&clients, &current, planned, &owner, now_ms)
                .await?
            {
                Applied::Answer(verdict) => return Ok(verdict),
                Applied::LookAgain(fresh) => current = *fresh,
            }
        }
        Err(DeployError::Contended {
            id: id.to_owned(),
            attempts: MAX_RACES,
        }
        .into())
    }

    /// Fetches what the step is decided from (the alias or listener, the watched alarms while
    /// shifting, blue's deregistration delay at the plan's end) and decides it.
    async fn look(
        &self,
        clients: &AccountClients,
        current: &Deployment,
        plan: &DeploymentPlan,
        job_id: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<Planned, TrafficError> {
        let observed = self.deployer.observe(clients, current).await?;
        let firing = if current.state == DeploymentState::Shifting && current.drain().is_none() {
            shipgate::aws::cloudwatch::firing_alarms(&clients.cloudwatch, &current.alarms)
                .await
                .map_err(|e| aws_failure(current, e))?
        } else {
            Vec::new()
        };
        let started = u64::try_from(current.started_at_ms).unwrap_or(0);
        let at: Position = position(plan, started, u64::try_from(now_ms).unwrap_or(0));
        let drain_delay_seconds = match current.task_sets() {
            Some(sets) if needs_drain_delay(current, &at) && sets.drain.is_none() => {
                let blue = match &current.target {
                    TrafficTarget::AlbListener {
                        blue_target_group, ..
                    } => blue_target_group.as_str(),
                    TrafficTarget::LambdaAlias { .. } => "",
                };
                Some(
                    shipgate::aws::elbv2::deregistration_delay_seconds(&clients.elb, blue)
                        .await
                        .map_err(|e| aws_failure(current, e))?,
                )
            }
            _ => None,
        };
        let step = decide_step(StepInput {
            deployment: current,
            observed: &observed,
            position: at,
            firing: &firing,
            owner,
            now_ms,
        });
        let finish_rollback = matches!(step, Step::RolledBack { .. })
            && rollback_next(current, owner, now_ms) == RollbackNext::Finish;
        let planned = plan_step(
            current,
            step,
            Context {
                job_id,
                owner,
                now_ms,
                lease_ms: self.deployer.lease_ms,
                position: at,
                scale: plan.scale(),
                drain_delay_seconds,
                finish_rollback,
            },
        );
        info!(
            step = at.step,
            percent = planned.percent,
            planned = at.percent,
            outcome = planned.outcome,
            "traffic step"
        );
        Ok(planned)
    }

    /// Fetches blue's and green's task sets and decides the drain's next step.
    async fn look_at_drain(
        &self,
        clients: &AccountClients,
        current: &Deployment,
        job_id: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<Planned, TrafficError> {
        if let Some(holder) = held_by_other(current, owner, now_ms) {
            info!(holder = %holder, outcome = "busy", "another invocation is draining blue; looking again later");
            return Ok(Planned {
                step: Move::Answer(Reply::Progress),
                outcome: "busy",
                percent: current.percent,
            });
        }
        let (Some(sets), Some(drain)) = (current.task_sets(), current.drain()) else {
            return Ok(Planned {
                step: Move::Answer(Reply::Progress),
                outcome: "wait",
                percent: current.percent,
            });
        };
        let observed = shipgate::aws::ecs::task_sets(&clients.ecs, &sets.cluster, &sets.service)
            .await
            .map_err(|e| aws_failure(current, e))?;
        let next = next_drain_step(sets, drain, &observed, now_ms);
        let planned = plan_drain(current, next, job_id, owner, now_ms, self.deployer.lease_ms);
        info!(
            service = %sets.service,
            blue = sets.blue_task_set.as_deref().unwrap_or("-"),
            green = %sets.green_task_set,
            outcome = planned.outcome,
            "drain step"
        );
        Ok(planned)
    }

    /// Applies a move: its writes (each conditional on the revision read), its one effect, and
    /// the job's answer.
    async fn apply(
        &self,
        clients: &AccountClients,
        current: &Deployment,
        planned: Planned,
        owner: &str,
        now_ms: i64,
    ) -> Result<Applied, TrafficError> {
        match planned.step {
            Move::Answer(reply) => Ok(Applied::Answer(answer(current, reply))),
            Move::Record { record, reply } => match self.deployer.save(&record).await? {
                Ok(saved) => Ok(Applied::Answer(answer(&saved, reply))),
                Err(fresh) => {
                    info!(
                        outcome = "lost_race",
                        "the deployment changed under this invocation"
                    );
                    Ok(Applied::LookAgain(Box::new(fresh)))
                }
            },
            Move::Apply {
                claim,
                effect,
                mut record,
                reply,
            } => {
                let claimed = match self.deployer.save(&claim).await? {
                    Ok(saved) => saved,
                    Err(fresh) => {
                        info!(
                            outcome = "lost_race",
                            "the deployment changed under this invocation"
                        );
                        return Ok(Applied::LookAgain(Box::new(fresh)));
                    }
                };
                if let Err(e) = self.effect(clients, &claimed, effect).await {
                    let mut released = claimed.clone();
                    released.lease = None;
                    if let Err(release) = self.deployer.save(&released).await {
                        warn!(error = %release, "could not release the lease; it expires by itself");
                    }
                    return Err(e.into());
                }
                record.revision = claimed.revision;
                match self.deployer.save(&record).await? {
                    Ok(saved) => {
                        if let Effect::Shift { to } = effect {
                            let step = metrics(&saved).event(MetricName::TrafficSteps, 1.0);
                            step.property("percent", to).emit();
                        }
                        match reply {
                            Reply::Again => Ok(Applied::LookAgain(Box::new(saved))),
                            reply => Ok(Applied::Answer(answer(&saved, reply))),
                        }
                    }
                    // Rolled back while the move was under way: decide again (the move may
                    // have to be undone).
                    Err(fresh) => {
                        info!(
                            outcome = "lost_race_after_move",
                            "the deployment changed while traffic moved"
                        );
                        Ok(Applied::LookAgain(Box::new(fresh)))
                    }
                }
            }
            Move::RollBack { alarm, reason } => {
                let report = self
                    .deployer
                    .roll_back(
                        current.clone(),
                        RollbackRequest {
                            alarm: Some(&alarm),
                            reason: &reason,
                            by: "traffic-action",
                            owner,
                            now_ms,
                            job: JobHandling::AnsweredByCaller,
                        },
                        Some(clients),
                    )
                    .await?;
                info!(outcome = ?report.outcome, traffic = report.traffic.as_deref().unwrap_or_default(), email = report.email.as_deref().unwrap_or_default(), "rolled back on alarm");
                count_rollback(current, &report);
                let fresh = self
                    .deployer
                    .store
                    .get_deployment(&current.deployment_id)
                    .await?
                    .unwrap_or_else(|| current.clone());
                Ok(Applied::Answer(rolled_back(&fresh)))
            }
            Move::RolledBack { restore, finish } => {
                if restore {
                    self.deployer.shift(clients, current, 0).await?;
                    info!(
                        percent = 0,
                        outcome = "restored_rollback",
                        "a late step undone"
                    );
                }
                if finish {
                    // A rollback whose invocation stopped halfway: finish its tasks.
                    let r = current.rollback.clone();
                    let reason = r.as_ref().map_or("rolled back", |r| r.reason.as_str());
                    let alarm = r.as_ref().and_then(|r| r.alarm.as_deref());
                    let by = r.as_ref().map_or("traffic-action", |r| r.by.as_str());
                    if let Err(e) = self
                        .deployer
                        .roll_back(
                            current.clone(),
                            RollbackRequest {
                                alarm,
                                reason,
                                by,
                                owner,
                                now_ms,
                                job: JobHandling::AnsweredByCaller,
                            },
                            Some(clients),
                        )
                        .await
                    {
                        warn!(error = %e, "could not finish the rollback's tasks; the next invocation tries again");
                    }
                }
                Ok(Applied::Answer(rolled_back(current)))
            }
            // The planner gives the drain to the drain's own look.
            Move::Drain => Ok(Applied::Answer(progress(current))),
        }
    }

    /// The one effect of a move.
    async fn effect(
        &self,
        clients: &AccountClients,
        d: &Deployment,
        effect: Effect,
    ) -> Result<(), DeployError> {
        match effect {
            Effect::Shift { to } => self.deployer.shift(clients, d, to).await,
            Effect::Drain(step) => {
                let Some(sets) = d.task_sets() else {
                    return Ok(());
                };
                apply_drain_step(clients, sets, step)
                    .await
                    .map_err(|e| aws_failure(d, e))
            }
        }
    }

    /// The job's target and alarms from the stage's record ([`recorded_target`]); no record,
    /// or one that cannot be used, is an error naming what is missing.
    async fn recorded(&self, target: &Target) -> Result<Recorded, TrafficError> {
        let stage = &target.stage;
        let stage_id = target.stage_deployment_id();
        let Some(recorded) = self.deployer.store.get_stage_targets(&stage_id).await? else {
            return Err(TrafficError::NoStageTargets {
                environment: stage.environment.clone(),
                release_id: stage.release_id.clone(),
                execution_id: stage.execution_id.clone(),
                key: format!("DEPLOYMENT#{stage_id} / TARGETS"),
            });
        };
        recorded_target(target.kind, &recorded).map_err(|reason| TrafficError::StageTargets {
            environment: stage.environment.clone(),
            execution_id: stage.execution_id.clone(),
            reason,
        })
    }

    /// Starts the job's deployment: reads where the alias or listener stands (fetch), decides
    /// which version is the previous one ([`start_target`] and [`task_sets_of`]), and creates
    /// the record (a conditional put: of two invocations, one creates, the other finds it).
    async fn start(
        &self,
        job: &Job,
        target: &Target,
        new: NewDeployment,
        id: &str,
        clients: &AccountClients,
        now_ms: i64,
    ) -> Result<Started, TrafficError> {
        let aws = |e| {
            DeployError::Aws(shipgate::error::RoleCallError::new(
                &target.stage.environment,
                target.stage.role_arn.as_str(),
                "",
                e,
            ))
        };
        let NewDeployment {
            target: outputs,
            alarms,
        } = new;
        let found = match &outputs {
            TargetOutputs::LambdaAlias {
                function, alias, ..
            } => Found::Alias(
                shipgate::aws::lambda::alias_state(&clients.lambda, function, alias)
                    .await
                    .map_err(aws)?,
            ),
            TargetOutputs::AlbListener(alb) => Found::Listener {
                weights: shipgate::aws::elbv2::listener_weights(&clients.elb, &alb.listener_arn)
                    .await
                    .map_err(aws)?,
                prepared: self
                    .deployer
                    .store
                    .get_prepared_green(&target.stage_deployment_id())
                    .await?
                    .map(Box::new),
            },
        };
        let traffic = match start_target(&target.stage.environment, &outputs, found) {
            Ok(traffic) => traffic,
            Err(verdict) => return Ok(Started::Answer(verdict)),
        };
        let release = match self
            .deployer
            .store
            .get_release(&target.stage.release_id)
            .await
        {
            Ok(release) => release,
            Err(e) => {
                warn!(error = %e, "release record unreadable; the deployment is named by its id");
                None
            }
        };
        // An application's pipeline moves its own releases' traffic only.
        if let Some(release) = &release
            && let Err(e) = shipgate::job::release::check_application(
                release,
                target.stage.application.as_deref(),
            )
        {
            return Ok(Started::Answer(Verdict::fail(e.to_string())));
        }
        let team = self
            .team(
                release.as_ref().and_then(|r| r.application.as_deref()),
                &target.stage.environment,
            )
            .await?;
        let now = rfc3339(now_ms);
        let deployment = Deployment {
            deployment_id: id.to_owned(),
            release_id: target.stage.release_id.clone(),
            environment: target.stage.environment.clone(),
            execution_id: target.stage.execution_id.clone(),
            application: release.as_ref().and_then(|r| r.application.clone()),
            version: release.as_ref().and_then(|r| r.version.clone()),
            team,
            account_id: target.stage.account_id.clone(),
            role_arn: target.stage.role_arn.to_string(),
            target: traffic,
            plan: target.plan.to_string(),
            started_at_ms: now_ms,
            state: DeploymentState::Shifting,
            percent: 0,
            next_step_at_ms: None,
            alarms,
            job_id: Some(job.id.clone()),
            rollback: None,
            lease: None,
            steps: Vec::new(),
            revision: 0,
            created_at: now.clone(),
            updated_at: now,
        };
        Ok(Started::Deployment(Box::new(
            match self.deployer.store.create_deployment(&deployment).await? {
                DeploymentCreation::Created(d) => {
                    info!(plan = %d.plan, alarms = d.alarms.len(), target = %describe(&d.target), outcome = "created", "deployment started");
                    d
                }
                DeploymentCreation::Existing(d) => d,
            },
        )))
    }
}

/// What a new deployment's target shows before it starts.
enum Found {
    Alias(shipgate::aws::lambda::AliasState),
    Listener {
        weights: Vec<(String, i32)>,
        /// What the deploy action placed for this release and execution.
        prepared: Option<Box<shipgate::store::PreparedGreen>>,
    },
}

/// Decides a new deployment's target from what it shows (pure): the previous version is what
/// carries the traffic now. `Err`: the job's answer instead (nothing to shift, or a state it
/// cannot start from).
fn start_target(
    environment: &str,
    outputs: &TargetOutputs,
    found: Found,
) -> Result<TrafficTarget, Verdict<Progress>> {
    match (outputs, found) {
        (
            TargetOutputs::LambdaAlias {
                function,
                alias,
                new_version,
            },
            Found::Alias(state),
        ) => {
            if state.version == *new_version {
                info!(function = %function, alias = %alias, version = %new_version, outcome = "nothing_to_shift", "the alias already points at the new version");
                return Err(Verdict::done(format!(
                    "{environment}: alias {function}:{alias} already points at version \
                     {new_version}; no traffic to move"
                )));
            }
            if let Some((other, weight)) = &state.additional
                && other != new_version
                && *weight > 0.0
            {
                return Err(Verdict::fail(format!(
                    "{environment}: alias {function}:{alias} is already shifting to version \
                     {other} ({:.0}%): another deployment is under way or was left half-done; \
                     finish or roll it back first",
                    weight * 100.0
                )));
            }
            Ok(TrafficTarget::LambdaAlias {
                function: function.clone(),
                alias: alias.clone(),
                previous_version: state.version,
                new_version: new_version.clone(),
            })
        }
        (TargetOutputs::AlbListener(alb), Found::Listener { weights, prepared }) => {
            // The two target groups take turns: the previous version is on whichever one
            // carries the production traffic now, the new one on the other.
            let (blue, green) = shipgate::aws::elbv2::live_target_group(
                &weights,
                &alb.blue_target_group,
                &alb.green_target_group,
            )
            .map_err(|reason| {
                Verdict::fail(format!(
                    "{environment}: listener {}: {reason}",
                    alb.listener_arn
                ))
            })?;
            if blue != alb.blue_target_group {
                info!(listener = %alb.listener_arn, live = %blue, new = %green, "production traffic is on the second target group: the roles swap for this release");
            }
            let task_sets = match task_sets_of(
                environment,
                prepared.as_deref(),
                alb.ecs_service.as_deref(),
                &green,
            ) {
                Ok(TaskSetsFound::Ready(sets)) => sets,
                Ok(TaskSetsFound::AlreadyLive { task_set }) => {
                    info!(task_set = %task_set, outcome = "nothing_to_shift", "the release's task set serves the live target group already");
                    return Err(Verdict::done(format!(
                        "{environment}: the release's task set {task_set} serves the live \
                         target group {blue} already; no traffic to move"
                    )));
                }
                Err(message) => return Err(Verdict::fail(message)),
            };
            Ok(TrafficTarget::AlbListener {
                listener_arn: alb.listener_arn.clone(),
                test_listener_arn: alb.test_listener_arn.clone(),
                blue_target_group: blue,
                green_target_group: green,
                task_sets,
            })
        }
        (_, _) => Err(Verdict::fail(format!(
            "{environment}: internal error: the target changed kind while starting"
        ))),
    }
}

/// `UpdateTaskSet` blue to 0%, `UpdateServicePrimaryTaskSet` green, or `DeleteTaskSet` blue.
async fn apply_drain_step(
    clients: &AccountClients,
    sets: &EcsTaskSets,
    step: DrainStep,
) -> Result<(), shipgate::error::AwsError> {
    let ecs = &clients.ecs;
    match (step, &sets.blue_task_set) {
        (DrainStep::ScaleIn, Some(blue)) => {
            shipgate::aws::ecs::scale_task_set(ecs, &sets.cluster, &sets.service, blue, 0.0).await
        }
        (DrainStep::Promote, _) => {
            shipgate::aws::ecs::make_primary(
                ecs,
                &sets.cluster,
                &sets.service,
                &sets.green_task_set,
            )
            .await
        }
        (DrainStep::Delete, Some(blue)) => {
            shipgate::aws::ecs::delete_task_set(ecs, &sets.cluster, &sets.service, blue)
                .await
                .map(|_| ())
        }
        // No blue (the service's first release): nothing to scale in or delete.
        (DrainStep::ScaleIn | DrainStep::Delete, None) => Ok(()),
    }
}

/// What the deploy action left for this deployment's ECS task sets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TaskSetsFound {
    /// `None`: no task sets (the listener alone moves).
    Ready(Option<EcsTaskSets>),
    /// The release's task set serves the live target group already.
    AlreadyLive { task_set: String },
}

/// The deployment's task sets from the deploy action's green record. `ecs_service` (the
/// stacks' `ShipgateService` output, as the stage's targets record it) says task sets are
/// expected: without a green record, the action fails rather than shift traffic to a target
/// group with nothing behind it. The green record must name the target group the listener now
/// makes green.
fn task_sets_of(
    environment: &str,
    prepared: Option<&shipgate::store::PreparedGreen>,
    ecs_service: Option<&str>,
    green_target_group: &str,
) -> Result<TaskSetsFound, String> {
    let Some(p) = prepared else {
        return match ecs_service {
            Some(service) => Err(format!(
                "{environment}: ShipgateService names {service}, but the deploy action placed \
                 no task set for this release and execution: the release's stacks must output \
                 ShipgateCluster, ShipgateService, ShipgateTaskDefinition, \
                 ShipgateContainerName and ShipgateContainerPort (with ShipgateProdListener, \
                 ShipgateTestListener and the two target groups), and the deploy action must \
                 run in this execution before the traffic action"
            )),
            None => Ok(TaskSetsFound::Ready(None)),
        };
    };
    let name = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
    if let Some(service) = ecs_service
        && name(service) != name(&p.service)
    {
        return Err(format!(
            "{environment}: ShipgateService names {service}, but the deploy action placed the \
             release's task set in service {}",
            p.service
        ));
    }
    if p.already_live {
        return Ok(TaskSetsFound::AlreadyLive {
            task_set: p.green_task_set.clone(),
        });
    }
    if p.green_target_group != green_target_group {
        return Err(format!(
            "{environment}: the deploy action placed the release's task set {} behind target \
             group {}, but the listener's idle target group is now {green_target_group}: the \
             listener changed since; run the deploy stage again",
            p.green_task_set, p.green_target_group
        ));
    }
    Ok(TaskSetsFound::Ready(Some(EcsTaskSets {
        cluster: p.cluster.clone(),
        service: p.service.clone(),
        green_task_set: p.green_task_set.clone(),
        blue_task_set: p.blue_task_set.clone(),
        drain: None,
    })))
}

/// The job's answer for a move's reply on the deployment as saved.
fn answer(d: &Deployment, reply: Reply) -> Verdict<Progress> {
    match reply {
        Reply::Done => done(d),
        Reply::Progress | Reply::Again => progress(d),
        Reply::Fail(message) => Verdict::fail(message),
    }
}

fn progress(d: &Deployment) -> Verdict<Progress> {
    Verdict::Continue(Progress {
        deployment_id: d.deployment_id.clone(),
        percent: Some(d.percent),
        next_step_at_ms: d.next_step_at_ms,
    })
}

fn done(d: &Deployment) -> Verdict<Progress> {
    // Every way the action reports a deployment succeeded comes through here.
    metrics(d).count(MetricName::DeploymentsSucceeded);
    Verdict::Done {
        summary: format!(
            "{}: all traffic on the new version ({}), plan {} complete",
            d.environment,
            describe(&d.target),
            d.plan
        ),
        output_variables: BTreeMap::from([
            ("DeploymentId".to_owned(), d.deployment_id.clone()),
            ("Percent".to_owned(), "100".to_owned()),
        ]),
    }
}

/// The metrics of the deployment's release in its environment.
fn metrics(d: &Deployment) -> StageMetrics<'_> {
    StageMetrics::new(&d.environment, &d.release_id, &d.execution_id)
}

/// Counts a rollback this invocation carried out (not one found done or under way elsewhere).
fn count_rollback(d: &Deployment, report: &RollbackReport) {
    if matches!(
        report.outcome,
        RollbackOutcome::RolledBack | RollbackOutcome::Completed
    ) {
        let rollback = metrics(d).event(MetricName::Rollbacks, 1.0);
        rollback.property("by", "traffic-action").emit();
    }
}

fn rolled_back(d: &Deployment) -> Verdict<Progress> {
    let message = match &d.rollback {
        Some(r) => failure_message(d, r),
        None => format!("{}: the deployment was rolled back", d.environment),
    };
    Verdict::fail(message)
}

/// The release has no target of this action's kind (its stacks output none of it): nothing to
/// shift, and the action succeeds saying so.
fn nothing_to_shift(target: &Target) -> Verdict<Progress> {
    let environment = &target.stage.environment;
    let (what, outputs) = match target.kind {
        TargetKind::LambdaAlias => ("Lambda", "ShipgateLambdaFunction"),
        TargetKind::AlbListener => ("listener", "ShipgateProdListener or ShipgateService"),
    };
    info!(env = %environment, kind = %target.kind, outcome = "no_target", "the release's stacks output no {outputs}");
    Verdict::done(format!(
        "{environment}: no {what} target in this release (its stacks output no {outputs}); \
         nothing to shift"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(green_tg: &str) -> shipgate::store::PreparedGreen {
        shipgate::store::PreparedGreen {
            deployment_id: "int-1".into(),
            release_id: "rel-2".into(),
            environment: "int".into(),
            execution_id: "exec-2".into(),
            cluster: "shipgate-int".into(),
            service: "arn:aws:ecs:eu-west-1:2:service/shipgate-int/orders".into(),
            task_definition: "orders-int:2".into(),
            green_task_set: "ts-2".into(),
            green_target_group: green_tg.into(),
            blue_task_set: Some("ts-1".into()),
            live_target_group: "tg-a".into(),
            test_listener: "arn:listener/9000".into(),
            already_live: false,
            prepared_at_ms: 0,
        }
    }

    #[test]
    fn the_deploy_actions_green_becomes_the_deployments_task_sets() {
        let found = task_sets_of("int", Some(&prepared("tg-b")), None, "tg-b").unwrap();
        let TaskSetsFound::Ready(Some(sets)) = found else {
            panic!("task sets: {found:?}");
        };
        assert_eq!(sets.green_task_set, "ts-2");
        assert_eq!(sets.blue_task_set.as_deref(), Some("ts-1"));
        assert!(sets.drain.is_none());
        // The service named by name or by ARN is the same service.
        assert!(task_sets_of("int", Some(&prepared("tg-b")), Some("orders"), "tg-b").is_ok());
        let other = task_sets_of("int", Some(&prepared("tg-b")), Some("billing"), "tg-b");
        assert!(other.unwrap_err().contains("billing"));
        // The listener's idle group moved since the deploy action placed green.
        let moved = task_sets_of("int", Some(&prepared("tg-a")), None, "tg-b").unwrap_err();
        assert!(moved.contains("run the deploy stage again"), "{moved}");
        let mut live = prepared("tg-a");
        live.already_live = true;
        assert!(matches!(
            task_sets_of("int", Some(&live), None, "tg-b"),
            Ok(TaskSetsFound::AlreadyLive { .. })
        ));
    }

    #[test]
    fn without_the_deploy_actions_green_only_an_expected_service_fails() {
        assert_eq!(
            task_sets_of("int", None, None, "tg-b"),
            Ok(TaskSetsFound::Ready(None))
        );
        let err = task_sets_of("int", None, Some("orders"), "tg-b").unwrap_err();
        assert!(
            err.contains("placed no task set") && err.contains("ShipgateService"),
            "{err}"
        );
    }

    #[test]
    fn config_defaults_and_requirements() {
        let env = Env::from_pairs([
            ("SHIPGATE_TABLE", "t"),
            ("SHIPGATE_MAIL_FROM", "shipgate@example.com"),
        ]);
        let c = TrafficConfig::from_env(&env).unwrap();
        assert_eq!(c.deployer.lease_seconds, 120);
        assert_eq!(c.retry.seconds, 900);
        let mut zero = env.clone();
        zero.set("SHIPGATE_DEPLOYMENT_LEASE_SECONDS", "0");
        assert!(TrafficConfig::from_env(&zero).is_err());
    }
}
