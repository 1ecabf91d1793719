//! Where the change sets stand, and what the action answers: pure decisions over what
//! CloudFormation said, the time waited and the configured bound.
//!
//! Per stack, [`classify`] reads a change set's state (pending, ready with its summary, no
//! changes, refused with CloudFormation's reason, or no longer reviewable). Over all stacks,
//! [`decide`] says whether the action is done, waits (a continuation, never a sleep), or fails
//! with a message an operator can act on. The continuation carries nothing:
//! every invocation asks CloudFormation again.

use std::collections::BTreeMap;

use shipgate::aws::cloudformation::{ChangeSetState, ChangeSetStatus, ExecutionStatus};
use shipgate::changes::{ChangeSummary, summarise_change_set};
use shipgate::job::minutes;

/// Where one stack's change set stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackProgress {
    /// CloudFormation is still computing it (the status, for messages).
    Pending { status: String },
    /// Ready to execute after approval.
    Ready { summary: ChangeSummary },
    /// CloudFormation found nothing to change: a normal outcome.
    NoChanges,
    /// CloudFormation could not create it; its `StatusReason`.
    Refused { reason: String },
    /// It exists but can no longer be reviewed and executed (executed, obsolete, deleted).
    Stale { what: String },
}

impl StackProgress {
    /// A short word for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            StackProgress::Pending { .. } => "pending",
            StackProgress::Ready { .. } => "ready",
            StackProgress::NoChanges => "no_changes",
            StackProgress::Refused { .. } => "refused",
            StackProgress::Stale { .. } => "stale",
        }
    }
}

/// One stack of the release in the target environment, and its change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackChangeSet {
    pub template_path: String,
    pub stack_name: String,
    /// The change set creates the stack (`CREATE`); otherwise it updates it.
    pub creates_stack: bool,
    pub change_set_id: Option<String>,
    pub progress: StackProgress,
}

/// What the action answers, all stacks considered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Every change set is ready or empty: record them and succeed.
    Settled,
    /// Some are still being computed: ask again on the next invocation.
    Wait,
    /// The action fails with this message.
    Fail { message: String },
}

/// Reads a change set's state.
pub fn classify(state: &ChangeSetState) -> StackProgress {
    if state.is_pending() {
        return StackProgress::Pending {
            status: status_name(&state.status),
        };
    }
    if state.is_empty() {
        return StackProgress::NoChanges;
    }
    match &state.status {
        ChangeSetStatus::CreateComplete => match &state.execution_status {
            Some(ExecutionStatus::ExecuteInProgress) => StackProgress::Stale {
                what: "is being executed".into(),
            },
            Some(ExecutionStatus::ExecuteComplete) => StackProgress::Stale {
                what: "was executed already".into(),
            },
            Some(ExecutionStatus::ExecuteFailed) => StackProgress::Stale {
                what: "was executed and failed".into(),
            },
            Some(ExecutionStatus::Obsolete) => StackProgress::Stale {
                what: "is obsolete (the stack changed since it was created)".into(),
            },
            // AVAILABLE, or a value this code does not know: CloudFormation is done with it.
            _ => StackProgress::Ready {
                summary: summarise_change_set(&state.changes),
            },
        },
        ChangeSetStatus::Failed => StackProgress::Refused {
            reason: state
                .status_reason
                .clone()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| "CloudFormation gave no reason".into()),
        },
        ChangeSetStatus::DeletePending | ChangeSetStatus::DeleteInProgress => {
            StackProgress::Stale {
                what: "is being deleted".into(),
            }
        }
        ChangeSetStatus::DeleteComplete | ChangeSetStatus::DeleteFailed => StackProgress::Stale {
            what: "was deleted".into(),
        },
        // A status this code does not know is not settled: wait, within the bound.
        other => StackProgress::Pending {
            status: status_name(other),
        },
    }
}

