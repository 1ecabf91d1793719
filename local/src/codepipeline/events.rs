//! The events the stand-in delivers, in the shapes AWS delivers them.
//!
//! * A Lambda invoke action's `CodePipeline.job` event (AWS's sample is
//!   `aws_lambda_events`' `example-codepipeline_job-event.json`).
//! * A manual approval's notification: CodePipeline's documented approval JSON ("JSON data
//!   format for manual approval notifications") as the `Message` of an SNS → Lambda event
//!   (`example-sns-event.json`).

use serde_json::{Value as Json, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::wire::JobData;

/// `{"CodePipeline.job": {"id", "accountId", "data": {…}}}`: the job as Lambda receives it.
pub fn job_event(job_id: &str, account_id: &str, data: &JobData) -> Json {
    let mut payload = json!({
        "actionConfiguration": { "configuration": data.action_configuration.configuration },
        "inputArtifacts": data.input_artifacts,
        "outputArtifacts": data.output_artifacts,
        "artifactCredentials": data.artifact_credentials,
    });
    // AWS sends the member only when the job continues an earlier one.
    if let (Some(token), Some(object)) = (&data.continuation_token, payload.as_object_mut()) {
        object.insert("continuationToken".to_owned(), Json::String(token.clone()));
    }
    json!({ "CodePipeline.job": { "id": job_id, "accountId": account_id, "data": payload } })
}

/// What a manual approval action publishes to its topic.
#[derive(Debug, Clone)]
pub struct ApprovalNotice {
    pub region: String,
    pub pipeline_name: String,
    pub stage_name: String,
    pub action_name: String,
    pub token: String,
    pub expires: OffsetDateTime,
    pub external_entity_link: Option<String>,
    pub custom_data: Option<String>,
}

impl ApprovalNotice {
    pub fn subject(&self) -> String {
        // SNS subjects are limited to 100 characters.
        let subject = format!(
            "APPROVAL NEEDED: AWS CodePipeline {} for action {}",
            self.pipeline_name, self.action_name
        );
        subject.chars().take(100).collect()
    }

    /// The documented approval JSON, as a string (SNS messages are strings).
    pub fn message(&self) -> String {
        let console = format!(
            "https://console.aws.amazon.com/codepipeline/home?region={}#/view/{}",
            self.region, self.pipeline_name
        );
        let mut approval = json!({
            "pipelineName": self.pipeline_name,
            "stageName": self.stage_name,
            "actionName": self.action_name,
            "token": self.token,
            "expires": approval_expiry(self.expires),
            "approvalReviewLink": format!(
                "{console}/{}/{}/approve/{}",
                self.stage_name, self.action_name, self.token
            ),
        });
        if let Some(object) = approval.as_object_mut() {
            if let Some(link) = &self.external_entity_link {
                object.insert("externalEntityLink".to_owned(), Json::String(link.clone()));
            }
            if let Some(data) = &self.custom_data {
                object.insert("customData".to_owned(), Json::String(data.clone()));
            }
        }
        json!({ "region": self.region, "consoleLink": console, "approval": approval }).to_string()
    }
}

/// `2016-07-07T20:22Z`: the documented `expires` format (minutes, UTC).
fn approval_expiry(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!("[year]-[month]-[day]T[hour]:[minute]Z"))
        .unwrap_or_default()
}

