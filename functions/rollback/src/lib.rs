//! The rollback function: when a CloudWatch alarm goes to ALARM, every in-flight deployment
//! watching it goes back to 100% previous version, its pipeline action fails with the alarm's
//! reason, and the environment's team is emailed.
//!
//! It takes both ways CloudWatch delivers a state change: the EventBridge "CloudWatch Alarm
//! State Change" event (a rule on the default bus) and the alarm's own Lambda-action payload.
//! The account and the alarm name come from the event; the deployments watching that alarm come
//! from the alarm index (a query, never a scan). Only a change to ALARM acts. The record decides
//! the rest, so a duplicate event, a late one (the deployment finished), an out-of-order one (OK
//! after ALARM) or one for an alarm nobody watches changes nothing, and the result says so.
//!
//! Operators reach the same logic through [`RollbackFunction::roll_back_by_hand`] and
//! [`RollbackFunction::list_in_flight`].

use aws_config::SdkConfig;
use aws_lambda_events::event::cloudwatch_alarms::{CloudWatchAlarm, CloudWatchAlarmData};
use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use serde::Serialize;
use serde_json::Value;
use shipgate::deploy::{
    AlarmChange, DeployError, Deployer, JobHandling, NotForDeployment, RollbackOutcome,
    RollbackReport, RollbackRequest, alarm_concerns,
};
use shipgate::metrics::{MetricEvent, MetricName, StageMetrics};
use shipgate::store::{Deployment, StoreError};
use tracing::{Instrument, info, info_span, warn};

/// EventBridge `source` and `detail-type` of an alarm state change.
pub const SOURCE: &str = "aws.cloudwatch";
pub const DETAIL_TYPE: &str = "CloudWatch Alarm State Change";

/// The function's configuration, read once from the environment: what every deployer reads,
/// nothing more.
pub type RollbackConfig = shipgate::deploy::DeployerConfig;

/// Why the function fails.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(
        "the event is neither a CloudWatch \"Alarm State Change\" EventBridge event nor an \
         alarm's Lambda-action payload: {0}"
    )]
    Event(String),
    #[error("the deployment table could not be used: {0}")]
    Store(#[from] Box<StoreError>),
    #[error("deployment {0} is not in the table")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "alarm {alarm}: {} deployment(s) could not be rolled back completely (Lambda's retry \
         finishes them): {}",
        .failures.len(),
        .failures.join("; ")
    )]
    Incomplete {
        alarm: String,
        failures: Vec<String>,
        /// What was done before the failures.
        done: Box<AlarmResult>,
    },
    #[error("{0}")]
    Deploy(#[from] DeployError),
}

impl From<StoreError> for RollbackError {
    fn from(e: StoreError) -> Self {
        RollbackError::Store(Box::new(e))
    }
}

impl RollbackError {
    pub fn error_type(&self) -> &'static str {
        match self {
            RollbackError::Event(_) => "MalformedEvent",
            RollbackError::Store(_) => "StoreError",
            RollbackError::NotFound(_) => "DeploymentNotFound",
            RollbackError::Invalid(_) => "InvalidRequest",
            RollbackError::Incomplete { .. } => "RollbackIncomplete",
            RollbackError::Deploy(e) => e.error_type(),
        }
    }
}

/// Whether the event acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmAction {
    /// Not a change to ALARM, or nobody watches the alarm: nothing looked at.
    Ignored,
    /// The deployments watching the alarm were looked at (see each one's outcome).
    Handled,
}

/// A deployment the event does not concern, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub deployment_id: String,
    pub why: String,
}

/// The function's result: what the event changed, deployment by deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmResult {
    pub alarm: String,
    pub account_id: String,
    pub state: String,
    pub action: AlarmAction,
    /// Why nothing was done, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The deployments that were rolled back, or found rolled back or finished already.
    pub deployments: Vec<RollbackReport>,
    /// Watching deployments the event does not concern.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

impl AlarmResult {
    /// How many deployments this event rolled back (or finished rolling back).
    pub fn rolled_back(&self) -> usize {
        self.deployments.iter().filter(|r| carried_out(r)).count()
    }
}

/// Whether this request rolled the deployment back (or finished an earlier attempt), rather
/// than finding it rolled back, succeeded or being rolled back by someone else.
fn carried_out(report: &RollbackReport) -> bool {
    matches!(
        report.outcome,
        RollbackOutcome::RolledBack | RollbackOutcome::Completed
    )
}

