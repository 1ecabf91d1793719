//! The one runner of every job action: see the [module](super) documentation.

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Once;

use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, error, info, info_span, warn};

use super::{Answer, Job, JobEventError, JobFailureKind, Outcome, ParameterError, answer};
use crate::config::{ConfigError, Env};
use crate::error::AwsError;

/// What an action's error tells the runner: a stable name (logs, metrics, the runtime's report),
/// whether the next invocation may succeed, and how CodePipeline should classify the failure.
pub trait ActionError: std::error::Error + Send + Sync + 'static {
    fn error_type(&self) -> &'static str;

    /// Throttling, timeouts, 5xx, a lost race: the runner tries again on the next invocation,
    /// within the action's [`RetryLimit`]. Anything else fails the job at once.
    fn is_retryable(&self) -> bool;

    fn failure_kind(&self) -> JobFailureKind {
        JobFailureKind::JobFailed
    }
}

/// What a job is about, for the log span and messages.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub release_id: &'a str,
    pub execution_id: &'a str,
    pub environment: &'a str,
}

/// How long temporary failures in a row may go on before the job fails, and the setting that
/// says so (named in the failure message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryLimit {
    pub seconds: u64,
    pub variable: &'static str,
}

impl RetryLimit {
    /// The number of seconds `variable` says, `default` when unset.
    pub fn from_env(env: &Env, variable: &'static str, default: u64) -> Result<Self, ConfigError> {
        Ok(Self {
            seconds: env.parsed_or(variable, default)?,
            variable,
        })
    }

    /// As [`RetryLimit::from_env`], and 1 or more: for an action that also waits this long,
    /// where 0 would fail every job at once (`reason` says so).
    pub fn at_least_one_second(
        env: &Env,
        variable: &'static str,
        default: u64,
        reason: &str,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            seconds: env.seconds_at_least_one(variable, default, reason)?,
            variable,
        })
    }
}

/// One invocation of a job, as the action sees it.
#[derive(Debug)]
pub struct Call<'a, T, S> {
    pub job: &'a Job,
    pub target: &'a T,
    /// What the previous invocation left ([`Verdict::Continue`]); `None` on the first, and when
    /// every earlier invocation failed temporarily before deciding anything.
    pub state: Option<S>,
    /// When the job's first invocation ran (epoch milliseconds).
    pub started_at_ms: i64,
    /// Now, as the runner was given it (epoch milliseconds).
    pub now_ms: i64,
    /// 1 for the job's first invocation.
    pub invocation: u32,
}

impl<T, S> Call<'_, T, S> {
    /// The job's first invocation: no earlier one started anything.
    pub fn is_first(&self) -> bool {
        self.invocation == 1
    }

    /// Seconds since the first invocation.
    pub fn waited_seconds(&self) -> i64 {
        (self.now_ms - self.started_at_ms).max(0) / 1000
    }

    pub fn now_seconds(&self) -> i64 {
        self.now_ms.div_euclid(1000)
    }
}

/// What an action decided for its job.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict<S> {
    /// Finished: the action succeeds, with variables for later actions (its namespace).
    Done {
        summary: String,
        output_variables: BTreeMap<String, String>,
    },
    /// Not finished: CodePipeline invokes the action again, and the next [`Call`] carries this.
    Continue(S),
    /// The action fails with this message (shown in the pipeline's console and API).
    Fail {
        kind: JobFailureKind,
        message: String,
    },
}

impl<S> Verdict<S> {
    pub fn done(summary: impl Into<String>) -> Self {
        Verdict::Done {
            summary: summary.into(),
            output_variables: BTreeMap::new(),
        }
    }

    pub fn fail(message: impl Into<String>) -> Self {
        Verdict::Fail {
            kind: JobFailureKind::JobFailed,
            message: message.into(),
        }
    }
}

/// A CodePipeline job action: its parameters, its state between invocations, its errors, and
/// the work of one invocation. [`run`] and [`handle`] do the rest.
pub trait JobAction: Sync {
    /// The action's name in logs, session names and messages (`change-set`).
    const NAME: &'static str;
    /// What the `UserParameters` hold, for the message when they are not that JSON.
    const PARAMETERS: &'static str;

    /// The `UserParameters` as the pipeline writes them.
    type Parameters: DeserializeOwned;
    /// The parameters checked.
    type Target: Send + Sync;
    /// What one invocation leaves to the next.
    type State: Serialize + DeserializeOwned + Send;
    type Error: ActionError;

    /// Checks the parameters (pure).
    fn target(&self, parameters: Self::Parameters) -> Result<Self::Target, ParameterError>;

    /// What the job is about.
    fn scope(target: &Self::Target) -> Scope<'_>;

