//! Test images, pushed to a registry through shipgate's own registry client.
//!
//! An image is made of layers of seeded pseudo-random bytes (any content is a valid blob to a
//! registry), a config blob and a manifest, OCI or Docker v2 schema 2; optionally a multi-arch
//! index over two such images, pushed the way ECR needs it for immutable tags: children by
//! digest, the index next, the tag last. Layers are generated twice from their seed, once to
//! hash and once to upload, so a 300 MiB layer never sits in memory.

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use futures::Stream;
use serde_json::json;
use shipgate::registry::{
    Descriptor, Digest, Digester, Platform, Registry, RegistryError, media_type,
};

const CHUNK_BYTES: usize = 256 * 1024;

/// Which manifest format an image is pushed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    /// OCI image manifest (an OCI index for multi-arch).
    Oci,
    /// Docker v2 schema 2 manifest (a Docker manifest list for multi-arch).
    Docker,
}

/// A format's media types.
struct MediaTypes {
    manifest: &'static str,
    index: &'static str,
    config: &'static str,
    /// Each format's own gzip layer type: Docker manifests carry Docker layer types, as
    /// `docker push` produces them.
    layer: &'static str,
}

impl ManifestFormat {
    fn types(self) -> MediaTypes {
        match self {
            Self::Oci => MediaTypes {
                manifest: media_type::OCI_MANIFEST,
                index: media_type::OCI_INDEX,
                config: media_type::OCI_CONFIG,
                layer: media_type::OCI_LAYER_GZIP,
            },
            Self::Docker => MediaTypes {
                manifest: media_type::DOCKER_MANIFEST,
                index: media_type::DOCKER_MANIFEST_LIST,
                config: media_type::DOCKER_CONFIG,
                layer: media_type::DOCKER_LAYER_GZIP,
            },
        }
    }
}

/// Seeded pseudo-random content of a given size, regenerated on demand (never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomBlob {
    pub seed: u64,
    pub size: u64,
}

impl RandomBlob {
    pub fn new(seed: u64, size: u64) -> Self {
        Self { seed, size }
    }

    /// The content's digest, computed chunk by chunk.
    pub fn digest(&self) -> Digest {
        let mut digester = Digester::new();
        let mut generator = ChunkGenerator::new(*self);
        while let Some(chunk) = generator.next_chunk() {
            digester.update(&chunk);
        }
        digester.finish()
    }

    /// The content as a stream of chunks, for uploading.
    pub fn stream(&self) -> impl Stream<Item = Result<Bytes, RegistryError>> + Send + 'static {
        futures::stream::unfold(ChunkGenerator::new(*self), |mut generator| async move {
            generator.next_chunk().map(|chunk| (Ok(chunk), generator))
        })
    }

    /// The whole content; for small blobs in assertions.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut generator = ChunkGenerator::new(*self);
        while let Some(chunk) = generator.next_chunk() {
            out.extend_from_slice(&chunk);
        }
        out
    }
}

/// splitmix64: tiny, fast, and good enough that no two test layers share content.
#[derive(Debug, Clone)]
struct ChunkGenerator {
    state: u64,
    remaining: u64,
}

impl ChunkGenerator {
    fn new(blob: RandomBlob) -> Self {
        Self {
            state: blob.seed,
            remaining: blob.size,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let len = usize::try_from(self.remaining.min(CHUNK_BYTES as u64)).unwrap_or(CHUNK_BYTES);
        let mut chunk = Vec::with_capacity(len + 8);
        while chunk.len() < len {
            chunk.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        chunk.truncate(len);
        self.remaining -= len as u64;
        Some(Bytes::from(chunk))
    }
}

/// Builds a test image and pushes it.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    format: ManifestFormat,
    layer_sizes: Vec<u64>,
    seed: u64,
    multi_arch: bool,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// An OCI image of two small layers, with a random seed (so its digest is its own).
    pub fn new() -> Self {
        let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
        Self {
            format: ManifestFormat::Oci,
            layer_sizes: vec![4 * 1024, 64 * 1024],
            seed: high ^ low,
            multi_arch: false,
        }
    }

    pub fn format(mut self, format: ManifestFormat) -> Self {
        self.format = format;
        self
    }

    /// The layers' sizes in bytes, in order.
    pub fn layers(mut self, sizes: &[u64]) -> Self {
        self.layer_sizes = sizes.to_vec();
        self
    }

    /// A fixed seed: the same seed and shape give the same digests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// An index over two platform images (linux/amd64, linux/arm64/v8) instead of one image.
    pub fn multi_arch(mut self) -> Self {
        self.multi_arch = true;
        self
    }

    /// Pushes blobs, manifests and finally `tag`.
    pub async fn push(&self, registry: &Registry, repo: &str, tag: &str) -> Result<PushedImage> {
        if !self.multi_arch {
            let image = self.platform_image(0, "amd64", None);
            let pushed = image.push(registry, repo, self.format).await?;
            let digest = registry
                .put_manifest(
                    repo,
                    tag,
                    &pushed.manifest.media_type,
                    pushed.manifest_bytes.clone(),
                )
                .await
                .context("tagging the image")?;
            ensure!(
                digest == pushed.manifest.digest,
                "tag points to another digest"
            );
            return Ok(PushedImage {
                // A platform is only named by an index entry.
                manifest: Descriptor {
                    platform: None,
                    ..pushed.manifest.clone()
                },
                manifest_bytes: pushed.manifest_bytes.clone(),
                platforms: vec![pushed],
            });
        }

        let mut platforms = Vec::new();
        for (i, (arch, variant)) in [("amd64", None), ("arm64", Some("v8"))]
            .into_iter()
            .enumerate()
        {
            let image = self.platform_image(i as u64, arch, variant);
            platforms.push(image.push(registry, repo, self.format).await?);
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": self.format.types().index,
            "manifests": platforms.iter().map(|p| &p.manifest).collect::<Vec<_>>(),
        });
        let bytes = Bytes::from(serde_json::to_vec(&index)?);
        let digest = Digest::sha256_of(&bytes);
        let media_type = self.format.types().index;
        registry
            .put_manifest(repo, digest.as_str(), media_type, bytes.clone())
            .await
            .context("pushing the index by digest")?;
        let tagged = registry
            .put_manifest(repo, tag, media_type, bytes.clone())
            .await
            .context("tagging the index")?;
        ensure!(tagged == digest, "tag points to another digest");
        Ok(PushedImage {
            manifest: Descriptor::new(media_type, digest, bytes.len() as u64),
            manifest_bytes: bytes,
            platforms,
        })
    }

