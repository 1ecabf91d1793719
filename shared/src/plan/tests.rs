//! Plans tell CodeDeploy's documented story, and `position` keeps its promises for any plan.

use proptest::prelude::*;

use super::*;

const T0: EpochMillis = 1_795_687_200_000;
const MIN: u64 = 60_000;

fn plan(spec: &str) -> DeploymentPlan {
    spec.parse().unwrap()
}

/// CodeDeploy's documented schedule for each predefined plan, as its name tells it:
/// (minutes from start, percent).
fn documented(which: Predefined) -> Vec<(u64, u8)> {
    let name = which.name();
    let minutes = |prefix: &str| -> u64 {
        let rest = name.strip_prefix(prefix).expect("a canary or linear name");
        let number = rest.trim_end_matches("Minutes").trim_end_matches("Minute");
        number.parse().expect("whole minutes")
    };
    if name == "AllAtOnce" {
        vec![(0, 100)]
    } else if name.starts_with("Canary") {
        let m = minutes("Canary10Percent");
        vec![(0, 10), (m, 100)]
    } else {
        let m = minutes("Linear10PercentEvery");
        (0..10u64).map(|i| (i * m, (i as u8 + 1) * 10)).collect()
    }
}

#[test]
fn each_predefined_plan_follows_codedeploys_schedule_with_and_without_scale() {
    for which in Predefined::ALL {
        for scale in [1u32, 60] {
            let plan = DeploymentPlan::predefined(which).with_scale(scale).unwrap();
            let unit = MIN / u64::from(scale);
            let expected: Vec<(u64, u8)> = documented(which)
                .into_iter()
                .map(|(m, p)| (m * unit, p))
                .collect();
            assert_eq!(steps(&plan), expected, "{which:?} scale {scale}");

            for (i, &(at, percent)) in expected.iter().enumerate() {
                let pos = position(&plan, T0, T0 + at);
                assert_eq!((pos.percent, pos.step), (percent, i), "{which:?} at {at}");
                if at > 0 {
                    // One millisecond earlier the previous step is still in force.
                    let before = position(&plan, T0, T0 + at - 1);
                    assert_eq!(before.percent, expected[i - 1].1);
                    assert_eq!(before.next_wake, Some(T0 + at));
                }
            }
            let (end, _) = expected[expected.len() - 1];
            let done = position(&plan, T0, T0 + end);
            assert!(done.complete && done.next_wake.is_none(), "{which:?}");
            assert_eq!(plan.total_ms(), end);
        }
    }
}

#[test]
fn canary_holds_ten_percent_for_five_minutes_then_goes_to_full() {
    let plan = plan("Canary10Percent5Minutes");
    let start = position(&plan, T0, T0);
    assert_eq!(start.percent, 10);
    assert_eq!(start.next_wake, Some(T0 + 5 * MIN));
    assert!(!start.complete);
    assert_eq!(position(&plan, T0, T0 + 5 * MIN - 1).percent, 10);
    assert_eq!(position(&plan, T0, T0 + 5 * MIN).percent, 100);
}

#[test]
fn a_demo_scale_of_sixty_turns_minutes_into_seconds() {
    let plan = plan("Linear10PercentEvery1Minute;scale=60");
    assert_eq!(position(&plan, T0, T0 + 999).percent, 10);
    assert_eq!(position(&plan, T0, T0 + 1_000).percent, 20);
    assert_eq!(position(&plan, T0, T0 + 9_000).percent, 100);
    assert!(position(&plan, T0, T0 + 9_000).complete);
}

#[test]
fn bake_keeps_the_plan_open_after_full_traffic() {
    let plan = plan("AllAtOnce;bake=10m");
    let start = position(&plan, T0, T0);
    assert_eq!((start.percent, start.complete), (100, false));
    assert_eq!(start.next_wake, Some(T0 + 10 * MIN));
    assert!(position(&plan, T0, T0 + 10 * MIN).complete);
    // Without a bake, all at once is done the moment it starts.
    assert!(position(&self::plan("AllAtOnce"), T0, T0).complete);
}

#[test]
fn a_call_before_the_start_counts_as_the_start() {
    let plan = plan("custom:5@1m,100");
    let early = position(&plan, T0, T0 - 30_000);
    assert_eq!((early.percent, early.step), (5, 0));
    assert_eq!(early.next_wake, Some(T0 + MIN));
}

#[test]
fn steps_with_no_hold_are_passed_together() {
    let plan = plan("custom:10,20@1m,100");
    assert_eq!(steps(&plan), vec![(0, 10), (0, 20), (MIN, 100)]);
    let start = position(&plan, T0, T0);
    assert_eq!((start.percent, start.step), (20, 1));
}

