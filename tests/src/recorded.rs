//! Stories whose AWS calls the IAM conformance check evaluates: each runs at most once per
//! test binary, on a stack that records its calls, whether its own test or the check asks
//! first, and its recording is kept under the target dir for the code that made it, so that
//! `make iam-check` evaluates what the last run of the same code recorded instead of telling
//! the stories again.
//!
//! "The same code" is a digest of every file the recording depends on: the functions, the
//! shared library, the local stack and its moto patches, the tests, the sample application,
//! the templates and the lock file; not what the stories do not run ([`NOT_IN_THE_STORIES`]:
//! the hand-listed calls, the table of authorizations and the policy evaluation, which only
//! read a recording and run anew at each evaluation, and the local stack's own tests). A recording is kept only for a story that passed: a story that failed did
//! not make every call it should have.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use shipgate_local::recorder::Recording;
use tokio::sync::OnceCell;

/// A story that records its calls, run once per binary.
pub struct RecordedStory {
    name: &'static str,
    /// The test binary's scratch directory under the target dir (`CARGO_TARGET_TMPDIR`).
    kept_in: &'static str,
    run: fn() -> BoxFuture<'static, Result<Recording>>,
    outcome: OnceCell<Result<Arc<Recording>, String>>,
}

impl RecordedStory {
    /// The story `name` (its file name among the recordings kept under `kept_in`, the test
    /// binary's `CARGO_TARGET_TMPDIR`), which `run` tells on a recording stack, returning that
    /// stack's recording.
    pub const fn new(
        name: &'static str,
        kept_in: &'static str,
        run: fn() -> BoxFuture<'static, Result<Recording>>,
    ) -> Self {
        Self {
            name,
            kept_in,
            run,
            outcome: OnceCell::const_new(),
        }
    }

    /// Tells the story (or waits for the telling already under way in this binary) and keeps
    /// its recording; the story's own failure otherwise.
    pub async fn run(&'static self) -> Result<Arc<Recording>> {
        self.outcome
            .get_or_init(|| async {
                let recording = (self.run)().await.map_err(|e| format!("{e:?}"))?;
                let recording = Arc::new(recording);
                if let Err(e) = self.save(&recording) {
                    eprintln!("the recording of {} was not kept: {e:#}", self.name);
                }
                Ok(recording)
            })
            .await
            .clone()
            .map_err(|e| {
                anyhow!(
                    "the story {} failed, so not every call it makes was recorded: {e}",
                    self.name
                )
            })
    }

    /// The story's recording for this code: told in this binary already, kept by an earlier
    /// run of the same code, or told now.
    pub async fn recording(&'static self) -> Result<Arc<Recording>> {
        if self.outcome.initialized() {
            return self.run().await;
        }
        match self.load() {
            Ok(Some(recording)) => {
                eprintln!("{}: the recording kept for this code", self.name);
                Ok(Arc::new(recording))
            }
            Ok(None) => self.run().await,
            Err(e) => Err(e),
        }
    }

    /// Where this story's recording of this code is kept.
    fn path(&self) -> Result<PathBuf> {
        Ok(Path::new(self.kept_in)
            .join("iam-calls")
            .join(code_digest(&shipgate_local::process::project_root())?)
            .join(format!("{}.json", self.name)))
    }

    fn save(&self, recording: &Recording) -> Result<()> {
        let path = self.path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(recording)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    fn load(&self) -> Result<Option<Recording>> {
        let path = self.path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// What the recordings depend on, below the project root.
const RECORDED_CODE: [&str; 11] = [
    "functions",
    "shared",
    "local",
    "tests",
    "examples",
    "template.yaml",
    "environment.yaml",
    "Cargo.lock",
    "Cargo.toml",
    "requirements-local.txt",
    "samconfig.toml",
];

/// Below [`RECORDED_CODE`], what the stories do not run.
const NOT_IN_THE_STORIES: [&str; 5] = [
    "local/iam",
    "local/src/authorization.rs",
    "local/src/iam.rs",
    "local/src/iam_conformance.rs",
    "local/tests",
];

/// A digest of the files the recordings depend on ([`RECORDED_CODE`], every file below them
/// but [`NOT_IN_THE_STORIES`]), their paths and contents.
pub fn code_digest(root: &Path) -> Result<String> {
    let mut files = Vec::new();
    for entry in RECORDED_CODE {
        collect(&root.join(entry), &mut files)?;
    }
    files.sort();
    let mut digest = Sha256::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap_or(&file);
        if NOT_IN_THE_STORIES.iter().any(|e| relative.starts_with(e)) {
            continue;
        }
        digest.update(relative.to_string_lossy().as_bytes());
        digest.update([0]);
        digest.update(std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?);
        digest.update([0]);
    }
    Ok(hex::encode(&digest.finalize()[..12]))
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
    };
    if meta.is_file() {
        files.push(path.to_path_buf());
    } else if meta.is_dir() {
        for entry in std::fs::read_dir(path).with_context(|| format!("{}", path.display()))? {
            let entry = entry?;
            let name = entry.file_name();
            // Python's byte-code caches change as moto imports the patches.
            if name == "__pycache__" || name == "target" {
                continue;
            }
            collect(&entry.path(), files)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_changes_with_a_file_and_not_with_what_only_evaluates() {
        let root = std::env::temp_dir().join(format!("digest-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(root.join("local/iam")).unwrap();
        std::fs::create_dir_all(root.join("shared/src")).unwrap();
        std::fs::write(root.join("shared/src/lib.rs"), "a").unwrap();
        std::fs::write(root.join("local/iam/calls.yaml"), "[]").unwrap();
        let first = code_digest(&root).unwrap();
        std::fs::write(root.join("local/iam/calls.yaml"), "- x").unwrap();
        std::fs::create_dir_all(root.join("local/src")).unwrap();
        std::fs::write(root.join("local/src/authorization.rs"), "x").unwrap();
        assert_eq!(code_digest(&root).unwrap(), first);
        std::fs::write(root.join("shared/src/lib.rs"), "b").unwrap();
        assert_ne!(code_digest(&root).unwrap(), first);
        std::fs::write(root.join("template.yaml"), "").unwrap();
        let with_template = code_digest(&root).unwrap();
        assert_ne!(with_template, first);
        let _ = std::fs::remove_dir_all(&root);
    }
}
