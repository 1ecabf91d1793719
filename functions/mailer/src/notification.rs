//! Reading CodePipeline's manual-approval notification out of an SNS event (pure).
//!
//! The SNS `Message` is CodePipeline's documented approval JSON ("JSON data format for manual
//! approval notifications"): `region`, `consoleLink`, `approval{pipelineName, stageName,
//! actionName, token, expires, customData, …}`. shipgate's pipeline puts the release, the
//! execution and the environment in the action's `CustomData` as `key=value` words
//! (`release=rel-… execution=… environment=int`), after a sentence for people who read it in
//! the console. The environment and the promotion source read here are claims only: which
//! environment an approval gates comes from its stage ([`crate::authorise`]), and a
//! notification whose claims disagree with it is refused.

use aws_lambda_events::event::sns::SnsEvent;
use serde::Deserialize;
use shipgate::aws::codepipeline::ApprovalAction;
use shipgate::store::ApprovalToken;
use time::PrimitiveDateTime;
use time::macros::format_description;

/// A manual approval waiting for someone, as the mailer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalNotification {
    pub pipeline: String,
    pub stage: String,
    pub action: String,
    pub token: ApprovalToken,
    /// When CodePipeline expires the approval (epoch seconds).
    pub expires_at: i64,
    pub release_id: Option<String>,
    pub execution_id: Option<String>,
    /// What `CustomData` says the approval gates (`environment=int`): checked against the
    /// stage, never used to choose approvers.
    pub environment: Option<String>,
    /// What `CustomData` says a promotion comes from (`from=int`): checked against the stage.
    pub promote_from: Option<String>,
}

impl ApprovalNotification {
    /// The approval action waiting, with the token that decides it.
    pub fn approval_action(&self) -> ApprovalAction<'_> {
        ApprovalAction {
            pipeline: &self.pipeline,
            stage: &self.stage,
            action: &self.action,
            token: self.token.expose(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    approval: Approval,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Approval {
    pipeline_name: String,
    stage_name: String,
    action_name: String,
    token: String,
    expires: String,
    custom_data: Option<String>,
}

/// The SNS event's messages, each read as an approval notification or the reason it is not one.
pub fn read_sns_event(
    event: serde_json::Value,
) -> Result<Vec<Result<ApprovalNotification, String>>, serde_json::Error> {
    let event: SnsEvent = serde_json::from_value(event)?;
    Ok(event
        .records
        .iter()
        .map(|r| parse_approval_message(&r.sns.message))
        .collect())
}

/// One approval JSON message.
pub fn parse_approval_message(message: &str) -> Result<ApprovalNotification, String> {
    let message: Message = serde_json::from_str(message)
        .map_err(|e| format!("the message is not a CodePipeline approval notification: {e}"))?;
    let a = message.approval;
    for (field, value) in [
        ("pipelineName", &a.pipeline_name),
        ("stageName", &a.stage_name),
        ("actionName", &a.action_name),
        ("token", &a.token),
    ] {
        if value.trim().is_empty() {
            return Err(format!("the approval notification's {field} is empty"));
        }
    }
    let expires_at = parse_expires(&a.expires).ok_or_else(|| {
        format!(
            "the approval notification's expires {:?} is not CodePipeline's YYYY-MM-DDThh:mmZ",
            a.expires
        )
    })?;
    let data = a
        .custom_data
        .as_deref()
        .map(parse_custom_data)
        .unwrap_or_default();
    Ok(ApprovalNotification {
        pipeline: a.pipeline_name,
        stage: a.stage_name,
        action: a.action_name,
        token: ApprovalToken::new(a.token),
        expires_at,
        release_id: data.release,
        execution_id: data.execution,
        environment: data.environment,
        promote_from: data.from,
    })
}

/// What shipgate writes into an approval's `CustomData`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CustomData {
    pub release: Option<String>,
    pub execution: Option<String>,
    pub environment: Option<String>,
    pub from: Option<String>,
}

/// `… release=rel-1 execution=abc environment=int` → its fields. Unknown words are text for
/// people; a value that is empty or not a plain id is ignored (an unresolved `#{…}` variable
/// is not an id).
pub fn parse_custom_data(text: &str) -> CustomData {
    let mut data = CustomData::default();
    for word in text.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        let value = value.trim_end_matches(['.', ',', ';']);
        let plain = !value.is_empty()
            && value.len() <= 128
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            continue;
        }
        let slot = match key {
            "release" => &mut data.release,
            "execution" => &mut data.execution,
            "environment" => &mut data.environment,
            "from" => &mut data.from,
            _ => continue,
        };
        *slot = Some(value.to_owned());
    }
    data
}

