//! The change-set action: a CodePipeline Lambda-invoke action that creates the release's change
//! sets in an environment's account and summarises them for approvers.
//!
//! Each invocation re-validates the release artifact (the zip the pipeline's source action
//! produced) against the record intake wrote (it must be the very release intake accepted, and
//! go to this environment), assumes the deploy role in the environment's account, and for each
//! template of the manifest makes sure the change set exists: found by its name (the same for a
//! release in one execution, so a retried or duplicated invocation finds what an earlier one
//! created), created otherwise (`CREATE` for a new stack, `UPDATE` otherwise, images by digest
//! and the version as parameters). Then it reads where each stands. Pending ones are asked
//! about again on the next invocation (a continuation token, never a sleep), up to a bound;
//! when all are settled, their summaries are stored with the release for the mailer and the
//! action succeeds. A change set with no changes is a normal outcome; one CloudFormation
//! refuses fails the action with CloudFormation's reason.

mod config;
mod error;
mod parameters;
mod progress;

pub use config::ChangeSetConfig;
pub use error::ChangeSetError;
pub use parameters::{ActionParameters, Target, change_set_name, default_registry};
pub use progress::{
    Readiness, StackChangeSet, StackProgress, classify, decide, is_leftover, output_variables,
    summary_line,
};

use aws_config::SdkConfig;
use sha2::{Digest, Sha256};
use shipgate::aws::cloudformation::{
    Capability, ChangeSetRequest, ChangeSetState, ChangeSetStatus, ChangeSetType, Creation,
    TEMPLATE_BODY_MAX_BYTES, TemplateSource, create_change_set_once, delete_change_set,
    describe_change_set, find_change_set, stack_exists,
};
use shipgate::aws::s3::{https_url, put_bytes};
use shipgate::aws::sts::Sessions;
use shipgate::changes::ChangeSummary;
use shipgate::error::AwsError;
use shipgate::job::artifact::{ArtifactError, read_release, release_artifact};
use shipgate::job::release::{accepted_release, check_goes_to, recorded_manifest};
use shipgate::job::{Call, Job, JobAction, ParameterError, RetryLimit, Scope, Verdict};
use shipgate::release::{DeployTarget, Inspection, Manifest, StackTemplate};
use shipgate::store::{ChangeSetOutcome, ReleaseRecord, StackChanges, Store};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::info;

/// The clients the action uses, built once per process. The environment accounts' clients are
/// built per invocation, from the role its parameters name.
#[derive(Debug, Clone)]
pub struct ChangeSetFunction {
    pub config: ChangeSetConfig,
    /// The environment accounts' roles, assumed from the function's own (tooling) account.
    pub sessions: Sessions,
    /// The tooling account's S3, where the pipeline's artifacts are.
    pub s3: aws_sdk_s3::Client,
    pub store: Store,
}

/// Where large templates are written for CloudFormation to read (see
/// [`ChangeSetFunction::template_source`]); the bucket policy and the environment role grant
/// reads of this prefix only.
pub const TEMPLATES_PREFIX: &str = "templates/";

/// A template's text and the bucket it goes to if it is too large to send.
#[derive(Debug, Clone, Copy)]
struct TemplateToSend<'a> {
    bucket: &'a str,
    body: &'a str,
}

/// A release artifact that is the release intake accepted, for this environment.
#[derive(Debug)]
struct VerifiedRelease {
    manifest: Manifest,
    /// Each template of the manifest with its body, in manifest order.
    templates: Vec<(StackTemplate, String)>,
}

shipgate::function!(ChangeSetFunction, ChangeSetConfig);

impl JobAction for ChangeSetFunction {
    const NAME: &'static str = "change-set";
    const PARAMETERS: &'static str =
        "environment, roleArn, releaseId, executionId and optionally registry and stackRoleArn";
    type Parameters = ActionParameters;
    type Target = Target;
    /// Every invocation asks CloudFormation again: nothing to carry.
    type State = ();
    type Error = ChangeSetError;

