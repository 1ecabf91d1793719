//! The awsJson1_1 endpoint: `POST /` with `X-Amz-Target: CodePipeline_20150709.<Operation>`.
//!
//! Signatures are not checked (moto's credentials are placeholders too). Every refusal is an
//! HTTP 400 with CodePipeline's exception name in `__type`, which is what the SDK turns into its
//! typed errors; a body that is not JSON is a `SerializationException`, a body of the wrong
//! shape a `ValidationException`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};

use super::engine::Engine;
use super::error::{ApiError, ErrorCode};
use super::wire;

const TARGET_PREFIX: &str = "CodePipeline_20150709.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

pub fn router(engine: Arc<Engine>, conformance: Option<Conformance>) -> Router {
    Router::new()
        .route("/", post(dispatch))
        .with_state(Endpoint {
            engine,
            conformance,
        })
}

#[derive(Clone)]
struct Endpoint {
    engine: Arc<Engine>,
    conformance: Option<Conformance>,
}

/// Holds each request to CodePipeline's service model (lengths, patterns, enums, required
/// members), as AWS's front end does before the operation runs, by asking moto's conformance
/// route, which reads botocore's model: one reading of the constraints for moto and the
/// stand-in.
#[derive(Debug, Clone)]
pub struct Conformance {
    http: reqwest::Client,
    url: String,
}

impl Conformance {
    pub fn new(url: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            url,
        }
    }

    /// `Err` with AWS's ValidationException message when `body` breaks the model of
    /// `operation`; a body that is not JSON is left to the operation (SerializationException).
    async fn check(&self, operation: &str, body: &[u8]) -> Result<(), ApiError> {
        let Ok(input) = serde_json::from_slice::<Json>(body) else {
            return Ok(());
        };
        let asked = json!({"service": "codepipeline", "operation": operation, "input": input});
        let unavailable = |e: reqwest::Error| {
            ApiError::validation(format!("request conformance unavailable: {e}"))
        };
        let found: Vec<String> = self
            .http
            .post(&self.url)
            .json(&asked)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        if found.is_empty() {
            return Ok(());
        }
        let plural = if found.len() > 1 { "s" } else { "" };
        Err(ApiError::validation(format!(
            "{} validation error{plural} detected: {}",
            found.len(),
            found.join("; ")
        )))
    }
}

async fn dispatch(
    AxumState(endpoint): AxumState<Endpoint>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or_default();
    // An operation the stand-in does not serve is refused as such, not held to a model.
    let result = match Operation::parse(operation) {
        Ok(served) => match &endpoint.conformance {
            Some(conformance) => conformance.check(operation, &body).await,
            None => Ok(()),
        }
        .and_then(|()| handle(&endpoint.engine, served, &body)),
        Err(refused) => Err(refused),
    };
    match &result {
        Ok(_) => tracing::debug!(operation, "CodePipeline request"),
        Err(e) => tracing::info!(operation, error = %e, "CodePipeline request refused"),
    }
    respond(result)
}

/// The operations the stand-in serves: what `X-Amz-Target` names, held to CodePipeline's model
/// and then handled.
#[derive(Debug, Clone, Copy)]
enum Operation {
    StartPipelineExecution,
    StopPipelineExecution,
    GetPipelineState,
    GetPipelineExecution,
    ListPipelineExecutions,
    PutJobSuccessResult,
    PutJobFailureResult,
    PutApprovalResult,
    GetJobDetails,
    GetPipeline,
    ListPipelines,
}