/// `2016-07-07T20:22Z` (minutes, UTC) → epoch seconds. Seconds are accepted too.
pub fn parse_expires(text: &str) -> Option<i64> {
    let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]Z");
    let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    PrimitiveDateTime::parse(text, minutes)
        .or_else(|_| PrimitiveDateTime::parse(text, seconds))
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws_sample() -> String {
        include_str!("../tests/fixtures/approval-notification.json").to_owned()
    }

    #[test]
    fn aws_documented_notification_reads() {
        let n = parse_approval_message(&aws_sample()).unwrap();
        assert_eq!(n.pipeline, "MyFirstPipeline");
        assert_eq!(n.stage, "MyApprovalStage");
        assert_eq!(n.action, "MyApprovalAction");
        assert_eq!(n.token.expose(), "1a2b3c4d-573f-4ea7-a67E-XAMPLETOKEN");
        // 2016-07-07T20:22Z
        assert_eq!(n.expires_at, 1_467_922_920);
        // AWS's sample custom data is a sentence: no shipgate fields.
        assert_eq!(n.release_id, None);
        assert_eq!(n.environment, None);
    }

    #[test]
    fn the_approval_json_arrives_inside_aws_sample_sns_event() {
        let mut event: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/sns-event.json")).unwrap();
        event["Records"][0]["Sns"]["Message"] = aws_sample().into();
        let read = read_sns_event(event).unwrap();
        assert_eq!(read.len(), 1);
        assert!(read[0].is_ok());
        // The sample's own message ("Hello world!") is not an approval: a reason, not a panic.
        let event: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/sns-event.json")).unwrap();
        let read = read_sns_event(event).unwrap();
        assert!(
            read[0]
                .as_ref()
                .unwrap_err()
                .contains("not a CodePipeline approval")
        );
    }

    #[test]
    fn shipgate_custom_data_is_read_and_unresolved_variables_are_not() {
        let d = parse_custom_data(
            "orders 1.4.0 waits for approval in int. release=rel-0123abcd execution=9f1e-22 environment=int.",
        );
        assert_eq!(d.release.as_deref(), Some("rel-0123abcd"));
        assert_eq!(d.execution.as_deref(), Some("9f1e-22"));
        assert_eq!(d.environment.as_deref(), Some("int"));
        assert_eq!(d.from, None);
        let promotion = parse_custom_data(
            "orders 1.4.0 passed int and waits for approval to be promoted to stg. \
             release=rel-1 execution=e-1 environment=stg from=int",
        );
        assert_eq!(promotion.environment.as_deref(), Some("stg"));
        assert_eq!(promotion.from.as_deref(), Some("int"));
        let d = parse_custom_data("release=#{variables.ReleaseId} environment=");
        assert_eq!(d, CustomData::default());
    }

    #[test]
    fn incomplete_notifications_say_what_is_missing() {
        for (field, value) in [("token", ""), ("expires", "next week")] {
            let mut v: serde_json::Value = serde_json::from_str(&aws_sample()).unwrap();
            v["approval"][field] = value.into();
            let error = parse_approval_message(&v.to_string()).unwrap_err();
            assert!(error.contains(field), "{field}: {error}");
        }
    }
}
