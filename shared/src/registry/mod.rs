//! An OCI distribution API client for ECR registries (and the local registries that stand in
//! for them).
//!
//! [`Registry`] speaks the distribution spec's HTTP API to one registry: manifests by tag or
//! digest, blobs by digest, streamed both ways so no layer is ever held in memory, with every
//! piece of content checked against its digest. [`ecr_registry`] builds one from ECR's
//! `GetAuthorizationToken`; `SHIPGATE_REGISTRY_ENDPOINTS` can map an ECR host to another URL,
//! which is how the local stack points an account's registry at a local one.
//!
//! Intake uses it to check that a release's images exist; image promotion builds on it:
//! [`copy_image`] copies an image by digest between registries (HEAD to skip what is there,
//! [`referenced_descriptors`] to walk an image, blob streams piped from one registry into
//! another, in the upload parts ECR accepts: [`UploadMode`]), and [`ensure_repository`] creates
//! a target repository with the source repository's settings.

mod auth;
mod copy;
mod digest;
mod ecr;
mod error;
mod manifest;
mod reference;
mod repository;
mod upload;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use reqwest::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

pub use auth::{BearerToken, Challenge, Credentials, parse_challenges, parse_token_response};
pub use copy::{
    CopyError, CopyOptions, CopyProgress, CopyReport, CopyRequest, CopyState, MAX_INDEX_DEPTH,
    ProgressSnapshot, TagOutcome, copy_image,
};
pub use digest::{Digest, DigestError, Digester};
pub use ecr::{decode_authorization_token, ecr_registry, resolve_endpoint};
pub use error::{RegistryError, SdkErrorBox};
pub use manifest::{
    Descriptor, MANIFEST_ACCEPT, ManifestError, ManifestKind, Platform, manifest_kind, media_type,
    referenced_descriptors,
};
pub use reference::{NameError, Reference, check_repository};
pub use repository::{
    RepositorySettings, TargetRepository, describe_repository, ensure_repository,
};
pub use upload::{
    ChunkSizeError, DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, UploadMode,
    VerifiedContent,
};

/// Largest manifest accepted (the distribution registry's and ECR's own limit is 4 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
const MAX_TOKEN_RESPONSE_BYTES: u64 = 64 * 1024;
const MAX_ERROR_BODY_BYTES: u64 = 16 * 1024;
const ERROR_EXCERPT_CHARS: usize = 300;
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// A client for one registry. Cheap to clone: clones share the HTTP client and cached tokens.
///
/// Pass the process's one `reqwest::Client`, with its default redirect policy: registries
/// (ECR included) redirect blob downloads to object storage, and reqwest drops the
/// `Authorization` header when a redirect leaves the registry's host.
#[derive(Debug, Clone)]
pub struct Registry {
    host: String,
    endpoint: Url,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    tokens: Arc<Mutex<HashMap<String, BearerToken>>>,
}

