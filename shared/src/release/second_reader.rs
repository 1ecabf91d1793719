//! Property: every archive intake accepts is read as the same files, names and bytes, by a
//! second, independent zip reader, Python's `zipfile` from the project venv.
//!
//! Archives are good releases plus random entries (stored or deflated, with or without data
//! descriptors and ZIP64 fields, directories), written byte by byte, then bent by a few random
//! byte edits or an inserted run of bytes. Whatever intake accepts must list the same entries
//! in the same order with the same bytes in `zipfile`, which reads the central directory, checks
//! each local header's name and each CRC-32. The venv is made by `make test` (`make venv`):
//! without it this test fails, it does not skip.

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use proptest::prelude::*;

use super::testzip::{RawEntry, RawZip, good_manifest, release_files};
use super::zipdir::read_directory;
use super::*;

/// What Python's `zipfile` reads: for each entry, in directory order, the name's bytes (as
/// stored: UTF-8 when flagged, else code page 437) and the data, both in hex.
const PYTHON_READER: &str = r#"
import json, sys, zipfile
out = []
with zipfile.ZipFile(sys.argv[1]) as zf:
    for info in zf.infolist():
        encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
        out.append([info.orig_filename.encode(encoding).hex(), zf.read(info).hex()])
print(json.dumps(out))
"#;

fn python() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"))
}

/// Each entry's name as stored and its data, in directory order.
type Files = Vec<(Vec<u8>, Vec<u8>)>;

/// The entries as intake reads them: names as stored, data of entries the walk verified.
fn intake_view(bytes: &[u8]) -> Files {
    let src = Bytes::copy_from_slice(bytes);
    let limits = Limits::default();
    futures::executor::block_on(async {
        let mut problems = Problems::default();
        let mut dir = read_directory(&src, &limits, &mut problems)
            .await
            .expect("in memory")
            .expect("an accepted archive lists");
        structure::check_structure(&src, &mut dir, &limits, 4096, &mut problems)
            .await
            .expect("in memory");
        let mut out = Vec::new();
        for entry in &dir.entries {
            let data = entry::read_entry(&src, entry, "entry", u64::MAX / 4, &mut problems)
                .await
                .expect("in memory")
                .expect("every entry of an accepted archive reads");
            out.push((entry.raw_name.clone(), data));
        }
        assert!(problems.into_vec().is_empty());
        out
    })
}

/// The entries as Python's `zipfile` reads them, or its error.
fn python_view(bytes: &[u8], case: u64) -> Result<Files, String> {
    let path = std::env::temp_dir().join(format!(
        "shipgate-second-reader-{}-{case}.zip",
        std::process::id()
    ));
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    let out = Command::new(python())
        .args(["-c", PYTHON_READER])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let out =
        out.map_err(|e| format!("cannot run {} ({e}): run `make venv`", python().display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let listed: Vec<(String, String)> =
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    listed
        .into_iter()
        .map(|(name, data)| {
            Ok((
                hex::decode(name).map_err(|e| e.to_string())?,
                hex::decode(data).map_err(|e| e.to_string())?,
            ))
        })
        .collect()
}

/// One random entry: name parts, data, deflate, data descriptor, ZIP64, directory.
type EntrySpec = (Vec<String>, Vec<u8>, bool, bool, bool, bool);

fn entry_spec() -> impl Strategy<Value = EntrySpec> {
    (
        proptest::collection::vec("[a-z0-9]{1,6}", 1..3),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..1500),
            proptest::collection::vec(prop::sample::select(b"ab \n".to_vec()), 0..3000),
        ],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.15),
    )
}

fn build(specs: &[EntrySpec]) -> Vec<u8> {
    let mut zip = RawZip::new();
    for (name, data) in release_files(&good_manifest()) {
        zip.push(RawEntry::deflated(&name, &data));
    }
    let mut names = std::collections::BTreeSet::new();
    for (parts, data, deflate, descriptor, zip64, directory) in specs {
        let mut name = format!("extra/{}", parts.join("/"));
        if *directory {
            name.push('/');
        }
        if !names.insert(name.clone()) {
            continue;
        }
        let data: &[u8] = if *directory { &[] } else { data };
        let mut entry = if *deflate {
            RawEntry::deflated(&name, data)
        } else {
            RawEntry::stored(&name, data)
        };
        if *descriptor {
            entry = entry.data_descriptor();
        }
        if *zip64 {
            entry = entry.zip64();
        }
        zip.push(entry);
    }
    zip.build()
}

/// A small mutation: byte edits, or a run of bytes inserted.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    Edits(Vec<(prop::sample::Index, u8)>),
    Insert(prop::sample::Index, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::None),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
            .prop_map(Mutation::Edits),
        (
            any::<prop::sample::Index>(),
            proptest::collection::vec(any::<u8>(), 1..40)
        )
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    match mutation {
        Mutation::None => {}
        Mutation::Edits(edits) => {
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = *value;
            }
        }
        Mutation::Insert(at, run) => {
            let i = at.index(bytes.len());
            bytes.splice(i..i, run.iter().copied());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_archive_intake_accepts_reads_the_same_in_python_zipfile(
        specs in proptest::collection::vec(entry_spec(), 0..8),
        mutation in mutation(),
        case in any::<u64>(),
    ) {
        let mut bytes = build(&specs);
        apply(&mut bytes, &mutation);
        let inspection = futures::executor::block_on(
            inspect_release(&Bytes::from(bytes.clone()), &Limits::default()),
        );
        if matches!(mutation, Mutation::None) {
            // Not vacuous: what the generator writes unbent is a good release.
            prop_assert!(inspection.is_acceptable(), "{:?}", inspection.problems);
        }
        if inspection.is_acceptable() {
            let ours = intake_view(&bytes);
            let theirs = python_view(&bytes, case);
            prop_assert_eq!(Ok(ours), theirs);
        }
    }
}
