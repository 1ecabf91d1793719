//! Deployment plans: which share of traffic the new version should have, at which moment.
//!
//! A [`DeploymentPlan`] is an ordered list of [`TrafficStep`]s (a percent of traffic on the new
//! version and how long to hold it), then a bake time once 100% is reached. The predefined plans
//! carry AWS CodeDeploy's names and meaning ([`Predefined`]): `AllAtOnce`, `Canary10Percent…`
//! (10% for N minutes, then 100%) and `Linear10PercentEvery…` (10%, 20%, … 100%, one step every
//! N minutes). A plan can be compressed by a time scale for demos (`scale=60` turns minutes into
//! seconds); the scale divides the schedule, nothing here ever sleeps.
//!
//! # Spec syntax
//!
//! A plan is written as one string (its `FromStr`, `Display` and serde form, so it is stored and
//! configured the same way everywhere):
//!
//! ```text
//! spec     = plan *( ";" option )
//! plan     = predefined | "custom:" step *( "," step )
//! step     = percent [ "@" duration ]        ; no "@": hold 0 (go on at once)
//! option   = "bake=" duration | "scale=" integer(>= 1)
//! duration = integer ( "ms" | "s" | "m" | "h" )
//! ```
//!
//! `predefined` is a short name (`Canary10Percent5Minutes`) or CodeDeploy's full name for Lambda
//! or ECS (`CodeDeployDefault.LambdaCanary10Percent5Minutes`,
//! `CodeDeployDefault.ECSLinear10PercentEvery1Minutes`; ECS writes a plural "Minutes" there, both
//! forms are accepted). Examples: `AllAtOnce;bake=10m`, `custom:10@5m,50@10m,100;bake=15m`,
//! `Linear10PercentEvery1Minute;scale=60`. Custom steps: percents 1–100, strictly increasing, the
//! last one 100 with no hold of its own (the hold after 100% is the bake). A whole plan, holds and
//! bake together, lasts at most [`MAX_PLAN_MS`] before scaling.
//!
//! # Why pure
//!
//! Traffic is shifted by short invocations (CodePipeline continuations, schedules) that each ask
//! [`position`] "where should traffic be now?" and move it there. Time is an argument (epoch
//! milliseconds, [`EpochMillis`]), so the answer is the same however often or late it is asked:
//! it is idempotent, monotonic in `now`, never ahead of the schedule, and testable without a clock.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// A point in time, in milliseconds since the Unix epoch (UTC).
pub type EpochMillis = u64;

/// The longest a plan may last, holds and bake together, before scaling: 24 hours. A CodePipeline
/// action cannot stay in progress longer than that, continuation tokens or not.
pub const MAX_PLAN_MS: u64 = 24 * HOUR_MS;

const SECOND_MS: u64 = 1_000;
const MINUTE_MS: u64 = 60 * SECOND_MS;
const HOUR_MS: u64 = 60 * MINUTE_MS;

/// Prefix of CodeDeploy's predefined configuration names.
const CODEDEPLOY_PREFIX: &str = "CodeDeployDefault.";
const CUSTOM_PREFIX: &str = "custom:";

/// One step of a plan: move `percent` of the traffic to the new version, then hold `wait_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrafficStep {
    /// Share of traffic on the new version, 1–100.
    pub percent: u8,
    /// How long to hold this share before the next step, in plan time (before scaling).
    pub wait_ms: u64,
}

/// AWS CodeDeploy's predefined traffic-shifting configurations for Lambda and ECS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Predefined {
    AllAtOnce,
    Canary10Percent5Minutes,
    Canary10Percent10Minutes,
    Canary10Percent15Minutes,
    Canary10Percent30Minutes,
    Linear10PercentEvery1Minute,
    Linear10PercentEvery2Minutes,
    Linear10PercentEvery3Minutes,
    Linear10PercentEvery10Minutes,
}

