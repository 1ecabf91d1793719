//! SQS: reading the failed-invocation queue without consuming it, and removing what was replayed.
//!
//! SQS has no "peek": receiving a message hides it from other readers for a visibility timeout.
//! So a read hides each message for long enough to page through the queue, then makes every
//! message it does not delete visible again (`ChangeMessageVisibility` to 0), leaving the queue
//! as it found it (and the alarm on its depth undisturbed).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
};

use crate::failed::event::QueueMessage;

/// Receives up to `max` distinct messages, each hidden for `hide_for`. Long polling (1 s) asks
/// every SQS server, so an empty answer means an empty (or all hidden) queue, where short
/// polling may answer empty while messages wait.
pub async fn receive(
    client: &Client,
    queue_url: &str,
    max: usize,
    hide_for: Duration,
) -> Result<Vec<QueueMessage>, SdkError<ReceiveMessageError>> {
    let mut messages: Vec<QueueMessage> = Vec::new();
    while messages.len() < max {
        let batch = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages((max - messages.len()).min(10) as i32)
            .visibility_timeout(hide_for.as_secs().clamp(1, 43_200) as i32)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await?;
        let mut new = 0;
        for message in batch.messages() {
            let message = queue_message(message);
            match messages
                .iter_mut()
                .find(|m| m.message_id == message.message_id)
            {
                // A standard queue may hand a message out twice; only the newest receipt
                // handle is valid.
                Some(seen) => seen.receipt_handle = message.receipt_handle,
                None => {
                    messages.push(message);
                    new += 1;
                }
            }
        }
        if new == 0 {
            break;
        }
    }
    Ok(messages)
}

fn queue_message(message: &Message) -> QueueMessage {
    let system = message.attributes();
    let system_value = |name: MessageSystemAttributeName| system.and_then(|a| a.get(&name));
    QueueMessage {
        message_id: message.message_id().unwrap_or_default().to_owned(),
        receipt_handle: message.receipt_handle().unwrap_or_default().to_owned(),
        body: message.body().unwrap_or_default().to_owned(),
        sent_timestamp_ms: system_value(MessageSystemAttributeName::SentTimestamp)
            .and_then(|v| v.parse().ok()),
        receive_count: system_value(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|v| v.parse().ok()),
        attributes: message
            .message_attributes()
            .into_iter()
            .flatten()
            .filter_map(|(name, value)| Some((name.clone(), value.string_value()?.to_owned())))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Makes messages visible again at once (their receipt handles); `Err` lists those SQS did not
/// change, which reappear when their visibility timeout ends anyway.
pub async fn show_again(
    client: &Client,
    queue_url: &str,
    receipt_handles: &[&str],
) -> Result<(), String> {
    let mut failures = Vec::new();
    for chunk in receipt_handles.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*handle)
                    .visibility_timeout(0)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        match client
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => failures.extend(
                out.failed()
                    .iter()
                    .map(|f| f.message().unwrap_or(f.code()).to_owned()),
            ),
            Err(e) => failures.push(crate::error::report(&e)),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

pub async fn delete(
    client: &Client,
    queue_url: &str,
    receipt_handle: &str,
) -> Result<(), SdkError<DeleteMessageError>> {
    client
        .delete_message()
        .queue_url(queue_url)
        .receipt_handle(receipt_handle)
        .send()
        .await
        .map(|_| ())
}
