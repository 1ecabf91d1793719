//! The action's `UserParameters`, checked, and the target they name, read from what the deploy
//! action recorded for the stage ([`StageTargets`]). Pure.
//!
//! The parameters carry only short, bounded values (the stage, the plan, the deployment's name
//! and the kind of target): CodePipeline holds each action configuration value to 1,000
//! characters, and the listeners', target groups' and service's ARNs resolved into them would
//! exceed it. Those come from the deploy action's record instead.

use serde::Deserialize;
use shipgate::job::ParameterError;
use shipgate::job::parameters::{self as fields, Stage, StageParameters};
use shipgate::plan::DeploymentPlan;
use shipgate::store::StageTargets;

/// `UserParameters`, as the pipeline template writes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionParameters {
    #[serde(flatten)]
    pub stage: StageParameters,
    /// `Canary10Percent5Minutes`, `custom:10@5m,50@10m,100;bake=15m;scale=60`, …
    pub plan: String,
    /// The deployment's name within the stage, when a stage moves several targets side by side
    /// (the listener and a Lambda alias): part of the deployment's id. Without it the id is the
    /// stage's, which the deploy action records the stage's targets and ECS task sets under.
    #[serde(default)]
    pub name: Option<String>,
    /// What carries the traffic: `alb_listener` or `lambda_alias`.
    pub target: TargetKind,
}

/// What carries the traffic, as the parameters name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// The function of `ShipgateLambdaFunction`: its alias (`ShipgateLambdaAlias`, `live` by
    /// default) moves to the published version `ShipgateLambdaVersion`.
    LambdaAlias,
    /// `ShipgateProdListener` between `ShipgateBlueTargetGroup` and `ShipgateGreenTargetGroup`.
    AlbListener,
}

impl TargetKind {
    const NAMES: [&str; 2] = ["alb_listener", "lambda_alias"];

    fn name(self) -> &'static str {
        match self {
            TargetKind::AlbListener => Self::NAMES[0],
            TargetKind::LambdaAlias => Self::NAMES[1],
        }
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name only: the object the parameters once held here (the target's ARNs) is refused as
/// "expected a string", not as a malformed enum.
impl<'de> Deserialize<'de> for TargetKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        [TargetKind::AlbListener, TargetKind::LambdaAlias]
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| serde::de::Error::unknown_variant(&name, &Self::NAMES))
    }
}

/// What carries the traffic, as the deploy action recorded it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetOutputs {
    LambdaAlias {
        function: String,
        alias: String,
        /// The published version to shift to (the previous one is what the alias points at
        /// when the deployment starts).
        new_version: String,
    },
    AlbListener(AlbListener),
}

/// A production listener that shifts between two target groups, and its test listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlbListener {
    pub listener_arn: String,
    pub test_listener_arn: Option<String>,
    pub blue_target_group: String,
    pub green_target_group: String,
    /// The ECS service whose task set the deploy action placed behind the idle target group:
    /// when the stacks output one, that task set is required (and blue's is drained after the
    /// bake). Without it, the deploy action's green record alone says whether there are task
    /// sets.
    pub ecs_service: Option<String>,
}

/// The checked parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub stage: Stage,
    pub plan: DeploymentPlan,
    pub name: Option<String>,
    pub kind: TargetKind,
}

impl Target {
    /// What the deployment id is made of besides release and environment: the execution, and
    /// the deployment's name within the stage if it has one ([`named_execution`]).
    pub fn execution_key(&self) -> String {
        named_execution(&self.stage.execution_id, self.name.as_deref())
    }

    /// The stage's deployment id (no name): where the deploy action recorded the stage's
    /// targets and green task set.
    pub fn stage_deployment_id(&self) -> String {
        shipgate::deploy::deployment_id(
            &self.stage.release_id,
            &self.stage.environment,
            &self.stage.execution_id,
        )
    }
}

/// `<execution>/<name>` (an execution id has no `/`, so no named deployment takes the id of an
/// unnamed one), or the execution alone: with `release_id` and `environment`, what
/// [`shipgate::deploy::deployment_id`] of a deployment is made of.
pub fn named_execution(execution_id: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{execution_id}/{name}"),
        None => execution_id.to_owned(),
    }
}