#[test]
fn codedeploy_lambda_and_ecs_names_and_short_forms_all_parse() {
    let cases = [
        ("AllAtOnce", Predefined::AllAtOnce),
        ("CodeDeployDefault.LambdaAllAtOnce", Predefined::AllAtOnce),
        ("CodeDeployDefault.ECSAllAtOnce", Predefined::AllAtOnce),
        (
            "CodeDeployDefault.LambdaCanary10Percent5Minutes",
            Predefined::Canary10Percent5Minutes,
        ),
        (
            "CodeDeployDefault.ECSCanary10Percent15Minutes",
            Predefined::Canary10Percent15Minutes,
        ),
        (
            "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
            Predefined::Linear10PercentEvery1Minute,
        ),
        (
            "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
            Predefined::Linear10PercentEvery1Minute,
        ),
        (
            "CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
            Predefined::Linear10PercentEvery3Minutes,
        ),
        (
            "LambdaLinear10PercentEvery10Minutes",
            Predefined::Linear10PercentEvery10Minutes,
        ),
    ];
    for (name, which) in cases {
        assert_eq!(plan(name).kind(), PlanKind::Predefined(which), "{name}");
    }
    for which in Predefined::ALL {
        assert_eq!(Predefined::from_name(which.name()), Some(which));
        assert_eq!(
            Predefined::from_name(&format!("CodeDeployDefault.Lambda{}", which.name())),
            Some(which)
        );
    }
}

#[test]
fn the_spec_form_is_the_serde_form() {
    let plan = plan("custom:10@5m,50@90s,100;bake=1h;scale=60");
    assert_eq!(plan.to_string(), "custom:10@5m,50@90s,100;bake=1h;scale=60");
    let json = serde_json::to_string(&plan).unwrap();
    assert_eq!(json, "\"custom:10@5m,50@90s,100;bake=1h;scale=60\"");
    assert_eq!(serde_json::from_str::<DeploymentPlan>(&json).unwrap(), plan);
    assert!(serde_json::from_str::<DeploymentPlan>("\"custom:50,10,100\"").is_err());
}

#[test]
fn invalid_plans_are_refused_with_the_reason() {
    let cases: &[(&str, PlanError)] = &[
        (
            "Canary10Percent7Minutes",
            PlanError::UnknownPlan("Canary10Percent7Minutes".into()),
        ),
        ("", PlanError::UnknownPlan(String::new())),
        ("custom:", PlanError::NoSteps),
        (
            "custom:10@5m,50",
            PlanError::DoesNotReachFull { percent: 50 },
        ),
        (
            "custom:50,20,100",
            PlanError::NotIncreasing {
                step: 2,
                percent: 20,
                previous: 50,
            },
        ),
        (
            "custom:50,50,100",
            PlanError::NotIncreasing {
                step: 2,
                percent: 50,
                previous: 50,
            },
        ),
        (
            "custom:0,100",
            PlanError::PercentOutOfRange {
                step: 1,
                percent: 0,
            },
        ),
        (
            "custom:10,101",
            PlanError::PercentOutOfRange {
                step: 2,
                percent: 101,
            },
        ),
        (
            "custom:10,300",
            PlanError::PercentOutOfRange {
                step: 2,
                percent: 300,
            },
        ),
        (
            "custom:ten,100",
            PlanError::BadStep {
                step: 1,
                text: "ten".into(),
            },
        ),
        ("custom:10@5,100", PlanError::BadDuration("5".into())),
        ("custom:10@5d,100", PlanError::BadDuration("5d".into())),
        ("custom:10@-5m,100", PlanError::BadDuration("-5m".into())),
        (
            "custom:10@99999999999999999999h,100",
            PlanError::BadDuration("99999999999999999999h".into()),
        ),
        (
            "custom:10,100@5m",
            PlanError::WaitAfterFull { wait_ms: 5 * MIN },
        ),
        (
            "custom:10@25h,100",
            PlanError::TooLong {
                total_ms: 25 * 60 * MIN,
            },
        ),
        (
            "AllAtOnce;bake=25h",
            PlanError::TooLong {
                total_ms: 25 * 60 * MIN,
            },
        ),
        ("AllAtOnce;scale=0", PlanError::BadScale("0".into())),
        ("AllAtOnce;scale=fast", PlanError::BadScale("fast".into())),
        ("AllAtOnce;speed=2", PlanError::BadOption("speed=2".into())),
        (
            "AllAtOnce;bake=1m;bake=2m",
            PlanError::BadOption("bake=2m".into()),
        ),
    ];
    for (spec, expected) in cases {
        assert_eq!(
            spec.parse::<DeploymentPlan>().as_ref(),
            Err(expected),
            "{spec}"
        );
    }
    assert_eq!(DeploymentPlan::custom(vec![]), Err(PlanError::NoSteps));
    assert_eq!(
        DeploymentPlan::custom(vec![TrafficStep {
            percent: 0,
            wait_ms: 0
        }]),
        Err(PlanError::PercentOutOfRange {
            step: 1,
            percent: 0
        })
    );
}

#[test]
fn error_messages_say_what_to_do() {
    let e = "custom:10,100@5m".parse::<DeploymentPlan>().unwrap_err();
    assert!(e.to_string().contains(";bake=5m"), "{e}");
    let e = "custom:10@25h,100".parse::<DeploymentPlan>().unwrap_err();
    assert!(
        e.to_string().contains("25h") && e.to_string().contains("24h"),
        "{e}"
    );
}

