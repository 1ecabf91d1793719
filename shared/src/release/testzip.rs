//! Test-only zip writers: the `zip` crate for ordinary archives, and a byte-level writer for the
//! archives no well-behaved tool makes (lying sizes, overlaps, symlinks, ZIP64 by force).

use std::io::Write;

use flate2::Compression;
use flate2::write::DeflateEncoder;
use serde_json::{Value, json};

/// An ECS service template in YAML with short-form tags.
pub(crate) const ECS_TEMPLATE: &str = r#"AWSTemplateFormatVersion: 2010-09-09
Description: orders web service
Parameters:
  ImageUri: {Type: String}
  Version: {Type: String}
Conditions:
  IsProd: !Equals [!Ref "AWS::AccountId", "333333333333"]
Resources:
  TaskDefinition:
    Type: AWS::ECS::TaskDefinition
    Properties:
      Family: !Sub "${AWS::StackName}-web"
      ContainerDefinitions:
        - Name: web
          Image: !Ref ImageUri
          Environment:
            - {Name: VERSION, Value: !Ref Version}
            - Name: REGION
              Value: !Select [0, !Split ["-", !Ref "AWS::Region"]]
  Service:
    Type: AWS::ECS::Service
    Properties:
      TaskDefinition: !Ref TaskDefinition
      DesiredCount: !If [IsProd, 3, 1]
      LoadBalancers:
        - TargetGroupArn: !GetAtt TargetGroup.TargetGroupArn
          ContainerName: web
  TargetGroup:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      Name: !Join ["-", [orders, !Ref "AWS::StackName"]]
Outputs:
  Service:
    Value: !GetAtt Service.Name
"#;

/// A valid manifest for [`ECS_TEMPLATE`] and [`CHECKS`].
pub(crate) fn good_manifest() -> Value {
    json!({
        "schema_version": "shipgate.release/v1",
        "application": "orders",
        "version": "1.4.2",
        "message": "Adds refunds.",
        "integrator": {"name": "Acme Integrations", "email": "release@acme.example"},
        "images": [{"name": "web", "repository": "orders/web", "tag": "1.4.2",
                    "digest": format!("sha256:{}", "a".repeat(64))}],
        "templates": [{"path": "templates/service.yaml", "stack": "service",
                       "parameters": {"ImageUri": "${image.web.uri}",
                                      "Version": "${release.version}"}}],
        "checks": "checks.json"
    })
}

/// A valid checks file.
pub(crate) const CHECKS: &str = r#"{"schema_version": "shipgate.checks/v1",
 "checks": [{"name": "health", "method": "GET", "path": "/health", "expect_status": 200}]}"#;

/// The files of a good release, with `manifest` as release.json.
pub(crate) fn release_files(manifest: &Value) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "release.json".into(),
            serde_json::to_vec_pretty(manifest).unwrap(),
        ),
        (
            "templates/service.yaml".into(),
            ECS_TEMPLATE.as_bytes().to_vec(),
        ),
        ("checks.json".into(), CHECKS.as_bytes().to_vec()),
    ]
}

/// A good release made by the `zip` crate.
pub(crate) fn good_release() -> Vec<u8> {
    let files = release_files(&good_manifest());
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    zip_crate(&borrowed)
}

/// An ordinary archive made by the `zip` crate (deflate), directories for names ending in `/`.
pub(crate) fn zip_crate(files: &[(&str, &[u8])]) -> Vec<u8> {
    zip_crate_with(files, false)
}

/// As [`zip_crate`]; `large_file` writes ZIP64 extra fields in every local header.
pub(crate) fn zip_crate_with(files: &[(&str, &[u8])], large_file: bool) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(large_file);
    for (name, data) in files {
        if name.ends_with('/') {
            writer.add_directory(*name, options).unwrap();
        } else {
            writer.start_file(*name, options).unwrap();
            writer.write_all(data).unwrap();
        }
    }
    writer.finish().unwrap().into_inner()
}

