//! Where the shipgate stack's resources are: given by a flag or the environment, else looked up
//! in the CloudFormation stack by their logical id in `template.yaml` (once per run).

use std::collections::BTreeMap;

use tokio::sync::OnceCell;

use crate::OperatorError;
use crate::aws::cloudformation::{StackDescription, describe_stack, stack_resources};
use crate::failed::event::FunctionRole;

/// A resource of the stack the operator uses, and how an operator names it instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// What it is, for messages.
    pub what: &'static str,
    /// Its logical id in `template.yaml`.
    pub logical_id: &'static str,
    pub flag: &'static str,
    pub env: &'static str,
}

pub const FAILED_QUEUE: Resource = Resource {
    what: "the failed-invocation queue's URL",
    logical_id: "FailedInvocationQueue",
    flag: "--queue-url",
    env: "SHIPGATE_FAILED_QUEUE_URL",
};

pub const INTAKE_FUNCTION: Resource = Resource {
    what: "the intake function's name",
    logical_id: "IntakeFunction",
    flag: "--intake-function",
    env: "SHIPGATE_INTAKE_FUNCTION",
};

pub const MAILER_FUNCTION: Resource = Resource {
    what: "the mailer function's name",
    logical_id: "MailerFunction",
    flag: "--mailer-function",
    env: "SHIPGATE_MAILER_FUNCTION",
};

pub const ROLLBACK_FUNCTION: Resource = Resource {
    what: "the rollback function's name",
    logical_id: "RollbackFunction",
    flag: "--rollback-function",
    env: "SHIPGATE_ROLLBACK_FUNCTION",
};

/// The function resource that takes the events of `role`.
pub fn function_resource(role: FunctionRole) -> Resource {
    match role {
        FunctionRole::Intake => INTAKE_FUNCTION,
        FunctionRole::Mailer => MAILER_FUNCTION,
        FunctionRole::Rollback => ROLLBACK_FUNCTION,
    }
}

/// The stack's resources, read on first need.
#[derive(Debug)]
pub struct StackResources {
    client: aws_sdk_cloudformation::Client,
    stack: String,
    resources: OnceCell<BTreeMap<String, String>>,
    description: OnceCell<StackDescription>,
}

impl StackResources {
    pub fn new(client: aws_sdk_cloudformation::Client, stack: String) -> Self {
        Self {
            client,
            stack,
            resources: OnceCell::new(),
            description: OnceCell::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.stack
    }

    /// `given` (a flag's or the environment's value) if there is one, else the physical id of
    /// `resource` in the stack.
    pub async fn resolve(
        &self,
        resource: Resource,
        given: Option<&str>,
    ) -> Result<String, OperatorError> {
        if let Some(value) = given.filter(|v| !v.is_empty()) {
            return Ok(value.to_owned());
        }
        self.physical_id(resource.logical_id)
            .await?
            .ok_or_else(|| OperatorError::UnknownResource {
                what: resource.what,
                flag: resource.flag,
                env: resource.env,
                logical_id: resource.logical_id,
                stack: self.stack.clone(),
            })
    }

    /// What turns a failed call about the stack into `error`, naming the stack.
    fn failed<E>(
        &self,
        error: fn(String, Box<E>) -> OperatorError,
    ) -> impl FnOnce(E) -> OperatorError + use<E> {
        let stack = self.stack.clone();
        move |e| error(stack, Box::new(e))
    }

    /// The physical id of the resource `logical_id`, `None` when the stack has none.
    pub async fn physical_id(&self, logical_id: &str) -> Result<Option<String>, OperatorError> {
        let resources = self
            .resources
            .get_or_try_init(|| async {
                stack_resources(&self.client, &self.stack).await.map_err(
                    self.failed(|stack, source| OperatorError::StackResources { stack, source }),
                )
            })
            .await?;
        Ok(resources.get(logical_id).cloned())
    }

    /// The stack's parameters and outputs, read on first need.
    pub async fn description(&self) -> Result<&StackDescription, OperatorError> {
        self.description
            .get_or_try_init(|| async {
                describe_stack(&self.client, &self.stack).await.map_err(
                    self.failed(|stack, source| OperatorError::StackDescription { stack, source }),
                )
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The logical ids the operator looks up are the template's, with the types it expects:
    /// a renamed resource breaks this test, not an operator's night.
    #[test]
    fn the_template_declares_what_the_operator_looks_up() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"))
                .expect("template.yaml");
        let template: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
        let resources = &template["Resources"];
        let kind = |id: &str| resources[id]["Type"].as_str().map(str::to_owned);
        assert_eq!(
            kind(FAILED_QUEUE.logical_id).as_deref(),
            Some("AWS::SQS::Queue")
        );
        // Each function takes the event shape the operator routes to it.
        for (role, event_type) in [
            (FunctionRole::Intake, "S3"),
            (FunctionRole::Mailer, "SNS"),
            (FunctionRole::Rollback, "CloudWatchEvent"),
        ] {
            let id = function_resource(role).logical_id;
            assert_eq!(
                kind(id).as_deref(),
                Some("AWS::Serverless::Function"),
                "{id}"
            );
            let events = resources[id]["Properties"]["Events"]
                .as_mapping()
                .unwrap_or_else(|| panic!("{id} has events"));
            assert!(
                events
                    .values()
                    .any(|e| e["Type"].as_str() == Some(event_type)),
                "{id} takes {event_type} events"
            );
        }
        // Their failures reach the queue: the DLQ every function inherits targets it.
        let target = format!(
            "{:?}",
            template["Globals"]["Function"]["DeadLetterQueue"]["TargetArn"]
        );
        assert!(target.contains(FAILED_QUEUE.logical_id), "{target}");
    }
}
