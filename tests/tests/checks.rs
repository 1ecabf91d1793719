//! The checks action against the local stack: the release's checks, read from the job's input
//! artifact (the release intake recorded), run against a test endpoint served by the test
//! itself (an axum server standing for the ALB test listener): passing checks, a check that
//! retries through a 503, a 500 with a body that needs cleaning, an answer slower than the
//! check's timeout, an off-host redirect that is not followed, a release without checks, an
//! unresolved endpoint, and a run split across invocations by the continuation token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use serde_json::{Value, json};
use shipgate::aws::codepipeline::JobFailureKind;
use shipgate::aws::s3::ObjectVersion;
use shipgate::config::Env;
use shipgate::job::{Continuation, Job, JobAction, Outcome};
use shipgate::release::{Limits, inspect_release};
use shipgate::store::{ReleaseRecord, ReleaseState, Store};
use shipgate_checks::{ChecksConfig, ChecksFunction, Progress};
use shipgate_local::accounts;
use shipgate_local::stack::Stack;
use shipgate_tests::drops::{ReleaseBuilder, zip_with_zip_crate};
use shipgate_tests::support::{put, start_stack};

struct World {
    stack: Stack,
    action: ChecksFunction,
    store: Store,
    s3: aws_sdk_s3::Client,
    bucket: String,
    table: String,
    endpoint: TestEndpoint,
}

struct Release {
    release_id: String,
    artifact_key: String,
}

impl World {
    async fn start(name: &str) -> Result<Self> {
        let stack = start_stack(name, |o| {
            o.registries = false;
            o.deliver_s3_events = false;
        })
        .await?;
        let table = stack.provisioned.table.clone().context("table")?;
        let bucket = stack
            .provisioned
            .artifact_bucket
            .clone()
            .context("artifact bucket")?;
        let action = Self::action(&stack, &table, &[])?;
        Ok(Self {
            store: Store::new(aws_sdk_dynamodb::Client::new(&stack.sdk), table.clone()),
            s3: shipgate::aws::s3_client(&stack.sdk, true),
            endpoint: TestEndpoint::start().await?,
            bucket,
            table,
            action,
            stack,
        })
    }

    fn action(stack: &Stack, table: &str, extra: &[(&str, &str)]) -> Result<ChecksFunction> {
        let mut env = Env::from_pairs([
            ("SHIPGATE_TABLE", table),
            ("SHIPGATE_S3_FORCE_PATH_STYLE", "true"),
        ]);
        for (name, value) in extra {
            env.set(*name, *value);
        }
        Ok(ChecksFunction::new(
            ChecksConfig::from_env(&env)?,
            &stack.endpoints.sdk_config(),
        ))
    }

    async fn stop(self) {
        self.endpoint.stop();
        self.stack.stop().await;
    }

    /// A release with `checks` (none: no checks file), recorded as intake does, its zip the
    /// job's input artifact.
    async fn release(&self, checks: Option<Value>) -> Result<Release> {
        let mut builder = ReleaseBuilder::new("orders", "1.0.0").image(
            "web",
            "orders/web",
            "1.0.0",
            &format!("sha256:{}", "a".repeat(64)),
        );
        if checks.is_none() {
            builder = builder.without_checks();
        }
        let mut files = builder.files();
        if let Some(checks) = checks {
            for (name, bytes) in &mut files {
                if name == "checks.json" {
                    *bytes = serde_json::to_vec_pretty(&json!({
                        "schema_version": "shipgate.checks/v1",
                        "checks": checks,
                    }))?;
                }
            }
        }
        let zip = zip_with_zip_crate(&files);
        let inspection = inspect_release(&Bytes::copy_from_slice(&zip), &Limits::default()).await;
        ensure!(inspection.is_acceptable(), "{:#?}", inspection.problems);
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let release_id = format!("rel-{}", &unique[..20]);
        let artifact_key = format!("shipgate-pipeline/Release/{}", &unique[..7]);
        put(&self.s3, &self.bucket, &artifact_key, zip).await?;
        let mut record = ReleaseRecord::received(
            release_id.clone(),
            ObjectVersion {
                bucket: self.bucket.clone(),
                key: format!("incoming/{release_id}.zip"),
                version_id: Some("1".into()),
            },
            "2026-11-26T10:00:00Z".into(),
        );
        record.state = ReleaseState::Started;
        record.manifest_sha256 = inspection.manifest_sha256.clone();
        self.store.claim_release(&record, 1_764_000_000).await?;
        Ok(Release {
            release_id,
            artifact_key,
        })
    }

