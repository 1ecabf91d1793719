//! The promote action: a CodePipeline Lambda-invoke action that copies a release's images by
//! digest from one environment's ECR registry to the next one's, exactly as tested there.
//!
//! Each invocation reads the release intake recorded (it must be accepted, and go to the
//! target environment) and its manifest's images (repository, tag, digest). It gets credentials
//! for each side (the role the parameters name, or the function's own account for the source),
//! a registry client for each from `ecr:GetAuthorizationToken` (the host from the token's proxy
//! endpoint, mapped by `SHIPGATE_REGISTRY_ENDPOINTS` where configured), and for each image
//! makes sure the target repository exists (created with the source repository's tag
//! mutability, scan-on-push and encryption type when missing), then copies the image with
//! [`shipgate::registry::copy_image`]: blobs the target has are skipped, the others streamed,
//! manifests pushed by digest (children first), the tag last, the result read back.
//!
//! A promotion that would outlast one invocation answers with a continuation token instead:
//! after `SHIPGATE_PROMOTE_BUDGET_SECONDS` no new blob starts, the blobs in flight finish, what
//! was done is stored, and the next invocation resumes (finding the finished blobs in place).
//! Temporary failures are retried the same way, up to `SHIPGATE_PROMOTE_TIMEOUT_SECONDS`. The
//! result (per image: digest, blobs copied and skipped, bytes, seconds) is stored with the
//! release (`PROMOTION#<environment>`) and given to later actions as output variables.

mod config;
mod error;
mod parameters;
mod report;

pub use config::PromoteConfig;
pub use error::PromoteError;
pub use parameters::{ActionParameters, Side, SideParameters, Target};
pub use report::{mib, output_variables, promoted_image, summary_line};

use std::collections::HashMap;
use std::time::Instant;

use aws_config::SdkConfig;
use shipgate::aws::sts::Sessions;
use shipgate::error::AwsError;
use shipgate::http_client::HttpClientOnFirstUse;
use shipgate::job::release::{
    ReleaseError, accepted_release, check_accepted, check_goes_to, recorded_manifest,
};
use shipgate::job::{ActionError, Call, JobAction, ParameterError, RetryLimit, Scope, Verdict};
use shipgate::metrics::{MetricName, StageMetrics};
use shipgate::registry::{
    CopyOptions, CopyProgress, CopyRequest, CopyState, Digest, Registry, RegistryError,
    RepositorySettings, TargetRepository, copy_image, describe_repository, ecr_registry,
    ensure_repository,
};
use shipgate::release::Manifest;
use shipgate::store::{PromotedImage, Promotion, PromotionState, ReleaseRecord, Store};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{info, warn};

/// The clients the action uses, built once per process. The environment accounts' clients are
/// built per invocation, from the roles its parameters name.
#[derive(Debug, Clone)]
pub struct PromoteFunction {
    pub config: PromoteConfig,
    /// The environment accounts' roles, assumed from the function's own (tooling) account,
    /// which is the source side when `from` names no role.
    pub sessions: Sessions,
    pub store: Store,
    /// One HTTP client for every registry, built by the first promotion.
    pub http: HttpClientOnFirstUse,
}

/// One side of a promotion, ready to use.
struct Endpoint {
    environment: String,
    ecr: aws_sdk_ecr::Client,
    registry: Registry,
}

/// What to do with one image of the release, given what earlier invocations of the job did.
enum ImagePlan<'a> {
    /// Copied completely by an earlier invocation: reported as it was.
    Done(&'a PromotedImage),
    /// To copy, carrying what an earlier invocation copied of it (its blobs now look "already
    /// there", and still count as this promotion's).
    Copy { carried: Option<&'a PromotedImage> },
}

/// Decides, per image, whether an earlier invocation of this job finished it (pure).
fn plan_image<'a>(earlier: &'a [PromotedImage], name: &str, digest: &Digest) -> ImagePlan<'a> {
    let same = |p: &&PromotedImage| p.name == name && p.digest == *digest;
    match earlier.iter().filter(same).find(|p| p.complete) {
        Some(done) => ImagePlan::Done(done),
        None => ImagePlan::Copy {
            carried: earlier.iter().filter(same).find(|p| !p.complete),
        },
    }
}

