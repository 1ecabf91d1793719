//! Manifests as far as copying an image needs them: media types, descriptors, and the content a
//! manifest points to.
//!
//! An image manifest (Docker v2 schema 2 or OCI) points to a config blob and layer blobs; an
//! index (OCI index or Docker manifest list) points to other manifests, usually one per
//! platform. Everything else in a manifest is carried as opaque bytes: a copy must push exactly
//! the bytes it read, or the digest changes.

use serde::{Deserialize, Serialize};

use super::Digest;

/// Media types of the manifests this client handles.
pub mod media_type {
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
}

/// The `Accept` header for manifest requests: every manifest kind this client can follow, so a
/// registry never falls back to converting (and re-digesting) an image.
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json";

/// What a piece of content is, how to find it, and how big it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// Set on the entries of an index: which platform the child manifest is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Self {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
        }
    }
}

/// The platform of one entry of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// The two shapes of manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// Points to a config blob and layer blobs.
    Image,
    /// Points to other manifests (a multi-arch image).
    Index,
}

impl ManifestKind {
    /// The kind of a manifest media type, `None` if this client does not know it.
    pub fn of(media_type: &str) -> Option<Self> {
        match essence(media_type) {
            media_type::DOCKER_MANIFEST | media_type::OCI_MANIFEST => Some(Self::Image),
            media_type::DOCKER_MANIFEST_LIST | media_type::OCI_INDEX => Some(Self::Index),
            _ => None,
        }
    }
}

/// Why a manifest cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("manifest declares media type {declared:?} in its body but was served as {served:?}")]
    MediaTypeConflict { served: String, declared: String },
    #[error("manifest is not valid JSON of its media type: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestProbe {
    #[serde(default)]
    media_type: Option<String>,
}

#[derive(Deserialize)]
struct ImageManifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct IndexManifest {
    manifests: Vec<Descriptor>,
}

/// The kind of a manifest, from the media type it was served with, or from its body when the
/// registry served it as something generic (`application/json`; OCI lets `mediaType` be
/// omitted from the body, Docker does not). A body that contradicts a known served type is
/// refused: that mismatch is how a registry could make an index read as an image.
pub fn manifest_kind(media_type: &str, bytes: &[u8]) -> Result<ManifestKind, ManifestError> {
    let probe: ManifestProbe =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    let served = essence(media_type);
    match (ManifestKind::of(served), probe.media_type) {
        (Some(kind), None) => Ok(kind),
        (Some(kind), Some(declared)) if essence(&declared) == served => Ok(kind),
        (Some(_), Some(declared)) => Err(ManifestError::MediaTypeConflict {
            served: served.into(),
            declared,
        }),
        (None, Some(declared)) => {
            ManifestKind::of(&declared).ok_or(ManifestError::UnsupportedMediaType(declared))
        }
        (None, None) => Err(ManifestError::UnsupportedMediaType(served.into())),
    }
}

/// The descriptors a manifest points to: config then layers for an image manifest, the child
/// manifests for an index. These are what must exist in a registry before the manifest can be
/// pushed there.
pub fn referenced_descriptors(
    media_type: &str,
    bytes: &[u8],
) -> Result<Vec<Descriptor>, ManifestError> {
    let malformed = |e: serde_json::Error| ManifestError::Malformed(e.to_string());
    match manifest_kind(media_type, bytes)? {
        ManifestKind::Image => {
            let m: ImageManifest = serde_json::from_slice(bytes).map_err(malformed)?;
            Ok(std::iter::once(m.config).chain(m.layers).collect())
        }
        ManifestKind::Index => {
            let m: IndexManifest = serde_json::from_slice(bytes).map_err(malformed)?;
            Ok(m.manifests)
        }
    }
}

/// The `mediaType` a manifest body declares, if any.
pub(crate) fn declared_media_type(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<ManifestProbe>(bytes)
        .ok()
        .and_then(|p| p.media_type)
}

