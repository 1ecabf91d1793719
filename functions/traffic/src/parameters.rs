//! The action's `UserParameters`, checked. Pure.

use serde::Deserialize;
use shipgate::job::ParameterError;
use shipgate::job::parameters::{self as fields, Stage, StageParameters};
use shipgate::plan::DeploymentPlan;

/// `UserParameters`, as the pipeline template writes them (the target from the deploy action's
/// output variables).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionParameters {
    #[serde(flatten)]
    pub stage: StageParameters,
    /// `Canary10Percent5Minutes`, `custom:10@5m,50@10m,100;bake=15m;scale=60`, …
    pub plan: String,
    /// CloudWatch alarm names in the environment account that roll the deployment back: a JSON
    /// array, or one comma-separated string (what a CodePipeline variable such as
    /// `#{IntDeploy.ShipgateAlarms}` can carry; empty for none).
    #[serde(default, deserialize_with = "alarm_names")]
    pub alarms: Vec<String>,
    /// The deployment's name within the stage, when a stage moves several targets side by side
    /// (the listener and a Lambda alias): part of the deployment's id. Without it the id is the
    /// stage's, which the deploy action records the ECS task sets under.
    #[serde(default)]
    pub name: Option<String>,
    pub target: TargetParameters,
}

/// What carries the traffic.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetParameters {
    #[serde(rename_all = "camelCase")]
    LambdaAlias {
        function: String,
        #[serde(default = "live")]
        alias: String,
        /// The published version to shift to (the previous one is what the alias points at
        /// when the deployment starts).
        new_version: String,
    },
    AlbListener(AlbListener),
}

/// A production listener that shifts between two target groups, and its test listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlbListener {
    pub listener_arn: String,
    #[serde(default)]
    pub test_listener_arn: Option<String>,
    pub blue_target_group: String,
    pub green_target_group: String,
    /// The ECS service (`#{<Deploy>.ShipgateService}`) whose task set the deploy action placed
    /// behind the idle target group: when set, that task set is required (and blue's is drained
    /// after the bake). Optional: without it, the deploy action's record alone says whether
    /// there are task sets.
    #[serde(default)]
    pub ecs_service: Option<String>,
}

impl AlbListener {
    /// The listener's parameters checked: ARNs, two different target groups, values trimmed.
    fn checked(&self) -> Result<Self, ParameterError> {
        let listener_arn = fields::arn("target.listenerArn", &self.listener_arn)?;
        let ecs_service =
            fields::optional("target.ecsService", self.ecs_service.as_deref())?.map(str::to_owned);
        let test_listener_arn =
            fields::optional("target.testListenerArn", self.test_listener_arn.as_deref())?
                .map(|t| fields::arn("target.testListenerArn", t))
                .transpose()?;
        let blue = fields::arn("target.blueTargetGroup", &self.blue_target_group)?;
        let green = fields::arn("target.greenTargetGroup", &self.green_target_group)?;
        if blue == green {
            return Err(invalid(
                "target.greenTargetGroup",
                green,
                "blue and green must be two target groups",
            ));
        }
        Ok(Self {
            listener_arn: listener_arn.to_owned(),
            test_listener_arn: test_listener_arn.map(str::to_owned),
            blue_target_group: blue.to_owned(),
            green_target_group: green.to_owned(),
            ecs_service,
        })
    }
}

/// `["a", "b"]` or `"a,b"` (spaces around names ignored, an empty string is no alarm).
fn alarm_names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        List(Vec<String>),
        Joined(String),
    }
    Ok(match Names::deserialize(d)? {
        Names::List(names) => names,
        Names::Joined(text) if text.trim().is_empty() => Vec::new(),
        Names::Joined(text) => text.split(',').map(|n| n.trim().to_owned()).collect(),
    })
}

fn live() -> String {
    "live".to_owned()
}

/// The checked parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub stage: Stage,
    pub plan: DeploymentPlan,
    pub alarms: Vec<String>,
    pub name: Option<String>,
    pub target: TargetParameters,
}