    fn target(&self, parameters: ActionParameters) -> Result<Target, ParameterError> {
        parameters.target(self.sessions.base().region().map(|r| r.as_ref()))
    }

    fn scope(target: &Target) -> Scope<'_> {
        target.stage.scope()
    }

    fn retry_limit(&self) -> RetryLimit {
        self.config.timeout
    }

    async fn work(&self, call: Call<'_, Target, ()>) -> Result<Verdict<()>, ChangeSetError> {
        let target = call.target;
        let waited = call.waited_seconds();
        // Only the first invocation of a job starts an attempt: a continuation finds its own.
        let stacks = self.prepare(call.job, target, call.is_first()).await?;
        let readiness = decide(
            &target.stage.environment,
            &target.stage.account_id,
            &target.change_set_name,
            &stacks,
            waited,
            self.config.timeout.seconds,
        );
        match readiness {
            Readiness::Settled => self.record(target, &stacks).await,
            Readiness::Wait => {
                info!(waited, outcome = "continue", "change sets not ready yet");
                Ok(Verdict::Continue(()))
            }
            Readiness::Fail { message } => Ok(Verdict::fail(message)),
        }
    }
}

impl ChangeSetFunction {
    /// Builds the clients from one SDK configuration.
    pub fn new(config: ChangeSetConfig, sdk: &SdkConfig) -> Self {
        let (s3, store) = config.artifact.clients(sdk);
        Self {
            s3,
            store,
            sessions: Sessions::new(sdk, "change-set"),
            config,
        }
    }

    /// Verifies the release, then makes sure every stack's change set exists and reads it.
    async fn prepare(
        &self,
        job: &Job,
        target: &Target,
        new_attempt: bool,
    ) -> Result<Vec<StackChangeSet>, ChangeSetError> {
        let record = accepted_release(
            &self.store,
            &target.stage.release_id,
            target.stage.application.as_deref(),
        )
        .await?;
        let inspection = read_release(&self.s3, job, &record, &self.config.artifact.limits).await?;
        let release = verify_release(&record, inspection, &target.stage.environment)?;

        let bucket = release_artifact(job)?.bucket;
        let cf = aws_sdk_cloudformation::Client::new(&self.assume(target).await?);
        let mut stacks = Vec::with_capacity(release.templates.len());
        for (template, body) in &release.templates {
            let source = TemplateToSend {
                bucket: &bucket,
                body,
            };
            let stack = self
                .prepare_stack(
                    &cf,
                    target,
                    &release.manifest,
                    template,
                    source,
                    new_attempt,
                )
                .await?;
            stacks.push(stack);
        }
        Ok(stacks)
    }

    /// The environment account's SDK configuration, as the deploy role.
    async fn assume(&self, target: &Target) -> Result<SdkConfig, ChangeSetError> {
        self.sessions
            .config(&target.stage.role_arn, &target.stage.release_id)
            .await
            .map_err(|source| ChangeSetError::AssumeRole {
                environment: target.stage.environment.clone(),
                source,
            })
    }

    /// How CloudFormation gets `source`'s template: in the request when it fits
    /// ([`TEMPLATE_BODY_MAX_BYTES`]), otherwise written to the artifact bucket under
    /// `templates/<release>/<sha-256>.template` and passed by URL. CloudFormation reads that
    /// object with the environment role's credentials: environment.yaml's deploy role may
    /// `s3:GetObject` it and template.yaml's bucket policy grants it to the environment roles.
    async fn template_source(
        &self,
        target: &Target,
        source: TemplateToSend<'_>,
    ) -> Result<TemplateSource, ChangeSetError> {
        if source.body.len() <= TEMPLATE_BODY_MAX_BYTES {
            return Ok(TemplateSource::Body(source.body.to_owned()));
        }
        let key = format!(
            "{TEMPLATES_PREFIX}{}/{}.template",
            target.stage.release_id,
            hex::encode(Sha256::digest(source.body.as_bytes()))
        );
        put_bytes(
            &self.s3,
            source.bucket,
            &key,
            "text/plain; charset=utf-8",
            source.body.as_bytes().to_vec(),
        )
        .await
        .map_err(|e| ChangeSetError::TemplateUpload {
            bucket: source.bucket.to_owned(),
            key: key.clone(),
            source: Box::new(e),
        })?;
        let region = self
            .s3
            .config()
            .region()
            .map_or("us-east-1", |r| r.as_ref());
        info!(bytes = source.body.len(), key = %key, outcome = "by-url", "template over TemplateBody's limit passed by URL");
        Ok(TemplateSource::Url(https_url(source.bucket, region, &key)))
    }

