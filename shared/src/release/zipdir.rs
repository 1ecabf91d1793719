//! The zip archive's central directory: finding it, parsing it, and judging its entries.
//!
//! This is a deliberately small reader of the parts of the zip format (APPNOTE 6.3) that
//! validation needs: the end-of-central-directory record (and its ZIP64 twin) and the central
//! directory. The local headers and data that the directory points at are walked by
//! `structure`, which decides which entries can be trusted. It is strict where zip readers
//! disagree (data before the directory, duplicate entries, a second end record, a second
//! Unicode name), because a drop that two tools extract differently is a drop whose content
//! nobody reviewed.

use std::collections::HashMap;

use super::limits::{Limits, RATIO_EXEMPT_BELOW};
use super::problems::{ProblemCode as Code, Problems, human_size};
use super::source::{RangeSource, SourceError, read_exact};

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD_LEN: u64 = 22;
const MAX_COMMENT_LEN: u64 = 0xffff;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_EOCD_LEN: u64 = 56;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
pub(crate) const LOCAL_SIG: u32 = 0x0403_4b50;
pub(crate) const LOCAL_LEN: u64 = 30;

/// Extra field holding 64-bit sizes and offsets.
const ZIP64_EXTRA: u16 = 0x0001;
/// Info-ZIP Unicode Path extra field: a second name that some extractors prefer.
const UNICODE_PATH_EXTRA: u16 = 0x7075;

/// General-purpose flag bits.
pub(crate) const FLAG_ENCRYPTED: u16 = 1 << 0;
pub(crate) const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
const FLAG_STRONG_ENCRYPTION: u16 = 1 << 6;
pub(crate) const FLAG_UTF8: u16 = 1 << 11;

pub(crate) const METHOD_STORED: u16 = 0;
pub(crate) const METHOD_DEFLATE: u16 = 8;
const METHOD_AES: u16 = 99;

/// Longest entry name accepted, in bytes.
const MAX_NAME_BYTES: usize = 1024;

/// The parsed central directory.
#[derive(Debug)]
pub(crate) struct Directory {
    pub entries: Vec<Entry>,
    /// Where the central directory starts: every entry's data must end before it.
    pub data_end: u64,
}

/// One central-directory record, with ZIP64 values applied.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    /// The name's bytes as the directory stores them: the local header must hold the same.
    pub raw_name: Vec<u8>,
    /// The name of an Info-ZIP Unicode Path extra field, when the entry has one.
    pub unicode_name: Option<String>,
    pub version_made_by: u16,
    pub flags: u16,
    pub method: u16,
    pub crc32: u32,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub local_offset: u64,
    pub external_attrs: u32,
    /// Where the entry's data starts, once `structure` found its local record in agreement
    /// with this record and its data decompressing to the declared size and CRC-32. `None`:
    /// not to be read.
    pub verified_data: Option<u64>,
}

impl Entry {
    pub(crate) fn is_dir(&self) -> bool {
        self.name.ends_with('/') || self.unix_mode() == Some(0o040000)
    }

    pub(crate) fn is_symlink(&self) -> bool {
        self.unix_mode() == Some(0o120000)
    }

    pub(crate) fn is_encrypted(&self) -> bool {
        self.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION) != 0 || self.method == METHOD_AES
    }

    /// Whether shipgate can decompress the entry at all.
    pub(crate) fn is_readable(&self) -> bool {
        !self.is_encrypted() && matches!(self.method, METHOD_STORED | METHOD_DEFLATE)
    }

    /// File type bits of the Unix mode, for archives made on Unix (host 3) or macOS (host 19).
    fn unix_mode(&self) -> Option<u32> {
        match self.version_made_by >> 8 {
            3 | 19 => Some((self.external_attrs >> 16) & 0o170000),
            _ => None,
        }
    }
}

impl Directory {
    /// The first entry named exactly `name`.
    pub(crate) fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Names that match `name` but for case, or that end with `/name` (a zipped folder): hints
    /// for an entry that was expected and is missing.
    pub(crate) fn near_misses(&self, name: &str) -> Vec<&str> {
        let suffix = format!("/{name}");
        self.entries
            .iter()
            .filter(|e| e.name.eq_ignore_ascii_case(name) || e.name.ends_with(&suffix))
            .map(|e| e.name.as_str())
            .take(3)
            .collect()
    }
}

