//! Bench (issue 17): the cost of one release as the number of applications grows. For 1, 10 and
//! 50 applications, each an application stack (`application.yaml`) with a chain of four
//! environments (dev → int → stg → prod) and a pipeline of its own, deployed beside the core on
//! a local stack of its own, drops releases round-robin across the applications and runs intake
//! on each drop's S3 event (the handler Lambda runs, in this process, its SDK clients counting
//! every AWS call they make). Prints, per number of applications: intake's verdict time per
//! drop, the time to look one application up (a cold directory: one `GetParameter`), and the
//! AWS calls intake made per release, by operation. Asserts nothing about time.
//!
//! Run: `make bench-apps` (`SHIPGATE_BENCH_DROPS`, default 20, drops per size;
//! `SHIPGATE_BENCH_APPS`, default `1,10,50`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use shipgate::application::directory::Directory;
use shipgate_intake::RecordOutcome;
use shipgate_local::accounts;
use shipgate_local::stack::{Stack, StackOptions};
use shipgate_tests::drops::ReleaseBuilder;
use shipgate_tests::support::{artifact_bucket, push_source_image, put, s3_put_event};

/// Every call a client makes, by `service:operation`.
#[derive(Debug, Clone, Default)]
struct Counter(Arc<Mutex<BTreeMap<String, u64>>>);

impl Counter {
    fn take(&self) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "bench-apps call counter"
    }

    // Once per attempt sent: a retried call counts each time, as AWS bills and throttles it.
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let call = cfg.load::<Metadata>().map_or_else(
            || "unnamed operation".to_owned(),
            |m| format!("{}:{}", m.service(), m.name()),
        );
        if let Ok(mut counts) = self.0.lock() {
            *counts.entry(call).or_default() += 1;
        }
        Ok(())
    }
}

/// Application `i`'s stack parameters: dev, int, stg and prod, each its own account's role.
fn application(i: usize) -> BTreeMap<String, String> {
    let name = format!("app-{i:03}");
    let mut parameters = BTreeMap::from([
        ("ApplicationName".to_owned(), name.clone()),
        ("PipelineName".to_owned(), name.clone()),
    ]);
    let chain = [
        ("dev", "555555555555"),
        ("int", accounts::INT),
        ("stg", accounts::STG),
        ("prod", accounts::PROD),
    ];
    for (n, (environment, account)) in chain.iter().enumerate() {
        let n = n + 1;
        let mut set = |key: &str, value: String| {
            parameters.insert(format!("Env{n}{key}"), value);
        };
        set("Name", (*environment).to_owned());
        set("DeployRoleArn", accounts::deploy_role_arn(account));
        set("Approvers", format!("{environment}-lead@{name}.local"));
        set("TeamEmail", format!("{environment}-team@{name}.local"));
        set("TrafficPlan", "AllAtOnce".to_owned());
    }
    parameters
}

/// Intake as the stack configures it, every client counting its calls in `counter`.
fn counted_intake(stack: &Stack, counter: &Counter) -> shipgate_intake::Intake {
    let sdk = stack.endpoints.sdk_config();
    let mut intake = stack.functions.intake().clone();
    intake.s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .interceptor(counter.clone())
            .build(),
    );
    intake.store = shipgate::store::Store::new(
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .interceptor(counter.clone())
                .build(),
        ),
        intake.config.table.clone(),
    );
    intake.codepipeline = aws_sdk_codepipeline::Client::from_conf(
        aws_sdk_codepipeline::config::Builder::from(&sdk)
            .interceptor(counter.clone())
            .build(),
    );
    intake.ses = aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::config::Builder::from(&sdk)
            .interceptor(counter.clone())
            .build(),
    );
    intake.ecr = aws_sdk_ecr::Client::from_conf(
        aws_sdk_ecr::config::Builder::from(&sdk)
            .interceptor(counter.clone())
            .build(),
    );
    intake.applications = Arc::new(Directory::new(ssm(&sdk, counter)));
    intake
}

fn ssm(sdk: &aws_config::SdkConfig, counter: &Counter) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build(),
    )
}

/// (median, 90th percentile, max) in milliseconds.
fn spread(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.9), at(1.0))
}

struct Row {
    applications: usize,
    /// How many of them the drops went to (round-robin).
    targets: usize,
    started_in: Duration,
    verdict: (f64, f64, f64),
    lookup: (f64, f64, f64),
    calls: BTreeMap<String, f64>,
}

async fn measure(applications: usize, targets: usize, drops: usize) -> Result<Row> {
    let mut options = StackOptions::for_test("bench-apps");
    options.deliver_s3_events = false;
    options.applications = (0..applications).map(application).collect();
    let t = Instant::now();
    let stack = Stack::start(options).await?;
    let started_in = t.elapsed();
    let result = drop_releases(&stack, applications, targets, drops).await;
    stack.stop().await;
    let (verdict, lookup, calls) = result?;
    Ok(Row {
        applications,
        targets: targets.min(applications),
        started_in,
        verdict,
        lookup,
        calls,
    })
}

