//! Fixtures for the tests of shipgate's crates: shipgate's own unit tests, and the functions' and
//! the end-to-end tests' through the `test-util` feature (a dev-dependency of the functions, a
//! dependency of the tests crate only; never in a Lambda's build).

pub mod zip;

use crate::aws::s3::ObjectVersion;
use crate::config::Env;
use crate::deploy::deployment_id;
use crate::error::AwsError;
use crate::store::{Deployment, DeploymentState, Drain, EcsTaskSets, ReleaseRecord, TrafficTarget};

/// The deployments' start, epoch milliseconds (`deployment().started_at_ms`).
pub const T0: i64 = 1_800_000_000_000;

/// The error `service` answered to `operation`: `code` and `message`, worth another try or not.
pub fn aws_error(
    service: &'static str,
    operation: &'static str,
    code: &str,
    message: &str,
    retryable: bool,
) -> AwsError {
    AwsError {
        service,
        operation,
        code: Some(code.into()),
        message: message.into(),
        retryable,
        source: "test".into(),
    }
}

/// A release as intake records it on receipt (`validating`): `incoming/orders.zip`, version
/// `v1`, dropped into `bucket` on 2026-11-26 at 10:00 UTC.
pub fn received_release(release_id: &str, bucket: &str) -> ReleaseRecord {
    ReleaseRecord::received(
        release_id.into(),
        ObjectVersion {
            bucket: bucket.into(),
            key: "incoming/orders.zip".into(),
            version_id: Some("v1".into()),
        },
        "2026-11-26T10:00:00Z".into(),
    )
}

/// A Lambda deployment in flight: release rel-1 into int (execution exec-1), alias
/// `orders:live` from version 6 to 7, canary, nothing shifted yet.
pub fn deployment() -> Deployment {
    Deployment {
        deployment_id: deployment_id("rel-1", "int", "exec-1"),
        release_id: "rel-1".into(),
        environment: "int".into(),
        execution_id: "exec-1".into(),
        application: Some("orders".into()),
        version: Some("1.4.2".into()),
        team: None,
        account_id: "222222222222".into(),
        role_arn: "arn:aws:iam::222222222222:role/shipgate-deploy".into(),
        target: TrafficTarget::LambdaAlias {
            function: "orders".into(),
            alias: "live".into(),
            previous_version: "6".into(),
            new_version: "7".into(),
        },
        plan: "Canary10Percent5Minutes".into(),
        started_at_ms: T0,
        state: DeploymentState::Shifting,
        percent: 0,
        next_step_at_ms: None,
        alarms: vec!["orders-int-5xx".into(), "orders-int-latency".into()],
        job_id: Some("job-1".into()),
        rollback: None,
        lease: None,
        steps: vec![],
        revision: 0,
        created_at: "2027-01-15T08:00:00Z".into(),
        updated_at: "2027-01-15T08:00:00Z".into(),
    }
}

/// The ECS deployment of [`deployment`]: blue/green task sets behind a listener.
pub fn ecs_deployment(drain: Option<Drain>) -> Deployment {
    let mut d = deployment();
    d.target = TrafficTarget::AlbListener {
        listener_arn: "arn:listener/80".into(),
        test_listener_arn: Some("arn:listener/9000".into()),
        blue_target_group: "arn:tg/blue".into(),
        green_target_group: "arn:tg/green".into(),
        task_sets: Some(EcsTaskSets {
            cluster: "shipgate-int".into(),
            service: "orders".into(),
            green_task_set: "ts-green".into(),
            blue_task_set: Some("ts-blue".into()),
            drain,
        }),
    };
    d
}

/// The configuration `from_env` reads from `SHIPGATE_TABLE=t` alone (its defaults), once it is
/// shown that the table is required and that each of `refused` (a variable and a value, set
/// besides the table) is refused by a message that names the variable.
pub fn config_checked<C, E: std::fmt::Display>(
    from_env: impl Fn(&Env) -> Result<C, E>,
    refused: &[(&str, &str)],
) -> C {
    let missing = from_env(&Env::default())
        .err()
        .expect("SHIPGATE_TABLE is required")
        .to_string();
    assert!(missing.contains("SHIPGATE_TABLE"), "{missing}");
    for (name, value) in refused {
        let env = Env::from_pairs([("SHIPGATE_TABLE", "t"), (name, value)]);
        let err = from_env(&env)
            .err()
            .unwrap_or_else(|| panic!("{name}={value} must be refused"))
            .to_string();
        assert!(err.contains(name), "{name}={value}: {err}");
    }
    from_env(&Env::from_pairs([("SHIPGATE_TABLE", "t")]))
        .unwrap_or_else(|e| panic!("the defaults must be valid: {e}"))
}

