//! Delivery of CloudWatch alarm state changes to the functions, as CloudWatch does in AWS.
//!
//! In AWS an alarm changing state reaches a function two ways: CloudWatch puts a
//! "CloudWatch Alarm State Change" event on the default EventBridge bus, where a rule (a SAM
//! `EventBridgeRule` or `CloudWatchEvent` event of the function) invokes the function with it; and
//! the alarm's own Lambda actions (`AlarmActions`, `OKActions`, `InsufficientDataActions` naming a
//! function ARN) invoke the function with CloudWatch's direct payload. moto keeps alarms and
//! answers `SetAlarmState` (the new state, reason and a new `StateUpdatedTimestamp` show in
//! `DescribeAlarms`), but it emits no EventBridge event, invokes no action, and has no
//! `DescribeAlarmHistory` or `PutCompositeAlarm` (both answer HTTP 500 in moto 5.2).
//!
//! (The workspace pins `aws-sdk-cloudwatch` to 1.98, which speaks the query protocol: from 1.100
//! the client speaks rpc-v2-cbor, which moto answers with 404.)
//!
//! So the local stack polls `DescribeAlarms`, remembers each alarm's last seen state, and on each
//! transition builds both payloads in AWS's documented shapes (the `aws_lambda_events` types read
//! them back) and invokes the functions asynchronously, with Lambda's retries of a failed
//! asynchronous invocation. Decisions are pure: [`AlarmTracker::observe`] turns successive
//! snapshots into [`StateChange`]s; the builders turn a change into JSON.
//!
//! What it does not model: alarm evaluation itself (alarms change only through `SetAlarmState`
//! or a re-`PutMetricAlarm`, which in moto resets the state to `OK`); actions other than Lambda
//! (SNS, Auto Scaling, EC2, Systems Manager are ignored); EventBridge input transformers, and
//! event-pattern filters beyond `source` and `detail-type` (a rule filtering on
//! `detail.state.value` still receives every transition); the "Alarm Configuration Change"
//! events; delivery ordering (each invocation runs on its own, as in AWS, which promises none);
//! and transitions that come and go between two polls (ALARM then back to OK within one
//! interval is seen as no change). Alarms in other accounts are seen only by a watcher given a
//! client for that account.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{
    AlarmType, CompositeAlarm, Dimension, MetricAlarm, MetricDataQuery, StandardUnit,
};
use aws_smithy_types::DateTime;
use serde_json::{Map, Value, json};
use serde_yaml::Value as Yaml;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::functions::{DeadLetter, DeadLetterQueue, FunctionHost, spawn_async_invocation};
use crate::provision::{LambdaPermission, Provisioned};

/// The EventBridge `source` of CloudWatch's events.
pub const SOURCE: &str = "aws.cloudwatch";
/// The EventBridge `detail-type` of an alarm's state change.
pub const DETAIL_TYPE: &str = "CloudWatch Alarm State Change";

/// The state and reason moto gives every alarm it creates (AWS starts alarms in
/// `INSUFFICIENT_DATA`; moto, which never evaluates them, in `OK`).
const MOTO_INITIAL_STATE: &str = "OK";
const MOTO_INITIAL_REASON: &str = "Unchecked: Initial alarm creation";

/// Logical ids of the template's functions subscribed to alarm state changes: an event of
/// `Type: EventBridgeRule` or `CloudWatchEvent` whose `Pattern` takes `source: aws.cloudwatch`
/// and either takes `detail-type: CloudWatch Alarm State Change` or does not filter on it.
/// Disabled rules and rules on a bus other than `default` (where CloudWatch puts its events)
/// receive nothing, so they are left out.
pub fn alarm_subscribers(template_yaml: &str) -> anyhow::Result<Vec<String>> {
    let template: Yaml = serde_yaml::from_str(template_yaml)
        .map_err(|e| anyhow::anyhow!("the template is not YAML: {e}"))?;
    let Some(resources) = template.get("Resources").and_then(Yaml::as_mapping) else {
        anyhow::bail!("the template has no Resources");
    };
    let mut subscribers = Vec::new();
    for (id, resource) in resources {
        let Some(id) = id.as_str() else { continue };
        if resource.get("Type").and_then(Yaml::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let events = resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Yaml::as_mapping);
        let subscribed = events
            .into_iter()
            .flatten()
            .any(|(_, event)| rule_receives_alarm_changes(event));
        if subscribed && !subscribers.iter().any(|s| s == id) {
            subscribers.push(id.to_owned());
        }
    }
    Ok(subscribers)
}

fn rule_receives_alarm_changes(event: &Yaml) -> bool {
    if !matches!(
        event.get("Type").and_then(Yaml::as_str),
        Some("EventBridgeRule" | "CloudWatchEvent")
    ) {
        return false;
    }
    let Some(props) = event.get("Properties") else {
        return false;
    };
    let disabled = props.get("Enabled").and_then(Yaml::as_bool) == Some(false)
        || props
            .get("State")
            .and_then(Yaml::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("DISABLED"));
    let other_bus = props
        .get("EventBusName")
        .is_some_and(|bus| bus.as_str() != Some("default"));
    if disabled || other_bus {
        return false;
    }
    let Some(pattern) = props.get("Pattern") else {
        return false;
    };
    pattern_accepts(pattern.get("source"), SOURCE) == Some(true)
        && pattern_accepts(pattern.get("detail-type"), DETAIL_TYPE) != Some(false)
}

