//! Intake against the local stack: a drop lands under incoming/, and either starts exactly one
//! pipeline execution or is moved aside with a report and an email listing every problem.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use shipgate::store::{ReleaseRecord, ReleaseState, Store};
use shipgate_intake::{IntakeError, RecordOutcome};
use shipgate_local::stack::Stack;
use shipgate_tests::drops;
use shipgate_tests::support::{
    intake_that_cannot_start_pipelines, push_source_image, put, s3_put_event, sent_emails,
    start_stack, wait_for,
};

const WAIT: Duration = Duration::from_secs(60);

fn store(stack: &Stack) -> Store {
    Store::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        stack
            .provisioned
            .table
            .clone()
            .expect("the template declares a table"),
    )
}

fn bucket(stack: &Stack) -> String {
    stack
        .provisioned
        .artifact_bucket
        .clone()
        .expect("the template declares the artifact bucket")
}

fn s3(stack: &Stack) -> aws_sdk_s3::Client {
    shipgate::aws::s3_client(&stack.sdk, true)
}

async fn executions(
    stack: &Stack,
) -> Result<Vec<aws_sdk_codepipeline::types::PipelineExecutionSummary>> {
    let pipeline = stack
        .provisioned
        .refs
        .get("PipelineName")
        .cloned()
        .context("pipeline name")?;
    let out = aws_sdk_codepipeline::Client::new(&stack.sdk)
        .list_pipeline_executions()
        .pipeline_name(pipeline)
        .send()
        .await?;
    Ok(out.pipeline_execution_summaries().to_vec())
}

/// Pushes the sample image to the tooling account's (source) registry; returns its digest.
async fn push_sample_image(stack: &Stack, repo: &str) -> Result<String> {
    let image = push_source_image(stack, repo, "1.0.0", &[2048, 4096]).await?;
    Ok(image.digest().to_string())
}

