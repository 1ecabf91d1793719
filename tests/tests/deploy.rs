//! The deploy action against the local stack: the approved change set of a release is executed
//! in the environment's account (int, 222222222222, through the deploy role), the action waits
//! for the stack across invocations (continuation tokens) and passes the stack's `Shipgate*`
//! outputs on as output variables; a stack whose execution fails fails the job with
//! CloudFormation's reason; a second run executes nothing again.
//!
//! What moto (5.2.5, as pinned) does, observed here and read in
//! `moto/cloudformation/models.py` (`execute_change_set`, `Stack.__init__`, `ChangeSet.apply`):
//! - `ExecuteChangeSet` is synchronous: the stack is `CREATE_COMPLETE` / `UPDATE_COMPLETE` when
//!   the call returns, and the change set `EXECUTE_COMPLETE`. It would execute the same change
//!   set again if asked (AWS refuses: `InvalidChangeSetStatus`).
//! - A stack created through a change set has no outputs, ever: moto builds the stack's output
//!   map from the empty template the `CREATE` change set starts with and does not rebuild it on
//!   execution (an `UPDATE` keeps the outputs of the template the stack was created with).
//! - A resource moto cannot create fails `ExecuteChangeSet` itself with that resource's error
//!   (an ECS service in a cluster that does not exist: `ClusterNotFoundException` "Cluster not
//!   found."), leaves the stack in `REVIEW_IN_PROGRESS` with a `CREATE_IN_PROGRESS` event, the
//!   change set `AVAILABLE`, and `DescribeStackResources` failing with the same error. There is
//!   no rollback and no failed event ("TODO: handle execution errors and implement rollback").
//! - `DescribeStackEvents` lists only the stack's own events (`REVIEW_IN_PROGRESS`,
//!   `CREATE_IN_PROGRESS` "User Initiated", `CREATE_COMPLETE`), newest first, no resource events.
//!
//! [`CloudFormationStandIn`] forwards everything to moto and answers as CloudFormation
//! documents where moto does not: execution is asynchronous (the first `DescribeStacks` after
//! an `ExecuteChangeSet` says `*_IN_PROGRESS`, the change set `EXECUTE_IN_PROGRESS`), a stack
//! has its template's outputs once executed, and a resource error during execution is an
//! accepted `ExecuteChangeSet` followed by a rollback: `ROLLBACK_COMPLETE` (or
//! `UPDATE_ROLLBACK_COMPLETE`), the change set `EXECUTE_FAILED`, and the events AWS writes
//! (`CREATE_FAILED` of the resource with "Resource handler returned message: …").

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail, ensure};
use aws_sdk_cloudformation::Client as CloudFormation;
use serde_json::{Value, json};
use shipgate::aws::cloudformation::{
    Capability, ChangeSetRequest, ChangeSetType, TemplateSource, create_change_set,
};
use shipgate::changes::ChangeSummary;
use shipgate::config::Env;
use shipgate::job::{Continuation, Job, JobAction, Outcome};
use shipgate::store::{ChangeSetOutcome, StackChanges, StageTargets, Store};
use shipgate_deploy::{DeployConfig, DeployFunction};
use shipgate_local::accounts;
use shipgate_tests::jobs::{JobEvent, done, failure, run_to_end};
use shipgate_tests::moto_proxy::{MotoProxy, QueryRequest, between, escape, xml};
use shipgate_tests::releases::PipelineRelease;
use shipgate_tests::shared_stack::SharedStack;
use shipgate_tests::support::{store, table};

const ENVIRONMENT: &str = "int";

/// One stack for every test here; each test deploys stacks of its own names.
static STACK: SharedStack = SharedStack::new("deploy", |o| {
    o.registries = false;
    o.deliver_s3_events = false;
});

struct World {
    standin: CloudFormationStandIn,
    action: DeployFunction,
    store: Store,
    /// CloudFormation in the int account through the stand-in (what the change-set action
    /// would have used).
    int: CloudFormation,
    /// The int account's configuration, for looking at what the deployment created.
    int_sdk: aws_config::SdkConfig,
    /// The prefix of the test's stack and queue names (`orders` and a suffix of its own).
    app: String,
}