impl ActionParameters {
    pub fn target(&self) -> Result<Target, ParameterError> {
        let stage = self.stage.check()?;
        let plan: DeploymentPlan = fields::required("plan", &self.plan)?.parse().map_err(
            |e: shipgate::plan::PlanError| {
                ParameterError::invalid("plan", &self.plan, e.to_string())
            },
        )?;
        let name = match &self.name {
            Some(name) => Some(fields::id("name", name)?.to_owned()),
            None => None,
        };
        Ok(Target {
            stage,
            plan,
            name,
            kind: self.target,
        })
    }
}

/// What the deploy action's record gives the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A deployment to create.
    Shift(NewDeployment),
    /// The release's stacks output none of what the target's kind moves (no function for a
    /// Lambda target; no listener, target groups or service for a listener target): the
    /// release has no such target, and there is nothing to shift. Half of them is an error.
    Nothing,
}

/// What a new deployment moves and watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    pub target: TargetOutputs,
    pub alarms: Vec<String>,
}

/// Why the deploy action's record gives the job no target it can move.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "the release's stacks output no {}, which the {kind} target needs; add {} to the \
         release's templates",
        missing.join(", "),
        if missing.len() == 1 { "it" } else { "them" }
    )]
    Missing {
        kind: TargetKind,
        missing: Vec<&'static str>,
    },
    #[error("{0}")]
    Invalid(#[from] ParameterError),
}

/// CloudWatch's limit on an alarm name; `DescribeAlarms` takes 100 names at most.
const MAX_ALARM_CHARS: usize = 255;
const MAX_ALARMS: usize = 100;

/// The job's target and alarms from the stage's record, checked: every output the kind needs
/// present (all of them named when some are not), ARNs where ARNs are expected, two different
/// target groups, a published version number, alarm names CloudWatch can hold.
pub fn recorded_target(kind: TargetKind, recorded: &StageTargets) -> Result<Recorded, TargetError> {
    let target = match kind {
        TargetKind::LambdaAlias => {
            let (Some(function), Some(new_version)) =
                (&recorded.lambda_function, &recorded.lambda_version)
            else {
                // The deploy action records every output; neither of the two: no function.
                if recorded.lambda_function.is_none() && recorded.lambda_version.is_none() {
                    return Ok(Recorded::Nothing);
                }
                return Err(missing(
                    kind,
                    [
                        ("ShipgateLambdaFunction", &recorded.lambda_function),
                        ("ShipgateLambdaVersion", &recorded.lambda_version),
                    ],
                ));
            };
            let function = fields::required("ShipgateLambdaFunction", function)?;
            let new_version = fields::required("ShipgateLambdaVersion", new_version)?;
            if !new_version.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(
                    "ShipgateLambdaVersion",
                    new_version,
                    "a weighted alias shifts between published versions: a version number, \
                     not $LATEST or an alias",
                ));
            }
            let alias = match &recorded.lambda_alias {
                Some(alias) => fields::required("ShipgateLambdaAlias", alias)?,
                None => "live",
            };
            TargetOutputs::LambdaAlias {
                function: function.to_owned(),
                alias: alias.to_owned(),
                new_version: new_version.to_owned(),
            }
        }
        TargetKind::AlbListener => {
            let (Some(listener), Some(blue), Some(green)) = (
                &recorded.prod_listener,
                &recorded.blue_target_group,
                &recorded.green_target_group,
            ) else {
                // A Lambda-only release: its stacks output no listener and no service.
                if [
                    &recorded.prod_listener,
                    &recorded.blue_target_group,
                    &recorded.green_target_group,
                    &recorded.test_listener,
                    &recorded.service,
                ]
                .iter()
                .all(|output| output.is_none())
                {
                    return Ok(Recorded::Nothing);
                }
                return Err(missing(
                    kind,
                    [
                        ("ShipgateProdListener", &recorded.prod_listener),
                        ("ShipgateBlueTargetGroup", &recorded.blue_target_group),
                        ("ShipgateGreenTargetGroup", &recorded.green_target_group),
                    ],
                ));
            };
            let listener_arn = fields::arn("ShipgateProdListener", listener)?;
            let test_listener_arn = recorded
                .test_listener
                .as_deref()
                .map(|t| fields::arn("ShipgateTestListener", t))
                .transpose()?;
            let blue = fields::arn("ShipgateBlueTargetGroup", blue)?;
            let green = fields::arn("ShipgateGreenTargetGroup", green)?;
            if blue == green {
                return Err(invalid(
                    "ShipgateGreenTargetGroup",
                    green,
                    "blue and green must be two target groups",
                ));
            }
            let ecs_service = recorded
                .service
                .as_deref()
                .map(|s| fields::required("ShipgateService", s))
                .transpose()?;
            TargetOutputs::AlbListener(AlbListener {
                listener_arn: listener_arn.to_owned(),
                test_listener_arn: test_listener_arn.map(str::to_owned),
                blue_target_group: blue.to_owned(),
                green_target_group: green.to_owned(),
                ecs_service: ecs_service.map(str::to_owned),
            })
        }
    };
    Ok(Recorded::Shift(NewDeployment {
        target,
        alarms: alarms(&recorded.alarms)?,
    }))
}

