//! Reading one entry of the archive: its local header, then its data, by ranged reads.
//!
//! Nothing an entry says about itself is trusted: the declared size must be within the limit for
//! what the entry is (manifest, template, checks) before anything is read, decompression stops
//! one byte past the declared size, and the result must have exactly the declared size and
//! CRC-32. The local header must agree with the central directory, since extractors that read
//! one or the other would otherwise see different files.

use std::io::Read;

use flate2::read::DeflateDecoder;

use super::problems::{ProblemCode as Code, Problems, human_size};
use super::source::{RangeSource, SourceError, read_exact};
use super::zipdir::{
    Directory, Entry, FLAG_DATA_DESCRIPTOR, FLAG_ENCRYPTED, FLAG_UTF8, LOCAL_LEN, LOCAL_SIG,
    METHOD_DEFLATE, METHOD_STORED, decode_name, le_u16, le_u32,
};

/// Reads and decompresses `entry`, which is a `kind` ("manifest", "template", "checks file")
/// of at most `max_bytes`. `Ok(None)` when the entry cannot be trusted; the reasons are in
/// `problems`. Entries that are encrypted or use an unknown method were reported when the
/// directory was checked, so they are skipped here without a second problem.
pub(crate) async fn read_entry<S: RangeSource + Sync + ?Sized>(
    source: &S,
    directory: &Directory,
    entry: &Entry,
    kind: &str,
    max_bytes: u64,
    problems: &mut Problems,
) -> Result<Option<Vec<u8>>, SourceError> {
    let name = entry.name.as_str();
    if !entry.is_readable() || entry.is_symlink() {
        return Ok(None);
    }
    if entry.uncompressed_size > max_bytes {
        problems.report(
            Code::EntryTooLarge,
            Some(name),
            format!(
                "{kind} {name:?} is {} uncompressed, more than the {} allowed: make it smaller",
                human_size(entry.uncompressed_size),
                human_size(max_bytes)
            ),
        );
        return Ok(None);
    }
    // Deflate never expands data by more than a few bytes per block: anything larger than this
    // is not the compressed form of at most `max_bytes`.
    let max_compressed = max_bytes.saturating_add(max_bytes / 8).saturating_add(1024);
    if entry.compressed_size > max_compressed {
        problems.report(
            Code::EntryTooLarge,
            Some(name),
            format!(
                "{kind} {name:?} is {} compressed, more than a {kind} of at most {} can be: \
                 make it smaller",
                human_size(entry.compressed_size),
                human_size(max_bytes)
            ),
        );
        return Ok(None);
    }

    let Some(LocalRecord { data }) = read_local_record(source, directory, entry, problems).await?
    else {
        return Ok(None);
    };

    let out = match entry.method {
        METHOD_STORED => {
            if entry.compressed_size != entry.uncompressed_size {
                report_size(
                    problems,
                    kind,
                    name,
                    entry.uncompressed_size,
                    data.len() as u64,
                );
                return Ok(None);
            }
            data.to_vec()
        }
        METHOD_DEFLATE => {
            // Capacity and output are bounded by the declared size, itself within `max_bytes`.
            let declared = entry.uncompressed_size;
            let mut out = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
            let mut decoder = DeflateDecoder::new(&data[..]).take(declared.saturating_add(1));
            if let Err(err) = decoder.read_to_end(&mut out) {
                problems.report(
                    Code::CorruptEntry,
                    Some(name),
                    format!(
                        "{kind} {name:?} is not valid deflate data ({err}): re-create the \
                         archive and upload it again"
                    ),
                );
                return Ok(None);
            }
            if out.len() as u64 != declared {
                report_size(problems, kind, name, declared, out.len() as u64);
                return Ok(None);
            }
            out
        }
        _ => return Ok(None),
    };
    let crc = crc32fast::hash(&out);
    if crc != entry.crc32 {
        problems.report(
            Code::CrcMismatch,
            Some(name),
            format!(
                "{kind} {name:?} does not match its checksum (CRC-32 {crc:08x}, declared {:08x}): \
                 the archive is damaged; re-create it and upload it again",
                entry.crc32
            ),
        );
        return Ok(None);
    }
    Ok(Some(out))
}

