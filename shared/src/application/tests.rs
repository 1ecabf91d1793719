use aws_sdk_ssm::Client;
use aws_sdk_ssm::operation::get_parameter::{GetParameterError, GetParameterOutput};
use aws_sdk_ssm::types::Parameter;
use aws_smithy_mocks::{RuleMode, mock};
use serde_json::json;

use super::directory::{Directory, DirectoryError};
use super::*;
use crate::aws::mock::{mock_client, service_error};

fn environment(name: &str, account: &str) -> serde_json::Value {
    json!({
        "name": name,
        "deployRoleArn": format!("arn:aws:iam::{account}:role/shipgate-deploy"),
        "stackRoleArn": "",
        "approvers": format!("{name}-lead@example.com, {name}-ops@example.com"),
        "teamEmail": "",
        "trafficPlan": "AllAtOnce",
    })
}

fn declaration(application: &str, names: &[&str]) -> serde_json::Value {
    json!({
        "schema": SCHEMA,
        "application": application,
        "pipeline": format!("sg-{application}"),
        "sourceKey": format!("accepted/{application}/release.zip"),
        "environments": names
            .iter()
            .enumerate()
            .map(|(i, n)| environment(n, &format!("{:012}", 222_222_222_222u64 + i as u64)))
            .collect::<Vec<_>>(),
    })
}

fn read(value: &serde_json::Value) -> Result<Application, DeclarationError> {
    Application::from_declaration(
        value["application"].as_str().unwrap_or("orders"),
        &value.to_string(),
    )
}

fn problems(value: &serde_json::Value) -> Vec<String> {
    read(value)
        .expect_err("the declaration is refused")
        .problems
}

#[test]
fn a_declared_chain_reads_in_promotion_order_with_each_environment_s_settings() {
    let mut value = declaration("payments", &["dev", "int", "stg", "prod"]);
    value["environments"][3]["stackRoleArn"] =
        json!("arn:aws:iam::222222222225:role/shipgate-cloudformation");
    value["environments"][3]["teamEmail"] = json!("oncall@example.com,OnCall@example.com");
    value["environments"][3]["trafficPlan"] = json!("Linear10PercentEvery1Minute;bake=30m");
    let app = read(&value).expect("a valid declaration");
    assert_eq!(app.name, "payments");
    assert_eq!(app.pipeline, "sg-payments");
    assert_eq!(app.source_key, "accepted/payments/release.zip");
    assert_eq!(app.chain(), ["dev", "int", "stg", "prod"]);
    let prod = app.environment("prod").expect("prod is in the chain");
    assert_eq!(prod.account, "222222222225");
    assert_eq!(
        prod.stack_role_arn.as_deref(),
        Some("arn:aws:iam::222222222225:role/shipgate-cloudformation")
    );
    assert_eq!(
        prod.approvers,
        ["prod-lead@example.com", "prod-ops@example.com"]
    );
    // Addresses are compared without case: one team address, once.
    assert_eq!(prod.team_emails, ["oncall@example.com"]);
    assert_eq!(app.environment("dev").unwrap().stack_role_arn, None);
    // What it writes back is what it read.
    let again = Application::from_declaration(
        "payments",
        &serde_json::to_string(&app.declaration()).unwrap(),
    )
    .unwrap();
    assert_eq!(again, app);
}

#[test]
fn chains_of_one_to_six_environments_are_declarations_and_no_others() {
    let names = ["dev", "int", "stg", "preprod", "prod", "dr", "extra"];
    for n in 1..=MAX_ENVIRONMENTS {
        let app = read(&declaration("orders", &names[..n])).expect("1 to 6 environments");
        assert_eq!(app.environments.len(), n);
    }
    for n in [0, 7] {
        let found = problems(&declaration("orders", &names[..n]));
        assert!(
            found
                .iter()
                .any(|p| p.contains(&format!("has {n}; a chain has 1 to 6"))),
            "{found:?}"
        );
    }
}

#[test]
fn every_problem_of_a_declaration_is_named_with_its_field() {
    let mut value = declaration("orders", &["int", "stg", "int"]);
    value["schema"] = json!("shipgate.application/9");
    value["pipeline"] = json!("a-pipeline-name-longer-than-20");
    value["sourceKey"] = json!("accepted/../incoming/x.zip");
    value["environments"][0]["deployRoleArn"] = json!("arn:aws:iam::2222:role/x");
    value["environments"][1]["approvers"] = json!("");
    value["environments"][1]["teamEmail"] = json!("not an address");
    value["environments"][1]["trafficPlan"] = json!("Sideways");
    value["environments"][2]["name"] = json!("int");
    let found = problems(&value);
    let expect = [
        "`schema` is \"shipgate.application/9\"",
        "`pipeline` \"a-pipeline-name-longer-than-20\"",
        "`sourceKey` \"accepted/../incoming/x.zip\"",
        "environments[0].deployRoleArn",
        "environments[1].approvers: nobody is named",
        "environments[1].teamEmail",
        "environments[1].trafficPlan: \"Sideways\"",
        "environments[2]: \"int\" is in the chain twice",
    ];
    for e in expect {
        assert!(found.iter().any(|p| p.contains(e)), "{e:?} in {found:?}");
    }
    assert_eq!(found.len(), expect.len(), "{found:?}");
}