/// Little-endian fields of a byte slice; `None` when the slice is too short.
pub(crate) fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let end = at.checked_add(2)?;
    Some(u16::from_le_bytes(bytes.get(at..end)?.try_into().ok()?))
}

pub(crate) fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    Some(u32::from_le_bytes(bytes.get(at..end)?.try_into().ok()?))
}

fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    Some(u64::from_le_bytes(bytes.get(at..end)?.try_into().ok()?))
}

/// What the end records say about the directory.
#[derive(Debug)]
struct EndRecord {
    disk: u32,
    directory_disk: u32,
    disk_entries: u64,
    entries: u64,
    directory_size: u64,
    directory_offset: u64,
    /// Where the directory must end: the ZIP64 end record if there is one, else the end record.
    directory_end: u64,
}

/// Reads and parses the central directory. `Ok(None)` means the archive cannot be listed; the
/// reason is in `problems`. `Err` is a failure to read, not a problem of the drop.
pub(crate) async fn read_directory<S: RangeSource + Sync + ?Sized>(
    source: &S,
    limits: &Limits,
    problems: &mut Problems,
) -> Result<Option<Directory>, SourceError> {
    let len = source.len();
    let tail_len = len.min(EOCD_LEN + MAX_COMMENT_LEN);
    let tail_start = len - tail_len;
    let tail = read_exact(source, tail_start, tail_len).await?;

    let Some(eocd_at) = find_end_record(&tail) else {
        report_not_a_zip(source, &tail, tail_start, problems).await?;
        return Ok(None);
    };
    if end_record_is_ambiguous(&tail, eocd_at) {
        problems.report(
            Code::AmbiguousEndRecord,
            None,
            "the archive has a second end-of-directory record (in its comment, or one whose \
             comment holds the real one), so zip tools disagree on which files it holds: \
             re-create the archive with a standard zip tool, without that comment",
        );
        return Ok(None);
    }
    let Some(record) = read_end_records(source, &tail, tail_start, eocd_at, problems).await? else {
        return Ok(None);
    };

    if record.disk != 0 || record.directory_disk != 0 || record.disk_entries != record.entries {
        report_split(problems);
        return Ok(None);
    }
    if record.entries > u64::from(limits.max_entries) {
        problems.report(
            Code::TooManyEntries,
            None,
            format!(
                "the archive has {} entries, more than the {} allowed: ship only the manifest, \
                 the templates and the checks file, or bundle other files into fewer entries",
                record.entries, limits.max_entries
            ),
        );
        return Ok(None);
    }
    if record.directory_size > limits.max_directory_bytes() {
        problems.report(
            Code::DirectoryTooLarge,
            None,
            format!(
                "the archive's directory is {}, more than the {} allowed for {} entries: entry \
                 names or extra fields are unusually long; re-create the archive with a standard \
                 zip tool",
                human_size(record.directory_size),
                human_size(limits.max_directory_bytes()),
                limits.max_entries
            ),
        );
        return Ok(None);
    }
    match record.directory_offset.checked_add(record.directory_size) {
        Some(end) if end == record.directory_end => {}
        Some(end) if end < record.directory_end => {
            problems.report(
                Code::CorruptZip,
                None,
                format!(
                    "the archive has {} that no entry accounts for before its end record (data \
                     prepended or inserted, as in a self-extracting archive): upload a plain zip \
                     made by a standard tool",
                    human_size(record.directory_end - end)
                ),
            );
            return Ok(None);
        }
        _ => {
            problems.report(
                Code::CorruptZip,
                None,
                "the archive's directory runs past its end record: the archive is damaged; \
                 re-create it and upload it again",
            );
            return Ok(None);
        }
    }
    // Every record is at least CENTRAL_LEN bytes: a count the size cannot hold is a lie.
    if record.entries.saturating_mul(CENTRAL_LEN as u64) > record.directory_size {
        problems.report(
            Code::CorruptZip,
            None,
            format!(
                "the archive declares {} entries but its directory is too small to hold them: \
                 the archive is damaged; re-create it",
                record.entries
            ),
        );
        return Ok(None);
    }

    let raw = read_exact(source, record.directory_offset, record.directory_size).await?;
    let Some(entries) = parse_directory(&raw, record.entries, problems) else {
        return Ok(None);
    };
    Ok(Some(Directory {
        entries,
        data_end: record.directory_offset,
    }))
}

/// A multi-disk or spanned zip, whichever end record says so: refused.
fn report_split(problems: &mut Problems) {
    problems.report(
        Code::UnsupportedZip,
        None,
        "the archive is split into several parts (a multi-disk or spanned zip): upload a \
         single-file zip",
    );
}

