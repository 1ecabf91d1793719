//! CodePipeline: starting an execution for a release, and answering Lambda-invoke jobs.

use std::collections::BTreeMap;

use aws_sdk_codepipeline::Client;
use aws_sdk_codepipeline::types::{
    FailureDetails, FailureType, PipelineVariable, SourceRevisionOverride, SourceRevisionType,
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
/// action is invoked again with it) and output variables for later actions.
pub async fn put_job_success(
    cp: &Client,
    job_id: &str,
    continuation_token: Option<&str>,
    output_variables: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
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
