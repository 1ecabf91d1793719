//! The change sets approvers meet, from a new stack to a forced replacement.

use super::*;

fn change(action: ChangeAction, logical_id: &str, resource_type: &str) -> ResourceChange {
    ResourceChange {
        action,
        logical_id: logical_id.to_owned(),
        physical_id: None,
        resource_type: resource_type.to_owned(),
        replacement: None,
        scope: Vec::new(),
        details: Vec::new(),
    }
}

fn detail(
    name: &str,
    requires_recreation: RequiresRecreation,
    evaluation: Evaluation,
    change_source: ChangeSource,
    causing_entity: Option<&str>,
) -> ChangeDetail {
    ChangeDetail {
        target: Some(ChangeTarget {
            attribute: Some(Attribute::Properties),
            name: Some(name.to_owned()),
            requires_recreation: Some(requires_recreation),
        }),
        evaluation: Some(evaluation),
        change_source: Some(change_source),
        causing_entity: causing_entity.map(str::to_owned),
    }
}

fn modify(
    logical_id: &str,
    resource_type: &str,
    replacement: Replacement,
    details: Vec<ChangeDetail>,
) -> ResourceChange {
    ResourceChange {
        physical_id: Some(format!("{logical_id}-physical")),
        replacement: Some(replacement),
        scope: vec![Attribute::Properties],
        details,
        ..change(ChangeAction::Modify, logical_id, resource_type)
    }
}

fn categories(summary: &ChangeSummary) -> Vec<(Category, &str)> {
    summary
        .entries
        .iter()
        .map(|e| (e.category, e.logical_id.as_str()))
        .collect()
}

#[test]
fn a_new_stack_is_all_additions() {
    let changes = [
        change(
            ChangeAction::Add,
            "TaskDefinition",
            "AWS::ECS::TaskDefinition",
        ),
        change(ChangeAction::Add, "Service", "AWS::ECS::Service"),
        change(ChangeAction::Add, "TaskRole", "AWS::IAM::Role"),
    ];
    let summary = summarise_change_set(&changes);

    assert_eq!(summary.counts.added, 3);
    assert_eq!(summary.headline(), "3 added");
    assert!(summary.deletions.is_empty());
    // A new role is an IAM change all the same: it grants permissions.
    assert_eq!(summary.iam_changes, ["TaskRole"]);
    assert!(
        summary
            .to_text()
            .contains("ADD Service (AWS::ECS::Service): new resource")
    );
}

#[test]
fn an_image_only_update_replaces_the_task_definition_and_is_flagged() {
    // ContainerDefinitions is "Update requires: Replacement" (a task definition revision is
    // immutable): CloudFormation registers a new revision and the service follows it.
    let changes = [
        modify(
            "Service",
            "AWS::ECS::Service",
            Replacement::False,
            vec![detail(
                "TaskDefinition",
                RequiresRecreation::Never,
                Evaluation::Dynamic,
                ChangeSource::ResourceReference,
                Some("TaskDefinition"),
            )],
        ),
        modify(
            "TaskDefinition",
            "AWS::ECS::TaskDefinition",
            Replacement::True,
            vec![detail(
                "ContainerDefinitions",
                RequiresRecreation::Always,
                Evaluation::Static,
                ChangeSource::ParameterReference,
                Some("ImageDigest"),
            )],
        ),
    ];
    let summary = summarise_change_set(&changes);

    assert_eq!(
        categories(&summary),
        [
            (Category::Replaced, "TaskDefinition"),
            (Category::Modified, "Service")
        ]
    );
    assert_eq!(summary.image_changes, ["TaskDefinition"]);
    assert!(summary.iam_changes.is_empty());
    assert_eq!(summary.headline(), "1 replaced, 1 modified");
    let text = summary.to_text();
    assert!(text.contains("Image changes: TaskDefinition"), "{text}");
    assert!(
        text.contains(
            "REPLACE TaskDefinition (AWS::ECS::TaskDefinition): recreated by \
             ContainerDefinitions (always, via ImageDigest) [image]"
        ),
        "{text}"
    );
    assert!(text.contains("MODIFY Service (AWS::ECS::Service): changes TaskDefinition"));
}

#[test]
fn a_lambda_code_change_is_an_image_change() {
    let changes = [modify(
        "Function",
        "AWS::Lambda::Function",
        Replacement::False,
        vec![detail(
            "Code",
            RequiresRecreation::Never,
            Evaluation::Static,
            ChangeSource::DirectModification,
            None,
        )],
    )];
    assert_eq!(summarise_change_set(&changes).image_changes, ["Function"]);
}

