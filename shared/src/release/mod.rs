//! The release: what an integrator drops (a zip with `release.json` and CloudFormation
//! templates), its schema, and the validation that finds every problem in a drop.
//!
//! [`inspect_release`] is the whole of validation. It reads the drop through a [`RangeSource`]
//! (ranged S3 reads in Lambda): the archive's tail and central directory, then the whole
//! archive once, in order and in large chunks, to hold every entry's local record and data to
//! the directory (`structure`), then the entries it checks (the manifest, the templates and the
//! checks file), each within a size budget. It
//! never stops at the first problem: the integrator gets the whole list, each [`Problem`] with a
//! stable [`ProblemCode`] and a sentence that says what to do. This module is pure: no AWS, no
//! clock, no network. Checking images against the registry is intake's job.
//!
//! The format is documented for integrators in `docs/release-format.md`.

mod checks;
mod entry;
mod limits;
mod manifest;
mod problems;
mod schema;
#[cfg(test)]
mod second_reader;
mod source;
mod structure;
mod template;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testzip;
mod yaml_events;
mod zipdir;

use sha2::{Digest, Sha256};

pub use checks::{CHECKS_SCHEMA_VERSION, Check, Checks, DEFAULT_TIMEOUT_MS, HttpMethod};
pub use limits::{Limits, MAX_DOCUMENT_DEPTH};
pub use manifest::{
    DeployTarget, Image, Integrator, MANIFEST_PATH, Manifest, PlaceholderError, ReleaseIdentity,
    SCHEMA_VERSION, StackTemplate,
};
pub use problems::{MAX_PROBLEMS_PER_CODE, Problem, ProblemCode};
pub use source::{FileSource, RangeSource, SourceError};
pub use template::TemplateFile;

use problems::{Problems, human_size};
use zipdir::Directory;

/// Everything validation learnt about a drop.
#[derive(Debug, Default)]
pub struct Inspection {
    /// The manifest, when `release.json` was read and has no problem of its own.
    pub manifest: Option<Manifest>,
    /// The templates the manifest lists that were read and are valid, in manifest order.
    pub templates: Vec<TemplateFile>,
    /// The checks, when the manifest names a checks file and it is valid.
    pub checks: Option<Checks>,
    /// Every problem found, in the order found (at most [`MAX_PROBLEMS_PER_CODE`] per code,
    /// then one summary per code).
    pub problems: Vec<Problem>,
    /// SHA-256 (hex) of the bytes of `release.json`, whenever they could be read.
    pub manifest_sha256: Option<String>,
    /// Who and what the drop is, as far as the manifest says it validly: where a rejection
    /// report goes, even when the manifest has problems.
    pub identity: ReleaseIdentity,
    /// The read that failed, when the drop could not be read (storage or network, not the
    /// drop's fault): the problems then include one `read_failed`, and the caller should retry
    /// rather than reject.
    pub read_error: Option<SourceError>,
}

impl Inspection {
    /// `true` when the drop has no problem at all.
    pub fn is_acceptable(&self) -> bool {
        self.problems.is_empty()
    }

    /// `true` when inspection could not finish because the drop could not be read: a retry may
    /// succeed, and the problems found so far are not the drop's whole story.
    pub fn is_retryable(&self) -> bool {
        self.read_error.is_some()
    }

    /// What the release is, as far as it is deployed and approved: SHA-256 (hex) over the
    /// manifest's bytes, each template (path and text, in manifest order) and the checks.
    /// Two drops with the same value are the same release however they were zipped; other
    /// files of the archive are not part of a release and do not count. `None` until the
    /// manifest was read.
    pub fn content_sha256(&self) -> Option<String> {
        let manifest = self.manifest_sha256.as_deref()?;
        let mut h = Sha256::new();
        h.update(b"shipgate.release-content/v1\0");
        h.update(manifest.as_bytes());
        for template in &self.templates {
            h.update(b"\0template\0");
            h.update(template.path.as_bytes());
            h.update(b"\0");
            h.update(Sha256::digest(template.body.as_bytes()));
        }
        h.update(b"\0checks\0");
        if let Some(checks) = &self.checks {
            h.update(serde_json::to_vec(checks).unwrap_or_default());
        }
        Some(hex::encode(h.finalize()))
    }
}

/// Validates the drop in `source` against `limits`, finding every problem.
pub async fn inspect_release<S: RangeSource + Sync>(source: &S, limits: &Limits) -> Inspection {
    let mut inspection = Inspection::default();
    let mut problems = Problems::default();
    if let Err(err) = inspect(source, limits, &mut inspection, &mut problems).await {
        problems.report(
            ProblemCode::ReadFailed,
            None,
            format!(
                "the release could not be read ({err}): this is not a problem with the drop, \
                 and it will be inspected again"
            ),
        );
        inspection.read_error = Some(err);
    }
    inspection.problems = problems.into_vec();
    inspection
}

