//! CloudFormation: the change set a release deploys through. Whether the stack exists (which
//! decides the change-set type), creating a change set (once: a name already in use is reported,
//! not an error, so a retried invocation finds what an earlier one created), finding one by name,
//! reading its status and every resource change (all `NextToken` pages, mapped into
//! [`crate::changes`]' domain types for the summary), deleting a leftover, and executing it once
//! approved.
//!
//! Waiting is the caller's business: these calls never sleep, so a Lambda can re-check on its
//! next invocation. A change set that fails because it holds no changes is a normal outcome,
//! recognised by [`is_empty_change_set_failure`] / [`ChangeSetState::is_empty`].

use std::collections::BTreeMap;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types as sdk;

use crate::changes::{
    Attribute, ChangeAction, ChangeDetail, ChangeSource, ChangeTarget, Evaluation, Replacement,
    RequiresRecreation, ResourceChange,
};
use crate::error::{AwsError, aws_err};

const SERVICE: &str = "CloudFormation";

/// Whether a change set creates the stack or updates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSetType {
    Create,
    Update,
}

/// An IAM / macro acknowledgement the template may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    Iam,
    NamedIam,
    AutoExpand,
}

/// The largest `TemplateBody` CloudFormation takes (bytes); a larger template, up to 1 MB, must
/// be passed by `TemplateURL`
/// (<https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateChangeSet.html>,
/// <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html>).
pub const TEMPLATE_BODY_MAX_BYTES: usize = 51_200;

/// How CloudFormation gets a change set's template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// In the request (`TemplateBody`), at most [`TEMPLATE_BODY_MAX_BYTES`].
    Body(String),
    /// An S3 object CloudFormation reads with the caller's credentials (`TemplateURL`): the
    /// caller needs `s3:GetObject` on it, and a bucket of another account must grant it too.
    Url(String),
}

/// Everything `CreateChangeSet` needs from shipgate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSetRequest {
    pub stack_name: String,
    pub change_set_name: String,
    pub template: TemplateSource,
    pub parameters: BTreeMap<String, String>,
    pub change_set_type: ChangeSetType,
    pub capabilities: Vec<Capability>,
    pub description: Option<String>,
    /// The service role CloudFormation creates, updates and deletes the stack's resources with
    /// (`RoleARN`); `None`: the caller's own permissions, or the role the stack already has
    /// (CloudFormation keeps a stack's service role for every later operation).
    pub role_arn: Option<String>,
}

/// A change set's lifecycle (`Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeSetStatus {
    CreatePending,
    CreateInProgress,
    CreateComplete,
    Failed,
    DeletePending,
    DeleteInProgress,
    DeleteComplete,
    DeleteFailed,
    /// A value this code does not know (or none at all): not ready, not settled.
    Other(String),
}

/// Whether the change set can be executed (`ExecutionStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionStatus {
    Unavailable,
    Available,
    ExecuteInProgress,
    ExecuteComplete,
    ExecuteFailed,
    Obsolete,
    Other(String),
}

/// What `DescribeChangeSet` says, with the changes of every page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSetState {
    /// The change set's ARN (`ChangeSetId`), when CloudFormation gave it.
    pub change_set_id: Option<String>,
    pub status: ChangeSetStatus,
    pub execution_status: Option<ExecutionStatus>,
    pub status_reason: Option<String>,
    pub changes: Vec<ResourceChange>,
}

impl ChangeSetState {
    /// CloudFormation is still computing the changes: ask again later.
    pub fn is_pending(&self) -> bool {
        matches!(
            self.status,
            ChangeSetStatus::CreatePending | ChangeSetStatus::CreateInProgress
        )
    }

    /// The change set failed only because the template and parameters change nothing.
    pub fn is_empty(&self) -> bool {
        self.status == ChangeSetStatus::Failed
            && is_empty_change_set_failure(self.status_reason.as_deref())
    }
}

/// True for the reasons CloudFormation gives when a change set fails because it holds no
/// changes ("The submitted information didn't contain changes. Submit different information to
/// create a change set." and, for some updates, "No updates are to be performed."). That is a
/// normal outcome, not an error.
pub fn is_empty_change_set_failure(status_reason: Option<&str>) -> bool {
    status_reason.is_some_and(|reason| {
        reason.contains("didn't contain changes")
            || reason.contains("did not contain changes")
            || reason.contains("No updates are to be performed")
    })
}

/// `DescribeStacks`: whether `stack_name` exists as a stack a change set can update.
///
/// `false` when CloudFormation answers `ValidationError` "… does not exist", and also for a
/// stack in `REVIEW_IN_PROGRESS`: that is what a never-executed `CREATE` change set leaves
/// behind, a stack with no resources which only another `CREATE` change set may target. A stack
/// described by id in `DELETE_COMPLETE` is gone as well.
pub async fn stack_exists(cf: &Client, stack_name: &str) -> Result<bool, AwsError> {
    let result = cf.describe_stacks().stack_name(stack_name).send().await;
    match result {
        Ok(out) => Ok(out.stacks().iter().any(|stack| {
            !matches!(
                stack.stack_status(),
                Some(sdk::StackStatus::ReviewInProgress | sdk::StackStatus::DeleteComplete)
            )
        })),
        Err(err) => {
            let err = AwsError::from_sdk(SERVICE, "DescribeStacks", err);
            if err.is_code("ValidationError") && err.message.contains("does not exist") {
                Ok(false)
            } else {
                Err(err)
            }
        }
    }
}

