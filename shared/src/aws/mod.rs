//! AWS adapters: one module per service shipgate calls, each taking a concrete SDK client and
//! mapping SDK types and errors into shipgate's.
//!
//! A process builds one [`SdkConfig`] with [`load_sdk_config`] and its clients once. Endpoints
//! come from the SDK's own variables (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`), which is
//! how the local stack points functions at moto and the CodePipeline stand-in.

pub mod cloudformation;
pub mod cloudwatch;
pub mod codepipeline;
pub mod ecs;
pub mod elbv2;
pub mod lambda;
#[cfg(test)]
pub(crate) mod mock;
pub mod s3;
pub mod secrets;
pub mod ses;
pub mod sts;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// The process's SDK configuration, from the environment as AWS documents it, with one
/// [`https_client`] shared by every client built from it.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The SDK's default HTTPS client (hyper 1, rustls on aws-lc, proxy from the environment), as
/// `aws-smithy-runtime` builds it, with two differences that matter at a cold start:
/// - one client (one connection pool, one TLS set-up) for every service client of the process,
///   where the default gives each service client its own;
/// - the TLS set-up (reading the system's root certificates and parsing them into a trust
///   store, the bulk of a function's init) happens on the first connection, not at each
///   service client's construction, so an invocation that calls no AWS API never pays it.
pub fn https_client() -> SharedHttpClient {
    let client = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    SharedHttpClient::new(ConnectOnFirstUse(client))
}

/// Delegates to the wrapped client, except for `validate_base_client_config`, where the SDK's
/// client builds a throwaway connector (loading and parsing the root certificates) "to fail
/// fast"; the connector is built, once per settings, when a request first needs it.
#[derive(Debug)]
struct ConnectOnFirstUse(SharedHttpClient);

impl HttpClient for ConnectOnFirstUse {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
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
