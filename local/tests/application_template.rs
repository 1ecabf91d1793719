//! application.yaml as its users rely on it, read by the local pipeline reader: for chains of
//! one to six environments, the stages in order with the names the core's functions map back
//! to environments (`gated_environment`), the source key, what each action is told
//! (UserParameters, approval CustomData), and the declaration the core's functions read.
//! The Rules, which CloudFormation checks before it creates anything, are evaluated here on
//! parameter values as CloudFormation documents them (the reader has no use for them).

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use serde_yaml::Value as Yaml;
use shipgate::approval::{GatedEnvironment, gated_environment};
use shipgate_local::codepipeline::{
    ActionDefinition, ActionKind, ExecutionMode, PipelineDefinition, PipelineType, Resolver,
    StageDefinition, TemplateEvaluator, pipelines_from_template,
};

const TEMPLATE: &str = include_str!("../../application.yaml");
const APPLICATION: &str = "orders";
const PIPELINE: &str = "orders-release";
const BUCKET: &str = "shipgate-artifacts-111111111111-eu-west-1";
const TOPIC: &str = "arn:aws:sns:eu-west-1:111111111111:shipgate-approvals";
const RELEASE_ID: &str = "#{variables.ReleaseId}";
const EXECUTION_ID: &str = "#{codepipeline.PipelineExecutionId}";

/// One environment of a chain, as its stack's parameters give it.
struct Environment {
    name: String,
    deploy_role: String,
    stack_role: String,
    approvers: String,
    team_email: String,
    plan: String,
}

/// The environments of a chain: every other one with a stack role and a team, plans of each
/// kind, accounts 222222222222, 333333333333, ...
fn chain(names: &[&str]) -> Vec<Environment> {
    const PLANS: [&str; 4] = [
        "AllAtOnce",
        "Canary10Percent5Minutes;bake=10m",
        "Linear10PercentEvery1Minute;bake=30m",
        "custom:10@5m,50@10m,100;scale=60",
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let account = (i as u64 + 2) * 111_111_111_111;
            Environment {
                name: (*name).to_owned(),
                deploy_role: format!("arn:aws:iam::{account}:role/shipgate-deploy"),
                stack_role: if i % 2 == 0 {
                    format!("arn:aws:iam::{account}:role/shipgate-stack")
                } else {
                    String::new()
                },
                approvers: format!("approver-{name}@example.com,lead@example.com"),
                team_email: if i % 2 == 1 {
                    format!("team-{name}@example.com")
                } else {
                    String::new()
                },
                plan: PLANS[i % PLANS.len()].to_owned(),
            }
        })
        .collect()
}

/// The application stack's parameters for `environments` (the absent ones keep their defaults).
fn parameters(environments: &[Environment]) -> BTreeMap<String, String> {
    let mut refs = BTreeMap::from([
        ("ApplicationName".to_owned(), APPLICATION.to_owned()),
        ("PipelineName".to_owned(), PIPELINE.to_owned()),
    ]);
    for (i, e) in environments.iter().enumerate() {
        let n = i + 1;
        refs.insert(format!("Env{n}Name"), e.name.clone());
        refs.insert(format!("Env{n}DeployRoleArn"), e.deploy_role.clone());
        refs.insert(format!("Env{n}StackRoleArn"), e.stack_role.clone());
        refs.insert(format!("Env{n}Approvers"), e.approvers.clone());
        refs.insert(format!("Env{n}TeamEmail"), e.team_email.clone());
        refs.insert(format!("Env{n}TrafficPlan"), e.plan.clone());
    }
    refs
}

fn function_name(logical_id: &str) -> String {
    format!("shipgate-{logical_id}-X1")
}

/// The stack's parameters, and what the core stack `shipgate` exports.
fn resolver(environments: &[Environment]) -> Resolver {
    let mut resolver = Resolver::new(parameters(environments), "eu-west-1", "111111111111")
        .with_stack_name("orders-shipgate")
        .with_export("shipgate-ArtifactBucket", BUCKET)
        .with_export("shipgate-ApprovalTopic", TOPIC);
    for function in [
        "ChangeSetFunction",
        "DeployFunction",
        "ChecksFunction",
        "TrafficFunction",
        "PromoteFunction",
    ] {
        resolver = resolver.with_export(
            format!("shipgate-{function}"),
            format!(
                "arn:aws:lambda:eu-west-1:111111111111:function:{}",
                function_name(function)
            ),
        );
    }
    resolver
}

