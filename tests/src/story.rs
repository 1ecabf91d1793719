//! The release story as tests walk it: a release dropped, its pipeline execution reaching a gate,
//! the approval emails and their links. A story runs on a stack of its own: the pipeline is one
//! per stack, and its stages lock while an approval waits, so two stories would queue behind
//! each other's gates.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use aws_sdk_codepipeline::types::{
    ActionExecution, PipelineExecution, PipelineExecutionSummary, StageState,
};
use shipgate::store::{Gate, ReleaseRecord, ReleaseState, Store};
use shipgate_local::outbox::{SentEmail, links, sent_emails};
use shipgate_local::stack::{Stack, StackOptions};

use crate::drops;
use crate::support::{
    artifact_bucket, pipeline_name, push_source_image, put, start_stack, store, wait_for,
};

/// How long a step of the story may take on a loaded 2-core machine.
pub const STEP: Duration = Duration::from_secs(60);

/// A pipeline as CodePipeline's API shows it (`GetPipelineState`, `GetPipelineExecution`,
/// `ListPipelineExecutions`).
pub struct Pipeline {
    pub cp: aws_sdk_codepipeline::Client,
    pub name: String,
}

impl Pipeline {
    pub fn new(cp: aws_sdk_codepipeline::Client, name: &str) -> Self {
        Self {
            cp,
            name: name.to_owned(),
        }
    }

    /// The stages' names, in order, as `GetPipeline` declares them.
    pub async fn stage_names(&self) -> Result<Vec<String>> {
        let out = self.cp.get_pipeline().name(&self.name).send().await?;
        Ok(out
            .pipeline()
            .map(|p| p.stages().iter().map(|s| s.name().to_owned()).collect())
            .unwrap_or_default())
    }

    /// A stage, as `GetPipelineState` shows it.
    pub async fn stage(&self, stage: &str) -> Result<Option<StageState>> {
        let out = self.cp.get_pipeline_state().name(&self.name).send().await?;
        Ok(out
            .stage_states()
            .iter()
            .find(|s| s.stage_name() == Some(stage))
            .cloned())
    }

    /// `action`'s latest execution in `stage`, as `GetPipelineState` shows it.
    pub async fn latest_action(
        &self,
        stage: &str,
        action: &str,
    ) -> Result<Option<ActionExecution>> {
        Ok(self.stage(stage).await?.and_then(|s| {
            s.action_states()
                .iter()
                .find(|a| a.action_name() == Some(action))
                .and_then(|a| a.latest_execution().cloned())
        }))
    }

    /// The status of `action`'s latest execution in `stage` (`InProgress`, `Succeeded`, …).
    pub async fn action_status(&self, stage: &str, action: &str) -> Result<Option<String>> {
        Ok(self
            .latest_action(stage, action)
            .await?
            .and_then(|e| e.status().map(|st| st.as_str().to_owned())))
    }

    /// An execution, as `GetPipelineExecution` shows it.
    pub async fn execution(&self, execution_id: &str) -> Result<PipelineExecution> {
        let out = self
            .cp
            .get_pipeline_execution()
            .pipeline_name(&self.name)
            .pipeline_execution_id(execution_id)
            .send()
            .await?;
        out.pipeline_execution()
            .cloned()
            .with_context(|| format!("no execution {execution_id}"))
    }

    /// The execution's status (`InProgress`, `Succeeded`, `Failed`, …).
    pub async fn execution_status(&self, execution_id: &str) -> Result<String> {
        Ok(self
            .execution(execution_id)
            .await?
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default())
    }

    /// Every execution, newest first.
    pub async fn executions(&self) -> Result<Vec<PipelineExecutionSummary>> {
        let out = self
            .cp
            .list_pipeline_executions()
            .pipeline_name(&self.name)
            .send()
            .await?;
        Ok(out.pipeline_execution_summaries().to_vec())
    }

    /// Waits until the execution's status is one of `statuses`.
    pub async fn wait_execution(&self, execution_id: &str, statuses: &[&str]) -> Result<String> {
        wait_for(
            &format!("execution {execution_id} to reach {statuses:?}"),
            STEP,
            || async {
                let status = self.execution_status(execution_id).await?;
                Ok(statuses.contains(&status.as_str()).then_some(status))
            },
        )
        .await
    }

    /// Waits until the execution ends, within `patience`, and fails unless it ended `expect`.
    pub async fn execution_ends(
        &self,
        execution_id: &str,
        expect: &str,
        patience: Duration,
    ) -> Result<()> {
        let status = wait_for(
            &format!("execution {execution_id} to end"),
            patience,
            || async {
                let s = self.execution_status(execution_id).await?;
                Ok((s != "InProgress").then_some(s))
            },
        )
        .await?;
        ensure!(
            status == expect,
            "execution {execution_id} ended {status}, expected {expect}"
        );
        Ok(())
    }

    /// Waits until `stage`/`action` of the newest execution ends, within `patience`, and fails
    /// unless it ended `expect`.
    pub async fn action_ends(
        &self,
        stage: &str,
        action: &str,
        expect: &str,
        patience: Duration,
    ) -> Result<()> {
        let ended = wait_for(&format!("{stage}/{action} to end"), patience, || async {
            Ok(self
                .latest_action(stage, action)
                .await?
                .filter(|e| e.status().is_some_and(|s| s.as_str() != "InProgress")))
        })
        .await?;
        let status = ended.status().map(|s| s.as_str()).unwrap_or_default();
        // Why it ended otherwise, in CodePipeline's words (the action's error details).
        let error = ended
            .error_details()
            .map(|e| {
                format!(
                    " ({}: {})",
                    e.code().unwrap_or("?"),
                    e.message().unwrap_or("")
                )
            })
            .unwrap_or_default();
        ensure!(
            status == expect,
            "{stage}/{action} ended {status}{error}, expected {expect}"
        );
        Ok(())
    }
}

