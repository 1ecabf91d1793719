//! Async entry points do not lose events silently (issue 14): an event that fails three times
//! lands in the failed-invocation queue as Lambda puts it there, `shipgate failed list` shows it
//! without consuming it, `replay` re-delivers it and removes it once Lambda accepted it, and a
//! replay that cannot be invoked leaves it where it is.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_sqs::types::MessageAttributeValue;
use serde_json::Value;
use shipgate::store::{ReleaseState, Store};
use shipgate_local::functions::{DeadLetterAttributes, DeadLetterQueue};
use shipgate_local::stack::Stack;
use shipgate_operator::OperatorError;
use shipgate_tests::drops;
use shipgate_tests::support::{
    intake_that_cannot_start_pipelines, push_source_image, put, run_operator, s3_put_event,
    start_stack, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);

fn resource(stack: &Stack, logical_id: &str) -> String {
    stack.provisioned.refs[logical_id].clone()
}

fn queue_url(stack: &Stack) -> String {
    resource(stack, "FailedInvocationQueue")
}

/// Runs `shipgate <args>` against the stack (its resources named by flags, as `--stack` would
/// find them in AWS); returns the outcome and what it printed.
/// Asserts that the operator's `text` begins with `{what}  {id}  to <the intake function>`.
fn assert_replays_to_intake(stack: &Stack, text: &str, what: &str, id: &str) {
    let intake = resource(stack, "IntakeFunction");
    assert!(
        text.starts_with(&format!("{what}  {id}  to {intake}")),
        "{text}"
    );
}

async fn shipgate(stack: &Stack, args: &[&str]) -> (Result<(), OperatorError>, String) {
    let queue = queue_url(stack);
    let intake = resource(stack, "IntakeFunction");
    let mut argv = args.to_vec();
    for (flag, value) in [("--queue-url", &queue), ("--intake-function", &intake)] {
        if !args.contains(&flag) {
            argv.extend([flag, value.as_str()]);
        }
    }
    run_operator(stack, &argv).await
}

/// `failed list --json`, parsed.
async fn listed(stack: &Stack) -> Result<Vec<Value>> {
    let (result, text) = shipgate(stack, &["failed", "list", "--json"]).await;
    result?;
    text.lines()
        .map(|line| serde_json::from_str(line).context("a JSON line"))
        .collect()
}

/// The queue's messages as a plain reader sees them right now, left visible.
async fn visible_messages(stack: &Stack) -> Result<Vec<aws_sdk_sqs::types::Message>> {
    let out = aws_sdk_sqs::Client::new(&stack.sdk)
        .receive_message()
        .queue_url(queue_url(stack))
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .wait_time_seconds(1)
        .message_attribute_names("All")
        .send()
        .await?;
    Ok(out.messages().to_vec())
}

