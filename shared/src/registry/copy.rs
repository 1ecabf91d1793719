//! Copying an image by digest from one registry to another, the way `crane copy` and
//! `skopeo copy` do it, over the distribution API only.
//!
//! [`copy_image`] reads the image's manifest from the source by digest (an index and each of
//! its child manifests for a multi-arch image), asks the target which blobs it already has
//! (`HEAD`), streams only the missing ones from source to target, several at a time, largest
//! first, then pushes the manifests by digest, children before their index, and the tag last,
//! so that a repository with immutable tags never sees a tag before what it points to. The
//! copied image is then read back by its tag: it must resolve to the source digest.
//!
//! Guarantees the promote action relies on:
//! - **Nothing is rebuilt**: manifests are pushed as the exact bytes read from the source (and
//!   verified against the digest on both sides), so the target digest is the source digest.
//! - **Streamed**: a blob goes from the source's response body into the target's request body
//!   a few chunks at a time ([`UploadMode`]): memory does not grow with layer size.
//! - **Verified**: a blob whose bytes do not hash to its digest is refused and its upload
//!   abandoned before it is committed ([`CopyError::CorruptBlob`]).
//! - **Resumable**: a blob is only ever committed whole, so a copy interrupted anywhere (a
//!   dropped future, a crash, a [`CopyOptions::deadline`]) and run again finds the committed
//!   blobs by `HEAD` and copies only the rest. A copy with every blob in place moves no blob
//!   bytes at all.
//! - **Immutable tags respected**: a tag that already names another digest in a repository
//!   with immutable tags is a [`CopyError::TagConflict`] naming both digests, found before any
//!   byte is copied.
//!
//! Why shipgate's own client rather than a crate: `oci-client` (oras-project, formerly
//! `oci-distribution`), the maintained general OCI client for Rust, pushes layers from memory
//! (`ImageLayer { data: Vec<u8> }`, up to 16 uploads at once by default), in fixed 4 MiB parts
//! (`PUSH_CHUNK_MAX_SIZE`, below the 5 MiB that ECR's parts need) or as one in-memory PUT
//! (`use_monolithic_push`), and brings its own auth and token cache where shipgate's credentials
//! come from `ecr:GetAuthorizationToken`; `dkregistry` is unmaintained;
//! `containers-image-proxy` drives a `skopeo` binary, which a Lambda does not have. Streaming
//! and ECR's upload quirks were the whole point, and the distribution API a copy needs is small
//! (HEAD/GET/PUT manifest, HEAD/GET blob, upload session), so shipgate keeps its own client
//! ([`super::Registry`]) on the `reqwest` the functions already carry.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tracing::{debug, info, warn};

use super::{
    Descriptor, Digest, ManifestError, ManifestKind, Registry, RegistryError, UploadMode,
    VerifiedContent, referenced_descriptors,
};

/// How deep indexes may nest (an index of indexes of images is already unusual).
pub const MAX_INDEX_DEPTH: usize = 4;
/// How many target `HEAD`s run at once while looking for missing blobs.
const HEAD_CONCURRENCY: usize = 8;

/// What to copy, from where, to where.
#[derive(Debug, Clone, Copy)]
pub struct CopyRequest<'a> {
    pub source: &'a Registry,
    pub source_repo: &'a str,
    pub target: &'a Registry,
    pub target_repo: &'a str,
    /// The image's (top-level manifest's) digest.
    pub digest: &'a Digest,
    /// The tag to apply in the target, last.
    pub tag: Option<&'a str>,
    /// Whether the target repository's tags are immutable (ECR's `imageTagMutability`): an
    /// existing tag on another digest is then a conflict rather than something to move.
    pub immutable_tags: bool,
}

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Blobs copied at once (at least 1).
    pub concurrency: usize,
    pub upload: UploadMode,
    /// Tries per blob: a transport failure, throttling or a 5xx starts that blob over, in a new
    /// upload session.
    pub attempts: u32,
    /// No blob copy starts after this instant: the copy pauses ([`CopyState::Paused`]) with the
    /// blobs in flight finished and committed, so the next run resumes after them.
    pub deadline: Option<Instant>,
    /// Start one blob even when the deadline has passed, so every run makes progress.
    pub must_progress: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            upload: UploadMode::default(),
            attempts: 3,
            deadline: None,
            must_progress: true,
        }
    }
}

