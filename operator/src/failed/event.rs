//! What a message of the failed-invocation queue is: pure functions of the message, no SDK types.
//!
//! Lambda sends a dead-letter queue the event itself as the message body, with the attributes
//! `RequestID`, `ErrorCode` and `ErrorMessage` (Lambda Developer Guide, "Dead-letter queues":
//! <https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html#invocation-dlq>).
//! Nothing in it names the function, and every shipgate function shares the one queue, so the
//! function is told from the event's shape, as `template.yaml` wires them: an S3 event is
//! intake's, an SNS one the mailer's, a CloudWatch alarm state change (EventBridge event or
//! alarm-action payload) rollback's, and a CodePipeline job names its function. An on-failure
//! destination's invocation record (`requestContext.functionArn`, `requestPayload`) is read too,
//! should a function be given one: it names its function and wraps the event.

use std::collections::BTreeMap;

use aws_lambda_events::event::cloudwatch_alarms::CloudWatchAlarm;
use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use aws_lambda_events::event::codepipeline_job::CodePipelineJobEvent;
use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sns::SnsEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// A message as the queue adapter hands it over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// `SentTimestamp`: when Lambda sent it, i.e. when the last attempt had failed (epoch ms).
    pub sent_timestamp_ms: Option<i64>,
    /// `ApproximateReceiveCount`.
    pub receive_count: Option<u32>,
    /// The message attributes with a string value, by name.
    pub attributes: BTreeMap<String, String>,
}

/// One of shipgate's functions that takes asynchronous events, by what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionRole {
    /// S3 drops (`IntakeFunction`).
    Intake,
    /// Approval notifications from SNS (`MailerFunction`).
    Mailer,
    /// Alarm state changes (`RollbackFunction`).
    Rollback,
}

impl FunctionRole {
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionRole::Intake => "intake",
            FunctionRole::Mailer => "mailer",
            FunctionRole::Rollback => "rollback",
        }
    }
}

/// Which function a failed event was for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// One of shipgate's functions, named by a flag or the stack.
    Function { role: FunctionRole },
    /// The function an on-failure invocation record names (its ARN).
    Named { function: String },
    /// A CodePipeline job for this function (as the action's configuration names it).
    PipelineJob { function: String },
    /// Not an event any shipgate function takes.
    Unknown,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Function { role } => f.write_str(role.as_str()),
            Target::Named { function } => f.write_str(function),
            Target::PipelineJob { function } => write!(f, "pipeline job of {function}"),
            Target::Unknown => f.write_str("unknown function"),
        }
    }
}

/// A failed asynchronous invocation, read from its message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedEvent {
    /// The message id: what `replay --id` takes.
    pub id: String,
    #[serde(skip)]
    pub receipt_handle: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub failed_at: Option<OffsetDateTime>,
    pub function: Target,
    /// The failed invocation's request id (its logs carry it).
    pub request_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// One line: the S3 object, the SNS subject, the alarm...
    pub summary: String,
    /// How often the queue has handed the message out (lists included).
    pub receive_count: Option<u32>,
    /// What a replay sends: the event as Lambda received it.
    #[serde(skip)]
    pub payload: String,
}

/// Reads one message of the queue.
pub fn read_message(message: QueueMessage) -> FailedEvent {
    let attribute = |name: &str| message.attributes.get(name).cloned();
    let mut event = FailedEvent {
        id: message.message_id.clone(),
        receipt_handle: message.receipt_handle.clone(),
        failed_at: message.sent_timestamp_ms.and_then(|ms| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        }),
        function: Target::Unknown,
        request_id: attribute("RequestID"),
        error_code: attribute("ErrorCode"),
        error_message: attribute("ErrorMessage"),
        summary: String::new(),
        receive_count: message.receive_count,
        payload: message.body.clone(),
    };
    let value: Value = match serde_json::from_str(&message.body) {
        Ok(value) => value,
        Err(e) => {
            event.summary = format!("not JSON ({e}): {}", excerpt(&message.body));
            return event;
        }
    };
    match invocation_record(&value) {
        Some(record) => {
            let (_, summary) = describe(record.request_payload);
            event.function = Target::Named {
                function: record.function_arn.to_owned(),
            };
            event.summary = format!("{summary} (on-failure record: {})", record.condition);
            event.payload = record.request_payload.to_string();
            event.request_id = event.request_id.or(record.request_id.map(str::to_owned));
            event.error_code = event
                .error_code
                .or(record.status_code.map(|c| c.to_string()));
            event.error_message = event
                .error_message
                .or(record.error_message.map(str::to_owned));
        }
        None => (event.function, event.summary) = describe(&value),
    }
    event
}

