//! Chunked blob uploads that ECR accepts: `POST` an upload, then one `PATCH` per part of 5 to
//! 10 MiB, then `PUT ?digest=` with no body, each part streamed straight from its source.
//!
//! What ECR does differently from the distribution spec, and how this copes:
//! - it answers a part's `PATCH` with `201 Created` where the spec says `202 Accepted`: both
//!   are taken (any 2xx with a `Location`);
//! - its parts are S3 multipart parts underneath: every part but the last must be at least
//!   5 MiB, so [`UploadMode::chunked`] refuses smaller parts;
//! - its `Range` answer can stay stuck at the first part's end although later parts are stored
//!   (aws/containers-roadmap#2831): the offset is tracked from what was sent, never from `Range`;
//! - a session cannot be restarted from byte 0 after a failure: a failed upload is abandoned
//!   and the caller starts a new one.
//!
//! Nothing is buffered: each `PATCH` body pulls exactly its part's bytes from the source stream
//! (a chunk that straddles two parts is split without copying), so memory does not grow with
//! the part or the blob size. The content is hashed on the way, and the upload is only
//! committed (the final `PUT`) once the source stream has ended cleanly and the hash matches:
//! a source that turns out corrupt at its last byte leaves nothing behind. Content that
//! verifies itself ([`VerifiedContent`], a registry's [`BlobStream`]) is not hashed a second
//! time: its own check, at its end, comes before the commit all the same.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};

use super::{
    BlobStream, Digest, Digester, Registry, RegistryError, UploadStart, check_repository,
    content_digest, header_str, invalid_response, lock, push_scope, resolve_location,
};

/// ECR's smallest part (every part but the last): S3's multipart minimum.
pub const MIN_CHUNK_BYTES: u64 = 5 * 1024 * 1024;
/// The largest part shipgate sends: ECR documents parts of up to 10 MiB for its layer uploads.
pub const MAX_CHUNK_BYTES: u64 = 10 * 1024 * 1024;
/// The default part size: well inside ECR's window, few enough requests for large layers.
pub const DEFAULT_CHUNK_BYTES: u64 = 8 * 1024 * 1024;

/// How a blob is uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// `POST`, then one `PUT ?digest=` streaming the whole blob
    /// ([`Registry::push_blob_stream`]).
    Monolithic,
    /// `POST`, one `PATCH` per part of `chunk_bytes`, then `PUT ?digest=`
    /// ([`Registry::push_blob_chunked`]).
    Chunked { chunk_bytes: u64 },
}

/// A part size outside what ECR accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an upload part of {0} bytes is outside ECR's window of {MIN_CHUNK_BYTES} to {MAX_CHUNK_BYTES} bytes (5 to 10 MiB)"
)]
pub struct ChunkSizeError(pub u64);

impl UploadMode {
    /// Chunked uploads with parts of `chunk_bytes`, which must be 5 to 10 MiB.
    pub fn chunked(chunk_bytes: u64) -> Result<Self, ChunkSizeError> {
        if (MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&chunk_bytes) {
            Ok(Self::Chunked { chunk_bytes })
        } else {
            Err(ChunkSizeError(chunk_bytes))
        }
    }
}

impl Default for UploadMode {
    fn default() -> Self {
        Self::Chunked {
            chunk_bytes: DEFAULT_CHUNK_BYTES,
        }
    }
}

type Source = Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

/// The source stream shared by the parts' request bodies, one after the other.
struct Feed {
    source: Source,
    /// The rest of a chunk that straddled the end of the previous part.
    leftover: Option<Bytes>,
    /// `None` when the source verifies itself.
    digester: Option<Digester>,
    /// The first error of the source (returned as is), or of the size check.
    error: Option<RegistryError>,
}

/// Blob content that checks itself against its digest as it streams, failing at its end if
/// the bytes do not match (a [`BlobStream`], observed or not): an upload of it needs no hash of
/// its own.
pub struct VerifiedContent {
    stream: Source,
    digest: Digest,
}

impl VerifiedContent {
    /// The digest the content is checked against.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Calls `f` with each item as it passes (counting bytes, noting a source failure); the
    /// items, and so the verification, are unchanged.
    pub fn inspect(self, f: impl FnMut(&Result<Bytes, RegistryError>) + Send + 'static) -> Self {
        Self {
            stream: Box::pin(futures::StreamExt::inspect(self.stream, f)),
            digest: self.digest,
        }
    }
}

impl From<BlobStream> for VerifiedContent {
    fn from(stream: BlobStream) -> Self {
        Self {
            digest: stream.digest().clone(),
            stream: Box::pin(stream),
        }
    }
}

impl Stream for VerifiedContent {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().stream.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for VerifiedContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedContent")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Uploads a blob of `size` bytes from `content` in parts of `chunk_bytes` (see the module
    /// documentation). The content is hashed as it passes: bytes that do not hash to `digest`,
    /// or a source that is shorter or longer than `size`, abandon the upload before it is
    /// committed; an error of `content` itself is returned as is.
    pub async fn push_blob_chunked<S>(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        content: S,
        chunk_bytes: u64,
    ) -> Result<(), RegistryError>
    where
        S: Stream<Item = Result<Bytes, RegistryError>> + Send + 'static,
    {
        self.push_chunked(repo, digest, size, Box::pin(content), chunk_bytes, true)
            .await
    }

