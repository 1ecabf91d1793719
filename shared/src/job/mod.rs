//! The CodePipeline Lambda-invoke job contract every pipeline action follows, and the one
//! runner that keeps it.
//!
//! A function receives a `CodePipeline.job` event, does (part of) its work and must answer the
//! job: `PutJobSuccessResult` when done, `PutJobSuccessResult` with a continuation token when the
//! work goes on (CodePipeline invokes the action again with that token, so long waits are never
//! spent sleeping in a Lambda), or `PutJobFailureResult` with a message a person can act on.
//!
//! [`run`] and [`handle`] own that contract for every action ([`JobAction`]): they parse the
//! `UserParameters` into the action's typed parameters (one [`ParameterError`]), carry the
//! continuation state and the time of the first invocation from one invocation to the next,
//! retry temporary failures (throttling, 5xx, timeouts) on the next invocation until the
//! action's retry limit has passed since the first of them, fail at once on anything else
//! (access denied, validation), open the log span (release, execution, environment, action),
//! catch a panic, and answer CodePipeline exactly once on every path. An action supplies only its
//! decisions and effects ([`JobAction::work`]).

pub mod artifact;
pub mod parameters;
pub mod release;
mod runner;

use std::collections::BTreeMap;

use aws_lambda_events::event::codepipeline_job::CodePipelineJobEvent;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aws::codepipeline::{put_job_failure, put_job_success};
use crate::aws::s3::ObjectVersion;
use crate::error::AwsError;

pub use crate::aws::codepipeline::JobFailureKind;
pub use parameters::ParameterError;
pub use runner::{
    ActionError, Call, Continuation, JobAction, JobError, RetryLimit, Scope, Verdict, handle,
    minutes, panic_message, run,
};

/// CodePipeline's limit on a continuation token.
pub const MAX_CONTINUATION_TOKEN_CHARS: usize = 2048;

/// A job as a handler needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub account_id: Option<String>,
    /// The action's `UserParameters`, variables already resolved by CodePipeline.
    pub user_parameters: Option<String>,
    /// Set when this invocation continues earlier work.
    pub continuation_token: Option<String>,
    /// Input artifacts by name, where CodePipeline put them.
    pub input_artifacts: BTreeMap<String, ObjectVersion>,
}