fn pipeline(environments: &[Environment]) -> PipelineDefinition {
    let mut pipelines =
        pipelines_from_template(TEMPLATE, &resolver(environments)).expect("application.yaml reads");
    assert_eq!(pipelines.len(), 1, "one pipeline per application stack");
    pipelines.remove(0)
}

fn stage_names(pipeline: &PipelineDefinition) -> Vec<&str> {
    pipeline.stages.iter().map(|s| s.name.as_str()).collect()
}

fn action_names(stage: &StageDefinition) -> Vec<&str> {
    stage.actions.iter().map(|a| a.name.as_str()).collect()
}

fn stage<'a>(pipeline: &'a PipelineDefinition, name: &str) -> &'a StageDefinition {
    pipeline
        .stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage {name}"))
}

fn action<'a>(stage: &'a StageDefinition, name: &str) -> &'a ActionDefinition {
    stage
        .actions
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no action {name} in stage {}", stage.name))
}

/// The action's UserParameters, which must be JSON.
fn user_parameters(action: &ActionDefinition) -> Json {
    let raw = &action.configuration["UserParameters"];
    serde_json::from_str(raw).unwrap_or_else(|e| panic!("{}: {e}: {raw}", action.name))
}

/// The core function an invoke action dispatches to, and the name CodePipeline calls.
fn assert_invokes(action: &ActionDefinition, logical_id: &str) {
    assert_eq!(
        action.kind,
        ActionKind::LambdaInvoke {
            function_logical_id: logical_id.to_owned()
        },
        "{}",
        action.name
    );
    assert_eq!(
        action.configuration["FunctionName"],
        function_name(logical_id)
    );
}

