//! Intake: the S3 `ObjectCreated` handler that turns a release drop into a pipeline execution.
//!
//! For each record of the event it checks that the object is a drop it owns (bucket, `incoming/`
//! prefix, the object version still exists), claims the release in DynamoDB (the same object
//! version is the same release, however many times S3 delivers the event), validates the zip
//! by ranged reads and the images against the source registry, then either starts the pipeline
//! execution (idempotent by the release id) or moves the drop aside with a report and emails the
//! integrator every problem found.

mod config;
mod email;

pub use config::IntakeConfig;

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::event::s3::{S3Event, S3EventRecord};
use serde::Serialize;
use sha2::{Digest, Sha256};
use shipgate::application::directory::{Directory, DirectoryError};
use shipgate::application::{Application, parameter_name};
use shipgate::aws::codepipeline::{ExecutionRequest, start_execution};
use shipgate::aws::s3::{ObjectVersion, S3RangeSource, head_object, move_object, put_json};
use shipgate::aws::ses::send_email;
use shipgate::error::AwsError;
use shipgate::http_client::HttpClientOnFirstUse;
use shipgate::metrics::{MetricEvent, MetricName};
use shipgate::registry::{RegistryError, ecr_registry};
use shipgate::release::{Inspection, Problem, ProblemCode, inspect_release};
use shipgate::store::{
    Claim, LatestUpload, ReleaseRecord, ReleaseState, Store, StoreError, VersionClaim,
    VersionRecord,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{Instrument, info, info_span, warn};

/// The clients intake uses, built once per process.
#[derive(Debug, Clone)]
pub struct Intake {
    pub config: IntakeConfig,
    pub s3: aws_sdk_s3::Client,
    pub store: Store,
    pub codepipeline: aws_sdk_codepipeline::Client,
    pub ses: aws_sdk_sesv2::Client,
    pub ecr: aws_sdk_ecr::Client,
    /// The applications this shipgate serves: a drop goes to its application's pipeline.
    pub applications: Arc<Directory>,
    /// For the source registry; built by the first drop with images.
    pub http: HttpClientOnFirstUse,
}

/// Why an invocation failed. Every variant is worth a retry by Lambda's asynchronous invocation:
/// bad input is never an error here, it is a rejected (or ignored) drop.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the event is not an S3 event: {0}")]
    MalformedEvent(#[source] serde_json::Error),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the drop could not be read: {0}")]
    Read(#[source] shipgate::release::SourceError),
    #[error("the source registry could not be asked about {image}: {source}")]
    Registry {
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("the source registry did not answer about {image} within {seconds} s")]
    RegistryTimeout { image: String, seconds: u64 },
    #[error("validating the drop took more than {seconds} s")]
    TooSlow { seconds: u64 },
    #[error("application {application:?} could not be looked up: {source}")]
    Application {
        application: String,
        #[source]
        source: Box<DirectoryError>,
    },
    #[error(
        "release {release_id} is being handled by another delivery (lease until {lease_expires_at}); retry later"
    )]
    InProgressElsewhere {
        release_id: String,
        lease_expires_at: i64,
    },
    #[error("{failed} of {total} records failed; first: {first}")]
    Partial {
        failed: usize,
        total: usize,
        first: Box<IntakeError>,
    },
}

impl IntakeError {
    /// A stable name for the runtime's error report and for metrics.
    pub fn error_type(&self) -> &'static str {
        match self {
            IntakeError::MalformedEvent(_) => "MalformedEvent",
            IntakeError::Aws(_) => "AwsError",
            IntakeError::Store(_) => "StoreError",
            IntakeError::Read(_) => "ReadError",
            IntakeError::Registry { .. } => "RegistryError",
            IntakeError::RegistryTimeout { .. } => "RegistryTimeout",
            IntakeError::TooSlow { .. } => "ValidationTooSlow",
            IntakeError::Application { .. } => "ApplicationDirectory",
            IntakeError::InProgressElsewhere { .. } => "InProgressElsewhere",
            IntakeError::Partial { .. } => "PartialFailure",
        }
    }
}

