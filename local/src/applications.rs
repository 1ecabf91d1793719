//! The applications the local stack serves, as their stacks declare them in AWS: SSM
//! parameters `/shipgate/applications/<application>` (shared/src/application), in moto.
//!
//! `template.yaml` declares the installation's own application (provisioned from the template
//! like every other resource); tests and the demo onboard more by writing a declaration, which
//! is all an application stack does for the functions to know an application.

use anyhow::{Context, Result, anyhow};
use aws_config::SdkConfig;
use shipgate::application::directory::Directory;
use shipgate::application::{Application, parameter_name};

use crate::sdk::sdk_error;
use crate::stack::Stack;

/// The declaration of `name`, as the functions read it (their directory, with nothing kept).
pub async fn declared(sdk: &SdkConfig, name: &str) -> Result<Option<Application>> {
    Directory::new(aws_sdk_ssm::Client::new(sdk))
        .application(name)
        .await
        .with_context(|| format!("reading the declaration of {name}"))
}

/// Writes `application`'s declaration (creating or replacing it), as its stack would.
pub async fn declare(sdk: &SdkConfig, application: &Application) -> Result<()> {
    let value = serde_json::to_string(&application.declaration())?;
    aws_sdk_ssm::Client::new(sdk)
        .put_parameter()
        .name(parameter_name(&application.name))
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .tier(aws_sdk_ssm::types::ParameterTier::IntelligentTiering)
        .overwrite(true)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("declaring application {}", application.name))?;
    Ok(())
}

impl Stack {
    /// The installation's own application (template.yaml's `ApplicationName` and
    /// `Declaration`).
    pub async fn own_application(&self) -> Result<Application> {
        let name = self
            .provisioned
            .refs
            .get("ApplicationName")
            .ok_or_else(|| anyhow!("the template has no ApplicationName parameter"))?;
        declared(&self.sdk, name)
            .await?
            .ok_or_else(|| anyhow!("application {name} is not declared"))
    }

    /// Onboards `name` with the own application's pipeline and chain: a test's application of
    /// its own, released through the stack's pipeline.
    pub async fn declare_like_own(&self, name: &str) -> Result<Application> {
        let mut application = self.own_application().await?;
        application.name = name.to_owned();
        declare(&self.sdk, &application).await?;
        Ok(application)
    }
}

/// What CloudFormation would export from the core stack (`template.yaml`'s outputs that have
/// an `Export`): export name → value, with the core's references resolved as provisioned.
pub fn core_exports(
    core_template: &str,
    core: &crate::codepipeline::Resolver,
) -> Result<std::collections::BTreeMap<String, String>> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(core_template).context("the core template is not YAML")?;
    let evaluator = crate::codepipeline::TemplateEvaluator::new(core_template)?;
    let mut exports = std::collections::BTreeMap::new();
    let Some(outputs) = doc.get("Outputs").and_then(serde_yaml::Value::as_mapping) else {
        return Ok(exports);
    };
    for (id, output) in outputs {
        let (Some(id), Some(name)) = (
            id.as_str(),
            output.get("Export").and_then(|e| e.get("Name")),
        ) else {
            continue;
        };
        let name = evaluator
            .string(core, name, &format!("Outputs.{id}.Export.Name"))?
            .ok_or_else(|| anyhow!("Outputs.{id}.Export.Name has no value"))?;
        let value = output
            .get("Value")
            .ok_or_else(|| anyhow!("Outputs.{id} has no Value"))?;
        let value = evaluator
            .string(core, value, &format!("Outputs.{id}.Value"))?
            .ok_or_else(|| anyhow!("Outputs.{id}.Value has no value"))?;
        exports.insert(name, value);
    }
    Ok(exports)
}

/// An application stack (`application.yaml`) deployed with `parameters` beside the core: its
/// pipeline, read from the template with the core's exports, and its declaration, written as
/// the stack's `Declaration` parameter would be. The pipeline is the caller's to run.
pub async fn onboard(
    sdk: &SdkConfig,
    application_template: &str,
    exports: &std::collections::BTreeMap<String, String>,
    parameters: &std::collections::BTreeMap<String, String>,
) -> Result<(Application, Vec<crate::codepipeline::PipelineDefinition>)> {
    let name = parameters
        .get("ApplicationName")
        .ok_or_else(|| anyhow!("an application stack needs ApplicationName"))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(application_template).context("application.yaml is not YAML")?;
    let evaluator = crate::codepipeline::TemplateEvaluator::new(application_template)?;
    let mut resolver =
        crate::provision::resolver(&doc, &evaluator, crate::accounts::TOOLING, parameters, "")?;
    resolver.exports = exports.clone();
    resolver.stack_name = format!("shipgate-application-{name}");
    let pipelines = crate::codepipeline::pipelines_from_template(application_template, &resolver)
        .with_context(|| format!("reading application {name}'s pipeline"))?;
    let value = doc
        .get("Resources")
        .and_then(|r| r.get("Declaration"))
        .and_then(|d| d.get("Properties"))
        .and_then(|p| p.get("Value"))
        .ok_or_else(|| anyhow!("application.yaml has no Declaration value"))?;
    let text = evaluator
        .string(&resolver, value, "Resources.Declaration.Properties.Value")?
        .ok_or_else(|| anyhow!("the declaration of {name} has no value"))?;
    let application = Application::from_declaration(name, &text)?;
    declare(sdk, &application).await?;
    Ok((application, pipelines))
}