/// `CreateChangeSet`; returns the change set's id (its ARN).
pub async fn create_change_set(
    cf: &Client,
    request: &ChangeSetRequest,
) -> Result<String, AwsError> {
    let parameters = request
        .parameters
        .iter()
        .map(|(key, value)| {
            sdk::Parameter::builder()
                .parameter_key(key)
                .parameter_value(value)
                .build()
        })
        .collect::<Vec<_>>();
    let capabilities = request
        .capabilities
        .iter()
        .map(|c| match c {
            Capability::Iam => sdk::Capability::CapabilityIam,
            Capability::NamedIam => sdk::Capability::CapabilityNamedIam,
            Capability::AutoExpand => sdk::Capability::CapabilityAutoExpand,
        })
        .collect::<Vec<_>>();
    let change_set_type = match request.change_set_type {
        ChangeSetType::Create => sdk::ChangeSetType::Create,
        ChangeSetType::Update => sdk::ChangeSetType::Update,
    };
    let out = cf
        .create_change_set()
        .stack_name(&request.stack_name)
        .change_set_name(&request.change_set_name)
        .set_template_body(match &request.template {
            TemplateSource::Body(body) => Some(body.clone()),
            TemplateSource::Url(_) => None,
        })
        .set_template_url(match &request.template {
            TemplateSource::Url(url) => Some(url.clone()),
            TemplateSource::Body(_) => None,
        })
        .set_parameters((!parameters.is_empty()).then_some(parameters))
        .set_capabilities((!capabilities.is_empty()).then_some(capabilities))
        .change_set_type(change_set_type)
        .set_description(request.description.clone())
        .set_role_arn(request.role_arn.clone())
        .send()
        .await
        .map_err(aws_err(SERVICE, "CreateChangeSet"))?;
    out.id()
        .map(str::to_owned)
        .ok_or_else(|| missing_field("CreateChangeSet", "Id"))
}

/// What [`create_change_set_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creation {
    /// CloudFormation took the request (the change set's id); it computes the changes next.
    Created { id: String },
    /// The stack already has a change set of that name (`AlreadyExistsException`): an earlier
    /// invocation created it. Describe it rather than failing.
    AlreadyExists,
    /// Refused at once because the template and parameters change nothing ("No updates are to
    /// be performed."). AWS creates a `FAILED` change set for this instead (see
    /// [`ChangeSetState::is_empty`]); moto answers so when both equal the stack's. Either way it
    /// is a normal outcome, not an error.
    NothingToChange { reason: String },
}

/// `CreateChangeSet`, telling apart the two refusals that are not failures: the name is taken
/// (the change set exists already) and "nothing to change".
pub async fn create_change_set_once(
    cf: &Client,
    request: &ChangeSetRequest,
) -> Result<Creation, AwsError> {
    match create_change_set(cf, request).await {
        Ok(id) => Ok(Creation::Created { id }),
        Err(err) if err.is_code("AlreadyExistsException") => Ok(Creation::AlreadyExists),
        Err(err)
            if err.is_code("ValidationError")
                && is_empty_change_set_failure(Some(&err.message)) =>
        {
            Ok(Creation::NothingToChange {
                reason: err.message,
            })
        }
        Err(err) => Err(err),
    }
}