    fn job(&self, release: &Release, endpoint: &str, continuation: Option<&str>) -> Result<Job> {
        let mut event: Value = serde_json::from_str(include_str!(
            "../../shared/tests/fixtures/codepipeline-job.json"
        ))?;
        let job = &mut event["CodePipeline.job"];
        job["id"] = json!(uuid::Uuid::new_v4().to_string());
        job["accountId"] = json!(accounts::TOOLING);
        let data = &mut job["data"];
        data["actionConfiguration"]["configuration"]["UserParameters"] = json!(
            json!({
                "environment": "int",
                "releaseId": release.release_id,
                "executionId": "exec-1",
                "endpoint": endpoint,
            })
            .to_string()
        );
        data["inputArtifacts"][0]["name"] = json!("Release");
        data["inputArtifacts"][0]["location"]["s3Location"] =
            json!({"bucketName": self.bucket, "objectKey": release.artifact_key});
        data["continuationToken"] = continuation.map_or(Value::Null, |t| json!(t));
        Ok(Job::from_event(event)?)
    }

    /// Runs the release's checks against the test endpoint.
    async fn run(&self, release: &Release) -> Result<Outcome> {
        Ok(self
            .action
            .run(&self.job(release, &self.endpoint.url, None)?)
            .await)
    }
}

fn check(name: &str, path: &str, status: u16, contains: Option<&str>) -> Value {
    let mut check = json!({"name": name, "method": "GET", "path": path, "expect_status": status});
    if let Some(text) = contains {
        check["expect_body_contains"] = json!(text);
    }
    check
}