/// A change set left by an earlier attempt of the same execution (a retried stage) that a new
/// attempt replaces rather than reports: one that failed (the operator may have fixed the cause
/// since), found nothing to change (the stack may have changed since), or can no longer be
/// executed. A pending or ready one is reused: that is the duplicated invocation's case.
pub fn is_leftover(state: &ChangeSetState) -> bool {
    match classify(state) {
        StackProgress::Pending { .. } | StackProgress::Ready { .. } => false,
        StackProgress::Stale { .. } => {
            !matches!(
                state.execution_status,
                Some(ExecutionStatus::ExecuteInProgress)
            ) && !matches!(
                state.status,
                ChangeSetStatus::DeletePending | ChangeSetStatus::DeleteInProgress
            )
        }
        StackProgress::NoChanges | StackProgress::Refused { .. } => true,
    }
}

/// Decides the action's answer. `waited` is the time since the job's first invocation and
/// `timeout` the bound on waiting, both in seconds; `account` is where the stacks live.
pub fn decide(
    environment: &str,
    account: &str,
    change_set_name: &str,
    stacks: &[StackChangeSet],
    waited: i64,
    timeout: u64,
) -> Readiness {
    let mut problems = Vec::new();
    for stack in stacks {
        match &stack.progress {
            StackProgress::Refused { reason } => problems.push(format!(
                "CloudFormation could not create change set {change_set_name} for stack {}: {reason}",
                stack.stack_name
            )),
            StackProgress::Stale { what } => problems.push(format!(
                "change set {change_set_name} of stack {} {what}, so it can no longer be reviewed",
                stack.stack_name
            )),
            _ => {}
        }
    }
    if !problems.is_empty() {
        let mut problems = problems.join("; ");
        // CloudFormation's reasons usually end a sentence; the advice starts the next one.
        if !problems.ends_with('.') {
            problems.push('.');
        }
        return Readiness::Fail {
            message: format!(
                "{environment} (account {account}): {problems} Fix the release's template or \
                 parameters (drop a new release), or what the stack needs in {environment}; \
                 then retry the stage, which replaces the failed change set"
            ),
        };
    }
    let pending: Vec<String> = stacks
        .iter()
        .filter_map(|s| match &s.progress {
            StackProgress::Pending { status } => Some(format!("{} is {status}", s.stack_name)),
            _ => None,
        })
        .collect();
    if pending.is_empty() {
        return Readiness::Settled;
    }
    if out_of_time(waited, timeout) {
        return Readiness::Fail {
            message: format!(
                "{environment} (account {account}): CloudFormation has not finished computing \
                 change set {change_set_name} after {} (SHIPGATE_CHANGE_SET_TIMEOUT_SECONDS): \
                 {}. Look at the stack's change sets in account {account}, then retry the stage",
                minutes(waited),
                pending.join(", ")
            ),
        };
    }
    Readiness::Wait
}

/// Whether waiting any longer is over the bound (for retryable errors as for pending sets).
pub fn out_of_time(waited: i64, timeout: u64) -> bool {
    waited >= 0 && waited.unsigned_abs() >= timeout
}

/// What one stack's change set says, in a few words.
fn stack_headline(stack: &StackChangeSet) -> String {
    match &stack.progress {
        StackProgress::Ready { summary } if summary.is_empty() => {
            // CloudFormation can have a change set with no resource change when only parameter
            // values change (outputs, stack parameters); moto does for an image-only update.
            "parameters only, no resource changes".into()
        }
        StackProgress::Ready { summary } => summary.headline(),
        StackProgress::NoChanges => "no changes".into(),
        StackProgress::Pending { status } => format!("pending ({status})"),
        StackProgress::Refused { .. } => "refused".into(),
        StackProgress::Stale { what } => what.clone(),
    }
}

/// The action's summary: "int: orders-int-service: 1 replaced, 2 modified; orders-int-db: no
/// changes", or "int: no changes" when no stack changes.
pub fn summary_line(environment: &str, stacks: &[StackChangeSet]) -> String {
    if !stacks.is_empty()
        && stacks
            .iter()
            .all(|s| s.progress == StackProgress::NoChanges)
    {
        return format!("{environment}: no changes");
    }
    let parts: Vec<String> = stacks
        .iter()
        .map(|s| format!("{}: {}", s.stack_name, stack_headline(s)))
        .collect();
    format!("{environment}: {}", parts.join("; "))
}