impl Predefined {
    /// Every predefined plan, in the order CodeDeploy's documentation lists them.
    pub const ALL: [Predefined; 9] = [
        Predefined::AllAtOnce,
        Predefined::Canary10Percent5Minutes,
        Predefined::Canary10Percent10Minutes,
        Predefined::Canary10Percent15Minutes,
        Predefined::Canary10Percent30Minutes,
        Predefined::Linear10PercentEvery1Minute,
        Predefined::Linear10PercentEvery2Minutes,
        Predefined::Linear10PercentEvery3Minutes,
        Predefined::Linear10PercentEvery10Minutes,
    ];

    /// The short name, CodeDeploy's name without `CodeDeployDefault.` and the platform.
    pub fn name(self) -> &'static str {
        match self {
            Predefined::AllAtOnce => "AllAtOnce",
            Predefined::Canary10Percent5Minutes => "Canary10Percent5Minutes",
            Predefined::Canary10Percent10Minutes => "Canary10Percent10Minutes",
            Predefined::Canary10Percent15Minutes => "Canary10Percent15Minutes",
            Predefined::Canary10Percent30Minutes => "Canary10Percent30Minutes",
            Predefined::Linear10PercentEvery1Minute => "Linear10PercentEvery1Minute",
            Predefined::Linear10PercentEvery2Minutes => "Linear10PercentEvery2Minutes",
            Predefined::Linear10PercentEvery3Minutes => "Linear10PercentEvery3Minutes",
            Predefined::Linear10PercentEvery10Minutes => "Linear10PercentEvery10Minutes",
        }
    }

    /// The steps CodeDeploy documents for this configuration.
    pub fn steps(self) -> Vec<TrafficStep> {
        match self {
            Predefined::AllAtOnce => vec![TrafficStep {
                percent: 100,
                wait_ms: 0,
            }],
            Predefined::Canary10Percent5Minutes => canary(5),
            Predefined::Canary10Percent10Minutes => canary(10),
            Predefined::Canary10Percent15Minutes => canary(15),
            Predefined::Canary10Percent30Minutes => canary(30),
            Predefined::Linear10PercentEvery1Minute => linear(1),
            Predefined::Linear10PercentEvery2Minutes => linear(2),
            Predefined::Linear10PercentEvery3Minutes => linear(3),
            Predefined::Linear10PercentEvery10Minutes => linear(10),
        }
    }

    /// Finds a plan by short name or by CodeDeploy's Lambda or ECS name (ASCII case ignored).
    pub fn from_name(name: &str) -> Option<Predefined> {
        let short = strip_prefix_ignore_case(name, CODEDEPLOY_PREFIX).unwrap_or(name);
        let short = strip_prefix_ignore_case(short, "Lambda")
            .or_else(|| strip_prefix_ignore_case(short, "ECS"))
            .unwrap_or(short);
        // ECS spells its one-minute linear configuration "Every1Minutes".
        if short.eq_ignore_ascii_case("Linear10PercentEvery1Minutes") {
            return Some(Predefined::Linear10PercentEvery1Minute);
        }
        Predefined::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(short))
    }
}

/// 10% for `minutes`, then 100%.
fn canary(minutes: u64) -> Vec<TrafficStep> {
    vec![
        TrafficStep {
            percent: 10,
            wait_ms: minutes * MINUTE_MS,
        },
        TrafficStep {
            percent: 100,
            wait_ms: 0,
        },
    ]
}

/// 10%, 20%, … 100%, `minutes` apart.
fn linear(minutes: u64) -> Vec<TrafficStep> {
    (1..=10u8)
        .map(|i| TrafficStep {
            percent: i * 10,
            wait_ms: if i == 10 { 0 } else { minutes * MINUTE_MS },
        })
        .collect()
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Where a plan's steps come from: CodeDeploy's catalogue or the user's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanKind {
    Predefined(Predefined),
    Custom,
}

/// A validated deployment plan. Fields are private so that every plan in hand is valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeploymentPlan {
    kind: PlanKind,
    steps: Vec<TrafficStep>,
    bake_ms: u64,
    scale: u32,
}