/// The end record is the last `PK\5\6` whose comment length reaches exactly the end of the
/// object: a signature inside a comment does not qualify.
fn find_end_record(tail: &[u8]) -> Option<usize> {
    let last = tail.len().checked_sub(EOCD_LEN as usize)?;
    (0..=last).rev().find(|&at| {
        le_u32(tail, at) == Some(EOCD_SIG)
            && le_u16(tail, at + 20)
                .is_some_and(|comment| at + EOCD_LEN as usize + usize::from(comment) == tail.len())
    })
}

/// Readers find the end record differently: the last signature, the first one whose comment
/// length reaches the end of the file, or the first signature searching backwards. They agree
/// only when the tail holds one candidate and the comment holds no signature at all.
fn end_record_is_ambiguous(tail: &[u8], eocd_at: usize) -> bool {
    let signature = EOCD_SIG.to_le_bytes();
    let comment = tail.get(eocd_at + EOCD_LEN as usize..).unwrap_or_default();
    let signature_in_comment = comment.windows(4).any(|w| w == signature);
    let earlier_candidate = (0..eocd_at).any(|at| {
        le_u32(tail, at) == Some(EOCD_SIG)
            && le_u16(tail, at + 20)
                .is_some_and(|c| at + EOCD_LEN as usize + usize::from(c) == tail.len())
    });
    signature_in_comment || earlier_candidate
}

/// No end record: tell an interrupted upload (it starts like a zip) from something else.
async fn report_not_a_zip<S: RangeSource + Sync + ?Sized>(
    source: &S,
    tail: &[u8],
    tail_start: u64,
    problems: &mut Problems,
) -> Result<(), SourceError> {
    let head = if tail_start == 0 {
        tail.get(..4).map(<[u8]>::to_vec)
    } else {
        Some(read_exact(source, 0, 4).await?.to_vec())
    };
    if head.as_deref().and_then(|h| le_u32(h, 0)) == Some(LOCAL_SIG) {
        problems.report(
            Code::TruncatedZip,
            None,
            "the object starts like a zip archive but its end is missing (an interrupted or \
             partial upload): upload the complete release.zip again",
        );
    } else if source.len() == 0 {
        problems.report(
            Code::NotAZip,
            None,
            "the object is empty: upload release.zip again",
        );
    } else {
        problems.report(
            Code::NotAZip,
            None,
            "the object is not a zip archive: upload release.zip made with a standard zip tool",
        );
    }
    Ok(())
}

