//! The pure decisions of a deployment, on plain records: no AWS, no clock.

use proptest::prelude::*;

use super::*;
use crate::aws::cloudwatch::FiringAlarm;
use crate::aws::ecs::TaskSetView;
use crate::aws::lambda::AliasState;
use crate::config::Env;
use crate::plan::{DeploymentPlan, Position, Predefined, position};
use crate::store::{Deployment, DeploymentState, Drain, DrainStep, Lease, LeaseIntent, Rollback};
use crate::testing::{T0, deployment, ecs_deployment};

fn task_set(arn: &str, status: &str, scale: f64) -> TaskSetView {
    TaskSetView {
        arn: arn.into(),
        id: arn.into(),
        external_id: None,
        status: status.into(),
        steady: true,
        scale_percent: scale,
        computed_desired_count: 2,
        running_count: 2,
        pending_count: 0,
        task_definition: "orders-int:1".into(),
        target_groups: vec![],
        updated_at_ms: None,
    }
}

fn rollback(done: bool) -> Rollback {
    Rollback {
        alarm: Some("orders-int-5xx".into()),
        reason: "Threshold Crossed: 7 > 1".into(),
        by: "alarm".into(),
        at_ms: T0 + 1000,
        percent_before: 10,
        traffic_restored: done,
        job_answered: done,
        job_outcome: None,
        team_notified: done,
    }
}

fn pos(percent: u8, complete: bool) -> Position {
    Position {
        percent,
        step: 0,
        complete,
        next_wake: None,
    }
}

fn firing(name: &str) -> FiringAlarm {
    FiringAlarm {
        name: name.into(),
        reason: format!("{name} crossed"),
    }
}

fn step(d: &Deployment, observed: Observed, p: Position, alarms: &[FiringAlarm]) -> Step {
    decide_step(StepInput {
        deployment: d,
        observed: &observed,
        position: p,
        firing: alarms,
        owner: "job-2",
        now_ms: T0 + 60_000,
    })
}

#[test]
fn the_id_is_deterministic_and_separates_its_parts() {
    let a = deployment_id("rel-1", "int", "exec-1");
    assert_eq!(a, deployment_id("rel-1", "int", "exec-1"));
    assert!(a.starts_with("int-"));
    assert_eq!(a.len(), "int-".len() + 16);
    assert_ne!(a, deployment_id("rel-1", "int", "exec-2"));
    assert_ne!(a, deployment_id("rel-1", "stg", "exec-1"));
    // Length-prefixed parts: moving a character across a boundary is another id.
    assert_ne!(
        deployment_id("ab", "int", "c"),
        deployment_id("a", "int", "bc")
    );
}

#[test]
fn an_alias_reads_as_the_share_on_the_new_version() {
    let alias = |version: &str, extra: Option<(&str, f64)>| AliasState {
        version: version.into(),
        additional: extra.map(|(v, w)| (v.to_owned(), w)),
    };
    assert_eq!(
        observe_alias(&alias("6", None), "6", "7"),
        Observed::Ours { percent: 0 }
    );
    assert_eq!(
        observe_alias(&alias("6", Some(("7", 0.1))), "6", "7"),
        Observed::Ours { percent: 10 }
    );
    assert_eq!(
        observe_alias(&alias("7", None), "6", "7"),
        Observed::Ours { percent: 100 }
    );
    // A zero weight is no routing.
    assert_eq!(
        observe_alias(&alias("6", Some(("7", 0.0))), "6", "7"),
        Observed::Ours { percent: 0 }
    );
    for foreign in [
        alias("5", None),
        alias("6", Some(("8", 0.2))),
        alias("7", Some(("8", 0.2))),
    ] {
        assert!(
            matches!(observe_alias(&foreign, "6", "7"), Observed::Foreign { .. }),
            "{foreign:?}"
        );
    }
}

#[test]
fn a_listener_reads_as_the_share_on_green() {
    let w = |pairs: &[(&str, i32)]| -> Vec<(String, i32)> {
        pairs.iter().map(|(a, w)| ((*a).to_owned(), *w)).collect()
    };
    assert_eq!(
        observe_listener(&w(&[("blue", 90), ("green", 10)]), "blue", "green"),
        Observed::Ours { percent: 10 }
    );
    assert_eq!(
        observe_listener(&w(&[("blue", 1)]), "blue", "green"),
        Observed::Ours { percent: 0 }
    );
    assert!(matches!(
        observe_listener(&w(&[("blue", 50), ("other", 50)]), "blue", "green"),
        Observed::Foreign { .. }
    ));
    assert!(matches!(
        observe_listener(&w(&[]), "blue", "green"),
        Observed::Foreign { .. }
    ));
    // A weight-0 stranger takes no traffic.
    assert_eq!(
        observe_listener(&w(&[("blue", 100), ("other", 0)]), "blue", "green"),
        Observed::Ours { percent: 0 }
    );
}

