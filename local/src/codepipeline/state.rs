//! Executions, stage locks, jobs and approvals: CodePipeline's execution rules as state
//! transitions.
//!
//! Nothing here does I/O. Every transition mutates [`State`] and pushes the [`Effect`]s the
//! engine must carry out afterwards (copy a source object, invoke a function, arm a timer);
//! results come back as further transitions ([`State::source_fetched`],
//! [`State::job_timed_out`], …). The rules, from "How pipeline executions work" in the
//! CodePipeline user guide:
//!
//! * a stage holds one execution at a time (it is *locked*) except in PARALLEL mode;
//! * executions wait in front of a locked stage; in SUPERSEDED mode a more recent waiting
//!   execution supersedes an older waiting one ("executions are only superseded in between
//!   stages"), in QUEUED mode they enter in the order they arrived;
//! * a stage with a pending approval stays locked until the approval is decided or expires, so
//!   an execution waiting at an approval is *not* superseded;
//! * actions with the same run order run together, the next run order starts when all
//!   succeeded; a failure (or stop) releases the stage's lock and ends the execution.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use time::OffsetDateTime;

use super::definition::{
    ActionDefinition, ActionKind, ActionTypeId, ExecutionMode, PipelineDefinition,
};
use super::error::{ApiError, ErrorCode};
use super::events::{self, ApprovalNotice};
use super::wire;

/// AWS's limit on the total size of a job's output variables.
const OUTPUT_VARIABLES_MAX_BYTES: usize = 122_880;

/// CodePipeline's limit on one action configuration value: "Maximum length of the action
/// configuration value … 1000 characters" (user guide, "Quotas in AWS CodePipeline"; the API
/// reference's `ActionDeclaration.configuration`: "Value Length Constraints: … Maximum length of
/// 1000"). Counted in characters (Unicode scalar values), as the API's length constraints are.
const CONFIGURATION_VALUE_MAX_CHARS: usize = 1_000;

/// "There is a maximum size limit of 100 KB for the total resolved action configuration for a
/// particular action" (user guide, "Quotas in AWS CodePipeline", variable quotas).
const RESOLVED_CONFIGURATION_MAX_BYTES: usize = 100 * 1024;

/// What the stand-in needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub region: String,
    pub account_id: String,
    pub job_timeout: Duration,
    pub approval_timeout: Duration,
    /// How long after a continuation the action is invoked again.
    pub continuation_delay: Duration,
}

/// Work for the engine once the state lock is released.
#[derive(Debug)]
pub enum Effect {
    /// Copy a source object version into the artifact store, then call
    /// [`State::source_fetched`].
    FetchSource(SourceFetch),
    /// Deliver a job event; if the function is unknown, call [`State::job_not_delivered`].
    InvokeJob {
        function: String,
        job_id: String,
        event: Json,
        /// Zero for a first job; the continuation delay for a continued one.
        delay: Duration,
    },
    /// Deliver an approval notification (SNS delivery failures do not affect the pipeline).
    Notify { function: String, event: Json },
    /// After `after`, call [`State::job_timed_out`].
    JobTimer { job_id: String, after: Duration },
    /// After `after`, call [`State::approval_expired`].
    ApprovalTimer {
        key: ActionKey,
        token: String,
        after: Duration,
    },
}

/// Where an action run lives: pipeline, execution, stage index, action index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionKey {
    pub pipeline: String,
    pub execution_id: String,
    pub stage: usize,
    pub action: usize,
}

#[derive(Debug, Clone)]
pub struct SourceFetch {
    pub key: ActionKey,
    pub bucket: String,
    pub object_key: String,
    pub version_id: Option<String>,
    pub artifact_bucket: String,
    pub artifact_key: String,
}

/// What the S3 source action found and copied.
#[derive(Debug, Clone)]
pub struct FetchedSource {
    pub version_id: String,
    pub etag: String,
    pub last_modified: Option<OffsetDateTime>,
    /// `x-amz-meta-codepipeline-artifact-revision-summary`, which CodePipeline shows as the
    /// revision summary of an S3 source.
    pub revision_summary: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExecutionStatus {
    InProgress,
    Stopping,
    Stopped,
    Succeeded,
    Superseded,
    Failed,
}

impl ExecutionStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "InProgress",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Succeeded => "Succeeded",
            Self::Superseded => "Superseded",
            Self::Failed => "Failed",
        }
    }

    fn is_active(self) -> bool {
        matches!(self, Self::InProgress | Self::Stopping)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StageStatus {
    InProgress,
    Succeeded,
    Failed,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActionStatus {
    InProgress,
    Succeeded,
    Failed,
    Abandoned,
}

impl ActionStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "InProgress",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Abandoned => "Abandoned",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobStatus {
    InProgress,
    Succeeded,
    Failed,
    TimedOut,
}

impl JobStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "InProgress",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::TimedOut => "TimedOut",
        }
    }
}

/// Where an execution is in its pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In front of this stage, waiting to enter it.
    Waiting(usize),
    InStage(usize),
    Done,
}

#[derive(Debug)]
struct Job {
    key: ActionKey,
    status: JobStatus,
    data: wire::JobData,
}

#[derive(Debug)]
struct Execution {
    id: String,
    status: ExecutionStatus,
    status_summary: Option<String>,
    started: OffsetDateTime,
    updated: OffsetDateTime,
    trigger: wire::ExecutionTrigger,
    variables: BTreeMap<String, String>,
    overrides: BTreeMap<String, SourceOverride>,
    /// Artifacts produced so far, by name, as later actions receive them.
    artifacts: BTreeMap<String, wire::Artifact>,
    artifact_revisions: Vec<ArtifactRevision>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    place: Place,
    stages: Vec<Option<StageRun>>,
    stop: Option<StopRequest>,
}

#[derive(Debug, Default)]
struct SourceOverride {
    version_id: Option<String>,
    object_key: Option<String>,
}

#[derive(Debug, Clone)]
struct ArtifactRevision {
    action_name: String,
    name: String,
    revision_id: String,
    change_identifier: Option<String>,
    summary: Option<String>,
    created: Option<OffsetDateTime>,
}

#[derive(Debug)]
struct StopRequest {
    reason: Option<String>,
}

#[derive(Debug)]
struct StageRun {
    status: StageStatus,
    run_order: u32,
    actions: Vec<Option<ActionRun>>,
}

#[derive(Debug)]
struct ActionRun {
    action_execution_id: String,
    status: ActionStatus,
    summary: Option<String>,
    last_status_change: OffsetDateTime,
    error: Option<wire::ErrorDetails>,
    external_execution_id: Option<String>,
    percent_complete: Option<i64>,
    /// The action's configuration with pipeline variables resolved for this run.
    configuration: BTreeMap<String, String>,
    inputs: Vec<wire::Artifact>,
    outputs: Vec<wire::Artifact>,
    job_id: Option<String>,
    approval_token: Option<String>,
    revision: Option<(String, String, OffsetDateTime)>,
}

impl ActionRun {
    fn new(now: OffsetDateTime) -> Self {
        Self {
            action_execution_id: uuid::Uuid::new_v4().to_string(),
            status: ActionStatus::InProgress,
            summary: None,
            last_status_change: now,
            error: None,
            external_execution_id: None,
            percent_complete: None,
            configuration: BTreeMap::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            job_id: None,
            approval_token: None,
            revision: None,
        }
    }

    fn fail(&mut self, code: &str, message: impl Into<String>, now: OffsetDateTime) {
        let message = message.into();
        self.status = ActionStatus::Failed;
        self.summary = Some(message.clone());
        self.error = Some(wire::ErrorDetails {
            code: code.to_owned(),
            message,
        });
        self.last_status_change = now;
    }

    fn succeed(&mut self, now: OffsetDateTime) {
        self.status = ActionStatus::Succeeded;
        self.last_status_change = now;
    }
}