/// One rollback, counted in its environment; `by` is `alarm` or `operator`.
fn rollback_metric(report: &RollbackReport, execution_id: &str, by: &str) -> MetricEvent {
    StageMetrics::new(&report.environment, &report.release_id, execution_id)
        .event(MetricName::Rollbacks, 1.0)
        .property("by", by)
}

/// Reads an alarm state change from either delivery: the EventBridge event (`detail-type`,
/// `detail`) or the alarm's Lambda-action payload (`alarmData`).
pub fn read_alarm_event(event: &Value) -> Result<AlarmChange, RollbackError> {
    let bad = |m: String| RollbackError::Event(m);
    let Some(object) = event.as_object() else {
        return Err(bad("not a JSON object".into()));
    };
    let (account, data) = if object.contains_key("detail-type") {
        let parsed: CloudWatchEvent<CloudWatchAlarmData<Value, Value>> =
            serde_json::from_value(event.clone()).map_err(|e| bad(e.to_string()))?;
        if parsed.source.as_deref() != Some(SOURCE)
            || parsed.detail_type.as_deref() != Some(DETAIL_TYPE)
        {
            return Err(bad(format!(
                "source {:?}, detail-type {:?}",
                parsed.source.unwrap_or_default(),
                parsed.detail_type.unwrap_or_default()
            )));
        }
        let detail = parsed
            .detail
            .ok_or_else(|| bad("the event has no detail".into()))?;
        (parsed.account_id, detail)
    } else if object.contains_key("alarmData") {
        let parsed: CloudWatchAlarm<Value, Value> =
            serde_json::from_value(event.clone()).map_err(|e| bad(e.to_string()))?;
        if parsed.source.as_deref().is_some_and(|s| s != SOURCE) {
            return Err(bad(format!(
                "source {:?}",
                parsed.source.unwrap_or_default()
            )));
        }
        (parsed.account_id, parsed.alarm_data)
    } else {
        return Err(bad("no detail-type nor alarmData".into()));
    };
    let account_id = account
        .map(|a| a.trim().to_owned())
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| bad("no 12-digit account id".into()))?;
    let alarm = data.alarm_name.trim().to_owned();
    if alarm.is_empty() || alarm.chars().count() > 255 {
        return Err(bad(
            "no alarm name (or one longer than 255 characters)".into()
        ));
    }
    let state = data
        .state
        .ok_or_else(|| bad(format!("alarm {alarm}: the event has no state")))?;
    let name = |v: &aws_lambda_events::event::cloudwatch_alarms::CloudWatchAlarmStateValue| {
        serde_json::to_value(v)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    Ok(AlarmChange {
        account_id,
        state: name(&state.value),
        reason: state.reason.clone(),
        state_at_ms: state.timestamp.timestamp_millis(),
        previous_state: data.previous_state.as_ref().map(|p| name(&p.value)),
        alarm,
    })
}

/// The function, its clients built once per process.
#[derive(Debug, Clone)]
pub struct RollbackFunction {
    pub config: RollbackConfig,
    pub deployer: Deployer,
}

impl RollbackFunction {
    pub fn new(config: RollbackConfig, sdk: &SdkConfig) -> Self {
        Self {
            deployer: Deployer::from_config(sdk, "rollback", &config),
            config,
        }
    }

    /// Handles one alarm event (either shape) now.
    pub async fn handle(&self, event: Value) -> Result<AlarmResult, RollbackError> {
        self.handle_at(event, now_ms()).await
    }

    /// Handles one alarm event as if the time were `now_ms`.
    pub async fn handle_at(&self, event: Value, now_ms: i64) -> Result<AlarmResult, RollbackError> {
        let change = read_alarm_event(&event)?;
        let span = info_span!("rollback", alarm = %change.alarm, account = %change.account_id, state = %change.state);
        self.on_alarm(change, now_ms).instrument(span).await
    }