shipgate::function!(PromoteFunction, PromoteConfig);

impl JobAction for PromoteFunction {
    const NAME: &'static str = "promote";
    const PARAMETERS: &'static str = "releaseId, executionId, from {environment, roleArn?} and \
                                      to {environment, roleArn}";
    type Parameters = ActionParameters;
    type Target = Target;
    /// The images done so far are in the promotion item: nothing to carry.
    type State = ();
    type Error = PromoteError;

    fn target(&self, parameters: ActionParameters) -> Result<Target, ParameterError> {
        parameters.target()
    }

    fn scope(target: &Target) -> Scope<'_> {
        Scope {
            release_id: &target.release_id,
            execution_id: &target.execution_id,
            environment: &target.to.environment,
        }
    }

    fn retry_limit(&self) -> RetryLimit {
        self.config.timeout
    }

    async fn work(&self, call: Call<'_, Target, ()>) -> Result<Verdict<()>, PromoteError> {
        let started = Instant::now();
        let verdict = self.promote(&call, started).await?;
        if matches!(verdict, Verdict::Continue(())) {
            info!(
                invocation = call.invocation,
                outcome = "continue",
                "budget spent: the promotion continues in the next invocation"
            );
        }
        Ok(verdict)
    }
}

impl PromoteFunction {
    /// Builds the clients from one SDK configuration.
    pub fn new(config: PromoteConfig, sdk: &SdkConfig) -> Self {
        Self {
            store: Store::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone()),
            http: HttpClientOnFirstUse::with_defaults(),
            sessions: Sessions::new(sdk, "promote"),
            config,
        }
    }

    /// Promotes every image of the release, or as many as the budget allows.
    async fn promote(
        &self,
        call: &Call<'_, Target, ()>,
        started: Instant,
    ) -> Result<Verdict<()>, PromoteError> {
        let (job, target) = (call.job, call.target);
        let continuing = !call.is_first();
        let invocations = call.invocation;
        let record = accepted_release(
            &self.store,
            &target.release_id,
            target.application.as_deref(),
        )
        .await?;
        let manifest = release_manifest(&record, &target.to.environment)?;
        // What earlier invocations of this same job did (a continuation); anything else is a
        // new promotion, whatever an earlier job left.
        let previous = if continuing {
            self.store
                .get_promotion(&target.release_id, &target.to.environment)
                .await?
                .filter(|p| p.job_id == job.id && p.state == PromotionState::InProgress)
        } else {
            None
        };

        let from = self.endpoint(&target.from, &target.release_id).await?;
        let to = self.endpoint(&target.to, &target.release_id).await?;
        let now = rfc3339_now();
        let mut promotion = Promotion {
            release_id: target.release_id.clone(),
            execution_id: target.execution_id.clone(),
            job_id: job.id.clone(),
            from_environment: from.environment.clone(),
            from_registry: from.registry.host().to_owned(),
            to_environment: to.environment.clone(),
            to_registry: to.registry.host().to_owned(),
            state: PromotionState::InProgress,
            images: Vec::with_capacity(manifest.images.len()),
            invocations,
            started_at: previous
                .as_ref()
                .map_or_else(|| now.clone(), |p| p.started_at.clone()),
            updated_at: now,
            failure: None,
        };
        let earlier: &[PromotedImage] = previous.as_ref().map_or(&[], |p| &p.images);

        let deadline = started + self.config.budget;
        let mut repositories: HashMap<String, TargetRepository> = HashMap::new();
        let mut progressed = false;
        for image in &manifest.images {
            let digest: Digest =
                image
                    .digest
                    .parse()
                    .map_err(|source| PromoteError::InvalidDigest {
                        image: image.name.clone(),
                        digest: image.digest.clone(),
                        source,
                    })?;
            let carried = match plan_image(earlier, &image.name, &digest) {
                ImagePlan::Done(done) => {
                    promotion.images.push(done.clone());
                    continue;
                }
                ImagePlan::Copy { carried } => carried,
            };

            let repository = match repositories.get(&image.repository) {
                Some(r) => r.clone(),
                None => {
                    let r = self.target_repository(&from, &to, &image.repository).await;
                    let r = match r {
                        Ok(r) => r,
                        Err(e) => return Err(self.record_failure(promotion, e).await),
                    };
                    repositories.insert(image.repository.clone(), r.clone());
                    r
                }
            };
            let request = CopyRequest {
                source: &from.registry,
                source_repo: &image.repository,
                target: &to.registry,
                target_repo: &image.repository,
                digest: &digest,
                tag: Some(&image.tag),
                immutable_tags: repository.settings.immutable_tags(),
            };
            let options = CopyOptions {
                concurrency: self.config.concurrency,
                upload: self.config.upload,
                deadline: Some(deadline),
                must_progress: !progressed,
                ..CopyOptions::default()
            };
            let copied = copy_image(&request, &options, &CopyProgress::default()).await;
            let report = match copied {
                Ok(report) => report,
                Err(source) => {
                    let e = PromoteError::Copy {
                        image: image.name.clone(),
                        from: from.environment.clone(),
                        to: to.environment.clone(),
                        source: Box::new(source),
                    };
                    return Err(self.record_failure(promotion, e).await);
                }
            };
            progressed |= report.blobs_copied > 0;
            let reference = to.registry.image_reference(&image.repository, &digest);
            promotion.images.push(promoted_image(
                image,
                &digest,
                &repository,
                reference,
                &report,
                carried,
            ));
            if report.state == CopyState::Paused {
                promotion.updated_at = rfc3339_now();
                self.store.put_promotion(&promotion).await?;
                return Ok(Verdict::Continue(()));
            }
            info!(
                image = %image.name,
                repository = %image.repository,
                tag = %image.tag,
                digest = %digest,
                blobs_copied = report.blobs_copied,
                blobs_skipped = report.blobs_skipped,
                bytes_copied = report.bytes_copied,
                seconds = report.seconds,
                "image promoted"
            );
        }

        promotion.state = PromotionState::Succeeded;
        promotion.updated_at = rfc3339_now();
        self.store.put_promotion(&promotion).await?;
        let summary = summary_line(
            &from.environment,
            &to.environment,
            to.registry.host(),
            &promotion.images,
        );
        info!(images = promotion.images.len(), invocations, outcome = "done", summary = %summary, "images promoted");
        let bytes: u64 = promotion.images.iter().map(|i| i.bytes_copied).sum();
        let seconds: f64 = promotion.images.iter().map(|i| i.seconds).sum();
        StageMetrics::new(&to.environment, &target.release_id, &target.execution_id)
            .event(MetricName::PromotionBytes, bytes as f64)
            .and(MetricName::PromotionSeconds, seconds)
            .property("from", from.environment.as_str())
            .property("images", promotion.images.len())
            .emit();
        Ok(Verdict::Done {
            output_variables: output_variables(to.registry.host(), &promotion.images),
            summary,
        })
    }

    /// Credentials, ECR client and registry client for one side.
    async fn endpoint(
        &self,
        side: &parameters::Side,
        release_id: &str,
    ) -> Result<Endpoint, PromoteError> {
        let sdk = match &side.role_arn {
            Some(role_arn) => {
                self.sessions
                    .config(role_arn, release_id)
                    .await
                    .map_err(|source| PromoteError::AssumeRole {
                        environment: side.environment.clone(),
                        source,
                    })?
            }
            None => self.sessions.base().clone(),
        };
        let ecr = aws_sdk_ecr::Client::new(&sdk);
        let registry = match self.http.get() {
            Ok(http) => ecr_registry(&ecr, http, &self.config.registry_endpoints).await,
            Err(e) => Err(RegistryError::Transport(e)),
        }
        .map_err(|source| PromoteError::Registry {
            environment: side.environment.clone(),
            source: Box::new(source),
        })?;
        info!(env = %side.environment, account = side.account_id.as_deref().unwrap_or("own"), registry = registry.host(), "registry ready");
        Ok(Endpoint {
            environment: side.environment.clone(),
            ecr,
            registry,
        })
    }

    /// The target repository as it is, or created with the source repository's settings.
    async fn target_repository(
        &self,
        from: &Endpoint,
        to: &Endpoint,
        name: &str,
    ) -> Result<TargetRepository, PromoteError> {
        let ecr_error = |environment: &str| {
            let environment = environment.to_owned();
            move |source: AwsError| PromoteError::Repository {
                environment,
                repository: name.to_owned(),
                source: Box::new(source),
            }
        };
        if let Some(settings) = describe_repository(&to.ecr, name)
            .await
            .map_err(ecr_error(&to.environment))?
        {
            return Ok(TargetRepository {
                name: name.to_owned(),
                settings,
                created: false,
            });
        }
        let template = match describe_repository(&from.ecr, name)
            .await
            .map_err(ecr_error(&from.environment))?
        {
            Some(settings) => settings,
            None => {
                // In ECR an image cannot exist outside a repository; a registry that is not
                // ECR (or an ECR stand-in without the repository) has no settings to copy.
                warn!(repository = name, env = %from.environment, "the source repository is unknown to ECR: the target gets ECR's defaults");
                RepositorySettings::ecr_defaults()
            }
        };
        let repository = ensure_repository(&to.ecr, name, &template)
            .await
            .map_err(ecr_error(&to.environment))?;
        info!(
            repository = name,
            env = %to.environment,
            created = repository.created,
            tag_mutability = %repository.settings.tag_mutability,
            scan_on_push = repository.settings.scan_on_push,
            encryption = %repository.settings.encryption,
            "target repository ready"
        );
        Ok(repository)
    }

    /// Stores the promotion as failed (or in progress, when the failure is temporary and the
    /// action will try again), best effort: the job's answer carries the error either way.
    async fn record_failure(&self, mut promotion: Promotion, e: PromoteError) -> PromoteError {
        promotion.state = if e.is_retryable() {
            PromotionState::InProgress
        } else {
            PromotionState::Failed
        };
        promotion.failure = Some(e.to_string());
        promotion.updated_at = rfc3339_now();
        if let Err(store_error) = self.store.put_promotion(&promotion).await {
            warn!(error = %store_error, "the failed promotion could not be recorded");
        }
        e
    }
}

