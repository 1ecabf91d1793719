//! The handler's own decisions: which release it accepts to work on, and the failures it
//! reports before calling AWS.

use std::collections::BTreeMap;

use serde_json::json;
use shipgate::job::ActionError;
use shipgate::release::{Problem, ProblemCode, TemplateFile};

use super::*;

const MANIFEST_SHA: &str = "5f0c1d7e2b9a4c3d8e6f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";

fn manifest() -> Manifest {
    serde_json::from_value(json!({
        "schema_version": "shipgate.release/v1",
        "application": "orders",
        "version": "1.4.2",
        "message": "refunds",
        "integrator": {"name": "Acme", "email": "release@acme.example"},
        "environments": ["int", "stg", "prod"],
        "images": [{"name": "web", "repository": "orders/web", "tag": "1.4.2",
                    "digest": format!("sha256:{}", "a".repeat(64))}],
        "templates": [{"path": "templates/service.yaml", "stack": "service",
                       "parameters": {"WebImage": "${image.web.uri}", "Version": "${release.version}"}}]
    }))
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
    let mut record = ReleaseRecord::received(
        "rel-0123456789abcdef0123".into(),
        ObjectVersion {
            bucket: "artifacts".into(),
            key: "incoming/orders.zip".into(),
            version_id: Some("v1".into()),
        },
        "2026-11-26T10:00:00Z".into(),
    );
    record.state = state;
    record.manifest_sha256 = Some(MANIFEST_SHA.into());
    record
}

fn job_event(user_parameters: &str, continuation: Option<&str>) -> serde_json::Value {
    let mut event: serde_json::Value = serde_json::from_str(include_str!(
        "../../../shared/tests/fixtures/codepipeline-job.json"
    ))
    .expect("AWS sample event");
    let data = &mut event["CodePipeline.job"]["data"];
    data["actionConfiguration"]["configuration"]["UserParameters"] = json!(user_parameters);
    data["continuationToken"] = continuation.map_or(serde_json::Value::Null, |t| json!(t));
    event
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
fn an_artifact_whose_manifest_differs_from_the_record_is_refused() {
    let mut tampered = inspection();
    tampered.manifest_sha256 = Some("0".repeat(64));
    let err = verify_release(&record(ReleaseState::Started), tampered, "int").unwrap_err();
    assert!(matches!(err, ChangeSetError::ManifestMismatch { .. }));
    let message = err.to_string();
    assert!(
        message.contains("not the release intake validated"),
        "{message}"
    );
    assert!(message.contains(MANIFEST_SHA), "{message}");

    let mut unvalidated = record(ReleaseState::Started);
    unvalidated.manifest_sha256 = None;
    assert!(matches!(
        verify_release(&unvalidated, inspection(), "int"),
        Err(ChangeSetError::NotValidated { .. })
    ));
}

#[test]
fn an_artifact_with_problems_is_refused_listing_them() {
    let mut broken = inspection();
    broken.problems = vec![Problem {
        code: ProblemCode::PathTraversal,
        message: "entry ../x escapes the archive".into(),
        path: Some("../x".into()),
    }];
    let err = verify_release(&record(ReleaseState::Started), broken, "int").unwrap_err();
    assert_eq!(err.error_type(), "ArtifactInvalid");
    assert!(
        err.to_string()
            .contains("path_traversal: entry ../x escapes the archive"),
        "{err}"
    );
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
fn only_an_accepted_release_gets_change_sets() {
    assert!(check_record(&record(ReleaseState::Started)).is_ok());
    assert!(check_record(&record(ReleaseState::Accepted)).is_ok());
    for state in [ReleaseState::Rejected, ReleaseState::Validating] {
        let err = check_record(&record(state)).unwrap_err();
        assert!(matches!(err, ChangeSetError::ReleaseNotAccepted { .. }));
    }
}

#[test]
fn the_job_takes_exactly_one_input_artifact() {
    let object = |key: &str| ObjectVersion {
        bucket: "artifacts".into(),
        key: key.into(),
        version_id: None,
    };
    let mut job = Job::from_event(job_event(PARAMETERS, None)).expect("a job");
    assert_eq!(
        release_artifact(&job).expect("one").key,
        "the name of the application, for example CodePipelineDemoApplication.zip"
    );
    job.input_artifacts = BTreeMap::new();
    assert!(matches!(
        release_artifact(&job),
        Err(ChangeSetError::NoInputArtifact)
    ));
    job.input_artifacts = BTreeMap::from([
        ("Release".to_owned(), object("a.zip")),
        ("Other".to_owned(), object("b.zip")),
    ]);
    assert!(matches!(
        release_artifact(&job),
        Err(ChangeSetError::SeveralInputArtifacts(_))
    ));
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

#[test]
fn a_failed_s3_read_is_retried_unless_s3_refused_for_good() {
    let throttled = SourceError::other(AwsError {
        service: "S3",
        operation: "GetObject",
        code: Some("SlowDown".into()),
        message: "Please reduce your request rate.".into(),
        retryable: true,
        source: "test".into(),
    });
    assert_eq!(
        read_failure(&throttled),
        (
            "S3 GetObject failed: Please reduce your request rate.".to_owned(),
            true
        )
    );
    let denied = SourceError::other(AwsError {
        service: "S3",
        operation: "GetObject",
        code: Some("AccessDenied".into()),
        message: "Access Denied".into(),
        retryable: false,
        source: "test".into(),
    });
    assert!(!read_failure(&denied).1);
}
