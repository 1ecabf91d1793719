//! The traffic action against the local stack, its clock in the test's hands (`run_at`): each
//! predefined plan walks CodeDeploy's documented weights on a Lambda alias and on an ALB
//! listener; an alarm in ALARM before a step rolls back and fails the job; two invocations at
//! once move traffic once; a move whose record was lost is reconciled, never undone.
//! ECS blue/green with task sets goes from the deploy action placing green to blue drained.
//! See `deploy_world` (and `deploy_world/ecs.rs`) for what moto does here.

use crate::deploy_world;
#[path = "deploy_world/ecs.rs"]
mod ecs_world;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, ensure};
use aws_sdk_cloudwatch::types::StateValue;
use deploy_world::{MINUTE, World, now_ms};
use serde_json::Value;
use shipgate::aws::codepipeline::JobFailureKind;
use shipgate::job::{JobAction, Outcome};
use shipgate::store::{DeploymentState, DrainStep, Lease, LeaseIntent};
use shipgate_tests::jobs::{failure, kind};
use shipgate_tests::moto_proxy::{MotoProxy, escape, xml};
use shipgate_tests::shared_stack::SharedStack;
use shipgate_traffic::{TrafficConfig, TrafficFunction};

/// One stack for the Lambda and listener tests; each world has its app, release and alarms.
static STACK: SharedStack = SharedStack::new("traffic", deploy_world::configure);

/// A world of the test's own on the shared stack.
async fn world() -> Result<World> {
    World::on(STACK.get().await?).await
}

/// Starts a deployment of the alias on `plan`, now: its first step taken, the job going on.
/// Its parameters, for the next invocations, and when it started (the tests' time from then on).
async fn started(world: &World, execution: &str, plan: &str) -> Result<(Value, i64)> {
    let t0 = now_ms();
    let p = world.lambda_parameters(execution, plan, &[]).await?;
    let first = world.traffic.run_at(&world.job(&p)?, t0).await;
    ensure!(kind(&first) == "continue", "{first:?}");
    Ok((p, t0))
}

