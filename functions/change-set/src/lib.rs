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
pub use parameters::{
    ActionParameters, ParameterError, Target, account_of_role, change_set_name, default_registry,
};
pub use progress::{
    Progress, StackChangeSet, StackProgress, Verdict, classify, decide, is_leftover,
    output_variables, summary_line,
};

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use shipgate::aws::cloudformation::{
    Capability, ChangeSetRequest, ChangeSetState, ChangeSetStatus, ChangeSetType, Creation,
    create_change_set_once, delete_change_set, describe_change_set, find_change_set, stack_exists,
};
use shipgate::aws::s3::{ObjectVersion, S3RangeSource, head_object};
use shipgate::changes::ChangeSummary;
use shipgate::error::AwsError;
use shipgate::job::{Answer, Job, Outcome};
use shipgate::release::{
    DeployTarget, Inspection, Manifest, SourceError, StackTemplate, inspect_release,
};
use shipgate::store::{ChangeSetOutcome, ReleaseRecord, ReleaseState, StackChanges, Store};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{Instrument, info, info_span, warn};

/// The clients the action uses, built once per process. The environment accounts' clients are
/// built per invocation, from the role its parameters name.
#[derive(Debug, Clone)]
pub struct ChangeSetFunction {
    pub config: ChangeSetConfig,
    /// The function's own SDK configuration (tooling account): the base for assuming roles.
    pub sdk: SdkConfig,
    /// The tooling account's S3, where the pipeline's artifacts are.
    pub s3: aws_sdk_s3::Client,
    pub store: Store,
    pub codepipeline: aws_sdk_codepipeline::Client,
}

/// A release artifact that is the release intake accepted, for this environment.
#[derive(Debug)]
struct VerifiedRelease {
    manifest: Manifest,
    /// Each template of the manifest with its body, in manifest order.
    templates: Vec<(StackTemplate, String)>,
}

