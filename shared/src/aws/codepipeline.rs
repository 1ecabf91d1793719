//! CodePipeline: starting an execution for a release, and answering Lambda-invoke jobs.

use std::collections::BTreeMap;

use aws_sdk_codepipeline::Client;
use aws_sdk_codepipeline::types::{
    ActionExecution, FailureDetails, FailureType, PipelineVariable, SourceRevisionOverride,
    SourceRevisionType, StageState,
};

use crate::error::{AwsError, aws_err};

fn build_err(
    operation: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> AwsError {
    AwsError {
        service: "CodePipeline",
        operation,
        code: None,
        message: e.to_string(),
        retryable: false,
        source: Box::new(e),
    }
}

/// What starts one execution for one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRequest {
    pub pipeline: String,
    /// Pipeline variables (V2), e.g. the release id, app and version.
    pub variables: BTreeMap<String, String>,
    /// The source action to pin, and the S3 object version it must use.
    pub source_action: String,
    pub source_version_id: String,
    /// Idempotency token: the same token never starts a second execution.
    pub client_request_token: String,
}

/// `StartPipelineExecution`; returns the execution id.
pub async fn start_execution(cp: &Client, req: &ExecutionRequest) -> Result<String, AwsError> {
    let mut variables = Vec::with_capacity(req.variables.len());
    for (name, value) in &req.variables {
        variables.push(
            PipelineVariable::builder()
                .name(name)
                .value(value)
                .build()
                .map_err(|e| build_err("StartPipelineExecution", e))?,
        );
    }
    let revision = SourceRevisionOverride::builder()
        .action_name(&req.source_action)
        .revision_type(SourceRevisionType::S3ObjectVersionId)
        .revision_value(&req.source_version_id)
        .build()
        .map_err(|e| build_err("StartPipelineExecution", e))?;
    let out = cp
        .start_pipeline_execution()
        .name(&req.pipeline)
        .set_variables(Some(variables))
        .source_revisions(revision)
        .client_request_token(&req.client_request_token)
        .send()
        .await
        .map_err(aws_err("CodePipeline", "StartPipelineExecution"))?;
    out.pipeline_execution_id()
        .map(str::to_owned)
        .ok_or_else(|| AwsError {
            service: "CodePipeline",
            operation: "StartPipelineExecution",
            code: None,
            message: "the response named no pipeline execution id".into(),
            retryable: true,
            source: "missing pipelineExecutionId".into(),
        })
}

/// `PutJobSuccessResult`, with a continuation token when the work is not finished yet (the
/// action is invoked again with it), output variables for later actions, and a summary the
/// pipeline shows with the action (CodePipeline keeps 2048 characters of it).
pub async fn put_job_success(
    cp: &Client,
    job_id: &str,
    continuation_token: Option<&str>,
    output_variables: &BTreeMap<String, String>,
    summary: Option<&str>,
) -> Result<(), AwsError> {
    let details = summary.map(|s| {
        aws_sdk_codepipeline::types::ExecutionDetails::builder()
            .summary(s.chars().take(2048).collect::<String>())
            .build()
    });
    let vars = (!output_variables.is_empty()).then(|| {
        output_variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    });
    cp.put_job_success_result()
        .job_id(job_id)
        .set_continuation_token(continuation_token.map(str::to_owned))
        .set_output_variables(vars)
        .set_execution_details(details)
        .send()
        .await
        .map_err(aws_err("CodePipeline", "PutJobSuccessResult"))?;
    Ok(())
}

/// Why a job failed, as CodePipeline classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFailureKind {
    JobFailed,
    ConfigurationError,
    PermissionError,
}