/// Runs the action at each offset (minutes from `t0`, fractional allowed as ms) and reads the
/// share on the new version after each run.
async fn walk<F, Fut>(
    world: &World,
    parameters: &Value,
    t0: i64,
    offsets_ms: &[i64],
    read: F,
) -> Result<Vec<(u8, &'static str)>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u8>>,
{
    let mut seen = Vec::new();
    for offset in offsets_ms {
        let outcome = world
            .traffic
            .run_at(&world.job(parameters)?, t0 + offset)
            .await;
        ensure!(
            !matches!(outcome, Outcome::Failed { .. }),
            "at +{offset} ms: {outcome:?}"
        );
        seen.push((read().await?, kind(&outcome)));
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_predefined_plan_walks_codedeploys_weights_on_the_alias() -> Result<()> {
    let world = world().await?;
    let t0 = now_ms();

    // Canary10Percent5Minutes: 10% at once, 100% after 5 minutes.
    let p = world
        .lambda_parameters("exec-canary", "Canary10Percent5Minutes", &[])
        .await?;
    let seen = walk(
        &world,
        &p,
        t0,
        &[0, MINUTE, 5 * MINUTE - 1, 5 * MINUTE],
        || world.alias_percent(),
    )
    .await?;
    assert_eq!(
        seen,
        [
            (10, "continue"),
            (10, "continue"),
            (10, "continue"),
            (100, "done")
        ]
    );
    // At 100% the alias points at the new version with no routing config.
    assert_eq!(world.alias().await?, ("2".to_owned(), None));
    let d = world.deployment("exec-canary").await?;
    assert_eq!(d.state, DeploymentState::Succeeded);
    assert_eq!(
        d.steps.iter().map(|s| s.percent).collect::<Vec<_>>(),
        [10, 100]
    );
    // A late duplicate of the last job changes nothing and succeeds again.
    let again = world.traffic.run_at(&world.job(&p)?, t0 + 6 * MINUTE).await;
    assert_eq!(kind(&again), "done");

    // Linear10PercentEvery1Minute: 10, 20, … 100, one step a minute.
    world.reset_alias().await?;
    let p = world
        .lambda_parameters("exec-linear", "Linear10PercentEvery1Minute", &[])
        .await?;
    let offsets: Vec<i64> = (0..10).map(|m| m * MINUTE).collect();
    let seen = walk(&world, &p, t0, &offsets, || world.alias_percent()).await?;
    let percents: Vec<u8> = seen.iter().map(|(p, _)| *p).collect();
    assert_eq!(percents, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    assert_eq!(seen.last().map(|s| s.1), Some("done"));
    assert_eq!(world.alias().await?, ("2".to_owned(), None));

    // AllAtOnce: 100% in one step, done at once.
    world.reset_alias().await?;
    let p = world
        .lambda_parameters("exec-all", "AllAtOnce", &[])
        .await?;
    let seen = walk(&world, &p, t0, &[0], || world.alias_percent()).await?;
    assert_eq!(seen, [(100, "done")]);
    assert_eq!(world.alias().await?, ("2".to_owned(), None));

    // A compressed plan (scale=60: minutes become seconds) walks the same weights.
    world.reset_alias().await?;
    let p = world
        .lambda_parameters("exec-fast", "Canary10Percent5Minutes;scale=60", &[])
        .await?;
    let seen = walk(&world, &p, t0, &[0, 4_999, 5_000], || world.alias_percent()).await?;
    assert_eq!(seen, [(10, "continue"), (10, "continue"), (100, "done")]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_predefined_plan_walks_codedeploys_weights_on_the_listener() -> Result<()> {
    let world = world().await?;
    let t0 = now_ms();
    let green = || async { Ok(world.listener_weights().await?.1 as u8) };

    let p = world
        .alb_parameters("exec-canary", "Canary10Percent5Minutes", &[])
        .await?;
    let seen = walk(&world, &p, t0, &[0, 5 * MINUTE - 1, 5 * MINUTE], green).await?;
    assert_eq!(seen, [(10, "continue"), (10, "continue"), (100, "done")]);
    assert_eq!(world.listener_weights().await?, (0, 100));

    shipgate::aws::elbv2::shift_listener(&world.elb, &world.listener, &world.blue, &world.green, 0)
        .await?;
    let p = world
        .alb_parameters("exec-linear", "Linear10PercentEvery1Minute", &[])
        .await?;
    let offsets: Vec<i64> = (0..10).map(|m| m * MINUTE).collect();
    let seen = walk(&world, &p, t0, &offsets, green).await?;
    let percents: Vec<u8> = seen.iter().map(|(p, _)| *p).collect();
    assert_eq!(percents, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    assert_eq!(world.listener_weights().await?, (0, 100));

    shipgate::aws::elbv2::shift_listener(&world.elb, &world.listener, &world.blue, &world.green, 0)
        .await?;
    let p = world
        .alb_parameters("exec-all", "AllAtOnce;bake=2m", &[])
        .await?;
    let seen = walk(&world, &p, t0, &[0, MINUTE, 2 * MINUTE], green).await?;
    // At 100% at once, then the bake: done when it is over.
    assert_eq!(seen, [(100, "continue"), (100, "continue"), (100, "done")]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_in_alarm_before_a_step_rolls_back_and_fails_the_job() -> Result<()> {
    let world = world().await?;
    let alarm = world.named("orders-int-errors");
    let t0 = now_ms();
    world.put_alarm(&alarm).await?;
    let p = world
        .lambda_parameters("exec-alarm", "Canary10Percent5Minutes", &[&alarm])
        .await?;
    let first = world.traffic.run_at(&world.job(&p)?, t0).await;
    assert_eq!(kind(&first), "continue", "{first:?}");
    assert_eq!(world.alias_percent().await?, 10);

    world
        .set_alarm(&alarm, StateValue::Alarm, "Errors above 1 on version 2")
        .await?;
    // The 100% step is due, but the alarm is checked first.
    let outcome = world.traffic.run_at(&world.job(&p)?, t0 + 5 * MINUTE).await;
    let message = failure(&outcome)?.0;
    assert!(message.contains(alarm.as_str()), "{message}");
    assert!(message.contains("Errors above 1 on version 2"), "{message}");
    assert!(message.contains("rolled back at 10%"), "{message}");
    assert_eq!(world.alias().await?, ("1".to_owned(), None));

    let d = world.deployment("exec-alarm").await?;
    assert_eq!(d.state, DeploymentState::RolledBack);
    assert_eq!(d.percent, 0);
    let r = d.rollback.clone().expect("the rollback is recorded");
    assert_eq!(r.alarm.as_deref(), Some(alarm.as_str()));
    assert_eq!(r.by, "traffic-action");
    assert!(r.traffic_restored && r.job_answered && r.team_notified);
    assert!(d.lease.is_none());
    // The team was emailed (the email's content is checked by the renderer's unit tests: moto's
    // outbox cannot be read once a Lambda function exists, see `deploy_world`).
    assert!(r.team_notified);
    let revision = d.revision;

    // The next invocation fails again from the record, and moves nothing.
    world
        .set_alarm(&alarm, StateValue::Ok, "back to normal")
        .await?;
    let again = world.traffic.run_at(&world.job(&p)?, t0 + 6 * MINUTE).await;
    assert!(failure(&again)?.0.contains(alarm.as_str()));
    assert_eq!(world.alias().await?, ("1".to_owned(), None));
    assert_eq!(world.deployment("exec-alarm").await?.revision, revision);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_already_firing_blocks_the_deployment_before_any_traffic_moves() -> Result<()> {
    let world = world().await?;
    let alarm = world.named("orders-int-errors");
    world.put_alarm(&alarm).await?;
    world
        .set_alarm(&alarm, StateValue::Alarm, "Errors on version 1")
        .await?;
    let p = world
        .lambda_parameters("exec-blocked", "Canary10Percent5Minutes", &[&alarm])
        .await?;
    let outcome = world.traffic.run_at(&world.job(&p)?, now_ms()).await;
    let message = failure(&outcome)?.0;
    assert!(message.contains("rolled back at 0%"), "{message}");
    assert!(message.contains(alarm.as_str()), "{message}");
    assert_eq!(world.alias().await?, ("1".to_owned(), None));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_invocations_at_once_move_traffic_once() -> Result<()> {
    let world = world().await?;
    let (p, t0) = started(&world, "exec-race", "Linear10PercentEvery1Minute").await?;
    let before = world.deployment("exec-race").await?;

    let (a, b) = (world.job(&p)?, world.job(&p)?);
    let (ra, rb) = tokio::join!(
        world.traffic.run_at(&a, t0 + MINUTE),
        world.traffic.run_at(&b, t0 + MINUTE)
    );
    ensure!(
        !matches!(ra, Outcome::Failed { .. }) && !matches!(rb, Outcome::Failed { .. }),
        "{ra:?} / {rb:?}"
    );
    assert_eq!(world.alias_percent().await?, 20);
    let after = world.deployment("exec-race").await?;
    // One move to 20% recorded: claim + record of one step, plus at most one record of the
    // other invocation's job id.
    assert_eq!(
        after.steps.iter().filter(|s| s.percent == 20).count(),
        1,
        "{:?}",
        after.steps
    );
    ensure!(
        (before.revision + 2..=before.revision + 3).contains(&after.revision),
        "revision {} → {}",
        before.revision,
        after.revision
    );
    assert!(after.lease.is_none());

    // Many at once, a minute later: still one move.
    let jobs: Vec<_> = (0..5).map(|_| world.job(&p)).collect::<Result<_>>()?;
    let runs = futures::future::join_all(
        jobs.iter()
            .map(|j| world.traffic.run_at(j, t0 + 2 * MINUTE)),
    )
    .await;
    ensure!(
        runs.iter().all(|r| !matches!(r, Outcome::Failed { .. })),
        "{runs:?}"
    );
    let after = world.deployment("exec-race").await?;
    assert_eq!(after.steps.iter().filter(|s| s.percent == 30).count(), 1);
    assert_eq!(world.alias_percent().await?, 30);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_record_was_lost_is_reconciled_not_undone() -> Result<()> {
    let world = world().await?;
    let (p, t0) = started(&world, "exec-crash", "Canary10Percent5Minutes").await?;
    assert_eq!(world.deployment("exec-crash").await?.percent, 10);

    // The 100% step's UpdateAlias went through, then the invocation died before its record
    // (its lease left behind, expired by now).
    let mut d = world.deployment("exec-crash").await?;
    d.lease = Some(Lease {
        owner: "dead-job/1".into(),
        until_ms: t0 + 30_000,
        intent: LeaseIntent::Shift { to: 100 },
    });
    world.store.save_deployment(&d).await?;
    shipgate::aws::lambda::shift_alias(&world.lambda, &world.function, "live", "1", "2", 100)
        .await?;

    // A minute in, the plan says 10%: the record catches up to 100%, nothing moves back.
    let outcome = world.traffic.run_at(&world.job(&p)?, t0 + MINUTE).await;
    assert_eq!(kind(&outcome), "continue", "{outcome:?}");
    assert_eq!(world.alias().await?, ("2".to_owned(), None));
    let d = world.deployment("exec-crash").await?;
    assert_eq!(d.percent, 100);
    assert!(d.lease.is_none());
    assert_eq!(
        d.steps.iter().map(|s| s.percent).collect::<Vec<_>>(),
        [10, 100]
    );

    // When the canary is over it is done, without another move.
    let outcome = world.traffic.run_at(&world.job(&p)?, t0 + 5 * MINUTE).await;
    assert_eq!(kind(&outcome), "done", "{outcome:?}");
    assert_eq!(world.deployment("exec-crash").await?.steps.len(), 2);

    // A lease that is still held makes another invocation wait, moving nothing.
    world.reset_alias().await?;
    let (p, t0) = started(&world, "exec-held", "Canary10Percent5Minutes").await?;
    let mut d = world.deployment("exec-held").await?;
    d.lease = Some(Lease {
        owner: "other-job/1".into(),
        until_ms: t0 + 6 * MINUTE,
        intent: LeaseIntent::Shift { to: 100 },
    });
    world.store.save_deployment(&d).await?;
    let outcome = world.traffic.run_at(&world.job(&p)?, t0 + 5 * MINUTE).await;
    assert_eq!(kind(&outcome), "continue");
    assert_eq!(world.alias_percent().await?, 10);
    // Expired: the step goes on.
    let outcome = world.traffic.run_at(&world.job(&p)?, t0 + 6 * MINUTE).await;
    assert_eq!(kind(&outcome), "done");
    assert_eq!(world.alias_percent().await?, 100);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_refuses_to_be_assumed_fails_the_job_at_once_naming_it() -> Result<()> {
    // STS refuses the environment role (no trust, or a wrong ARN): the first invocation fails
    // the job as a permission error naming the role, and asks STS once; it never continues.
    let world = world().await?;
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let sts = MotoProxy::start(&world.stack.moto.endpoint(), move |request| {
        let counter = counter.clone();
        async move {
            if request.field("Action") != "AssumeRole" {
                return request.pass().await;
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let role = request.field("RoleArn");
            Ok(xml(
                403,
                format!(
                    r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:sts::111111111111:assumed-role/shipgate-TrafficFunctionRole-LOCAL/traffic is not authorized to perform: sts:AssumeRole on resource: {}</Message></Error>
  <RequestId>{}</RequestId>
</ErrorResponse>"#,
                    escape(&role),
                    uuid::Uuid::new_v4()
                ),
            ))
        }
    })
    .await?;
    let mut endpoints = world.stack.endpoints.clone();
    endpoints
        .per_service
        .insert("AWS_ENDPOINT_URL_STS".into(), sts.url.clone());
    let env = deploy_world::function_env(&world.stack)?;
    let traffic = TrafficFunction::new(TrafficConfig::from_env(&env)?, &endpoints.sdk_config());

    let p = world
        .lambda_parameters("exec-denied", "Canary10Percent5Minutes", &[])
        .await?;
    let outcome = traffic.run_at(&world.job(&p)?, now_ms()).await;

    let (message, failed_as) = failure(&outcome)?;
    assert_eq!(failed_as, JobFailureKind::PermissionError, "{message}");
    let role = p["roleArn"].as_str().context("the role")?;
    assert!(
        message.contains(role) && message.contains("AccessDenied"),
        "{message}"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1, "AssumeRole asked once");
    assert_eq!(world.alias_percent().await?, 0, "no traffic moved");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_fail_the_job_as_a_configuration_error() -> Result<()> {
    let world = world().await?;
    let mut p = world
        .lambda_parameters("exec-bad", "Canary10Percent7Minutes", &[])
        .await?;
    let outcome = world.traffic.run_at(&world.job(&p)?, now_ms()).await;
    assert!(
        matches!(
            &outcome,
            Outcome::Failed { kind: shipgate::aws::codepipeline::JobFailureKind::ConfigurationError, message }
                if message.contains("unknown deployment plan")
        ),
        "{outcome:?}"
    );
    // The target's ARNs in the parameters, as the pipeline once passed them: refused by name.
    p["plan"] = "AllAtOnce".into();
    p["target"] = serde_json::json!({"kind": "lambda_alias", "function": world.function});
    let outcome = world.traffic.run_at(&world.job(&p)?, now_ms()).await;
    let (message, failed_as) = failure(&outcome)?;
    assert_eq!(failed_as, JobFailureKind::ConfigurationError, "{message}");
    assert!(message.contains("expected a string"), "{message}");
    assert_eq!(world.alias_percent().await?, 0, "no traffic moved");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_comes_from_the_deploy_actions_record_and_what_it_lacks_is_named() -> Result<()>
{
    let world = world().await?;
    let now = now_ms();

    // No record: the stage's deploy action has not succeeded in this execution. Nothing moves,
    // and the message names the release, the execution and the record's keys.
    let p = world.parameters("exec-unrecorded", "AllAtOnce", "lambda_alias");
    let outcome = world.traffic.run_at(&world.job(&p)?, now).await;
    let message = failure(&outcome)?.0;
    let stage_id = world.deployment_id("exec-unrecorded");
    for expected in [
        "the deploy action recorded no targets",
        world.release_id.as_str(),
        "exec-unrecorded",
        &format!("DEPLOYMENT#{stage_id} / TARGETS"),
        "Deploy action must succeed",
    ] {
        assert!(message.contains(expected), "{expected} / {message}");
    }
    assert_eq!(world.alias_percent().await?, 0, "no traffic moved");
    assert!(world.store.get_deployment(&stage_id).await?.is_none());

    // A release without a Lambda function, its record naming none, has nothing to shift: the
    // pipeline's LambdaTraffic action (named `lambda`) succeeds. Its listener action, with one
    // of the listener target's outputs left, cannot: it names the missing ones.
    let mut no_function = world.stage_targets("exec-no-function", &[]);
    no_function.lambda_function = None;
    no_function.lambda_alias = None;
    no_function.lambda_version = None;
    no_function.prod_listener = None;
    no_function.blue_target_group = None;
    world.record_targets(&no_function).await?;
    let mut lambda = world.parameters("exec-no-function", "AllAtOnce", "lambda_alias");
    lambda["name"] = "lambda".into();
    let outcome = world.traffic.run_at(&world.job(&lambda)?, now).await;
    assert!(
        matches!(&outcome, Outcome::Done { summary, .. } if summary.contains("no Lambda target")),
        "{outcome:?}"
    );
    let alb = world.parameters("exec-no-function", "AllAtOnce", "alb_listener");
    let weights = world.listener_weights().await?;
    let outcome = world.traffic.run_at(&world.job(&alb)?, now).await;
    let message = failure(&outcome)?.0;
    assert!(
        message.contains("output no ShipgateProdListener, ShipgateBlueTargetGroup"),
        "{message}"
    );
    assert_eq!(world.listener_weights().await?, weights, "no traffic moved");
    // With none of them (a Lambda-only release), the listener action has nothing to shift.
    let mut lambda_only = no_function.clone();
    lambda_only.execution_id = "exec-lambda-only".into();
    lambda_only.deployment_id = world.deployment_id("exec-lambda-only");
    lambda_only.green_target_group = None;
    world.record_targets(&lambda_only).await?;
    let alb = world.parameters("exec-lambda-only", "AllAtOnce", "alb_listener");
    let outcome = world.traffic.run_at(&world.job(&alb)?, now).await;
    assert!(
        matches!(&outcome, Outcome::Done { summary, .. } if summary.contains("no listener target")),
        "{outcome:?}"
    );
    assert_eq!(world.listener_weights().await?, weights, "no traffic moved");

    // What the record names is what moves: a function the account does not have fails at its
    // first call, naming it.
    let mut unknown = world.stage_targets("exec-unknown-function", &[]);
    unknown.lambda_function = Some("no-such-function".into());
    world.record_targets(&unknown).await?;
    let p = world.parameters("exec-unknown-function", "AllAtOnce", "lambda_alias");
    let outcome = world.traffic.run_at(&world.job(&p)?, now).await;
    let message = failure(&outcome)?.0;
    assert!(
        message.contains("GetAlias") && message.contains("no-such-function"),
        "{message}"
    );

    // The alarms come from the record too: the deployment watches what the deploy action found.
    let alarm = world.named("orders-int-errors");
    world.put_alarm(&alarm).await?;
    let p = world
        .lambda_parameters("exec-watched", "Canary10Percent5Minutes", &[&alarm])
        .await?;
    assert_eq!(
        kind(&world.traffic.run_at(&world.job(&p)?, now).await),
        "continue"
    );
    assert_eq!(world.deployment("exec-watched").await?.alarms, [alarm]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_blue_green_places_green_for_the_checks_then_drains_blue_and_roles_swap() -> Result<()>
{
    let world = ecs_world::EcsWorld::start("traffic-ecs").await?;

    // Release 1, the service's first: no blue task set yet.
    let r1 = world.approved("1.0.0").await?;
    let (vars, invocations) = world.deploy_to_end(&r1).await?;
    // The task set stabilises after its creation: the action waited with a continuation.
    ensure!(invocations >= 2, "deployed in {invocations} invocation(s)");
    let prod = vars["ShipgateProdListener"].clone();
    let test = vars["ShipgateTestListener"].clone();
    let (tg_a, tg_b) = (
        vars["ShipgateBlueTargetGroup"].clone(),
        vars["ShipgateGreenTargetGroup"].clone(),
    );
    // Before any traffic moves: green runs behind the idle group, the test listener on it.
    let sets = world.task_sets(&vars).await?;
    let green1 = sets
        .iter()
        .find(|t| t.external_id.as_deref() == Some(r1.release_id.as_str()))
        .context("release 1's task set")?
        .clone();
    assert!(green1.serves(&tg_b) && green1.steady, "{green1:?}");
    assert_eq!(vars["GreenTaskSet"], green1.arn);
    assert_eq!(vars["BlueTaskSet"], "");
    // What the traffic action will move is what the stacks output, recorded by the deploy
    // action for the release's execution (its parameters name none of it).
    let recorded = world
        .store
        .get_stage_targets(&shipgate::deploy::deployment_id(
            &r1.release_id,
            "int",
            &r1.execution_id,
        ))
        .await?
        .context("the stage's targets")?;
    assert_eq!(recorded.prod_listener.as_ref(), Some(&prod));
    assert_eq!(recorded.test_listener.as_ref(), Some(&test));
    assert_eq!(recorded.blue_target_group.as_ref(), Some(&tg_a));
    assert_eq!(recorded.green_target_group.as_ref(), Some(&tg_b));
    assert_eq!(recorded.service.as_ref(), Some(&vars["ShipgateService"]));
    assert_eq!(world.weights(&test).await?, [(tg_b.clone(), 1)]);
    assert_eq!(world.percent_on(&prod, &tg_b).await?, 0);

    // Traffic: a canary, then the drain after the bake (no blue: green just becomes primary).
    let p1 = world.traffic_parameters(&r1, "Canary10Percent5Minutes");
    let t0 = now_ms();
    assert_eq!(kind(&world.traffic_at(&p1, t0).await?), "continue");
    let bake_over = t0 + 5 * MINUTE;
    assert_eq!(kind(&world.traffic_at(&p1, bake_over).await?), "continue");
    let d = world.deployment(&r1).await?;
    assert_eq!(d.state, DeploymentState::Shifting);
    let delay = world.deregistration_delay(&tg_a).await?;
    let drain = d.drain().context("the drain started")?;
    assert_eq!(drain.delay_seconds, delay);
    assert_eq!(drain.after_ms, bake_over + i64::from(delay) * 1000);
    assert_eq!(d.next_step_at_ms, Some(drain.after_ms));
    let done1 = world.traffic_at(&p1, drain.after_ms).await?;
    assert_eq!(kind(&done1), "done", "{done1:?}");
    assert_eq!(world.percent_on(&prod, &tg_b).await?, 100);
    let sets = world.task_sets(&vars).await?;
    assert_eq!(sets.len(), 1, "{sets:#?}");
    assert!(sets[0].arn == green1.arn && sets[0].is_primary());

    // Release 2: the roles swap. Green goes behind the first group, the test listener with it.
    let r2 = world.approved("1.1.0").await?;
    let (vars2, _) = world.deploy_to_end(&r2).await?;
    let green2 = world
        .task_sets(&vars2)
        .await?
        .into_iter()
        .find(|t| t.external_id.as_deref() == Some(r2.release_id.as_str()))
        .context("release 2's task set")?;
    assert!(green2.serves(&tg_a), "{green2:?}");
    assert_eq!(vars2["BlueTaskSet"], green1.arn);
    assert_eq!(world.weights(&test).await?, [(tg_a.clone(), 1)]);
    assert_eq!(world.percent_on(&prod, &tg_a).await?, 0);

    let p2 = world.traffic_parameters(&r2, "AllAtOnce");
    let t1 = now_ms();
    assert_eq!(kind(&world.traffic_at(&p2, t1).await?), "continue");
    assert_eq!(world.percent_on(&prod, &tg_a).await?, 100);
    let after = world
        .deployment(&r2)
        .await?
        .drain()
        .context("drain")?
        .after_ms;
    assert_eq!(after, t1 + i64::from(delay) * 1000);
    // Within the delay: nothing is scaled in (an alarm no longer rolls back either).
    assert_eq!(kind(&world.traffic_at(&p2, after - 1).await?), "continue");
    let blue = world
        .task_sets(&vars2)
        .await?
        .into_iter()
        .find(|t| t.arn == green1.arn)
        .context("blue")?;
    assert_eq!(blue.scale_percent, 100.0);

    // A crash between the scale-in and its record: UpdateTaskSet went through, the invocation
    // died holding its lease (expired by now). The next one converges from the task sets.
    let mut d = world.deployment(&r2).await?;
    d.lease = Some(Lease {
        owner: "dead-job/1".into(),
        until_ms: after,
        intent: LeaseIntent::Drain {
            step: DrainStep::ScaleIn,
        },
    });
    world.store.save_deployment(&d).await?;
    shipgate::aws::ecs::scale_task_set(
        &world.ecs,
        &vars2["ShipgateCluster"],
        &vars2["ShipgateService"],
        &green1.arn,
        0.0,
    )
    .await?;
    let done2 = world.traffic_at(&p2, after + 1).await?;
    assert_eq!(kind(&done2), "done", "{done2:?}");
    let d = world.deployment(&r2).await?;
    assert_eq!(d.state, DeploymentState::Succeeded);
    assert!(d.lease.is_none());
    let steps: Vec<DrainStep> = d
        .drain()
        .context("drain")?
        .steps
        .iter()
        .map(|s| s.step)
        .collect();
    assert_eq!(steps, [DrainStep::Promote, DrainStep::Delete]);
    let sets = world.task_sets(&vars2).await?;
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert!(sets[0].arn == green2.arn && sets[0].is_primary());
    assert_eq!(world.percent_on(&prod, &tg_a).await?, 100);
    // A late duplicate changes nothing.
    assert_eq!(kind(&world.traffic_at(&p2, after + MINUTE).await?), "done");
    world.stop().await;
    Ok(())
}