async fn inspect<S: RangeSource + Sync>(
    source: &S,
    limits: &Limits,
    inspection: &mut Inspection,
    problems: &mut Problems,
) -> Result<(), SourceError> {
    if source.len() > limits.max_zip_bytes {
        problems.report(
            ProblemCode::ObjectTooLarge,
            None,
            format!(
                "release.zip is {}, more than the {} allowed: leave out what the release does \
                 not need (images belong in the registry, not in the zip)",
                human_size(source.len()),
                human_size(limits.max_zip_bytes)
            ),
        );
        return Ok(());
    }
    let Some(mut directory) = zipdir::read_directory(source, limits, problems).await? else {
        return Ok(());
    };
    if directory.entries.is_empty() {
        problems.report(
            ProblemCode::EmptyZip,
            None,
            "release.zip holds no files: put release.json and the templates in it",
        );
        return Ok(());
    }
    zipdir::check_entries(&directory, limits, problems);
    structure::check_structure(
        source,
        &mut directory,
        limits,
        structure::CHUNK_BYTES,
        problems,
    )
    .await?;

    let Some(manifest_entry) = file_entry(&directory, MANIFEST_PATH) else {
        let hint = hint_for(&directory, MANIFEST_PATH);
        problems.report(
            ProblemCode::ManifestMissing,
            Some(MANIFEST_PATH),
            format!(
                "release.zip has no release.json at its root{hint}: put the manifest at the top \
                 of the archive (zip the folder's contents, not the folder)"
            ),
        );
        return Ok(());
    };
    let Some(bytes) = entry::read_entry(
        source,
        manifest_entry,
        "manifest",
        limits.max_manifest_bytes,
        problems,
    )
    .await?
    else {
        return Ok(());
    };
    inspection.manifest_sha256 = Some(hex::encode(Sha256::digest(&bytes)));
    let review = manifest::review_manifest(&bytes, limits, problems);
    drop(bytes);
    inspection.identity = review.identity;

    for template in &review.templates {
        if let Some(file) = read_template(source, &directory, template, limits, problems).await? {
            inspection.templates.push(file);
        }
    }
    if let Some(path) = &review.checks {
        inspection.checks = read_checks(source, &directory, path, limits, problems).await?;
    }

    inspection.manifest = review.manifest;
    Ok(())
}

/// Finds, reads and checks one template the manifest lists, and the parameters the manifest
/// gives it. `None` when it has problems (reported).
async fn read_template<S: RangeSource + Sync>(
    source: &S,
    directory: &Directory,
    template: &manifest::TemplateRef,
    limits: &Limits,
    problems: &mut Problems,
) -> Result<Option<TemplateFile>, SourceError> {
    let path = template.path.as_str();
    let Some(entry) = file_entry(directory, path) else {
        let hint = hint_for(directory, path);
        problems.report(
            ProblemCode::TemplateMissing,
            Some(&format!("templates[{}].path", template.index)),
            format!(
                "template {path:?} is listed in release.json but is not in release.zip{hint}: \
                 add it, or fix the path"
            ),
        );
        return Ok(None);
    };
    let read = entry::read_entry(
        source,
        entry,
        "template",
        limits.max_template_bytes,
        problems,
    );
    let Some(bytes) = read.await? else {
        return Ok(None);
    };
    let Ok(body) = String::from_utf8(bytes) else {
        problems.report(
            ProblemCode::TemplateInvalid,
            Some(path),
            format!("template {path:?} is not UTF-8 text: save it as UTF-8"),
        );
        return Ok(None);
    };
    let Some(checked) = template::review_template(path, &body, problems) else {
        return Ok(None);
    };
    let mut consistent = true;
    for parameter in &template.parameters {
        if !checked.parameters.contains(parameter) {
            consistent = false;
            problems.report(
                ProblemCode::UnknownTemplateParameter,
                Some(&format!(
                    "templates[{}].parameters.{parameter}",
                    template.index
                )),
                format!(
                    "release.json gives parameter {parameter:?} to template {path:?}, which does \
                     not declare it: declare it in the template's Parameters or remove it from \
                     release.json"
                ),
            );
        }
    }
    Ok(consistent.then(|| TemplateFile {
        path: path.to_owned(),
        body,
        resource_count: checked.resource_count,
    }))
}

/// Finds, reads and checks the checks file. `None` when it has problems (reported).
async fn read_checks<S: RangeSource + Sync>(
    source: &S,
    directory: &Directory,
    path: &str,
    limits: &Limits,
    problems: &mut Problems,
) -> Result<Option<Checks>, SourceError> {
    let Some(entry) = file_entry(directory, path) else {
        let hint = hint_for(directory, path);
        problems.report(
            ProblemCode::ChecksMissing,
            Some("checks"),
            format!(
                "checks file {path:?} is named in release.json but is not in release.zip{hint}: \
                 add it, or remove `checks` from release.json"
            ),
        );
        return Ok(None);
    };
    let read = entry::read_entry(
        source,
        entry,
        "checks file",
        limits.max_checks_bytes,
        problems,
    );
    Ok(match read.await? {
        Some(bytes) => checks::review_checks(path, &bytes, problems),
        None => None,
    })
}

/// The entry for a file the manifest names: a directory entry of that name is not a file.
fn file_entry<'d>(directory: &'d Directory, name: &str) -> Option<&'d zipdir::Entry> {
    directory.find(name).filter(|e| !e.is_dir())
}

/// ` (found "x/release.json")`, when a near miss explains a missing file.
fn hint_for(directory: &Directory, name: &str) -> String {
    let near = directory.near_misses(name);
    if near.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = near.iter().map(|n| format!("{n:?}")).collect();
        format!(" (found {})", quoted.join(", "))
    }
}
