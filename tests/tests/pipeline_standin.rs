//! The CodePipeline stand-in, driven end to end by the real `aws_sdk_codepipeline::Client`.
//!
//! Each test reads the toy pipeline from `tests/fixtures/toy-pipeline.yaml`, makes its own
//! versioned source and artifact buckets in the binary's one moto, starts its own stand-in on a
//! free port (each test configures it differently), and plays the
//! functions with a test [`Invoker`]: the check function parses the `CodePipeline.job` event with
//! `aws_lambda_events` and answers through the SDK, the mailer receives the approval
//! notification as an SNS event and the test decides the approval with the token it carries.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use aws_lambda_events::event::codepipeline_job::CodePipelineJobEvent;
use aws_lambda_events::event::sns::SnsEvent;
use aws_sdk_codepipeline::error::SdkError;
use aws_sdk_codepipeline::types::{
    ApprovalResult, ApprovalStatus, PipelineExecution, PipelineExecutionStatus, PipelineVariable,
    SourceRevisionOverride, SourceRevisionType, StageState,
};
use futures::future::BoxFuture;
use serde_json::Value;
use shipgate::aws::codepipeline::latest_action_execution;
use shipgate::job::Outcome;
use shipgate_local::codepipeline::{
    CodePipelineStandIn, Invoker, Resolver, StandInConfig, pipelines_from_template, sns_subscribers,
};
use shipgate_local::moto::Moto;
use shipgate_tests::shared_stack::Shared;
use shipgate_tests::story::Pipeline;
use shipgate_tests::support::wait_for;

const TEMPLATE: &str = include_str!("../fixtures/toy-pipeline.yaml");
const REGION: &str = "eu-west-1";
const ACCOUNT: &str = "111111111111";
const WAIT: Duration = Duration::from_secs(60);

