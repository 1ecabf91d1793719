//! Spawning what a test needs: a local stack (free ports, its own moto and registries, killed
//! with the thread that started them), the parts of it a test talks to, real S3 events from
//! AWS's sample, and polling with a deadline.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use shipgate::store::Store;
pub use shipgate_local::outbox::{SentEmail, sent_emails};
use shipgate_local::stack::{Stack, StackOptions};

/// How long something that happens asynchronously may take on a loaded 2-core machine: a
/// deadline for [`wait_for`], never a time to sleep.
pub const WAIT: Duration = Duration::from_secs(60);

/// Starts a stack for one test. Logs go to stderr when `TEST_LOG` is set.
pub async fn start_stack(name: &str, configure: impl FnOnce(&mut StackOptions)) -> Result<Stack> {
    if std::env::var_os("TEST_LOG").is_some() {
        shipgate::telemetry::init();
    }
    let mut options = StackOptions::for_test(name);
    configure(&mut options);
    Stack::start(options).await
}

/// Polls `check` every 50 ms until it yields `Some`, or fails after `timeout` saying `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The template's table, as the functions are configured with it.
pub fn table(stack: &Stack) -> Result<String> {
    stack
        .provisioned
        .table
        .clone()
        .context("the template declares no table")
}

/// The release store on the template's table, with a client of the caller's own.
pub fn store(stack: &Stack) -> Result<Store> {
    Ok(Store::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        table(stack)?,
    ))
}

/// The bucket integrators drop releases into (the pipeline's artifact bucket).
pub fn artifact_bucket(stack: &Stack) -> Result<String> {
    stack
        .provisioned
        .artifact_bucket
        .clone()
        .context("the template declares no artifact bucket")
}

/// The pipeline the template declares.
pub fn pipeline_name(stack: &Stack) -> Result<String> {
    stack
        .provisioned
        .refs
        .get("PipelineName")
        .cloned()
        .context("the template declares no pipeline")
}

/// The SDK configuration of `account`'s deploy role (an environment account), from the
/// stack's: what shipgate's functions act with there.
pub async fn in_account(stack: &Stack, account: &str) -> aws_config::SdkConfig {
    shipgate::aws::assume_role(
        &stack.sdk,
        &shipgate_local::accounts::deploy_role_arn(account),
        "shipgate-tests",
    )
    .await
}

/// A Lambda alias's routing: its version, and the additional version with its weight.
pub async fn alias_routing(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    alias: &str,
) -> Result<(String, Option<(String, f64)>)> {
    let out = lambda
        .get_alias()
        .function_name(function)
        .name(alias)
        .send()
        .await?;
    let extra = out
        .routing_config()
        .and_then(|r| r.additional_version_weights())
        .and_then(|w| w.iter().next().map(|(v, w)| (v.clone(), *w)));
    Ok((out.function_version().unwrap_or_default().to_owned(), extra))
}

/// A CloudFormation stack's status (`CREATE_COMPLETE`, `REVIEW_IN_PROGRESS`, …).
pub async fn stack_status(cf: &aws_sdk_cloudformation::Client, stack: &str) -> Result<String> {
    let out = cf.describe_stacks().stack_name(stack).send().await?;
    Ok(out
        .stacks()
        .first()
        .and_then(|s| s.stack_status())
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default())
}

/// The wall clock in epoch milliseconds: where a test starts the time it then drives itself
/// (`run_at`, `handle_at`), or what a continuation token of the moment says.
pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// A name of `prefix` no other test uses (S3 keys, repositories, stacks, executions).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// The S3 `ObjectCreated:Put` event S3 sends to Lambda for one object version, built from AWS's
/// own sample event (the key URL-encoded as S3 encodes it).
pub fn s3_put_event(bucket: &str, key: &str, version_id: &str, size: u64, etag: &str) -> Value {
    let mut event: Value = serde_json::from_str(include_str!("../fixtures/s3-put.json"))
        .expect("the AWS sample event is JSON");
    let record = &mut event["Records"][0];
    record["awsRegion"] = json!(shipgate_local::accounts::REGION);
    record["eventTime"] = json!("2026-11-26T10:00:00.000Z");
    record["s3"]["bucket"]["name"] = json!(bucket);
    record["s3"]["bucket"]["arn"] = json!(format!("arn:aws:s3:::{bucket}"));
    record["s3"]["object"] = json!({
        "key": encode_key(key),
        "size": size,
        "eTag": etag.trim_matches('"'),
        "versionId": version_id,
        "sequencer": "0055AED6DCD90281E5",
    });
    event
}

