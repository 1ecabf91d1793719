//! Alarm state changes reach the functions as CloudWatch delivers them in AWS: the EventBridge
//! "CloudWatch Alarm State Change" event to the functions a rule subscribes, and CloudWatch's
//! own payload to the function an alarm's Lambda action names.
//!
//! Each test starts its own moto, runs the alarm watcher against it with a test function host
//! that records every invocation, and changes alarm states with `SetAlarmState`, the way an
//! operator (or the demo) forces an alarm. Payloads are read back with the `aws_lambda_events`
//! types the functions use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use aws_lambda_events::event::cloudwatch_alarms::{
    CloudWatchAlarmData, CloudWatchAlarmStateValue, CloudWatchMetricAlarm,
    CloudWatchMetricAlarmConfiguration,
};
use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, MetricAlarm, StateValue, Statistic,
};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use shipgate_local::alarms::{ALARM_ACTION_PRINCIPAL, AlarmRoutes, watch_alarms};
use shipgate_local::functions::FunctionHost;
use shipgate_local::moto::Moto;
use shipgate_local::provision::LambdaPermission;
use shipgate_local::sdk::Endpoints;
use shipgate_tests::support::wait_for;
use tokio::sync::watch;

const REGION: &str = "eu-west-1";
/// moto's default account, where plain credentials land.
const ACCOUNT: &str = "123456789012";
const POLL: Duration = Duration::from_millis(100);
const WAIT: Duration = Duration::from_secs(15);
/// The rule subscriber, as `alarm_subscribers` would name it from the template.
const SUBSCRIBER: &str = "RollbackFunction";
/// The function the alarm's Lambda action names (by its physical name, as an ARN does).
const ACTION_FUNCTION: &str = "shipgate-rollback";

