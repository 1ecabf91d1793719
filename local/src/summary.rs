//! `shipgate-local summary`: the story so far in a few lines, from the state in the local AWS:
//! releases and their verdicts, each accepted release's execution with how long it ran and
//! what happened in each environment, approvals (gates, links mailed and used), emails sent and
//! what promotion copied.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::Result;
use aws_config::SdkConfig;
use aws_sdk_codepipeline::types::PipelineExecutionSummary;
use shipgate::config::Env;
use shipgate::deploy::deployment_id;
use shipgate::store::{Deployment, DeploymentState, ReleaseState, Store, TrafficTarget};

use crate::outbox::sent_emails;
use crate::sdk::sdk_error;

const ENVIRONMENTS: [&str; 3] = ["int", "stg", "prod"];

/// The summary for the stack whose variables are in `env`, as text.
pub async fn collect(sdk: &SdkConfig, env: &Env) -> Result<String> {
    let store = Store::new(
        aws_sdk_dynamodb::Client::new(sdk),
        env.required("SHIPGATE_TABLE")?,
    );
    let own = env.required("SHIPGATE_PIPELINE_NAME")?;
    let cp = aws_sdk_codepipeline::Client::new(sdk);
    let mut releases = store.list_releases(100).await?;
    let mut executions: BTreeMap<String, PipelineExecutionSummary> = BTreeMap::new();
    for pipeline in &crate::status::pipelines_of(&releases, &own) {
        let listed = cp
            .list_pipeline_executions()
            .pipeline_name(pipeline)
            .send()
            .await
            .map_err(sdk_error)?;
        executions.extend(
            listed
                .pipeline_execution_summaries()
                .iter()
                .filter_map(|e| Some((e.pipeline_execution_id()?.to_owned(), e.clone()))),
        );
    }

    releases.sort_by(|a, b| a.received_at.cmp(&b.received_at));
    let mut out = String::new();
    let rejected = releases
        .iter()
        .filter(|r| r.state == ReleaseState::Rejected)
        .count();
    writeln!(
        out,
        "releases dropped: {} ({} rejected, {} accepted)",
        releases.len(),
        rejected,
        releases.len() - rejected
    )?;

    let (mut gates, mut mailed, mut used, mut approved, mut rejected_gates) = (0, 0, 0, 0, 0);
    let (mut promotions, mut promoted_bytes, mut blobs_copied, mut blobs_skipped) = (0, 0u64, 0, 0);
    for r in &releases {
        let what = format!(
            "{} {}",
            r.application.as_deref().unwrap_or("?"),
            r.version.as_deref().unwrap_or("?")
        );
        let Some(execution_id) = &r.execution_id else {
            let problems = r
                .problems
                .as_ref()
                .and_then(|p| p.as_array())
                .map(Vec::len)
                .unwrap_or(0);
            writeln!(
                out,
                "  {what} ({}): {}, {problems} problem(s), nothing started",
                r.release_id,
                r.state.as_str()
            )?;
            continue;
        };
        let execution = executions.get(execution_id);
        writeln!(
            out,
            "  {what} ({}): execution {execution_id} {}{}",
            r.release_id,
            execution
                .and_then(|e| e.status())
                .map(|s| s.as_str())
                .unwrap_or("unknown"),
            execution.map(duration).unwrap_or_default()
        )?;
        for environment in ENVIRONMENTS {
            // The stage's deployment (the listener) and its named one (the LambdaTraffic action).
            for name in [None, Some("lambda")] {
                let execution = shipgate_traffic::named_execution(execution_id, name);
                let id = deployment_id(&r.release_id, environment, &execution);
                if let Some(d) = store.get_deployment(&id).await? {
                    writeln!(out, "    {environment}: {}", describe_deployment(&d))?;
                }
            }
        }
        for p in store.list_promotions(&r.release_id).await? {
            promotions += 1;
            let bytes: u64 = p.images.iter().map(|i| i.bytes_copied).sum();
            promoted_bytes += bytes;
            blobs_copied += p
                .images
                .iter()
                .map(|i| u64::from(i.blobs_copied))
                .sum::<u64>();
            blobs_skipped += p
                .images
                .iter()
                .map(|i| u64::from(i.blobs_skipped))
                .sum::<u64>();
            writeln!(
                out,
                "    promoted {} -> {}: {}, {} image(s), {}",
                p.from_environment,
                p.to_environment,
                p.state.as_str(),
                p.images.len(),
                mib(bytes)
            )?;
        }
        for gate in store.list_release_gates(&r.release_id).await? {
            gates += 1;
            mailed += gate.links.iter().filter(|l| l.message_id.is_some()).count();
            if let Some(d) = &gate.decision {
                used += 1;
                match d.verdict {
                    shipgate::store::Verdict::Approve => approved += 1,
                    shipgate::store::Verdict::Reject => rejected_gates += 1,
                }
            }
        }
    }
    writeln!(
        out,
        "approvals: {gates} gate(s), {mailed} link(s) mailed, {used} used to decide \
         ({approved} approved, {rejected_gates} rejected)"
    )?;
    if let Some(moto) = env.optional("SHIPGATE_LOCAL_MOTO") {
        let emails = sent_emails(moto).await?;
        let approvals = emails
            .iter()
            .filter(|e| e.subject.starts_with("Approve "))
            .count();
        writeln!(
            out,
            "emails sent: {} ({approvals} approval request(s); the others below)",
            emails.len()
        )?;
        for e in emails.iter().filter(|e| !e.subject.starts_with("Approve ")) {
            writeln!(out, "  to {}: {}", e.to.join(", "), e.subject)?;
        }
    }
    writeln!(
        out,
        "promotion: {promotions} copy(ies), {} of layers and configs copied, {blobs_copied} \
         blob(s) copied, {blobs_skipped} already there",
        mib(promoted_bytes)
    )?;
    Ok(out)
}

fn describe_deployment(d: &Deployment) -> String {
    let state = match d.state {
        DeploymentState::RolledBack => match &d.rollback {
            Some(r) => format!("rolled back from {}% ({})", r.percent_before, r.reason),
            None => "rolled back".to_owned(),
        },
        other => format!("{} at {}%", other.as_str(), d.percent),
    };
    let what = match &d.target {
        TrafficTarget::LambdaAlias {
            function,
            alias,
            previous_version,
            new_version,
        } => format!("alias {function}:{alias} ({previous_version} → {new_version})"),
        TrafficTarget::AlbListener { .. } => "the listener".to_owned(),
    };
    format!(
        "{} {} on {what}, plan {}: {state}",
        d.application.as_deref().unwrap_or("?"),
        d.version.as_deref().unwrap_or("?"),
        d.plan
    )
}

fn duration(e: &PipelineExecutionSummary) -> String {
    match (e.start_time(), e.last_update_time()) {
        (Some(start), Some(end)) => {
            let seconds = end.secs() - start.secs();
            format!(" after {}m{:02}s", seconds / 60, seconds % 60)
        }
        _ => String::new(),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}
