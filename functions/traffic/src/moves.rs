//! What one look at a deployment does, decided from plain data: the record to write and at
//! most one effect on AWS ([`Move`]), from the step [`decide_step`] or [`next_drain_step`]
//! chose. No SDK, no clock: the action fetches (the alias or listener, the alarms, blue's task
//! sets), these functions decide, and the action applies the move.
//!
//! [`decide_step`]: shipgate::deploy::decide_step
//! [`next_drain_step`]: shipgate::deploy::next_drain_step

use shipgate::deploy::{DrainNext, Step, drain_after, rfc3339};
use shipgate::plan::Position;
use shipgate::store::{
    AppliedDrainStep, AppliedStep, Deployment, DeploymentState, Drain, DrainStep, EcsTaskSets,
    Lease, LeaseIntent, TrafficTarget,
};

/// The one effect on AWS a move makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Put this share of the traffic on the new version.
    Shift { to: u8 },
    /// One step of blue's drain.
    Drain(DrainStep),
}

/// What the job hears once a move is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The deployment succeeded: the action succeeds.
    Done,
    /// It goes on: a continuation.
    Progress,
    /// Look at the deployment again in this invocation (a drain step is done; the next may be
    /// due).
    Again,
    /// The action fails with this message.
    Fail(String),
}

/// One look's decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Move {
    /// Nothing to write.
    Answer(Reply),
    /// Save `record` (conditional on the revision read), then reply.
    Record {
        record: Box<Deployment>,
        reply: Reply,
    },
    /// Save `claim` (a lease, conditional on the revision read), make `effect`, then save
    /// `record` on the claim's revision, and reply. A lost claim moves nothing.
    Apply {
        claim: Box<Deployment>,
        effect: Effect,
        record: Box<Deployment>,
        reply: Reply,
    },
    /// A watched alarm fires: roll back (through the deployer, which claims the deployment,
    /// restores the traffic, records, and emails the team).
    RollBack { alarm: String, reason: String },
    /// Rolled back before. `restore`: a step landed after the rollback's move, so the traffic
    /// goes back to 0 first; `finish`: the rollback's tasks were left half-done by an invocation
    /// that stopped, and nobody holds them.
    RolledBack { restore: bool, finish: bool },
    /// Blue is being drained: look at its task sets.
    Drain,
}

/// A move and how it is logged.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub step: Move,
    /// `shifted`, `hold`, `reconciled`, `bake_over`, `busy`, … (the log's `outcome`).
    pub outcome: &'static str,
    /// The share of traffic on the new version the move leaves.
    pub percent: u8,
}

/// What a traffic step is decided from besides the step itself.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub job_id: &'a str,
    /// This invocation, as a lease owner.
    pub owner: &'a str,
    pub now_ms: i64,
    /// How long a lease holds.
    pub lease_ms: i64,
    /// Where the plan stands now.
    pub position: Position,
    /// The plan's time compression (`scale=`), for blue's drain delay.
    pub scale: u32,
    /// Blue's target group's deregistration delay, read when the plan is over and blue's task
    /// set is to be drained ([`needs_drain_delay`]).
    pub drain_delay_seconds: Option<u32>,
    /// Whether the rollback of a rolled-back deployment is left for this invocation to finish.
    pub finish_rollback: bool,
}

/// Whether finishing the plan now would start blue's drain, which needs blue's target group's
/// deregistration delay: a deployment with task sets whose drain has not started, at the plan's
/// end.
pub fn needs_drain_delay(d: &Deployment, position: &Position) -> bool {
    position.complete
        && d.state == DeploymentState::Shifting
        && matches!(d.task_sets(), Some(sets) if sets.drain.is_none())
}