/// A local stack, its pipeline, and the sample application's image in the source registry.
pub struct Story {
    pub stack: Stack,
    pub store: Store,
    pub pipeline: Pipeline,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub repository: String,
    pub digest: String,
}

impl Story {
    pub async fn start(name: &str) -> Result<Self> {
        Self::start_with(name, |_| {}).await
    }

    /// A story on a stack configured by `configure`.
    pub async fn start_with(name: &str, configure: impl FnOnce(&mut StackOptions)) -> Result<Self> {
        let stack = start_stack(name, configure).await?;
        let repository = "orders/web".to_owned();
        let image = push_source_image(&stack, &repository, "1.0.0", &[2048, 4096]).await?;
        Ok(Self {
            store: store(&stack)?,
            pipeline: Pipeline::new(
                aws_sdk_codepipeline::Client::new(&stack.sdk),
                &pipeline_name(&stack)?,
            ),
            s3: shipgate::aws::s3_client(&stack.sdk, true),
            bucket: artifact_bucket(&stack)?,
            digest: image.digest().to_string(),
            repository,
            stack,
        })
    }

    /// The functions' environment as the stack resolved it (`SHIPGATE_*`, the endpoints), as
    /// the operator's and the local stack's commands read it.
    pub fn functions_env(&self) -> shipgate::config::Env {
        shipgate::config::Env::from_pairs(self.stack.env_file_contents().lines().filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.to_owned(), v.trim_matches('\'').to_owned()))
        }))
    }

    /// Drops a good release of `orders` and waits until its execution has started.
    pub async fn drop_release(&self, version: &str) -> Result<ReleaseRecord> {
        let zip = drops::good_release("orders", version, &self.repository, &self.digest);
        self.drop_zip(version, zip).await
    }

    /// Drops `zip` as `incoming/orders-<version>.zip` and waits until it started.
    pub async fn drop_zip(&self, version: &str, zip: Vec<u8>) -> Result<ReleaseRecord> {
        let record = self
            .drop_at(&format!("incoming/orders-{version}.zip"), zip)
            .await?;
        if record.state != ReleaseState::Started {
            bail!("release {version} was not started: {:?}", record.problems);
        }
        Ok(record)
    }

    /// Drops `zip` as `key` and waits for intake's verdict (started or rejected).
    pub async fn drop_at(&self, key: &str, zip: Vec<u8>) -> Result<ReleaseRecord> {
        let (version_id, _) = put(&self.s3, &self.bucket, key, zip).await?;
        let id = shipgate_intake::release_id(&shipgate::aws::s3::ObjectVersion {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            version_id: Some(version_id),
        });
        wait_for(&format!("intake's verdict on {key}"), STEP, || async {
            Ok(self
                .store
                .get_release(&id)
                .await?
                .filter(|r| matches!(r.state, ReleaseState::Started | ReleaseState::Rejected)))
        })
        .await
    }

    /// The pipeline's stage, as `GetPipelineState` shows it.
    pub async fn stage(&self, stage: &str) -> Result<Option<StageState>> {
        self.pipeline.stage(stage).await
    }

    /// The status of `action`'s latest execution in `stage` (`InProgress`, `Succeeded`, …).
    pub async fn action_status(&self, stage: &str, action: &str) -> Result<Option<String>> {
        self.pipeline.action_status(stage, action).await
    }

    /// Waits until the execution's status is one of `statuses`.
    pub async fn wait_execution(&self, execution_id: &str, statuses: &[&str]) -> Result<String> {
        self.pipeline.wait_execution(execution_id, statuses).await
    }

    /// Waits until the gate of `release` at `stage`/`action` is open and every approver mailed.
    pub async fn wait_gate(
        &self,
        release: &ReleaseRecord,
        stage: &str,
        action: &str,
    ) -> Result<Gate> {
        let execution = release.execution_id.clone().context("execution id")?;
        wait_for(
            &format!("the {stage}/{action} gate of {execution} to be mailed"),
            STEP,
            || async {
                Ok(self
                    .store
                    .get_gate(&execution, stage, action)
                    .await?
                    .filter(|g| g.links.iter().all(|l| l.message_id.is_some())))
            },
        )
        .await
    }

    /// Every email sent so far.
    pub async fn emails(&self) -> Result<Vec<SentEmail>> {
        sent_emails(&self.stack.moto.endpoint()).await
    }

    /// The emails sent to `to` whose subject mentions `needle`, oldest first.
    pub async fn emails_to(&self, to: &str, needle: &str) -> Result<Vec<SentEmail>> {
        Ok(self
            .emails()
            .await?
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == to) && m.subject.contains(needle))
            .collect())
    }

    /// The approve (or reject) link of the approval email sent to `to` for `version`.
    pub async fn approval_link(&self, to: &str, version: &str, intent: &str) -> Result<String> {
        let emails = self.emails_to(to, version).await?;
        let email = emails
            .last()
            .with_context(|| format!("no approval email to {to} for {version}"))?;
        links(&email.body)
            .into_iter()
            .find(|l| l.contains("t=") && l.ends_with(&format!("i={intent}")))
            .with_context(|| format!("no {intent} link in the email to {to}"))
    }
}

pub use shipgate_local::approvals::form_field;
