//! Progressive deployments: reading and moving the traffic of a deployment in its environment
//! account, and rolling a deployment back. The traffic action and the rollback function (and an
//! operator's hand) all roll back through [`Deployer::roll_back`], so a rollback is done one way.
//!
//! The decisions are pure ([`decide`]): what the alias or listener shows ([`Observed`]), what a
//! step does ([`decide_step`]), whether a rollback is claimed, finished or left alone
//! ([`rollback_next`]), whether an alarm change concerns a deployment ([`alarm_concerns`]). This
//! module applies them.
//!
//! # A rollback, step by step
//! 1. **Claim**: the deployment is saved as `RolledBack` with a [`Lease`] (conditional on the
//!    revision read: of two invocations, one claims and the other finds it claimed). A rollback
//!    does not wait for a step in progress: the step's own save then fails, and the traffic action
//!    re-reads, sees the rollback and puts traffic back to 0% itself if its move landed last.
//! 2. **Traffic** back to 100% previous version (alias: the previous version with no routing;
//!    listener: all weight on blue); the new version's ECS task set, if any, scaled to 0.
//! 3. **Job**: the recorded pipeline job is failed with the reason (`PutJobFailureResult`); a job
//!    already answered (the traffic action answered it with a continuation) is left to the traffic
//!    action's next invocation, which fails the action from the record. When the traffic action
//!    itself rolls back, it answers its own job.
//! 4. **Team** emailed; the lease is released with the record of steps 2 to 4 (one write).
//!
//! A crash before the record leaves the steps to the next invocation once the lease expires (the
//! rollback function's retry, the traffic action's next invocation, an operator), which finds
//! the traffic back on the previous version and a job answered already, and does the rest.
//!
//! [`Deployer::roll_back_all`] takes each step for every deployment of one request at once (an
//! alarm watched by many deployments): the claims in one transaction, each role assumed once,
//! the carriers of an account or function read together, the weights and jobs a bounded number
//! at a time ([`ROLLBACK_CONCURRENCY`]), one email per environment listing its deployments.
//! [`Deployer::roll_back`] is the same for one deployment.

pub mod decide;
pub mod email;
mod rollback;

#[cfg(test)]
pub(crate) mod tests;

pub use decide::{
    AlarmChange, DrainNext, NotForDeployment, Observed, RollbackNext, RollbackTask, Step,
    StepInput, alarm_concerns, decide_step, deployment_id, drain_after, failure_message,
    held_by_other, next_drain_step, observe_alias, observe_listener, pending, rollback_next,
};
pub use email::{TeamMail, rollback_digest, rollback_email, team_variable};
pub use rollback::ROLLBACK_CONCURRENCY;

use std::sync::Arc;

use aws_config::SdkConfig;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::aws::sts::{AssumeRoleError, RoleArn, Sessions};
use crate::error::{AwsError, RoleCallError};
use crate::store::{Deployment, SaveError, Store, StoreError, TrafficTarget};

/// How many times a decision is taken again after losing a race before giving up.
pub const MAX_RACES: usize = 5;

/// A failure while working on a deployment. Messages say what, where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The role could not be assumed (shared by every deployment acting as it).
    #[error("{environment}: {source}")]
    AssumeRole {
        environment: String,
        #[source]
        source: Arc<AssumeRoleError>,
    },
    /// The environment's team could not be emailed (one email for every deployment of the
    /// environment rolled back together, so one failure for all of them).
    #[error("{environment}: the team could not be emailed about the rollback: {source}")]
    Notify {
        environment: String,
        #[source]
        source: Arc<AwsError>,
    },
    /// A call in the environment account, as the deployment's role.
    #[error(transparent)]
    Aws(RoleCallError),
    #[error("the deployment table could not be used: {0}")]
    Store(#[source] Box<StoreError>),
    #[error("deployment {0} is not in the table")]
    NotFound(String),
    #[error(
        "deployment {id} changed under this invocation {attempts} times in a row; nothing more \
         was done, the next invocation decides again"
    )]
    Contended { id: String, attempts: usize },
    #[error(
        "deployment {id}: another invocation took over the rollback while this one worked on it"
    )]
    LostLease { id: String },
}

impl From<StoreError> for DeployError {
    fn from(e: StoreError) -> Self {
        DeployError::Store(Box::new(e))
    }
}

impl DeployError {
    /// Temporary: the next invocation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeployError::AssumeRole { source, .. } => source.is_retryable(),
            DeployError::Notify { source, .. } => source.retryable,
            DeployError::Aws(e) => e.is_retryable(),
            DeployError::Store(e) => e.is_retryable(),
            DeployError::Contended { .. } | DeployError::LostLease { .. } => true,
            DeployError::NotFound(_) => false,
        }
    }

    /// A stable name for the runtime's error report and for metrics.
    pub fn error_type(&self) -> &'static str {
        match self {
            DeployError::AssumeRole { .. } => "AssumeRoleFailed",
            DeployError::Notify { .. } => "NotifyFailed",
            DeployError::Aws(_) => "AwsError",
            DeployError::Store(_) => "StoreError",
            DeployError::NotFound(_) => "DeploymentNotFound",
            DeployError::Contended { .. } => "Contended",
            DeployError::LostLease { .. } => "LostLease",
        }
    }

    /// Whether AWS refused the call for lack of permission.
    pub fn is_access_denied(&self) -> bool {
        match self {
            DeployError::AssumeRole { source, .. } => source.is_access_denied(),
            DeployError::Notify { source, .. } => source.is_access_denied(),
            DeployError::Aws(e) => e.is_access_denied(),
            _ => false,
        }
    }
}