/// Delivers `event` as Lambda's asynchronous invocation does: a failed attempt is retried (twice,
/// after a delay here compressed to ~1 s) with the same request id. What intake promises is one
/// release and one execution under such at-least-once delivery.
async fn deliver(
    intake: &shipgate_intake::Intake,
    event: &Value,
    request_id: &str,
) -> Result<shipgate_intake::IntakeReport, IntakeError> {
    let mut last = None;
    for delay_ms in [0, 300, 1000] {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        match intake.handle(event.clone(), request_id).await {
            Ok(report) => return Ok(report),
            Err(e) => {
                eprintln!("delivery {request_id} failed, Lambda would retry: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.expect("three attempts were made"))
}

async fn release_of(stack: &Stack, release_id: &str) -> Result<Option<ReleaseRecord>> {
    Ok(store(stack).get_release(release_id).await?)
}

async fn wait_settled(
    stack: &Stack,
    bucket: &str,
    key: &str,
    version: &str,
) -> Result<ReleaseRecord> {
    let id = shipgate_intake::release_id(&shipgate::aws::s3::ObjectVersion {
        bucket: bucket.into(),
        key: key.into(),
        version_id: Some(version.into()),
    });
    wait_for(
        &format!("release {id} of {key} to settle"),
        WAIT,
        || async {
            Ok(release_of(stack, &id)
                .await?
                .filter(|r| matches!(r.state, ReleaseState::Started | ReleaseState::Rejected)))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_drop_starts_one_execution_visible_in_status() -> Result<()> {
    let stack = start_stack("good-drop", |_| {}).await?;
    let digest = push_sample_image(&stack, "orders/web").await?;
    let zip = drops::good_release("orders", "1.4.0", "orders/web", &digest);
    let bucket = bucket(&stack);
    let key = "incoming/orders 1.4.0+é.zip";
    let (version, _) = put(&s3(&stack), &bucket, key, zip).await?;

    let release = wait_settled(&stack, &bucket, key, &version).await?;
    assert_eq!(
        release.state,
        ReleaseState::Started,
        "problems: {:?}",
        release.problems
    );
    assert_eq!(release.application.as_deref(), Some("orders"));
    assert_eq!(release.version.as_deref(), Some("1.4.0"));
    assert_eq!(release.source.key, key, "the URL-encoded key was decoded");
    let execution_id = release
        .execution_id
        .clone()
        .context("execution id recorded")?;

    let listed = executions(&stack).await?;
    assert_eq!(listed.len(), 1, "exactly one execution");
    assert_eq!(
        listed[0].pipeline_execution_id(),
        Some(execution_id.as_str())
    );

    // The execution carries the release as variables and the accepted copy's version as source
    // (listed once the source action has run: the execution starts without it).
    let pipeline = stack.provisioned.refs["PipelineName"].clone();
    let cp = aws_sdk_codepipeline::Client::new(&stack.sdk);
    let execution = wait_for("the source revision of the execution", WAIT, || async {
        let out = cp
            .get_pipeline_execution()
            .pipeline_name(&pipeline)
            .pipeline_execution_id(&execution_id)
            .send()
            .await?;
        Ok(out
            .pipeline_execution()
            .filter(|e| !e.artifact_revisions().is_empty())
            .cloned())
    })
    .await?;
    let execution = &execution;
    let vars: Vec<(String, String)> = execution
        .variables()
        .iter()
        .map(|v| {
            (
                v.name().unwrap_or_default().to_owned(),
                v.resolved_value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        vars.contains(&("ReleaseId".into(), release.release_id.clone())),
        "{vars:?}"
    );
    let accepted = release.accepted_object.clone().context("accepted copy")?;
    let revisions: Vec<_> = execution
        .artifact_revisions()
        .iter()
        .filter_map(|r| r.revision_id())
        .collect();
    assert!(
        revisions.contains(&accepted.version_id.as_deref().unwrap_or_default()),
        "{revisions:?}"
    );

    let mut env = shipgate::config::Env::default();
    for (k, v) in &stack.provisioned.function_env {
        env.set(k, v);
    }
    let status = shipgate_local::status::collect(&stack.sdk, &env, 10).await?;
    assert!(
        status.contains(&release.release_id) && status.contains(&execution_id),
        "{status}"
    );
    assert!(status.contains("started"), "{status}");
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_drop_is_rejected_with_its_problems_and_kept() -> Result<()> {
    let stack = start_stack("bad-drops", |_| {}).await?;
    let bucket = bucket(&stack);
    let s3 = s3(&stack);
    let cases = drops::bad_drops();
    assert!(
        cases.len() >= 25,
        "at least 25 distinct bad drops, got {}",
        cases.len()
    );

    let mut uploaded = Vec::new();
    for case in &cases {
        let key = format!("incoming/{}.zip", case.name);
        let (version, _) = put(&s3, &bucket, &key, case.bytes.clone()).await?;
        uploaded.push((case, key, version));
    }
    for (case, key, version) in &uploaded {
        let release = wait_settled(&stack, &bucket, key, version).await?;
        assert_eq!(
            release.state,
            ReleaseState::Rejected,
            "{}: must be rejected",
            case.name
        );
        let codes: BTreeSet<String> = release
            .problems
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("code").and_then(Value::as_str).map(str::to_owned))
            .collect();
        for expected in &case.expected_codes {
            assert!(
                codes.contains(*expected),
                "{}: expected {expected} among {codes:?}",
                case.name
            );
        }
        // The original bytes are kept under rejected/, with the report beside them.
        let rejected_key = release.rejected_key.clone().context("rejected key")?;
        assert!(rejected_key.starts_with("rejected/"), "{rejected_key}");
        let kept = s3
            .get_object()
            .bucket(&bucket)
            .key(&rejected_key)
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes();
        assert_eq!(
            kept.as_ref(),
            case.bytes.as_slice(),
            "{}: original bytes kept",
            case.name
        );
        let report_key = release.report_key.clone().context("report key")?;
        let report: Value = serde_json::from_slice(
            &s3.get_object()
                .bucket(&bucket)
                .key(&report_key)
                .send()
                .await?
                .body
                .collect()
                .await?
                .into_bytes(),
        )?;
        assert_eq!(
            report["release_id"],
            Value::String(release.release_id.clone())
        );
        assert_eq!(
            report["problems"].as_array().map(Vec::len),
            release
                .problems
                .as_ref()
                .and_then(Value::as_array)
                .map(Vec::len)
        );
        assert!(
            report["limits"]["max_zip_bytes"].is_number(),
            "the limits in force are in the report"
        );
        // Nothing is left under incoming/.
        let head = s3.head_object().bucket(&bucket).key(key).send().await;
        assert!(
            head.is_err(),
            "{}: the drop no longer sits under incoming/",
            case.name
        );
    }
    assert!(
        executions(&stack).await?.is_empty(),
        "no bad drop starts an execution"
    );

    // Every rejection was emailed, with every problem in it.
    let emails = sent_emails(&stack.moto.endpoint()).await?;
    assert_eq!(emails.len(), cases.len(), "one email per rejected drop");
    assert!(emails.iter().all(|e| e.subject.contains("rejected")));
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_three_times_in_a_row_is_one_release_and_one_execution() -> Result<()> {
    let stack = start_stack("dup-serial", |o| o.deliver_s3_events = false).await?;
    let digest = push_sample_image(&stack, "orders/web").await?;
    let bucket = bucket(&stack);
    let zip = drops::good_release("orders", "2.0.0", "orders/web", &digest);
    let size = zip.len() as u64;
    let key = "incoming/orders-2.0.0.zip";
    let (version, etag) = put(&s3(&stack), &bucket, key, zip).await?;
    let event = s3_put_event(&bucket, key, &version, size, &etag);

    let intake = stack.functions.intake();
    let first = deliver(intake, &event, "req-1").await?;
    let second = deliver(intake, &event, "req-2").await?;
    let third = deliver(intake, &event, "req-3").await?;
    assert!(
        matches!(first.records[0], RecordOutcome::Started { .. }),
        "{first:?}"
    );
    for later in [second, third] {
        assert!(
            matches!(
                later.records[0],
                RecordOutcome::Duplicate {
                    state: ReleaseState::Started,
                    ..
                }
            ),
            "{later:?}"
        );
    }
    assert_eq!(executions(&stack).await?.len(), 1);
    assert_eq!(store(&stack).list_releases(50).await?.len(), 1);
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_ten_times_at_once_is_one_release_and_one_execution() -> Result<()> {
    let stack = start_stack("dup-concurrent", |o| o.deliver_s3_events = false).await?;
    let digest = push_sample_image(&stack, "orders/web").await?;
    let bucket = bucket(&stack);
    let zip = drops::good_release("orders", "2.1.0", "orders/web", &digest);
    let size = zip.len() as u64;
    let key = "incoming/orders-2.1.0.zip";
    let (version, etag) = put(&s3(&stack), &bucket, key, zip).await?;
    let event = s3_put_event(&bucket, key, &version, size, &etag);

    let intake = stack.functions.intake().clone();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (intake, event) = (intake.clone(), event.clone());
        tasks.push(tokio::spawn(async move {
            // A first attempt that finds the claim held fails so that Lambda retries it; the
            // retry finds the release started.
            deliver(&intake, &event, &format!("req-{i}")).await
        }));
    }
    let mut started = 0;
    let mut duplicates = 0;
    for t in tasks {
        match &t.await??.records[0] {
            RecordOutcome::Started { .. } => started += 1,
            RecordOutcome::Duplicate {
                state: ReleaseState::Started,
                ..
            } => duplicates += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(
        (started, duplicates),
        (1, 9),
        "one delivery starts the execution"
    );
    assert_eq!(executions(&stack).await?.len(), 1);
    assert_eq!(store(&stack).list_releases(50).await?.len(), 1);
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_upload_of_the_same_key_is_a_new_release() -> Result<()> {
    let stack = start_stack("reupload", |o| o.deliver_s3_events = false).await?;
    let digest = push_sample_image(&stack, "orders/web").await?;
    let bucket = bucket(&stack);
    let key = "incoming/orders.zip";
    let intake = stack.functions.intake();
    let mut ids = BTreeSet::new();
    for version in ["3.0.0", "3.0.1"] {
        let zip = drops::good_release("orders", version, "orders/web", &digest);
        let size = zip.len() as u64;
        let (v, etag) = put(&s3(&stack), &bucket, key, zip).await?;
        let report = deliver(intake, &s3_put_event(&bucket, key, &v, size, &etag), "req").await?;
        match &report.records[0] {
            RecordOutcome::Started { release_id, .. } => ids.insert(release_id.clone()),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(ids.len(), 2);
    assert_eq!(executions(&stack).await?.len(), 2);
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_are_not_drops_change_nothing() -> Result<()> {
    let stack = start_stack("not-drops", |o| o.deliver_s3_events = false).await?;
    let bucket = bucket(&stack);
    let intake = stack.functions.intake();

    // Another bucket, another prefix, a deleted version: ignored, with the reason.
    for (b, key, version) in [
        ("someone-elses-bucket", "incoming/r.zip", "v1"),
        (bucket.as_str(), "outgoing/r.zip", "v1"),
        (bucket.as_str(), "incoming/gone.zip", "no-such-version"),
    ] {
        let report = intake
            .handle(s3_put_event(b, key, version, 10, "etag"), "req")
            .await?;
        assert!(
            matches!(report.records[0], RecordOutcome::Ignored { .. }),
            "{key}: {report:?}"
        );
    }
    // A malformed event is an error naming the problem, not a panic.
    let err = intake
        .handle(serde_json::json!({"Records": "nope"}), "req")
        .await
        .unwrap_err();
    assert!(matches!(err, IntakeError::MalformedEvent(_)), "{err}");
    assert!(store(&stack).list_releases(10).await?.is_empty());
    assert!(executions(&stack).await?.is_empty());
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_missing_from_the_source_registry_rejects_the_drop() -> Result<()> {
    let stack = start_stack("missing-image", |o| o.deliver_s3_events = false).await?;
    let bucket = bucket(&stack);
    let absent = format!("sha256:{}", "ab".repeat(32));
    let zip = drops::good_release("orders", "4.0.0", "orders/web", &absent);
    let size = zip.len() as u64;
    let key = "incoming/orders-4.0.0.zip";
    let (version, etag) = put(&s3(&stack), &bucket, key, zip).await?;
    let event = s3_put_event(&bucket, key, &version, size, &etag);
    let report = deliver(stack.functions.intake(), &event, "req").await?;
    match &report.records[0] {
        RecordOutcome::Rejected { codes, .. } => {
            assert_eq!(codes, &vec!["image_not_found".to_owned()])
        }
        other => panic!("{other:?}"),
    }
    let emails = sent_emails(&stack.moto.endpoint()).await?;
    assert_eq!(emails.len(), 1);
    assert!(
        emails[0].body.contains("image_not_found"),
        "{}",
        emails[0].body
    );
    assert!(executions(&stack).await?.is_empty());
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_record_and_the_start_is_recovered_once() -> Result<()> {
    let stack = start_stack("crash-recovery", |o| o.deliver_s3_events = false).await?;
    let digest = push_sample_image(&stack, "orders/web").await?;
    let bucket = bucket(&stack);
    let zip = drops::good_release("orders", "5.0.0", "orders/web", &digest);
    let size = zip.len() as u64;
    let key = "incoming/orders-5.0.0.zip";
    let (version, etag) = put(&s3(&stack), &bucket, key, zip).await?;
    let event = s3_put_event(&bucket, key, &version, size, &etag);

    // An invocation whose pipeline start never gets through: it records the release as
    // accepted, then fails, holding a three-second lease.
    let crashing = intake_that_cannot_start_pipelines(&stack, 3)?;
    let err = crashing.handle(event.clone(), "crashed").await.unwrap_err();
    assert!(matches!(err, IntakeError::Aws(_)), "{err}");
    let id = shipgate_intake::release_id(&shipgate::aws::s3::ObjectVersion {
        bucket: bucket.clone(),
        key: key.into(),
        version_id: Some(version.clone()),
    });
    let record = release_of(&stack, &id)
        .await?
        .context("the release was recorded")?;
    assert_eq!(record.state, ReleaseState::Accepted);
    assert!(record.execution_id.is_none());

    // While the lease holds, another delivery does not touch it: Lambda will retry it.
    let intake = stack.functions.intake();
    let early = intake.handle(event.clone(), "early").await.unwrap_err();
    assert!(
        matches!(early, IntakeError::InProgressElsewhere { .. }),
        "{early}"
    );

    // The start had in fact reached CodePipeline just before the crash.
    let accepted = record.accepted_object.clone().context("accepted copy")?;
    let pipeline = stack.provisioned.refs["PipelineName"].clone();
    let started = aws_sdk_codepipeline::Client::new(&stack.sdk)
        .start_pipeline_execution()
        .name(&pipeline)
        .client_request_token(&id)
        .source_revisions(
            aws_sdk_codepipeline::types::SourceRevisionOverride::builder()
                .action_name("Release")
                .revision_type(aws_sdk_codepipeline::types::SourceRevisionType::S3ObjectVersionId)
                .revision_value(accepted.version_id.clone().unwrap_or_default())
                .build()?,
        )
        .send()
        .await?;
    let execution_id = started
        .pipeline_execution_id()
        .unwrap_or_default()
        .to_owned();

    // Once the lease has expired, the next delivery takes over and converges on that one
    // execution: the start is idempotent by the release id.
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let report = deliver(intake, &event, "redelivered").await?;
    match &report.records[0] {
        RecordOutcome::Started {
            execution_id: got, ..
        } => assert_eq!(got, &execution_id),
        other => panic!("{other:?}"),
    }
    assert_eq!(executions(&stack).await?.len(), 1, "not doubled");
    let record = release_of(&stack, &id).await?.context("release")?;
    assert_eq!(record.state, ReleaseState::Started);
    assert_eq!(record.execution_id.as_deref(), Some(execution_id.as_str()));
    stack.stop().await;
    Ok(())
}
