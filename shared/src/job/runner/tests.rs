//! The runner's promises, with an action whose behaviour each test scripts.

use std::sync::Mutex;

use aws_sdk_codepipeline::Client;
use aws_sdk_codepipeline::operation::put_job_failure_result::PutJobFailureResultOutput;
use aws_sdk_codepipeline::operation::put_job_success_result::PutJobSuccessResultOutput;
use aws_sdk_codepipeline::types::FailureType;
use aws_smithy_mocks::{Rule, RuleMode, mock};
use serde_json::json;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Counts up in its state until 3, then is done.
    CountToThree,
    Temporary,
    Denied,
    Panic,
}

#[derive(Debug, thiserror::Error)]
enum TestError {
    #[error("Throttling: rate exceeded")]
    Throttled,
    #[error("could not assume arn:aws:iam::222222222222:role/deploy: AccessDenied")]
    Denied,
}

impl ActionError for TestError {
    fn error_type(&self) -> &'static str {
        match self {
            TestError::Throttled => "Throttled",
            TestError::Denied => "AssumeRoleFailed",
        }
    }
    fn is_retryable(&self) -> bool {
        matches!(self, TestError::Throttled)
    }
    fn failure_kind(&self) -> JobFailureKind {
        match self {
            TestError::Denied => JobFailureKind::PermissionError,
            TestError::Throttled => JobFailureKind::JobFailed,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Parameters {
    environment: String,
    release_id: String,
}

struct Target {
    environment: String,
    release_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Count {
    n: u32,
}

struct TestAction {
    behaviour: Behaviour,
    /// What each call saw: (invocation, state, started_at_ms).
    seen: Mutex<Vec<(u32, Option<Count>, i64)>>,
}

impl JobAction for TestAction {
    const NAME: &'static str = "test";
    const PARAMETERS: &'static str = "environment and releaseId";
    type Parameters = Parameters;
    type Target = Target;
    type State = Count;
    type Error = TestError;

    fn target(&self, p: Parameters) -> Result<Target, ParameterError> {
        Ok(Target {
            environment: super::super::parameters::environment("environment", &p.environment)?
                .to_owned(),
            release_id: super::super::parameters::id("releaseId", &p.release_id)?.to_owned(),
        })
    }

    fn scope(target: &Target) -> Scope<'_> {
        Scope {
            release_id: &target.release_id,
            execution_id: "exec-1",
            environment: &target.environment,
        }
    }

    fn retry_limit(&self) -> RetryLimit {
        RetryLimit {
            seconds: 600,
            variable: "TEST_RETRY_SECONDS",
        }
    }

    async fn work(&self, call: Call<'_, Target, Count>) -> Result<Verdict<Count>, TestError> {
        self.seen
            .lock()
            .unwrap()
            .push((call.invocation, call.state, call.started_at_ms));
        match self.behaviour {
            Behaviour::CountToThree => {
                let n = call.state.map_or(1, |c| c.n + 1);
                Ok(if n >= 3 {
                    Verdict::Done {
                        summary: format!("counted to {n}"),
                        output_variables: BTreeMap::from([("N".into(), n.to_string())]),
                    }
                } else {
                    Verdict::Continue(Count { n })
                })
            }
            Behaviour::Temporary => Err(TestError::Throttled),
            Behaviour::Denied => Err(TestError::Denied),
            Behaviour::Panic => {
                let empty: Vec<u8> = Vec::new();
                // An index out of bounds, as a bug would.
                let i = call.invocation as usize + 2;
                Ok(Verdict::done(format!("{}", empty[i])))
            }
        }
    }
}

fn mock_codepipeline(rules: &[&Rule]) -> Client {
    crate::aws::mock::mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, rules)
}

fn action(behaviour: Behaviour) -> TestAction {
    TestAction {
        behaviour,
        seen: Mutex::new(Vec::new()),
    }
}

fn event(parameters: &str, token: Option<&serde_json::Value>) -> serde_json::Value {
    let mut event: serde_json::Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/codepipeline-job.json"
    ))
    .expect("AWS sample event");
    let data = &mut event["CodePipeline.job"]["data"];
    data["actionConfiguration"]["configuration"]["UserParameters"] = json!(parameters);
    match token {
        Some(token) => data["continuationToken"] = json!(token.to_string()),
        None => {
            data.as_object_mut().unwrap().remove("continuationToken");
        }
    }
    event
}

fn job(parameters: &str, token: Option<&serde_json::Value>) -> Job {
    Job::from_event(event(parameters, token)).expect("a job")
}

const GOOD: &str = r#"{"environment":"int","releaseId":"rel-1"}"#;
const T0: i64 = 1_800_000_000_000;

#[tokio::test]
async fn state_goes_from_one_invocation_to_the_next_until_done() {
    let action = action(Behaviour::CountToThree);
    let Outcome::Continue { state: first } = run(&action, &job(GOOD, None), T0).await else {
        panic!("continues");
    };
    let Outcome::Continue { state: second } =
        run(&action, &job(GOOD, Some(&first)), T0 + 30_000).await
    else {
        panic!("continues");
    };
    let done = run(&action, &job(GOOD, Some(&second)), T0 + 60_000).await;
    assert_eq!(
        done,
        Outcome::Done {
            summary: "counted to 3".into(),
            output_variables: BTreeMap::from([("N".into(), "3".into())]),
        }
    );
    // Each call knew its number, what the previous one left, and when the job started.
    assert_eq!(
        *action.seen.lock().unwrap(),
        vec![
            (1, None, T0),
            (2, Some(Count { n: 1 }), T0),
            (3, Some(Count { n: 2 }), T0)
        ]
    );
    assert!(first.to_string().len() < 200, "{first}");
}

