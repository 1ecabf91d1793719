//! `shipgate-local status`: releases and pipeline executions, one line each.

use std::fmt::Write;

use anyhow::Result;
use aws_config::SdkConfig;
use shipgate::config::Env;
use shipgate::store::Store;

use crate::sdk::sdk_error;

/// A promotion under its release: where from and to, then each image by digest with what moved.
fn write_promotion(out: &mut String, p: &shipgate::store::Promotion) -> std::fmt::Result {
    let bytes: u64 = p.images.iter().map(|i| i.bytes_copied).sum();
    writeln!(
        out,
        "      promoted {} -> {} ({}): {} image(s), {:.1} MiB copied, {} invocation(s){}",
        p.from_environment,
        p.to_environment,
        p.state.as_str(),
        p.images.len(),
        bytes as f64 / (1024.0 * 1024.0),
        p.invocations,
        p.failure
            .as_deref()
            .map(|f| format!(": {f}"))
            .unwrap_or_default()
    )?;
    for i in &p.images {
        writeln!(
            out,
            "        {} {}:{}  {}  blobs {} copied / {} skipped, {:.1} MiB in {:.2}s{}",
            i.name,
            i.repository,
            i.tag,
            i.reference,
            i.blobs_copied,
            i.blobs_skipped,
            i.bytes_copied as f64 / (1024.0 * 1024.0),
            i.seconds,
            if i.complete { "" } else { " (in progress)" }
        )?;
    }
    Ok(())
}

/// The report for the stack whose variables are in `env`, as text.
pub async fn collect(sdk: &SdkConfig, env: &Env, limit: i32) -> Result<String> {
    let table = env.required("SHIPGATE_TABLE")?;
    let pipeline = env.required("SHIPGATE_PIPELINE_NAME")?;
    let store = Store::new(aws_sdk_dynamodb::Client::new(sdk), table);
    let mut out = String::new();
    let releases = store.list_releases(limit).await?;
    writeln!(out, "releases ({}):", releases.len())?;
    for r in &releases {
        let what = format!(
            "{} {}",
            r.application.as_deref().unwrap_or("?"),
            r.version.as_deref().unwrap_or("?")
        );
        let detail = match (&r.execution_id, &r.problems) {
            (Some(exec), _) => format!("execution {exec}"),
            (None, Some(p)) => format!(
                "{} problem(s): {}",
                p.as_array().map(Vec::len).unwrap_or(0),
                p.as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(|x| x.get("code").and_then(|c| c.as_str()))
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default()
            ),
            _ => String::new(),
        };
        writeln!(
            out,
            "  {}  {:<9}  {:<24}  {}  s3://{}/{}  {}",
            r.received_at,
            r.state.as_str(),
            what,
            r.release_id,
            r.source.bucket,
            r.source.key,
            detail
        )?;
        for p in store.list_promotions(&r.release_id).await? {
            write_promotion(&mut out, &p)?;
        }
    }
    let cp = aws_sdk_codepipeline::Client::new(sdk);
    for pipeline in &pipelines_of(&releases, &pipeline) {
        let executions = cp
            .list_pipeline_executions()
            .pipeline_name(pipeline)
            .send()
            .await
            .map_err(sdk_error)?;
        write_executions(
            &mut out,
            pipeline,
            executions.pipeline_execution_summaries(),
        )?;
    }
    Ok(out)
}

/// The installation's own pipeline (`own`) first, then every other pipeline one of `releases`
/// went to (each application's), once each.
pub fn pipelines_of(releases: &[shipgate::store::ReleaseRecord], own: &str) -> Vec<String> {
    let mut pipelines = vec![own.to_owned()];
    for r in releases {
        if let Some(p) = &r.pipeline
            && !pipelines.contains(p)
        {
            pipelines.push(p.clone());
        }
    }
    pipelines
}

fn write_executions(
    out: &mut String,
    pipeline: &str,
    summaries: &[aws_sdk_codepipeline::types::PipelineExecutionSummary],
) -> Result<()> {
    writeln!(out, "executions of {pipeline} ({}):", summaries.len())?;
    for e in summaries {
        let vars = e
            .trigger()
            .and_then(|t| t.trigger_detail())
            .unwrap_or_default();
        writeln!(
            out,
            "  {}  {:<11}  {}  {}",
            e.start_time()
                .map(|t| t
                    .fmt(aws_smithy_types::date_time::Format::DateTime)
                    .unwrap_or_default())
                .unwrap_or_default(),
            e.status().map(|s| s.as_str()).unwrap_or("?"),
            e.pipeline_execution_id().unwrap_or("?"),
            vars
        )?;
    }
    Ok(())
}

/// What a deployment moves, in a few words: `alias orders-int-notifier:live, version 1 → 2` or
/// `listener …/app/shipgate-int/…, target group blue → green`.
pub fn describe_target(target: &shipgate::store::TrafficTarget) -> String {
    use shipgate::store::TrafficTarget;
    let short = |arn: &str| arn.rsplit(':').next().unwrap_or(arn).to_owned();
    match target {
        // As the traffic action says it.
        TrafficTarget::LambdaAlias { .. } => shipgate_traffic::describe(target),
        TrafficTarget::AlbListener {
            listener_arn,
            blue_target_group,
            green_target_group,
            ..
        } => format!(
            "{}, {} → {}",
            short(listener_arn),
            short(blue_target_group),
            short(green_target_group)
        ),
    }
}

/// A release in a few lines: verdict, what it is, and its execution or every problem found.
pub fn describe_release(r: &shipgate::store::ReleaseRecord) -> String {
    let mut out = String::new();
    let what = format!(
        "{} {}",
        r.application.as_deref().unwrap_or("(unknown app)"),
        r.version.as_deref().unwrap_or("(unknown version)")
    );
    let _ = writeln!(
        out,
        "release {} ({what}): {}",
        r.release_id,
        r.state.as_str()
    );
    if let Some(exec) = &r.execution_id {
        let _ = writeln!(
            out,
            "  pipeline {} execution {exec} started on s3://{}/{} version {}",
            r.pipeline.as_deref().unwrap_or("?"),
            r.accepted_object
                .as_ref()
                .map(|o| o.bucket.as_str())
                .unwrap_or("?"),
            r.accepted_object
                .as_ref()
                .map(|o| o.key.as_str())
                .unwrap_or("?"),
            r.accepted_object
                .as_ref()
                .and_then(|o| o.version_id.as_deref())
                .unwrap_or("?"),
        );
    }
    if let Some(problems) = r.problems.as_ref().and_then(|p| p.as_array()) {
        let _ = writeln!(out, "  {} problem(s):", problems.len());
        for p in problems {
            let field = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("");
            let at = match field("path") {
                "" => String::new(),
                path => format!(" [{path}]"),
            };
            let _ = writeln!(out, "  - {}{at}: {}", field("code"), field("message"));
        }
    }
    if let Some(key) = &r.rejected_key {
        let _ = writeln!(
            out,
            "  kept at s3://{}/{key}, report at s3://{}/{}",
            r.source.bucket,
            r.source.bucket,
            r.report_key.as_deref().unwrap_or("?")
        );
    }
    out.trim_end().to_owned()
}
