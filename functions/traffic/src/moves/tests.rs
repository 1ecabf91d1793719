//! The moves of a deployment, on plain records.

use shipgate::store::Rollback;
use shipgate::testing::{self, T0};

use super::*;

const MINUTE: i64 = 60_000;

/// The shared fixture, watching one alarm, read at revision 3.
fn deployment() -> Deployment {
    Deployment {
        alarms: vec!["orders-int-5xx".into()],
        revision: 3,
        ..testing::deployment()
    }
}

/// [`deployment`] on ECS task sets, the green one named by its ARN.
fn with_task_sets(drain: Option<Drain>) -> Deployment {
    let mut d = Deployment {
        target: testing::ecs_deployment(drain).target,
        ..deployment()
    };
    if let TrafficTarget::AlbListener {
        task_sets: Some(sets),
        ..
    } = &mut d.target
    {
        sets.green_task_set = "arn:aws:ecs:eu-west-1:2:task-set/c/s/ecs-svc/9".into();
    }
    d
}

fn position(percent: u8, complete: bool, next_wake: Option<u64>) -> Position {
    Position {
        percent,
        step: 0,
        complete,
        next_wake,
    }
}

fn cx(position: Position) -> Context<'static> {
    Context {
        job_id: "job-2",
        owner: "job-2/abc",
        now_ms: T0 + 5 * MINUTE,
        lease_ms: 120_000,
        position,
        scale: 1,
        drain_delay_seconds: None,
        finish_rollback: false,
    }
}

#[test]
fn a_shift_claims_with_a_lease_then_records_the_step_without_it() {
    let d = deployment();
    let wake = u64::try_from(T0 + 10 * MINUTE).unwrap();
    let planned = plan_step(
        &d,
        Step::Shift {
            from: 0,
            to: 10,
            complete: false,
        },
        cx(position(10, false, Some(wake))),
    );
    assert_eq!((planned.outcome, planned.percent), ("shifted", 10));
    let Move::Apply {
        claim,
        effect,
        record,
        reply,
    } = planned.step
    else {
        panic!("a move: {planned:?}");
    };
    assert_eq!(effect, Effect::Shift { to: 10 });
    assert_eq!(reply, Reply::Progress);
    // The claim names this invocation, for as long as a lease holds, and what it is about to do.
    let lease = claim.lease.expect("claimed");
    assert_eq!(lease.owner, "job-2/abc");
    assert_eq!(lease.until_ms, T0 + 5 * MINUTE + 120_000);
    assert_eq!(lease.intent, LeaseIntent::Shift { to: 10 });
    assert_eq!(claim.percent, 0);
    assert_eq!(claim.job_id.as_deref(), Some("job-2"));
    // After the move: the share, the step, the next look, no lease.
    assert_eq!(record.percent, 10);
    assert_eq!(record.lease, None);
    assert_eq!(
        record.steps,
        vec![AppliedStep {
            percent: 10,
            at_ms: T0 + 5 * MINUTE
        }]
    );
    assert_eq!(record.next_step_at_ms, Some(T0 + 10 * MINUTE));
    assert_eq!(record.state, DeploymentState::Shifting);
}

#[test]
fn the_last_shift_ends_a_lambda_deployment_but_starts_blues_drain_with_task_sets() {
    let last = Step::Shift {
        from: 10,
        to: 100,
        complete: true,
    };
    let Move::Apply { record, reply, .. } =
        plan_step(&deployment(), last.clone(), cx(position(100, true, None))).step
    else {
        panic!("a move");
    };
    assert_eq!(record.state, DeploymentState::Succeeded);
    assert_eq!(reply, Reply::Done);

    let ecs = with_task_sets(None);
    assert!(needs_drain_delay(&ecs, &position(100, true, None)));
    assert!(!needs_drain_delay(&ecs, &position(10, false, None)));
    let mut context = cx(position(100, true, None));
    context.drain_delay_seconds = Some(300);
    context.scale = 60;
    let Move::Apply { record, reply, .. } = plan_step(&ecs, last, context).step else {
        panic!("a move");
    };
    assert_eq!(
        record.state,
        DeploymentState::Shifting,
        "not done before blue is drained"
    );
    assert_eq!(reply, Reply::Progress);
    let drain = record.drain().expect("drain started");
    // 300 s compressed 60 times: 5 s after now.
    assert_eq!(drain.after_ms, T0 + 5 * MINUTE + 5_000);
    assert_eq!(drain.delay_seconds, 300);
    assert_eq!(record.next_step_at_ms, Some(drain.after_ms));
}