    /// Makes sure the stack's change set exists and reads where it stands.
    async fn prepare_stack(
        &self,
        cf: &aws_sdk_cloudformation::Client,
        target: &Target,
        manifest: &Manifest,
        template: &StackTemplate,
        source: TemplateToSend<'_>,
        new_attempt: bool,
    ) -> Result<StackChangeSet, ChangeSetError> {
        let stack_name = manifest.stack_name(&target.stage.environment, template);
        let cfn = |source: AwsError| ChangeSetError::CloudFormation {
            environment: target.stage.environment.clone(),
            stack: stack_name.clone(),
            role_arn: target.stage.role_arn.to_string(),
            source: Box::new(source),
        };
        let parameters = manifest.stack_parameters(
            template,
            &DeployTarget {
                environment: &target.stage.environment,
                registry: &target.registry,
            },
        )?;
        // A stack left in REVIEW_IN_PROGRESS by an unexecuted CREATE does not exist yet: its
        // change set is a CREATE too.
        let exists = stack_exists(cf, &stack_name).await.map_err(cfn)?;
        let request = |template| ChangeSetRequest {
            stack_name: stack_name.clone(),
            change_set_name: target.change_set_name.clone(),
            template,
            parameters: parameters.clone(),
            change_set_type: if exists {
                ChangeSetType::Update
            } else {
                ChangeSetType::Create
            },
            // Approvers see IAM changes flagged in the summary; nothing executes before approval.
            capabilities: vec![
                Capability::Iam,
                Capability::NamedIam,
                Capability::AutoExpand,
            ],
            description: Some(change_set_description(manifest, target)),
            role_arn: target.stack_role_arn.clone(),
        };
        let found = find_change_set(cf, &stack_name, &target.change_set_name)
            .await
            .map_err(cfn)?;
        let state = match found {
            Some(state) if new_attempt && is_leftover(&state) => {
                info!(stack = %stack_name, change_set = %target.change_set_name, outcome = "replaced", previous = %classify(&state).label(), "replacing the change set an earlier attempt left");
                delete_change_set(cf, &stack_name, &target.change_set_name)
                    .await
                    .map_err(cfn)?;
                let template = self.template_source(target, source).await?;
                create_and_describe(cf, &request(template))
                    .await
                    .map_err(cfn)?
            }
            Some(state) => state,
            None => {
                let template = self.template_source(target, source).await?;
                create_and_describe(cf, &request(template))
                    .await
                    .map_err(cfn)?
            }
        };
        let progress = classify(&state);
        let headline = match &progress {
            StackProgress::Ready { summary } => summary.headline(),
            _ => String::new(),
        };
        info!(
            stack = %stack_name,
            change_set = %target.change_set_name,
            creates_stack = !exists,
            stack_role = target.stack_role_arn.as_deref().unwrap_or_default(),
            outcome = progress.label(),
            headline = %headline,
            reason = state.status_reason.as_deref().unwrap_or_default(),
            "change set checked"
        );
        Ok(StackChangeSet {
            template_path: template.path.clone(),
            stack_name,
            creates_stack: !exists,
            change_set_id: state.change_set_id,
            progress,
        })
    }

