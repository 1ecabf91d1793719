//! The release story as tests walk it: a release dropped, its pipeline execution reaching a gate,
//! the approval emails and their links. Each test starts its own stack, so tests run in parallel.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_codepipeline::types::StageState;
use shipgate::store::{Gate, ReleaseRecord, ReleaseState, Store};
use shipgate_local::outbox::{SentEmail, links, sent_emails};
use shipgate_local::stack::Stack;

use crate::drops;
use crate::support::{push_source_image, put, start_stack, wait_for};

/// How long a step of the story may take on a loaded 2-core machine.
pub const STEP: Duration = Duration::from_secs(60);

/// A local stack with the sample application's image in the source registry.
pub struct Story {
    pub stack: Stack,
    pub store: Store,
    pub cp: aws_sdk_codepipeline::Client,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub pipeline: String,
    pub repository: String,
    pub digest: String,
}

impl Story {
    pub async fn start(name: &str) -> Result<Self> {
        let stack = start_stack(name, |_| {}).await?;
        let repository = "orders/web".to_owned();
        let image = push_source_image(&stack, &repository, "1.0.0", &[2048, 4096]).await?;
        let table = stack.provisioned.table.clone().context("table")?;
        Ok(Self {
            store: Store::new(aws_sdk_dynamodb::Client::new(&stack.sdk), table),
            cp: aws_sdk_codepipeline::Client::new(&stack.sdk),
            s3: shipgate::aws::s3_client(&stack.sdk, true),
            bucket: stack
                .provisioned
                .artifact_bucket
                .clone()
                .context("artifact bucket")?,
            pipeline: stack
                .provisioned
                .refs
                .get("PipelineName")
                .cloned()
                .context("pipeline name")?,
            digest: image.digest().to_string(),
            repository,
            stack,
        })
    }

    /// Drops a good release of `orders` and waits until its execution has started.
    pub async fn drop_release(&self, version: &str) -> Result<ReleaseRecord> {
        let zip = drops::good_release("orders", version, &self.repository, &self.digest);
        self.drop_zip(version, zip).await
    }

    /// Drops `zip` as `incoming/orders-<version>.zip` and waits until it started.
    pub async fn drop_zip(&self, version: &str, zip: Vec<u8>) -> Result<ReleaseRecord> {
        let key = format!("incoming/orders-{version}.zip");
        let (version_id, _) = put(&self.s3, &self.bucket, &key, zip).await?;
        let id = shipgate_intake::release_id(&shipgate::aws::s3::ObjectVersion {
            bucket: self.bucket.clone(),
            key: key.clone(),
            version_id: Some(version_id),
        });
        let record = wait_for(&format!("release {id} to settle"), STEP, || async {
            Ok(self
                .store
                .get_release(&id)
                .await?
                .filter(|r| matches!(r.state, ReleaseState::Started | ReleaseState::Rejected)))
        })
        .await?;
        if record.state != ReleaseState::Started {
            bail!("release {version} was not started: {:?}", record.problems);
        }
        Ok(record)
    }

    /// The pipeline's stage, as `GetPipelineState` shows it.
    pub async fn stage(&self, stage: &str) -> Result<Option<StageState>> {
        let out = self
            .cp
            .get_pipeline_state()
            .name(&self.pipeline)
            .send()
            .await?;
        Ok(out
            .stage_states()
            .iter()
            .find(|s| s.stage_name() == Some(stage))
            .cloned())
    }

    /// The status of `action`'s latest execution in `stage` (`InProgress`, `Succeeded`, …).
    pub async fn action_status(&self, stage: &str, action: &str) -> Result<Option<String>> {
        Ok(self.stage(stage).await?.and_then(|s| {
            s.action_states()
                .iter()
                .find(|a| a.action_name() == Some(action))
                .and_then(|a| a.latest_execution())
                .and_then(|e| e.status())
                .map(|st| st.as_str().to_owned())
        }))
    }

    /// The execution's status (`InProgress`, `Succeeded`, `Failed`, …).
    pub async fn execution_status(&self, execution_id: &str) -> Result<String> {
        let out = self
            .cp
            .get_pipeline_execution()
            .pipeline_name(&self.pipeline)
            .pipeline_execution_id(execution_id)
            .send()
            .await?;
        Ok(out
            .pipeline_execution()
            .and_then(|e| e.status())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default())
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

    /// The emails sent to `to` whose subject mentions `needle`, oldest first.
    pub async fn emails_to(&self, to: &str, needle: &str) -> Result<Vec<SentEmail>> {
        Ok(sent_emails(&self.stack.moto.endpoint())
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
