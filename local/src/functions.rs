//! The shipgate functions, run in this process the way Lambda runs them in AWS: each built once
//! from its environment (resolved from `template.yaml`), each event handed to the same handler
//! the Lambda binary calls.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use serde_json::{Value, json};
use shipgate::config::Env;
use shipgate_intake::{Intake, IntakeConfig};

use crate::codepipeline::Invoker;
use crate::delivery::S3Subscriber;

/// Somewhere functions run: called with an event, answers like a synchronous Lambda invoke
/// (`Ok` payload, or `Err` with `errorType`/`errorMessage`). The local stack's deliveries
/// (function URLs, alarms) call functions through it; tests give them test handlers.
pub trait FunctionHost: Send + Sync + 'static {
    fn call(
        &self,
        function_logical_id: &str,
        event: Value,
    ) -> futures::future::BoxFuture<'static, Result<Value, Value>>;
}

/// One asynchronous invocation as Lambda makes it for S3 notifications, EventBridge rules and
/// alarm actions: `attempt` runs, and after a failure runs again after each of `delays` (Lambda:
/// two retries), then the failure is logged and dropped. `what` names the invocation in logs.
pub fn spawn_async_invocation<F, Fut>(what: String, delays: Vec<Duration>, attempt: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut tries = 0usize;
        loop {
            match attempt().await {
                Ok(result) => {
                    tracing::info!(invocation = %what, attempt = tries, %result, "asynchronous invocation handled");
                    return;
                }
                Err(error) => {
                    let Some(delay) = delays.get(tries) else {
                        tracing::warn!(invocation = %what, attempt = tries, error, "asynchronous invocation failed; no retries left");
                        return;
                    };
                    tracing::warn!(invocation = %what, attempt = tries, error, retry_in = ?delay, "asynchronous invocation failed; will retry");
                    tokio::time::sleep(*delay).await;
                    tries += 1;
                }
            }
        }
    });
}

/// Every function this build knows, by template logical id and short name.
pub const FUNCTIONS: &[(&str, &str)] = &[("IntakeFunction", "intake")];

/// The functions, cheap to clone.
#[derive(Clone)]
pub struct LocalFunctions {
    intake: Arc<Intake>,
}

impl LocalFunctions {
    /// Builds every function from `env` (the template's resolved variables) and `sdk`.
    pub async fn new(sdk: &SdkConfig, env: &BTreeMap<String, String>) -> Result<Self> {
        let env = Env::from_pairs(env.clone());
        let intake = IntakeConfig::from_env(&env).context("configuring intake")?;
        Ok(Self {
            intake: Arc::new(Intake::new(intake, sdk)),
        })
    }

    /// From this process's environment, as a Lambda function starts (used by `invoke`).
    pub async fn from_process_env() -> Result<Self> {
        let sdk = shipgate::aws::load_sdk_config().await;
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::new(&sdk, &env).await
    }

    pub fn intake(&self) -> &Intake {
        &self.intake
    }

    /// Runs one handler once. `Err` carries the error as Lambda reports it
    /// (`errorType`, `errorMessage`).
    pub async fn invoke_once(&self, function: &str, event: Value) -> Result<Value, Value> {
        let request_id = uuid::Uuid::new_v4().to_string();
        match canonical(function) {
            Some("IntakeFunction") => match self.intake.handle(event, &request_id).await {
                Ok(report) => Ok(serde_json::to_value(report).unwrap_or(Value::Null)),
                Err(e) => Err(json!({"errorType": e.error_type(), "errorMessage": e.to_string()})),
            },
            _ => Err(json!({
                "errorType": "ResourceNotFoundException",
                "errorMessage": format!("no local function {function:?}; known: {}", known()),
            })),
        }
    }
}

fn canonical(name: &str) -> Option<&'static str> {
    FUNCTIONS
        .iter()
        .find(|(id, short)| *id == name || *short == name)
        .map(|(id, _)| *id)
}

fn known() -> String {
    FUNCTIONS
        .iter()
        .map(|(id, short)| format!("{short} ({id})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a name without invoking anything (CLI argument validation).
pub fn ensure_known(name: &str) -> Result<()> {
    if canonical(name).is_none() {
        bail!("no local function {name:?}; known: {}", known());
    }
    Ok(())
}

impl FunctionHost for LocalFunctions {
    fn call(
        &self,
        function_logical_id: &str,
        event: Value,
    ) -> futures::future::BoxFuture<'static, Result<Value, Value>> {
        let this = self.clone();
        let id = function_logical_id.to_owned();
        Box::pin(async move { this.invoke_once(&id, event).await })
    }
}

impl Invoker for LocalFunctions {
    fn invoke(&self, function_logical_id: &str, event: Value) -> Result<(), String> {
        let Some(id) = canonical(function_logical_id) else {
            return Err(format!(
                "function {function_logical_id} is not built into shipgate-local; known: {}",
                known()
            ));
        };
        let this = self.clone();
        tokio::spawn(async move {
            match this.invoke_once(id, event).await {
                Ok(result) => tracing::info!(function = id, %result, "invocation finished"),
                Err(error) => tracing::warn!(function = id, %error, "invocation failed"),
            }
        });
        Ok(())
    }
}

impl S3Subscriber for LocalFunctions {
    fn deliver(
        &self,
        event: Value,
        request_id: String,
    ) -> futures::future::BoxFuture<'static, Result<Value, String>> {
        let intake = self.intake.clone();
        Box::pin(async move {
            intake
                .handle(event, &request_id)
                .await
                .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
                .map_err(|e| format!("{}: {e}", e.error_type()))
        })
    }
}
