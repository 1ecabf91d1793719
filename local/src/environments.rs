//! The environment accounts' platform: `environment.yaml` deployed as stack `shipgate-env` in
//! each environment account (int, stg, prod), as a user deploys it once per account in AWS. It
//! creates the role shipgate assumes and what the applications' templates import (network, ECS
//! cluster, the ALB with its production and test listeners and the blue and green target groups).
//!
//! The stack's test probe (`TestProbe`, a Lambda function in the environment's VPC) takes its
//! code from S3 (`ProbeCodeBucket`, `ProbeCodeKey`); moto checks that the object exists, as
//! Lambda does, but runs no code. So each account gets a bucket holding a placeholder package
//! (a zip whose `bootstrap` says so), and the probe itself runs in this process
//! ([`crate::lambda_api`] answers its `Invoke` with `shipgate_probe::Probe`, configured from the
//! function's environment as CloudFormation resolved it in moto).
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

/// Where the placeholder of the probe's package is, in each environment account.
pub fn probe_code_bucket(account: &str) -> String {
    format!("shipgate-local-code-{account}")
}
pub const PROBE_CODE_KEY: &str = "shipgate/probe.zip";

/// A deployment package Lambda would accept (a zip with an executable `bootstrap`) that says
/// where the probe really runs.
fn placeholder_package() -> Result<Vec<u8>> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    zip.start_file("bootstrap", options)?;
    zip.write_all(
        b"#!/bin/sh\necho 'the local stack runs the test probe in shipgate-local' >&2\nexit 1\n",
    )?;
    Ok(zip.finish()?.into_inner())
}

/// Creates the account's code bucket and puts the probe's placeholder package in it.
async fn put_probe_package(sdk: &SdkConfig, account: &str) -> Result<()> {
    let s3 = shipgate::aws::s3_client(sdk, true);
    let bucket = probe_code_bucket(account);
    crate::provision::create_regional_bucket(&s3, &bucket).await?;
    s3.put_object()
        .bucket(&bucket)
        .key(PROBE_CODE_KEY)
        .body(placeholder_package()?.into())
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("putting s3://{bucket}/{PROBE_CODE_KEY}"))?;
    Ok(())
}

/// The local stack acting in `account`, as its deploy role.
async fn as_environment(sdk: &SdkConfig, account: &str) -> SdkConfig {
    shipgate::aws::assume_role(
        sdk,
        &accounts::deploy_role_arn(account),
        "shipgate-local-environment",
    )
    .await
}

/// Deploys `template_text` as `shipgate-env` in every environment account.
pub async fn provision_environments(
    sdk: &SdkConfig,
    template_text: &str,
    test_endpoint_urls: &BTreeMap<String, String>,
) -> Result<EnvironmentOutputs> {
    let mut all = BTreeMap::new();
    for (environment, account) in accounts::ENVIRONMENTS {
        let assumed = as_environment(sdk, account).await;
        put_probe_package(&assumed, account).await?;
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
            .parameters(param("ToolingAccountId", accounts::TOOLING))
            .parameters(param("ProbeCodeBucket", &probe_code_bucket(account)))
            .parameters(param("ProbeCodeKey", PROBE_CODE_KEY));
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

/// Each environment account's test probe (account → probe), configured from the environment
/// CloudFormation gave `shipgate-test-probe` in moto. Read from moto directly (`moto`): the
/// local Lambda endpoint, which answers the probe's `Invoke`, is not serving yet.
pub async fn test_probes(
    sdk: &SdkConfig,
    moto: &str,
) -> Result<BTreeMap<String, std::sync::Arc<shipgate_probe::Probe>>> {
    use shipgate::lambda::Function;
    let mut probes = BTreeMap::new();
    for (environment, account) in accounts::ENVIRONMENTS {
        let assumed = as_environment(sdk, account).await;
        let lambda = aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::config::Builder::from(&assumed)
                .endpoint_url(moto)
                .build(),
        );
        let function = lambda
            .get_function_configuration()
            .function_name(shipgate::probe::FUNCTION_NAME)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| {
                format!(
                    "reading {} in {environment} ({account})",
                    shipgate::probe::FUNCTION_NAME
                )
            })?;
        let variables = function
            .environment()
            .and_then(|e| e.variables())
            .cloned()
            .unwrap_or_default();
        let probe = shipgate_probe::Probe::from_env(
            &shipgate::config::Env::from_pairs(variables),
            &assumed,
        )
        .map_err(|e| anyhow!("configuring {environment}'s test probe: {e}"))?;
        probes.insert(account.to_owned(), std::sync::Arc::new(probe));
    }
    Ok(probes)
}

/// What `Ref` gives for each parameter and resource of `shipgate-env` in `account` (the
/// parameters' values, the resources' physical ids, as CloudFormation reports them): the names
/// the environment's policies resolve to there.
pub async fn references(sdk: &SdkConfig, account: &str) -> Result<BTreeMap<String, String>> {
    let assumed = shipgate::aws::assume_role(
        sdk,
        &accounts::deploy_role_arn(account),
        "shipgate-local-environment",
    )
    .await;
    let cf = aws_sdk_cloudformation::Client::new(&assumed);
    let mut ids = BTreeMap::new();
    let described = cf
        .describe_stacks()
        .stack_name(STACK_NAME)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("describing {STACK_NAME} in {account}"))?;
    for parameter in described.stacks().iter().flat_map(|s| s.parameters()) {
        if let (Some(key), Some(value)) = (parameter.parameter_key(), parameter.parameter_value()) {
            ids.insert(key.to_owned(), value.to_owned());
        }
    }
    let mut pages = cf
        .list_stack_resources()
        .stack_name(STACK_NAME)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(sdk_error)
            .with_context(|| format!("listing the resources of {STACK_NAME} in {account}"))?;
        for resource in page.stack_resource_summaries() {
            if let (Some(logical), Some(physical)) = (
                resource.logical_resource_id(),
                resource.physical_resource_id(),
            ) {
                ids.insert(logical.to_owned(), physical.to_owned());
            }
        }
    }
    Ok(ids)
}
