//! CloudWatch metrics as Embedded Metric Format (EMF) log lines.
//!
//! Lambda sends everything a function writes to stdout to CloudWatch Logs, and CloudWatch Logs
//! turns every line that is an EMF document into metric values: no SDK call, no IAM permission,
//! no agent, and the line stays a log event that Logs Insights can query. One line per metric
//! event, in namespace `Shipgate`. Dimensions are few on purpose (each distinct combination of
//! dimension values is a metric CloudWatch bills): `Environment` for what happens in one
//! environment, `Application` for intake's verdicts; release and execution ids ride along as
//! plain properties (`release_id`, `execution_id`), never as dimensions.
//!
//! Metrics go where logs go: only a process that installed the log subscriber
//! ([`crate::telemetry::init`], as every function's `main` does) writes them, so a test or a
//! CLI command that prints its own output gets no metric lines in it.
//!
//! The document's rules are those of CloudWatch's "Specification: Embedded metric format"; the
//! tests check every line against them.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Number, Value, json};

/// The CloudWatch namespace of every shipgate metric.
pub const NAMESPACE: &str = "Shipgate";

/// Dimension key: the environment (`int`, `stg`, `prod`) the metric is about.
pub const ENVIRONMENT: &str = "Environment";
/// Dimension key: the application a release is of (intake's verdicts only).
pub const APPLICATION: &str = "Application";

/// The CloudWatch units shipgate's metrics use (a subset of `MetricDatum`'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Bytes,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::Bytes => "Bytes",
        }
    }
}

/// Every metric shipgate emits: the names are a closed set, each with its unit, so a name
/// cannot be misspelt at a call site nor carry two units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricName {
    /// intake: a drop accepted (the pipeline starts).
    ReleasesAccepted,
    /// intake: a drop rejected (moved aside, integrator emailed).
    ReleasesRejected,
    /// mailer: approval emails sent (one per approver).
    ApprovalEmailsSent,
    /// mailer: an approval notification refused (its `CustomData` names another environment
    /// than its stage gates, or its stage gates none): nobody mailed.
    ApprovalNotificationsRefused,
    /// approval page: an approval decided "approve".
    ApprovalsApproved,
    /// approval page: an approval decided "reject".
    ApprovalsRejected,
    /// checks: one check passed.
    ChecksPassed,
    /// checks: one check failed (the action fails).
    ChecksFailed,
    /// deploy: every stack of the release deployed.
    DeploysSucceeded,
    /// deploy: the deploy action failed.
    DeploysFailed,
    /// traffic: one step of traffic moved to the new version.
    TrafficSteps,
    /// traffic: all traffic on the new version and the bake over.
    DeploymentsSucceeded,
    /// a deployment rolled back (whoever carried it out: alarm, operator, traffic action).
    Rollbacks,
    /// rollback: from the alarm's state change to the rollback done.
    RollbackSeconds,
    /// promote: bytes copied to the next environment's registry.
    PromotionBytes,
    /// promote: seconds spent copying the release's images.
    PromotionSeconds,
}

impl MetricName {
    pub const ALL: [MetricName; 16] = [
        MetricName::ReleasesAccepted,
        MetricName::ReleasesRejected,
        MetricName::ApprovalEmailsSent,
        MetricName::ApprovalNotificationsRefused,
        MetricName::ApprovalsApproved,
        MetricName::ApprovalsRejected,
        MetricName::ChecksPassed,
        MetricName::ChecksFailed,
        MetricName::DeploysSucceeded,
        MetricName::DeploysFailed,
        MetricName::TrafficSteps,
        MetricName::DeploymentsSucceeded,
        MetricName::Rollbacks,
        MetricName::RollbackSeconds,
        MetricName::PromotionBytes,
        MetricName::PromotionSeconds,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MetricName::ReleasesAccepted => "ReleasesAccepted",
            MetricName::ReleasesRejected => "ReleasesRejected",
            MetricName::ApprovalEmailsSent => "ApprovalEmailsSent",
            MetricName::ApprovalNotificationsRefused => "ApprovalNotificationsRefused",
            MetricName::ApprovalsApproved => "ApprovalsApproved",
            MetricName::ApprovalsRejected => "ApprovalsRejected",
            MetricName::ChecksPassed => "ChecksPassed",
            MetricName::ChecksFailed => "ChecksFailed",
            MetricName::DeploysSucceeded => "DeploysSucceeded",
            MetricName::DeploysFailed => "DeploysFailed",
            MetricName::TrafficSteps => "TrafficSteps",
            MetricName::DeploymentsSucceeded => "DeploymentsSucceeded",
            MetricName::Rollbacks => "Rollbacks",
            MetricName::RollbackSeconds => "RollbackSeconds",
            MetricName::PromotionBytes => "PromotionBytes",
            MetricName::PromotionSeconds => "PromotionSeconds",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            MetricName::RollbackSeconds | MetricName::PromotionSeconds => Unit::Seconds,
            MetricName::PromotionBytes => Unit::Bytes,
            _ => Unit::Count,
        }
    }
}