#[test]
fn a_step_moves_forward_to_the_plan() {
    let d = deployment();
    assert_eq!(
        step(&d, Observed::Ours { percent: 0 }, pos(10, false), &[]),
        Step::Shift {
            from: 0,
            to: 10,
            complete: false
        }
    );
    assert_eq!(
        step(&d, Observed::Ours { percent: 10 }, pos(10, false), &[]),
        Step::Hold {
            percent: 10,
            complete: false
        }
    );
    assert_eq!(
        step(&d, Observed::Ours { percent: 10 }, pos(100, true), &[]),
        Step::Shift {
            from: 10,
            to: 100,
            complete: true
        }
    );
    assert_eq!(
        step(&d, Observed::Ours { percent: 100 }, pos(100, true), &[]),
        Step::Hold {
            percent: 100,
            complete: true
        }
    );
}

#[test]
fn traffic_ahead_of_the_record_is_reconciled_not_moved_back() {
    // A crash between the move to 100% and its record: the record says 10%.
    let mut d = deployment();
    d.percent = 10;
    assert_eq!(
        step(&d, Observed::Ours { percent: 100 }, pos(10, false), &[]),
        Step::Hold {
            percent: 100,
            complete: false
        }
    );
}

#[test]
fn a_firing_alarm_rolls_back_before_anything_moves() {
    let mut d = deployment();
    d.percent = 10;
    // Even while another invocation holds a step.
    d.lease = Some(Lease {
        owner: "job-1".into(),
        until_ms: T0 + 10 * 60_000,
        intent: LeaseIntent::Shift { to: 100 },
    });
    assert_eq!(
        step(
            &d,
            Observed::Ours { percent: 10 },
            pos(100, true),
            &[firing("orders-int-latency"), firing("unwatched")]
        ),
        Step::RollBack {
            alarm: "orders-int-latency".into(),
            reason: "orders-int-latency crossed".into()
        }
    );
    // An alarm the deployment does not watch is no reason.
    d.lease = None;
    assert!(matches!(
        step(
            &d,
            Observed::Ours { percent: 10 },
            pos(100, true),
            &[firing("unwatched")]
        ),
        Step::Shift { .. }
    ));
}

#[test]
fn a_held_lease_makes_the_step_wait_until_it_expires() {
    let mut d = deployment();
    d.lease = Some(Lease {
        owner: "job-1".into(),
        until_ms: T0 + 60_001,
        intent: LeaseIntent::Shift { to: 10 },
    });
    assert_eq!(
        step(&d, Observed::Ours { percent: 0 }, pos(10, false), &[]),
        Step::Busy {
            owner: "job-1".into()
        }
    );
    // Expired: the next invocation reconciles and goes on.
    d.lease.as_mut().unwrap().until_ms = T0 + 60_000;
    assert!(matches!(
        step(&d, Observed::Ours { percent: 0 }, pos(10, false), &[]),
        Step::Shift { .. }
    ));
    // Its own lease does not block it.
    d.lease = Some(Lease {
        owner: "job-2".into(),
        until_ms: T0 + 120_000,
        intent: LeaseIntent::Shift { to: 10 },
    });
    assert!(matches!(
        step(&d, Observed::Ours { percent: 0 }, pos(10, false), &[]),
        Step::Shift { .. }
    ));
}

#[test]
fn finished_deployments_do_not_move_and_a_late_step_is_undone() {
    let mut d = deployment();
    d.state = DeploymentState::Succeeded;
    assert_eq!(
        step(
            &d,
            Observed::Ours { percent: 100 },
            pos(100, true),
            &[firing("orders-int-5xx")]
        ),
        Step::Succeeded
    );
    d.state = DeploymentState::RolledBack;
    d.rollback = Some(rollback(true));
    assert_eq!(
        step(&d, Observed::Ours { percent: 0 }, pos(100, true), &[]),
        Step::RolledBack { restore: false }
    );
    // A step that landed after the rollback's move: back to 0.
    assert_eq!(
        step(&d, Observed::Ours { percent: 100 }, pos(100, true), &[]),
        Step::RolledBack { restore: true }
    );
    assert_eq!(
        step(
            &d,
            Observed::Foreign { detail: "x".into() },
            pos(100, true),
            &[]
        ),
        Step::RolledBack { restore: false }
    );
}