/// One pipeline's definition and runs.
#[derive(Debug)]
struct PipelineRun {
    definition: Arc<PipelineDefinition>,
    created: OffsetDateTime,
    /// In start order.
    executions: Vec<Execution>,
    by_id: HashMap<String, usize>,
    /// `clientRequestToken` → execution id: a retried start returns the same execution.
    request_tokens: HashMap<String, String>,
    /// Per stage: the execution holding its lock (unused in PARALLEL mode).
    locks: Vec<Option<String>>,
    /// Per stage: executions waiting in front of it, next to enter first.
    waiting: Vec<VecDeque<String>>,
    /// Per stage: the execution that entered it last (what `GetPipelineState` shows).
    latest: Vec<Option<String>>,
}

/// Everything transitions need besides the pipeline itself.
struct Cx<'a> {
    settings: &'a Settings,
    subscribers: &'a BTreeMap<String, Vec<String>>,
    jobs: &'a mut HashMap<String, Job>,
    now: OffsetDateTime,
    effects: &'a mut Vec<Effect>,
}

/// All pipelines, executions and jobs of the stand-in.
#[derive(Debug)]
pub struct State {
    settings: Settings,
    subscribers: BTreeMap<String, Vec<String>>,
    pipelines: BTreeMap<String, PipelineRun>,
    jobs: HashMap<String, Job>,
}

impl State {
    pub fn new(
        definitions: Vec<PipelineDefinition>,
        subscribers: BTreeMap<String, Vec<String>>,
        settings: Settings,
        now: OffsetDateTime,
    ) -> Self {
        let mut pipelines = BTreeMap::new();
        for definition in definitions {
            if pipelines.contains_key(&definition.name) {
                tracing::warn!(pipeline = %definition.name, "two pipelines share a name; keeping the first");
                continue;
            }
            let stages = definition.stages.len();
            pipelines.insert(
                definition.name.clone(),
                PipelineRun {
                    definition: Arc::new(definition),
                    created: now,
                    executions: Vec::new(),
                    by_id: HashMap::new(),
                    request_tokens: HashMap::new(),
                    locks: vec![None; stages],
                    waiting: vec![VecDeque::new(); stages],
                    latest: vec![None; stages],
                },
            );
        }
        Self {
            settings,
            subscribers,
            pipelines,
            jobs: HashMap::new(),
        }
    }

