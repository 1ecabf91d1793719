//! The registry client against real registries: the local stack's `docker-registry` processes
//! standing in for each account's ECR, with ECR authorization from moto; and against small
//! in-process fakes for what a real registry will not do on demand (Bearer challenges, lying
//! about content).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use aws_sdk_ecr::config::{BehaviorVersion, Credentials as AwsCredentials, Region};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::TryStreamExt;
use shipgate::config::Env;
use shipgate::registry::{
    Credentials, Digest, ManifestKind, Registry, RegistryError, ecr_registry, media_type,
    referenced_descriptors,
};
use shipgate_local::accounts::{INT, REGION, TOOLING, deploy_role_arn};
use shipgate_local::moto::Moto;
use shipgate_local::registries::{LocalRegistry, endpoint_overrides, start_registries};
use shipgate_tests::images::{ImageBuilder, ManifestFormat, RandomBlob};
use shipgate_tests::shared_stack::Shared;

/// An anonymous client of the binary's own local registry (the tooling account's).
async fn local_registry() -> Result<Registry> {
    let stack = ECR.get().await?;
    Ok(Registry::new(
        &stack.locals[0].url(),
        None,
        reqwest::Client::new(),
    )?)
}

fn unique_repo(prefix: &str) -> String {
    format!("{prefix}/{}", uuid::Uuid::new_v4().simple())
}

async fn read_blob(registry: &Registry, repo: &str, digest: &Digest) -> Result<Vec<u8>> {
    let stream = registry.get_blob_stream(repo, digest).await?;
    let bytes = stream
        .try_fold(Vec::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await?;
    Ok(bytes)
}

fn ecr_client(moto: &Moto, credentials: AwsCredentials) -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::from_conf(
        aws_sdk_ecr::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(moto.endpoint())
            .credentials_provider(credentials)
            .build(),
    )
}

fn static_credentials() -> AwsCredentials {
    AwsCredentials::new("test", "test", None, None, "shipgate-tests")
}

async fn assumed_role_credentials(moto: &Moto, account: &str) -> Result<AwsCredentials> {
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new(REGION))
            .endpoint_url(moto.endpoint())
            .credentials_provider(static_credentials())
            .build(),
    );
    let out = sts
        .assume_role()
        .role_arn(deploy_role_arn(account))
        .role_session_name("shipgate-registry-test")
        .send()
        .await?;
    let c = out
        .credentials()
        .context("AssumeRole returned no credentials")?;
    Ok(AwsCredentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        None,
        "assumed-role",
    ))
}

/// moto and one local registry per account, mapped as `SHIPGATE_REGISTRY_ENDPOINTS` maps them.
struct EcrStack {
    /// The tooling account's registry, then the int account's.
    locals: Vec<LocalRegistry>,
    moto: Moto,
    overrides: BTreeMap<String, String>,
}