/// The alarm names, checked, each once.
fn alarms(names: &[String]) -> Result<Vec<String>, TargetError> {
    let mut alarms: Vec<String> = Vec::new();
    for alarm in names {
        let alarm = fields::required("ShipgateAlarms", alarm)?;
        if alarm.chars().count() > MAX_ALARM_CHARS || alarm.chars().any(char::is_control) {
            return Err(invalid(
                "ShipgateAlarms",
                alarm,
                "an alarm name is at most 255 printable characters",
            ));
        }
        if !alarms.iter().any(|a| a == alarm) {
            alarms.push(alarm.to_owned());
        }
    }
    if alarms.len() > MAX_ALARMS {
        return Err(invalid(
            "ShipgateAlarms",
            &format!("{} names", alarms.len()),
            "a deployment watches at most 100 alarms (use a composite alarm)",
        ));
    }
    Ok(alarms)
}

/// The outputs of `needed` that the record lacks, by name.
fn missing<const N: usize>(
    kind: TargetKind,
    needed: [(&'static str, &Option<String>); N],
) -> TargetError {
    TargetError::Missing {
        kind,
        missing: needed
            .iter()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| *name)
            .collect(),
    }
}

fn invalid(field: &'static str, value: &str, reason: &'static str) -> TargetError {
    ParameterError::invalid(field, value, reason).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters() -> serde_json::Value {
        serde_json::json!({
            "environment": "int",
            "roleArn": "arn:aws:iam::222222222222:role/shipgate-deploy",
            "releaseId": "rel-1",
            "executionId": "exec-1",
            "plan": "Canary10Percent5Minutes",
            "target": "lambda_alias"
        })
    }

    fn parse(v: serde_json::Value) -> Result<Target, String> {
        serde_json::from_value::<ActionParameters>(v)
            .map_err(|e| e.to_string())?
            .target()
            .map_err(|e| e.to_string())
    }

    /// What the deploy action records for a release with a listener, a service, a Lambda
    /// function and two alarms (one named twice).
    fn recorded() -> StageTargets {
        let elb = "arn:aws:elasticloadbalancing:eu-west-1:222222222222";
        StageTargets {
            deployment_id: shipgate::deploy::deployment_id("rel-1", "int", "exec-1"),
            release_id: "rel-1".into(),
            environment: "int".into(),
            execution_id: "exec-1".into(),
            alarms: vec![
                "orders-int-5xx".into(),
                "orders-int-5xx".into(),
                "orders-int-latency".into(),
            ],
            prod_listener: Some(format!("{elb}:listener/app/a/1/2")),
            test_listener: Some(format!("{elb}:listener/app/a/1/3")),
            blue_target_group: Some(format!("{elb}:targetgroup/blue/1")),
            green_target_group: Some(format!("{elb}:targetgroup/green/1")),
            service: Some("arn:aws:ecs:eu-west-1:222222222222:service/shipgate-int/orders".into()),
            lambda_function: Some("orders".into()),
            lambda_alias: None,
            lambda_version: Some("7".into()),
            recorded_at_ms: 0,
        }
    }

    #[test]
    fn the_parameters_name_the_stage_the_plan_and_the_kind_of_target() {
        let t = parse(parameters()).unwrap();
        assert_eq!(t.stage.account_id, "222222222222");
        assert_eq!(t.plan.to_string(), "Canary10Percent5Minutes");
        assert_eq!(t.kind, TargetKind::LambdaAlias);
        assert_eq!(
            t.stage_deployment_id(),
            shipgate::deploy::deployment_id("rel-1", "int", "exec-1")
        );
        let mut alb = parameters();
        alb["target"] = "alb_listener".into();
        alb["plan"] = "custom:10@5m,50@10m,100;bake=15m;scale=60".into();
        let t = parse(alb).unwrap();
        assert_eq!(t.kind, TargetKind::AlbListener);
        assert_eq!(t.plan.scale(), 60);
    }

    #[test]
    fn a_named_deployment_has_its_own_id_and_shares_the_stages_record() {
        let unnamed = parse(parameters()).unwrap();
        assert_eq!(unnamed.execution_key(), "exec-1");
        let mut v = parameters();
        v["name"] = "lambda".into();
        let named = parse(v.clone()).unwrap();
        assert_eq!(named.execution_key(), "exec-1/lambda");
        assert_eq!(named.stage_deployment_id(), unnamed.stage_deployment_id());
        v["name"] = "a/b".into();
        assert!(parse(v).unwrap_err().contains("`name`"));
    }

    #[test]
    fn mistakes_are_named() {
        type Edit = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|v| v["plan"] = "Canary99".into()),
                "unknown deployment plan",
            ),
            (Box::new(|v| v["roleArn"] = "nope".into()), "`roleArn`"),
            (
                Box::new(|v| v["releaseId"] = "#{variables.ReleaseId}".into()),
                "not resolved",
            ),
            (Box::new(|v| v["target"] = "ecs".into()), "unknown variant"),
            // The old shape, with the target's ARNs in the parameters, is refused.
            (
                Box::new(|v| {
                    v["target"] = serde_json::json!({"kind": "lambda_alias", "function": "f"})
                }),
                "invalid type: map, expected a string",
            ),
            (
                Box::new(|v| v["alarms"] = "orders-int-5xx".into()),
                "unknown field",
            ),
            (
                Box::new(|v| v["environment"] = "Prod!".into()),
                "`environment`",
            ),
        ];
        for (edit, expected) in cases {
            let mut v = parameters();
            edit(&mut v);
            let err = parse(v).unwrap_err();
            assert!(err.contains(expected), "{err} / {expected}");
        }
    }

    #[test]
    fn a_lambda_target_comes_from_the_record_with_the_live_alias_by_default() {
        let Recorded::Shift(NewDeployment { target, alarms }) =
            recorded_target(TargetKind::LambdaAlias, &recorded()).unwrap()
        else {
            panic!("a function to shift");
        };
        assert_eq!(
            target,
            TargetOutputs::LambdaAlias {
                function: "orders".into(),
                alias: "live".into(),
                new_version: "7".into()
            }
        );
        assert_eq!(alarms, ["orders-int-5xx", "orders-int-latency"]);
        let mut other_alias = recorded();
        other_alias.lambda_alias = Some("prod".into());
        assert!(matches!(
            recorded_target(TargetKind::LambdaAlias, &other_alias),
            Ok(Recorded::Shift(NewDeployment { target: TargetOutputs::LambdaAlias { alias, .. }, .. })) if alias == "prod"
        ));
    }

    #[test]
    fn no_function_and_no_version_is_no_lambda_target_and_half_of_one_is_named() {
        let mut none = recorded();
        none.lambda_function = None;
        none.lambda_version = None;
        assert_eq!(
            recorded_target(TargetKind::LambdaAlias, &none),
            Ok(Recorded::Nothing)
        );
        let mut half = recorded();
        half.lambda_function = None;
        let err = recorded_target(TargetKind::LambdaAlias, &half).unwrap_err();
        assert_eq!(
            err,
            TargetError::Missing {
                kind: TargetKind::LambdaAlias,
                missing: vec!["ShipgateLambdaFunction"]
            }
        );
        assert!(
            err.to_string()
                .contains("output no ShipgateLambdaFunction, which the lambda_alias target"),
            "{err}"
        );
    }

    #[test]
    fn no_listener_output_at_all_is_no_listener_target_and_half_of_one_is_named() {
        // A Lambda-only release: nothing of a listener target recorded.
        let mut none = recorded();
        none.prod_listener = None;
        none.blue_target_group = None;
        none.green_target_group = None;
        none.test_listener = None;
        none.service = None;
        assert_eq!(
            recorded_target(TargetKind::AlbListener, &none),
            Ok(Recorded::Nothing)
        );
        // A service with no listener is a release that forgot outputs, not one without a
        // service: named, not skipped.
        let mut service_only = none.clone();
        service_only.service = Some("arn:aws:ecs:eu-west-1:222222222222:service/c/s".into());
        assert_eq!(
            recorded_target(TargetKind::AlbListener, &service_only),
            Err(TargetError::Missing {
                kind: TargetKind::AlbListener,
                missing: vec![
                    "ShipgateProdListener",
                    "ShipgateBlueTargetGroup",
                    "ShipgateGreenTargetGroup"
                ]
            })
        );
    }

    #[test]
    fn a_listener_target_comes_from_the_record_and_every_missing_output_is_named() {
        let Recorded::Shift(NewDeployment { target, .. }) =
            recorded_target(TargetKind::AlbListener, &recorded()).unwrap()
        else {
            panic!("a listener to shift");
        };
        let TargetOutputs::AlbListener(alb) = target else {
            panic!("{target:?}");
        };
        assert!(alb.listener_arn.ends_with("listener/app/a/1/2"));
        assert!(alb.test_listener_arn.is_some_and(|t| t.ends_with("/3")));
        assert!(alb.ecs_service.is_some_and(|s| s.ends_with("/orders")));

        let mut lambda_only = recorded();
        lambda_only.prod_listener = None;
        lambda_only.blue_target_group = None;
        let err = recorded_target(TargetKind::AlbListener, &lambda_only)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "output no ShipgateProdListener, ShipgateBlueTargetGroup, which the \
                 alb_listener target needs; add them"
            ),
            "{err}"
        );
        // The test listener and the service are optional.
        let mut listener_only = recorded();
        listener_only.test_listener = None;
        listener_only.service = None;
        assert!(matches!(
            recorded_target(TargetKind::AlbListener, &listener_only),
            Ok(Recorded::Shift(NewDeployment {
                target: TargetOutputs::AlbListener(AlbListener {
                    test_listener_arn: None,
                    ecs_service: None,
                    ..
                }),
                ..
            }))
        ));
    }

    #[test]
    fn recorded_values_that_cannot_be_used_are_named_by_their_output() {
        type Edit = Box<dyn Fn(&mut StageTargets)>;
        let cases: Vec<(TargetKind, Edit, &str)> = vec![
            (
                TargetKind::AlbListener,
                Box::new(|r| r.prod_listener = Some("listener-1".into())),
                "`ShipgateProdListener` is \"listener-1\": expected an ARN",
            ),
            (
                TargetKind::AlbListener,
                Box::new(|r| r.green_target_group = r.blue_target_group.clone()),
                "two target groups",
            ),
            (
                TargetKind::LambdaAlias,
                Box::new(|r| r.lambda_version = Some("$LATEST".into())),
                "published versions",
            ),
            (
                TargetKind::LambdaAlias,
                Box::new(|r| r.alarms.push("x".repeat(256))),
                "at most 255 printable characters",
            ),
            (
                TargetKind::AlbListener,
                Box::new(|r| r.alarms = (0..101).map(|i| format!("alarm-{i}")).collect()),
                "at most 100 alarms",
            ),
        ];
        for (kind, edit, expected) in cases {
            let mut r = recorded();
            edit(&mut r);
            let err = recorded_target(kind, &r).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} / {expected}");
        }
    }
}