    /// Splits the borrows a transition needs.
    fn split<'a>(
        &'a mut self,
        pipeline: &str,
        now: OffsetDateTime,
        effects: &'a mut Vec<Effect>,
    ) -> Result<(&'a mut PipelineRun, Cx<'a>), ApiError> {
        let run = self
            .pipelines
            .get_mut(pipeline)
            .ok_or_else(|| ApiError::pipeline_not_found(pipeline))?;
        let cx = Cx {
            settings: &self.settings,
            subscribers: &self.subscribers,
            jobs: &mut self.jobs,
            now,
            effects,
        };
        Ok((run, cx))
    }

    /// The run and execution index of `key`; `None` once they are gone (a late timer, a copy
    /// that finishes after its pipeline was dropped).
    fn locate<'a>(
        &'a mut self,
        key: &ActionKey,
        now: OffsetDateTime,
        effects: &'a mut Vec<Effect>,
    ) -> Option<(&'a mut PipelineRun, Cx<'a>, usize)> {
        let (run, cx) = self.split(&key.pipeline, now, effects).ok()?;
        let index = run.index(&key.execution_id).ok()?;
        Some((run, cx, index))
    }

    fn pipeline(&self, name: &str) -> Result<&PipelineRun, ApiError> {
        self.pipelines
            .get(name)
            .ok_or_else(|| ApiError::pipeline_not_found(name))
    }

    // ---- operations that change state ----

    pub fn start_execution(
        &mut self,
        input: wire::StartPipelineExecutionInput,
        now: OffsetDateTime,
        effects: &mut Vec<Effect>,
    ) -> Result<String, ApiError> {
        let account_id = self.settings.account_id.clone();
        let (run, mut cx) = self.split(&input.name, now, effects)?;
        if let Some(existing) = input
            .client_request_token
            .as_ref()
            .and_then(|t| run.request_tokens.get(t))
        {
            return Ok(existing.clone());
        }
        let definition = Arc::clone(&run.definition);
        let variables = resolve_pipeline_variables(&definition, &input.variables)?;
        let overrides = source_overrides(&definition, &input.source_revisions)?;
        let id = uuid::Uuid::new_v4().to_string();
        let stages = definition.stages.len();
        run.executions.push(Execution {
            id: id.clone(),
            status: ExecutionStatus::InProgress,
            status_summary: None,
            started: now,
            updated: now,
            trigger: wire::ExecutionTrigger {
                trigger_type: "StartPipelineExecution".to_owned(),
                trigger_detail: format!("arn:aws:iam::{account_id}:root"),
            },
            variables,
            overrides,
            artifacts: BTreeMap::new(),
            artifact_revisions: Vec::new(),
            namespaces: BTreeMap::new(),
            place: Place::Waiting(0),
            stages: (0..stages).map(|_| None).collect(),
            stop: None,
        });
        let index = run.executions.len() - 1;
        run.by_id.insert(id.clone(), index);
        if let Some(token) = input.client_request_token {
            run.request_tokens.insert(token, id.clone());
        }
        run.arrive(index, 0, &mut cx);
        run.settle(&mut cx);
        Ok(id)
    }

    pub fn stop_execution(
        &mut self,
        input: wire::StopPipelineExecutionInput,
        now: OffsetDateTime,
        effects: &mut Vec<Effect>,
    ) -> Result<String, ApiError> {
        let (run, mut cx) = self.split(&input.pipeline_name, now, effects)?;
        let index = run.index(&input.pipeline_execution_id)?;
        let execution = &mut run.executions[index];
        match execution.status {
            ExecutionStatus::InProgress => {}
            ExecutionStatus::Stopping if input.abandon => {}
            ExecutionStatus::Stopping => {
                return Err(ApiError::new(
                    ErrorCode::DuplicatedStopRequest,
                    "The execution is already stopping; only a stop-and-abandon request can follow",
                ));
            }
            other => {
                return Err(ApiError::new(
                    ErrorCode::PipelineExecutionNotStoppable,
                    format!("The execution is {} and cannot be stopped", other.as_str()),
                ));
            }
        }
        let earlier_reason = execution.stop.take().and_then(|s| s.reason);
        execution.stop = Some(StopRequest {
            reason: input.reason.or(earlier_reason),
        });
        execution.status = ExecutionStatus::Stopping;
        execution.updated = now;
        let place = execution.place;
        match place {
            Place::Waiting(stage) => {
                run.waiting[stage].retain(|id| id != &input.pipeline_execution_id);
                run.finish(index, ExecutionStatus::Stopped, None, now);
            }
            Place::InStage(stage) if input.abandon => {
                let runs = run.executions[index].stages[stage].iter_mut();
                for action in runs.flat_map(|s| s.actions.iter_mut().flatten()) {
                    if action.status == ActionStatus::InProgress {
                        action.status = ActionStatus::Abandoned;
                        action.last_status_change = now;
                        if let Some(job) = action.job_id.as_ref().and_then(|j| cx.jobs.get_mut(j)) {
                            job.status = JobStatus::Failed;
                        }
                    }
                }
            }
            // Stop and wait: in-progress actions finish, nothing new starts (see `step`).
            Place::InStage(_) | Place::Done => {}
        }
        run.settle(&mut cx);
        Ok(input.pipeline_execution_id)
    }

    pub fn put_job_success(
        &mut self,
        input: wire::PutJobSuccessResultInput,
        now: OffsetDateTime,
        effects: &mut Vec<Effect>,
    ) -> Result<(), ApiError> {
        if input.continuation_token.is_some() && input.output_variables.is_some() {
            return Err(ApiError::validation(
                "outputVariables can only be included when there is no continuation token",
            ));
        }
        if let Some(variables) = &input.output_variables {
            let size: usize = variables.iter().map(|(k, v)| k.len() + v.len()).sum();
            if size > OUTPUT_VARIABLES_MAX_BYTES {
                return Err(ApiError::new(
                    ErrorCode::OutputVariablesSizeExceeded,
                    format!(
                        "Output variables total {size} bytes, more than {OUTPUT_VARIABLES_MAX_BYTES}"
                    ),
                ));
            }
        }
        let key = self.claim_job(&input.job_id, JobStatus::Succeeded)?;
        let (run, mut cx) = self.split(&key.pipeline, now, effects)?;
        let definition = Arc::clone(&run.definition);
        let action_definition = &definition.stages[key.stage].actions[key.action];
        let index = run.index(&key.execution_id)?;
        let execution = &mut run.executions[index];
        execution.updated = now;
        let Some(action) = action_run_mut(execution, key.stage, key.action) else {
            return Err(invalid_job_state(&input.job_id, "Abandoned"));
        };
        if let Some(details) = input.execution_details {
            action.summary = details.summary.or(action.summary.take());
            action.external_execution_id = details
                .external_execution_id
                .or(action.external_execution_id.take());
            action.percent_complete = details.percent_complete.or(action.percent_complete);
        }
        if let Some(revision) = &input.current_revision {
            action.revision = Some((
                revision.revision.clone(),
                revision.change_identifier.clone(),
                now,
            ));
        }
        action.last_status_change = now;
        match input.continuation_token {
            Some(token) => {
                // The same action runs again as a new job carrying the token; its timeout
                // window starts over.
                run.create_job(index, &key, Some(token), &mut cx);
            }
            None => {
                let outputs = action.outputs.clone();
                action.succeed(now);
                for mut artifact in outputs {
                    artifact.revision = input.current_revision.as_ref().map(|r| r.revision.clone());
                    execution.artifacts.insert(artifact.name.clone(), artifact);
                }
                if let (Some(namespace), Some(variables)) =
                    (&action_definition.namespace, input.output_variables)
                {
                    execution.namespaces.insert(namespace.clone(), variables);
                }
            }
        }
        run.settle(&mut cx);
        Ok(())
    }

    pub fn put_job_failure(
        &mut self,
        input: wire::PutJobFailureResultInput,
        now: OffsetDateTime,
        effects: &mut Vec<Effect>,
    ) -> Result<(), ApiError> {
        let key = self.claim_job(&input.job_id, JobStatus::Failed)?;
        let details = input.failure_details;
        self.fail_action(
            &key,
            &details.failure_type,
            details.message,
            details.external_execution_id,
            now,
            effects,
        );
        Ok(())
    }

    /// The invoker knows no such function: the job fails as a Lambda invoke would.
    pub fn job_not_delivered(
        &mut self,
        job_id: &str,
        message: String,
        now: OffsetDateTime,
        effects: &mut Vec<Effect>,
    ) {
        if let Ok(key) = self.claim_job(job_id, JobStatus::Failed) {
            self.fail_action(&key, "JobFailed", message, None, now, effects);
        }
    }

    /// The job's timer fired: unless the function reported in time, the action fails.
    pub fn job_timed_out(&mut self, job_id: &str, now: OffsetDateTime, effects: &mut Vec<Effect>) {
        let timeout = self.settings.job_timeout;
        if let Ok(key) = self.claim_job(job_id, JobStatus::TimedOut) {
            let message = format!(
                "The job {job_id} timed out: the function did not call PutJobSuccessResult or \
                 PutJobFailureResult within {timeout:?}"
            );
            self.fail_action(&key, "JobFailed", message, None, now, effects);
        }
    }

    pub fn source_fetched(
        &mut self,
        fetch: &SourceFetch,
        result: Result<FetchedSource, String>,
        now: OffsetDateTime,
        effects: &mut Vec<Effect>,
    ) {
        let source = match result {
            Ok(source) => source,
            Err(message) => {
                self.fail_action(&fetch.key, "JobFailed", message, None, now, effects);
                return;
            }
        };
        let key = &fetch.key;
        let Some((run, mut cx, index)) = self.locate(key, now, effects) else {
            return;
        };
        let definition = Arc::clone(&run.definition);
        let action_definition = &definition.stages[key.stage].actions[key.action];
        let execution = &mut run.executions[index];
        let Some(action) = action_run_mut(execution, key.stage, key.action) else {
            return;
        };
        let created = source.last_modified.unwrap_or(now);
        action.revision = Some((source.version_id.clone(), source.etag.clone(), created));
        action.summary = source.revision_summary.clone();
        action.succeed(now);
        execution.updated = now;
        for name in &action_definition.output_artifacts {
            execution.artifacts.insert(
                name.clone(),
                artifact(
                    name,
                    Some(source.version_id.clone()),
                    &fetch.artifact_bucket,
                    &fetch.artifact_key,
                ),
            );
            execution.artifact_revisions.push(ArtifactRevision {
                action_name: action_definition.name.clone(),
                name: name.clone(),
                revision_id: source.version_id.clone(),
                change_identifier: Some(source.etag.clone()),
                summary: source.revision_summary.clone(),
                created: Some(created),
            });
        }
        if let Some(namespace) = &action_definition.namespace {
            execution.namespaces.insert(
                namespace.clone(),
                BTreeMap::from([
                    ("VersionId".to_owned(), source.version_id),
                    ("ETag".to_owned(), source.etag),
                    ("ObjectKey".to_owned(), fetch.object_key.clone()),
                ]),
            );
        }
        run.settle(&mut cx);
    }

    pub fn put_approval_result(
        &mut self,
        input: wire::PutApprovalResultInput,
        now: OffsetDateTime,
        effects: &mut Vec<Effect>,
    ) -> Result<OffsetDateTime, ApiError> {
        let approved = match input.result.status.as_str() {
            "Approved" => true,
            "Rejected" => false,
            other => {
                return Err(ApiError::validation(format!(
                    "result.status must be Approved or Rejected, not {other}"
                )));
            }
        };
        let (run, mut cx) = self.split(&input.pipeline_name, now, effects)?;
        let definition = Arc::clone(&run.definition);
        let stage = definition
            .stages
            .iter()
            .position(|s| s.name == input.stage_name)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::StageNotFound,
                    format!("Stage {} not found", input.stage_name),
                )
            })?;
        let action_index = definition.stages[stage]
            .actions
            .iter()
            .position(|a| a.name == input.action_name)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ActionNotFound,
                    format!("Action {} not found", input.action_name),
                )
            })?;
        let found = run.executions.iter_mut().find_map(|execution| {
            let active = execution.status.is_active();
            let action = action_run_any(execution, stage, action_index)?;
            (action.approval_token.as_deref() == Some(input.token.as_str()))
                .then_some((action, active))
        });
        let Some((action, active)) = found else {
            return Err(ApiError::new(
                ErrorCode::InvalidApprovalToken,
                format!(
                    "The token for approval action {} is not valid",
                    input.action_name
                ),
            ));
        };
        if action.status != ActionStatus::InProgress || !active {
            return Err(ApiError::new(
                ErrorCode::ApprovalAlreadyCompleted,
                format!(
                    "The approval action {} has already been {}",
                    input.action_name,
                    action.status.as_str()
                ),
            ));
        }
        if approved {
            action.succeed(now);
            action.summary = Some(input.result.summary);
        } else {
            action.fail("Rejected", input.result.summary, now);
        }
        run.settle(&mut cx);
        Ok(now)
    }

    /// The approval's timer fired: unless decided, it fails like a failed action.
    pub fn approval_expired(
        &mut self,
        key: &ActionKey,
        token: &str,
        now: OffsetDateTime,
        effects: &mut Vec<Effect>,
    ) {
        let Some((run, mut cx, index)) = self.locate(key, now, effects) else {
            return;
        };
        let Some(action) = action_run_mut(&mut run.executions[index], key.stage, key.action) else {
            return;
        };
        if action.approval_token.as_deref() != Some(token) {
            return;
        }
        action.fail(
            "ApprovalExpired",
            "The approval request expired without a decision",
            now,
        );
        run.settle(&mut cx);
    }

    /// Marks an in-progress job finished with `status`, or says why it cannot be.
    fn claim_job(&mut self, job_id: &str, status: JobStatus) -> Result<ActionKey, ApiError> {
        let job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| job_not_found(job_id))?;
        if job.status != JobStatus::InProgress {
            return Err(invalid_job_state(job_id, job.status.as_str()));
        }
        job.status = status;
        Ok(job.key.clone())
    }

    fn fail_action(
        &mut self,
        key: &ActionKey,
        code: &str,
        message: String,
        external_execution_id: Option<String>,
        now: OffsetDateTime,
        effects: &mut Vec<Effect>,
    ) {
        let Some((run, mut cx, index)) = self.locate(key, now, effects) else {
            return;
        };
        let execution = &mut run.executions[index];
        execution.updated = now;
        let Some(action) = action_run_mut(execution, key.stage, key.action) else {
            return;
        };
        action.fail(code, message, now);
        action.external_execution_id =
            external_execution_id.or(action.external_execution_id.take());
        run.settle(&mut cx);
    }

    // ---- queries ----

    pub fn pipeline_state(&self, name: &str) -> Result<wire::GetPipelineStateOutput, ApiError> {
        let run = self.pipeline(name)?;
        let definition = &run.definition;
        let stage_states = definition
            .stages
            .iter()
            .enumerate()
            .map(|(s, stage)| {
                let latest = run.latest[s].as_ref().and_then(|id| run.get(id));
                let stage_run = latest.and_then(|e| e.stages[s].as_ref());
                let inbound: Vec<wire::StageExecution> = run.waiting[s]
                    .iter()
                    .filter_map(|id| run.get(id))
                    .map(|e| wire::StageExecution {
                        pipeline_execution_id: e.id.clone(),
                        status: "InProgress".to_owned(),
                        execution_type: "STANDARD".to_owned(),
                    })
                    .collect();
                wire::StageState {
                    stage_name: stage.name.clone(),
                    inbound_execution: inbound.first().map(|e| wire::StageExecution {
                        pipeline_execution_id: e.pipeline_execution_id.clone(),
                        status: e.status.clone(),
                        execution_type: e.execution_type.clone(),
                    }),
                    inbound_executions: (!inbound.is_empty()).then_some(inbound),
                    inbound_transition_state: wire::TransitionState { enabled: true },
                    action_states: stage
                        .actions
                        .iter()
                        .enumerate()
                        .map(|(a, action)| {
                            let action_run = stage_run.and_then(|r| r.actions[a].as_ref());
                            action_state(action, action_run)
                        })
                        .collect(),
                    latest_execution: latest.zip(stage_run).map(|(e, r)| wire::StageExecution {
                        pipeline_execution_id: e.id.clone(),
                        status: stage_status(e, r).to_owned(),
                        execution_type: "STANDARD".to_owned(),
                    }),
                }
            })
            .collect();
        Ok(wire::GetPipelineStateOutput {
            pipeline_name: definition.name.clone(),
            pipeline_version: 1,
            stage_states,
            created: wire::epoch(run.created),
            updated: wire::epoch(run.created),
        })
    }

    pub fn pipeline_execution(
        &self,
        input: &wire::GetPipelineExecutionInput,
    ) -> Result<wire::GetPipelineExecutionOutput, ApiError> {
        let run = self.pipeline(&input.pipeline_name)?;
        let execution = &run.executions[run.index(&input.pipeline_execution_id)?];
        Ok(wire::GetPipelineExecutionOutput {
            pipeline_execution: wire::PipelineExecution {
                pipeline_name: run.definition.name.clone(),
                pipeline_version: 1,
                pipeline_execution_id: execution.id.clone(),
                status: execution.status.as_str().to_owned(),
                status_summary: execution.status_summary.clone(),
                artifact_revisions: execution
                    .artifact_revisions
                    .iter()
                    .map(|r| wire::ArtifactRevision {
                        name: r.name.clone(),
                        revision_id: r.revision_id.clone(),
                        revision_change_identifier: r.change_identifier.clone(),
                        revision_summary: r.summary.clone(),
                        created: r.created.map(wire::epoch),
                    })
                    .collect(),
                variables: execution
                    .variables
                    .iter()
                    .map(|(name, value)| wire::ResolvedPipelineVariable {
                        name: name.clone(),
                        resolved_value: value.clone(),
                    })
                    .collect(),
                trigger: execution.trigger.clone(),
                execution_mode: run.definition.execution_mode.as_str().to_owned(),
                execution_type: "STANDARD".to_owned(),
            },
        })
    }

    pub fn list_executions(
        &self,
        input: &wire::ListPipelineExecutionsInput,
    ) -> Result<wire::ListPipelineExecutionsOutput, ApiError> {
        let run = self.pipeline(&input.pipeline_name)?;
        let stage_filter = input
            .filter
            .as_ref()
            .and_then(|f| f.succeeded_in_stage.as_ref())
            .and_then(|f| f.stage_name.as_deref());
        let stage_index = match stage_filter {
            None => None,
            Some(name) => Some(
                run.definition
                    .stages
                    .iter()
                    .position(|s| s.name == name)
                    .ok_or_else(|| {
                        ApiError::validation(format!("Stage {name} is not part of the pipeline"))
                    })?,
            ),
        };
        // Newest first, as AWS lists them.
        let matching: Vec<&Execution> = run
            .executions
            .iter()
            .rev()
            .filter(|e| {
                stage_index.is_none_or(|s| {
                    e.stages[s]
                        .as_ref()
                        .is_some_and(|r| r.status == StageStatus::Succeeded)
                })
            })
            .collect();
        let (executions, next_token) = page(
            &matching,
            |e| &e.id,
            input.max_results,
            100,
            input.next_token.as_deref(),
        )?;
        Ok(wire::ListPipelineExecutionsOutput {
            pipeline_execution_summaries: executions
                .iter()
                .map(|e| wire::PipelineExecutionSummary {
                    pipeline_execution_id: e.id.clone(),
                    status: e.status.as_str().to_owned(),
                    status_summary: e.status_summary.clone(),
                    start_time: wire::epoch(e.started),
                    last_update_time: wire::epoch(e.updated),
                    source_revisions: e
                        .artifact_revisions
                        .iter()
                        .map(|r| wire::SourceRevision {
                            action_name: r.action_name.clone(),
                            revision_id: r.revision_id.clone(),
                            revision_summary: r.summary.clone(),
                        })
                        .collect(),
                    trigger: e.trigger.clone(),
                    stop_trigger: e
                        .stop
                        .as_ref()
                        .and_then(|s| s.reason.clone())
                        .map(|reason| wire::StopExecutionTrigger { reason }),
                    execution_mode: run.definition.execution_mode.as_str().to_owned(),
                    execution_type: "STANDARD".to_owned(),
                })
                .collect(),
            next_token,
        })
    }

    pub fn job_details(&self, job_id: &str) -> Result<wire::GetJobDetailsOutput, ApiError> {
        let job = self.jobs.get(job_id).ok_or_else(|| job_not_found(job_id))?;
        Ok(wire::GetJobDetailsOutput {
            job_details: wire::JobDetails {
                id: job_id.to_owned(),
                data: job.data.clone(),
                account_id: self.settings.account_id.clone(),
            },
        })
    }

    pub fn get_pipeline(
        &self,
        name: &str,
        version: Option<i64>,
    ) -> Result<wire::GetPipelineOutput, ApiError> {
        let run = self.pipeline(name)?;
        if version.is_some_and(|v| v != 1) {
            return Err(ApiError::new(
                ErrorCode::PipelineVersionNotFound,
                "The stand-in holds version 1 of each pipeline only",
            ));
        }
        let d = &run.definition;
        Ok(wire::GetPipelineOutput {
            pipeline: wire::PipelineDeclaration {
                name: d.name.clone(),
                role_arn: d.role_arn.clone(),
                artifact_store: wire::ArtifactStore {
                    store_type: "S3".to_owned(),
                    location: d.artifact_bucket.clone(),
                },
                stages: d
                    .stages
                    .iter()
                    .map(|s| wire::StageDeclaration {
                        name: s.name.clone(),
                        actions: s.actions.iter().map(action_declaration).collect(),
                    })
                    .collect(),
                version: 1,
                execution_mode: d.execution_mode.as_str().to_owned(),
                pipeline_type: d.pipeline_type.as_str().to_owned(),
                variables: d
                    .variables
                    .iter()
                    .map(|v| wire::PipelineVariableDeclaration {
                        name: v.name.clone(),
                        default_value: v.default_value.clone(),
                        description: v.description.clone(),
                    })
                    .collect(),
            },
            metadata: wire::PipelineMetadata {
                pipeline_arn: self.pipeline_arn(&d.name),
                created: wire::epoch(run.created),
                updated: wire::epoch(run.created),
            },
        })
    }

    pub fn list_pipelines(
        &self,
        input: &wire::ListPipelinesInput,
    ) -> Result<wire::ListPipelinesOutput, ApiError> {
        let all: Vec<&PipelineRun> = self.pipelines.values().collect();
        let (runs, next_token) = page(
            &all,
            |run| &run.definition.name,
            input.max_results,
            1000,
            input.next_token.as_deref(),
        )?;
        Ok(wire::ListPipelinesOutput {
            pipelines: runs
                .iter()
                .map(|run| wire::PipelineSummary {
                    name: run.definition.name.clone(),
                    version: 1,
                    pipeline_type: run.definition.pipeline_type.as_str().to_owned(),
                    execution_mode: run.definition.execution_mode.as_str().to_owned(),
                    created: wire::epoch(run.created),
                    updated: wire::epoch(run.created),
                })
                .collect(),
            next_token,
        })
    }

    fn pipeline_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:codepipeline:{}:{}:{name}",
            self.settings.region, self.settings.account_id
        )
    }
}