/// Whether a pattern field takes `value`: `None` when the pattern has no such field (it then
/// takes anything). Exact values and `prefix` matchers are understood; a field written any other
/// way (intrinsic functions, other matchers) is taken as not matching.
fn pattern_accepts(field: Option<&Yaml>, value: &str) -> Option<bool> {
    let field = field?;
    let accepts = |candidate: &Yaml| match candidate {
        Yaml::String(s) => s == value,
        Yaml::Mapping(_) => candidate
            .get("prefix")
            .and_then(Yaml::as_str)
            .is_some_and(|p| value.starts_with(p)),
        _ => false,
    };
    Some(match field {
        Yaml::Sequence(candidates) => candidates.iter().any(accepts),
        single => accepts(single),
    })
}

/// One state of an alarm, as `DescribeAlarms` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmState {
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub value: String,
    pub reason: String,
    /// JSON text, as CloudWatch gives it.
    pub reason_data: Option<String>,
    /// `StateUpdatedTimestamp`.
    pub timestamp: DateTime,
    /// Composite alarms only: why the alarm's actions are held back.
    pub actions_suppressed_by: Option<String>,
    pub actions_suppressed_reason: Option<String>,
}

/// What the events need of an alarm, from either kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub name: String,
    pub arn: String,
    pub state: AlarmState,
    /// The events' `configuration` object (description, metrics or rule).
    pub configuration: Value,
    pub actions_enabled: bool,
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
    pub insufficient_data_actions: Vec<String>,
    /// `AlarmConfigurationUpdatedTimestamp`: when moto (re)created the alarm.
    pub configuration_updated: Option<DateTime>,
}

/// An [`Alarm`] from a `MetricAlarm` or a `CompositeAlarm` (the SDK's two types name the fields
/// they share alike), with its ARN, configuration and suppression read by the caller; `return
/// None` when the name, state or its timestamp is missing.
macro_rules! alarm_of {
    ($alarm:expr, $arn:expr, $configuration:expr, $suppressed_by:expr, $suppressed_reason:expr) => {{
        let alarm = $alarm;
        Alarm {
            name: alarm.alarm_name()?.to_owned(),
            arn: $arn,
            state: AlarmState {
                value: alarm.state_value()?.as_str().to_owned(),
                reason: alarm.state_reason().unwrap_or_default().to_owned(),
                reason_data: alarm.state_reason_data().map(str::to_owned),
                timestamp: *alarm.state_updated_timestamp()?,
                actions_suppressed_by: $suppressed_by,
                actions_suppressed_reason: $suppressed_reason,
            },
            configuration: Value::Object($configuration),
            actions_enabled: alarm.actions_enabled().unwrap_or(true),
            alarm_actions: alarm.alarm_actions().to_vec(),
            ok_actions: alarm.ok_actions().to_vec(),
            insufficient_data_actions: alarm.insufficient_data_actions().to_vec(),
            configuration_updated: alarm.alarm_configuration_updated_timestamp().copied(),
        }
    }};
}

impl Alarm {
    /// `None` when moto's answer lacks the name, ARN, state or its timestamp.
    pub fn from_metric_alarm(alarm: &MetricAlarm) -> Option<Self> {
        let arn = alarm.alarm_arn()?.to_owned();
        let mut configuration = Map::new();
        insert_present(&mut configuration, "description", alarm.alarm_description());
        configuration.insert(
            "metrics".into(),
            Value::Array(metric_definitions(alarm, &arn)),
        );
        Some(alarm_of!(alarm, arn, configuration, None, None))
    }

    /// `None` when the answer lacks the name, ARN, state or its timestamp.
    pub fn from_composite_alarm(alarm: &CompositeAlarm) -> Option<Self> {
        let mut configuration = Map::new();
        insert_present(&mut configuration, "description", alarm.alarm_description());
        configuration.insert(
            "alarmRule".into(),
            json!(alarm.alarm_rule().unwrap_or_default()),
        );
        insert_present(
            &mut configuration,
            "actionsSuppressor",
            alarm.actions_suppressor(),
        );
        insert_present(
            &mut configuration,
            "actionsSuppressorWaitPeriod",
            alarm.actions_suppressor_wait_period(),
        );
        insert_present(
            &mut configuration,
            "actionsSuppressorExtensionPeriod",
            alarm.actions_suppressor_extension_period(),
        );
        Some(alarm_of!(
            alarm,
            alarm.alarm_arn()?.to_owned(),
            configuration,
            alarm.actions_suppressed_by().map(|s| s.as_str().to_owned()),
            alarm.actions_suppressed_reason().map(str::to_owned)
        ))
    }

    /// The actions CloudWatch runs when the alarm enters `state`.
    fn actions_for(&self, state: &str) -> &[String] {
        match state {
            "ALARM" => &self.alarm_actions,
            "OK" => &self.ok_actions,
            "INSUFFICIENT_DATA" => &self.insufficient_data_actions,
            _ => &[],
        }
    }
}

/// The `metrics` of a metric alarm's event configuration. A single-metric alarm is written as
/// the one metric query CloudWatch reports for it, under an id stable for the alarm (CloudWatch
/// generates one); a metric-math alarm lists its queries.
fn metric_definitions(alarm: &MetricAlarm, arn: &str) -> Vec<Value> {
    if !alarm.metrics().is_empty() {
        return alarm.metrics().iter().map(metric_query).collect();
    }
    let Some(name) = alarm.metric_name() else {
        return Vec::new();
    };
    let statistic = alarm
        .statistic()
        .map(|s| s.as_str())
        .or(alarm.extended_statistic());
    let stat = metric_stat(
        metric(alarm.namespace(), name, alarm.dimensions()),
        alarm.period(),
        statistic,
        alarm.unit(),
    );
    vec![json!({"id": stable_id(arn), "metricStat": stat, "returnData": true})]
}

/// Sets `key` only when there is a value: the events leave absent fields out.
fn insert_present(map: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), value.into());
    }
}

