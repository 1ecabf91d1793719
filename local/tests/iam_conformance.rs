//! IAM conformance, the parts that need no story: the calls `local/iam/calls.yaml` lists by hand
//! (what no end-to-end story makes), each allowed and each saying why it is needed; a recorded
//! call its role does not allow refused with a message naming the function, the call and the
//! action; and CloudFormation's trust of the stack role. The recorded calls of the stories are
//! evaluated with the hand-listed ones in `tests/tests/end_to_end.rs` (`iam_conformance`);
//! `make iam-check` runs both.

use std::collections::BTreeMap;

use serde_json::json;
use shipgate_local::accounts;
use shipgate_local::iam_conformance::{
    CallSet, ENVIRONMENT_STACK, TOOLING_STACK, Templates, evaluate, listed_calls,
};
use shipgate_local::recorder::{
    AwsLogs, Cause, Container, Logged, Principal, RecordedCall, Recording,
};
use shipgate_local::sdk::function_access_key;

fn listed() -> Vec<shipgate_local::iam_conformance::ListedCall> {
    listed_calls(&shipgate_local::process::project_root().join("local/iam/calls.yaml"))
        .expect("local/iam/calls.yaml")
}

#[test]
fn every_listed_call_says_why_no_story_shows_it() {
    let calls = listed();
    assert!(!calls.is_empty());
    let silent: Vec<String> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.note.as_deref().is_none_or(|n| n.trim().is_empty()))
        .map(|(i, c)| format!("entry {}: {} {}", i + 1, c.function, c.action))
        .collect();
    assert!(silent.is_empty(), "listed without a note: {silent:#?}");
    let unexplained: Vec<String> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.sometimes_recorded
                .as_deref()
                .is_some_and(|r| r.trim().is_empty())
        })
        .map(|(i, c)| format!("entry {}: {} {}", i + 1, c.function, c.action))
        .collect();
    assert!(
        unexplained.is_empty(),
        "sometimes_recorded without the race: {unexplained:#?}"
    );
}

#[test]
fn every_listed_call_is_allowed_as_aws_would_decide_it() {
    let calls = listed();
    let sets = [CallSet::listed(&calls).expect("the listed calls read")];
    let found = evaluate(&sets);
    let refused: Vec<&str> = found.refused.iter().map(|r| r.line.as_str()).collect();
    assert!(
        refused.is_empty(),
        "{} of {} listed calls would be refused by AWS:\n  {}",
        refused.len(),
        calls.len(),
        refused.join("\n  ")
    );
}

/// A recording of one DeployFunction call: the deploy record written to the table.
fn deploy_writes_its_record() -> Recording {
    let call = RecordedCall {
        principal: Principal::Function {
            function: "DeployFunction".into(),
            assumed: None,
        },
        request: Logged::Api {
            access_key: function_access_key("DeployFunction"),
            service: "dynamodb".into(),
            operation: "PutItem".into(),
            params: json!({"TableName": "shipgate-Table", "Item": {}}),
            account: accounts::TOOLING.into(),
            region: accounts::REGION.into(),
            status: 200,
            issued_access_key: None,
        },
    };
    Recording {
        calls: vec![call],
        ..Recording::default()
    }
}

#[test]
fn a_recorded_call_its_role_does_not_allow_is_refused_naming_the_function_call_and_action() {
    let recording = deploy_writes_its_record();
    let mut set = CallSet::recorded("unit", &recording).expect("the call is evaluable");
    let allowed = evaluate(std::slice::from_ref(&set));
    assert!(allowed.refused.is_empty(), "{:?}", allowed.refused);
    let key = format!("{TOOLING_STACK}:DeployFunction");
    let statements: Vec<(String, String)> = set
        .templates
        .roles
        .allowed_actions(&key)
        .into_iter()
        .filter(|(_, action)| action == "dynamodb:PutItem")
        .collect();
    assert!(
        !statements.is_empty(),
        "DeployFunction's role grants no dynamodb:PutItem"
    );
    for (statement, action) in &statements {
        set.templates.roles = set.templates.roles.without_action(&key, statement, action);
    }
    let found = evaluate(std::slice::from_ref(&set));
    assert_eq!(found.refused.len(), 1, "{:?}", found.refused);
    let line = &found.refused[0].line;
    for part in [
        "DeployFunction",
        "dynamodb PutItem (story unit)",
        "dynamodb:PutItem",
    ] {
        assert!(line.contains(part), "{line} does not name {part}");
    }
}