impl PipelineRun {
    fn index(&self, execution_id: &str) -> Result<usize, ApiError> {
        self.by_id.get(execution_id).copied().ok_or_else(|| {
            ApiError::new(
                ErrorCode::PipelineExecutionNotFound,
                format!(
                    "Pipeline execution {execution_id} not found in pipeline {}",
                    self.definition.name
                ),
            )
        })
    }

    fn get(&self, execution_id: &str) -> Option<&Execution> {
        self.by_id.get(execution_id).map(|i| &self.executions[*i])
    }

    /// The execution reaches the front of `stage` and waits to enter it.
    fn arrive(&mut self, index: usize, stage: usize, cx: &mut Cx) {
        let id = self.executions[index].id.clone();
        self.executions[index].place = Place::Waiting(stage);
        match self.definition.execution_mode {
            ExecutionMode::Parallel => {}
            ExecutionMode::Queued => self.waiting[stage].push_back(id),
            ExecutionMode::Superseded => {
                // One execution waits in front of a stage; the more recent one wins.
                let waiting: Vec<String> = self.waiting[stage].drain(..).collect();
                let mut winner = (index, id);
                for other in waiting {
                    let Some(&other_index) = self.by_id.get(&other) else {
                        continue;
                    };
                    let other = (other_index, other);
                    // Start order is index order: the higher index is the more recent.
                    let (older, newer) = if other.0 < winner.0 {
                        (other, winner)
                    } else {
                        (winner, other)
                    };
                    let summary = format!("Superseded by pipeline execution {}", newer.1);
                    self.finish(older.0, ExecutionStatus::Superseded, Some(summary), cx.now);
                    winner = newer;
                }
                self.waiting[stage].push_back(winner.1);
            }
        }
    }

