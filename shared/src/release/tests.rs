//! Whole-drop tests of `inspect_release`: good drops, drops with many problems, how much is read,
//! and hostile bytes (property tests).

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::json;

use super::testzip::{
    RawEntry, RawZip, good_manifest, good_release, release_files, zip_crate, zip_crate_with,
};
use super::*;
use crate::testing::many_problems;

fn inspect(bytes: Vec<u8>) -> Inspection {
    futures::executor::block_on(inspect_release(&Bytes::from(bytes), &Limits::default()))
}

fn codes(inspection: &Inspection) -> Vec<&'static str> {
    inspection
        .problems
        .iter()
        .map(|p| p.code.as_str())
        .collect()
}

fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    zip_crate(&borrowed)
}

#[test]
fn a_good_release_is_acceptable_and_fully_read() {
    let inspection = inspect(good_release());
    assert!(inspection.is_acceptable(), "{:?}", inspection.problems);
    let manifest = inspection.manifest.as_ref().unwrap();
    assert_eq!(manifest.application, "orders");
    assert_eq!(inspection.templates.len(), 1);
    assert_eq!(inspection.templates[0].path, "templates/service.yaml");
    assert_eq!(inspection.templates[0].resource_count, 3);
    assert!(inspection.templates[0].body.contains("!GetAtt"));
    assert_eq!(inspection.checks.as_ref().unwrap().checks[0].name, "health");
    let manifest_bytes = serde_json::to_vec_pretty(&good_manifest()).unwrap();
    assert_eq!(
        inspection.manifest_sha256.as_deref(),
        Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&manifest_bytes)).as_str())
    );
    assert_eq!(
        inspection.identity.integrator_email.as_deref(),
        Some("release@acme.example")
    );
}

#[test]
fn a_good_release_written_byte_by_byte_with_zip64_is_acceptable() {
    let mut zip = RawZip::new();
    for (name, data) in release_files(&good_manifest()) {
        zip.push(RawEntry::deflated(&name, &data).zip64());
    }
    zip.zip64_end = true;
    let inspection = inspect(zip.build());
    assert!(inspection.is_acceptable(), "{:?}", inspection.problems);
}

#[test]
fn streamed_entries_with_data_descriptors_are_acceptable() {
    let mut zip = RawZip::new();
    for (name, data) in release_files(&good_manifest()) {
        zip.push(RawEntry::deflated(&name, &data).data_descriptor());
    }
    let inspection = inspect(zip.build());
    assert!(inspection.is_acceptable(), "{:?}", inspection.problems);
}

#[test]
fn zip64_local_headers_from_the_zip_crate_are_acceptable() {
    let files = release_files(&good_manifest());
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let inspection = inspect(zip_crate_with(&borrowed, true));
    assert!(inspection.is_acceptable(), "{:?}", inspection.problems);
}

#[test]
fn one_drop_reports_all_of_its_problems() {
    let manifest = many_problems::manifest(good_manifest());
    let mut files = release_files(&manifest);
    files[2].1 = b"{\"schema_version\": \"shipgate.checks/v1\", \"checks\": []}".to_vec();
    files.push(("../../etc/passwd".into(), b"root".to_vec()));
    let inspection = inspect(zip_of(&files));
    let found = codes(&inspection);
    for code in many_problems::CODES {
        assert!(found.contains(&code), "{code} not in {found:?}");
    }
    assert!(inspection.manifest.is_none());
    // The valid template is still read and handed out.
    assert_eq!(inspection.templates.len(), 1);
    assert_eq!(inspection.identity.application.as_deref(), Some("orders"));
    assert_eq!(inspection.identity.integrator_email, None);
}

#[test]
fn a_parameter_the_template_does_not_declare_is_reported() {
    let mut manifest = good_manifest();
    manifest["templates"][0]["parameters"]["DesiredCount"] = json!("3");
    let inspection = inspect(zip_of(&release_files(&manifest)));
    assert_eq!(codes(&inspection), ["unknown_template_parameter"]);
    assert_eq!(
        inspection.problems[0].path.as_deref(),
        Some("templates[0].parameters.DesiredCount")
    );
    // The manifest is valid on its own; the template is not handed out with it.
    assert!(inspection.manifest.is_some());
    assert!(inspection.templates.is_empty());
}

#[test]
fn a_manifest_in_a_folder_is_missing_with_a_hint() {
    let files: Vec<_> = release_files(&good_manifest())
        .into_iter()
        .map(|(n, d)| (format!("orders-1.4.2/{n}"), d))
        .collect();
    let inspection = inspect(zip_of(&files));
    assert_eq!(codes(&inspection), ["manifest_missing"]);
    assert!(
        inspection.problems[0]
            .message
            .contains("found \"orders-1.4.2/release.json\""),
        "{}",
        inspection.problems[0].message
    );
}

#[test]
fn an_object_over_the_limit_is_not_read_at_all() {
    let limits = Limits {
        max_zip_bytes: 100,
        ..Limits::default()
    };
    let source = Counting::new(Bytes::from(good_release()));
    let inspection = futures::executor::block_on(inspect_release(&source, &limits));
    assert_eq!(codes(&inspection), ["object_too_large"]);
    assert_eq!(source.read_bytes(), 0);
}

