//! Mocked SDK clients for the adapters' tests: a client of any service answered by
//! `aws-smithy-mocks` rules, built the way `aws_smithy_mocks::mock_client!` builds one but
//! without the SDK's `test-util` feature (which would compile each SDK crate a second time for
//! tests), and the service errors those rules answer with.

use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode};
use aws_smithy_runtime_api::client::result::CreateUnhandledError;
use aws_smithy_types::error::ErrorMetadata;

/// `mock_client!(aws_sdk_ecs, RuleMode::Sequential, &[&rule])`: a client of that SDK crate
/// whose every call is answered by `rules`, in `mode`, with no network and test credentials.
macro_rules! mock_client {
    ($sdk:ident, $mode:expr, $rules:expr $(,)?) => {
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .region($sdk::config::Region::new("eu-west-1"))
                .credentials_provider(::aws_credential_types::Credentials::new(
                    "AKID", "SECRET", None, None, "test",
                ))
                .http_client(::aws_smithy_mocks::create_mock_http_client())
                .interceptor($crate::aws::mock::interceptor($mode, $rules))
                .build(),
        )
    };
}
pub(crate) use mock_client;

/// The interceptor that answers calls with `rules`.
pub(crate) fn interceptor(mode: RuleMode, rules: &[&Rule]) -> MockResponseInterceptor {
    rules
        .iter()
        .fold(MockResponseInterceptor::new().rule_mode(mode), |i, rule| {
            i.with_rule(rule)
        })
}

/// An operation's error as the service sends one it does not model: `code` and `message` (what
/// the SDK's `XxxError::generic` builds), for `mock!(…).then_error(|| service_error(…))`.
pub(crate) fn service_error<E: CreateUnhandledError>(code: &str, message: &str) -> E {
    let meta = ErrorMetadata::builder().code(code).message(message).build();
    E::create_unhandled_error(Box::new(meta.clone()), Some(meta))
}
