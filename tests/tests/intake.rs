//! Intake against the local stack: a drop lands under incoming/, and either starts exactly one
//! pipeline execution or is moved aside with a report and an email listing every problem.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use aws_sdk_codepipeline::types::PipelineExecution;
use serde_json::Value;
use shipgate::aws::s3::ObjectVersion;
use shipgate::config::Env;
use shipgate::store::{ReleaseRecord, ReleaseState, Store};
use shipgate_intake::{Intake, IntakeConfig, IntakeError, RecordOutcome, release_id};
use shipgate_local::stack::Stack;
use shipgate_tests::drops;
use shipgate_tests::shared_stack::SharedStack;
use shipgate_tests::story::Pipeline;
use shipgate_tests::support::{
    SentEmail, WAIT, artifact_bucket, pipeline_name, push_source_image, put, s3_put_event,
    sent_emails, store, wait_for, without_codepipeline,
};

/// One stack for every test here, S3 notifications delivered to its intake. Each test drops
/// under a prefix of its own; the tests that deliver events themselves run an intake of their
/// own on theirs, which the stack's intake leaves alone.
static STACK: SharedStack = SharedStack::new("intake", |_| {});

/// The shared stack as one test sees it.
struct World {
    stack: &'static Stack,
    store: Store,
    s3: aws_sdk_s3::Client,
    pipeline: Pipeline,
    bucket: String,
    /// The test's own folder (`<unique>/`) for its drops.
    folder: String,
    /// The test's own application (`orders-<unique>`): an application's uploads are ordered
    /// (the newest started wins), so tests running side by side must not share one.
    app: String,
}

impl World {
    async fn start() -> Result<Self> {
        let world = Self::on(STACK.get().await?)?;
        world.stack.declare_like_own(&world.app).await?;
        Ok(world)
    }

    /// What a test sees of `stack`: clients of its own, and a folder of its own.
    fn on(stack: &'static Stack) -> Result<Self> {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        Ok(Self {
            store: store(stack)?,
            s3: shipgate::aws::s3_client(&stack.sdk, true),
            pipeline: Pipeline::new(
                aws_sdk_codepipeline::Client::new(&stack.sdk),
                &pipeline_name(stack)?,
            ),
            bucket: artifact_bucket(stack)?,
            folder: format!("{}/", &unique[..12]),
            app: format!("orders-{}", &unique[..8]),
            stack,
        })
    }

    /// Where a drop named `name` lands for the stack's intake (S3 notifies it).
    fn incoming(&self, name: &str) -> String {
        format!("incoming/{}{name}", self.folder)
    }

    /// Intake as the template configures it, run by the test: its drops are `by-hand/<folder>`,
    /// where the stack's intake ignores them, so each event reaches intake only as the test
    /// delivers it.
    fn intake(&self) -> Result<Intake> {
        let env = self
            .stack
            .provisioned
            .env_by_function
            .get("IntakeFunction")
            .context("the template declares intake")?;
        let mut config = IntakeConfig::from_env(&Env::from_pairs(env.clone()))?;
        config.incoming_prefix = format!("by-hand/{}", self.folder);
        Ok(Intake::new(config, &self.stack.sdk))
    }

    /// Where a drop named `name` lands for the test's own intake.
    fn by_hand(&self, name: &str) -> String {
        format!("by-hand/{}{name}", self.folder)
    }

    /// Uploads `zip` as `key`; the S3 event for that object version.
    async fn drop(&self, key: &str, zip: Vec<u8>) -> Result<Value> {
        let size = zip.len() as u64;
        let (version, etag) = put(&self.s3, &self.bucket, key, zip).await?;
        Ok(s3_put_event(&self.bucket, key, &version, size, &etag))
    }

    /// The release of the object version `version` of `key`.
    fn release_id(&self, key: &str, version: &str) -> String {
        release_id(&ObjectVersion {
            bucket: self.bucket.clone(),
            key: key.into(),
            version_id: Some(version.into()),
        })
    }

    async fn release(&self, release_id: &str) -> Result<Option<ReleaseRecord>> {
        Ok(self.store.get_release(release_id).await?)
    }

    /// Waits until intake has settled the release of `key` at `version`.
    async fn settled(&self, key: &str, version: &str) -> Result<ReleaseRecord> {
        let id = self.release_id(key, version);
        wait_for(
            &format!("release {id} of {key} to settle"),
            WAIT,
            || async {
                Ok(self
                    .release(&id)
                    .await?
                    .filter(|r| matches!(r.state, ReleaseState::Started | ReleaseState::Rejected)))
            },
        )
        .await
    }

    /// The releases recorded for `key` (every version of it).
    async fn releases_of(&self, key: &str) -> Result<Vec<ReleaseRecord>> {
        Ok(self
            .store
            .list_releases(1000)
            .await?
            .into_iter()
            .filter(|r| r.source.bucket == self.bucket && r.source.key == key)
            .collect())
    }

    /// The pipeline executions intake started for any of `release_ids` (by their `ReleaseId`
    /// variable).
    async fn executions_of(&self, release_ids: &[String]) -> Result<Vec<PipelineExecution>> {
        let mut ours = Vec::new();
        for summary in self.pipeline.executions().await? {
            let execution = self
                .pipeline
                .execution(summary.pipeline_execution_id().unwrap_or_default())
                .await?;
            let release = execution
                .variables()
                .iter()
                .find(|v| v.name() == Some("ReleaseId"))
                .and_then(|v| v.resolved_value());
            if release.is_some_and(|r| release_ids.iter().any(|id| id == r)) {
                ours.push(execution);
            }
        }
        Ok(ours)
    }

    /// The emails about any of `release_ids` (rejections name the release).
    async fn emails_about(&self, release_ids: &[String]) -> Result<Vec<SentEmail>> {
        Ok(sent_emails(&self.stack.moto.endpoint())
            .await?
            .into_iter()
            .filter(|e| release_ids.iter().any(|id| e.body.contains(id.as_str())))
            .collect())
    }

    /// Delivers `event` as Lambda's asynchronous invocation does: a failed attempt is retried,
    /// twice at most, with the same request id. Lambda waits a minute or two before a retry,
    /// long enough for a delivery holding the release to be done with it; the test's retry
    /// waits for exactly that, the release no longer held, so what happens does not depend on
    /// how fast the machine is. What intake promises is one release and one execution under
    /// such at-least-once delivery.
    async fn deliver(
        &self,
        intake: &Intake,
        event: &Value,
        request_id: &str,
    ) -> Result<shipgate_intake::IntakeReport> {
        let mut last = None;
        for _ in 0..3 {
            match intake.handle(event.clone(), request_id).await {
                Ok(report) => return Ok(report),
                Err(IntakeError::InProgressElsewhere { release_id, .. }) => {
                    wait_for(
                        &format!("release {release_id} to be let go"),
                        WAIT,
                        || async {
                            Ok(self.release(&release_id).await?.filter(|r| {
                                !matches!(
                                    r.state,
                                    ReleaseState::Validating | ReleaseState::Accepted
                                )
                            }))
                        },
                    )
                    .await?;
                    last = Some(anyhow::anyhow!("release {release_id} was held"));
                }
                Err(e) => last = Some(e.into()),
            }
        }
        Err(last.context("three attempts were made")?)
    }
}

