//! The rollback function against the local stack: the EventBridge "CloudWatch Alarm State
//! Change" event and the alarm's Lambda-action payload each roll back an in-flight deployment
//! (traffic back to 100% previous, record rolled back, job failure attempted, team emailed);
//! duplicate, late, OK and unknown-alarm events change nothing and say so; an operator rolls
//! back by hand and lists what is in flight. No pipeline runs here: the recorded job id is one
//! the CodePipeline stand-in does not know, so the job failure is attempted and reported as
//! answered already (`JobNotFoundException`), which the traffic action's next invocation turns
//! into the action's failure, from the record. See `deploy_world` for what moto does here.

use crate::deploy_world;

use anyhow::{Context, Result, bail};
use deploy_world::{MINUTE, TEAM, World, eventbridge_event, lambda_action_payload, now_ms};
use serde_json::json;
use shipgate::deploy::{RollbackOutcome, RollbackReport};
use shipgate::job::{JobAction, Outcome};
use shipgate::store::DeploymentState;
use shipgate_local::outbox::{SentEmail, sent_emails};
use shipgate_rollback::AlarmAction;

const ALARM: &str = "orders-int-errors";

fn failure(outcome: &Outcome) -> Result<&str> {
    match outcome {
        Outcome::Failed { message, .. } => Ok(message),
        other => bail!("expected a failure: {other:?}"),
    }
}

/// The rollback's email went to int's team.
fn emailed_int_team(report: &RollbackReport) -> bool {
    report
        .email
        .as_deref()
        .unwrap_or_default()
        .starts_with("sent to team-int@example.com")
}

