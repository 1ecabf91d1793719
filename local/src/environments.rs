//! The environment accounts' platform: `environment.yaml` deployed as stack `shipgate-env` in
//! each environment account (int, stg, prod), as a user deploys it once per account in AWS. It
//! creates the role shipgate assumes and what the applications' templates import (network, ECS
//! cluster, the ALB with its production and test listeners and the blue and green target groups).
//!
//! moto creates the stack synchronously. Its CloudFormation does not support `Fn::Cidr`, nor a
//! listener whose default action is a `ForwardConfig`, so the template avoids both (it gives
//! subnet ranges as parameters and starts the production listener on a plain forward to blue,
//! which is valid in AWS too).

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use aws_config::SdkConfig;
use aws_sdk_cloudformation::types::{Capability, Parameter};

use crate::accounts;
use crate::sdk::sdk_error;

/// The outputs of each environment's `shipgate-env` stack, by environment name.
pub type EnvironmentOutputs = BTreeMap<String, BTreeMap<String, String>>;

/// The stack name the applications' templates import from.
pub const STACK_NAME: &str = "shipgate-env";

/// Deploys `template_text` as `shipgate-env` in every environment account.
pub async fn provision_environments(
    sdk: &SdkConfig,
    template_text: &str,
    test_endpoint_urls: &BTreeMap<String, String>,
) -> Result<EnvironmentOutputs> {
    let mut all = BTreeMap::new();
    for (environment, account) in accounts::ENVIRONMENTS {
        let assumed = shipgate::aws::assume_role(
            sdk,
            &accounts::deploy_role_arn(account),
            "shipgate-local-environment",
        )
        .await;
        let cf = aws_sdk_cloudformation::Client::new(&assumed);
        let param = |k: &str, v: &str| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        };
        let mut create = cf
            .create_stack()
            .stack_name(STACK_NAME)
            .template_body(template_text)
            .parameters(param("Environment", environment))
            .parameters(param("ToolingAccountId", accounts::TOOLING));
        // moto serves no request on the ALB: the checks reach the local stand-in of the
        // application instead (crate::test_endpoints).
        if let Some(url) = test_endpoint_urls.get(environment) {
            create = create.parameters(param("TestEndpointUrl", url));
        }
        create
            .capabilities(Capability::CapabilityNamedIam)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("creating {STACK_NAME} in {environment} ({account})"))?;
        let out = cf
            .describe_stacks()
            .stack_name(STACK_NAME)
            .send()
            .await
            .map_err(sdk_error)?;
        let stack = out
            .stacks()
            .first()
            .ok_or_else(|| anyhow!("{STACK_NAME} missing in {environment}"))?;
        let status = stack.stack_status().map(|s| s.as_str()).unwrap_or("?");
        if status != "CREATE_COMPLETE" {
            bail!(
                "{STACK_NAME} in {environment} is {status}: {}",
                stack.stack_status_reason().unwrap_or("no reason given")
            );
        }
        let outputs = stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect();
        all.insert(environment.to_owned(), outputs);
    }
    Ok(all)
}
