//! The shipgate functions, run in this process the way Lambda runs them in AWS: each built once
//! from its environment (resolved from `template.yaml`), each event handed to the same handler
//! the Lambda binary calls.

use std::collections::BTreeMap;
use std::future::Future;

use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use aws_config::SdkConfig;
use serde_json::{Value, json};
use shipgate::config::Env;
use shipgate::job::JobAction;
use shipgate::lambda::{ErrorType, EventHandler, Function};
use shipgate_approval_page::ApprovalPage;
use shipgate_change_set::ChangeSetFunction;
use shipgate_checks::ChecksFunction;
use shipgate_deploy::DeployFunction;
use shipgate_intake::Intake;
use shipgate_mailer::Mailer;
use shipgate_promote::PromoteFunction;
use shipgate_rollback::RollbackFunction;
use shipgate_traffic::TrafficFunction;

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
    ("DeployFunction", "deploy"),
    ("ChecksFunction", "checks"),
    ("TrafficFunction", "traffic"),
    ("RollbackFunction", "rollback"),
    ("PromoteFunction", "promote"),
];

/// A function's handler as Lambda calls it: an event and a request id in, the result or the
/// error (`errorType`, `errorMessage`) out.
type Handler = Arc<dyn Fn(Value, String) -> BoxFuture<'static, Result<Value, Value>> + Send + Sync>;

/// A handler built from its environment, or why it could not be (reported when invoked).
type Built = Result<Handler, String>;

/// The functions, cheap to clone.
#[derive(Clone)]
pub struct LocalFunctions {
    handlers: BTreeMap<&'static str, Built>,
    /// Intake itself, for the tests that drive it directly.
    intake: Result<Arc<Intake>, String>,
}

/// Wraps a handler's typed result as Lambda reports it.
fn reply<T: serde::Serialize, E: ErrorType>(result: Result<T, E>) -> Result<Value, Value> {
    match result {
        Ok(value) => Ok(serde_json::to_value(value).unwrap_or(Value::Null)),
        Err(e) => Err(json!({"errorType": e.error_type(), "errorMessage": e.to_string()})),
    }
}

/// Builds one function from its environment, as its cold start does.
fn build<F: Function>(id: &str, env: Option<Env>, sdk: &SdkConfig) -> Result<Arc<F>, String> {
    let env = env.ok_or_else(|| format!("{id} is not declared in the template"))?;
    F::from_env(&env, sdk)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

fn handler<F: Send + Sync + 'static, Fut>(
    function: Result<Arc<F>, String>,
    call: impl Fn(Arc<F>, Value, String) -> Fut + Send + Sync + 'static,
) -> Built
where
    Fut: Future<Output = Result<Value, Value>> + Send + 'static,
{
    let function = function?;
    let call = Arc::new(call);
    Ok(Arc::new(move |event, request_id| {
        let function = function.clone();
        let call = call.clone();
        Box::pin(async move { call(function, event, request_id).await })
    }))
}

/// A CodePipeline job action, answering its job as [`shipgate::lambda::serve_job`] does.
fn job_action<A: Function + JobAction>(id: &str, env: Option<Env>, sdk: &SdkConfig) -> Built {
    let codepipeline = aws_sdk_codepipeline::Client::new(sdk);
    handler(build::<A>(id, env, sdk), move |a: Arc<A>, event, _| {
        let codepipeline = codepipeline.clone();
        async move { reply(Box::pin(shipgate::job::handle(&*a, &codepipeline, event)).await) }
    })
}

/// Any other event handler, as [`shipgate::lambda::serve`] runs it.
fn event_handler<H: EventHandler>(function: Result<Arc<H>, String>) -> Built {
    handler(function, |h: Arc<H>, event, request_id| async move {
        reply(Box::pin(h.handle(event, &request_id)).await)
    })
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
        for (id, built) in &functions.handlers {
            if let Err(error) = built
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
        let intake = build::<Intake>("IntakeFunction", env_of("IntakeFunction"), sdk);
        let page =
            build::<ApprovalPage>("ApprovalPageFunction", env_of("ApprovalPageFunction"), sdk);
        let mut handlers: BTreeMap<&'static str, Built> = BTreeMap::new();
        handlers.insert("IntakeFunction", event_handler(intake.clone()));
        handlers.insert(
            "MailerFunction",
            event_handler(build::<Mailer>(
                "MailerFunction",
                env_of("MailerFunction"),
                sdk,
            )),
        );
        handlers.insert(
            "RollbackFunction",
            event_handler(build::<RollbackFunction>(
                "RollbackFunction",
                env_of("RollbackFunction"),
                sdk,
            )),
        );
        handlers.insert(
            "ApprovalPageFunction",
            handler(page, |f, event, _| async move {
                Ok(f.handle_event(event).await)
            }),
        );
        for (id, built) in [
            (
                "ChangeSetFunction",
                job_action::<ChangeSetFunction> as fn(&str, Option<Env>, &SdkConfig) -> Built,
            ),
            ("DeployFunction", job_action::<DeployFunction>),
            ("ChecksFunction", job_action::<ChecksFunction>),
            ("TrafficFunction", job_action::<TrafficFunction>),
            ("PromoteFunction", job_action::<PromoteFunction>),
        ] {
            handlers.insert(id, built(id, env_of(id), sdk));
        }
        Self { handlers, intake }
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
        self.invoke_with_id(function, event, uuid::Uuid::new_v4().to_string())
            .await
    }

    /// Runs one handler once with Lambda's request id (kept across async retries).
    pub async fn invoke_with_id(
        &self,
        function: &str,
        event: Value,
        request_id: String,
    ) -> Result<Value, Value> {
        let Some(id) = canonical(function) else {
            return Err(json!({
                "errorType": "ResourceNotFoundException",
                "errorMessage": format!("no local function {function:?}; known: {}", known()),
            }));
        };
        match self.handlers.get(id) {
            Some(Ok(handler)) => handler(event, request_id).await,
            Some(Err(why)) => Err(json!({
                "errorType": "Runtime.InitError",
                "errorMessage": format!("{id}: {why}"),
            })),
            None => Err(json!({
                "errorType": "ResourceNotFoundException",
                "errorMessage": format!("{id} is not built into shipgate-local"),
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
        let this = self.clone();
        Box::pin(async move {
            this.invoke_with_id("IntakeFunction", event, request_id)
                .await
                .map_err(|e| {
                    format!(
                        "{}: {}",
                        e["errorType"].as_str().unwrap_or("Error"),
                        e["errorMessage"].as_str().unwrap_or_default()
                    )
                })
        })
    }
}
