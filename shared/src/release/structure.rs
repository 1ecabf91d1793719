//! The archive as one structure: every byte from offset 0 to the central directory belongs to
//! exactly one entry, whose local record agrees with its directory record, and whose data
//! decompresses to what it declares.
//!
//! Zip tools read an archive in two ways: from the central directory (`unzip`, Python's
//! `zipfile`, Go's `archive/zip`) or by scanning local headers from the start (Java's
//! `ZipInputStream`, streaming extractors). An archive is read the same way by both only when
//! the local records, laid end to end from offset 0, are exactly the entries the directory
//! lists, with the same names, flags, methods, CRCs and sizes. This module walks the archive
//! once, in order, in large sequential reads (S3 ranged GETs of [`CHUNK_BYTES`]), holding one
//! chunk and a small inflate buffer at a time, and checks exactly that. Every entry is
//! decompressed and its CRC-32 checked, whether or not intake reads it, so the size and ratio
//! limits count what the entries really hold, not only what they declare. An entry passes
//! only if all of this holds; `entry` then reads only entries that passed.

use flate2::{Decompress, FlushDecompress, Status};

use super::limits::Limits;
use super::problems::{ProblemCode as Code, Problems, human_size};
use super::source::{RangeSource, SourceError, read_exact};
use super::zipdir::{
    Directory, Entry, FLAG_DATA_DESCRIPTOR, LOCAL_LEN, LOCAL_SIG, METHOD_DEFLATE, METHOD_STORED,
    decode_name, exceeds_ratio, le_u16, le_u32,
};

/// Bytes fetched per read of the archive's data: large enough that a 2 GiB archive costs
/// 256 GETs, small enough to bound intake's memory.
pub(crate) const CHUNK_BYTES: u64 = 8 << 20;

/// Decompressed bytes produced per step; only the CRC and the count are kept.
const INFLATE_BUFFER: usize = 64 << 10;

const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
const ZIP64_EXTRA: u16 = 0x0001;
const UNICODE_PATH_EXTRA: u16 = 0x7075;

/// Walks the archive from offset 0 to its central directory in chunks of `chunk` bytes,
/// reports every byte that no entry explains and every entry whose local record or data
/// disagrees with the directory, and marks the entries that can be trusted
/// ([`Entry::verified_data`]). `Err` is a failure to read, not a problem of the drop.
pub(crate) async fn check_structure<S: RangeSource + Sync + ?Sized>(
    source: &S,
    directory: &mut Directory,
    limits: &Limits,
    chunk: u64,
    problems: &mut Problems,
) -> Result<(), SourceError> {
    let mut reader = Sequential {
        source,
        end: directory.data_end,
        chunk: chunk.max(1),
        buffer: bytes::Bytes::new(),
        buffer_at: 0,
    };
    let mut order: Vec<usize> = (0..directory.entries.len()).collect();
    order.sort_by_key(|&i| directory.entries[i].local_offset);

    // What has been explained so far: every byte before `explained` belongs to an entry.
    let mut explained = 0u64;
    let mut previous: Option<usize> = None;
    // After an entry whose extent could not be found, the next gap is not reported again.
    let mut lost = false;
    // Decompressed bytes allowed in all, so the walk's time is bounded by the limit even when
    // the archive declares more (that is reported already).
    let mut budget = limits.max_total_uncompressed_bytes;
    for &index in &order {
        let entry = &directory.entries[index];
        let name = entry.name.as_str();
        if !lost {
            if entry.local_offset < explained {
                let other = previous.map_or("", |p| directory.entries[p].name.as_str());
                problems.report(
                    Code::OverlappingEntries,
                    Some(name),
                    format!(
                        "entry {name:?} starts inside entry {other:?}: entries that share data \
                         are how zip bombs multiply their size; re-create the archive with a \
                         standard zip tool"
                    ),
                );
                continue;
            }
            if entry.local_offset > explained {
                report_gap(problems, explained, entry.local_offset, Some(name));
            }
        }
        let inflate = entry.is_readable()
            && !entry.is_symlink()
            && !exceeds_ratio(entry, limits)
            && entry.uncompressed_size <= budget;
        if inflate {
            budget -= entry.uncompressed_size;
        }
        let walked = walk_entry(&mut reader, entry, inflate, problems).await?;
        previous = Some(index);
        match walked {
            Walked::Lost => {
                lost = true;
                explained = explained.max(entry.local_offset);
            }
            Walked::Ends { at, verified } => {
                lost = false;
                explained = at;
                directory.entries[index].verified_data = verified;
            }
        }
    }
    if !lost && explained < directory.data_end && !order.is_empty() {
        report_gap(problems, explained, directory.data_end, None);
    }
    Ok(())
}