/// Parses the end record and, when present, the ZIP64 locator and end record.
async fn read_end_records<S: RangeSource + Sync + ?Sized>(
    source: &S,
    tail: &[u8],
    tail_start: u64,
    eocd_at: usize,
    problems: &mut Problems,
) -> Result<Option<EndRecord>, SourceError> {
    let eocd_abs = tail_start + eocd_at as u64;
    let field = |at: usize| le_u16(tail, eocd_at + at).unwrap_or(0);
    let field32 = |at: usize| le_u32(tail, eocd_at + at).unwrap_or(0);
    let record = EndRecord {
        disk: u32::from(field(4)),
        directory_disk: u32::from(field(6)),
        disk_entries: u64::from(field(8)),
        entries: u64::from(field(10)),
        directory_size: u64::from(field32(12)),
        directory_offset: u64::from(field32(16)),
        directory_end: eocd_abs,
    };

    let Some(locator_abs) = eocd_abs.checked_sub(ZIP64_LOCATOR_LEN) else {
        return Ok(Some(record));
    };
    let locator = match eocd_at.checked_sub(ZIP64_LOCATOR_LEN as usize) {
        Some(at) => tail[at..eocd_at].to_vec(),
        None => read_exact(source, locator_abs, ZIP64_LOCATOR_LEN)
            .await?
            .to_vec(),
    };
    if le_u32(&locator, 0) != Some(ZIP64_LOCATOR_SIG) {
        // A plain archive. Values of 0xffff/0xffffffff without a locator are taken as they are:
        // the consistency checks that follow catch any lie.
        return Ok(Some(record));
    }
    let zip64_at = le_u64(&locator, 8).unwrap_or(u64::MAX);
    let disks = le_u32(&locator, 16).unwrap_or(0);
    if disks > 1 {
        report_split(problems);
        return Ok(None);
    }
    let corrupt = |problems: &mut Problems| {
        problems.report(
            Code::CorruptZip,
            None,
            "the archive's ZIP64 end record is missing or inconsistent: the archive is damaged; \
             re-create it and upload it again",
        );
    };
    if zip64_at
        .checked_add(ZIP64_EOCD_LEN)
        .is_none_or(|end| end > locator_abs)
    {
        corrupt(problems);
        return Ok(None);
    }
    let z = read_exact(source, zip64_at, ZIP64_EOCD_LEN).await?;
    let record_size = le_u64(&z, 4).unwrap_or(0);
    // The record (12 bytes of signature and size, then `record_size` bytes) ends at the locator.
    let ends_at_locator = zip64_at
        .checked_add(12)
        .and_then(|at| at.checked_add(record_size))
        == Some(locator_abs);
    if le_u32(&z, 0) != Some(ZIP64_EOCD_SIG) || !ends_at_locator {
        corrupt(problems);
        return Ok(None);
    }
    let zip64 = EndRecord {
        disk: le_u32(&z, 16).unwrap_or(0),
        directory_disk: le_u32(&z, 20).unwrap_or(0),
        disk_entries: le_u64(&z, 24).unwrap_or(0),
        entries: le_u64(&z, 32).unwrap_or(0),
        directory_size: le_u64(&z, 40).unwrap_or(0),
        directory_offset: le_u64(&z, 48).unwrap_or(0),
        directory_end: zip64_at,
    };
    // Readers that take the ZIP64 record only for saturated fields (Go's archive/zip) read
    // the plain record's other values: both records must then name the same directory.
    let agrees = |plain: u64, saturated: u64, wide: u64| plain == saturated || plain == wide;
    let consistent = agrees(record.disk.into(), 0xffff, zip64.disk.into())
        && agrees(
            record.directory_disk.into(),
            0xffff,
            zip64.directory_disk.into(),
        )
        && agrees(record.disk_entries, 0xffff, zip64.disk_entries)
        && agrees(record.entries, 0xffff, zip64.entries)
        && agrees(record.directory_size, 0xffff_ffff, zip64.directory_size)
        && agrees(record.directory_offset, 0xffff_ffff, zip64.directory_offset);
    if !consistent {
        problems.report(
            Code::AmbiguousEndRecord,
            None,
            "the archive's end record and its ZIP64 end record describe different directories, \
             so zip tools disagree on which files it holds: re-create the archive with a \
             standard zip tool",
        );
        return Ok(None);
    }
    Ok(Some(zip64))
}

/// Parses `count` central-directory records that must fill `raw` exactly.
fn parse_directory(raw: &[u8], count: u64, problems: &mut Problems) -> Option<Vec<Entry>> {
    let corrupt = |problems: &mut Problems, index: u64, what: &str| {
        problems.report(
            Code::CorruptZip,
            None,
            format!(
                "the archive's directory is damaged at entry #{}: {what}; re-create the archive \
                 and upload it again",
                index + 1
            ),
        );
    };
    // `count` is bounded by the directory size (checked by the caller), so this is bounded too.
    let mut entries = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut at = 0usize;
    for index in 0..count {
        let Some(fixed) = raw.get(at..at + CENTRAL_LEN) else {
            corrupt(
                problems,
                index,
                "the directory ends in the middle of a record",
            );
            return None;
        };
        if le_u32(fixed, 0) != Some(CENTRAL_SIG) {
            corrupt(problems, index, "a record has no directory signature");
            return None;
        }
        let u16f = |off| le_u16(fixed, off).unwrap_or(0);
        let u32f = |off| le_u32(fixed, off).unwrap_or(0);
        let name_len = u16f(28);
        let extra_len = usize::from(u16f(30));
        let comment_len = usize::from(u16f(32));
        let name_start = at + CENTRAL_LEN;
        let extra_start = name_start + usize::from(name_len);
        let record_end = extra_start + extra_len + comment_len;
        let (Some(raw_name), Some(extra)) = (
            raw.get(name_start..extra_start),
            raw.get(extra_start..extra_start + extra_len),
        ) else {
            corrupt(
                problems,
                index,
                "a name or extra field runs past the directory",
            );
            return None;
        };
        if record_end > raw.len() {
            corrupt(problems, index, "a comment runs past the directory");
            return None;
        }
        let flags = u16f(8);
        let mut entry = Entry {
            name: decode_name(raw_name, flags & FLAG_UTF8 != 0),
            raw_name: raw_name.to_vec(),
            unicode_name: None,
            version_made_by: u16f(4),
            flags,
            method: u16f(10),
            crc32: u32f(16),
            compressed_size: u64::from(u32f(20)),
            uncompressed_size: u64::from(u32f(24)),
            local_offset: u64::from(u32f(42)),
            external_attrs: u32f(38),
            verified_data: None,
        };
        if !apply_extra_fields(&mut entry, extra, raw_name) {
            corrupt(
                problems,
                index,
                "a ZIP64 size or offset is announced but its extra field is missing or short",
            );
            return None;
        }
        entries.push(entry);
        at = record_end;
    }
    if at != raw.len() {
        problems.report(
            Code::CorruptZip,
            None,
            format!(
                "the archive's directory holds more than the {count} entries its end record \
                 declares: the archive is damaged; re-create it"
            ),
        );
        return None;
    }
    Some(entries)
}

