//! CloudFormation: the shipgate stack's resources, parameters and outputs. (Tested against
//! moto, through `--stack`, in the `failed_events` end-to-end test.)

use std::collections::BTreeMap;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::SdkError;
use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksError;
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

/// A stack's parameters and outputs (`DescribeStacks`).
#[derive(Debug, Clone, Default)]
pub struct StackDescription {
    pub parameters: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
}

pub async fn describe_stack(
    client: &Client,
    stack: &str,
) -> Result<StackDescription, SdkError<DescribeStacksError>> {
    let out = client.describe_stacks().stack_name(stack).send().await?;
    let mut description = StackDescription::default();
    if let Some(found) = out.stacks().first() {
        for p in found.parameters() {
            if let (Some(k), Some(v)) = (p.parameter_key(), p.parameter_value()) {
                description.parameters.insert(k.to_owned(), v.to_owned());
            }
        }
        for o in found.outputs() {
            if let (Some(k), Some(v)) = (o.output_key(), o.output_value()) {
                description.outputs.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    Ok(description)
}
