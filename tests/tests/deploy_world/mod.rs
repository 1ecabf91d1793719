//! What the traffic and rollback tests share: a local stack, the two functions wired to it, and
//! in the int account (222222222222, through the deploy role) a Lambda function with two
//! published versions and a `live` alias, an ALB whose listener forwards to a blue and a green
//! target group, and CloudWatch alarms set with `SetAlarmState`.
//!
//! What moto (5.2, as pinned) does here, observed:
//! - Lambda without Docker: `CreateFunction` with an inline zip works (moto never runs the code);
//!   the function's role must exist in IAM in the same account, so the role and the function
//!   come from one CloudFormation stack. `PublishVersion` only publishes when the code or
//!   configuration changed (as AWS), so version 2 follows a configuration update.
//!   `UpdateAlias` keeps `RoutingConfig` as sent; an empty `AdditionalVersionWeights` reads back
//!   as no weights. The alias's `RevisionId` never changes in moto (AWS changes it on every
//!   update), so the tests count moves in the deployment record, not with it.
//! - ELBv2: `ModifyListener` with a weighted `ForwardConfig` round-trips through
//!   `DescribeListeners`.
//! - CloudWatch: `SetAlarmState` works per account (the assumed role's account). `DescribeAlarms`
//!   ignores its `StateValue` filter when alarm names are given (it answers alarms in `OK` too),
//!   so `firing_alarms` filters the state itself.
//! - moto's `GET /moto-api/data.json` answers HTTP 500 as soon as a Lambda function exists
//!   without Docker (`LambdaFunction.docker_client` raises `DockerException` while the dump reads
//!   every attribute); the local outbox reads the patch's `/moto-api/shipgate/ses-messages`
//!   instead.

#![allow(dead_code)]

use anyhow::{Context, Result};
use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue, Statistic};
use serde_json::{Value, json};
use shipgate::config::Env;
use shipgate::job::Job;
use shipgate::store::{Deployment, StageTargets, Store};
use shipgate_local::accounts;
use shipgate_local::stack::{Stack, StackOptions};
use shipgate_rollback::{RollbackConfig, RollbackFunction};
use shipgate_tests::jobs::JobEvent;
pub use shipgate_tests::support::now_ms;
use shipgate_tests::support::{alias_routing, in_account, start_stack, store, table};
use shipgate_traffic::{TrafficConfig, TrafficFunction};

pub const TEAM: &str = "team-int@example.com";
pub const MINUTE: i64 = 60_000;

/// The stack the traffic and rollback tests need: no registries, no S3 delivery, and only the
/// tooling account's alarms watched (the tests invoke the traffic and rollback functions
/// themselves, to decide who sees an alarm).
pub fn configure(options: &mut StackOptions) {
    options.registries = false;
    options.deliver_s3_events = false;
    options.environment_alarms = false;
}

/// The functions' environment, as the template sets it for them.
pub fn function_env(stack: &Stack) -> Result<Env> {
    let table = table(stack)?;
    Ok(Env::from_pairs([
        ("SHIPGATE_TABLE", table.as_str()),
        ("SHIPGATE_MAIL_FROM", "shipgate@shipgate.local"),
        ("SHIPGATE_TEAM_EMAIL_INT", TEAM),
    ]))
}

/// The stack a world runs on: started for it alone, or shared with the binary's other tests.
pub enum WorldStack {
    Own(Box<Stack>),
    Shared(&'static Stack),
}

impl std::ops::Deref for WorldStack {
    type Target = Stack;

    fn deref(&self) -> &Stack {
        match self {
            Self::Own(stack) => stack,
            Self::Shared(stack) => stack,
        }
    }
}

pub struct World {
    pub stack: WorldStack,
    pub traffic: TrafficFunction,
    pub rollback: RollbackFunction,
    pub store: Store,
    pub lambda: aws_sdk_lambda::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub function: String,
    pub listener: String,
    pub blue: String,
    pub green: String,
    /// The release the world's deployments are of (its own, on a shared stack).
    pub release_id: String,
    /// The suffix of the world's own names (app stack, function, load balancer, alarms).
    suffix: String,
}

impl World {
    /// A world on a stack of its own, stopped with [`World::stop`].
    pub async fn start(name: &str) -> Result<Self> {
        Self::build(WorldStack::Own(Box::new(
            start_stack(name, configure).await?,
        )))
        .await
    }

