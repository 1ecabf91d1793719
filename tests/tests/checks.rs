//! The checks action against the local stack: the release's checks, read from the job's input
//! artifact (the release intake recorded), run against a test endpoint served by the test
//! itself (an axum server standing for the ALB test listener): passing checks, a check that
//! retries through a 503, a 500 with a body that needs cleaning, an answer slower than the
//! check's timeout, an off-host redirect that is not followed, a release without checks, an
//! unresolved endpoint, and a run split across invocations by the continuation token. Then the
//! way the pipeline runs them: through each environment's test probe (environment.yaml's
//! `shipgate-test-probe`, invoked as its `shipgate-checks` role), the only way to the internal
//! test listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Result, bail, ensure};
use serde_json::{Value, json};
use shipgate::aws::codepipeline::JobFailureKind;
use shipgate::config::Env;
use shipgate::job::{Continuation, JobAction, Outcome};
use shipgate::store::Store;
use shipgate_checks::{ChecksConfig, ChecksFunction, Progress};
use shipgate_local::accounts;
use shipgate_local::stack::Stack;
use shipgate_tests::drops::{ReleaseBuilder, zip_with_zip_crate};
use shipgate_tests::jobs::{JobEvent, failure};
use shipgate_tests::releases::{PipelineRelease, validated_release};
use shipgate_tests::shared_stack::SharedStack;
use shipgate_tests::support::{artifact_bucket, store, table};

/// One stack for the tests, with the environment accounts' platform (their test probes and
/// listeners); each test has its releases and its own test endpoint.
static STACK: SharedStack = SharedStack::new("checks", |o| {
    o.registries = false;
    o.deliver_s3_events = false;
    o.environment_template = Some(shipgate_local::process::project_root().join("environment.yaml"));
});

struct World {
    stack: &'static Stack,
    action: ChecksFunction,
    store: Store,
    s3: aws_sdk_s3::Client,
    bucket: String,
    endpoint: TestEndpoint,
}

impl World {
    async fn start() -> Result<Self> {
        let stack = STACK.get().await?;
        Ok(Self {
            action: Self::action(stack, &[])?,
            store: store(stack)?,
            s3: shipgate::aws::s3_client(&stack.sdk, true),
            bucket: artifact_bucket(stack)?,
            endpoint: TestEndpoint::start().await?,
            stack,
        })
    }

    fn action(stack: &Stack, extra: &[(&str, &str)]) -> Result<ChecksFunction> {
        let table = table(stack)?;
        let mut env = Env::from_pairs([
            ("SHIPGATE_TABLE", table.as_str()),
            ("SHIPGATE_S3_FORCE_PATH_STYLE", "true"),
        ]);
        for (name, value) in extra {
            env.set(*name, *value);
        }
        Ok(ChecksFunction::new(
            ChecksConfig::from_env(&env)?,
            &stack.sdk,
        ))
    }

    /// A release with `checks` (none: no checks file), recorded as intake does, its zip the
    /// job's input artifact.
    async fn release(&self, checks: Option<Value>) -> Result<PipelineRelease> {
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
        validated_release(&self.store, &self.s3, &self.bucket, &zip, &zip).await
    }

    /// The job of the checks action for `release`, its test endpoint `endpoint`.
    fn job(&self, release: &PipelineRelease, endpoint: &str) -> JobEvent {
        self.job_with(release, Self::parameters(release, endpoint))
    }

    fn parameters(release: &PipelineRelease, endpoint: &str) -> Value {
        json!({
            "environment": "int",
            "releaseId": release.release_id,
            "executionId": release.execution_id,
            "endpoint": endpoint,
        })
    }

    fn job_with(&self, release: &PipelineRelease, parameters: Value) -> JobEvent {
        JobEvent::new("ChecksFunction", parameters)
            .release_artifact(&self.bucket, &release.artifact_key)
    }

    /// The job as the pipeline gives it: `endpoint` checked through int's test probe.
    fn probed_job(&self, release: &PipelineRelease, endpoint: &str) -> JobEvent {
        self.probed_job_named(release, endpoint, "shipgate-test-probe")
    }

    /// The same, the probe function named `probe` in int.
    fn probed_job_named(&self, release: &PipelineRelease, endpoint: &str, probe: &str) -> JobEvent {
        let mut parameters = Self::parameters(release, endpoint);
        parameters["probe"] = json!({
            "roleArn": format!("arn:aws:iam::{}:role/shipgate-checks", accounts::INT),
            "function": format!(
                "arn:aws:lambda:{}:{}:function:{probe}",
                accounts::REGION,
                accounts::INT,
            ),
        });
        self.job_with(release, parameters)
    }

