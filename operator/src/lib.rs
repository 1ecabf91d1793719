//! `shipgate`, the operators' command line: what shipgate's functions cannot decide alone.
//!
//! One module per command group, each with its clap arguments and its `run`: [`failed`] (the
//! asynchronous events that failed three times: `list`, `replay`) and [`doctor`] (the preflight
//! of a real installation); `releases`, `show`, `pause`... join [`Command`] the same way. What every group shares lives here and in
//! [`stack`] (the shipgate stack's resources, from flags, the environment or CloudFormation) and
//! [`aws`] (one adapter per AWS service). Decisions are pure functions of what the adapters
//! return ([`failed::event`]); `main.rs` only parses, loads the SDK configuration and reports.
//!
//! The AWS SDK's own configuration is used as is: profiles (`AWS_PROFILE`), region, and
//! endpoints (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`), which is how it reaches the
//! local stack.

pub mod aws;
pub mod doctor;
pub mod error;
pub mod failed;
pub mod stack;

use std::io::Write;

use aws_config::SdkConfig;
use clap::{Parser, Subcommand};

pub use error::OperatorError;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "shipgate",
    version,
    about = "Operate shipgate: the failed-event queue, the preflight of an installation (and, later, releases, deployments)"
)]
pub struct Cli {
    /// The shipgate CloudFormation stack, where what no flag names is looked up (its
    /// resources by logical id).
    #[arg(
        long,
        global = true,
        env = "SHIPGATE_STACK",
        default_value = "shipgate"
    )]
    pub stack: String,
    #[command(subcommand)]
    pub command: Command,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Asynchronous events (S3 drops, approval notifications, alarm state changes) that failed
    /// three times and wait in the failed-invocation queue.
    Failed(failed::FailedArgs),
    /// Check an installation before its first release: the link-signing secret, the SES
    /// sender and sandbox, the approval page, and in each environment account the deploy,
    /// stack and checks roles' trust, the registry, the forwarding of alarms, the test probe and
    /// the network's reach of ECR and CloudWatch Logs. One line per check, with the fix of each
    /// that failed.
    Doctor(doctor::DoctorArgs),
}

/// The AWS clients of one run, built once from one SDK configuration.
#[derive(Debug, Clone)]
pub struct Clients {
    /// The configuration they were built from (commands that reach other accounts start there).
    pub sdk: SdkConfig,
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub lambda: aws_sdk_lambda::Client,
}

impl Clients {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            sdk: sdk.clone(),
            cloudformation: aws_sdk_cloudformation::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            lambda: aws_sdk_lambda::Client::new(sdk),
        }
    }
}

/// Runs one command, writing its report to `out`.
pub async fn run(cli: Cli, clients: &Clients, out: &mut dyn Write) -> Result<(), OperatorError> {
    let stack = stack::StackResources::new(clients.cloudformation.clone(), cli.stack);
    match cli.command {
        Command::Failed(args) => failed::run(args, clients, &stack, out).await,
        Command::Doctor(args) => doctor::run(args, clients, &stack, out).await,
    }
}