/// Longest output variable value this action sets: they appear in the console and in later
/// actions' configuration, so they stay short.
pub const MAX_VARIABLE_CHARS: usize = 250;

/// The action's output variables (namespace set by the pipeline).
pub fn output_variables(
    environment: &str,
    change_set_name: &str,
    stacks: &[StackChangeSet],
) -> BTreeMap<String, String> {
    let summaries = stacks.iter().filter_map(|s| match &s.progress {
        StackProgress::Ready { summary } => Some(summary),
        _ => None,
    });
    let (mut replacements, mut removals) = (0, 0);
    for summary in summaries {
        replacements += summary.counts.replaced + summary.counts.conditionally_replaced;
        removals += summary.counts.removed;
    }
    let ready = stacks
        .iter()
        .filter(|s| matches!(s.progress, StackProgress::Ready { .. }))
        .count();
    let stack_names: Vec<&str> = stacks.iter().map(|s| s.stack_name.as_str()).collect();
    BTreeMap::from([
        ("ChangeSetName".to_owned(), change_set_name.to_owned()),
        ("Stacks".to_owned(), shorten(&stack_names.join(","))),
        (
            "Headline".to_owned(),
            shorten(&summary_line(environment, stacks)),
        ),
        ("Replacements".to_owned(), replacements.to_string()),
        ("Removals".to_owned(), removals.to_string()),
        ("ReadyStacks".to_owned(), ready.to_string()),
    ])
}

/// `text`, cut to [`MAX_VARIABLE_CHARS`] characters with an ellipsis.
pub fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_VARIABLE_CHARS {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_VARIABLE_CHARS - 1).collect();
    out.push('…');
    out
}

