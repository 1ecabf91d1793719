//! SDK configuration for the local stack, built the way functions build theirs in AWS.
//!
//! The endpoints are exactly the SDK's own settings (`AWS_ENDPOINT_URL` and the per-service
//! `AWS_ENDPOINT_URL_<SERVICE>`), given either as environment variables (functions started from
//! the env file) or, for in-process use where tests run in parallel with different ports, as the
//! SDK's service-config source holding the same variable names.

use std::collections::BTreeMap;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

/// The static credentials every local client uses (moto accepts any).
pub const ACCESS_KEY_ID: &str = "shipgate-local";
pub const SECRET_ACCESS_KEY: &str = "shipgate-local-secret";

/// What a function's access key id starts with; its logical id follows.
const FUNCTION_KEY_PREFIX: &str = "shipgate_local_";

/// The access key id the function `logical_id` signs its requests with. In AWS each function
/// acts as its own execution role; locally each has a key of its own, so that the endpoints
/// (and the call recorder, [`crate::recorder`]) can tell which function made a request. moto
/// takes any key that is not one of its own as the tooling account's, as it does the stack's.
pub fn function_access_key(logical_id: &str) -> String {
    format!("{FUNCTION_KEY_PREFIX}{logical_id}")
}

/// The function whose key `access_key` is, if it is one ([`function_access_key`]).
pub fn function_of_access_key(access_key: &str) -> Option<&str> {
    access_key
        .strip_prefix(FUNCTION_KEY_PREFIX)
        .filter(|id| !id.is_empty())
}

/// `sdk` signing with the function `logical_id`'s own access key.
pub fn function_sdk_config(sdk: &SdkConfig, logical_id: &str) -> SdkConfig {
    sdk.to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                function_access_key(logical_id),
                SECRET_ACCESS_KEY,
                None,
                None,
                "shipgate-local-function",
            )),
        )
        .build()
}

/// Service-specific settings as environment variable names and values.
#[derive(Debug, Clone, Default)]
pub struct EnvServiceConfig(pub BTreeMap<String, String>);

impl LoadServiceConfig for EnvServiceConfig {
    /// As aws-config does: the variable is the key's base name (`AWS_ENDPOINT_URL`) with the
    /// service id upper-cased, spaces as underscores (`AWS_ENDPOINT_URL_CODEPIPELINE`).
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let service = key.service_id().to_uppercase().replace([' ', '-'], "_");
        self.0.get(&format!("{}_{service}", key.env())).cloned()
    }
}

/// The local stack's endpoints, in the SDK's variable names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `AWS_ENDPOINT_URL`: moto.
    pub default: String,
    /// `AWS_ENDPOINT_URL_<SERVICE>` overrides, e.g. `AWS_ENDPOINT_URL_CODEPIPELINE`.
    pub per_service: BTreeMap<String, String>,
    pub region: String,
}

impl Endpoints {
    /// The environment a function needs to reach the same endpoints (the env file's content).
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            ("AWS_REGION".to_owned(), self.region.clone()),
            ("AWS_ACCESS_KEY_ID".to_owned(), ACCESS_KEY_ID.to_owned()),
            (
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                SECRET_ACCESS_KEY.to_owned(),
            ),
            ("AWS_ENDPOINT_URL".to_owned(), self.default.clone()),
        ];
        vars.extend(self.per_service.iter().map(|(k, v)| (k.clone(), v.clone())));
        vars
    }

    /// An SDK configuration for these endpoints, for clients built in this process.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                    ACCESS_KEY_ID,
                    SECRET_ACCESS_KEY,
                    None,
                    None,
                    "shipgate-local",
                )),
            )
            .endpoint_url(&self.default)
            .service_config(EnvServiceConfig(self.per_service.clone()))
            .time_source(aws_smithy_async::time::SystemTimeSource::new())
            .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
            .build()
    }
}

/// An SDK error as one error whose message carries its whole chain of causes: the SDK's own
/// `Display` says only "service error", which tells a user of the local stack nothing.
pub fn sdk_error<E: std::error::Error>(e: E) -> anyhow::Error {
    anyhow::anyhow!(
        "{}",
        aws_smithy_types::error::display::DisplayErrorContext(&e)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_function_signs_with_a_key_that_names_it() {
        let key = function_access_key("ChangeSetFunction");
        assert_eq!(function_of_access_key(&key), Some("ChangeSetFunction"));
        assert_ne!(key, function_access_key("DeployFunction"));
        assert_eq!(function_of_access_key(ACCESS_KEY_ID), None);
        assert_eq!(function_of_access_key("shipgate_local_"), None);
        assert_eq!(function_of_access_key("ASIAEXAMPLEEXAMPLE12"), None);
    }
}