#[test]
fn forced_and_conditional_replacements_come_first_with_their_causes() {
    let changes = [
        change(ChangeAction::Add, "NewQueue", "AWS::SQS::Queue"),
        modify(
            "Listener",
            "AWS::ElasticLoadBalancingV2::Listener",
            Replacement::Conditional,
            vec![detail(
                "Port",
                RequiresRecreation::Conditionally,
                Evaluation::Static,
                ChangeSource::DirectModification,
                None,
            )],
        ),
        modify(
            "Table",
            "AWS::DynamoDB::Table",
            Replacement::True,
            vec![
                detail(
                    "BillingMode",
                    RequiresRecreation::Never,
                    Evaluation::Static,
                    ChangeSource::DirectModification,
                    None,
                ),
                detail(
                    "KeySchema",
                    RequiresRecreation::Always,
                    Evaluation::Static,
                    ChangeSource::DirectModification,
                    None,
                ),
            ],
        ),
    ];
    let summary = summarise_change_set(&changes);

    assert_eq!(
        categories(&summary),
        [
            (Category::Replaced, "Table"),
            (Category::ConditionallyReplaced, "Listener"),
            (Category::Added, "NewQueue"),
        ]
    );
    let table = &summary.entries[0];
    // Only what forces recreation is a cause; BillingMode is changed but harmless.
    assert_eq!(
        table
            .recreation_causes
            .iter()
            .map(|c| c.property.as_str())
            .collect::<Vec<_>>(),
        ["KeySchema"]
    );
    assert_eq!(table.changed, ["BillingMode", "KeySchema"]);
    assert_eq!(
        summary.headline(),
        "1 replaced, 1 possibly replaced, 1 added"
    );
    assert!(summary.to_text().contains(
        "MAY REPLACE Listener (AWS::ElasticLoadBalancingV2::Listener): recreated by Port \
         (conditionally)"
    ));
}

#[test]
fn a_deletion_is_flagged_and_listed_before_additions() {
    let changes = [
        change(ChangeAction::Add, "NewBucket", "AWS::S3::Bucket"),
        ResourceChange {
            physical_id: Some("old-bucket".to_owned()),
            ..change(ChangeAction::Remove, "OldBucket", "AWS::S3::Bucket")
        },
    ];
    let summary = summarise_change_set(&changes);

    assert_eq!(summary.deletions, ["OldBucket"]);
    assert_eq!(summary.entries[0].category, Category::Removed);
    assert_eq!(summary.headline(), "1 removed, 1 added");
    let text = summary.to_text();
    assert!(text.contains("Deletions: OldBucket"));
    assert!(text.contains("REMOVE OldBucket (AWS::S3::Bucket): deleted"));
}

#[test]
fn an_empty_change_set_is_a_normal_outcome() {
    let summary = summarise_change_set(&[]);
    assert!(summary.is_empty());
    assert_eq!(summary.headline(), "no changes");
    assert_eq!(summary.to_text(), "no changes\n");
}

#[test]
fn an_iam_change_is_flagged_even_in_place() {
    let changes = [modify(
        "TaskRole",
        "AWS::IAM::Role",
        Replacement::False,
        vec![detail(
            "Policies",
            RequiresRecreation::Never,
            Evaluation::Static,
            ChangeSource::DirectModification,
            None,
        )],
    )];
    let summary = summarise_change_set(&changes);

    assert_eq!(summary.iam_changes, ["TaskRole"]);
    let text = summary.to_text();
    assert!(text.contains("IAM changes: TaskRole"));
    assert!(text.contains("MODIFY TaskRole (AWS::IAM::Role): changes Policies [IAM]"));
}

#[test]
fn what_moto_returns_still_summarises() {
    // moto 5.2 gives Action (and ids) but no Replacement, Scope or Details.
    let json = r#"[
        {"Action": "Modify", "LogicalResourceId": "TaskDefinition",
         "PhysicalResourceId": "arn:aws:ecs:eu-west-1:123456789012:task-definition/app:3",
         "ResourceType": "AWS::ECS::TaskDefinition"},
        {"Action": "Add", "LogicalResourceId": "Alarm", "ResourceType": "AWS::CloudWatch::Alarm"}
    ]"#;
    let changes: Vec<ResourceChange> = serde_json::from_str(json).expect("moto's shape parses");
    let summary = summarise_change_set(&changes);

    assert_eq!(summary.counts.modified, 1);
    assert_eq!(summary.counts.replaced, 0);
    assert!(summary.image_changes.is_empty(), "no details, no guessing");
    assert!(
        summary
            .to_text()
            .contains("MODIFY TaskDefinition (AWS::ECS::TaskDefinition): details unavailable")
    );
}