    /// [`Registry::push_blob_chunked`] for content that verifies itself (a blob streamed from
    /// another registry): the same parts and checks, without hashing the bytes a second time.
    pub async fn push_verified_blob_chunked(
        &self,
        repo: &str,
        size: u64,
        content: VerifiedContent,
        chunk_bytes: u64,
    ) -> Result<(), RegistryError> {
        let digest = content.digest.clone();
        self.push_chunked(repo, &digest, size, content.stream, chunk_bytes, false)
            .await
    }

    async fn push_chunked(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        content: Source,
        chunk_bytes: u64,
        hash: bool,
    ) -> Result<(), RegistryError> {
        check_repository(repo)?;
        let chunk_bytes = chunk_bytes.max(1);
        let scope = push_scope(repo);
        let UploadStart::Session(mut location) = self.start_upload(repo, &scope, None).await?
        else {
            return Err(RegistryError::InvalidResponse {
                method: "POST".into(),
                path: format!("/v2/{repo}/blobs/uploads/"),
                reason: "upload start answered 201 without a mount".into(),
            });
        };
        let feed = Arc::new(Mutex::new(Feed {
            source: content,
            leftover: None,
            digester: hash.then(Digester::new),
            error: None,
        }));

        let mut offset = 0u64;
        while offset < size {
            let len = chunk_bytes.min(size - offset);
            match self
                .patch_part(&location, &scope, &feed, digest, offset, len)
                .await
            {
                Ok(next) => location = next,
                Err(e) => {
                    self.abandon_upload(location, &scope).await;
                    return Err(e);
                }
            }
            offset += len;
        }

        // Every byte announced was sent: the source must end here, cleanly (a verifying
        // source reports a digest mismatch only now, at its end).
        let ended = {
            let feed = Arc::clone(&feed);
            futures::future::poll_fn(move |cx| {
                let mut f = lock(&feed);
                if let Some(rest) = f.leftover.take().filter(|b| !b.is_empty()) {
                    return Poll::Ready(Err(RegistryError::SizeMismatch {
                        digest: digest.clone(),
                        expected: size,
                        actual: size + rest.len() as u64,
                    }));
                }
                loop {
                    match f.source.as_mut().poll_next(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(None) => return Poll::Ready(Ok(())),
                        Poll::Ready(Some(Ok(chunk))) if chunk.is_empty() => continue,
                        Poll::Ready(Some(Ok(chunk))) => {
                            return Poll::Ready(Err(RegistryError::SizeMismatch {
                                digest: digest.clone(),
                                expected: size,
                                actual: size + chunk.len() as u64,
                            }));
                        }
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    }
                }
            })
            .await
        };
        let digester = lock(&feed).digester.take();
        let checked = ended.and_then(|()| match digester.map(Digester::finish) {
            Some(actual) if actual != *digest => Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual,
            }),
            _ => Ok(()),
        });
        if let Err(e) = checked {
            self.abandon_upload(location, &scope).await;
            return Err(e);
        }

        let mut commit = location.clone();
        commit
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let response = self
            .send(Method::PUT, commit, &scope, |r| {
                r.header(CONTENT_LENGTH, 0).body(Bytes::new())
            })
            .await?;
        if !response.status().is_success() {
            let error = self.unexpected(Method::PUT, response).await;
            self.abandon_upload(location, &scope).await;
            return Err(error);
        }
        match content_digest(Method::PUT, &response)? {
            Some(announced) if announced != *digest => Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual: announced,
            }),
            _ => Ok(()),
        }
    }

    /// Sends bytes `offset..offset + len` of the feed as one part; returns the next location.
    async fn patch_part(
        &self,
        location: &Url,
        scope: &str,
        feed: &Arc<Mutex<Feed>>,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<Url, RegistryError> {
        let body = part_body(Arc::clone(feed), digest.clone(), offset, len);
        // Not through `send`: a streamed body cannot be sent twice, so an expired token is an
        // error here; the upload's POST just refreshed it.
        let sent = self
            .request(Method::PATCH, location.clone(), scope)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, len)
            .header("content-range", format!("{offset}-{}", offset + len - 1))
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await;
        if let Some(e) = lock(feed).error.take() {
            return Err(e);
        }
        let response = sent.map_err(RegistryError::transport)?;
        let status = response.status();
        // 202 per the spec, 201 from ECR; some registries answer 204.
        if !matches!(
            status,
            StatusCode::ACCEPTED | StatusCode::CREATED | StatusCode::NO_CONTENT
        ) {
            return Err(self.unexpected(Method::PATCH, response).await);
        }
        let next = header_str(response.headers(), LOCATION.as_str())
            .ok_or_else(|| invalid_response(Method::PATCH, &response, "no Location header"))?;
        resolve_location(location, next)
            .ok_or_else(|| invalid_response(Method::PATCH, &response, "unusable Location header"))
    }

    /// Abandons an upload session at its current location; best effort, since registries
    /// expire sessions anyway.
    async fn abandon_upload(&self, location: Url, scope: &str) {
        let _ = self.request(Method::DELETE, location, scope).send().await;
    }
}