/// A metric of the event's configuration: namespace, name and dimensions.
fn metric(namespace: Option<&str>, name: &str, dimensions: &[Dimension]) -> Value {
    let mut metric = Map::new();
    insert_present(&mut metric, "namespace", namespace);
    metric.insert("name".into(), json!(name));
    metric.insert("dimensions".into(), dimensions_object(dimensions));
    Value::Object(metric)
}

/// A `metricStat` of the event's configuration: the metric with its period, statistic and unit.
fn metric_stat(
    metric: Value,
    period: Option<i32>,
    stat: Option<&str>,
    unit: Option<&StandardUnit>,
) -> Value {
    let mut out = Map::new();
    out.insert("metric".into(), metric);
    insert_present(&mut out, "period", period);
    insert_present(&mut out, "stat", stat);
    insert_present(&mut out, "unit", unit.map(|v| v.as_str()));
    Value::Object(out)
}

fn metric_query(query: &MetricDataQuery) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(query.id().unwrap_or_default()));
    if let Some(stat) = query.metric_stat() {
        let metric = stat.metric().map_or_else(
            || json!({}),
            |m| {
                metric(
                    m.namespace(),
                    m.metric_name().unwrap_or_default(),
                    m.dimensions(),
                )
            },
        );
        out.insert(
            "metricStat".into(),
            metric_stat(metric, stat.period(), stat.stat(), stat.unit()),
        );
    }
    insert_present(&mut out, "expression", query.expression());
    insert_present(&mut out, "label", query.label());
    insert_present(&mut out, "period", query.period());
    // CloudWatch's default for an alarm's queries.
    out.insert(
        "returnData".into(),
        json!(query.return_data().unwrap_or(true)),
    );
    Value::Object(out)
}

fn dimensions_object(dimensions: &[Dimension]) -> Value {
    Value::Object(
        dimensions
            .iter()
            .filter_map(|d| Some((d.name()?.to_owned(), json!(d.value()?))))
            .collect(),
    )
}

/// A UUID-shaped id derived from the alarm ARN, so every event of one alarm names its metric
/// the same way, as CloudWatch's do.
fn stable_id(arn: &str) -> String {
    let h = hex::encode(&Sha256::digest(arn.as_bytes())[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// An alarm that entered a new state.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    /// The alarm as it is now (its `state` is the new one).
    pub alarm: Alarm,
    /// The state it left.
    pub previous: AlarmState,
}

impl StateChange {
    /// The EventBridge event CloudWatch puts on the default bus ("CloudWatch Alarm State
    /// Change"). `event_id` is EventBridge's per-event id.
    pub fn eventbridge_event(&self, account: &str, region: &str, event_id: &str) -> Value {
        json!({
            "version": "0",
            "id": event_id,
            "detail-type": DETAIL_TYPE,
            "source": SOURCE,
            "account": account,
            "time": event_time(&self.alarm.state.timestamp),
            "region": region,
            "resources": [self.alarm.arn],
            "detail": self.alarm_data(),
        })
    }

    /// The payload an alarm's Lambda action invokes the function with.
    pub fn lambda_action_payload(&self, account: &str, region: &str) -> Value {
        json!({
            "source": SOURCE,
            "alarmArn": self.alarm.arn,
            "accountId": account,
            "time": state_time(&self.alarm.state.timestamp),
            "region": region,
            "alarmData": self.alarm_data(),
        })
    }

    /// The function names the alarm's Lambda actions for its new state invoke, one per action
    /// (qualifiers dropped). None when actions are disabled or suppressed.
    pub fn lambda_action_functions(&self) -> Vec<String> {
        if !self.alarm.actions_enabled || self.alarm.state.actions_suppressed_by.is_some() {
            return Vec::new();
        }
        self.alarm
            .actions_for(&self.alarm.state.value)
            .iter()
            .filter_map(|arn| lambda_function_name(arn))
            .map(str::to_owned)
            .collect()
    }

    /// The `detail` of the EventBridge event and the `alarmData` of the Lambda payload: one shape.
    fn alarm_data(&self) -> Value {
        json!({
            "alarmName": self.alarm.name,
            "state": state_json(&self.alarm.state),
            "previousState": state_json(&self.previous),
            "configuration": self.alarm.configuration,
        })
    }
}

fn state_json(state: &AlarmState) -> Value {
    let mut out = Map::new();
    out.insert("value".into(), json!(state.value));
    out.insert("reason".into(), json!(state.reason));
    insert_present(&mut out, "reasonData", state.reason_data.as_deref());
    out.insert("timestamp".into(), json!(state_time(&state.timestamp)));
    insert_present(
        &mut out,
        "actionsSuppressedBy",
        state.actions_suppressed_by.as_deref(),
    );
    insert_present(
        &mut out,
        "actionsSuppressedReason",
        state.actions_suppressed_reason.as_deref(),
    );
    Value::Object(out)
}

/// The function name in a Lambda function ARN
/// (`arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`).
pub fn lambda_function_name(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", _, _, "function", name, ..]
            if !name.is_empty() && parts.len() <= 8 =>
        {
            Some(name)
        }
        _ => None,
    }
}

/// CloudWatch's state timestamps: `2019-10-02T17:04:40.989+0000`.
fn state_time(t: &DateTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    format_time(t, FORMAT)
}

/// EventBridge's `time`: whole seconds, `2019-10-02T17:04:40Z`.
fn event_time(t: &DateTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    format_time(t, FORMAT)
}

fn format_time(
    t: &DateTime,
    format: &[time::format_description::BorrowedFormatItem<'_>],
) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos())
        .ok()
        .and_then(|t| t.format(format).ok())
        // Out of `time`'s range: still a timestamp, in smithy's own RFC 3339 rendering.
        .unwrap_or_else(|| t.to_string())
}