/// The `key=value` words of an approval's CustomData.
fn custom_data_words(action: &ActionDefinition) -> BTreeMap<String, String> {
    let ActionKind::ManualApproval {
        notification_topic_logical_id,
        custom_data: Some(custom_data),
        ..
    } = &action.kind
    else {
        panic!("{} is no approval with CustomData", action.name);
    };
    assert_eq!(
        notification_topic_logical_id.as_deref(),
        Some("ApprovalTopic")
    );
    assert_eq!(action.configuration["NotificationArn"], TOPIC);
    custom_data
        .split_whitespace()
        .filter_map(|word| word.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Everything users rely on in the pipeline of `environments`.
fn assert_pipeline_of(environments: &[Environment]) {
    let p = pipeline(environments);
    assert_eq!(p.name, PIPELINE);
    assert_eq!(p.pipeline_type, PipelineType::V2);
    assert_eq!(p.execution_mode, ExecutionMode::Superseded);
    assert_eq!(p.artifact_bucket, BUCKET);
    assert_eq!(
        p.variables
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["ReleaseId", "Application", "Version"]
    );

    let mut expected_stages = vec!["Source".to_owned()];
    for e in environments {
        expected_stages.push(format!("PromoteTo{}", e.name));
        expected_stages.push(e.name.clone());
    }
    assert_eq!(stage_names(&p), expected_stages);

    let source = action(stage(&p, "Source"), "Release");
    assert_eq!(
        source.kind,
        ActionKind::S3Source {
            bucket: BUCKET.to_owned(),
            object_key: format!("accepted/{APPLICATION}/release.zip"),
            allow_object_key_override: false,
        }
    );
    assert_eq!(source.output_artifacts, ["ReleaseArtifact"]);

    let names: Vec<String> = environments.iter().map(|e| e.name.clone()).collect();
    for (i, e) in environments.iter().enumerate() {
        let n = i + 1;
        let previous = i.checked_sub(1).map(|p| &environments[p]);

        // The promotion into e: from the tooling registry with no approval for the first,
        // from the environment before it after its approvers' yes for the others.
        let promotion = stage(&p, &format!("PromoteTo{}", e.name));
        let from = match previous {
            None => {
                assert_eq!(action_names(promotion), ["Promote"]);
                json!({"environment": "tooling"})
            }
            Some(prev) => {
                assert_eq!(action_names(promotion), ["ApprovePromotion", "Promote"]);
                json!({"environment": prev.name, "roleArn": prev.deploy_role})
            }
        };
        let promote = action(promotion, "Promote");
        assert_invokes(promote, "PromoteFunction");
        assert_eq!(promote.namespace, Some(format!("Env{n}Promote")));
        assert_eq!(
            user_parameters(promote),
            json!({
                "releaseId": RELEASE_ID,
                "executionId": EXECUTION_ID,
                "from": from,
                "to": {"environment": e.name, "roleArn": e.deploy_role},
                "application": APPLICATION,
            })
        );

        // e's own stage, as template.yaml's Int.
        let own = stage(&p, &e.name);
        assert_eq!(
            own.actions
                .iter()
                .map(|a| (a.name.as_str(), a.run_order))
                .collect::<Vec<_>>(),
            [
                ("ChangeSet", 1),
                ("Approve", 2),
                ("Deploy", 3),
                ("Checks", 4),
                ("Traffic", 5),
                ("LambdaTraffic", 5)
            ]
        );
        let change_set = action(own, "ChangeSet");
        assert_invokes(change_set, "ChangeSetFunction");
        assert_eq!(change_set.input_artifacts, ["ReleaseArtifact"]);
        assert_eq!(change_set.namespace, Some(format!("Env{n}ChangeSet")));
        assert_eq!(
            user_parameters(change_set),
            json!({
                "environment": e.name,
                "roleArn": e.deploy_role,
                "stackRoleArn": e.stack_role,
                "releaseId": RELEASE_ID,
                "executionId": EXECUTION_ID,
                "application": APPLICATION,
            })
        );
        let deploy = action(own, "Deploy");
        assert_invokes(deploy, "DeployFunction");
        assert_eq!(deploy.namespace, Some(format!("Env{n}Deploy")));
        assert_eq!(
            user_parameters(deploy),
            json!({
                "environment": e.name,
                "roleArn": e.deploy_role,
                "releaseId": RELEASE_ID,
                "executionId": EXECUTION_ID,
                "application": APPLICATION,
            })
        );
        let checks = action(own, "Checks");
        assert_invokes(checks, "ChecksFunction");
        assert_eq!(checks.input_artifacts, ["ReleaseArtifact"]);
        let account = e.deploy_role.split(':').nth(4).expect("an account");
        assert_eq!(
            user_parameters(checks),
            json!({
                "environment": e.name,
                "releaseId": RELEASE_ID,
                "executionId": EXECUTION_ID,
                "endpoint": format!("#{{Env{n}Deploy.ShipgateTestEndpoint}}"),
                "probe": {
                    "roleArn": format!("arn:aws:iam::{account}:role/shipgate-checks"),
                    "function": format!(
                        "arn:aws:lambda:eu-west-1:{account}:function:shipgate-test-probe"
                    ),
                },
                "application": APPLICATION,
            })
        );
        for (name, extra) in [
            ("Traffic", json!({"target": "alb_listener"})),
            (
                "LambdaTraffic",
                json!({"target": "lambda_alias", "name": "lambda"}),
            ),
        ] {
            let traffic = action(own, name);
            assert_invokes(traffic, "TrafficFunction");
            assert_eq!(traffic.namespace, Some(format!("Env{n}{name}")));
            let mut expected = json!({
                "environment": e.name,
                "roleArn": e.deploy_role,
                "releaseId": RELEASE_ID,
                "executionId": EXECUTION_ID,
                "plan": e.plan,
                "application": APPLICATION,
            });
            for (k, v) in extra.as_object().expect("an object") {
                expected[k] = v.clone();
            }
            assert_eq!(user_parameters(traffic), expected, "{name} of {}", e.name);
        }

        // Every approval: the CustomData words the mailer reads, and the environment its
        // stage gates by name, which must agree.
        let approve = custom_data_words(action(own, "Approve"));
        assert_eq!(approve["release"], RELEASE_ID);
        assert_eq!(approve["execution"], EXECUTION_ID);
        assert_eq!(approve["environment"], e.name);
        assert!(!approve.contains_key("from"));
        assert_eq!(
            gated_environment(&own.name, &names),
            Some(GatedEnvironment {
                environment: e.name.clone(),
                promote_from: None,
            })
        );
        match previous {
            None => assert_eq!(gated_environment(&promotion.name, &names), None),
            Some(prev) => {
                let words = custom_data_words(action(promotion, "ApprovePromotion"));
                assert_eq!(words["release"], RELEASE_ID);
                assert_eq!(words["execution"], EXECUTION_ID);
                assert_eq!(words["environment"], e.name);
                assert_eq!(words["from"], prev.name);
                assert_eq!(
                    gated_environment(&promotion.name, &names),
                    Some(GatedEnvironment {
                        environment: e.name.clone(),
                        promote_from: Some(prev.name.clone()),
                    })
                );
            }
        }
    }
    assert_eq!(gated_environment("Source", &names), None);

    // CodePipeline refuses an action configuration value over 1,000 characters.
    for action in p.stages.iter().flat_map(|s| &s.actions) {
        for (key, value) in &action.configuration {
            assert!(
                value.len() <= 1000,
                "{}.{key}: {} characters",
                action.name,
                value.len()
            );
        }
    }
}

/// The declaration parameter's properties, evaluated for `environments`.
fn declaration(environments: &[Environment]) -> (String, String, Json) {
    let yaml: Yaml = serde_yaml::from_str(TEMPLATE).expect("YAML");
    let properties = &yaml["Resources"]["Declaration"]["Properties"];
    let evaluator = TemplateEvaluator::new(TEMPLATE).expect("template");
    let resolver = resolver(environments);
    let string = |key: &str| {
        evaluator
            .string(&resolver, &properties[key], &format!("Declaration.{key}"))
            .expect("evaluates")
            .unwrap_or_else(|| panic!("Declaration.{key} has a value"))
    };
    let value = string("Value");
    // What the functions read it as: the declaration is usable as it is written.
    let application = shipgate::application::Application::from_declaration(APPLICATION, &value)
        .unwrap_or_else(|e| panic!("{e}: {value}"));
    assert_eq!(
        application.chain(),
        environments
            .iter()
            .map(|e| e.name.clone())
            .collect::<Vec<_>>()
    );
    let parsed = serde_json::from_str(&value).unwrap_or_else(|e| panic!("{e}: {value}"));
    (string("Name"), string("Tier"), parsed)
}

fn assert_declaration_of(environments: &[Environment]) {
    let (name, tier, value) = declaration(environments);
    assert_eq!(name, format!("/shipgate/applications/{APPLICATION}"));
    assert_eq!(tier, "Intelligent-Tiering");
    let expected: Vec<Json> = environments
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "deployRoleArn": e.deploy_role,
                "stackRoleArn": e.stack_role,
                "approvers": e.approvers,
                "teamEmail": e.team_email,
                "trafficPlan": e.plan,
            })
        })
        .collect();
    assert_eq!(
        value,
        json!({
            "schema": "shipgate.application/1",
            "application": APPLICATION,
            "pipeline": PIPELINE,
            "sourceKey": format!("accepted/{APPLICATION}/release.zip"),
            "environments": expected,
        })
    );
}

