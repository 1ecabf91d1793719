//! Spawning what a test needs: a local stack per test (free ports, its own moto and registries,
//! killed when dropped), real S3 events from AWS's sample, and polling with a deadline.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

pub use shipgate_local::outbox::{SentEmail, sent_emails};
use shipgate_local::stack::{Stack, StackOptions};

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
    let mut crashing = stack.functions.intake().clone();
    crashing.config.lease_seconds = lease_seconds;
    let dead = shipgate_local::sdk::Endpoints {
        default: stack.endpoints.default.clone(),
        per_service: [(
            "AWS_ENDPOINT_URL_CODEPIPELINE".to_owned(),
            format!("http://127.0.0.1:{}", shipgate_local::process::free_port()?),
        )]
        .into(),
        region: stack.endpoints.region.clone(),
    };
    crashing.codepipeline = aws_sdk_codepipeline::Client::from_conf(
        aws_sdk_codepipeline::config::Builder::from(&dead.sdk_config())
            .retry_config(aws_sdk_codepipeline::config::retry::RetryConfig::disabled())
            .build(),
    );
    Ok(crashing)
}