impl Target {
    /// What the deployment id is made of besides release and environment: the execution, and
    /// the deployment's name within the stage if it has one ([`named_execution`]).
    pub fn execution_key(&self) -> String {
        named_execution(&self.stage.execution_id, self.name.as_deref())
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
    /// A Lambda target with neither function nor version: the release has no Lambda function
    /// (the deploy action sets every convention variable, empty when no stack outputs it).
    pub fn names_no_function(&self) -> bool {
        matches!(&self.target, TargetParameters::LambdaAlias { function, new_version, .. }
            if function.trim().is_empty() && new_version.trim().is_empty())
    }
}

/// CloudWatch's limit on an alarm name; `DescribeAlarms` takes 100 names at most.
const MAX_ALARM_CHARS: usize = 255;
const MAX_ALARMS: usize = 100;

impl ActionParameters {
    /// The release, execution and environment alone, checked (for a job with nothing to shift).
    pub fn stage(&self) -> Result<Stage, ParameterError> {
        self.stage.check()
    }

    pub fn target(&self) -> Result<Target, ParameterError> {
        let stage = self.stage()?;
        let plan: DeploymentPlan = fields::required("plan", &self.plan)?.parse().map_err(
            |e: shipgate::plan::PlanError| {
                ParameterError::invalid("plan", &self.plan, e.to_string())
            },
        )?;
        let name = match &self.name {
            Some(name) => Some(fields::id("name", name)?.to_owned()),
            None => None,
        };
        let mut alarms: Vec<String> = Vec::new();
        for alarm in &self.alarms {
            let alarm = fields::required("alarms", alarm)?;
            if alarm.chars().count() > MAX_ALARM_CHARS || alarm.chars().any(char::is_control) {
                return Err(invalid(
                    "alarms",
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
                "alarms",
                &format!("{} names", alarms.len()),
                "a deployment watches at most 100 alarms (use a composite alarm)",
            ));
        }
        let target = match &self.target {
            TargetParameters::LambdaAlias {
                function,
                alias,
                new_version,
            } => {
                let function = fields::required("target.function", function)?;
                let alias = fields::required("target.alias", alias)?;
                let new_version = fields::required("target.newVersion", new_version)?;
                if !new_version.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid(
                        "target.newVersion",
                        new_version,
                        "a weighted alias shifts between published versions: a version number, \
                         not $LATEST or an alias",
                    ));
                }
                TargetParameters::LambdaAlias {
                    function: function.to_owned(),
                    alias: alias.to_owned(),
                    new_version: new_version.to_owned(),
                }
            }
            TargetParameters::AlbListener(alb) => TargetParameters::AlbListener(alb.checked()?),
        };
        Ok(Target {
            stage,
            plan,
            alarms,
            name,
            target,
        })
    }
}