    /// A world on `stack`, shared with other tests: its app, release and alarms are its own.
    pub async fn on(stack: &'static Stack) -> Result<Self> {
        Self::build(WorldStack::Shared(stack)).await
    }

    async fn build(stack: WorldStack) -> Result<Self> {
        let env = function_env(&stack)?;
        let traffic = TrafficFunction::new(TrafficConfig::from_env(&env)?, &stack.sdk);
        let rollback = RollbackFunction::new(RollbackConfig::from_env(&env)?, &stack.sdk);
        let int = in_account(&stack, accounts::INT).await;
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let cf = aws_sdk_cloudformation::Client::new(&int);
        let outputs = app_stack(&cf, &suffix).await?;
        let lambda = aws_sdk_lambda::Client::new(&int);
        let function = outputs["Function"].clone();
        publish_two_versions(&lambda, &function).await?;
        Ok(Self {
            store: store(&stack)?,
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&int),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&int),
            lambda,
            function,
            listener: outputs["Listener"].clone(),
            blue: outputs["Blue"].clone(),
            green: outputs["Green"].clone(),
            release_id: format!("rel-orders-{suffix}"),
            traffic,
            rollback,
            suffix,
            stack,
        })
    }

    /// Stops the world's own stack (a shared one serves the other tests on).
    pub async fn stop(self) {
        if let WorldStack::Own(stack) = self.stack {
            stack.stop().await;
        }
    }

    /// A name of the world's own: `<what>-<suffix>` (an alarm, …).
    pub fn named(&self, what: &str) -> String {
        format!("{what}-{}", self.suffix)
    }

    /// A job of the traffic action (a new job id each time, as CodePipeline's continuations).
    pub fn job(&self, parameters: &Value) -> Result<Job> {
        JobEvent::new("TrafficFunction", parameters.clone()).job()
    }

    /// The stage's targets as the deploy action records them for `execution` of the world's
    /// release: the function's alias `live` to version 2, and the listener between blue and
    /// green (no test listener, no ECS service), watching `alarms`.
    pub fn stage_targets(&self, execution: &str, alarms: &[&str]) -> StageTargets {
        StageTargets {
            deployment_id: self.deployment_id(execution),
            release_id: self.release_id.clone(),
            environment: "int".into(),
            execution_id: execution.into(),
            alarms: alarms.iter().map(|a| (*a).to_owned()).collect(),
            prod_listener: Some(self.listener.clone()),
            test_listener: None,
            blue_target_group: Some(self.blue.clone()),
            green_target_group: Some(self.green.clone()),
            service: None,
            lambda_function: Some(self.function.clone()),
            lambda_alias: Some("live".into()),
            lambda_version: Some("2".into()),
            recorded_at_ms: now_ms(),
        }
    }

    /// Records `targets` in the table, as the deploy action does when the stacks settle.
    pub async fn record_targets(&self, targets: &StageTargets) -> Result<()> {
        self.store.put_stage_targets(targets).await?;
        Ok(())
    }

    /// The traffic action's parameters for the function's alias `live`, to version 2, the
    /// stage's targets recorded first ([`World::stage_targets`]).
    pub async fn lambda_parameters(
        &self,
        execution: &str,
        plan: &str,
        alarms: &[&str],
    ) -> Result<Value> {
        self.recorded_parameters(execution, plan, alarms, "lambda_alias")
            .await
    }

    /// The traffic action's parameters for the listener, blue to green, the stage's targets
    /// recorded first ([`World::stage_targets`]).
    pub async fn alb_parameters(
        &self,
        execution: &str,
        plan: &str,
        alarms: &[&str],
    ) -> Result<Value> {
        self.recorded_parameters(execution, plan, alarms, "alb_listener")
            .await
    }

    async fn recorded_parameters(
        &self,
        execution: &str,
        plan: &str,
        alarms: &[&str],
        kind: &str,
    ) -> Result<Value> {
        self.record_targets(&self.stage_targets(execution, alarms))
            .await?;
        Ok(self.parameters(execution, plan, kind))
    }

    /// The traffic action's parameters, as the pipeline writes them: the stage, the plan and
    /// the kind of target (`lambda_alias`, `alb_listener`).
    pub fn parameters(&self, execution: &str, plan: &str, kind: &str) -> Value {
        json!({
            "environment": "int",
            "roleArn": accounts::deploy_role_arn(accounts::INT),
            "releaseId": self.release_id,
            "executionId": execution,
            "plan": plan,
            "target": kind,
        })
    }

    pub fn deployment_id(&self, execution: &str) -> String {
        shipgate::deploy::deployment_id(&self.release_id, "int", execution)
    }

    pub async fn deployment(&self, execution: &str) -> Result<Deployment> {
        self.store
            .get_deployment(&self.deployment_id(execution))
            .await?
            .context("the deployment record")
    }

    /// The alias: (version, additional version and weight).
    pub async fn alias(&self) -> Result<(String, Option<(String, f64)>)> {
        alias_routing(&self.lambda, &self.function, "live").await
    }

    /// The share on version 2, as the alias says.
    pub async fn alias_percent(&self) -> Result<u8> {
        let (version, extra) = self.alias().await?;
        Ok(match (version.as_str(), extra) {
            ("2", None) => 100,
            ("1", None) => 0,
            ("1", Some((v, w))) if v == "2" => (w * 100.0).round() as u8,
            other => anyhow::bail!("unexpected alias {other:?}"),
        })
    }

    /// Points the alias back at version 1, no routing (between two deployments).
    pub async fn reset_alias(&self) -> Result<()> {
        shipgate::aws::lambda::shift_alias(&self.lambda, &self.function, "live", "1", "2", 0)
            .await?;
        Ok(())
    }

    /// (blue weight, green weight) of the listener.
    pub async fn listener_weights(&self) -> Result<(i32, i32)> {
        let weights = shipgate::aws::elbv2::listener_weights(&self.elb, &self.listener).await?;
        let of = |arn: &str| {
            weights
                .iter()
                .filter(|(a, _)| a == arn)
                .map(|(_, w)| *w)
                .sum::<i32>()
        };
        Ok((of(&self.blue), of(&self.green)))
    }

    pub async fn put_alarm(&self, name: &str) -> Result<()> {
        self.cloudwatch
            .put_metric_alarm()
            .alarm_name(name)
            .alarm_description("5xx on the new version")
            .namespace("AWS/Lambda")
            .metric_name("Errors")
            .statistic(Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(1.0)
            .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
            .send()
            .await
            .context("PutMetricAlarm")?;
        Ok(())
    }

    pub async fn set_alarm(&self, name: &str, state: StateValue, reason: &str) -> Result<()> {
        self.cloudwatch
            .set_alarm_state()
            .alarm_name(name)
            .state_value(state)
            .state_reason(reason)
            .send()
            .await
            .context("SetAlarmState")?;
        Ok(())
    }
}