/// The clients of one environment account, acting as the deployment's role.
#[derive(Debug, Clone)]
pub struct AccountClients {
    pub lambda: aws_sdk_lambda::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub ecs: aws_sdk_ecs::Client,
}

impl AccountClients {
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            lambda: aws_sdk_lambda::Client::new(config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            ecs: aws_sdk_ecs::Client::new(config),
        }
    }
}

/// Who asked for a rollback, and why.
#[derive(Debug, Clone, Copy)]
pub struct RollbackRequest<'a> {
    /// The alarm that fired, if an alarm caused it.
    pub alarm: Option<&'a str>,
    pub reason: &'a str,
    /// `alarm`, `operator:<name>`, `traffic-action`.
    pub by: &'a str,
    /// The invocation asking (its lease owner name).
    pub owner: &'a str,
    pub now_ms: i64,
    pub job: JobHandling,
}

/// Who answers the deployment's pipeline job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobHandling {
    /// The rollback fails the recorded job (`PutJobFailureResult`).
    FailRecordedJob,
    /// The caller is the traffic action working on that job: it answers the job itself.
    AnsweredByCaller,
}

/// What a rollback request did to one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackOutcome {
    /// This request rolled it back.
    RolledBack,
    /// It was rolled back earlier and this request finished what was left (traffic, job, email).
    Completed,
    /// Rolled back earlier, nothing left: nothing changed.
    AlreadyRolledBack,
    /// Another invocation is rolling it back right now: nothing changed.
    InProgressElsewhere,
    /// It finished (succeeded) before: nothing changed.
    AlreadySucceeded,
}

/// The report of a rollback request on one deployment (the rollback function's result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackReport {
    pub deployment_id: String,
    pub release_id: String,
    pub environment: String,
    pub outcome: RollbackOutcome,
    /// The reason recorded with the rollback (this request's or an earlier one's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<String>,
    /// What became of the pipeline job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl RollbackReport {
    fn of(d: &Deployment, outcome: RollbackOutcome) -> Self {
        Self {
            deployment_id: d.deployment_id.clone(),
            release_id: d.release_id.clone(),
            environment: d.environment.clone(),
            outcome,
            reason: d.rollback.as_ref().map(|r| r.reason.clone()),
            traffic: None,
            job: None,
            email: None,
        }
    }
}

/// Works on deployments: the clients of the tooling account, built once per process.
#[derive(Debug, Clone)]
pub struct Deployer {
    /// The environment accounts' roles, assumed from the function's own (tooling) account, each
    /// once per process while its credentials last.
    pub sessions: Sessions,
    pub store: Store,
    pub codepipeline: aws_sdk_codepipeline::Client,
    pub ses: aws_sdk_sesv2::Client,
    pub mail: TeamMail,
    /// How long a lease holds (milliseconds); at least the function's timeout.
    pub lease_ms: i64,
}

/// What every function that moves traffic reads from its environment: the table, who is told
/// of a rollback, and how long a claim on a deployment holds. The rollback function needs
/// exactly this; the traffic action adds its retry window.
#[derive(Debug, Clone)]
pub struct DeployerConfig {
    /// `SHIPGATE_TABLE`: the DynamoDB table.
    pub table: String,
    /// `SHIPGATE_MAIL_FROM`, `SHIPGATE_TEAM_EMAIL_<ENV>`, `SHIPGATE_ENVIRONMENTS`: who is told
    /// of a rollback.
    pub mail: TeamMail,
    /// `SHIPGATE_DEPLOYMENT_LEASE_SECONDS` (default 120): how long an invocation's claim on a
    /// deployment holds; at least the function's timeout.
    pub lease_seconds: u32,
}