/// Counters of a copy as it runs, readable from another task (or after the copy was dropped).
/// Clones share the counters.
#[derive(Debug, Clone, Default)]
pub struct CopyProgress(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    blobs_copied: AtomicU64,
    blobs_skipped: AtomicU64,
    bytes_copied: AtomicU64,
    bytes_skipped: AtomicU64,
    bytes_streamed: AtomicU64,
}

/// A reading of [`CopyProgress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProgressSnapshot {
    /// Blobs committed to the target by this copy, and their bytes.
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    /// Blobs the target already had, and their bytes.
    pub blobs_skipped: u64,
    pub bytes_skipped: u64,
    /// Bytes sent to the target so far, including blobs still in flight or abandoned.
    pub bytes_streamed: u64,
}

impl CopyProgress {
    pub fn snapshot(&self) -> ProgressSnapshot {
        let c = &self.0;
        ProgressSnapshot {
            blobs_copied: c.blobs_copied.load(Ordering::Relaxed),
            bytes_copied: c.bytes_copied.load(Ordering::Relaxed),
            blobs_skipped: c.blobs_skipped.load(Ordering::Relaxed),
            bytes_skipped: c.bytes_skipped.load(Ordering::Relaxed),
            bytes_streamed: c.bytes_streamed.load(Ordering::Relaxed),
        }
    }
}

/// Whether the copy finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyState {
    /// Every blob and manifest is in the target and the tag (if any) names the digest.
    Complete,
    /// The deadline stopped it between blobs: no manifest was pushed yet; run it again.
    Paused,
}

/// What happened to the tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagOutcome {
    /// The tag already named this digest: it was left alone.
    AlreadyThere,
    /// The tag was created, or moved from `replaced` (a repository with mutable tags).
    Applied { replaced: Option<Digest> },
}

/// The result of one image copy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyReport {
    pub digest: Digest,
    pub media_type: String,
    pub state: CopyState,
    /// Manifests in the image (1, or an index and its children), and how many were pushed
    /// (the others were already in the target).
    pub manifests: u32,
    pub manifests_pushed: u32,
    /// Distinct blobs (configs and layers) of the image.
    pub blobs: u32,
    pub blobs_copied: u32,
    pub blobs_skipped: u32,
    pub bytes_copied: u64,
    pub bytes_skipped: u64,
    pub tag: Option<String>,
    pub tag_outcome: Option<TagOutcome>,
    pub seconds: f64,
}

/// Why an image could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("image {repo}@{digest} is not in the source registry {registry}")]
    SourceNotFound {
        registry: String,
        repo: String,
        digest: Digest,
    },
    #[error(
        "tag {tag} of {registry}/{repo} already names {existing} and the repository's tags are \
         immutable: it cannot be moved to {wanted}"
    )]
    TagConflict {
        registry: String,
        repo: String,
        tag: String,
        existing: Digest,
        wanted: Digest,
    },
    #[error(
        "blob {digest} read from {registry}/{repo} is corrupt ({source}): refused, nothing was \
         committed to the target"
    )]
    CorruptBlob {
        registry: String,
        repo: String,
        digest: Digest,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("source registry {registry}, repository {repo}: {what}: {source}")]
    Source {
        registry: String,
        repo: String,
        what: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("target registry {registry}, repository {repo}: {what}: {source}")]
    Target {
        registry: String,
        repo: String,
        what: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("manifest {digest} of {repo} cannot be copied: {source}")]
    Manifest {
        repo: String,
        digest: Digest,
        #[source]
        source: ManifestError,
    },
    #[error("image {digest} nests indexes more than {MAX_INDEX_DEPTH} levels deep")]
    TooDeep { digest: Digest },
    #[error(
        "after the copy, {registry}/{repo}:{reference} names {}, not {expected}",
        .actual.as_ref().map_or_else(|| "nothing".to_owned(), Digest::to_string)
    )]
    Verification {
        registry: String,
        repo: String,
        reference: String,
        expected: Digest,
        actual: Option<Digest>,
    },
}