/// CloudWatch's state timestamp format: `2019-10-02T17:04:40.989+0000`.
pub fn cloudwatch_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    t.format(&format).unwrap_or_default()
}

/// The ARN of the int account's alarm `alarm`.
fn alarm_arn(alarm: &str) -> String {
    format!(
        "arn:aws:cloudwatch:{}:{}:alarm:{alarm}",
        accounts::REGION,
        accounts::INT
    )
}

/// Writes an alarm's state object (`value`, `reason`, `timestamp`), as both events carry it.
fn write_state(state_object: &mut Value, state: &str, reason: &str, at_ms: i64) {
    state_object["value"] = json!(state);
    state_object["reason"] = json!(reason);
    state_object["timestamp"] = json!(cloudwatch_time(at_ms));
}

/// `fixture`, an event of AWS's, as one from the int account in the local region
/// (`account_field` names its account).
fn int_event(fixture: &str, account_field: &str) -> Value {
    let mut event: Value = serde_json::from_str(fixture).expect("AWS's event is JSON");
    event[account_field] = json!(accounts::INT);
    event["region"] = json!(accounts::REGION);
    event
}

/// The EventBridge "CloudWatch Alarm State Change" event of AWS's documentation, for `alarm` in
/// the int account entering `state` at `at_ms`.
pub fn eventbridge_event(alarm: &str, state: &str, reason: &str, at_ms: i64) -> Value {
    let mut event = int_event(
        include_str!(
            "../../../functions/rollback/tests/fixtures/eventbridge-alarm-state-change.json"
        ),
        "account",
    );
    event["resources"] = json!([alarm_arn(alarm)]);
    event["detail"]["alarmName"] = json!(alarm);
    write_state(&mut event["detail"]["state"], state, reason, at_ms);
    event["detail"]["previousState"]["value"] =
        json!(if state == "ALARM" { "OK" } else { "ALARM" });
    event
}