/// What happened to one record of the event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecordOutcome {
    /// Valid: the pipeline execution is running.
    Started {
        release_id: String,
        execution_id: String,
    },
    /// Refused: moved aside with a report, integrator emailed (withdrawn drops: nobody; a drop
    /// whose version is gone has no `rejected_key`, there was nothing to move).
    Rejected {
        release_id: String,
        codes: Vec<String>,
        rejected_key: Option<String>,
        report_key: String,
    },
    /// Already handled by an earlier delivery of the same object version.
    Duplicate {
        release_id: String,
        state: ReleaseState,
    },
    /// Not a drop for intake (other bucket or prefix, not a creation, object gone).
    Ignored { key: String, reason: String },
}

/// The result of one invocation, one outcome per record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntakeReport {
    pub records: Vec<RecordOutcome>,
}

/// A drop named by an S3 event record.
#[derive(Debug, Clone, PartialEq)]
struct Drop {
    object: ObjectVersion,
    event_name: String,
    size: Option<i64>,
    uploaded_by: Option<String>,
    /// The event's `sequencer`: orders the events of one key.
    sequencer: Option<String>,
}

impl Intake {
    /// Builds the clients from one SDK configuration.
    pub fn new(config: IntakeConfig, sdk: &aws_config::SdkConfig) -> Self {
        let s3 = shipgate::aws::s3_client(sdk, config.s3_force_path_style);
        let store = Store::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone());
        Self {
            s3,
            store,
            codepipeline: aws_sdk_codepipeline::Client::new(sdk),
            ses: aws_sdk_sesv2::Client::new(sdk),
            ecr: aws_sdk_ecr::Client::new(sdk),
            applications: Arc::new(Directory::new(aws_sdk_ssm::Client::new(sdk))),
            http: HttpClientOnFirstUse::with_defaults(),
            config,
        }
    }

    /// Handles one S3 event. `request_id` identifies this invocation (the lease owner).
    pub async fn handle(
        &self,
        event: serde_json::Value,
        request_id: &str,
    ) -> Result<IntakeReport, IntakeError> {
        // S3's test event when a notification is configured, EventBridge's events and any
        // other shape without `Records` are not drops: acknowledged, so that Lambda neither
        // retries them nor parks them in the failed-event queue. An event with `Records` that do
        // not parse stays an error: it may be a drop, and the queue keeps it for an operator.
        if event.get("Records").is_none() {
            let reason = not_an_s3_notification(&event);
            info!(reason = %reason, outcome = "ignored", "event acknowledged");
            return Ok(IntakeReport {
                records: vec![RecordOutcome::Ignored {
                    key: String::new(),
                    reason,
                }],
            });
        }
        let event: S3Event = serde_json::from_value(event).map_err(IntakeError::MalformedEvent)?;
        let total = event.records.len();
        let mut records = Vec::with_capacity(total);
        let mut failures = Vec::new();
        for record in &event.records {
            match self.handle_record(record, request_id).await {
                Ok(outcome) => records.push(outcome),
                Err(e) => {
                    warn!(error = %e, error_type = e.error_type(), "record failed; the event will be retried");
                    failures.push(e);
                }
            }
        }
        match failures.len() {
            0 => Ok(IntakeReport { records }),
            1 if total == 1 => Err(failures.remove(0)),
            failed => Err(IntakeError::Partial {
                failed,
                total,
                first: Box::new(failures.remove(0)),
            }),
        }
    }

    async fn handle_record(
        &self,
        record: &S3EventRecord,
        request_id: &str,
    ) -> Result<RecordOutcome, IntakeError> {
        let drop = match parse_record(record) {
            Ok(drop) => drop,
            Err(reason) => {
                info!(reason, "record ignored");
                return Ok(RecordOutcome::Ignored {
                    key: String::new(),
                    reason,
                });
            }
        };
        if let Some(reason) = self.not_ours(&drop) {
            info!(bucket = %drop.object.bucket, key = %drop.object.key, reason, "drop ignored");
            return Ok(RecordOutcome::Ignored {
                key: drop.object.key,
                reason,
            });
        }
        let release_id = release_id(&drop.object);
        let span = info_span!("release", release_id = %release_id, key = %drop.object.key);
        self.handle_drop(drop, release_id, request_id)
            .instrument(span)
            .await
    }

    fn not_ours(&self, drop: &Drop) -> Option<String> {
        if !drop.event_name.starts_with("ObjectCreated:") {
            return Some(format!(
                "event {} is not an object creation",
                drop.event_name
            ));
        }
        if drop.object.bucket != self.config.bucket {
            return Some(format!(
                "bucket {} is not the artifact bucket {}",
                drop.object.bucket, self.config.bucket
            ));
        }
        if !drop.object.key.starts_with(&self.config.incoming_prefix) {
            return Some(format!(
                "key is outside the drop prefix {}",
                self.config.incoming_prefix
            ));
        }
        if drop.object.key.ends_with('/') {
            return Some("key is a folder marker".into());
        }
        None
    }

    async fn handle_drop(
        &self,
        drop: Drop,
        release_id: String,
        request_id: &str,
    ) -> Result<RecordOutcome, IntakeError> {
        // The event can be late: the version may have been deleted since. S3's answer, not the
        // event's, is what counts (size included).
        let Some(facts) = head_object(&self.s3, &drop.object).await? else {
            return self.gone(drop, release_id, request_id).await;
        };
        let object = ObjectVersion {
            version_id: drop.object.version_id.clone().or(facts.version_id.clone()),
            ..drop.object.clone()
        };
        if let Some(size) = drop.size
            && size as u64 != facts.size
        {
            warn!(
                event_size = size,
                object_size = facts.size,
                "event size differs from the object's"
            );
        }

        let now = OffsetDateTime::now_utc();
        let stamp = now.format(&Rfc3339).unwrap_or_default();
        let mut record = ReleaseRecord::received(release_id.clone(), object.clone(), stamp);
        record.size = facts.size;
        record.etag = facts.etag.clone();
        record.uploaded_by = drop.uploaded_by.clone();
        record.lease_owner = Some(request_id.to_owned());
        record.lease_expires_at = Some(now.unix_timestamp() + self.config.lease_seconds);
        let mut record = match self
            .store
            .claim_release(&record, now.unix_timestamp())
            .await?
        {
            Claim::Owned(record) => record,
            Claim::Existing(existing) => return duplicate(existing),
        };
        info!(
            size = facts.size,
            attempt = record.attempts,
            "release claimed; validating"
        );

        // Deleted since it was uploaded (a delete marker is the key's current version, or the
        // version itself is gone): the integrator withdrew it.
        if object.version_id.is_some() && self.withdrawn(&object).await? {
            let problem = Problem {
                code: ProblemCode::Withdrawn,
                message: "the drop was deleted before shipgate handled it (a delete marker is \
                          its key's current version): nothing was started"
                    .into(),
                path: None,
            };
            info!(outcome = "withdrawn", "the drop was withdrawn");
            return self
                .set_aside(record, vec![problem], request_id, Aside::Withdrawn)
                .await;
        }
        let release_id = record.release_id.clone();
        let upload = |application: &str| LatestUpload {
            application: application.to_owned(),
            release_id: release_id.clone(),
            key: object.key.clone(),
            uploaded_at: facts.last_modified.unwrap_or_default(),
            sequencer: drop.sequencer.clone(),
        };

        let budget = std::time::Duration::from_secs(self.config.decision_seconds);
        let source = S3RangeSource::new(self.s3.clone(), object.clone(), facts.size);
        let validated = tokio::time::timeout(budget, self.validate(&source, &mut record)).await;
        let (inspection, problems, application) = match validated {
            Ok(Ok(validated)) => validated,
            Ok(Err(error)) => return self.undecided(record, error, request_id).await,
            Err(_) => {
                let error = IntakeError::TooSlow {
                    seconds: self.config.decision_seconds,
                };
                return self.undecided(record, error, request_id).await;
            }
        };
        if !problems.is_empty() {
            return self.reject(record, problems, request_id).await;
        }
        let upload = record.application.as_deref().map(upload);
        if let Some(upload) = &upload
            && let Some(newer) = self.store.latest_upload(&upload.application).await?
            && newer.release_id != upload.release_id
            && upload.is_before(&newer)
        {
            return self
                .reject(record, vec![overtaken(&newer)], request_id)
                .await;
        }
        if let Some(problem) = self.claim_version(&record, &inspection).await? {
            return self.reject(record, vec![problem], request_id).await;
        }
        if let Some(upload) = &upload
            && let Some(newer) = self.store.record_latest_upload(upload).await?
        {
            return self
                .reject(record, vec![overtaken(&newer)], request_id)
                .await;
        }
        let Some(application) = application else {
            // Validation gives a manifest, and so an application, whenever it finds no problem;
            // this is a guard.
            let problem = Problem {
                code: ProblemCode::ApplicationUnknown,
                message: "release.json could not be read, so the release names no application"
                    .into(),
                path: None,
            };
            return self.reject(record, vec![problem], request_id).await;
        };
        self.accept(record, &inspection, &application, request_id)
            .await
    }

    /// The event's object version is gone (deleted by version, or a failed upload's event): the
    /// drop is recorded as withdrawn, with its report, once; nothing starts and nobody is
    /// emailed (nothing was read, so nobody is known). A later delivery of the same event finds
    /// the record.
    async fn gone(
        &self,
        drop: Drop,
        release_id: String,
        request_id: &str,
    ) -> Result<RecordOutcome, IntakeError> {
        let now = OffsetDateTime::now_utc();
        let stamp = now.format(&Rfc3339).unwrap_or_default();
        let mut record = ReleaseRecord::received(release_id, drop.object.clone(), stamp);
        record.size = drop.size.map_or(0, |size| size as u64);
        record.uploaded_by = drop.uploaded_by.clone();
        record.lease_owner = Some(request_id.to_owned());
        record.lease_expires_at = Some(now.unix_timestamp() + self.config.lease_seconds);
        let record = match self
            .store
            .claim_release(&record, now.unix_timestamp())
            .await?
        {
            Claim::Owned(record) => record,
            Claim::Existing(existing) => return duplicate(existing),
        };
        let problem = Problem {
            code: ProblemCode::Withdrawn,
            message: "the uploaded object version no longer exists (deleted by its version, or \
                      the upload did not complete): nothing was started"
                .into(),
            path: None,
        };
        info!(
            outcome = "withdrawn",
            "the drop's object version no longer exists"
        );
        self.set_aside(record, vec![problem], request_id, Aside::Gone)
            .await
    }

    /// Whether the key's current version is a delete marker (or there is none): HeadObject of
    /// the key without a version answers 404 then.
    async fn withdrawn(&self, object: &ObjectVersion) -> Result<bool, IntakeError> {
        let current = ObjectVersion {
            version_id: None,
            ..object.clone()
        };
        Ok(head_object(&self.s3, &current).await?.is_none())
    }

    /// Reads and validates the drop, looks its application up and asks the registry about its
    /// images; what the manifest says validly goes into `record` (who hears of a rejection) as
    /// soon as it is known. The manifest's `environments` become where the release goes in its
    /// application's chain. `Err` is a failure outside the drop (S3, the registry, the
    /// application's declaration), worth another delivery.
    async fn validate(
        &self,
        source: &S3RangeSource,
        record: &mut ReleaseRecord,
    ) -> Result<(Inspection, Vec<Problem>, Option<Application>), IntakeError> {
        let mut inspection = inspect_release(source, &self.config.limits).await;
        let identity = &inspection.identity;
        record.application = identity.application.clone();
        record.version = identity.version.clone();
        record.message = inspection.manifest.as_ref().map(|m| m.message.clone());
        record.integrator_email = identity.integrator_email.clone();
        record.manifest_sha256 = inspection.manifest_sha256.clone();
        // A read that failed is S3's trouble, not the drop's: retry, never reject for it.
        if let Some(error) = inspection.read_error.take() {
            return Err(IntakeError::Read(error));
        }
        let mut problems = inspection.problems.clone();
        let mut application = None;
        if let Some(manifest) = inspection.manifest.as_mut() {
            match self.route(manifest).await? {
                Ok(found) => application = Some(found),
                Err(problem) => problems.push(problem),
            }
            problems.extend(self.check_images(manifest).await?);
        }
        Ok((inspection, problems, application))
    }

    /// The manifest's application, with the manifest's `environments` made the ones the release
    /// goes to in its chain; a problem when no such application is declared, or when the
    /// environments are not the chain's first ones.
    async fn route(
        &self,
        manifest: &mut shipgate::release::Manifest,
    ) -> Result<Result<Application, Problem>, IntakeError> {
        let name = manifest.application.clone();
        let found = self
            .applications
            .application(&name)
            .await
            .map_err(|source| IntakeError::Application {
                application: name.clone(),
                source: Box::new(source),
            })?;
        let Some(application) = found else {
            info!(application = %name, "no such application");
            return Ok(Err(Problem {
                code: ProblemCode::ApplicationUnknown,
                message: format!(
                    "application {name:?} is not one this shipgate serves (it has no \
                     declaration {}): check `application`; a new application is onboarded by \
                     the platform team before its first release",
                    parameter_name(&name)
                ),
                path: Some("application".into()),
            }));
        };
        match application.route(&manifest.environments) {
            Ok(environments) => {
                manifest.environments = environments;
                Ok(Ok(application))
            }
            Err(mismatch) => Ok(Err(Problem {
                code: ProblemCode::EnvironmentsNotInChain,
                message: mismatch.message,
                path: Some("environments".into()),
            })),
        }
    }

    /// A delivery that could not decide: another delivery will, unless this is the last one
    /// Lambda makes ([`IntakeConfig::attempts`]); then the drop is rejected saying why and that
    /// dropping it again is the fix, so that no drop waits in `incoming/` with nobody told.
    async fn undecided(
        &self,
        record: ReleaseRecord,
        error: IntakeError,
        owner: &str,
    ) -> Result<RecordOutcome, IntakeError> {
        if record.attempts < self.config.attempts {
            warn!(attempt = record.attempts, attempts = self.config.attempts, error = %error, "not decided; another delivery will try");
            return Err(error);
        }
        let tries = format!(
            "{} deliver{}",
            record.attempts,
            if record.attempts == 1 { "y" } else { "ies" }
        );
        let code = match &error {
            IntakeError::Registry { .. } | IntakeError::RegistryTimeout { .. } => {
                ProblemCode::RegistryUnavailable
            }
            IntakeError::Application { .. } => ProblemCode::ApplicationUnavailable,
            _ => ProblemCode::ReadFailed,
        };
        let problem = Problem {
            code,
            message: format!(
                "the release could not be validated on any of {tries} ({error}): this is not a \
                 problem with the drop itself; nothing was deployed. Drop the same release again \
                 once the cause is gone"
            ),
            path: None,
        };
        warn!(error = %error, attempts = record.attempts, "not decided on the last delivery: rejected as retriable");
        self.reject(record, vec![problem], owner).await
    }

    /// A version is released once: the first accepted release of an application's version
    /// holds it. `None` when it is this release's; otherwise the problem that refuses the drop
    /// (the same contents again: nothing new starts; other contents: a conflict).
    async fn claim_version(
        &self,
        record: &ReleaseRecord,
        inspection: &Inspection,
    ) -> Result<Option<Problem>, IntakeError> {
        let (Some(application), Some(version), Some(content)) = (
            record.application.clone(),
            record.version.clone(),
            inspection.content_sha256(),
        ) else {
            return Ok(None);
        };
        let claim = VersionRecord {
            application,
            version,
            release_id: record.release_id.clone(),
            content_sha256: content,
            claimed_at: now_rfc3339(),
        };
        let what = format!("{} {}", claim.application, claim.version);
        Ok(match self.store.claim_version(&claim).await? {
            VersionClaim::Claimed => None,
            VersionClaim::Same(holder) => {
                info!(same_as = %holder.release_id, "identical to a release accepted before");
                Some(Problem {
                    code: ProblemCode::AlreadyReleased,
                    message: format!(
                        "{what} was already accepted as release {} on {}, with the same manifest, \
                         templates and checks: it is that release, and nothing new was started. \
                         To run it again, retry its pipeline stage; to change it, give the new \
                         contents a new version",
                        holder.release_id, holder.claimed_at
                    ),
                    path: Some("version".into()),
                })
            }
            VersionClaim::Conflict(holder) => Some(Problem {
                code: ProblemCode::VersionConflict,
                message: format!(
                    "{what} was already accepted as release {} on {} with other contents: a \
                     version is released once, so that approvers know what they approve; give \
                     this release a new version",
                    holder.release_id, holder.claimed_at
                ),
                path: Some("version".into()),
            }),
        })
    }

    /// Every image must be in the source registry at its digest. A registry that cannot be
    /// asked is an error to retry, never a reason to reject a good release.
    async fn check_images(
        &self,
        manifest: &shipgate::release::Manifest,
    ) -> Result<Vec<Problem>, IntakeError> {
        if manifest.images.is_empty() {
            return Ok(Vec::new());
        }
        let registry = match self.http.get() {
            Ok(http) => ecr_registry(&self.ecr, http, &self.config.registry_endpoints).await,
            Err(e) => Err(RegistryError::Transport(e)),
        }
        .map_err(|source| IntakeError::Registry {
            image: "the source registry".into(),
            source: Box::new(source),
        })?;
        let mut problems = Vec::new();
        for (i, image) in manifest.images.iter().enumerate() {
            let name = format!("{}@{}", image.repository, image.digest);
            let timeout = std::time::Duration::from_secs(self.config.registry_timeout_seconds);
            let answer = tokio::time::timeout(
                timeout,
                registry.head_manifest(&image.repository, &image.digest),
            )
            .await
            .map_err(|_| IntakeError::RegistryTimeout {
                image: name.clone(),
                seconds: self.config.registry_timeout_seconds,
            })?;
            match answer {
                Ok(Some(_)) => {}
                Ok(None) => problems.push(Problem {
                    code: ProblemCode::ImageNotFound,
                    message: format!(
                        "image {:?} ({name}) is not in the source registry {}: push it by digest before dropping the release",
                        image.name,
                        registry.host()
                    ),
                    path: Some(format!("images[{i}].digest")),
                }),
                Err(source) => {
                    return Err(IntakeError::Registry {
                        image: name,
                        source: Box::new(source),
                    });
                }
            }
        }
        Ok(problems)
    }

    async fn accept(
        &self,
        mut record: ReleaseRecord,
        inspection: &Inspection,
        application: &Application,
        owner: &str,
    ) -> Result<RecordOutcome, IntakeError> {
        let manifest = inspection
            .manifest
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .ok()
            .flatten();
        // The application's pipeline's source action reads one fixed key, the application's own;
        // this copy's version pins the release.
        let accepted = shipgate::aws::s3::copy_object(
            &self.s3,
            &record.source,
            &self.config.bucket,
            &application.source_key,
        )
        .await?;
        let Some(accepted_version) = accepted.version_id.clone() else {
            return Err(IntakeError::Aws(AwsError {
                service: "S3",
                operation: "CopyObject",
                code: None,
                message: format!(
                    "bucket {} returned no version id: versioning must be enabled",
                    self.config.bucket
                ),
                retryable: false,
                source: "bucket versioning is off".into(),
            }));
        };
        record.state = ReleaseState::Accepted;
        record.manifest = manifest;
        record.accepted_object = Some(accepted);
        record.pipeline = Some(application.pipeline.clone());
        record.updated_at = now_rfc3339();
        self.store.update_release(&record, owner).await?;
        info!(accepted_version = %accepted_version, "release accepted");

        let mut variables = BTreeMap::new();
        variables.insert("ReleaseId".to_owned(), record.release_id.clone());
        variables.insert(
            "Application".to_owned(),
            record.application.clone().unwrap_or_default(),
        );
        variables.insert(
            "Version".to_owned(),
            record.version.clone().unwrap_or_default(),
        );
        let execution_id = start_execution(
            &self.codepipeline,
            &ExecutionRequest {
                pipeline: application.pipeline.clone(),
                variables,
                source_action: self.config.source_action.clone(),
                source_version_id: accepted_version,
                // CodePipeline answers a repeated token with the same execution: a crash
                // between the start and the record below never starts a second one.
                client_request_token: record.release_id.clone(),
            },
        )
        .await?;
        record.state = ReleaseState::Started;
        record.execution_id = Some(execution_id.clone());
        record.updated_at = now_rfc3339();
        self.store.update_release(&record, owner).await?;
        info!(execution_id = %execution_id, pipeline = %application.pipeline, outcome = "started", "pipeline execution started");
        MetricEvent::count(MetricName::ReleasesAccepted)
            .application(record.application.as_deref())
            .with_total()
            .ids(&record.release_id, &execution_id)
            .emit();
        Ok(RecordOutcome::Started {
            release_id: record.release_id,
            execution_id,
        })
    }

    /// Moves the drop aside with its report and emails the integrator every problem.
    async fn reject(
        &self,
        record: ReleaseRecord,
        problems: Vec<Problem>,
        owner: &str,
    ) -> Result<RecordOutcome, IntakeError> {
        self.set_aside(record, problems, owner, Aside::Rejected)
            .await
    }

    /// Moves the drop aside with its report; emails the integrator when `notify`.
    async fn set_aside(
        &self,
        mut record: ReleaseRecord,
        problems: Vec<Problem>,
        owner: &str,
        aside: Aside,
    ) -> Result<RecordOutcome, IntakeError> {
        let base = format!("{}{}/", self.config.rejected_prefix, record.release_id);
        let file_name = record
            .source
            .key
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("release.zip");
        // Where the drop is kept; none when its version is gone (nothing to keep).
        let rejected_key = (aside != Aside::Gone).then(|| format!("{base}{file_name}"));
        let report_key = format!("{base}report.json");
        let report = serde_json::json!({
            "schema": "shipgate.rejection-report/v1",
            "release_id": record.release_id,
            "object": {
                "bucket": record.source.bucket,
                "key": record.source.key,
                "version_id": record.source.version_id,
                "size": record.size,
                "etag": record.etag,
            },
            "received_at": record.received_at,
            "rejected_key": rejected_key,
            "problems": problems,
            "limits": self.config.limits,
        });
        put_json(&self.s3, &self.config.bucket, &report_key, &report).await?;
        if let Some(rejected_key) = &rejected_key {
            move_object(&self.s3, &record.source, &self.config.bucket, rejected_key).await?;
        }

        let to = record
            .integrator_email
            .clone()
            .or_else(|| self.config.fallback_email.clone());
        if aside != Aside::Rejected {
            info!("nobody to tell: the drop was withdrawn");
        } else if let (Some(to), Some(rejected_key)) = (to, &rejected_key) {
            let mail = email::rejection(&self.config, &record, &problems, rejected_key, &to);
            let id = send_email(&self.ses, &mail).await?;
            info!(to = %to, message_id = %id, "integrator emailed");
        } else {
            warn!(
                "no integrator address in the manifest and no fallback configured: nobody emailed"
            );
        }

        let codes: Vec<String> = problems
            .iter()
            .map(|p| p.code.as_str().to_owned())
            .collect();
        record.state = ReleaseState::Rejected;
        record.problems = serde_json::to_value(&problems).ok();
        record.rejected_key = rejected_key.clone();
        record.report_key = Some(report_key.clone());
        record.updated_at = now_rfc3339();
        self.store.update_release(&record, owner).await?;
        info!(problems = problems.len(), codes = ?codes, outcome = "rejected", "release rejected");
        MetricEvent::count(MetricName::ReleasesRejected)
            .application(record.application.as_deref())
            .with_total()
            .property("release_id", record.release_id.as_str())
            .property("problems", problems.len())
            .emit();
        Ok(RecordOutcome::Rejected {
            release_id: record.release_id,
            codes,
            rejected_key,
            report_key,
        })
    }
}