/// One moto for every test here (each test's buckets are its own).
static MOTO: Shared<Moto> = Shared::new("moto", || {
    Box::pin(async {
        let dir = std::env::temp_dir().join(format!(
            "shipgate-standin-{}",
            uuid::Uuid::new_v4().simple()
        ));
        Moto::start(&dir).await
    })
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_goes_through_source_check_approval_and_promotion() -> Result<()> {
    let h = Harness::launch("happy", Options::default()).await?;
    let v1 = h.put_release("release one").await?;
    let _v2 = h.put_release("release two").await?;

    // The override picks the first version although a newer one is the latest.
    let id = h.start_release("r-1", Some(&v1)).await?;
    let approval = h.wait_approval(1).await?;

    // The check ran twice: the first answer asked for a second invocation.
    let checks = h.jobs_of("CheckFunction");
    ensure!(checks.len() == 2, "{checks:#?}");
    let (first, second) = (&checks[0].code_pipeline_job, &checks[1].code_pipeline_job);
    assert_eq!(first.data.continuation_token, None);
    // The second job carries the state the first left (shipgate's job contract writes it).
    assert_eq!(
        second.data.continuation_token.as_deref(),
        Some(r#"{"pass":2}"#)
    );
    assert_ne!(first.id, second.id, "a continuation is a new job");
    let params: Value = serde_json::from_str(
        first
            .data
            .action_configuration
            .configuration
            .user_parameters
            .as_deref()
            .unwrap_or_default(),
    )?;
    assert_eq!(
        params,
        serde_json::json!({"release": "r-1", "sourceVersion": v1})
    );
    let input = &first.data.input_artifacts[0];
    assert_eq!(input.name.as_deref(), Some("Release"));
    assert_eq!(input.revision.as_deref(), Some(v1.as_str()));
    assert_eq!(
        input.location.s3_location.bucket_name.as_deref(),
        Some(h.artifact_bucket.as_str())
    );

    // The notification is CodePipeline's approval JSON, with the variables resolved.
    assert_eq!(approval["approval"]["pipelineName"], h.pipeline.as_str());
    assert_eq!(approval["approval"]["stageName"], "Test");
    assert_eq!(approval["approval"]["actionName"], "Approve");
    assert_eq!(
        approval["approval"]["customData"],
        "Release r-1 checked: ok:release one"
    );
    assert_eq!(
        approval["approval"]["externalEntityLink"],
        "https://approvals.example/eu-west-1/r-1"
    );
    let token = approval["approval"]["token"]
        .as_str()
        .context("token")?
        .to_owned();

    // GetPipelineState shows the pending approval with its token, as AWS does.
    let test = h.stage("Test").await?;
    let approve = latest_action_execution(&test, "Approve").context("approval started")?;
    assert_eq!(approve.status().map(|s| s.as_str()), Some("InProgress"));
    assert_eq!(approve.token(), Some(token.as_str()));
    let source = h.stage("Source").await?;
    let drop = source.action_states().first().context("source action")?;
    assert_eq!(
        drop.current_revision().map(|r| r.revision_id()),
        Some(v1.as_str())
    );

    // An old job cannot be answered twice.
    h.assert_answered(first).await;

    h.decide(&token, ApprovalStatus::Approved, "looks good")
        .await
        .map_err(anyhow::Error::msg)?;
    let execution = h
        .wait_status(&id, PipelineExecutionStatus::Succeeded)
        .await?;

    let promotions = h.jobs_of("PromoteFunction");
    ensure!(promotions.len() == 1, "{promotions:#?}");
    let verdict = &promotions[0]
        .code_pipeline_job
        .data
        .action_configuration
        .configuration;
    assert_eq!(verdict.user_parameters.as_deref(), Some("ok:release one"));

    let revisions = execution.artifact_revisions();
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0].name(), Some("Release"));
    assert_eq!(revisions[0].revision_id(), Some(v1.as_str()));
    let variables: Vec<_> = execution
        .variables()
        .iter()
        .map(|v| (v.name(), v.resolved_value()))
        .collect();
    assert_eq!(variables, [(Some("ReleaseId"), Some("r-1"))]);

    let listed = h.list().await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].status(),
        Some(&PipelineExecutionStatus::Succeeded)
    );
    assert_eq!(
        listed[0].source_revisions()[0].revision_id(),
        Some(v1.as_str())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_fails_the_execution_and_nothing_after_it_runs() -> Result<()> {
    let message = "release.json: unknown manifest schema version 9";
    let h = Harness::launch(
        "failing",
        Options {
            check: Check::Fail(message),
            ..Options::default()
        },
    )
    .await?;
    let version = h.put_release("bad release").await?;
    let id = h.start_release("r-bad", Some(&version)).await?;

    let execution = h.wait_status(&id, PipelineExecutionStatus::Failed).await?;
    assert_eq!(execution.status_summary(), Some(message));

    let test = h.stage("Test").await?;
    assert_eq!(
        test.latest_execution().map(|e| e.status().as_str()),
        Some("Failed")
    );
    let check = latest_action_execution(&test, "Check").context("check ran")?;
    assert_eq!(check.status().map(|s| s.as_str()), Some("Failed"));
    assert_eq!(
        check.error_details().and_then(|e| e.message()),
        Some(message)
    );
    assert!(
        latest_action_execution(&test, "Approve").is_none(),
        "the approval never started"
    );
    assert!(
        h.stage("Release").await?.latest_execution().is_none(),
        "the last stage never ran"
    );
    assert!(h.approval_requests().is_empty());
    assert!(h.jobs_of("PromoteFunction").is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_approval_fails_the_execution_with_the_reviewers_summary() -> Result<()> {
    let h = Harness::launch("rejected", Options::default()).await?;
    let version = h.put_release("risky release").await?;
    let id = h.start_release("r-2", Some(&version)).await?;
    let approval = h.wait_approval(1).await?;
    let token = approval["approval"]["token"]
        .as_str()
        .context("token")?
        .to_owned();

    let wrong = h
        .decide(
            &uuid::Uuid::new_v4().to_string(),
            ApprovalStatus::Approved,
            "sneaky",
        )
        .await
        .expect_err("wrong token");
    assert!(wrong.contains("InvalidApprovalTokenException"), "{wrong}");

    let summary = "The change set replaces the orders database";
    h.decide(&token, ApprovalStatus::Rejected, summary)
        .await
        .map_err(anyhow::Error::msg)?;
    let execution = h.wait_status(&id, PipelineExecutionStatus::Failed).await?;
    assert_eq!(execution.status_summary(), Some(summary));
    let test = h.stage("Test").await?;
    let approve = latest_action_execution(&test, "Approve").context("approval")?;
    assert_eq!(approve.status().map(|s| s.as_str()), Some("Failed"));
    assert_eq!(approve.summary(), Some(summary));
    assert_eq!(approve.token(), None, "a decided approval shows no token");

    let again = h
        .decide(&token, ApprovalStatus::Approved, "changed my mind")
        .await
        .expect_err("decided");
    assert!(
        again.contains("ApprovalAlreadyCompletedException"),
        "{again}"
    );
    assert!(h.jobs_of("PromoteFunction").is_empty());
    Ok(())
}

/// AWS: "executions are only superseded in between stages", and "a stage with an approval
/// action is locked until the approval action is approved or rejected or has timed out". So a
/// newer release does not supersede an older one waiting at the approval (the product must
/// handle that itself); it waits in front of the stage, where a still newer one supersedes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_superseded_mode_a_newer_release_supersedes_the_one_waiting_in_front_of_the_gate()
-> Result<()> {
    let h = Harness::launch("superseded", Options::default()).await?;
    let first = h.release("r-1", "one").await?;
    let approval = h.wait_approval(1).await?;

    let second = h.release("r-2", "two").await?;
    h.wait_inbound("Test", &[second.as_str()]).await?;
    let third = h.release("r-3", "three").await?;
    h.wait_inbound("Test", &[third.as_str()]).await?;

    let superseded = h
        .wait_status(&second, PipelineExecutionStatus::Superseded)
        .await?;
    assert_eq!(
        superseded.status_summary(),
        Some(format!("Superseded by pipeline execution {third}").as_str())
    );
    // The older execution still holds the gate.
    assert_eq!(
        h.execution(&first).await?.status(),
        Some(&PipelineExecutionStatus::InProgress)
    );
    let test = h.stage("Test").await?;
    assert_eq!(
        test.latest_execution().map(|e| e.pipeline_execution_id()),
        Some(first.as_str())
    );
    assert!(
        latest_action_execution(&test, "Approve")
            .and_then(|a| a.token())
            .is_some()
    );

    h.approve(&approval, &first).await?;

    // The newest release enters the stage next and goes through.
    let approval = h.wait_approval(2).await?;
    assert_eq!(
        approval["approval"]["customData"],
        "Release r-3 checked: ok:three"
    );
    h.approve(&approval, &third).await?;

    let statuses: Vec<_> = h
        .list()
        .await?
        .iter()
        .map(|e| e.status().cloned())
        .collect();
    assert_eq!(
        statuses,
        [
            Some(PipelineExecutionStatus::Succeeded),
            Some(PipelineExecutionStatus::Superseded),
            Some(PipelineExecutionStatus::Succeeded)
        ],
        "newest first"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_queued_mode_waiting_releases_go_through_one_after_the_other_in_order() -> Result<()> {
    let h = Harness::launch(
        "queued",
        Options {
            mode: "QUEUED",
            ..Options::default()
        },
    )
    .await?;
    let first = h.release("r-1", "one").await?;
    h.wait_approval(1).await?;
    let second = h.release("r-2", "two").await?;
    h.wait_inbound("Test", &[second.as_str()]).await?;
    let third = h.release("r-3", "three").await?;
    h.wait_inbound("Test", &[second.as_str(), third.as_str()])
        .await?;
    // Waiting executions are InProgress, in no stage.
    assert_eq!(
        h.execution(&third).await?.status(),
        Some(&PipelineExecutionStatus::InProgress)
    );

    for (n, (id, release)) in [(&first, "r-1"), (&second, "r-2"), (&third, "r-3")]
        .into_iter()
        .enumerate()
    {
        let approval = h.wait_approval(n + 1).await?;
        assert_eq!(
            approval["approval"]["customData"],
            format!(
                "Release {release} checked: ok:{}",
                ["one", "two", "three"][n]
            )
        );
        h.approve(&approval, id).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_never_answers_fails_when_its_job_times_out() -> Result<()> {
    let options = Options {
        check: Check::Silent,
        job_timeout: Duration::from_millis(500),
        ..Options::default()
    };
    let h = Harness::launch("timeout", options).await?;
    let id = h.release("r-1", "slow").await?;
    let execution = h.wait_status(&id, PipelineExecutionStatus::Failed).await?;
    let summary = execution.status_summary().unwrap_or_default();
    assert!(summary.contains("timed out"), "{summary}");
    // Too late: the job is over.
    h.assert_answered(&h.jobs_of("CheckFunction")[0].code_pipeline_job)
        .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_and_abandoning_an_execution_at_the_gate_decides_nothing_more() -> Result<()> {
    let h = Harness::launch("stopped", Options::default()).await?;
    h.put_release("one").await?;
    h.put_release("two").await?;
    let id = h.start_release("r-1", None).await?;
    let approval = h.wait_approval(1).await?;
    // Without a version override the source is the latest version of the object.
    let latest = h.latest_version().await?;
    assert_eq!(
        h.execution(&id).await?.artifact_revisions()[0].revision_id(),
        Some(latest.as_str())
    );

    h.codepipeline
        .stop_pipeline_execution()
        .pipeline_name(&h.pipeline)
        .pipeline_execution_id(&id)
        .abandon(true)
        .reason("release withdrawn")
        .send()
        .await?;
    h.wait_status(&id, PipelineExecutionStatus::Stopped).await?;
    let test = h.stage("Test").await?;
    let approve = latest_action_execution(&test, "Approve").context("approval")?;
    assert_eq!(approve.status().map(|s| s.as_str()), Some("Abandoned"));
    let listed = h.list().await?;
    assert_eq!(
        listed[0].stop_trigger().and_then(|t| t.reason()),
        Some("release withdrawn")
    );

    let token = approval["approval"]["token"].as_str().context("token")?;
    let late = h
        .decide(token, ApprovalStatus::Approved, "ok")
        .await
        .expect_err("abandoned");
    assert!(late.contains("ApprovalAlreadyCompletedException"), "{late}");
    let again = h
        .codepipeline
        .stop_pipeline_execution()
        .pipeline_name(&h.pipeline)
        .pipeline_execution_id(&id)
        .send()
        .await;
    assert_service_error(again, |e| e.is_pipeline_execution_not_stoppable_exception());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_codepipeline_errors() -> Result<()> {
    let h = Harness::launch("errors", Options::default()).await?;

    let cp = &h.codepipeline;
    let unknown = cp.get_pipeline_state().name("no-such-pipeline").send();
    assert_service_error(unknown.await, |e| e.is_pipeline_not_found_exception());
    let nope = PipelineVariable::builder()
        .name("Nope")
        .value("x")
        .build()?;
    let undeclared = cp
        .start_pipeline_execution()
        .name(&h.pipeline)
        .variables(nope);
    assert_service_error(undeclared.send().await, |e| e.is_validation_exception());
    // A well-formed id no job has: JobNotFound. An id that is not a job id at all breaks the
    // model's pattern: refused as AWS refuses it, before the stand-in looks.
    let unknown = uuid::Uuid::new_v4().to_string();
    let no_job = cp.get_job_details().job_id(&unknown).send();
    assert_service_error(no_job.await, |e| e.is_job_not_found_exception());
    let malformed = cp.get_job_details().job_id("missing").send();
    assert_service_error(malformed.await, |e| e.is_validation_exception());

    let http = reqwest::Client::new();
    let post = |target: &'static str, body: &'static str| {
        http.post(&h.endpoint)
            .header("x-amz-target", target)
            .header("content-type", "application/x-amz-json-1.1")
            .body(body)
            .send()
    };
    for (target, body, expected) in [
        (
            "CodePipeline_20150709.GetPipelineState",
            "{not json",
            "SerializationException",
        ),
        (
            "CodePipeline_20150709.GetPipelineState",
            r#"{"name": 7}"#,
            "ValidationException",
        ),
        (
            "CodePipeline_20150709.PutJobFailureResult",
            r#"{"jobId": "x"}"#,
            "ValidationException",
        ),
        (
            "CodePipeline_20150709.DeletePipeline",
            "{}",
            "UnknownOperationException",
        ),
        ("", "{}", "UnknownOperationException"),
    ] {
        let response = post(target, body).await?;
        assert_eq!(response.status().as_u16(), 400, "{target} {body}");
        let error: Value = response.json().await?;
        assert_eq!(error["__type"], expected, "{target} {body}: {error}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{error}"
        );
    }

    assert_eq!(h.view.stage_names().await?, ["Source", "Test", "Release"]);
    let listed = h.codepipeline.list_pipelines().send().await?;
    assert_eq!(listed.pipelines().len(), 1);
    Ok(())
}

// ---- the harness ----

/// Asserts that a request failed with the service error `is` recognises.
fn assert_service_error<T: Debug, E: Debug, R: Debug>(
    result: Result<T, SdkError<E, R>>,
    is: impl FnOnce(&E) -> bool,
) {
    let error = result.expect_err("the request fails");
    assert!(error.as_service_error().is_some_and(is), "{error:?}");
}

/// How the check function answers its jobs.
#[derive(Clone, Copy)]
enum Check {
    /// Asks for a second invocation, then reads the input artifact and publishes a verdict.
    TwoPasses,
    Fail(&'static str),
    /// Returns without reporting (a crashed or forgetful handler).
    Silent,
}

struct Options {
    mode: &'static str,
    check: Check,
    job_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: "SUPERSEDED",
            check: Check::TwoPasses,
            job_timeout: Duration::from_secs(30),
        }
    }
}

type Handler = Arc<dyn Fn(Value) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// The local "Lambda": records every event and runs the function's handler on its own task.
struct TestFunctions {
    handlers: HashMap<String, Handler>,
    events: Mutex<Vec<(String, Value)>>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl Invoker for TestFunctions {
    fn invoke(&self, function_logical_id: &str, event: Value) -> Result<(), String> {
        let handler = self
            .handlers
            .get(function_logical_id)
            .cloned()
            .ok_or_else(|| format!("no local function {function_logical_id}"))?;
        lock(&self.events).push((function_logical_id.to_owned(), event.clone()));
        let failures = Arc::clone(&self.failures);
        let name = function_logical_id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = handler(event).await {
                lock(&failures).push(format!("{name}: {e:#}"));
            }
        });
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn job_of(
    event: Value,
) -> Result<(
    String,
    aws_lambda_events::event::codepipeline_job::CodePipelineJob,
)> {
    let event: CodePipelineJobEvent =
        serde_json::from_value(event).context("a CodePipeline.job event")?;
    let job = event.code_pipeline_job;
    Ok((job.id.clone().context("job id")?, job))
}

/// The check action, written on shipgate's job contract (`shipgate::job`): it asks for a second
/// invocation through a continuation, then publishes a verdict, or fails.
fn check_function(
    check: Check,
    codepipeline: aws_sdk_codepipeline::Client,
    s3: aws_sdk_s3::Client,
) -> Handler {
    Arc::new(move |event| {
        let (codepipeline, s3) = (codepipeline.clone(), s3.clone());
        Box::pin(async move {
            let job = shipgate::job::Job::from_event(event)?;
            let outcome = match check {
                Check::Silent => return Ok(()),
                Check::Fail(message) => Outcome::failed(message),
                Check::TwoPasses => match job.continuation::<Value>()? {
                    None => Outcome::continue_with(&serde_json::json!({"pass": 2})),
                    Some(_) => {
                        let artifact = job
                            .input_artifacts
                            .values()
                            .next()
                            .context("input artifact")?;
                        let object = s3
                            .get_object()
                            .bucket(&artifact.bucket)
                            .key(&artifact.key)
                            .send()
                            .await?;
                        let body = object.body.collect().await?.into_bytes();
                        Outcome::Done {
                            summary: "checked".into(),
                            output_variables: [(
                                "Verdict".to_owned(),
                                format!("ok:{}", String::from_utf8_lossy(&body)),
                            )]
                            .into(),
                        }
                    }
                },
            };
            shipgate::job::answer(
                &codepipeline,
                &job,
                Ok::<_, std::convert::Infallible>(outcome),
            )
            .await?;
            Ok(())
        })
    })
}

fn promote_function(codepipeline: aws_sdk_codepipeline::Client) -> Handler {
    Arc::new(move |event| {
        let codepipeline = codepipeline.clone();
        Box::pin(async move {
            let (id, _) = job_of(event)?;
            codepipeline
                .put_job_success_result()
                .job_id(id)
                .send()
                .await?;
            Ok(())
        })
    })
}

/// Checks that the notification is an SNS event carrying the approval JSON.
fn approval_mailer() -> Handler {
    Arc::new(|event| {
        Box::pin(async move {
            approval_message(event)?;
            Ok(())
        })
    })
}

fn approval_message(event: Value) -> Result<Value> {
    let event: SnsEvent = serde_json::from_value(event).context("an SNS event")?;
    let record = event.records.first().context("one record")?;
    ensure!(record.event_source == "aws:sns", "{record:?}");
    Ok(serde_json::from_str(&record.sns.message)?)
}

struct Harness {
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    endpoint: String,
    s3: aws_sdk_s3::Client,
    codepipeline: aws_sdk_codepipeline::Client,
    /// The toy pipeline, as CodePipeline's API shows it.
    view: Pipeline,
    functions: Arc<TestFunctions>,
    pipeline: String,
    source_bucket: String,
    artifact_bucket: String,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Harness {
    async fn launch(name: &str, options: Options) -> Result<Self> {
        if std::env::var_os("TEST_LOG").is_some() {
            shipgate::telemetry::init();
        }
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let moto = MOTO.get().await?;
        let credentials = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test");
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version_latest()
                .region(aws_sdk_s3::config::Region::new(REGION))
                .credentials_provider(credentials.clone())
                .endpoint_url(moto.endpoint())
                .force_path_style(true)
                .build(),
        );
        let source_bucket = format!("toy-source-{}", &unique[..12]);
        let artifact_bucket = format!("toy-artifacts-{}", &unique[..12]);
        for bucket in [&source_bucket, &artifact_bucket] {
            create_versioned_bucket(&s3, bucket).await?;
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let codepipeline = aws_sdk_codepipeline::Client::from_conf(
            aws_sdk_codepipeline::Config::builder()
                .behavior_version_latest()
                .region(aws_sdk_codepipeline::config::Region::new(REGION))
                .credentials_provider(credentials)
                .endpoint_url(&endpoint)
                .build(),
        );

        let resolver = Resolver::new(Default::default(), REGION, ACCOUNT)
            .with_stack_name(format!("standin-{name}"))
            .with_ref("SourceBucket", &source_bucket)
            .with_ref("ArtifactBucket", &artifact_bucket)
            .with_ref("ExecutionMode", options.mode);
        let definitions = pipelines_from_template(TEMPLATE, &resolver)?;
        let pipeline = definitions
            .first()
            .context("the toy pipeline")?
            .name
            .clone();
        let handlers: HashMap<String, Handler> = HashMap::from([
            (
                "CheckFunction".to_owned(),
                check_function(options.check, codepipeline.clone(), s3.clone()),
            ),
            ("ApprovalMailer".to_owned(), approval_mailer()),
            (
                "PromoteFunction".to_owned(),
                promote_function(codepipeline.clone()),
            ),
        ]);
        let functions = Arc::new(TestFunctions {
            handlers,
            events: Mutex::new(Vec::new()),
            failures: Arc::new(Mutex::new(Vec::new())),
        });
        let config = StandInConfig {
            job_timeout: options.job_timeout,
            approval_timeout: Duration::from_secs(3600),
            region: REGION.to_owned(),
            account_id: ACCOUNT.to_owned(),
            continuation_delay: Duration::from_millis(50),
            conformance_url: Some(format!("{}/moto-api/shipgate/conformance", moto.endpoint())),
        };
        let stand_in = CodePipelineStandIn::new(
            definitions,
            sns_subscribers(TEMPLATE)?,
            s3.clone(),
            Arc::clone(&functions) as Arc<dyn Invoker>,
            config,
        );
        let server = tokio::spawn(stand_in.serve(listener));
        Ok(Self {
            server,
            endpoint,
            s3,
            view: Pipeline::new(codepipeline.clone(), &pipeline),
            codepipeline,
            functions,
            pipeline,
            source_bucket,
            artifact_bucket,
        })
    }

    /// Answering `job` again fails: it is over (answered, or timed out).
    async fn assert_answered(
        &self,
        job: &aws_lambda_events::event::codepipeline_job::CodePipelineJob,
    ) {
        let late = self
            .codepipeline
            .put_job_success_result()
            .job_id(job.id.clone().unwrap_or_default())
            .send()
            .await;
        assert_service_error(late, |e| e.is_invalid_job_state_exception());
    }

    /// Uploads a new version of the release object; returns its version id.
    async fn put_release(&self, content: &str) -> Result<String> {
        let out = self
            .s3
            .put_object()
            .bucket(&self.source_bucket)
            .key("drops/release.zip")
            .body(content.as_bytes().to_vec().into())
            .send()
            .await?;
        out.version_id()
            .map(str::to_owned)
            .context("a versioned bucket gives a version id")
    }

    async fn latest_version(&self) -> Result<String> {
        let head = self
            .s3
            .head_object()
            .bucket(&self.source_bucket)
            .key("drops/release.zip")
            .send()
            .await?;
        head.version_id().map(str::to_owned).context("version id")
    }

    /// Uploads `content` as a new version of the release object and starts release
    /// `release_id` on that version; returns the execution id.
    async fn release(&self, release_id: &str, content: &str) -> Result<String> {
        let version = self.put_release(content).await?;
        self.start_release(release_id, Some(&version)).await
    }

    async fn start_release(&self, release_id: &str, version: Option<&str>) -> Result<String> {
        let mut request = self
            .codepipeline
            .start_pipeline_execution()
            .name(&self.pipeline)
            .variables(
                PipelineVariable::builder()
                    .name("ReleaseId")
                    .value(release_id)
                    .build()?,
            );
        if let Some(version) = version {
            request = request.source_revisions(
                SourceRevisionOverride::builder()
                    .action_name("Drop")
                    .revision_type(SourceRevisionType::S3ObjectVersionId)
                    .revision_value(version)
                    .build()?,
            );
        }
        let out = request.send().await?;
        out.pipeline_execution_id()
            .map(str::to_owned)
            .context("execution id")
    }

    /// Approves `approval` (the notification) with "ok" and waits for execution `id` to succeed.
    async fn approve(&self, approval: &Value, id: &str) -> Result<()> {
        let token = approval["approval"]["token"].as_str().context("token")?;
        self.decide(token, ApprovalStatus::Approved, "ok")
            .await
            .map_err(anyhow::Error::msg)?;
        self.wait_status(id, PipelineExecutionStatus::Succeeded)
            .await?;
        Ok(())
    }

    /// Decides an approval; the error is the SDK error's debug text (it names the exception).
    async fn decide(
        &self,
        token: &str,
        status: ApprovalStatus,
        summary: &str,
    ) -> Result<(), String> {
        self.codepipeline
            .put_approval_result()
            .pipeline_name(&self.pipeline)
            .stage_name("Test")
            .action_name("Approve")
            .token(token)
            .result(
                ApprovalResult::builder()
                    .status(status)
                    .summary(summary)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    }

    async fn execution(&self, id: &str) -> Result<PipelineExecution> {
        self.view.execution(id).await
    }

    async fn stage(&self, name: &str) -> Result<StageState> {
        self.view
            .stage(name)
            .await?
            .with_context(|| format!("stage {name}"))
    }

    async fn list(&self) -> Result<Vec<aws_sdk_codepipeline::types::PipelineExecutionSummary>> {
        self.view.executions().await
    }

    /// Fails as soon as a handler failed, so a broken handler is reported, not timed out.
    fn check_handlers(&self) -> Result<()> {
        let failures = lock(&self.functions.failures);
        if !failures.is_empty() {
            bail!("function handlers failed: {failures:#?}");
        }
        Ok(())
    }

    async fn wait_status(
        &self,
        id: &str,
        status: PipelineExecutionStatus,
    ) -> Result<PipelineExecution> {
        wait_for(
            &format!("execution {id} to be {status:?}"),
            WAIT,
            || async {
                self.check_handlers()?;
                let execution = self.execution(id).await?;
                match execution.status() {
                    Some(s) if *s == status => Ok(Some(execution)),
                    Some(
                        PipelineExecutionStatus::InProgress | PipelineExecutionStatus::Stopping,
                    ) => Ok(None),
                    other => bail!(
                        "execution {id} ended {other:?} ({:?})",
                        execution.status_summary()
                    ),
                }
            },
        )
        .await
    }

    /// Waits until exactly these executions wait in front of `stage`, in this order.
    async fn wait_inbound(&self, stage: &str, expected: &[&str]) -> Result<()> {
        wait_for(
            &format!("{expected:?} waiting in front of {stage}"),
            WAIT,
            || async {
                self.check_handlers()?;
                let state = self.stage(stage).await?;
                let inbound: Vec<&str> = state
                    .inbound_executions()
                    .iter()
                    .map(|e| e.pipeline_execution_id())
                    .collect();
                Ok((inbound == expected).then_some(()))
            },
        )
        .await
    }

    fn events_of(&self, function: &str) -> Vec<Value> {
        lock(&self.functions.events)
            .iter()
            .filter(|(f, _)| f == function)
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn jobs_of(&self, function: &str) -> Vec<CodePipelineJobEvent> {
        self.events_of(function)
            .into_iter()
            .filter_map(|e| serde_json::from_value(e).ok())
            .collect()
    }

    fn approval_requests(&self) -> Vec<Value> {
        self.events_of("ApprovalMailer")
            .into_iter()
            .filter_map(|e| approval_message(e).ok())
            .collect()
    }

    /// Waits for the `n`th approval notification (1-based) and returns its message.
    async fn wait_approval(&self, n: usize) -> Result<Value> {
        wait_for(&format!("approval notification #{n}"), WAIT, || async {
            self.check_handlers()?;
            if let Some(failed) = self
                .list()
                .await?
                .iter()
                .find(|e| e.status() == Some(&PipelineExecutionStatus::Failed))
            {
                bail!(
                    "an execution failed while waiting for an approval: {:?}",
                    failed.status_summary()
                );
            }
            Ok(self.approval_requests().get(n - 1).cloned())
        })
        .await
    }
}

async fn create_versioned_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
    use aws_sdk_s3::types::{
        BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
        VersioningConfiguration,
    };
    s3.create_bucket()
        .bucket(bucket)
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(REGION))
                .build(),
        )
        .send()
        .await?;
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await?;
    Ok(())
}