/// One entry of a [`RawZip`], with knobs to make it lie.
#[derive(Clone)]
pub(crate) struct RawEntry {
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
}

impl RawEntry {
    /// A stored entry holding `data`.
    pub(crate) fn new(name: &str, data: Vec<u8>) -> Self {
        Self {
            name: name.as_bytes().to_vec(),
            local_name: None,
            crc: crc32fast::hash(&data),
            uncompressed: data.len() as u64,
            data,
            method: 0,
            flags: 0,
            version_made_by: 20,
            external_attrs: 0,
            zip64: false,
            unicode_path: None,
            offset_of: None,
            data_descriptor: false,
        }
    }

    /// A deflated entry holding `data`.
    pub(crate) fn deflated(name: &str, data: &[u8]) -> Self {
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        let mut entry = Self::new(name, encoder.finish().unwrap());
        entry.method = 8;
        entry.crc = crc32fast::hash(data);
        entry.uncompressed = data.len() as u64;
        entry
    }

    pub(crate) fn method(mut self, method: u16) -> Self {
        self.method = method;
        self
    }

    pub(crate) fn flags(mut self, flags: u16) -> Self {
        self.flags = flags;
        self
    }

    pub(crate) fn symlink(mut self) -> Self {
        self.version_made_by = (3 << 8) | 20;
        self.external_attrs = 0o120777 << 16;
        self
    }

    pub(crate) fn declare_uncompressed(mut self, size: u64) -> Self {
        self.uncompressed = size;
        if size >= u64::from(u32::MAX) {
            self.zip64 = true;
        }
        self
    }

    pub(crate) fn declare_crc(mut self, crc: u32) -> Self {
        self.crc = crc;
        self
    }

    pub(crate) fn local_name(mut self, name: &str) -> Self {
        self.local_name = Some(name.as_bytes().to_vec());
        self
    }

    /// Written as a streaming tool does: zero CRC and sizes in the local header, the real ones
    /// in a data descriptor after the data.
    pub(crate) fn data_descriptor(mut self) -> Self {
        self.data_descriptor = true;
        self.flags |= 1 << 3;
        self
    }

    pub(crate) fn force_zip64(mut self) -> Self {
        self.zip64 = true;
        self
    }

    pub(crate) fn unicode_path(mut self, name: &str) -> Self {
        self.unicode_path = Some(name.to_owned());
        self
    }

    /// Points the directory record at the local header of entry `index` (an overlap).
    pub(crate) fn local_offset_of(mut self, index: usize) -> Self {
        self.offset_of = Some(index);
        self
    }

    fn zip64_extra(&self, offset: Option<u64>) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend(self.uncompressed.to_le_bytes());
        data.extend((self.data.len() as u64).to_le_bytes());
        if let Some(offset) = offset {
            data.extend(offset.to_le_bytes());
        }
        let mut out = Vec::new();
        out.extend(1u16.to_le_bytes());
        out.extend((data.len() as u16).to_le_bytes());
        out.extend(data);
        out
    }

    fn unicode_extra(&self) -> Vec<u8> {
        let Some(path) = &self.unicode_path else {
            return Vec::new();
        };
        let mut out = Vec::new();
        out.extend(0x7075u16.to_le_bytes());
        out.extend(((5 + path.len()) as u16).to_le_bytes());
        out.push(1);
        out.extend(crc32fast::hash(&self.name).to_le_bytes());
        out.extend(path.as_bytes());
        out
    }
}

/// A byte-level zip writer.
#[derive(Default)]
pub(crate) struct RawZip {
    entries: Vec<RawEntry>,
    /// Write a ZIP64 end record and locator.
    pub zip64_end: bool,
    /// The disk number written in the end record (non-zero: a multi-disk archive).
    pub disk_number: u16,
}

