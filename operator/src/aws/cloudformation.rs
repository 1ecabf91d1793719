//! CloudFormation: the shipgate stack's resources.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::SdkError;
use aws_sdk_cloudformation::operation::list_stack_resources::ListStackResourcesError;

/// Logical id → physical id of every resource of `stack`, all pages (`ListStackResources`: for
/// a queue the physical id is its URL, for a function its name).
pub async fn stack_resources(
    client: &Client,
    stack: &str,
) -> Result<BTreeMap<String, String>, SdkError<ListStackResourcesError>> {
    let mut resources = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_stack_resources()
            .stack_name(stack)
            .set_next_token(token.take())
            .send()
            .await?;
        for summary in page.stack_resource_summaries() {
            if let (Some(logical), Some(physical)) = (
                summary.logical_resource_id(),
                summary.physical_resource_id(),
            ) {
                resources.insert(logical.to_owned(), physical.to_owned());
            }
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok(resources),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_credential_types::Credentials;
    use aws_sdk_cloudformation::operation::list_stack_resources::ListStackResourcesOutput;
    use aws_sdk_cloudformation::types::{ResourceStatus, StackResourceSummary};
    use aws_smithy_mocks::{
        MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock,
    };

    use super::*;

    /// A client answered by `rules` (what `mock_client!` builds, without the SDK's `test-util`
    /// feature, which would compile the SDK crate a second time for tests).
    fn mock_cf(rules: &[&Rule]) -> Client {
        let interceptor = rules.iter().fold(
            MockResponseInterceptor::new().rule_mode(RuleMode::Sequential),
            |i, rule| i.with_rule(rule),
        );
        let config = aws_sdk_cloudformation::Config::builder()
            .region(aws_sdk_cloudformation::config::Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
            .http_client(create_mock_http_client())
            .interceptor(interceptor)
            .build();
        Client::from_conf(config)
    }

    fn summary(logical: &str, physical: &str) -> StackResourceSummary {
        StackResourceSummary::builder()
            .logical_resource_id(logical)
            .physical_resource_id(physical)
            .resource_type("AWS::SQS::Queue")
            .resource_status(ResourceStatus::CreateComplete)
            .last_updated_timestamp(aws_smithy_types::DateTime::from_secs(0))
            .build()
    }

    #[tokio::test]
    async fn every_page_of_the_stack_is_read() {
        let first = mock!(Client::list_stack_resources)
            .match_requests(|r| r.stack_name() == Some("shipgate") && r.next_token().is_none())
            .then_output(|| {
                ListStackResourcesOutput::builder()
                    .stack_resource_summaries(summary(
                        "FailedInvocationQueue",
                        "https://sqs.eu-west-1.amazonaws.com/123456789012/shipgate-Failed",
                    ))
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(Client::list_stack_resources)
            .match_requests(|r| r.next_token() == Some("page-2"))
            .then_output(|| {
                ListStackResourcesOutput::builder()
                    .stack_resource_summaries(summary(
                        "IntakeFunction",
                        "shipgate-IntakeFunction-x1",
                    ))
                    .build()
            });
        let client = mock_cf(&[&first, &second]);
        let resources = stack_resources(&client, "shipgate").await.unwrap();
        assert_eq!(resources.len(), 2);
        assert_eq!(resources["IntakeFunction"], "shipgate-IntakeFunction-x1");
    }
}
