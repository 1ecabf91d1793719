//! IAM conformance: every AWS call a shipgate function makes, as `local/iam/calls.yaml` lists it
//! (the function, whose credentials, the IAM action AWS authorizes and the resource ARN it is
//! checked against, from the Service Authorization Reference), evaluated against the policies
//! `template.yaml` and `environment.yaml` declare, the way AWS evaluates them
//! (`shipgate_local::iam`). moto checks no IAM: without this, a call its role does not allow
//! works on the local stack and fails with AccessDenied in AWS.
//!
//! A failure names the function, the call, where the code makes it, and why AWS would refuse
//! it. Every Allow statement of the roles these calls use is reported when no listed call uses
//! it. `make iam-check` runs this alone.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_yaml::Value;
use shipgate_local::accounts;
use shipgate_local::codepipeline::{Resolver, TemplateEvaluator};
use shipgate_local::iam::{Decision, Request, Roles, TemplateRoles};
use shipgate_local::provision;

const TOOLING_STACK: &str = "shipgate";
const ENVIRONMENT_STACK: &str = "shipgate-env";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    function: String,
    #[serde(rename = "as")]
    principal: Principal,
    action: String,
    resource: String,
    #[serde(default)]
    context: BTreeMap<String, String>,
    source: String,
    #[serde(default)]
    cross_account: bool,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Principal {
    /// The function's own execution role (template.yaml).
    Function,
    /// environment.yaml's DeployRole in the environment account, assumed by the function.
    Environment,
    /// environment.yaml's ChecksRole (`shipgate-checks`), assumed by the checks function.
    #[serde(rename = "checks-role")]
    ChecksRole,
}

fn calls() -> Vec<Call> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/iam/calls.yaml"))
        .expect("local/iam/calls.yaml");
    serde_yaml::from_str(&text).expect("local/iam/calls.yaml is a list of calls")
}

/// A template, its evaluator and what its references resolve to in `account`.
struct Stack {
    text: String,
    evaluator: TemplateEvaluator,
    resolver: Resolver,
}

impl Stack {
    fn new(file: &str, account: &str, parameters: &[(&str, String)]) -> Self {
        let text = std::fs::read_to_string(format!("{}/../{file}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let doc: Value = serde_yaml::from_str(&text).expect("YAML");
        let evaluator = TemplateEvaluator::new(&text).expect("the template reads");
        let parameters = parameters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let mut resolver = provision::resolver(&doc, &evaluator, account, &parameters, "")
            .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        // Attributes only the created resource knows, in the form AWS gives them.
        resolver.attributes.insert(
            "LoadBalancer.LoadBalancerFullName".into(),
            "app/shipgate-LoadBalancer/50dc6c495c0c9188".into(),
        );
        resolver.stack_name = if file == "template.yaml" {
            TOOLING_STACK.into()
        } else {
            ENVIRONMENT_STACK.into()
        };
        Self {
            text,
            evaluator,
            resolver,
        }
    }

    /// `text` with `${...}` substituted as `!Sub` would in this stack, `${Tooling}` and
    /// `${Env}` being the tooling and environment accounts.
    fn sub(&self, text: &str) -> String {
        let resolver = self
            .resolver
            .clone()
            .with_ref("Tooling", accounts::TOOLING)
            .with_ref("Env", accounts::INT);
        let node = Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
            tag: serde_yaml::value::Tag::new("Sub"),
            value: Value::String(text.to_owned()),
        }));
        self.evaluator
            .string(&resolver, &node, text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .unwrap_or_default()
    }
}

fn tooling() -> Stack {
    Stack::new(
        "template.yaml",
        accounts::TOOLING,
        &[
            ("IntDeployRoleArn", accounts::deploy_role_arn(accounts::INT)),
            ("StgDeployRoleArn", accounts::deploy_role_arn(accounts::STG)),
            (
                "ProdDeployRoleArn",
                accounts::deploy_role_arn(accounts::PROD),
            ),
            ("MailFrom", "shipgate@example.com".to_owned()),
            ("IntApprovers", "int-approver@example.com".to_owned()),
            ("StgApprovers", "stg-approver@example.com".to_owned()),
            ("ProdApprovers", "prod-approver@example.com".to_owned()),
        ],
    )
}

/// environment.yaml as one environment account deploys it.
fn environment_in(environment: &str, account: &str) -> Stack {
    Stack::new(
        "environment.yaml",
        account,
        &[
            ("Environment", environment.to_owned()),
            ("ToolingAccountId", accounts::TOOLING.to_owned()),
            ("ProbeCodeBucket", "shipgate-code-bucket".to_owned()),
        ],
    )
}

/// int's: the calls list the environment actions once, as int's DeployRole makes them.
fn environment() -> Stack {
    environment_in("int", accounts::INT)
}

/// The roles of the tooling stack and of every environment's stack (`shipgate-env` in int,
/// read as `shipgate-env:<id>`; the others as `shipgate-env-<environment>:<id>`), so that an
/// AssumeRole into any environment meets that environment's trust policy.
fn roles(tooling: &Stack, environment: &Stack) -> Roles {
    let others: Vec<(Stack, String)> = accounts::ENVIRONMENTS
        .iter()
        .filter(|(_, account)| *account != accounts::INT)
        .map(|(name, account)| {
            (
                environment_in(name, account),
                format!("{ENVIRONMENT_STACK}-{name}"),
            )
        })
        .collect();
    let mut roles = Roles::default();
    let stacks = [
        (tooling, TOOLING_STACK.to_owned()),
        (environment, ENVIRONMENT_STACK.to_owned()),
    ]
    .into_iter()
    .chain(others.iter().map(|(stack, name)| (stack, name.clone())));
    for (stack, name) in stacks {
        let name = name.as_str();
        roles
            .read(&TemplateRoles {
                template: &stack.text,
                resolver: &stack.resolver,
                stack_name: name,
            })
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    roles
}

/// The role key (`<stack>:<logical id>`) a call is made with, and the stack its placeholders
/// resolve in.
fn principal_of<'a>(
    call: &Call,
    tooling: &'a Stack,
    environment: &'a Stack,
) -> (String, &'a Stack) {
    match call.principal {
        Principal::Function => (format!("{TOOLING_STACK}:{}", call.function), tooling),
        Principal::Environment => (format!("{ENVIRONMENT_STACK}:DeployRole"), environment),
        Principal::ChecksRole => (format!("{ENVIRONMENT_STACK}:ChecksRole"), environment),
    }
}