/// [`describe_change_set`] by name, `None` when the stack has no change set of that name (or
/// the stack does not exist at all): AWS answers `ChangeSetNotFound`, or `ValidationError`
/// "… does not exist" for a missing stack (moto for both).
pub async fn find_change_set(
    cf: &Client,
    stack_name: &str,
    change_set_name: &str,
) -> Result<Option<ChangeSetState>, AwsError> {
    match describe_change_set(cf, stack_name, change_set_name).await {
        Ok(state) => Ok(Some(state)),
        Err(err)
            if err.is_code("ChangeSetNotFound")
                || err.is_code("ChangeSetNotFoundException")
                || (err.is_code("ValidationError") && err.message.contains("does not exist")) =>
        {
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// `DeleteChangeSet`: removes a change set that will never be executed (e.g. one that failed in
/// an earlier attempt, so that a new one of the same name can be created). A change set that is
/// already gone is not an error.
pub async fn delete_change_set(
    cf: &Client,
    stack_name: &str,
    change_set_name: &str,
) -> Result<(), AwsError> {
    let result = cf
        .delete_change_set()
        .stack_name(stack_name)
        .change_set_name(change_set_name)
        .send()
        .await
        .map_err(aws_err(SERVICE, "DeleteChangeSet"));
    match result {
        Ok(_) => Ok(()),
        Err(err)
            if err.is_code("ChangeSetNotFound") || err.is_code("ChangeSetNotFoundException") =>
        {
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// `DescribeChangeSet`, following `NextToken` until the last page. `change_set` is its name
/// (with `stack_name`) or its id.
pub async fn describe_change_set(
    cf: &Client,
    stack_name: &str,
    change_set: &str,
) -> Result<ChangeSetState, AwsError> {
    let mut changes = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let out = cf
            .describe_change_set()
            .stack_name(stack_name)
            .change_set_name(change_set)
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(aws_err(SERVICE, "DescribeChangeSet"))?;
        changes.extend(
            out.changes()
                .iter()
                .filter_map(sdk::Change::resource_change)
                .map(to_domain),
        );
        // Status and reason are the same on every page; the last page's are kept.
        let token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if token.is_none() {
            return Ok(ChangeSetState {
                change_set_id: out.change_set_id().map(str::to_owned),
                status: status_of(out.status()),
                execution_status: out.execution_status().map(execution_status_of),
                status_reason: out.status_reason().map(str::to_owned),
                changes,
            });
        }
        next_token = token;
    }
}

/// `ExecuteChangeSet`: CloudFormation starts updating the stack; the caller waits for it.
pub async fn execute_change_set(
    cf: &Client,
    stack_name: &str,
    change_set: &str,
) -> Result<(), AwsError> {
    cf.execute_change_set()
        .stack_name(stack_name)
        .change_set_name(change_set)
        .send()
        .await
        .map_err(aws_err(SERVICE, "ExecuteChangeSet"))?;
    Ok(())
}

/// A stack as `DescribeStacks` describes it: where it stands and what it outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackState {
    pub stack_id: Option<String>,
    pub stack_name: String,
    /// `StackStatus` as CloudFormation spells it (`UPDATE_COMPLETE`, `ROLLBACK_IN_PROGRESS`, …):
    /// kept as text so that a status this code does not know is still reported as it is.
    pub status: String,
    pub status_reason: Option<String>,
    /// The stack's outputs, in CloudFormation's order.
    pub outputs: Vec<StackOutput>,
}

/// One output of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackOutput {
    pub key: String,
    pub value: String,
}

/// `DescribeStacks` of one stack (by name or id); `None` when it does not exist (AWS and moto
/// answer `ValidationError` "Stack with id … does not exist").
pub async fn describe_stack(cf: &Client, stack: &str) -> Result<Option<StackState>, AwsError> {
    let out = match cf.describe_stacks().stack_name(stack).send().await {
        Ok(out) => out,
        Err(err) => {
            let err = AwsError::from_sdk(SERVICE, "DescribeStacks", err);
            if err.is_code("ValidationError") && err.message.contains("does not exist") {
                return Ok(None);
            }
            return Err(err);
        }
    };
    let Some(found) = out.stacks().first() else {
        return Ok(None);
    };
    Ok(Some(StackState {
        stack_id: found.stack_id().map(str::to_owned),
        stack_name: found.stack_name().unwrap_or(stack).to_owned(),
        status: found
            .stack_status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        status_reason: stated_reason(found.stack_status_reason()),
        outputs: found
            .outputs()
            .iter()
            .filter_map(|o| {
                Some(StackOutput {
                    key: o.output_key()?.to_owned(),
                    value: o.output_value().unwrap_or_default().to_owned(),
                })
            })
            .collect(),
    }))
}

/// One event of a stack (`DescribeStackEvents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEvent {
    pub logical_id: String,
    pub resource_type: String,
    /// `ResourceStatus` as CloudFormation spells it (`CREATE_FAILED`, …).
    pub status: String,
    pub reason: Option<String>,
    /// Epoch seconds, when CloudFormation gave a timestamp.
    pub timestamp: Option<i64>,
}

impl StackEvent {
    /// The stack's own event (not one of its resources').
    pub fn is_stack(&self) -> bool {
        self.resource_type == "AWS::CloudFormation::Stack"
    }

    /// The start of a stack operation: the stack's own `CREATE_IN_PROGRESS` /
    /// `UPDATE_IN_PROGRESS` / `IMPORT_IN_PROGRESS` (not a rollback's).
    pub fn starts_operation(&self) -> bool {
        self.is_stack()
            && matches!(
                self.status.as_str(),
                "CREATE_IN_PROGRESS" | "UPDATE_IN_PROGRESS" | "IMPORT_IN_PROGRESS"
            )
    }
}

/// How many `DescribeStackEvents` pages [`last_operation_events`] reads at most (100 events
/// each, newest first): an operation with more events than that is reported from its latest.
pub const MAX_EVENT_PAGES: usize = 10;

/// The events of the stack's latest operation, newest first: `DescribeStackEvents`, following
/// `NextToken`, until the event that started the operation (included), or
/// [`MAX_EVENT_PAGES`] pages.
pub async fn last_operation_events(cf: &Client, stack: &str) -> Result<Vec<StackEvent>, AwsError> {
    let mut events = Vec::new();
    let mut next_token: Option<String> = None;
    for _ in 0..MAX_EVENT_PAGES {
        let out = cf
            .describe_stack_events()
            .stack_name(stack)
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(aws_err(SERVICE, "DescribeStackEvents"))?;
        for event in out.stack_events() {
            let event = StackEvent {
                logical_id: event.logical_resource_id().unwrap_or_default().to_owned(),
                resource_type: event.resource_type().unwrap_or_default().to_owned(),
                status: event
                    .resource_status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                reason: stated_reason(event.resource_status_reason()),
                timestamp: event.timestamp().map(|t| t.secs()),
            };
            let start = event.starts_operation();
            events.push(event);
            if start {
                return Ok(events);
            }
        }
        match out.next_token().filter(|t| !t.is_empty()) {
            Some(token) => next_token = Some(token.to_owned()),
            None => break,
        }
    }
    Ok(events)
}

/// The domain form of one SDK resource change. Values the SDK added after the domain types were
/// written are kept conservative: an unknown action (e.g. `SyncWithActual`) becomes `Dynamic`,
/// which the summary shows as undetermined, ahead of the benign categories.
fn to_domain(change: &sdk::ResourceChange) -> ResourceChange {
    let action = match change.action() {
        Some(sdk::ChangeAction::Add) => ChangeAction::Add,
        Some(sdk::ChangeAction::Modify) => ChangeAction::Modify,
        Some(sdk::ChangeAction::Remove) => ChangeAction::Remove,
        Some(sdk::ChangeAction::Import) => ChangeAction::Import,
        _ => ChangeAction::Dynamic,
    };
    let replacement = change.replacement().map(|r| match r {
        sdk::Replacement::True => Replacement::True,
        sdk::Replacement::False => Replacement::False,
        // Conditional, or a value this code does not know: the approver is warned either way.
        _ => Replacement::Conditional,
    });
    ResourceChange {
        action,
        logical_id: change.logical_resource_id().unwrap_or_default().to_owned(),
        physical_id: change
            .physical_resource_id()
            .filter(|id| !id.is_empty())
            .map(str::to_owned),
        resource_type: change.resource_type().unwrap_or_default().to_owned(),
        replacement,
        scope: change.scope().iter().map(attribute_of).collect(),
        details: change.details().iter().map(detail_of).collect(),
    }
}

fn detail_of(detail: &sdk::ResourceChangeDetail) -> ChangeDetail {
    ChangeDetail {
        target: detail.target().map(|t| ChangeTarget {
            attribute: t.attribute().map(attribute_of),
            name: t.name().map(str::to_owned),
            requires_recreation: t.requires_recreation().and_then(|r| match r {
                sdk::RequiresRecreation::Never => Some(RequiresRecreation::Never),
                sdk::RequiresRecreation::Conditionally => Some(RequiresRecreation::Conditionally),
                sdk::RequiresRecreation::Always => Some(RequiresRecreation::Always),
                _ => None,
            }),
        }),
        evaluation: detail.evaluation().and_then(|e| match e {
            sdk::EvaluationType::Static => Some(Evaluation::Static),
            sdk::EvaluationType::Dynamic => Some(Evaluation::Dynamic),
            _ => None,
        }),
        change_source: detail.change_source().map(|s| match s {
            sdk::ChangeSource::ResourceReference => ChangeSource::ResourceReference,
            sdk::ChangeSource::ParameterReference => ChangeSource::ParameterReference,
            sdk::ChangeSource::ResourceAttribute => ChangeSource::ResourceAttribute,
            sdk::ChangeSource::DirectModification => ChangeSource::DirectModification,
            sdk::ChangeSource::Automatic => ChangeSource::Automatic,
            _ => ChangeSource::Other,
        }),
        causing_entity: detail.causing_entity().map(str::to_owned),
    }
}

fn attribute_of(attribute: &sdk::ResourceAttribute) -> Attribute {
    match attribute {
        sdk::ResourceAttribute::Properties => Attribute::Properties,
        sdk::ResourceAttribute::Metadata => Attribute::Metadata,
        sdk::ResourceAttribute::CreationPolicy => Attribute::CreationPolicy,
        sdk::ResourceAttribute::UpdatePolicy => Attribute::UpdatePolicy,
        sdk::ResourceAttribute::DeletionPolicy => Attribute::DeletionPolicy,
        sdk::ResourceAttribute::Tags => Attribute::Tags,
        sdk::ResourceAttribute::UpdateReplacePolicy => Attribute::UpdateReplacePolicy,
        _ => Attribute::Other,
    }
}

fn status_of(status: Option<&sdk::ChangeSetStatus>) -> ChangeSetStatus {
    match status {
        Some(sdk::ChangeSetStatus::CreatePending) => ChangeSetStatus::CreatePending,
        Some(sdk::ChangeSetStatus::CreateInProgress) => ChangeSetStatus::CreateInProgress,
        Some(sdk::ChangeSetStatus::CreateComplete) => ChangeSetStatus::CreateComplete,
        Some(sdk::ChangeSetStatus::Failed) => ChangeSetStatus::Failed,
        Some(sdk::ChangeSetStatus::DeletePending) => ChangeSetStatus::DeletePending,
        Some(sdk::ChangeSetStatus::DeleteInProgress) => ChangeSetStatus::DeleteInProgress,
        Some(sdk::ChangeSetStatus::DeleteComplete) => ChangeSetStatus::DeleteComplete,
        Some(sdk::ChangeSetStatus::DeleteFailed) => ChangeSetStatus::DeleteFailed,
        Some(other) => ChangeSetStatus::Other(other.as_str().to_owned()),
        None => ChangeSetStatus::Other(String::new()),
    }
}

fn execution_status_of(status: &sdk::ExecutionStatus) -> ExecutionStatus {
    match status {
        sdk::ExecutionStatus::Unavailable => ExecutionStatus::Unavailable,
        sdk::ExecutionStatus::Available => ExecutionStatus::Available,
        sdk::ExecutionStatus::ExecuteInProgress => ExecutionStatus::ExecuteInProgress,
        sdk::ExecutionStatus::ExecuteComplete => ExecutionStatus::ExecuteComplete,
        sdk::ExecutionStatus::ExecuteFailed => ExecutionStatus::ExecuteFailed,
        sdk::ExecutionStatus::Obsolete => ExecutionStatus::Obsolete,
        other => ExecutionStatus::Other(other.as_str().to_owned()),
    }
}

/// A reason CloudFormation gave; a blank one is none.
fn stated_reason(reason: Option<&str>) -> Option<String> {
    reason.filter(|r| !r.trim().is_empty()).map(str::to_owned)
}

/// A successful response lacking a field the caller cannot do without.
fn missing_field(operation: &'static str, field: &'static str) -> AwsError {
    AwsError {
        service: SERVICE,
        operation,
        code: None,
        message: format!("the response has no {field}"),
        retryable: false,
        source: Box::new(MissingField(field)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("response field {0} is missing")]
struct MissingField(&'static str);

#[cfg(test)]
mod tests {
    use aws_sdk_cloudformation::operation::create_change_set::CreateChangeSetOutput;
    use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
    use aws_sdk_cloudformation::operation::describe_change_set::builders::DescribeChangeSetOutputBuilder;
    use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock};

    use super::*;
    use crate::aws::mock::{mock_client, service_error};

    fn mock_cf(mode: RuleMode, rules: &[&Rule]) -> Client {
        mock_client!(aws_sdk_cloudformation, mode, rules)
    }

    fn target(
        attribute: sdk::ResourceAttribute,
        name: &str,
        recreation: sdk::RequiresRecreation,
    ) -> sdk::ResourceTargetDefinition {
        sdk::ResourceTargetDefinition::builder()
            .attribute(attribute)
            .name(name)
            .requires_recreation(recreation)
            .build()
    }

    /// A resource change of `action` to `logical_id`, for the test to complete.
    fn change(
        action: sdk::ChangeAction,
        logical_id: &str,
        resource_type: &str,
    ) -> sdk::builders::ResourceChangeBuilder {
        sdk::ResourceChange::builder()
            .action(action)
            .logical_resource_id(logical_id)
            .resource_type(resource_type)
    }

    fn added(logical_id: &str, resource_type: &str) -> sdk::ResourceChange {
        change(sdk::ChangeAction::Add, logical_id, resource_type).build()
    }

    #[test]
    fn a_replacement_keeps_its_scope_and_the_properties_that_force_it() {
        let sdk_change = change(sdk::ChangeAction::Modify, "Queue", "AWS::SQS::Queue")
            .physical_resource_id("https://sqs.eu-west-1.amazonaws.com/222222222222/orders")
            .replacement(sdk::Replacement::True)
            .scope(sdk::ResourceAttribute::Properties)
            .scope(sdk::ResourceAttribute::Tags)
            .details(
                sdk::ResourceChangeDetail::builder()
                    .target(target(
                        sdk::ResourceAttribute::Properties,
                        "QueueName",
                        sdk::RequiresRecreation::Always,
                    ))
                    .evaluation(sdk::EvaluationType::Static)
                    .change_source(sdk::ChangeSource::ParameterReference)
                    .causing_entity("QueueName")
                    .build(),
            )
            .details(
                sdk::ResourceChangeDetail::builder()
                    .target(
                        sdk::ResourceTargetDefinition::builder()
                            .attribute(sdk::ResourceAttribute::Tags)
                            .requires_recreation(sdk::RequiresRecreation::Never)
                            .build(),
                    )
                    .evaluation(sdk::EvaluationType::Dynamic)
                    .change_source(sdk::ChangeSource::NoModification)
                    .build(),
            )
            .build();

        let change = to_domain(&sdk_change);

        assert_eq!(
            change,
            ResourceChange {
                action: ChangeAction::Modify,
                logical_id: "Queue".into(),
                physical_id: Some("https://sqs.eu-west-1.amazonaws.com/222222222222/orders".into()),
                resource_type: "AWS::SQS::Queue".into(),
                replacement: Some(Replacement::True),
                scope: vec![Attribute::Properties, Attribute::Tags],
                details: vec![
                    ChangeDetail {
                        target: Some(ChangeTarget {
                            attribute: Some(Attribute::Properties),
                            name: Some("QueueName".into()),
                            requires_recreation: Some(RequiresRecreation::Always),
                        }),
                        evaluation: Some(Evaluation::Static),
                        change_source: Some(ChangeSource::ParameterReference),
                        causing_entity: Some("QueueName".into()),
                    },
                    ChangeDetail {
                        target: Some(ChangeTarget {
                            attribute: Some(Attribute::Tags),
                            name: None,
                            requires_recreation: Some(RequiresRecreation::Never),
                        }),
                        evaluation: Some(Evaluation::Dynamic),
                        change_source: Some(ChangeSource::Other),
                        causing_entity: None,
                    },
                ],
            }
        );
    }

    #[test]
    fn an_addition_has_no_physical_id_replacement_or_details() {
        let change = to_domain(&added("Topic", "AWS::SNS::Topic"));

        assert_eq!(
            change,
            ResourceChange {
                action: ChangeAction::Add,
                logical_id: "Topic".into(),
                physical_id: None,
                resource_type: "AWS::SNS::Topic".into(),
                replacement: None,
                scope: vec![],
                details: vec![],
            }
        );
    }

    #[test]
    fn a_removal_names_the_resource_it_deletes() {
        let sdk_change = change(sdk::ChangeAction::Remove, "OldQueue", "AWS::SQS::Queue")
            .physical_resource_id("arn:aws:sqs:eu-west-1:222222222222:old")
            .build();

        let change = to_domain(&sdk_change);

        assert_eq!(change.action, ChangeAction::Remove);
        assert_eq!(change.logical_id, "OldQueue");
        assert_eq!(
            change.physical_id.as_deref(),
            Some("arn:aws:sqs:eu-west-1:222222222222:old")
        );
        assert_eq!(change.replacement, None);
    }

    #[test]
    fn an_action_this_code_does_not_know_is_undetermined_and_missing_ids_are_empty() {
        let sdk_change = sdk::ResourceChange::builder()
            .action(sdk::ChangeAction::SyncWithActual)
            .physical_resource_id("")
            .build();

        let change = to_domain(&sdk_change);

        assert_eq!(change.action, ChangeAction::Dynamic);
        assert_eq!(change.logical_id, "");
        assert_eq!(change.physical_id, None);
        assert_eq!(change.resource_type, "");
    }

    #[test]
    fn cloudformations_no_change_reasons_mean_an_empty_change_set() {
        assert!(is_empty_change_set_failure(Some(
            "The submitted information didn't contain changes. Submit different information to \
             create a change set."
        )));
        assert!(is_empty_change_set_failure(Some(
            "No updates are to be performed."
        )));
        assert!(!is_empty_change_set_failure(Some(
            "Template format error: Unresolved resource dependencies [Missing] in the Resources \
             block of the template"
        )));
        assert!(!is_empty_change_set_failure(None));

        let empty = ChangeSetState {
            change_set_id: None,
            status: ChangeSetStatus::Failed,
            execution_status: Some(ExecutionStatus::Unavailable),
            status_reason: Some("No updates are to be performed.".into()),
            changes: vec![],
        };
        assert!(empty.is_empty());
        assert!(!empty.is_pending());
    }

    /// A `DescribeChangeSet` page of a change set ready to execute, holding `change`.
    fn ready_page(change: sdk::ResourceChange) -> DescribeChangeSetOutputBuilder {
        DescribeChangeSetOutput::builder()
            .status(sdk::ChangeSetStatus::CreateComplete)
            .execution_status(sdk::ExecutionStatus::Available)
            .changes(
                sdk::Change::builder()
                    .r#type(sdk::ChangeType::Resource)
                    .resource_change(change)
                    .build(),
            )
    }

    #[tokio::test]
    async fn describe_change_set_follows_next_token_across_pages() {
        let first = mock!(Client::describe_change_set)
            .match_requests(|req| req.next_token().is_none())
            .then_output(|| {
                ready_page(added("Topic", "AWS::SNS::Topic"))
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(Client::describe_change_set)
            .match_requests(|req| {
                req.next_token() == Some("page-2")
                    && req.stack_name() == Some("orders")
                    && req.change_set_name() == Some("release-7")
            })
            .then_output(|| ready_page(added("Queue", "AWS::SQS::Queue")).build());
        let cf = mock_cf(RuleMode::MatchAny, &[&first, &second]);

        let state = describe_change_set(&cf, "orders", "release-7")
            .await
            .expect("described");

        assert_eq!(state.status, ChangeSetStatus::CreateComplete);
        assert_eq!(state.execution_status, Some(ExecutionStatus::Available));
        let ids: Vec<_> = state
            .changes
            .iter()
            .map(|c| c.logical_id.as_str())
            .collect();
        assert_eq!(ids, ["Topic", "Queue"]);
        assert_eq!(first.num_calls(), 1);
        assert_eq!(second.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_stack_that_does_not_exist_is_not_an_error() {
        let missing = mock!(Client::describe_stacks)
            .then_error(|| service_error("ValidationError", "Stack with id orders does not exist"));
        let cf = mock_cf(RuleMode::Sequential, &[&missing]);

        assert!(!stack_exists(&cf, "orders").await.expect("no error"));
    }

    #[tokio::test]
    async fn a_stack_left_in_review_by_an_unexecuted_create_does_not_exist_yet() {
        let review = mock!(Client::describe_stacks).then_output(|| {
            DescribeStacksOutput::builder()
                .stacks(
                    sdk::Stack::builder()
                        .stack_name("orders")
                        .stack_status(sdk::StackStatus::ReviewInProgress)
                        .build(),
                )
                .build()
        });
        let cf = mock_cf(RuleMode::Sequential, &[&review]);

        assert!(!stack_exists(&cf, "orders").await.expect("no error"));
    }

    #[tokio::test]
    async fn other_describe_stacks_errors_reach_the_caller() {
        let denied = mock!(Client::describe_stacks)
            .then_error(|| service_error("AccessDenied", "not authorized"));
        let cf = mock_cf(RuleMode::Sequential, &[&denied]);

        let err = stack_exists(&cf, "orders").await.expect_err("denied");
        assert!(err.is_code("AccessDenied"));
    }

    /// `create_change_set_once` of `request` against a CloudFormation that answers with `rule`.
    async fn create_answered_by(
        rule: &Rule,
        request: &ChangeSetRequest,
    ) -> Result<Creation, AwsError> {
        create_change_set_once(&mock_cf(RuleMode::Sequential, &[rule]), request).await
    }

    fn request_of(stack: &str, name: &str) -> ChangeSetRequest {
        ChangeSetRequest {
            stack_name: stack.into(),
            change_set_name: name.into(),
            template: TemplateSource::Body("{}".into()),
            parameters: BTreeMap::from([("Version".to_owned(), "1.4.2".to_owned())]),
            change_set_type: ChangeSetType::Update,
            capabilities: vec![
                Capability::Iam,
                Capability::NamedIam,
                Capability::AutoExpand,
            ],
            description: Some("shipgate".into()),
            role_arn: None,
        }
    }

    #[tokio::test]
    async fn a_template_is_sent_either_in_the_request_or_by_url_never_both() {
        let url = "https://b.s3.eu-west-1.amazonaws.com/templates/r/x.template";
        for (template, body, by_url) in [
            (TemplateSource::Body("{}".into()), Some("{}"), None),
            (TemplateSource::Url(url.into()), None, Some(url)),
        ] {
            let created = mock!(Client::create_change_set)
                .match_requests(move |req| {
                    req.template_body() == body && req.template_url() == by_url
                })
                .then_output(|| CreateChangeSetOutput::builder().id("cs-id").build());
            let request = ChangeSetRequest {
                template,
                ..request_of("orders", "cs")
            };
            let creation = create_answered_by(&created, &request).await;
            assert!(
                matches!(creation, Ok(Creation::Created { .. })),
                "{creation:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_change_set_is_created_with_every_capability_and_its_parameters() {
        let created = mock!(Client::create_change_set)
            .match_requests(|req| {
                req.capabilities().len() == 3
                    && req.change_set_type() == Some(&sdk::ChangeSetType::Update)
                    && req.parameters().len() == 1
                    && req.parameters()[0].parameter_value() == Some("1.4.2")
                    && req.role_arn().is_none()
            })
            .then_output(|| {
                CreateChangeSetOutput::builder()
                    .id("arn:aws:cloudformation:eu-west-1:222222222222:changeSet/cs/1")
                    .build()
            });
        let creation = create_answered_by(&created, &request_of("orders", "cs"))
            .await
            .expect("created");

        assert_eq!(
            creation,
            Creation::Created {
                id: "arn:aws:cloudformation:eu-west-1:222222222222:changeSet/cs/1".into()
            }
        );
    }

    #[tokio::test]
    async fn a_service_role_is_passed_as_role_arn() {
        let role = "arn:aws:iam::222222222222:role/shipgate-cloudformation";
        let created = mock!(Client::create_change_set)
            .match_requests(move |req| req.role_arn() == Some(role))
            .then_output(|| CreateChangeSetOutput::builder().id("cs-1").build());
        let request = ChangeSetRequest {
            role_arn: Some(role.into()),
            ..request_of("orders", "cs")
        };
        let creation = create_answered_by(&created, &request)
            .await
            .expect("created with the role");

        assert_eq!(creation, Creation::Created { id: "cs-1".into() });
    }

    #[tokio::test]
    async fn a_change_set_name_in_use_is_reported_not_failed() {
        let taken = mock!(Client::create_change_set)
            .then_error(|| service_error("AlreadyExistsException", "ChangeSet cs already exists"));
        let creation = create_answered_by(&taken, &request_of("orders", "cs"))
            .await
            .expect("not an error");

        assert_eq!(creation, Creation::AlreadyExists);
    }

    #[tokio::test]
    async fn nothing_to_update_refused_at_once_is_an_empty_change_set() {
        let unchanged = mock!(Client::create_change_set)
            .then_error(|| service_error("ValidationError", "No updates are to be performed."));
        let creation = create_answered_by(&unchanged, &request_of("orders", "cs"))
            .await
            .expect("not an error");

        assert_eq!(
            creation,
            Creation::NothingToChange {
                reason: "No updates are to be performed.".into()
            }
        );
    }

    #[tokio::test]
    async fn a_template_refused_at_creation_is_an_error_with_cloudformations_words() {
        let refused = mock!(Client::create_change_set).then_error(|| {
            service_error(
                "ValidationError",
                "Template format error: Unrecognized resource types: [AWS::Nope::Thing]",
            )
        });
        let err = create_answered_by(&refused, &request_of("orders", "cs"))
            .await
            .expect_err("refused");

        assert!(err.is_code("ValidationError"));
        assert!(!err.retryable);
        assert_eq!(err.operation, "CreateChangeSet");
        assert!(err.message.contains("Unrecognized resource types"));
    }

    #[tokio::test]
    async fn a_change_set_that_does_not_exist_is_not_found_rather_than_an_error() {
        let not_found = mock!(Client::describe_change_set)
            .then_error(|| service_error("ChangeSetNotFound", "ChangeSet [cs] does not exist"));
        let no_stack = mock!(Client::describe_change_set)
            .then_error(|| service_error("ValidationError", "Stack [orders] does not exist"));
        let denied = mock!(Client::describe_change_set)
            .then_error(|| service_error("AccessDenied", "not authorized"));
        let cf = mock_cf(RuleMode::Sequential, &[&not_found, &no_stack, &denied]);

        assert_eq!(
            find_change_set(&cf, "orders", "cs")
                .await
                .expect("no error"),
            None
        );
        assert_eq!(
            find_change_set(&cf, "orders", "cs")
                .await
                .expect("no error"),
            None
        );
        let err = find_change_set(&cf, "orders", "cs")
            .await
            .expect_err("other errors reach the caller");
        assert!(err.is_code("AccessDenied"));
    }

    #[tokio::test]
    async fn a_found_change_set_carries_its_id() {
        let found = mock!(Client::describe_change_set).then_output(|| {
            DescribeChangeSetOutput::builder()
                .change_set_id("arn:aws:cloudformation:eu-west-1:222222222222:changeSet/cs/1")
                .status(sdk::ChangeSetStatus::CreatePending)
                .execution_status(sdk::ExecutionStatus::Unavailable)
                .build()
        });
        let cf = mock_cf(RuleMode::Sequential, &[&found]);

        let state = find_change_set(&cf, "orders", "cs")
            .await
            .expect("no error")
            .expect("found");

        assert!(state.is_pending());
        assert_eq!(
            state.change_set_id.as_deref(),
            Some("arn:aws:cloudformation:eu-west-1:222222222222:changeSet/cs/1")
        );
    }

    #[tokio::test]
    async fn deleting_a_change_set_already_gone_is_not_an_error() {
        let gone = mock!(Client::delete_change_set)
            .then_error(|| service_error("ChangeSetNotFound", "ChangeSet [cs] does not exist"));
        let cf = mock_cf(RuleMode::Sequential, &[&gone]);

        delete_change_set(&cf, "orders", "cs")
            .await
            .expect("already gone is fine");
    }

    fn stack_event(
        logical_id: &str,
        resource_type: &str,
        status: sdk::ResourceStatus,
        reason: Option<&str>,
    ) -> sdk::StackEvent {
        sdk::StackEvent::builder()
            .stack_id("arn:aws:cloudformation:eu-west-1:222222222222:stack/orders/1")
            .event_id(format!("{logical_id}-{}", status.as_str()))
            .stack_name("orders")
            .logical_resource_id(logical_id)
            .resource_type(resource_type)
            .resource_status(status)
            .set_resource_status_reason(reason.map(str::to_owned))
            .timestamp(aws_smithy_types::DateTime::from_secs(1_764_000_000))
            .build()
    }

    #[tokio::test]
    async fn describe_stack_reads_status_reason_and_outputs() {
        let described = mock!(Client::describe_stacks)
            .match_requests(|req| req.stack_name() == Some("orders"))
            .then_output(|| {
                DescribeStacksOutput::builder()
                    .stacks(
                        sdk::Stack::builder()
                            .stack_id(
                                "arn:aws:cloudformation:eu-west-1:222222222222:stack/orders/1",
                            )
                            .stack_name("orders")
                            .stack_status(sdk::StackStatus::UpdateRollbackComplete)
                            .stack_status_reason(
                                "The following resource(s) failed to update: [Service].",
                            )
                            .outputs(
                                sdk::Output::builder()
                                    .output_key("ShipgateTestEndpoint")
                                    .output_value("http://alb.example:9000")
                                    .build(),
                            )
                            .outputs(sdk::Output::builder().output_key("Empty").build())
                            .build(),
                    )
                    .build()
            });
        let cf = mock_cf(RuleMode::Sequential, &[&described]);

        let state = describe_stack(&cf, "orders")
            .await
            .expect("described")
            .expect("exists");

        assert_eq!(state.status, "UPDATE_ROLLBACK_COMPLETE");
        assert_eq!(
            state.status_reason.as_deref(),
            Some("The following resource(s) failed to update: [Service].")
        );
        assert_eq!(
            state.outputs,
            [
                StackOutput {
                    key: "ShipgateTestEndpoint".into(),
                    value: "http://alb.example:9000".into()
                },
                StackOutput {
                    key: "Empty".into(),
                    value: String::new()
                }
            ]
        );
    }

    #[tokio::test]
    async fn describe_stack_of_a_missing_stack_is_none_and_other_errors_reach_the_caller() {
        let missing = mock!(Client::describe_stacks)
            .then_error(|| service_error("ValidationError", "Stack with id orders does not exist"));
        let throttled = mock!(Client::describe_stacks)
            .then_error(|| service_error("Throttling", "Rate exceeded"));
        let cf = mock_cf(RuleMode::Sequential, &[&missing, &throttled]);

        assert_eq!(describe_stack(&cf, "orders").await.expect("no error"), None);
        let err = describe_stack(&cf, "orders").await.expect_err("throttled");
        assert!(err.retryable);
        assert_eq!(err.operation, "DescribeStacks");
    }

    #[tokio::test]
    async fn the_last_operations_events_follow_next_token_and_stop_at_its_start() {
        use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
        let first = mock!(Client::describe_stack_events)
            .match_requests(|req| req.next_token().is_none() && req.stack_name() == Some("orders"))
            .then_output(|| {
                DescribeStackEventsOutput::builder()
                    .stack_events(stack_event(
                        "orders",
                        "AWS::CloudFormation::Stack",
                        sdk::ResourceStatus::RollbackComplete,
                        None,
                    ))
                    .stack_events(stack_event(
                        "Service",
                        "AWS::ECS::Service",
                        sdk::ResourceStatus::CreateFailed,
                        Some("Resource handler returned message: \"Cluster not found.\""),
                    ))
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(Client::describe_stack_events)
            .match_requests(|req| req.next_token() == Some("page-2"))
            .then_output(|| {
                DescribeStackEventsOutput::builder()
                    .stack_events(stack_event(
                        "orders",
                        "AWS::CloudFormation::Stack",
                        sdk::ResourceStatus::CreateInProgress,
                        Some("User Initiated"),
                    ))
                    // An earlier operation: not read.
                    .stack_events(stack_event(
                        "Old",
                        "AWS::SNS::Topic",
                        sdk::ResourceStatus::CreateFailed,
                        Some("old news"),
                    ))
                    .next_token("page-3")
                    .build()
            });
        let cf = mock_cf(RuleMode::MatchAny, &[&first, &second]);

        let events = last_operation_events(&cf, "orders").await.expect("read");

        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.logical_id.as_str(), e.status.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("orders", "ROLLBACK_COMPLETE"),
                ("Service", "CREATE_FAILED"),
                ("orders", "CREATE_IN_PROGRESS")
            ]
        );
        assert!(events[2].starts_operation());
        assert!(!events[0].starts_operation());
        assert_eq!(events[1].timestamp, Some(1_764_000_000));
        assert_eq!(
            events[1].reason.as_deref(),
            Some("Resource handler returned message: \"Cluster not found.\"")
        );
        assert_eq!(first.num_calls(), 1);
        assert_eq!(second.num_calls(), 1);
    }
}