/// A media type without parameters (`application/json; charset=utf-8` → `application/json`).
pub(crate) fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape `docker push` produces (docker 24, linux/amd64 alpine).
    const DOCKER_IMAGE: &str = r#"{
       "schemaVersion": 2,
       "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
       "config": {
          "mediaType": "application/vnd.docker.container.image.v1+json",
          "size": 1472,
          "digest": "sha256:c1aabb73d2339c5ebaa3681de2e9d9c18d57485045a4e311d9f8004bec208d67"
       },
       "layers": [
          {
             "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
             "size": 3408729,
             "digest": "sha256:31e352740f534f9ad170f75378a84fe453d6156e40700b882d737a8f4a6988a3"
          }
       ]
    }"#;

    // The shape buildkit produces for an OCI image with an annotation and two layers.
    const OCI_IMAGE: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": "sha256:9a4d5c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081920",
        "size": 2048
      },
      "layers": [
        {
          "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
          "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
          "size": 29124921
        },
        {
          "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
          "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
          "size": 512,
          "annotations": { "org.opencontainers.image.title": "app" }
        }
      ],
      "annotations": { "org.opencontainers.image.created": "2026-11-22T10:00:00Z" }
    }"#;

    // A buildx multi-arch index with an attestation manifest (platform unknown/unknown).
    const OCI_INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
          "size": 1054,
          "platform": { "architecture": "amd64", "os": "linux" }
        },
        {
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "digest": "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
          "size": 1054,
          "platform": { "architecture": "arm64", "os": "linux", "variant": "v8" }
        },
        {
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "digest": "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
          "size": 840,
          "annotations": {
            "vnd.docker.reference.digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "vnd.docker.reference.type": "attestation-manifest"
          },
          "platform": { "architecture": "unknown", "os": "unknown" }
        }
      ]
    }"#;

    #[test]
    fn a_docker_image_manifest_lists_config_then_layers() {
        let refs =
            referenced_descriptors(media_type::DOCKER_MANIFEST, DOCKER_IMAGE.as_bytes()).unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].media_type, media_type::DOCKER_CONFIG);
        assert_eq!(refs[0].size, 1472);
        assert_eq!(refs[1].media_type, media_type::DOCKER_LAYER_GZIP);
        assert_eq!(
            refs[1].digest.as_str(),
            "sha256:31e352740f534f9ad170f75378a84fe453d6156e40700b882d737a8f4a6988a3"
        );
    }

    #[test]
    fn an_oci_image_manifest_lists_config_then_layers() {
        let refs = referenced_descriptors(media_type::OCI_MANIFEST, OCI_IMAGE.as_bytes()).unwrap();
        let sizes: Vec<u64> = refs.iter().map(|d| d.size).collect();
        assert_eq!(sizes, [2048, 29124921, 512]);
        assert_eq!(refs[0].media_type, media_type::OCI_CONFIG);
    }

    #[test]
    fn an_index_lists_its_manifests_with_platforms() {
        let refs = referenced_descriptors(media_type::OCI_INDEX, OCI_INDEX.as_bytes()).unwrap();
        assert_eq!(refs.len(), 3);
        assert!(
            refs.iter()
                .all(|d| d.media_type == media_type::OCI_MANIFEST)
        );
        let arm = refs[1].platform.as_ref().unwrap();
        assert_eq!(
            (arm.os.as_str(), arm.architecture.as_str()),
            ("linux", "arm64")
        );
        assert_eq!(arm.variant.as_deref(), Some("v8"));
        assert_eq!(
            ManifestKind::of(media_type::DOCKER_MANIFEST_LIST),
            Some(ManifestKind::Index)
        );
    }

    #[test]
    fn a_docker_manifest_list_is_an_index() {
        let list = OCI_INDEX.replace(
            "application/vnd.oci.image.index.v1+json",
            media_type::DOCKER_MANIFEST_LIST,
        );
        let refs = referenced_descriptors(
            "application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8",
            list.as_bytes(),
        )
        .unwrap();
        assert_eq!(refs.len(), 3);
    }

    #[test]
    fn a_generic_content_type_falls_back_to_the_body_media_type() {
        let refs = referenced_descriptors("application/json", OCI_IMAGE.as_bytes()).unwrap();
        assert_eq!(refs.len(), 3);
        let no_type = OCI_IMAGE.replacen(
            r#""mediaType": "application/vnd.oci.image.manifest.v1+json","#,
            "",
            1,
        );
        assert_eq!(
            referenced_descriptors(media_type::OCI_MANIFEST, no_type.as_bytes())
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            referenced_descriptors("application/json", no_type.as_bytes()),
            Err(ManifestError::UnsupportedMediaType(
                "application/json".into()
            ))
        );
    }

    #[test]
    fn a_body_contradicting_its_content_type_is_refused() {
        assert!(matches!(
            referenced_descriptors(media_type::OCI_MANIFEST, OCI_INDEX.as_bytes()),
            Err(ManifestError::MediaTypeConflict { .. })
        ));
    }

    #[test]
    fn hostile_manifests_are_errors_not_panics() {
        let bad_digest = DOCKER_IMAGE.replace(
            "sha256:31e352740f534f9ad170f75378a84fe453d6156e40700b882d737a8f4a6988a3",
            "sha256:../../v2/other/blobs/x",
        );
        let negative_size = DOCKER_IMAGE.replace("3408729", "-1");
        for body in [
            "",
            "null",
            "[]",
            "{\"mediaType\": 7}",
            bad_digest.as_str(),
            negative_size.as_str(),
            "{\"layers\": []}",
        ] {
            assert!(
                referenced_descriptors(media_type::DOCKER_MANIFEST, body.as_bytes()).is_err(),
                "{body:?} should be refused"
            );
        }
        assert!(matches!(
            referenced_descriptors("text/html", b"{}"),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn the_accept_header_names_all_four_manifest_kinds() {
        let accepted: Vec<&str> = MANIFEST_ACCEPT.split(',').map(str::trim).collect();
        assert_eq!(
            accepted,
            [
                media_type::DOCKER_MANIFEST,
                media_type::DOCKER_MANIFEST_LIST,
                media_type::OCI_MANIFEST,
                media_type::OCI_INDEX
            ]
        );
    }

    #[test]
    fn descriptors_serialize_in_the_manifest_shape() {
        let d = Descriptor::new(media_type::OCI_CONFIG, Digest::sha256_of(b"{}"), 2);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["mediaType"], media_type::OCI_CONFIG);
        assert_eq!(json["size"], 2);
        assert!(json.get("platform").is_none());
    }
}