#[test]
fn a_foreign_carrier_stops_the_deployment() {
    let d = deployment();
    assert_eq!(
        step(
            &d,
            Observed::Foreign {
                detail: "version 9".into()
            },
            pos(10, false),
            &[]
        ),
        Step::Foreign {
            detail: "version 9".into()
        }
    );
}

#[test]
fn rollbacks_are_claimed_once_finished_once_and_never_on_finished_deployments() {
    let mut d = deployment();
    assert_eq!(rollback_next(&d, "me", T0), RollbackNext::Claim);
    d.state = DeploymentState::Succeeded;
    assert_eq!(rollback_next(&d, "me", T0), RollbackNext::Finished);
    d.state = DeploymentState::RolledBack;
    d.rollback = Some(rollback(true));
    assert_eq!(rollback_next(&d, "me", T0), RollbackNext::AlreadyRolledBack);
    d.rollback = Some(rollback(false));
    d.lease = Some(Lease {
        owner: "other".into(),
        until_ms: T0 + 1,
        intent: LeaseIntent::RollBack,
    });
    assert_eq!(
        rollback_next(&d, "me", T0),
        RollbackNext::InProgress {
            owner: "other".into()
        }
    );
    assert_eq!(rollback_next(&d, "other", T0), RollbackNext::Finish);
    assert_eq!(rollback_next(&d, "me", T0 + 1), RollbackNext::Finish);
    d.lease = None;
    assert_eq!(rollback_next(&d, "me", T0), RollbackNext::Finish);
}

#[test]
fn pending_tasks_run_in_order() {
    let mut r = rollback(false);
    assert_eq!(
        pending(&r),
        [
            RollbackTask::RestoreTraffic,
            RollbackTask::FailJob,
            RollbackTask::NotifyTeam
        ]
    );
    r.traffic_restored = true;
    assert_eq!(
        pending(&r),
        [RollbackTask::FailJob, RollbackTask::NotifyTeam]
    );
    r.job_answered = true;
    r.team_notified = true;
    assert!(pending(&r).is_empty());
}

#[test]
fn only_alarm_transitions_after_the_start_concern_a_deployment() {
    let d = deployment();
    let change = |state: &str, at: i64| AlarmChange {
        account_id: "222222222222".into(),
        alarm: "orders-int-5xx".into(),
        state: state.into(),
        reason: "r".into(),
        state_at_ms: at,
        previous_state: Some("OK".into()),
    };
    assert_eq!(alarm_concerns(&change("ALARM", T0 + 5), &d), Ok(()));
    assert_eq!(
        alarm_concerns(&change("OK", T0 + 5), &d),
        Err(NotForDeployment::NotAlarm { state: "OK".into() })
    );
    assert!(matches!(
        alarm_concerns(&change("INSUFFICIENT_DATA", T0 + 5), &d),
        Err(NotForDeployment::NotAlarm { .. })
    ));
    assert!(matches!(
        alarm_concerns(&change("ALARM", T0 - 1), &d),
        Err(NotForDeployment::Predates { .. })
    ));
}

#[test]
fn the_failure_message_names_the_release_the_alarm_and_the_share() {
    let d = deployment();
    let message = failure_message(&d, &rollback(false));
    assert_eq!(
        message,
        "int: orders 1.4.2 was rolled back at 10% (all traffic is on the previous version again) \
         by alarm: alarm orders-int-5xx is in ALARM: Threshold Crossed: 7 > 1"
    );
    let mut by_hand = rollback(false);
    by_hand.alarm = None;
    by_hand.by = "operator:alice".into();
    by_hand.reason = "bad numbers".into();
    let mut anonymous = d.clone();
    anonymous.application = None;
    assert!(failure_message(&anonymous, &by_hand).contains("release rel-1"));
    assert!(failure_message(&anonymous, &by_hand).ends_with("by operator:alice: bad numbers"));
}

