//! The CloudFormation adapter against moto: a change set created in the target account (an
//! assumed role), read until ready, executed, then an update and an empty change set.
//!
//! What moto (5.2.5, as pinned) does, observed in this test and read in `moto/cloudformation/models.py`:
//! - `CreateChangeSet` is synchronous: the first `DescribeChangeSet` already says
//!   `CREATE_COMPLETE` / `AVAILABLE` (AWS goes through `CREATE_PENDING`/`CREATE_IN_PROGRESS`).
//! - A `CREATE` change set puts the stack in `REVIEW_IN_PROGRESS` at once, as AWS does.
//! - Each change has only `Action`, `LogicalResourceId` and `ResourceType`: no
//!   `PhysicalResourceId` (not even for `Modify`/`Remove`), no `Replacement`, `Scope` or
//!   `Details`, and no `NextToken` paging (paging is covered by the adapter's mock test).
//! - `Modify` is reported for any change of a resource's template entry.
//! - An `UPDATE` change set with the very same template and parameters fails as AWS's does:
//!   `FAILED` / `UNAVAILABLE`, reason "The submitted information didn't contain changes. Submit
//!   different information to create a change set."
//! - `ExecuteChangeSet` is synchronous too: the stack is `CREATE_COMPLETE` / `UPDATE_COMPLETE`
//!   when the call returns.
//! - A stack that does not exist: `ValidationError` "Stack with id … does not exist", as AWS.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use aws_sdk_cloudformation::Client;
use shipgate::aws::cloudformation::{
    ChangeSetRequest, ChangeSetState, ChangeSetStatus, ChangeSetType, ExecutionStatus,
    TemplateSource, create_change_set, describe_change_set, execute_change_set, stack_exists,
};
use shipgate::changes::ChangeAction;
use shipgate_local::moto::Moto;
use shipgate_local::sdk::Endpoints;
use shipgate_tests::support::{WAIT, wait_for};

const REGION: &str = "eu-west-1";
const TARGET_ACCOUNT: &str = "222222222222";
const DEPLOY_ROLE: &str = "arn:aws:iam::222222222222:role/shipgate-deploy";

const FIRST: &str = r#"{
  "AWSTemplateFormatVersion": "2010-09-09",
  "Resources": {
    "Alerts": { "Type": "AWS::SNS::Topic", "Properties": { "TopicName": "orders-alerts" } },
    "Orders": { "Type": "AWS::SQS::Queue",
                "Properties": { "QueueName": "orders", "VisibilityTimeout": 30 } }
  }
}"#;

/// The queue's timeout changes, the topic goes, a dead-letter queue arrives.
const SECOND: &str = r#"{
  "AWSTemplateFormatVersion": "2010-09-09",
  "Resources": {
    "Orders": { "Type": "AWS::SQS::Queue",
                "Properties": { "QueueName": "orders", "VisibilityTimeout": 60 } },
    "OrdersDlq": { "Type": "AWS::SQS::Queue", "Properties": { "QueueName": "orders-dlq" } }
  }
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_set_is_created_in_the_target_account_summarised_and_executed() -> Result<()> {
    let unique = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let state_dir = std::env::temp_dir().join(format!("shipgate-cloudformation-{unique}"));
    let moto = Moto::start(&state_dir).await?;
    let result = story(&moto, &unique).await;
    moto.stop().await;
    let _ = std::fs::remove_dir_all(&state_dir);
    result
}