impl ChangeSetFunction {
    /// Builds the clients from one SDK configuration.
    pub fn new(config: ChangeSetConfig, sdk: &SdkConfig) -> Self {
        Self {
            s3: shipgate::aws::s3_client(sdk, config.s3_force_path_style),
            store: Store::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone()),
            codepipeline: aws_sdk_codepipeline::Client::new(sdk),
            sdk: sdk.clone(),
            config,
        }
    }

    /// Handles one `CodePipeline.job` event and answers the job (success, continuation or
    /// failure). `Err` only when there is no job to answer or CodePipeline could not be told.
    pub async fn handle(&self, event: serde_json::Value) -> Result<Answer, ChangeSetError> {
        let job = Job::from_event(event).map_err(ChangeSetError::Event)?;
        let outcome = self.run(&job).await;
        shipgate::job::answer(&self.codepipeline, &job, Ok::<_, ChangeSetError>(outcome))
            .await
            .map_err(|e| ChangeSetError::Answer(Box::new(e)))
    }

    /// Does the job's work and decides its outcome; every failure becomes `Outcome::Failed`
    /// with a message for the operator.
    pub async fn run(&self, job: &Job) -> Outcome {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let target = match job
            .parameters::<ActionParameters>()
            .map_err(ChangeSetError::UserParameters)
            .and_then(|p| {
                p.target(self.sdk.region().map(|r| r.as_ref()))
                    .map_err(ChangeSetError::from)
            }) {
            Ok(target) => target,
            Err(e) => return failed(&e),
        };
        let progress = match job.continuation::<Progress>() {
            Ok(progress) => progress,
            Err(e) => return failed(&ChangeSetError::Continuation(e)),
        };
        let span = info_span!(
            "change_set",
            release_id = %target.release_id,
            execution_id = %target.execution_id,
            env = %target.environment,
            job_id = %job.id,
        );
        self.run_for(job, &target, progress, now)
            .instrument(span)
            .await
    }

    async fn run_for(
        &self,
        job: &Job,
        target: &Target,
        progress: Option<Progress>,
        now: i64,
    ) -> Outcome {
        let since = progress.map_or(now, |p| p.since);
        let polls = progress.map_or(0, |p| p.polls) + 1;
        let waited = now - since;
        let timeout = self.config.timeout_seconds;
        let next = Progress { since, polls };
        // Only the first invocation of a job starts an attempt: a continuation finds its own.
        let new_attempt = progress.is_none();
        let decided = match self.prepare(job, target, new_attempt).await {
            Ok(stacks) => {
                let verdict = decide(
                    &target.environment,
                    &target.account_id,
                    &target.change_set_name,
                    &stacks,
                    waited,
                    timeout,
                );
                match verdict {
                    Verdict::Settled => self.record(target, &stacks).await,
                    Verdict::Wait => {
                        info!(
                            polls,
                            waited,
                            outcome = "continue",
                            "change sets not ready yet"
                        );
                        Ok(Outcome::continue_with(&next))
                    }
                    Verdict::Fail { message } => {
                        warn!(polls, waited, outcome = "failed", reason = %message, "change sets failed");
                        Ok(Outcome::failed(message))
                    }
                }
            }
            Err(e) => Err(e),
        };
        let e = match decided {
            Ok(outcome) => return outcome,
            Err(e) => e,
        };
        if !e.is_retryable() {
            return failed(&e);
        }
        if !progress::out_of_time(waited, timeout) {
            warn!(polls, waited, error = %e, error_type = e.error_type(), outcome = "continue", "temporary failure; trying again on the next invocation");
            return Outcome::continue_with(&next);
        }
        let message = format!(
            "{}: gave up after {} (SHIPGATE_CHANGE_SET_TIMEOUT_SECONDS) of temporary failures; \
             the last: {e}",
            target.environment,
            progress::minutes(waited)
        );
        warn!(polls, waited, error_type = e.error_type(), outcome = "failed", reason = %message, "gave up");
        Outcome::failed(message)
    }

    /// Verifies the release, then makes sure every stack's change set exists and reads it.
    async fn prepare(
        &self,
        job: &Job,
        target: &Target,
        new_attempt: bool,
    ) -> Result<Vec<StackChangeSet>, ChangeSetError> {
        let record = self
            .store
            .get_release(&target.release_id)
            .await?
            .ok_or_else(|| ChangeSetError::ReleaseNotFound {
                release_id: target.release_id.clone(),
            })?;
        check_record(&record)?;
        let artifact = release_artifact(job)?;
        let inspection = self.inspect(&artifact).await?;
        let release = verify_release(&record, inspection, &target.environment)?;

        let cf = aws_sdk_cloudformation::Client::new(&self.assume(target).await?);
        let mut stacks = Vec::with_capacity(release.templates.len());
        for (template, body) in &release.templates {
            let stack = self
                .prepare_stack(&cf, target, &release.manifest, template, body, new_attempt)
                .await?;
            stacks.push(stack);
        }
        Ok(stacks)
    }

    async fn inspect(&self, artifact: &ObjectVersion) -> Result<Inspection, ChangeSetError> {
        let facts = head_object(&self.s3, artifact)
            .await
            .map_err(|source| ChangeSetError::ArtifactAws {
                bucket: artifact.bucket.clone(),
                key: artifact.key.clone(),
                source: Box::new(source),
            })?
            .ok_or_else(|| ChangeSetError::ArtifactMissing {
                bucket: artifact.bucket.clone(),
                key: artifact.key.clone(),
            })?;
        let source = S3RangeSource::new(self.s3.clone(), artifact.clone(), facts.size);
        let mut inspection = inspect_release(&source, &self.config.limits).await;
        if let Some(error) = inspection.read_error.take() {
            let (detail, retryable) = read_failure(&error);
            return Err(ChangeSetError::ArtifactRead {
                bucket: artifact.bucket.clone(),
                key: artifact.key.clone(),
                detail,
                retryable,
                source: error,
            });
        }
        Ok(inspection)
    }

    /// The environment account's SDK configuration. Credentials are fetched now, once, so that
    /// a refused `AssumeRole` is reported as such (lazily, it would surface as a transport
    /// failure of the first CloudFormation call).
    async fn assume(&self, target: &Target) -> Result<SdkConfig, ChangeSetError> {
        let assumed = shipgate::aws::assume_role(
            &self.sdk,
            &target.role_arn,
            &parameters::session_name(&target.release_id),
        )
        .await;
        let fail = |source: AwsError| ChangeSetError::AssumeRole {
            role_arn: target.role_arn.clone(),
            environment: target.environment.clone(),
            source: Box::new(source),
        };
        let provider = assumed.credentials_provider().ok_or_else(|| {
            fail(AwsError {
                service: "STS",
                operation: "AssumeRole",
                code: None,
                message: "no credentials provider was configured".into(),
                retryable: false,
                source: "no credentials provider".into(),
            })
        })?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| fail(error::assume_role_error(e)))?;
        info!(role_arn = %target.role_arn, account = %target.account_id, "role assumed");
        Ok(assumed
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build())
    }

    /// Makes sure the stack's change set exists and reads where it stands.
    async fn prepare_stack(
        &self,
        cf: &aws_sdk_cloudformation::Client,
        target: &Target,
        manifest: &Manifest,
        template: &StackTemplate,
        body: &str,
        new_attempt: bool,
    ) -> Result<StackChangeSet, ChangeSetError> {
        let stack_name = manifest.stack_name(&target.environment, template);
        let cfn = |source: AwsError| ChangeSetError::CloudFormation {
            environment: target.environment.clone(),
            stack: stack_name.clone(),
            role_arn: target.role_arn.clone(),
            source: Box::new(source),
        };
        let parameters = manifest.stack_parameters(
            template,
            &DeployTarget {
                environment: &target.environment,
                registry: &target.registry,
            },
        )?;
        // A stack left in REVIEW_IN_PROGRESS by an unexecuted CREATE does not exist yet: its
        // change set is a CREATE too.
        let exists = stack_exists(cf, &stack_name).await.map_err(cfn)?;
        let request = ChangeSetRequest {
            stack_name: stack_name.clone(),
            change_set_name: target.change_set_name.clone(),
            template_body: body.to_owned(),
            parameters,
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
                create_and_describe(cf, &request).await.map_err(cfn)?
            }
            Some(state) => state,
            None => create_and_describe(cf, &request).await.map_err(cfn)?,
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
    ) -> Result<Outcome, ChangeSetError> {
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
                    release_id: target.release_id.clone(),
                    environment: target.environment.clone(),
                    execution_id: target.execution_id.clone(),
                    template_path: stack.template_path.clone(),
                    stack_name: stack.stack_name.clone(),
                    account_id: target.account_id.clone(),
                    change_set_name: target.change_set_name.clone(),
                    change_set_id: stack.change_set_id.clone(),
                    creates_stack: stack.creates_stack,
                    outcome,
                    summary,
                    created_at: created_at.clone(),
                })
                .await?;
        }
        let summary = summary_line(&target.environment, stacks);
        info!(stacks = stacks.len(), outcome = "done", summary = %summary, "change sets ready");
        Ok(Outcome::Done {
            output_variables: output_variables(
                &target.environment,
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

fn failed(e: &ChangeSetError) -> Outcome {
    warn!(error_type = e.error_type(), outcome = "failed", reason = %e, "change-set action failed");
    Outcome::Failed {
        kind: e.failure_kind(),
        message: e.to_string(),
    }
}

/// "shipgate release rel-… (orders 1.4.2), pipeline execution …": what CloudFormation's console
/// shows next to the change set.
fn change_set_description(manifest: &Manifest, target: &Target) -> String {
    let text = format!(
        "shipgate release {} ({} {}), pipeline execution {}",
        target.release_id, manifest.application, manifest.version, target.execution_id
    );
    // CloudFormation's limit on a description.
    text.chars().take(1024).collect()
}

/// The release must be one intake accepted (its execution may start before intake records the
/// start, hence `Accepted` too).
fn check_record(record: &ReleaseRecord) -> Result<(), ChangeSetError> {
    match record.state {
        ReleaseState::Started | ReleaseState::Accepted => Ok(()),
        ReleaseState::Validating | ReleaseState::Rejected => {
            Err(ChangeSetError::ReleaseNotAccepted {
                release_id: record.release_id.clone(),
                state: record.state.as_str(),
            })
        }
    }
}

/// The job's one input artifact: the release.
fn release_artifact(job: &Job) -> Result<ObjectVersion, ChangeSetError> {
    let mut artifacts = job.input_artifacts.iter();
    match (artifacts.next(), artifacts.next()) {
        (Some((_, object)), None) => Ok(object.clone()),
        (None, _) => Err(ChangeSetError::NoInputArtifact),
        (Some(_), Some(_)) => Err(ChangeSetError::SeveralInputArtifacts(
            job.input_artifacts.keys().cloned().collect(),
        )),
    }
}

/// Checks that the artifact is the release intake validated and that it goes to `environment`.
fn verify_release(
    record: &ReleaseRecord,
    inspection: Inspection,
    environment: &str,
) -> Result<VerifiedRelease, ChangeSetError> {
    if !inspection.problems.is_empty() {
        let summary: Vec<String> = inspection
            .problems
            .iter()
            .take(3)
            .map(|p| format!("{}: {}", p.code.as_str(), p.message))
            .collect();
        return Err(ChangeSetError::ArtifactProblems {
            count: inspection.problems.len(),
            summary: summary.join("; "),
        });
    }
    let recorded = record
        .manifest_sha256
        .clone()
        .ok_or_else(|| ChangeSetError::NotValidated {
            release_id: record.release_id.clone(),
        })?;
    let found = inspection.manifest_sha256.clone().unwrap_or_default();
    if found != recorded {
        return Err(ChangeSetError::ManifestMismatch {
            release_id: record.release_id.clone(),
            found,
            recorded,
        });
    }
    let Some(manifest) = inspection.manifest else {
        // Validation gives a manifest whenever it finds no problem; this is a guard.
        return Err(ChangeSetError::ArtifactProblems {
            count: 1,
            summary: "release.json could not be read".into(),
        });
    };
    if !manifest.environments.iter().any(|e| e == environment) {
        return Err(ChangeSetError::NotForEnvironment {
            release_id: record.release_id.clone(),
            environment: environment.to_owned(),
            listed: manifest.environments.clone(),
        });
    }
    let mut templates = Vec::with_capacity(manifest.templates.len());
    for template in &manifest.templates {
        let Some(file) = inspection
            .templates
            .iter()
            .find(|t| t.path == template.path)
        else {
            return Err(ChangeSetError::ArtifactProblems {
                count: 1,
                summary: format!("template {} could not be read", template.path),
            });
        };
        templates.push((template.clone(), file.body.clone()));
    }
    Ok(VerifiedRelease {
        manifest,
        templates,
    })
}

/// What went wrong reading the artifact, and whether another try may help.
fn read_failure(error: &SourceError) -> (String, bool) {
    let aws = std::error::Error::source(error).and_then(|s| s.downcast_ref::<AwsError>());
    match aws {
        Some(e) => (e.to_string(), e.retryable),
        None => (
            error.to_string(),
            !matches!(error, SourceError::OutOfRange { .. }),
        ),
    }
}

#[cfg(test)]
mod tests;