impl Registry {
    /// A client for the registry at `endpoint` (`scheme://host[:port]`). `credentials` are sent
    /// as Basic auth, and to the token service if the registry answers with a Bearer challenge.
    pub fn new(
        endpoint: &str,
        credentials: Option<Credentials>,
        http: reqwest::Client,
    ) -> Result<Self, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidEndpoint {
            url: endpoint.into(),
            reason: reason.into(),
        };
        let url = Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        let Some(host) = url.host_str() else {
            return Err(invalid("no host"));
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("credentials do not belong in the URL"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("expected scheme://host[:port] with no path"));
        }
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Self {
            host,
            endpoint: url,
            http,
            credentials,
            tokens: Arc::default(),
        })
    }

    /// Names the registry by `host` in image references while still talking to the endpoint
    /// (an ECR host served by a local registry).
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// The registry's name in image references (`222222222222.dkr.ecr.eu-west-1.amazonaws.com`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// `host/repo@digest`, the reference a task definition or function should run.
    pub fn image_reference(&self, repo: &str, digest: &Digest) -> String {
        format!("{}/{repo}@{digest}", self.host)
    }

    /// Checks that the registry answers the distribution API and accepts the credentials
    /// (`GET /v2/`).
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let url = self.url("/v2/")?;
        let response = self.send(Method::GET, url, "", |r| r).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.unexpected(Method::GET, response).await)
        }
    }

    /// The descriptor of a manifest, `None` if the repository or manifest does not exist. When
    /// `reference` is a digest, the registry's answer must name that digest.
    pub async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Descriptor>, RegistryError> {
        let reference = self.manifest_reference(repo, reference)?;
        let Some(response) = self.fetch_manifest(Method::HEAD, repo, &reference).await? else {
            return Ok(None);
        };
        let headers = response.headers();
        let media_type = header_str(headers, CONTENT_TYPE.as_str())
            .map(manifest::essence)
            .filter(|mt| ManifestKind::of(mt).is_some());
        let digest = content_digest(Method::HEAD, &response)?;
        let size = content_length(headers);
        let (Some(media_type), Some(digest), Some(size)) = (media_type, digest, size) else {
            // Not every registry puts all three in a HEAD answer: read the manifest instead.
            return match self.get_manifest_checked(repo, &reference).await {
                Ok((descriptor, _)) => Ok(Some(descriptor)),
                Err(RegistryError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            };
        };
        if let Some(expected) = reference.digest().filter(|e| **e != digest) {
            return Err(RegistryError::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
            });
        }
        Ok(Some(Descriptor::new(media_type, digest, size)))
    }

    /// A manifest and its descriptor. The body is hashed: it must equal `reference` when that
    /// is a digest, and the registry's `Docker-Content-Digest` when it sends one.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Descriptor, Bytes), RegistryError> {
        let reference = self.manifest_reference(repo, reference)?;
        self.get_manifest_checked(repo, &reference).await
    }

    async fn get_manifest_checked(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<(Descriptor, Bytes), RegistryError> {
        let Some(response) = self.fetch_manifest(Method::GET, repo, reference).await? else {
            return Err(RegistryError::NotFound {
                repo: repo.into(),
                reference: reference.to_string(),
            });
        };
        let announced = content_digest(Method::GET, &response)?;
        let served_type = header_str(response.headers(), CONTENT_TYPE.as_str())
            .map(|ct| manifest::essence(ct).to_owned());
        let body = read_limited(response, MAX_MANIFEST_BYTES, "manifest").await?;
        let actual = Digest::sha256_of(&body);
        for expected in [reference.digest(), announced.as_ref()]
            .into_iter()
            .flatten()
        {
            if *expected != actual {
                return Err(RegistryError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let media_type = match served_type {
            Some(mt) if ManifestKind::of(&mt).is_some() => mt,
            served => manifest::declared_media_type(&body)
                .or(served)
                .unwrap_or_else(|| "application/octet-stream".into()),
        };
        let descriptor = Descriptor::new(media_type, actual, body.len() as u64);
        Ok((descriptor, body))
    }

    /// Pushes a manifest under `reference` (a tag, or its own digest) and returns its digest,
    /// checked against the registry's `Docker-Content-Digest`. A digest reference that does not
    /// match the bytes is refused before anything is sent. Every blob and child manifest it
    /// references must already be in the repository.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, RegistryError> {
        let reference = self.manifest_reference(repo, reference)?;
        let digest = Digest::sha256_of(&bytes);
        if let Some(expected) = reference.digest().filter(|e| **e != digest) {
            return Err(RegistryError::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
            });
        }
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(RegistryError::TooLarge {
                what: "manifest",
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let response = self
            .send(Method::PUT, url, &push_scope(repo), |r| {
                r.header(CONTENT_TYPE, media_type).body(bytes.clone())
            })
            .await?;
        if !response.status().is_success() {
            return Err(self.unexpected(Method::PUT, response).await);
        }
        match content_digest(Method::PUT, &response)? {
            Some(announced) if announced != digest => Err(RegistryError::DigestMismatch {
                expected: digest,
                actual: announced,
            }),
            _ => Ok(digest),
        }
    }

    /// The size of a blob, `None` if the repository does not have it.
    pub async fn head_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        check_repository(repo)?;
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        let Some(response) = self.fetch(Method::HEAD, url, repo, |r| r).await? else {
            return Ok(None);
        };
        if let Some(announced) = content_digest(Method::HEAD, &response)?.filter(|a| a != digest) {
            return Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual: announced,
            });
        }
        content_length(response.headers())
            .map(Some)
            .ok_or_else(|| invalid_response(Method::HEAD, &response, "no Content-Length"))
    }

    /// A blob's content as a stream of chunks. The stream checks the content as it passes: its
    /// last item is an error if the bytes do not hash to `digest` or are not as long as
    /// announced, so a consumer must not commit what it read before the stream has ended.
    pub async fn get_blob_stream(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<BlobStream, RegistryError> {
        check_repository(repo)?;
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        match self.fetch(Method::GET, url, repo, |r| r).await? {
            Some(response) => Ok(BlobStream::new(response, digest.clone())),
            None => Err(RegistryError::NotFound {
                repo: repo.into(),
                reference: digest.to_string(),
            }),
        }
    }

    /// Uploads a blob of `size` bytes from `content` (`POST` an upload, then one `PUT` with the
    /// streamed body and `?digest=`). The content is hashed on the way: bytes that do not match
    /// `digest` give [`RegistryError::DigestMismatch`], whatever the registry says; an error
    /// from `content` itself (a source registry's stream) is returned as is.
    pub async fn push_blob_stream<S>(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        content: S,
    ) -> Result<(), RegistryError>
    where
        S: Stream<Item = Result<Bytes, RegistryError>> + Send + 'static,
    {
        check_repository(repo)?;
        let scope = push_scope(repo);
        let session = self.start_upload(repo, &scope, None).await?;
        let UploadStart::Session(mut upload) = session else {
            return Err(RegistryError::InvalidResponse {
                method: "POST".into(),
                path: format!("/v2/{repo}/blobs/uploads/"),
                reason: "upload start answered 201 without a mount".into(),
            });
        };
        upload
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());

        let progress = Arc::new(Mutex::new(UploadProgress::default()));
        let watched = {
            let on_chunk = Arc::clone(&progress);
            let on_end = Arc::clone(&progress);
            let digest = digest.clone();
            content
                .map(move |item| {
                    let mut p = lock(&on_chunk);
                    let checked = item.and_then(|chunk| {
                        let seen = p.digester.len() + chunk.len() as u64;
                        if seen > size {
                            return Err(RegistryError::SizeMismatch {
                                digest: digest.clone(),
                                expected: size,
                                actual: seen,
                            });
                        }
                        p.digester.update(&chunk);
                        Ok(chunk)
                    });
                    checked.map_err(|e| {
                        let message = e.to_string();
                        p.error.get_or_insert(e);
                        std::io::Error::other(message)
                    })
                })
                .chain(futures::stream::poll_fn(move |_| {
                    lock(&on_end).ended = true;
                    Poll::Ready(None)
                }))
        };
        let sent = self
            .request(Method::PUT, upload.clone(), &scope)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(watched))
            .send()
            .await;
        let UploadProgress {
            digester,
            error,
            ended,
        } = std::mem::take(&mut *lock(&progress));
        let sent_len = digester.len();
        let failure = match (&sent, error) {
            (_, Some(e)) => Some(e),
            _ if ended && sent_len != size => Some(RegistryError::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                actual: sent_len,
            }),
            _ => None,
        };
        if let Some(e) = failure {
            self.cancel_upload(upload, &scope).await;
            return Err(e);
        }
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                self.cancel_upload(upload, &scope).await;
                return Err(RegistryError::transport(e));
            }
        };
        let actual = digester.finish();
        if sent_len == size && actual != *digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        if !response.status().is_success() {
            return Err(self.unexpected(Method::PUT, response).await);
        }
        if sent_len != size {
            return Err(RegistryError::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                actual: sent_len,
            });
        }
        match content_digest(Method::PUT, &response)? {
            Some(announced) if announced != *digest => Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual: announced,
            }),
            _ => Ok(()),
        }
    }

    /// Uploads a small blob held in memory (a config) and returns its descriptor digest.
    pub async fn push_blob(&self, repo: &str, bytes: Bytes) -> Result<Digest, RegistryError> {
        let digest = Digest::sha256_of(&bytes);
        let size = bytes.len() as u64;
        self.push_blob_stream(
            repo,
            &digest,
            size,
            futures::stream::once(async { Ok(bytes) }),
        )
        .await?;
        Ok(digest)
    }

    /// Asks the registry to link a blob from another repository of the same registry without
    /// copying it. `false` means it would not (an ECR repository in another account, say); the
    /// blob must then be pushed.
    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from_repo: &str,
    ) -> Result<bool, RegistryError> {
        check_repository(repo)?;
        check_repository(from_repo)?;
        let scope = format!("{} {}", push_scope(repo), pull_scope(from_repo));
        match self
            .start_upload(repo, &scope, Some((digest, from_repo)))
            .await?
        {
            UploadStart::Mounted => Ok(true),
            UploadStart::Session(upload) => {
                self.cancel_upload(upload, &scope).await;
                Ok(false)
            }
        }
    }

    async fn start_upload(
        &self,
        repo: &str,
        scope: &str,
        mount: Option<(&Digest, &str)>,
    ) -> Result<UploadStart, RegistryError> {
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        if let Some((digest, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", digest.as_str())
                .append_pair("from", from);
        }
        let response = self
            .send(Method::POST, url.clone(), scope, |r| {
                r.header(CONTENT_LENGTH, 0).body(Bytes::new())
            })
            .await?;
        let status = response.status();
        // 201 means the mount happened. ECR also answers 201 where the spec says 202, so without
        // a mount request, 201 with a Location is an upload session like 202.
        if status == StatusCode::CREATED && mount.is_some() {
            return Ok(UploadStart::Mounted);
        }
        if status != StatusCode::ACCEPTED && status != StatusCode::CREATED {
            return Err(self.unexpected(Method::POST, response).await);
        }
        let location = header_str(response.headers(), LOCATION.as_str())
            .ok_or_else(|| invalid_response(Method::POST, &response, "no Location header"))?;
        let upload = resolve_location(&url, location)
            .ok_or_else(|| invalid_response(Method::POST, &response, "unusable Location header"))?;
        Ok(UploadStart::Session(upload))
    }

    /// Abandons an upload session; best effort, since the registry expires them anyway.
    async fn cancel_upload(&self, upload: Url, scope: &str) {
        let mut upload = upload;
        upload.query_pairs_mut().clear();
        let _ = self.request(Method::DELETE, upload, scope).send().await;
    }

    fn manifest_reference(&self, repo: &str, reference: &str) -> Result<Reference, RegistryError> {
        check_repository(repo)?;
        Ok(Reference::parse(reference)?)
    }

    fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.endpoint
            .join(path)
            .map_err(|e| RegistryError::InvalidEndpoint {
                url: self.endpoint.to_string(),
                reason: e.to_string(),
            })
    }

    /// A request carrying this registry's authorization, which is only ever sent to the
    /// registry's own origin (never to a `Location` elsewhere).
    fn request(&self, method: Method, url: Url, scope: &str) -> RequestBuilder {
        let same_origin = url.origin() == self.endpoint.origin();
        let builder = self.http.request(method, url);
        if !same_origin {
            return builder;
        }
        if let Some(token) = self.cached_token(scope) {
            builder.bearer_auth(token.secret())
        } else if let Some(c) = &self.credentials {
            builder.basic_auth(&c.username, Some(c.password()))
        } else {
            builder
        }
    }

    /// Sends a request; on a `401` with a Bearer challenge, gets a token for the challenge's
    /// scope and sends it again once. `configure` adds headers and body (called once per try).
    /// `method` on the manifest `reference` of `repo`, accepting every manifest type shipgate
    /// reads, as [`Registry::fetch`] answers.
    async fn fetch_manifest(
        &self,
        method: Method,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<Response>, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        self.fetch(method, url, repo, |r| r.header(ACCEPT, MANIFEST_ACCEPT))
            .await
    }

    /// `method` on `url` with pull access to `repo`: the answer when it succeeded, `None` when
    /// the registry does not have what it names (404), an error for any other answer.
    async fn fetch(
        &self,
        method: Method,
        url: Url,
        repo: &str,
        configure: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Option<Response>, RegistryError> {
        let response = self
            .send(method.clone(), url, &pull_scope(repo), configure)
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(response)),
            _ => Err(self.unexpected(method, response).await),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        scope: &str,
        configure: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let response = configure(self.request(method.clone(), url.clone(), scope))
            .send()
            .await
            .map_err(RegistryError::transport)?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .find(Challenge::is_bearer);
        let Some(challenge) = challenge else {
            return Err(self.unexpected(method, response).await);
        };
        self.fetch_token(&challenge, scope).await?;
        let retried = configure(self.request(method.clone(), url, scope))
            .send()
            .await
            .map_err(RegistryError::transport)?;
        if retried.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unexpected(method, retried).await);
        }
        Ok(retried)
    }

    fn cached_token(&self, scope: &str) -> Option<BearerToken> {
        lock(&self.tokens)
            .get(scope)
            .filter(|t| t.is_fresh(Instant::now()))
            .cloned()
    }

    async fn fetch_token(&self, challenge: &Challenge, scope: &str) -> Result<(), RegistryError> {
        let refuse = |reason: &str| RegistryError::InvalidResponse {
            method: "GET".into(),
            path: "(token realm)".into(),
            reason: reason.into(),
        };
        let realm = challenge
            .param("realm")
            .ok_or_else(|| refuse("Bearer challenge without a realm"))?;
        let mut url = Url::parse(realm).map_err(|_| refuse("Bearer realm is not a URL"))?;
        // Credentials go to the token service in clear: only over TLS, unless the registry
        // itself is plain HTTP (a local one).
        let allowed = match url.scheme() {
            "https" => true,
            "http" => self.endpoint.scheme() == "http",
            _ => false,
        };
        if !allowed {
            return Err(refuse("Bearer realm must be https"));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            let scopes = challenge.param("scope").unwrap_or(scope);
            for s in scopes.split_whitespace() {
                query.append_pair("scope", s);
            }
        }
        let mut request = self.http.get(url);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(c.password()));
        }
        let response = request.send().await.map_err(RegistryError::transport)?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: self.host.clone(),
                status: status.as_u16(),
                code: None,
            });
        }
        if !status.is_success() {
            return Err(self.unexpected(Method::GET, response).await);
        }
        let body = read_limited(response, MAX_TOKEN_RESPONSE_BYTES, "token response").await?;
        let token = parse_token_response(&body, Instant::now()).map_err(refuse)?;
        lock(&self.tokens).insert(scope.to_owned(), token);
        Ok(())
    }

    /// The error for an answer the operation did not expect.
    async fn unexpected(&self, method: Method, response: Response) -> RegistryError {
        let status = response.status();
        let path = response.url().path().to_owned();
        let body = read_limited(response, MAX_ERROR_BODY_BYTES, "error body")
            .await
            .unwrap_or_default();
        let (code, excerpt) = error_details(&body);
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return RegistryError::Unauthorized {
                registry: self.host.clone(),
                status: status.as_u16(),
                code,
            };
        }
        RegistryError::Http {
            method: method.to_string(),
            path,
            status: status.as_u16(),
            code,
            excerpt,
        }
    }
}