/// Why a plan spec or a custom plan is refused. Steps are numbered from 1, as a person counts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "unknown deployment plan `{0}`: use a CodeDeploy name (AllAtOnce, Canary10Percent5Minutes, \
         Canary10Percent10Minutes, Canary10Percent15Minutes, Canary10Percent30Minutes, \
         Linear10PercentEvery1Minute, Linear10PercentEvery2Minutes, Linear10PercentEvery3Minutes, \
         Linear10PercentEvery10Minutes) or custom:<percent>@<wait>,…,100"
    )]
    UnknownPlan(String),
    #[error("a custom plan needs at least one step, ending with 100 (e.g. custom:10@5m,100)")]
    NoSteps,
    #[error("step {step}: `{text}` is not <percent> or <percent>@<wait> (e.g. 10@5m)")]
    BadStep { step: usize, text: String },
    #[error("step {step}: {percent}% is out of range; a step's percent must be 1 to 100")]
    PercentOutOfRange { step: usize, percent: u64 },
    #[error(
        "step {step}: {percent}% does not increase on the previous step's {previous}%; \
         percents must strictly increase"
    )]
    NotIncreasing {
        step: usize,
        percent: u8,
        previous: u8,
    },
    #[error("the last step is {percent}%; a plan must end with a step at 100%")]
    DoesNotReachFull { percent: u8 },
    #[error(
        "the 100% step holds {}; a hold after 100% is the bake time: drop the wait and add ;bake={}",
        format_duration(*wait_ms),
        format_duration(*wait_ms)
    )]
    WaitAfterFull { wait_ms: u64 },
    #[error("`{0}` is not a duration: write a whole number with a unit, ms, s, m or h (e.g. 5m)")]
    BadDuration(String),
    #[error("`{0}` is not a time scale: write a whole number of at least 1 (e.g. scale=60)")]
    BadScale(String),
    #[error("`{0}` is not an option: use bake=<duration> or scale=<number>, each at most once")]
    BadOption(String),
    #[error(
        "the plan lasts {} with its bake, more than the {} a pipeline action may run: \
         shorten the waits or the bake",
        format_duration(*total_ms),
        format_duration(MAX_PLAN_MS)
    )]
    TooLong { total_ms: u64 },
}

impl DeploymentPlan {
    /// A predefined plan, with no bake and no scaling.
    pub fn predefined(which: Predefined) -> DeploymentPlan {
        DeploymentPlan {
            kind: PlanKind::Predefined(which),
            steps: which.steps(),
            bake_ms: 0,
            scale: 1,
        }
    }

    /// A custom plan from its steps, checked (see the module doc for the rules).
    pub fn custom(steps: Vec<TrafficStep>) -> Result<DeploymentPlan, PlanError> {
        let last = steps.last().ok_or(PlanError::NoSteps)?;
        let mut previous: Option<u8> = None;
        for (i, step) in steps.iter().enumerate() {
            if !(1..=100).contains(&step.percent) {
                return Err(PlanError::PercentOutOfRange {
                    step: i + 1,
                    percent: u64::from(step.percent),
                });
            }
            if let Some(previous) = previous
                && step.percent <= previous
            {
                return Err(PlanError::NotIncreasing {
                    step: i + 1,
                    percent: step.percent,
                    previous,
                });
            }
            previous = Some(step.percent);
        }
        if last.percent != 100 {
            return Err(PlanError::DoesNotReachFull {
                percent: last.percent,
            });
        }
        if last.wait_ms != 0 {
            return Err(PlanError::WaitAfterFull {
                wait_ms: last.wait_ms,
            });
        }
        let plan = DeploymentPlan {
            kind: PlanKind::Custom,
            steps,
            bake_ms: 0,
            scale: 1,
        };
        plan.check_length()?;
        Ok(plan)
    }

    /// The same plan with a bake time after 100% (plan time, before scaling).
    pub fn with_bake_ms(mut self, bake_ms: u64) -> Result<DeploymentPlan, PlanError> {
        self.bake_ms = bake_ms;
        self.check_length()?;
        Ok(self)
    }

    /// The same plan compressed `scale` times (60: minutes become seconds). At least 1.
    pub fn with_scale(mut self, scale: u32) -> Result<DeploymentPlan, PlanError> {
        if scale == 0 {
            return Err(PlanError::BadScale(scale.to_string()));
        }
        self.scale = scale;
        Ok(self)
    }