/// Applies the ZIP64 extra field (only the values whose 32-bit field is saturated are present,
/// in this order) and records an Info-ZIP Unicode Path. `false` when a needed ZIP64 value is
/// missing.
fn apply_extra_fields(entry: &mut Entry, extra: &[u8], raw_name: &[u8]) -> bool {
    let need_uncompressed = entry.uncompressed_size == u64::from(u32::MAX);
    let need_compressed = entry.compressed_size == u64::from(u32::MAX);
    let need_offset = entry.local_offset == u64::from(u32::MAX);
    let mut zip64_done = false;
    let mut at = 0usize;
    // Extra fields are id, size, data. A malformed tail is ignored: only the fields read matter.
    while let (Some(id), Some(size)) = (le_u16(extra, at), le_u16(extra, at + 2)) {
        let start = at + 4;
        let Some(data) = extra.get(start..start + usize::from(size)) else {
            break;
        };
        match id {
            ZIP64_EXTRA if !zip64_done => {
                zip64_done = true;
                let mut off = 0;
                let mut take = |needed: bool, target: &mut u64| -> bool {
                    if !needed {
                        return true;
                    }
                    match le_u64(data, off) {
                        Some(v) => {
                            *target = v;
                            off += 8;
                            true
                        }
                        None => false,
                    }
                };
                if !(take(need_uncompressed, &mut entry.uncompressed_size)
                    && take(need_compressed, &mut entry.compressed_size)
                    && take(need_offset, &mut entry.local_offset))
                {
                    return false;
                }
            }
            // Version 1, CRC-32 of the header name, then the UTF-8 name. A field whose CRC does
            // not match the name is ignored by extractors, and so here.
            UNICODE_PATH_EXTRA
                if data.first() == Some(&1)
                    && le_u32(data, 1) == Some(crc32fast::hash(raw_name)) =>
            {
                let name = data.get(5..).unwrap_or_default();
                entry.unicode_name = Some(String::from_utf8_lossy(name).into_owned());
            }
            _ => {}
        }
        at = start + usize::from(size);
    }
    zip64_done || !(need_uncompressed || need_compressed || need_offset)
}

/// Entry names are UTF-8 when flagged; unflagged names are UTF-8 in practice when they decode
/// as such, and IBM code page 437 (the format's default) otherwise.
pub(crate) fn decode_name(raw: &[u8], utf8_flag: bool) -> String {
    match std::str::from_utf8(raw) {
        Ok(name) => name.to_owned(),
        Err(_) if utf8_flag => String::from_utf8_lossy(raw).into_owned(),
        Err(_) => raw.iter().map(|&b| cp437(b)).collect(),
    }
}

const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐\
└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

