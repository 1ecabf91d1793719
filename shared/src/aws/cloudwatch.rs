//! CloudWatch: which of a deployment's alarms are firing, checked before traffic moves forward.

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::StateValue;

use crate::error::{AwsError, aws_err};

/// An alarm in `ALARM`, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiringAlarm {
    pub name: String,
    pub reason: String,
}

/// The alarms among `names` that are in `ALARM` now (`DescribeAlarms`, at most 100 names).
pub async fn firing_alarms(cw: &Client, names: &[String]) -> Result<Vec<FiringAlarm>, AwsError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut firing = Vec::new();
    for chunk in names.chunks(100) {
        let out = cw
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .state_value(StateValue::Alarm)
            .send()
            .await
            .map_err(aws_err("CloudWatch", "DescribeAlarms"))?;
        // Metric and composite alarms alike, filtered again here: the state filter is not
        // honoured by every implementation of the API (moto 5.2 ignores it when names are
        // given).
        for (state, name, reason) in out
            .metric_alarms()
            .iter()
            .map(|a| (a.state_value(), a.alarm_name(), a.state_reason()))
            .chain(
                out.composite_alarms()
                    .iter()
                    .map(|a| (a.state_value(), a.alarm_name(), a.state_reason())),
            )
        {
            if state == Some(&StateValue::Alarm) {
                firing.push(FiringAlarm {
                    name: name.unwrap_or_default().to_owned(),
                    reason: reason.unwrap_or_default().to_owned(),
                });
            }
        }
    }
    Ok(firing)
}