/// A job event that cannot be worked on.
#[derive(Debug, thiserror::Error)]
pub enum JobEventError {
    #[error("the event is not a CodePipeline job: {0}")]
    NotAJob(#[source] serde_json::Error),
    #[error("the CodePipeline job has no id")]
    NoJobId,
    #[error("the action's UserParameters are not the JSON this action takes: {0}")]
    UserParameters(#[source] serde_json::Error),
    #[error("the continuation token is not one this action wrote: {0}")]
    Continuation(#[source] serde_json::Error),
}

impl Job {
    /// Reads a `CodePipeline.job` event.
    pub fn from_event(event: serde_json::Value) -> Result<Self, JobEventError> {
        let event: CodePipelineJobEvent =
            serde_json::from_value(event).map_err(JobEventError::NotAJob)?;
        let job = event.code_pipeline_job;
        let id = job
            .id
            .filter(|id| !id.is_empty())
            .ok_or(JobEventError::NoJobId)?;
        let input_artifacts = job
            .data
            .input_artifacts
            .iter()
            .filter_map(|a| {
                let s3 = &a.location.s3_location;
                Some((
                    a.name.clone()?,
                    ObjectVersion {
                        bucket: s3.bucket_name.clone()?,
                        key: s3.object_key.clone()?,
                        version_id: None,
                    },
                ))
            })
            .collect();
        Ok(Self {
            id,
            account_id: job.account_id,
            user_parameters: job.data.action_configuration.configuration.user_parameters,
            continuation_token: job.data.continuation_token.filter(|t| !t.is_empty()),
            input_artifacts,
        })
    }

    /// The `UserParameters` as JSON of type `T`.
    pub fn parameters<T: DeserializeOwned>(&self) -> Result<T, JobEventError> {
        serde_json::from_str(self.user_parameters.as_deref().unwrap_or("null"))
            .map_err(JobEventError::UserParameters)
    }

    /// The state an earlier invocation left in the continuation token, if any.
    pub fn continuation<T: DeserializeOwned>(&self) -> Result<Option<T>, JobEventError> {
        self.continuation_token
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(JobEventError::Continuation)
    }
}

/// What a handler decided for its job.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Finished: the action succeeds, with variables for later actions (its namespace).
    Done {
        summary: String,
        output_variables: BTreeMap<String, String>,
    },
    /// Not finished: CodePipeline invokes the action again with `state` in the token.
    Continue { state: serde_json::Value },
    /// The action fails with this message (shown in the pipeline's console and API).
    Failed {
        kind: JobFailureKind,
        message: String,
    },
}

impl Outcome {
    pub fn done(summary: impl Into<String>) -> Self {
        Outcome::Done {
            summary: summary.into(),
            output_variables: BTreeMap::new(),
        }
    }

    pub fn continue_with(state: &impl Serialize) -> Self {
        Outcome::Continue {
            state: serde_json::to_value(state).unwrap_or(serde_json::Value::Null),
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Outcome::Failed {
            kind: JobFailureKind::JobFailed,
            message: message.into(),
        }
    }
}

/// How the job was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Succeeded,
    Continued,
    Failed,
}

/// Answers `job` from the handler's result: success, continuation or failure, on every path.
/// A handler error fails the job with the error's message. `Err` only when CodePipeline itself
/// could not be told (the function then fails, and Lambda's retry answers later).
pub async fn answer<E: std::fmt::Display>(
    cp: &aws_sdk_codepipeline::Client,
    job: &Job,
    result: Result<Outcome, E>,
) -> Result<Answer, AwsError> {
    let outcome = result.unwrap_or_else(|e| Outcome::failed(e.to_string()));
    match outcome {
        Outcome::Done {
            summary,
            output_variables,
        } => {
            let summary = (!summary.is_empty()).then_some(summary.as_str());
            put_job_success(cp, &job.id, None, &output_variables, summary).await?;
            Ok(Answer::Succeeded)
        }
        Outcome::Continue { state } => {
            let token = state.to_string();
            if token.chars().count() > MAX_CONTINUATION_TOKEN_CHARS {
                let message = format!(
                    "internal error: the action's progress ({} characters) does not fit CodePipeline's {MAX_CONTINUATION_TOKEN_CHARS}-character continuation token",
                    token.chars().count()
                );
                put_job_failure(cp, &job.id, JobFailureKind::JobFailed, &message, None).await?;
                return Ok(Answer::Failed);
            }
            put_job_success(cp, &job.id, Some(&token), &BTreeMap::new(), None).await?;
            Ok(Answer::Continued)
        }
        Outcome::Failed { kind, message } => {
            put_job_failure(cp, &job.id, kind, &message, None).await?;
            Ok(Answer::Failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/fixtures/codepipeline-job.json"))
            .expect("AWS sample event")
    }

    #[test]
    fn aws_sample_job_event_reads() {
        let job = Job::from_event(sample()).unwrap();
        assert_eq!(job.id, "11111111-abcd-1111-abcd-111111abcdef");
        assert_eq!(job.account_id.as_deref(), Some("111111111111"));
        assert_eq!(
            job.user_parameters.as_deref(),
            Some("some-input-such-as-a-URL")
        );
        // AWS's sample carries a placeholder token: a continued job.
        assert_eq!(
            job.continuation_token.as_deref(),
            Some("A continuation token if continuing job")
        );
        let artifact = &job.input_artifacts["ArtifactName"];
        assert_eq!(
            artifact.bucket,
            "the name of the bucket configured as the pipeline artifact store in Amazon S3, for example codepipeline-us-east-2-1234567890"
        );
    }

    #[test]
    fn continuation_state_round_trips_and_a_foreign_token_is_an_error() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Progress {
            step: u32,
        }
        let mut event = sample();
        event["CodePipeline.job"]["data"]["continuationToken"] =
            serde_json::Value::String(r#"{"step":3}"#.into());
        let job = Job::from_event(event.clone()).unwrap();
        assert_eq!(
            job.continuation::<Progress>().unwrap(),
            Some(Progress { step: 3 })
        );
        event["CodePipeline.job"]["data"]["continuationToken"] = "not json".into();
        let job = Job::from_event(event).unwrap();
        assert!(matches!(
            job.continuation::<Progress>(),
            Err(JobEventError::Continuation(_))
        ));
    }

    #[test]
    fn events_that_are_not_jobs_are_refused() {
        assert!(matches!(
            Job::from_event(serde_json::json!({"Records": []})),
            Err(JobEventError::NotAJob(_))
        ));
        let mut event = sample();
        event["CodePipeline.job"]["id"] = "".into();
        assert!(matches!(
            Job::from_event(event),
            Err(JobEventError::NoJobId)
        ));
    }
}
