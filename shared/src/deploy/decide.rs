//! The pure decisions of a progressive deployment: what the traffic carrier shows, what a step
//! of the traffic action does, whether a rollback is to be claimed, finished or left alone, and
//! whether an alarm event concerns a deployment. Plain data in, plain data out: no SDK call, no
//! clock (the time is an argument).

use sha2::{Digest, Sha256};

use crate::aws::cloudwatch::FiringAlarm;
use crate::aws::ecs::TaskSetView;
use crate::aws::lambda::AliasState;
use crate::plan::Position;
use crate::store::{Deployment, DeploymentState, Drain, DrainStep, EcsTaskSets, Rollback};

/// The deployment of `release_id` to `environment` in pipeline execution `execution_id`: the same
/// three always give the same id, so duplicated or retried invocations converge on one record.
pub fn deployment_id(release_id: &str, environment: &str, execution_id: &str) -> String {
    let mut hash = Sha256::new();
    for part in [release_id, environment, execution_id] {
        hash.update(part.len().to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    format!("{environment}-{}", hex::encode(&digest[..8]))
}

/// What the alias or listener carries now, as far as this deployment is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// `percent` of the traffic on the new version, the rest on the previous one.
    Ours { percent: u8 },
    /// It carries a version or target group this deployment does not know: someone else
    /// changed it, and this deployment must not touch it.
    Foreign { detail: String },
}

impl Observed {
    pub fn percent(&self) -> Option<u8> {
        match self {
            Observed::Ours { percent } => Some(*percent),
            Observed::Foreign { .. } => None,
        }
    }
}

/// Reads an alias between `previous` and `new`: pointing at `new` is 100%, at `previous` with
/// `new` as the weighted additional version is that weight, at `previous` alone 0%.
pub fn observe_alias(state: &AliasState, previous: &str, new: &str) -> Observed {
    let extra = state.additional.as_ref().filter(|(_, w)| *w > 0.0);
    if state.version == new {
        return match extra {
            None => Observed::Ours { percent: 100 },
            Some((v, w)) => Observed::Foreign {
                detail: format!(
                    "the alias points at version {new} and sends {:.0}% to version {v}",
                    w * 100.0
                ),
            },
        };
    }
    if state.version != previous {
        return Observed::Foreign {
            detail: format!(
                "the alias points at version {}, neither the previous ({previous}) nor the new \
                 ({new}) version",
                state.version
            ),
        };
    }
    match extra {
        None => Observed::Ours { percent: 0 },
        Some((v, _)) if v == new => Observed::Ours {
            percent: state.percent_on(new),
        },
        Some((v, w)) => Observed::Foreign {
            detail: format!(
                "the alias sends {:.0}% to version {v}, not the new version {new}",
                w * 100.0
            ),
        },
    }
}

/// Reads a listener's weighted forward between `blue` (previous) and `green` (new).
pub fn observe_listener(weights: &[(String, i32)], blue: &str, green: &str) -> Observed {
    if let Some((arn, _)) = weights
        .iter()
        .find(|(arn, w)| *w > 0 && arn != blue && arn != green)
    {
        return Observed::Foreign {
            detail: format!(
                "the listener forwards to {arn}, neither the blue nor the green target group"
            ),
        };
    }
    if weights.iter().all(|(_, w)| *w <= 0) {
        return Observed::Foreign {
            detail: "the listener forwards to no target group with a weight".into(),
        };
    }
    Observed::Ours {
        percent: crate::aws::elbv2::percent_on(weights, green),
    }
}

/// Whether someone other than `owner` holds the deployment's lease at `now_ms`.
pub fn held_by_other<'a>(d: &'a Deployment, owner: &str, now_ms: i64) -> Option<&'a str> {
    d.lease
        .as_ref()
        .filter(|l| l.owner != owner && l.until_ms > now_ms)
        .map(|l| l.owner.as_str())
}

/// What one invocation of the traffic action does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The deployment was rolled back: the job fails with the recorded reason. `restore`: the
    /// new version carries traffic again (a step that landed after the rollback's move): move it
    /// back to 0 first.
    RolledBack { restore: bool },
    /// It succeeded already: the job is done.
    Succeeded,
    /// A watched alarm is in ALARM: roll back (before any traffic moves forward).
    RollBack { alarm: String, reason: String },
    /// Another invocation holds the deployment right now: come back later, move nothing.
    Busy { owner: String },
    /// The alias or listener carries something this deployment does not know.
    Foreign { detail: String },
    /// Move traffic from the actual `from` to `to`; `complete`: the plan is over once there.
    Shift { from: u8, to: u8, complete: bool },
    /// Nothing to move; `percent` is the actual share (the record catches up if it differs).
    Hold { percent: u8, complete: bool },
    /// The bake is over and blue's task set is being drained: traffic no longer moves and
    /// alarms no longer roll back (blue may be scaled in already); see [`next_drain_step`].
    Drain,
}