fn invalid(field: &'static str, value: &str, reason: &'static str) -> ParameterError {
    ParameterError::invalid(field, value, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lambda() -> serde_json::Value {
        serde_json::json!({
            "environment": "int",
            "roleArn": "arn:aws:iam::222222222222:role/shipgate-deploy",
            "releaseId": "rel-1",
            "executionId": "exec-1",
            "plan": "Canary10Percent5Minutes",
            "alarms": ["orders-int-5xx", "orders-int-5xx", "orders-int-latency"],
            "target": {"kind": "lambda_alias", "function": "orders", "newVersion": "7"}
        })
    }

    fn parse(v: serde_json::Value) -> Result<Target, String> {
        serde_json::from_value::<ActionParameters>(v)
            .map_err(|e| e.to_string())?
            .target()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn alarms_may_be_one_comma_separated_string() {
        // As a pipeline variable (`#{IntDeploy.ShipgateAlarms}`) carries them.
        let mut joined = lambda();
        joined["alarms"] = serde_json::json!("orders-int-5xx, orders-int-latency,orders-int-5xx");
        assert_eq!(
            parse(joined).unwrap().alarms,
            ["orders-int-5xx", "orders-int-latency"]
        );
        let mut none = lambda();
        none["alarms"] = serde_json::json!("");
        assert!(parse(none).unwrap().alarms.is_empty());
        let mut blank_name = lambda();
        blank_name["alarms"] = serde_json::json!("orders-int-5xx,,x");
        assert!(parse(blank_name).is_err());
    }

    #[test]
    fn lambda_parameters_read_with_the_live_alias_by_default() {
        let t = parse(lambda()).unwrap();
        assert_eq!(t.stage.account_id, "222222222222");
        assert_eq!(t.alarms, ["orders-int-5xx", "orders-int-latency"]);
        assert_eq!(t.plan.to_string(), "Canary10Percent5Minutes");
        assert_eq!(
            t.target,
            TargetParameters::LambdaAlias {
                function: "orders".into(),
                alias: "live".into(),
                new_version: "7".into()
            }
        );
    }

    #[test]
    fn alb_parameters_read() {
        let mut v = lambda();
        v["plan"] = "custom:10@5m,50@10m,100;bake=15m;scale=60".into();
        v["target"] = serde_json::json!({
            "kind": "alb_listener",
            "listenerArn": "arn:aws:elasticloadbalancing:eu-west-1:222222222222:listener/app/a/1/2",
            "testListenerArn": "arn:aws:elasticloadbalancing:eu-west-1:222222222222:listener/app/a/1/3",
            "blueTargetGroup": "arn:aws:elasticloadbalancing:eu-west-1:222222222222:targetgroup/blue/1",
            "greenTargetGroup": "arn:aws:elasticloadbalancing:eu-west-1:222222222222:targetgroup/green/1"
        });
        let t = parse(v.clone()).unwrap();
        assert!(matches!(
            t.target,
            TargetParameters::AlbListener(AlbListener {
                test_listener_arn: Some(_),
                ecs_service: None,
                ..
            })
        ));
        assert_eq!(t.plan.scale(), 60);
        let mut ecs = v.clone();
        ecs["target"]["ecsService"] =
            "arn:aws:ecs:eu-west-1:222222222222:service/shipgate-int/orders".into();
        assert!(matches!(
            parse(ecs).unwrap().target,
            TargetParameters::AlbListener(AlbListener { ecs_service: Some(s), .. }) if s.ends_with("/orders")
        ));
        let mut unresolved = v;
        unresolved["target"]["ecsService"] = "#{IntDeploy.ShipgateService}".into();
        assert!(parse(unresolved).unwrap_err().contains("target.ecsService"));
    }

    #[test]
    fn a_named_deployment_has_its_own_id_and_an_empty_lambda_target_is_no_function() {
        let unnamed = parse(lambda()).unwrap();
        assert_eq!(unnamed.execution_key(), "exec-1");
        let mut v = lambda();
        v["name"] = "lambda".into();
        assert_eq!(parse(v.clone()).unwrap().execution_key(), "exec-1/lambda");
        v["name"] = "a/b".into();
        assert!(parse(v).unwrap_err().contains("`name`"));
        let mut none = lambda();
        none["target"] = serde_json::json!({"kind": "lambda_alias", "function": "", "alias": "", "newVersion": " "});
        let p: ActionParameters = serde_json::from_value(none.clone()).unwrap();
        assert!(p.names_no_function());
        none["target"]["newVersion"] = "3".into();
        let p: ActionParameters = serde_json::from_value(none).unwrap();
        assert!(!p.names_no_function());
        let err = p.target().unwrap_err().to_string();
        assert!(err.contains("target.function"), "{err}");
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
            (
                Box::new(|v| v["target"]["newVersion"] = "$LATEST".into()),
                "published versions",
            ),
            (
                Box::new(|v| v["target"]["kind"] = "ecs".into()),
                "unknown variant",
            ),
            (Box::new(|v| v["extra"] = 1.into()), "unknown field"),
            (
                Box::new(|v| v["alarms"] = serde_json::json!([""])),
                "`alarms` is missing or empty",
            ),
            (
                Box::new(|v| v["environment"] = "Prod!".into()),
                "`environment`",
            ),
        ];
        for (edit, expected) in cases {
            let mut v = lambda();
            edit(&mut v);
            let err = parse(v).unwrap_err();
            assert!(err.contains(expected), "{err} / {expected}");
        }
    }
}
