//! Delivery of S3 drops to intake, as S3 → Lambda does in AWS.
//!
//! moto queues bucket notifications to SQS, but its event records lack what S3 sends to Lambda:
//! no `versionId`, no `sequencer`, no `userIdentity`, `requestParameters` or `responseElements`,
//! and a first `s3:TestEvent` message. The delivery completes each record from the bucket itself
//! (the object version whose ETag matches the event, the newest such) and a monotonic sequencer,
//! then invokes the handler asynchronously with Lambda's retry behaviour for async invocations
//! (two retries, with compressed delays). Product code sees only the real event shape.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::warn;

use crate::functions::{DeadLetter, DeadLetterQueue, spawn_async_invocation};

/// Something that handles a complete S3 event, like a Lambda function subscribed to a bucket.
pub trait S3Subscriber: Send + Sync + 'static {
    /// `request_id` stays the same across retries, as Lambda keeps it for an async invocation.
    /// An error is Lambda's (`errorType`, `errorMessage`).
    fn deliver(
        &self,
        event: Value,
        request_id: String,
    ) -> futures::future::BoxFuture<'static, Result<Value, Value>>;

    /// The subscribed function's dead-letter queue, where an event goes after the last retry.
    fn dead_letter_queue(&self) -> Option<DeadLetterQueue> {
        None
    }
}

/// Polls `queue_url` until `stop` flips, delivering every completed event to `subscriber`.
pub async fn pump_s3_events(
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    queue_url: String,
    subscriber: Arc<dyn S3Subscriber>,
    retry_delays: Vec<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    let sequencer = Arc::new(AtomicU64::new(0x0055_AED6_0000_0000));
    loop {
        if *stop.borrow() {
            return;
        }
        let received = tokio::select! {
            r = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).wait_time_seconds(1).send() => r,
            _ = stop.changed() => return,
        };
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                warn!(error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "receiving S3 notifications failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for message in messages {
            if let Some(body) = message.body() {
                match serde_json::from_str::<Value>(body) {
                    Ok(event)
                        if event.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") => {}
                    Ok(event) => {
                        let complete = complete_event(&s3, event, &sequencer).await;
                        spawn_with_retries(subscriber.clone(), complete, retry_delays.clone());
                    }
                    Err(e) => warn!(error = %e, "S3 notification is not JSON; dropped"),
                }
            }
            if let Some(handle) = message.receipt_handle() {
                let _ = sqs
                    .delete_message()
                    .queue_url(&queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await;
            }
        }
    }
}

/// Invokes like Lambda's asynchronous invocation: on error, retried after each delay.
pub fn spawn_with_retries(subscriber: Arc<dyn S3Subscriber>, event: Value, delays: Vec<Duration>) {
    // Lambda keeps an async invocation's request id across its retries.
    let request_id = uuid::Uuid::new_v4().to_string();
    let dead_letter = subscriber.dead_letter_queue().map(|queue| DeadLetter {
        queue,
        request_id: request_id.clone(),
        event: event.clone(),
    });
    spawn_async_invocation(
        format!("S3 event {request_id}"),
        delays,
        dead_letter,
        move || subscriber.deliver(event.clone(), request_id.clone()),
    );
}

/// Adds what S3 sends to Lambda and moto leaves out.
pub async fn complete_event(
    s3: &aws_sdk_s3::Client,
    mut event: Value,
    sequencer: &AtomicU64,
) -> Value {
    let Some(records) = event.get_mut("Records").and_then(Value::as_array_mut) else {
        return event;
    };
    for record in records {
        let bucket = record
            .pointer("/s3/bucket/name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let raw_key = record
            .pointer("/s3/object/key")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let etag = record
            .pointer("/s3/object/eTag")
            .and_then(Value::as_str)
            .map(|e| e.trim_matches('"').to_owned());
        if record.pointer("/s3/object/versionId").is_none()
            && let (Some(bucket), Some(raw_key)) = (&bucket, &raw_key)
            && let Some(version) = find_version(s3, bucket, raw_key, etag.as_deref()).await
            && let Some(object) = record
                .pointer_mut("/s3/object")
                .and_then(Value::as_object_mut)
        {
            object.insert("versionId".into(), Value::String(version));
        }
        if let Some(object) = record
            .pointer_mut("/s3/object")
            .and_then(Value::as_object_mut)
        {
            object.entry("sequencer").or_insert_with(|| {
                Value::String(format!("{:016X}", sequencer.fetch_add(1, Ordering::SeqCst)))
            });
        }
        if let Some(r) = record.as_object_mut() {
            r.entry("userIdentity")
                .or_insert_with(|| json!({"principalId": "AWS:AIDALOCALINTEGRATOR"}));
            r.entry("requestParameters")
                .or_insert_with(|| json!({"sourceIPAddress": "127.0.0.1"}));
            r.entry("responseElements").or_insert_with(|| {
                json!({"x-amz-request-id": uuid::Uuid::new_v4().simple().to_string()[..16].to_uppercase(),
                       "x-amz-id-2": "shipgate-local"})
            });
        }
    }
    event
}

/// The newest version of the key whose ETag is the event's.
async fn find_version(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    raw_key: &str,
    etag: Option<&str>,
) -> Option<String> {
    let key = percent_encoding::percent_decode_str(&raw_key.replace('+', " "))
        .decode_utf8()
        .ok()?
        .into_owned();
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(&key)
        .send()
        .await
        .ok()?;
    let mut versions: Vec<_> = out
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key.as_str()))
        .filter(|v| etag.is_none_or(|e| v.e_tag().map(|t| t.trim_matches('"')) == Some(e)))
        .collect();
    versions.sort_by_key(|v| {
        std::cmp::Reverse(v.last_modified().map(|t| (t.secs(), t.subsec_nanos())))
    });
    versions
        .first()
        .and_then(|v| v.version_id())
        .map(str::to_owned)
}