/// The watcher's memory: the last state seen of each alarm, by ARN.
///
/// An alarm seen for the first time is compared with the state moto created it in (`OK`,
/// "Unchecked: Initial alarm creation", at its configuration timestamp): an alarm created and
/// set to `ALARM` between two polls still yields its transition, and one never set yields none.
/// Only a change of value is a transition: a state set again to the value it has (moto gives it a
/// new timestamp and reason) updates the memory, so the next transition's `previousState` is what
/// `DescribeAlarms` last showed, and emits nothing, as CloudWatch emits events on transitions
/// only.
#[derive(Debug, Default)]
pub struct AlarmTracker {
    seen: HashMap<String, AlarmState>,
}

impl AlarmTracker {
    /// Takes one complete `DescribeAlarms` snapshot; answers the transitions since the last one.
    /// Alarms absent from the snapshot (deleted) are forgotten.
    pub fn observe(&mut self, alarms: Vec<Alarm>) -> Vec<StateChange> {
        let mut seen = HashMap::with_capacity(alarms.len());
        let mut changes = Vec::new();
        for alarm in alarms {
            let previous = self
                .seen
                .remove(&alarm.arn)
                .unwrap_or_else(|| moto_initial_state(&alarm));
            seen.insert(alarm.arn.clone(), alarm.state.clone());
            if previous.value != alarm.state.value {
                changes.push(StateChange { alarm, previous });
            } else if previous != alarm.state {
                debug!(alarm = %alarm.name, state = %alarm.state.value, "alarm state set again; no transition");
            }
        }
        self.seen = seen;
        changes
    }
}

fn moto_initial_state(alarm: &Alarm) -> AlarmState {
    AlarmState {
        value: MOTO_INITIAL_STATE.to_owned(),
        reason: MOTO_INITIAL_REASON.to_owned(),
        reason_data: Some("{}".to_owned()),
        timestamp: alarm.configuration_updated.unwrap_or(alarm.state.timestamp),
        actions_suppressed_by: None,
        actions_suppressed_reason: None,
    }
}

/// Resolves the names Lambda ARNs carry (physical names such as `shipgate-RollbackFunction`) to
/// the template logical ids the local functions answer to; other names pass through unchanged.
pub struct NamedFunctions {
    inner: Arc<dyn FunctionHost>,
    logical_ids: BTreeMap<String, String>,
}

impl NamedFunctions {
    /// `physical_to_logical`: physical function name → logical id.
    pub fn new(
        inner: Arc<dyn FunctionHost>,
        physical_to_logical: BTreeMap<String, String>,
    ) -> Self {
        Self {
            inner,
            logical_ids: physical_to_logical,
        }
    }

    /// The logical id of a function named by its physical name (or by its logical id).
    fn logical_id<'a>(&'a self, function: &'a str) -> &'a str {
        self.logical_ids
            .get(function)
            .map_or(function, String::as_str)
    }

    /// With the physical names provisioning gave the template's functions.
    pub fn from_provisioned(inner: Arc<dyn FunctionHost>, provisioned: &Provisioned) -> Self {
        Self::new(inner, provisioned.function_logical_ids())
    }
}

impl FunctionHost for NamedFunctions {
    fn call(
        &self,
        function: &str,
        event: Value,
    ) -> futures::future::BoxFuture<'static, Result<Value, Value>> {
        self.inner.call(self.logical_id(function), event)
    }

    fn dead_letter_queue(&self, function: &str) -> Option<DeadLetterQueue> {
        self.inner.dead_letter_queue(self.logical_id(function))
    }
}