#[test]
fn a_hold_writes_only_what_changed() {
    let mut d = deployment();
    d.percent = 10;
    d.job_id = Some("job-2".into());
    d.next_step_at_ms = Some(T0 + 10 * MINUTE);
    let wake = u64::try_from(T0 + 10 * MINUTE).unwrap();
    let hold = Step::Hold {
        percent: 10,
        complete: false,
    };
    let planned = plan_step(&d, hold.clone(), cx(position(10, false, Some(wake))));
    assert_eq!(planned.step, Move::Answer(Reply::Progress));
    assert_eq!(planned.outcome, "hold");

    // Another job now: the record names it.
    d.job_id = Some("job-1".into());
    let Move::Record { record, reply } =
        plan_step(&d, hold, cx(position(10, false, Some(wake)))).step
    else {
        panic!("a record");
    };
    assert_eq!(record.job_id.as_deref(), Some("job-2"));
    assert_eq!(reply, Reply::Progress);
}

#[test]
fn traffic_found_ahead_of_the_record_is_reconciled() {
    let d = deployment();
    let planned = plan_step(
        &d,
        Step::Hold {
            percent: 10,
            complete: false,
        },
        cx(position(10, false, None)),
    );
    assert_eq!(planned.outcome, "reconciled");
    let Move::Record { record, .. } = planned.step else {
        panic!("a record");
    };
    assert_eq!(record.percent, 10);
    assert_eq!(record.steps.len(), 1);
}

#[test]
fn alarms_rollbacks_busy_and_foreign_carriers_are_answered_as_such() {
    let d = deployment();
    let c = cx(position(10, false, None));
    assert_eq!(
        plan_step(
            &d,
            Step::RollBack {
                alarm: "orders-int-5xx".into(),
                reason: "Threshold Crossed".into()
            },
            c
        )
        .step,
        Move::RollBack {
            alarm: "orders-int-5xx".into(),
            reason: "Threshold Crossed".into()
        }
    );
    let mut finish = c;
    finish.finish_rollback = true;
    let mut rolled_back = d.clone();
    rolled_back.rollback = Some(Rollback {
        alarm: None,
        reason: "operator".into(),
        by: "operator:alice".into(),
        at_ms: T0,
        percent_before: 10,
        traffic_restored: false,
        job_answered: false,
        job_outcome: None,
        team_notified: false,
    });
    assert_eq!(
        plan_step(&rolled_back, Step::RolledBack { restore: true }, finish).step,
        Move::RolledBack {
            restore: true,
            finish: true
        }
    );
    assert_eq!(
        plan_step(
            &d,
            Step::Busy {
                owner: "job-1/x".into()
            },
            c
        )
        .step,
        Move::Answer(Reply::Progress)
    );
    let Move::Answer(Reply::Fail(message)) = plan_step(
        &d,
        Step::Foreign {
            detail: "version 9 carries 30%".into(),
        },
        c,
    )
    .step
    else {
        panic!("a failure");
    };
    assert!(
        message.starts_with(
            "int: alias orders:live, version 6 → 7 was changed outside this deployment (version 9 \
             carries 30%)"
        ),
        "{message}"
    );
}

#[test]
fn blues_drain_waits_applies_each_step_then_succeeds() {
    let drain = Drain {
        after_ms: T0 + 6 * MINUTE,
        delay_seconds: 60,
        steps: vec![],
    };
    let d = with_task_sets(Some(drain));
    let now = T0 + 5 * MINUTE;
    let wait = plan_drain(
        &d,
        DrainNext::Wait {
            until_ms: T0 + 6 * MINUTE,
        },
        "job-2",
        "job-2/abc",
        now,
        120_000,
    );
    let Move::Record { record, reply } = wait.step else {
        panic!("a record");
    };
    assert_eq!(record.next_step_at_ms, Some(T0 + 6 * MINUTE));
    assert_eq!(reply, Reply::Progress);

    let Move::Apply {
        claim,
        effect,
        record,
        reply,
    } = plan_drain(
        &d,
        DrainNext::Apply(DrainStep::ScaleIn),
        "job-2",
        "job-2/abc",
        now,
        120_000,
    )
    .step
    else {
        panic!("a move");
    };
    assert_eq!(effect, Effect::Drain(DrainStep::ScaleIn));
    assert_eq!(
        claim.lease.map(|l| l.intent),
        Some(LeaseIntent::Drain {
            step: DrainStep::ScaleIn
        })
    );
    assert_eq!(record.drain().map(|d| d.steps.len()), Some(1));
    assert_eq!(reply, Reply::Again, "the next drain step may be due");

    let Move::Record { record, reply } =
        plan_drain(&d, DrainNext::Done, "job-2", "job-2/abc", now, 120_000).step
    else {
        panic!("a record");
    };
    assert_eq!(record.state, DeploymentState::Succeeded);
    assert_eq!(reply, Reply::Done);

    let broken = plan_drain(
        &d,
        DrainNext::Broken {
            detail: "green is gone".into(),
        },
        "job-2",
        "job-2/abc",
        now,
        120_000,
    );
    assert!(matches!(broken.step, Move::Answer(Reply::Fail(m)) if m.contains("green is gone")));
}