#[test]
fn weights_for_lambda_aliases_and_alb_listeners() {
    assert_eq!(alias_weight(0), 0.0);
    assert_eq!(alias_weight(10), 0.1);
    assert_eq!(alias_weight(100), 1.0);
    assert_eq!(alias_weight(200), 1.0);
    assert_eq!(listener_weights(0), (100, 0));
    assert_eq!(listener_weights(30), (70, 30));
    assert_eq!(listener_weights(100), (0, 100));
    assert_eq!(listener_weights(255), (0, 100));
}

/// Valid custom plans: distinct increasing percents ending at 100, holds up to 10 minutes, a bake
/// up to 10 minutes, and a scale up to 100 (which exercises rounding of the offsets).
fn custom_plan() -> impl Strategy<Value = DeploymentPlan> {
    (
        proptest::collection::btree_set(1u8..100, 0..8),
        proptest::collection::vec(0u64..=10 * MIN, 9),
        0u64..=10 * MIN,
        1u32..=100,
    )
        .prop_map(|(percents, waits, bake, scale)| {
            let mut steps: Vec<TrafficStep> = percents
                .into_iter()
                .zip(waits)
                .map(|(percent, wait_ms)| TrafficStep { percent, wait_ms })
                .collect();
            steps.push(TrafficStep {
                percent: 100,
                wait_ms: 0,
            });
            DeploymentPlan::custom(steps)
                .and_then(|p| p.with_bake_ms(bake))
                .and_then(|p| p.with_scale(scale))
                .unwrap()
        })
}

proptest! {
    #[test]
    fn weight_never_goes_down_as_time_passes(
        plan in custom_plan(),
        start in 0u64..1 << 45,
        a in 0u64..8_000_000,
        b in 0u64..8_000_000,
    ) {
        let (early, late) = (a.min(b), a.max(b));
        let p1 = position(&plan, start, start + early);
        let p2 = position(&plan, start, start + late);
        prop_assert!(p1.percent <= p2.percent);
        prop_assert!(p1.step <= p2.step);
        prop_assert!(!p1.complete || p2.complete);
        // Asking twice gives the same answer.
        prop_assert_eq!(p1, position(&plan, start, start + early));
    }

    #[test]
    fn the_plan_starts_at_its_first_step(plan in custom_plan(), start in 0u64..1 << 45) {
        let first = plan.traffic_steps()[0];
        let pos = position(&plan, start, start);
        // Steps with no hold are passed together, so only a held first step is in force alone.
        if first.wait_ms / u64::from(plan.scale()) > 0 || plan.traffic_steps().len() == 1 {
            prop_assert_eq!(pos.percent, first.percent);
            prop_assert_eq!(pos.step, 0);
        } else {
            prop_assert!(pos.percent >= first.percent);
        }
    }

    #[test]
    fn a_plan_is_complete_at_full_traffic_after_its_duration_and_bake(
        plan in custom_plan(),
        start in 0u64..1 << 45,
        extra in 0u64..1_000_000,
    ) {
        let pos = position(&plan, start, start + plan.total_ms() + extra);
        prop_assert!(pos.complete);
        prop_assert_eq!(pos.percent, 100);
        prop_assert_eq!(pos.step, plan.traffic_steps().len() - 1);
        prop_assert_eq!(pos.next_wake, None);
    }

    #[test]
    fn the_weight_changes_only_at_wake_ups(
        plan in custom_plan(),
        start in 0u64..1 << 45,
        now in 0u64..8_000_000,
        within in 0.0f64..1.0,
    ) {
        let now = start + now;
        let pos = position(&plan, start, now);
        if let Some(wake) = pos.next_wake {
            prop_assert!(wake > now);
            let between = now + ((wake - now - 1) as f64 * within) as u64;
            let held = position(&plan, start, between);
            prop_assert_eq!((held.percent, held.step, held.complete), (pos.percent, pos.step, false));
            prop_assert_eq!(held.next_wake, Some(wake));
            // At the wake-up, something happens: a later step or the end of the bake.
            let woken = position(&plan, start, wake);
            prop_assert!(woken.step > pos.step || woken.complete);
        } else {
            prop_assert!(pos.complete);
        }
    }

    #[test]
    fn the_display_form_parses_back(plan in custom_plan()) {
        prop_assert_eq!(plan.to_string().parse::<DeploymentPlan>(), Ok(plan));
    }

    #[test]
    fn no_spec_makes_parsing_panic(spec in ".{0,40}", tail in "(custom:|;bake=|;scale=)[0-9@,msh;]{0,20}") {
        let _ = spec.parse::<DeploymentPlan>();
        let _ = format!("custom:{spec}").parse::<DeploymentPlan>();
        let _ = format!("AllAtOnce{tail}").parse::<DeploymentPlan>();
    }
}