/// The pipeline, the declaration and the rules of the chain `names`.
fn assert_chain(names: &[&str]) {
    let environments = chain(names);
    assert_pipeline_of(&environments);
    assert_declaration_of(&environments);
    assert_eq!(
        violated_rules(&parameters(&environments)),
        Vec::<String>::new()
    );
}

#[test]
fn a_single_environment_is_promoted_into_from_tooling_and_gated_once() {
    assert_chain(&["prod"]);
}

#[test]
fn int_stg_prod_is_the_chain_template_yaml_runs_today() {
    assert_chain(&["int", "stg", "prod"]);
}

#[test]
fn a_dev_environment_goes_first() {
    assert_chain(&["dev", "int", "stg", "prod"]);
}

#[test]
fn six_environments_with_the_longest_names_fit_codepipeline() {
    // 32 characters, the longest name the label rule allows.
    assert_chain(&[
        "dev",
        "int",
        "stg",
        "preprod",
        "prod",
        "prod-eu-central-disaster-recover",
    ]);
}

#[test]
fn a_gap_in_the_chain_is_refused_before_anything_is_created() {
    let environments = chain(&["int", "stg", "prod"]);
    let mut params = parameters(&environments);
    params.insert("Env2Name".into(), String::new());
    assert_eq!(
        violated_rules(&params),
        ["Environment 3 needs environment 2 (the chain has no gaps)."]
    );
    // What the rule prevents: the conditions would silently leave prod out.
    let p = pipelines_from_template(
        TEMPLATE,
        &resolver(&environments[..1]).with_ref("Env3Name", "prod"),
    )
    .expect("reads");
    assert_eq!(stage_names(&p[0]), ["Source", "PromoteToint", "int"]);
}