    fn can_enter(&self, stage: usize, id: &str) -> bool {
        match self.definition.execution_mode {
            ExecutionMode::Parallel => true,
            _ => {
                self.locks[stage].is_none() && self.waiting[stage].front().is_some_and(|w| w == id)
            }
        }
    }

    /// Brings every execution as far as it can go without outside input.
    fn settle(&mut self, cx: &mut Cx) {
        loop {
            let mut changed = false;
            for index in 0..self.executions.len() {
                changed |= self.step(index, cx);
            }
            if !changed {
                break;
            }
        }
    }

    fn step(&mut self, index: usize, cx: &mut Cx) -> bool {
        let execution = &self.executions[index];
        if !execution.status.is_active() {
            return false;
        }
        match execution.place {
            Place::Done => false,
            Place::Waiting(stage) => {
                if !self.can_enter(stage, &execution.id.clone()) {
                    return false;
                }
                self.enter(index, stage, cx);
                true
            }
            Place::InStage(stage) => self.step_in_stage(index, stage, cx),
        }
    }

    fn enter(&mut self, index: usize, stage: usize, cx: &mut Cx) {
        let definition = Arc::clone(&self.definition);
        let id = self.executions[index].id.clone();
        if self.waiting[stage].front() == Some(&id) {
            self.waiting[stage].pop_front();
        }
        if definition.execution_mode != ExecutionMode::Parallel {
            self.locks[stage] = Some(id.clone());
        }
        self.latest[stage] = Some(id);
        let first = definition.stages[stage]
            .actions
            .iter()
            .map(|a| a.run_order)
            .min()
            .unwrap_or(1);
        let execution = &mut self.executions[index];
        execution.place = Place::InStage(stage);
        execution.updated = cx.now;
        execution.stages[stage] = Some(StageRun {
            status: StageStatus::InProgress,
            run_order: first,
            actions: definition.stages[stage]
                .actions
                .iter()
                .map(|_| None)
                .collect(),
        });
        self.start_group(index, stage, first, cx);
    }

    fn step_in_stage(&mut self, index: usize, stage: usize, cx: &mut Cx) -> bool {
        let definition = Arc::clone(&self.definition);
        let execution = &mut self.executions[index];
        let Some(stage_run) = execution.stages[stage].as_mut() else {
            return false;
        };
        let actions: Vec<&ActionRun> = stage_run.actions.iter().flatten().collect();
        if actions.iter().any(|a| a.status == ActionStatus::InProgress) {
            return false;
        }
        let failure = actions
            .iter()
            .find(|a| a.status == ActionStatus::Failed)
            .map(|a| {
                a.error
                    .as_ref()
                    .map(|e| e.message.clone())
                    .unwrap_or_default()
            });
        if let Some(message) = failure {
            stage_run.status = StageStatus::Failed;
            self.release(index, stage);
            self.finish(index, ExecutionStatus::Failed, Some(message), cx.now);
            return true;
        }
        if execution.stop.is_some() {
            stage_run.status = StageStatus::Stopped;
            self.release(index, stage);
            self.finish(index, ExecutionStatus::Stopped, None, cx.now);
            return true;
        }
        let current = stage_run.run_order;
        let next = definition.stages[stage]
            .actions
            .iter()
            .map(|a| a.run_order)
            .filter(|o| *o > current)
            .min();
        if let Some(next) = next {
            stage_run.run_order = next;
            self.start_group(index, stage, next, cx);
            return true;
        }
        stage_run.status = StageStatus::Succeeded;
        execution.updated = cx.now;
        self.release(index, stage);
        if stage + 1 < definition.stages.len() {
            self.arrive(index, stage + 1, cx);
        } else {
            self.finish(index, ExecutionStatus::Succeeded, None, cx.now);
        }
        true
    }

