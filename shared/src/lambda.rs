//! What every function's `main` does, once: logging, configuration from the environment, one
//! SDK configuration, the function built, then Lambda's invocation loop around its handler.
//!
//! A function says how it is configured and built ([`Function`]) and what handles an event: a
//! CodePipeline job action ([`JobAction`], served by [`serve_job`], which answers every job) or
//! any other event ([`EventHandler`], served by [`serve`]). Its `main.rs` is then one call. The
//! local stack builds the same functions through the same trait.

use std::future::Future;

pub use aws_config::SdkConfig;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Serialize;
use serde_json::Value;

use crate::config::{ConfigError, Env};
use crate::job::{JobAction, JobError};

/// An error a function could not be built with.
pub type BuildError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A function, configured and built once per process.
pub trait Function: Sized + Send + Sync + 'static {
    type Config;

    /// Its configuration, from the environment the template gives it.
    fn configure(env: &Env) -> Result<Self::Config, ConfigError>;

    /// The function with its clients, built from one SDK configuration.
    fn build(config: Self::Config, sdk: &SdkConfig) -> Result<Self, BuildError>;

    /// Configured from `env` and built: as a cold start does it.
    fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, BuildError> {
        Self::build(Self::configure(env)?, sdk)
    }
}

/// An error as Lambda reports it: a stable type and a message.
pub trait ErrorType: std::fmt::Display {
    fn error_type(&self) -> &'static str;
}

impl ErrorType for JobError {
    fn error_type(&self) -> &'static str {
        JobError::error_type(self)
    }
}

/// A function that handles any event other than a CodePipeline job.
pub trait EventHandler: Function {
    type Output: Serialize;
    type Error: ErrorType + std::fmt::Debug + Send;

    fn handle(
        &self,
        event: Value,
        request_id: &str,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}

/// An error handed to the runtime, which reports its type and message.
#[derive(Debug)]
pub struct Failure<E>(pub E);

impl<E: ErrorType> From<Failure<E>> for Diagnostic {
    fn from(f: Failure<E>) -> Self {
        Diagnostic {
            error_type: f.0.error_type().to_owned(),
            error_message: f.0.to_string(),
        }
    }
}

/// Logging, configuration, the SDK configuration and the function, as a cold start makes them.
pub async fn start<F: Function>() -> Result<(F, SdkConfig), lambda_runtime::Error> {
    crate::telemetry::init();
    let config = F::configure(&Env::from_process())?;
    let sdk = crate::aws::load_sdk_config().await;
    Ok((F::build(config, &sdk)?, sdk))
}

/// Runs a CodePipeline job action in Lambda: every job is answered ([`crate::job::handle`]).
pub async fn serve_job<A: Function + JobAction>() -> Result<(), lambda_runtime::Error> {
    let (action, sdk) = start::<A>().await?;
    let codepipeline = aws_sdk_codepipeline::Client::new(&sdk);
    let (action, codepipeline) = (&action, &codepipeline);
    // Boxed, here and in `serve`: a handler's future nested in the runtime's service future is
    // deep enough to overflow the compiler's layout query depth.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Box::pin(crate::job::handle(action, codepipeline, event.payload))
            .await
            .map_err(Failure)
    }))
    .await
}

/// Runs an event handler in Lambda.
pub async fn serve<H: EventHandler>() -> Result<(), lambda_runtime::Error> {
    let (handler, _) = start::<H>().await?;
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Box::pin(handler.handle(event.payload, &event.context.request_id))
            .await
            .map_err(Failure)
    }))
    .await
}

/// `impl Function` for a function whose configuration has `from_env(&Env)` and which is built
/// with `new(config, &SdkConfig)`: `shipgate::function!(Mailer, MailerConfig);`.
#[macro_export]
macro_rules! function {
    ($function:ty, $config:ty) => {
        impl $crate::lambda::Function for $function {
            type Config = $config;

            fn configure(
                env: &$crate::config::Env,
            ) -> ::std::result::Result<$config, $crate::config::ConfigError> {
                <$config>::from_env(env)
            }

            fn build(
                config: $config,
                sdk: &$crate::lambda::SdkConfig,
            ) -> ::std::result::Result<Self, $crate::lambda::BuildError> {
                Ok(<$function>::new(config, sdk))
            }
        }
    };
}

/// `impl Function`, `impl EventHandler` (the event and request id to `$handle`) and
/// `impl ErrorType` (the error's own `error_type()`) for an event-driven function:
/// `shipgate::event_function!(Mailer, MailerConfig, MailerReport, MailerError,
/// |mailer, event, _request_id| mailer.handle(event));`.
#[macro_export]
macro_rules! event_function {
    ($function:ty, $config:ty, $output:ty, $error:ty,
     |$this:ident, $event:ident, $request_id:ident| $handle:expr) => {
        $crate::function!($function, $config);

        impl $crate::lambda::EventHandler for $function {
            type Output = $output;
            type Error = $error;

            async fn handle(
                &self,
                $event: ::serde_json::Value,
                $request_id: &str,
            ) -> ::std::result::Result<$output, $error> {
                let $this = self;
                $handle.await
            }
        }

        impl $crate::lambda::ErrorType for $error {
            fn error_type(&self) -> &'static str {
                <$error>::error_type(self)
            }
        }
    };
}
