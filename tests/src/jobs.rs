//! CodePipeline jobs as the pipeline hands them to shipgate's Lambda actions, and their
//! outcomes: the `CodePipeline.job` event of AWS's sample with the action's function,
//! `UserParameters`, input artifact and continuation token; a job run again with its
//! continuation token while the action continues, as CodePipeline does.

use std::collections::BTreeMap;
use std::future::Future;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use shipgate::aws::codepipeline::JobFailureKind;
use shipgate::job::{Continuation, Job, Outcome};
use shipgate_local::accounts;

/// The job of one invocation of a Lambda action, in the tooling account.
#[derive(Debug, Clone)]
pub struct JobEvent {
    id: Option<String>,
    function: String,
    parameters: Value,
    release: Option<(String, String)>,
    continuation: Option<String>,
}

impl JobEvent {
    /// A job for `function` (its logical id) with `parameters` as its `UserParameters`.
    pub fn new(function: &str, parameters: Value) -> Self {
        Self {
            id: None,
            function: function.to_owned(),
            parameters,
            release: None,
            continuation: None,
        }
    }

    /// The job's id (a new one otherwise, as every job, continuations included, has its own).
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }

    /// The release zip at `bucket`/`key` as the `Release` input artifact (none otherwise).
    pub fn release_artifact(mut self, bucket: &str, key: &str) -> Self {
        self.release = Some((bucket.to_owned(), key.to_owned()));
        self
    }

    /// The continuation token of the invocation before (the first invocation has none).
    pub fn continuation(mut self, token: Option<&str>) -> Self {
        self.continuation = token.map(str::to_owned);
        self
    }

    /// The event, from AWS's sample.
    pub fn event(&self) -> Value {
        let mut event: Value = serde_json::from_str(include_str!(
            "../../shared/tests/fixtures/codepipeline-job.json"
        ))
        .expect("AWS's sample job is JSON");
        let job = &mut event["CodePipeline.job"];
        job["id"] = json!(
            self.id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
        );
        job["accountId"] = json!(accounts::TOOLING);
        let data = &mut job["data"];
        let configuration = &mut data["actionConfiguration"]["configuration"];
        configuration["FunctionName"] = json!(self.function);
        configuration["UserParameters"] = json!(self.parameters.to_string());
        data["inputArtifacts"] = match &self.release {
            Some((bucket, key)) => {
                let mut artifact = data["inputArtifacts"][0].take();
                artifact["name"] = json!("Release");
                artifact["location"]["s3Location"] =
                    json!({"bucketName": bucket, "objectKey": key});
                json!([artifact])
            }
            None => json!([]),
        };
        data["continuationToken"] = self
            .continuation
            .as_deref()
            .map_or(Value::Null, |t| json!(t));
        event
    }

    /// The job, parsed as the action's handler parses the event.
    pub fn job(&self) -> Result<Job> {
        Ok(Job::from_event(self.event())?)
    }
}

/// What the action answered, as a word: `done`, `continue` or `failed`.
pub fn kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done { .. } => "done",
        Outcome::Continue { .. } => "continue",
        Outcome::Failed { .. } => "failed",
    }
}

/// The summary and output variables of an action that succeeded.
pub fn done(outcome: &Outcome) -> Result<(&str, &BTreeMap<String, String>)> {
    match outcome {
        Outcome::Done {
            summary,
            output_variables,
        } => Ok((summary.as_str(), output_variables)),
        other => bail!("expected the action to succeed: {other:?}"),
    }
}

/// The message and kind of an action that failed its job.
pub fn failure(outcome: &Outcome) -> Result<(&str, JobFailureKind)> {
    match outcome {
        Outcome::Failed { kind, message } => Ok((message.as_str(), *kind)),
        other => bail!("expected the action to fail its job: {other:?}"),
    }
}

/// Runs a job as CodePipeline does: `invoke` gets the continuation token of the invocation
/// before (none the first time; each token must be the job runner's [`Continuation`]) and is
/// called again while the action continues, at most `most` times. The last outcome, and how
/// many invocations it took.
pub async fn run_to_end<F, Fut>(most: u32, mut invoke: F) -> Result<(Outcome, u32)>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Outcome>>,
{
    let mut token = None;
    for invocation in 1..=most {
        match invoke(token.take()).await? {
            Outcome::Continue { state } => {
                serde_json::from_value::<Continuation>(state.clone())?;
                token = Some(state.to_string());
            }
            other => return Ok((other, invocation)),
        }
    }
    bail!("the action did not finish in {most} invocations")
}