#[test]
fn an_environment_without_deploy_role_or_approvers_is_refused() {
    let environments = chain(&["int", "stg"]);
    let mut params = parameters(&environments);
    params.insert("Env2DeployRoleArn".into(), String::new());
    params.insert("Env2Approvers".into(), String::new());
    assert_eq!(
        violated_rules(&params),
        [
            "Environment 2 needs its deploy role (Env2DeployRoleArn).",
            "Environment 2 needs its approvers (Env2Approvers).",
        ]
    );
}

#[test]
fn an_environment_named_twice_is_refused() {
    let environments = chain(&["int", "stg", "int"]);
    assert_eq!(
        violated_rules(&parameters(&environments)),
        ["Environment 3's name is already the name of an environment before it."]
    );
}

/// The AssertDescription of every assertion of the template's Rules that `parameters` break,
/// evaluated as CloudFormation documents rule functions (Fn::Equals, Fn::Not, Fn::Contains,
/// Fn::And, Fn::Or and Ref of parameters, defaults for those not given).
fn violated_rules(parameters: &BTreeMap<String, String>) -> Vec<String> {
    let yaml: Yaml = serde_yaml::from_str(TEMPLATE).expect("YAML");
    let rules = yaml["Rules"].as_mapping().expect("Rules");
    let mut violated = Vec::new();
    for (name, rule) in rules {
        let applies = rule
            .get("RuleCondition")
            .is_none_or(|c| rule_value(c, &yaml, parameters).boolean());
        if !applies {
            continue;
        }
        for assertion in rule["Assertions"].as_sequence().expect("Assertions") {
            if !rule_value(&assertion["Assert"], &yaml, parameters).boolean() {
                let description = assertion["AssertDescription"].as_str();
                violated.push(description.unwrap_or_else(|| panic!("{name:?}")).to_owned());
            }
        }
    }
    violated
}

#[derive(Debug)]
enum RuleValue {
    Boolean(bool),
    Text(String),
    List(Vec<String>),
}

impl RuleValue {
    fn boolean(self) -> bool {
        match self {
            Self::Boolean(b) => b,
            other => panic!("{other:?} is not a condition"),
        }
    }

    fn text(self) -> String {
        match self {
            Self::Text(t) => t,
            other => panic!("{other:?} is not a string"),
        }
    }
}

fn rule_value(value: &Yaml, template: &Yaml, parameters: &BTreeMap<String, String>) -> RuleValue {
    let eval = |v: &Yaml| rule_value(v, template, parameters);
    match value {
        Yaml::String(s) => RuleValue::Text(s.clone()),
        Yaml::Sequence(items) => RuleValue::List(items.iter().map(|i| eval(i).text()).collect()),
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let operands = || tagged.value.as_sequence().expect("a list of operands");
            match tag.trim_start_matches('!') {
                "Ref" => {
                    let name = tagged.value.as_str().expect("a parameter name");
                    let value = parameters.get(name).cloned().or_else(|| {
                        template["Parameters"][name]["Default"]
                            .as_str()
                            .map(str::to_owned)
                    });
                    RuleValue::Text(value.unwrap_or_else(|| panic!("{name} is required")))
                }
                "Equals" => {
                    let [a, b] = operands().as_slice() else {
                        panic!("Fn::Equals takes two values")
                    };
                    RuleValue::Boolean(eval(a).text() == eval(b).text())
                }
                "Not" => RuleValue::Boolean(!eval(&operands()[0]).boolean()),
                "And" => RuleValue::Boolean(operands().iter().all(|c| eval(c).boolean())),
                "Or" => RuleValue::Boolean(operands().iter().any(|c| eval(c).boolean())),
                "Contains" => {
                    let [list, item] = operands().as_slice() else {
                        panic!("Fn::Contains takes a list and a value")
                    };
                    let RuleValue::List(list) = eval(list) else {
                        panic!("Fn::Contains takes a list first")
                    };
                    RuleValue::Boolean(list.contains(&eval(item).text()))
                }
                other => panic!("rule function {other} is not evaluated here"),
            }
        }
        other => panic!("{other:?} is not a rule expression"),
    }
}