/// What the traffic action knows at one moment.
#[derive(Debug, Clone, Copy)]
pub struct StepInput<'a> {
    pub deployment: &'a Deployment,
    /// The alias's or listener's weights, read just now.
    pub observed: &'a Observed,
    /// Where the plan says traffic should be now.
    pub position: Position,
    /// The deployment's watched alarms that are in ALARM now.
    pub firing: &'a [FiringAlarm],
    /// This invocation (its job id).
    pub owner: &'a str,
    pub now_ms: i64,
}

/// Decides a step. Alarms are checked before anything moves forward, and they win over a lease
/// (a rollback does not wait for a step in progress). Traffic never moves backwards except to
/// roll back: an actual share ahead of the plan (a step recorded late, clocks that disagree)
/// is held, not undone.
pub fn decide_step(input: StepInput<'_>) -> Step {
    let d = input.deployment;
    match d.state {
        DeploymentState::RolledBack => {
            return Step::RolledBack {
                restore: matches!(input.observed, Observed::Ours { percent } if *percent > 0),
            };
        }
        DeploymentState::Succeeded => return Step::Succeeded,
        DeploymentState::Shifting if d.drain().is_some() => return Step::Drain,
        DeploymentState::Shifting => {}
    }
    if let Some(alarm) = first_watched(d, input.firing) {
        return Step::RollBack {
            alarm: alarm.name.clone(),
            reason: alarm.reason.clone(),
        };
    }
    if let Some(owner) = held_by_other(d, input.owner, input.now_ms) {
        return Step::Busy {
            owner: owner.to_owned(),
        };
    }
    let actual = match input.observed {
        Observed::Ours { percent } => *percent,
        Observed::Foreign { detail } => {
            return Step::Foreign {
                detail: detail.clone(),
            };
        }
    };
    let target = input.position.percent;
    if target > actual {
        Step::Shift {
            from: actual,
            to: target,
            complete: input.position.complete,
        }
    } else {
        Step::Hold {
            percent: actual,
            complete: input.position.complete && actual == 100,
        }
    }
}

/// The first of the deployment's alarms (in its order) that fires; alarms it does not watch are
/// ignored.
fn first_watched<'a>(d: &Deployment, firing: &'a [FiringAlarm]) -> Option<&'a FiringAlarm> {
    d.alarms
        .iter()
        .find_map(|name| firing.iter().find(|f| &f.name == name))
}

/// What a rollback request does to a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackNext {
    /// In flight: claim the rollback (one conditional write), then carry out its tasks.
    Claim,
    /// Rolled back with tasks left that nobody is working on: take them over.
    Finish,
    /// Another invocation is carrying out the rollback now.
    InProgress { owner: String },
    /// Rolled back and every task done: nothing to do.
    AlreadyRolledBack,
    /// It succeeded: an alarm after the end changes nothing.
    Finished,
}

/// Decides what a rollback request (alarm, operator, traffic action) does.
pub fn rollback_next(d: &Deployment, owner: &str, now_ms: i64) -> RollbackNext {
    match d.state {
        DeploymentState::Succeeded => RollbackNext::Finished,
        // Draining blue: the bake is over and blue may be scaled in already, so putting the
        // traffic back on it would be an outage, not a rollback.
        DeploymentState::Shifting if d.drain().is_some() => RollbackNext::Finished,
        DeploymentState::Shifting => RollbackNext::Claim,
        DeploymentState::RolledBack => {
            let pending = d.rollback.as_ref().is_none_or(|r| !pending(r).is_empty());
            if !pending {
                RollbackNext::AlreadyRolledBack
            } else if let Some(other) = held_by_other(d, owner, now_ms) {
                RollbackNext::InProgress {
                    owner: other.to_owned(),
                }
            } else {
                RollbackNext::Finish
            }
        }
    }
}

/// A task of a rollback, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTask {
    RestoreTraffic,
    FailJob,
    NotifyTeam,
}

/// The tasks of `rollback` not done yet, in order.
pub fn pending(rollback: &Rollback) -> Vec<RollbackTask> {
    let mut tasks = Vec::new();
    if !rollback.traffic_restored {
        tasks.push(RollbackTask::RestoreTraffic);
    }
    if !rollback.job_answered {
        tasks.push(RollbackTask::FailJob);
    }
    if !rollback.team_notified {
        tasks.push(RollbackTask::NotifyTeam);
    }
    tasks
}