impl DeployerConfig {
    pub fn from_env(env: &crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        let lease_seconds = env.parsed_or("SHIPGATE_DEPLOYMENT_LEASE_SECONDS", 120u32)?;
        if lease_seconds == 0 {
            return Err(crate::config::ConfigError::Invalid {
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

impl Deployer {
    /// The deployer of the function `purpose` (its name in role session names), as `config`
    /// says.
    pub fn from_config(sdk: &SdkConfig, purpose: &'static str, config: &DeployerConfig) -> Self {
        Self::new(
            sdk,
            purpose,
            &config.table,
            config.mail.clone(),
            i64::from(config.lease_seconds) * 1000,
        )
    }

    /// `purpose`: the function's name in role session names.
    pub fn new(
        sdk: &SdkConfig,
        purpose: &'static str,
        table: &str,
        mail: TeamMail,
        lease_ms: i64,
    ) -> Self {
        Self {
            store: Store::new(aws_sdk_dynamodb::Client::new(sdk), table),
            codepipeline: aws_sdk_codepipeline::Client::new(sdk),
            ses: aws_sdk_sesv2::Client::new(sdk),
            sessions: Sessions::new(sdk, purpose),
            mail,
            lease_ms,
        }
    }

    /// The clients of an environment account, as `role_arn` (assumed once per process while
    /// its credentials last). A role that cannot be assumed is [`DeployError::AssumeRole`]:
    /// final when STS refuses, retryable when it is throttled or unavailable.
    pub async fn account_clients(
        &self,
        environment: &str,
        role_arn: &str,
        deployment_id: &str,
    ) -> Result<AccountClients, DeployError> {
        self.role_clients(role_arn, deployment_id)
            .await
            .map_err(|source| DeployError::AssumeRole {
                environment: environment.to_owned(),
                source: Arc::new(source),
            })
    }

    /// The clients of `role_arn`'s account, acting as it; `subject` names a new session.
    async fn role_clients(
        &self,
        role_arn: &str,
        subject: &str,
    ) -> Result<AccountClients, AssumeRoleError> {
        let role = RoleArn::parse(role_arn).map_err(|e| AssumeRoleError {
            role_arn: role_arn.to_owned(),
            source: Box::new(AwsError {
                service: "STS",
                operation: "AssumeRole",
                code: Some("ValidationError".into()),
                message: e.to_string(),
                retryable: false,
                source: Box::new(e),
            }),
        })?;
        let config = self.sessions.config(&role, subject).await?;
        Ok(AccountClients::new(&config))
    }

    /// What the deployment's alias or listener carries now.
    pub async fn observe(
        &self,
        clients: &AccountClients,
        d: &Deployment,
    ) -> Result<Observed, DeployError> {
        let aws = |e| aws_failure(d, e);
        Ok(match &d.target {
            TrafficTarget::LambdaAlias {
                function,
                alias,
                previous_version,
                new_version,
            } => {
                let state = crate::aws::lambda::alias_state(&clients.lambda, function, alias)
                    .await
                    .map_err(aws)?;
                observe_alias(&state, previous_version, new_version)
            }
            TrafficTarget::AlbListener {
                listener_arn,
                blue_target_group,
                green_target_group,
                ..
            } => {
                let weights = crate::aws::elbv2::listener_weights(&clients.elb, listener_arn)
                    .await
                    .map_err(aws)?;
                observe_listener(&weights, blue_target_group, green_target_group)
            }
        })
    }

    /// Puts `percent` of the deployment's traffic on the new version.
    pub async fn shift(
        &self,
        clients: &AccountClients,
        d: &Deployment,
        percent: u8,
    ) -> Result<(), DeployError> {
        let aws = |e| aws_failure(d, e);
        match &d.target {
            TrafficTarget::LambdaAlias {
                function,
                alias,
                previous_version,
                new_version,
            } => crate::aws::lambda::shift_alias(
                &clients.lambda,
                function,
                alias,
                previous_version,
                new_version,
                percent,
            )
            .await
            .map_err(aws),
            TrafficTarget::AlbListener {
                listener_arn,
                blue_target_group,
                green_target_group,
                ..
            } => crate::aws::elbv2::shift_listener(
                &clients.elb,
                listener_arn,
                blue_target_group,
                green_target_group,
                percent,
            )
            .await
            .map_err(aws),
        }
    }

    /// After a rollback: the new version's task set (if the deployment has one) scaled to 0, as
    /// it serves no traffic. It stays in the service, so a new run of the same release scales
    /// it up again instead of creating another.
    async fn scale_in_green(
        &self,
        clients: &AccountClients,
        d: &Deployment,
    ) -> Result<Option<String>, DeployError> {
        let Some(sets) = d.task_sets() else {
            return Ok(None);
        };
        crate::aws::ecs::scale_task_set(
            &clients.ecs,
            &sets.cluster,
            &sets.service,
            &sets.green_task_set,
            0.0,
        )
        .await
        .map_err(|e| aws_failure(d, e))?;
        Ok(Some(format!(
            "the new version's task set {} scaled to 0",
            sets.green_task_set
        )))
    }

    /// Saves `d`, conditional on its revision.
    pub async fn save(
        &self,
        d: &Deployment,
    ) -> Result<Result<Deployment, Deployment>, DeployError> {
        match self.store.save_deployment(d).await {
            Ok(saved) => Ok(Ok(saved)),
            Err(SaveError::Conflict(current)) => Ok(Err(*current)),
            Err(SaveError::Store(e)) => Err(e.into()),
        }
    }
}

/// A call in the deployment's account failed.
pub fn aws_failure(d: &Deployment, e: AwsError) -> DeployError {
    DeployError::Aws(RoleCallError::new(&d.environment, &d.role_arn, "", e))
}

/// Epoch milliseconds as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}