fn status_name(status: &ChangeSetStatus) -> String {
    match status {
        ChangeSetStatus::CreatePending => "CREATE_PENDING".into(),
        ChangeSetStatus::CreateInProgress => "CREATE_IN_PROGRESS".into(),
        ChangeSetStatus::CreateComplete => "CREATE_COMPLETE".into(),
        ChangeSetStatus::Failed => "FAILED".into(),
        ChangeSetStatus::DeletePending => "DELETE_PENDING".into(),
        ChangeSetStatus::DeleteInProgress => "DELETE_IN_PROGRESS".into(),
        ChangeSetStatus::DeleteComplete => "DELETE_COMPLETE".into(),
        ChangeSetStatus::DeleteFailed => "DELETE_FAILED".into(),
        ChangeSetStatus::Other(s) if s.is_empty() => "no status".into(),
        ChangeSetStatus::Other(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use shipgate::changes::{ChangeAction, Replacement, ResourceChange};

    use super::*;

    const EMPTY_REASON: &str = "The submitted information didn't contain changes. Submit \
                                different information to create a change set.";

    fn state(status: ChangeSetStatus, execution: Option<ExecutionStatus>) -> ChangeSetState {
        ChangeSetState {
            change_set_id: None,
            status,
            execution_status: execution,
            status_reason: None,
            changes: vec![],
        }
    }

    fn change(action: ChangeAction, id: &str, replacement: Option<Replacement>) -> ResourceChange {
        ResourceChange {
            action,
            logical_id: id.into(),
            physical_id: None,
            resource_type: "AWS::ECS::TaskDefinition".into(),
            replacement,
            scope: vec![],
            details: vec![],
        }
    }

    /// The change a new image makes: the task definition is replaced.
    fn task_definition_replaced() -> ResourceChange {
        change(
            ChangeAction::Modify,
            "TaskDefinition",
            Some(Replacement::True),
        )
    }

    fn ready(changes: &[ResourceChange]) -> ChangeSetState {
        ChangeSetState {
            changes: changes.to_vec(),
            ..state(
                ChangeSetStatus::CreateComplete,
                Some(ExecutionStatus::Available),
            )
        }
    }

    fn failed(reason: &str) -> ChangeSetState {
        ChangeSetState {
            status_reason: Some(reason.into()),
            ..state(ChangeSetStatus::Failed, Some(ExecutionStatus::Unavailable))
        }
    }

    fn stack(name: &str, progress: StackProgress) -> StackChangeSet {
        StackChangeSet {
            template_path: "templates/service.yaml".into(),
            stack_name: name.into(),
            creates_stack: false,
            change_set_id: None,
            progress,
        }
    }

    fn decide_int(stacks: &[StackChangeSet], waited: i64) -> Readiness {
        decide(
            "int",
            "222222222222",
            "shipgate-rel-1-exec-1",
            stacks,
            waited,
            1800,
        )
    }

    #[test]
    fn a_change_set_still_being_computed_is_pending() {
        for status in [
            ChangeSetStatus::CreatePending,
            ChangeSetStatus::CreateInProgress,
            ChangeSetStatus::Other("SOMETHING_NEW".into()),
        ] {
            assert!(matches!(
                classify(&state(status, Some(ExecutionStatus::Unavailable))),
                StackProgress::Pending { .. }
            ));
        }
    }

    #[test]
    fn a_ready_change_set_is_summarised_replacements_first() {
        let progress = classify(&ready(&[
            change(ChangeAction::Add, "Alarm", None),
            task_definition_replaced(),
        ]));
        let StackProgress::Ready { summary } = progress else {
            panic!("ready: {progress:?}");
        };
        assert_eq!(summary.headline(), "1 replaced, 1 added");
        assert_eq!(summary.entries[0].logical_id, "TaskDefinition");
    }

    #[test]
    fn an_empty_change_set_is_no_changes_and_other_failures_are_refusals() {
        assert_eq!(classify(&failed(EMPTY_REASON)), StackProgress::NoChanges);
        assert_eq!(
            classify(&failed("No export named orders-int-network-VpcId found.")),
            StackProgress::Refused {
                reason: "No export named orders-int-network-VpcId found.".into()
            }
        );
        assert_eq!(
            classify(&state(ChangeSetStatus::Failed, None)),
            StackProgress::Refused {
                reason: "CloudFormation gave no reason".into()
            }
        );
    }

    #[test]
    fn an_executed_or_obsolete_change_set_is_stale() {
        for execution in [
            ExecutionStatus::ExecuteComplete,
            ExecutionStatus::ExecuteInProgress,
            ExecutionStatus::ExecuteFailed,
            ExecutionStatus::Obsolete,
        ] {
            assert!(matches!(
                classify(&state(ChangeSetStatus::CreateComplete, Some(execution))),
                StackProgress::Stale { .. }
            ));
        }
        assert!(matches!(
            classify(&state(ChangeSetStatus::DeleteComplete, None)),
            StackProgress::Stale { .. }
        ));
    }

    #[test]
    fn a_new_attempt_replaces_failed_empty_and_spent_change_sets_but_reuses_live_ones() {
        assert!(is_leftover(&failed("No export named x found.")));
        assert!(is_leftover(&failed(EMPTY_REASON)));
        assert!(is_leftover(&state(
            ChangeSetStatus::CreateComplete,
            Some(ExecutionStatus::Obsolete)
        )));
        assert!(is_leftover(&state(
            ChangeSetStatus::CreateComplete,
            Some(ExecutionStatus::ExecuteComplete)
        )));

        assert!(!is_leftover(&ready(&[])), "a duplicate finds it ready");
        assert!(!is_leftover(&state(ChangeSetStatus::CreatePending, None)));
        // Not deletable: the attempt reports it instead.
        assert!(!is_leftover(&state(
            ChangeSetStatus::CreateComplete,
            Some(ExecutionStatus::ExecuteInProgress)
        )));
        assert!(!is_leftover(&state(
            ChangeSetStatus::DeleteInProgress,
            None
        )));
    }

    #[test]
    fn all_ready_or_empty_is_settled() {
        let stacks = [
            stack(
                "orders-int-service",
                StackProgress::Ready {
                    summary: ChangeSummary::default(),
                },
            ),
            stack("orders-int-db", StackProgress::NoChanges),
        ];
        assert_eq!(decide_int(&stacks, 0), Readiness::Settled);
    }

    #[test]
    fn a_pending_change_set_waits_until_the_bound_then_fails_naming_it() {
        let stacks = [
            stack("orders-int-db", StackProgress::NoChanges),
            stack(
                "orders-int-service",
                StackProgress::Pending {
                    status: "CREATE_IN_PROGRESS".into(),
                },
            ),
        ];
        assert_eq!(decide_int(&stacks, 0), Readiness::Wait);
        assert_eq!(decide_int(&stacks, 1799), Readiness::Wait);
        let Readiness::Fail { message } = decide_int(&stacks, 1800) else {
            panic!("fails at the bound");
        };
        assert!(
            message.contains("orders-int-service is CREATE_IN_PROGRESS"),
            "{message}"
        );
        assert!(message.contains("after 30 min"), "{message}");
        assert!(
            message.starts_with("int (account 222222222222): "),
            "{message}"
        );
        // A clock that went backwards is not a timeout.
        assert_eq!(decide_int(&stacks, -5), Readiness::Wait);
    }

    #[test]
    fn a_refusal_fails_at_once_with_environment_stack_and_reason() {
        let stacks = [
            stack(
                "orders-int-service",
                StackProgress::Refused {
                    reason: "No export named orders-int-network-VpcId found.".into(),
                },
            ),
            stack(
                "orders-int-db",
                StackProgress::Pending {
                    status: "CREATE_PENDING".into(),
                },
            ),
        ];
        let Readiness::Fail { message } = decide_int(&stacks, 0) else {
            panic!("fails");
        };
        assert!(message.starts_with("int (account 222222222222): CloudFormation could not create change set shipgate-rel-1-exec-1 for stack orders-int-service: No export named orders-int-network-VpcId found."), "{message}");
        assert!(message.contains("retry the stage"), "{message}");
    }

    #[test]
    fn the_summary_line_names_each_stack_or_says_no_changes() {
        let summary = summarise_change_set(&[
            task_definition_replaced(),
            change(ChangeAction::Modify, "Service", Some(Replacement::False)),
            change(ChangeAction::Modify, "LogGroup", None),
        ]);
        let stacks = [
            stack("orders-int-service", StackProgress::Ready { summary }),
            stack("orders-int-db", StackProgress::NoChanges),
        ];
        assert_eq!(
            summary_line("int", &stacks),
            "int: orders-int-service: 1 replaced, 2 modified; orders-int-db: no changes"
        );
        assert_eq!(
            summary_line("int", &[stack("orders-int-db", StackProgress::NoChanges)]),
            "int: no changes"
        );
        assert_eq!(
            summary_line(
                "int",
                &[stack(
                    "orders-int-service",
                    StackProgress::Ready {
                        summary: ChangeSummary::default()
                    }
                )]
            ),
            "int: orders-int-service: parameters only, no resource changes"
        );
    }

    #[test]
    fn output_variables_count_replacements_and_removals_and_stay_short() {
        let summary = summarise_change_set(&[
            task_definition_replaced(),
            change(
                ChangeAction::Modify,
                "Listener",
                Some(Replacement::Conditional),
            ),
            change(ChangeAction::Remove, "GreenTargetGroup", None),
        ]);
        let many: Vec<StackChangeSet> = (0..40)
            .map(|i| {
                stack(
                    &format!("orders-int-stack-number-{i}"),
                    StackProgress::NoChanges,
                )
            })
            .chain([stack(
                "orders-int-service",
                StackProgress::Ready { summary },
            )])
            .collect();

        let vars = output_variables("int", "shipgate-rel-1-exec-1", &many);

        assert_eq!(vars["ChangeSetName"], "shipgate-rel-1-exec-1");
        assert_eq!(vars["Replacements"], "2");
        assert_eq!(vars["Removals"], "1");
        assert_eq!(vars["ReadyStacks"], "1");
        for (name, value) in &vars {
            assert!(value.chars().count() <= MAX_VARIABLE_CHARS, "{name}");
        }
        assert!(vars["Stacks"].ends_with('…'));
        assert!(vars["Headline"].starts_with("int: orders-int-stack-number-0: no changes"));
    }

    #[test]
    fn waiting_times_read_as_people_say_them() {
        assert_eq!(minutes(45), "45 s");
        assert_eq!(minutes(1800), "30 min");
        assert!(out_of_time(1800, 1800));
        assert!(!out_of_time(-1, 1800));
    }
}