/// The parts of an on-failure destination's invocation record a replay needs.
struct InvocationRecord<'a> {
    function_arn: &'a str,
    condition: &'a str,
    request_id: Option<&'a str>,
    request_payload: &'a Value,
    status_code: Option<i64>,
    error_message: Option<&'a str>,
}

fn invocation_record(value: &Value) -> Option<InvocationRecord<'_>> {
    let context = value.get("requestContext")?;
    Some(InvocationRecord {
        function_arn: context.get("functionArn")?.as_str()?,
        condition: context
            .get("condition")
            .and_then(Value::as_str)
            .unwrap_or("unknown condition"),
        request_id: context.get("requestId").and_then(Value::as_str),
        request_payload: value.get("requestPayload")?,
        status_code: value
            .pointer("/responseContext/statusCode")
            .and_then(Value::as_i64),
        error_message: value
            .pointer("/responsePayload/errorMessage")
            .and_then(Value::as_str),
    })
}

/// Which function takes `event`, and a one-line summary of it.
pub fn describe(event: &Value) -> (Target, String) {
    let first_record_source = event
        .pointer("/Records/0/eventSource")
        .or_else(|| event.pointer("/Records/0/EventSource"))
        .and_then(Value::as_str);
    let source = event.get("source").and_then(Value::as_str);
    let role = |role| Target::Function { role };
    match (first_record_source, source) {
        (Some("aws:s3"), _) => (
            role(FunctionRole::Intake),
            summarise(event, "S3 event", s3_summary),
        ),
        (Some("aws:sns"), _) => (
            role(FunctionRole::Mailer),
            summarise(event, "SNS event", sns_summary),
        ),
        (_, Some("aws.cloudwatch")) if event.get("alarmData").is_some() => (
            role(FunctionRole::Rollback),
            summarise(event, "alarm action payload", alarm_action_summary),
        ),
        (_, Some("aws.cloudwatch"))
            if event.get("detail-type").and_then(Value::as_str)
                == Some("CloudWatch Alarm State Change") =>
        {
            (
                role(FunctionRole::Rollback),
                summarise(event, "alarm state change", alarm_event_summary),
            )
        }
        _ if event.get("CodePipeline.job").is_some() => pipeline_job(event),
        _ => (
            Target::Unknown,
            format!("unrecognised event: {}", excerpt(&event.to_string())),
        ),
    }
}

/// `summary` of `event` read as `T` (its type in `aws_lambda_events`); an event that has the
/// shape's marks but not the shape says why it could not be read.
fn summarise<T: serde::de::DeserializeOwned>(
    event: &Value,
    what: &str,
    summary: fn(T) -> String,
) -> String {
    match T::deserialize(event) {
        Ok(parsed) => summary(parsed),
        Err(e) => format!("{what} (unreadable: {e})"),
    }
}

fn s3_summary(parsed: S3Event) -> String {
    let Some(record) = parsed.records.first() else {
        return "S3 event without records".to_owned();
    };
    let key = record
        .s3
        .object
        .key
        .as_deref()
        .map(s3_key)
        .unwrap_or_default();
    let mut summary = format!(
        "S3 {} s3://{}/{key}",
        record.event_name.as_deref().unwrap_or("event"),
        record.s3.bucket.name.as_deref().unwrap_or("?"),
    );
    if let Some(version) = &record.s3.object.version_id {
        summary.push_str(&format!(" (version {version})"));
    }
    if parsed.records.len() > 1 {
        summary.push_str(&format!(" and {} more records", parsed.records.len() - 1));
    }
    summary
}