    pub fn kind(&self) -> PlanKind {
        self.kind
    }

    /// The steps in plan time (unscaled); [`steps`] gives the scaled schedule.
    pub fn traffic_steps(&self) -> &[TrafficStep] {
        &self.steps
    }

    /// The bake time in plan time (unscaled).
    pub fn bake_ms(&self) -> u64 {
        self.bake_ms
    }

    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// How long the whole plan takes, holds and bake, after scaling.
    pub fn total_ms(&self) -> u64 {
        self.scaled(self.unscaled_total_ms())
    }

    fn unscaled_total_ms(&self) -> u64 {
        self.steps
            .iter()
            .fold(self.bake_ms, |sum, s| sum.saturating_add(s.wait_ms))
    }

    fn check_length(&self) -> Result<(), PlanError> {
        let total_ms = self.unscaled_total_ms();
        if total_ms > MAX_PLAN_MS {
            return Err(PlanError::TooLong { total_ms });
        }
        Ok(())
    }

    /// Scales a cumulative offset rather than each wait, so rounding never accumulates and the
    /// scaled offsets stay non-decreasing (floor division is monotonic).
    fn scaled(&self, offset_ms: u64) -> u64 {
        offset_ms / u64::from(self.scale.max(1))
    }

    /// Scaled offset from the start at which each step is reached, and the end of the bake.
    fn offsets(&self) -> (Vec<u64>, u64) {
        let mut at = 0u64;
        let mut reached = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            reached.push(self.scaled(at));
            at = at.saturating_add(step.wait_ms);
        }
        (reached, self.scaled(at.saturating_add(self.bake_ms)))
    }
}

/// Where traffic should be at a given moment of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Share of traffic on the new version, 0–100.
    pub percent: u8,
    /// Index (from 0) of the step in force.
    pub step: usize,
    /// 100% reached and the bake over: the deployment is done.
    pub complete: bool,
    /// When the percent next changes or the bake ends; `None` once complete.
    pub next_wake: Option<EpochMillis>,
}

/// Where traffic should be at `now` for a plan started at `started_at`.
///
/// A `now` before `started_at` (clocks of two invocations disagreeing) counts as the start, so a
/// late or early call never moves traffic backwards nor ahead of the schedule. Steps that share a
/// moment (holds of 0) are passed together: the last of them is in force.
pub fn position(plan: &DeploymentPlan, started_at: EpochMillis, now: EpochMillis) -> Position {
    let elapsed = now.saturating_sub(started_at);
    let (reached, done_at) = plan.offsets();
    // `reached[0]` is 0, so at least one step is in force; `max(1)` keeps an index valid anyway.
    let step = reached
        .iter()
        .take_while(|&&at| at <= elapsed)
        .count()
        .max(1)
        - 1;
    let percent = plan.steps.get(step).map_or(100, |s| s.percent);
    let complete = elapsed >= done_at;
    let next_wake = if complete {
        None
    } else {
        let next_at = reached.get(step + 1).copied().unwrap_or(done_at);
        Some(started_at.saturating_add(next_at))
    };
    Position {
        percent,
        step,
        complete,
        next_wake,
    }
}

/// The whole schedule for display: (scaled offset from the start in ms, percent) per step.
pub fn steps(plan: &DeploymentPlan) -> Vec<(u64, u8)> {
    let (reached, _) = plan.offsets();
    reached
        .into_iter()
        .zip(plan.steps.iter().map(|s| s.percent))
        .collect()
}

/// The weight of the new version in a Lambda alias's routing config (`AdditionalVersionWeights`),
/// 0.0–1.0. At 100% the caller points the alias at the new version instead, with no routing.
pub fn alias_weight(percent: u8) -> f64 {
    f64::from(percent.min(100)) / 100.0
}

/// ALB weighted-forward weights `(blue, green)` summing to 100 (ALB accepts 0–999 each).
pub fn listener_weights(percent: u8) -> (u16, u16) {
    let green = u16::from(percent.min(100));
    (100 - green, green)
}