#[tokio::test]
async fn temporary_failures_are_retried_until_the_limit_then_fail_naming_it() {
    let action = action(Behaviour::Temporary);
    let mut token = None;
    let mut at = T0;
    for _ in 0..5 {
        match run(&action, &job(GOOD, token.as_ref()), at).await {
            Outcome::Continue { state } => token = Some(state),
            other => panic!("retried, not {other:?}"),
        }
        at += 120_000;
    }
    // 600 s after the first failure.
    let Outcome::Failed { kind, message } = run(&action, &job(GOOD, token.as_ref()), at).await
    else {
        panic!("gave up");
    };
    assert_eq!(kind, JobFailureKind::JobFailed);
    assert_eq!(
        message,
        "int: gave up after 10 min (TEST_RETRY_SECONDS) of temporary failures; the last: \
         Throttling: rate exceeded"
    );
}

#[tokio::test]
async fn the_retry_window_counts_from_the_first_failure_in_a_row() {
    // A job that made progress for an hour, then fails temporarily, still gets its window.
    let action = action(Behaviour::Temporary);
    let old = json!({"action": "test", "since": T0, "invocation": 60, "state": {"n": 1}});
    let at = T0 + 3_600_000;
    let Outcome::Continue { state } = run(&action, &job(GOOD, Some(&old)), at).await else {
        panic!("retried");
    };
    // The action's own state is kept for the next try.
    assert_eq!(state["state"], json!({"n": 1}));
    assert_eq!(state["failingSince"], json!(at));
    assert_eq!(state["invocation"], json!(61));
}

#[tokio::test]
async fn a_refusal_fails_at_once_with_its_kind() {
    let action = action(Behaviour::Denied);
    let outcome = run(&action, &job(GOOD, None), T0).await;
    assert_eq!(
        outcome,
        Outcome::Failed {
            kind: JobFailureKind::PermissionError,
            message: "could not assume arn:aws:iam::222222222222:role/deploy: AccessDenied".into()
        }
    );
}

#[tokio::test]
async fn parameters_that_are_not_the_json_or_not_usable_are_configuration_errors() {
    let action = action(Behaviour::CountToThree);
    for (parameters, says) in [
        ("not json", "must be JSON with environment and releaseId"),
        (r#"{"environment":"int"}"#, "missing field `releaseId`"),
        (
            r#"{"environment":"int","releaseId":"r","x":1}"#,
            "unknown field `x`",
        ),
        (
            r##"{"environment":"int","releaseId":"#{variables.ReleaseId}"}"##,
            "the action's UserParameters cannot be used: `releaseId` is \"#{variables.ReleaseId}\": a CodePipeline variable was not resolved",
        ),
    ] {
        let Outcome::Failed { kind, message } = run(&action, &job(parameters, None), T0).await
        else {
            panic!("{parameters} refused");
        };
        assert_eq!(kind, JobFailureKind::ConfigurationError, "{parameters}");
        assert!(message.contains(says), "{parameters}: {message}");
    }
    assert!(
        action.seen.lock().unwrap().is_empty(),
        "no work on bad parameters"
    );
}

#[tokio::test]
async fn a_token_this_action_did_not_write_resumes_nothing() {
    let action = action(Behaviour::CountToThree);
    for token in [
        json!("a continuation token"),
        json!({"action": "deploy", "since": T0, "invocation": 1}),
        json!({"action": "test", "since": T0, "invocation": 1, "state": {"m": 1}}),
        json!({"since": T0, "polls": 3}),
    ] {
        let Outcome::Failed { message, .. } = run(&action, &job(GOOD, Some(&token)), T0).await
        else {
            panic!("{token} refused");
        };
        assert!(
            message.ends_with("cannot resume the action; retry the stage"),
            "{message}"
        );
    }
    assert!(action.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_panicking_action_fails_its_job_naming_the_panic() {
    let action = action(Behaviour::Panic);
    let Outcome::Failed { kind, message } = run(&action, &job(GOOD, None), T0).await else {
        panic!("failed");
    };
    assert_eq!(kind, JobFailureKind::JobFailed);
    assert!(
        message.starts_with(
            "internal error: the test action panicked (index out of bounds: the len is 0 but \
             the index is 3, at shared/src/job/runner/tests.rs:"
        ),
        "{message}"
    );
    assert!(message.ends_with("then retry the stage"), "{message}");
}

#[tokio::test]
async fn handle_answers_a_panicking_actions_job_with_a_failure() {
    let failure = mock!(Client::put_job_failure_result)
        .match_requests(|r| {
            r.job_id() == Some("11111111-abcd-1111-abcd-111111abcdef")
                && r.failure_details().is_some_and(|d| {
                    d.r#type() == &FailureType::JobFailed
                        && d.message()
                            .contains("the test action panicked (index out of bounds")
                })
        })
        .then_output(|| PutJobFailureResultOutput::builder().build());
    let success = mock!(Client::put_job_success_result)
        .then_output(|| PutJobSuccessResultOutput::builder().build());
    let codepipeline = mock_codepipeline(&[&failure, &success]);
    let answered = handle(&action(Behaviour::Panic), &codepipeline, event(GOOD, None))
        .await
        .expect("answered");
    assert_eq!(answered, Answer::Failed);
    assert_eq!(failure.num_calls(), 1);
    assert_eq!(success.num_calls(), 0);
}

#[tokio::test]
async fn handle_refuses_what_is_not_a_job_and_answers_nothing() {
    let success = mock!(Client::put_job_success_result)
        .then_output(|| PutJobSuccessResultOutput::builder().build());
    let codepipeline = mock_codepipeline(&[&success]);
    let err = handle(
        &action(Behaviour::CountToThree),
        &codepipeline,
        json!({"Records": []}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type(), "MalformedEvent");
    assert_eq!(success.num_calls(), 0);
}
