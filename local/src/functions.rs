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

    /// Where the function's failed asynchronous invocations go once Lambda's retries are spent
    /// (its dead-letter queue); `None`: they are logged and dropped, as Lambda drops them for a
    /// function without one.
    fn dead_letter_queue(&self, _function_logical_id: &str) -> Option<DeadLetterQueue> {
        None
    }
}

/// A function's dead-letter queue (`DeadLetterConfig`, SAM's `DeadLetterQueue`) in moto's SQS.
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

/// What Lambda puts in a dead-letter message, besides the event (the body, unmodified): the
/// message attributes of the Lambda Developer Guide's "Dead-letter queues"
/// (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html#invocation-dlq>).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterAttributes {
    /// `RequestID` (String): the invocation's request id, the same across its retries.
    pub request_id: String,
    /// `ErrorCode` (Number): "3-digit HTTP error code". For a function error it is 200, the
    /// status of the Invoke that ran the function (as AWS records it: LocalStack's
    /// AWS-validated snapshot of `test_dead_letter_queue`).
    pub error_code: u16,
    /// `ErrorMessage` (String): the function's `errorMessage`, truncated to 1 KB.
    pub error_message: String,
}

/// Lambda truncates a dead-letter message's `ErrorMessage` to 1 KB.
const DEAD_LETTER_MESSAGE_LIMIT: usize = 1024;

impl DeadLetterAttributes {
    /// For a function error as Lambda reports it (`{"errorType", "errorMessage"}`); any other
    /// value's JSON text stands for the message.
    pub fn for_function_error(request_id: &str, error: &Value) -> Self {
        let message = match error.get("errorMessage").and_then(Value::as_str) {
            Some(message) => message.to_owned(),
            None => error.to_string(),
        };
        let mut end = message.len().min(DEAD_LETTER_MESSAGE_LIMIT);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            request_id: request_id.to_owned(),
            error_code: 200,
            error_message: message[..end].to_owned(),
        }
    }
}

impl DeadLetterQueue {
    pub fn new(sqs: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            sqs,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `event` as Lambda does once an asynchronous invocation has failed three times:
    /// the event as the body, the error in the message attributes.
    pub async fn send(
        &self,
        event: &Value,
        attributes: &DeadLetterAttributes,
    ) -> Result<(), String> {
        use aws_sdk_sqs::types::MessageAttributeValue;
        let attribute = |data_type: &str, value: String| {
            MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value)
                .build()
                .map_err(|e| e.to_string())
        };
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(event.to_string())
            .message_attributes(
                "RequestID",
                attribute("String", attributes.request_id.clone())?,
            )
            .message_attributes(
                "ErrorCode",
                attribute("Number", attributes.error_code.to_string())?,
            )
            .message_attributes(
                "ErrorMessage",
                attribute("String", attributes.error_message.clone())?,
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())
    }
}

/// Where one asynchronous invocation goes if it fails three times, and what it carries.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub queue: DeadLetterQueue,
    pub request_id: String,
    pub event: Value,
}

/// One asynchronous invocation as Lambda makes it for S3 notifications, SNS, EventBridge rules,
/// alarm actions, CodePipeline and `Invoke` with `InvocationType=Event`: `attempt` runs, and
/// after a function error runs again after each of `delays` (Lambda: two retries); then the
/// event goes to `dead_letter` with the last error, or, without one, the failure is logged and
/// dropped. `what` names the invocation in logs. An error is Lambda's error object
/// (`errorType`, `errorMessage`).
pub fn spawn_async_invocation<F, Fut>(
    what: String,
    delays: Vec<Duration>,
    dead_letter: Option<DeadLetter>,
    attempt: F,
) where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Value, Value>> + Send + 'static,
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
                        dead_letter_or_drop(&what, tries, dead_letter.as_ref(), &error).await;
                        return;
                    };
                    tracing::warn!(invocation = %what, attempt = tries, %error, retry_in = ?delay, "asynchronous invocation failed; will retry");
                    tokio::time::sleep(*delay).await;
                    tries += 1;
                }
            }
        }
    });
}

/// The end of a failed asynchronous invocation: its dead-letter queue, or the log.
async fn dead_letter_or_drop(
    what: &str,
    tries: usize,
    dead_letter: Option<&DeadLetter>,
    error: &Value,
) {
    let Some(dead_letter) = dead_letter else {
        tracing::warn!(invocation = %what, attempt = tries, %error, "asynchronous invocation failed; no retries left, no dead-letter queue: dropped");
        return;
    };
    let attributes = DeadLetterAttributes::for_function_error(&dead_letter.request_id, error);
    match dead_letter
        .queue
        .send(&dead_letter.event, &attributes)
        .await
    {
        Ok(()) => {
            tracing::warn!(invocation = %what, attempt = tries, %error, queue = dead_letter.queue.url(), request_id = %dead_letter.request_id, "asynchronous invocation failed; no retries left: sent to its dead-letter queue")
        }
        // Lambda counts a DeadLetterErrors metric and drops the event.
        Err(send_error) => {
            tracing::error!(invocation = %what, %error, queue = dead_letter.queue.url(), send_error, "asynchronous invocation failed and its dead-letter queue refused it: dropped")
        }
    }
}

/// How this process's Lambda stand-in treats asynchronous invocations: the delays before its
/// retries and each function's dead-letter queue (by logical id).
#[derive(Debug, Clone, Default)]
pub struct AsyncSettings {
    pub retry_delays: Vec<Duration>,
    pub dead_letter_queues: BTreeMap<String, DeadLetterQueue>,
}