    async fn on_alarm(
        &self,
        change: AlarmChange,
        now_ms: i64,
    ) -> Result<AlarmResult, RollbackError> {
        let mut result = AlarmResult {
            alarm: change.alarm.clone(),
            account_id: change.account_id.clone(),
            state: change.state.clone(),
            action: AlarmAction::Ignored,
            note: None,
            deployments: Vec::new(),
            skipped: Vec::new(),
        };
        if change.state != "ALARM" {
            result.note = Some(format!(
                "state {} is not ALARM: only a change to ALARM rolls back",
                change.state
            ));
            info!(
                outcome = "ignored",
                note = result.note.as_deref().unwrap_or_default(),
                "alarm event changes nothing"
            );
            return Ok(result);
        }
        let watching = self
            .deployer
            .store
            .deployments_watching(&change.account_id, &change.alarm)
            .await?;
        if watching.is_empty() {
            result.note = Some(format!(
                "no deployment watches alarm {} in account {}",
                change.alarm, change.account_id
            ));
            info!(
                outcome = "ignored",
                note = result.note.as_deref().unwrap_or_default(),
                "alarm event changes nothing"
            );
            return Ok(result);
        }
        result.action = AlarmAction::Handled;
        let owner = format!("rollback/{}", uuid::Uuid::new_v4());
        let mut failures = Vec::new();
        let mut concerned = Vec::new();
        for d in watching {
            match alarm_concerns(&change, &d) {
                Ok(()) => concerned.push(d),
                Err(why) => {
                    let why = match why {
                        NotForDeployment::NotAlarm { state } => {
                            format!("state {state} is not ALARM")
                        }
                        NotForDeployment::Predates { .. } => format!(
                            "the alarm went to ALARM before the deployment started ({}); the \
                             traffic action checks the alarm before each step",
                            shipgate::deploy::rfc3339(change.state_at_ms)
                        ),
                    };
                    result.skipped.push(Skipped {
                        deployment_id: d.deployment_id.clone(),
                        why,
                    });
                }
            }
        }
        let ids: Vec<(String, String)> = concerned
            .iter()
            .map(|d| (d.deployment_id.clone(), d.execution_id.clone()))
            .collect();
        // Every deployment at once, each step for all of them (one claim transaction, each role
        // assumed once, the weights and jobs a bounded number at a time, one email per
        // environment); a failure of one does not stop the others. Each deployment has its own
        // claim on its record, so they cannot get in each other's way.
        let outcomes = self
            .deployer
            .roll_back_all(
                concerned,
                RollbackRequest {
                    alarm: Some(&change.alarm),
                    reason: &change.reason,
                    by: "alarm",
                    owner: &owner,
                    now_ms,
                    job: JobHandling::FailRecordedJob,
                },
                None,
            )
            .await;
        // The clock, for the metric; decisions were taken at `now_ms`.
        let done_ms = crate::now_ms();
        for ((id, execution_id), outcome) in ids.into_iter().zip(outcomes) {
            match outcome {
                Ok(report) => {
                    info!(deployment_id = %id, release_id = %report.release_id, execution_id = %execution_id, env = %report.environment, outcome = ?report.outcome, traffic = report.traffic.as_deref().unwrap_or_default(), job = report.job.as_deref().unwrap_or_default(), email = report.email.as_deref().unwrap_or_default(), "alarm handled for deployment");
                    if carried_out(&report) {
                        // Traffic is restored first, then the job failed and the team emailed:
                        // the time to the end bounds the time to the weights restored.
                        let seconds = (done_ms - change.state_at_ms) as f64 / 1000.0;
                        rollback_metric(&report, &execution_id, "alarm")
                            .and(MetricName::RollbackSeconds, seconds.max(0.0))
                            .property("alarm", change.alarm.as_str())
                            .emit();
                    }
                    result.deployments.push(report);
                }
                Err(e) => {
                    warn!(deployment_id = %id, execution_id = %execution_id, error = %e, error_type = e.error_type(), outcome = "failed", "rollback incomplete");
                    failures.push(format!("{id}: {e}"));
                }
            }
        }
        if !failures.is_empty() {
            return Err(RollbackError::Incomplete {
                alarm: change.alarm,
                failures,
                done: Box::new(result),
            });
        }
        Ok(result)
    }