/// An S3 event's key as S3 encodes it in notifications (form-style: `+` is a space).
fn s3_key(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .unwrap_or(spaced)
}

fn sns_summary(parsed: SnsEvent) -> String {
    let Some(record) = parsed.records.first() else {
        return "SNS event without records".to_owned();
    };
    let topic = record.sns.topic_arn.rsplit(':').next().unwrap_or_default();
    match &record.sns.subject {
        Some(subject) => format!("SNS {topic}: {subject:?}"),
        None => format!("SNS {topic}: {}", excerpt(&record.sns.message)),
    }
}

fn alarm_event_summary(parsed: CloudWatchEvent<Value>) -> String {
    let detail = parsed.detail.unwrap_or(Value::Null);
    alarm_summary(
        &detail,
        "EventBridge",
        parsed.account_id.as_deref().unwrap_or("?"),
    )
}

fn alarm_action_summary(parsed: CloudWatchAlarm<Value, Value>) -> String {
    let state = parsed
        .alarm_data
        .state
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.value).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    format!(
        "alarm {} -> {state} (alarm action, account {})",
        parsed.alarm_data.alarm_name,
        parsed.account_id.as_deref().unwrap_or("?")
    )
}

/// The EventBridge event's `detail` (the alarm's data, as in the action payload).
fn alarm_summary(detail: &Value, via: &str, account: &str) -> String {
    let text = |pointer: &str| {
        detail
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("?")
    };
    format!(
        "alarm {} -> {} ({via}, account {account})",
        text("/alarmName"),
        text("/state/value")
    )
}

fn pipeline_job(event: &Value) -> (Target, String) {
    let job = match CodePipelineJobEvent::deserialize(event) {
        Ok(parsed) => parsed.code_pipeline_job,
        Err(e) => {
            return (
                Target::Unknown,
                format!("CodePipeline job (unreadable: {e})"),
            );
        }
    };
    let function = job
        .data
        .action_configuration
        .configuration
        .function_name
        .unwrap_or_default();
    let summary = format!(
        "CodePipeline job {} for {function}",
        job.id.as_deref().unwrap_or("?")
    );
    (Target::PipelineJob { function }, summary)
}

/// The first 80 characters of `text`, on one line.
fn excerpt(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match line.char_indices().nth(80) {
        Some((end, _)) => format!("{}...", &line[..end]),
        None => line,
    }
}

/// Which events a replay takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Ids(Vec<String>),
    All,
}

/// The events a selection takes (in the order asked) and the others.
#[derive(Debug)]
pub struct Split {
    pub selected: Vec<FailedEvent>,
    pub rest: Vec<FailedEvent>,
}

/// An id asked for that is not in the queue, and every event read (to give back).
#[derive(Debug)]
pub struct Missing {
    pub id: String,
    pub events: Vec<FailedEvent>,
}

/// Splits `events` by `selection`; all or nothing: one id not there selects none.
pub fn select(events: Vec<FailedEvent>, selection: &Selection) -> Result<Split, Missing> {
    let ids = match selection {
        Selection::All => {
            return Ok(Split {
                selected: events,
                rest: Vec::new(),
            });
        }
        Selection::Ids(ids) => ids,
    };
    if let Some(missing) = ids.iter().find(|id| !events.iter().any(|e| &e.id == *id)) {
        return Err(Missing {
            id: missing.clone(),
            events,
        });
    }
    let (mut selected, rest): (Vec<_>, Vec<_>) =
        events.into_iter().partition(|e| ids.contains(&e.id));
    selected.sort_by_key(|e| ids.iter().position(|id| *id == e.id));
    Ok(Split { selected, rest })
}

/// What a replay does with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayPlan {
    /// Invoke this function of shipgate's (its name resolved by flag or stack).
    Role(FunctionRole),
    /// Invoke the function by this name or ARN.
    Function(String),
    /// Leave it in the queue, for this reason.
    Skip(String),
}