#[test]
fn a_declaration_filed_under_another_name_or_with_unknown_fields_is_refused() {
    let value = declaration("orders", &["int"]);
    let err = Application::from_declaration("billing", &value.to_string()).unwrap_err();
    assert_eq!(err.parameter, "/shipgate/applications/billing");
    assert!(
        err.problems[0].contains("`application` is \"orders\""),
        "{err}"
    );

    let mut value = declaration("orders", &["int"]);
    value["environments"][0]["approver"] = json!("typo@example.com");
    let err = read(&value).unwrap_err();
    assert!(
        err.problems[0].contains("unknown field `approver`"),
        "{err}"
    );
    assert!(read(&json!("text")).is_err());
}

#[test]
fn a_release_goes_through_a_prefix_of_the_chain_or_the_whole_of_it() {
    let app = read(&declaration("payments", &["dev", "int", "stg", "prod"])).unwrap();
    let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(app.route(&[]).unwrap(), app.chain());
    assert_eq!(app.route(&list(&["dev"])).unwrap(), ["dev"]);
    assert_eq!(
        app.route(&list(&["dev", "int", "stg", "prod"])).unwrap(),
        app.chain()
    );

    let skipped = app.route(&list(&["dev", "stg"])).unwrap_err().message;
    assert!(skipped.contains("dev → int → stg → prod"), "{skipped}");
    assert!(
        skipped.contains("may stop early but skip none"),
        "{skipped}"
    );
    assert!(skipped.contains(r#"["dev", "int"]"#), "{skipped}");

    let late_start = app.route(&list(&["int", "stg"])).unwrap_err().message;
    assert!(late_start.contains("skip none"), "{late_start}");

    let unknown = app.route(&list(&["dev", "qa"])).unwrap_err().message;
    assert!(unknown.contains("\"qa\" is not in its chain"), "{unknown}");

    let reordered = app.route(&list(&["int", "dev"])).unwrap_err().message;
    assert!(reordered.contains("skip none"), "{reordered}");
}

#[test]
fn approvals_map_to_the_chain_s_own_environments() {
    let app = read(&declaration("payments", &["dev", "int", "stg", "prod"])).unwrap();
    let gate = app.gated("PromoteTostg").expect("a promotion into stg");
    assert_eq!(gate.environment, "stg");
    assert_eq!(gate.promote_from.as_deref(), Some("int"));
    assert_eq!(app.gated("dev").unwrap().environment, "dev");
    // The first environment is entered from the tooling registry, with no approval.
    assert!(app.gated("PromoteTodev").is_none());
    assert!(app.gated("qa").is_none());
}

fn ssm(rules: &[&aws_smithy_mocks::Rule]) -> Client {
    mock_client!(aws_sdk_ssm, RuleMode::MatchAny, rules)
}

#[tokio::test]
async fn the_directory_reads_a_declaration_once_and_an_unknown_application_each_time() {
    let text = declaration("orders", &["int", "stg", "prod"]).to_string();
    let found = mock!(Client::get_parameter)
        .match_requests(|r| r.name() == Some("/shipgate/applications/orders"))
        .then_output(move || {
            GetParameterOutput::builder()
                .parameter(Parameter::builder().value(text.clone()).build())
                .build()
        });
    let missing = mock!(Client::get_parameter)
        .match_requests(|r| r.name() == Some("/shipgate/applications/billing"))
        .then_error(|| {
            GetParameterError::ParameterNotFound(
                aws_sdk_ssm::types::error::ParameterNotFound::builder().build(),
            )
        });
    let directory = Directory::new(ssm(&[&found, &missing]));
    for _ in 0..3 {
        let app = directory.application("orders").await.unwrap().unwrap();
        assert_eq!(app.chain(), ["int", "stg", "prod"]);
    }
    assert_eq!(found.num_calls(), 1, "kept for the TTL");
    for _ in 0..2 {
        assert!(directory.application("billing").await.unwrap().is_none());
    }
    assert_eq!(
        missing.num_calls(),
        2,
        "an unknown application is asked again"
    );
    // Not a name an application can have: SSM is not asked.
    assert!(directory.application("../orders").await.unwrap().is_none());
}

#[tokio::test]
async fn an_unreadable_or_invalid_declaration_is_an_error_not_an_unknown_application() {
    let throttled = mock!(Client::get_parameter)
        .match_requests(|r| r.name() == Some("/shipgate/applications/orders"))
        .then_error(|| service_error("ThrottlingException", "Rate exceeded"));
    let broken = mock!(Client::get_parameter)
        .match_requests(|r| r.name() == Some("/shipgate/applications/billing"))
        .then_output(|| {
            GetParameterOutput::builder()
                .parameter(Parameter::builder().value("{\"schema\":1}").build())
                .build()
        });
    let directory = Directory::new(ssm(&[&throttled, &broken]));
    match directory.application("orders").await {
        Err(DirectoryError::Unavailable(e)) => assert!(e.is_code("ThrottlingException")),
        other => panic!("expected SSM's error, got {other:?}"),
    }
    match directory.application("billing").await {
        Err(DirectoryError::Invalid(e)) => {
            assert_eq!(e.parameter, "/shipgate/applications/billing")
        }
        other => panic!("expected the declaration's problems, got {other:?}"),
    }
}