/// Polls `DescribeAlarms` every `poll` until `stop` flips, delivering each transition to every
/// `subscribers` function (the EventBridge event) and to the functions the alarm's Lambda actions
/// name (CloudWatch's payload, the function called by the name in its ARN: wrap the host in
/// [`NamedFunctions`] to reach functions by physical name). Invocations are asynchronous, as
/// both EventBridge and alarm actions invoke Lambda: a failed one is retried after each of
/// `retry_delays` (Lambda: two retries), then sent to the function's dead-letter queue (the
/// host's), or logged and dropped without one.
#[allow(clippy::too_many_arguments)]
pub async fn watch_alarms(
    cloudwatch: aws_sdk_cloudwatch::Client,
    host: Arc<dyn FunctionHost>,
    routes: Arc<AlarmRoutes>,
    account: String,
    region: String,
    poll: Duration,
    retry_delays: Vec<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tracker = AlarmTracker::default();
    let mut failing = false;
    loop {
        if *stop.borrow() {
            return;
        }
        match describe_all_alarms(&cloudwatch).await {
            Ok(alarms) => {
                failing = false;
                for change in tracker.observe(alarms) {
                    dispatch(&change, &host, &routes, &account, &region, &retry_delays);
                }
            }
            // Once per outage: the memory is kept, so transitions are caught up when it ends.
            Err(error) if !failing => {
                failing = true;
                warn!(%error, "describing alarms failed; retrying every poll");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Where an alarm's state changes go: the functions a rule subscribes (EventBridge), and who
/// the alarms' own Lambda actions may invoke (the functions' resource-based policies).
#[derive(Debug, Clone, Default)]
pub struct AlarmRoutes {
    /// Logical ids of the functions subscribed by a rule ([`alarm_subscribers`]).
    pub subscribers: Vec<String>,
    /// The template's `AWS::Lambda::Permission` statements.
    pub permissions: Vec<LambdaPermission>,
}

/// The service principal CloudWatch invokes an alarm's Lambda action as; the function's policy
/// must allow it, for the alarm's account and ARN
/// (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarms-and-actions-Lambda.html>).
pub const ALARM_ACTION_PRINCIPAL: &str = "lambda.alarms.cloudwatch.amazonaws.com";

impl AlarmRoutes {
    /// Whether CloudWatch may invoke `function` for the alarm `alarm_arn` of `account`.
    pub fn may_invoke(&self, function: &str, account: &str, alarm_arn: &str) -> bool {
        self.permissions
            .iter()
            .any(|p| p.allows_invoke(ALARM_ACTION_PRINCIPAL, function, account, alarm_arn))
    }
}

fn dispatch(
    change: &StateChange,
    host: &Arc<dyn FunctionHost>,
    routes: &AlarmRoutes,
    account: &str,
    region: &str,
    retry_delays: &[Duration],
) {
    let alarm = &change.alarm.name;
    info!(
        alarm = %alarm,
        state = %change.alarm.state.value,
        previous = %change.previous.value,
        reason = %change.alarm.state.reason,
        "alarm state changed"
    );
    if !routes.subscribers.is_empty() {
        let event_id = uuid::Uuid::new_v4().to_string();
        let event = change.eventbridge_event(account, region, &event_id);
        for function in &routes.subscribers {
            spawn_invocation(
                host,
                function,
                event.clone(),
                alarm,
                "eventbridge",
                retry_delays,
            );
        }
    }
    let functions = change.lambda_action_functions();
    if !functions.is_empty() {
        let payload = change.lambda_action_payload(account, region);
        for function in &functions {
            if !routes.may_invoke(function, account, &change.alarm.arn) {
                // AWS: the action fails (the alarm's history says so); the function never runs.
                warn!(
                    alarm = %alarm,
                    function = %function,
                    account = %account,
                    "CloudWatch may not invoke the alarm's Lambda action: no AWS::Lambda::Permission \
                     allows {ALARM_ACTION_PRINCIPAL} for this account and alarm"
                );
                continue;
            }
            spawn_invocation(
                host,
                function,
                payload.clone(),
                alarm,
                "alarm_action",
                retry_delays,
            );
        }
    }
}

/// One asynchronous invocation, retried like Lambda retries a failed asynchronous invocation.
fn spawn_invocation(
    host: &Arc<dyn FunctionHost>,
    function: &str,
    event: Value,
    alarm: &str,
    via: &'static str,
    retry_delays: &[Duration],
) {
    let (host, function) = (host.clone(), function.to_owned());
    let dead_letter = host.dead_letter_queue(&function).map(|queue| DeadLetter {
        queue,
        request_id: uuid::Uuid::new_v4().to_string(),
        event: event.clone(),
    });
    spawn_async_invocation(
        format!("{via} of alarm {alarm} to {function}"),
        retry_delays.to_vec(),
        dead_letter,
        move || host.call(&function, event.clone()),
    );
}

/// Every metric and composite alarm, all pages. Alarms moto describes without a name, ARN or
/// state are skipped.
async fn describe_all_alarms(client: &aws_sdk_cloudwatch::Client) -> Result<Vec<Alarm>, String> {
    // A bound on pages, against a server that hands back the same token forever.
    const MAX_PAGES: usize = 1000;
    let mut alarms = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .describe_alarms()
            // Without AlarmTypes, CloudWatch describes metric alarms only.
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())?;
        alarms.extend(
            page.metric_alarms()
                .iter()
                .filter_map(Alarm::from_metric_alarm),
        );
        alarms.extend(
            page.composite_alarms()
                .iter()
                .filter_map(Alarm::from_composite_alarm),
        );
        match page.next_token() {
            Some(next) if !next.is_empty() && token.as_deref() != Some(next) => {
                token = Some(next.to_owned());
            }
            _ => return Ok(alarms),
        }
    }
    Err(format!(
        "DescribeAlarms still paging after {MAX_PAGES} pages"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::cloudwatch_alarms::{
        CloudWatchAlarm, CloudWatchAlarmData, CloudWatchAlarmStateReasonData,
        CloudWatchAlarmStateValue, CloudWatchCompositeAlarm, CloudWatchMetricAlarm,
        CloudWatchMetricAlarmConfiguration,
    };
    use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
    use aws_sdk_cloudwatch::types::{
        ActionsSuppressedBy, Dimension, Metric, MetricStat, StateValue, Statistic,
    };

    const ARN: &str = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:web-5xx";
    const ROLLBACK: &str =
        "arn:aws:lambda:eu-west-1:123456789012:function:shipgate-RollbackFunction";

    fn at(secs: i64, millis: u32) -> DateTime {
        DateTime::from_secs_and_nanos(secs, millis * 1_000_000)
    }

    fn metric_alarm(state: StateValue, reason: &str, updated: DateTime) -> MetricAlarm {
        MetricAlarm::builder()
            .alarm_name("web-5xx")
            .alarm_arn(ARN)
            .alarm_description("5xx on the new version")
            .alarm_configuration_updated_timestamp(at(1_700_000_000, 0))
            .actions_enabled(true)
            .alarm_actions(ROLLBACK)
            .alarm_actions("arn:aws:sns:eu-west-1:123456789012:ops")
            .ok_actions(format!("{ROLLBACK}:live"))
            .state_value(state)
            .state_reason(reason)
            .state_reason_data(r#"{"version":"1.0","queryDate":"2026-11-26T10:00:00.000+0000","statistic":"Sum","period":60,"recentDatapoints":[7.0],"threshold":1.0}"#)
            .state_updated_timestamp(updated)
            .metric_name("HTTPCode_Target_5XX_Count")
            .namespace("AWS/ApplicationELB")
            .statistic(Statistic::Sum)
            .dimensions(
                Dimension::builder()
                    .name("TargetGroup")
                    .value("targetgroup/green/1")
                    .build(),
            )
            .period(60)
            .build()
    }

    fn alarm(state: StateValue, reason: &str, updated: DateTime) -> Alarm {
        Alarm::from_metric_alarm(&metric_alarm(state, reason, updated)).expect("complete alarm")
    }

    fn change() -> StateChange {
        let mut tracker = AlarmTracker::default();
        tracker.observe(vec![alarm(StateValue::Ok, "fine", at(1_700_000_100, 5))]);
        let mut changes = tracker.observe(vec![alarm(
            StateValue::Alarm,
            "Threshold Crossed: 7 > 1",
            at(1_700_000_200, 989),
        )]);
        assert_eq!(changes.len(), 1);
        changes.remove(0)
    }

    fn yaml_template(events: &str) -> String {
        format!(
            "Resources:\n  Table:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      TableName: !Sub \"${{AWS::StackName}}-t\"\n  RollbackFunction:\n    Type: AWS::Serverless::Function\n    Properties:\n      Role: !GetAtt Role.Arn\n      Events:\n{events}"
        )
    }

    #[test]
    fn a_rule_on_alarm_state_changes_subscribes_its_function() {
        let template = yaml_template(
            "        Alarms:\n          Type: EventBridgeRule\n          Properties:\n            Pattern:\n              source: [aws.cloudwatch]\n              detail-type: [CloudWatch Alarm State Change]\n              detail:\n                state:\n                  value: [ALARM]\n",
        );
        assert_eq!(alarm_subscribers(&template).unwrap(), ["RollbackFunction"]);
    }

    #[test]
    fn a_rule_on_every_cloudwatch_event_subscribes_too() {
        let template = yaml_template(
            "        All:\n          Type: CloudWatchEvent\n          Properties:\n            Pattern:\n              source:\n                - aws.cloudwatch\n",
        );
        assert_eq!(alarm_subscribers(&template).unwrap(), ["RollbackFunction"]);
        let prefix = yaml_template(
            "        All:\n          Type: EventBridgeRule\n          Properties:\n            Pattern:\n              source: [aws.cloudwatch]\n              detail-type: [{prefix: CloudWatch Alarm}]\n",
        );
        assert_eq!(alarm_subscribers(&prefix).unwrap(), ["RollbackFunction"]);
    }

    #[test]
    fn other_rules_and_events_subscribe_nothing() {
        for events in [
            // Another source.
            "        E:\n          Type: EventBridgeRule\n          Properties:\n            Pattern:\n              source: [aws.ecs]\n",
            // Another detail type of CloudWatch.
            "        E:\n          Type: EventBridgeRule\n          Properties:\n            Pattern:\n              source: [aws.cloudwatch]\n              detail-type: [CloudWatch Alarm Configuration Change]\n",
            // Disabled.
            "        E:\n          Type: EventBridgeRule\n          Properties:\n            State: DISABLED\n            Pattern:\n              source: [aws.cloudwatch]\n",
            // A custom bus, where CloudWatch puts nothing.
            "        E:\n          Type: EventBridgeRule\n          Properties:\n            EventBusName: !Ref Bus\n            Pattern:\n              source: [aws.cloudwatch]\n",
            // No pattern on source.
            "        E:\n          Type: EventBridgeRule\n          Properties:\n            Pattern:\n              detail-type: [CloudWatch Alarm State Change]\n",
            // Not a rule.
            "        E:\n          Type: S3\n          Properties:\n            Bucket: !Ref Bucket\n",
        ] {
            assert!(
                alarm_subscribers(&yaml_template(events))
                    .unwrap()
                    .is_empty(),
                "{events}"
            );
        }
    }

    #[test]
    fn the_project_template_parses() {
        let template = include_str!("../../template.yaml");
        assert!(alarm_subscribers(template).is_ok());
        assert!(alarm_subscribers("not: [yaml").is_err());
        assert!(alarm_subscribers("Foo: 1").is_err());
    }

    #[test]
    fn only_transitions_are_changes() {
        let mut tracker = AlarmTracker::default();
        // Created by moto, never set: no transition.
        let mut created = alarm(StateValue::Ok, MOTO_INITIAL_REASON, at(1_700_000_000, 0));
        created.state.reason_data = Some("{}".into());
        assert!(tracker.observe(vec![created]).is_empty());
        // The one alarm, in `value` for `reason` since second `s`.
        let mut observe = |value, reason, s| tracker.observe(vec![alarm(value, reason, at(s, 0))]);
        // Same state again, newer timestamp: still none.
        assert!(observe(StateValue::Ok, "checked", 1_700_000_050).is_empty());
        let changes = observe(StateValue::Alarm, "bad", 1_700_000_060);
        assert_eq!(changes.len(), 1);
        // previousState is the last state seen, with its reason and time.
        assert_eq!(changes[0].previous.value, "OK");
        assert_eq!(changes[0].previous.reason, "checked");
        assert_eq!(changes[0].previous.timestamp, at(1_700_000_050, 0));
        assert!(observe(StateValue::Alarm, "bad", 1_700_000_070).is_empty());
        let back = observe(StateValue::Ok, "good", 1_700_000_080);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].previous.timestamp, at(1_700_000_070, 0));
    }

    #[test]
    fn an_alarm_first_seen_in_alarm_left_the_state_moto_created_it_in() {
        let mut tracker = AlarmTracker::default();
        let changes = tracker.observe(vec![alarm(StateValue::Alarm, "bad", at(1_700_000_060, 0))]);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].previous.value, "OK");
        assert_eq!(changes[0].previous.reason, MOTO_INITIAL_REASON);
        assert_eq!(changes[0].previous.timestamp, at(1_700_000_000, 0));
    }

    #[test]
    fn a_deleted_alarm_is_forgotten() {
        let mut tracker = AlarmTracker::default();
        assert_eq!(
            tracker
                .observe(vec![alarm(StateValue::Alarm, "bad", at(1_700_000_060, 0))])
                .len(),
            1
        );
        assert!(tracker.observe(vec![]).is_empty());
        // Recreated and set again: a transition from its initial state once more.
        assert_eq!(
            tracker
                .observe(vec![alarm(StateValue::Alarm, "bad", at(1_700_000_090, 0))])
                .len(),
            1
        );
    }

    #[test]
    fn the_eventbridge_event_reads_as_a_cloudwatch_event_with_alarm_data() {
        let event = change().eventbridge_event("123456789012", "eu-west-1", "ev-1");
        assert_eq!(event["time"], "2023-11-14T22:16:40Z");
        assert_eq!(
            event["detail"]["state"]["timestamp"],
            "2023-11-14T22:16:40.989+0000"
        );
        let parsed: CloudWatchEvent<CloudWatchAlarmData<CloudWatchMetricAlarmConfiguration>> =
            serde_json::from_value(event.clone()).unwrap();
        assert_eq!(parsed.source.as_deref(), Some(SOURCE));
        assert_eq!(parsed.detail_type.as_deref(), Some(DETAIL_TYPE));
        assert_eq!(parsed.id.as_deref(), Some("ev-1"));
        assert_eq!(parsed.account_id.as_deref(), Some("123456789012"));
        assert_eq!(parsed.resources, [ARN]);
        assert_eq!(parsed.time.timestamp(), 1_700_000_200);
        let detail = parsed.detail.clone().unwrap();
        assert_eq!(detail.alarm_name, "web-5xx");
        let state = detail.state.unwrap();
        assert_eq!(state.value, CloudWatchAlarmStateValue::Alarm);
        assert_eq!(state.reason, "Threshold Crossed: 7 > 1");
        assert_eq!(state.timestamp.timestamp_millis(), 1_700_000_200_989);
        assert!(matches!(
            state.reason_data,
            Some(CloudWatchAlarmStateReasonData::Metric(ref m)) if m.threshold == 1.0
        ));
        let previous = detail.previous_state.unwrap();
        assert_eq!(previous.value, CloudWatchAlarmStateValue::Ok);
        assert_eq!(previous.reason, "fine");
        let config = detail.configuration;
        assert_eq!(
            config.description.as_deref(),
            Some("5xx on the new version")
        );
        let metric = &config.metrics[0];
        assert!(metric.return_data);
        assert_eq!(metric.metric_stat.period, 60);
        assert_eq!(metric.metric_stat.stat.as_deref(), Some("Sum"));
        assert_eq!(metric.metric_stat.metric.name, "HTTPCode_Target_5XX_Count");
        assert_eq!(
            metric.metric_stat.metric.dimensions["TargetGroup"],
            "targetgroup/green/1"
        );
        // Round trip: what the crate writes back is the same event.
        let again: CloudWatchEvent<CloudWatchAlarmData<CloudWatchMetricAlarmConfiguration>> =
            serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
        assert_eq!(again, parsed);
    }

    #[test]
    fn the_lambda_action_payload_reads_as_a_cloudwatch_alarm() {
        let change = change();
        let payload = change.lambda_action_payload("123456789012", "eu-west-1");
        assert_eq!(payload["time"], "2023-11-14T22:16:40.989+0000");
        let parsed: CloudWatchMetricAlarm = serde_json::from_value(payload.clone()).unwrap();
        assert_eq!(parsed.alarm_arn.as_deref(), Some(ARN));
        assert_eq!(parsed.account_id.as_deref(), Some("123456789012"));
        assert_eq!(parsed.region.as_deref(), Some("eu-west-1"));
        assert_eq!(parsed.source.as_deref(), Some(SOURCE));
        assert_eq!(parsed.alarm_data.alarm_name, "web-5xx");
        let state = parsed.alarm_data.state.clone().unwrap();
        assert_eq!(state.value, CloudWatchAlarmStateValue::Alarm);
        let previous = parsed.alarm_data.previous_state.clone().unwrap();
        assert_eq!(previous.value, CloudWatchAlarmStateValue::Ok);
        let again: CloudWatchMetricAlarm =
            serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
        assert_eq!(again, parsed);
        // The generic form reads it too, and the event's detail is the payload's alarmData.
        let generic: CloudWatchAlarm = serde_json::from_value(payload.clone()).unwrap();
        assert_eq!(generic.alarm_data.alarm_name, "web-5xx");
        let event = change.eventbridge_event("123456789012", "eu-west-1", "ev-1");
        assert_eq!(event["detail"], payload["alarmData"]);
    }

    #[test]
    fn lambda_actions_follow_the_new_state() {
        let to_alarm = change();
        // The SNS action is not a function; the Lambda one is.
        assert_eq!(
            to_alarm.lambda_action_functions(),
            ["shipgate-RollbackFunction"]
        );
        let to_ok = StateChange {
            alarm: alarm(StateValue::Ok, "good", at(1_700_000_300, 0)),
            previous: to_alarm.alarm.state.clone(),
        };
        // A qualified ARN invokes the function by name.
        assert_eq!(
            to_ok.lambda_action_functions(),
            ["shipgate-RollbackFunction"]
        );
        let mut disabled = to_alarm.clone();
        disabled.alarm.actions_enabled = false;
        assert!(disabled.lambda_action_functions().is_empty());
        let mut insufficient = to_alarm.clone();
        insufficient.alarm.state.value = "INSUFFICIENT_DATA".into();
        assert!(insufficient.lambda_action_functions().is_empty());
    }

    #[test]
    fn function_arns_name_their_function() {
        assert_eq!(
            lambda_function_name(ROLLBACK),
            Some("shipgate-RollbackFunction")
        );
        assert_eq!(
            lambda_function_name("arn:aws:lambda:eu-west-1:1:function:f:live"),
            Some("f")
        );
        for other in [
            "arn:aws:sns:eu-west-1:1:topic",
            "arn:aws:lambda:eu-west-1:1:layer:f:1",
            "arn:aws:lambda:eu-west-1:1:function:",
            "arn:aws:lambda:eu-west-1:1:function:f:1:extra",
            "arn:aws:automate:eu-west-1:ec2:stop",
            "",
        ] {
            assert_eq!(lambda_function_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_composite_alarm_reads_as_a_composite_alarm_payload() {
        let composite = |suppressed: bool| {
            let builder = CompositeAlarm::builder()
            .alarm_name("web-health")
            .alarm_arn("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:web-health")
            .alarm_rule("ALARM(web-5xx) OR ALARM(web-latency)")
            .actions_suppressor("maintenance")
            .actions_suppressor_wait_period(120)
            .actions_suppressor_extension_period(180)
            .alarm_actions(ROLLBACK)
            .state_value(StateValue::Alarm)
            .state_reason("web-5xx transitioned to ALARM")
            .state_reason_data(r#"{"triggeringAlarms":[{"arn":"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:web-5xx","state":{"value":"ALARM","timestamp":"2026-11-26T10:00:00.000+0000"}}]}"#)
            .state_updated_timestamp(at(1_700_000_200, 0));
            if suppressed {
                builder
                    .actions_suppressed_by(ActionsSuppressedBy::Alarm)
                    .actions_suppressed_reason("maintenance is in ALARM")
                    .build()
            } else {
                builder.build()
            }
        };
        let alarm = Alarm::from_composite_alarm(&composite(false)).unwrap();
        let change = AlarmTracker::default().observe(vec![alarm]).remove(0);
        let parsed: CloudWatchCompositeAlarm =
            serde_json::from_value(change.lambda_action_payload("123456789012", "eu-west-1"))
                .unwrap();
        assert_eq!(
            parsed.alarm_data.configuration.alarm_rule,
            "ALARM(web-5xx) OR ALARM(web-latency)"
        );
        assert_eq!(
            parsed
                .alarm_data
                .configuration
                .actions_suppressor_wait_period,
            120
        );
        let state = parsed.alarm_data.state.unwrap();
        assert!(matches!(
            state.reason_data,
            Some(CloudWatchAlarmStateReasonData::Composite(ref c)) if c.triggering_alarms.len() == 1
        ));
        assert_eq!(
            change.lambda_action_functions(),
            ["shipgate-RollbackFunction"]
        );
        // Suppressed actions do not run; the EventBridge event still goes out.
        let suppressed = Alarm::from_composite_alarm(&composite(true)).unwrap();
        let change = AlarmTracker::default().observe(vec![suppressed]).remove(0);
        assert!(change.lambda_action_functions().is_empty());
        let event = change.eventbridge_event("123456789012", "eu-west-1", "ev-2");
        assert_eq!(event["detail"]["state"]["actionsSuppressedBy"], "Alarm");
    }

    #[test]
    fn metric_math_alarms_list_their_queries() {
        let query = MetricDataQuery::builder()
            .id("errors")
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace("AWS/Lambda")
                            .metric_name("Errors")
                            .dimensions(
                                Dimension::builder()
                                    .name("Resource")
                                    .value("f:live")
                                    .build(),
                            )
                            .build(),
                    )
                    .period(60)
                    .stat("Sum")
                    .build(),
            )
            .return_data(false)
            .build();
        let ratio = MetricDataQuery::builder()
            .id("ratio")
            .expression("errors / invocations")
            .label("error ratio")
            .build();
        let math = MetricAlarm::builder()
            .alarm_name("ratio")
            .alarm_arn("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:ratio")
            .metrics(query)
            .metrics(ratio)
            .state_value(StateValue::Alarm)
            .state_updated_timestamp(at(1_700_000_000, 0))
            .build();
        let alarm = Alarm::from_metric_alarm(&math).unwrap();
        let metrics = alarm.configuration["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 2);
        assert_eq!(
            metrics[0]["metricStat"]["metric"]["dimensions"]["Resource"],
            "f:live"
        );
        assert_eq!(metrics[0]["returnData"], false);
        assert_eq!(metrics[1]["expression"], "errors / invocations");
        assert_eq!(metrics[1]["returnData"], true);
        // An incomplete answer is skipped, not a panic.
        assert!(
            Alarm::from_metric_alarm(&MetricAlarm::builder().alarm_name("x").build()).is_none()
        );
        assert!(Alarm::from_composite_alarm(&CompositeAlarm::builder().build()).is_none());
    }

    #[test]
    fn physical_names_reach_logical_ids() {
        #[derive(Default)]
        struct Names(std::sync::Mutex<Vec<String>>);
        impl FunctionHost for Names {
            fn call(
                &self,
                function: &str,
                _event: Value,
            ) -> futures::future::BoxFuture<'static, Result<Value, Value>> {
                if let Ok(mut names) = self.0.lock() {
                    names.push(function.to_owned());
                }
                Box::pin(async { Ok(Value::Null) })
            }
        }
        let inner = Arc::new(Names::default());
        let named = NamedFunctions::new(
            inner.clone(),
            BTreeMap::from([(
                "shipgate-RollbackFunction".to_owned(),
                "RollbackFunction".to_owned(),
            )]),
        );
        drop(named.call("shipgate-RollbackFunction", Value::Null));
        drop(named.call("RollbackFunction", Value::Null));
        drop(named.call("elsewhere", Value::Null));
        assert_eq!(
            *inner.0.lock().unwrap(),
            ["RollbackFunction", "RollbackFunction", "elsewhere"]
        );
    }

    #[test]
    fn the_metric_id_is_stable_per_alarm() {
        assert_eq!(stable_id(ARN), stable_id(ARN));
        assert_ne!(stable_id(ARN), stable_id("other"));
        assert_eq!(stable_id(ARN).len(), 36);
    }
}