    /// Runs a job.
    async fn run_job(&self, job: JobEvent) -> Result<Outcome> {
        Ok(self.action.run(&job.job()?).await)
    }

    /// Runs the release's checks against the test endpoint.
    async fn run(&self, release: &PipelineRelease) -> Result<Outcome> {
        Ok(self
            .action
            .run(&self.job(release, &self.endpoint.url).job()?)
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

/// The message of a run that failed.
async fn failed(run: impl std::future::Future<Output = Result<Outcome>>) -> Result<String> {
    Ok(failure(&run.await?)?.0.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_checks_succeed_and_failing_ones_name_the_check_status_and_body() -> Result<()> {
    let world = World::start().await?;
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
    let message = failed(world.run(&release)).await?;
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
    let message = failed(world.run(&release)).await?;
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
    let message = failed(world.run(&release)).await?;
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
        .run(
            &world
                .job(&release, "#{IntDeploy.ShipgateTestEndpoint}")
                .job()?,
        )
        .await;
    let (message, kind) = failure(&outcome)?;
    assert_eq!(kind, JobFailureKind::ConfigurationError);
    assert!(message.contains("was not resolved"), "{message}");
    let outcome = world.action.run(&world.job(&release, "").job()?).await;
    assert!(
        failure(&outcome)?
            .0
            .contains("`endpoint` is missing or empty"),
        "an empty endpoint"
    );

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_that_could_outlast_the_invocation_continue_in_the_next_one() -> Result<()> {
    let world = World::start().await?;
    // A 10 s budget per invocation; each check may take 3 × 4 s plus pauses, so the second
    // check waits for the next invocation.
    let action = World::action(world.stack, &[("SHIPGATE_CHECKS_INVOCATION_SECONDS", "10")])?;
    let mut health = check("health", "/health", 200, Some("ok"));
    health["timeout_ms"] = json!(4000);
    let mut version = check("version", "/version", 200, Some("1.0.0"));
    version["timeout_ms"] = json!(4000);
    let release = world.release(Some(json!([health, version]))).await?;

    let first = action
        .run(&world.job(&release, &world.endpoint.url).job()?)
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
        .run(
            &world
                .job(&release, &world.endpoint.url)
                .continuation(Some(&state.to_string()))
                .job()?,
        )
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

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_test_listener_is_reached_only_through_the_environment_probe() -> Result<()> {
    let world = World::start().await?;
    let listener = world.stack.environments["int"]["TestEndpoint"].clone();
    let release = world
        .release(Some(json!([
            check("health", "/health", 200, Some("ok")),
            check("orders", "/orders?limit=1", 200, Some("o-1001")),
        ])))
        .await?;

    // As the pipeline runs them: through int's probe, inside int's network.
    let outcome = world
        .action
        .run(&world.probed_job(&release, &listener).job()?)
        .await;
    let Outcome::Done { summary, .. } = outcome else {
        bail!("expected success through the probe: {outcome:?}");
    };
    assert!(summary.starts_with("2 checks passed in "), "{summary}");

    // From the checks function itself (outside any VPC): the listener does not let it in.
    let direct = failed(world.run_job(world.job(&release, &listener))).await?;
    assert!(
        direct.contains("expected status 200, got 403") && direct.contains("shipgate-test-probe"),
        "{direct}"
    );

    // The probe requests its own environment's test endpoint only: a stack output naming any
    // other is refused, nothing is requested, and the message says what to fix.
    let outcome = world
        .action
        .run(&world.probed_job(&release, &world.endpoint.url).job()?)
        .await;
    let (message, kind) = failure(&outcome)?;
    assert_eq!(kind, JobFailureKind::ConfigurationError);
    assert!(
        message.contains("ForeignOrigin") && message.contains("ShipgateTestEndpoint"),
        "{message}"
    );
    assert_eq!(
        world.endpoint.hits("/health"),
        0,
        "the probe requested nothing"
    );

    // A probe that does not exist fails the action with the fix.
    let missing = world.probed_job_named(&release, &listener, "shipgate-test-probe-gone");
    let message = failed(world.run_job(missing)).await?;
    assert!(message.contains("Deploy environment.yaml"), "{message}");
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
                // An answer that never comes: slower than any timeout, however fast the machine.
                axum::routing::get(std::future::pending::<&str>),
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
}

impl Drop for TestEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}
