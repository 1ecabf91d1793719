//! The promote action against the local stack: a release's images go from the int account's
//! registry (222222222222, through its deploy role) to the stg account's (333333333333) by
//! digest, single-arch and multi-arch, with the target repository created as the source's is;
//! a second promotion moves no blob bytes; an interrupted one resumes with only what is
//! missing; a corrupt source blob, an immutable tag on another digest and a missing source
//! image each fail the job with a message an operator can act on.
//!
//! Each test drives the action as CodePipeline does (a job with the pipeline's
//! `UserParameters`, continuation tokens fed back), on a release recorded as intake records it.
//! Images are pushed to the int registry with shipgate's own registry client.
//!
//! What moto (5.2, as pinned) does with ECR, checked against its `ecr/models.py` and
//! `ecr/responses.py` and by these tests: `CreateRepository` keeps `imageTagMutability`,
//! `imageScanningConfiguration.scanOnPush` and `encryptionConfiguration` and
//! `DescribeRepositories` returns them; a second `CreateRepository` of a name is
//! `RepositoryAlreadyExistsException` and `DescribeRepositories` of an unknown name is
//! `RepositoryNotFoundException`, as in AWS; both are per account, so an assumed role in
//! 333333333333 sees only that account's repositories; `GetAuthorizationToken` answers
//! `AWS:<account>-auth-token` and the proxy endpoint `https://<account>.dkr.ecr.<region>.amazonaws.com`
//! of the caller's account. moto has no registry HTTP API: the local `docker-registry` per
//! account serves it, without auth and without tag immutability (shipgate enforces it from the
//! repository's settings).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability};
use serde_json::{Value, json};
use shipgate::aws::codepipeline::JobFailureKind;
use shipgate::config::Env;
use shipgate::job::{Job, JobAction, Outcome};
use shipgate::registry::{
    CopyError, CopyOptions, CopyProgress, CopyRequest, CopyState, Digest, Registry, TagOutcome,
    UploadMode, copy_image, ecr_registry,
};
use shipgate::store::{Promotion, PromotionState, Store};
use shipgate_local::accounts::{self, INT, REGION, STG, TOOLING};
use shipgate_local::stack::Stack;
use shipgate_promote::{PromoteConfig, PromoteFunction};
use shipgate_tests::drops::ReleaseBuilder;
use shipgate_tests::images::{ImageBuilder, ManifestFormat, PushedImage};
use shipgate_tests::jobs::{JobEvent, done, failure, run_to_end};
use shipgate_tests::releases::PipelineRelease;
use shipgate_tests::shared_stack::SharedStack;
use shipgate_tests::support::{in_account, store, table};

const MIB: u64 = 1024 * 1024;

/// One stack for every test here; each test promotes repositories of its own.
static STACK: SharedStack = SharedStack::new("promote", |o| o.deliver_s3_events = false);

/// The shared stack, the release store, and each side's ECR and registry.
struct World {
    stack: &'static Stack,
    store: Store,
    table: String,
    overrides: String,
    int: Side,
    stg: Side,
    tooling: Side,
}

/// One account's ECR control plane and registry, as the account's role sees them.
struct Side {
    ecr: aws_sdk_ecr::Client,
    registry: Registry,
}

impl World {
    async fn start() -> Result<Self> {
        let stack = STACK.get().await?;
        let overrides = stack.registry_endpoints();
        Ok(Self {
            store: store(stack)?,
            table: table(stack)?,
            overrides,
            int: side(stack, Some(INT)).await?,
            stg: side(stack, Some(STG)).await?,
            tooling: side(stack, None).await?,
            stack,
        })
    }

    /// The action, configured as the template configures it plus `extra` variables.
    fn action(&self, extra: &[(&str, &str)]) -> Result<PromoteFunction> {
        let mut env = Env::from_pairs([
            ("SHIPGATE_TABLE", self.table.as_str()),
            ("SHIPGATE_REGISTRY_ENDPOINTS", self.overrides.as_str()),
        ]);
        for (k, v) in extra {
            env.set(*k, *v);
        }
        Ok(PromoteFunction::new(
            PromoteConfig::from_env(&env)?,
            &self.stack.sdk,
        ))
    }

