//! ECS blue/green: the new version placed as a task set behind the idle target group, and the
//! test listener pointed at it, before the checks run. Pure: what the stack outputs ask for
//! ([`EcsOutputs`]) and what to do next given the service's task sets and the listeners
//! ([`decide_green`]).
//!
//! The service's deployment controller is `EXTERNAL`: CloudFormation owns the service and a new
//! task definition revision per release, shipgate the task sets. The task set carries the
//! release id as its `externalId`, so every invocation finds it again from ECS itself (a crash
//! after `CreateTaskSet` creates no second one); its target group says whether it is green
//! (the idle one) or already live.

use std::collections::BTreeMap;

use shipgate::aws::ecs::TaskSetView;
use shipgate::aws::elbv2::forwards_only_to;

/// The stack outputs that make a release an ECS blue/green deployment (`ShipgateService`
/// present), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsOutputs {
    pub cluster: String,
    pub service: String,
    pub task_definition: String,
    pub container_name: String,
    pub container_port: i32,
    pub prod_listener: String,
    pub test_listener: String,
    pub blue_target_group: String,
    pub green_target_group: String,
    /// `ShipgateLaunchType` (`FARGATE`, `EC2`, …); ECS's default when absent.
    pub launch_type: Option<String>,
    /// `ShipgateSubnets`, `ShipgateSecurityGroups` (comma-separated): the `awsvpc` network of
    /// the task set. An `EXTERNAL` service has none of its own: each task set names it.
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
}

/// The outputs an ECS release needs besides `ShipgateService`.
const REQUIRED: [&str; 8] = [
    "ShipgateCluster",
    "ShipgateTaskDefinition",
    "ShipgateContainerName",
    "ShipgateContainerPort",
    "ShipgateProdListener",
    "ShipgateTestListener",
    "ShipgateBlueTargetGroup",
    "ShipgateGreenTargetGroup",
];

impl EcsOutputs {
    /// `Ok(None)`: the stacks name no ECS service (a Lambda release, or a listener-only one).
    /// `Err`: they name one but not everything its task set needs, said by name.
    pub fn from_variables(
        environment: &str,
        variables: &BTreeMap<String, String>,
    ) -> Result<Option<Self>, String> {
        let get = |key: &str| {
            variables
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let Some(service) = get("ShipgateService") else {
            return Ok(None);
        };
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|key| get(key).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{environment}: the stacks output ShipgateService ({service}), so the new \
                 version is placed as an ECS task set, which also needs the outputs {}; add \
                 them to the release's templates",
                missing.join(", ")
            ));
        }
        let required = |key: &str| get(key).unwrap_or_default().to_owned();
        let port = required("ShipgateContainerPort");
        let container_port = port
            .parse::<i32>()
            .ok()
            .filter(|p| (1..=65535).contains(p))
            .ok_or_else(|| {
                format!(
                    "{environment}: the output ShipgateContainerPort is {port:?}: expected the \
                     container's port, 1 to 65535"
                )
            })?;
        let list = |key: &str| -> Vec<String> {
            get(key)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let outputs = Self {
            cluster: required("ShipgateCluster"),
            service: service.to_owned(),
            task_definition: required("ShipgateTaskDefinition"),
            container_name: required("ShipgateContainerName"),
            container_port,
            prod_listener: required("ShipgateProdListener"),
            test_listener: required("ShipgateTestListener"),
            blue_target_group: required("ShipgateBlueTargetGroup"),
            green_target_group: required("ShipgateGreenTargetGroup"),
            launch_type: get("ShipgateLaunchType").map(str::to_owned),
            subnets: list("ShipgateSubnets"),
            security_groups: list("ShipgateSecurityGroups"),
        };
        if outputs.blue_target_group == outputs.green_target_group {
            return Err(format!(
                "{environment}: the outputs ShipgateBlueTargetGroup and \
                 ShipgateGreenTargetGroup name the same target group: blue/green needs two"
            ));
        }
        if outputs.prod_listener == outputs.test_listener {
            return Err(format!(
                "{environment}: the outputs ShipgateProdListener and ShipgateTestListener name \
                 the same listener: the checks need a listener of their own"
            ));
        }
        Ok(Some(outputs))
    }
}

/// What the deploy action knows about green at one moment.
#[derive(Debug, Clone, Copy)]
pub struct GreenInput<'a> {
    pub release_id: &'a str,
    /// The target group carrying the production traffic, and the other one.
    pub live_target_group: &'a str,
    pub idle_target_group: &'a str,
    pub task_sets: &'a [TaskSetView],
    /// The test listener's weights now.
    pub test_listener: &'a [(String, i32)],
    pub now_ms: i64,
    /// How long green may take to reach a steady state after its last change.
    pub timeout_ms: i64,
}