impl World {
    async fn start() -> Result<Self> {
        let stack = STACK.get().await?;
        let standin = CloudFormationStandIn::start(&stack.moto.endpoint()).await?;
        let mut endpoints = stack.endpoints.clone();
        endpoints.per_service.insert(
            "AWS_ENDPOINT_URL_CLOUDFORMATION".into(),
            standin.proxy.url.clone(),
        );
        let table = table(stack)?;
        let config =
            DeployConfig::from_env(&Env::from_pairs([("SHIPGATE_TABLE", table.as_str())]))?;
        let sdk = endpoints.sdk_config();
        let int_sdk =
            shipgate::aws::assume_role(&sdk, &accounts::deploy_role_arn(accounts::INT), "test")
                .await;
        Ok(Self {
            action: DeployFunction::new(config, &sdk),
            store: store(stack)?,
            int: CloudFormation::new(&int_sdk),
            int_sdk,
            standin,
            app: format!("orders{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
        })
    }

    /// The name `<app>-int-<what>` of one of the test's stacks or queues.
    fn named(&self, what: &str) -> String {
        format!("{}-int-{what}", self.app)
    }

    /// What the change-set action leaves for an approved release: a `CREATE` change set per
    /// stack in int, recorded with the release.
    async fn approved(&self, stacks: &[(&str, Value)]) -> Result<PipelineRelease> {
        let release = PipelineRelease::new();
        let name = shipgate_change_set::change_set_name(&release.release_id, &release.execution_id);
        for (stack_name, template) in stacks {
            let id = create_change_set(
                &self.int,
                &ChangeSetRequest {
                    stack_name: (*stack_name).to_owned(),
                    change_set_name: name.clone(),
                    template: TemplateSource::Body(template.to_string()),
                    parameters: BTreeMap::from([("Version".to_owned(), "1.0.0".to_owned())]),
                    change_set_type: ChangeSetType::Create,
                    capabilities: vec![Capability::Iam],
                    description: None,
                    role_arn: None,
                },
            )
            .await?;
            self.store
                .put_stack_changes(&StackChanges {
                    release_id: release.release_id.clone(),
                    environment: ENVIRONMENT.into(),
                    execution_id: release.execution_id.clone(),
                    template_path: format!("templates/{stack_name}.json"),
                    stack_name: (*stack_name).to_owned(),
                    account_id: accounts::INT.into(),
                    change_set_name: name.clone(),
                    change_set_id: Some(id),
                    creates_stack: true,
                    outcome: ChangeSetOutcome::Ready,
                    summary: ChangeSummary::default(),
                    created_at: "2026-11-26T10:00:00Z".into(),
                })
                .await?;
        }
        Ok(release)
    }

    /// The job CodePipeline sends for the int deploy action.
    fn job(&self, release: &PipelineRelease, continuation: Option<&str>) -> Result<Job> {
        JobEvent::new(
            "DeployFunction",
            json!({
                "environment": ENVIRONMENT,
                "roleArn": accounts::deploy_role_arn(accounts::INT),
                "releaseId": release.release_id,
                "executionId": release.execution_id,
            }),
        )
        .continuation(continuation)
        .job()
    }

    /// What the action recorded for the release's traffic actions, if it did.
    async fn stage_targets(&self, release: &PipelineRelease) -> Result<Option<StageTargets>> {
        let id = shipgate::deploy::deployment_id(
            &release.release_id,
            ENVIRONMENT,
            &release.execution_id,
        );
        Ok(self.store.get_stage_targets(&id).await?)
    }

    /// Runs the job as CodePipeline does: again with the token while the action continues.
    async fn run_to_end(&self, release: &PipelineRelease) -> Result<(Outcome, u32)> {
        run_to_end(5, |token| async move {
            Ok(self.action.run(&self.job(release, token.as_deref())?).await)
        })
        .await
    }
}

/// A stack with a queue named `queue` and a topic; literal, resource and parameter outputs.
fn service_template(queue: &str) -> Value {
    json!({
        "Parameters": {"Version": {"Type": "String"}},
        "Resources": {
            "Jobs": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": queue}},
            "Alerts": {"Type": "AWS::SNS::Topic"}
        },
        "Outputs": {
            "ShipgateTestEndpoint": {"Value": "http://orders-int.example:9000"},
            "ShipgateJobsQueue": {"Value": {"Ref": "Jobs"}},
            "ShipgateVersion": {"Value": {"Ref": "Version"}},
            "AlertsTopic": {"Value": {"Ref": "Alerts"}}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_change_set_is_executed_once_and_its_outputs_passed_on() -> Result<()> {
    let world = World::start().await?;
    let (service, queue) = (world.named("service"), world.named("jobs"));
    let deployment = world
        .approved(&[(&service, service_template(&queue))])
        .await?;

    // First invocation: executed, the stack still creating: a continuation, not a sleep.
    let first = world.action.run(&world.job(&deployment, None)?).await;
    let Outcome::Continue { state } = &first else {
        bail!("expected a continuation: {first:?}");
    };
    let progress: Continuation = serde_json::from_value(state.clone())?;
    assert_eq!(progress.invocation, 1);
    assert_eq!(world.standin.executions(), 1);
    // Nothing for the traffic actions while the stacks are not settled.
    assert!(world.stage_targets(&deployment).await?.is_none());

    // CodePipeline invokes it again with the token: the stack is done.
    let second = world
        .action
        .run(&world.job(&deployment, Some(&state.to_string()))?)
        .await;
    let (summary, variables) = done(&second)?;
    assert_eq!(summary, format!("int: {service} CREATE_COMPLETE"));
    assert_eq!(
        variables["ShipgateTestEndpoint"],
        "http://orders-int.example:9000"
    );
    assert_eq!(variables["ShipgateVersion"], "1.0.0");
    assert!(
        variables["ShipgateJobsQueue"].contains("222222222222"),
        "{variables:?}"
    );
    assert!(
        !variables.contains_key("AlertsTopic"),
        "only Shipgate* outputs"
    );
    assert_eq!(variables["Stacks"], service);
    assert_eq!(variables["ExecutedStacks"], "1");
    // Settled: the traffic actions' record, here of a release with nothing to move (no
    // listener, no Lambda function: its LambdaTraffic action succeeds with nothing to shift).
    let targets = world
        .stage_targets(&deployment)
        .await?
        .context("the stage's targets, recorded once the stacks settled")?;
    assert_eq!(
        (targets.release_id.as_str(), targets.execution_id.as_str()),
        (
            deployment.release_id.as_str(),
            deployment.execution_id.as_str()
        )
    );
    assert!(targets.alarms.is_empty());
    assert!(targets.prod_listener.is_none() && targets.lambda_function.is_none());
    assert_eq!(
        world.standin.executions(),
        1,
        "the continuation executes nothing"
    );

    // The resources are in the int account, not in the tooling account.
    let int_sqs = aws_sdk_sqs::Client::new(&world.int_sdk);
    let url = int_sqs.get_queue_url().queue_name(&queue).send().await?;
    assert!(url.queue_url().unwrap_or_default().contains("222222222222"));
    let tooling_sqs = aws_sdk_sqs::Client::new(&STACK.get().await?.sdk);
    assert!(
        tooling_sqs
            .get_queue_url()
            .queue_name(&queue)
            .send()
            .await
            .is_err(),
        "nothing in the tooling account"
    );

    // A retried stage (a new job, no token): the change set is executed already, so nothing is
    // executed again and the same variables come out.
    let (again, invocations) = world.run_to_end(&deployment).await?;
    assert_eq!(invocations, 1);
    assert_eq!(done(&again)?.1, variables);
    assert_eq!(world.standin.executions(), 1, "executed once in all");

    // A release with no recorded change sets in int is not deployed.
    let unknown = PipelineRelease {
        release_id: "rel-00000000000000000000".into(),
        ..deployment
    };
    let outcome = world.action.run(&world.job(&unknown, None)?).await;
    let (message, _) = failure(&outcome)?;
    assert!(
        message.contains("has no change sets recorded for int"),
        "{message}"
    );

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_outputs_merge_and_conflicting_ones_fail_naming_both() -> Result<()> {
    let world = World::start().await?;
    let (network_stack, service) = (world.named("network"), world.named("service"));
    let network = json!({
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ShipgateProdListener": {"Value": "arn:aws:elasticloadbalancing:listener/prod"}}
    });
    let deployment = world
        .approved(&[
            (&network_stack, network),
            (&service, service_template(&world.named("a"))),
        ])
        .await?;
    let (outcome, _) = world.run_to_end(&deployment).await?;
    let (summary, variables) = done(&outcome)?;
    assert_eq!(
        summary,
        format!("int: {network_stack} CREATE_COMPLETE; {service} CREATE_COMPLETE")
    );
    assert_eq!(
        variables["ShipgateProdListener"],
        "arn:aws:elasticloadbalancing:listener/prod"
    );
    // One record of the stage for the traffic actions, from both stacks' outputs.
    let targets = world
        .stage_targets(&deployment)
        .await?
        .context("the stage's targets")?;
    assert_eq!(
        targets.prod_listener.as_deref(),
        Some("arn:aws:elasticloadbalancing:listener/prod")
    );
    assert_eq!(
        variables["ShipgateTestEndpoint"],
        "http://orders-int.example:9000"
    );
    assert_eq!(variables["ExecutedStacks"], "2");

    // Two stacks that both claim the test endpoint, with different values.
    let endpoint = |url: &str| {
        json!({
            "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {"ShipgateTestEndpoint": {"Value": url}}
        })
    };
    let (api, web) = (world.named("api"), world.named("web"));
    let conflicting = world
        .approved(&[
            (&api, endpoint("http://elsewhere.example:9000")),
            (&web, endpoint("http://orders-int.example:9000")),
        ])
        .await?;
    let (outcome, _) = world.run_to_end(&conflicting).await?;
    let (message, _) = failure(&outcome)?;
    assert!(
        message.starts_with(&format!(
            "int: stacks {api} and {web} both output ShipgateTestEndpoint with different values"
        )),
        "{message}"
    );

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_whose_execution_fails_fails_the_job_with_cloudformations_reason() -> Result<()> {
    let world = World::start().await?;
    // moto cannot create a service in a cluster int does not have (see the top of this file).
    let broken = json!({
        "Parameters": {"Version": {"Type": "String"}},
        "Resources": {
            "Service": {"Type": "AWS::ECS::Service", "Properties": {
                "Cluster": "no-such-cluster", "TaskDefinition": "orders:1", "DesiredCount": 1}}
        }
    });
    let broken_stack = world.named("broken");
    let deployment = world.approved(&[(&broken_stack, broken)]).await?;

    let (outcome, _) = world.run_to_end(&deployment).await?;

    let (message, _) = failure(&outcome)?;
    let message = message.to_owned();
    assert!(
        message.starts_with(&format!(
            "int (account 222222222222): stack {broken_stack} is ROLLBACK_COMPLETE: Service \
             (AWS::ECS::Service) CREATE_FAILED: Resource handler returned message: \"Cluster \
             not found.\""
        )),
        "{message}"
    );
    assert!(message.contains("must be deleted before it can be created again"));
    assert_eq!(world.standin.executions(), 1);

    // A retried stage reports the same failure and executes nothing again.
    let (again, _) = world.run_to_end(&deployment).await?;
    assert_eq!(again, Outcome::failed(message.clone()));
    assert_eq!(world.standin.executions(), 1);

    Ok(())
}

/// CloudFormation for the deploy action: moto behind a loopback proxy that answers as
/// CloudFormation documents where moto does not (see the top of this file). It keeps what it
/// needs from the requests that pass through it: each change set's template and parameters,
/// and each stack's execution.
struct CloudFormationStandIn {
    proxy: MotoProxy,
    state: Arc<StandInState>,
}

#[derive(Default)]
struct StandInState {
    /// `ExecuteChangeSet` requests moto executed.
    executions: AtomicUsize,
    /// Change set (name and id) → its stack's template and parameters.
    change_sets: Mutex<HashMap<String, ChangeSetFacts>>,
    /// Stack name → its execution.
    executed: Mutex<HashMap<String, Execution>>,
}

#[derive(Clone)]
struct ChangeSetFacts {
    template: Value,
    parameters: HashMap<String, String>,
}

#[derive(Clone)]
struct Execution {
    creates: bool,
    facts: ChangeSetFacts,
    /// `DescribeStacks` answers still to say `*_IN_PROGRESS`.
    in_progress: u32,
    /// The resource whose creation failed, with CloudFormation's words.
    failure: Option<(String, String, String)>,
}

impl StandInState {
    /// The template and parameters of the change set named (or identified) `name`.
    fn change_set(&self, name: &str) -> Result<Option<ChangeSetFacts>> {
        let sets = self
            .change_sets
            .lock()
            .map_err(|_| poisoned("change sets"))?;
        Ok(sets.get(name).cloned())
    }

    /// The execution of `stack`, if one went through the stand-in.
    fn execution(&self, stack: &str) -> Result<Option<Execution>> {
        let executed = self.executed.lock().map_err(|_| poisoned("executed"))?;
        Ok(executed.get(stack).cloned())
    }
}

fn poisoned(what: &str) -> anyhow::Error {
    anyhow::anyhow!("the stand-in's {what} lock is poisoned")
}

/// The resource type whose handler raises each error moto fails an execution with.
const FAILING_TYPES: [(&str, &str); 1] = [("ClusterNotFoundException", "AWS::ECS::Service")];

impl CloudFormationStandIn {
    async fn start(moto: &str) -> Result<Self> {
        let state = Arc::new(StandInState::default());
        let shared = state.clone();
        let proxy = MotoProxy::start(moto, move |request| {
            let state = shared.clone();
            async move { stand_in(&state, request).await }
        })
        .await?;
        Ok(Self { proxy, state })
    }

    fn executions(&self) -> usize {
        self.state.executions.load(Ordering::SeqCst)
    }
}

async fn stand_in(state: &StandInState, request: QueryRequest) -> Result<axum::response::Response> {
    let field = |name: &str| request.field(name);
    match field("Action").as_str() {
        "CreateChangeSet" => {
            let (status, reply) = request.forward().await?;
            if status == 200 {
                let template: Value = serde_json::from_str(&field("TemplateBody"))
                    .context("the stand-in reads JSON templates")?;
                let form = request.fields();
                let parameters = (1..)
                    .map_while(|i| {
                        let key = form.get(&format!("Parameters.member.{i}.ParameterKey"))?;
                        let value = form
                            .get(&format!("Parameters.member.{i}.ParameterValue"))
                            .cloned()
                            .unwrap_or_default();
                        Some((key.clone(), value))
                    })
                    .collect();
                let facts = ChangeSetFacts {
                    template,
                    parameters,
                };
                let mut sets = state
                    .change_sets
                    .lock()
                    .map_err(|_| poisoned("change sets"))?;
                if let Some(id) = between(&reply, "<Id>", "</Id>") {
                    sets.insert(id.to_owned(), facts.clone());
                }
                sets.insert(field("ChangeSetName"), facts);
            }
            Ok(xml(status, reply))
        }
        "ExecuteChangeSet" => {
            let stack = field("StackName");
            let facts = state
                .change_set(&field("ChangeSetName"))?
                .context("a change set created through the stand-in")?;
            let (_, described) = request
                .ask(format!(
                    "Action=DescribeStacks&Version=2010-05-15&StackName={stack}"
                ))
                .await?;
            let creates = described.contains("<StackStatus>REVIEW_IN_PROGRESS</StackStatus>");
            let (status, reply) = request.forward().await?;
            state.executions.fetch_add(1, Ordering::SeqCst);
            let failure = if status == 200 {
                None
            } else {
                let code = between(&reply, "<Code>", "</Code>").unwrap_or_default();
                let message = between(&reply, "<Message>", "</Message>").unwrap_or_default();
                let Some((_, kind)) = FAILING_TYPES.iter().find(|(c, _)| *c == code) else {
                    // A refusal of the request itself (unknown change set, …): as moto says.
                    return Ok(xml(status, reply));
                };
                let logical_id = resources_of(&facts.template, kind)
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                Some((
                    logical_id,
                    (*kind).to_owned(),
                    format!("Resource handler returned message: \"{message}\""),
                ))
            };
            state
                .executed
                .lock()
                .map_err(|_| poisoned("executed"))?
                .insert(
                    stack,
                    Execution {
                        creates,
                        facts,
                        in_progress: u32::from(failure.is_none()),
                        failure,
                    },
                );
            Ok(xml(
                200,
                format!(
                    r#"<ExecuteChangeSetResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><ExecuteChangeSetResult/><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></ExecuteChangeSetResponse>"#,
                    uuid::Uuid::new_v4()
                ),
            ))
        }
        "DescribeChangeSet" => {
            let (status, mut reply) = request.forward().await?;
            let stack = between(&reply, "<StackName>", "</StackName>").unwrap_or_default();
            if let Some(execution) = state.execution(stack)? {
                let now = if execution.failure.is_some() {
                    "EXECUTE_FAILED"
                } else if execution.in_progress > 0 {
                    "EXECUTE_IN_PROGRESS"
                } else {
                    "EXECUTE_COMPLETE"
                };
                for was in ["AVAILABLE", "EXECUTE_COMPLETE"] {
                    reply = reply.replace(
                        &format!("<ExecutionStatus>{was}</ExecutionStatus>"),
                        &format!("<ExecutionStatus>{now}</ExecutionStatus>"),
                    );
                }
            }
            Ok(xml(status, reply))
        }
        "DescribeStacks" => {
            let stack = field("StackName");
            let execution = {
                let mut executed = state.executed.lock().map_err(|_| poisoned("executed"))?;
                executed.get_mut(&stack).map(|e| {
                    let seen = e.clone();
                    e.in_progress = e.in_progress.saturating_sub(1);
                    seen
                })
            };
            let Some(execution) = execution else {
                return request.pass().await;
            };
            let (status, reply) = request.forward().await?;
            let verb = if execution.creates {
                "CREATE"
            } else {
                "UPDATE"
            };
            let (stack_status, reason, outputs) = match &execution.failure {
                Some((logical_id, _, _)) => (
                    if execution.creates {
                        "ROLLBACK_COMPLETE".to_owned()
                    } else {
                        "UPDATE_ROLLBACK_COMPLETE".to_owned()
                    },
                    format!(
                        "<StackStatusReason>The following resource(s) failed to {}: [{logical_id}]. Rollback requested by user.</StackStatusReason>",
                        verb.to_lowercase()
                    ),
                    String::new(),
                ),
                None if execution.in_progress > 0 => {
                    (format!("{verb}_IN_PROGRESS"), String::new(), String::new())
                }
                None => (
                    format!("{verb}_COMPLETE"),
                    String::new(),
                    outputs_xml(&request, &stack, &execution.facts).await?,
                ),
            };
            Ok(xml(
                status,
                rewrite_stack(&reply, &stack_status, &reason, &outputs),
            ))
        }
        "DescribeStackEvents" => {
            let stack = field("StackName");
            match state.execution(&stack)? {
                Some(Execution {
                    failure: Some((logical_id, kind, reason)),
                    ..
                }) => Ok(xml(200, failed_events(&stack, &logical_id, &kind, &reason))),
                _ => request.pass().await,
            }
        }
        _ => request.pass().await,
    }
}

/// The stack's outputs as CloudFormation computes them from its template: literal values,
/// `Ref` to a parameter (the change set's value) or to a resource (its physical id, from moto's
/// `DescribeStackResources`). Other intrinsic functions are not evaluated (the output is left
/// out).
async fn outputs_xml(
    request: &QueryRequest,
    stack: &str,
    facts: &ChangeSetFacts,
) -> Result<String> {
    let (_, resources) = request
        .ask(format!(
            "Action=DescribeStackResources&Version=2010-05-15&StackName={stack}"
        ))
        .await?;
    let physical: HashMap<String, String> = resources
        .split("<member>")
        .skip(1)
        .filter_map(|m| {
            Some((
                between(m, "<LogicalResourceId>", "</LogicalResourceId>")?.to_owned(),
                between(m, "<PhysicalResourceId>", "</PhysicalResourceId>")?.to_owned(),
            ))
        })
        .collect();
    let mut out = String::from("<Outputs>");
    if let Some(outputs) = facts.template["Outputs"].as_object() {
        for (key, output) in outputs {
            let value = match &output["Value"] {
                Value::String(text) => Some(text.clone()),
                Value::Object(f) => f.get("Ref").and_then(Value::as_str).and_then(|name| {
                    facts
                        .parameters
                        .get(name)
                        .or_else(|| physical.get(name))
                        .cloned()
                }),
                _ => None,
            };
            if let Some(value) = value {
                out.push_str(&format!(
                    "<member><OutputKey>{}</OutputKey><OutputValue>{}</OutputValue></member>",
                    escape(key),
                    // moto's XML is escaped already.
                    if physical.values().any(|p| *p == value) {
                        value
                    } else {
                        escape(&value)
                    }
                ));
            }
        }
    }
    out.push_str("</Outputs>");
    Ok(out)
}

/// moto's `DescribeStacks` answer with the stand-in's status, reason and outputs (moto's own
/// outputs, of the template the stack was created with, are replaced).
fn rewrite_stack(reply: &str, status: &str, reason: &str, outputs: &str) -> String {
    let mut text = reply.replace("<Outputs/>", "");
    if !outputs.is_empty() {
        while let Some(from) = text.find("<Outputs>") {
            let Some(to) = text[from..].find("</Outputs>") else {
                break;
            };
            text.replace_range(from..from + to + "</Outputs>".len(), "");
        }
    }
    let Some(start) = text.find("<StackStatus>") else {
        return text;
    };
    let Some(end) = text[start..]
        .find("</StackStatus>")
        .map(|e| start + e + "</StackStatus>".len())
    else {
        return text;
    };
    format!(
        "{}<StackStatus>{status}</StackStatus>{reason}{outputs}{}",
        &text[..start],
        &text[end..]
    )
}

/// The events CloudFormation writes for a creation that failed on `logical_id` and rolled
/// back, newest first.
fn failed_events(stack: &str, logical_id: &str, kind: &str, reason: &str) -> String {
    let stack_type = "AWS::CloudFormation::Stack";
    let events = [
        (stack, stack_type, "ROLLBACK_COMPLETE", String::new(), 6),
        (logical_id, kind, "DELETE_COMPLETE", String::new(), 5),
        (
            stack,
            stack_type,
            "ROLLBACK_IN_PROGRESS",
            format!(
                "The following resource(s) failed to create: [{logical_id}]. Rollback requested by user."
            ),
            4,
        ),
        (logical_id, kind, "CREATE_FAILED", reason.to_owned(), 3),
        (logical_id, kind, "CREATE_IN_PROGRESS", String::new(), 2),
        (
            stack,
            stack_type,
            "CREATE_IN_PROGRESS",
            "User Initiated".to_owned(),
            1,
        ),
        (
            stack,
            stack_type,
            "REVIEW_IN_PROGRESS",
            "User Initiated".to_owned(),
            0,
        ),
    ];
    let members: String = events
        .iter()
        .map(|(id, kind, status, reason, second)| {
            format!(
                "<member><StackId>arn:aws:cloudformation:eu-west-1:222222222222:stack/{stack}/1</StackId><EventId>{}</EventId><StackName>{stack}</StackName><LogicalResourceId>{}</LogicalResourceId><ResourceType>{kind}</ResourceType><Timestamp>2026-11-26T10:00:0{second}.000Z</Timestamp><ResourceStatus>{status}</ResourceStatus>{}</member>",
                uuid::Uuid::new_v4(),
                escape(id),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!("<ResourceStatusReason>{}</ResourceStatusReason>", escape(reason))
                }
            )
        })
        .collect();
    format!(
        r#"<DescribeStackEventsResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStackEventsResult><StackEvents>{members}</StackEvents></DescribeStackEventsResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></DescribeStackEventsResponse>"#,
        uuid::Uuid::new_v4()
    )
}

/// The logical ids of the template's resources of type `kind`.
fn resources_of(template: &Value, kind: &str) -> Vec<String> {
    template["Resources"]
        .as_object()
        .map(|resources| {
            resources
                .iter()
                .filter(|(_, r)| r["Type"] == kind)
                .map(|(id, _)| id.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_stand_ins_stack_rewrite_replaces_status_and_outputs() -> Result<()> {
    let moto = "<member><StackName>s</StackName><StackStatus>CREATE_COMPLETE</StackStatus><Outputs><member><OutputKey>Old</OutputKey></member></Outputs></member>";
    let out = rewrite_stack(
        moto,
        "CREATE_COMPLETE",
        "",
        "<Outputs><member><OutputKey>New</OutputKey></member></Outputs>",
    );
    ensure!(out.contains("New") && !out.contains("Old"), "{out}");
    Ok(())
}
