//! The traffic action: a CodePipeline Lambda-invoke action that moves a release's traffic to the
//! new version step by step, per its deployment plan, and rolls it back when a watched alarm
//! fires.
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

mod parameters;

pub use parameters::{ActionParameters, ParameterError, Target, TargetParameters, named_execution};

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use serde::Serialize;
use shipgate::aws::codepipeline::JobFailureKind;
use shipgate::config::{ConfigError, Env};
use shipgate::deploy::{
    AccountClients, DeployError, Deployer, DrainNext, JobHandling, MAX_RACES, RollbackNext,
    RollbackRequest, Step, StepInput, TeamMail, decide_step, deployment_id, drain_after,
    failure_message, held_by_other, next_drain_step, rfc3339, rollback_next,
};
use shipgate::deploy::{RollbackOutcome, RollbackReport};
use shipgate::error::AwsError;
use shipgate::job::{Answer, Job, JobEventError, Outcome};
use shipgate::metrics::{MetricName, StageMetrics};
use shipgate::plan::{DeploymentPlan, position};
use shipgate::store::{
    AppliedDrainStep, AppliedStep, Deployment, DeploymentCreation, DeploymentState, Drain,
    DrainStep, EcsTaskSets, Lease, LeaseIntent, TrafficTarget,
};
use tracing::{Instrument, info, info_span, warn};

/// The action's configuration, read once from the environment.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// `SHIPGATE_TABLE`: the DynamoDB table.
    pub table: String,
    /// `SHIPGATE_MAIL_FROM`, `SHIPGATE_TEAM_EMAIL_<ENV>`, `SHIPGATE_ENVIRONMENTS`: who is told
    /// of a rollback.
    pub mail: TeamMail,
    /// `SHIPGATE_DEPLOYMENT_LEASE_SECONDS` (default 120): how long an invocation's claim on a
    /// deployment holds; at least the function's timeout.
    pub lease_seconds: u32,
}

impl TrafficConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let lease_seconds = env.parsed_or("SHIPGATE_DEPLOYMENT_LEASE_SECONDS", 120u32)?;
        if lease_seconds == 0 {
            return Err(ConfigError::Invalid {
                name: "SHIPGATE_DEPLOYMENT_LEASE_SECONDS".into(),
                value: "0".into(),
                reason: "a lease must last at least as long as one invocation".into(),
            });
        }
        Ok(Self {
            table: env.required("SHIPGATE_TABLE")?,
            mail: TeamMail::from_env(env)?,
            lease_seconds,
        })
    }
}