fn report_gap(problems: &mut Problems, from: u64, to: u64, before: Option<&str>) {
    let size = human_size(to - from);
    match before {
        Some(name) if from == 0 => problems.report(
            Code::LeadingBytes,
            None,
            format!(
                "the archive has {size} before its first entry {name:?} (a self-extracting stub \
                 or a prepended file), which tools that scan from the start read as something \
                 else: upload a plain zip that starts with its first entry"
            ),
        ),
        Some(name) => problems.report(
            Code::UnexplainedBytes,
            Some(name),
            format!(
                "the archive has {size} at offset {from} before entry {name:?} that belong to \
                 no entry of its directory (a hidden file or padding that some tools extract): \
                 re-create the archive with a standard zip tool"
            ),
        ),
        None => problems.report(
            Code::UnexplainedBytes,
            None,
            format!(
                "the archive has {size} at offset {from} after its last entry that belong to no \
                 entry of its directory (a hidden file or padding that some tools extract): \
                 re-create the archive with a standard zip tool"
            ),
        ),
    }
}

/// What walking one entry found.
enum Walked {
    /// The entry's local record could not be followed: where it ends is unknown.
    Lost,
    /// The entry's local record (header, name, extra field, data, data descriptor) ends at
    /// `at`; `verified` is where its data starts when it passed every check.
    Ends { at: u64, verified: Option<u64> },
}

/// The fields of a local header.
struct LocalHeader {
    flags: u16,
    method: u16,
    crc: u32,
    compressed: u32,
    uncompressed: u32,
    name_len: u64,
    extra_len: u64,
}

async fn walk_entry<S: RangeSource + Sync + ?Sized>(
    reader: &mut Sequential<'_, S>,
    entry: &Entry,
    inflate: bool,
    problems: &mut Problems,
) -> Result<Walked, SourceError> {
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
    let at = entry.local_offset;
    if at.checked_add(LOCAL_LEN).is_none_or(|end| end > reader.end) {
        corrupt(problems, "has its local header outside the archive's data");
        return Ok(Walked::Lost);
    }
    let fixed = reader.get(at, LOCAL_LEN, LOCAL_LEN).await?;
    if le_u32(&fixed, 0) != Some(LOCAL_SIG) {
        corrupt(problems, "has no local header where the directory says");
        return Ok(Walked::Lost);
    }
    let field16 = |off| le_u16(&fixed, off).unwrap_or(0);
    let field32 = |off| le_u32(&fixed, off).unwrap_or(0);
    let local = LocalHeader {
        flags: field16(6),
        method: field16(8),
        crc: field32(14),
        compressed: field32(18),
        uncompressed: field32(22),
        name_len: u64::from(field16(26)),
        extra_len: u64::from(field16(28)),
    };
    let names_at = at + LOCAL_LEN;
    let data_at = names_at + local.name_len + local.extra_len;
    if data_at > reader.end {
        corrupt(
            problems,
            "has a local name or extra field that runs into the directory",
        );
        return Ok(Walked::Lost);
    }
    let names_len = local.name_len + local.extra_len;
    let names = reader.get(names_at, names_len, names_len).await?;
    let (raw_name, extra) = names.split_at(local.name_len as usize);
    let extra = LocalExtra::parse(extra);

    let mut mismatches = header_mismatches(entry, &local, raw_name, &extra);
    let descriptor = entry.flags & FLAG_DATA_DESCRIPTOR != 0;
    let mut trusted = mismatches.is_empty();
    if !mismatches.is_empty() {
        problems.report(
            Code::EntryHeaderMismatch,
            Some(name),
            format!(
                "entry {name:?} {}: tools that read local headers see another file than tools \
                 that read the directory; re-create the archive with a standard zip tool",
                mismatches.join(", ")
            ),
        );
        mismatches.clear();
    }

    let data_end = data_at.checked_add(entry.compressed_size);
    let Some(data_end) = data_end.filter(|&end| end <= reader.end) else {
        corrupt(
            problems,
            "has data that runs past the start of the directory",
        );
        return Ok(Walked::Lost);
    };

    if entry.is_dir()
        && (entry.uncompressed_size > 0
            || (entry.method == METHOD_STORED && entry.compressed_size > 0))
    {
        trusted = false;
        problems.report(
            Code::DirectoryWithData,
            Some(name),
            format!(
                "entry {name:?} is a directory but holds {} of data, which some tools extract \
                 as a file: remove the data, or name the file without a trailing \"/\"",
                human_size(entry.uncompressed_size.max(entry.compressed_size))
            ),
        );
    } else if inflate {
        trusted &= check_data(reader, entry, data_at, problems).await?;
    } else {
        // Encrypted, unknown method, symbolic link, bomb by its declared sizes, or over the
        // budget: reported by the directory checks, never read.
        trusted = false;
    }

    let mut end = data_end;
    if descriptor {
        match read_descriptor(reader, entry, data_end, extra.zip64.is_some()).await? {
            Ok(after) => end = after,
            Err(why) => {
                problems.report(
                    Code::DataDescriptorMismatch,
                    Some(name),
                    format!(
                        "entry {name:?} {why}: streaming tools read its sizes and checksum from \
                         there and see another file; re-create the archive with a standard zip \
                         tool"
                    ),
                );
                // A descriptor that does not agree cannot say where it ends.
                return Ok(Walked::Lost);
            }
        }
    }
    Ok(Walked::Ends {
        at: end,
        verified: trusted.then_some(data_at),
    })
}