impl AsyncSettings {
    /// The stack's: `retry_delays`, and the dead-letter queues provisioning resolved from the
    /// template (function logical id → queue URL).
    pub fn new(
        sdk: &SdkConfig,
        retry_delays: Vec<Duration>,
        dead_letter_queue_urls: &BTreeMap<String, String>,
    ) -> Self {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        Self {
            retry_delays,
            dead_letter_queues: dead_letter_queue_urls
                .iter()
                .map(|(id, url)| (id.clone(), DeadLetterQueue::new(sqs.clone(), url)))
                .collect(),
        }
    }
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
    asynchronous: AsyncSettings,
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

    /// Each function with its own credentials ([`crate::sdk::function_sdk_config`]), as each
    /// has its own execution role in AWS.
    fn build(sdk: &SdkConfig, env_of: impl Fn(&str) -> Option<Env>) -> Self {
        let sdk_of = |id: &str| crate::sdk::function_sdk_config(sdk, id);
        let intake = build::<Intake>(
            "IntakeFunction",
            env_of("IntakeFunction"),
            &sdk_of("IntakeFunction"),
        );
        let page = build::<ApprovalPage>(
            "ApprovalPageFunction",
            env_of("ApprovalPageFunction"),
            &sdk_of("ApprovalPageFunction"),
        );
        let mut handlers: BTreeMap<&'static str, Built> = BTreeMap::new();
        handlers.insert("IntakeFunction", event_handler(intake.clone()));
        handlers.insert(
            "MailerFunction",
            event_handler(build::<Mailer>(
                "MailerFunction",
                env_of("MailerFunction"),
                &sdk_of("MailerFunction"),
            )),
        );
        handlers.insert(
            "RollbackFunction",
            event_handler(build::<RollbackFunction>(
                "RollbackFunction",
                env_of("RollbackFunction"),
                &sdk_of("RollbackFunction"),
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
            handlers.insert(id, built(id, env_of(id), &sdk_of(id)));
        }
        Self {
            handlers,
            intake,
            asynchronous: AsyncSettings::default(),
        }
    }

    /// With Lambda's treatment of asynchronous invocations (retries, dead-letter queues); without
    /// it, an asynchronous invocation runs once and a failure is logged.
    pub fn with_async_settings(mut self, settings: AsyncSettings) -> Self {
        self.asynchronous = settings;
        self
    }

    /// The function's dead-letter queue, if the template gives it one.
    pub fn dead_letter_queue_of(&self, function: &str) -> Option<DeadLetterQueue> {
        let id = canonical(function)?;
        self.asynchronous.dead_letter_queues.get(id).cloned()
    }

    /// Queues an asynchronous invocation as Lambda does for `InvocationType=Event`: the function
    /// must exist (`Err` with Lambda's error otherwise); then it runs in the background with
    /// Lambda's retries and, after the last failure, its dead-letter queue. Returns the request
    /// id, the same for every attempt.
    pub fn invoke_async(&self, function: &str, event: Value) -> Result<String, Value> {
        let Some(id) = canonical(function) else {
            return Err(json!({
                "errorType": "ResourceNotFoundException",
                "errorMessage": format!("no local function {function:?}; known: {}", known()),
            }));
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let dead_letter = self.dead_letter_queue_of(id).map(|queue| DeadLetter {
            queue,
            request_id: request_id.clone(),
            event: event.clone(),
        });
        let this = self.clone();
        let attempt_id = request_id.clone();
        spawn_async_invocation(
            format!("{id} {request_id}"),
            self.asynchronous.retry_delays.clone(),
            dead_letter,
            move || {
                let (this, event, request_id) = (this.clone(), event.clone(), attempt_id.clone());
                async move { this.invoke_with_id(id, event, request_id).await }
            },
        );
        Ok(request_id)
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

    fn dead_letter_queue(&self, function_logical_id: &str) -> Option<DeadLetterQueue> {
        self.dead_letter_queue_of(function_logical_id)
    }
}

/// CodePipeline's job actions and SNS's subscriptions invoke functions asynchronously, with
/// Lambda's retries and dead-letter queue.
impl Invoker for LocalFunctions {
    fn invoke(&self, function_logical_id: &str, event: Value) -> Result<(), String> {
        if canonical(function_logical_id).is_none() {
            return Err(format!(
                "function {function_logical_id} is not built into shipgate-local; known: {}",
                known()
            ));
        }
        self.invoke_async(function_logical_id, event)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl S3Subscriber for LocalFunctions {
    fn deliver(
        &self,
        event: Value,
        request_id: String,
    ) -> futures::future::BoxFuture<'static, Result<Value, Value>> {
        let this = self.clone();
        Box::pin(async move {
            this.invoke_with_id("IntakeFunction", event, request_id)
                .await
        })
    }

    fn dead_letter_queue(&self) -> Option<DeadLetterQueue> {
        self.dead_letter_queue_of("IntakeFunction")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_carries_the_functions_error_message_up_to_1_kb() {
        let error = json!({"errorType": "StoreError", "errorMessage": "throttled"});
        assert_eq!(
            DeadLetterAttributes::for_function_error("req-1", &error),
            DeadLetterAttributes {
                request_id: "req-1".into(),
                error_code: 200,
                error_message: "throttled".into(),
            }
        );
        // Cut at 1 KB, on a character boundary.
        let long = json!({"errorMessage": "é".repeat(700)});
        let cut = DeadLetterAttributes::for_function_error("r", &long).error_message;
        assert_eq!(cut.len(), 1024);
        assert!(cut.chars().all(|c| c == 'é'));
        // Not Lambda's error object: its JSON text.
        let odd = DeadLetterAttributes::for_function_error("r", &json!("boom"));
        assert_eq!(odd.error_message, "\"boom\"");
    }
}