/// How `event` is replayed.
pub fn plan(event: &FailedEvent) -> ReplayPlan {
    match &event.function {
        Target::Function { role } => ReplayPlan::Role(*role),
        Target::Named { function } => ReplayPlan::Function(function.clone()),
        Target::PipelineJob { function } => ReplayPlan::Skip(format!(
            "a CodePipeline job of {function} is not replayed: CodePipeline has failed or timed \
             out that action by now; retry the stage instead (aws codepipeline \
             retry-stage-execution), then delete the message"
        )),
        Target::Unknown => ReplayPlan::Skip(
            "no shipgate function takes this event (not S3, SNS or an alarm state change)"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(body: &str) -> QueueMessage {
        QueueMessage {
            message_id: "m-1".into(),
            receipt_handle: "r-1".into(),
            body: body.into(),
            sent_timestamp_ms: Some(1_764_151_200_000),
            receive_count: Some(1),
            attributes: BTreeMap::from([
                ("RequestID".into(), "req-1".into()),
                ("ErrorCode".into(), "200".into()),
                ("ErrorMessage".into(), "boom".into()),
            ]),
        }
    }

    #[test]
    fn an_s3_drop_is_intakes_and_names_the_object() {
        let event = read_message(message(include_str!("../../fixtures/s3-put.json")));
        assert_eq!(
            event.function,
            Target::Function {
                role: FunctionRole::Intake
            }
        );
        assert!(
            event.summary.starts_with("S3 ObjectCreated:Put s3://"),
            "{}",
            event.summary
        );
        assert_eq!(event.request_id.as_deref(), Some("req-1"));
        assert_eq!(event.error_code.as_deref(), Some("200"));
        assert_eq!(event.error_message.as_deref(), Some("boom"));
        assert_eq!(
            event.failed_at.map(|t| t.unix_timestamp()),
            Some(1_764_151_200)
        );
        // Replayed byte for byte.
        assert_eq!(event.payload, include_str!("../../fixtures/s3-put.json"));
    }

    #[test]
    fn s3_keys_are_shown_decoded() {
        assert_eq!(
            s3_key("incoming/orders+1.0%2B1.zip"),
            "incoming/orders 1.0+1.zip"
        );
        assert_eq!(s3_key("bad%ZZkey"), "bad%ZZkey");
    }

    #[test]
    fn an_sns_notification_is_the_mailers_and_shows_its_subject() {
        let event = read_message(message(include_str!("../../fixtures/sns-event.json")));
        assert_eq!(
            event.function,
            Target::Function {
                role: FunctionRole::Mailer
            }
        );
        assert_eq!(event.summary, "SNS snsNetTest: \"Greetings\"");
    }

    #[test]
    fn alarm_state_changes_are_rollbacks_both_ways() {
        let eventbridge = json!({
            "version": "0", "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
            "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "account": "222222222222", "time": "2026-11-26T10:00:00Z", "region": "eu-west-1",
            "resources": ["arn:aws:cloudwatch:eu-west-1:222222222222:alarm:orders-5xx"],
            "detail": {"alarmName": "orders-5xx",
                       "state": {"value": "ALARM", "reason": "r", "timestamp": "2026-11-26T10:00:00.000+0000"},
                       "previousState": {"value": "OK", "reason": "r", "timestamp": "2026-11-26T09:00:00.000+0000"},
                       "configuration": {"metrics": []}}
        });
        let (target, summary) = describe(&eventbridge);
        assert_eq!(
            target,
            Target::Function {
                role: FunctionRole::Rollback
            }
        );
        assert_eq!(
            summary,
            "alarm orders-5xx -> ALARM (EventBridge, account 222222222222)"
        );

        let action: Value =
            serde_json::from_str(include_str!("../../fixtures/cloudwatch-alarm-action.json"))
                .unwrap();
        let (target, summary) = describe(&action);
        assert_eq!(
            target,
            Target::Function {
                role: FunctionRole::Rollback
            }
        );
        assert!(
            summary.starts_with("alarm lambda-demo-metric-alarm"),
            "{summary}"
        );
    }

    #[test]
    fn a_pipeline_job_names_its_function_and_is_not_replayed() {
        let event = read_message(message(include_str!(
            "../../fixtures/codepipeline-job-event.json"
        )));
        assert_eq!(
            event.function,
            Target::PipelineJob {
                function: "MyLambdaFunctionForAWSCodePipeline".into()
            }
        );
        // The job's artifact credentials stay out of the summary.
        assert!(!event.summary.contains("AKIA"), "{}", event.summary);
        assert!(
            matches!(plan(&event), ReplayPlan::Skip(why) if why.contains("retry-stage-execution"))
        );
    }

    #[test]
    fn an_on_failure_record_names_its_function_and_replays_the_inner_event() {
        let inner: Value =
            serde_json::from_str(include_str!("../../fixtures/sns-event.json")).unwrap();
        let record = json!({
            "version": "1.0", "timestamp": "2026-11-26T10:00:00.000Z",
            "requestContext": {"requestId": "req-9",
                               "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:mailer:$LATEST",
                               "condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": inner,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": "no gate", "errorType": "GateError"}
        });
        let mut m = message(&record.to_string());
        m.attributes.clear();
        let event = read_message(m);
        assert_eq!(
            plan(&event),
            ReplayPlan::Function(
                "arn:aws:lambda:eu-west-1:123456789012:function:mailer:$LATEST".into()
            )
        );
        assert_eq!(
            serde_json::from_str::<Value>(&event.payload).unwrap(),
            inner
        );
        assert_eq!(event.request_id.as_deref(), Some("req-9"));
        assert_eq!(event.error_code.as_deref(), Some("200"));
        assert_eq!(event.error_message.as_deref(), Some("no gate"));
        assert!(
            event
                .summary
                .ends_with("(on-failure record: RetriesExhausted)")
        );
    }

    #[test]
    fn hostile_bodies_are_described_not_trusted() {
        for body in [
            "",
            "not json",
            "[]",
            "{\"Records\": [{\"eventSource\": \"aws:s3\"}]}",
            "{\"Records\": [{\"EventSource\": \"aws:sns\"}]}",
            "{\"source\": \"aws.cloudwatch\"}",
            "{\"CodePipeline.job\": 1}",
        ] {
            let event = read_message(message(body));
            assert!(!event.summary.is_empty(), "{body}");
            assert!(event.summary.chars().count() < 400, "{body}");
        }
        let event = read_message(message("{\"Records\": [{\"eventSource\": \"aws:s3\"}]}"));
        // Routed by its marks, with the reason it could not be summarised.
        assert!(
            event.summary.starts_with("S3 event (unreadable"),
            "{}",
            event.summary
        );
        let event = read_message(message(&"x\n".repeat(500)));
        assert!(!event.summary.contains('\n'));
        assert_eq!(
            plan(&read_message(message("[]"))),
            ReplayPlan::Skip(
                "no shipgate function takes this event (not S3, SNS or an alarm state change)"
                    .into()
            )
        );
    }

    fn named(id: &str) -> FailedEvent {
        FailedEvent {
            id: id.into(),
            ..read_message(message("{}"))
        }
    }

    #[test]
    fn a_selection_takes_the_ids_asked_in_their_order() {
        let events = vec![named("a"), named("b"), named("c")];
        let ids = |events: &[FailedEvent]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        let split = select(
            events.clone(),
            &Selection::Ids(vec!["c".into(), "a".into()]),
        )
        .unwrap();
        assert_eq!(ids(&split.selected), ["c", "a"]);
        assert_eq!(ids(&split.rest), ["b"]);
        let split = select(events.clone(), &Selection::All).unwrap();
        assert_eq!((split.selected.len(), split.rest.len()), (3, 0));
        let missing = select(events, &Selection::Ids(vec!["a".into(), "z".into()])).unwrap_err();
        assert_eq!((missing.id.as_str(), missing.events.len()), ("z", 3));
    }
}