/// One metric event: one or more values with the same dimensions, and properties for Logs
/// Insights. Build it, then [`emit`](Self::emit) it (or render it with
/// [`to_document`](Self::to_document)).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricEvent {
    values: Vec<(MetricName, Number)>,
    dimensions: Vec<(&'static str, String)>,
    with_total: bool,
    properties: Map<String, Value>,
}

impl MetricEvent {
    /// `value` of `name`. A value that is not a finite number is left out of the document.
    pub fn new(name: MetricName, value: f64) -> Self {
        Self {
            values: Vec::new(),
            dimensions: Vec::new(),
            with_total: false,
            properties: Map::new(),
        }
        .and(name, value)
    }

    /// One occurrence of `name` (a `Count` of 1).
    pub fn count(name: MetricName) -> Self {
        Self::new(name, 1.0)
    }

    /// Another value in the same event (same dimensions, same line).
    pub fn and(mut self, name: MetricName, value: f64) -> Self {
        if let Some(number) = number(value) {
            self.values.retain(|(n, _)| *n != name);
            self.values.push((name, number));
        }
        self
    }

    /// Dimension `Environment`.
    pub fn environment(self, environment: &str) -> Self {
        self.dimension(ENVIRONMENT, environment)
    }

    /// Dimension `Application`, when the application is known.
    pub fn application(self, application: Option<&str>) -> Self {
        match application {
            Some(application) => self.dimension(APPLICATION, application),
            None => self,
        }
    }

    fn dimension(mut self, key: &'static str, value: &str) -> Self {
        self.dimensions.retain(|(k, _)| *k != key);
        self.dimensions.push((key, value.to_owned()));
        self
    }

    /// Also publish the values with no dimension at all: the total over every environment or
    /// application, what an alarm on "any" watches.
    pub fn with_total(mut self) -> Self {
        self.with_total = true;
        self
    }

    /// A property for Logs Insights: in the line, not part of the metric's identity. A key
    /// that is a dimension, a metric name or `_aws` is overridden by them.
    pub fn property(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.properties.insert(key.to_owned(), value.into());
        self
    }

    /// The `release_id` and `execution_id` properties, named as in the logs.
    pub fn ids(self, release_id: &str, execution_id: &str) -> Self {
        self.property("release_id", release_id)
            .property("execution_id", execution_id)
    }

    /// The EMF document of this event at `timestamp_ms` (epoch milliseconds). A dimension
    /// whose value CloudWatch would refuse (empty, not ASCII, control characters, over 1024
    /// characters) stays in the document as a property only, so the values are still
    /// published, without it.
    pub fn to_document(&self, timestamp_ms: i64) -> Value {
        let mut root = self.properties.clone();
        let mut keys = Vec::new();
        for (key, value) in &self.dimensions {
            if valid_dimension_value(value) {
                keys.push(*key);
            }
            root.insert((*key).to_owned(), Value::String(value.clone()));
        }
        let mut dimension_sets = vec![keys.clone()];
        if self.with_total && !keys.is_empty() {
            dimension_sets.push(Vec::new());
        }
        let mut definitions = Vec::new();
        for (name, value) in &self.values {
            definitions.push(json!({"Name": name.as_str(), "Unit": name.unit().as_str()}));
            root.insert(name.as_str().to_owned(), Value::Number(value.clone()));
        }
        root.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": dimension_sets,
                    "Metrics": definitions,
                }],
            }),
        );
        Value::Object(root)
    }

    /// Writes the event as one line (the document and a newline, in one write). An event
    /// without a value (each was not a finite number) writes nothing: EMF wants at least one.
    pub fn write_line(&self, out: &mut impl Write, timestamp_ms: i64) -> std::io::Result<()> {
        if self.values.is_empty() {
            return Ok(());
        }
        let mut line = self.to_document(timestamp_ms).to_string();
        line.push('\n');
        out.write_all(line.as_bytes())
    }

    /// Writes the event to stdout now, if this process logs (see the module's doc). A failed
    /// write is ignored: a metric never fails the work it measures.
    pub fn emit(&self) {
        if !STDOUT.load(Ordering::Relaxed) {
            return;
        }
        let _ = self.write_line(&mut std::io::stdout().lock(), now_ms());
    }
}