/// One for every test here (each test's repositories are its own).
static ECR: Shared<EcrStack> = Shared::new("ecr", || {
    Box::pin(async {
        let dir = std::env::temp_dir()
            .join("shipgate-tests")
            .join(format!("registry-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let (moto, locals) =
            tokio::try_join!(Moto::start(&dir), start_registries(&dir, &[TOOLING, INT]))?;
        // Exactly what a function reads from its environment.
        let env = Env::from_pairs([(
            "SHIPGATE_REGISTRY_ENDPOINTS",
            endpoint_overrides(&locals, REGION),
        )]);
        let overrides = env.map("SHIPGATE_REGISTRY_ENDPOINTS")?;
        Ok(EcrStack {
            locals,
            moto,
            overrides,
        })
    })
});

/// The registry `ecr` names for its account leads to the local registry `own` (of the
/// stack's), an image pushed through it lands there, and not in the local registry `other`.
async fn pushes_land_in(
    stack: &EcrStack,
    ecr: &aws_sdk_ecr::Client,
    own: usize,
    other: usize,
) -> Result<Registry> {
    let http = reqwest::Client::new();
    let registry = ecr_registry(ecr, http.clone(), &stack.overrides).await?;
    assert_eq!(registry.host(), stack.locals[own].ecr_host(REGION));
    assert_eq!(
        registry.endpoint().as_str(),
        format!("{}/", stack.locals[own].url())
    );
    let repo = unique_repo("team/app");
    let image = ImageBuilder::new().push(&registry, &repo, "1.0.0").await?;
    assert!(registry.head_manifest(&repo, "1.0.0").await?.is_some());
    let elsewhere = Registry::new(&stack.locals[other].url(), None, http)?;
    assert_eq!(
        elsewhere
            .head_manifest(&repo, image.digest().as_str())
            .await?,
        None
    );
    Ok(registry)
}

#[tokio::test]
async fn the_tooling_accounts_ecr_host_leads_to_its_local_registry() -> Result<()> {
    let stack = ECR.get().await?;
    // The local registries ignore the Basic credentials ECR's token decodes to; what matters
    // is that the account's requests land in its own registry and no other.
    let tooling =
        pushes_land_in(stack, &ecr_client(&stack.moto, static_credentials()), 0, 1).await?;
    let digest = Digest::sha256_of(b"any manifest");
    assert_eq!(
        tooling.image_reference("team/app", &digest),
        format!("{TOOLING}.dkr.ecr.{REGION}.amazonaws.com/team/app@{digest}")
    );
    Ok(())
}

#[tokio::test]
async fn an_assumed_role_reaches_its_own_accounts_registry() -> Result<()> {
    let stack = ECR.get().await?;
    let credentials = assumed_role_credentials(&stack.moto, INT).await?;
    let int = pushes_land_in(stack, &ecr_client(&stack.moto, credentials), 1, 0).await?;
    assert_eq!(
        int.host(),
        "222222222222.dkr.ecr.eu-west-1.amazonaws.com",
        "GetAuthorizationToken with credentials of a role in {INT} must name that account's \
         registry (moto started with MOTO_ACCOUNT_ID answers every request, assumed roles \
         included, as that one account)"
    );
    Ok(())
}

#[tokio::test]
async fn a_pushed_image_is_found_by_digest_and_by_tag() -> Result<()> {
    let registry = &local_registry().await?;
    registry.ping().await?;
    let repo = unique_repo("team/api");
    let image = ImageBuilder::new().push(registry, &repo, "1.4.2").await?;

    let by_digest = registry
        .head_manifest(&repo, image.digest().as_str())
        .await?
        .context("not found by digest")?;
    assert_eq!(by_digest.digest, *image.digest());
    assert_eq!(by_digest.media_type, media_type::OCI_MANIFEST);
    assert_eq!(by_digest.size, image.manifest_bytes.len() as u64);

    let by_tag = registry
        .head_manifest(&repo, "1.4.2")
        .await?
        .context("not found by tag")?;
    assert_eq!(by_tag, by_digest);

    let unknown = Digest::sha256_of(b"no such manifest");
    assert_eq!(registry.head_manifest(&repo, unknown.as_str()).await?, None);
    assert_eq!(registry.head_manifest(&repo, "9.9.9").await?, None);
    assert_eq!(
        registry
            .head_manifest("no/such/repo", image.digest().as_str())
            .await?,
        None
    );
    Ok(())
}

#[tokio::test]
async fn a_manifest_read_back_is_verified_and_lists_its_blobs() -> Result<()> {
    let registry = &local_registry().await?;
    for format in [ManifestFormat::Oci, ManifestFormat::Docker] {
        let repo = unique_repo("team/worker");
        let image = ImageBuilder::new()
            .format(format)
            .layers(&[1, 1000, 70_000])
            .push(registry, &repo, "2.0.0")
            .await?;

        let (descriptor, bytes) = registry
            .get_manifest(&repo, image.digest().as_str())
            .await?;
        assert_eq!(descriptor, image.manifest);
        assert_eq!(bytes, image.manifest_bytes);
        let (by_tag, _) = registry.get_manifest(&repo, "2.0.0").await?;
        assert_eq!(by_tag.digest, *image.digest());

        assert_eq!(
            ManifestKind::of(&descriptor.media_type),
            Some(ManifestKind::Image)
        );
        let children = referenced_descriptors(&descriptor.media_type, &bytes)?;
        assert_eq!(children, image.blobs(), "{format:?}");

        let missing = Digest::sha256_of(b"absent");
        assert!(matches!(
            registry.get_manifest(&repo, missing.as_str()).await,
            Err(RegistryError::NotFound { .. })
        ));
    }
    Ok(())
}

#[tokio::test]
async fn blobs_round_trip_through_head_and_get() -> Result<()> {
    let registry = &local_registry().await?;
    let repo = unique_repo("team/api");
    // A layer of several chunks, an empty one, and a tiny one.
    let image = ImageBuilder::new()
        .layers(&[3 * 1024 * 1024 + 17, 0, 5])
        .push(registry, &repo, "latest")
        .await?;

    for layer in &image.platforms[0].layers {
        let d = &layer.descriptor;
        assert_eq!(registry.head_blob(&repo, &d.digest).await?, Some(d.size));
        let content = read_blob(registry, &repo, &d.digest).await?;
        assert_eq!(content, layer.content.to_vec());
    }
    let config = &image.platforms[0].config;
    let config_bytes = read_blob(registry, &repo, &config.digest).await?;
    assert_eq!(Digest::sha256_of(&config_bytes), config.digest);

    let unknown = Digest::sha256_of(b"never pushed");
    assert_eq!(registry.head_blob(&repo, &unknown).await?, None);
    assert!(matches!(
        registry.get_blob_stream(&repo, &unknown).await,
        Err(RegistryError::NotFound { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn a_multi_arch_index_round_trips_with_its_children() -> Result<()> {
    let registry = &local_registry().await?;
    for (format, index_type) in [
        (ManifestFormat::Oci, media_type::OCI_INDEX),
        (ManifestFormat::Docker, media_type::DOCKER_MANIFEST_LIST),
    ] {
        let repo = unique_repo("team/multi");
        let image = ImageBuilder::new()
            .format(format)
            .multi_arch()
            .push(registry, &repo, "3.1.0")
            .await?;

        let head = registry
            .head_manifest(&repo, "3.1.0")
            .await?
            .context("index not found by tag")?;
        assert_eq!(head.media_type, index_type);
        assert_eq!(head.digest, *image.digest());

        let (index, bytes) = registry.get_manifest(&repo, "3.1.0").await?;
        assert_eq!(
            ManifestKind::of(&index.media_type),
            Some(ManifestKind::Index)
        );
        let children = referenced_descriptors(&index.media_type, &bytes)?;
        let expected: Vec<_> = image.platforms.iter().map(|p| p.manifest.clone()).collect();
        assert_eq!(children, expected);
        let archs: Vec<_> = children
            .iter()
            .filter_map(|c| c.platform.as_ref())
            .map(|p| p.architecture.as_str())
            .collect();
        assert_eq!(archs, ["amd64", "arm64"]);

        for (child, platform) in children.iter().zip(&image.platforms) {
            let (got, child_bytes) = registry.get_manifest(&repo, child.digest.as_str()).await?;
            assert_eq!(got.digest, child.digest);
            for blob in referenced_descriptors(&got.media_type, &child_bytes)? {
                assert_eq!(
                    registry.head_blob(&repo, &blob.digest).await?,
                    Some(blob.size)
                );
            }
            assert_eq!(platform.layers.len(), 2);
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_corrupt_digest_is_refused() -> Result<()> {
    let registry = &local_registry().await?;
    let repo = unique_repo("team/api");

    // A blob announced under a digest its bytes do not have.
    let blob = RandomBlob::new(42, 200_000);
    let claimed = Digest::sha256_of(b"something else");
    let err = registry
        .push_blob_stream(&repo, &claimed, blob.size, blob.stream())
        .await
        .expect_err("a blob under the wrong digest was accepted");
    match err {
        RegistryError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, blob.digest());
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert_eq!(registry.head_blob(&repo, &claimed).await?, None);

    // A manifest pushed under a digest that is not its own never leaves the client.
    let image = ImageBuilder::new().push(registry, &repo, "1.0").await?;
    let wrong = Digest::sha256_of(b"not the manifest");
    let err = registry
        .put_manifest(
            &repo,
            wrong.as_str(),
            media_type::OCI_MANIFEST,
            image.manifest_bytes.clone(),
        )
        .await
        .expect_err("a manifest under the wrong digest was accepted");
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(registry.head_manifest(&repo, wrong.as_str()).await?, None);

    // A malformed digest is refused before any request.
    assert!(matches!(
        registry.head_manifest(&repo, "sha256:../../etc").await,
        Err(RegistryError::InvalidName(_))
    ));
    assert!(matches!(
        registry.head_manifest("../escape", "latest").await,
        Err(RegistryError::InvalidName(_))
    ));

    // Content shorter or longer than announced is refused too.
    let blob = RandomBlob::new(43, 1000);
    for announced in [2000, 999] {
        let err = registry
            .push_blob_stream(&repo, &blob.digest(), announced, blob.stream())
            .await
            .expect_err("a blob of the wrong size was accepted");
        assert!(
            matches!(err, RegistryError::SizeMismatch { expected, .. } if expected == announced),
            "{err:?}"
        );
    }
    assert_eq!(registry.head_blob(&repo, &blob.digest()).await?, None);
    Ok(())
}

#[tokio::test]
async fn a_layer_streams_from_one_registry_into_another() -> Result<()> {
    let locals = &ECR.get().await?.locals;
    let http = reqwest::Client::new();
    let source = Registry::new(&locals[0].url(), None, http.clone())?;
    let target = Registry::new(&locals[1].url(), None, http)?;
    let repo = unique_repo("team/api");
    let image = ImageBuilder::new()
        .layers(&[6 * 1024 * 1024])
        .push(&source, &repo, "1.0")
        .await?;
    let layer = &image.platforms[0].layers[0].descriptor;
    assert_eq!(target.head_blob(&repo, &layer.digest).await?, None);

    let stream = source.get_blob_stream(&repo, &layer.digest).await?;
    target
        .push_blob_stream(&repo, &layer.digest, layer.size, stream)
        .await?;
    assert_eq!(
        target.head_blob(&repo, &layer.digest).await?,
        Some(layer.size)
    );
    Ok(())
}

#[tokio::test]
async fn a_blob_mounts_from_another_repository_of_the_same_registry() -> Result<()> {
    let registry = &local_registry().await?;
    let from = unique_repo("team/base");
    let to = unique_repo("team/app");
    let image = ImageBuilder::new().push(registry, &from, "1").await?;
    let layer = &image.platforms[0].layers[0].descriptor;

    assert!(registry.mount_blob(&to, &layer.digest, &from).await?);
    assert_eq!(
        registry.head_blob(&to, &layer.digest).await?,
        Some(layer.size)
    );
    let absent = Digest::sha256_of(b"not in the source either");
    assert!(!registry.mount_blob(&to, &absent, &from).await?);
    Ok(())
}

// ---- in-process fakes -------------------------------------------------------------------

/// A registry that demands a Bearer token from its token service (with Basic `AWS:pw`), and
/// serves one manifest, honestly under `good` and its digest, with a lying
/// `Docker-Content-Digest` under `lying`, and the wrong bytes under any other digest.
#[derive(Clone)]
struct Fake {
    realm: String,
    token_requests: Arc<AtomicUsize>,
    manifest: Bytes,
}

const FAKE_BASIC: &str = "Basic QVdTOnB3"; // AWS:pw
const FAKE_TOKEN: &str = "fake-token";

async fn token(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    fake.token_requests.fetch_add(1, Ordering::SeqCst);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(FAKE_BASIC)
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    axum::Json(serde_json::json!({ "token": FAKE_TOKEN, "expires_in": 300 })).into_response()
}

async fn manifest(
    State(fake): State<Fake>,
    UrlPath((repo, reference)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let bearer = format!("Bearer {FAKE_TOKEN}");
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(bearer.as_str())
    {
        let challenge = format!(
            r#"Bearer realm="{}",service="fake",scope="repository:{repo}:pull""#,
            fake.realm
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
            .into_response();
    }
    let digest = Digest::sha256_of(&fake.manifest);
    let (announced, body) = match reference.as_str() {
        "good" => (digest.to_string(), fake.manifest.clone()),
        "lying" => (
            Digest::sha256_of(b"other").to_string(),
            fake.manifest.clone(),
        ),
        r if r == digest.as_str() => (digest.to_string(), fake.manifest.clone()),
        // Any other digest: the registry answers with content that is not it.
        other => (other.to_owned(), fake.manifest.clone()),
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, media_type::OCI_MANIFEST.to_owned()),
            (
                header::HeaderName::from_static("docker-content-digest"),
                announced,
            ),
        ],
        body,
    )
        .into_response()
}

/// Whatever blob is asked for, the same four bytes: the right length for `good`, not its content.
async fn blob() -> Response {
    (StatusCode::OK, Bytes::from_static(b"evil")).into_response()
}

async fn start_fake() -> Result<(String, Fake)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let fake = Fake {
        realm: format!("{base}/token"),
        token_requests: Arc::default(),
        manifest: Bytes::from_static(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#,
        ),
    };
    let app = axum::Router::new()
        .route("/token", axum::routing::get(token))
        .route(
            "/v2/{repo}/manifests/{reference}",
            axum::routing::get(manifest),
        )
        .route("/v2/{repo}/blobs/{digest}", axum::routing::get(blob))
        .with_state(fake.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((base, fake))
}

/// A client of the fake at `base`, logging in as ECR's `AWS` user with `password`.
fn fake_client(base: &str, password: &str) -> Result<Registry> {
    Ok(Registry::new(
        base,
        Some(Credentials::new("AWS", password)),
        reqwest::Client::new(),
    )?)
}

#[tokio::test]
async fn a_registry_asking_for_a_bearer_token_gets_one_and_it_is_reused() -> Result<()> {
    let (base, fake) = start_fake().await?;
    let registry = fake_client(&base, "pw")?;
    let (descriptor, _) = registry.get_manifest("app", "good").await?;
    assert_eq!(descriptor.digest, Digest::sha256_of(&fake.manifest));
    registry.get_manifest("app", "good").await?;
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);

    let wrong = fake_client(&base, "wrong")?;
    let err = wrong
        .get_manifest("app", "good")
        .await
        .expect_err("wrong password accepted");
    assert!(
        matches!(err, RegistryError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("wrong"));
    Ok(())
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused() -> Result<()> {
    let (base, fake) = start_fake().await?;
    let registry = fake_client(&base, "pw")?;
    let real = Digest::sha256_of(&fake.manifest);
    assert_eq!(
        registry.get_manifest("app", real.as_str()).await?.0.digest,
        real
    );

    let asked = Digest::sha256_of(b"the manifest I want");
    let err = registry
        .get_manifest("app", asked.as_str())
        .await
        .expect_err("wrong content accepted for a digest");
    assert!(
        matches!(&err, RegistryError::DigestMismatch { expected, actual } if *expected == asked && *actual == real),
        "{err:?}"
    );
    assert!(matches!(
        registry.get_manifest("app", "lying").await,
        Err(RegistryError::DigestMismatch { .. })
    ));

    let blob = Digest::sha256_of(b"good");
    let stream = registry.get_blob_stream("app", &blob).await?;
    let err = stream
        .try_collect::<Vec<Bytes>>()
        .await
        .expect_err("a blob with the wrong content streamed without error");
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
    Ok(())
}
