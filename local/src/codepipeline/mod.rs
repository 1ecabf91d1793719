//! The CodePipeline stand-in: executions, jobs and approvals, which moto does not have.
//!
//! It runs the pipelines declared in `template.yaml` ([`pipelines_from_template`]) and answers
//! CodePipeline's own JSON protocol on a loopback port, so the unmodified
//! `aws_sdk_codepipeline::Client` (pointed at it with `AWS_ENDPOINT_URL_CODEPIPELINE`) starts
//! executions, reports job results and decides approvals exactly as it would against AWS.
//! Lambda invoke actions and approval notifications reach the local functions through an
//! [`Invoker`], as Lambda's asynchronous invocation and SNS would. What it models and what it
//! does not is in `local/README-codepipeline.md`.

mod definition;
mod engine;
mod error;
mod events;
mod server;
mod state;
mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use definition::{
    ActionDefinition, ActionKind, ActionTypeId, DefinitionError, ExecutionMode, PipelineDefinition,
    PipelineType, Resolver, StageDefinition, TemplateEvaluator, VariableDeclaration,
    pipelines_from_template, sns_subscribers,
};
pub use error::{ApiError, ErrorCode};

use engine::Engine;
use state::{Settings, State};

/// Delivers events to the local functions.
pub trait Invoker: Send + Sync + 'static {
    /// Deliver an event to the function with this logical id, asynchronously (fire and forget,
    /// like Lambda's Event invocation). Returns Err(message) only if no such function is known
    /// locally.
    fn invoke(&self, function_logical_id: &str, event: serde_json::Value) -> Result<(), String>;
}

/// Timeouts and identity of the stand-in.
#[derive(Debug, Clone)]
pub struct StandInConfig {
    /// How long a Lambda action's job may stay unanswered before the action fails. Each
    /// continuation starts a new job, hence a new window.
    pub job_timeout: Duration,
    /// How long a manual approval waits for a decision (unless the action sets
    /// `TimeoutInMinutes`).
    pub approval_timeout: Duration,
    pub region: String,
    pub account_id: String,
    /// How long after a continuation token the action is invoked again. AWS does not document
    /// the delay; it is not immediate. Tests and demos keep it short.
    pub continuation_delay: Duration,
    /// Where each request is held to CodePipeline's service model before it is served (moto's
    /// `/moto-api/shipgate/conformance`, `local/moto-patches/request_conformance.py`); `None`:
    /// not checked.
    pub conformance_url: Option<String>,
}

impl Default for StandInConfig {
    /// AWS's figures: 20 minutes per job answer, 7 days per approval.
    fn default() -> Self {
        Self {
            job_timeout: Duration::from_secs(20 * 60),
            approval_timeout: Duration::from_secs(7 * 24 * 60 * 60),
            region: crate::accounts::REGION.to_owned(),
            account_id: crate::accounts::TOOLING.to_owned(),
            continuation_delay: Duration::from_secs(1),
            conformance_url: None,
        }
    }
}

/// The running stand-in. Cheap to clone: clones share one state.
#[derive(Clone)]
pub struct CodePipelineStandIn {
    engine: Arc<Engine>,
    conformance: Option<server::Conformance>,
}

impl CodePipelineStandIn {
    pub fn new(
        defs: Vec<PipelineDefinition>,
        subscribers: BTreeMap<String, Vec<String>>,
        s3: aws_sdk_s3::Client,
        invoker: Arc<dyn Invoker>,
        config: StandInConfig,
    ) -> Self {
        let settings = Settings {
            region: config.region,
            account_id: config.account_id,
            job_timeout: config.job_timeout,
            approval_timeout: config.approval_timeout,
            continuation_delay: config.continuation_delay,
        };
        let state = State::new(defs, subscribers, settings, time::OffsetDateTime::now_utc());
        Self {
            engine: Engine::new(state, s3, invoker),
            conformance: config.conformance_url.map(server::Conformance::new),
        }
    }

    /// The JSON protocol endpoint (`POST /`).
    pub fn router(&self) -> axum::Router {
        server::router(Arc::clone(&self.engine), self.conformance.clone())
    }

    /// Serves the endpoint on `listener` until the task is dropped or the listener fails.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}

impl std::fmt::Debug for CodePipelineStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodePipelineStandIn")
            .finish_non_exhaustive()
    }
}