#[test]
fn every_byte_is_read_once_in_large_chunks_and_the_needed_entries_again() {
    let mut files = release_files(&good_manifest());
    // 20 MiB of incompressible filler that intake does not use, but whose every byte is walked.
    let mut filler = vec![0u8; 20 << 20];
    let mut x: u32 = 1;
    for b in filler.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    files.push(("lambda/code.zip".into(), filler));
    let bytes = Bytes::from(zip_of(&files));
    let source = Counting::new(bytes.clone());
    let inspection = futures::executor::block_on(inspect_release(&source, &Limits::default()));
    assert!(inspection.is_acceptable(), "{:?}", inspection.problems);
    let size = bytes.len() as u64;
    // The tail, the directory, the walk, and the three small files a second time.
    assert!(
        source.read_bytes() >= size && source.read_bytes() < size + 80 * 1024,
        "read {} bytes of {size}",
        source.read_bytes()
    );
    assert!(source.reads() <= 10, "{} reads", source.reads());
}

#[test]
fn a_failing_source_is_a_retryable_read_failure() {
    struct Broken;
    impl RangeSource for Broken {
        fn len(&self) -> u64 {
            1000
        }
        async fn read(&self, _: u64, _: u64) -> Result<Bytes, SourceError> {
            Err(SourceError::other(std::io::Error::other(
                "connection reset",
            )))
        }
    }
    let inspection = futures::executor::block_on(inspect_release(&Broken, &Limits::default()));
    assert_eq!(codes(&inspection), ["read_failed"]);
    assert!(inspection.is_retryable());
    assert!(!inspection.is_acceptable());
}

#[test]
fn a_file_source_inspects_like_memory() {
    let path = std::env::temp_dir().join(format!("shipgate-release-{}.zip", std::process::id()));
    std::fs::write(&path, good_release()).unwrap();
    let source = FileSource::open(&path).unwrap();
    let inspection = futures::executor::block_on(inspect_release(&source, &Limits::default()));
    std::fs::remove_file(&path).unwrap();
    assert!(inspection.is_acceptable(), "{:?}", inspection.problems);
}

#[test]
fn inspection_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let bytes = Bytes::new();
    let limits = Limits::default();
    assert_send(&inspect_release(&bytes, &limits));
}

/// A source that counts the bytes it hands out.
struct Counting {
    inner: Bytes,
    read: AtomicU64,
    reads: AtomicU64,
}

impl Counting {
    fn new(inner: Bytes) -> Self {
        Self {
            inner,
            read: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }

    fn read_bytes(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

impl RangeSource for Counting {
    fn len(&self) -> u64 {
        RangeSource::len(&self.inner)
    }

    async fn read(&self, offset: u64, len: u64) -> Result<Bytes, SourceError> {
        self.read.fetch_add(len, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read(offset, len).await
    }
}

/// The most problems an inspection can list: every code, capped, plus one summary each.
fn max_problems() -> usize {
    ProblemCode::ALL.len() * (MAX_PROBLEMS_PER_CODE + 1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let inspection = inspect(bytes);
        prop_assert!(!inspection.is_acceptable());
        prop_assert!(inspection.problems.len() <= max_problems());
    }

    #[test]
    fn mutated_releases_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = good_release();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let inspection = inspect(bytes);
        prop_assert!(inspection.problems.len() <= max_problems());
        for problem in &inspection.problems {
            prop_assert!(!problem.message.is_empty());
        }
    }

    #[test]
    fn mutated_raw_zip64_releases_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut zip = RawZip::new();
        for (name, data) in release_files(&good_manifest()) {
            zip.push(RawEntry::deflated(&name, &data).zip64());
        }
        zip.zip64_end = true;
        let mut bytes = zip.build();
        // Aim at the directory and end records, where the parser's arithmetic lives.
        let tail = bytes.len().saturating_sub(600);
        for (at, value) in edits {
            let i = tail + at.index(bytes.len() - tail);
            bytes[i] = value;
        }
        let inspection = inspect(bytes);
        prop_assert!(inspection.problems.len() <= max_problems());
    }
}

/// The code block in `doc` that follows `after` (a fenced block of language `lang`).
fn doc_block<'d>(doc: &'d str, after: &str, lang: &str) -> &'d str {
    let from = doc.find(after).expect("the marker is in the doc");
    let fence = format!("```{lang}\n");
    let start = from + doc[from..].find(&fence).expect("a fenced block follows") + fence.len();
    let end = start + doc[start..].find("```").expect("the block is closed");
    &doc[start..end]
}

#[test]
fn the_documented_example_is_a_good_release() {
    let doc = include_str!("../../../docs/release-format.md");
    let files = vec![
        (
            "release.json".to_owned(),
            doc_block(doc, "`release.json`:\n", "json")
                .as_bytes()
                .to_vec(),
        ),
        (
            "templates/service.yaml".to_owned(),
            doc_block(doc, "`templates/service.yaml`", "yaml")
                .as_bytes()
                .to_vec(),
        ),
        (
            "checks.json".to_owned(),
            doc_block(doc, "`checks.json`:\n", "json")
                .as_bytes()
                .to_vec(),
        ),
    ];
    let inspection = inspect(zip_of(&files));
    assert!(inspection.is_acceptable(), "{:#?}", inspection.problems);
    assert_eq!(inspection.checks.unwrap().checks.len(), 3);
}

#[test]
fn every_problem_code_is_documented() {
    let doc = include_str!("../../../docs/release-format.md");
    for code in ProblemCode::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", code.as_str())),
            "{code} is not in docs/release-format.md"
        );
    }
}