enum UploadStart {
    Mounted,
    Session(Url),
}

/// What the upload body saw, shared between the body stream and the uploading task.
#[derive(Default)]
struct UploadProgress {
    digester: Digester,
    /// The first error of the content stream (or of the size check), returned as is.
    error: Option<RegistryError>,
    /// The content stream ended (as opposed to the request stopping to read it).
    ended: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A blob download that verifies its content as it streams (see
/// [`Registry::get_blob_stream`]).
pub struct BlobStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    digest: Digest,
    content_length: Option<u64>,
    /// `None` once the stream has ended or failed.
    digester: Option<Digester>,
}

impl BlobStream {
    fn new(response: Response, digest: Digest) -> Self {
        let content_length = content_length(response.headers());
        Self {
            inner: Box::pin(response.bytes_stream()),
            digest,
            content_length,
            digester: Some(Digester::new()),
        }
    }

    /// The blob's size as the registry announced it.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    fn size_mismatch(&self, actual: u64) -> RegistryError {
        RegistryError::SizeMismatch {
            digest: self.digest.clone(),
            expected: self.content_length.unwrap_or_default(),
            actual,
        }
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("digest", &self.digest)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.digester.is_none() {
            return Poll::Ready(None);
        }
        let item = ready!(this.inner.as_mut().poll_next(cx));
        let Some(digester) = this.digester.as_mut() else {
            return Poll::Ready(None);
        };
        match item {
            Some(Ok(chunk)) => {
                digester.update(&chunk);
                let seen = digester.len();
                if this
                    .content_length
                    .is_some_and(|announced| seen > announced)
                {
                    this.digester = None;
                    return Poll::Ready(Some(Err(this.size_mismatch(seen))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(e)) => {
                this.digester = None;
                Poll::Ready(Some(Err(RegistryError::transport(e))))
            }
            None => {
                let Some(digester) = this.digester.take() else {
                    return Poll::Ready(None);
                };
                let seen = digester.len();
                if this
                    .content_length
                    .is_some_and(|announced| seen != announced)
                {
                    return Poll::Ready(Some(Err(this.size_mismatch(seen))));
                }
                let actual = digester.finish();
                if actual != this.digest {
                    return Poll::Ready(Some(Err(RegistryError::DigestMismatch {
                        expected: this.digest.clone(),
                        actual,
                    })));
                }
                Poll::Ready(None)
            }
        }
    }
}

/// The token scope for reading a repository.
fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// The token scope for writing to a repository.
fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// The upload URL a `Location` header names, resolved against the request's URL (registries
/// answer with absolute or relative locations). Only http(s) URLs are usable.
pub fn resolve_location(request_url: &Url, location: &str) -> Option<Url> {
    let url = request_url.join(location.trim()).ok()?;
    matches!(url.scheme(), "http" | "https").then_some(url)
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok())
}

/// The `Docker-Content-Digest` header, if present; present but malformed is an error.
fn content_digest(method: Method, response: &Response) -> Result<Option<Digest>, RegistryError> {
    header_str(response.headers(), DOCKER_CONTENT_DIGEST)
        .map(|v| {
            v.parse()
                .map_err(|_| invalid_response(method, response, "malformed Docker-Content-Digest"))
        })
        .transpose()
}

fn invalid_response(method: Method, response: &Response, reason: &str) -> RegistryError {
    RegistryError::InvalidResponse {
        method: method.to_string(),
        path: response.url().path().to_owned(),
        reason: reason.into(),
    }
}

/// Reads a whole response body, refusing more than `limit` bytes.
async fn read_limited(
    response: Response,
    limit: u64,
    what: &'static str,
) -> Result<Bytes, RegistryError> {
    let too_large = RegistryError::TooLarge { what, limit };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large);
    }
    let mut body = BytesMut::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(RegistryError::transport)?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The distribution spec error code (`{"errors":[{"code":...}]}`) and a short printable excerpt
/// of an error body.
fn error_details(body: &[u8]) -> (Option<String>, String) {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    let parsed = serde_json::from_slice::<Errors>(body).ok();
    let first = parsed.as_ref().and_then(|e| e.errors.first());
    let code = first.and_then(|e| e.code.clone());
    let text = match first.and_then(|e| e.message.as_deref()) {
        Some(message) => message.to_owned(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    let excerpt: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(ERROR_EXCERPT_CHARS)
        .collect();
    (code, excerpt.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(endpoint: &str) -> Result<Registry, RegistryError> {
        Registry::new(endpoint, None, reqwest::Client::new())
    }

    #[test]
    fn endpoints_are_scheme_host_and_port_only() {
        let r = registry("http://127.0.0.1:5002").unwrap();
        assert_eq!(r.host(), "127.0.0.1:5002");
        assert_eq!(r.endpoint().as_str(), "http://127.0.0.1:5002/");
        let r = registry("https://222222222222.dkr.ecr.eu-west-1.amazonaws.com/").unwrap();
        assert_eq!(r.host(), "222222222222.dkr.ecr.eu-west-1.amazonaws.com");
        for bad in [
            "127.0.0.1:5002",
            "ftp://host",
            "https://host/v2/",
            "https://user:pw@host",
            "https://host?x=1",
            "",
        ] {
            assert!(registry(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn image_references_use_the_registry_host_not_the_endpoint() {
        let r = registry("http://127.0.0.1:5002")
            .unwrap()
            .with_host("222222222222.dkr.ecr.eu-west-1.amazonaws.com");
        let d = Digest::sha256_of(b"m");
        assert_eq!(
            r.image_reference("team/app", &d),
            format!("222222222222.dkr.ecr.eu-west-1.amazonaws.com/team/app@{d}")
        );
    }

    #[test]
    fn locations_resolve_relative_and_absolute() {
        let post = Url::parse("http://127.0.0.1:5002/v2/app/blobs/uploads/").unwrap();
        let rel = resolve_location(&post, "/v2/app/blobs/uploads/abc?_state=xyz").unwrap();
        assert_eq!(
            rel.as_str(),
            "http://127.0.0.1:5002/v2/app/blobs/uploads/abc?_state=xyz"
        );
        let abs = resolve_location(
            &post,
            "https://1.dkr.ecr.eu-west-1.amazonaws.com/v2/app/blobs/uploads/u",
        )
        .unwrap();
        assert_eq!(abs.host_str(), Some("1.dkr.ecr.eu-west-1.amazonaws.com"));
        let bare = resolve_location(&post, "abc").unwrap();
        assert_eq!(bare.path(), "/v2/app/blobs/uploads/abc");
        assert!(resolve_location(&post, "file:///etc/passwd").is_none());
        assert!(resolve_location(&post, "javascript:alert(1)").is_none());
    }

    #[test]
    fn credentials_never_follow_a_location_to_another_origin() {
        let r = Registry::new(
            "http://127.0.0.1:5002",
            Some(Credentials::new("AWS", "pw")),
            reqwest::Client::new(),
        )
        .unwrap();
        let put_to = |url: &str| {
            r.request(Method::PUT, Url::parse(url).unwrap(), "s")
                .build()
                .unwrap()
        };
        let own = put_to("http://127.0.0.1:5002/v2/a/blobs/uploads/x");
        assert!(own.headers().contains_key("authorization"));
        let elsewhere = put_to("http://127.0.0.1:5003/v2/a/blobs/uploads/x");
        assert!(!elsewhere.headers().contains_key("authorization"));
    }

    #[test]
    fn error_bodies_give_the_spec_code_and_a_short_excerpt() {
        let (code, excerpt) = error_details(
            br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:..."}]}"#,
        );
        assert_eq!(code.as_deref(), Some("MANIFEST_BLOB_UNKNOWN"));
        assert_eq!(excerpt, "blob unknown to registry");
        let (code, excerpt) = error_details(&[b'x'; 5000]);
        assert_eq!(code, None);
        assert_eq!(excerpt.len(), ERROR_EXCERPT_CHARS);
        let (_, excerpt) = error_details(b"<html>\n\x00oops\xff</html>");
        assert!(!excerpt.contains('\n') && !excerpt.contains('\0'));
    }

    #[test]
    fn scopes_name_the_repository_and_actions() {
        assert_eq!(pull_scope("team/app"), "repository:team/app:pull");
        assert_eq!(push_scope("app"), "repository:app:pull,push");
    }
}