    fn release(&mut self, index: usize, stage: usize) {
        if self.locks[stage].as_deref() == Some(self.executions[index].id.as_str()) {
            self.locks[stage] = None;
        }
    }

    fn finish(
        &mut self,
        index: usize,
        status: ExecutionStatus,
        summary: Option<String>,
        now: OffsetDateTime,
    ) {
        let execution = &mut self.executions[index];
        execution.status = status;
        execution.status_summary = summary;
        execution.place = Place::Done;
        execution.updated = now;
    }

    fn start_group(&mut self, index: usize, stage: usize, run_order: u32, cx: &mut Cx) {
        let definition = Arc::clone(&self.definition);
        for (a, action) in definition.stages[stage].actions.iter().enumerate() {
            if action.run_order == run_order {
                self.start_action(index, stage, a, action, cx);
            }
        }
    }

    fn start_action(
        &mut self,
        index: usize,
        stage: usize,
        a: usize,
        action: &ActionDefinition,
        cx: &mut Cx,
    ) {
        let definition = Arc::clone(&self.definition);
        let key = ActionKey {
            pipeline: definition.name.clone(),
            execution_id: self.executions[index].id.clone(),
            stage,
            action: a,
        };
        let execution = &mut self.executions[index];
        let mut run = ActionRun::new(cx.now);
        match resolve_variables_in(&action.configuration, execution) {
            Ok(configuration) => run.configuration = configuration,
            Err(message) => {
                run.fail("ConfigurationError", message, cx.now);
                set_action_run(execution, stage, a, run);
                return;
            }
        }
        match &action.kind {
            ActionKind::S3Source { .. } => {
                let Some(output) = action.output_artifacts.first() else {
                    run.fail(
                        "ConfigurationError",
                        "An S3 source action needs an output artifact",
                        cx.now,
                    );
                    set_action_run(execution, stage, a, run);
                    return;
                };
                let overrides = execution.overrides.get(&action.name);
                let object_key = overrides
                    .and_then(|o| o.object_key.clone())
                    .or_else(|| run.configuration.get("S3ObjectKey").cloned())
                    .unwrap_or_default();
                cx.effects.push(Effect::FetchSource(SourceFetch {
                    key,
                    bucket: run
                        .configuration
                        .get("S3Bucket")
                        .cloned()
                        .unwrap_or_default(),
                    object_key,
                    version_id: overrides.and_then(|o| o.version_id.clone()),
                    artifact_bucket: definition.artifact_bucket.clone(),
                    artifact_key: artifact_key(&definition.name, output),
                }));
                set_action_run(execution, stage, a, run);
            }
            ActionKind::LambdaInvoke { .. } => {
                let mut inputs = Vec::new();
                for name in &action.input_artifacts {
                    match execution.artifacts.get(name) {
                        Some(artifact) => inputs.push(artifact.clone()),
                        None => {
                            run.fail(
                                "ConfigurationError",
                                format!("The input artifact {name} was not produced by an earlier action"),
                                cx.now,
                            );
                            set_action_run(execution, stage, a, run);
                            return;
                        }
                    }
                }
                run.inputs = inputs;
                run.outputs = action
                    .output_artifacts
                    .iter()
                    .map(|name| {
                        artifact(
                            name,
                            None,
                            &definition.artifact_bucket,
                            &artifact_key(&definition.name, name),
                        )
                    })
                    .collect();
                set_action_run(execution, stage, a, run);
                self.create_job(index, &key, None, cx);
            }
            ActionKind::ManualApproval {
                notification_topic_logical_id,
                ..
            } => {
                let token = uuid::Uuid::new_v4().to_string();
                let after = action
                    .timeout_in_minutes
                    .map(|m| Duration::from_secs(u64::from(m) * 60))
                    .unwrap_or(cx.settings.approval_timeout);
                run.approval_token = Some(token.clone());
                let notice = ApprovalNotice {
                    region: cx.settings.region.clone(),
                    pipeline_name: definition.name.clone(),
                    stage_name: definition.stages[stage].name.clone(),
                    action_name: action.name.clone(),
                    token: token.clone(),
                    expires: cx.now + after,
                    external_entity_link: run.configuration.get("ExternalEntityLink").cloned(),
                    custom_data: run.configuration.get("CustomData").cloned(),
                };
                let topic_arn = run.configuration.get("NotificationArn").cloned();
                set_action_run(execution, stage, a, run);
                let topic = notification_topic_logical_id.as_ref().zip(topic_arn);
                if let Some((topic, topic_arn)) = topic {
                    let (subject, message) = (notice.subject(), notice.message());
                    for function in cx.subscribers.get(topic).into_iter().flatten() {
                        cx.effects.push(Effect::Notify {
                            function: function.clone(),
                            event: events::sns_event(
                                &topic_arn,
                                &cx.settings.region,
                                &subject,
                                &message,
                                cx.now,
                            ),
                        });
                    }
                }
                cx.effects.push(Effect::ApprovalTimer { key, token, after });
            }
            ActionKind::Unsupported => {
                let t = &action.action_type;
                run.fail(
                    "ConfigurationError",
                    format!(
                        "The local CodePipeline stand-in does not run {}/{}/{} actions",
                        t.category, t.owner, t.provider
                    ),
                    cx.now,
                );
                set_action_run(execution, stage, a, run);
            }
        }
    }

    /// A job for the Lambda action at `key`, delivered as a `CodePipeline.job` event.
    fn create_job(
        &mut self,
        index: usize,
        key: &ActionKey,
        continuation_token: Option<String>,
        cx: &mut Cx,
    ) {
        let definition = Arc::clone(&self.definition);
        let action = &definition.stages[key.stage].actions[key.action];
        let ActionKind::LambdaInvoke {
            function_logical_id,
        } = &action.kind
        else {
            return;
        };
        let Some(run) = action_run_mut(&mut self.executions[index], key.stage, key.action) else {
            return;
        };
        let job_id = uuid::Uuid::new_v4().to_string();
        let data = wire::JobData {
            action_type_id: wire_action_type(&action.action_type),
            action_configuration: wire::ActionConfiguration {
                configuration: run.configuration.clone(),
            },
            pipeline_context: wire::PipelineContext {
                pipeline_name: definition.name.clone(),
                stage: wire::StageContext {
                    name: definition.stages[key.stage].name.clone(),
                },
                action: wire::ActionContext {
                    name: action.name.clone(),
                    action_execution_id: run.action_execution_id.clone(),
                },
                pipeline_arn: format!(
                    "arn:aws:codepipeline:{}:{}:{}",
                    cx.settings.region, cx.settings.account_id, definition.name
                ),
                pipeline_execution_id: key.execution_id.clone(),
            },
            input_artifacts: run.inputs.clone(),
            output_artifacts: run.outputs.clone(),
            // moto accepts any credentials; AWS would hand out short-lived ones scoped to the
            // artifact store.
            artifact_credentials: wire::AwsSessionCredentials {
                access_key_id: "ASIALOCALSTANDIN0000".to_owned(),
                secret_access_key: "local-stand-in-secret".to_owned(),
                session_token: "local-stand-in-session".to_owned(),
            },
            continuation_token,
        };
        run.job_id = Some(job_id.clone());
        let event = events::job_event(&job_id, &cx.settings.account_id, &data);
        let delay = if data.continuation_token.is_some() {
            cx.settings.continuation_delay
        } else {
            Duration::ZERO
        };
        cx.jobs.insert(
            job_id.clone(),
            Job {
                key: key.clone(),
                status: JobStatus::InProgress,
                data,
            },
        );
        cx.effects.push(Effect::InvokeJob {
            function: function_logical_id.clone(),
            job_id: job_id.clone(),
            event,
            delay,
        });
        cx.effects.push(Effect::JobTimer {
            job_id,
            after: cx.settings.job_timeout + delay,
        });
    }
}