/// The body of one part: exactly `len` bytes pulled from the feed, hashed as they go.
fn part_body(
    feed: Arc<Mutex<Feed>>,
    digest: Digest,
    offset: u64,
    len: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut remaining = len;
    futures::stream::poll_fn(move |cx| {
        if remaining == 0 {
            return Poll::Ready(None);
        }
        let mut f = lock(&feed);
        let mut chunk = loop {
            if let Some(leftover) = f.leftover.take().filter(|b| !b.is_empty()) {
                break leftover;
            }
            match f.source.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) if chunk.is_empty() => continue,
                Poll::Ready(Some(Ok(chunk))) => break chunk,
                Poll::Ready(Some(Err(e))) => {
                    let message = e.to_string();
                    f.error.get_or_insert(e);
                    return Poll::Ready(Some(Err(std::io::Error::other(message))));
                }
                Poll::Ready(None) => {
                    let sent = offset + len - remaining;
                    let e = RegistryError::SizeMismatch {
                        digest: digest.clone(),
                        expected: offset + len,
                        actual: sent,
                    };
                    let message = e.to_string();
                    f.error.get_or_insert(e);
                    return Poll::Ready(Some(Err(std::io::Error::other(message))));
                }
            }
        };
        if chunk.len() as u64 > remaining {
            // `remaining` < chunk.len() <= usize::MAX here.
            let rest = chunk.split_off(usize::try_from(remaining).unwrap_or(chunk.len()));
            f.leftover = Some(rest);
        }
        remaining -= chunk.len() as u64;
        if let Some(digester) = f.digester.as_mut() {
            digester.update(&chunk);
        }
        Poll::Ready(Some(Ok(chunk)))
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[test]
    fn part_sizes_must_fit_ecrs_window() {
        assert_eq!(
            UploadMode::chunked(5 * 1024 * 1024),
            Ok(UploadMode::Chunked {
                chunk_bytes: MIN_CHUNK_BYTES
            })
        );
        assert!(UploadMode::chunked(10 * 1024 * 1024).is_ok());
        assert!(UploadMode::chunked(4 * 1024 * 1024).is_err());
        assert!(UploadMode::chunked(10 * 1024 * 1024 + 1).is_err());
        assert!(UploadMode::chunked(0).is_err());
        assert_eq!(
            UploadMode::default(),
            UploadMode::Chunked {
                chunk_bytes: DEFAULT_CHUNK_BYTES
            }
        );
    }

    fn feed_of(chunks: Vec<Result<Bytes, RegistryError>>) -> Arc<Mutex<Feed>> {
        Arc::new(Mutex::new(Feed {
            source: Box::pin(futures::stream::iter(chunks)),
            leftover: None,
            digester: Some(Digester::new()),
            error: None,
        }))
    }

    async fn collect(
        body: impl Stream<Item = Result<Bytes, std::io::Error>>,
    ) -> Result<Vec<u8>, std::io::Error> {
        let mut out = Vec::new();
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn parts_split_chunks_at_their_boundaries_without_losing_bytes() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let chunks = data
            .chunks(300)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .chain([Ok(Bytes::new())])
            .collect();
        let feed = feed_of(chunks);
        let digest = Digest::sha256_of(&data);
        let mut sent = Vec::new();
        for (offset, len) in [(0, 250), (250, 250), (500, 250), (750, 250)] {
            let part = collect(part_body(Arc::clone(&feed), digest.clone(), offset, len))
                .await
                .unwrap();
            assert_eq!(part.len() as u64, len);
            sent.extend(part);
        }
        assert_eq!(sent, data);
        let f = lock(&feed);
        assert!(f.leftover.is_none());
        assert_eq!(f.digester.clone().map(Digester::finish), Some(digest));
    }

    #[tokio::test]
    async fn a_short_or_failing_source_fails_the_part_and_keeps_the_error() {
        let digest = Digest::sha256_of(b"x");
        let feed = feed_of(vec![Ok(Bytes::from_static(b"abc"))]);
        assert!(
            collect(part_body(Arc::clone(&feed), digest.clone(), 0, 10))
                .await
                .is_err()
        );
        assert!(matches!(
            lock(&feed).error,
            Some(RegistryError::SizeMismatch {
                expected: 10,
                actual: 3,
                ..
            })
        ));

        let feed = feed_of(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual: Digest::sha256_of(b"y"),
            }),
        ]);
        assert!(
            collect(part_body(Arc::clone(&feed), digest, 0, 10))
                .await
                .is_err()
        );
        assert!(matches!(
            lock(&feed).error,
            Some(RegistryError::DigestMismatch { .. })
        ));
    }
}
