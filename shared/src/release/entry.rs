//! Reading one entry of the archive that intake needs (manifest, templates, checks file), by one
//! ranged read of its data.
//!
//! Only entries that `structure` verified are read: their local record agrees with the central
//! directory and their data decompressed to the declared size and CRC-32. The declared size
//! must also be within the limit for what the entry is before anything is read, and
//! decompression stops one byte past it; the result is held to its size and CRC-32 again, since
//! it is a second read of the object.

use std::io::Read;

use flate2::read::DeflateDecoder;

use super::problems::{ProblemCode as Code, Problems, human_size};
use super::source::{RangeSource, SourceError, read_exact};
use super::zipdir::{Entry, METHOD_DEFLATE, METHOD_STORED};

/// Reads and decompresses `entry`, which is a `kind` ("manifest", "template", "checks file")
/// of at most `max_bytes`. `Ok(None)` when the entry cannot be trusted; the reasons are in
/// `problems`. Entries that `structure` did not verify (encrypted, an unknown method, headers
/// that disagree, data that does not match) were reported then, so they are skipped here
/// without a second problem.
pub(crate) async fn read_entry<S: RangeSource + Sync + ?Sized>(
    source: &S,
    entry: &Entry,
    kind: &str,
    max_bytes: u64,
    problems: &mut Problems,
) -> Result<Option<Vec<u8>>, SourceError> {
    let name = entry.name.as_str();
    let Some(data_at) = entry.verified_data.filter(|_| !entry.is_symlink()) else {
        return Ok(None);
    };
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

    let data = read_exact(source, data_at, entry.compressed_size).await?;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::Limits;
    use crate::release::structure::check_structure;
    use crate::release::testzip::{RawEntry, RawZip, zip_crate};
    use crate::release::zipdir::read_directory;

    /// Reads entry `name` as intake does: directory, structure walk, then the entry.
    fn read(bytes: Vec<u8>, name: &str, max: u64) -> (Option<Vec<u8>>, Vec<&'static str>) {
        let (_, out, codes) = read_from(&bytes::Bytes::from(bytes), name, max);
        (out, codes)
    }

    /// [`read`] from any source; also whether the walk verified the entry.
    fn read_from<S: RangeSource + Sync>(
        src: &S,
        name: &str,
        max: u64,
    ) -> (bool, Option<Vec<u8>>, Vec<&'static str>) {
        let mut problems = Problems::default();
        let limits = Limits::default();
        let (verified, out) = futures::executor::block_on(async {
            let mut dir = read_directory(src, &limits, &mut problems)
                .await
                .unwrap()
                .unwrap();
            check_structure(src, &mut dir, &limits, 1 << 20, &mut problems)
                .await
                .unwrap();
            let entry = dir.find(name).unwrap().clone();
            let out = read_entry(src, &entry, "manifest", max, &mut problems)
                .await
                .unwrap();
            (entry.verified_data.is_some(), out)
        });
        let codes = problems
            .into_vec()
            .iter()
            .map(|p| p.code.as_str())
            .collect();
        (verified, out, codes)
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
    fn an_entry_the_walk_did_not_verify_is_not_read_and_not_reported_twice() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("c", b"data".to_vec()).declare_crc(1));
        zip.push(RawEntry::new("release.json", b"{}".to_vec()).local_name("evil.json!!"));
        let bytes = zip.build();
        assert_eq!(
            read(bytes.clone(), "c", 100),
            (None, vec!["crc_mismatch", "entry_header_mismatch"])
        );
        assert_eq!(
            read(bytes, "release.json", 100),
            (None, vec!["crc_mismatch", "entry_header_mismatch"])
        );
    }

    /// A source whose bytes change after the walk: the second read is held to the size and
    /// CRC-32 all the same.
    struct Changing {
        first: bytes::Bytes,
        then: bytes::Bytes,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl RangeSource for Changing {
        fn len(&self) -> u64 {
            RangeSource::len(&self.first)
        }

        async fn read(&self, offset: u64, len: u64) -> Result<bytes::Bytes, SourceError> {
            let n = self
                .reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The tail, the directory and the one chunk of the walk come from the first.
            if n < 3 {
                self.first.read(offset, len).await
            } else {
                self.then.read(offset, len).await
            }
        }
    }

    #[test]
    fn bytes_that_change_between_the_walk_and_the_read_are_refused() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("m", b"original".to_vec()));
        let first = zip.build();
        let mut then = first.clone();
        let at = then.windows(8).position(|w| w == b"original").unwrap();
        then[at] = b'O';
        let src = Changing {
            first: first.into(),
            then: then.into(),
            reads: Default::default(),
        };
        let (verified, out, codes) = read_from(&src, "m", 100);
        assert!(verified, "the walk saw the first bytes");
        assert_eq!(out, None);
        assert_eq!(codes, ["crc_mismatch"]);
    }
}