fn report_size(problems: &mut Problems, kind: &str, name: &str, declared: u64, actual: u64) {
    let message = if actual > declared {
        format!(
            "{kind} {name:?} holds more than the {declared} bytes it declares: its declared size \
             is false; re-create the archive with a standard zip tool"
        )
    } else {
        format!(
            "{kind} {name:?} holds {actual} bytes but declares {declared}: re-create the archive \
             with a standard zip tool"
        )
    };
    problems.report(Code::EntrySizeMismatch, Some(name), message);
}

/// What follows a checked local header.
struct LocalRecord {
    /// The entry's compressed data.
    data: bytes::Bytes,
}

/// Reads the local header, checks it against the directory record and the entries around it,
/// then reads the name, extra field and data in one ranged read (two reads per entry in all).
async fn read_local_record<S: RangeSource + Sync + ?Sized>(
    source: &S,
    directory: &Directory,
    entry: &Entry,
    problems: &mut Problems,
) -> Result<Option<LocalRecord>, SourceError> {
    let name = entry.name.as_str();
    let corrupt = |problems: &mut Problems, what: &str| {
        problems.report(
            Code::CorruptEntry,
            Some(name),
            format!(
                "entry {name:?} {what}: the archive is damaged; re-create it and upload it again"
            ),
        );
    };
    let header_end = entry.local_offset.checked_add(LOCAL_LEN);
    if header_end.is_none_or(|end| end > directory.data_end) {
        corrupt(problems, "has its local header outside the archive's data");
        return Ok(None);
    }
    let fixed = read_exact(source, entry.local_offset, LOCAL_LEN).await?;
    if le_u32(&fixed, 0) != Some(LOCAL_SIG) {
        corrupt(problems, "has no local header where the directory says");
        return Ok(None);
    }
    let flags = le_u16(&fixed, 6).unwrap_or(0);
    let method = le_u16(&fixed, 8).unwrap_or(0);
    let crc = le_u32(&fixed, 14).unwrap_or(0);
    let compressed = le_u32(&fixed, 18).unwrap_or(0);
    let uncompressed = le_u32(&fixed, 22).unwrap_or(0);
    let name_len = u64::from(le_u16(&fixed, 26).unwrap_or(0));
    let extra_len = u64::from(le_u16(&fixed, 28).unwrap_or(0));

    let names_at = entry.local_offset + LOCAL_LEN;
    let data_offset = names_at + name_len + extra_len;
    let data_end = data_offset.checked_add(entry.compressed_size);
    if data_end.is_none_or(|end| end > directory.data_end) {
        corrupt(
            problems,
            "has data that runs past the start of the directory",
        );
        return Ok(None);
    }
    let limit = directory.data_limit(entry);
    // `min_end` beyond the limit was already reported when the directory was checked.
    if data_end.is_some_and(|end| end > limit) && entry.min_end() <= limit {
        problems.report(
            Code::OverlappingEntries,
            Some(name),
            format!(
                "entry {name:?} overlaps the entry that follows it: entries that share data are \
                 how zip bombs multiply their size; re-create the archive with a standard zip tool"
            ),
        );
        return Ok(None);
    }

    // Bounded: the name and extra field are at most 64 KiB each, the data was checked against
    // the entry's limit by the caller, and all of it lies before the directory.
    let record = read_exact(
        source,
        names_at,
        data_offset - names_at + entry.compressed_size,
    )
    .await?;
    let raw_name = record.slice(..name_len as usize);
    let local_name = decode_name(&raw_name, flags & FLAG_UTF8 != 0);
    let mut mismatches = Vec::new();
    if local_name != entry.name {
        mismatches.push(format!("is named {local_name:?} in its local header"));
    }
    if method != entry.method {
        mismatches.push(format!(
            "uses compression method {method} in its local header but {} in the directory",
            entry.method
        ));
    }
    if (flags ^ entry.flags) & FLAG_ENCRYPTED != 0 {
        mismatches.push("is encrypted in one header and not in the other".to_owned());
    }
    // With a data descriptor the local header's CRC and sizes are zero; a ZIP64 entry has
    // 0xffffffff sizes there. Other values must agree with the directory.
    if flags & FLAG_DATA_DESCRIPTOR == 0 {
        if crc != entry.crc32 {
            mismatches.push(format!(
                "declares CRC-32 {crc:08x} in its local header but {:08x} in the directory",
                entry.crc32
            ));
        }
        let sizes = [
            ("compressed", compressed, entry.compressed_size),
            ("uncompressed", uncompressed, entry.uncompressed_size),
        ];
        for (what, local, central) in sizes {
            if local != u32::MAX && u64::from(local) != central {
                mismatches.push(format!(
                    "declares {local} bytes {what} in its local header but {central} in the \
                     directory"
                ));
            }
        }
    }
    if !mismatches.is_empty() {
        problems.report(
            Code::EntryHeaderMismatch,
            Some(name),
            format!(
                "entry {name:?} {}: tools disagree on what it holds; re-create the archive with \
                 a standard zip tool",
                mismatches.join(", ")
            ),
        );
        // Which header is right cannot be known: the entry is not read further.
        return Ok(None);
    }
    Ok(Some(LocalRecord {
        data: record.slice((name_len + extra_len) as usize..),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::Limits;
    use crate::release::testzip::{RawEntry, RawZip, zip_crate};
    use crate::release::zipdir::read_directory;

    fn read(bytes: Vec<u8>, name: &str, max: u64) -> (Option<Vec<u8>>, Vec<&'static str>) {
        let src = bytes::Bytes::from(bytes);
        let mut problems = Problems::default();
        let out = futures::executor::block_on(async {
            let dir = read_directory(&src, &Limits::default(), &mut problems)
                .await
                .unwrap()
                .unwrap();
            let entry = dir.find(name).unwrap().clone();
            read_entry(&src, &dir, &entry, "manifest", max, &mut problems)
                .await
                .unwrap()
        });
        let codes = problems
            .into_vec()
            .iter()
            .map(|p| p.code.as_str())
            .collect();
        (out, codes)
    }

    #[test]
    fn stored_and_deflated_entries_read_back() {
        let text = b"{\"hello\": \"release\"}".repeat(50);
        let bytes = zip_crate(&[("a.json", &text[..]), ("b", b"x".as_slice())]);
        assert_eq!(read(bytes, "a.json", 1 << 20), (Some(text.clone()), vec![]));
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("s", text.clone()));
        zip.push(RawEntry::deflated("d", &text));
        let bytes = zip.build();
        assert_eq!(read(bytes.clone(), "s", 1 << 20).0, Some(text.clone()));
        assert_eq!(read(bytes, "d", 1 << 20).0, Some(text));
    }

    #[test]
    fn an_entry_above_its_limit_is_not_read() {
        let bytes = zip_crate(&[("a.json", &[b' '; 5000][..])]);
        assert_eq!(read(bytes, "a.json", 1000), (None, vec!["entry_too_large"]));
    }

    #[test]
    fn lying_sizes_stop_decompression_at_the_declared_size() {
        let real = vec![b'a'; 100_000];
        let mut zip = RawZip::new();
        zip.push(RawEntry::deflated("m", &real).declare_uncompressed(10));
        zip.push(RawEntry::deflated("n", b"short").declare_uncompressed(50));
        zip.push(RawEntry::new("s", b"stored".to_vec()).declare_uncompressed(3));
        let bytes = zip.build();
        assert_eq!(
            read(bytes.clone(), "m", 1 << 20),
            (None, vec!["entry_size_mismatch"])
        );
        assert_eq!(
            read(bytes.clone(), "n", 1 << 20),
            (None, vec!["entry_size_mismatch"])
        );
        assert_eq!(
            read(bytes, "s", 1 << 20),
            (None, vec!["entry_size_mismatch"])
        );
    }

    #[test]
    fn a_bad_crc_or_bad_deflate_is_reported() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("c", b"data".to_vec()).declare_crc(1));
        zip.push(RawEntry::new("d", vec![0xff; 20]).method(8));
        let bytes = zip.build();
        assert_eq!(read(bytes.clone(), "c", 100), (None, vec!["crc_mismatch"]));
        let (out, codes) = read(bytes, "d", 100);
        assert!(out.is_none());
        assert!(
            codes == ["corrupt_entry"] || codes == ["entry_size_mismatch"],
            "{codes:?}"
        );
    }

    #[test]
    fn a_local_name_that_disagrees_is_reported() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("release.json", b"{}".to_vec()).local_name("evil.json!!"));
        let (out, codes) = read(zip.build(), "release.json", 100);
        assert!(out.is_none());
        assert_eq!(codes, ["entry_header_mismatch"]);
    }
}
