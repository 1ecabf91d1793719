//! Test-only zip writers: the `zip` crate for ordinary archives, and the byte-level writer for
//! the archives no well-behaved tool makes (lying sizes, overlaps, symlinks, ZIP64 by force),
//! which the end-to-end tests' bad drops share ([`crate::testing::zip`]).

use std::io::Write;

use serde_json::{Value, json};

pub(crate) use crate::testing::zip::{RawEntry, RawZip};

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