/// How a drop that does not start is set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aside {
    /// Refused for its problems: moved under `rejected/`, the integrator emailed.
    Rejected,
    /// Deleted by the integrator (a delete marker on its key): moved, nobody emailed.
    Withdrawn,
    /// Its version no longer exists: nothing to move, nobody emailed.
    Gone,
}

/// Why a drop uploaded before `newer` does not start.
fn overtaken(newer: &LatestUpload) -> Problem {
    Problem {
        code: ProblemCode::Overtaken,
        message: format!(
            "this drop was uploaded before release {} ({}), which already started: an older \
             upload never replaces a newer one, and nothing was started. To deploy this one \
             after all, upload it again",
            newer.release_id, newer.key
        ),
        path: None,
    }
}

fn duplicate(existing: ReleaseRecord) -> Result<RecordOutcome, IntakeError> {
    match existing.state {
        ReleaseState::Started | ReleaseState::Rejected => {
            info!(release_id = %existing.release_id, state = existing.state.as_str(), outcome = "duplicate", "already handled");
            Ok(RecordOutcome::Duplicate {
                release_id: existing.release_id,
                state: existing.state,
            })
        }
        // Someone holds a live lease: fail so that Lambda retries this delivery later. If that
        // holder crashed, the retry finds the lease expired and takes over.
        ReleaseState::Validating | ReleaseState::Accepted => {
            Err(IntakeError::InProgressElsewhere {
                release_id: existing.release_id,
                lease_expires_at: existing.lease_expires_at.unwrap_or_default(),
            })
        }
    }
}

