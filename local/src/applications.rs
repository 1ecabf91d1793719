//! The applications the local stack serves, as their stacks declare them in AWS: SSM
//! parameters `/shipgate/applications/<application>` (shared/src/application), in moto.
//!
//! `template.yaml` declares the installation's own application (provisioned from the template
//! like every other resource); tests and the demo onboard more by writing a declaration, which
//! is all an application stack does for the functions to know an application.

use anyhow::{Context, Result, anyhow};
use aws_config::SdkConfig;
use shipgate::application::directory::read_declaration;
use shipgate::application::{Application, parameter_name};

use crate::sdk::sdk_error;
use crate::stack::Stack;

/// The declaration of `name`, as the functions read it.
pub async fn declared(sdk: &SdkConfig, name: &str) -> Result<Option<Application>> {
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let Some(text) = read_declaration(&ssm, name)
        .await
        .with_context(|| format!("reading the declaration of {name}"))?
    else {
        return Ok(None);
    };
    Ok(Some(Application::from_declaration(name, &text)?))
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
