//! Where the stacks stand and what the action answers: pure decisions over what CloudFormation
//! said, the time waited and the configured bound.
//!
//! [`phase`] reads a stack status; [`failure_causes`] picks, from the events of the stack's
//! latest operation, the failures that caused it (CloudFormation's own words, with the logical
//! ids); [`merge_outputs`] merges the stacks' `Shipgate*` outputs into the action's output
//! variables; [`decide`] says whether the action is done, waits (a continuation, never a sleep)
//! or fails with a message an operator can act on.

use std::collections::BTreeMap;

use shipgate::aws::cloudformation::{StackEvent, StackOutput};
use shipgate::job::minutes;
use shipgate::job::parameters::Stage;
use shipgate::store::StageTargets;

/// The prefix of the stack outputs that become the action's output variables: the convention
/// the traffic and checks actions rely on (`ShipgateTestEndpoint`, `ShipgateLambdaAlias`, …).
pub const OUTPUT_PREFIX: &str = "Shipgate";

/// The outputs of the convention (`#{<Deploy>.ShipgateTestEndpoint}`, …): each is an output
/// variable even when no stack outputs it, then empty, since CodePipeline fails an action whose
/// configuration names a variable nobody set. An empty one means "none": no alarm, no Lambda
/// function to shift. The checks action reads `ShipgateTestEndpoint` as a variable; the traffic
/// actions read the others from the stage's [`StageTargets`] record ([`stage_targets`]), and
/// the variables stay for people and for pipelines of their own that read them.
pub const CONVENTION_OUTPUTS: &[&str] = &[
    "ShipgateTestEndpoint",
    "ShipgateAlarms",
    "ShipgateProdListener",
    "ShipgateTestListener",
    "ShipgateBlueTargetGroup",
    "ShipgateGreenTargetGroup",
    "ShipgateService",
    "ShipgateLambdaFunction",
    "ShipgateLambdaAlias",
    "ShipgateLambdaVersion",
];

/// Where a stack stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// CloudFormation is still working on it.
    InProgress,
    /// Settled as wanted.
    Succeeded,
    /// Failed, rolling back or rolled back, or gone.
    Failed,
}

/// Reads a `StackStatus`. `executed`: this deployment executed a change set on the stack, so
/// only a completed create/update (or import) is a success, and any rollback is a failure. A
/// stack that had nothing to change only has to be stable and usable: a rollback completed by an
/// earlier, failed update (`UPDATE_ROLLBACK_COMPLETE`) leaves it on its previous version, which
/// is fine; a failed creation (`ROLLBACK_COMPLETE`) or a deleted stack is not.
pub fn phase(status: &str, executed: bool) -> Phase {
    if executed {
        return match status {
            "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE" => Phase::Succeeded,
            s if s.contains("ROLLBACK") || s.ends_with("_FAILED") || s.starts_with("DELETE_") => {
                Phase::Failed
            }
            // *_IN_PROGRESS (UPDATE_COMPLETE_CLEANUP_IN_PROGRESS included: the stack is not
            // done yet), REVIEW_IN_PROGRESS before the execution starts, or a status this code
            // does not know: wait, within the bound.
            _ => Phase::InProgress,
        };
    }
    match status {
        "ROLLBACK_COMPLETE" | "DELETE_COMPLETE" => Phase::Failed,
        s if s.ends_with("_IN_PROGRESS") => Phase::InProgress,
        s if s.ends_with("_COMPLETE") => Phase::Succeeded,
        _ => Phase::Failed,
    }
}

/// One stack of the deployment, as this invocation found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackView {
    pub stack_name: String,
    /// A change set was executed on it by this deployment (its change set was `Ready`).
    pub executed: bool,
    /// Its `StackStatus`, `None` when the stack does not exist.
    pub status: Option<String>,
    pub status_reason: Option<String>,
    pub outputs: Vec<StackOutput>,
    /// The events of its latest operation, newest first (read only when it failed).
    pub events: Vec<StackEvent>,
}

impl StackView {
    pub fn phase(&self) -> Phase {
        match &self.status {
            Some(status) => phase(status, self.executed),
            None => Phase::Failed,
        }
    }
}

/// What the action answers, all stacks considered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Every stack settled: succeed with this summary and these output variables.
    Done {
        summary: String,
        variables: BTreeMap<String, String>,
    },
    /// Some stack is still being updated: look again on the next invocation.
    Wait,
    /// The action fails with this message.
    Fail { message: String },
}