/// The next thing to do for green.
#[derive(Debug, Clone, PartialEq)]
pub enum GreenStep {
    /// The release's task set serves the live target group: it is live already.
    AlreadyLive { green: TaskSetView },
    /// No task set of this release yet: create it behind the idle target group.
    Create,
    /// It exists at less than 100% (scaled in by a rollback of an earlier run): scale it up.
    ScaleUp { green: TaskSetView },
    /// The test listener does not forward to the idle target group alone: point it there.
    PointTestListener,
    /// Tasks still starting or registering: look again later.
    Wait { green: TaskSetView },
    /// Not steady within the bound since its last change.
    TimedOut { green: TaskSetView, waited_ms: i64 },
    /// Steady behind the idle target group, the test listener on it. `blue`: the service's
    /// primary task set (the previous version), if any; `stale`: task sets of earlier releases
    /// that carry no tasks (scaled in by a rollback) and are left over, to delete.
    Ready {
        green: TaskSetView,
        blue: Option<TaskSetView>,
        stale: Vec<TaskSetView>,
    },
    /// Something this action must not touch.
    Refuse { reason: String },
}

/// Decides green's next step from the service's task sets and the test listener as they are.
pub fn decide_green(input: GreenInput<'_>) -> GreenStep {
    let ours: Vec<&TaskSetView> = input
        .task_sets
        .iter()
        .filter(|t| !t.is_draining() && t.external_id.as_deref() == Some(input.release_id))
        .collect();
    if let Some(live) = ours.iter().find(|t| t.serves(input.live_target_group)) {
        return GreenStep::AlreadyLive {
            green: (*live).clone(),
        };
    }
    let Some(green) = ours.iter().find(|t| t.serves(input.idle_target_group)) else {
        return match ours.first() {
            Some(other) => GreenStep::Refuse {
                reason: format!(
                    "task set {} of this release serves neither target group ({}); delete it \
                     or fix the outputs, then retry the stage",
                    other.arn,
                    other.target_groups.join(", ")
                ),
            },
            None => GreenStep::Create,
        };
    };
    let green = (*green).clone();
    if green.scale_percent < 100.0 {
        return GreenStep::ScaleUp { green };
    }
    if !forwards_only_to(input.test_listener, input.idle_target_group) {
        return GreenStep::PointTestListener;
    }
    let running = green.steady && green.running_count >= green.computed_desired_count;
    if !running {
        let waited_ms = green
            .updated_at_ms
            .map_or(0, |at| input.now_ms.saturating_sub(at));
        if waited_ms >= input.timeout_ms {
            return GreenStep::TimedOut { green, waited_ms };
        }
        return GreenStep::Wait { green };
    }
    let others: Vec<&TaskSetView> = input
        .task_sets
        .iter()
        .filter(|t| t.arn != green.arn && !t.is_draining())
        .collect();
    let blue = others
        .iter()
        .find(|t| t.is_primary())
        .or_else(|| {
            others
                .iter()
                .find(|t| t.serves(input.live_target_group) && t.scale_percent > 0.0)
        })
        .map(|t| (*t).clone());
    let stale = others
        .iter()
        .filter(|t| {
            !t.is_primary()
                && t.scale_percent <= 0.0
                && blue.as_ref().is_none_or(|b| b.arn != t.arn)
        })
        .map(|t| (*t).clone())
        .collect();
    GreenStep::Ready { green, blue, stale }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "arn:tg/blue";
    const IDLE: &str = "arn:tg/green";

    fn set(arn: &str, external: &str, status: &str, tg: &str) -> TaskSetView {
        TaskSetView {
            arn: arn.into(),
            id: arn.into(),
            external_id: Some(external.into()),
            status: status.into(),
            steady: true,
            scale_percent: 100.0,
            computed_desired_count: 2,
            running_count: 2,
            pending_count: 0,
            task_definition: "orders-int:1".into(),
            target_groups: vec![tg.into()],
            updated_at_ms: Some(0),
        }
    }

    fn input<'a>(sets: &'a [TaskSetView], test: &'a [(String, i32)]) -> GreenInput<'a> {
        GreenInput {
            release_id: "rel-2",
            live_target_group: LIVE,
            idle_target_group: IDLE,
            task_sets: sets,
            test_listener: test,
            now_ms: 60_000,
            timeout_ms: 900_000,
        }
    }

    fn on_idle() -> Vec<(String, i32)> {
        vec![(IDLE.to_owned(), 1)]
    }

    #[test]
    fn green_is_created_then_the_test_listener_pointed_then_it_is_ready_with_blue() {
        let blue = set("ts-1", "rel-1", "PRIMARY", LIVE);
        let test_on_live = vec![(LIVE.to_owned(), 1)];
        assert_eq!(
            decide_green(input(std::slice::from_ref(&blue), &test_on_live)),
            GreenStep::Create
        );
        let green = set("ts-2", "rel-2", "ACTIVE", IDLE);
        let sets = [blue.clone(), green.clone()];
        assert_eq!(
            decide_green(input(&sets, &test_on_live)),
            GreenStep::PointTestListener
        );
        assert_eq!(
            decide_green(input(&sets, &on_idle())),
            GreenStep::Ready {
                green,
                blue: Some(blue),
                stale: vec![]
            }
        );
    }

    #[test]
    fn green_waits_for_its_tasks_within_the_bound() {
        let mut green = set("ts-2", "rel-2", "ACTIVE", IDLE);
        green.steady = false;
        green.running_count = 0;
        let sets = [set("ts-1", "rel-1", "PRIMARY", LIVE), green.clone()];
        assert_eq!(
            decide_green(input(&sets, &on_idle())),
            GreenStep::Wait {
                green: green.clone()
            }
        );
        let test = on_idle();
        let mut late = input(&sets, &test);
        late.now_ms = 900_000;
        assert!(matches!(
            decide_green(late),
            GreenStep::TimedOut {
                waited_ms: 900_000,
                ..
            }
        ));
        // Steady but not every task running yet (ECS says steady only once they are; a stand-in
        // may not): still waiting.
        let mut partial = green;
        partial.steady = true;
        partial.running_count = 1;
        let sets = [set("ts-1", "rel-1", "PRIMARY", LIVE), partial];
        assert!(matches!(
            decide_green(input(&sets, &on_idle())),
            GreenStep::Wait { .. }
        ));
    }

    #[test]
    fn the_releases_task_set_on_the_live_group_is_live_already() {
        let sets = [set("ts-2", "rel-2", "PRIMARY", LIVE)];
        assert!(matches!(
            decide_green(input(&sets, &on_idle())),
            GreenStep::AlreadyLive { .. }
        ));
    }

    #[test]
    fn a_task_set_scaled_in_by_a_rollback_is_scaled_up_and_leftovers_are_stale() {
        let mut again = set("ts-2", "rel-2", "ACTIVE", IDLE);
        again.scale_percent = 0.0;
        let blue = set("ts-1", "rel-1", "PRIMARY", LIVE);
        let sets = [blue.clone(), again.clone()];
        assert!(matches!(
            decide_green(input(&sets, &on_idle())),
            GreenStep::ScaleUp { .. }
        ));
        let mut leftover = set("ts-0", "rel-0", "ACTIVE", IDLE);
        leftover.scale_percent = 0.0;
        let mut draining = set("ts-9", "rel-9", "DRAINING", IDLE);
        draining.scale_percent = 0.0;
        let green = set("ts-2", "rel-2", "ACTIVE", IDLE);
        let sets = [blue.clone(), green.clone(), leftover.clone(), draining];
        assert_eq!(
            decide_green(input(&sets, &on_idle())),
            GreenStep::Ready {
                green,
                blue: Some(blue),
                stale: vec![leftover]
            }
        );
    }

    #[test]
    fn a_first_release_has_no_blue_and_a_stray_task_set_is_refused() {
        let green = set("ts-2", "rel-2", "PRIMARY", IDLE);
        assert!(matches!(
            decide_green(input(std::slice::from_ref(&green), &on_idle())),
            GreenStep::Ready { blue: None, .. }
        ));
        let stray = set("ts-2", "rel-2", "ACTIVE", "arn:tg/other");
        assert!(matches!(
            decide_green(input(&[stray], &on_idle())),
            GreenStep::Refuse { reason } if reason.contains("neither target group")
        ));
    }

    fn outputs() -> BTreeMap<String, String> {
        [
            ("ShipgateCluster", "shipgate-int"),
            (
                "ShipgateService",
                "arn:aws:ecs:eu-west-1:2:service/shipgate-int/orders",
            ),
            (
                "ShipgateTaskDefinition",
                "arn:aws:ecs:eu-west-1:2:task-definition/orders-int:3",
            ),
            ("ShipgateContainerName", "web"),
            ("ShipgateContainerPort", "8080"),
            ("ShipgateProdListener", "arn:listener/80"),
            ("ShipgateTestListener", "arn:listener/9000"),
            ("ShipgateBlueTargetGroup", LIVE),
            ("ShipgateGreenTargetGroup", IDLE),
            ("ShipgateSubnets", "subnet-a, subnet-b"),
            ("ShipgateSecurityGroups", "sg-1"),
            ("ShipgateLaunchType", "FARGATE"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn the_outputs_name_the_service_and_everything_its_task_set_needs() {
        let ecs = EcsOutputs::from_variables("int", &outputs())
            .unwrap()
            .unwrap();
        assert_eq!(ecs.container_port, 8080);
        assert_eq!(ecs.subnets, ["subnet-a", "subnet-b"]);
        assert_eq!(ecs.launch_type.as_deref(), Some("FARGATE"));

        let mut lambda = outputs();
        lambda.remove("ShipgateService");
        assert_eq!(EcsOutputs::from_variables("int", &lambda), Ok(None));

        let mut missing = outputs();
        missing.remove("ShipgateContainerName");
        missing.remove("ShipgateTestListener");
        let err = EcsOutputs::from_variables("int", &missing).unwrap_err();
        assert!(
            err.contains("ShipgateContainerName, ShipgateTestListener"),
            "{err}"
        );

        let mut port = outputs();
        port.insert("ShipgateContainerPort".into(), "http".into());
        assert!(
            EcsOutputs::from_variables("int", &port)
                .unwrap_err()
                .contains("ShipgateContainerPort")
        );
    }
}