/// What the checks found: the calls AWS would refuse (one line each, naming the function, the
/// role, the action, the resource, where the code makes it and why), and the statements that
/// allowed the others.
struct Conformance {
    refused: Vec<String>,
    used: BTreeSet<String>,
}

fn conformance(roles: &Roles, calls: &[Call], tooling: &Stack, environment: &Stack) -> Conformance {
    let mut found = Conformance {
        refused: Vec::new(),
        used: BTreeSet::new(),
    };
    for call in calls {
        let (key, stack) = principal_of(call, tooling, environment);
        let role = roles
            .roles
            .get(&key)
            .unwrap_or_else(|| panic!("{}: no role {key} in the templates", call.function));
        let resource = stack.sub(&call.resource);
        let context = call
            .context
            .iter()
            .map(|(k, v)| (k.clone(), vec![stack.sub(v)]))
            .collect();
        let request = Request {
            principal: &role.arn,
            action: &call.action,
            resource: &resource,
            context,
        };
        if call.cross_account {
            assert_ne!(
                roles.resource_account(&resource),
                shipgate_local::iam::account_of(&role.arn),
                "{}: {} on {resource} is marked cross_account but is not",
                call.function,
                call.action
            );
        }
        match roles.authorize(role, &request) {
            Decision::Allowed(by) => found.used.extend(by),
            refusal => found.refused.push(format!(
                "{} ({}) {} on {resource} [{}]: {refusal}{}",
                call.function,
                match call.principal {
                    Principal::Function => "its role",
                    Principal::Environment => "environment DeployRole",
                    Principal::ChecksRole => "environment ChecksRole",
                },
                call.action,
                call.source,
                call.note
                    .as_deref()
                    .map(|n| format!(" (note: {n})"))
                    .unwrap_or_default()
            )),
        }
    }
    found
}

#[test]
fn every_call_of_every_function_is_allowed_as_aws_would_decide_it() {
    let (tooling, environment) = (tooling(), environment());
    let roles = roles(&tooling, &environment);
    let calls = calls();
    assert!(!calls.is_empty());
    let found = conformance(&roles, &calls, &tooling, &environment);
    eprintln!(
        "{} calls, {} refused, allowed by {} statements",
        calls.len(),
        found.refused.len(),
        found.used.len()
    );
    assert!(
        found.refused.is_empty(),
        "{} of {} calls would be refused by AWS:\n  {}",
        found.refused.len(),
        calls.len(),
        found.refused.join("\n  ")
    );
}

/// Every action a role the functions use grants is needed by some call: taking any one out
/// of its statement makes a listed call refused, and the refusal names the function and the
/// action. An action no call needs is reported by its statement.
#[test]
fn taking_any_granted_action_away_refuses_a_call_that_names_it() {
    let (tooling, environment) = (tooling(), environment());
    let roles = roles(&tooling, &environment);
    let calls = calls();
    let keys: BTreeSet<String> = calls
        .iter()
        .map(|c| principal_of(c, &tooling, &environment).0)
        .collect();
    let mut unneeded = Vec::new();
    let mut mutations = 0;
    for key in &keys {
        for (statement, action) in roles.allowed_actions(key) {
            mutations += 1;
            let without = roles.without_action(key, &statement, &action);
            let found = conformance(&without, &calls, &tooling, &environment);
            let named = found.refused.iter().any(|line| {
                line.to_ascii_lowercase()
                    .contains(&format!(") {}", action.to_ascii_lowercase()).replace('*', ""))
                    || action.contains('*')
            });
            if found.refused.is_empty() || !named {
                unneeded.push(format!("{statement}: {action}"));
            }
        }
    }
    eprintln!("{mutations} granted actions taken away one at a time");
    assert!(
        unneeded.is_empty(),
        "granted, but no listed call needs it ({}):\n  {}",
        unneeded.len(),
        unneeded.join("\n  ")
    );
}

#[test]
fn every_function_of_the_template_has_its_calls_listed() {
    let (tooling, environment) = (tooling(), environment());
    let roles = roles(&tooling, &environment);
    let listed: BTreeSet<String> = calls().into_iter().map(|c| c.function).collect();
    let functions: BTreeSet<String> = roles
        .roles
        .iter()
        .filter(|(_, role)| role.of_function)
        .filter_map(|(k, _)| k.strip_prefix(&format!("{TOOLING_STACK}:")))
        .map(str::to_owned)
        .collect();
    let missing: Vec<_> = functions.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "functions with no calls listed: {missing:?}"
    );
}

/// CloudFormation assumes the stack role to execute an application's change set; IAM sets
/// `aws:SourceAccount` only when the calling service supplies it, so the trust must hold with
/// the key absent, and must refuse another account's stacks when it is present.
#[test]
fn cloudformation_may_assume_the_stack_role_with_or_without_a_source_account() {
    let (tooling, environment) = (tooling(), environment());
    let roles = roles(&tooling, &environment);
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