/// The extra fields of a local header that change what a reader sees.
struct LocalExtra {
    /// The ZIP64 values, in their order (uncompressed size, compressed size).
    zip64: Option<Vec<u64>>,
    /// More than one ZIP64 field: readers differ on which one counts.
    zip64_twice: bool,
    /// An Info-ZIP Unicode Path name whose CRC matches the header's name.
    unicode_name: Option<Vec<u8>>,
}

impl LocalExtra {
    fn parse(extra: &[u8]) -> Self {
        let mut out = Self {
            zip64: None,
            zip64_twice: false,
            unicode_name: None,
        };
        let mut at = 0usize;
        while let (Some(id), Some(size)) = (le_u16(extra, at), le_u16(extra, at + 2)) {
            let start = at + 4;
            let Some(data) = extra.get(start..start + usize::from(size)) else {
                break;
            };
            match id {
                ZIP64_EXTRA => {
                    if out.zip64.is_some() {
                        out.zip64_twice = true;
                    }
                    let values = data
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect();
                    out.zip64.get_or_insert(values);
                }
                UNICODE_PATH_EXTRA if data.first() == Some(&1) => {
                    out.unicode_name = Some(data.get(5..).unwrap_or_default().to_vec());
                }
                _ => {}
            }
            at = start + usize::from(size);
        }
        out
    }
}

/// How the local header disagrees with the directory record, as phrases.
fn header_mismatches(
    entry: &Entry,
    local: &LocalHeader,
    raw_name: &[u8],
    extra: &LocalExtra,
) -> Vec<String> {
    let mut out = Vec::new();
    if raw_name != entry.raw_name.as_slice() {
        let shown = decode_name(raw_name, local.flags & super::zipdir::FLAG_UTF8 != 0);
        out.push(format!("is named {shown:?} in its local header"));
    }
    if let Some(unicode) = &extra.unicode_name
        && unicode.as_slice() != entry.name.as_bytes()
    {
        out.push(format!(
            "carries the name {:?} in its local Unicode Path field",
            String::from_utf8_lossy(unicode)
        ));
    }
    if local.flags != entry.flags {
        out.push(format!(
            "has flags {:#06x} in its local header but {:#06x} in the directory",
            local.flags, entry.flags
        ));
    }
    if local.method != entry.method {
        out.push(format!(
            "uses compression method {} in its local header but {} in the directory",
            local.method, entry.method
        ));
    }
    if extra.zip64_twice {
        out.push("has two ZIP64 fields in its local header".to_owned());
    }
    // With a data descriptor, a local value may be zero (the streaming writer did not know it
    // yet); any other value must be the directory's.
    let descriptor = entry.flags & FLAG_DATA_DESCRIPTOR != 0;
    let agrees = |local: u64, central: u64| local == central || (descriptor && local == 0);
    if !agrees(local.crc.into(), entry.crc32.into()) {
        out.push(format!(
            "declares CRC-32 {:08x} in its local header but {:08x} in the directory",
            local.crc, entry.crc32
        ));
    }
    // A local ZIP64 field holds both sizes, uncompressed first (APPNOTE 4.5.3).
    let zip64 = extra.zip64.as_deref().unwrap_or_default();
    let sizes = [
        (
            "uncompressed",
            local.uncompressed,
            zip64.first(),
            entry.uncompressed_size,
        ),
        (
            "compressed",
            local.compressed,
            zip64.get(1),
            entry.compressed_size,
        ),
    ];
    for (what, field, wide, central) in sizes {
        let value = if field == u32::MAX {
            match wide {
                Some(&v) => v,
                None => {
                    out.push(format!(
                        "defers its {what} size to a ZIP64 field its local header does not have"
                    ));
                    continue;
                }
            }
        } else {
            u64::from(field)
        };
        if !agrees(value, central) {
            out.push(format!(
                "declares {value} bytes {what} in its local header but {central} in the \
                 directory"
            ));
        }
        // A ZIP64 value a stream reader may prefer must agree too, saturated field or not.
        if let Some(&v) = wide
            && field != u32::MAX
            && !agrees(v, central)
        {
            out.push(format!(
                "declares {v} bytes {what} in its local ZIP64 field but {central} in the \
                 directory"
            ));
        }
    }
    out
}