/// Pushes the sample image to the tooling account's (source) registry; returns its digest.
async fn push_sample_image(stack: &Stack, repo: &str) -> Result<String> {
    let image = push_source_image(stack, repo, "1.0.0", &[2048, 4096]).await?;
    Ok(image.digest().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_drop_starts_one_execution_visible_in_status() -> Result<()> {
    let world = World::start().await?;
    let digest = push_sample_image(world.stack, "orders/web").await?;
    let zip = drops::good_release(&world.app, "1.4.0", "orders/web", &digest);
    let key = world.incoming("orders 1.4.0+é.zip");
    let (version, _) = put(&world.s3, &world.bucket, &key, zip).await?;

    let release = world.settled(&key, &version).await?;
    assert_eq!(
        release.state,
        ReleaseState::Started,
        "problems: {:?}",
        release.problems
    );
    assert_eq!(release.application.as_deref(), Some(world.app.as_str()));
    assert_eq!(release.version.as_deref(), Some("1.4.0"));
    assert_eq!(release.source.key, key, "the URL-encoded key was decoded");
    let execution_id = release
        .execution_id
        .clone()
        .context("execution id recorded")?;

    let listed = world
        .executions_of(std::slice::from_ref(&release.release_id))
        .await?;
    assert_eq!(listed.len(), 1, "exactly one execution");
    assert_eq!(
        listed[0].pipeline_execution_id(),
        Some(execution_id.as_str())
    );

    // The execution carries the release as variables and the accepted copy's version as source
    // (listed once the source action has run: the execution starts without it).
    let execution = wait_for("the source revision of the execution", WAIT, || async {
        let execution = world.pipeline.execution(&execution_id).await?;
        Ok((!execution.artifact_revisions().is_empty()).then_some(execution))
    })
    .await?;
    let vars: Vec<(String, String)> = execution
        .variables()
        .iter()
        .map(|v| {
            (
                v.name().unwrap_or_default().to_owned(),
                v.resolved_value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        vars.contains(&("ReleaseId".into(), release.release_id.clone())),
        "{vars:?}"
    );
    let accepted = release.accepted_object.clone().context("accepted copy")?;
    let revisions: Vec<_> = execution
        .artifact_revisions()
        .iter()
        .filter_map(|r| r.revision_id())
        .collect();
    assert!(
        revisions.contains(&accepted.version_id.as_deref().unwrap_or_default()),
        "{revisions:?}"
    );

    // The status command lists it (among the other tests' releases), started, with its
    // execution.
    let mut env = Env::default();
    for (k, v) in &world.stack.provisioned.function_env {
        env.set(k, v);
    }
    let status = shipgate_local::status::collect(&world.stack.sdk, &env, 1000).await?;
    let line = status
        .lines()
        .find(|l| l.contains(&release.release_id))
        .with_context(|| format!("the release is not in the status: {status}"))?;
    assert!(
        line.contains("started") && line.contains(&execution_id),
        "{line}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_drop_is_rejected_with_its_problems_and_kept() -> Result<()> {
    let world = World::start().await?;
    let s3 = &world.s3;
    let bucket = &world.bucket;
    let cases = drops::bad_drops();
    assert!(
        cases.len() >= 25,
        "at least 25 distinct bad drops, got {}",
        cases.len()
    );

    let mut uploaded = Vec::new();
    for case in &cases {
        let key = world.incoming(&format!("{}.zip", case.name));
        let (version, _) = put(s3, bucket, &key, case.bytes.clone()).await?;
        uploaded.push((case, key, version));
    }
    let mut release_ids = Vec::new();
    for (case, key, version) in &uploaded {
        let release = world.settled(key, version).await?;
        release_ids.push(release.release_id.clone());
        assert_eq!(
            release.state,
            ReleaseState::Rejected,
            "{}: must be rejected",
            case.name
        );
        let codes: BTreeSet<String> = release
            .problems
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("code").and_then(Value::as_str).map(str::to_owned))
            .collect();
        for expected in &case.expected_codes {
            assert!(
                codes.contains(*expected),
                "{}: expected {expected} among {codes:?}",
                case.name
            );
        }
        // The original bytes are kept under rejected/, with the report beside them.
        let rejected_key = release.rejected_key.clone().context("rejected key")?;
        assert!(rejected_key.starts_with("rejected/"), "{rejected_key}");
        let kept = s3
            .get_object()
            .bucket(bucket)
            .key(&rejected_key)
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes();
        assert_eq!(
            kept.as_ref(),
            case.bytes.as_slice(),
            "{}: original bytes kept",
            case.name
        );
        let report_key = release.report_key.clone().context("report key")?;
        let report: Value = serde_json::from_slice(
            &s3.get_object()
                .bucket(bucket)
                .key(&report_key)
                .send()
                .await?
                .body
                .collect()
                .await?
                .into_bytes(),
        )?;
        assert_eq!(
            report["release_id"],
            Value::String(release.release_id.clone())
        );
        assert_eq!(
            report["problems"].as_array().map(Vec::len),
            release
                .problems
                .as_ref()
                .and_then(Value::as_array)
                .map(Vec::len)
        );
        assert!(
            report["limits"]["max_zip_bytes"].is_number(),
            "the limits in force are in the report"
        );
        // Nothing is left under incoming/.
        let head = s3.head_object().bucket(bucket).key(key).send().await;
        assert!(
            head.is_err(),
            "{}: the drop no longer sits under incoming/",
            case.name
        );
    }
    assert!(
        world.executions_of(&release_ids).await?.is_empty(),
        "no bad drop starts an execution"
    );

    // Every rejection was emailed, with every problem in it.
    let emails = world.emails_about(&release_ids).await?;
    assert_eq!(emails.len(), cases.len(), "one email per rejected drop");
    assert!(emails.iter().all(|e| e.subject.contains("rejected")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_three_times_in_a_row_is_one_release_and_one_execution() -> Result<()> {
    let world = World::start().await?;
    let digest = push_sample_image(world.stack, "orders/web").await?;
    let key = world.by_hand("orders-2.0.0.zip");
    let zip = drops::good_release(&world.app, "2.0.0", "orders/web", &digest);
    let event = world.drop(&key, zip).await?;

    let intake = world.intake()?;
    let first = world.deliver(&intake, &event, "req-1").await?;
    let second = world.deliver(&intake, &event, "req-2").await?;
    let third = world.deliver(&intake, &event, "req-3").await?;
    let RecordOutcome::Started { release_id, .. } = &first.records[0] else {
        panic!("{first:?}");
    };
    for later in [second, third] {
        assert!(
            matches!(
                later.records[0],
                RecordOutcome::Duplicate {
                    state: ReleaseState::Started,
                    ..
                }
            ),
            "{later:?}"
        );
    }
    assert_eq!(
        world
            .executions_of(std::slice::from_ref(release_id))
            .await?
            .len(),
        1
    );
    assert_eq!(world.releases_of(&key).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_ten_times_at_once_is_one_release_and_one_execution() -> Result<()> {
    let world = World::start().await?;
    let digest = push_sample_image(world.stack, "orders/web").await?;
    let key = world.by_hand("orders-2.1.0.zip");
    let zip = drops::good_release(&world.app, "2.1.0", "orders/web", &digest);
    let event = world.drop(&key, zip).await?;

    let intake = world.intake()?;
    // A first attempt that finds the claim held fails so that Lambda retries it; the retry
    // finds the release started.
    let request_ids: Vec<String> = (0..10).map(|i| format!("req-{i}")).collect();
    let deliveries = request_ids
        .iter()
        .map(|request_id| world.deliver(&intake, &event, request_id));
    let mut started = Vec::new();
    let mut duplicates = 0;
    for report in futures::future::join_all(deliveries).await {
        match &report?.records[0] {
            RecordOutcome::Started { release_id, .. } => started.push(release_id.clone()),
            RecordOutcome::Duplicate {
                state: ReleaseState::Started,
                ..
            } => duplicates += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(
        (started.len(), duplicates),
        (1, 9),
        "one delivery starts the execution"
    );
    assert_eq!(world.executions_of(&started).await?.len(), 1);
    assert_eq!(world.releases_of(&key).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_upload_of_the_same_key_is_a_new_release() -> Result<()> {
    let world = World::start().await?;
    let digest = push_sample_image(world.stack, "orders/web").await?;
    let key = world.by_hand("orders.zip");
    let intake = world.intake()?;
    let mut ids = BTreeSet::new();
    for version in ["3.0.0", "3.0.1"] {
        let zip = drops::good_release(&world.app, version, "orders/web", &digest);
        let event = world.drop(&key, zip).await?;
        let report = world.deliver(&intake, &event, "req").await?;
        match &report.records[0] {
            RecordOutcome::Started { release_id, .. } => ids.insert(release_id.clone()),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(ids.len(), 2);
    let ids: Vec<String> = ids.into_iter().collect();
    assert_eq!(world.executions_of(&ids).await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_are_not_drops_change_nothing() -> Result<()> {
    let world = World::start().await?;
    let intake = world.intake()?;

    // Another bucket, another prefix: ignored, with the reason.
    let outgoing = format!("outgoing/{}r.zip", world.folder);
    let mut ids = Vec::new();
    for (bucket, key, version) in [
        ("someone-elses-bucket", world.by_hand("r.zip"), "v1"),
        (world.bucket.as_str(), outgoing, "v1"),
    ] {
        let report = intake
            .handle(s3_put_event(bucket, &key, version, 10, "etag"), "req")
            .await?;
        assert!(
            matches!(report.records[0], RecordOutcome::Ignored { .. }),
            "{key}: {report:?}"
        );
        ids.push(release_id(&ObjectVersion {
            bucket: bucket.to_owned(),
            key,
            version_id: Some(version.to_owned()),
        }));
    }
    // A malformed event is an error naming the problem, not a panic.
    let err = intake
        .handle(serde_json::json!({"Records": "nope"}), "req")
        .await
        .unwrap_err();
    assert!(matches!(err, IntakeError::MalformedEvent(_)), "{err}");
    for id in &ids {
        assert!(world.release(id).await?.is_none(), "{id} was recorded");
    }
    assert!(world.executions_of(&ids).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_missing_from_the_source_registry_rejects_the_drop() -> Result<()> {
    let world = World::start().await?;
    let absent = format!("sha256:{}", "ab".repeat(32));
    let zip = drops::good_release(&world.app, "4.0.0", "orders/web", &absent);
    let event = world.drop(&world.by_hand("orders-4.0.0.zip"), zip).await?;
    let report = world.deliver(&world.intake()?, &event, "req").await?;
    let RecordOutcome::Rejected {
        codes, release_id, ..
    } = &report.records[0]
    else {
        panic!("{report:?}");
    };
    assert_eq!(codes, &vec!["image_not_found".to_owned()]);
    let ids = std::slice::from_ref(release_id);
    let emails = world.emails_about(ids).await?;
    assert_eq!(emails.len(), 1);
    assert!(
        emails[0].body.contains("image_not_found"),
        "{}",
        emails[0].body
    );
    assert!(world.executions_of(ids).await?.is_empty());
    Ok(())
}

/// A release whose template holds two `Resources` sections (one reader deploys the first, another
/// the second: an IAM user nobody reviewed), a `!!python` tag and an alias: intake refuses it,
/// names each problem with its line, mails the integrator, and starts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_readers_could_read_two_ways_is_rejected_saying_where() -> Result<()> {
    let world = World::start().await?;
    let digest = push_sample_image(world.stack, "orders/web").await?;
    let release = drops::ReleaseBuilder::new(&world.app, "4.1.0").image(
        "web",
        "orders/web",
        "1.0.0",
        &digest,
    );
    let template = format!(
        "{}Resources:\n  Backdoor:\n    Type: AWS::IAM::User\n    Metadata:\n      Run: \
         !!python/object/apply:os.system [\"id\"]\n      Again: &x y\n      More: *x\n",
        release.template()
    );
    let duplicate_line = template
        .lines()
        .position(|l| l == "Resources:")
        .map(|first| {
            first
                + 2
                + template
                    .lines()
                    .skip(first + 1)
                    .position(|l| l == "Resources:")
                    .unwrap_or(0)
        });
    let mut files = release.files();
    let entry = files
        .iter_mut()
        .find(|(name, _)| name == "templates/service.yaml")
        .context("the release has its template")?;
    entry.1 = template.clone().into_bytes();
    let event = world
        .drop(
            &world.by_hand("orders-4.1.0.zip"),
            drops::zip_with_zip_crate(&files),
        )
        .await?;
    let report = world.deliver(&world.intake()?, &event, "req").await?;
    let RecordOutcome::Rejected {
        codes, release_id, ..
    } = &report.records[0]
    else {
        panic!("{report:?}");
    };
    for code in [
        "template_duplicate_key",
        "template_unknown_tag",
        "template_yaml_alias",
    ] {
        assert!(codes.contains(&code.to_owned()), "{code} not in {codes:?}");
    }
    let record = world.release(release_id).await?.context("recorded")?;
    assert_eq!(record.state, ReleaseState::Rejected);
    let problems = record.problems.context("problems recorded")?;
    let duplicate = problems
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["code"] == "template_duplicate_key")
        .context("the duplicate is listed")?;
    assert_eq!(duplicate["path"], "templates/service.yaml");
    let line = duplicate_line.context("the fixture repeats Resources")?;
    let message = duplicate["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("\"Resources\" at line {line} column 1")),
        "{message}"
    );
    let ids = std::slice::from_ref(release_id);
    let emails = world.emails_about(ids).await?;
    assert_eq!(emails.len(), 1);
    for expected in [
        "template_duplicate_key",
        "template_unknown_tag",
        "template_yaml_alias",
        "!!python/object/apply:os.system",
    ] {
        assert!(
            emails[0].body.contains(expected),
            "{expected}: {}",
            emails[0].body
        );
    }
    assert!(world.executions_of(ids).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_record_and_the_start_is_recovered_once() -> Result<()> {
    let world = World::start().await?;
    let digest = push_sample_image(world.stack, "orders/web").await?;
    let key = world.by_hand("orders-5.0.0.zip");
    let zip = drops::good_release(&world.app, "5.0.0", "orders/web", &digest);
    let event = world.drop(&key, zip).await?;

    // An invocation whose pipeline start never gets through: it records the release as
    // accepted, then fails, holding its lease (five minutes, as the template configures it).
    let crashing = without_codepipeline(world.intake()?, &world.stack.endpoints)?;
    let err = crashing.handle(event.clone(), "crashed").await.unwrap_err();
    assert!(matches!(err, IntakeError::Aws(_)), "{err}");
    let id = event["Records"][0]["s3"]["object"]["versionId"]
        .as_str()
        .map(|version| world.release_id(&key, version))
        .context("the event's version")?;
    let mut record = world
        .release(&id)
        .await?
        .context("the release was recorded")?;
    assert_eq!(record.state, ReleaseState::Accepted);
    assert!(record.execution_id.is_none());

    // While the lease holds, another delivery does not touch it: Lambda will retry it.
    let intake = world.intake()?;
    let early = intake.handle(event.clone(), "early").await.unwrap_err();
    assert!(
        matches!(early, IntakeError::InProgressElsewhere { .. }),
        "{early}"
    );

    // The start had in fact reached CodePipeline just before the crash.
    let accepted = record.accepted_object.clone().context("accepted copy")?;
    let started = world
        .pipeline
        .cp
        .start_pipeline_execution()
        .name(&world.pipeline.name)
        .client_request_token(&id)
        .source_revisions(
            aws_sdk_codepipeline::types::SourceRevisionOverride::builder()
                .action_name("Release")
                .revision_type(aws_sdk_codepipeline::types::SourceRevisionType::S3ObjectVersionId)
                .revision_value(accepted.version_id.clone().unwrap_or_default())
                .build()?,
        )
        .send()
        .await?;
    let execution_id = started
        .pipeline_execution_id()
        .unwrap_or_default()
        .to_owned();

    // The lease runs out. Intake reads the wall clock, so rather than sleep past the lease
    // the test moves the lease's end into the past, as the clock would find it by then.
    let held_until = record.lease_expires_at.context("the crashed lease")?;
    record.lease_expires_at = Some(held_until - intake.config.lease_seconds - 1);
    world.store.update_release(&record, "crashed").await?;

    // The next delivery takes over and converges on that one execution: the start is
    // idempotent by the release id.
    let report = world.deliver(&intake, &event, "redelivered").await?;
    match &report.records[0] {
        RecordOutcome::Started {
            execution_id: got, ..
        } => assert_eq!(got, &execution_id),
        other => panic!("{other:?}"),
    }
    // Not doubled: intake started no execution of its own (it would carry the release id).
    assert!(
        world
            .executions_of(std::slice::from_ref(&id))
            .await?
            .is_empty()
    );
    let record = world.release(&id).await?.context("release")?;
    assert_eq!(record.state, ReleaseState::Started);
    assert_eq!(record.execution_id.as_deref(), Some(execution_id.as_str()));
    Ok(())
}

/// The release a report's first record names, started (no codes) or set aside (its codes).
fn outcome_release(report: &shipgate_intake::IntakeReport) -> (String, Vec<String>) {
    match &report.records[0] {
        RecordOutcome::Started { release_id, .. } => (release_id.clone(), Vec::new()),
        RecordOutcome::Rejected {
            release_id, codes, ..
        } => (release_id.clone(), codes.clone()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_is_released_once_and_the_same_release_again_starts_nothing() -> Result<()> {
    let world = World::start().await?;
    let digest = push_sample_image(world.stack, "orders/web").await?;
    let intake = world.intake()?;
    let release = drops::ReleaseBuilder::new(&world.app, "6.0.0").image(
        "web",
        "orders/web",
        "6.0.0",
        &digest,
    );

    let first = world
        .deliver(
            &intake,
            &world
                .drop(&world.by_hand("orders-6.0.0.zip"), release.build())
                .await?,
            "req",
        )
        .await?;
    let (first_id, codes) = outcome_release(&first);
    assert!(codes.is_empty(), "the first 6.0.0 starts: {first:?}");
    let first_id = first_id.to_owned();

    // The same files zipped again by another writer (no directory entry, another order of
    // bytes), under another key: the same release, recognised as such; nothing new starts.
    let mut files = release.files();
    files.reverse();
    let again = world
        .deliver(
            &intake,
            &world
                .drop(
                    &world.by_hand("orders-6.0.0-again.zip"),
                    drops::zip_with_zip_crate(&files),
                )
                .await?,
            "req",
        )
        .await?;
    let (again_id, codes) = outcome_release(&again);
    assert_eq!(codes, vec!["already_released".to_owned()]);
    let again_id = again_id.to_owned();
    let record = world.release(&again_id).await?.context("recorded")?;
    assert!(
        record
            .problems
            .as_ref()
            .is_some_and(|p| p.to_string().contains(&first_id)),
        "the report names the release it repeats: {:?}",
        record.problems
    );
    let emails = world.emails_about(std::slice::from_ref(&again_id)).await?;
    assert_eq!(emails.len(), 1);
    assert!(
        emails[0]
            .subject
            .contains("already received: nothing new started"),
        "{}",
        emails[0].subject
    );

    // 6.0.0 with other contents (another message for the approvers): refused, naming the
    // release that has the version.
    let changed = release
        .clone()
        .message("the same version, something else in it");
    let conflict = world
        .deliver(
            &intake,
            &world
                .drop(&world.by_hand("orders-6.0.0-changed.zip"), changed.build())
                .await?,
            "req",
        )
        .await?;
    let (conflict_id, codes) = outcome_release(&conflict);
    assert_eq!(codes, vec!["version_conflict".to_owned()]);
    let record = world.release(&conflict_id).await?.context("recorded")?;
    let problems = record.problems.map(|p| p.to_string()).unwrap_or_default();
    assert!(
        problems.contains(&first_id) && problems.contains("new version"),
        "{problems}"
    );

    // One execution in all, for the first drop.
    let ids = vec![first_id, again_id, conflict_id.to_owned()];
    let executions = world.executions_of(&ids).await?;
    assert_eq!(executions.len(), 1, "{executions:?}");
    Ok(())
}

/// A source registry that answers every request with `status` after `delay`.
async fn failing_registry(status: u16, delay: std::time::Duration) -> Result<String> {
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_GATEWAY)
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// The test's intake with every source registry host answered by `url`.
fn intake_with_registry(
    world: &World,
    url: &str,
    change: impl FnOnce(&mut IntakeConfig),
) -> Result<Intake> {
    let mut config = world.intake()?.config;
    for endpoint in config.registry_endpoints.values_mut() {
        *endpoint = url.to_owned();
    }
    change(&mut config);
    Ok(Intake::new(config, &world.stack.sdk))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_never_answers_ends_in_a_retriable_rejection_not_a_lost_drop() -> Result<()>
{
    let world = World::start().await?;
    let digest = push_sample_image(world.stack, "orders/web").await?;

    // A registry failing with 503: each delivery but the last fails (Lambda delivers again),
    // the last rejects the drop saying it may be dropped again, and tells the integrator.
    let broken = failing_registry(503, std::time::Duration::ZERO).await?;
    let intake = intake_with_registry(&world, &broken, |_| {})?;
    assert_eq!(
        intake.config.attempts, 3,
        "Lambda's first delivery and two retries"
    );
    let key = world.by_hand("orders-6.1.0.zip");
    let event = world
        .drop(
            &key,
            drops::good_release(&world.app, "6.1.0", "orders/web", &digest),
        )
        .await?;
    for attempt in 1..=2 {
        let error = intake
            .handle(event.clone(), "req-registry")
            .await
            .unwrap_err();
        assert!(matches!(error, IntakeError::Registry { .. }), "{error}");
        let id = outcome_id(&world, &key, &event)?;
        let record = world.release(&id).await?.context("recorded")?;
        assert_eq!(
            (record.state, record.attempts),
            (ReleaseState::Validating, attempt)
        );
    }
    let last = intake.handle(event.clone(), "req-registry").await?;
    let (id, codes) = outcome_release(&last);
    assert_eq!(codes, vec!["registry_unavailable".to_owned()]);
    let record = world.release(&id).await?.context("recorded")?;
    assert_eq!((record.state, record.attempts), (ReleaseState::Rejected, 3));
    assert!(
        record
            .rejected_key
            .as_deref()
            .is_some_and(|k| k.starts_with("rejected/")),
        "moved out of the drop folder: {:?}",
        record.rejected_key
    );
    let emails = world.emails_about(std::slice::from_ref(&id)).await?;
    assert_eq!(emails.len(), 1);
    assert!(
        emails[0].body.contains("Drop the same release again"),
        "{}",
        emails[0].body
    );

    // A registry that hangs: each lookup gives up at its timeout, and a single delivery
    // (attempts = 1) decides at once.
    let hanging = failing_registry(200, std::time::Duration::from_secs(30)).await?;
    let intake = intake_with_registry(&world, &hanging, |config| {
        config.attempts = 1;
        config.registry_timeout_seconds = 1;
    })?;
    let event = world
        .drop(
            &world.by_hand("orders-6.2.0.zip"),
            drops::good_release(&world.app, "6.2.0", "orders/web", &digest),
        )
        .await?;
    // Had intake waited, the registry's 200 would have let the drop start.
    let report = intake.handle(event, "req-hanging").await?;
    let (_, codes) = outcome_release(&report);
    assert_eq!(codes, vec!["registry_unavailable".to_owned()]);
    Ok(())
}

/// The release id of `event`'s object version.
fn outcome_id(world: &World, key: &str, event: &Value) -> Result<String> {
    let version = event["Records"][0]["s3"]["object"]["versionId"]
        .as_str()
        .context("the event names a version")?;
    Ok(world.release_id(key, version))
}

impl World {
    /// 7.1.0 then 7.2.0 uploaded as one key: their events, each with the sequencer S3 gives it
    /// (the later upload's greater).
    async fn two_uploads_of_one_key(&self, digest: &str) -> Result<(Value, Value)> {
        let key = self.by_hand("orders.zip");
        let mut events = Vec::new();
        for (version, sequencer) in [
            ("7.1.0", "0055AED6DCD9028100"),
            ("7.2.0", "0055AED6DCD9028200"),
        ] {
            let zip = drops::good_release(&self.app, version, "orders/web", digest);
            events.push(with_sequencer(self.drop(&key, zip).await?, sequencer));
        }
        let newer = events.pop().context("two events")?;
        let older = events.pop().context("two events")?;
        Ok((older, newer))
    }
}

/// `event` with its record's `sequencer` set (S3 gives each event of a key a greater one).
fn with_sequencer(mut event: Value, sequencer: &str) -> Value {
    event["Records"][0]["s3"]["object"]["sequencer"] = Value::String(sequencer.to_owned());
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_uploads_of_one_key_start_only_the_newer_whatever_order_the_events_come_in()
-> Result<()> {
    // The newer upload's event first, then the older one's three times: only the newer runs.
    let world = World::start().await?;
    let digest = push_sample_image(world.stack, "orders/web").await?;
    let intake = world.intake()?;
    let (older, newer) = world.two_uploads_of_one_key(&digest).await?;
    let (newer_id, codes) = outcome_release(&world.deliver(&intake, &newer, "req-new").await?);
    assert!(codes.is_empty(), "the newer upload starts");
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(world.deliver(&intake, &older, "req-old").await?.records[0].clone());
    }
    let RecordOutcome::Rejected {
        release_id: older_id,
        codes,
        ..
    } = &outcomes[0]
    else {
        panic!("{outcomes:?}");
    };
    assert_eq!(codes, &vec!["overtaken".to_owned()]);
    assert!(
        outcomes[1..].iter().all(|o| matches!(
            o,
            RecordOutcome::Duplicate {
                state: ReleaseState::Rejected,
                ..
            }
        )),
        "{outcomes:?}"
    );
    let record = world.release(older_id).await?.context("recorded")?;
    let problems = record.problems.map(|p| p.to_string()).unwrap_or_default();
    assert!(
        problems.contains(&newer_id),
        "names the newer release: {problems}"
    );
    let emails = world.emails_about(std::slice::from_ref(older_id)).await?;
    assert_eq!(emails.len(), 1, "the integrator is told");
    let executions = world
        .executions_of(&[older_id.clone(), newer_id.clone()])
        .await?;
    assert_eq!(executions.len(), 1);

    // In the order they were uploaded (another application): each runs in its turn, and the
    // older one's late duplicates change nothing.
    let world = World::start().await?;
    let intake = world.intake()?;
    let (older, newer) = world.two_uploads_of_one_key(&digest).await?;
    let mut started = Vec::new();
    for (event, request) in [(&older, "req-old"), (&newer, "req-new")] {
        let (id, codes) = outcome_release(&world.deliver(&intake, event, request).await?);
        assert!(codes.is_empty(), "{id}: {codes:?}");
        started.push(id);
    }
    for _ in 0..2 {
        let late = world.deliver(&intake, &older, "req-old").await?;
        assert!(
            matches!(
                late.records[0],
                RecordOutcome::Duplicate {
                    state: ReleaseState::Started,
                    ..
                }
            ),
            "{late:?}"
        );
    }
    assert_eq!(world.executions_of(&started).await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_deleted_before_its_event_is_handled_is_withdrawn_once() -> Result<()> {
    let world = World::start().await?;
    let digest = push_sample_image(world.stack, "orders/web").await?;
    let intake = world.intake()?;
    // In a versioned bucket the integrator deletes the key (a delete marker on top of the
    // version: the version is still there to move aside) or the version itself, by its id
    // (nothing left to move).
    for (version, by_id) in [("8.0.0", false), ("8.1.0", true)] {
        let key = world.by_hand(&format!("orders-{version}.zip"));
        let event = world
            .drop(
                &key,
                drops::good_release(&world.app, version, "orders/web", &digest),
            )
            .await?;
        let object_version = event["Records"][0]["s3"]["object"]["versionId"]
            .as_str()
            .context("versionId")?;
        let delete = world.s3.delete_object().bucket(&world.bucket).key(&key);
        let delete = if by_id {
            delete.version_id(object_version)
        } else {
            delete
        };
        delete.send().await?;

        let first = world.deliver(&intake, &event, "req").await?;
        let RecordOutcome::Rejected {
            release_id,
            codes,
            rejected_key,
            report_key,
        } = &first.records[0]
        else {
            panic!("{version}: {first:?}");
        };
        assert_eq!(codes, &vec!["withdrawn".to_owned()], "{version}");
        assert_eq!(rejected_key.is_none(), by_id, "{version}: {rejected_key:?}");
        // The report says why, for the operator who looks for the drop.
        let report = world
            .s3
            .get_object()
            .bucket(&world.bucket)
            .key(report_key)
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes();
        let report: serde_json::Value = serde_json::from_slice(&report)?;
        assert_eq!(report["problems"][0]["code"], "withdrawn", "{report}");
        let record = world.release(release_id).await?.context("recorded")?;
        assert_eq!(record.state, ReleaseState::Rejected);
        // Later deliveries of the same event find the record.
        for request in ["req-2", "req-3"] {
            let again = world.deliver(&intake, &event, request).await?;
            assert!(
                matches!(
                    again.records[0],
                    RecordOutcome::Duplicate {
                        state: ReleaseState::Rejected,
                        ..
                    }
                ),
                "{version}: {again:?}"
            );
        }
        let ids = std::slice::from_ref(release_id);
        assert!(world.emails_about(ids).await?.is_empty(), "{version}");
        assert!(world.executions_of(ids).await?.is_empty(), "{version}");
    }
    Ok(())
}