fn cp437(byte: u8) -> char {
    if byte < 0x80 {
        char::from(byte)
    } else {
        CP437_HIGH
            .chars()
            .nth(usize::from(byte - 0x80))
            .unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

/// Problems with an entry name as a path: the rules for entries in the archive, also applied to
/// paths the manifest names.
pub(crate) fn name_problems(name: &str) -> Vec<(Code, String)> {
    let mut out = Vec::new();
    if name.is_empty() {
        out.push((
            Code::InvalidEntryName,
            "an entry has an empty name: remove it or give it a name".to_owned(),
        ));
        return out;
    }
    let shown: String = if name.len() > 120 {
        format!("{:?}...", name.chars().take(100).collect::<String>())
    } else {
        format!("{name:?}")
    };
    if name.len() > MAX_NAME_BYTES {
        out.push((
            Code::InvalidEntryName,
            format!(
                "entry {shown} has a name of {} bytes, more than the {MAX_NAME_BYTES} allowed: \
                 shorten it",
                name.len()
            ),
        ));
    }
    // The text rule of the release's files: an entry name is shown in reports and emails, and
    // one written with bidirectional controls reads as another name than it is.
    if let Some(problem) = super::schema::text_problem(name, super::schema::Breaks::Refused) {
        out.push((
            Code::InvalidEntryName,
            format!("entry {shown}: its name {problem}"),
        ));
    }
    if name.contains('\\') {
        out.push((
            Code::BackslashInPath,
            format!(
                "entry {shown} contains a backslash, which Windows tools read as a folder \
                 separator: use \"/\" between folders (re-create the archive with a standard \
                 zip tool)"
            ),
        ));
    }
    if name.starts_with('/') || name.starts_with('\\') {
        out.push((
            Code::AbsolutePath,
            format!("entry {shown} is an absolute path: store it relative to the archive root"),
        ));
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        out.push((
            Code::DriveLetterPath,
            format!(
                "entry {shown} starts with a drive letter: store it relative to the archive root"
            ),
        ));
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        out.push((
            Code::PathTraversal,
            format!("entry {shown} escapes the archive root: remove \"..\" components"),
        ));
    }
    out
}

/// Judges every entry of the directory: names, types, encryption, methods, duplicates,
/// declared sizes and ratios. Where the entries lie and what they hold is `structure`'s.
pub(crate) fn check_entries(directory: &Directory, limits: &Limits, problems: &mut Problems) {
    let mut seen: HashMap<&str, ()> = HashMap::new();
    let mut folded: HashMap<String, &str> = HashMap::new();
    let mut total_uncompressed: u64 = 0;
    for entry in &directory.entries {
        let name = entry.name.as_str();
        for (code, message) in name_problems(name) {
            problems.report(code, Some(name), message);
        }
        if let Some(unicode) = entry.unicode_name.as_deref().filter(|u| *u != name) {
            problems.report(
                Code::EntryHeaderMismatch,
                Some(name),
                format!(
                    "entry {name:?} also carries the name {unicode:?} (an Info-ZIP Unicode Path \
                     field), which some tools extract instead: re-create the archive with a \
                     standard zip tool"
                ),
            );
            for (code, message) in name_problems(unicode) {
                problems.report(code, Some(unicode), message);
            }
        }
        if entry.is_symlink() {
            problems.report(
                Code::SymlinkEntry,
                Some(name),
                format!(
                    "entry {name:?} is a symbolic link, which can point outside the archive: \
                     put the file itself in the archive"
                ),
            );
        }
        if entry.is_encrypted() {
            problems.report(
                Code::EncryptedEntry,
                Some(name),
                format!(
                    "entry {name:?} is encrypted, and shipgate cannot review what it cannot read: \
                     create the archive without a password"
                ),
            );
        } else if !entry.is_readable() {
            problems.report(
                Code::UnsupportedCompression,
                Some(name),
                format!(
                    "entry {name:?} uses compression method {} ({}): use deflate (the default of \
                     zip tools) or no compression",
                    entry.method,
                    method_name(entry.method)
                ),
            );
        }
        if seen.insert(name, ()).is_some() {
            problems.report(
                Code::DuplicateEntry,
                Some(name),
                format!(
                    "entry {name:?} appears more than once, and tools disagree on which copy \
                     wins: keep one"
                ),
            );
        } else {
            let key = name.to_lowercase();
            match folded.get(&key) {
                Some(other) => problems.report(
                    Code::CaseConflict,
                    Some(name),
                    format!(
                        "entries {other:?} and {name:?} differ only by case and collide on \
                         case-insensitive file systems: rename one"
                    ),
                ),
                None => {
                    folded.insert(key, name);
                }
            }
        }
        total_uncompressed = total_uncompressed.saturating_add(entry.uncompressed_size);
        check_ratio(entry, limits, problems);
    }
    if total_uncompressed > limits.max_total_uncompressed_bytes {
        problems.report(
            Code::UncompressedTooLarge,
            None,
            format!(
                "the entries add up to {} uncompressed, more than the {} allowed: remove what \
                 the release does not need",
                human_size(total_uncompressed),
                human_size(limits.max_total_uncompressed_bytes)
            ),
        );
    }
}

/// Whether the entry's declared sizes break the compression ratio limit.
pub(crate) fn exceeds_ratio(entry: &Entry, limits: &Limits) -> bool {
    if entry.is_dir() || entry.uncompressed_size < RATIO_EXEMPT_BELOW {
        return false;
    }
    let allowed = u128::from(entry.compressed_size) * u128::from(limits.max_compression_ratio);
    u128::from(entry.uncompressed_size) > allowed
}

fn check_ratio(entry: &Entry, limits: &Limits, problems: &mut Problems) {
    if exceeds_ratio(entry, limits) {
        let ratio = entry.uncompressed_size / entry.compressed_size.max(1);
        problems.report(
            Code::CompressionRatioTooHigh,
            Some(&entry.name),
            format!(
                "entry {:?} declares {} uncompressed from {} compressed, a ratio of {ratio}:1 \
                 (at most {}:1 allowed), as compression bombs do: remove it or ship it in a form \
                 that compresses less",
                entry.name,
                human_size(entry.uncompressed_size),
                human_size(entry.compressed_size),
                limits.max_compression_ratio
            ),
        );
    }
}

fn method_name(method: u16) -> &'static str {
    match method {
        1 => "shrink",
        6 => "implode",
        9 => "deflate64",
        12 => "bzip2",
        14 => "lzma",
        93 => "zstd",
        95 => "xz",
        98 => "ppmd",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::testzip::{RawEntry, RawZip};

    fn directory_of(bytes: Vec<u8>) -> (Option<Directory>, Vec<super::super::Problem>) {
        let mut problems = Problems::default();
        let src = bytes::Bytes::from(bytes);
        let dir =
            futures::executor::block_on(read_directory(&src, &Limits::default(), &mut problems))
                .unwrap();
        if let Some(dir) = &dir {
            check_entries(dir, &Limits::default(), &mut problems);
        }
        (dir, problems.into_vec())
    }

    #[test]
    fn entry_names_follow_the_text_rule() {
        for name in ["a\u{7}.txt", "a\nb.txt", "gnp.\u{202E}exe", "x\u{2066}y"] {
            let problems = name_problems(name);
            assert!(
                problems
                    .iter()
                    .any(|(code, _)| *code == Code::InvalidEntryName),
                "{name:?}: {problems:?}"
            );
        }
        let (_, message) = &name_problems("gnp.\u{202E}exe")[0];
        assert!(message.contains("U+202E"), "{message}");
        // Right-to-left names keep their marks.
        assert!(name_problems("\u{5e9}\u{200F}.txt").is_empty());
    }

    fn codes(problems: &[super::super::Problem]) -> Vec<&'static str> {
        problems.iter().map(|p| p.code.as_str()).collect()
    }

    #[test]
    fn cp437_table_is_complete() {
        assert_eq!(CP437_HIGH.chars().count(), 128);
        assert_eq!(decode_name(&[0x82, b'x'], false), "éx");
        assert_eq!(decode_name("é".as_bytes(), false), "é");
    }

    #[test]
    fn a_zip_crate_archive_lists_its_entries() {
        let bytes = crate::release::testzip::zip_crate(&[
            ("release.json", b"{}".as_slice()),
            ("templates/", b"".as_slice()),
            ("templates/a.yaml", b"Resources: {}".as_slice()),
        ]);
        let (dir, problems) = directory_of(bytes);
        assert!(problems.is_empty(), "{problems:?}");
        let dir = dir.unwrap();
        let names: Vec<_> = dir.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["release.json", "templates/", "templates/a.yaml"]);
        assert!(dir.entries[1].is_dir());
        assert_eq!(dir.entries[0].uncompressed_size, 2);
    }

    #[test]
    fn zip64_end_records_and_extra_fields_are_read() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("release.json", b"{}".to_vec()).zip64());
        zip.push(RawEntry::new("b.txt", b"hello".to_vec()));
        zip.zip64_end = true;
        let (dir, problems) = directory_of(zip.build());
        assert!(problems.is_empty(), "{problems:?}");
        let dir = dir.unwrap();
        assert_eq!(dir.entries.len(), 2);
        assert_eq!(dir.entries[0].uncompressed_size, 2);
        assert_eq!(dir.entries[1].name, "b.txt");
    }

    #[test]
    fn not_a_zip_empty_and_truncated_objects_are_told_apart() {
        assert_eq!(
            codes(&directory_of(b"hello world".to_vec()).1),
            ["not_a_zip"]
        );
        assert_eq!(codes(&directory_of(Vec::new()).1), ["not_a_zip"]);
        let good = crate::release::testzip::zip_crate(&[("a.txt", b"aaaa".as_slice())]);
        let cut = good[..good.len() - 10].to_vec();
        assert_eq!(codes(&directory_of(cut).1), ["truncated_zip"]);
        let (dir, problems) = directory_of(RawZip::new().build());
        assert!(problems.is_empty());
        assert!(dir.unwrap().entries.is_empty());
    }

    #[test]
    fn prepended_bytes_are_refused() {
        let mut bytes = b"MZ self-extractor stub".to_vec();
        bytes.extend(crate::release::testzip::zip_crate(&[(
            "a.txt",
            b"a".as_slice(),
        )]));
        assert_eq!(codes(&directory_of(bytes).1), ["corrupt_zip"]);
    }

    #[test]
    fn hostile_names_are_each_reported() {
        let mut zip = RawZip::new();
        for name in [
            "../../etc/passwd",
            "/etc/passwd",
            "..\\evil",
            "C:evil",
            "a\0b",
            "ok/x",
        ] {
            zip.push(RawEntry::new(name, b"x".to_vec()));
        }
        let (_, problems) = directory_of(zip.build());
        let found = codes(&problems);
        for code in [
            "path_traversal",
            "absolute_path",
            "backslash_in_path",
            "drive_letter_path",
            "invalid_entry_name",
        ] {
            assert!(found.contains(&code), "{code} missing from {found:?}");
        }
        assert!(!problems.iter().any(|p| p.path.as_deref() == Some("ok/x")));
        let traversal = problems
            .iter()
            .find(|p| p.path.as_deref() == Some("../../etc/passwd"))
            .unwrap();
        assert_eq!(
            traversal.message,
            "entry \"../../etc/passwd\" escapes the archive root: remove \"..\" components"
        );
    }

    #[test]
    fn symlinks_encryption_methods_and_duplicates_are_reported() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("link", b"/etc/passwd".to_vec()).symlink());
        zip.push(RawEntry::new("secret", b"x".to_vec()).flags(FLAG_ENCRYPTED));
        zip.push(RawEntry::new("bz", b"x".to_vec()).method(12));
        zip.push(RawEntry::new("dup", b"1".to_vec()));
        zip.push(RawEntry::new("dup", b"2".to_vec()));
        zip.push(RawEntry::new("Case.txt", b"1".to_vec()));
        zip.push(RawEntry::new("case.TXT", b"2".to_vec()));
        let (_, problems) = directory_of(zip.build());
        assert_eq!(
            codes(&problems),
            [
                "symlink_entry",
                "encrypted_entry",
                "unsupported_compression",
                "duplicate_entry",
                "case_conflict"
            ]
        );
    }

    #[test]
    fn declared_sizes_and_ratios_are_judged_without_reading_data() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("bomb", vec![0; 100]).declare_uncompressed(8 << 30));
        zip.push(RawEntry::new("small", vec![0; 10]).declare_uncompressed(60_000));
        let (_, problems) = directory_of(zip.build());
        assert_eq!(
            codes(&problems),
            ["compression_ratio_too_high", "uncompressed_too_large"]
        );
    }

    #[test]
    fn unicode_path_fields_that_disagree_are_reported() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("safe.txt", b"x".to_vec()).unicode_path("../evil.txt"));
        let (_, problems) = directory_of(zip.build());
        assert_eq!(
            codes(&problems),
            ["entry_header_mismatch", "path_traversal"]
        );
    }

    #[test]
    fn too_many_entries_stop_before_the_directory_is_read() {
        let mut zip = RawZip::new();
        for i in 0..12 {
            zip.push(RawEntry::new(&format!("f{i}"), Vec::new()));
        }
        let limits = Limits {
            max_entries: 10,
            ..Limits::default()
        };
        let mut problems = Problems::default();
        let src = bytes::Bytes::from(zip.build());
        let dir =
            futures::executor::block_on(read_directory(&src, &limits, &mut problems)).unwrap();
        assert!(dir.is_none());
        assert_eq!(codes(&problems.into_vec()), ["too_many_entries"]);
    }

    #[test]
    fn a_multi_disk_archive_is_refused() {
        let mut zip = RawZip::new();
        zip.push(RawEntry::new("a", b"x".to_vec()));
        zip.disk_number = 1;
        assert_eq!(codes(&directory_of(zip.build()).1), ["unsupported_zip"]);
    }
}