async fn story(moto: &Moto, unique: &str) -> Result<()> {
    let sdk = Endpoints {
        default: moto.endpoint(),
        per_service: Default::default(),
        region: REGION.into(),
    }
    .sdk_config();
    let target = shipgate::aws::assume_role(&sdk, DEPLOY_ROLE, "test").await;
    let cf = Client::new(&target);
    let stack = format!("orders-{unique}");

    assert!(!stack_exists(&cf, &stack).await?, "no stack yet");

    // CREATE: both resources are added.
    let id = create_change_set(
        &cf,
        &request(&stack, "release-1", FIRST, ChangeSetType::Create),
    )
    .await?;
    ensure!(
        id.contains(&format!(":{TARGET_ACCOUNT}:changeSet/release-1/")),
        "change set in the target account: {id}"
    );
    assert!(
        !stack_exists(&cf, &stack).await?,
        "a stack in REVIEW_IN_PROGRESS does not exist yet for the change-set type"
    );
    let created = ready(&cf, &stack, &id).await?;
    assert_eq!(created.execution_status, Some(ExecutionStatus::Available));
    assert_eq!(
        actions(&created),
        [
            (ChangeAction::Add, "AWS::SNS::Topic", "Alerts".to_owned()),
            (ChangeAction::Add, "AWS::SQS::Queue", "Orders".to_owned()),
        ]
    );
    for change in &created.changes {
        // What moto leaves out (see the top of this file).
        assert_eq!(change.replacement, None);
        assert!(change.scope.is_empty() && change.details.is_empty());
        assert_eq!(change.physical_id, None);
    }
    execute_change_set(&cf, &stack, &id).await?;
    wait_for_stack(&cf, &stack, "CREATE_COMPLETE").await?;
    assert!(stack_exists(&cf, &stack).await?);

    // UPDATE: the queue is modified, the topic removed, the DLQ added; by name this time.
    create_change_set(
        &cf,
        &request(&stack, "release-2", SECOND, ChangeSetType::Update),
    )
    .await?;
    let updated = ready(&cf, &stack, "release-2").await?;
    assert_eq!(
        actions(&updated),
        [
            (ChangeAction::Add, "AWS::SQS::Queue", "OrdersDlq".to_owned()),
            (ChangeAction::Modify, "AWS::SQS::Queue", "Orders".to_owned()),
            (ChangeAction::Remove, "AWS::SNS::Topic", "Alerts".to_owned()),
        ]
    );
    assert!(updated.changes.iter().all(|c| c.replacement.is_none()));
    execute_change_set(&cf, &stack, "release-2").await?;
    wait_for_stack(&cf, &stack, "UPDATE_COMPLETE").await?;

    // The same template again: an empty change set, a normal outcome.
    create_change_set(
        &cf,
        &request(&stack, "release-3", SECOND, ChangeSetType::Update),
    )
    .await?;
    let empty = ready(&cf, &stack, "release-3").await?;
    assert_eq!(empty.status, ChangeSetStatus::Failed);
    assert_eq!(empty.execution_status, Some(ExecutionStatus::Unavailable));
    assert_eq!(
        empty.status_reason.as_deref(),
        Some(
            "The submitted information didn't contain changes. Submit different information to \
             create a change set."
        )
    );
    assert!(empty.is_empty());
    assert!(empty.changes.is_empty());
    Ok(())
}

fn request(stack: &str, name: &str, template: &str, kind: ChangeSetType) -> ChangeSetRequest {
    ChangeSetRequest {
        stack_name: stack.into(),
        change_set_name: name.into(),
        template: TemplateSource::Body(template.into()),
        parameters: BTreeMap::new(),
        change_set_type: kind,
        capabilities: vec![],
        description: Some(format!("shipgate {name}")),
        role_arn: None,
    }
}

/// Polls until CloudFormation has finished computing the change set.
async fn ready(cf: &Client, stack: &str, change_set: &str) -> Result<ChangeSetState> {
    wait_for(&format!("change set {change_set}"), WAIT, || async {
        let state = describe_change_set(cf, stack, change_set).await?;
        Ok((!state.is_pending()).then_some(state))
    })
    .await
}

async fn wait_for_stack(cf: &Client, stack: &str, status: &str) -> Result<()> {
    wait_for(&format!("stack {stack} {status}"), WAIT, || async {
        let out = cf.describe_stacks().stack_name(stack).send().await?;
        let current = out
            .stacks()
            .first()
            .and_then(|s| s.stack_status())
            .context("DescribeStacks gives the stack's status")?;
        Ok((current.as_str() == status).then_some(()))
    })
    .await
}

/// Actions in a stable order (moto, like AWS, does not promise one).
fn actions(state: &ChangeSetState) -> Vec<(ChangeAction, &str, String)> {
    let mut actions: Vec<_> = state
        .changes
        .iter()
        .map(|c| (c.action, c.resource_type.as_str(), c.logical_id.clone()))
        .collect();
    actions.sort_by_key(|(action, _, id)| (format!("{action:?}"), id.clone()));
    actions
}
