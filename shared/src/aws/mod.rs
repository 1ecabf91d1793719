//! AWS adapters: one module per service shipgate calls, each taking a concrete SDK client and
//! mapping SDK types and errors into shipgate's.
//!
//! A process builds one [`SdkConfig`] with [`load_sdk_config`] and its clients once. Endpoints
//! come from the SDK's own variables (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`), which is
//! how the local stack points functions at moto and the CodePipeline stand-in.

pub mod cloudformation;
pub mod codepipeline;
pub mod s3;
pub mod secrets;
pub mod ses;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

/// The process's SDK configuration, from the environment as AWS documents it.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// An SDK configuration acting as `role_arn` (cross-account work: the environment accounts).
/// Credentials are fetched on first use and refreshed before they expire.
pub async fn assume_role(base: &SdkConfig, role_arn: &str, session_name: &str) -> SdkConfig {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .session_name(session_name)
        .configure(base)
        .build()
        .await;
    base.to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

/// An S3 client for `config`. Path-style addressing when `SHIPGATE_S3_FORCE_PATH_STYLE` is set,
/// which S3-compatible endpoints on a bare host:port need.
pub fn s3_client(config: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}