/// The metrics of one release in one environment (a pipeline stage's functions): dimension
/// `Environment`, the release and execution ids as properties.
#[derive(Debug, Clone, Copy)]
pub struct StageMetrics<'a> {
    pub environment: &'a str,
    pub release_id: &'a str,
    pub execution_id: &'a str,
}

impl<'a> StageMetrics<'a> {
    pub fn new(environment: &'a str, release_id: &'a str, execution_id: &'a str) -> Self {
        Self {
            environment,
            release_id,
            execution_id,
        }
    }

    /// An event of `value` of `name`, to add to before emitting it.
    pub fn event(&self, name: MetricName, value: f64) -> MetricEvent {
        MetricEvent::new(name, value)
            .environment(self.environment)
            .ids(self.release_id, self.execution_id)
    }

    /// Emits one occurrence of `name`.
    pub fn count(&self, name: MetricName) {
        self.event(name, 1.0).emit();
    }
}

static STDOUT: AtomicBool = AtomicBool::new(false);

/// Turns metric lines on for this process (called by [`crate::telemetry::init`]).
pub fn write_to_stdout() {
    STDOUT.store(true, Ordering::Relaxed);
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// A finite value as a JSON number; whole values as integers (`1`, not `1.0`).
fn number(value: f64) -> Option<Number> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every whole f64 below is exact
    if value.is_finite() && value.fract() == 0.0 && value.abs() < EXACT {
        Some(Number::from(value as i64))
    } else {
        Number::from_f64(value)
    }
}