/// One SNS notification as Lambda receives it from a subscription to `topic_arn`.
pub fn sns_event(
    topic_arn: &str,
    region: &str,
    subject: &str,
    message: &str,
    now: OffsetDateTime,
) -> Json {
    let subscription_arn = format!("{topic_arn}:{}", uuid::Uuid::new_v4());
    let timestamp = now
        .to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default();
    json!({
        "Records": [{
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "EventSubscriptionArn": subscription_arn,
            "Sns": {
                "Type": "Notification",
                "MessageId": uuid::Uuid::new_v4().to_string(),
                "TopicArn": topic_arn,
                "Subject": subject,
                "Message": message,
                "Timestamp": timestamp,
                "SignatureVersion": "1",
                // Nothing verifies it locally; AWS's is a base64 RSA signature.
                "Signature": "bG9jYWwtc3RhbmQtaW4tbm90LXNpZ25lZA==",
                "SigningCertUrl": format!(
                    "https://sns.{region}.amazonaws.com/SimpleNotificationService-local.pem"
                ),
                "UnsubscribeUrl": format!(
                    "https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={subscription_arn}"
                ),
                "MessageAttributes": {},
            }
        }]
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use aws_lambda_events::event::codepipeline_job::CodePipelineJobEvent;
    use aws_lambda_events::event::sns::SnsEvent;

    use super::*;
    use crate::codepipeline::wire::*;

    fn data(continuation_token: Option<&str>) -> JobData {
        let location = |key: &str| ArtifactLocation {
            location_type: "S3".into(),
            s3_location: S3ArtifactLocation {
                bucket_name: "artifacts".into(),
                object_key: key.into(),
            },
        };
        JobData {
            action_type_id: ActionTypeId {
                category: "Invoke".into(),
                owner: "AWS".into(),
                provider: "Lambda".into(),
                version: "1".into(),
            },
            action_configuration: ActionConfiguration {
                configuration: BTreeMap::from([
                    ("FunctionName".into(), "fn".into()),
                    ("UserParameters".into(), "{}".into()),
                ]),
            },
            pipeline_context: PipelineContext {
                pipeline_name: "p".into(),
                stage: StageContext { name: "s".into() },
                action: ActionContext {
                    name: "a".into(),
                    action_execution_id: "x".into(),
                },
                pipeline_arn: "arn".into(),
                pipeline_execution_id: "e".into(),
            },
            input_artifacts: vec![Artifact {
                name: "Release".into(),
                revision: Some("v1".into()),
                location: location("p/Release/abc"),
            }],
            output_artifacts: vec![Artifact {
                name: "Out".into(),
                revision: None,
                location: location("p/Out/def"),
            }],
            artifact_credentials: AwsSessionCredentials {
                access_key_id: "a".into(),
                secret_access_key: "s".into(),
                session_token: "t".into(),
            },
            continuation_token: continuation_token.map(str::to_owned),
        }
    }

    #[test]
    fn the_job_event_parses_as_the_lambda_event_type() {
        let event = job_event("job-1", "111111111111", &data(None));
        assert!(
            event
                .pointer("/CodePipeline.job/data/continuationToken")
                .is_none()
        );
        let parsed: CodePipelineJobEvent = serde_json::from_value(event).expect("parses");
        let job = parsed.code_pipeline_job;
        assert_eq!(job.id.as_deref(), Some("job-1"));
        assert_eq!(
            job.data
                .action_configuration
                .configuration
                .function_name
                .as_deref(),
            Some("fn")
        );
        assert_eq!(job.data.input_artifacts[0].revision.as_deref(), Some("v1"));
        assert_eq!(
            job.data.input_artifacts[0]
                .location
                .s3_location
                .object_key
                .as_deref(),
            Some("p/Release/abc")
        );
        assert_eq!(job.data.continuation_token, None);

        let again = job_event("job-2", "111111111111", &data(Some("step-2")));
        let parsed: CodePipelineJobEvent = serde_json::from_value(again).expect("parses");
        assert_eq!(
            parsed.code_pipeline_job.data.continuation_token.as_deref(),
            Some("step-2")
        );
    }

    #[test]
    fn the_approval_notification_is_the_documented_json_inside_an_sns_event() {
        let notice = ApprovalNotice {
            region: "eu-west-1".into(),
            pipeline_name: "release".into(),
            stage_name: "Int".into(),
            action_name: "Approve".into(),
            token: "tok".into(),
            expires: time::macros::datetime!(2026-11-29 10:15:42 UTC),
            external_entity_link: None,
            custom_data: Some("Review".into()),
        };
        let event = sns_event(
            "arn:aws:sns:eu-west-1:111111111111:approvals",
            "eu-west-1",
            &notice.subject(),
            &notice.message(),
            time::macros::datetime!(2026-11-22 10:15:42.5 UTC),
        );
        let parsed: SnsEvent = serde_json::from_value(event).expect("parses");
        let sns = &parsed.records[0].sns;
        assert_eq!(
            sns.subject.as_deref(),
            Some("APPROVAL NEEDED: AWS CodePipeline release for action Approve")
        );
        let message: Json = serde_json::from_str(&sns.message).expect("json");
        assert_eq!(message["approval"]["token"], "tok");
        assert_eq!(message["approval"]["expires"], "2026-11-29T10:15Z");
        assert_eq!(message["approval"]["customData"], "Review");
        assert!(message["approval"].get("externalEntityLink").is_none());
        assert_eq!(
            message["approval"]["approvalReviewLink"],
            "https://console.aws.amazon.com/codepipeline/home?region=eu-west-1#/view/release/Int/Approve/approve/tok"
        );
    }
}
