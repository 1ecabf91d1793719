//! A byte-level zip writer for the archives no well-behaved tool makes: lying sizes and CRCs,
//! overlapping and quoting entries, symbolic links, a second name in the local header or in a
//! Unicode Path field, ZIP64 by force, data descriptors. Release validation's own tests and the
//! end-to-end tests' bad drops both write their hostile archives with it.

use std::io::Write;

use flate2::Compression;
use flate2::write::DeflateEncoder;

/// One entry of a [`RawZip`], with knobs to make it lie.
#[derive(Debug, Clone)]
pub struct RawEntry {
    name: Vec<u8>,
    local_name: Option<Vec<u8>>,
    data: Vec<u8>,
    method: u16,
    flags: u16,
    crc: u32,
    uncompressed: u64,
    version_made_by: u16,
    external_attrs: u32,
    zip64: bool,
    unicode_path: Option<String>,
    offset_of: Option<usize>,
    data_descriptor: bool,
    quote_next: bool,
    local_flags: Option<u16>,
    local_method: Option<u16>,
    local_crc: Option<u32>,
    local_sizes: Option<(u32, u32)>,
    local_zip64: Option<(u64, u64)>,
    descriptor: Option<(u32, u64, u64)>,
    after: Vec<u8>,
}

impl RawEntry {
    /// A stored entry holding `data`.
    pub fn new(name: &str, data: Vec<u8>) -> Self {
        Self::raw_name(name.as_bytes(), &data)
    }

    /// A stored entry.
    pub fn stored(name: &str, data: &[u8]) -> Self {
        Self::raw_name(name.as_bytes(), data)
    }

    /// A stored entry whose name is arbitrary bytes.
    pub fn raw_name(name: &[u8], data: &[u8]) -> Self {
        Self {
            name: name.to_vec(),
            local_name: None,
            data: data.to_vec(),
            method: 0,
            flags: 0,
            crc: crc32(data),
            uncompressed: data.len() as u64,
            version_made_by: 20,
            external_attrs: 0,
            zip64: false,
            unicode_path: None,
            offset_of: None,
            data_descriptor: false,
            quote_next: false,
            local_flags: None,
            local_method: None,
            local_crc: None,
            local_sizes: None,
            local_zip64: None,
            descriptor: None,
            after: Vec::new(),
        }
    }

    /// A deflated entry holding `data`.
    pub fn deflated(name: &str, data: &[u8]) -> Self {
        let mut entry = Self::new(name, deflate_raw(data));
        entry.method = 8;
        entry.crc = crc32(data);
        entry.uncompressed = data.len() as u64;
        entry
    }

    /// Declares compression `method` without changing the data.
    pub fn method(mut self, method: u16) -> Self {
        self.method = method;
        self
    }

    pub fn flags(mut self, flags: u16) -> Self {
        self.flags = flags;
        self
    }

    /// Made on Unix with mode `lrwxrwxrwx`: a symbolic link to its data.
    pub fn symlink(mut self) -> Self {
        self.version_made_by = (3 << 8) | 20;
        self.external_attrs = 0o120777 << 16;
        self
    }

    /// Declares an uncompressed size (ZIP64 when it does not fit 32 bits).
    pub fn declare_uncompressed(mut self, size: u64) -> Self {
        self.uncompressed = size;
        self.zip64 |= size >= u64::from(u32::MAX);
        self
    }

    pub fn declare_crc(mut self, crc: u32) -> Self {
        self.crc = crc;
        self
    }

    /// A different name in the local header than in the central directory.
    pub fn local_name(mut self, name: &str) -> Self {
        self.local_name = Some(name.as_bytes().to_vec());
        self
    }

    /// Written as a streaming tool does: zero CRC and sizes in the local header, the real ones
    /// in a data descriptor after the data.
    pub fn data_descriptor(mut self) -> Self {
        self.data_descriptor = true;
        self.flags |= 1 << 3;
        self
    }

    /// Other general-purpose flags in the local header than in the directory.
    pub fn local_flags(mut self, flags: u16) -> Self {
        self.local_flags = Some(flags);
        self
    }

    /// Another compression method in the local header than in the directory.
    pub fn local_method(mut self, method: u16) -> Self {
        self.local_method = Some(method);
        self
    }

    /// Another CRC-32 in the local header than in the directory.
    pub fn local_crc(mut self, crc: u32) -> Self {
        self.local_crc = Some(crc);
        self
    }

    /// Other (compressed, uncompressed) sizes in the local header than in the directory.
    pub fn local_sizes(mut self, compressed: u32, uncompressed: u32) -> Self {
        self.local_sizes = Some((compressed, uncompressed));
        self
    }

    /// Other (uncompressed, compressed) values in the local header's ZIP64 extra field (implies
    /// ZIP64).
    pub fn local_zip64_sizes(mut self, uncompressed: u64, compressed: u64) -> Self {
        self.zip64 = true;
        self.local_zip64 = Some((uncompressed, compressed));
        self
    }