    /// How long temporary failures in a row are retried.
    fn retry_limit(&self) -> RetryLimit;

    /// One invocation's work: decide, act, and say how the job stands.
    fn work(
        &self,
        call: Call<'_, Self::Target, Self::State>,
    ) -> impl Future<Output = Result<Verdict<Self::State>, Self::Error>> + Send;

    /// Told how each invocation ended, for the action's metrics (after the runner decided:
    /// a temporary failure that is retried is a `Continue`).
    fn finished(&self, target: &Self::Target, outcome: &Outcome) {
        let _ = (target, outcome);
    }

    /// [`run`] as of now.
    fn run(&self, job: &Job) -> impl Future<Output = Outcome> + Send
    where
        Self: Sized,
    {
        run(self, job, now_ms())
    }

    /// [`run`] as if the time were `now_ms` (epoch milliseconds).
    fn run_at(&self, job: &Job, now_ms: i64) -> impl Future<Output = Outcome> + Send
    where
        Self: Sized,
    {
        run(self, job, now_ms)
    }
}

/// Why a job event could not be answered at all.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Not a CodePipeline job: there is no job to answer.
    #[error("the event is not a CodePipeline job: {0}")]
    Event(#[source] JobEventError),
    /// CodePipeline could not be told (the function fails, and Lambda's retry answers later).
    #[error("CodePipeline could not be told the job's result: {0}")]
    Answer(#[source] Box<AwsError>),
}

impl JobError {
    pub fn error_type(&self) -> &'static str {
        match self {
            JobError::Event(_) => "MalformedEvent",
            JobError::Answer(_) => "CodePipelineError",
        }
    }
}

/// What the continuation token carries: the runner's bookkeeping around the action's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Continuation {
    /// The action that wrote it: a token is never read by another action.
    pub action: String,
    /// The first invocation (epoch milliseconds).
    pub since: i64,
    /// How many invocations ran.
    pub invocation: u32,
    /// The first of the temporary failures in a row that ended the last invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<i64>,
    /// The action's own state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Value>,
}

/// Handles one `CodePipeline.job` event for `action` as of now and answers the job with
/// `codepipeline`.
pub async fn handle<A: JobAction>(
    action: &A,
    codepipeline: &aws_sdk_codepipeline::Client,
    event: serde_json::Value,
) -> Result<Answer, JobError> {
    let job = Job::from_event(event).map_err(JobError::Event)?;
    let outcome = run(action, &job, now_ms()).await;
    answer(
        codepipeline,
        &job,
        Ok::<_, std::convert::Infallible>(outcome),
    )
    .await
    .map_err(|e| JobError::Answer(Box::new(e)))
}

/// One invocation of `job` for `action` as if the time were `now_ms`: everything but the
/// answer. Every path, a panic included, ends in an [`Outcome`].
pub async fn run<A: JobAction>(action: &A, job: &Job, now_ms: i64) -> Outcome {
    record_panic_locations();
    match AssertUnwindSafe(invocation(action, job, now_ms))
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => {
            let what = panic_message(panic.as_ref());
            error!(action = A::NAME, job_id = %job.id, panic = %what, error_type = "Panic", outcome = "failed", "the action panicked");
            Outcome::Failed {
                kind: JobFailureKind::JobFailed,
                message: format!(
                    "internal error: the {} action panicked ({what}); nothing more was done in \
                     this invocation: report it with the function's logs, then retry the stage",
                    A::NAME
                ),
            }
        }
    }
}