/// Reads the data descriptor after the data at `at`: `Ok(end)` when it agrees with the
/// directory, `Err(phrase)` saying how it does not.
async fn read_descriptor<S: RangeSource + Sync + ?Sized>(
    reader: &mut Sequential<'_, S>,
    entry: &Entry,
    at: u64,
    zip64: bool,
) -> Result<Result<u64, String>, SourceError> {
    let size_len: u64 = if zip64 { 8 } else { 4 };
    let body_len = 4 + 2 * size_len;
    let available = reader.end - at;
    if available < body_len {
        return Ok(Err("has no data descriptor after its data".to_owned()));
    }
    let head = reader.get(at, 4, 4).await?;
    let (body_at, len) = if le_u32(&head, 0) == Some(DESCRIPTOR_SIG) && available >= 4 + body_len {
        (at + 4, 4 + body_len)
    } else {
        (at, body_len)
    };
    let body = reader.get(body_at, body_len, body_len).await?;
    let crc = le_u32(&body, 0).unwrap_or(0);
    let size = |off: usize| -> u64 {
        if zip64 {
            body.get(off..off + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        } else {
            u64::from(le_u32(&body, off).unwrap_or(0))
        }
    };
    let compressed = size(4);
    let uncompressed = size(4 + size_len as usize);
    let mut wrong = Vec::new();
    if crc != entry.crc32 {
        wrong.push(format!("CRC-32 {crc:08x} (directory: {:08x})", entry.crc32));
    }
    if compressed != entry.compressed_size {
        wrong.push(format!(
            "{compressed} bytes compressed (directory: {})",
            entry.compressed_size
        ));
    }
    if uncompressed != entry.uncompressed_size {
        wrong.push(format!(
            "{uncompressed} bytes uncompressed (directory: {})",
            entry.uncompressed_size
        ));
    }
    if wrong.is_empty() {
        Ok(Ok(at + len))
    } else {
        Ok(Err(format!(
            "declares {} in its data descriptor",
            wrong.join(", ")
        )))
    }
}

/// Decompresses the entry's data at `data_at` (stored or deflate), streaming, and checks that it
/// holds exactly its declared size and CRC-32. `false` when it does not (reported).
async fn check_data<S: RangeSource + Sync + ?Sized>(
    reader: &mut Sequential<'_, S>,
    entry: &Entry,
    data_at: u64,
    problems: &mut Problems,
) -> Result<bool, SourceError> {
    let name = entry.name.as_str();
    let declared = entry.uncompressed_size;
    let mut crc = crc32fast::Hasher::new();
    let mut produced = 0u64;
    let mut offset = data_at;
    let end = data_at + entry.compressed_size;
    match entry.method {
        METHOD_STORED => {
            if entry.compressed_size != declared {
                report_size(problems, name, declared, entry.compressed_size);
                return Ok(false);
            }
            while offset < end {
                let bytes = reader.get(offset, 1, end - offset).await?;
                crc.update(&bytes);
                offset += bytes.len() as u64;
            }
            produced = declared;
        }
        METHOD_DEFLATE => {
            let mut inflater = Decompress::new(false);
            let mut out = vec![0u8; INFLATE_BUFFER];
            let mut finished = false;
            while !finished {
                let input = if offset < end {
                    reader.get(offset, 1, end - offset).await?
                } else {
                    bytes::Bytes::new()
                };
                let last = offset + input.len() as u64 == end;
                let mut used = 0usize;
                loop {
                    let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
                    let status = match inflater.decompress(
                        &input[used..],
                        &mut out,
                        FlushDecompress::None,
                    ) {
                        Ok(status) => status,
                        Err(err) => {
                            problems.report(
                                Code::CorruptEntry,
                                Some(name),
                                format!(
                                    "entry {name:?} is not valid deflate data ({err}): \
                                     re-create the archive and upload it again"
                                ),
                            );
                            return Ok(false);
                        }
                    };
                    let took = (inflater.total_in() - in_before) as usize;
                    let made = (inflater.total_out() - out_before) as usize;
                    used += took;
                    crc.update(&out[..made]);
                    produced += made as u64;
                    if produced > declared {
                        report_size(problems, name, declared, produced);
                        return Ok(false);
                    }
                    if status == Status::StreamEnd {
                        finished = true;
                        break;
                    }
                    if made < out.len() && (used == input.len() || (took == 0 && made == 0)) {
                        break;
                    }
                }
                offset += used as u64;
                if finished && offset < end {
                    problems.report(
                        Code::CorruptEntry,
                        Some(name),
                        format!(
                            "entry {name:?} has {} after the end of its deflate stream, which \
                             tools read differently: re-create the archive with a standard zip \
                             tool",
                            human_size(end - offset)
                        ),
                    );
                    return Ok(false);
                }
                if !finished && (last || offset >= end || used == 0) {
                    if produced == declared {
                        problems.report(
                            Code::CorruptEntry,
                            Some(name),
                            format!(
                                "entry {name:?} has a deflate stream that does not end: \
                                 re-create the archive and upload it again"
                            ),
                        );
                    } else {
                        report_size(problems, name, declared, produced);
                    }
                    return Ok(false);
                }
            }
        }
        _ => return Ok(false),
    }
    if produced != declared {
        report_size(problems, name, declared, produced);
        return Ok(false);
    }
    let crc = crc.finalize();
    if crc != entry.crc32 {
        problems.report(
            Code::CrcMismatch,
            Some(name),
            format!(
                "entry {name:?} does not match its checksum (CRC-32 {crc:08x}, declared {:08x}): \
                 the archive is damaged; re-create it and upload it again",
                entry.crc32
            ),
        );
        return Ok(false);
    }
    Ok(true)
}

fn report_size(problems: &mut Problems, name: &str, declared: u64, actual: u64) {
    let message = if actual > declared {
        format!(
            "entry {name:?} holds more than the {declared} bytes it declares: its declared size \
             is false (as in a compression bomb); re-create the archive with a standard zip tool"
        )
    } else {
        format!(
            "entry {name:?} holds {actual} bytes but declares {declared}: re-create the archive \
             with a standard zip tool"
        )
    };
    problems.report(Code::EntrySizeMismatch, Some(name), message);
}

/// Sequential reads of the archive's data in chunks: one chunk is held at a time.
struct Sequential<'s, S: ?Sized> {
    source: &'s S,
    /// Where the data ends (the central directory): nothing past it is read.
    end: u64,
    chunk: u64,
    buffer: bytes::Bytes,
    buffer_at: u64,
}