    /// A data descriptor (implied) carrying these (CRC-32, compressed, uncompressed) values
    /// instead of the real ones.
    pub fn descriptor_values(mut self, crc: u32, compressed: u64, uncompressed: u64) -> Self {
        self = self.data_descriptor();
        self.descriptor = Some((crc, compressed, uncompressed));
        self
    }

    /// Bytes written after the entry's local record that no directory record accounts for.
    pub fn followed_by(mut self, bytes: &[u8]) -> Self {
        self.after.extend_from_slice(bytes);
        self
    }

    /// The local record of `hidden` written after this entry's, with no directory record
    /// pointing at it: a file that only a reader scanning local headers sees.
    pub fn hiding(self, hidden: &RawEntry) -> Self {
        let record = hidden.local_record();
        self.followed_by(&record)
    }

    /// Sizes and offset in a ZIP64 extra field.
    pub fn zip64(mut self) -> Self {
        self.zip64 = true;
        self
    }

    /// An Info-ZIP Unicode Path extra field naming the entry `name`.
    pub fn unicode_path(mut self, name: &str) -> Self {
        self.unicode_path = Some(name.to_owned());
        self
    }

    /// Points the directory record at the local header of entry `index` (full overlap).
    pub fn local_offset_of(mut self, index: usize) -> Self {
        self.offset_of = Some(index);
        self
    }

    /// Makes this stored entry's data extend over the next entry's whole local record (the
    /// "quoted overlap" of better zip bombs), with sizes and CRC consistent with that.
    pub fn quote_next(mut self) -> Self {
        self.quote_next = true;
        self
    }

    /// The fields a local header and a central directory record share, in their order:
    /// version needed, flags, method, time and date (zero), CRC, sizes, name and extra lengths.
    /// A data descriptor's local header has zeros for CRC and sizes.
    fn header_fields(
        &self,
        out: &mut Vec<u8>,
        sizes: Option<(u32, u32)>,
        name_len: usize,
        extra_len: usize,
    ) {
        out.extend(20u16.to_le_bytes());
        out.extend(self.flags.to_le_bytes());
        out.extend(self.method.to_le_bytes());
        out.extend([0u8; 4]);
        match sizes {
            Some((compressed, uncompressed)) => {
                out.extend(self.crc.to_le_bytes());
                out.extend(compressed.to_le_bytes());
                out.extend(uncompressed.to_le_bytes());
            }
            None => out.extend([0u8; 12]),
        }
        out.extend((name_len as u16).to_le_bytes());
        out.extend((extra_len as u16).to_le_bytes());
    }

    /// The sizes as the 32-bit fields carry them (all ones under ZIP64).
    fn sizes32(&self) -> (u32, u32) {
        if self.zip64 {
            (u32::MAX, u32::MAX)
        } else {
            (self.data.len() as u32, self.uncompressed as u32)
        }
    }

    fn extra(&self, offset: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        if self.zip64 {
            let (uncompressed, compressed) = match (offset, self.local_zip64) {
                (None, Some(values)) => values,
                _ => (self.uncompressed, self.data.len() as u64),
            };
            let mut data = Vec::new();
            data.extend(uncompressed.to_le_bytes());
            data.extend(compressed.to_le_bytes());
            if let Some(offset) = offset {
                data.extend(offset.to_le_bytes());
            }
            out.extend(1u16.to_le_bytes());
            out.extend((data.len() as u16).to_le_bytes());
            out.extend(data);
        }
        if let Some(path) = &self.unicode_path {
            out.extend(0x7075u16.to_le_bytes());
            out.extend(((5 + path.len()) as u16).to_le_bytes());
            out.push(1);
            out.extend(crc32(&self.name).to_le_bytes());
            out.extend(path.as_bytes());
        }
        out
    }

    /// The entry's local record: header, name, extra field, data, and its data descriptor.
    fn local_record(&self) -> Vec<u8> {
        let name = self.local_name.as_ref().unwrap_or(&self.name);
        let extra = self.extra(None);
        let sizes = match self.local_sizes {
            Some(sizes) => Some(sizes),
            None => (!self.data_descriptor).then(|| self.sizes32()),
        };
        let mut local = self.clone();
        local.flags = self.local_flags.unwrap_or(self.flags);
        local.method = self.local_method.unwrap_or(self.method);
        local.crc = self.local_crc.unwrap_or(self.crc);
        let mut out = Vec::new();
        out.extend(0x0403_4b50u32.to_le_bytes());
        local.header_fields(&mut out, sizes, name.len(), extra.len());
        if self.local_crc.is_some() && sizes.is_none() {
            // A data-descriptor header with a CRC all the same.
            out[14..18].copy_from_slice(&local.crc.to_le_bytes());
        }
        out.extend(name);
        out.extend(extra);
        out.extend(&self.data);
        if self.data_descriptor {
            let (crc, compressed, uncompressed) =
                self.descriptor
                    .unwrap_or((self.crc, self.data.len() as u64, self.uncompressed));
            out.extend(0x0807_4b50u32.to_le_bytes());
            out.extend(crc.to_le_bytes());
            // Eight-byte sizes when the entry has a ZIP64 extra field (APPNOTE 4.3.9.2).
            if self.zip64 {
                out.extend(compressed.to_le_bytes());
                out.extend(uncompressed.to_le_bytes());
            } else {
                out.extend((compressed as u32).to_le_bytes());
                out.extend((uncompressed as u32).to_le_bytes());
            }
        }
        out.extend(&self.after);
        out
    }
}