/// The action run at `stage`/`action` if it is still in progress.
fn action_run_mut(
    execution: &mut Execution,
    stage: usize,
    action: usize,
) -> Option<&mut ActionRun> {
    if !execution.status.is_active() {
        return None;
    }
    action_run_any(execution, stage, action).filter(|a| a.status == ActionStatus::InProgress)
}

/// The latest run of the action at `stage`/`action` in this execution, whatever its status.
fn action_run_any(
    execution: &mut Execution,
    stage: usize,
    action: usize,
) -> Option<&mut ActionRun> {
    execution
        .stages
        .get_mut(stage)?
        .as_mut()?
        .actions
        .get_mut(action)?
        .as_mut()
}

fn set_action_run(execution: &mut Execution, stage: usize, action: usize, run: ActionRun) {
    if let Some(slot) = execution.stages[stage]
        .as_mut()
        .and_then(|s| s.actions.get_mut(action))
    {
        *slot = Some(run);
    }
}

/// One page of `items`, as CodePipeline's List operations page them: `max_results` items (1 to
/// `limit`; `limit` when not given) from the one whose key is `next_token`, and the key of the
/// first item after the page as the next token.
fn page<'a, T>(
    items: &'a [T],
    key: impl Fn(&T) -> &String,
    max_results: Option<i64>,
    limit: i64,
    next_token: Option<&str>,
) -> Result<(&'a [T], Option<String>), ApiError> {
    let max = match max_results {
        None => limit,
        Some(n) if (1..=limit).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::validation(format!(
                "maxResults must be 1 to {limit}, not {n}"
            )));
        }
    };
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let start = match next_token {
        None => 0,
        Some(token) => items.iter().position(|i| key(i) == token).ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidNextToken, "The next token is not valid")
        })?,
    };
    let end = start.saturating_add(max).min(items.len());
    Ok((&items[start..end], items.get(end).map(|i| key(i).clone())))
}

fn job_not_found(job_id: &str) -> ApiError {
    ApiError::new(ErrorCode::JobNotFound, format!("Job {job_id} not found"))
}

fn invalid_job_state(job_id: &str, state: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidJobState,
        format!("Job {job_id} is in state {state}"),
    )
}

fn artifact(name: &str, revision: Option<String>, bucket: &str, key: &str) -> wire::Artifact {
    wire::Artifact {
        name: name.to_owned(),
        revision,
        location: wire::ArtifactLocation {
            location_type: "S3".to_owned(),
            s3_location: wire::S3ArtifactLocation {
                bucket_name: bucket.to_owned(),
                object_key: key.to_owned(),
            },
        },
    }
}

/// `<pipeline name, 20 chars>/<artifact name, 20 chars>/<random>`, as CodePipeline names
/// artifact objects.
fn artifact_key(pipeline: &str, artifact: &str) -> String {
    let short = |s: &str| s.chars().take(20).collect::<String>();
    let random: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(7)
        .collect();
    format!("{}/{}/{random}", short(pipeline), short(artifact))
}

fn stage_status(execution: &Execution, stage: &StageRun) -> &'static str {
    match stage.status {
        StageStatus::InProgress if execution.status == ExecutionStatus::Stopping => "Stopping",
        StageStatus::InProgress => "InProgress",
        StageStatus::Succeeded => "Succeeded",
        StageStatus::Failed => "Failed",
        StageStatus::Stopped => "Stopped",
    }
}

fn action_state(action: &ActionDefinition, run: Option<&ActionRun>) -> wire::ActionState {
    wire::ActionState {
        action_name: action.name.clone(),
        current_revision: run
            .and_then(|r| r.revision.as_ref())
            .map(|(id, change, created)| wire::ActionRevision {
                revision_id: id.clone(),
                revision_change_id: change.clone(),
                created: wire::epoch(*created),
            }),
        latest_execution: run.map(|r| wire::ActionExecution {
            action_execution_id: r.action_execution_id.clone(),
            status: r.status.as_str().to_owned(),
            summary: r.summary.clone(),
            last_status_change: wire::epoch(r.last_status_change),
            // AWS shows the token of a pending approval here, so that it can be decided.
            token: r
                .approval_token
                .clone()
                .filter(|_| r.status == ActionStatus::InProgress),
            external_execution_id: r.external_execution_id.clone(),
            percent_complete: r.percent_complete,
            error_details: r.error.clone(),
        }),
    }
}

fn wire_action_type(t: &ActionTypeId) -> wire::ActionTypeId {
    wire::ActionTypeId {
        category: t.category.clone(),
        owner: t.owner.clone(),
        provider: t.provider.clone(),
        version: t.version.clone(),
    }
}

fn action_declaration(a: &ActionDefinition) -> wire::ActionDeclaration {
    let named = |names: &[String]| {
        names
            .iter()
            .map(|n| wire::NamedArtifact { name: n.clone() })
            .collect()
    };
    wire::ActionDeclaration {
        name: a.name.clone(),
        action_type_id: wire_action_type(&a.action_type),
        run_order: a.run_order,
        configuration: a.configuration.clone(),
        input_artifacts: named(&a.input_artifacts),
        output_artifacts: named(&a.output_artifacts),
        namespace: a.namespace.clone(),
        region: a.region.clone(),
        role_arn: a.role_arn.clone(),
        timeout_in_minutes: a.timeout_in_minutes,
    }
}

/// Declared variables with the values given at start, or their defaults.
fn resolve_pipeline_variables(
    definition: &PipelineDefinition,
    given: &[wire::PipelineVariable],
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut values = BTreeMap::new();
    for variable in given {
        if !definition.variables.iter().any(|d| d.name == variable.name) {
            return Err(ApiError::validation(format!(
                "The pipeline variable {} is not declared by pipeline {}",
                variable.name, definition.name
            )));
        }
        if values
            .insert(variable.name.clone(), variable.value.clone())
            .is_some()
        {
            return Err(ApiError::validation(format!(
                "The pipeline variable {} is given twice",
                variable.name
            )));
        }
    }
    for declared in &definition.variables {
        if values.contains_key(&declared.name) {
            continue;
        }
        match &declared.default_value {
            Some(default) => {
                values.insert(declared.name.clone(), default.clone());
            }
            None => {
                return Err(ApiError::validation(format!(
                    "The pipeline variable {} has no default value and was not given",
                    declared.name
                )));
            }
        }
    }
    Ok(values)
}

fn source_overrides(
    definition: &PipelineDefinition,
    given: &[wire::SourceRevisionOverride],
) -> Result<BTreeMap<String, SourceOverride>, ApiError> {
    let mut overrides: BTreeMap<String, SourceOverride> = BTreeMap::new();
    for o in given {
        let action = definition
            .stages
            .iter()
            .flat_map(|s| &s.actions)
            .find(|a| a.name == o.action_name)
            .ok_or_else(|| {
                ApiError::validation(format!("No action named {} in the pipeline", o.action_name))
            })?;
        let ActionKind::S3Source {
            allow_object_key_override,
            ..
        } = &action.kind
        else {
            return Err(ApiError::validation(format!(
                "{} is not an S3 source action; the stand-in overrides S3 sources only",
                o.action_name
            )));
        };
        let entry = overrides.entry(o.action_name.clone()).or_default();
        match o.revision_type.as_str() {
            "S3_OBJECT_VERSION_ID" => entry.version_id = Some(o.revision_value.clone()),
            "S3_OBJECT_KEY" if *allow_object_key_override => {
                entry.object_key = Some(o.revision_value.clone())
            }
            "S3_OBJECT_KEY" => {
                return Err(ApiError::validation(format!(
                    "{} does not allow S3_OBJECT_KEY overrides (AllowOverrideForS3ObjectKey)",
                    o.action_name
                )));
            }
            other => {
                return Err(ApiError::validation(format!(
                    "Revision type {other} does not apply to the S3 source action {}",
                    o.action_name
                )));
            }
        }
    }
    Ok(overrides)
}