    /// An operator rolls a deployment back: the same as an alarm would, the job failed with the
    /// operator's reason. A finished or rolled-back deployment is left as it is (the report
    /// says so).
    pub async fn roll_back_by_hand(
        &self,
        deployment_id: &str,
        operator: &str,
        reason: &str,
    ) -> Result<RollbackReport, RollbackError> {
        let operator = operator.trim();
        let reason = reason.trim();
        if operator.is_empty() || operator.chars().any(char::is_control) {
            return Err(RollbackError::Invalid(
                "an operator rolling back by hand must give a name".into(),
            ));
        }
        if reason.is_empty() {
            return Err(RollbackError::Invalid(
                "an operator rolling back by hand must give a reason (the pipeline and the team \
                 see it)"
                    .into(),
            ));
        }
        let d = self
            .deployer
            .store
            .get_deployment(deployment_id)
            .await?
            .ok_or_else(|| RollbackError::NotFound(deployment_id.to_owned()))?;
        let by = format!("operator:{operator}");
        let owner = format!("{by}/{}", uuid::Uuid::new_v4());
        let execution_id = d.execution_id.clone();
        let report = self
            .deployer
            .roll_back(
                d,
                RollbackRequest {
                    alarm: None,
                    reason,
                    by: &by,
                    owner: &owner,
                    now_ms: now_ms(),
                    job: JobHandling::FailRecordedJob,
                },
                None,
            )
            .await?;
        info!(deployment_id, release_id = %report.release_id, execution_id = %execution_id, env = %report.environment, by = %by, outcome = ?report.outcome, "rolled back by hand");
        if carried_out(&report) {
            rollback_metric(&report, &execution_id, "operator").emit();
        }
        Ok(report)
    }

    /// The deployments in flight (shifting or baking), oldest first.
    pub async fn list_in_flight(&self) -> Result<Vec<Deployment>, RollbackError> {
        Ok(self.deployer.store.active_deployments().await?)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl shipgate::lambda::Function for RollbackFunction {
    type Config = RollbackConfig;

    fn configure(
        env: &shipgate::config::Env,
    ) -> Result<RollbackConfig, shipgate::config::ConfigError> {
        RollbackConfig::from_env(env)
    }

    fn build(
        config: RollbackConfig,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, shipgate::lambda::BuildError> {
        Ok(Self::new(config, sdk))
    }
}

impl shipgate::lambda::EventHandler for RollbackFunction {
    type Output = AlarmResult;
    type Error = RollbackError;

    async fn handle(
        &self,
        event: serde_json::Value,
        _request_id: &str,
    ) -> Result<AlarmResult, RollbackError> {
        RollbackFunction::handle(self, event).await
    }
}

impl shipgate::lambda::ErrorType for RollbackError {
    fn error_type(&self) -> &'static str {
        RollbackError::error_type(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let text = std::fs::read_to_string(dir.join(name)).expect("fixture");
        serde_json::from_str(&text).expect("fixture JSON")
    }

    #[test]
    fn the_lambda_action_payload_reads() {
        let change = read_alarm_event(&fixture("example-cloudwatch-alarm-metric.json")).unwrap();
        assert_eq!(change.account_id, "444455556666");
        assert_eq!(change.alarm, "lambda-demo-metric-alarm");
        assert_eq!(change.state, "ALARM");
        assert_eq!(change.previous_state.as_deref(), Some("INSUFFICIENT_DATA"));
        assert_eq!(change.reason, "test");
        assert!(change.state_at_ms > 1_690_000_000_000);
    }

    #[test]
    fn the_composite_payload_reads() {
        let change = read_alarm_event(&fixture("example-cloudwatch-alarm-composite.json")).unwrap();
        assert_eq!(change.alarm, "CompositeDemo.Main");
        assert_eq!(change.account_id, "111122223333");
        assert_eq!(change.state, "ALARM");
    }

    #[test]
    fn the_eventbridge_event_reads() {
        let change = read_alarm_event(&fixture("eventbridge-alarm-state-change.json")).unwrap();
        assert_eq!(change.account_id, "123456789012");
        assert_eq!(change.alarm, "ServerCpuTooHigh");
        assert_eq!(change.state, "ALARM");
        assert_eq!(change.previous_state.as_deref(), Some("OK"));
        assert!(change.reason.starts_with("Threshold Crossed"));
    }

    #[test]
    fn other_events_are_refused_with_a_reason() {
        let mut other = fixture("eventbridge-alarm-state-change.json");
        other["source"] = "aws.ec2".into();
        assert!(matches!(
            read_alarm_event(&other),
            Err(RollbackError::Event(_))
        ));
        for bad in [
            serde_json::json!([]),
            serde_json::json!({"Records": []}),
            serde_json::json!({"alarmData": {"alarmName": "x"}, "time": "nope"}),
        ] {
            let err = read_alarm_event(&bad).unwrap_err();
            assert_eq!(err.error_type(), "MalformedEvent", "{bad}");
        }
        let mut no_account = fixture("example-cloudwatch-alarm-metric.json");
        no_account["accountId"] = "12".into();
        assert!(
            read_alarm_event(&no_account)
                .unwrap_err()
                .to_string()
                .contains("account")
        );
    }
}