/// The manifest intake recorded for an accepted release that goes to `environment`.
fn release_manifest(record: &ReleaseRecord, environment: &str) -> Result<Manifest, ReleaseError> {
    check_accepted(record)?;
    let manifest = recorded_manifest(record)?;
    check_goes_to(&record.release_id, &manifest, environment)?;
    Ok(manifest)
}

fn rfc3339_now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shipgate::store::ReleaseState;

    use super::*;

    fn record(state: ReleaseState, manifest: Option<serde_json::Value>) -> ReleaseRecord {
        let mut record = shipgate::testing::received_release("rel-1", "artifacts");
        record.state = state;
        record.manifest = manifest;
        record
    }

    fn manifest(environments: &[&str]) -> serde_json::Value {
        json!({
            "schema_version": "shipgate.release/v1",
            "application": "orders",
            "version": "1.4.2",
            "message": "refunds",
            "integrator": {"name": "Acme", "email": "release@acme.example"},
            "environments": environments,
            "images": [{"name": "web", "repository": "orders/web", "tag": "1.4.2",
                        "digest": format!("sha256:{}", "a".repeat(64))}],
            "templates": []
        })
    }

    #[test]
    fn only_an_accepted_release_that_goes_there_is_promoted() {
        let m = release_manifest(
            &record(ReleaseState::Started, Some(manifest(&["int", "stg"]))),
            "stg",
        )
        .unwrap();
        assert_eq!(m.images[0].repository, "orders/web");

        let err = release_manifest(
            &record(ReleaseState::Started, Some(manifest(&["int"]))),
            "stg",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "release rel-1 does not go to stg: its manifest lists int"
        );
        for state in [ReleaseState::Rejected, ReleaseState::Validating] {
            assert_eq!(
                release_manifest(&record(state, Some(manifest(&["stg"]))), "stg")
                    .unwrap_err()
                    .error_type(),
                "ReleaseNotAccepted"
            );
        }
        assert_eq!(
            release_manifest(&record(ReleaseState::Accepted, None), "stg")
                .unwrap_err()
                .error_type(),
            "ReleaseNotValidated"
        );
        assert_eq!(
            release_manifest(
                &record(ReleaseState::Accepted, Some(json!({"images": 3}))),
                "stg"
            )
            .unwrap_err()
            .error_type(),
            "ReleaseNotValidated"
        );
    }
}