fn failure(outcome: Outcome) -> Result<String> {
    match outcome {
        Outcome::Failed { message, .. } => Ok(message),
        other => bail!("expected a failure: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_checks_succeed_and_failing_ones_name_the_check_status_and_body() -> Result<()> {
    let world = World::start("checks").await?;
    let url = world.endpoint.url.clone();

    // Passing: 200 with the body, a 404 expected, a 503 then 200 (retried), and a redirect to
    // another host that is not followed (the check expects the 303 itself).
    let release = world
        .release(Some(json!([
            check("health", "/health", 200, Some("ok")),
            check("version", "/version", 200, Some("1.0.0")),
            check("unknown-route", "/no-such-page", 404, None),
            check("warming-up", "/flaky", 200, Some("recovered")),
            check("stays-home", "/elsewhere", 303, None),
        ])))
        .await?;
    let outcome = world.run(&release).await?;
    let Outcome::Done {
        summary,
        output_variables,
    } = &outcome
    else {
        bail!("expected success: {outcome:?}");
    };
    ensure!(
        summary.starts_with("5 checks passed in ") && summary.ends_with(" ms"),
        "{summary}"
    );
    assert_eq!(output_variables["ChecksPassed"], "5");
    assert_eq!(world.endpoint.hits("/flaky"), 2, "the 503 was tried again");
    assert_eq!(
        world.endpoint.hits("/stolen"),
        0,
        "no request left the endpoint"
    );

    // A 500: the check, the status and a clean excerpt of the body; tried 3 times.
    let release = world
        .release(Some(json!([
            check("health", "/health", 200, Some("ok")),
            check("list-orders", "/broken", 200, None),
        ])))
        .await?;
    let message = failure(world.run(&release).await?)?;
    assert!(
        message.starts_with(&format!(
            "int: check list-orders (GET {url}/broken) failed after 3 tries: expected status \
             200, got 500; body: \"database: connection refused [0m trace: "
        )),
        "{message}"
    );
    assert!(!message.contains('\u{1b}') && !message.contains('\n'));
    let quoted = message
        .split("body: \"")
        .nth(1)
        .and_then(|b| b.split('"').next())
        .unwrap_or_default();
    // At most 500 characters (a space before the cut is dropped) and the ellipsis.
    assert!(
        quoted.chars().count() <= 501 && quoted.ends_with('…'),
        "{quoted}"
    );
    assert_eq!(world.endpoint.hits("/broken"), 3);

    // An answer slower than the check's timeout.
    let mut slow = check("slow-report", "/slow", 200, None);
    slow["timeout_ms"] = json!(300);
    let release = world.release(Some(json!([slow]))).await?;
    let message = failure(world.run(&release).await?)?;
    assert!(
        message.contains("check slow-report (GET http://127.0.0.1:")
            && message.contains(
                "/slow) failed after 3 tries: no complete answer within its timeout of 300 ms"
            ),
        "{message}"
    );

    // The body is wrong although the status is right.
    let release = world
        .release(Some(json!([check(
            "version",
            "/version",
            200,
            Some("2.0.0")
        )])))
        .await?;
    let message = failure(world.run(&release).await?)?;
    assert!(
        message.contains(
            "failed: status 200 as expected, but the body does not contain \"2.0.0\"; body: \
             \"1.0.0\""
        ),
        "{message}"
    );

    // No checks file: nothing to run, said so.
    let release = world.release(None).await?;
    let outcome = world.run(&release).await?;
    let Outcome::Done { summary, .. } = outcome else {
        bail!("expected success: {outcome:?}");
    };
    assert_eq!(summary, "no checks in the release");

    // The deploy action's output variable did not resolve.
    let release = world
        .release(Some(json!([check("health", "/health", 200, None)])))
        .await?;
    let outcome = world
        .action
        .run(&world.job(&release, "#{IntDeploy.ShipgateTestEndpoint}", None)?)
        .await;
    let Outcome::Failed { kind, message } = outcome else {
        bail!("expected a failure: {outcome:?}");
    };
    assert_eq!(kind, JobFailureKind::ConfigurationError);
    assert!(message.contains("was not resolved"), "{message}");
    let outcome = world.action.run(&world.job(&release, "", None)?).await;
    assert!(
        failure(outcome)?.contains("`endpoint` is missing or empty"),
        "an empty endpoint"
    );

    world.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_that_could_outlast_the_invocation_continue_in_the_next_one() -> Result<()> {
    let world = World::start("checks-continue").await?;
    // A 10 s budget per invocation; each check may take 3 × 4 s plus pauses, so the second
    // check waits for the next invocation.
    let action = World::action(
        &world.stack,
        &world.table,
        &[("SHIPGATE_CHECKS_INVOCATION_SECONDS", "10")],
    )?;
    let mut health = check("health", "/health", 200, Some("ok"));
    health["timeout_ms"] = json!(4000);
    let mut version = check("version", "/version", 200, Some("1.0.0"));
    version["timeout_ms"] = json!(4000);
    let release = world.release(Some(json!([health, version]))).await?;

    let first = action
        .run(&world.job(&release, &world.endpoint.url, None)?)
        .await;
    let Outcome::Continue { state } = first else {
        bail!("expected a continuation: {first:?}");
    };
    let continuation: Continuation = serde_json::from_value(state.clone())?;
    let progress: Progress = serde_json::from_value(continuation.state.unwrap_or_default())?;
    assert_eq!(
        (progress.next, progress.total, continuation.invocation),
        (1, 2, 1)
    );
    assert_eq!(world.endpoint.hits("/version"), 0);

    let second = action
        .run(&world.job(&release, &world.endpoint.url, Some(&state.to_string()))?)
        .await;
    let Outcome::Done { summary, .. } = second else {
        bail!("expected success: {second:?}");
    };
    assert!(summary.starts_with("2 checks passed in "), "{summary}");
    assert_eq!(
        world.endpoint.hits("/health"),
        1,
        "a passed check is not run again"
    );

    world.stop().await;
    Ok(())
}

/// The new version's test endpoint, as the ALB test listener would serve it.
struct TestEndpoint {
    url: String,
    hits: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestEndpoint {
    async fn start() -> Result<Self> {
        let hits: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
        let flaky = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr: SocketAddr = listener.local_addr()?;
        let counted = hits.clone();
        let app = axum::Router::new()
            .route("/health", axum::routing::get(|| async { "ok" }))
            .route("/version", axum::routing::get(|| async { "1.0.0" }))
            .route(
                "/flaky",
                axum::routing::get(move || {
                    let calls = flaky.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if calls == 0 {
                            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "warming up")
                        } else {
                            (axum::http::StatusCode::OK, "recovered")
                        }
                    }
                }),
            )
            .route(
                "/broken",
                axum::routing::get(|| async {
                    (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        format!(
                            "database: connection refused\n\u{1b}[0m\r\ntrace: {}",
                            "at orders::db::connect ".repeat(60)
                        ),
                    )
                }),
            )
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    "too late"
                }),
            )
            .route(
                "/elsewhere",
                axum::routing::get(move || async move {
                    // Same port, another host name: another origin.
                    axum::response::Redirect::to(&format!(
                        "http://localhost:{}/stolen",
                        addr.port()
                    ))
                }),
            )
            .route("/stolen", axum::routing::get(|| async { "secret" }))
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let counted = counted.clone();
                    async move {
                        if let Ok(mut hits) = counted.lock() {
                            *hits.entry(request.uri().path().to_owned()).or_default() += 1;
                        }
                        next.run(request).await
                    }
                },
            ));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("http://{addr}"),
            hits,
            task,
        })
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .map(|h| h.get(path).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    fn stop(&self) {
        self.task.abort();
    }
}
