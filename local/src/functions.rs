//! The shipgate functions, run in this process the way Lambda runs them in AWS: each built once
//! from its environment (resolved from `template.yaml`), each event handed to the same handler
//! the Lambda binary calls.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use aws_config::SdkConfig;
use serde_json::{Value, json};
use shipgate::config::Env;
use shipgate_approval_page::{ApprovalPage, PageConfig};
use shipgate_change_set::{ChangeSetConfig, ChangeSetFunction};
use shipgate_intake::{Intake, IntakeConfig};
use shipgate_mailer::{Mailer, MailerConfig};

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
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("IntakeFunction", "intake"),
    ("ChangeSetFunction", "change-set"),
    ("MailerFunction", "mailer"),
    ("ApprovalPageFunction", "approval-page"),
];

/// A function built from its environment, or why it could not be (reported when it is invoked).
type Built<F> = Result<Arc<F>, String>;

/// The functions, cheap to clone.
#[derive(Clone)]
pub struct LocalFunctions {
    intake: Built<Intake>,
    change_set: Built<ChangeSetFunction>,
    mailer: Built<Mailer>,
    approval_page: Built<ApprovalPage>,
}

impl LocalFunctions {
    /// Builds the functions the template declares (`env_by_function`: logical id → resolved
    /// environment) as Lambda would start them; a declared function whose configuration is
    /// invalid is an error here, as its cold start would fail in AWS.
    pub async fn new(
        sdk: &SdkConfig,
        env_by_function: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Self> {
        let functions = Self::build(sdk, |id| {
            env_by_function
                .get(id)
                .map(|env| Env::from_pairs(env.clone()))
        });
        for (id, _) in FUNCTIONS {
            if let Some(error) = functions.build_error(id)
                && env_by_function.contains_key(*id)
            {
                bail!("configuring {id}: {error}");
            }
        }
        Ok(functions)
    }

    /// From this process's environment, as a Lambda function starts (used by `invoke`): every
    /// function whose configuration the environment holds.
    pub async fn from_process_env() -> Result<Self> {
        let sdk = shipgate::aws::load_sdk_config().await;
        let env = Env::from_process();
        Ok(Self::build(&sdk, |_| Some(env.clone())))
    }

    fn build(sdk: &SdkConfig, env_of: impl Fn(&str) -> Option<Env>) -> Self {
        fn make<C, F>(
            id: &str,
            env: Option<Env>,
            config: impl FnOnce(&Env) -> Result<C, shipgate::config::ConfigError>,
            build: impl FnOnce(C) -> F,
        ) -> Built<F> {
            let env = env.ok_or_else(|| format!("{id} is not declared in the template"))?;
            config(&env)
                .map(|c| Arc::new(build(c)))
                .map_err(|e| e.to_string())
        }
        Self {
            intake: make(
                "IntakeFunction",
                env_of("IntakeFunction"),
                IntakeConfig::from_env,
                |c| Intake::new(c, sdk),
            ),
            change_set: make(
                "ChangeSetFunction",
                env_of("ChangeSetFunction"),
                ChangeSetConfig::from_env,
                |c| ChangeSetFunction::new(c, sdk),
            ),
            mailer: make(
                "MailerFunction",
                env_of("MailerFunction"),
                MailerConfig::from_env,
                |c| Mailer::new(c, sdk),
            ),
            approval_page: make(
                "ApprovalPageFunction",
                env_of("ApprovalPageFunction"),
                PageConfig::from_env,
                |c| ApprovalPage::new(c, sdk),
            ),
        }
    }

    fn build_error(&self, id: &str) -> Option<&str> {
        let result = match id {
            "IntakeFunction" => self.intake.as_ref().err(),
            "ChangeSetFunction" => self.change_set.as_ref().err(),
            "MailerFunction" => self.mailer.as_ref().err(),
            "ApprovalPageFunction" => self.approval_page.as_ref().err(),
            _ => None,
        };
        result.map(String::as_str)
    }

    /// Intake (panics if the template declares none: tests only call it on the project's).
    pub fn intake(&self) -> &Intake {
        match &self.intake {
            Ok(intake) => intake,
            Err(e) => panic!("intake is not available: {e}"),
        }
    }

    /// Runs one handler once. `Err` carries the error as Lambda reports it
    /// (`errorType`, `errorMessage`).
    pub async fn invoke_once(&self, function: &str, event: Value) -> Result<Value, Value> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let unavailable = |id: &str, why: &str| json!({"errorType": "Runtime.InitError", "errorMessage": format!("{id}: {why}")});
        match canonical(function) {
            Some(id @ "IntakeFunction") => match &self.intake {
                Ok(f) => match f.handle(event, &request_id).await {
                    Ok(report) => Ok(serde_json::to_value(report).unwrap_or(Value::Null)),
                    Err(e) => Err(lambda_error(e.error_type(), &e)),
                },
                Err(why) => Err(unavailable(id, why)),
            },
            Some(id @ "ChangeSetFunction") => match &self.change_set {
                Ok(f) => match f.handle(event).await {
                    Ok(answer) => Ok(serde_json::to_value(answer).unwrap_or(Value::Null)),
                    Err(e) => Err(lambda_error(e.error_type(), &e)),
                },
                Err(why) => Err(unavailable(id, why)),
            },
            Some(id @ "MailerFunction") => match &self.mailer {
                Ok(f) => match f.handle(event).await {
                    Ok(report) => Ok(serde_json::to_value(report).unwrap_or(Value::Null)),
                    Err(e) => Err(lambda_error(e.error_type(), &e)),
                },
                Err(why) => Err(unavailable(id, why)),
            },
            Some(id @ "ApprovalPageFunction") => match &self.approval_page {
                Ok(f) => Ok(f.handle_event(event).await),
                Err(why) => Err(unavailable(id, why)),
            },
            _ => Err(json!({
                "errorType": "ResourceNotFoundException",
                "errorMessage": format!("no local function {function:?}; known: {}", known()),
            })),
        }
    }
}

fn lambda_error(error_type: &str, error: &dyn std::fmt::Display) -> Value {
    json!({"errorType": error_type, "errorMessage": error.to_string()})
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
            let intake = intake.map_err(|why| format!("Runtime.InitError: {why}"))?;
            intake
                .handle(event, &request_id)
                .await
                .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
                .map_err(|e| format!("{}: {e}", e.error_type()))
        })
    }
}