/// `PutJobFailureResult` with a message a person can act on (CodePipeline caps it at 5000 chars).
pub async fn put_job_failure(
    cp: &Client,
    job_id: &str,
    kind: JobFailureKind,
    message: &str,
    execution_id: Option<&str>,
) -> Result<(), AwsError> {
    let message: String = message.chars().take(5000).collect();
    let details = FailureDetails::builder()
        .r#type(match kind {
            JobFailureKind::JobFailed => FailureType::JobFailed,
            JobFailureKind::ConfigurationError => FailureType::ConfigurationError,
            JobFailureKind::PermissionError => FailureType::PermissionError,
        })
        .message(message)
        .set_external_execution_id(execution_id.map(str::to_owned))
        .build()
        .map_err(|e| build_err("PutJobFailureResult", e))?;
    cp.put_job_failure_result()
        .job_id(job_id)
        .failure_details(details)
        .send()
        .await
        .map_err(aws_err("CodePipeline", "PutJobFailureResult"))?;
    Ok(())
}

/// An approver's answer to a manual approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalDecision {
    Approved,
    Rejected,
}

/// A manual approval action of a pipeline, and the token it waits with: what decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalAction<'a> {
    pub pipeline: &'a str,
    pub stage: &'a str,
    pub action: &'a str,
    pub token: &'a str,
}

/// `PutApprovalResult`. The summary is shown in the pipeline's history (CodePipeline caps it at
/// 512 characters). Errors keep CodePipeline's code: `InvalidApprovalTokenException` (the
/// approval is not waiting with this token any more), `ApprovalAlreadyCompletedException`,
/// `ActionNotFoundException`, `StageNotFoundException`, `PipelineNotFoundException`.
pub async fn put_approval_result(
    cp: &Client,
    approval: ApprovalAction<'_>,
    decision: ApprovalDecision,
    summary: &str,
) -> Result<(), AwsError> {
    use aws_sdk_codepipeline::types::{ApprovalResult, ApprovalStatus};
    let summary: String = summary.chars().take(512).collect();
    let result = ApprovalResult::builder()
        .summary(summary)
        .status(match decision {
            ApprovalDecision::Approved => ApprovalStatus::Approved,
            ApprovalDecision::Rejected => ApprovalStatus::Rejected,
        })
        .build()
        .map_err(|e| build_err("PutApprovalResult", e))?;
    cp.put_approval_result()
        .pipeline_name(approval.pipeline)
        .stage_name(approval.stage)
        .action_name(approval.action)
        .token(approval.token)
        .result(result)
        .send()
        .await
        .map_err(aws_err("CodePipeline", "PutApprovalResult"))?;
    Ok(())
}

/// What `GetPipelineState` says of one approval action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalActionState {
    /// The execution the stage is running (or last ran).
    pub execution_id: Option<String>,
    /// The action's latest status (`InProgress` while it waits).
    pub status: Option<String>,
    /// Whether the action is waiting with exactly this token.
    pub waiting_with_token: bool,
}

/// The latest execution of `action` in a stage of `GetPipelineState`'s answer.
pub fn latest_action_execution<'a>(
    stage: &'a StageState,
    action: &str,
) -> Option<&'a ActionExecution> {
    stage
        .action_states()
        .iter()
        .find(|a| a.action_name() == Some(action))
        .and_then(|a| a.latest_execution())
}

/// `GetPipelineState` for one approval action, compared with its token (never returned).
pub async fn approval_action_state(
    cp: &Client,
    approval: ApprovalAction<'_>,
) -> Result<ApprovalActionState, AwsError> {
    let ApprovalAction {
        pipeline,
        stage,
        action,
        token,
    } = approval;
    let out = cp
        .get_pipeline_state()
        .name(pipeline)
        .send()
        .await
        .map_err(aws_err("CodePipeline", "GetPipelineState"))?;
    let stage_state = out
        .stage_states()
        .iter()
        .find(|s| s.stage_name() == Some(stage));
    let execution_id = stage_state
        .and_then(|s| s.latest_execution())
        .map(|e| e.pipeline_execution_id().to_owned());
    let latest = stage_state.and_then(|s| latest_action_execution(s, action));
    let status = latest
        .and_then(|l| l.status())
        .map(|s| s.as_str().to_owned());
    let waiting_with_token = latest.is_some_and(|l| {
        l.status().map(|s| s.as_str()) == Some("InProgress") && l.token() == Some(token)
    });
    Ok(ApprovalActionState {
        execution_id,
        status,
        waiting_with_token,
    })
}