/// How many failed resources a failure message names.
const MAX_CAUSES: usize = 3;

/// The failures that caused the operation to fail, oldest first: the resources'
/// `*_FAILED` events, leaving out the consequences ("Resource creation cancelled", …) unless
/// nothing else is there. `events` are newest first, as `DescribeStackEvents` lists them.
pub fn failure_causes(events: &[StackEvent]) -> Vec<&StackEvent> {
    let failed: Vec<&StackEvent> = events
        .iter()
        .rev()
        .filter(|e| !e.is_stack() && e.status.ends_with("_FAILED"))
        .collect();
    let causes: Vec<&StackEvent> = failed
        .iter()
        .copied()
        .filter(|e| {
            !e.reason
                .as_deref()
                .is_some_and(|r| r.contains("cancelled") || r.contains("canceled"))
        })
        .collect();
    let mut chosen = if causes.is_empty() { failed } else { causes };
    chosen.truncate(MAX_CAUSES);
    chosen
}

/// "int (account 222222222222): stack orders-int-service is ROLLBACK_COMPLETE: Service
/// (AWS::ECS::Service) CREATE_FAILED: Cluster not found. …"
pub fn failure_message(environment: &str, account: &str, stack: &StackView) -> String {
    let status = stack.status.as_deref().unwrap_or("missing");
    let mut reasons: Vec<String> = failure_causes(&stack.events)
        .iter()
        .map(|e| {
            format!(
                "{} ({}) {}: {}",
                e.logical_id,
                e.resource_type,
                e.status,
                e.reason
                    .as_deref()
                    .unwrap_or("CloudFormation gave no reason")
            )
        })
        .collect();
    if reasons.is_empty() {
        reasons.push(
            stack
                .status_reason
                .clone()
                .unwrap_or_else(|| "CloudFormation gave no reason".into()),
        );
    }
    let mut reasons = reasons.join("; ");
    if !reasons.ends_with('.') {
        reasons.push('.');
    }
    let advice = match status {
        "missing" => format!(
            "The stack does not exist in account {account}: it was deleted, or the change set \
             was never executed; run the change-set stage again"
        ),
        "ROLLBACK_COMPLETE" | "ROLLBACK_FAILED" | "ROLLBACK_IN_PROGRESS" => format!(
            "The stack could not be created. Fix the template or what it needs in \
             {environment} and drop a new release; a stack in ROLLBACK_COMPLETE must be \
             deleted before it can be created again"
        ),
        s if s.starts_with("DELETE_") => {
            "The stack is being or was deleted outside the pipeline; run the change-set stage \
             again"
                .to_owned()
        }
        _ if !stack.executed => format!(
            "The stack had nothing to change in this release but is not usable; repair it in \
             account {account}, then retry the stage"
        ),
        _ => format!(
            "CloudFormation rolled the stack back to its previous version; fix the release \
             (drop a new one) or what it needs in {environment}"
        ),
    };
    format!(
        "{environment} (account {account}): stack {} is {status}: {reasons} {advice}",
        stack.stack_name
    )
}

/// Merges the stacks' outputs whose key starts with [`OUTPUT_PREFIX`]: each becomes an output
/// variable of the same name. Two stacks may output the same key only with the same value;
/// otherwise which one later actions would use is ambiguous, and the merge fails naming both.
pub fn merge_outputs(
    environment: &str,
    stacks: &[StackView],
) -> Result<BTreeMap<String, String>, String> {
    let mut merged: BTreeMap<String, (String, &str)> = BTreeMap::new();
    for stack in stacks {
        for output in &stack.outputs {
            if !output.key.starts_with(OUTPUT_PREFIX) || output.key.len() == OUTPUT_PREFIX.len() {
                continue;
            }
            match merged.get(&output.key) {
                Some((value, _)) if *value == output.value => {}
                Some((value, other)) => {
                    return Err(format!(
                        "{environment}: stacks {other} and {} both output {} with different \
                         values ({} and {}): a Shipgate output must come from one stack (or \
                         have the same value in each); rename one in the release's templates",
                        stack.stack_name,
                        output.key,
                        excerpt(value),
                        excerpt(&output.value)
                    ));
                }
                None => {
                    merged.insert(
                        output.key.clone(),
                        (output.value.clone(), stack.stack_name.as_str()),
                    );
                }
            }
        }
    }
    Ok(merged.into_iter().map(|(k, (v, _))| (k, v)).collect())
}

