//! The execution rules as a table: each row starts from nothing on one small pipeline, drives it
//! through `given` one input at a time (as the engine feeds them in), applies `event`, and checks
//! the statuses that result, by the names CodePipeline documents for executions
//! (`InProgress`, `Stopping`, `Stopped`, `Succeeded`, `Superseded`, `Failed`), stages and
//! actions (`InProgress`, `Abandoned`, `Succeeded`, `Failed`).
//!
//! The pipeline: `Source` (S3 source) → `Check` (Lambda, reads the source artifact) → `Gate`
//! (manual approval, notified to one function) → `Promote` (Lambda). One action per stage, so a
//! stage names its action in the rows.

use super::*;
use crate::codepipeline::definition::{PipelineType, StageDefinition};

use Ex::{A, B, C};
use Stage::{Check, Gate, Promote, Source};
use Step::*;

const PIPELINE: &str = "shipgate";
const JOB_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const CONTINUATION_DELAY: Duration = Duration::from_secs(1);

/// Executions, in the order they are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ex {
    A,
    B,
    C,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Source,
    Check,
    Gate,
    Promote,
}

impl Stage {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Source => "Source",
            Check => "Check",
            Gate => "Gate",
            Promote => "Promote",
        }
    }
}

/// One input to the state machine.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `StartPipelineExecution`.
    Start(Ex),
    /// The S3 source action's copy finished, or failed.
    SourceFetched(Ex),
    SourceFailed(Ex),
    /// `PutJobSuccessResult` for the stage's current job: plain, or with a continuation token.
    JobSucceeded(Ex, Stage),
    JobContinued(Ex, Stage),
    /// `PutJobFailureResult` for the stage's current job.
    JobFailed(Ex, Stage),
    /// The timer of the stage's current job fires.
    JobTimedOut(Ex, Stage),
    /// The timer of the stage's first job fires (after a continuation replaced that job).
    FirstJobTimedOut(Ex, Stage),
    /// Lambda knows no such function.
    JobNotDelivered(Ex, Stage),
    /// `PutApprovalResult` on the gate.
    Approve(Ex),
    Reject(Ex),
    /// The gate's expiry timer fires.
    ApprovalExpired(Ex),
    /// `StopPipelineExecution`, stop and wait or stop and abandon.
    StopAndWait(Ex),
    StopAndAbandon(Ex),
}