/// One execution, as `ListPipelineExecutions` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionSummary {
    pub execution_id: String,
    /// `InProgress`, `Stopped`, `Stopping`, `Succeeded`, `Superseded`, `Failed`, …
    pub status: String,
    /// Epoch milliseconds.
    pub started_at_ms: Option<i64>,
}

/// The pipeline's most recent executions, newest first (one page of at most `max` ≤ 100).
pub async fn recent_executions(
    cp: &Client,
    pipeline: &str,
    max: i32,
) -> Result<Vec<ExecutionSummary>, AwsError> {
    let out = cp
        .list_pipeline_executions()
        .pipeline_name(pipeline)
        .max_results(max.clamp(1, 100))
        .send()
        .await
        .map_err(aws_err("CodePipeline", "ListPipelineExecutions"))?;
    Ok(out
        .pipeline_execution_summaries()
        .iter()
        .filter_map(|s| {
            Some(ExecutionSummary {
                execution_id: s.pipeline_execution_id()?.to_owned(),
                status: s
                    .status()
                    .map(|st| st.as_str().to_owned())
                    .unwrap_or_default(),
                started_at_ms: s.start_time().and_then(|t| t.to_millis().ok()),
            })
        })
        .collect())
}

/// The newer execution that replaced `execution_id` in `executions` (newest first), if any: one
/// started after it that is running or went through (`InProgress`, `Stopping`, `Succeeded`).
/// A newer execution that failed, stopped or was itself superseded replaced nothing.
pub fn superseded_by<'a>(
    executions: &'a [ExecutionSummary],
    execution_id: &str,
) -> Option<&'a ExecutionSummary> {
    let ours = executions
        .iter()
        .position(|e| e.execution_id == execution_id);
    let ours_started = ours.and_then(|i| executions[i].started_at_ms);
    executions
        .iter()
        .enumerate()
        .filter(|(i, e)| match (ours, ours_started, e.started_at_ms) {
            (_, Some(ours), Some(theirs)) => theirs > ours,
            // Without times, the list's order (newest first) decides.
            (Some(ours), _, _) => *i < ours,
            // Ours is older than the page: every listed execution is newer.
            (None, _, _) => true,
        })
        .map(|(_, e)| e)
        .filter(|e| e.execution_id != execution_id)
        .find(|e| matches!(e.status.as_str(), "InProgress" | "Stopping" | "Succeeded"))
}

#[cfg(test)]
mod approval_tests {
    use super::*;

    fn exec(id: &str, status: &str, at: i64) -> ExecutionSummary {
        ExecutionSummary {
            execution_id: id.into(),
            status: status.into(),
            started_at_ms: Some(at),
        }
    }

    #[test]
    fn a_newer_running_or_finished_execution_supersedes() {
        let list = [
            exec("c", "InProgress", 300),
            exec("b", "Succeeded", 200),
            exec("a", "InProgress", 100),
        ];
        assert_eq!(superseded_by(&list, "a").unwrap().execution_id, "c");
        assert_eq!(superseded_by(&list, "b").unwrap().execution_id, "c");
        assert!(superseded_by(&list, "c").is_none());
    }

    #[test]
    fn newer_executions_that_went_nowhere_supersede_nothing() {
        let list = [
            exec("d", "Failed", 400),
            exec("c", "Stopped", 300),
            exec("b", "Superseded", 200),
            exec("a", "InProgress", 100),
        ];
        assert!(superseded_by(&list, "a").is_none());
    }

    #[test]
    fn an_execution_older_than_the_page_is_superseded_by_any_live_one() {
        let list = [exec("z", "InProgress", 900)];
        assert_eq!(superseded_by(&list, "a").unwrap().execution_id, "z");
        let list = [exec("z", "Failed", 900)];
        assert!(superseded_by(&list, "a").is_none());
    }
}