fn excerpt(value: &str) -> String {
    let mut out: String = value.chars().take(80).collect();
    if value.chars().count() > 80 {
        out.push('…');
    }
    format!("{out:?}")
}

/// Decides the action's answer. `waited` is the time since the job's first invocation and
/// `timeout` the bound, both in seconds.
pub fn decide(
    environment: &str,
    account: &str,
    stacks: &[StackView],
    waited: i64,
    timeout: u64,
) -> Settlement {
    let failures: Vec<String> = stacks
        .iter()
        .filter(|s| s.phase() == Phase::Failed)
        .map(|s| failure_message(environment, account, s))
        .collect();
    if !failures.is_empty() {
        return Settlement::Fail {
            message: failures.join(" | "),
        };
    }
    let pending: Vec<String> = stacks
        .iter()
        .filter(|s| s.phase() == Phase::InProgress)
        .map(|s| format!("{} is {}", s.stack_name, s.status.as_deref().unwrap_or("?")))
        .collect();
    if !pending.is_empty() {
        if out_of_time(waited, timeout) {
            return Settlement::Fail {
                message: format!(
                    "{environment} (account {account}): the stacks have not settled after {} \
                     (SHIPGATE_DEPLOY_TIMEOUT_SECONDS): {}. CloudFormation carries on; look at \
                     the stacks in account {account}, then retry the stage (a change set \
                     already executed is not executed again)",
                    minutes(waited),
                    pending.join(", ")
                ),
            };
        }
        return Settlement::Wait;
    }
    match merge_outputs(environment, stacks) {
        Ok(outputs) => Settlement::Done {
            summary: summary_line(environment, stacks),
            variables: output_variables(stacks, outputs),
        },
        Err(message) => Settlement::Fail { message },
    }
}

/// "int: orders-int-service UPDATE_COMPLETE; orders-int-db unchanged"
pub fn summary_line(environment: &str, stacks: &[StackView]) -> String {
    let parts: Vec<String> = stacks
        .iter()
        .map(|s| {
            if s.executed {
                format!("{} {}", s.stack_name, s.status.as_deref().unwrap_or("?"))
            } else {
                format!("{} unchanged", s.stack_name)
            }
        })
        .collect();
    shorten(&format!("{environment}: {}", parts.join("; ")))
}

/// Longest value of the action's own variables (the `Shipgate*` outputs are passed whole: an
/// endpoint or an ARN cut short is worse than useless).
pub const MAX_VARIABLE_CHARS: usize = 250;

/// The action's output variables: every merged `Shipgate*` output, plus `Stacks` (the stack
/// names) and `ExecutedStacks` (how many had a change set executed).
pub fn output_variables(
    stacks: &[StackView],
    outputs: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let names: Vec<&str> = stacks.iter().map(|s| s.stack_name.as_str()).collect();
    let mut variables = outputs;
    for key in CONVENTION_OUTPUTS {
        variables.entry((*key).to_owned()).or_default();
    }
    variables.insert("Stacks".into(), shorten(&names.join(",")));
    variables.insert(
        "ExecutedStacks".into(),
        stacks.iter().filter(|s| s.executed).count().to_string(),
    );
    variables
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_VARIABLE_CHARS {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_VARIABLE_CHARS - 1).collect();
    out.push('…');
    out
}