impl<S: RangeSource + Sync + ?Sized> Sequential<'_, S> {
    /// At least `min` and at most `max` bytes at `offset`; the caller keeps `offset + min`
    /// within `end`. Reads a new chunk from `offset` when the held one does not cover them.
    async fn get(&mut self, offset: u64, min: u64, max: u64) -> Result<bytes::Bytes, SourceError> {
        let held_end = self.buffer_at + self.buffer.len() as u64;
        if offset < self.buffer_at || offset + min > held_end {
            let len = self.chunk.max(min).min(self.end.saturating_sub(offset));
            self.buffer = read_exact(self.source, offset, len).await?;
            self.buffer_at = offset;
        }
        let start = (offset - self.buffer_at) as usize;
        let available = self.buffer.len() - start;
        let take = usize::try_from(max).map_or(available, |m| m.min(available));
        Ok(self.buffer.slice(start..start + take))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::Problem;
    use crate::release::testzip::{RawEntry, RawZip, zip_crate, zip_crate_with};
    use crate::release::zipdir::{check_entries, read_directory};

    /// Chunk sizes the walk is run with: records and streams cut at every boundary, and whole.
    const CHUNKS: [u64; 3] = [1, 7, CHUNK_BYTES];

    /// The directory after the walk and every problem, as intake finds them up to the walk.
    fn walk_with(bytes: &[u8], chunk: u64, limits: &Limits) -> (Option<Directory>, Vec<Problem>) {
        let src = bytes::Bytes::copy_from_slice(bytes);
        let mut problems = Problems::default();
        let dir = futures::executor::block_on(async {
            let mut dir = read_directory(&src, limits, &mut problems).await.unwrap()?;
            check_entries(&dir, limits, &mut problems);
            check_structure(&src, &mut dir, limits, chunk, &mut problems)
                .await
                .unwrap();
            Some(dir)
        });
        (dir, problems.into_vec())
    }

    /// The problem codes, the same for every chunk size.
    fn codes(bytes: &[u8]) -> Vec<&'static str> {
        let mut seen = None;
        for chunk in CHUNKS {
            let (_, problems) = walk_with(bytes, chunk, &Limits::default());
            let found: Vec<_> = problems.iter().map(|p| p.code.as_str()).collect();
            if let Some(before) = &seen {
                assert_eq!(before, &found, "chunk {chunk}");
            }
            seen = Some(found);
        }
        seen.unwrap_or_default()
    }

    fn problems(bytes: &[u8]) -> Vec<Problem> {
        walk_with(bytes, CHUNK_BYTES, &Limits::default()).1
    }

    fn all_verified(bytes: &[u8]) {
        for chunk in CHUNKS {
            let (dir, problems) = walk_with(bytes, chunk, &Limits::default());
            assert!(problems.is_empty(), "chunk {chunk}: {problems:?}");
            for e in &dir.unwrap().entries {
                assert!(e.verified_data.is_some(), "{} not verified", e.name);
            }
        }
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"release "[i % 8]).collect()
    }

    /// Bytes that do not compress (deflate leaves their ratio near 1).
    fn noise(n: usize) -> Vec<u8> {
        let mut x: u32 = 0x9e37_79b9;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn archives_from_standard_writers_are_verified_entry_by_entry() {
        let files: [(&str, &[u8]); 4] = [
            ("release.json", b"{}"),
            ("templates/", b""),
            ("templates/a.yaml", &noise(100_000)),
            ("empty.txt", b""),
        ];
        all_verified(&zip_crate(&files));
        all_verified(&zip_crate_with(&files, true));
        let mut zip = RawZip::new();
        zip.push(RawEntry::deflated("a", &noise(70_000)).zip64());
        zip.push(RawEntry::deflated("b", &text(5000)).data_descriptor());
        zip.push(RawEntry::new("c", text(300)).data_descriptor().zip64());
        zip.push(RawEntry::new("dir/", Vec::new()));
        zip.zip64_end = true;
        all_verified(&zip.build());
    }

    #[test]
    fn a_local_header_that_disagrees_with_the_directory_is_refused() {
        let cases = [
            RawEntry::new("a.txt", text(10)).local_name("b.txt"),
            RawEntry::new("a.txt", text(10)).local_sizes(10, 11),
            RawEntry::new("a.txt", text(10)).local_sizes(9, 10),
            RawEntry::new("a.txt", text(10)).local_crc(7),
            RawEntry::new("a.txt", text(10)).local_flags(1 << 11),
            RawEntry::deflated("a.txt", &text(10)).local_method(0),
            RawEntry::new("a.txt", text(10)).local_zip64_sizes(10, 99),
            RawEntry::new("a.txt", text(10)).local_zip64_sizes(1 << 40, 10),
            RawEntry::new("a.txt", text(10))
                .unicode_path("a.txt")
                .local_name("a.txt"),
        ];
        for (i, entry) in cases.into_iter().enumerate() {
            let mut zip = RawZip::new();
            zip.push(entry);
            zip.push(RawEntry::new("next.txt", text(5)));
            let bytes = zip.build();
            if i == 8 {
                // Same Unicode Path in both headers, agreeing with the name: fine.
                all_verified(&bytes);
                continue;
            }
            assert_eq!(codes(&bytes), ["entry_header_mismatch"], "case {i}");
            let (dir, _) = walk_with(&bytes, CHUNK_BYTES, &Limits::default());
            let dir = dir.unwrap();
            assert!(dir.entries[0].verified_data.is_none(), "case {i}");
            assert!(dir.entries[1].verified_data.is_some(), "case {i}");
        }
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("release.json", text(3)).local_name("evil.json"));
        let message = &problems(&zip.build())[0].message;
        assert!(
            message.contains("\"release.json\" is named \"evil.json\""),
            "{message}"
        );
    }

    #[test]
    fn a_hidden_local_record_is_unexplained_bytes() {
        let hidden = RawEntry::new("release.json", b"{\"evil\": true}".to_vec());
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("a.txt", text(10)).hiding(&hidden));
        zip.push(RawEntry::new("b.txt", text(10)));
        let found = problems(&zip.build());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, Code::UnexplainedBytes);
        assert_eq!(found[0].path.as_deref(), Some("b.txt"));
        // At the end, before the directory, too.
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("a.txt", text(10)).hiding(&hidden));
        assert_eq!(codes(&zip.build()), ["unexplained_bytes"]);
    }

    #[test]
    fn bytes_between_entries_are_unexplained() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("a.txt", text(10)).followed_by(&[0; 3]));
        zip.push(RawEntry::new("b.txt", text(10)));
        assert_eq!(codes(&zip.build()), ["unexplained_bytes"]);
    }

    #[test]
    fn leading_bytes_with_shifted_offsets_are_refused() {
        let mut zip = RawZip::new();
        zip.leading = b"#!/bin/sh\nexec unzip \"$0\"\n".to_vec();
        zip.push(RawEntry::new("a.txt", text(10)));
        let found = problems(&zip.build());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, Code::LeadingBytes);
        assert!(
            found[0].message.contains("26 bytes before its first entry"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn a_directory_holding_data_is_refused() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("templates/", b"#!/bin/sh".to_vec()));
        zip.push(RawEntry::deflated("bin/", &text(100)));
        assert_eq!(
            codes(&zip.build()),
            ["directory_with_data", "directory_with_data"]
        );
        // A deflated directory whose stream is empty holds nothing: fine.
        let mut zip = RawZip::new();
        zip.push(RawEntry::deflated("empty/", b""));
        all_verified(&zip.build());
    }

    #[test]
    fn a_data_descriptor_that_disagrees_is_refused() {
        let data = text(50);
        let crc = crc32fast::hash(&data);
        for (i, entry) in [
            RawEntry::new("a", data.clone()).descriptor_values(crc ^ 1, 50, 50),
            RawEntry::new("a", data.clone()).descriptor_values(crc, 50, 49),
            RawEntry::new("a", data.clone()).descriptor_values(crc, 51, 50),
            RawEntry::new("a", data.clone())
                .zip64()
                .descriptor_values(crc, 50, 1 << 33),
        ]
        .into_iter()
        .enumerate()
        {
            let mut zip = RawZip::new();
            zip.push(entry);
            zip.push(RawEntry::new("b", text(5)));
            assert_eq!(
                codes(&zip.build()),
                ["data_descriptor_mismatch"],
                "case {i}"
            );
        }
        // A data descriptor after an entry that does not announce one is unexplained bytes.
        let mut descriptor = 0x0807_4b50u32.to_le_bytes().to_vec();
        descriptor.extend(crc.to_le_bytes());
        descriptor.extend([50, 0, 0, 0, 50, 0, 0, 0]);
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("a", data).followed_by(&descriptor));
        assert_eq!(codes(&zip.build()), ["unexplained_bytes"]);
    }

    #[test]
    fn an_unread_bomb_is_counted_by_what_it_holds() {
        // 16 MiB of zeros declaring 1000 bytes: under the ratio exemption by its declaration.
        let zeros = vec![0u8; 16 << 20];
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("release.json", b"{}".to_vec()));
        zip.push(RawEntry::deflated("assets/bomb.bin", &zeros).declare_uncompressed(1000));
        let found = problems(&zip.build());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, Code::EntrySizeMismatch);
        assert_eq!(found[0].path.as_deref(), Some("assets/bomb.bin"));
        // Its CRC is checked, read or not.
        let mut zip = RawZip::new();
        zip.push(RawEntry::deflated("assets/x.bin", &text(1000)).declare_crc(3));
        assert_eq!(codes(&zip.build()), ["crc_mismatch"]);
    }

    #[test]
    fn a_bomb_by_its_declared_sizes_is_not_inflated() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::deflated("bomb", &vec![0u8; 4 << 20]));
        let (dir, found) = walk_with(&zip.build(), CHUNK_BYTES, &Limits::default());
        let found: Vec<_> = found.iter().map(|p| p.code.as_str()).collect();
        assert_eq!(found, ["compression_ratio_too_high"]);
        assert!(dir.unwrap().entries[0].verified_data.is_none());
        // The total limit bounds what the walk inflates.
        let limits = Limits {
            max_total_uncompressed_bytes: 150_000,
            ..Limits::default()
        };
        let mut zip = RawZip::new();
        zip.push(RawEntry::deflated("a", &noise(100_000)));
        zip.push(RawEntry::deflated("b", &noise(100_000)));
        let (dir, found) = walk_with(&zip.build(), CHUNK_BYTES, &limits);
        let found: Vec<_> = found.iter().map(|p| p.code.as_str()).collect();
        assert_eq!(found, ["uncompressed_too_large"]);
        let dir = dir.unwrap();
        assert!(dir.entries[0].verified_data.is_some());
        assert!(dir.entries[1].verified_data.is_none());
    }

    #[test]
    fn bytes_after_a_deflate_stream_are_refused() {
        let mut data = crate::testing::zip::deflate_raw(&text(100));
        data.extend(b"PK\x03\x04 smuggled");
        let mut zip = RawZip::new();
        zip.push(
            RawEntry::new("a", data)
                .method(8)
                .declare_crc(crc32fast::hash(&text(100)))
                .declare_uncompressed(100),
        );
        assert_eq!(codes(&zip.build()), ["corrupt_entry"]);
    }

    #[test]
    fn overlapping_entries_are_found() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("a", vec![7; 200]));
        zip.push(RawEntry::new("b", vec![7; 10]).local_offset_of(0));
        // b's own local record is still written, and now belongs to no entry.
        assert_eq!(
            codes(&zip.build()),
            ["overlapping_entries", "unexplained_bytes"]
        );
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("a", b"aaaa".to_vec()).quote_next());
        zip.push(RawEntry::new("b", b"bbbb".to_vec()));
        assert_eq!(codes(&zip.build()), ["overlapping_entries"]);
    }

    #[test]
    fn a_second_end_record_in_the_comment_is_ambiguous() {
        let mut inner = RawZip::new();
        inner.push(RawEntry::new("evil.txt", text(5)));
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("a.txt", text(10)));
        // A whole archive in the comment: readers that take the last signature see it.
        let mut comment = inner.build();
        comment.extend(b"padding");
        zip.comment = comment;
        assert_eq!(codes(&zip.build()), ["ambiguous_end_record"]);
        zip.comment = b"built by ci PK\x05\x06".to_vec();
        assert_eq!(codes(&zip.build()), ["ambiguous_end_record"]);
        zip.comment = b"built by ci".to_vec();
        all_verified(&zip.build());
    }

    #[test]
    fn a_zip64_end_record_naming_another_directory_is_ambiguous() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("a.txt", text(10)));
        zip.push(RawEntry::new("b.txt", text(10)));
        zip.zip64_end = true;
        let mut bytes = zip.build();
        all_verified(&bytes);
        // The plain record says one entry where the ZIP64 record says two.
        let eocd = bytes.len() - 22;
        bytes[eocd + 8..eocd + 12].copy_from_slice(&[1, 0, 1, 0]);
        assert_eq!(codes(&bytes), ["ambiguous_end_record"]);
    }

    #[test]
    fn the_walk_reads_every_byte_once_in_large_chunks() {
        use std::sync::atomic::{AtomicU64, Ordering};
        struct Counting(bytes::Bytes, AtomicU64, AtomicU64);
        impl RangeSource for Counting {
            fn len(&self) -> u64 {
                RangeSource::len(&self.0)
            }
            async fn read(&self, offset: u64, len: u64) -> Result<bytes::Bytes, SourceError> {
                self.1.fetch_add(1, Ordering::Relaxed);
                self.2.fetch_add(len, Ordering::Relaxed);
                self.0.read(offset, len).await
            }
        }
        let mut zip = RawZip::new();
        for i in 0..100 {
            zip.push(RawEntry::new(&format!("f{i}"), text(200_000)));
        }
        let bytes = zip.build();
        let src = Counting(bytes.into(), AtomicU64::new(0), AtomicU64::new(0));
        let mut problems = Problems::default();
        futures::executor::block_on(async {
            let mut dir = read_directory(&src, &Limits::default(), &mut problems)
                .await
                .unwrap()
                .unwrap();
            let directory_at = dir.data_end;
            let (reads, read) = (src.1.load(Ordering::Relaxed), src.2.load(Ordering::Relaxed));
            check_structure(
                &src,
                &mut dir,
                &Limits::default(),
                CHUNK_BYTES,
                &mut problems,
            )
            .await
            .unwrap();
            let walk_reads = src.1.load(Ordering::Relaxed) - reads;
            let walk_bytes = src.2.load(Ordering::Relaxed) - read;
            // 20 MB in 8 MiB chunks: 3 reads, plus at most one per header cut by a chunk end.
            assert!(walk_reads <= 6, "{walk_reads} reads");
            assert!(
                walk_bytes < directory_at + 2 * 1024,
                "{walk_bytes} of {directory_at}"
            );
            assert!(walk_bytes >= directory_at);
        });
        assert!(problems.into_vec().is_empty());
    }
}