#[test]
fn team_mail_is_configured_per_environment() {
    let env = Env::from_pairs([
        ("SHIPGATE_MAIL_FROM", "shipgate@example.com"),
        ("SHIPGATE_TEAM_EMAIL_INT", "a@example.com, b@example.com"),
        ("SHIPGATE_ENVIRONMENTS", "int,pre-prod"),
        ("SHIPGATE_TEAM_EMAIL_PRE_PROD", "c@example.com"),
    ]);
    let mail = TeamMail::from_env(&env).unwrap();
    assert_eq!(mail.team("int"), ["a@example.com", "b@example.com"]);
    assert_eq!(mail.team("pre-prod"), ["c@example.com"]);
    assert!(mail.team("prod").is_empty());
    assert!(
        TeamMail::from_env(&Env::default())
            .unwrap_err()
            .to_string()
            .contains("SHIPGATE_MAIL_FROM")
    );
    let bad = Env::from_pairs([
        ("SHIPGATE_MAIL_FROM", "shipgate@example.com"),
        ("SHIPGATE_TEAM_EMAIL_INT", "not an address"),
    ]);
    assert!(
        TeamMail::from_env(&bad)
            .unwrap_err()
            .to_string()
            .contains("SHIPGATE_TEAM_EMAIL_INT")
    );
}

#[test]
fn the_email_names_app_version_env_and_alarm_and_escapes_everything() {
    let mut d = deployment();
    d.application = Some("<script>orders</script>".into());
    let mut r = rollback(false);
    r.reason = "5xx > 1% & rising \"fast\"".into();
    let email = rollback_email(
        &d,
        &r,
        "shipgate@example.com",
        &["team@example.com".into()],
        "2027-01-15T08:01:00Z",
    );
    assert_eq!(
        email.subject,
        "[shipgate] Rolled back: <script>orders</script> 1.4.2 in int (alarm orders-int-5xx): \
         alias orders:live"
    );
    assert_eq!(email.to, ["team@example.com"]);
    assert!(!email.html.contains("<script>"));
    assert!(email.html.contains("&lt;script&gt;orders&lt;/script&gt;"));
    assert!(
        email
            .html
            .contains("5xx &gt; 1% &amp; rising &quot;fast&quot;")
    );
    assert!(email.text.contains("Alarm: orders-int-5xx"));
    assert!(email.text.contains("Reason: 5xx > 1% & rising \"fast\""));
    assert!(
        email
            .text
            .contains("Traffic on the new version before: 10%")
    );
    assert!(email.text.contains("all traffic on version 6"));
    // A header cannot be broken by a newline in a value.
    d.version = Some("1.4.2\r\nBcc: x@example.com".into());
    let email = rollback_email(&d, &r, "f@example.com", &[], "t");
    assert!(!email.subject.contains('\n') && !email.subject.contains('\r'));
}

#[test]
fn the_deployments_an_alarm_rolls_back_in_an_environment_make_one_email_naming_each() {
    let team = ["team@example.com".to_owned()];
    let alias = deployment();
    let r = rollback(true);
    // One deployment: the email it always had.
    let one = rollback_digest(&[(&alias, &r)], "shipgate@example.com", &team);
    assert_eq!(
        one,
        rollback_email(&alias, &r, "shipgate@example.com", &team, &rfc3339(r.at_ms))
    );

    let mut listener = ecs_deployment(None);
    listener.deployment_id = deployment_id("rel-1", "int", "exec-2");
    listener.execution_id = "exec-2".into();
    let mut other = deployment();
    other.application = Some("<b>billing</b>".into());
    other.version = Some("2.0.0".into());
    other.deployment_id = deployment_id("rel-2", "int", "exec-3");
    let rolled_back = [(&alias, &r), (&listener, &r), (&other, &r)];
    let email = rollback_digest(&rolled_back, "shipgate@example.com", &team);
    assert_eq!(
        email.subject,
        "[shipgate] Rolled back: 3 deployments in int (alarm orders-int-5xx): orders 1.4.2, \
         <b>billing</b> 2.0.0"
    );
    assert_eq!(email.to, team);
    assert!(
        email
            .text
            .starts_with("3 deployments were rolled back in int")
    );
    for d in [&alias, &listener, &other] {
        assert!(
            email
                .text
                .contains(&format!("Deployment: {}", d.deployment_id)),
            "{}",
            email.text
        );
        assert!(email.html.contains(&d.deployment_id));
    }
    assert!(email.text.contains("orders 1.4.2: alias orders:live"));
    assert!(email.text.contains("orders 1.4.2: load balancer listener"));
    assert!(email.text.contains("ALB listener arn:listener/80"));
    assert!(!email.html.contains("<b>billing"));
    assert!(email.html.contains("&lt;b&gt;billing&lt;/b&gt; 2.0.0"));

    // Rollbacks of several causes (one finished for an operator's): the subject says so.
    let mut by_hand = rollback(true);
    by_hand.alarm = None;
    by_hand.by = "operator:alice".into();
    let email = rollback_digest(
        &[(&alias, &r), (&other, &by_hand)],
        "shipgate@example.com",
        &team,
    );
    assert!(
        email.subject.contains("(several causes)"),
        "{}",
        email.subject
    );
    // Many releases: the subject names three.
    let many: Vec<Deployment> = (0..5)
        .map(|n| {
            let mut d = deployment();
            d.version = Some(format!("1.{n}.0"));
            d
        })
        .collect();
    let pairs: Vec<(&Deployment, &Rollback)> = many.iter().map(|d| (d, &r)).collect();
    let email = rollback_digest(&pairs, "f@example.com", &team);
    assert!(
        email
            .subject
            .ends_with("orders 1.0.0, orders 1.1.0, orders 1.2.0 and 2 more"),
        "{}",
        email.subject
    );
}