/// URL-encodes a key the way S3 does in event notifications (form style: space is `+`).
pub fn encode_key(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b' ');
    percent_encoding::utf8_percent_encode(key, SET)
        .to_string()
        .replace(' ', "+")
}

/// Uploads `bytes` to `bucket`/`key`; returns (version id, etag).
pub async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
) -> Result<(String, String)> {
    let out = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(bytes.into())
        .send()
        .await
        .with_context(|| format!("uploading s3://{bucket}/{key}"))?;
    Ok((
        out.version_id().unwrap_or_default().to_owned(),
        out.e_tag().unwrap_or_default().to_owned(),
    ))
}

/// Pushes a small test image to the tooling account's (source) registry, found the way intake
/// finds it (`GetAuthorizationToken`, then the stack's endpoint overrides).
pub async fn push_source_image(
    stack: &Stack,
    repo: &str,
    tag: &str,
    layers: &[u64],
) -> Result<crate::images::PushedImage> {
    let registry = shipgate::registry::ecr_registry(
        &aws_sdk_ecr::Client::new(&stack.sdk),
        reqwest::Client::new(),
        &stack.registry_overrides(),
    )
    .await?;
    crate::images::ImageBuilder::new()
        .layers(layers)
        .push(&registry, repo, tag)
        .await
}

/// Intake as an invocation that crashes between recording a release and starting its pipeline:
/// CodePipeline is unreachable (no retries), so it records the release as accepted, holds its
/// lease for `lease_seconds`, and fails. Deliveries meanwhile fail too, as Lambda would retry.
pub fn intake_that_cannot_start_pipelines(
    stack: &Stack,
    lease_seconds: i64,
) -> Result<shipgate_intake::Intake> {
    let mut intake = stack.functions.intake().clone();
    intake.config.lease_seconds = lease_seconds;
    without_codepipeline(intake, &stack.endpoints)
}

/// `intake`, its CodePipeline client pointed at a port nobody listens on, with no retries.
pub fn without_codepipeline(
    mut intake: shipgate_intake::Intake,
    endpoints: &shipgate_local::sdk::Endpoints,
) -> Result<shipgate_intake::Intake> {
    let dead = shipgate_local::sdk::Endpoints {
        per_service: [(
            "AWS_ENDPOINT_URL_CODEPIPELINE".to_owned(),
            format!("http://127.0.0.1:{}", shipgate_local::process::free_port()?),
        )]
        .into(),
        ..endpoints.clone()
    };
    intake.codepipeline = aws_sdk_codepipeline::Client::from_conf(
        aws_sdk_codepipeline::config::Builder::from(&dead.sdk_config())
            .retry_config(aws_sdk_codepipeline::config::retry::RetryConfig::disabled())
            .build(),
    );
    Ok(intake)
}

/// Runs the operator's command line, `shipgate <args>`, against the stack with its SDK
/// configuration; returns the outcome and what it printed (also echoed to stderr).
pub async fn run_operator(
    stack: &Stack,
    args: &[&str],
) -> (Result<(), shipgate_operator::OperatorError>, String) {
    let mut argv = vec!["shipgate"];
    argv.extend_from_slice(args);
    let cli = match <shipgate_operator::Cli as clap::Parser>::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => panic!("{argv:?}: {e}"),
    };
    let mut out = Vec::new();
    let result =
        shipgate_operator::run(cli, &shipgate_operator::Clients::new(&stack.sdk), &mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    eprintln!("$ {}\n{text}", argv.join(" "));
    (result, text)
}