/// What must hold after the event.
#[derive(Debug, Clone, Copy)]
enum Then {
    /// The execution's status (`GetPipelineExecution`).
    ExecutionIs(Ex, &'static str),
    /// `statusSummary` is "Superseded by pipeline execution <the second one's id>".
    SupersededBy(Ex, Ex),
    /// The status of the execution's run of a stage.
    StageIs(Ex, Stage, &'static str),
    /// The status of the execution's run of a stage's action, and for a failure its
    /// `errorDetails.code`.
    ActionIs(Ex, Stage, &'static str),
    ActionFailed(Ex, Stage, &'static str),
    /// The execution never entered the stage.
    NotEntered(Ex, Stage),
    /// The executions waiting in front of a stage, next first (`inboundExecutions`).
    Inbound(Stage, &'static [Ex]),
    /// The event's request was refused with this exception.
    Refused(ErrorCode),
    /// The event delivered the stage's current job at once and armed its timeout.
    Invoked(Ex, Stage),
    /// The event delivered the stage's current job after the continuation delay, with a
    /// continuation token, and armed a fresh timeout.
    InvokedAgain(Ex, Stage),
    /// The event notified the approval topic's subscriber and armed the approval's expiry.
    ApprovalRequested(Ex),
    /// The event asked the engine for nothing.
    NothingToDo,
}

use Then::*;

struct Row {
    name: &'static str,
    mode: ExecutionMode,
    /// Applied in order, each must be accepted.
    given: &'static [&'static [Step]],
    event: Step,
    then: &'static [Then],
}

/// A's check is running.
const CHECKING_A: &[Step] = &[Start(A), SourceFetched(A)];
/// A waits at the gate for a decision.
const A_AT_GATE: &[Step] = &[Start(A), SourceFetched(A), JobSucceeded(A, Check)];
/// B has passed its check and waits in front of the gate A holds.
const B_BEHIND_GATE: &[Step] = &[Start(B), SourceFetched(B), JobSucceeded(B, Check)];
/// C's check is running.
const CHECKING_C: &[Step] = &[Start(C), SourceFetched(C)];

const SUPERSEDED: ExecutionMode = ExecutionMode::Superseded;
const QUEUED: ExecutionMode = ExecutionMode::Queued;
const PARALLEL: ExecutionMode = ExecutionMode::Parallel;

const ROWS: &[Row] = &[
    // ---- Lambda jobs ----
    Row {
        name: "a started execution runs the source action",
        mode: SUPERSEDED,
        given: &[],
        event: Start(A),
        then: &[
            ExecutionIs(A, "InProgress"),
            StageIs(A, Source, "InProgress"),
            ActionIs(A, Source, "InProgress"),
        ],
    },
    Row {
        name: "a fetched source starts the next stage's job",
        mode: SUPERSEDED,
        given: &[&[Start(A)]],
        event: SourceFetched(A),
        then: &[
            ActionIs(A, Source, "Succeeded"),
            StageIs(A, Source, "Succeeded"),
            ActionIs(A, Check, "InProgress"),
            Invoked(A, Check),
        ],
    },
    Row {
        name: "a source that cannot be read fails the execution",
        mode: SUPERSEDED,
        given: &[&[Start(A)]],
        event: SourceFailed(A),
        then: &[
            ActionFailed(A, Source, "JobFailed"),
            StageIs(A, Source, "Failed"),
            ExecutionIs(A, "Failed"),
            NotEntered(A, Check),
        ],
    },
    Row {
        name: "a job that succeeds ends its stage and the next stage starts",
        mode: SUPERSEDED,
        given: &[CHECKING_A],
        event: JobSucceeded(A, Check),
        then: &[
            ActionIs(A, Check, "Succeeded"),
            StageIs(A, Check, "Succeeded"),
            ActionIs(A, Gate, "InProgress"),
            ExecutionIs(A, "InProgress"),
            ApprovalRequested(A),
        ],
    },
    Row {
        name: "a job that continues stays in progress and is invoked again after a delay",
        mode: SUPERSEDED,
        given: &[CHECKING_A],
        event: JobContinued(A, Check),
        then: &[
            ActionIs(A, Check, "InProgress"),
            StageIs(A, Check, "InProgress"),
            InvokedAgain(A, Check),
            NotEntered(A, Gate),
        ],
    },
    Row {
        name: "a continued job that then succeeds ends its action",
        mode: SUPERSEDED,
        given: &[CHECKING_A, &[JobContinued(A, Check)]],
        event: JobSucceeded(A, Check),
        then: &[
            ActionIs(A, Check, "Succeeded"),
            ActionIs(A, Gate, "InProgress"),
        ],
    },
    Row {
        name: "a job that fails fails its stage and the execution; later stages never start",
        mode: SUPERSEDED,
        given: &[CHECKING_A],
        event: JobFailed(A, Check),
        then: &[
            ActionFailed(A, Check, "JobFailed"),
            StageIs(A, Check, "Failed"),
            ExecutionIs(A, "Failed"),
            NotEntered(A, Gate),
            NothingToDo,
        ],
    },
    Row {
        name: "a job nobody answers fails when its timer fires",
        mode: SUPERSEDED,
        given: &[CHECKING_A],
        event: JobTimedOut(A, Check),
        then: &[
            ActionFailed(A, Check, "JobFailed"),
            StageIs(A, Check, "Failed"),
            ExecutionIs(A, "Failed"),
        ],
    },
    Row {
        name: "a continuation restarts the timeout: the first job's timer changes nothing",
        mode: SUPERSEDED,
        given: &[CHECKING_A, &[JobContinued(A, Check)]],
        event: FirstJobTimedOut(A, Check),
        then: &[
            ActionIs(A, Check, "InProgress"),
            ExecutionIs(A, "InProgress"),
            NothingToDo,
        ],
    },
    Row {
        name: "a job answered after its timeout is refused",
        mode: SUPERSEDED,
        given: &[CHECKING_A, &[JobTimedOut(A, Check)]],
        event: JobSucceeded(A, Check),
        then: &[
            Refused(ErrorCode::InvalidJobState),
            ActionFailed(A, Check, "JobFailed"),
        ],
    },
    Row {
        name: "a job answered twice is refused the second time",
        mode: SUPERSEDED,
        given: &[CHECKING_A, &[JobSucceeded(A, Check)]],
        event: JobFailed(A, Check),
        then: &[
            Refused(ErrorCode::InvalidJobState),
            ActionIs(A, Check, "Succeeded"),
            ExecutionIs(A, "InProgress"),
        ],
    },
    Row {
        name: "a function Lambda does not know fails its action at once",
        mode: SUPERSEDED,
        given: &[CHECKING_A],
        event: JobNotDelivered(A, Check),
        then: &[
            ActionFailed(A, Check, "JobFailed"),
            ExecutionIs(A, "Failed"),
        ],
    },
    Row {
        name: "the last stage succeeding ends the execution Succeeded",
        mode: SUPERSEDED,
        given: &[A_AT_GATE, &[Approve(A)]],
        event: JobSucceeded(A, Promote),
        then: &[
            StageIs(A, Promote, "Succeeded"),
            ExecutionIs(A, "Succeeded"),
        ],
    },
    // ---- manual approvals ----
    Row {
        name: "an approved approval succeeds and the next stage starts",
        mode: SUPERSEDED,
        given: &[A_AT_GATE],
        event: Approve(A),
        then: &[
            ActionIs(A, Gate, "Succeeded"),
            StageIs(A, Gate, "Succeeded"),
            ActionIs(A, Promote, "InProgress"),
            Invoked(A, Promote),
        ],
    },
    Row {
        name: "a rejected approval fails its stage and the execution",
        mode: SUPERSEDED,
        given: &[A_AT_GATE],
        event: Reject(A),
        then: &[
            ActionFailed(A, Gate, "Rejected"),
            StageIs(A, Gate, "Failed"),
            ExecutionIs(A, "Failed"),
            NotEntered(A, Promote),
        ],
    },
    Row {
        name: "an approval nobody decides expires and fails the execution",
        mode: SUPERSEDED,
        given: &[A_AT_GATE],
        event: ApprovalExpired(A),
        then: &[
            ActionFailed(A, Gate, "ApprovalExpired"),
            StageIs(A, Gate, "Failed"),
            ExecutionIs(A, "Failed"),
        ],
    },
    Row {
        name: "an approval decided once cannot be decided again",
        mode: SUPERSEDED,
        given: &[A_AT_GATE, &[Approve(A)]],
        event: Reject(A),
        then: &[
            Refused(ErrorCode::ApprovalAlreadyCompleted),
            ActionIs(A, Gate, "Succeeded"),
        ],
    },
    Row {
        name: "an expired approval cannot be approved",
        mode: SUPERSEDED,
        given: &[A_AT_GATE, &[ApprovalExpired(A)]],
        event: Approve(A),
        then: &[
            Refused(ErrorCode::ApprovalAlreadyCompleted),
            ExecutionIs(A, "Failed"),
        ],
    },
    Row {
        name: "the expiry timer of a decided approval changes nothing",
        mode: SUPERSEDED,
        given: &[A_AT_GATE, &[Approve(A)]],
        event: ApprovalExpired(A),
        then: &[
            ActionIs(A, Gate, "Succeeded"),
            ExecutionIs(A, "InProgress"),
            NothingToDo,
        ],
    },
    // ---- SUPERSEDED: only in between stages ----
    Row {
        name: "superseded: a newer execution supersedes the one waiting in front of a stage",
        mode: SUPERSEDED,
        given: &[&[Start(A), Start(B)]],
        event: Start(C),
        then: &[
            ExecutionIs(B, "Superseded"),
            SupersededBy(B, C),
            Inbound(Source, &[C]),
            ExecutionIs(A, "InProgress"),
            ActionIs(A, Source, "InProgress"),
        ],
    },
    Row {
        name: "superseded: an execution waiting at an approval is not superseded by a newer one",
        mode: SUPERSEDED,
        given: &[A_AT_GATE, &[Start(B), SourceFetched(B)]],
        event: JobSucceeded(B, Check),
        then: &[
            ExecutionIs(A, "InProgress"),
            ActionIs(A, Gate, "InProgress"),
            ExecutionIs(B, "InProgress"),
            NotEntered(B, Gate),
            Inbound(Gate, &[B]),
        ],
    },
    Row {
        name: "superseded: a still newer one supersedes the one waiting in front of the gate",
        mode: SUPERSEDED,
        given: &[A_AT_GATE, B_BEHIND_GATE, CHECKING_C],
        event: JobSucceeded(C, Check),
        then: &[
            ExecutionIs(B, "Superseded"),
            SupersededBy(B, C),
            Inbound(Gate, &[C]),
            ActionIs(A, Gate, "InProgress"),
        ],
    },
    Row {
        name: "superseded: an approved gate lets the waiting execution in",
        mode: SUPERSEDED,
        given: &[A_AT_GATE, B_BEHIND_GATE],
        event: Approve(A),
        then: &[
            ActionIs(A, Promote, "InProgress"),
            ActionIs(B, Gate, "InProgress"),
            Inbound(Gate, &[]),
            ApprovalRequested(B),
        ],
    },
    Row {
        name: "superseded: a rejected gate lets the waiting execution in",
        mode: SUPERSEDED,
        given: &[A_AT_GATE, B_BEHIND_GATE],
        event: Reject(A),
        then: &[ExecutionIs(A, "Failed"), ActionIs(B, Gate, "InProgress")],
    },
    Row {
        name: "superseded: an expired gate lets the waiting execution in",
        mode: SUPERSEDED,
        given: &[A_AT_GATE, B_BEHIND_GATE],
        event: ApprovalExpired(A),
        then: &[ExecutionIs(A, "Failed"), ActionIs(B, Gate, "InProgress")],
    },
    // ---- QUEUED ----
    Row {
        name: "queued: waiting executions queue in arrival order and none is superseded",
        mode: QUEUED,
        given: &[A_AT_GATE, B_BEHIND_GATE, CHECKING_C],
        event: JobSucceeded(C, Check),
        then: &[
            ExecutionIs(B, "InProgress"),
            ExecutionIs(C, "InProgress"),
            Inbound(Gate, &[B, C]),
        ],
    },
    Row {
        name: "queued: the first in the queue enters when the stage is released",
        mode: QUEUED,
        given: &[
            A_AT_GATE,
            B_BEHIND_GATE,
            CHECKING_C,
            &[JobSucceeded(C, Check)],
        ],
        event: Approve(A),
        then: &[
            ActionIs(B, Gate, "InProgress"),
            NotEntered(C, Gate),
            Inbound(Gate, &[C]),
        ],
    },
    // ---- PARALLEL ----
    Row {
        name: "parallel: a second execution enters a stage the first is in",
        mode: PARALLEL,
        given: &[&[Start(A)]],
        event: Start(B),
        then: &[
            ActionIs(A, Source, "InProgress"),
            ActionIs(B, Source, "InProgress"),
            Inbound(Source, &[]),
        ],
    },
    Row {
        name: "parallel: executions do not wait for each other at an approval",
        mode: PARALLEL,
        given: &[A_AT_GATE, &[Start(B), SourceFetched(B)]],
        event: JobSucceeded(B, Check),
        then: &[
            ActionIs(A, Gate, "InProgress"),
            ActionIs(B, Gate, "InProgress"),
            Inbound(Gate, &[]),
        ],
    },
    // ---- StopPipelineExecution ----
    Row {
        name: "stop and wait lets the running action finish",
        mode: SUPERSEDED,
        given: &[CHECKING_A],
        event: StopAndWait(A),
        then: &[
            ExecutionIs(A, "Stopping"),
            StageIs(A, Check, "Stopping"),
            ActionIs(A, Check, "InProgress"),
        ],
    },
    Row {
        name: "stop and wait: once the action finishes the execution stops, nothing after it starts",
        mode: SUPERSEDED,
        given: &[CHECKING_A, &[StopAndWait(A)]],
        event: JobSucceeded(A, Check),
        then: &[
            ActionIs(A, Check, "Succeeded"),
            StageIs(A, Check, "Stopped"),
            ExecutionIs(A, "Stopped"),
            NotEntered(A, Gate),
        ],
    },
    Row {
        name: "stop and abandon abandons the running action at once",
        mode: SUPERSEDED,
        given: &[CHECKING_A],
        event: StopAndAbandon(A),
        then: &[
            ActionIs(A, Check, "Abandoned"),
            StageIs(A, Check, "Stopped"),
            ExecutionIs(A, "Stopped"),
        ],
    },
    Row {
        name: "stop and abandon: the abandoned job can no longer be answered",
        mode: SUPERSEDED,
        given: &[CHECKING_A, &[StopAndAbandon(A)]],
        event: JobSucceeded(A, Check),
        then: &[
            Refused(ErrorCode::InvalidJobState),
            ActionIs(A, Check, "Abandoned"),
        ],
    },
    Row {
        name: "stop and abandon: the abandoned approval can no longer be decided",
        mode: SUPERSEDED,
        given: &[A_AT_GATE, &[StopAndAbandon(A)]],
        event: Approve(A),
        then: &[
            Refused(ErrorCode::ApprovalAlreadyCompleted),
            ActionIs(A, Gate, "Abandoned"),
            NotEntered(A, Promote),
        ],
    },
    Row {
        name: "stop and abandon: a stopped gate lets the waiting execution in",
        mode: SUPERSEDED,
        given: &[A_AT_GATE, B_BEHIND_GATE],
        event: StopAndAbandon(A),
        then: &[ExecutionIs(A, "Stopped"), ActionIs(B, Gate, "InProgress")],
    },
    Row {
        name: "a stopping execution can still be abandoned",
        mode: SUPERSEDED,
        given: &[CHECKING_A, &[StopAndWait(A)]],
        event: StopAndAbandon(A),
        then: &[ActionIs(A, Check, "Abandoned"), ExecutionIs(A, "Stopped")],
    },
    Row {
        name: "a second stop and wait is a duplicated stop request",
        mode: SUPERSEDED,
        given: &[CHECKING_A, &[StopAndWait(A)]],
        event: StopAndWait(A),
        then: &[
            Refused(ErrorCode::DuplicatedStopRequest),
            ExecutionIs(A, "Stopping"),
        ],
    },
    Row {
        name: "a finished execution cannot be stopped",
        mode: SUPERSEDED,
        given: &[CHECKING_A, &[JobFailed(A, Check)]],
        event: StopAndWait(A),
        then: &[
            Refused(ErrorCode::PipelineExecutionNotStoppable),
            ExecutionIs(A, "Failed"),
        ],
    },
    Row {
        name: "stopping an execution waiting in front of a stage stops it at once",
        mode: SUPERSEDED,
        given: &[&[Start(A), Start(B)]],
        event: StopAndWait(B),
        then: &[
            ExecutionIs(B, "Stopped"),
            NotEntered(B, Source),
            Inbound(Source, &[]),
            ExecutionIs(A, "InProgress"),
        ],
    },
];

#[test]
fn every_row_of_the_execution_rules_holds() {
    let mut failures = Vec::new();
    for row in ROWS {
        let mut world = World::new(row.mode);
        for step in row.given.iter().flat_map(|steps| steps.iter()) {
            if let Err(e) = world.apply(*step) {
                panic!("{}: given step {step:?} was refused: {e}", row.name);
            }
        }
        let outcome = world.apply(row.event);
        let refusal_expected = row.then.iter().any(|t| matches!(t, Refused(_)));
        if let (Err(e), false) = (&outcome, refusal_expected) {
            failures.push(format!("{}: {:?} was refused: {e}", row.name, row.event));
        }
        for then in row.then {
            if let Err(problem) = world.check(*then, &outcome) {
                failures.push(format!("{}: {then:?}: {problem}", row.name));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// An approval's own `TimeoutInMinutes` replaces the 7-day default.
#[test]
fn an_approval_expires_after_its_own_timeout_when_it_sets_one() {
    let mut definition = pipeline(SUPERSEDED);
    definition.stages[Gate.index()].actions[0].timeout_in_minutes = Some(90);
    let mut world = World::with_definition(definition);
    for step in A_AT_GATE {
        world.apply(*step).unwrap();
    }
    let timers: Vec<Duration> = world
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::ApprovalTimer { after, .. } => Some(*after),
            _ => None,
        })
        .collect();
    assert_eq!(timers, vec![Duration::from_secs(90 * 60)]);
}

/// The state machine, the executions it started, and what the last input asked the engine
/// to do.
struct World {
    state: State,
    ids: BTreeMap<Ex, String>,
    /// Every job delivered so far, first first.
    jobs: Vec<(String, ActionKey)>,
    fetches: Vec<SourceFetch>,
    effects: Vec<Effect>,
    now: OffsetDateTime,
}

impl World {
    fn new(mode: ExecutionMode) -> Self {
        Self::with_definition(pipeline(mode))
    }

    fn with_definition(definition: PipelineDefinition) -> Self {
        let settings = Settings {
            region: "eu-west-1".to_owned(),
            account_id: "111111111111".to_owned(),
            job_timeout: JOB_TIMEOUT,
            approval_timeout: APPROVAL_TIMEOUT,
            continuation_delay: CONTINUATION_DELAY,
        };
        let subscribers = BTreeMap::from([(
            "ApprovalTopic".to_owned(),
            vec!["MailerFunction".to_owned()],
        )]);
        let now = OffsetDateTime::UNIX_EPOCH;
        Self {
            state: State::new(vec![definition], subscribers, settings, now),
            ids: BTreeMap::new(),
            jobs: Vec::new(),
            fetches: Vec::new(),
            effects: Vec::new(),
            now,
        }
    }

    fn id(&self, ex: Ex) -> String {
        self.ids.get(&ex).cloned().unwrap_or_default()
    }

    fn key(&self, ex: Ex, stage: Stage) -> ActionKey {
        ActionKey {
            pipeline: PIPELINE.to_owned(),
            execution_id: self.id(ex),
            stage: stage.index(),
            action: 0,
        }
    }

    fn execution(&self, ex: Ex) -> Option<&Execution> {
        self.state.pipelines.get(PIPELINE)?.get(&self.id(ex))
    }

    fn stage_run(&self, ex: Ex, stage: Stage) -> Option<(&Execution, &StageRun)> {
        let execution = self.execution(ex)?;
        Some((execution, execution.stages[stage.index()].as_ref()?))
    }

    fn action_run(&self, ex: Ex, stage: Stage) -> Option<&ActionRun> {
        self.stage_run(ex, stage)?.1.actions[0].as_ref()
    }

    fn current_job(&self, ex: Ex, stage: Stage) -> String {
        self.action_run(ex, stage)
            .and_then(|run| run.job_id.clone())
            .unwrap_or_default()
    }

    fn apply(&mut self, step: Step) -> Result<(), ApiError> {
        self.now += Duration::from_secs(1);
        let now = self.now;
        let mut effects = Vec::new();
        let result = match step {
            Start(ex) => {
                let input = wire::StartPipelineExecutionInput {
                    name: PIPELINE.to_owned(),
                    variables: Vec::new(),
                    client_request_token: None,
                    source_revisions: Vec::new(),
                };
                self.state
                    .start_execution(input, now, &mut effects)
                    .map(|id| {
                        self.ids.insert(ex, id);
                    })
            }
            SourceFetched(ex) | SourceFailed(ex) => {
                let fetch = self
                    .fetches
                    .iter()
                    .find(|f| f.key == self.key(ex, Source))
                    .cloned()
                    .ok_or_else(|| ApiError::validation("no source fetch was asked for"))?;
                let result = match step {
                    SourceFetched(_) => Ok(FetchedSource {
                        version_id: "v1".to_owned(),
                        etag: "etag".to_owned(),
                        last_modified: None,
                        revision_summary: None,
                    }),
                    _ => Err("Could not read s3://drops/incoming/release.zip".to_owned()),
                };
                self.state.source_fetched(&fetch, result, now, &mut effects);
                Ok(())
            }
            JobSucceeded(ex, stage) | JobContinued(ex, stage) => {
                let input = wire::PutJobSuccessResultInput {
                    job_id: self.current_job(ex, stage),
                    current_revision: None,
                    continuation_token: matches!(step, JobContinued(..))
                        .then(|| "next-page".to_owned()),
                    execution_details: None,
                    output_variables: None,
                };
                self.state.put_job_success(input, now, &mut effects)
            }
            JobFailed(ex, stage) => {
                let input = wire::PutJobFailureResultInput {
                    job_id: self.current_job(ex, stage),
                    failure_details: wire::FailureDetails {
                        failure_type: "JobFailed".to_owned(),
                        message: "the check failed".to_owned(),
                        external_execution_id: None,
                    },
                };
                self.state.put_job_failure(input, now, &mut effects)
            }
            JobTimedOut(ex, stage) => {
                let job = self.current_job(ex, stage);
                self.state.job_timed_out(&job, now, &mut effects);
                Ok(())
            }
            FirstJobTimedOut(ex, stage) => {
                let key = self.key(ex, stage);
                let first = self.jobs.iter().find(|(_, k)| *k == key);
                let job = first.map(|(id, _)| id.clone()).unwrap_or_default();
                self.state.job_timed_out(&job, now, &mut effects);
                Ok(())
            }
            JobNotDelivered(ex, stage) => {
                let job = self.current_job(ex, stage);
                let message = "Function not found".to_owned();
                self.state
                    .job_not_delivered(&job, message, now, &mut effects);
                Ok(())
            }
            Approve(ex) | Reject(ex) => {
                let token = self
                    .action_run(ex, Gate)
                    .and_then(|run| run.approval_token.clone())
                    .unwrap_or_default();
                let status = if matches!(step, Approve(_)) {
                    "Approved"
                } else {
                    "Rejected"
                };
                let input = wire::PutApprovalResultInput {
                    pipeline_name: PIPELINE.to_owned(),
                    stage_name: Gate.name().to_owned(),
                    action_name: "Approve".to_owned(),
                    result: wire::ApprovalResult {
                        summary: format!("{status} by the reviewer"),
                        status: status.to_owned(),
                    },
                    token,
                };
                self.state
                    .put_approval_result(input, now, &mut effects)
                    .map(|_| ())
            }
            ApprovalExpired(ex) => {
                let token = self
                    .action_run(ex, Gate)
                    .and_then(|run| run.approval_token.clone())
                    .unwrap_or_default();
                let key = self.key(ex, Gate);
                self.state.approval_expired(&key, &token, now, &mut effects);
                Ok(())
            }
            StopAndWait(ex) | StopAndAbandon(ex) => {
                let input = wire::StopPipelineExecutionInput {
                    pipeline_name: PIPELINE.to_owned(),
                    pipeline_execution_id: self.id(ex),
                    abandon: matches!(step, StopAndAbandon(_)),
                    reason: None,
                };
                self.state
                    .stop_execution(input, now, &mut effects)
                    .map(|_| ())
            }
        };
        for effect in &effects {
            match effect {
                Effect::FetchSource(fetch) => self.fetches.push(fetch.clone()),
                Effect::InvokeJob { job_id, .. } => {
                    if let Some(job) = self.state.jobs.get(job_id) {
                        self.jobs.push((job_id.clone(), job.key.clone()));
                    }
                }
                _ => {}
            }
        }
        self.effects = effects;
        result
    }

    fn check(&self, then: Then, outcome: &Result<(), ApiError>) -> Result<(), String> {
        let expect = |what: &str, actual: Option<&str>, expected: &str| {
            if actual == Some(expected) {
                Ok(())
            } else {
                Err(format!("{what} is {actual:?}, expected {expected}"))
            }
        };
        match then {
            ExecutionIs(ex, status) => {
                let actual = self.execution(ex).map(|e| e.status.as_str());
                expect("the execution", actual, status)
            }
            SupersededBy(older, newer) => {
                let summary = self.execution(older).and_then(|e| e.status_summary.clone());
                let expected = format!("Superseded by pipeline execution {}", self.id(newer));
                expect("the summary", summary.as_deref(), &expected)
            }
            StageIs(ex, stage, status) => {
                let actual = self.stage_run(ex, stage).map(|(e, s)| stage_status(e, s));
                expect("the stage", actual, status)
            }
            ActionIs(ex, stage, status) => {
                let actual = self.action_run(ex, stage).map(|a| a.status.as_str());
                expect("the action", actual, status)
            }
            ActionFailed(ex, stage, code) => {
                let action = self.action_run(ex, stage);
                expect("the action", action.map(|a| a.status.as_str()), "Failed")?;
                let error = action.and_then(|a| a.error.as_ref());
                expect("the error code", error.map(|e| e.code.as_str()), code)
            }
            NotEntered(ex, stage) => match self.stage_run(ex, stage) {
                None => Ok(()),
                Some(_) => Err(format!("{ex:?} entered {}", stage.name())),
            },
            Inbound(stage, expected) => {
                let state = self
                    .state
                    .pipeline_state(PIPELINE)
                    .map_err(|e| e.to_string())?;
                let inbound: Vec<String> = state.stage_states[stage.index()]
                    .inbound_executions
                    .iter()
                    .flatten()
                    .map(|e| e.pipeline_execution_id.clone())
                    .collect();
                let expected: Vec<String> = expected.iter().map(|ex| self.id(*ex)).collect();
                if inbound == expected {
                    Ok(())
                } else {
                    Err(format!("inbound {inbound:?}, expected {expected:?}"))
                }
            }
            Refused(code) => match outcome {
                Err(e) if e.code == code => Ok(()),
                other => Err(format!("the event answered {other:?}")),
            },
            Invoked(ex, stage) | InvokedAgain(ex, stage) => {
                let job = self.current_job(ex, stage);
                let again = matches!(then, InvokedAgain(..));
                let delay = if again {
                    CONTINUATION_DELAY
                } else {
                    Duration::ZERO
                };
                let invoked = self.effects.iter().any(|e| {
                    matches!(e, Effect::InvokeJob { job_id, delay: d, event, .. }
                        if *job_id == job
                            && *d == delay
                            && event.pointer("/CodePipeline.job/data/continuationToken").is_some() == again)
                });
                let timer = self.effects.iter().any(|e| {
                    matches!(e, Effect::JobTimer { job_id, after }
                        if *job_id == job && *after == JOB_TIMEOUT + delay)
                });
                if invoked && timer {
                    Ok(())
                } else {
                    Err(format!(
                        "job {job}: invoked {invoked}, timer {timer} in {:?}",
                        self.effects
                    ))
                }
            }
            ApprovalRequested(ex) => {
                let key = self.key(ex, Gate);
                let notified = self
                    .effects
                    .iter()
                    .any(|e| matches!(e, Effect::Notify { function, .. } if function == "MailerFunction"));
                let timer = self.effects.iter().any(|e| {
                    matches!(e, Effect::ApprovalTimer { key: k, after, .. }
                        if *k == key && *after == APPROVAL_TIMEOUT)
                });
                if notified && timer {
                    Ok(())
                } else {
                    Err(format!(
                        "notified {notified}, timer {timer} in {:?}",
                        self.effects
                    ))
                }
            }
            NothingToDo => match self.effects.as_slice() {
                [] => Ok(()),
                effects => Err(format!("effects {effects:?}")),
            },
        }
    }
}

fn pipeline(mode: ExecutionMode) -> PipelineDefinition {
    let action = |name: &str, category: &str, provider: &str, kind: ActionKind| ActionDefinition {
        name: name.to_owned(),
        action_type: ActionTypeId {
            category: category.to_owned(),
            owner: "AWS".to_owned(),
            provider: provider.to_owned(),
            version: "1".to_owned(),
        },
        run_order: 1,
        configuration: BTreeMap::new(),
        input_artifacts: Vec::new(),
        output_artifacts: Vec::new(),
        namespace: None,
        region: None,
        role_arn: None,
        timeout_in_minutes: None,
        kind,
    };
    let lambda = |name: &str, function: &str| {
        let mut invoke = action(
            name,
            "Invoke",
            "Lambda",
            ActionKind::LambdaInvoke {
                function_logical_id: function.to_owned(),
            },
        );
        invoke.configuration = BTreeMap::from([("FunctionName".into(), function.into())]);
        invoke
    };
    let mut source = action(
        "Source",
        "Source",
        "S3",
        ActionKind::S3Source {
            bucket: "drops".to_owned(),
            object_key: "incoming/release.zip".to_owned(),
            allow_object_key_override: false,
        },
    );
    source.configuration = BTreeMap::from([
        ("S3Bucket".into(), "drops".into()),
        ("S3ObjectKey".into(), "incoming/release.zip".into()),
    ]);
    source.output_artifacts = vec!["Release".to_owned()];
    let mut check = lambda("Check", "ChecksFunction");
    check.input_artifacts = vec!["Release".to_owned()];
    let mut approve = action(
        "Approve",
        "Approval",
        "Manual",
        ActionKind::ManualApproval {
            notification_topic_logical_id: Some("ApprovalTopic".to_owned()),
            custom_data: None,
            external_entity_link: None,
        },
    );
    approve.configuration = BTreeMap::from([(
        "NotificationArn".into(),
        "arn:aws:sns:eu-west-1:111111111111:approvals".into(),
    )]);
    let stages = [
        (Source, source),
        (Check, check),
        (Gate, approve),
        (Promote, lambda("Promote", "PromoteFunction")),
    ];
    PipelineDefinition {
        logical_id: "Pipeline".to_owned(),
        name: PIPELINE.to_owned(),
        pipeline_type: PipelineType::V2,
        execution_mode: mode,
        role_arn: None,
        artifact_bucket: "artifacts".to_owned(),
        variables: Vec::new(),
        stages: stages
            .into_iter()
            .map(|(stage, action)| StageDefinition {
                name: stage.name().to_owned(),
                actions: vec![action],
            })
            .collect(),
    }
}