/// What an event without `Records` is, for the log.
fn not_an_s3_notification(event: &serde_json::Value) -> String {
    let text = |key: &str| event.get(key).and_then(serde_json::Value::as_str);
    match (text("Event"), text("source"), text("detail-type")) {
        (Some("s3:TestEvent"), _, _) => {
            "S3's test event (sent when a notification is set up)".into()
        }
        (_, Some(source), Some(detail)) => {
            format!("an EventBridge event ({source}, {detail}): intake takes S3 notifications")
        }
        _ => "not an S3 notification (no Records)".into(),
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The release id of an object version: stable across deliveries of the same version.
pub fn release_id(object: &ObjectVersion) -> String {
    let mut h = Sha256::new();
    h.update(object.bucket.as_bytes());
    h.update([0]);
    h.update(object.key.as_bytes());
    h.update([0]);
    h.update(object.version_id.as_deref().unwrap_or("null").as_bytes());
    let digest = h.finalize();
    format!("rel-{}", &hex::encode(digest)[..20])
}

/// S3 event keys are URL-encoded, form style (`+` is a space).
pub fn decode_key(raw: &str) -> Result<String, String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| format!("key {raw:?} is not valid URL-encoded UTF-8"))
}

fn parse_record(record: &S3EventRecord) -> Result<Drop, String> {
    let event_name = record.event_name.clone().ok_or("record has no eventName")?;
    let bucket = record
        .s3
        .bucket
        .name
        .clone()
        .ok_or("record names no bucket")?;
    let raw_key = record.s3.object.key.clone().ok_or("record names no key")?;
    let key = decode_key(&raw_key)?;
    Ok(Drop {
        object: ObjectVersion {
            bucket,
            key,
            version_id: record
                .s3
                .object
                .version_id
                .clone()
                .filter(|v| !v.is_empty()),
        },
        event_name,
        size: record.s3.object.size,
        uploaded_by: record.principal_id.principal_id.clone(),
        sequencer: record.s3.object.sequencer.clone().filter(|s| !s.is_empty()),
    })
}