/// Replaces `#{variables.X}`, `#{codepipeline.PipelineExecutionId}` and `#{Namespace.X}` in
/// every configuration value; an unknown variable fails the action, as in AWS.
///
/// Then holds the resolved configuration to CodePipeline's limits: each value at most
/// [`CONFIGURATION_VALUE_MAX_CHARS`], all of them at most [`RESOLVED_CONFIGURATION_MAX_BYTES`].
/// Documented: the 1,000-character limit on a value as written in the pipeline ("do not exceed
/// the 1000-character limit for the configuration fields. A validation error is returned when
/// this limit is exceeded", user guide, "Variables"), and the 100 KB limit on the *resolved*
/// configuration. Not documented either way: whether the 1,000 characters also hold once the
/// variables are resolved, and how an action over a limit at run time ends. Assumed here, so
/// that what passes locally stays within every reading of the limits: both are checked on the
/// resolved values, and a configuration over one fails the action when it starts, with
/// `ConfigurationError`, as an unresolvable variable does.
fn resolve_variables_in(
    configuration: &BTreeMap<String, String>,
    execution: &Execution,
) -> Result<BTreeMap<String, String>, String> {
    let resolved = configuration
        .iter()
        .map(|(key, value)| Ok((key.clone(), resolve_variables(value, execution)?)))
        .collect::<Result<BTreeMap<String, String>, String>>()?;
    check_resolved_configuration(&resolved)?;
    Ok(resolved)
}

/// The resolved configuration within CodePipeline's limits, or why not.
fn check_resolved_configuration(configuration: &BTreeMap<String, String>) -> Result<(), String> {
    for (key, value) in configuration {
        let chars = value.chars().count();
        if chars > CONFIGURATION_VALUE_MAX_CHARS {
            return Err(format!(
                "The action configuration value {key} is {chars} characters long once its \
                 variables are resolved; CodePipeline allows at most \
                 {CONFIGURATION_VALUE_MAX_CHARS} characters per configuration value"
            ));
        }
    }
    let bytes: usize = configuration.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > RESOLVED_CONFIGURATION_MAX_BYTES {
        return Err(format!(
            "The action's resolved configuration is {bytes} bytes; CodePipeline allows at most \
             {RESOLVED_CONFIGURATION_MAX_BYTES} bytes"
        ));
    }
    Ok(())
}

fn resolve_variables(text: &str, execution: &Execution) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("#{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let reference = &after[..end];
        let Some((namespace, name)) = reference.split_once('.') else {
            return Err(format!(
                "The variable reference #{{{reference}}} has no namespace"
            ));
        };
        let value = match namespace {
            "variables" => execution.variables.get(name).cloned(),
            "codepipeline" if name == "PipelineExecutionId" => Some(execution.id.clone()),
            _ => execution
                .namespaces
                .get(namespace)
                .and_then(|vars| vars.get(name))
                .cloned(),
        };
        match value {
            Some(value) => out.push_str(&value),
            None => return Err(format!("Unable to resolve the variable #{{{reference}}}")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod transitions;

#[cfg(test)]
mod tests {
    use super::*;

    fn execution() -> Execution {
        Execution {
            id: "exec-1".into(),
            status: ExecutionStatus::InProgress,
            status_summary: None,
            started: OffsetDateTime::UNIX_EPOCH,
            updated: OffsetDateTime::UNIX_EPOCH,
            trigger: wire::ExecutionTrigger {
                trigger_type: "StartPipelineExecution".into(),
                trigger_detail: String::new(),
            },
            variables: BTreeMap::from([("ReleaseId".into(), "r-1".into())]),
            overrides: BTreeMap::new(),
            artifacts: BTreeMap::new(),
            artifact_revisions: Vec::new(),
            namespaces: BTreeMap::from([(
                "SourceVariables".into(),
                BTreeMap::from([("VersionId".into(), "v-9".into())]),
            )]),
            place: Place::Done,
            stages: Vec::new(),
            stop: None,
        }
    }

    #[test]
    fn resolves_pipeline_namespace_and_builtin_variables() {
        let e = execution();
        assert_eq!(
            resolve_variables(
                r##"{"r":"#{variables.ReleaseId}","v":"#{SourceVariables.VersionId}","e":"#{codepipeline.PipelineExecutionId}"}"##,
                &e
            ),
            Ok(r##"{"r":"r-1","v":"v-9","e":"exec-1"}"##.to_owned())
        );
        assert_eq!(
            resolve_variables("no variables", &e),
            Ok("no variables".to_owned())
        );
        assert_eq!(
            resolve_variables("dangling #{", &e),
            Ok("dangling #{".to_owned())
        );
    }

    #[test]
    fn an_unknown_variable_is_an_error() {
        let e = execution();
        let err = resolve_variables("#{Missing.X}", &e).expect_err("unknown namespace");
        assert!(err.contains("#{Missing.X}"), "{err}");
        assert!(resolve_variables("#{variables.Nope}", &e).is_err());
        assert!(resolve_variables("#{nonamespace}", &e).is_err());
    }

    #[test]
    fn a_value_over_1000_characters_once_resolved_fails_the_action_naming_it() {
        let mut e = execution();
        let configuration = BTreeMap::from([
            ("FunctionName".to_owned(), "TrafficFunction".to_owned()),
            (
                "UserParameters".to_owned(),
                r##"{"listener":"#{IntDeploy.ShipgateProdListener}"}"##.to_owned(),
            ),
        ]);
        // The value as written is short; what counts is its length with the variable resolved.
        let around = r##"{"listener":""}"##.chars().count();
        let arn = |chars: usize| "a".repeat(chars - around);
        for (listener, fits) in [
            (arn(CONFIGURATION_VALUE_MAX_CHARS), true),
            (arn(CONFIGURATION_VALUE_MAX_CHARS + 1), false),
            // Counted in characters, not bytes.
            ("é".repeat(CONFIGURATION_VALUE_MAX_CHARS - around), true),
        ] {
            e.namespaces.insert(
                "IntDeploy".into(),
                BTreeMap::from([("ShipgateProdListener".into(), listener.clone())]),
            );
            let resolved = resolve_variables_in(&configuration, &e);
            if fits {
                let resolved = resolved.expect("within the limit");
                assert_eq!(
                    resolved["UserParameters"].chars().count(),
                    CONFIGURATION_VALUE_MAX_CHARS
                );
            } else {
                let err = resolved.expect_err("over the limit");
                assert!(
                    err.contains("UserParameters is 1001 characters") && err.contains("1000"),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn a_resolved_configuration_over_100_kb_fails_the_action() {
        let e = execution();
        // 110 values of 1,000 characters: each within its own limit, 110,000 bytes together.
        let configuration: BTreeMap<String, String> = (0..110)
            .map(|i| {
                (
                    format!("Key{i:03}"),
                    "v".repeat(CONFIGURATION_VALUE_MAX_CHARS),
                )
            })
            .collect();
        let err = resolve_variables_in(&configuration, &e).expect_err("over 100 KB");
        assert!(err.contains("110660 bytes"), "{err}");
        let fits: BTreeMap<String, String> = configuration.into_iter().take(100).collect();
        assert!(resolve_variables_in(&fits, &e).is_ok());
    }

    #[test]
    fn artifact_keys_follow_codepipelines_naming() {
        let key = artifact_key("a-very-long-pipeline-name-indeed", "SourceOutput");
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts[0], "a-very-long-pipeline");
        assert_eq!(parts[1], "SourceOutput");
        assert_eq!(parts[2].len(), 7);
    }
}