/// Decides what `step` does to `current`.
pub fn plan_step(current: &Deployment, step: Step, cx: Context<'_>) -> Planned {
    let planned = |step, outcome, percent| Planned {
        step,
        outcome,
        percent,
    };
    match step {
        Step::Succeeded => planned(Move::Answer(Reply::Done), "succeeded", current.percent),
        Step::RolledBack { restore } => planned(
            Move::RolledBack {
                restore,
                finish: cx.finish_rollback,
            },
            "rolled_back",
            0,
        ),
        Step::RollBack { alarm, reason } => {
            planned(Move::RollBack { alarm, reason }, "alarm", current.percent)
        }
        Step::Drain => planned(Move::Drain, "drain", current.percent),
        Step::Busy { .. } => planned(Move::Answer(Reply::Progress), "busy", current.percent),
        Step::Foreign { detail } => planned(
            Move::Answer(Reply::Fail(format!(
                "{}: {} was changed outside this deployment ({detail}); shipgate stops here \
                 without touching it: check who changed it, then roll back or finish by hand",
                current.environment,
                describe(&current.target)
            ))),
            "foreign",
            current.percent,
        ),
        Step::Shift { from, to, complete } => {
            let mut claim = current.clone();
            claim.job_id = Some(cx.job_id.to_owned());
            claim.percent = from;
            claim.lease = Some(Lease {
                owner: cx.owner.to_owned(),
                until_ms: cx.now_ms.saturating_add(cx.lease_ms),
                intent: LeaseIntent::Shift { to },
            });
            claim.updated_at = rfc3339(cx.now_ms);
            let mut record = claim.clone();
            record.percent = to;
            record.steps.push(AppliedStep {
                percent: to,
                at_ms: cx.now_ms,
            });
            record.lease = None;
            record.next_step_at_ms = next_wake(&cx.position);
            if complete {
                finish(&mut record, &cx);
            }
            let reply = ended_or_progress(&record);
            planned(
                Move::Apply {
                    claim: Box::new(claim),
                    effect: Effect::Shift { to },
                    record: Box::new(record),
                    reply,
                },
                if complete { "shifted_done" } else { "shifted" },
                to,
            )
        }
        Step::Hold { percent, complete } => {
            let next = next_wake(&cx.position);
            let behind = current.percent != percent;
            let changed = behind
                || current.job_id.as_deref() != Some(cx.job_id)
                || current.next_step_at_ms != next
                || current.lease.is_some()
                || complete;
            if !changed {
                return planned(Move::Answer(Reply::Progress), "hold", percent);
            }
            let mut record = current.clone();
            if behind {
                // A move whose record was lost (a crash between the two): catch up.
                record.steps.push(AppliedStep {
                    percent,
                    at_ms: cx.now_ms,
                });
            }
            record.percent = percent;
            record.job_id = Some(cx.job_id.to_owned());
            record.next_step_at_ms = next;
            record.lease = None;
            record.updated_at = rfc3339(cx.now_ms);
            if complete {
                finish(&mut record, &cx);
            }
            let outcome = match (complete, behind) {
                (true, _) if record.drain().is_some() => "bake_over",
                (true, _) => "done",
                (false, true) => "reconciled",
                (false, false) => "hold",
            };
            let reply = ended_or_progress(&record);
            planned(
                Move::Record {
                    record: Box::new(record),
                    reply,
                },
                outcome,
                percent,
            )
        }
    }
}