type AlarmStateChange = CloudWatchEvent<CloudWatchAlarmData<CloudWatchMetricAlarmConfiguration>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_going_off_and_back_reaches_the_subscriber_and_its_lambda_action() -> Result<()> {
    let (h, alarm) = Harness::watching("transitions", "web-5xx").await?;

    h.set_state(&alarm, StateValue::Alarm, "5xx above 1% on green")
        .await?;
    let (events, payloads) = h.wait_counts(1, 1).await?;
    let described = h.describe(&alarm).await?;

    let event: AlarmStateChange = serde_json::from_value(events[0].clone())?;
    assert_eq!(event.source.as_deref(), Some("aws.cloudwatch"));
    assert_eq!(
        event.detail_type.as_deref(),
        Some("CloudWatch Alarm State Change")
    );
    assert_eq!(event.account_id.as_deref(), Some(ACCOUNT));
    assert_eq!(event.region.as_deref(), Some(REGION));
    assert_eq!(event.resources, [described.alarm_arn().unwrap_or_default()]);
    let updated = described
        .state_updated_timestamp()
        .context("moto gives StateUpdatedTimestamp")?;
    // EventBridge's `time` has whole seconds; the state's timestamp keeps moto's milliseconds.
    assert_eq!(event.time.timestamp(), updated.secs());
    let detail = event.detail.context("the event has a detail")?;
    assert_eq!(detail.alarm_name, alarm);
    let state = detail.state.context("detail.state")?;
    assert_eq!(state.value, CloudWatchAlarmStateValue::Alarm);
    assert_eq!(state.reason, "5xx above 1% on green");
    assert_eq!(state.timestamp.timestamp_millis(), updated.to_millis()?);
    let previous = detail.previous_state.context("detail.previousState")?;
    // moto creates alarms in OK (AWS: INSUFFICIENT_DATA), and says why.
    assert_eq!(previous.value, CloudWatchAlarmStateValue::Ok);
    assert_eq!(previous.reason, "Unchecked: Initial alarm creation");
    let metric = &detail.configuration.metrics[0];
    assert_eq!(metric.metric_stat.metric.name, "HTTPCode_Target_5XX_Count");
    assert_eq!(
        detail.configuration.description.as_deref(),
        Some("5xx on the new version")
    );

    let payload: CloudWatchMetricAlarm = serde_json::from_value(payloads[0].clone())?;
    assert_eq!(payload.alarm_arn.as_deref(), described.alarm_arn());
    assert_eq!(payload.alarm_data.alarm_name, alarm);
    let state = payload.alarm_data.state.context("alarmData.state")?;
    assert_eq!(state.value, CloudWatchAlarmStateValue::Alarm);
    assert_eq!(state.reason, "5xx above 1% on green");
    let reason_data = serde_json::to_value(&state.reason_data)?;
    assert!(
        reason_data
            .as_str()
            .is_some_and(|d| d.contains("\"threshold\":1.0")),
        "{reason_data}"
    );
    // The event's detail and the payload's alarmData are one shape, for both routes.
    assert_eq!(events[0]["detail"], payloads[0]["alarmData"]);

    // Back to OK: one more of each, and previousState is the ALARM just left.
    h.set_state(&alarm, StateValue::Ok, "5xx back under 1%")
        .await?;
    let (events, payloads) = h.wait_counts(2, 2).await?;
    let event: AlarmStateChange = serde_json::from_value(events[1].clone())?;
    let detail = event.detail.context("detail")?;
    assert_eq!(
        detail.state.context("state")?.value,
        CloudWatchAlarmStateValue::Ok
    );
    let previous = detail.previous_state.context("previousState")?;
    assert_eq!(previous.value, CloudWatchAlarmStateValue::Alarm);
    assert_eq!(previous.reason, "5xx above 1% on green");
    let payload: CloudWatchMetricAlarm = serde_json::from_value(payloads[1].clone())?;
    assert_eq!(
        payload.alarm_data.state.context("state")?.value,
        CloudWatchAlarmStateValue::Ok
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_state_set_twice_is_one_transition() -> Result<()> {
    let (h, alarm) = Harness::watching("twice", "latency").await?;
    h.set_state(&alarm, StateValue::Alarm, "p99 above 2s")
        .await?;
    h.wait_counts(1, 1).await?;
    let first = h.describe(&alarm).await?;

    // moto takes the same state again as an update: a new StateUpdatedTimestamp, same value.
    tokio::time::sleep(Duration::from_millis(20)).await;
    h.set_state(&alarm, StateValue::Alarm, "p99 above 2s")
        .await?;
    let second = h.describe(&alarm).await?;
    assert_eq!(second.state_value(), Some(&StateValue::Alarm));
    ensure!(
        second.state_updated_timestamp() > first.state_updated_timestamp(),
        "moto keeps the timestamp of a repeated state: {first:?} / {second:?}"
    );
    // CloudWatch emits events on transitions only: nothing more arrives.
    h.settle().await;
    h.assert_counts(1, 1)?;

    // The next real transition is delivered once, from ALARM.
    h.set_state(&alarm, StateValue::Ok, "p99 back under 2s")
        .await?;
    let (events, _) = h.wait_counts(2, 2).await?;
    let event: AlarmStateChange = serde_json::from_value(events[1].clone())?;
    let previous = event
        .detail
        .and_then(|d| d.previous_state)
        .context("previousState")?;
    assert_eq!(previous.value, CloudWatchAlarmStateValue::Alarm);
    assert_eq!(previous.reason, "p99 above 2s");
    h.settle().await;
    h.assert_counts(2, 2)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_without_subscribers_or_lambda_actions_invoke_nothing() -> Result<()> {
    let h = Harness::launch("nobody", vec![], Recorder::default()).await?;
    // An SNS action only: not a function, not modelled.
    let alarm = h.put_alarm("queue-depth", None).await?;
    h.set_state(&alarm, StateValue::Alarm, "queue above 100")
        .await?;
    h.settle().await;
    let calls = h.host.calls();
    ensure!(calls.is_empty(), "{calls:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_invocation_is_retried_as_lambda_retries_async_invocations() -> Result<()> {
    let host = Recorder {
        failures_left: Arc::new(Mutex::new(HashMap::from([(SUBSCRIBER.to_owned(), 1)]))),
        ..Recorder::default()
    };
    let h = Harness::launch("retry", vec![SUBSCRIBER], host).await?;
    let alarm = h.put_alarm("errors", None).await?;
    h.set_state(&alarm, StateValue::Alarm, "errors above 0")
        .await?;
    let attempts = wait_for("the retried delivery", WAIT, || async {
        let attempts = h.host.calls_of(SUBSCRIBER);
        Ok((attempts.len() >= 2).then_some(attempts))
    })
    .await?;
    // The same event both times, as Lambda retries one asynchronous invocation.
    assert_eq!(attempts[0], attempts[1]);
    h.settle().await;
    assert_eq!(h.host.calls_of(SUBSCRIBER).len(), 2);
    Ok(())
}

/// The statement an `AWS::Lambda::Permission` for [`ACTION_FUNCTION`] makes: CloudWatch may
/// invoke it for the alarms of `account`.
fn alarm_permission(account: &str) -> LambdaPermission {
    LambdaPermission {
        function: ACTION_FUNCTION.into(),
        action: "lambda:InvokeFunction".into(),
        principal: ALARM_ACTION_PRINCIPAL.into(),
        source_account: Some(account.into()),
        source_arn: Some(format!("arn:aws:cloudwatch:{REGION}:{account}:alarm:*")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_action_the_functions_policy_does_not_allow_invokes_nothing() -> Result<()> {
    // As in AWS: without a permission for lambda.alarms.cloudwatch.amazonaws.com matching the
    // alarm's account and ARN, CloudWatch cannot invoke the action; the rule still delivers.
    for permissions in [vec![], vec![alarm_permission("999999999999")]] {
        let routes = AlarmRoutes {
            subscribers: vec![SUBSCRIBER.to_owned()],
            permissions,
        };
        let h = Harness::launch_with("unallowed", routes, Recorder::default()).await?;
        let alarm = h.put_alarm("errors", Some(ACTION_FUNCTION)).await?;
        h.set_state(&alarm, StateValue::Alarm, "errors above 0")
            .await?;
        wait_for("the rule's delivery", WAIT, || async {
            Ok((!h.host.calls_of(SUBSCRIBER).is_empty()).then_some(()))
        })
        .await?;
        h.settle().await;
        let actions = h.host.calls_of(ACTION_FUNCTION);
        ensure!(actions.is_empty(), "{actions:#?}");
    }
    Ok(())
}

/// A function host that records every invocation, and fails the first `failures_left[f]`
/// invocations of function `f` as a function error would.
#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    failures_left: Arc<Mutex<HashMap<String, usize>>>,
}

impl Recorder {
    fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn calls_of(&self, function: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|(f, _)| f == function)
            .map(|(_, event)| event)
            .collect()
    }
}

impl FunctionHost for Recorder {
    fn call(&self, function: &str, event: Value) -> BoxFuture<'static, Result<Value, Value>> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((function.to_owned(), event));
        }
        let fail = self.failures_left.lock().is_ok_and(|mut left| {
            left.get_mut(function)
                .filter(|n| **n > 0)
                .map(|n| *n -= 1)
                .is_some()
        });
        Box::pin(async move {
            if fail {
                Err(json!({"errorType": "Injected", "errorMessage": "first attempt fails"}))
            } else {
                Ok(Value::Null)
            }
        })
    }
}

struct Harness {
    _moto: Moto,
    state_dir: std::path::PathBuf,
    cloudwatch: aws_sdk_cloudwatch::Client,
    host: Recorder,
    unique: String,
    stop: watch::Sender<bool>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.watcher.abort();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

impl Harness {
    /// A watcher whose alarms may invoke [`ACTION_FUNCTION`] (its policy allows CloudWatch, for
    /// this account's alarms), delivering to `subscribers` by rule.
    async fn launch(name: &str, subscribers: Vec<&str>, host: Recorder) -> Result<Self> {
        let routes = AlarmRoutes {
            subscribers: subscribers.into_iter().map(str::to_owned).collect(),
            permissions: vec![alarm_permission(ACCOUNT)],
        };
        Self::launch_with(name, routes, host).await
    }

    /// A watcher delivering to [`SUBSCRIBER`], with one alarm (`alarm`, made unique) whose
    /// Lambda action names [`ACTION_FUNCTION`].
    async fn watching(name: &str, alarm: &str) -> Result<(Self, String)> {
        let h = Self::launch(name, vec![SUBSCRIBER], Recorder::default()).await?;
        let alarm = h.put_alarm(alarm, Some(ACTION_FUNCTION)).await?;
        Ok((h, alarm))
    }

    async fn launch_with(name: &str, routes: AlarmRoutes, host: Recorder) -> Result<Self> {
        if std::env::var_os("TEST_LOG").is_some() {
            shipgate::telemetry::init();
        }
        let unique = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let state_dir = std::env::temp_dir().join(format!("shipgate-alarms-{name}-{unique}"));
        let moto = Moto::start(&state_dir).await?;
        let sdk = Endpoints {
            default: moto.endpoint(),
            per_service: Default::default(),
            region: REGION.into(),
        }
        .sdk_config();
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
        let (stop, stop_rx) = watch::channel(false);
        let watcher = tokio::spawn(watch_alarms(
            cloudwatch.clone(),
            Arc::new(host.clone()),
            Arc::new(routes),
            ACCOUNT.to_owned(),
            REGION.to_owned(),
            POLL,
            vec![Duration::from_millis(50), Duration::from_millis(100)],
            stop_rx,
        ));
        Ok(Self {
            _moto: moto,
            state_dir,
            cloudwatch,
            host,
            unique,
            stop,
            watcher,
        })
    }

    /// A 5xx alarm on a target group; `function`, if any, is its ALARM and OK Lambda action,
    /// next to an SNS action the watcher does not model.
    async fn put_alarm(&self, name: &str, function: Option<&str>) -> Result<String> {
        let name = format!("{name}-{}", self.unique);
        let mut request = self
            .cloudwatch
            .put_metric_alarm()
            .alarm_name(&name)
            .alarm_description("5xx on the new version")
            .namespace("AWS/ApplicationELB")
            .metric_name("HTTPCode_Target_5XX_Count")
            .dimensions(
                Dimension::builder()
                    .name("TargetGroup")
                    .value("targetgroup/green/0123456789abcdef")
                    .build(),
            )
            .statistic(Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(1.0)
            .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
            .alarm_actions(format!("arn:aws:sns:{REGION}:{ACCOUNT}:ops"));
        if let Some(function) = function {
            let arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}");
            request = request.alarm_actions(&arn).ok_actions(arn);
        }
        request.send().await.context("PutMetricAlarm")?;
        Ok(name)
    }

    async fn set_state(&self, alarm: &str, state: StateValue, reason: &str) -> Result<()> {
        let data = json!({
            "version": "1.0",
            "queryDate": "2026-11-26T10:00:00.000+0000",
            "statistic": "Sum",
            "period": 60,
            "recentDatapoints": [7.0],
            "threshold": 1.0,
        });
        self.cloudwatch
            .set_alarm_state()
            .alarm_name(alarm)
            .state_value(state)
            .state_reason(reason)
            .state_reason_data(data.to_string())
            .send()
            .await
            .context("SetAlarmState")?;
        Ok(())
    }

    async fn describe(&self, alarm: &str) -> Result<MetricAlarm> {
        let out = self
            .cloudwatch
            .describe_alarms()
            .alarm_names(alarm)
            .send()
            .await
            .context("DescribeAlarms")?;
        out.metric_alarms()
            .first()
            .cloned()
            .with_context(|| format!("no alarm {alarm}"))
    }

    /// Waits until the rule subscriber has `events` EventBridge events and the action function
    /// `payloads` alarm payloads; answers both lists, failing if either went beyond.
    async fn wait_counts(
        &self,
        events: usize,
        payloads: usize,
    ) -> Result<(Vec<Value>, Vec<Value>)> {
        let (got_events, got_payloads) = wait_for(
            &format!("{events} events and {payloads} payloads"),
            WAIT,
            || async {
                let (e, p) = (
                    self.host.calls_of(SUBSCRIBER),
                    self.host.calls_of(ACTION_FUNCTION),
                );
                Ok((e.len() >= events && p.len() >= payloads).then_some((e, p)))
            },
        )
        .await?;
        ensure!(
            got_events.len() == events && got_payloads.len() == payloads,
            "expected {events} events and {payloads} payloads: {got_events:#?} {got_payloads:#?}"
        );
        Ok((got_events, got_payloads))
    }

    fn assert_counts(&self, events: usize, payloads: usize) -> Result<()> {
        let (e, p) = (
            self.host.calls_of(SUBSCRIBER),
            self.host.calls_of(ACTION_FUNCTION),
        );
        ensure!(
            e.len() == events && p.len() == payloads,
            "expected {events} events and {payloads} payloads: {e:#?} {p:#?}"
        );
        Ok(())
    }

    /// Long enough for several polls, so anything the watcher would deliver has arrived.
    async fn settle(&self) {
        tokio::time::sleep(POLL * 5).await;
    }
}
