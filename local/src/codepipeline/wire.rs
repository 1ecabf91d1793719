//! CodePipeline's awsJson1_1 shapes, with the API's member names.
//!
//! Requests are what `aws-sdk-codepipeline` serialises (member names checked against its
//! schemas); responses are what it deserialises. Timestamps are epoch seconds as JSON numbers,
//! the protocol's default. Optional members are `Option`s; [`to_body`] drops the `null`s so a
//! response carries only what is set, as AWS's do.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use time::OffsetDateTime;

/// Epoch seconds with millisecond precision, the awsJson timestamp format.
pub fn epoch(t: OffsetDateTime) -> f64 {
    (t.unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0
}

/// Serialises a response and removes `null` members (recursively).
pub fn to_body<T: Serialize>(value: &T) -> Json {
    let mut json = serde_json::to_value(value).unwrap_or(Json::Object(Default::default()));
    prune_nulls(&mut json);
    json
}

fn prune_nulls(value: &mut Json) {
    match value {
        Json::Object(object) => {
            object.retain(|_, v| !v.is_null());
            object.values_mut().for_each(prune_nulls);
        }
        Json::Array(items) => items.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

// ---- requests ----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartPipelineExecutionInput {
    pub name: String,
    #[serde(default)]
    pub variables: Vec<PipelineVariable>,
    pub client_request_token: Option<String>,
    #[serde(default)]
    pub source_revisions: Vec<SourceRevisionOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineVariable {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRevisionOverride {
    pub action_name: String,
    pub revision_type: String,
    pub revision_value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameInput {
    pub name: String,
    pub version: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPipelineExecutionInput {
    pub pipeline_name: String,
    pub pipeline_execution_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPipelineExecutionsInput {
    pub pipeline_name: String,
    pub max_results: Option<i64>,
    pub filter: Option<PipelineExecutionFilter>,
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineExecutionFilter {
    pub succeeded_in_stage: Option<SucceededInStageFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SucceededInStageFilter {
    pub stage_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPipelinesInput {
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopPipelineExecutionInput {
    pub pipeline_name: String,
    pub pipeline_execution_id: String,
    #[serde(default)]
    pub abandon: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobIdInput {
    pub job_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutJobSuccessResultInput {
    pub job_id: String,
    pub current_revision: Option<CurrentRevision>,
    pub continuation_token: Option<String>,
    pub execution_details: Option<ExecutionDetails>,
    pub output_variables: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentRevision {
    pub revision: String,
    pub change_identifier: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionDetails {
    pub summary: Option<String>,
    pub external_execution_id: Option<String>,
    pub percent_complete: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutJobFailureResultInput {
    pub job_id: String,
    pub failure_details: FailureDetails,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureDetails {
    #[serde(rename = "type")]
    pub failure_type: String,
    pub message: String,
    pub external_execution_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutApprovalResultInput {
    pub pipeline_name: String,
    pub stage_name: String,
    pub action_name: String,
    pub result: ApprovalResult,
    pub token: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalResult {
    pub summary: String,
    pub status: String,
}

// ---- responses ----

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineExecutionIdOutput {
    pub pipeline_execution_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Empty {}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PutApprovalResultOutput {
    pub approved_at: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPipelineStateOutput {
    pub pipeline_name: String,
    pub pipeline_version: i64,
    pub stage_states: Vec<StageState>,
    pub created: f64,
    pub updated: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageState {
    pub stage_name: String,
    pub inbound_execution: Option<StageExecution>,
    pub inbound_executions: Option<Vec<StageExecution>>,
    pub inbound_transition_state: TransitionState,
    pub action_states: Vec<ActionState>,
    pub latest_execution: Option<StageExecution>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageExecution {
    pub pipeline_execution_id: String,
    pub status: String,
    #[serde(rename = "type")]
    pub execution_type: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransitionState {
    pub enabled: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionState {
    pub action_name: String,
    pub current_revision: Option<ActionRevision>,
    pub latest_execution: Option<ActionExecution>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRevision {
    pub revision_id: String,
    pub revision_change_id: String,
    pub created: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionExecution {
    pub action_execution_id: String,
    pub status: String,
    pub summary: Option<String>,
    pub last_status_change: f64,
    pub token: Option<String>,
    pub external_execution_id: Option<String>,
    pub percent_complete: Option<i64>,
    pub error_details: Option<ErrorDetails>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetails {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPipelineExecutionOutput {
    pub pipeline_execution: PipelineExecution,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineExecution {
    pub pipeline_name: String,
    pub pipeline_version: i64,
    pub pipeline_execution_id: String,
    pub status: String,
    pub status_summary: Option<String>,
    pub artifact_revisions: Vec<ArtifactRevision>,
    pub variables: Vec<ResolvedPipelineVariable>,
    pub trigger: ExecutionTrigger,
    pub execution_mode: String,
    pub execution_type: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRevision {
    pub name: String,
    pub revision_id: String,
    pub revision_change_identifier: Option<String>,
    pub revision_summary: Option<String>,
    pub created: Option<f64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPipelineVariable {
    pub name: String,
    pub resolved_value: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionTrigger {
    pub trigger_type: String,
    pub trigger_detail: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPipelineExecutionsOutput {
    pub pipeline_execution_summaries: Vec<PipelineExecutionSummary>,
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineExecutionSummary {
    pub pipeline_execution_id: String,
    pub status: String,
    pub status_summary: Option<String>,
    pub start_time: f64,
    pub last_update_time: f64,
    pub source_revisions: Vec<SourceRevision>,
    pub trigger: ExecutionTrigger,
    pub stop_trigger: Option<StopExecutionTrigger>,
    pub execution_mode: String,
    pub execution_type: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRevision {
    pub action_name: String,
    pub revision_id: String,
    pub revision_summary: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopExecutionTrigger {
    pub reason: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetJobDetailsOutput {
    pub job_details: JobDetails,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDetails {
    pub id: String,
    pub data: JobData,
    pub account_id: String,
}

/// What a job worker gets: the same data the Lambda event carries, plus the pipeline context.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobData {
    pub action_type_id: ActionTypeId,
    pub action_configuration: ActionConfiguration,
    pub pipeline_context: PipelineContext,
    pub input_artifacts: Vec<Artifact>,
    pub output_artifacts: Vec<Artifact>,
    pub artifact_credentials: AwsSessionCredentials,
    pub continuation_token: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionTypeId {
    pub category: String,
    pub owner: String,
    pub provider: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionConfiguration {
    pub configuration: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineContext {
    pub pipeline_name: String,
    pub stage: StageContext,
    pub action: ActionContext,
    pub pipeline_arn: String,
    pub pipeline_execution_id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageContext {
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionContext {
    pub name: String,
    pub action_execution_id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    pub name: String,
    /// Always present in the Lambda event (`null` when unknown), as in AWS's sample.
    pub revision: Option<String>,
    pub location: ArtifactLocation,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactLocation {
    #[serde(rename = "type")]
    pub location_type: String,
    pub s3_location: S3ArtifactLocation,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct S3ArtifactLocation {
    pub bucket_name: String,
    pub object_key: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsSessionCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPipelineOutput {
    pub pipeline: PipelineDeclaration,
    pub metadata: PipelineMetadata,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineDeclaration {
    pub name: String,
    pub role_arn: Option<String>,
    pub artifact_store: ArtifactStore,
    pub stages: Vec<StageDeclaration>,
    pub version: i64,
    pub execution_mode: String,
    pub pipeline_type: String,
    pub variables: Vec<PipelineVariableDeclaration>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStore {
    #[serde(rename = "type")]
    pub store_type: String,
    pub location: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageDeclaration {
    pub name: String,
    pub actions: Vec<ActionDeclaration>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionDeclaration {
    pub name: String,
    pub action_type_id: ActionTypeId,
    pub run_order: u32,
    pub configuration: BTreeMap<String, String>,
    pub input_artifacts: Vec<NamedArtifact>,
    pub output_artifacts: Vec<NamedArtifact>,
    pub namespace: Option<String>,
    pub region: Option<String>,
    pub role_arn: Option<String>,
    pub timeout_in_minutes: Option<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedArtifact {
    pub name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineVariableDeclaration {
    pub name: String,
    pub default_value: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineMetadata {
    pub pipeline_arn: String,
    pub created: f64,
    pub updated: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPipelinesOutput {
    pub pipelines: Vec<PipelineSummary>,
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSummary {
    pub name: String,
    pub version: i64,
    pub pipeline_type: String,
    pub execution_mode: String,
    pub created: f64,
    pub updated: f64,
}
