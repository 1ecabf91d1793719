//! The handler's own decisions: which release it accepts to work on, and the failures it
//! reports before calling AWS.

use shipgate::release::TemplateFile;
use shipgate::store::ReleaseState;

use super::*;

const MANIFEST_SHA: &str = "5f0c1d7e2b9a4c3d8e6f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";

/// shipgate's own fixture: a release of orders 1.4.2 to int, stg and prod.
fn manifest() -> Manifest {
    serde_json::from_str(include_str!(
        "../../../shared/tests/fixtures/release-manifest.json"
    ))
    .expect("a valid manifest")
}

fn inspection() -> Inspection {
    Inspection {
        manifest: Some(manifest()),
        templates: vec![TemplateFile {
            path: "templates/service.yaml".into(),
            body: "Resources: {}".into(),
            resource_count: 0,
        }],
        manifest_sha256: Some(MANIFEST_SHA.into()),
        ..Inspection::default()
    }
}

fn record(state: ReleaseState) -> ReleaseRecord {
    let mut record = shipgate::testing::received_release("rel-0123456789abcdef0123", "artifacts");
    record.state = state;
    record.manifest_sha256 = Some(MANIFEST_SHA.into());
    // What intake records: the manifest, its environments resolved against the chain.
    record.manifest = Some(serde_json::to_value(manifest()).expect("a manifest serialises"));
    record
}

const PARAMETERS: &str = r#"{"environment": "int",
    "roleArn": "arn:aws:iam::222222222222:role/shipgate-deploy",
    "releaseId": "rel-0123456789abcdef0123", "executionId": "exec-1"}"#;

#[test]
fn the_release_intake_validated_is_accepted_with_its_templates() {
    let release =
        verify_release(&record(ReleaseState::Started), inspection(), "int").expect("verified");
    assert_eq!(release.manifest.application, "orders");
    assert_eq!(release.templates.len(), 1);
    assert_eq!(release.templates[0].0.stack, "service");
    assert_eq!(release.templates[0].1, "Resources: {}");
}

#[test]
fn an_environment_the_release_does_not_go_to_is_refused() {
    let err = verify_release(&record(ReleaseState::Started), inspection(), "dev").unwrap_err();
    assert_eq!(
        err.to_string(),
        "release rel-0123456789abcdef0123 does not go to dev: its manifest lists int, stg, prod"
    );
}

#[test]
fn where_the_release_goes_is_what_intake_recorded_not_what_the_zip_lists() {
    // The zip lists no environments (the whole chain); intake recorded int only.
    let listed_none = || {
        let mut inspection = inspection();
        if let Some(m) = inspection.manifest.as_mut() {
            m.environments.clear();
        }
        inspection
    };
    let mut recorded = record(ReleaseState::Started);
    let mut manifest = manifest();
    manifest.environments = vec!["int".into()];
    recorded.manifest = Some(serde_json::to_value(manifest).unwrap());
    assert!(verify_release(&recorded, listed_none(), "int").is_ok());
    let err = verify_release(&recorded, listed_none(), "stg").unwrap_err();
    assert!(err.to_string().contains("its manifest lists int"), "{err}");
}

#[test]
fn the_description_names_the_release_and_version() {
    let target = serde_json::from_str::<ActionParameters>(PARAMETERS)
        .expect("parameters")
        .target(Some("eu-west-1"))
        .expect("target");
    assert_eq!(
        change_set_description(&manifest(), &target),
        "shipgate release rel-0123456789abcdef0123 (orders 1.4.2), pipeline execution exec-1"
    );
}