shipgate::event_function!(
    Intake,
    IntakeConfig,
    IntakeReport,
    IntakeError,
    |intake, event, request_id| intake.handle(event, request_id)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_like_s3_encodes_them() {
        assert_eq!(
            decode_key("incoming/my+release.zip").unwrap(),
            "incoming/my release.zip"
        );
        assert_eq!(
            decode_key("incoming%2Fa%2Bb.zip").unwrap(),
            "incoming/a+b.zip"
        );
        assert_eq!(
            decode_key("incoming/r%C3%A9l.zip").unwrap(),
            "incoming/rél.zip"
        );
        assert!(decode_key("incoming/%FF.zip").is_err());
    }

    #[test]
    fn the_release_id_is_the_object_version() {
        let a = ObjectVersion {
            bucket: "b".into(),
            key: "incoming/r.zip".into(),
            version_id: Some("1".into()),
        };
        let b = ObjectVersion {
            version_id: Some("2".into()),
            ..a.clone()
        };
        assert_eq!(release_id(&a), release_id(&a.clone()));
        assert_ne!(release_id(&a), release_id(&b));
        assert!(release_id(&a).starts_with("rel-"));
    }

    fn intake() -> Intake {
        Intake::new(
            IntakeConfig::for_tests(),
            &shipgate::testing::offline_sdk_config(),
        )
    }

    #[tokio::test]
    async fn what_is_not_an_s3_notification_is_acknowledged_not_failed() {
        // S3's test event (S3 User Guide, "Event message structure") and an S3 event as
        // EventBridge delivers it ("Using EventBridge": Object Created): no AWS call is made
        // (every call of this intake would fail at once).
        for (fixture, reason) in [
            (
                include_str!("../tests/fixtures/s3-test-event.json"),
                "test event",
            ),
            (
                include_str!("../tests/fixtures/eventbridge-s3-object-created.json"),
                "EventBridge event (aws.s3, Object Created)",
            ),
            (r#"{"hello": "world"}"#, "no Records"),
        ] {
            let report = intake()
                .handle(serde_json::from_str(fixture).unwrap(), "req")
                .await
                .unwrap();
            match &report.records[..] {
                [RecordOutcome::Ignored { reason: why, .. }] => {
                    assert!(why.contains(reason), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }
        // Records that do not parse may be a drop: an error, kept by the failed-event queue.
        let error = intake()
            .handle(serde_json::json!({"Records": [{"s3": 1}]}), "req")
            .await
            .unwrap_err();
        assert!(matches!(error, IntakeError::MalformedEvent(_)), "{error}");
    }

    #[test]
    fn aws_sample_s3_event_parses() {
        let event: S3Event = serde_json::from_str(include_str!("../tests/fixtures/s3-put.json"))
            .expect("AWS sample event");
        let drop = parse_record(&event.records[0]).unwrap();
        assert_eq!(drop.event_name, "ObjectCreated:Put");
        assert_eq!(drop.object.key, "Happy Face.jpg");
        assert_eq!(drop.object.version_id.as_deref(), Some("version"));
    }
}