/// What CloudWatch accepts as a dimension value: 1 to 1024 ASCII characters, no control
/// characters, not only whitespace.
fn valid_dimension_value(value: &str) -> bool {
    (1..=1024).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii() && !b.is_ascii_control())
        && !value.trim().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// CloudWatch's valid units (`MetricDatum`), as the EMF specification's schema lists them.
    const VALID_UNITS: [&str; 27] = [
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];

    /// Checks a line against "Specification: Embedded metric format": one JSON object and
    /// nothing else; `_aws` with an integer `Timestamp` and `CloudWatchMetrics`; each directive
    /// with exactly `Namespace` (1-255), `Dimensions` (at least one set, each of at most 30
    /// keys naming string members of the root) and `Metrics` (1-100 definitions, each naming a
    /// numeric member of the root, with a valid unit, and nothing else).
    fn check_line(line: &str) -> Result<Value, String> {
        let body = line
            .strip_suffix('\n')
            .ok_or("the line does not end with a newline")?;
        if body.contains('\n') {
            return Err("the document spans more than one line".into());
        }
        if body.len() > 256 * 1024 {
            return Err("over CloudWatch Logs' 256 KB event size".into());
        }
        let doc: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
        let root = doc.as_object().ok_or("the root is not an object")?;
        let aws = root
            .get("_aws")
            .and_then(Value::as_object)
            .ok_or("no _aws object")?;
        let timestamp = aws.get("Timestamp").ok_or("no Timestamp")?;
        if !(timestamp.is_i64() || timestamp.is_u64()) {
            return Err(format!("Timestamp {timestamp} is not an integer"));
        }
        let directives = aws
            .get("CloudWatchMetrics")
            .and_then(Value::as_array)
            .ok_or("no CloudWatchMetrics array")?;
        if directives.is_empty() {
            return Err("CloudWatchMetrics is empty".into());
        }
        for directive in directives {
            let directive = directive
                .as_object()
                .ok_or("a directive is not an object")?;
            let mut members: Vec<&str> = directive.keys().map(String::as_str).collect();
            members.sort_unstable();
            if members != ["Dimensions", "Metrics", "Namespace"] {
                return Err(format!("directive members {members:?}"));
            }
            let namespace = directive["Namespace"].as_str().ok_or("Namespace")?;
            if !(1..=255).contains(&namespace.len()) {
                return Err(format!("Namespace {namespace:?}"));
            }
            let sets = directive["Dimensions"]
                .as_array()
                .ok_or("Dimensions is not an array")?;
            if sets.is_empty() {
                return Err("Dimensions has no DimensionSet".into());
            }
            for set in sets {
                let keys = set.as_array().ok_or("a DimensionSet is not an array")?;
                if keys.len() > 30 {
                    return Err(format!("{} dimension keys (at most 30)", keys.len()));
                }
                for key in keys {
                    let key = key.as_str().ok_or("a dimension key is not a string")?;
                    let value = root
                        .get(key)
                        .ok_or(format!("dimension {key} is not a member of the root"))?;
                    let value = value
                        .as_str()
                        .ok_or(format!("dimension {key} is not a string"))?;
                    if !valid_dimension_value(value) {
                        return Err(format!("dimension {key} = {value:?} is refused"));
                    }
                }
            }
            let definitions = directive["Metrics"]
                .as_array()
                .ok_or("Metrics is not an array")?;
            if definitions.is_empty() || definitions.len() > 100 {
                return Err(format!("{} metric definitions", definitions.len()));
            }
            for definition in definitions {
                let definition = definition.as_object().ok_or("a definition")?;
                if definition.keys().any(|k| k != "Name" && k != "Unit") {
                    return Err(format!("definition members {:?}", definition.keys()));
                }
                let name = definition
                    .get("Name")
                    .and_then(Value::as_str)
                    .ok_or("a definition has no Name")?;
                if !(1..=255).contains(&name.len()) {
                    return Err(format!("metric name {name:?}"));
                }
                match root.get(name) {
                    Some(Value::Number(_)) => {}
                    Some(Value::Array(values))
                        if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                    other => return Err(format!("metric {name} has value {other:?}")),
                }
                if let Some(unit) = definition.get("Unit") {
                    let unit = unit.as_str().ok_or("Unit is not a string")?;
                    if !VALID_UNITS.contains(&unit) {
                        return Err(format!("unit {unit:?} is not a CloudWatch unit"));
                    }
                }
            }
        }
        Ok(doc)
    }

    fn line(event: &MetricEvent, timestamp_ms: i64) -> String {
        let mut out = Vec::new();
        event.write_line(&mut out, timestamp_ms).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_stage_metric_is_one_valid_line_with_the_environment_as_its_only_dimension() {
        let event =
            StageMetrics::new("stg", "rel-0123", "exec-9").event(MetricName::Rollbacks, 1.0);
        let doc = check_line(&line(&event, 1_760_000_000_123)).unwrap();
        assert_eq!(
            doc,
            json!({
                "_aws": {
                    "Timestamp": 1_760_000_000_123_i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "Shipgate",
                        "Dimensions": [["Environment"]],
                        "Metrics": [{"Name": "Rollbacks", "Unit": "Count"}],
                    }],
                },
                "Environment": "stg",
                "Rollbacks": 1,
                "release_id": "rel-0123",
                "execution_id": "exec-9",
            })
        );
    }

    #[test]
    fn the_ids_are_properties_never_dimensions() {
        let event =
            StageMetrics::new("int", "rel-1", "exec-1").event(MetricName::TrafficSteps, 1.0);
        let doc = event.to_document(0);
        let sets = &doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
        for id in ["release_id", "execution_id"] {
            assert!(doc.get(id).is_some(), "{id} is in the line");
            assert!(
                !sets.to_string().contains(id),
                "{id} is no dimension: {sets}"
            );
        }
    }

    #[test]
    fn values_of_one_event_share_a_line_and_keep_their_units() {
        let event = StageMetrics::new("prod", "rel-2", "exec-2")
            .event(MetricName::PromotionBytes, 123_456_789.0)
            .and(MetricName::PromotionSeconds, 12.5)
            .property("from", "stg");
        let doc = check_line(&line(&event, 1)).unwrap();
        assert_eq!(doc["PromotionBytes"], json!(123_456_789));
        assert_eq!(doc["PromotionSeconds"], json!(12.5));
        assert_eq!(doc["from"], json!("stg"));
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([
                {"Name": "PromotionBytes", "Unit": "Bytes"},
                {"Name": "PromotionSeconds", "Unit": "Seconds"},
            ])
        );
    }

    #[test]
    fn with_a_total_the_values_are_also_published_without_dimensions() {
        let event = MetricEvent::count(MetricName::ReleasesRejected)
            .application(Some("orders"))
            .with_total();
        let doc = check_line(&line(&event, 1)).unwrap();
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Application"], []])
        );
        // Without a dimension, the one set is the empty one, never two empty sets.
        let doc = check_line(&line(
            &MetricEvent::count(MetricName::ReleasesRejected).with_total(),
            1,
        ))
        .unwrap();
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
    }

    #[test]
    fn a_value_cloudwatch_would_refuse_as_a_dimension_stays_a_property() {
        for refused in ["", "   ", "commandes-é", "a\tb", &"x".repeat(1025)] {
            let event = MetricEvent::count(MetricName::ReleasesAccepted).application(Some(refused));
            let doc = check_line(&line(&event, 1)).unwrap();
            assert_eq!(
                doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                json!([[]])
            );
            assert_eq!(doc["Application"], json!(refused));
        }
    }

    #[test]
    fn properties_cannot_break_the_document() {
        let event = StageMetrics::new("int", "rel-3", "exec-3")
            .event(MetricName::ChecksFailed, 1.0)
            .property("_aws", "mine")
            .property("Environment", 7)
            .property("ChecksFailed", "many");
        let doc = check_line(&line(&event, 1)).unwrap();
        assert_eq!(doc["Environment"], json!("int"));
        assert_eq!(doc["ChecksFailed"], json!(1));
    }

    #[test]
    fn a_value_that_is_not_a_number_is_left_out_and_an_empty_event_is_not_written() {
        let event = MetricEvent::new(MetricName::RollbackSeconds, f64::NAN);
        assert_eq!(line(&event, 1), "");
        let event = MetricEvent::count(MetricName::Rollbacks)
            .and(MetricName::RollbackSeconds, f64::INFINITY);
        let doc = check_line(&line(&event, 1)).unwrap();
        assert!(doc.get("RollbackSeconds").is_none());
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn every_name_is_distinct_with_a_valid_unit() {
        let mut names: Vec<_> = MetricName::ALL.iter().map(|n| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MetricName::ALL.len());
        for name in MetricName::ALL {
            assert!(VALID_UNITS.contains(&name.unit().as_str()));
            let doc = check_line(&line(&MetricEvent::count(name), 1)).unwrap();
            assert_eq!(doc[name.as_str()], json!(1));
        }
    }

    #[test]
    fn the_checker_refuses_what_the_specification_refuses() {
        let good = line(
            &MetricEvent::count(MetricName::Rollbacks).environment("int"),
            5,
        );
        assert!(check_line(&good).is_ok());
        let mut doc: Value = serde_json::from_str(good.trim_end()).unwrap();
        let broken = |doc: &Value| check_line(&format!("{doc}\n"));

        let mut float_time = doc.clone();
        float_time["_aws"]["Timestamp"] = json!(5.5);
        assert!(broken(&float_time).is_err());

        let mut unknown_unit = doc.clone();
        unknown_unit["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Things");
        assert!(broken(&unknown_unit).is_err());

        let mut missing_member = doc.clone();
        missing_member.as_object_mut().unwrap().remove("Rollbacks");
        assert!(broken(&missing_member).is_err());

        let keys: Vec<String> = (0..31).map(|i| format!("D{i}")).collect();
        let mut wide = doc.clone();
        for key in &keys {
            wide[key] = json!("v");
        }
        wide["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([keys]);
        assert!(broken(&wide).is_err());

        doc["Environment"] = json!(3);
        assert!(broken(&doc).is_err());
    }

    proptest! {
        #[test]
        fn any_environment_application_and_ids_give_a_valid_line(
            environment in ".{0,40}",
            application in any::<String>(),
            release_id in any::<String>(),
            value in any::<f64>(),
            timestamp in 0i64..=4_102_444_800_000,
        ) {
            let event = StageMetrics::new(&environment, &release_id, "exec")
                .event(MetricName::TrafficSteps, 1.0)
                .and(MetricName::PromotionSeconds, value)
                .application(Some(&application))
                .with_total();
            let doc = check_line(&line(&event, timestamp)).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&doc["release_id"], &json!(release_id));
            prop_assert_eq!(&doc["_aws"]["Timestamp"], &json!(timestamp));
        }
    }
}