    fn platform_image(
        &self,
        index: u64,
        architecture: &str,
        variant: Option<&str>,
    ) -> PlatformSpec {
        let layers = self
            .layer_sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| RandomBlob::new(mix(self.seed, index, i as u64), size))
            .collect();
        PlatformSpec {
            seed: self.seed,
            platform: Platform {
                architecture: architecture.into(),
                os: "linux".into(),
                variant: variant.map(str::to_owned),
            },
            layers,
        }
    }
}

/// A distinct seed per (image, platform, layer).
fn mix(seed: u64, platform: u64, layer: u64) -> u64 {
    let mut g = ChunkGenerator {
        state: seed ^ platform.rotate_left(32) ^ layer,
        remaining: 0,
    };
    g.next_u64()
}

struct PlatformSpec {
    seed: u64,
    platform: Platform,
    layers: Vec<RandomBlob>,
}

impl PlatformSpec {
    /// Pushes layers, config and the manifest by digest.
    async fn push(
        &self,
        registry: &Registry,
        repo: &str,
        format: ManifestFormat,
    ) -> Result<PlatformImage> {
        let mut layers = Vec::new();
        for blob in &self.layers {
            let digest = blob.digest();
            registry
                .push_blob_stream(repo, &digest, blob.size, blob.stream())
                .await
                .with_context(|| format!("pushing layer {digest}"))?;
            layers.push(Layer {
                descriptor: Descriptor::new(format.types().layer, digest, blob.size),
                content: *blob,
            });
        }
        let mut config = json!({
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "config": { "Labels": { "shipgate.test.seed": self.seed.to_string() } },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.descriptor.digest.as_str()).collect::<Vec<_>>(),
            },
        });
        if let Some(variant) = &self.platform.variant {
            config["variant"] = json!(variant);
        }
        let config_bytes = Bytes::from(serde_json::to_vec(&config)?);
        let config_len = config_bytes.len() as u64;
        let config_digest = registry
            .push_blob(repo, config_bytes)
            .await
            .context("pushing the config")?;
        let config = Descriptor::new(format.types().config, config_digest, config_len);

        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": format.types().manifest,
            "config": config,
            "layers": layers.iter().map(|l| &l.descriptor).collect::<Vec<_>>(),
        });
        let manifest_bytes = Bytes::from(serde_json::to_vec(&manifest)?);
        let digest = Digest::sha256_of(&manifest_bytes);
        registry
            .put_manifest(
                repo,
                digest.as_str(),
                format.types().manifest,
                manifest_bytes.clone(),
            )
            .await
            .context("pushing the manifest by digest")?;
        let mut descriptor =
            Descriptor::new(format.types().manifest, digest, manifest_bytes.len() as u64);
        descriptor.platform = Some(self.platform.clone());
        Ok(PlatformImage {
            manifest: descriptor,
            manifest_bytes,
            config,
            layers,
        })
    }
}

/// What was pushed: the tagged manifest (an index when multi-arch) and each platform image.
#[derive(Debug, Clone)]
pub struct PushedImage {
    pub manifest: Descriptor,
    pub manifest_bytes: Bytes,
    /// One entry for a single-platform image, two under an index.
    pub platforms: Vec<PlatformImage>,
}

impl PushedImage {
    /// The digest the tag points to.
    pub fn digest(&self) -> &Digest {
        &self.manifest.digest
    }

    /// Every blob (configs and layers) of every platform.
    pub fn blobs(&self) -> Vec<Descriptor> {
        self.platforms
            .iter()
            .flat_map(|p| {
                std::iter::once(p.config.clone())
                    .chain(p.layers.iter().map(|l| l.descriptor.clone()))
            })
            .collect()
    }
}

/// One platform's image manifest and its blobs.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// With its platform set.
    pub manifest: Descriptor,
    pub manifest_bytes: Bytes,
    pub config: Descriptor,
    pub layers: Vec<Layer>,
}

/// A layer and the content it was made from.
#[derive(Debug, Clone)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub content: RandomBlob,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_blobs_are_deterministic_sized_and_distinct() {
        let a = RandomBlob::new(7, 1_000_003);
        assert_eq!(a.to_vec().len(), 1_000_003);
        assert_eq!(a.digest(), Digest::sha256_of(&a.to_vec()));
        assert_eq!(a.digest(), RandomBlob::new(7, 1_000_003).digest());
        assert_ne!(a.digest(), RandomBlob::new(8, 1_000_003).digest());
        assert_eq!(RandomBlob::new(7, 0).digest(), Digest::sha256_of(b""));
        assert_ne!(mix(1, 0, 0), mix(1, 0, 1));
        assert_ne!(mix(1, 0, 0), mix(1, 1, 0));
    }
}