#[test]
fn a_call_the_table_does_not_know_cannot_be_evaluated_and_says_so() {
    let mut recording = deploy_writes_its_record();
    if let Logged::Api { operation, .. } = &mut recording.calls[0].request {
        *operation = "DeleteTable".into();
    }
    let errors = match CallSet::recorded("unit", &recording) {
        Ok(_) => panic!("an unknown operation was evaluated"),
        Err(errors) => errors,
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("DeployFunction") && errors[0].contains("dynamodb DeleteTable"));
}

/// Tasks pull their image with their execution role: from their own account's registry (where
/// promotion puts it) the managed policy allows it; from another account's, only a repository
/// policy there could, and the templates give none.
#[test]
fn tasks_pull_from_their_own_accounts_registry_and_not_from_another() {
    let templates = Templates::local().expect("templates");
    let role = templates.roles.roles[&format!("{ENVIRONMENT_STACK}:TaskExecutionRole")]
        .arn
        .clone();
    let launch = |registry: &str| RecordedCall {
        principal: Principal::Tasks {
            function: "DeployFunction".into(),
            role: role.clone(),
        },
        request: Logged::TaskLaunch {
            cause: Cause {
                access_key: "ASIAINT".into(),
                operation: "CreateTaskSet".into(),
            },
            account: accounts::INT.into(),
            region: accounts::REGION.into(),
            task_definition: "arn:aws:ecs:eu-west-1:222222222222:task-definition/orders-int:1"
                .into(),
            execution_role: Some(role.clone()),
            containers: vec![Container {
                name: Some("web".into()),
                image: Some(format!(
                    "{registry}.dkr.ecr.eu-west-1.amazonaws.com/orders/web@sha256:ab"
                )),
                awslogs: Some(AwsLogs {
                    group: Some("/ecs/orders-int".into()),
                    region: None,
                    prefix: Some("web".into()),
                }),
            }],
        },
    };
    let evaluated = |registry: &str| {
        let recording = Recording {
            calls: vec![launch(registry)],
            ..Recording::default()
        };
        evaluate(&[CallSet::recorded("unit", &recording).expect("evaluable")])
    };
    let own = evaluated(accounts::INT);
    assert!(own.refused.is_empty(), "{:?}", own.refused);
    let tooling = evaluated(accounts::TOOLING);
    let refused: Vec<&str> = tooling.refused.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(refused, ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]);
    assert!(
        tooling.refused[0]
            .line
            .contains("no policy of the resource"),
        "{}",
        tooling.refused[0].line
    );
}

/// CloudFormation assumes the stack role to execute an application's change set; IAM sets
/// `aws:SourceAccount` only when the calling service supplies it, so the trust must hold with
/// the key absent, and must refuse another account's stacks when it is present.
#[test]
fn cloudformation_may_assume_the_stack_role_with_or_without_a_source_account() {
    let roles = Templates::local().expect("templates").roles;
    let stack_role = &roles.roles[&format!("{ENVIRONMENT_STACK}:StackRole")].arn;
    let cloudformation = "cloudformation.amazonaws.com";
    let without = roles.service_may_assume(stack_role, cloudformation, BTreeMap::new());
    assert!(without.is_allowed(), "{without}");
    let source = |account: &str| {
        BTreeMap::from([("aws:SourceAccount".to_owned(), vec![account.to_owned()])])
    };
    let own = roles.service_may_assume(stack_role, cloudformation, source(accounts::INT));
    assert!(own.is_allowed(), "{own}");
    let other = roles.service_may_assume(stack_role, cloudformation, source(accounts::PROD));
    assert!(!other.is_allowed(), "{other}");
    let stranger = roles.service_may_assume(stack_role, "lambda.amazonaws.com", BTreeMap::new());
    assert!(!stranger.is_allowed(), "{stranger}");
}