/// Writes a duration in the largest unit that states it exactly, as the spec reads it back.
fn format_duration(ms: u64) -> String {
    match ms {
        0 => "0s".to_owned(),
        _ if ms.is_multiple_of(HOUR_MS) => format!("{}h", ms / HOUR_MS),
        _ if ms.is_multiple_of(MINUTE_MS) => format!("{}m", ms / MINUTE_MS),
        _ if ms.is_multiple_of(SECOND_MS) => format!("{}s", ms / SECOND_MS),
        _ => format!("{ms}ms"),
    }
}

fn parse_duration(text: &str) -> Result<u64, PlanError> {
    let bad = || PlanError::BadDuration(text.to_owned());
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = text.split_at(split);
    let unit_ms = match unit {
        "ms" => 1,
        "s" => SECOND_MS,
        "m" => MINUTE_MS,
        "h" => HOUR_MS,
        _ => return Err(bad()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .ok_or_else(bad)
}

fn parse_step(index: usize, text: &str) -> Result<TrafficStep, PlanError> {
    let (percent, wait) = match text.split_once('@') {
        Some((p, w)) => (p.trim(), Some(w.trim())),
        None => (text.trim(), None),
    };
    let percent: u64 = percent.parse().map_err(|_| PlanError::BadStep {
        step: index + 1,
        text: text.to_owned(),
    })?;
    let percent = u8::try_from(percent)
        .ok()
        .filter(|p| (1..=100).contains(p))
        .ok_or(PlanError::PercentOutOfRange {
            step: index + 1,
            percent,
        })?;
    let wait_ms = wait.map(parse_duration).transpose()?.unwrap_or(0);
    Ok(TrafficStep { percent, wait_ms })
}

impl FromStr for DeploymentPlan {
    type Err = PlanError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut parts = spec.split(';');
        let head = parts.next().unwrap_or_default().trim();
        let mut plan = match head.get(..CUSTOM_PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(CUSTOM_PREFIX) => {
                let list = &head[CUSTOM_PREFIX.len()..];
                if list.trim().is_empty() {
                    return Err(PlanError::NoSteps);
                }
                let steps = list
                    .split(',')
                    .enumerate()
                    .map(|(i, s)| parse_step(i, s))
                    .collect::<Result<Vec<_>, _>>()?;
                DeploymentPlan::custom(steps)?
            }
            _ => Predefined::from_name(head)
                .map(DeploymentPlan::predefined)
                .ok_or_else(|| PlanError::UnknownPlan(head.to_owned()))?,
        };
        let (mut bake, mut scale) = (None, None);
        for option in parts {
            let option = option.trim();
            match option.split_once('=') {
                Some(("bake", value)) if bake.is_none() => {
                    bake = Some(parse_duration(value.trim())?);
                }
                Some(("scale", value)) if scale.is_none() => {
                    let value = value.trim();
                    let n = value
                        .parse::<u32>()
                        .map_err(|_| PlanError::BadScale(value.to_owned()))?;
                    scale = Some(n);
                }
                _ => return Err(PlanError::BadOption(option.to_owned())),
            }
        }
        if let Some(bake) = bake {
            plan = plan.with_bake_ms(bake)?;
        }
        if let Some(scale) = scale {
            plan = plan.with_scale(scale)?;
        }
        Ok(plan)
    }
}

impl fmt::Display for DeploymentPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PlanKind::Predefined(which) => f.write_str(which.name())?,
            PlanKind::Custom => {
                f.write_str(CUSTOM_PREFIX)?;
                for (i, step) in self.steps.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}", step.percent)?;
                    if step.wait_ms > 0 {
                        write!(f, "@{}", format_duration(step.wait_ms))?;
                    }
                }
            }
        }
        if self.bake_ms > 0 {
            write!(f, ";bake={}", format_duration(self.bake_ms))?;
        }
        if self.scale != 1 {
            write!(f, ";scale={}", self.scale)?;
        }
        Ok(())
    }
}

impl TryFrom<String> for DeploymentPlan {
    type Error = PlanError;

    fn try_from(spec: String) -> Result<Self, Self::Error> {
        spec.parse()
    }
}

impl From<DeploymentPlan> for String {
    fn from(plan: DeploymentPlan) -> String {
        plan.to_string()
    }
}