/// Runs `test` on a world of its own, from `t0` (now), then stops the world's stack, also when
/// the test fails.
async fn on_world(name: &str, test: impl AsyncFnOnce(&World, i64) -> Result<()>) -> Result<()> {
    let world = World::start(name).await?;
    let result = test(&world, now_ms()).await;
    world.stop().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eventbridge_event_rolls_back_an_in_flight_canary_once() -> Result<()> {
    on_world("rollback-eventbridge", async |world, t0| {
        let p = world
            .lambda_parameters("exec-eb", "Canary10Percent5Minutes", &[ALARM])
            .await?;
        let job = world.job(&p)?;
        world.traffic.run_at(&job, t0).await;
        assert_eq!(world.alias_percent().await?, 10);

        let event = eventbridge_event(ALARM, "ALARM", "Errors above 1 on version 2", t0 + 30_000);
        let result = world.rollback.handle_at(event.clone(), t0 + 31_000).await?;
        assert_eq!(result.action, AlarmAction::Handled);
        assert_eq!(result.account_id, "222222222222");
        assert_eq!(result.rolled_back(), 1, "{result:?}");
        let report = &result.deployments[0];
        assert_eq!(report.outcome, RollbackOutcome::RolledBack);
        assert_eq!(
            report.traffic.as_deref(),
            Some("moved from 10% to 0% on the new version")
        );
        // The job failure was attempted on the recorded job.
        let job_note = report.job.as_deref().unwrap_or_default();
        assert!(job_note.contains(&job.id), "{job_note}");
        assert!(job_note.contains("JobNotFoundException"), "{job_note}");
        assert!(emailed_int_team(report), "{report:?}");
        assert_eq!(world.alias().await?, ("1".to_owned(), None));
        let d = world.deployment("exec-eb").await?;
        assert_eq!(d.state, DeploymentState::RolledBack);
        let r = d.rollback.clone().expect("recorded");
        assert_eq!(r.alarm.as_deref(), Some(ALARM));
        assert_eq!(r.reason, "Errors above 1 on version 2");
        assert_eq!(r.by, "alarm");
        assert_eq!(r.percent_before, 10);
        assert!(r.team_notified && r.job_answered && r.traffic_restored);

        // The same event four more times: nothing changes.
        for _ in 0..4 {
            let again = world.rollback.handle_at(event.clone(), t0 + 40_000).await?;
            assert_eq!(again.rolled_back(), 0);
            assert_eq!(
                again.deployments[0].outcome,
                RollbackOutcome::AlreadyRolledBack
            );
            // No second email, no second job failure, no second move.
            assert_eq!(again.deployments[0].email, None);
            assert_eq!(again.deployments[0].traffic, None);
        }
        assert_eq!(world.deployment("exec-eb").await?.revision, d.revision);

        // The traffic action's next invocation fails the action from the record.
        let outcome = world.traffic.run_at(&world.job(&p)?, t0 + 5 * MINUTE).await;
        let message = failure(&outcome)?;
        assert!(
            message.contains(ALARM) && message.contains("rolled back at 10%"),
            "{message}"
        );
        assert_eq!(world.alias().await?, ("1".to_owned(), None));
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_action_payload_rolls_back_a_listener() -> Result<()> {
    on_world("rollback-payload", async |world, t0| {
        let p = world
            .alb_parameters("exec-alb", "Linear10PercentEvery1Minute", &[ALARM])
            .await?;
        world.traffic.run_at(&world.job(&p)?, t0).await;
        world.traffic.run_at(&world.job(&p)?, t0 + MINUTE).await;
        assert_eq!(world.listener_weights().await?, (80, 20));

        let payload = lambda_action_payload(ALARM, "ALARM", "5xx on green", t0 + 70_000);
        let result = world.rollback.handle_at(payload, t0 + 71_000).await?;
        assert_eq!(result.rolled_back(), 1, "{result:?}");
        assert_eq!(world.listener_weights().await?, (100, 0));
        let d = world.deployment("exec-alb").await?;
        assert_eq!(d.state, DeploymentState::RolledBack);
        assert_eq!(d.percent, 0);
        assert!(emailed_int_team(&result.deployments[0]), "{result:?}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_ok_unknown_and_early_events_change_nothing() -> Result<()> {
    on_world("rollback-noops", async |world, t0| {
        // Unknown alarm: nobody watches it.
        let unknown = world
            .rollback
            .handle_at(eventbridge_event("nobody-watches", "ALARM", "x", t0), t0)
            .await?;
        assert_eq!(unknown.action, AlarmAction::Ignored);
        assert!(
            unknown
                .note
                .as_deref()
                .unwrap_or_default()
                .contains("no deployment watches")
        );

        // An in-flight canary: OK (after an ALARM that never came, or out of order) changes nothing.
        let p = world
            .lambda_parameters("exec-late", "Canary10Percent5Minutes", &[ALARM])
            .await?;
        world.traffic.run_at(&world.job(&p)?, t0).await;
        let ok = world
            .rollback
            .handle_at(
                lambda_action_payload(ALARM, "OK", "fine", t0 + 1000),
                t0 + 1000,
            )
            .await?;
        assert_eq!(ok.action, AlarmAction::Ignored);
        assert!(ok.note.as_deref().unwrap_or_default().contains("not ALARM"));
        // An ALARM from before the deployment started, delivered late: not this deployment's.
        let early = world
            .rollback
            .handle_at(
                eventbridge_event(ALARM, "ALARM", "old", t0 - 60_000),
                t0 + 2000,
            )
            .await?;
        assert_eq!(early.rolled_back(), 0);
        assert_eq!(early.skipped.len(), 1, "{early:?}");
        assert_eq!(world.alias_percent().await?, 10);

        // Finished: an alarm after the end changes nothing.
        let done = world.traffic.run_at(&world.job(&p)?, t0 + 5 * MINUTE).await;
        assert!(matches!(done, Outcome::Done { .. }), "{done:?}");
        let revision = world.deployment("exec-late").await?.revision;
        let late = world
            .rollback
            .handle_at(
                eventbridge_event(ALARM, "ALARM", "late", t0 + 6 * MINUTE),
                t0 + 6 * MINUTE,
            )
            .await?;
        assert_eq!(late.rolled_back(), 0);
        assert_eq!(
            late.deployments[0].outcome,
            RollbackOutcome::AlreadySucceeded
        );
        assert_eq!(world.alias().await?, ("2".to_owned(), None));
        assert_eq!(world.deployment("exec-late").await?.revision, revision);
        assert_eq!(late.deployments[0].email, None);

        // Malformed: a clear error.
        let err = world
            .rollback
            .handle_at(json!({"hello": "world"}), t0)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "MalformedEvent");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_deployments_in_flight_and_rolls_one_back_by_hand() -> Result<()> {
    on_world("rollback-by-hand", async |world, t0| {
        let p = world
            .lambda_parameters("exec-hand", "Canary10Percent30Minutes", &[])
            .await?;
        world.traffic.run_at(&world.job(&p)?, t0).await;
        let id = world.deployment_id("exec-hand");
        let in_flight = world.rollback.list_in_flight().await?;
        assert_eq!(
            in_flight
                .iter()
                .map(|d| d.deployment_id.as_str())
                .collect::<Vec<_>>(),
            [id.as_str()]
        );
        assert!(
            world
                .rollback
                .roll_back_by_hand(&id, "alice", "")
                .await
                .is_err()
        );
        let report = world
            .rollback
            .roll_back_by_hand(&id, "alice", "latency looks wrong")
            .await?;
        assert_eq!(report.outcome, RollbackOutcome::RolledBack);
        assert_eq!(world.alias().await?, ("1".to_owned(), None));
        let d = world.deployment("exec-hand").await?;
        assert_eq!(
            d.rollback.as_ref().map(|r| r.by.as_str()),
            Some("operator:alice")
        );
        assert!(world.rollback.list_in_flight().await?.is_empty());
        assert!(emailed_int_team(&report), "{report:?}");
        // Twice: nothing more.
        let again = world
            .rollback
            .roll_back_by_hand(&id, "bob", "again")
            .await?;
        assert_eq!(again.outcome, RollbackOutcome::AlreadyRolledBack);
        let outcome = world.traffic.run_at(&world.job(&p)?, t0 + MINUTE).await;
        assert!(failure(&outcome)?.contains("latency looks wrong"));
        assert!(
            world
                .rollback
                .roll_back_by_hand("int-nope", "alice", "x")
                .await
                .is_err()
        );
        Ok(())
    })
    .await
}

/// The rollback emails the int team received.
async fn team_rollback_emails(world: &World) -> Result<Vec<SentEmail>> {
    Ok(sent_emails(&world.stack.moto.endpoint())
        .await?
        .into_iter()
        .filter(|e| e.to.iter().any(|t| t == TEAM) && e.subject.contains("Rolled back"))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alarm_rolls_back_every_deployment_watching_it_and_emails_the_team_once() -> Result<()>
{
    on_world("rollback-many", async |world, t0| {
        // The listener and three aliases of the function, each at 10% on its new version.
        let p = world
            .alb_parameters("exec-many-alb", "Canary10Percent5Minutes", &[ALARM])
            .await?;
        world.traffic.run_at(&world.job(&p)?, t0).await;
        let aliases = ["canary-a", "canary-b", "canary-c"];
        for alias in aliases {
            world
                .lambda
                .create_alias()
                .function_name(&world.function)
                .name(alias)
                .function_version("1")
                .send()
                .await
                .context("CreateAlias")?;
            // The deploy action's record of each execution names its own alias.
            let execution = format!("exec-many-{alias}");
            let mut targets = world.stage_targets(&execution, &[ALARM]);
            targets.lambda_alias = Some(alias.to_owned());
            world.record_targets(&targets).await?;
            let p = world.parameters(&execution, "Canary10Percent5Minutes", "lambda_alias");
            world.traffic.run_at(&world.job(&p)?, t0).await;
        }
        assert_eq!(world.listener_weights().await?, (90, 10));
        let executions = [
            "exec-many-alb",
            "exec-many-canary-a",
            "exec-many-canary-b",
            "exec-many-canary-c",
        ];
        for execution in executions {
            assert_eq!(
                world.deployment(execution).await?.percent,
                10,
                "{execution}"
            );
        }

        let event = eventbridge_event(ALARM, "ALARM", "5xx on the new versions", t0 + 30_000);
        let result = world.rollback.handle_at(event.clone(), t0 + 31_000).await?;
        assert_eq!(result.rolled_back(), 4, "{result:?}");
        for report in &result.deployments {
            assert_eq!(
                report.traffic.as_deref(),
                Some("moved from 10% to 0% on the new version"),
                "{report:?}"
            );
            let email = report.email.as_deref().unwrap_or_default();
            assert!(
                email.starts_with("sent to team-int@example.com")
                    && email.ends_with("one email for the 4 deployments rolled back in int"),
                "{email}"
            );
        }
        assert_eq!(world.listener_weights().await?, (100, 0));
        for alias in aliases {
            let state =
                shipgate::aws::lambda::alias_state(&world.lambda, &world.function, alias).await?;
            assert_eq!(
                (state.version.as_str(), state.additional),
                ("1", None),
                "{alias}"
            );
        }
        for execution in executions {
            let d = world.deployment(execution).await?;
            let r = d.rollback.clone().context("rollback recorded")?;
            assert!(
                d.state == DeploymentState::RolledBack
                    && d.lease.is_none()
                    && r.traffic_restored
                    && r.job_answered
                    && r.team_notified,
                "{d:?}"
            );
        }
        // One email for the alarm, naming every deployment it rolled back.
        let emails = team_rollback_emails(world).await?;
        assert_eq!(emails.len(), 1, "{emails:#?}");
        assert!(
            emails[0].subject.starts_with(
                "[shipgate] Rolled back: 4 deployments in int (alarm orders-int-errors)"
            ),
            "{}",
            emails[0].subject
        );
        for execution in executions {
            assert!(
                emails[0].body.contains(&world.deployment_id(execution)),
                "{execution}"
            );
        }

        // The same event again: nothing moves, nobody is emailed twice.
        let again = world.rollback.handle_at(event, t0 + 40_000).await?;
        assert_eq!(again.rolled_back(), 0);
        assert!(
            again
                .deployments
                .iter()
                .all(|r| r.outcome == RollbackOutcome::AlreadyRolledBack && r.email.is_none()),
            "{again:?}"
        );
        assert_eq!(team_rollback_emails(world).await?.len(), 1);
        Ok(())
    })
    .await
}