/// Asserts that `P`, an action's `UserParameters` that flatten the stage's fields
/// ([`StageParameters`](crate::job::parameters::StageParameters)) and deny unknown ones, refuses
/// an unknown field (`role`, a typo of `roleArn`) and a missing one by name.
pub fn assert_stage_fields_refused_by_name<P: serde::de::DeserializeOwned>() {
    let typo = serde_json::from_str::<P>(
        r#"{"environment": "int", "role": "x", "roleArn": "x", "releaseId": "r",
            "executionId": "e"}"#,
    )
    .err()
    .expect("an unknown field is refused")
    .to_string();
    assert!(typo.contains("unknown field `role`"), "{typo}");
    let missing = serde_json::from_str::<P>(r#"{"environment": "int"}"#)
        .err()
        .expect("a missing field is refused")
        .to_string();
    assert!(missing.contains("missing field `roleArn`"), "{missing}");
}

/// What makes a good manifest a drop with many problems at once (a short digest, an address
/// that is not one, a field the format does not know, a template that is not in the zip), and
/// the problem codes intake must report for it, with those of the broken checks file and the
/// escaping entry that the drops built from it carry too.
pub mod many_problems {
    use serde_json::{Value, json};

    /// The manifest's own problems, applied to a good manifest.
    pub fn manifest(mut manifest: Value) -> Value {
        manifest["images"][0]["digest"] = json!("sha256:1234");
        manifest["integrator"]["email"] = json!("not-an-email");
        manifest["images"][0]["size"] = json!(12);
        if let Some(templates) = manifest["templates"].as_array_mut() {
            templates.push(json!({"path": "templates/db.yaml", "stack": "db"}));
        }
        manifest
    }

    /// Every code intake reports for such a drop with an invalid checks file and an entry
    /// that escapes the archive.
    pub const CODES: [&str; 6] = [
        "invalid_digest",
        "invalid_email",
        "unknown_field",
        "template_missing",
        "checks_invalid",
        "path_traversal",
    ];
}

/// An SDK configuration whose every call fails at once, without a retry: the endpoint is a
/// closed port on this machine. A handler given it that answers `Ok` made no AWS call on the
/// way (no read, no write, no email): what a test of a refusal before any effect needs.
pub fn offline_sdk_config() -> aws_config::SdkConfig {
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_smithy_types::retry::RetryConfig;
    use aws_types::region::Region;
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDOFFLINE",
            "offline",
            None,
            None,
            "offline",
        )))
        .retry_config(RetryConfig::disabled())
        .http_client(crate::aws::https_client())
        .build()
}

/// The VPC endpoints a private subnet needs to reach ECR, S3 and CloudWatch Logs without a NAT
/// ([`crate::network`]), all available: the interface endpoints (private DNS on) in `subnets`
/// behind `security_group`, and the S3 gateway endpoint on `route_table`.
pub fn reaching_endpoints(
    subnets: &[&str],
    security_group: &str,
    route_table: &str,
) -> Vec<crate::network::Endpoint> {
    use crate::network::{Endpoint, EndpointType, INTERFACE_SERVICES};
    let owned = |ids: &[&str]| ids.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>();
    let mut endpoints: Vec<Endpoint> = INTERFACE_SERVICES
        .iter()
        .map(|name| Endpoint {
            id: format!("vpce-{name}"),
            service: format!("com.amazonaws.eu-west-1.{name}"),
            kind: EndpointType::Interface,
            available: true,
            private_dns: true,
            subnets: owned(subnets),
            security_groups: owned(&[security_group]),
            route_tables: vec![],
        })
        .collect();
    endpoints.push(Endpoint {
        id: "vpce-s3".into(),
        service: "com.amazonaws.eu-west-1.s3".into(),
        kind: EndpointType::Gateway,
        available: true,
        private_dns: false,
        subnets: vec![],
        security_groups: vec![],
        route_tables: owned(&[route_table]),
    });
    endpoints
}

/// Application `name`, released through pipeline `pipeline`, with the chain `environments`:
/// each `(environment, approvers)` in promotion order, its deploy role in account
/// 22222222222<i>, no stack role, no team address, plan `AllAtOnce`.
pub fn application(
    name: &str,
    pipeline: &str,
    environments: &[(&str, &str)],
) -> crate::application::Application {
    let declaration = crate::application::Declaration {
        schema: crate::application::SCHEMA.to_owned(),
        application: name.to_owned(),
        pipeline: pipeline.to_owned(),
        source_key: crate::application::accepted_key(name),
        environments: environments
            .iter()
            .enumerate()
            .map(
                |(i, (environment, approvers))| crate::application::DeclaredEnvironment {
                    name: (*environment).to_owned(),
                    deploy_role_arn: format!("arn:aws:iam::22222222222{i}:role/shipgate-deploy"),
                    stack_role_arn: String::new(),
                    approvers: (*approvers).to_owned(),
                    team_email: String::new(),
                    traffic_plan: "AllAtOnce".to_owned(),
                },
            )
            .collect(),
    };
    let text = serde_json::to_string(&declaration).expect("a declaration serialises");
    crate::application::Application::from_declaration(name, &text)
        .unwrap_or_else(|e| panic!("fixture: {e}"))
}
