//! Runs the state machine: one lock around [`State`], effects carried out once it is released.
//!
//! Effects that finish later (an S3 copy, a timer) are spawned tasks that come back through
//! the lock with their result. Timers hold a weak reference, so a dropped stand-in leaves no
//! work behind.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use aws_sdk_s3::error::DisplayErrorContext;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use time::OffsetDateTime;

use super::Invoker;
use super::error::ApiError;
use super::state::{Effect, FetchedSource, SourceFetch, State};

/// Characters of an S3 key kept as they are in `x-amz-copy-source`.
const KEY_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub struct Engine {
    state: Mutex<State>,
    s3: aws_sdk_s3::Client,
    invoker: Arc<dyn Invoker>,
}

impl Engine {
    pub fn new(state: State, s3: aws_sdk_s3::Client, invoker: Arc<dyn Invoker>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(state),
            s3,
            invoker,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written in a way that
        // matters more than refusing every later request would.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads the state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> Result<T, ApiError>) -> Result<T, ApiError> {
        f(&self.lock())
    }

    /// Changes the state, then carries out what the change asked for.
    pub fn apply<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut State, OffsetDateTime, &mut Vec<Effect>) -> T,
    ) -> T {
        let mut effects = Vec::new();
        let out = f(&mut self.lock(), OffsetDateTime::now_utc(), &mut effects);
        self.run(effects);
        out
    }

    fn run(self: &Arc<Self>, effects: Vec<Effect>) {
        let mut queue = VecDeque::from(effects);
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::InvokeJob {
                    function,
                    job_id,
                    event,
                    delay,
                } if !delay.is_zero() => {
                    // A continued job: CodePipeline invokes the action again after a while,
                    // not at once.
                    let engine = Arc::clone(self);
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        engine.run(vec![Effect::InvokeJob {
                            function,
                            job_id,
                            event,
                            delay: Duration::ZERO,
                        }]);
                    });
                }
                Effect::InvokeJob {
                    function,
                    job_id,
                    event,
                    ..
                } => {
                    tracing::debug!(%function, %job_id, "delivering CodePipeline job");
                    if let Err(message) = self.invoker.invoke(&function, event) {
                        let mut more = Vec::new();
                        let message =
                            format!("Could not invoke the function {function}: {message}");
                        self.lock().job_not_delivered(
                            &job_id,
                            message,
                            OffsetDateTime::now_utc(),
                            &mut more,
                        );
                        queue.extend(more);
                    }
                }
                Effect::Notify { function, event } => {
                    tracing::debug!(%function, "delivering approval notification");
                    if let Err(message) = self.invoker.invoke(&function, event) {
                        // SNS retries and gives up on its own; the approval keeps waiting.
                        tracing::warn!(%function, %message, "approval notification not delivered");
                    }
                }
                Effect::FetchSource(fetch) => {
                    let engine = Arc::clone(self);
                    tokio::spawn(async move {
                        let result = fetch_source(&engine.s3, &fetch).await;
                        if let Err(message) = &result {
                            tracing::warn!(%message, "source action failed");
                        }
                        engine.apply(|state, now, effects| {
                            state.source_fetched(&fetch, result, now, effects)
                        });
                    });
                }
                Effect::JobTimer { job_id, after } => {
                    let engine = Arc::downgrade(self);
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        if let Some(engine) = Weak::upgrade(&engine) {
                            engine.apply(|state, now, effects| {
                                state.job_timed_out(&job_id, now, effects)
                            });
                        }
                    });
                }
                Effect::ApprovalTimer { key, token, after } => {
                    let engine = Arc::downgrade(self);
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        if let Some(engine) = Weak::upgrade(&engine) {
                            engine.apply(|state, now, effects| {
                                state.approval_expired(&key, &token, now, effects)
                            });
                        }
                    });
                }
            }
        }
    }
}

/// The S3 source action: the requested (or latest) version of the object, copied into the
/// artifact store.
async fn fetch_source(
    s3: &aws_sdk_s3::Client,
    fetch: &SourceFetch,
) -> Result<FetchedSource, String> {
    let location = format!("s3://{}/{}", fetch.bucket, fetch.object_key);
    let head = s3
        .head_object()
        .bucket(&fetch.bucket)
        .key(&fetch.object_key)
        .set_version_id(fetch.version_id.clone())
        .send()
        .await
        .map_err(|e| match &fetch.version_id {
            Some(v) => format!(
                "Could not read version {v} of {location}: {}",
                DisplayErrorContext(e)
            ),
            None => format!("Could not read {location}: {}", DisplayErrorContext(e)),
        })?;
    let version_id = head
        .version_id()
        .filter(|v| *v != "null")
        .ok_or_else(|| {
            format!("{location} has no version id: the source bucket must be versioned")
        })?
        .to_owned();
    let copy_source = format!(
        "{}/{}?versionId={}",
        fetch.bucket,
        utf8_percent_encode(&fetch.object_key, KEY_SAFE),
        utf8_percent_encode(&version_id, KEY_SAFE)
    );
    s3.copy_object()
        .bucket(&fetch.artifact_bucket)
        .key(&fetch.artifact_key)
        .copy_source(copy_source)
        .send()
        .await
        .map_err(|e| {
            format!(
                "Could not copy {location} (version {version_id}) to the artifact store s3://{}: {}",
                fetch.artifact_bucket,
                DisplayErrorContext(e)
            )
        })?;
    Ok(FetchedSource {
        version_id,
        etag: head
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned(),
        last_modified: head
            .last_modified()
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
        revision_summary: head
            .metadata()
            .and_then(|m| m.get("codepipeline-artifact-revision-summary"))
            .cloned(),
    })
}