impl Operation {
    /// The operation `name` names, or the refusal AWS gives for one it does not serve.
    fn parse(name: &str) -> Result<Self, ApiError> {
        Ok(match name {
            "StartPipelineExecution" => Self::StartPipelineExecution,
            "StopPipelineExecution" => Self::StopPipelineExecution,
            "GetPipelineState" => Self::GetPipelineState,
            "GetPipelineExecution" => Self::GetPipelineExecution,
            "ListPipelineExecutions" => Self::ListPipelineExecutions,
            "PutJobSuccessResult" => Self::PutJobSuccessResult,
            "PutJobFailureResult" => Self::PutJobFailureResult,
            "PutApprovalResult" => Self::PutApprovalResult,
            "GetJobDetails" => Self::GetJobDetails,
            "GetPipeline" => Self::GetPipeline,
            "ListPipelines" => Self::ListPipelines,
            "" => {
                return Err(ApiError::new(
                    ErrorCode::UnknownOperation,
                    format!("X-Amz-Target must be {TARGET_PREFIX}<Operation>"),
                ));
            }
            other => {
                return Err(ApiError::new(
                    ErrorCode::UnknownOperation,
                    format!("The local CodePipeline stand-in does not serve {other}"),
                ));
            }
        })
    }
}

/// What StartPipelineExecution and StopPipelineExecution answer: the execution's id.
fn execution_id(pipeline_execution_id: String) -> wire::PipelineExecutionIdOutput {
    wire::PipelineExecutionIdOutput {
        pipeline_execution_id,
    }
}

fn handle(engine: &Arc<Engine>, operation: Operation, body: &[u8]) -> Result<Json, ApiError> {
    match operation {
        Operation::StartPipelineExecution => {
            call(body, |input: wire::StartPipelineExecutionInput| {
                engine
                    .apply(|state, now, effects| state.start_execution(input, now, effects))
                    .map(execution_id)
            })
        }
        Operation::StopPipelineExecution => {
            call(body, |input: wire::StopPipelineExecutionInput| {
                engine
                    .apply(|state, now, effects| state.stop_execution(input, now, effects))
                    .map(execution_id)
            })
        }
        Operation::GetPipelineState => call(body, |input: wire::NameInput| {
            engine.read(|state| state.pipeline_state(&input.name))
        }),
        Operation::GetPipelineExecution => call(body, |input: wire::GetPipelineExecutionInput| {
            engine.read(|state| state.pipeline_execution(&input))
        }),
        Operation::ListPipelineExecutions => {
            call(body, |input: wire::ListPipelineExecutionsInput| {
                engine.read(|state| state.list_executions(&input))
            })
        }
        Operation::PutJobSuccessResult => call(body, |input: wire::PutJobSuccessResultInput| {
            engine.apply(|state, now, effects| state.put_job_success(input, now, effects))?;
            Ok(wire::Empty {})
        }),
        Operation::PutJobFailureResult => call(body, |input: wire::PutJobFailureResultInput| {
            engine.apply(|state, now, effects| state.put_job_failure(input, now, effects))?;
            Ok(wire::Empty {})
        }),
        Operation::PutApprovalResult => call(body, |input: wire::PutApprovalResultInput| {
            let at = engine
                .apply(|state, now, effects| state.put_approval_result(input, now, effects))?;
            Ok(wire::PutApprovalResultOutput {
                approved_at: wire::epoch(at),
            })
        }),
        Operation::GetJobDetails => call(body, |input: wire::JobIdInput| {
            engine.read(|state| state.job_details(&input.job_id))
        }),
        Operation::GetPipeline => call(body, |input: wire::NameInput| {
            engine.read(|state| state.get_pipeline(&input.name, input.version))
        }),
        Operation::ListPipelines => call(body, |input: wire::ListPipelinesInput| {
            engine.read(|state| state.list_pipelines(&input))
        }),
    }
}

/// Parses the body as the operation's input, runs it, serialises its output.
fn call<I, O>(
    body: &[u8],
    operation: impl FnOnce(I) -> Result<O, ApiError>,
) -> Result<Json, ApiError>
where
    I: DeserializeOwned,
    O: Serialize,
{
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    let input: I = serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::Validation
        } else {
            ErrorCode::Serialization
        };
        ApiError::new(
            code,
            format!("The request body is not valid for this operation: {e}"),
        )
    })?;
    operation(input).map(|output| wire::to_body(&output))
}

fn respond(result: Result<Json, ApiError>) -> Response {
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            json!({ "__type": e.code.exception_name(), "message": e.message }),
        ),
    };
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}