/// The alarm's Lambda-action payload (aws_lambda_events' fixture), for `alarm` in the int account.
pub fn lambda_action_payload(alarm: &str, state: &str, reason: &str, at_ms: i64) -> Value {
    let mut event = int_event(
        include_str!(
            "../../../functions/rollback/tests/fixtures/example-cloudwatch-alarm-metric.json"
        ),
        "accountId",
    );
    event["alarmArn"] = json!(alarm_arn(alarm));
    event["time"] = json!(cloudwatch_time(at_ms));
    event["alarmData"]["alarmName"] = json!(alarm);
    write_state(&mut event["alarmData"]["state"], state, reason, at_ms);
    event
}

/// The app in the int account: the function (and its role), the VPC, the ALB, its listener and
/// the two target groups, from one CloudFormation stack in moto, each named with `suffix`.
async fn app_stack(
    cf: &aws_sdk_cloudformation::Client,
    suffix: &str,
) -> Result<std::collections::HashMap<String, String>> {
    let template = json!({
        "Resources": {
            "Role": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": format!("orders-fn-{suffix}"),
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
            }},
            "Function": {"Type": "AWS::Lambda::Function", "Properties": {
                "FunctionName": format!("orders-{suffix}"),
                "Runtime": "python3.12",
                "Handler": "index.handler",
                "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                "Code": {"ZipFile": "def handler(event, context):\n    return 'ok'\n"}
            }},
            "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.1.0.0/16"}},
            "SubnetA": {"Type": "AWS::EC2::Subnet", "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.1.1.0/24", "AvailabilityZone": "eu-west-1a"}},
            "SubnetB": {"Type": "AWS::EC2::Subnet", "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.1.2.0/24", "AvailabilityZone": "eu-west-1b"}},
            "Alb": {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer", "Properties": {
                "Name": format!("orders-{suffix}"), "Subnets": [{"Ref": "SubnetA"}, {"Ref": "SubnetB"}]
            }},
            "Blue": {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {
                "Name": format!("orders-blue-{suffix}"), "Port": 80, "Protocol": "HTTP", "TargetType": "ip", "VpcId": {"Ref": "Vpc"}
            }},
            "Green": {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {
                "Name": format!("orders-green-{suffix}"), "Port": 80, "Protocol": "HTTP", "TargetType": "ip", "VpcId": {"Ref": "Vpc"}
            }},
            "Listener": {"Type": "AWS::ElasticLoadBalancingV2::Listener", "Properties": {
                "LoadBalancerArn": {"Ref": "Alb"}, "Port": 80, "Protocol": "HTTP",
                "DefaultActions": [{"Type": "forward", "TargetGroupArn": {"Ref": "Blue"}}]
            }}
        },
        "Outputs": {
            "Function": {"Value": {"Ref": "Function"}},
            "Listener": {"Value": {"Ref": "Listener"}},
            "Blue": {"Value": {"Ref": "Blue"}},
            "Green": {"Value": {"Ref": "Green"}}
        }
    });
    let name = format!("orders-int-app-{suffix}");
    cf.create_stack()
        .stack_name(&name)
        .template_body(template.to_string())
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
        .send()
        .await
        .context("creating the app stack")?;
    let out = cf.describe_stacks().stack_name(&name).send().await?;
    let stack = out.stacks().first().context("the app stack")?;
    let outputs: std::collections::HashMap<String, String> = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect();
    for key in ["Function", "Listener", "Blue", "Green"] {
        anyhow::ensure!(
            outputs.contains_key(key),
            "the app stack has no {key} output: {:?} ({:?})",
            outputs,
            stack.stack_status_reason()
        );
    }
    Ok(outputs)
}

/// Versions 1 and 2 of the function, and `live` on version 1.
async fn publish_two_versions(lambda: &aws_sdk_lambda::Client, function: &str) -> Result<()> {
    let publish = |n: u8| async move {
        let out = lambda
            .publish_version()
            .function_name(function)
            .send()
            .await
            .with_context(|| format!("PublishVersion {n}"))?;
        anyhow::Ok(out.version().map(str::to_owned))
    };
    let v1 = publish(1).await?;
    lambda
        .update_function_configuration()
        .function_name(function)
        .description("version 2")
        .send()
        .await
        .context("UpdateFunctionConfiguration")?;
    let v2 = publish(2).await?;
    anyhow::ensure!(
        v1.as_deref() == Some("1") && v2.as_deref() == Some("2"),
        "moto published {v1:?} and {v2:?}"
    );
    lambda
        .create_alias()
        .function_name(function)
        .name("live")
        .function_version("1")
        .send()
        .await
        .context("CreateAlias")?;
    Ok(())
}
