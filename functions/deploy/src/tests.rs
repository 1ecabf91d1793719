//! The handler's own decisions before any AWS call.

use aws_config::{BehaviorVersion, Region};
use serde_json::json;
use shipgate::aws::codepipeline::JobFailureKind;
use shipgate::changes::ChangeSummary;

use super::*;

fn function() -> DeployFunction {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .build();
    DeployFunction::new(
        DeployConfig {
            table: "shipgate".into(),
            timeout_seconds: 3600,
            task_set_timeout_seconds: 900,
        },
        &sdk,
    )
}

fn job_event(user_parameters: &str, continuation: Option<&str>) -> serde_json::Value {
    let mut event: serde_json::Value = serde_json::from_str(include_str!(
        "../../../shared/tests/fixtures/codepipeline-job.json"
    ))
    .expect("AWS sample event");
    let data = &mut event["CodePipeline.job"]["data"];
    data["actionConfiguration"]["configuration"]["UserParameters"] = json!(user_parameters);
    data["continuationToken"] = continuation.map_or(serde_json::Value::Null, |t| json!(t));
    event
}

const PARAMETERS: &str = r#"{"environment": "int",
    "roleArn": "arn:aws:iam::222222222222:role/shipgate-deploy",
    "releaseId": "rel-0123456789abcdef0123", "executionId": "exec-1"}"#;

fn target() -> Target {
    serde_json::from_str::<ActionParameters>(PARAMETERS)
        .expect("parses")
        .target()
        .expect("valid")
}

fn changes(execution_id: &str, account_id: &str) -> StackChanges {
    StackChanges {
        release_id: "rel-0123456789abcdef0123".into(),
        environment: "int".into(),
        execution_id: execution_id.into(),
        template_path: "templates/service.yaml".into(),
        stack_name: "orders-int-service".into(),
        account_id: account_id.into(),
        change_set_name: "shipgate-rel-0123456789abcdef0123-exec-1".into(),
        change_set_id: None,
        creates_stack: false,
        outcome: ChangeSetOutcome::Ready,
        summary: ChangeSummary::default(),
        created_at: "2026-11-26T10:00:00Z".into(),
    }
}

#[test]
fn only_this_executions_change_sets_in_the_roles_account_are_deployed() {
    assert!(check_changes(&target(), &[changes("exec-1", "222222222222")]).is_ok());

    let err = check_changes(&target(), &[]).unwrap_err();
    assert_eq!(err.error_type(), "NoChangeSets");
    assert!(err.to_string().contains("must create them"), "{err}");

    let err = check_changes(&target(), &[changes("exec-0", "222222222222")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("were created by pipeline execution exec-0, not by this one (exec-1)"),
        "{err}"
    );
    let err = check_changes(&target(), &[changes("exec-1", "333333333333")]).unwrap_err();
    assert_eq!(err.error_type(), "OtherAccount");
}

#[tokio::test]
async fn bad_user_parameters_fail_the_job_as_a_configuration_error_before_any_aws_call() {
    let job = Job::from_event(job_event(r#"{"environment": "int"}"#, None)).expect("a job");
    let Outcome::Failed { kind, message } = function().run(&job).await else {
        panic!("fails");
    };
    assert_eq!(kind, JobFailureKind::ConfigurationError);
    assert!(message.contains("missing field `roleArn`"), "{message}");
}

#[tokio::test]
async fn a_continuation_token_this_action_did_not_write_fails_the_job() {
    let job = Job::from_event(job_event(
        PARAMETERS,
        Some("A continuation token if continuing job"),
    ))
    .expect("a job");
    let Outcome::Failed { message, .. } = function().run(&job).await else {
        panic!("fails");
    };
    assert!(message.contains("cannot resume"), "{message}");
}

#[tokio::test]
async fn an_event_that_is_not_a_job_is_an_error_with_nothing_to_answer() {
    let err = function()
        .handle(json!({"Records": []}))
        .await
        .expect_err("not a job");
    assert_eq!(err.error_type(), "MalformedEvent");
}
