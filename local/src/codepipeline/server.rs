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
    let checked = match &endpoint.conformance {
        Some(conformance) if SERVED.contains(&operation) => {
            conformance.check(operation, &body).await
        }
        _ => Ok(()),
    };
    let result = checked.and_then(|()| handle(&endpoint.engine, operation, &body));
    match &result {
        Ok(_) => tracing::debug!(operation, "CodePipeline request"),
        Err(e) => tracing::info!(operation, error = %e, "CodePipeline request refused"),
    }
    respond(result)
}

/// The operations [`handle`] serves.
const SERVED: [&str; 11] = [
    "StartPipelineExecution",
    "StopPipelineExecution",
    "GetPipelineState",
    "GetPipelineExecution",
    "ListPipelineExecutions",
    "PutJobSuccessResult",
    "PutJobFailureResult",
    "PutApprovalResult",
    "GetJobDetails",
    "GetPipeline",
    "ListPipelines",
];

fn handle(engine: &Arc<Engine>, operation: &str, body: &[u8]) -> Result<Json, ApiError> {
    match operation {
        "StartPipelineExecution" => call(body, |input: wire::StartPipelineExecutionInput| {
            let id =
                engine.apply(|state, now, effects| state.start_execution(input, now, effects))?;
            Ok(wire::PipelineExecutionIdOutput {
                pipeline_execution_id: id,
            })
        }),
        "StopPipelineExecution" => call(body, |input: wire::StopPipelineExecutionInput| {
            let id =
                engine.apply(|state, now, effects| state.stop_execution(input, now, effects))?;
            Ok(wire::PipelineExecutionIdOutput {
                pipeline_execution_id: id,
            })
        }),
        "GetPipelineState" => call(body, |input: wire::NameInput| {
            engine.read(|state| state.pipeline_state(&input.name))
        }),
        "GetPipelineExecution" => call(body, |input: wire::GetPipelineExecutionInput| {
            engine.read(|state| state.pipeline_execution(&input))
        }),
        "ListPipelineExecutions" => call(body, |input: wire::ListPipelineExecutionsInput| {
            engine.read(|state| state.list_executions(&input))
        }),
        "PutJobSuccessResult" => call(body, |input: wire::PutJobSuccessResultInput| {
            engine.apply(|state, now, effects| state.put_job_success(input, now, effects))?;
            Ok(wire::Empty {})
        }),
        "PutJobFailureResult" => call(body, |input: wire::PutJobFailureResultInput| {
            engine.apply(|state, now, effects| state.put_job_failure(input, now, effects))?;
            Ok(wire::Empty {})
        }),
        "PutApprovalResult" => call(body, |input: wire::PutApprovalResultInput| {
            let at = engine
                .apply(|state, now, effects| state.put_approval_result(input, now, effects))?;
            Ok(wire::PutApprovalResultOutput {
                approved_at: wire::epoch(at),
            })
        }),
        "GetJobDetails" => call(body, |input: wire::JobIdInput| {
            engine.read(|state| state.job_details(&input.job_id))
        }),
        "GetPipeline" => call(body, |input: wire::NameInput| {
            engine.read(|state| state.get_pipeline(&input.name, input.version))
        }),
        "ListPipelines" => call(body, |input: wire::ListPipelinesInput| {
            engine.read(|state| state.list_pipelines(&input))
        }),
        "" => Err(ApiError::new(
            ErrorCode::UnknownOperation,
            format!("X-Amz-Target must be {TARGET_PREFIX}<Operation>"),
        )),
        other => Err(ApiError::new(
            // Every operation served above is in SERVED, held to CodePipeline's model.
            ErrorCode::UnknownOperation,
            format!("The local CodePipeline stand-in does not serve {other}"),
        )),
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
