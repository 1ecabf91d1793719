//! shipgate-local: everything needed to run shipgate on one machine with no AWS account.
//!
//! It starts and stops the stand-ins (moto server for the AWS APIs, one OCI registry per account
//! for ECR), serves the CodePipeline operations moto lacks, and delivers events (S3 drops,
//! pipeline jobs, approval notifications, function-URL requests, alarms, `Invoke`) to the very
//! handlers that run in Lambda, with Lambda's retries and dead-letter queue for asynchronous ones.

pub mod accounts;
pub mod alarms;
pub mod applications;
pub mod approvals;
pub mod authorization;
pub mod codepipeline;
pub mod delivery;
pub mod environments;
pub mod function_urls;
pub mod functions;
pub mod iam;
pub mod iam_conformance;
pub mod lambda_api;
pub mod moto;
pub mod outbox;
pub mod process;
pub mod provision;
pub mod recorded_process;
pub mod recorder;
pub mod registries;
pub mod sdk;
pub mod stack;
pub mod status;
pub mod summary;
pub mod test_endpoints;