    /// Records a release of `images` (name, repository, tag, digest) as intake does.
    async fn release(&self, images: &[(&str, &str, &str, &Digest)]) -> Result<PipelineRelease> {
        let manifest = images
            .iter()
            .fold(
                ReleaseBuilder::new("orders", "1.4.2").environments(&["int", "stg", "prod"]),
                |release, (name, repository, tag, digest)| {
                    release.image(name, repository, tag, digest.as_str())
                },
            )
            .manifest();
        let release = PipelineRelease::new();
        release
            .record_started(&self.store, "artifacts", &manifest, None)
            .await?;
        Ok(release)
    }

    /// A release of an image pushed to int's `repo` as 1.4.2, where someone pushed another
    /// build under the same version in stg: the release's image, stg's, and the release.
    async fn another_build_in_stg(
        &self,
        repo: &str,
    ) -> Result<(PushedImage, PushedImage, PipelineRelease)> {
        let promoted = ImageBuilder::new()
            .push(&self.int.registry, repo, "1.4.2")
            .await?;
        let other = ImageBuilder::new()
            .push(&self.stg.registry, repo, "1.4.2")
            .await?;
        let release = self
            .release(&[("web", repo, "1.4.2", promoted.digest())])
            .await?;
        Ok((promoted, other, release))
    }

    /// The job CodePipeline sends for the stg promotion of `release`, from int.
    fn job(
        &self,
        release: &PipelineRelease,
        job_id: &str,
        continuation: Option<&str>,
    ) -> Result<Job> {
        self.job_with(
            release,
            job_id,
            continuation,
            json!({"environment": "int", "roleArn": accounts::deploy_role_arn(INT)}),
            json!({"environment": "stg", "roleArn": accounts::deploy_role_arn(STG)}),
        )
    }

    fn job_with(
        &self,
        release: &PipelineRelease,
        job_id: &str,
        continuation: Option<&str>,
        from: Value,
        to: Value,
    ) -> Result<Job> {
        JobEvent::new(
            "PromoteFunction",
            json!({
                "releaseId": release.release_id,
                "executionId": release.execution_id,
                "from": from,
                "to": to,
            }),
        )
        .id(job_id)
        .continuation(continuation)
        .job()
    }

    /// Runs one job to its end, feeding continuation tokens back as CodePipeline does; the
    /// final outcome and how many invocations it took.
    async fn promote(
        &self,
        action: &PromoteFunction,
        release: &PipelineRelease,
    ) -> Result<(Outcome, u32)> {
        let job_id = uuid::Uuid::new_v4().to_string();
        run_to_end(50, |token| {
            let job = self.job(release, &job_id, token.as_deref());
            async move { Ok(action.run(&job?).await) }
        })
        .await
    }

    async fn stored(&self, release: &PipelineRelease) -> Result<Promotion> {
        self.store
            .get_promotion(&release.release_id, "stg")
            .await?
            .context("no promotion stored with the release")
    }

    /// Where a local registry keeps a blob's bytes (the CNCF registry's filesystem layout).
    fn blob_file(&self, account: &str, digest: &Digest) -> Result<PathBuf> {
        Ok(self
            .local(account)?
            .storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&digest.hex()[..2])
            .join(digest.hex())
            .join("data"))
    }

    /// Lines of the account registry's access log that start or continue a blob upload into
    /// `repo` (the registry is shared with the other tests, the repository is the test's).
    fn upload_requests(&self, account: &str, repo: &str) -> Result<usize> {
        let log = std::fs::read_to_string(&self.local(account)?.log)?;
        let uploads = format!("/v2/{repo}/blobs/uploads/");
        Ok(log
            .lines()
            .filter(|l| l.contains(&uploads) && !l.contains("\"HEAD "))
            .count())
    }

    fn local(&self, account: &str) -> Result<&shipgate_local::registries::LocalRegistry> {
        self.stack
            .registries
            .iter()
            .find(|r| r.account == account)
            .context("no registry for the account")
    }
}

