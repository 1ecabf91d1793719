//! shipgate's shared library.
//!
//! Every Lambda function of shipgate is a thin entry point over this crate. It holds the release
//! domain and the pure decisions (what a manifest means, whether a drop is acceptable), the
//! adapters to the AWS services the functions call (one module per service, concrete SDK
//! clients), the DynamoDB record store, and the process-wide pieces: configuration read once
//! from the environment, error types, structured logging and metrics.

pub mod application;
pub mod approval;
pub mod aws;
pub mod changes;
pub mod config;
pub mod deploy;
pub mod error;
pub mod http_client;
pub mod iam;
pub mod job;
pub mod lambda;
pub mod links;
pub mod metrics;
pub mod network;
pub mod plan;
pub mod probe;
pub mod registry;
pub mod release;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