/// CloudFormation User Guide, "Example change sets", the change set generated by changing
/// every parameter of the sample EC2 instance stack (`SampleChangeSet-multiple`).
const AWS_DOCUMENTED_EXAMPLE: &str = r#"{
    "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/SampleStack/1a2345b6-0000-00a0-a123-00abc0abc000",
    "Status": "CREATE_COMPLETE",
    "ChangeSetName": "SampleChangeSet-multiple",
    "Parameters": [
        {"ParameterValue": "production", "ParameterKey": "Purpose"},
        {"ParameterValue": "MyNewKeyName", "ParameterKey": "KeyPairName"},
        {"ParameterValue": "t2.small", "ParameterKey": "InstanceType"}
    ],
    "Changes": [
        {
            "ResourceChange": {
                "ResourceType": "AWS::EC2::Instance",
                "PhysicalResourceId": "i-7bef86f8",
                "Details": [
                    {"ChangeSource": "DirectModification", "Evaluation": "Dynamic",
                     "Target": {"Attribute": "Properties", "Name": "KeyName", "RequiresRecreation": "Always"}},
                    {"ChangeSource": "DirectModification", "Evaluation": "Dynamic",
                     "Target": {"Attribute": "Properties", "Name": "InstanceType", "RequiresRecreation": "Conditionally"}},
                    {"ChangeSource": "DirectModification", "Evaluation": "Dynamic",
                     "Target": {"Attribute": "Tags", "RequiresRecreation": "Never"}},
                    {"CausingEntity": "KeyPairName", "ChangeSource": "ParameterReference", "Evaluation": "Static",
                     "Target": {"Attribute": "Properties", "Name": "KeyName", "RequiresRecreation": "Always"}},
                    {"CausingEntity": "InstanceType", "ChangeSource": "ParameterReference", "Evaluation": "Static",
                     "Target": {"Attribute": "Properties", "Name": "InstanceType", "RequiresRecreation": "Conditionally"}},
                    {"CausingEntity": "Purpose", "ChangeSource": "ParameterReference", "Evaluation": "Static",
                     "Target": {"Attribute": "Tags", "RequiresRecreation": "Never"}}
                ],
                "Action": "Modify",
                "Scope": ["Tags", "Properties"],
                "LogicalResourceId": "MyEC2Instance",
                "Replacement": "True"
            },
            "Type": "Resource"
        }
    ],
    "CreationTime": "2020-11-18T00:39:35.974Z",
    "Capabilities": [],
    "StackName": "SampleStack",
    "NotificationARNs": [],
    "ChangeSetId": "arn:aws:cloudformation:us-east-1:123456789012:changeSet/SampleChangeSet-multiple/1a2345b6-0000-00a0-a123-00abc0abc000"
}"#;

#[test]
fn aws_documented_describe_change_set_output_deserialises() {
    let output: DescribeChangeSetOutput =
        serde_json::from_str(AWS_DOCUMENTED_EXAMPLE).expect("AWS's example parses");
    let changes = output.resource_changes();
    assert_eq!(changes.len(), 1);
    let instance = &changes[0];
    assert_eq!(instance.action, ChangeAction::Modify);
    assert_eq!(instance.logical_id, "MyEC2Instance");
    assert_eq!(instance.physical_id.as_deref(), Some("i-7bef86f8"));
    assert_eq!(instance.replacement, Some(Replacement::True));
    assert_eq!(instance.scope, [Attribute::Tags, Attribute::Properties]);
    assert_eq!(instance.details.len(), 6);
    assert_eq!(
        instance.details[3],
        detail(
            "KeyName",
            RequiresRecreation::Always,
            Evaluation::Static,
            ChangeSource::ParameterReference,
            Some("KeyPairName"),
        )
    );

    let summary = summarise_change_set(&changes);
    let entry = &summary.entries[0];
    assert_eq!(entry.category, Category::Replaced);
    // Dynamic and Static duplicates collapse; the always-cause comes first.
    assert_eq!(
        entry.recreation_causes,
        [
            RecreationCause {
                property: "KeyName".to_owned(),
                requires_recreation: RequiresRecreation::Always,
                causing_entity: Some("KeyPairName".to_owned()),
            },
            RecreationCause {
                property: "InstanceType".to_owned(),
                requires_recreation: RequiresRecreation::Conditionally,
                causing_entity: Some("InstanceType".to_owned()),
            },
        ]
    );
    assert_eq!(entry.changed, ["KeyName", "InstanceType", "Tags"]);
    assert_eq!(
        summary.to_text(),
        "1 replaced\nREPLACE MyEC2Instance (AWS::EC2::Instance): recreated by KeyName (always, \
         via KeyPairName), InstanceType (conditionally, via InstanceType)\n"
    );
}

#[test]
fn unknown_future_attribute_values_do_not_break_parsing() {
    let json = r#"{"Action": "Modify", "LogicalResourceId": "X", "ResourceType": "AWS::S3::Bucket",
        "Replacement": "False", "Scope": ["SomethingNew"],
        "Details": [{"ChangeSource": "NewSource", "Evaluation": "Static",
                     "Target": {"Attribute": "SomethingNew", "RequiresRecreation": "Never",
                                "AttributeChangeType": "Modify"}}]}"#;
    let change: ResourceChange = serde_json::from_str(json).expect("parses");
    assert_eq!(change.scope, [Attribute::Other]);
    let summary = summarise_change_set(&[change]);
    assert_eq!(summary.headline(), "1 modified");
}