/// What the stage's traffic actions move and watch, from the merged outputs (see
/// [`StageTargets`]): a value that is absent or blank is `None`; `ShipgateAlarms` is split on
/// commas, blank names left out. Checked by the traffic action, which knows what each target
/// needs.
pub fn stage_targets(
    stage: &Stage,
    outputs: &BTreeMap<String, String>,
    now_ms: i64,
) -> StageTargets {
    let get = |key: &str| {
        outputs
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let alarms = get("ShipgateAlarms")
        .map(|names| {
            names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    StageTargets {
        deployment_id: shipgate::deploy::deployment_id(
            &stage.release_id,
            &stage.environment,
            &stage.execution_id,
        ),
        release_id: stage.release_id.clone(),
        environment: stage.environment.clone(),
        execution_id: stage.execution_id.clone(),
        alarms,
        prod_listener: get("ShipgateProdListener"),
        test_listener: get("ShipgateTestListener"),
        blue_target_group: get("ShipgateBlueTargetGroup"),
        green_target_group: get("ShipgateGreenTargetGroup"),
        service: get("ShipgateService"),
        lambda_function: get("ShipgateLambdaFunction"),
        lambda_alias: get("ShipgateLambdaAlias"),
        lambda_version: get("ShipgateLambdaVersion"),
        recorded_at_ms: now_ms,
    }
}

/// Whether waiting any longer is over the bound.
pub fn out_of_time(waited: i64, timeout: u64) -> bool {
    waited >= 0 && waited.unsigned_abs() >= timeout
}

#[cfg(test)]
mod tests {

    use super::*;

    fn event(logical_id: &str, kind: &str, status: &str, reason: Option<&str>) -> StackEvent {
        StackEvent {
            logical_id: logical_id.into(),
            resource_type: kind.into(),
            status: status.into(),
            reason: reason.map(str::to_owned),
            timestamp: None,
        }
    }

    fn view(name: &str, executed: bool, status: &str) -> StackView {
        StackView {
            stack_name: name.into(),
            executed,
            status: Some(status.into()),
            status_reason: None,
            outputs: vec![],
            events: vec![],
        }
    }

    fn output(key: &str, value: &str) -> StackOutput {
        StackOutput {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn an_executed_stack_succeeds_only_by_completing_its_create_or_update() {
        let succeeded = ["CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"].as_slice();
        let in_progress = [
            "CREATE_IN_PROGRESS",
            "UPDATE_IN_PROGRESS",
            "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            "REVIEW_IN_PROGRESS",
            "SOMETHING_NEW",
        ]
        .as_slice();
        let failed = [
            "ROLLBACK_IN_PROGRESS",
            "ROLLBACK_COMPLETE",
            "ROLLBACK_FAILED",
            "CREATE_FAILED",
            "UPDATE_ROLLBACK_IN_PROGRESS",
            "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
            "UPDATE_ROLLBACK_COMPLETE",
            "UPDATE_ROLLBACK_FAILED",
            "UPDATE_FAILED",
            "IMPORT_ROLLBACK_COMPLETE",
            "DELETE_IN_PROGRESS",
            "DELETE_COMPLETE",
        ]
        .as_slice();
        for (expected, statuses) in [
            (Phase::Succeeded, succeeded),
            (Phase::InProgress, in_progress),
            (Phase::Failed, failed),
        ] {
            for status in statuses {
                assert_eq!(phase(status, true), expected, "{status}");
            }
        }
    }

    #[test]
    fn an_unchanged_stack_needs_only_to_be_stable_and_usable() {
        assert_eq!(phase("UPDATE_COMPLETE", false), Phase::Succeeded);
        assert_eq!(phase("UPDATE_ROLLBACK_COMPLETE", false), Phase::Succeeded);
        assert_eq!(phase("UPDATE_IN_PROGRESS", false), Phase::InProgress);
        assert_eq!(phase("ROLLBACK_COMPLETE", false), Phase::Failed);
        assert_eq!(phase("UPDATE_ROLLBACK_FAILED", false), Phase::Failed);
        assert_eq!(phase("DELETE_COMPLETE", false), Phase::Failed);
        let mut missing = view("orders-int-db", false, "x");
        missing.status = None;
        assert_eq!(missing.phase(), Phase::Failed);
    }

    #[test]
    fn the_failure_names_the_first_failed_resources_and_cloudformations_reason() {
        // Newest first, as DescribeStackEvents lists them.
        let mut stack = view("orders-int-service", true, "ROLLBACK_COMPLETE");
        stack.events = vec![
            event(
                "orders-int-service",
                "AWS::CloudFormation::Stack",
                "ROLLBACK_COMPLETE",
                None,
            ),
            event("LogGroup", "AWS::Logs::LogGroup", "DELETE_COMPLETE", None),
            event(
                "orders-int-service",
                "AWS::CloudFormation::Stack",
                "ROLLBACK_IN_PROGRESS",
                Some(
                    "The following resource(s) failed to create: [Service, TaskDefinition]. Rollback requested by user.",
                ),
            ),
            event(
                "TaskDefinition",
                "AWS::ECS::TaskDefinition",
                "CREATE_FAILED",
                Some("Resource creation cancelled"),
            ),
            event(
                "Service",
                "AWS::ECS::Service",
                "CREATE_FAILED",
                Some(
                    "Resource handler returned message: \"Cluster not found.\" (HandlerErrorCode: NotFound)",
                ),
            ),
            event("LogGroup", "AWS::Logs::LogGroup", "CREATE_COMPLETE", None),
            event(
                "orders-int-service",
                "AWS::CloudFormation::Stack",
                "CREATE_IN_PROGRESS",
                Some("User Initiated"),
            ),
        ];

        let causes = failure_causes(&stack.events);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].logical_id, "Service");

        let message = failure_message("int", "222222222222", &stack);
        assert!(
            message.starts_with(
                "int (account 222222222222): stack orders-int-service is ROLLBACK_COMPLETE: \
                 Service (AWS::ECS::Service) CREATE_FAILED: Resource handler returned message: \
                 \"Cluster not found.\" (HandlerErrorCode: NotFound)."
            ),
            "{message}"
        );
        assert!(message.contains("must be deleted before"), "{message}");
    }

    #[test]
    fn without_resource_failures_the_stacks_own_reason_is_given() {
        let mut stack = view("orders-int-service", true, "UPDATE_ROLLBACK_COMPLETE");
        stack.status_reason = Some("Stack was rolled back by an operator".into());
        let message = failure_message("int", "222222222222", &stack);
        assert!(
            message.contains("is UPDATE_ROLLBACK_COMPLETE: Stack was rolled back by an operator."),
            "{message}"
        );
        assert!(message.contains("rolled the stack back to its previous version"));

        // Only cancellations: they are all there is to say.
        let mut cancelled = view("s", true, "UPDATE_ROLLBACK_COMPLETE");
        cancelled.events = vec![event(
            "A",
            "AWS::SNS::Topic",
            "UPDATE_FAILED",
            Some("Resource update cancelled"),
        )];
        assert!(
            failure_message("int", "2", &cancelled)
                .contains("A (AWS::SNS::Topic) UPDATE_FAILED: Resource update cancelled.")
        );
    }

    #[test]
    fn shipgate_outputs_merge_and_a_conflict_names_both_stacks() {
        let mut service = view("orders-int-service", true, "UPDATE_COMPLETE");
        service.outputs = vec![
            output("ShipgateTestEndpoint", "http://alb.example:9000"),
            output("ShipgateProdListener", "arn:listener/prod"),
            output("ServiceName", "orders"),
            output("Shipgate", "not a name"),
        ];
        let mut network = view("orders-int-network", false, "UPDATE_COMPLETE");
        network.outputs = vec![output("ShipgateProdListener", "arn:listener/prod")];

        let merged = merge_outputs("int", &[service.clone(), network.clone()]).expect("merges");
        assert_eq!(
            merged,
            BTreeMap::from([
                (
                    "ShipgateProdListener".to_owned(),
                    "arn:listener/prod".to_owned()
                ),
                (
                    "ShipgateTestEndpoint".to_owned(),
                    "http://alb.example:9000".to_owned()
                ),
            ])
        );

        network.outputs = vec![output("ShipgateTestEndpoint", "http://other:9000")];
        let err = merge_outputs("int", &[service, network]).unwrap_err();
        assert!(
            err.starts_with(
                "int: stacks orders-int-service and orders-int-network both output \
                 ShipgateTestEndpoint with different values (\"http://alb.example:9000\" and \
                 \"http://other:9000\")"
            ),
            "{err}"
        );
    }

    #[test]
    fn settled_stacks_succeed_with_their_outputs_and_a_short_summary() {
        let mut service = view("orders-int-service", true, "CREATE_COMPLETE");
        service.outputs = vec![output("ShipgateTestEndpoint", "http://alb.example:9000")];
        let db = view("orders-int-db", false, "UPDATE_ROLLBACK_COMPLETE");

        let Settlement::Done { summary, variables } =
            decide("int", "222222222222", &[service, db], 3, 3600)
        else {
            panic!("done");
        };
        assert_eq!(
            summary,
            "int: orders-int-service CREATE_COMPLETE; orders-int-db unchanged"
        );
        assert_eq!(variables["ShipgateTestEndpoint"], "http://alb.example:9000");
        assert_eq!(variables["Stacks"], "orders-int-service,orders-int-db");
        assert_eq!(variables["ExecutedStacks"], "1");
        // No stack outputs a Lambda function: the variable is set, empty.
        assert_eq!(variables["ShipgateLambdaFunction"], "");
    }

    #[test]
    fn the_stage_targets_are_the_outputs_blank_ones_as_none_and_alarms_one_per_name() {
        let stage = Stage::check(
            "int",
            "arn:aws:iam::222222222222:role/shipgate-deploy",
            "rel-1",
            "exec-1",
        )
        .expect("valid");
        let outputs = BTreeMap::from(
            [
                ("ShipgateAlarms", " orders-int-5xx,, orders-int-latency ,"),
                ("ShipgateProdListener", "arn:listener/prod"),
                ("ShipgateTestListener", "arn:listener/test"),
                ("ShipgateBlueTargetGroup", "arn:tg/blue"),
                ("ShipgateGreenTargetGroup", "arn:tg/green"),
                ("ShipgateService", ""),
                ("ShipgateLambdaFunction", "orders-int-notifier"),
                ("ShipgateLambdaAlias", " "),
                ("ShipgateLambdaVersion", "7"),
                ("ShipgateTestEndpoint", "http://alb.example:9000"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let t = stage_targets(&stage, &outputs, 1_700_000_000_000);
        assert_eq!(
            t.deployment_id,
            shipgate::deploy::deployment_id("rel-1", "int", "exec-1")
        );
        assert_eq!(
            (
                t.release_id.as_str(),
                t.environment.as_str(),
                t.execution_id.as_str()
            ),
            ("rel-1", "int", "exec-1")
        );
        assert_eq!(t.alarms, ["orders-int-5xx", "orders-int-latency"]);
        assert_eq!(t.prod_listener.as_deref(), Some("arn:listener/prod"));
        assert_eq!(t.test_listener.as_deref(), Some("arn:listener/test"));
        assert_eq!(t.blue_target_group.as_deref(), Some("arn:tg/blue"));
        assert_eq!(t.green_target_group.as_deref(), Some("arn:tg/green"));
        assert_eq!(t.service, None);
        assert_eq!(t.lambda_function.as_deref(), Some("orders-int-notifier"));
        assert_eq!(t.lambda_alias, None);
        assert_eq!(t.lambda_version.as_deref(), Some("7"));
        assert_eq!(t.recorded_at_ms, 1_700_000_000_000);

        // No output at all (what output_variables sets empty): nothing to move, no alarm.
        let none = stage_targets(&stage, &BTreeMap::new(), 0);
        assert!(none.alarms.is_empty());
        assert!(none.prod_listener.is_none() && none.lambda_function.is_none());
    }

    #[test]
    fn stacks_in_progress_wait_until_the_bound_then_fail_naming_them() {
        let stacks = [
            view("orders-int-service", true, "UPDATE_IN_PROGRESS"),
            view("orders-int-db", false, "UPDATE_COMPLETE"),
        ];
        assert_eq!(
            decide("int", "222222222222", &stacks, 0, 3600),
            Settlement::Wait
        );
        assert_eq!(
            decide("int", "222222222222", &stacks, -4, 3600),
            Settlement::Wait
        );
        let Settlement::Fail { message } = decide("int", "222222222222", &stacks, 3600, 3600)
        else {
            panic!("fails at the bound");
        };
        assert!(message.contains("after 60 min"), "{message}");
        assert!(
            message.contains("orders-int-service is UPDATE_IN_PROGRESS"),
            "{message}"
        );
        assert!(
            message.contains("SHIPGATE_DEPLOY_TIMEOUT_SECONDS"),
            "{message}"
        );
    }

    #[test]
    fn a_failed_stack_fails_the_action_even_while_another_is_in_progress() {
        let stacks = [
            view("orders-int-service", true, "UPDATE_IN_PROGRESS"),
            view("orders-int-db", true, "UPDATE_ROLLBACK_IN_PROGRESS"),
        ];
        let Settlement::Fail { message } = decide("int", "222222222222", &stacks, 0, 3600) else {
            panic!("fails");
        };
        assert!(
            message.contains("stack orders-int-db is UPDATE_ROLLBACK_IN_PROGRESS"),
            "{message}"
        );
    }
}