impl CopyError {
    /// Whether running the copy again later may succeed (transport failures, throttling, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Source { source, .. } | Self::Target { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

/// One manifest of the image, with the exact bytes to push.
#[derive(Debug, Clone)]
struct ManifestNode {
    descriptor: Descriptor,
    bytes: Bytes,
}

/// What the tag currently names in the target.
enum TagState {
    Untagged,
    Absent,
    AlreadyThere,
    Replace(Digest),
}

/// Copies the image `request.digest` (see the module documentation). Progress is counted in
/// `progress` as it happens, so a caller that drops the future still knows what was done.
pub async fn copy_image(
    request: &CopyRequest<'_>,
    options: &CopyOptions,
    progress: &CopyProgress,
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let r = request;
    let manifests = walk(r).await?;
    let Some(root) = manifests.last().cloned() else {
        return Err(source_not_found(r));
    };
    let tag_state = check_tag(r).await?;
    let blobs = image_blobs(r, &manifests)?;
    let total_blobs = blobs.len() as u32;

    let missing = missing_blobs(r, blobs, progress).await?;
    let missing_bytes: u64 = missing.iter().map(|d| d.size).sum();
    info!(
        image = %r.digest,
        source_repo = r.source_repo,
        target_repo = r.target_repo,
        target = r.target.host(),
        manifests = manifests.len(),
        blobs = total_blobs,
        blobs_missing = missing.len(),
        bytes_missing = missing_bytes,
        "image copy planned"
    );
    let complete = copy_blobs(r, options, progress, missing).await?;

    let mut report = CopyReport {
        digest: r.digest.clone(),
        media_type: root.descriptor.media_type.clone(),
        state: CopyState::Paused,
        manifests: manifests.len() as u32,
        manifests_pushed: 0,
        blobs: total_blobs,
        blobs_copied: 0,
        blobs_skipped: 0,
        bytes_copied: 0,
        bytes_skipped: 0,
        tag: r.tag.map(str::to_owned),
        tag_outcome: None,
        seconds: 0.0,
    };
    if complete {
        report.manifests_pushed = push_manifests(r, &manifests).await?;
        report.tag_outcome = apply_tag(r, &root, tag_state).await?;
        verify(r).await?;
        report.state = CopyState::Complete;
    }
    let done = progress.snapshot();
    report.blobs_copied = done.blobs_copied as u32;
    report.blobs_skipped = done.blobs_skipped as u32;
    report.bytes_copied = done.bytes_copied;
    report.bytes_skipped = done.bytes_skipped;
    report.seconds = started.elapsed().as_secs_f64();
    info!(
        image = %r.digest,
        target_repo = r.target_repo,
        state = ?report.state,
        manifests_pushed = report.manifests_pushed,
        blobs_copied = report.blobs_copied,
        blobs_skipped = report.blobs_skipped,
        bytes_copied = report.bytes_copied,
        bytes_skipped = report.bytes_skipped,
        seconds = report.seconds,
        "image copy finished"
    );
    Ok(report)
}

/// Every manifest of the image from the source, each verified against its digest, children
/// before the index that lists them (the order they must be pushed in), the root last.
async fn walk(r: &CopyRequest<'_>) -> Result<Vec<ManifestNode>, CopyError> {
    let mut ordered = Vec::new();
    let mut seen = HashSet::new();
    // Depth-first, post-order, without recursion: (digest, depth, children listed yet).
    let mut stack = vec![(r.digest.clone(), 0usize, None::<ManifestNode>)];
    while let Some((digest, depth, fetched)) = stack.pop() {
        if let Some(node) = fetched {
            ordered.push(node);
            continue;
        }
        if !seen.insert(digest.clone()) {
            continue;
        }
        if depth > MAX_INDEX_DEPTH {
            return Err(CopyError::TooDeep {
                digest: r.digest.clone(),
            });
        }
        let (descriptor, bytes) = match r.source.get_manifest(r.source_repo, digest.as_str()).await
        {
            Ok(found) => found,
            Err(RegistryError::NotFound { .. }) if digest == *r.digest => {
                return Err(source_not_found(r));
            }
            Err(source) => {
                return Err(source_error(
                    r,
                    format!("reading manifest {digest}"),
                    source,
                ));
            }
        };
        let kind = ManifestKind::of(&descriptor.media_type);
        let children = match kind {
            Some(ManifestKind::Index) => referenced_descriptors(&descriptor.media_type, &bytes)
                .map_err(|source| CopyError::Manifest {
                    repo: r.source_repo.to_owned(),
                    digest: digest.clone(),
                    source,
                })?,
            Some(ManifestKind::Image) => Vec::new(),
            None => {
                return Err(CopyError::Manifest {
                    repo: r.source_repo.to_owned(),
                    digest,
                    source: ManifestError::UnsupportedMediaType(descriptor.media_type),
                });
            }
        };
        stack.push((digest, depth, Some(ManifestNode { descriptor, bytes })));
        // Reversed so that children come out in index order.
        for child in children.into_iter().rev() {
            stack.push((child.digest, depth + 1, None));
        }
    }
    Ok(ordered)
}

/// The distinct blobs (configs and layers) of the image manifests.
fn image_blobs(
    r: &CopyRequest<'_>,
    manifests: &[ManifestNode],
) -> Result<Vec<Descriptor>, CopyError> {
    let mut seen = HashSet::new();
    let mut blobs = Vec::new();
    for node in manifests {
        if ManifestKind::of(&node.descriptor.media_type) != Some(ManifestKind::Image) {
            continue;
        }
        let referenced =
            referenced_descriptors(&node.descriptor.media_type, &node.bytes).map_err(|source| {
                CopyError::Manifest {
                    repo: r.source_repo.to_owned(),
                    digest: node.descriptor.digest.clone(),
                    source,
                }
            })?;
        for blob in referenced {
            if seen.insert(blob.digest.clone()) {
                blobs.push(blob);
            }
        }
    }
    Ok(blobs)
}

/// What the tag names in the target now; a conflict with an immutable tag is found here,
/// before anything is copied.
async fn check_tag(r: &CopyRequest<'_>) -> Result<TagState, CopyError> {
    let Some(tag) = r.tag else {
        return Ok(TagState::Untagged);
    };
    let existing = r
        .target
        .head_manifest(r.target_repo, tag)
        .await
        .map_err(|e| target_error(r, format!("looking up tag {tag}"), e))?;
    Ok(match existing {
        None => TagState::Absent,
        Some(d) if d.digest == *r.digest => TagState::AlreadyThere,
        Some(d) if r.immutable_tags => {
            return Err(tag_conflict(r, tag, d.digest));
        }
        Some(d) => TagState::Replace(d.digest),
    })
}

/// The blobs the target lacks, largest first (the long copies start first); the others are
/// counted as skipped.
async fn missing_blobs(
    r: &CopyRequest<'_>,
    blobs: Vec<Descriptor>,
    progress: &CopyProgress,
) -> Result<Vec<Descriptor>, CopyError> {
    let found: Vec<(Descriptor, Option<u64>)> = futures::stream::iter(blobs)
        .map(|blob| async move {
            let size = r
                .target
                .head_blob(r.target_repo, &blob.digest)
                .await
                .map_err(|e| target_error(r, format!("looking up blob {}", blob.digest), e))?;
            Ok::<_, CopyError>((blob, size))
        })
        .buffered(HEAD_CONCURRENCY)
        .try_collect()
        .await?;
    let mut missing = Vec::new();
    for (blob, size) in found {
        match size {
            Some(size) if size == blob.size => {
                progress.0.blobs_skipped.fetch_add(1, Ordering::Relaxed);
                progress.0.bytes_skipped.fetch_add(size, Ordering::Relaxed);
                debug!(blob = %blob.digest, bytes = size, "blob already in the target");
            }
            Some(size) => {
                return Err(target_error(
                    r,
                    format!(
                        "blob {} has {size} bytes there, the manifest says {}",
                        blob.digest, blob.size
                    ),
                    RegistryError::SizeMismatch {
                        digest: blob.digest.clone(),
                        expected: blob.size,
                        actual: size,
                    },
                ));
            }
            None => missing.push(blob),
        }
    }
    missing.sort_by_key(|b| std::cmp::Reverse(b.size));
    Ok(missing)
}

/// Copies the missing blobs, `concurrency` at a time. `false` when the deadline stopped it
/// before every blob was copied (those in flight were finished).
async fn copy_blobs(
    r: &CopyRequest<'_>,
    options: &CopyOptions,
    progress: &CopyProgress,
    missing: Vec<Descriptor>,
) -> Result<bool, CopyError> {
    let concurrency = options.concurrency.max(1);
    let mut queue = missing.into_iter();
    let mut running = FuturesUnordered::new();
    let mut started = 0usize;
    loop {
        while running.len() < concurrency && queue.len() > 0 {
            let in_time = options.deadline.is_none_or(|d| Instant::now() < d);
            if !(in_time || (options.must_progress && started == 0)) {
                break;
            }
            let Some(blob) = queue.next() else { break };
            started += 1;
            running.push(copy_blob(r, options, progress, blob));
        }
        match running.next().await {
            Some(result) => result?,
            None => break,
        }
    }
    let left = queue.len();
    if left > 0 {
        info!(
            image = %r.digest,
            blobs_left = left,
            outcome = "paused",
            "deadline reached: the copy stops between blobs"
        );
    }
    Ok(left == 0)
}

/// Copies one blob, starting over (in a new upload session) after a temporary failure.
async fn copy_blob(
    r: &CopyRequest<'_>,
    options: &CopyOptions,
    progress: &CopyProgress,
    blob: Descriptor,
) -> Result<(), CopyError> {
    let started = Instant::now();
    let attempts = options.attempts.max(1);
    let mut attempt = 1;
    loop {
        match transfer_blob(r, options.upload, progress, &blob).await {
            Ok(()) => break,
            Err(e) if e.is_retryable() && attempt < attempts => {
                warn!(blob = %blob.digest, attempt, error = %e, "blob copy failed; starting it over");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
    let copied = progress
        .0
        .bytes_copied
        .fetch_add(blob.size, Ordering::Relaxed)
        + blob.size;
    let blobs = progress.0.blobs_copied.fetch_add(1, Ordering::Relaxed) + 1;
    let seconds = started.elapsed().as_secs_f64();
    info!(
        image = %r.digest,
        blob = %blob.digest,
        bytes = blob.size,
        seconds,
        mib_per_second = blob.size as f64 / 1_048_576.0 / seconds.max(1e-9),
        blobs_copied = blobs,
        bytes_copied = copied,
        "blob copied"
    );
    Ok(())
}

/// Streams one blob from the source into the target.
async fn transfer_blob(
    r: &CopyRequest<'_>,
    upload: UploadMode,
    progress: &CopyProgress,
    blob: &Descriptor,
) -> Result<(), CopyError> {
    let stream = r
        .source
        .get_blob_stream(r.source_repo, &blob.digest)
        .await
        .map_err(|e| source_error(r, format!("reading blob {}", blob.digest), e))?;
    if let Some(announced) = stream.content_length().filter(|len| *len != blob.size) {
        return Err(corrupt(
            r,
            blob,
            RegistryError::SizeMismatch {
                digest: blob.digest.clone(),
                expected: blob.size,
                actual: announced,
            },
        ));
    }
    // Marks errors that come from the source, which the upload returns as they are, and
    // counts what passes. The stream verifies itself at its end, before anything is committed.
    let source_failed = Arc::new(AtomicBool::new(false));
    let content = {
        let failed = Arc::clone(&source_failed);
        let counters = Arc::clone(&progress.0);
        VerifiedContent::from(stream).inspect(move |item| match item {
            Ok(chunk) => {
                counters
                    .bytes_streamed
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            Err(_) => failed.store(true, Ordering::Relaxed),
        })
    };
    let pushed = match upload {
        UploadMode::Monolithic => {
            r.target
                .push_blob_stream(r.target_repo, &blob.digest, blob.size, content)
                .await
        }
        UploadMode::Chunked { chunk_bytes } => {
            r.target
                .push_verified_blob_chunked(r.target_repo, blob.size, content, chunk_bytes)
                .await
        }
    };
    match pushed {
        Ok(()) => Ok(()),
        // The bytes read from the source do not hash to the digest or have the wrong length,
        // whichever side noticed first: the source's content is bad.
        Err(e @ (RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. })) => {
            Err(corrupt(r, blob, e))
        }
        Err(e) if source_failed.load(Ordering::Relaxed) => {
            Err(source_error(r, format!("reading blob {}", blob.digest), e))
        }
        Err(e) => Err(target_error(
            r,
            format!("uploading blob {}", blob.digest),
            e,
        )),
    }
}

/// Pushes each manifest by digest unless the target has it, children before their index.
async fn push_manifests(r: &CopyRequest<'_>, manifests: &[ManifestNode]) -> Result<u32, CopyError> {
    let mut pushed = 0;
    for node in manifests {
        let digest = &node.descriptor.digest;
        let present = r
            .target
            .head_manifest(r.target_repo, digest.as_str())
            .await
            .map_err(|e| target_error(r, format!("looking up manifest {digest}"), e))?;
        if present.is_some() {
            debug!(manifest = %digest, "manifest already in the target");
            continue;
        }
        let stored = r
            .target
            .put_manifest(
                r.target_repo,
                digest.as_str(),
                &node.descriptor.media_type,
                node.bytes.clone(),
            )
            .await
            .map_err(|e| target_error(r, format!("pushing manifest {digest}"), e))?;
        if stored != *digest {
            return Err(CopyError::Verification {
                registry: r.target.host().to_owned(),
                repo: r.target_repo.to_owned(),
                reference: digest.to_string(),
                expected: digest.clone(),
                actual: Some(stored),
            });
        }
        pushed += 1;
        debug!(manifest = %digest, media_type = %node.descriptor.media_type, "manifest pushed");
    }
    Ok(pushed)
}

/// Applies the tag, last. A registry that enforces immutability itself (ECR) may refuse a tag
/// another push moved meanwhile: that is the same conflict, named with what the tag holds now.
async fn apply_tag(
    r: &CopyRequest<'_>,
    root: &ManifestNode,
    state: TagState,
) -> Result<Option<TagOutcome>, CopyError> {
    let (Some(tag), replaced) = (r.tag, state) else {
        return Ok(None);
    };
    let replaced = match replaced {
        TagState::Untagged => return Ok(None),
        TagState::AlreadyThere => return Ok(Some(TagOutcome::AlreadyThere)),
        TagState::Absent => None,
        TagState::Replace(old) => Some(old),
    };
    let put = r
        .target
        .put_manifest(
            r.target_repo,
            tag,
            &root.descriptor.media_type,
            root.bytes.clone(),
        )
        .await;
    match put {
        Ok(_) => {
            info!(image = %r.digest, tag, replaced = ?replaced, "tag applied");
            Ok(Some(TagOutcome::Applied { replaced }))
        }
        Err(e) if is_immutable_refusal(&e) => {
            let now = r
                .target
                .head_manifest(r.target_repo, tag)
                .await
                .ok()
                .flatten();
            match now {
                Some(d) if d.digest != *r.digest => Err(tag_conflict(r, tag, d.digest)),
                _ => Err(target_error(r, format!("tagging {tag}"), e)),
            }
        }
        Err(e) => Err(target_error(r, format!("tagging {tag}"), e)),
    }
}

/// ECR's refusal to move an immutable tag (`TAG_INVALID`, "... cannot be overwritten because
/// the repository is immutable").
fn is_immutable_refusal(e: &RegistryError) -> bool {
    matches!(e, RegistryError::Http { code, excerpt, .. }
        if code.as_deref() == Some("TAG_INVALID") || excerpt.contains("immutable"))
}

/// Reads the image back from the target by its tag (or digest): it must be the source digest.
async fn verify(r: &CopyRequest<'_>) -> Result<(), CopyError> {
    let reference = r.tag.map_or_else(|| r.digest.to_string(), str::to_owned);
    let found = r
        .target
        .head_manifest(r.target_repo, &reference)
        .await
        .map_err(|e| target_error(r, format!("reading back {reference}"), e))?;
    match found {
        Some(d) if d.digest == *r.digest => Ok(()),
        other => Err(CopyError::Verification {
            registry: r.target.host().to_owned(),
            repo: r.target_repo.to_owned(),
            reference,
            expected: r.digest.clone(),
            actual: other.map(|d| d.digest),
        }),
    }
}

fn source_not_found(r: &CopyRequest<'_>) -> CopyError {
    CopyError::SourceNotFound {
        registry: r.source.host().to_owned(),
        repo: r.source_repo.to_owned(),
        digest: r.digest.clone(),
    }
}

fn tag_conflict(r: &CopyRequest<'_>, tag: &str, existing: Digest) -> CopyError {
    CopyError::TagConflict {
        registry: r.target.host().to_owned(),
        repo: r.target_repo.to_owned(),
        tag: tag.to_owned(),
        existing,
        wanted: r.digest.clone(),
    }
}

fn corrupt(r: &CopyRequest<'_>, blob: &Descriptor, source: RegistryError) -> CopyError {
    CopyError::CorruptBlob {
        registry: r.source.host().to_owned(),
        repo: r.source_repo.to_owned(),
        digest: blob.digest.clone(),
        source: Box::new(source),
    }
}

fn source_error(r: &CopyRequest<'_>, what: String, source: RegistryError) -> CopyError {
    CopyError::Source {
        registry: r.source.host().to_owned(),
        repo: r.source_repo.to_owned(),
        what,
        source: Box::new(source),
    }
}

fn target_error(r: &CopyRequest<'_>, what: String, source: RegistryError) -> CopyError {
    CopyError::Target {
        registry: r.target.host().to_owned(),
        repo: r.target_repo.to_owned(),
        what,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_what_an_operator_needs() {
        let wanted = Digest::sha256_of(b"new");
        let existing = Digest::sha256_of(b"old");
        let conflict = CopyError::TagConflict {
            registry: "333333333333.dkr.ecr.eu-west-1.amazonaws.com".into(),
            repo: "orders/web".into(),
            tag: "1.4.2".into(),
            existing: existing.clone(),
            wanted: wanted.clone(),
        };
        let text = conflict.to_string();
        assert!(text.contains(existing.as_str()) && text.contains(wanted.as_str()));
        assert!(text.contains("orders/web") && text.contains("1.4.2"));
        assert!(!conflict.is_retryable());

        let missing = CopyError::Verification {
            registry: "r".into(),
            repo: "a".into(),
            reference: "1".into(),
            expected: wanted,
            actual: None,
        };
        assert!(missing.to_string().contains("names nothing"));
    }

    #[test]
    fn only_transport_and_server_trouble_is_worth_another_run() {
        let throttled = CopyError::Target {
            registry: "r".into(),
            repo: "a".into(),
            what: "uploading blob".into(),
            source: Box::new(RegistryError::Http {
                method: "PATCH".into(),
                path: "/v2/a/blobs/uploads/x".into(),
                status: 429,
                code: None,
                excerpt: String::new(),
            }),
        };
        assert!(throttled.is_retryable());
        let corrupt = CopyError::CorruptBlob {
            registry: "r".into(),
            repo: "a".into(),
            digest: Digest::sha256_of(b"x"),
            source: Box::new(RegistryError::DigestMismatch {
                expected: Digest::sha256_of(b"x"),
                actual: Digest::sha256_of(b"y"),
            }),
        };
        assert!(!corrupt.is_retryable());
    }

    #[test]
    fn ecrs_immutable_tag_refusal_is_recognised() {
        let ecr = RegistryError::Http {
            method: "PUT".into(),
            path: "/v2/orders/web/manifests/1.4.2".into(),
            status: 400,
            code: Some("TAG_INVALID".into()),
            excerpt: "The image tag '1.4.2' already exists in the 'orders/web' repository and \
                      cannot be overwritten because the repository is immutable."
                .into(),
        };
        assert!(is_immutable_refusal(&ecr));
        let other = RegistryError::Http {
            method: "PUT".into(),
            path: "/v2/a/manifests/1".into(),
            status: 400,
            code: Some("MANIFEST_BLOB_UNKNOWN".into()),
            excerpt: "blob unknown".into(),
        };
        assert!(!is_immutable_refusal(&other));
    }

    #[test]
    fn a_report_serialises_for_the_store_and_logs() {
        let report = CopyReport {
            digest: Digest::sha256_of(b"m"),
            media_type: super::super::media_type::OCI_INDEX.into(),
            state: CopyState::Complete,
            manifests: 3,
            manifests_pushed: 3,
            blobs: 6,
            blobs_copied: 4,
            blobs_skipped: 2,
            bytes_copied: 10,
            bytes_skipped: 5,
            tag: Some("1.0".into()),
            tag_outcome: Some(TagOutcome::Applied { replaced: None }),
            seconds: 0.5,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["state"], "complete");
        assert_eq!(
            json["tag_outcome"]["applied"]["replaced"],
            serde_json::Value::Null
        );
    }
}