/// A byte-level zip writer for archives that tools refuse to make.
#[derive(Debug, Clone, Default)]
pub struct RawZip {
    entries: Vec<RawEntry>,
    /// Write a ZIP64 end record and locator.
    pub zip64_end: bool,
    /// Point the ZIP64 locator this many bytes off (a corrupt ZIP64 archive).
    pub zip64_locator_skew: i64,
    /// Disk number in the end record (non-zero: a multi-disk archive).
    pub disk_number: u16,
    /// Bytes before the first entry, every offset shifted to match (a self-extracting stub
    /// whose archive still lists correctly).
    pub leading: Vec<u8>,
    /// The archive comment, after the end record.
    pub comment: Vec<u8>,
}

impl RawZip {
    pub fn new() -> Self {
        Self::default()
    }

    /// An archive of stored entries.
    pub fn of(files: &[(String, Vec<u8>)]) -> Self {
        let mut zip = Self::new();
        for (name, data) in files {
            zip.push(RawEntry::stored(name, data));
        }
        zip
    }

    pub fn push(&mut self, entry: RawEntry) -> &mut Self {
        self.entries.push(entry);
        self
    }

    /// Replaces the entry named `name`.
    pub fn replace(&mut self, name: &str, entry: RawEntry) -> &mut Self {
        for e in &mut self.entries {
            if e.name == name.as_bytes() {
                *e = entry.clone();
            }
        }
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut entries = self.entries.clone();
        // A quoting entry's data is its own data followed by the next entry's local record:
        // built back to front so a record quotes the final form of the next one.
        let mut records: Vec<Vec<u8>> = vec![Vec::new(); entries.len()];
        for i in (0..entries.len()).rev() {
            if entries[i].quote_next && i + 1 < entries.len() {
                let mut data = entries[i].data.clone();
                data.extend(&records[i + 1]);
                entries[i].crc = crc32(&data);
                entries[i].uncompressed = data.len() as u64;
                entries[i].data = data;
            }
            records[i] = entries[i].local_record();
        }
        let mut out = self.leading.clone();
        let mut offsets = Vec::new();
        for (i, record) in records.iter().enumerate() {
            offsets.push(out.len() as u64);
            // A quoted record is already inside the previous entry's data.
            let quoted = i > 0 && entries[i - 1].quote_next;
            if quoted {
                let trailer = entries[i - 1].after.len();
                offsets[i] =
                    offsets[i - 1] + (records[i - 1].len() - trailer - record.len()) as u64;
            } else {
                out.extend(record);
            }
        }
        let cd_start = out.len() as u64;
        for (i, e) in entries.iter().enumerate() {
            let offset = offsets[e.offset_of.unwrap_or(i)];
            let extra = e.extra(Some(offset));
            let off = if e.zip64 { u32::MAX } else { offset as u32 };
            out.extend(0x0201_4b50u32.to_le_bytes());
            out.extend(e.version_made_by.to_le_bytes());
            e.header_fields(&mut out, Some(e.sizes32()), e.name.len(), extra.len());
            out.extend([0u8; 6]); // comment length, disk start, internal attributes
            out.extend(e.external_attrs.to_le_bytes());
            out.extend(off.to_le_bytes());
            out.extend(&e.name);
            out.extend(extra);
        }
        let cd_size = out.len() as u64 - cd_start;
        let count = entries.len() as u64;
        if self.zip64_end {
            let zip64_at = out.len() as u64;
            out.extend(0x0606_4b50u32.to_le_bytes());
            out.extend(44u64.to_le_bytes());
            out.extend([45u8, 0, 45, 0]);
            out.extend([0u8; 8]); // disk numbers
            out.extend(count.to_le_bytes());
            out.extend(count.to_le_bytes());
            out.extend(cd_size.to_le_bytes());
            out.extend(cd_start.to_le_bytes());
            out.extend(0x0706_4b50u32.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(
                zip64_at
                    .saturating_add_signed(self.zip64_locator_skew)
                    .to_le_bytes(),
            );
            out.extend(1u32.to_le_bytes());
        }
        let (n, size, offset) = if self.zip64_end {
            (u16::MAX, u32::MAX, u32::MAX)
        } else {
            (count.min(0xffff) as u16, cd_size as u32, cd_start as u32)
        };
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend(self.disk_number.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(n.to_le_bytes());
        out.extend(n.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend(offset.to_le_bytes());
        out.extend((self.comment.len() as u16).to_le_bytes());
        out.extend(&self.comment);
        out
    }
}

/// The raw deflate stream of `data` (what a deflated entry holds).
pub fn deflate_raw(data: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("deflate in memory");
    encoder.finish().expect("deflate in memory")
}

/// CRC-32 (IEEE), as zip records it.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}