impl RawZip {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, entry: RawEntry) {
        self.entries.push(entry);
    }

    pub(crate) fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for e in &self.entries {
            offsets.push(out.len() as u64);
            let name = e.local_name.as_ref().unwrap_or(&e.name);
            let mut extra = if e.zip64 {
                e.zip64_extra(None)
            } else {
                Vec::new()
            };
            extra.extend(e.unicode_extra());
            let (csize, usize_) = if e.zip64 {
                (u32::MAX, u32::MAX)
            } else {
                (e.data.len() as u32, e.uncompressed as u32)
            };
            out.extend(0x0403_4b50u32.to_le_bytes());
            out.extend(20u16.to_le_bytes());
            out.extend(e.flags.to_le_bytes());
            out.extend(e.method.to_le_bytes());
            out.extend([0u8; 4]); // time, date
            if e.data_descriptor {
                out.extend([0u8; 12]);
            } else {
                out.extend(e.crc.to_le_bytes());
                out.extend(csize.to_le_bytes());
                out.extend(usize_.to_le_bytes());
            }
            out.extend((name.len() as u16).to_le_bytes());
            out.extend((extra.len() as u16).to_le_bytes());
            out.extend(name);
            out.extend(&extra);
            out.extend(&e.data);
            if e.data_descriptor {
                out.extend(0x0807_4b50u32.to_le_bytes());
                out.extend(e.crc.to_le_bytes());
                out.extend((e.data.len() as u32).to_le_bytes());
                out.extend((e.uncompressed as u32).to_le_bytes());
            }
        }
        let cd_start = out.len() as u64;
        for (i, e) in self.entries.iter().enumerate() {
            let offset = offsets[e.offset_of.unwrap_or(i)];
            let mut extra = if e.zip64 {
                e.zip64_extra(Some(offset))
            } else {
                Vec::new()
            };
            extra.extend(e.unicode_extra());
            let (csize, usize_, off) = if e.zip64 {
                (u32::MAX, u32::MAX, u32::MAX)
            } else {
                (e.data.len() as u32, e.uncompressed as u32, offset as u32)
            };
            out.extend(0x0201_4b50u32.to_le_bytes());
            out.extend(e.version_made_by.to_le_bytes());
            out.extend(20u16.to_le_bytes());
            out.extend(e.flags.to_le_bytes());
            out.extend(e.method.to_le_bytes());
            out.extend([0u8; 4]);
            out.extend(e.crc.to_le_bytes());
            out.extend(csize.to_le_bytes());
            out.extend(usize_.to_le_bytes());
            out.extend((e.name.len() as u16).to_le_bytes());
            out.extend((extra.len() as u16).to_le_bytes());
            out.extend(0u16.to_le_bytes()); // comment
            out.extend(0u16.to_le_bytes()); // disk start
            out.extend(0u16.to_le_bytes()); // internal attributes
            out.extend(e.external_attrs.to_le_bytes());
            out.extend(off.to_le_bytes());
            out.extend(&e.name);
            out.extend(&extra);
        }
        let cd_size = out.len() as u64 - cd_start;
        let count = self.entries.len() as u64;
        if self.zip64_end {
            let zip64_at = out.len() as u64;
            out.extend(0x0606_4b50u32.to_le_bytes());
            out.extend(44u64.to_le_bytes());
            out.extend(45u16.to_le_bytes());
            out.extend(45u16.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(count.to_le_bytes());
            out.extend(count.to_le_bytes());
            out.extend(cd_size.to_le_bytes());
            out.extend(cd_start.to_le_bytes());
            out.extend(0x0706_4b50u32.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(zip64_at.to_le_bytes());
            out.extend(1u32.to_le_bytes());
        }
        let (n16, size32, off32) = if self.zip64_end {
            (u16::MAX, u32::MAX, u32::MAX)
        } else {
            (count as u16, cd_size as u32, cd_start as u32)
        };
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend(self.disk_number.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(n16.to_le_bytes());
        out.extend(n16.to_le_bytes());
        out.extend(size32.to_le_bytes());
        out.extend(off32.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }
}