/// Why the traffic action fails.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The invocation is not a CodePipeline job: there is no job to fail.
    #[error("the event is not a CodePipeline job: {0}")]
    Event(#[source] JobEventError),
    #[error(
        "{0}: the action's UserParameters must be JSON with environment, roleArn, releaseId, \
         executionId, plan, alarms and target"
    )]
    UserParameters(#[source] JobEventError),
    #[error("the action's UserParameters cannot be used: {0}")]
    Parameters(#[from] ParameterError),
    #[error("deployment {id} records the plan {plan:?}, which does not parse: {reason}")]
    RecordedPlan {
        id: String,
        plan: String,
        reason: String,
    },
    #[error("{0}")]
    Deploy(#[from] DeployError),
    #[error("CodePipeline could not be told the job's result: {0}")]
    Answer(#[source] Box<AwsError>),
}

impl From<shipgate::store::StoreError> for TrafficError {
    fn from(e: shipgate::store::StoreError) -> Self {
        TrafficError::Deploy(e.into())
    }
}

impl TrafficError {
    pub fn error_type(&self) -> &'static str {
        match self {
            TrafficError::Event(_) => "MalformedEvent",
            TrafficError::UserParameters(_) | TrafficError::Parameters(_) => "InvalidParameters",
            TrafficError::RecordedPlan { .. } => "InvalidRecord",
            TrafficError::Deploy(e) => e.error_type(),
            TrafficError::Answer(_) => "CodePipelineError",
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, TrafficError::Deploy(e) if e.is_retryable())
    }

    fn failure_kind(&self) -> JobFailureKind {
        match self {
            TrafficError::UserParameters(_) | TrafficError::Parameters(_) => {
                JobFailureKind::ConfigurationError
            }
            TrafficError::Deploy(e) if e.is_access_denied() => JobFailureKind::PermissionError,
            _ => JobFailureKind::JobFailed,
        }
    }
}

/// What the continuation token carries: informative only, the record is the state.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Progress<'a> {
    deployment_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    percent: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_step_at_ms: Option<i64>,
}

/// The action, its clients built once per process.
#[derive(Debug, Clone)]
pub struct TrafficFunction {
    pub config: TrafficConfig,
    pub deployer: Deployer,
}

impl TrafficFunction {
    pub fn new(config: TrafficConfig, sdk: &SdkConfig) -> Self {
        Self {
            deployer: Deployer::new(
                sdk,
                &config.table,
                config.mail.clone(),
                i64::from(config.lease_seconds) * 1000,
            ),
            config,
        }
    }

    /// Handles one `CodePipeline.job` event and answers the job. `Err` only when there is no
    /// job to answer or CodePipeline could not be told.
    pub async fn handle(&self, event: serde_json::Value) -> Result<Answer, TrafficError> {
        let job = Job::from_event(event).map_err(TrafficError::Event)?;
        let outcome = self.run(&job).await;
        shipgate::job::answer(
            &self.deployer.codepipeline,
            &job,
            Ok::<_, TrafficError>(outcome),
        )
        .await
        .map_err(|e| TrafficError::Answer(Box::new(e)))
    }

    /// [`run_at`](Self::run_at) now.
    pub async fn run(&self, job: &Job) -> Outcome {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.run_at(job, now_ms).await
    }

    /// Does one step of the job's deployment as if the time were `now_ms` (epoch milliseconds)
    /// and decides the job's outcome; every failure becomes `Outcome::Failed` with a message for
    /// the operator, except temporary ones, which are tried again on the next invocation.
    pub async fn run_at(&self, job: &Job, now_ms: i64) -> Outcome {
        let target = match job
            .parameters::<ActionParameters>()
            .map_err(TrafficError::UserParameters)
            .and_then(|p| {
                if p.names_no_function() {
                    return Ok(Err(p.environment));
                }
                p.target().map(Ok).map_err(TrafficError::from)
            }) {
            Ok(Ok(target)) => target,
            Ok(Err(environment)) => return no_function(&environment),
            Err(e) => return failed(&e),
        };
        let id = deployment_id(
            &target.release_id,
            &target.environment,
            &target.execution_key(),
        );
        let span = info_span!(
            "traffic",
            release_id = %target.release_id,
            execution_id = %target.execution_id,
            env = %target.environment,
            deployment_id = %id,
            job_id = %job.id,
        );
        async {
            match Box::pin(self.step(job, &target, &id, now_ms)).await {
                Ok(outcome) => outcome,
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, error_type = e.error_type(), outcome = "continue", "temporary failure; trying again on the next invocation");
                    Outcome::continue_with(&Progress {
                        deployment_id: &id,
                        percent: None,
                        next_step_at_ms: None,
                    })
                }
                Err(e) => failed(&e),
            }
        }
        .instrument(span)
        .await
    }

    async fn step(
        &self,
        job: &Job,
        target: &Target,
        id: &str,
        now_ms: i64,
    ) -> Result<Outcome, TrafficError> {
        // Unique per invocation: two invocations of one job are two owners.
        let owner = format!("{}/{}", job.id, uuid::Uuid::new_v4());
        let clients = self.deployer.account_clients(&target.role_arn, id).await?;
        let mut current = match self.deployer.store.get_deployment(id).await? {
            Some(d) => d,
            None => match self.create(job, target, id, &clients, now_ms).await? {
                Ok(d) => d,
                Err(outcome) => return Ok(outcome),
            },
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
        for _ in 0..MAX_RACES {
            let observed = self.deployer.observe(&clients, &current).await?;
            let firing = if current.state == DeploymentState::Shifting && current.drain().is_none()
            {
                shipgate::aws::cloudwatch::firing_alarms(&clients.cloudwatch, &current.alarms)
                    .await
                    .map_err(|e| DeployError::Aws {
                        environment: current.environment.clone(),
                        source: Box::new(e),
                    })?
            } else {
                Vec::new()
            };
            let started = u64::try_from(current.started_at_ms).unwrap_or(0);
            let now = u64::try_from(now_ms).unwrap_or(0);
            let at = position(&plan, started, now);
            let decision = decide_step(StepInput {
                deployment: &current,
                observed: &observed,
                position: at,
                firing: &firing,
                owner: &owner,
                now_ms,
            });
            let log = |outcome: &str, percent: u8| {
                info!(
                    release_id = %current.release_id,
                    execution_id = %current.execution_id,
                    env = %current.environment,
                    step = at.step,
                    percent,
                    planned = at.percent,
                    outcome,
                    "traffic step"
                );
            };
            match decision {
                Step::Succeeded => {
                    log("succeeded", current.percent);
                    return Ok(done(&current));
                }
                Step::RolledBack { restore } => {
                    if restore {
                        self.deployer.shift(&clients, &current, 0).await?;
                        log("restored_rollback", 0);
                    }
                    if rollback_next(&current, &owner, now_ms) == RollbackNext::Finish {
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
                                    owner: &owner,
                                    now_ms,
                                    job: JobHandling::AnsweredByCaller,
                                },
                                Some(&clients),
                            )
                            .await
                        {
                            warn!(error = %e, "could not finish the rollback's tasks; the next invocation tries again");
                        }
                    }
                    log("rolled_back", 0);
                    return Ok(rolled_back(&current));
                }
                Step::RollBack { alarm, reason } => {
                    log("alarm", observed.percent().unwrap_or(current.percent));
                    let report = self
                        .deployer
                        .roll_back(
                            current.clone(),
                            RollbackRequest {
                                alarm: Some(&alarm),
                                reason: &reason,
                                by: "traffic-action",
                                owner: &owner,
                                now_ms,
                                job: JobHandling::AnsweredByCaller,
                            },
                            Some(&clients),
                        )
                        .await?;
                    info!(outcome = ?report.outcome, traffic = report.traffic.as_deref().unwrap_or_default(), email = report.email.as_deref().unwrap_or_default(), "rolled back on alarm");
                    count_rollback(&current, &report);
                    let fresh = self
                        .deployer
                        .store
                        .get_deployment(id)
                        .await?
                        .unwrap_or_else(|| current.clone());
                    log("rolled_back", 0);
                    return Ok(rolled_back(&fresh));
                }
                Step::Drain => {
                    match Box::pin(self.drain(job, &clients, &current, &owner, now_ms)).await? {
                        Ok(outcome) => return Ok(outcome),
                        Err(fresh) => {
                            log("lost_race", current.percent);
                            current = fresh;
                            continue;
                        }
                    }
                }
                Step::Busy { owner: holder } => {
                    info!(holder = %holder, "another invocation is moving traffic; looking again later");
                    log("busy", current.percent);
                    return Ok(progress(&current));
                }
                Step::Foreign { detail } => {
                    log("foreign", current.percent);
                    return Ok(Outcome::failed(format!(
                        "{}: {} was changed outside this deployment ({detail}); shipgate stops \
                         here without touching it: check who changed it, then roll back or \
                         finish by hand",
                        current.environment,
                        describe(&current.target)
                    )));
                }
                Step::Shift { from, to, complete } => {
                    let mut claim = current.clone();
                    claim.job_id = Some(job.id.clone());
                    claim.percent = from;
                    claim.lease = Some(Lease {
                        owner: owner.clone(),
                        until_ms: now_ms.saturating_add(self.deployer.lease_ms),
                        intent: LeaseIntent::Shift { to },
                    });
                    claim.updated_at = rfc3339(now_ms);
                    let claimed = match self.deployer.save(&claim).await? {
                        Ok(saved) => saved,
                        Err(fresh) => {
                            log("lost_race", from);
                            current = fresh;
                            continue;
                        }
                    };
                    if let Err(e) = self.deployer.shift(&clients, &claimed, to).await {
                        let mut released = claimed.clone();
                        released.lease = None;
                        if let Err(release) = self.deployer.save(&released).await {
                            warn!(error = %release, "could not release the lease; it expires by itself");
                        }
                        return Err(e.into());
                    }
                    let mut applied = claimed.clone();
                    applied.percent = to;
                    applied.steps.push(AppliedStep {
                        percent: to,
                        at_ms: now_ms,
                    });
                    applied.lease = None;
                    applied.next_step_at_ms = next_wake(at.next_wake);
                    if complete {
                        self.finish_or_drain(&clients, &mut applied, &plan, now_ms)
                            .await?;
                    }
                    match self.deployer.save(&applied).await? {
                        Ok(saved) => {
                            log(if complete { "shifted_done" } else { "shifted" }, to);
                            let step = metrics(&saved).event(MetricName::TrafficSteps, 1.0);
                            step.property("percent", to).emit();
                            return Ok(ended_or_progress(&saved));
                        }
                        Err(fresh) => {
                            // Rolled back while the step was under way: decide again (the step
                            // may have to be undone).
                            log("lost_race_after_move", to);
                            current = fresh;
                            continue;
                        }
                    }
                }
                Step::Hold { percent, complete } => {
                    let next = next_wake(at.next_wake);
                    let changed = current.percent != percent
                        || current.job_id.as_deref() != Some(job.id.as_str())
                        || current.next_step_at_ms != next
                        || current.lease.is_some()
                        || complete;
                    if !changed {
                        log("hold", percent);
                        return Ok(progress(&current));
                    }
                    let mut next_record = current.clone();
                    if current.percent != percent {
                        // A move whose record was lost (a crash between the two): catch up.
                        warn!(
                            recorded = current.percent,
                            actual = percent,
                            "record behind the actual weights; reconciled"
                        );
                        next_record.steps.push(AppliedStep {
                            percent,
                            at_ms: now_ms,
                        });
                    }
                    next_record.percent = percent;
                    next_record.job_id = Some(job.id.clone());
                    next_record.next_step_at_ms = next;
                    next_record.lease = None;
                    next_record.updated_at = rfc3339(now_ms);
                    if complete {
                        self.finish_or_drain(&clients, &mut next_record, &plan, now_ms)
                            .await?;
                    }
                    match self.deployer.save(&next_record).await? {
                        Ok(saved) => {
                            let outcome = match (complete, current.percent != percent) {
                                (true, _) if saved.drain().is_some() => "bake_over",
                                (true, _) => "done",
                                (false, true) => "reconciled",
                                (false, false) => "hold",
                            };
                            log(outcome, percent);
                            return Ok(ended_or_progress(&saved));
                        }
                        Err(fresh) => {
                            log("lost_race", percent);
                            current = fresh;
                            continue;
                        }
                    }
                }
            }
        }
        Err(DeployError::Contended {
            id: id.to_owned(),
            attempts: MAX_RACES,
        }
        .into())
    }

    /// The plan (bake included) is over: a deployment with task sets starts draining blue
    /// (its target group's deregistration delay first, compressed by the plan's scale), any
    /// other succeeds.
    async fn finish_or_drain(
        &self,
        clients: &AccountClients,
        record: &mut Deployment,
        plan: &DeploymentPlan,
        now_ms: i64,
    ) -> Result<(), TrafficError> {
        let blue_target_group = match &record.target {
            TrafficTarget::AlbListener {
                task_sets: Some(sets),
                blue_target_group,
                ..
            } if sets.drain.is_none() => blue_target_group.clone(),
            _ => {
                record.state = DeploymentState::Succeeded;
                return Ok(());
            }
        };
        let delay_seconds =
            shipgate::aws::elbv2::deregistration_delay_seconds(&clients.elb, &blue_target_group)
                .await
                .map_err(|e| DeployError::Aws {
                    environment: record.environment.clone(),
                    source: Box::new(e),
                })?;
        let after_ms = drain_after(now_ms, delay_seconds, plan.scale());
        if let TrafficTarget::AlbListener {
            task_sets: Some(sets),
            ..
        } = &mut record.target
        {
            sets.drain = Some(Drain {
                after_ms,
                delay_seconds,
                steps: Vec::new(),
            });
        }
        record.next_step_at_ms = Some(after_ms);
        info!(
            delay_seconds,
            after_ms,
            scale = plan.scale(),
            outcome = "drain_started",
            "bake over; blue's task set is drained after its target group's deregistration delay"
        );
        Ok(())
    }

    /// One look at blue's drain: wait, or apply the next step (claimed first, recorded after,
    /// as many as are due), or finish. `Err(fresh)`: the record changed under this invocation.
    async fn drain(
        &self,
        job: &Job,
        clients: &AccountClients,
        current: &Deployment,
        owner: &str,
        now_ms: i64,
    ) -> Result<Result<Outcome, Deployment>, TrafficError> {
        let aws = |e| DeployError::Aws {
            environment: current.environment.clone(),
            source: Box::new(e),
        };
        let mut current = current.clone();
        // Scale in, promote, delete, done: one look each at most.
        for _ in 0..4 {
            if let Some(holder) = held_by_other(&current, owner, now_ms) {
                info!(holder = %holder, outcome = "busy", "another invocation is draining blue; looking again later");
                return Ok(Ok(progress(&current)));
            }
            let (Some(sets), Some(drain)) =
                (current.task_sets().cloned(), current.drain().cloned())
            else {
                return Ok(Ok(progress(&current)));
            };
            let observed =
                shipgate::aws::ecs::task_sets(&clients.ecs, &sets.cluster, &sets.service)
                    .await
                    .map_err(aws)?;
            let log = |outcome: &str, step: &str| {
                info!(
                    release_id = %current.release_id,
                    execution_id = %current.execution_id,
                    env = %current.environment,
                    step,
                    service = %sets.service,
                    blue = sets.blue_task_set.as_deref().unwrap_or("-"),
                    green = %sets.green_task_set,
                    outcome,
                    "drain step"
                );
            };
            match next_drain_step(&sets, &drain, &observed, now_ms) {
                DrainNext::Wait { until_ms } => {
                    let changed = current.next_step_at_ms != Some(until_ms)
                        || current.job_id.as_deref() != Some(job.id.as_str())
                        || current.lease.is_some();
                    if !changed {
                        log("wait", "deregistration_delay");
                        return Ok(Ok(progress(&current)));
                    }
                    let mut next = current.clone();
                    next.next_step_at_ms = Some(until_ms);
                    next.job_id = Some(job.id.clone());
                    next.lease = None;
                    next.updated_at = rfc3339(now_ms);
                    return Ok(match self.deployer.save(&next).await? {
                        Ok(saved) => {
                            log("wait", "deregistration_delay");
                            Ok(progress(&saved))
                        }
                        Err(fresh) => Err(fresh),
                    });
                }
                DrainNext::Broken { detail } => {
                    log("broken", "check");
                    return Ok(Ok(Outcome::failed(format!(
                        "{}: all traffic is on the new version, but blue cannot be drained: \
                         {detail}; shipgate stops here without touching the service: check who \
                         changed it, then finish by hand",
                        current.environment
                    ))));
                }
                DrainNext::Done => {
                    let mut next = current.clone();
                    next.state = DeploymentState::Succeeded;
                    next.next_step_at_ms = None;
                    next.job_id = Some(job.id.clone());
                    next.lease = None;
                    next.updated_at = rfc3339(now_ms);
                    return Ok(match self.deployer.save(&next).await? {
                        Ok(saved) => {
                            log("drained", "done");
                            Ok(done(&saved))
                        }
                        Err(fresh) => Err(fresh),
                    });
                }
                DrainNext::Apply(step) => {
                    let mut claim = current.clone();
                    claim.job_id = Some(job.id.clone());
                    claim.lease = Some(Lease {
                        owner: owner.to_owned(),
                        until_ms: now_ms.saturating_add(self.deployer.lease_ms),
                        intent: LeaseIntent::Drain { step },
                    });
                    claim.updated_at = rfc3339(now_ms);
                    let claimed = match self.deployer.save(&claim).await? {
                        Ok(saved) => saved,
                        Err(fresh) => return Ok(Err(fresh)),
                    };
                    if let Err(e) = apply_drain_step(clients, &sets, step).await {
                        let mut released = claimed.clone();
                        released.lease = None;
                        if let Err(release) = self.deployer.save(&released).await {
                            warn!(error = %release, "could not release the lease; it expires by itself");
                        }
                        return Err(aws(e).into());
                    }
                    let mut applied = claimed;
                    applied.lease = None;
                    if let TrafficTarget::AlbListener {
                        task_sets: Some(EcsTaskSets { drain: Some(d), .. }),
                        ..
                    } = &mut applied.target
                    {
                        d.steps.push(AppliedDrainStep {
                            step,
                            at_ms: now_ms,
                        });
                    }
                    match self.deployer.save(&applied).await? {
                        Ok(saved) => {
                            log("applied", step.as_str());
                            current = saved;
                        }
                        Err(fresh) => return Ok(Err(fresh)),
                    }
                }
            }
        }
        Ok(Ok(progress(&current)))
    }

    /// Creates the deployment record: the previous version is what the alias points at now.
    /// `Err(outcome)` when there is nothing to deploy.
    async fn create(
        &self,
        job: &Job,
        target: &Target,
        id: &str,
        clients: &AccountClients,
        now_ms: i64,
    ) -> Result<Result<Deployment, Outcome>, TrafficError> {
        let traffic = match &target.target {
            TargetParameters::LambdaAlias {
                function,
                alias,
                new_version,
            } => {
                let state = shipgate::aws::lambda::alias_state(&clients.lambda, function, alias)
                    .await
                    .map_err(|e| DeployError::Aws {
                        environment: target.environment.clone(),
                        source: Box::new(e),
                    })?;
                if state.version == *new_version {
                    info!(function = %function, alias = %alias, version = %new_version, outcome = "nothing_to_shift", "the alias already points at the new version");
                    return Ok(Err(Outcome::done(format!(
                        "{}: alias {function}:{alias} already points at version {new_version}; \
                         no traffic to move",
                        target.environment
                    ))));
                }
                if let Some((other, weight)) = &state.additional
                    && other != new_version
                    && *weight > 0.0
                {
                    return Ok(Err(Outcome::failed(format!(
                        "{}: alias {function}:{alias} is already shifting to version {other} \
                         ({:.0}%): another deployment is under way or was left half-done; finish \
                         or roll it back first",
                        target.environment,
                        weight * 100.0
                    ))));
                }
                TrafficTarget::LambdaAlias {
                    function: function.clone(),
                    alias: alias.clone(),
                    previous_version: state.version,
                    new_version: new_version.clone(),
                }
            }
            TargetParameters::AlbListener {
                listener_arn,
                test_listener_arn,
                blue_target_group,
                green_target_group,
                ecs_service,
            } => {
                // The two target groups take turns: the previous version is on whichever one
                // carries the production traffic now, the new one on the other.
                let weights = shipgate::aws::elbv2::listener_weights(&clients.elb, listener_arn)
                    .await
                    .map_err(|e| DeployError::Aws {
                        environment: target.environment.clone(),
                        source: Box::new(e),
                    })?;
                let (blue, green) = match shipgate::aws::elbv2::live_target_group(
                    &weights,
                    blue_target_group,
                    green_target_group,
                ) {
                    Ok(pair) => pair,
                    Err(reason) => {
                        return Ok(Err(Outcome::failed(format!(
                            "{}: listener {listener_arn}: {reason}",
                            target.environment
                        ))));
                    }
                };
                if blue != *blue_target_group {
                    info!(listener = %listener_arn, live = %blue, new = %green, "production traffic is on the second target group: the roles swap for this release");
                }
                let prepared = self.deployer.store.get_prepared_green(id).await?;
                let task_sets = match task_sets_of(
                    &target.environment,
                    prepared.as_ref(),
                    ecs_service.as_deref(),
                    &green,
                ) {
                    Ok(TaskSetsFound::Ready(sets)) => sets,
                    Ok(TaskSetsFound::AlreadyLive { task_set }) => {
                        info!(task_set = %task_set, outcome = "nothing_to_shift", "the release's task set serves the live target group already");
                        return Ok(Err(Outcome::done(format!(
                            "{}: the release's task set {task_set} serves the live target group \
                             {blue} already; no traffic to move",
                            target.environment
                        ))));
                    }
                    Err(message) => return Ok(Err(Outcome::failed(message))),
                };
                TrafficTarget::AlbListener {
                    listener_arn: listener_arn.clone(),
                    test_listener_arn: test_listener_arn.clone(),
                    blue_target_group: blue,
                    green_target_group: green,
                    task_sets,
                }
            }
        };
        let release = match self.deployer.store.get_release(&target.release_id).await {
            Ok(release) => release,
            Err(e) => {
                warn!(error = %e, "release record unreadable; the deployment is named by its id");
                None
            }
        };
        let now = rfc3339(now_ms);
        let deployment = Deployment {
            deployment_id: id.to_owned(),
            release_id: target.release_id.clone(),
            environment: target.environment.clone(),
            execution_id: target.execution_id.clone(),
            application: release.as_ref().and_then(|r| r.application.clone()),
            version: release.as_ref().and_then(|r| r.version.clone()),
            account_id: target.account_id.clone(),
            role_arn: target.role_arn.clone(),
            target: traffic,
            plan: target.plan.to_string(),
            started_at_ms: now_ms,
            state: DeploymentState::Shifting,
            percent: 0,
            next_step_at_ms: None,
            alarms: target.alarms.clone(),
            job_id: Some(job.id.clone()),
            rollback: None,
            lease: None,
            steps: Vec::new(),
            revision: 0,
            created_at: now.clone(),
            updated_at: now,
        };
        let d = match self.deployer.store.create_deployment(&deployment).await? {
            DeploymentCreation::Created(d) => {
                info!(plan = %d.plan, alarms = d.alarms.len(), target = %describe(&d.target), outcome = "created", "deployment started");
                d
            }
            DeploymentCreation::Existing(d) => d,
        };
        Ok(Ok(d))
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

/// The deployment's task sets from the deploy action's record. `ecs_service` (the optional
/// `target.ecsService` parameter) says task sets are expected: without a record, the action
/// fails rather than shift traffic to a target group with nothing behind it. The record must
/// name the target group the listener now makes green.
fn task_sets_of(
    environment: &str,
    prepared: Option<&shipgate::store::PreparedGreen>,
    ecs_service: Option<&str>,
    green_target_group: &str,
) -> Result<TaskSetsFound, String> {
    let Some(p) = prepared else {
        return match ecs_service {
            Some(service) => Err(format!(
                "{environment}: target.ecsService names {service}, but the deploy action placed \
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
            "{environment}: target.ecsService names {service}, but the deploy action placed the \
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

/// `ecs-svc/123…` of a task set ARN, for people.
fn short_task_set(arn: &str) -> &str {
    arn.find("ecs-svc/").map_or(arn, |i| &arn[i..])
}

/// Done when the deployment succeeded, a continuation otherwise (blue still draining).
fn ended_or_progress(d: &Deployment) -> Outcome {
    if d.state == DeploymentState::Succeeded {
        done(d)
    } else {
        progress(d)
    }
}

fn next_wake(wake: Option<u64>) -> Option<i64> {
    wake.and_then(|w| i64::try_from(w).ok())
}

fn progress(d: &Deployment) -> Outcome {
    Outcome::continue_with(&Progress {
        deployment_id: &d.deployment_id,
        percent: Some(d.percent),
        next_step_at_ms: d.next_step_at_ms,
    })
}

fn done(d: &Deployment) -> Outcome {
    // Every way the action reports a deployment succeeded comes through here.
    metrics(d).count(MetricName::DeploymentsSucceeded);
    Outcome::Done {
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

fn rolled_back(d: &Deployment) -> Outcome {
    let message = match &d.rollback {
        Some(r) => failure_message(d, r),
        None => format!("{}: the deployment was rolled back", d.environment),
    };
    Outcome::failed(message)
}

fn describe(target: &TrafficTarget) -> String {
    match target {
        TrafficTarget::LambdaAlias {
            function,
            alias,
            previous_version,
            new_version,
        } => format!("alias {function}:{alias}, version {previous_version} → {new_version}"),
        TrafficTarget::AlbListener {
            listener_arn,
            task_sets: Some(sets),
            ..
        } => format!(
            "listener {listener_arn}, blue → green (task set {})",
            short_task_set(&sets.green_task_set)
        ),
        TrafficTarget::AlbListener { listener_arn, .. } => {
            format!("listener {listener_arn}, blue → green")
        }
    }
}

/// A Lambda target naming no function: the release has none; nothing to shift.
fn no_function(environment: &str) -> Outcome {
    info!(env = %environment, outcome = "no_lambda_target", "the release's stacks output no ShipgateLambdaFunction");
    Outcome::done(format!(
        "{environment}: no Lambda target in this release (its stacks output no \
         ShipgateLambdaFunction); nothing to shift"
    ))
}

fn failed(e: &TrafficError) -> Outcome {
    warn!(error_type = e.error_type(), outcome = "failed", reason = %e, "traffic action failed");
    Outcome::Failed {
        kind: e.failure_kind(),
        message: e.to_string(),
    }
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
        assert_eq!(c.lease_seconds, 120);
        assert!(c.mail.team("int").is_empty());
        let err = TrafficConfig::from_env(&Env::from_pairs([("SHIPGATE_MAIL_FROM", "a@b.c")]))
            .unwrap_err();
        assert!(err.to_string().contains("SHIPGATE_TABLE"));
        let mut zero = env.clone();
        zero.set("SHIPGATE_DEPLOYMENT_LEASE_SECONDS", "0");
        assert!(TrafficConfig::from_env(&zero).is_err());
    }
}