/// A CloudWatch alarm state change, from either delivery (EventBridge or the alarm's action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmChange {
    pub account_id: String,
    pub alarm: String,
    /// `ALARM`, `OK` or `INSUFFICIENT_DATA`.
    pub state: String,
    pub reason: String,
    /// When the alarm entered the state (epoch milliseconds).
    pub state_at_ms: i64,
    pub previous_state: Option<String>,
}

/// Why an alarm change leaves a deployment alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotForDeployment {
    /// Only a transition to ALARM rolls back (an `OK` after the `ALARM`, out of order or not,
    /// changes nothing).
    NotAlarm { state: String },
    /// The alarm went off before the deployment started: a late event about an earlier state.
    /// (The traffic action still checks the alarm's current state before every step.)
    Predates {
        state_at_ms: i64,
        started_at_ms: i64,
    },
}

/// Whether `change` concerns deployment `d` at all (the record then decides, with
/// [`rollback_next`], whether anything is left to do).
pub fn alarm_concerns(change: &AlarmChange, d: &Deployment) -> Result<(), NotForDeployment> {
    if change.state != "ALARM" {
        return Err(NotForDeployment::NotAlarm {
            state: change.state.clone(),
        });
    }
    if change.state_at_ms < d.started_at_ms {
        return Err(NotForDeployment::Predates {
            state_at_ms: change.state_at_ms,
            started_at_ms: d.started_at_ms,
        });
    }
    Ok(())
}

/// The job failure message of a rolled-back deployment: what the pipeline shows.
pub fn failure_message(d: &Deployment, r: &Rollback) -> String {
    let what = match (&d.application, &d.version) {
        (Some(app), Some(version)) => format!("{app} {version}"),
        _ => format!("release {}", d.release_id),
    };
    let cause = match &r.alarm {
        Some(alarm) => format!("alarm {alarm} is in ALARM: {}", r.reason),
        None => r.reason.clone(),
    };
    format!(
        "{}: {what} was rolled back at {}% (all traffic is on the previous version again) by {}: \
         {cause}",
        d.environment, r.percent_before, r.by
    )
}

/// What the drain of blue does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainNext {
    /// Blue's deregistration delay is not over: look again at `until_ms`.
    Wait { until_ms: i64 },
    /// Apply this step (each is idempotent; the next look decides again from the task sets).
    Apply(DrainStep),
    /// Blue is gone and green is the primary task set: the deployment succeeded.
    Done,
    /// Green is gone or being deleted while all the traffic is on it: someone else changed the
    /// service, and this deployment must not go on.
    Broken { detail: String },
}

/// Decides blue's drain from the service's task sets as they are (never from what the record
/// says was done: a crash between a call and its record is caught up this way): wait for the
/// delay, then scale blue in, make green primary, delete blue, in that order. A task set that is
/// `DRAINING` (being deleted) counts as gone.
pub fn next_drain_step(
    sets: &EcsTaskSets,
    drain: &Drain,
    observed: &[TaskSetView],
    now_ms: i64,
) -> DrainNext {
    let find = |arn: &str| observed.iter().find(|t| t.arn == arn && !t.is_draining());
    let Some(green) = find(&sets.green_task_set) else {
        return DrainNext::Broken {
            detail: format!(
                "the new version's task set {} is gone or being deleted from service {} while \
                 all the traffic is on it",
                sets.green_task_set, sets.service
            ),
        };
    };
    if now_ms < drain.after_ms {
        return DrainNext::Wait {
            until_ms: drain.after_ms,
        };
    }
    let blue = sets.blue_task_set.as_deref().and_then(find);
    match blue {
        Some(blue) if blue.scale_percent > 0.0 => DrainNext::Apply(DrainStep::ScaleIn),
        _ if !green.is_primary() => DrainNext::Apply(DrainStep::Promote),
        Some(_) => DrainNext::Apply(DrainStep::Delete),
        None => DrainNext::Done,
    }
}

/// When blue may be scaled in: `delay_seconds` after `now_ms`, compressed by the plan's `scale`
/// as every other wait of the deployment is (a demo's `scale=60` makes 30 s half a second).
pub fn drain_after(now_ms: i64, delay_seconds: u32, scale: u32) -> i64 {
    let delay_ms = i64::from(delay_seconds) * 1000 / i64::from(scale.max(1));
    now_ms.saturating_add(delay_ms)
}