    /// Stores every stack's change set with the release, then succeeds.
    async fn record(
        &self,
        target: &Target,
        stacks: &[StackChangeSet],
    ) -> Result<Verdict<()>, ChangeSetError> {
        let created_at = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        for stack in stacks {
            let (outcome, summary) = match &stack.progress {
                StackProgress::Ready { summary } => (ChangeSetOutcome::Ready, summary.clone()),
                _ => (ChangeSetOutcome::NoChanges, ChangeSummary::default()),
            };
            self.store
                .put_stack_changes(&StackChanges {
                    release_id: target.stage.release_id.clone(),
                    environment: target.stage.environment.clone(),
                    execution_id: target.stage.execution_id.clone(),
                    template_path: stack.template_path.clone(),
                    stack_name: stack.stack_name.clone(),
                    account_id: target.stage.account_id.clone(),
                    change_set_name: target.change_set_name.clone(),
                    change_set_id: stack.change_set_id.clone(),
                    creates_stack: stack.creates_stack,
                    outcome,
                    summary,
                    created_at: created_at.clone(),
                })
                .await?;
        }
        let summary = summary_line(&target.stage.environment, stacks);
        info!(stacks = stacks.len(), outcome = "done", summary = %summary, "change sets ready");
        Ok(Verdict::Done {
            output_variables: output_variables(
                &target.stage.environment,
                &target.change_set_name,
                stacks,
            ),
            summary,
        })
    }
}

/// `CreateChangeSet`, then `DescribeChangeSet` once (CloudFormation is often done already).
async fn create_and_describe(
    cf: &aws_sdk_cloudformation::Client,
    request: &ChangeSetRequest,
) -> Result<ChangeSetState, AwsError> {
    match create_change_set_once(cf, request).await? {
        Creation::Created { .. } | Creation::AlreadyExists => {
            describe_change_set(cf, &request.stack_name, &request.change_set_name).await
        }
        // What CloudFormation would describe for it: a change set that found nothing to change.
        Creation::NothingToChange { reason } => Ok(ChangeSetState {
            change_set_id: None,
            status: ChangeSetStatus::Failed,
            execution_status: None,
            status_reason: Some(reason),
            changes: Vec::new(),
        }),
    }
}

/// "shipgate release rel-… (orders 1.4.2), pipeline execution …": what CloudFormation's console
/// shows next to the change set.
fn change_set_description(manifest: &Manifest, target: &Target) -> String {
    let text = format!(
        "shipgate release {} ({} {}), pipeline execution {}",
        target.stage.release_id, manifest.application, manifest.version, target.stage.execution_id
    );
    // CloudFormation's limit on a description.
    text.chars().take(1024).collect()
}

/// Checks that the release intake validated ([`read_release`]) goes to `environment`, and takes
/// its templates.
fn verify_release(
    record: &ReleaseRecord,
    inspection: Inspection,
    environment: &str,
) -> Result<VerifiedRelease, ChangeSetError> {
    let Some(manifest) = inspection.manifest else {
        // Validation gives a manifest whenever it finds no problem; this is a guard.
        return Err(ArtifactError::Problems {
            count: 1,
            summary: "release.json could not be read".into(),
        }
        .into());
    };
    // Where the release goes is what intake recorded: the manifest's list made the chain's
    // first environments (the whole chain when the manifest lists none).
    check_goes_to(&record.release_id, &recorded_manifest(record)?, environment)?;
    let mut templates = Vec::with_capacity(manifest.templates.len());
    for template in &manifest.templates {
        let Some(file) = inspection
            .templates
            .iter()
            .find(|t| t.path == template.path)
        else {
            return Err(ArtifactError::Problems {
                count: 1,
                summary: format!("template {} could not be read", template.path),
            }
            .into());
        };
        templates.push((template.clone(), file.body.clone()));
    }
    Ok(VerifiedRelease {
        manifest,
        templates,
    })
}

#[cfg(test)]
mod tests;