/// An account's side: through its deploy role, or the stack's own (tooling) credentials.
async fn side(stack: &Stack, account: Option<&str>) -> Result<Side> {
    let sdk = match account {
        Some(a) => in_account(stack, a).await,
        None => stack.sdk.clone(),
    };
    let ecr = aws_sdk_ecr::Client::new(&sdk);
    let registry = ecr_registry(&ecr, reqwest::Client::new(), &stack.registry_overrides()).await?;
    Ok(Side { ecr, registry })
}

async fn create_repository(
    ecr: &aws_sdk_ecr::Client,
    name: &str,
    mutability: ImageTagMutability,
    scan_on_push: bool,
) -> Result<()> {
    ecr.create_repository()
        .repository_name(name)
        .image_tag_mutability(mutability)
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(scan_on_push)
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

fn unique_repo(prefix: &str) -> String {
    format!(
        "{prefix}/{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn total_bytes(image: &PushedImage) -> u64 {
    image.blobs().iter().map(|b| b.size).sum()
}

/// Every manifest and blob of `image` is in `registry`'s `repo`, and `tag` names its digest.
async fn assert_complete(
    registry: &Registry,
    repo: &str,
    tag: &str,
    image: &PushedImage,
) -> Result<()> {
    let tagged = registry
        .head_manifest(repo, tag)
        .await?
        .context("the tag is not in the target")?;
    ensure!(
        tagged.digest == *image.digest(),
        "the tag names {}",
        tagged.digest
    );
    ensure!(tagged.media_type == image.manifest.media_type);
    let (_, bytes) = registry.get_manifest(repo, image.digest().as_str()).await?;
    ensure!(bytes == image.manifest_bytes, "the manifest bytes changed");
    for platform in &image.platforms {
        let (_, bytes) = registry
            .get_manifest(repo, platform.manifest.digest.as_str())
            .await?;
        ensure!(bytes == platform.manifest_bytes);
    }
    for blob in image.blobs() {
        ensure!(
            registry.head_blob(repo, &blob.digest).await? == Some(blob.size),
            "blob {} is missing",
            blob.digest
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_reaches_the_next_account_by_digest_in_a_repository_made_like_the_source()
-> Result<()> {
    let world = World::start().await?;
    let repo = unique_repo("orders/web");
    create_repository(&world.int.ecr, &repo, ImageTagMutability::Immutable, true).await?;
    let image = ImageBuilder::new()
        .format(ManifestFormat::Docker)
        .layers(&[3 * MIB, 64 * 1024, 1])
        .push(&world.int.registry, &repo, "1.4.2")
        .await?;
    let release = world
        .release(&[("web", &repo, "1.4.2", image.digest())])
        .await?;

    let (outcome, invocations) = world.promote(&world.action(&[])?, &release).await?;

    let (summary, variables) = done(&outcome)?;
    assert_eq!(invocations, 1);
    assert_complete(&world.stg.registry, &repo, "1.4.2", &image).await?;
    let stg_host = format!("{STG}.dkr.ecr.{REGION}.amazonaws.com");
    assert!(
        summary.starts_with(&format!("int → stg: 1 image promoted to {stg_host}; ")),
        "{summary}"
    );
    assert_eq!(variables["web_digest"], image.digest().as_str());
    assert_eq!(
        variables["web_uri"],
        format!("{stg_host}/{repo}@{}", image.digest())
    );
    assert_eq!(variables["BytesCopied"], total_bytes(&image).to_string());

    // The target repository was created with the source's settings.
    let described = world
        .stg
        .ecr
        .describe_repositories()
        .repository_names(&repo)
        .send()
        .await?;
    let created = described.repositories().first().context("no repository")?;
    assert_eq!(
        created.image_tag_mutability(),
        Some(&ImageTagMutability::Immutable)
    );
    assert!(
        created
            .image_scanning_configuration()
            .is_some_and(|c| c.scan_on_push())
    );

    // Stored with the release: what was copied, where, how fast.
    let stored = world.stored(&release).await?;
    assert_eq!(stored.state, PromotionState::Succeeded);
    assert_eq!(
        stored.from_registry,
        format!("{INT}.dkr.ecr.{REGION}.amazonaws.com")
    );
    assert_eq!(stored.to_registry, stg_host);
    let promoted = &stored.images[0];
    assert!(promoted.complete && promoted.repository_created);
    assert_eq!(promoted.digest, *image.digest());
    assert_eq!(promoted.tag_mutability, "IMMUTABLE");
    assert!(promoted.scan_on_push);
    assert_eq!(
        (
            promoted.blobs,
            promoted.blobs_copied,
            promoted.blobs_skipped
        ),
        (4, 4, 0)
    );
    assert_eq!(promoted.bytes_copied, total_bytes(&image));
    assert_eq!(promoted.manifests_pushed, 1);
    assert!(promoted.seconds > 0.0);

    // Nothing went anywhere else.
    let prod = Registry::new(
        &world.local(accounts::PROD)?.url(),
        None,
        reqwest::Client::new(),
    )?;
    assert_eq!(prod.head_manifest(&repo, "1.4.2").await?, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_arch_images_are_promoted_with_every_platform_and_the_tag_last() -> Result<()> {
    let world = World::start().await?;
    let web = unique_repo("orders/web");
    let worker = unique_repo("orders/worker");
    let oci = ImageBuilder::new()
        .format(ManifestFormat::Oci)
        .multi_arch()
        .layers(&[MIB, 10 * 1024])
        .push(&world.int.registry, &web, "1.4.2")
        .await?;
    let docker = ImageBuilder::new()
        .format(ManifestFormat::Docker)
        .multi_arch()
        .push(&world.int.registry, &worker, "1.4.2")
        .await?;
    let release = world
        .release(&[
            ("web", &web, "1.4.2", oci.digest()),
            ("worker", &worker, "1.4.2", docker.digest()),
        ])
        .await?;

    let (outcome, _) = world.promote(&world.action(&[])?, &release).await?;

    let (summary, variables) = done(&outcome)?;
    assert!(summary.contains("2 images promoted"), "{summary}");
    assert_complete(&world.stg.registry, &web, "1.4.2", &oci).await?;
    assert_complete(&world.stg.registry, &worker, "1.4.2", &docker).await?;
    assert_eq!(variables["worker_digest"], docker.digest().as_str());
    let stored = world.stored(&release).await?;
    for (promoted, image) in stored.images.iter().zip([&oci, &docker]) {
        assert_eq!(promoted.media_type, image.manifest.media_type);
        assert_eq!(
            promoted.manifests_pushed, 3,
            "the index and its two platforms"
        );
        assert_eq!(promoted.blobs, image.blobs().len() as u32);
        assert_eq!(promoted.bytes_copied, total_bytes(image));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_promotion_of_the_same_release_moves_no_blob_bytes() -> Result<()> {
    let world = World::start().await?;
    let repo = unique_repo("orders/web");
    let image = ImageBuilder::new()
        .multi_arch()
        .layers(&[2 * MIB, 4096])
        .push(&world.int.registry, &repo, "1.4.2")
        .await?;
    let release = world
        .release(&[("web", &repo, "1.4.2", image.digest())])
        .await?;
    let action = world.action(&[])?;
    done(&world.promote(&action, &release).await?.0)?;
    let uploads_before = world.upload_requests(STG, &repo)?;
    assert!(
        uploads_before >= 6,
        "the first promotion's uploads are in the log"
    );

    let (outcome, _) = world.promote(&action, &release).await?;

    let (summary, variables) = done(&outcome)?;
    assert!(
        summary.ends_with("nothing to copy, 6 blob(s) already there"),
        "{summary}"
    );
    assert_eq!(variables["BytesCopied"], "0");
    assert_eq!(variables["BlobsCopied"], "0");
    let promoted = &world.stored(&release).await?.images[0];
    assert_eq!((promoted.blobs_copied, promoted.bytes_copied), (0, 0));
    assert_eq!(promoted.blobs_skipped, 6);
    assert_eq!(promoted.bytes_skipped, total_bytes(&image));
    assert_eq!(promoted.manifests_pushed, 0);
    assert!(!promoted.repository_created);
    // The target registry saw no upload at all, by its own access log.
    assert_eq!(world.upload_requests(STG, &repo)?, uploads_before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_copy_resumes_with_only_the_blobs_still_missing() -> Result<()> {
    let world = World::start().await?;
    let repo = unique_repo("orders/web");
    let image = ImageBuilder::new()
        .layers(&[6 * MIB, 6 * MIB, 6 * MIB, 6 * MIB])
        .push(&world.int.registry, &repo, "1.4.2")
        .await?;
    let request = CopyRequest {
        source: &world.int.registry,
        source_repo: &repo,
        target: &world.stg.registry,
        target_repo: &repo,
        digest: image.digest(),
        tag: Some("1.4.2"),
        immutable_tags: false,
    };
    let options = CopyOptions {
        concurrency: 1,
        upload: UploadMode::chunked(5 * MIB)?,
        ..CopyOptions::default()
    };

    // Stopped (the future dropped, as a crash or a timeout would) once two blobs are in.
    let first = CopyProgress::default();
    tokio::select! {
        result = copy_image(&request, &options, &first) => bail!("the copy finished before it was interrupted: {result:?}"),
        () = async {
            while first.snapshot().blobs_copied < 2 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } => {}
    }
    let interrupted = first.snapshot();
    assert!(interrupted.blobs_copied >= 2);
    assert_eq!(
        world.stg.registry.head_manifest(&repo, "1.4.2").await?,
        None
    );

    let second = CopyProgress::default();
    let report = copy_image(&request, &options, &second).await?;

    assert_eq!(report.state, CopyState::Complete);
    assert!(report.blobs_skipped as u64 >= interrupted.blobs_copied);
    assert_eq!(report.blobs_copied + report.blobs_skipped, report.blobs);
    assert_eq!(
        report.bytes_copied + report.bytes_skipped,
        total_bytes(&image)
    );
    // Only what was missing went over the wire the second time.
    assert_eq!(second.snapshot().bytes_streamed, report.bytes_copied);
    assert!(report.bytes_copied <= total_bytes(&image) - 2 * 6 * MIB);
    assert_complete(&world.stg.registry, &repo, "1.4.2", &image).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_already_in_the_target_are_not_copied_again() -> Result<()> {
    let world = World::start().await?;
    let repo = unique_repo("orders/web");
    let image = ImageBuilder::new()
        .layers(&[MIB, 2 * MIB, 3 * MIB, 4 * MIB])
        .push(&world.int.registry, &repo, "1.4.2")
        .await?;
    // An earlier, interrupted promotion left the two largest layers in stg.
    let seeded: Vec<_> = image.platforms[0].layers[2..].to_vec();
    for layer in &seeded {
        world
            .stg
            .registry
            .push_blob_stream(
                &repo,
                &layer.descriptor.digest,
                layer.content.size,
                layer.content.stream(),
            )
            .await?;
    }
    let release = world
        .release(&[("web", &repo, "1.4.2", image.digest())])
        .await?;

    let (outcome, _) = world.promote(&world.action(&[])?, &release).await?;

    done(&outcome)?;
    let promoted = &world.stored(&release).await?.images[0];
    assert_eq!((promoted.blobs_copied, promoted.blobs_skipped), (3, 2));
    assert_eq!(promoted.bytes_skipped, 7 * MIB);
    assert_eq!(promoted.bytes_copied, total_bytes(&image) - 7 * MIB);
    assert_complete(&world.stg.registry, &repo, "1.4.2", &image).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_longer_than_its_budget_continues_across_invocations() -> Result<()> {
    let world = World::start().await?;
    let repo = unique_repo("orders/web");
    let image = ImageBuilder::new()
        .layers(&[MIB, MIB, MIB])
        .push(&world.int.registry, &repo, "1.4.2")
        .await?;
    let release = world
        .release(&[("web", &repo, "1.4.2", image.digest())])
        .await?;
    // No time at all: each invocation copies one blob (the least it must), then continues.
    let action = world.action(&[("SHIPGATE_PROMOTE_BUDGET_SECONDS", "0")])?;

    let (outcome, invocations) = world.promote(&action, &release).await?;

    done(&outcome)?;
    assert_eq!(
        invocations, 4,
        "one blob per invocation (3 layers and the config)"
    );
    let stored = world.stored(&release).await?;
    assert_eq!(stored.invocations, 4);
    let promoted = &stored.images[0];
    assert_eq!((promoted.blobs_copied, promoted.blobs_skipped), (4, 0));
    assert_eq!(promoted.bytes_copied, total_bytes(&image));
    assert_complete(&world.stg.registry, &repo, "1.4.2", &image).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_source_blob_is_refused_and_nothing_is_committed() -> Result<()> {
    let world = World::start().await?;
    let repo = unique_repo("orders/web");
    let image = ImageBuilder::new()
        .layers(&[7 * MIB, 4096])
        .push(&world.int.registry, &repo, "1.4.2")
        .await?;
    // Bit rot in the int registry's storage: same length, other bytes.
    let layer = image.platforms[0].layers[0].descriptor.clone();
    let file = world.blob_file(INT, &layer.digest)?;
    let mut bytes = std::fs::read(&file)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, &bytes)?;
    let release = world
        .release(&[("web", &repo, "1.4.2", image.digest())])
        .await?;

    let (outcome, _) = world.promote(&world.action(&[])?, &release).await?;

    let (message, kind) = failure(&outcome)?;
    assert_eq!(kind, JobFailureKind::JobFailed);
    assert!(
        message.starts_with(&format!(
            "image web (int → stg): blob {} read from {INT}.dkr.ecr.{REGION}.amazonaws.com/{repo} is corrupt",
            layer.digest
        )),
        "{message}"
    );
    assert!(message.contains("nothing corrupt was copied"), "{message}");
    assert_eq!(
        world.stg.registry.head_blob(&repo, &layer.digest).await?,
        None
    );
    assert_eq!(
        world
            .stg
            .registry
            .head_manifest(&repo, image.digest().as_str())
            .await?,
        None
    );
    assert_eq!(
        world.stg.registry.head_manifest(&repo, "1.4.2").await?,
        None
    );
    let stored = world.stored(&release).await?;
    assert_eq!(stored.state, PromotionState::Failed);
    assert!(
        stored
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("corrupt"))
    );

    // The same refusal whichever way the blob is uploaded.
    for upload in [UploadMode::Monolithic, UploadMode::chunked(5 * MIB)?] {
        let target_repo = unique_repo("copy/corrupt");
        let request = CopyRequest {
            source: &world.int.registry,
            source_repo: &repo,
            target: &world.stg.registry,
            target_repo: &target_repo,
            digest: image.digest(),
            tag: Some("1.4.2"),
            immutable_tags: false,
        };
        let options = CopyOptions {
            upload,
            ..CopyOptions::default()
        };
        let err = copy_image(&request, &options, &CopyProgress::default())
            .await
            .expect_err("a corrupt blob was copied");
        assert!(
            matches!(&err, CopyError::CorruptBlob { digest, .. } if *digest == layer.digest),
            "{upload:?}: {err:?}"
        );
        assert_eq!(
            world
                .stg
                .registry
                .head_blob(&target_repo, &layer.digest)
                .await?,
            None,
            "{upload:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_tag_on_another_digest_is_a_conflict_naming_both() -> Result<()> {
    let world = World::start().await?;
    let repo = unique_repo("orders/web");
    create_repository(&world.stg.ecr, &repo, ImageTagMutability::Immutable, false).await?;
    let (promoted, other, release) = world.another_build_in_stg(&repo).await?;

    let (outcome, _) = world.promote(&world.action(&[])?, &release).await?;

    let (message, _) = failure(&outcome)?;
    assert!(
        message.contains(&format!(
            "tag 1.4.2 of {STG}.dkr.ecr.{REGION}.amazonaws.com/{repo} already names {} and the repository's tags are immutable: it cannot be moved to {}",
            other.digest(),
            promoted.digest()
        )),
        "{message}"
    );
    // Found before anything moved: the tag, and stg's content, are as they were.
    let tagged = world.stg.registry.head_manifest(&repo, "1.4.2").await?;
    assert_eq!(tagged.map(|d| d.digest), Some(other.digest().clone()));
    for blob in promoted.blobs() {
        assert_eq!(
            world.stg.registry.head_blob(&repo, &blob.digest).await?,
            None
        );
    }
    assert_eq!(world.stored(&release).await?.state, PromotionState::Failed);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutable_tag_moves_to_the_promoted_digest_and_an_existing_repository_keeps_its_settings()
-> Result<()> {
    let world = World::start().await?;
    let repo = unique_repo("orders/web");
    create_repository(&world.int.ecr, &repo, ImageTagMutability::Immutable, true).await?;
    create_repository(&world.stg.ecr, &repo, ImageTagMutability::Mutable, false).await?;
    let (promoted, other, release) = world.another_build_in_stg(&repo).await?;

    done(&world.promote(&world.action(&[])?, &release).await?.0)?;

    let tagged = world.stg.registry.head_manifest(&repo, "1.4.2").await?;
    assert_eq!(tagged.map(|d| d.digest), Some(promoted.digest().clone()));
    let stored = &world.stored(&release).await?.images[0];
    assert!(!stored.repository_created);
    assert_eq!(stored.tag_mutability, "MUTABLE");
    assert!(!stored.scan_on_push);
    // The copy itself says the tag moved, and from what.
    let again = copy_image(
        &CopyRequest {
            source: &world.stg.registry,
            source_repo: &repo,
            target: &world.stg.registry,
            target_repo: &repo,
            digest: other.digest(),
            tag: Some("1.4.2"),
            immutable_tags: false,
        },
        &CopyOptions::default(),
        &CopyProgress::default(),
    )
    .await?;
    assert_eq!(
        again.tag_outcome,
        Some(TagOutcome::Applied {
            replaced: Some(promoted.digest().clone())
        })
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_image_fails_with_a_clear_error() -> Result<()> {
    let world = World::start().await?;
    let repo = unique_repo("orders/web");
    let absent = Digest::sha256_of(b"an image nobody pushed");
    let release = world.release(&[("web", &repo, "1.4.2", &absent)]).await?;

    let (outcome, _) = world.promote(&world.action(&[])?, &release).await?;

    let (message, kind) = failure(&outcome)?;
    assert_eq!(kind, JobFailureKind::JobFailed);
    assert_eq!(
        message,
        format!(
            "image web (int → stg): image {repo}@{absent} is not in the source registry \
             {INT}.dkr.ecr.{REGION}.amazonaws.com: it was deleted from the source after intake \
             accepted the release (a lifecycle policy?); push it again by digest and retry the \
             stage"
        )
    );
    assert_eq!(
        world.stg.registry.head_manifest(&repo, "1.4.2").await?,
        None
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_source_role_the_images_come_from_the_tooling_account() -> Result<()> {
    let world = World::start().await?;
    let repo = unique_repo("orders/web");
    let image = ImageBuilder::new()
        .push(&world.tooling.registry, &repo, "1.4.2")
        .await?;
    let release = world
        .release(&[("web", &repo, "1.4.2", image.digest())])
        .await?;
    let job = world.job_with(
        &release,
        "job-from-tooling",
        None,
        json!({"environment": "source"}),
        json!({"environment": "int", "roleArn": accounts::deploy_role_arn(INT)}),
    );

    let outcome = world.action(&[])?.run(&job?).await;

    let (summary, _) = done(&outcome)?;
    assert!(
        summary.starts_with("source → int: 1 image promoted to 222222222222"),
        "{summary}"
    );
    assert_complete(&world.int.registry, &repo, "1.4.2", &image).await?;
    // The source repository is unknown to ECR (pushed straight to the registry): the target
    // got ECR's defaults.
    let stored = world
        .store
        .get_promotion(&release.release_id, "int")
        .await?
        .context("stored")?;
    assert_eq!(
        stored.from_registry,
        format!("{TOOLING}.dkr.ecr.{REGION}.amazonaws.com")
    );
    assert_eq!(stored.images[0].tag_mutability, "MUTABLE");
    Ok(())
}