fn any_plan() -> impl Strategy<Value = DeploymentPlan> {
    prop_oneof![
        proptest::sample::select(Predefined::ALL.to_vec()).prop_map(DeploymentPlan::predefined),
        Just(
            "custom:10@5m,50@10m,100;bake=15m"
                .parse::<DeploymentPlan>()
                .unwrap()
        ),
        Just(
            "custom:1@1s,2@1s,100;bake=1m;scale=60"
                .parse::<DeploymentPlan>()
                .unwrap()
        ),
    ]
}

proptest! {
    /// Whatever the record, the actual share, the time and the lease: a step never moves traffic
    /// backwards, never beyond the plan, and never moves forward while a watched alarm fires.
    #[test]
    fn a_step_never_moves_back_nor_past_the_plan_nor_through_an_alarm(
        plan in any_plan(),
        elapsed in 0u64..(30 * 3_600_000),
        actual in 0u8..=100,
        recorded in 0u8..=100,
        alarm_fires in any::<bool>(),
        leased in any::<bool>(),
        state in prop_oneof![Just(DeploymentState::Shifting), Just(DeploymentState::Succeeded), Just(DeploymentState::RolledBack)],
    ) {
        let mut d = deployment();
        d.plan = plan.to_string();
        d.percent = recorded;
        d.state = state;
        if state == DeploymentState::RolledBack {
            d.rollback = Some(rollback(true));
        }
        if leased {
            d.lease = Some(Lease { owner: "job-1".into(), until_ms: T0 + 1_000_000_000, intent: LeaseIntent::Shift { to: 50 } });
        }
        let now = T0 as u64 + elapsed;
        let p = position(&plan, T0 as u64, now);
        let alarms = if alarm_fires { vec![firing("orders-int-5xx")] } else { vec![] };
        let decision = decide_step(StepInput {
            deployment: &d,
            observed: &Observed::Ours { percent: actual },
            position: p,
            firing: &alarms,
            owner: "job-2",
            now_ms: now as i64,
        });
        match decision {
            Step::Shift { from, to, complete } => {
                prop_assert_eq!(state, DeploymentState::Shifting);
                prop_assert!(!alarm_fires);
                prop_assert!(!leased);
                prop_assert_eq!(from, actual);
                prop_assert!(to > from);
                prop_assert_eq!(to, p.percent);
                prop_assert_eq!(complete, p.complete);
            }
            Step::Hold { percent, complete } => {
                prop_assert_eq!(percent, actual);
                prop_assert!(!complete || percent == 100);
                prop_assert!(!alarm_fires);
            }
            Step::RollBack { .. } => prop_assert!(alarm_fires && state == DeploymentState::Shifting),
            Step::Busy { .. } => prop_assert!(leased && !alarm_fires),
            Step::RolledBack { restore } => {
                prop_assert_eq!(state, DeploymentState::RolledBack);
                prop_assert_eq!(restore, actual > 0);
            }
            Step::Succeeded => prop_assert_eq!(state, DeploymentState::Succeeded),
            Step::Foreign { .. } => prop_assert!(false, "observed was ours"),
            Step::Drain => prop_assert!(false, "no drain without task sets"),
        }
    }

    /// Running steps one after another at increasing times, applying each, walks the plan's
    /// percents in order and ends complete at 100%: the sequence CodeDeploy documents.
    #[test]
    fn applying_steps_walks_the_plan(plan in any_plan(), ticks in proptest::collection::vec(1u64..600_000, 1..200)) {
        let d = deployment();
        let mut actual = 0u8;
        let mut now = T0 as u64;
        let mut applied = vec![];
        let mut done = false;
        for tick in ticks.iter().copied().chain(std::iter::repeat_n(3_600_000, 30)) {
            let p = position(&plan, T0 as u64, now);
            match decide_step(StepInput { deployment: &d, observed: &Observed::Ours { percent: actual }, position: p, firing: &[], owner: "j", now_ms: now as i64 }) {
                Step::Shift { to, complete, .. } => { actual = to; applied.push(to); done = complete; }
                Step::Hold { complete, .. } => done = complete,
                other => prop_assert!(false, "{other:?}"),
            }
            if done { break; }
            now += tick;
        }
        prop_assert!(done);
        prop_assert_eq!(actual, 100);
        let plan_percents: Vec<u8> = crate::plan::steps(&plan).into_iter().map(|(_, p)| p).collect();
        // Every applied percent is one of the plan's, in increasing order (steps passed between
        // two invocations are skipped, never reordered).
        prop_assert!(applied.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(applied.iter().all(|p| plan_percents.contains(p)));
    }

    /// A rollback decision never acts on a finished deployment and never claims twice.
    #[test]
    fn rollback_decisions_are_safe(
        state in prop_oneof![Just(DeploymentState::Shifting), Just(DeploymentState::Succeeded), Just(DeploymentState::RolledBack)],
        done in any::<bool>(),
        lease_until in proptest::option::of(T0 - 10..T0 + 10),
        owner_is_me in any::<bool>(),
    ) {
        let mut d = deployment();
        d.state = state;
        if state == DeploymentState::RolledBack {
            d.rollback = Some(rollback(done));
        }
        d.lease = lease_until.map(|until_ms| Lease { owner: if owner_is_me { "me".into() } else { "other".into() }, until_ms, intent: LeaseIntent::RollBack });
        let next = rollback_next(&d, "me", T0);
        match next {
            RollbackNext::Claim => prop_assert_eq!(state, DeploymentState::Shifting),
            RollbackNext::Finished => prop_assert_eq!(state, DeploymentState::Succeeded),
            RollbackNext::AlreadyRolledBack => prop_assert!(state == DeploymentState::RolledBack && done),
            RollbackNext::InProgress { .. } => prop_assert!(state == DeploymentState::RolledBack && !done && !owner_is_me && lease_until.is_some_and(|u| u > T0)),
            RollbackNext::Finish => prop_assert!(state == DeploymentState::RolledBack && !done),
        }
    }
}

#[test]
fn blue_is_drained_after_the_delay_in_order_and_each_step_is_decided_from_the_task_sets() {
    let drain = Drain {
        after_ms: T0 + 30_000,
        delay_seconds: 30,
        steps: vec![],
    };
    let d = ecs_deployment(Some(drain.clone()));
    let sets = d.task_sets().unwrap();
    let blue = |status: &str, scale: f64| task_set("ts-blue", status, scale);
    let green = |status: &str| task_set("ts-green", status, 100.0);

    let both = [blue("PRIMARY", 100.0), green("ACTIVE")];
    assert_eq!(
        next_drain_step(sets, &drain, &both, T0),
        DrainNext::Wait {
            until_ms: T0 + 30_000
        }
    );
    let at = T0 + 30_000;
    assert_eq!(
        next_drain_step(sets, &drain, &both, at),
        DrainNext::Apply(DrainStep::ScaleIn)
    );
    // Scaled in (recorded or not: a crash between the call and its record changes nothing).
    let scaled = [blue("PRIMARY", 0.0), green("ACTIVE")];
    assert_eq!(
        next_drain_step(sets, &drain, &scaled, at),
        DrainNext::Apply(DrainStep::Promote)
    );
    let promoted = [blue("ACTIVE", 0.0), green("PRIMARY")];
    assert_eq!(
        next_drain_step(sets, &drain, &promoted, at),
        DrainNext::Apply(DrainStep::Delete)
    );
    // Being deleted counts as gone.
    for gone in [
        vec![green("PRIMARY")],
        vec![blue("DRAINING", 0.0), green("PRIMARY")],
    ] {
        assert_eq!(next_drain_step(sets, &drain, &gone, at), DrainNext::Done);
    }
    // Green gone while it carries all the traffic: stop, touch nothing.
    assert!(matches!(
        next_drain_step(sets, &drain, &[blue("PRIMARY", 100.0)], at),
        DrainNext::Broken { .. }
    ));
    // A first release has no blue: promote, then done.
    let mut first = sets.clone();
    first.blue_task_set = None;
    assert_eq!(
        next_drain_step(&first, &drain, &[green("ACTIVE")], at),
        DrainNext::Apply(DrainStep::Promote)
    );
    assert_eq!(
        next_drain_step(&first, &drain, &[green("PRIMARY")], at),
        DrainNext::Done
    );
}

#[test]
fn a_draining_deployment_moves_no_traffic_and_an_alarm_no_longer_rolls_it_back() {
    let d = ecs_deployment(Some(Drain {
        after_ms: T0,
        delay_seconds: 0,
        steps: vec![],
    }));
    let step = decide_step(StepInput {
        deployment: &d,
        observed: &Observed::Ours { percent: 100 },
        position: pos(100, true),
        firing: &[firing("orders-int-5xx")],
        owner: "job-2",
        now_ms: T0,
    });
    assert_eq!(step, Step::Drain);
    assert_eq!(rollback_next(&d, "rollback", T0), RollbackNext::Finished);
    // Before the bake is over, an ECS deployment rolls back like any other.
    let shifting = ecs_deployment(None);
    assert_eq!(
        rollback_next(&shifting, "rollback", T0),
        RollbackNext::Claim
    );
}

#[test]
fn the_drain_waits_the_delay_compressed_by_the_plans_scale() {
    assert_eq!(drain_after(T0, 30, 1), T0 + 30_000);
    assert_eq!(drain_after(T0, 30, 60), T0 + 500);
    assert_eq!(drain_after(T0, 300, 0), T0 + 300_000);
}

#[test]
fn a_deployment_record_with_task_sets_and_a_drain_round_trips_and_older_records_read() {
    let mut d = ecs_deployment(Some(Drain {
        after_ms: T0,
        delay_seconds: 30,
        steps: vec![crate::store::AppliedDrainStep {
            step: DrainStep::ScaleIn,
            at_ms: T0,
        }],
    }));
    d.lease = Some(Lease {
        owner: "job".into(),
        until_ms: T0,
        intent: LeaseIntent::Drain {
            step: DrainStep::Promote,
        },
    });
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        json["target"]["task_sets"]["drain"]["steps"][0]["step"],
        "scale_in"
    );
    assert_eq!(serde_json::from_value::<Deployment>(json).unwrap(), d);
    // A listener deployment written before task sets existed.
    let mut old = serde_json::to_value(ecs_deployment(None)).unwrap();
    old["target"].as_object_mut().unwrap().remove("task_sets");
    let read: Deployment = serde_json::from_value(old).unwrap();
    assert!(read.task_sets().is_none() && read.drain().is_none());
}

#[test]
fn a_deployers_config_has_defaults_and_refuses_what_cannot_work() {
    let env = Env::from_pairs([
        ("SHIPGATE_TABLE", "t"),
        ("SHIPGATE_MAIL_FROM", "shipgate@example.com"),
        ("SHIPGATE_TEAM_EMAIL_INT", "team@example.com"),
    ]);
    let c = DeployerConfig::from_env(&env).unwrap();
    assert_eq!(c.table, "t");
    assert_eq!(c.mail.team("int"), ["team@example.com"]);
    assert!(c.mail.team("stg").is_empty());
    assert_eq!(c.lease_seconds, 120);
    let err =
        DeployerConfig::from_env(&Env::from_pairs([("SHIPGATE_MAIL_FROM", "a@b.c")])).unwrap_err();
    assert!(err.to_string().contains("SHIPGATE_TABLE"), "{err}");
    let mut zero = env.clone();
    zero.set("SHIPGATE_DEPLOYMENT_LEASE_SECONDS", "0");
    let err = DeployerConfig::from_env(&zero).unwrap_err();
    assert!(
        err.to_string()
            .contains("SHIPGATE_DEPLOYMENT_LEASE_SECONDS"),
        "{err}"
    );
}