/// Decides what blue's drain does next.
pub fn plan_drain(
    current: &Deployment,
    next: DrainNext,
    job_id: &str,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Planned {
    let planned = |step, outcome| Planned {
        step,
        outcome,
        percent: current.percent,
    };
    // Saves `record` as this job's, with no lease, and replies.
    let record_unleased = |mut record: Deployment, reply, outcome| {
        record.job_id = Some(job_id.to_owned());
        record.lease = None;
        record.updated_at = rfc3339(now_ms);
        planned(
            Move::Record {
                record: Box::new(record),
                reply,
            },
            outcome,
        )
    };
    match next {
        DrainNext::Wait { until_ms } => {
            let changed = current.next_step_at_ms != Some(until_ms)
                || current.job_id.as_deref() != Some(job_id)
                || current.lease.is_some();
            if !changed {
                return planned(Move::Answer(Reply::Progress), "wait");
            }
            let mut record = current.clone();
            record.next_step_at_ms = Some(until_ms);
            record_unleased(record, Reply::Progress, "wait")
        }
        DrainNext::Broken { detail } => planned(
            Move::Answer(Reply::Fail(format!(
                "{}: all traffic is on the new version, but blue cannot be drained: {detail}; \
                 shipgate stops here without touching the service: check who changed it, then \
                 finish by hand",
                current.environment
            ))),
            "broken",
        ),
        DrainNext::Done => {
            let mut record = current.clone();
            record.state = DeploymentState::Succeeded;
            record.next_step_at_ms = None;
            record_unleased(record, Reply::Done, "drained")
        }
        DrainNext::Apply(step) => {
            let mut claim = current.clone();
            claim.job_id = Some(job_id.to_owned());
            claim.lease = Some(Lease {
                owner: owner.to_owned(),
                until_ms: now_ms.saturating_add(lease_ms),
                intent: LeaseIntent::Drain { step },
            });
            claim.updated_at = rfc3339(now_ms);
            let mut record = claim.clone();
            record.lease = None;
            if let TrafficTarget::AlbListener {
                task_sets: Some(EcsTaskSets { drain: Some(d), .. }),
                ..
            } = &mut record.target
            {
                d.steps.push(AppliedDrainStep {
                    step,
                    at_ms: now_ms,
                });
            }
            planned(
                Move::Apply {
                    claim: Box::new(claim),
                    effect: Effect::Drain(step),
                    record: Box::new(record),
                    reply: Reply::Again,
                },
                "applied",
            )
        }
    }
}

/// The plan (bake included) is over: a deployment with task sets starts draining blue after
/// its target group's deregistration delay (compressed by the plan's scale), any other
/// succeeds.
fn finish(record: &mut Deployment, cx: &Context<'_>) {
    let has_blue_to_drain = matches!(record.task_sets(), Some(sets) if sets.drain.is_none());
    if !has_blue_to_drain {
        record.state = DeploymentState::Succeeded;
        return;
    }
    // The action reads the delay whenever [`needs_drain_delay`]; none read means none set.
    let delay_seconds = cx.drain_delay_seconds.unwrap_or(0);
    let after_ms = drain_after(cx.now_ms, delay_seconds, cx.scale);
    if let TrafficTarget::AlbListener {
        task_sets: Some(sets),
        ..
    } = &mut record.target
    {
        sets.drain = Some(Drain {
            after_ms,
            delay_seconds,
            steps: Vec::new(),
        });
    }
    record.next_step_at_ms = Some(after_ms);
}

fn ended_or_progress(d: &Deployment) -> Reply {
    if d.state == DeploymentState::Succeeded {
        Reply::Done
    } else {
        Reply::Progress
    }
}

fn next_wake(position: &Position) -> Option<i64> {
    position.next_wake.and_then(|w| i64::try_from(w).ok())
}

/// `alias orders:live, version 1 → 2`, `listener …, blue → green (task set ecs-svc/…)`.
pub fn describe(target: &TrafficTarget) -> String {
    match target {
        TrafficTarget::LambdaAlias {
            function,
            alias,
            previous_version,
            new_version,
        } => format!("alias {function}:{alias}, version {previous_version} → {new_version}"),
        TrafficTarget::AlbListener {
            listener_arn,
            task_sets: Some(sets),
            ..
        } => format!(
            "listener {listener_arn}, blue → green (task set {})",
            short_task_set(&sets.green_task_set)
        ),
        TrafficTarget::AlbListener { listener_arn, .. } => {
            format!("listener {listener_arn}, blue → green")
        }
    }
}

/// `ecs-svc/123…` of a task set ARN, for people.
pub fn short_task_set(arn: &str) -> &str {
    arn.find("ecs-svc/").map_or(arn, |i| &arn[i..])
}

#[cfg(test)]
mod tests;