fn attribute<'a>(
    message: &'a aws_sdk_sqs::types::Message,
    name: &str,
) -> Option<&'a MessageAttributeValue> {
    message.message_attributes().and_then(|a| a.get(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_that_fails_three_times_waits_in_the_queue_until_replayed() -> Result<()> {
    let stack = start_stack("failed-drop", |o| {
        o.deliver_s3_events = false;
        o.retry_delays = vec![Duration::from_millis(200), Duration::from_millis(300)];
    })
    .await?;
    let image = push_source_image(&stack, "orders/web", "1.0.0", &[2048]).await?;
    let bucket = stack
        .provisioned
        .artifact_bucket
        .clone()
        .context("bucket")?;
    let zip = drops::good_release("orders", "7.0.0", "orders/web", image.digest().as_str());
    let size = zip.len() as u64;
    let key = "incoming/orders-7.0.0.zip";
    let (version, etag) = put(
        &shipgate::aws::s3_client(&stack.sdk, true),
        &bucket,
        key,
        zip,
    )
    .await?;
    let event = s3_put_event(&bucket, key, &version, size, &etag);

    // An earlier delivery crashed between recording the release and starting its pipeline and
    // holds its lease for a few seconds: every delivery meanwhile fails, so Lambda retries.
    const LEASE_SECONDS: i64 = 6;
    let crashing = intake_that_cannot_start_pipelines(&stack, LEASE_SECONDS)?;
    let lease_taken = tokio::time::Instant::now();
    crashing.handle(event.clone(), "crashed").await.unwrap_err();

    // S3's event for the drop, delivered as S3 invokes intake: asynchronously, three attempts.
    shipgate_local::delivery::spawn_with_retries(
        stack.functions.clone(),
        event.clone(),
        vec![Duration::from_millis(200), Duration::from_millis(300)],
    );

    // It lands in the failed-invocation queue the way Lambda sends it there: the event as the
    // body, the error in the message attributes.
    let message = wait_for("the event in the failed-invocation queue", WAIT, || async {
        Ok(visible_messages(&stack).await?.into_iter().next())
    })
    .await?;
    let body: Value = serde_json::from_str(message.body().unwrap_or_default())?;
    assert_eq!(body, event, "the body is the event, unmodified");
    let request_id = attribute(&message, "RequestID").context("RequestID")?;
    assert_eq!(request_id.data_type(), "String");
    assert!(!request_id.string_value().unwrap_or_default().is_empty());
    let code = attribute(&message, "ErrorCode").context("ErrorCode")?;
    assert_eq!(
        (code.data_type(), code.string_value()),
        ("Number", Some("200"))
    );
    let error = attribute(&message, "ErrorMessage").context("ErrorMessage")?;
    assert!(
        error
            .string_value()
            .unwrap_or_default()
            .contains("is being handled by another delivery"),
        "{error:?}"
    );
    assert!(
        lease_taken.elapsed() < Duration::from_secs(LEASE_SECONDS as u64),
        "the three attempts fell within the lease"
    );

    // `list` shows it: id, function, error, what it was; and leaves it in the queue, visible.
    let (result, text) = shipgate(&stack, &["failed", "list"]).await;
    result?;
    let id = message.message_id().context("message id")?;
    assert!(text.starts_with("1 failed event in "), "{text}");
    assert!(text.contains(&format!("{id}  ")), "{text}");
    assert!(text.contains("  intake  error 200: release "), "{text}");
    assert!(
        text.contains(&format!(
            "S3 ObjectCreated:Put s3://{bucket}/{key} (version {version})"
        )),
        "{text}"
    );
    let events = listed(&stack).await?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], id);
    assert_eq!(
        events[0]["function"],
        serde_json::json!({"kind": "function", "role": "intake"})
    );
    assert_eq!(events[0]["request_id"].as_str(), request_id.string_value());
    assert!(events[0]["failed_at"].is_string(), "{}", events[0]);
    assert_eq!(
        visible_messages(&stack).await?.len(),
        1,
        "listing consumed nothing"
    );

    // Once the cause is gone (the lease expired), the replay re-delivers the event to intake,
    // which starts the release, and the message is gone.
    tokio::time::sleep_until(
        lease_taken + Duration::from_millis(LEASE_SECONDS as u64 * 1000 + 500),
    )
    .await;
    let (result, text) = shipgate(&stack, &["failed", "replay", "--id", id]).await;
    result?;
    assert_replays_to_intake(&stack, &text, "replayed", id);
    assert!(
        visible_messages(&stack).await?.is_empty(),
        "deleted once accepted"
    );
    let store = Store::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        stack.provisioned.table.clone().context("table")?,
    );
    let release_id = shipgate_intake::release_id(&shipgate::aws::s3::ObjectVersion {
        bucket: bucket.clone(),
        key: key.into(),
        version_id: Some(version.clone()),
    });
    let started = wait_for("the replayed drop to start its release", WAIT, || async {
        let record = store.get_release(&release_id).await?;
        Ok(record.filter(|r| r.state == ReleaseState::Started))
    })
    .await?;
    assert!(started.execution_id.is_some());
    // Nothing failed this time: the queue stays empty.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(listed(&stack).await?.is_empty());
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_cannot_be_invoked_leaves_the_event_in_the_queue() -> Result<()> {
    let stack = start_stack("failed-replay-refused", |o| o.deliver_s3_events = false).await?;
    let bucket = stack
        .provisioned
        .artifact_bucket
        .clone()
        .context("bucket")?;
    // A dead letter as Lambda writes one for intake.
    let event = s3_put_event(&bucket, "incoming/gone.zip", "v1", 10, "etag");
    DeadLetterQueue::new(aws_sdk_sqs::Client::new(&stack.sdk), queue_url(&stack))
        .send(
            &event,
            &DeadLetterAttributes::for_function_error(
                "req-1",
                &serde_json::json!({"errorType": "StoreError", "errorMessage": "throttled"}),
            ),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    let id = listed(&stack).await?[0]["id"]
        .as_str()
        .context("id")?
        .to_owned();

    // The function is not there (renamed, deleted, a typo): Lambda refuses the invoke, the
    // message stays, and the command says so and fails.
    let (result, text) = shipgate(
        &stack,
        &[
            "failed",
            "replay",
            "--id",
            &id,
            "--intake-function",
            "shipgate-NoSuchFunction",
        ],
    )
    .await;
    assert!(
        matches!(
            result,
            Err(OperatorError::ReplayIncomplete {
                failed: 1,
                selected: 1
            })
        ),
        "{result:?}"
    );
    assert!(text.contains(&format!("not replayed  {id}")), "{text}");
    assert!(text.contains("ResourceNotFoundException"), "{text}");
    assert_eq!(
        visible_messages(&stack).await?.len(),
        1,
        "left in the queue, visible"
    );

    // A dry run invokes and deletes nothing; an id that is not there is an error.
    let (result, text) = shipgate(&stack, &["failed", "replay", "--all", "--dry-run"]).await;
    result?;
    assert_replays_to_intake(&stack, &text, "would replay", &id);
    let (result, _) = shipgate(&stack, &["failed", "replay", "--id", "no-such-message"]).await;
    assert!(
        matches!(result, Err(OperatorError::NotInQueue(ref m)) if m == "no-such-message"),
        "{result:?}"
    );
    assert_eq!(listed(&stack).await?.len(), 1);
    assert_eq!(visible_messages(&stack).await?.len(), 1);

    // The real function accepts it: gone. (Intake then finds no such object and ignores it.)
    let (result, _) = shipgate(&stack, &["failed", "replay", "--all"]).await;
    result?;
    assert!(visible_messages(&stack).await?.is_empty());
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_names_the_queue_when_no_flag_does() -> Result<()> {
    let stack = start_stack("failed-discovery", |o| {
        o.deliver_s3_events = false;
        o.registries = false;
    })
    .await?;
    // A CloudFormation stack (in moto) holding the failed-invocation queue, and no functions.
    let name = format!(
        "shipgate-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let cloudformation = aws_sdk_cloudformation::Client::new(&stack.sdk);
    cloudformation
        .create_stack()
        .stack_name(&name)
        .template_body(r#"{"Resources": {"FailedInvocationQueue": {"Type": "AWS::SQS::Queue"}}}"#)
        .send()
        .await?;
    let resources = cloudformation
        .list_stack_resources()
        .stack_name(&name)
        .send()
        .await?;
    let queue = resources
        .stack_resource_summaries()
        .iter()
        .find(|r| r.logical_resource_id() == Some("FailedInvocationQueue"))
        .and_then(|r| r.physical_resource_id())
        .context("the stack's queue")?
        .to_owned();
    let bucket = stack
        .provisioned
        .artifact_bucket
        .clone()
        .context("bucket")?;
    DeadLetterQueue::new(aws_sdk_sqs::Client::new(&stack.sdk), queue.clone())
        .send(
            &s3_put_event(&bucket, "incoming/late.zip", "v1", 10, "etag"),
            &DeadLetterAttributes::for_function_error(
                "req-1",
                &serde_json::json!({"errorMessage": "throttled"}),
            ),
        )
        .await
        .map_err(anyhow::Error::msg)?;

    let (result, text) = run_operator(&stack, &["--stack", &name, "failed", "list"]).await;
    result?;
    assert!(
        text.starts_with(&format!("1 failed event in {queue}:")),
        "{text}"
    );

    // The stack has no IntakeFunction: the replay says how to name it, and invokes nothing.
    let (result, _) = run_operator(&stack, &["--stack", &name, "failed", "replay", "--all"]).await;
    let error = result.expect_err("no intake function to replay to");
    let message = shipgate_operator::error::report(&error);
    assert!(
        message.contains("--intake-function") && message.contains("SHIPGATE_INTAKE_FUNCTION"),
        "{message}"
    );
    let (result, text) = run_operator(&stack, &["--stack", &name, "failed", "list"]).await;
    result?;
    assert!(
        text.starts_with("1 failed event"),
        "still there, visible: {text}"
    );

    // A stack that does not exist is an error naming it.
    let (result, _) = run_operator(&stack, &["--stack", "no-such-stack", "failed", "list"]).await;
    assert!(
        matches!(result, Err(OperatorError::StackResources { ref stack, .. }) if stack == "no-such-stack"),
        "{result:?}"
    );
    stack.stop().await;
    Ok(())
}