async fn invocation<A: JobAction>(action: &A, job: &Job, now_ms: i64) -> Outcome {
    let parameters = match job.parameters::<A::Parameters>() {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                A::NAME,
                "InvalidParameters",
                JobFailureKind::ConfigurationError,
                format!(
                    "{e}: the action's UserParameters must be JSON with {}",
                    A::PARAMETERS
                ),
            );
        }
    };
    let target = match action.target(parameters) {
        Ok(target) => target,
        Err(e) => {
            return refuse(
                A::NAME,
                "InvalidParameters",
                JobFailureKind::ConfigurationError,
                format!("the action's UserParameters cannot be used: {e}"),
            );
        }
    };
    let envelope = match read_envelope::<A::State>(job, A::NAME) {
        Ok(envelope) => envelope,
        Err(e) => {
            return refuse(
                A::NAME,
                "InvalidContinuation",
                JobFailureKind::JobFailed,
                format!("{e}: this invocation cannot resume the action; retry the stage"),
            );
        }
    };
    let scope = A::scope(&target);
    let (since, invocation, failing_since, kept, state) = match envelope {
        Some((e, state)) => (
            e.since,
            e.invocation.saturating_add(1),
            e.failing_since,
            e.state,
            state,
        ),
        None => (now_ms, 1, None, None, None),
    };
    let span = info_span!(
        "job",
        action = A::NAME,
        release_id = %scope.release_id,
        execution_id = %scope.execution_id,
        env = %scope.environment,
        job_id = %job.id,
        invocation,
    );
    let environment = scope.environment.to_owned();
    async move {
        let call = Call {
            job,
            target: &target,
            state,
            started_at_ms: since,
            now_ms,
            invocation,
        };
        let token = |failing_since: Option<i64>, state: Option<serde_json::Value>| {
            serde_json::to_value(Continuation {
                action: A::NAME.to_owned(),
                since,
                invocation,
                failing_since,
                state,
            })
            .unwrap_or(serde_json::Value::Null)
        };
        let outcome = match action.work(call).await {
            Ok(Verdict::Done {
                summary,
                output_variables,
            }) => {
                info!(outcome = "done", summary = %summary, "job done");
                Outcome::Done {
                    summary,
                    output_variables,
                }
            }
            Ok(Verdict::Continue(state)) => match serde_json::to_value(state) {
                Ok(state) => Outcome::Continue {
                    state: token(None, Some(state).filter(|s| !s.is_null())),
                },
                Err(e) => refuse(
                    A::NAME,
                    "InvalidContinuation",
                    JobFailureKind::JobFailed,
                    format!("internal error: the action's progress cannot be written: {e}"),
                ),
            },
            Ok(Verdict::Fail { kind, message }) => {
                warn!(outcome = "failed", reason = %message, "job failed");
                Outcome::Failed { kind, message }
            }
            Err(e) if e.is_retryable() => {
                let first = failing_since.unwrap_or(now_ms);
                let limit = action.retry_limit();
                let failing_for = (now_ms - first).max(0) / 1000;
                if u64::try_from(failing_for).unwrap_or(0) < limit.seconds {
                    warn!(error = %e, error_type = e.error_type(), failing_for, outcome = "continue", "temporary failure; trying again on the next invocation");
                    Outcome::Continue {
                        state: token(Some(first), kept),
                    }
                } else {
                    let message = format!(
                        "{environment}: gave up after {} ({}) of temporary failures; the last: {e}",
                        minutes(failing_for),
                        limit.variable
                    );
                    warn!(error_type = e.error_type(), failing_for, outcome = "failed", reason = %message, "gave up");
                    Outcome::Failed {
                        kind: JobFailureKind::JobFailed,
                        message,
                    }
                }
            }
            Err(e) => {
                warn!(error_type = e.error_type(), outcome = "failed", reason = %e, "job failed");
                Outcome::Failed {
                    kind: e.failure_kind(),
                    message: e.to_string(),
                }
            }
        };
        action.finished(&target, &outcome);
        outcome
    }
    .instrument(span)
    .await
}

/// The envelope of the job's continuation token and the action's state in it, if the job is
/// continued.
#[allow(clippy::type_complexity)]
fn read_envelope<S: DeserializeOwned>(
    job: &Job,
    action: &str,
) -> Result<Option<(Continuation, Option<S>)>, String> {
    let Some(envelope) = job
        .continuation::<Continuation>()
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    if envelope.action != action {
        return Err(format!(
            "the continuation token was written by the {} action, not this {action} action",
            envelope.action
        ));
    }
    let state = envelope
        .state
        .clone()
        .map(serde_json::from_value::<S>)
        .transpose()
        .map_err(|e| format!("the continuation token is not one this action wrote: {e}"))?;
    Ok(Some((envelope, state)))
}

fn refuse(action: &str, error_type: &str, kind: JobFailureKind, message: String) -> Outcome {
    warn!(action, error_type, outcome = "failed", reason = %message, "job refused");
    Outcome::Failed { kind, message }
}

/// "95 s", "12 min".
pub fn minutes(seconds: i64) -> String {
    if seconds >= 120 {
        format!("{} min", seconds / 60)
    } else {
        format!("{} s", seconds.max(0))
    }
}

/// The current time in epoch milliseconds.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

thread_local! {
    /// Where the last panic on this thread happened, recorded by the hook of
    /// [`record_panic_locations`]: a panic unwinds on the thread that polls the future, the
    /// thread that catches it.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once per process, a panic hook that records where a panic happened before the
/// previous hook (the default prints it to stderr, which Lambda sends to the function's logs).
fn record_panic_locations() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            PANIC_LOCATION.with(|cell| *cell.borrow_mut() = location);
            previous(info);
        }));
    });
}

/// A panic's message (and where it happened, when the hook saw it).
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    match PANIC_LOCATION.with(|cell| cell.borrow_mut().take()) {
        Some(location) => format!("{message}, at {location}"),
        None => message,
    }
}

#[cfg(test)]
mod tests;
