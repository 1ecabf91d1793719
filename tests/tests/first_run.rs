//! The execution CodePipeline starts by itself when it creates the pipeline (trigger type
//! `CreatePipeline`: CodePipeline user guide, "Start a pipeline in CodePipeline"). It runs with
//! the pipeline variables' defaults (`ReleaseId` "none"), not for a release intake accepted. On
//! a new installation its Source action fails (nothing is at the application's source key,
//! `accepted/orders/release.zip`, yet); where an accepted zip is left from an earlier
//! installation, the first action after the source fails naming the release it does not know. Either way nothing is promoted or deployed, and no
//! person is asked to approve anything.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use shipgate_tests::drops;
use shipgate_tests::story::Story;

const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_codepipeline_starts_when_it_creates_the_pipeline_moves_nothing() -> Result<()> {
    let story = Story::start("first-run").await?;
    // One run as CodePipeline starts it at creation (no variables given), waited for until it
    // fails: its id and what became of the source action.
    let run = || async {
        let started = story
            .pipeline
            .cp
            .start_pipeline_execution()
            .name(&story.pipeline.name)
            .send()
            .await?;
        let id = started
            .pipeline_execution_id()
            .context("execution id")?
            .to_owned();
        story
            .pipeline
            .execution_ends(&id, "Failed", PATIENCE)
            .await?;
        let source = story.pipeline.action_status("Source", "Release").await?;
        anyhow::Ok((id, source))
    };

    // A new installation: no release was ever accepted.
    let (_, source) = run().await?;
    ensure!(
        source.as_deref() == Some("Failed"),
        "the source action: {source:?}"
    );

    // An accepted zip left from before: the source succeeds, the first action after it refuses
    // the release id "none".
    let zip = drops::good_release("orders", "1.0.0", &story.repository, &story.digest);
    story
        .s3
        .put_object()
        .bucket(&story.bucket)
        .key("accepted/orders/release.zip")
        .body(zip.into())
        .send()
        .await?;
    let (second, source) = run().await?;
    ensure!(
        source.as_deref() == Some("Succeeded"),
        "the source action: {source:?}"
    );
    let latest = story
        .pipeline
        .latest_action("PromoteToInt", "Promote")
        .await?
        .context("Promote's latest execution")?;
    ensure!(
        latest.status().map(|s| s.as_str()) == Some("Failed"),
        "Promote: {:?}",
        latest.status()
    );
    let message = latest
        .error_details()
        .and_then(|e| e.message())
        .unwrap_or_default();
    ensure!(
        message.contains("none"),
        "the failure does not name the release: {message}"
    );
    ensure!(
        story.store.list_promotions("none").await?.is_empty(),
        "something was promoted for release none"
    );
    ensure!(
        story.store.list_release_gates("none").await?.is_empty(),
        "an approval was opened for release none"
    );
    for stage in ["Int", "PromoteToStg", "Stg", "PromoteToProd", "Prod"] {
        let entered = story
            .pipeline
            .stage(stage)
            .await?
            .and_then(|s| s.latest_execution().cloned())
            .is_some_and(|e| e.pipeline_execution_id() == second);
        ensure!(!entered, "{stage} ran for release none");
    }
    Ok(())
}