type Measured = ((f64, f64, f64), (f64, f64, f64), BTreeMap<String, f64>);

async fn drop_releases(
    stack: &Stack,
    applications: usize,
    targets: usize,
    drops: usize,
) -> Result<Measured> {
    let image = push_source_image(stack, "bench/web", "1.0.0", &[1024]).await?;
    let digest = image.digest().to_string();
    let bucket = artifact_bucket(stack)?;
    let s3 = shipgate::aws::s3_client(&stack.sdk, true);
    let counter = Counter::default();
    let intake = counted_intake(stack, &counter);
    // The counter must see a call it is shown, or its figures mean nothing.
    intake.s3.head_bucket().bucket(&bucket).send().await?;
    if counter.take().values().sum::<u64>() != 1 {
        bail!("the call counter does not count the clients' calls");
    }
    let sdk = stack.endpoints.sdk_config();
    let lookups = Counter::default();
    let (mut verdicts, mut cold) = (Vec::new(), Vec::new());
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for d in 0..drops {
        let app = format!("app-{:03}", d % targets.min(applications));
        let version = format!("1.0.{d}");
        let zip = ReleaseBuilder::new(&app, &version)
            .image("web", "bench/web", "1.0.0", &digest)
            .build();
        let size = zip.len() as u64;
        let key = format!("incoming/{app}-{version}.zip");
        let (version_id, etag) = put(&s3, &bucket, &key, zip).await?;
        let event = s3_put_event(&bucket, &key, &version_id, size, &etag);
        counter.take();
        let t = Instant::now();
        let report = intake
            .handle(event, &format!("bench-{d}"))
            .await
            .with_context(|| format!("intake on {key}"))?;
        verdicts.push(t.elapsed());
        match report.records.as_slice() {
            [RecordOutcome::Started { .. }] => {}
            other => bail!("{key} was not started: {other:?}"),
        }
        for (call, n) in counter.take() {
            *totals.entry(call).or_default() += n;
        }
        // The lookup alone, with nothing cached: what a function's first release of an
        // application costs.
        let directory = Directory::new(ssm(&sdk, &lookups));
        let t = Instant::now();
        directory
            .application(&app)
            .await?
            .with_context(|| format!("{app} is declared"))?;
        cold.push(t.elapsed());
    }
    let calls = totals
        .into_iter()
        .map(|(call, n)| (call, n as f64 / drops as f64))
        .collect();
    Ok((spread(&mut verdicts), spread(&mut cold), calls))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<()> {
    let drops: usize = env_or("SHIPGATE_BENCH_DROPS", 20);
    let sizes: Vec<usize> = std::env::var("SHIPGATE_BENCH_APPS")
        .unwrap_or_else(|_| "1,10,50".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut rows = Vec::new();
    for &applications in &sizes {
        eprintln!("==> {applications} application stacks, {drops} drops across all of them");
        rows.push(measure(applications, applications, drops).await?);
    }
    // The same number of applications declared, every drop to one of them: what the number of
    // applications costs apart from the number of pipelines running at once (each drop starts
    // an execution, which runs in the same local stack while the next drop is handled).
    if let Some(&most) = sizes.iter().max()
        && most > 1
    {
        eprintln!("==> {most} application stacks, {drops} drops to one of them");
        rows.push(measure(most, 1, drops).await?);
    }
    let operations: std::collections::BTreeSet<&String> =
        rows.iter().flat_map(|r| r.calls.keys()).collect();
    println!();
    println!(
        "| applications declared | dropped to | stack start | intake verdict per drop (median / p90 / max) | one lookup, cold (median / p90 / max) | AWS calls per release |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let total: f64 = r.calls.values().sum();
        println!(
            "| {} | {} | {:.1} s | {:.0} / {:.0} / {:.0} ms | {:.1} / {:.1} / {:.1} ms | {total:.1} |",
            r.applications,
            r.targets,
            r.started_in.as_secs_f64(),
            r.verdict.0,
            r.verdict.1,
            r.verdict.2,
            r.lookup.0,
            r.lookup.1,
            r.lookup.2,
        );
    }
    println!();
    println!(
        "intake's AWS calls per release, by operation (mean over the drops), per number of applications:"
    );
    println!(
        "| operation | {} |",
        rows.iter()
            .map(|r| format!("{} (to {})", r.applications, r.targets))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(rows.len()));
    for op in operations {
        println!(
            "| {op} | {} |",
            rows.iter()
                .map(|r| format!("{:.2}", r.calls.get(op).copied().unwrap_or(0.0)))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    Ok(())
}
