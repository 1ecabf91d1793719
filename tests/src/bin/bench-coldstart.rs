//! Bench: each function binary's cold start, as Lambda runs it, against the local stack.
//!
//! Starts a local stack in this process, then runs each function's release binary as a fresh
//! process per run against a minimal Lambda Runtime API emulator served here on loopback
//! (`GET /runtime/invocation/next` hands out one event with Lambda's headers; `POST
//! .../response`, `.../error` and `/runtime/init/error` collect the answer). The process gets
//! the environment Lambda gives a function (`AWS_LAMBDA_*`, region, static credentials with a
//! session token, the function's own variables from `template.yaml` as the stack resolved them,
//! the stack's `AWS_ENDPOINT_URL*`) and nothing else: no `HOME`, so no profile files.
//!
//! Per run it measures init (exec → the first `GET /runtime/invocation/next`), the first
//! invocation (event handed out → response or error posted) and the peak RSS (`VmHWM` once the
//! function asks for its second event, the idle state Lambda freezes). Each function gets a
//! realistic first event:
//! - intake: the S3 event of a fresh valid drop per run (it starts a pipeline execution, which
//!   the bench then stops with abandon so the stand-in's in-process work does not skew later
//!   runs);
//! - change-set, deploy, checks, traffic, promote: a `CodePipeline.job` event (AWS's sample, a
//!   fresh job and execution id per run) with the `UserParameters` and input artifacts of the
//!   first pipeline action that invokes the function (read back from the stand-in with
//!   `GetPipeline`, its `#{…}` variables filled in: the deploy action's outputs with the sample
//!   app's int values), for a release nobody recorded: each loads its config, builds its
//!   clients, makes its first AWS calls (DynamoDB; traffic assumes the environment's deploy role
//!   first), fails the job, and the stand-in answers that it knows no such job (the answer
//!   column shows that error);
//! - mailer: an SNS notification that is not an approval (ignored);
//! - approval-page: a function URL `GET /` without a link token (the 400 page);
//! - rollback: EventBridge's "CloudWatch Alarm State Change" to ALARM (AWS's sample) for an
//!   int-account alarm no deployment watches: one query of the alarm index, ignored.
//!
//! Prints a table (median and worst of N runs) with the arm64 zip size from `make package`
//! (`target/lambda/<bin>/bootstrap.zip`, under `CARGO_TARGET_DIR` if set) when it exists;
//! asserts nothing.
//!
//! Run: `make bench-coldstart`. `SHIPGATE_BENCH_RUNS` (default 20), `SHIPGATE_BENCH_FUNCTIONS`
//! (comma-separated binaries, default all), `SHIPGATE_BENCH_BIN_DIR` (where the function
//! binaries are; default: beside this binary) and `SHIPGATE_BENCH_ENV` (extra `K=V,K=V`
//! variables for the functions, for experiments) change what runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use shipgate_local::accounts::{INT, REGION, TOOLING};
use shipgate_local::stack::{Stack, StackOptions};
use shipgate_tests::drops::ReleaseBuilder;
use shipgate_tests::support::{push_source_image, s3_put_event};
use tokio::sync::mpsc;

const MIB: f64 = 1024.0 * 1024.0;
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// The release the action functions' jobs name: nobody recorded it.
const MISSING_RELEASE: &str = "rel-c01d57a4700000000000";
/// The int-account alarm the rollback event is about: no deployment watches it.
const UNWATCHED_ALARM: &str = "bench-coldstart-unwatched";

/// One function: its binary, its logical id in the template and its `MemorySize` there.
struct Function {
    binary: &'static str,
    logical_id: &'static str,
    memory_mb: u32,
}

/// Every function binary of `functions/`. `MemorySize`: template.yaml's `Globals` (256) unless
/// the function sets its own.
const FUNCTIONS: [Function; 9] = [
    Function {
        binary: "intake",
        logical_id: "IntakeFunction",
        memory_mb: 256,
    },
    Function {
        binary: "change-set",
        logical_id: "ChangeSetFunction",
        memory_mb: 256,
    },
    Function {
        binary: "mailer",
        logical_id: "MailerFunction",
        memory_mb: 256,
    },
    Function {
        binary: "approval-page",
        logical_id: "ApprovalPageFunction",
        memory_mb: 256,
    },
    Function {
        binary: "deploy",
        logical_id: "DeployFunction",
        memory_mb: 256,
    },
    Function {
        binary: "checks",
        logical_id: "ChecksFunction",
        memory_mb: 256,
    },
    Function {
        binary: "traffic",
        logical_id: "TrafficFunction",
        memory_mb: 256,
    },
    Function {
        binary: "rollback",
        logical_id: "RollbackFunction",
        memory_mb: 256,
    },
    Function {
        binary: "promote",
        logical_id: "PromoteFunction",
        memory_mb: 1024,
    },
];

#[tokio::main]
async fn main() -> Result<()> {
    let runs: usize = std::env::var("SHIPGATE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(1);
    let only: Option<Vec<String>> = std::env::var("SHIPGATE_BENCH_FUNCTIONS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let bin_dir = match std::env::var_os("SHIPGATE_BENCH_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has a folder")?
            .to_path_buf(),
    };
    let functions: Vec<&Function> = FUNCTIONS
        .iter()
        .filter(|f| {
            only.as_ref()
                .is_none_or(|o| o.iter().any(|b| b == f.binary))
        })
        .collect();
    for f in &functions {
        let exe = bin_dir.join(f.binary);
        if !exe.exists() {
            bail!(
                "{} is missing: build the functions first (cargo build --release --bins -p shipgate-{})",
                exe.display(),
                f.binary
            );
        }
    }

    let mut options = StackOptions::for_test("bench-coldstart");
    // The bench hands intake its events itself.
    options.deliver_s3_events = false;
    let stack = Stack::start(options).await?;
    let work = stack.state_dir().join("coldstart");
    std::fs::create_dir_all(&work)?;
    // Where `make package` left the zips: cargo's target dir.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| shipgate_local::process::project_root().join("target"));

    let mut rows = Vec::new();
    for f in &functions {
        let exe = bin_dir.join(f.binary);
        let env = function_env(&stack, f)?;
        let events = first_events(&stack, f, runs).await?;
        let mut samples = Vec::with_capacity(runs);
        for (i, event) in events.iter().enumerate() {
            let log = work.join(format!("{}.log", f.binary));
            let sample = run_once(&exe, &env, event, &log)
                .await
                .with_context(|| format!("{} run {}", f.binary, i + 1))?;
            if f.binary == "intake" {
                stop_started_execution(&stack, &sample.answer).await;
            }
            samples.push(sample);
        }
        let zip = target_dir
            .join("lambda")
            .join(f.binary)
            .join("bootstrap.zip");
        let zip_size = std::fs::metadata(&zip).ok().map(|m| m.len());
        let logged = logged_outcome(&work.join(format!("{}.log", f.binary)));
        rows.push(Row::new(f.binary, samples, zip_size, logged));
    }

    println!();
    println!(
        "cold start, {runs} runs per function ({} binaries from {}; zip: target/lambda/<bin>/bootstrap.zip, arm64)",
        std::env::consts::ARCH,
        bin_dir.display()
    );
    println!();
    println!(
        "| function | init median | init worst | first invoke median | first invoke worst | peak RSS median | peak RSS worst | zip | first answer |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!("{}", row.markdown());
    }
    println!();
    println!("targets: init ≤ 20 ms median, peak RSS ≤ 32 MiB, zip ≤ 4 MiB");
    for row in &rows {
        let misses = row.misses();
        if misses.is_empty() {
            println!("- {}: all targets met", row.binary);
        } else {
            println!("- {}: over target: {}", row.binary, misses.join(", "));
        }
    }
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The environment Lambda gives the function, pointed at the stack.
fn function_env(stack: &Stack, f: &Function) -> Result<BTreeMap<String, String>> {
    let own = stack
        .provisioned
        .env_by_function
        .get(f.logical_id)
        .with_context(|| format!("template.yaml has no function {}", f.logical_id))?;
    let name = function_name(stack, f);
    let mut env: BTreeMap<String, String> = BTreeMap::from(
        [
            ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin"),
            ("LANG", "en_US.UTF-8"),
            ("TZ", ":UTC"),
            ("_HANDLER", "bootstrap"),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
            ("AWS_DEFAULT_REGION", REGION),
            // Lambda's credentials are a role session's: a session token comes with them.
            ("AWS_SESSION_TOKEN", "shipgate-bench-session-token"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), name.clone());
    env.insert(
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
        f.memory_mb.to_string(),
    );
    env.insert(
        "AWS_LAMBDA_LOG_GROUP_NAME".into(),
        format!("/aws/lambda/{name}"),
    );
    env.insert(
        "AWS_LAMBDA_LOG_STREAM_NAME".into(),
        "2026/11/26/[$LATEST]0123456789abcdef0123456789abcdef".into(),
    );
    env.extend(stack.endpoints.env_vars());
    env.extend(own.clone());
    if let Ok(extra) = std::env::var("SHIPGATE_BENCH_ENV") {
        for pair in extra.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    Ok(env)
}

/// `runs` first events for `f`: one fresh drop per run for intake, one fresh job per run for the
/// action functions, the same event otherwise.
async fn first_events(stack: &Stack, f: &Function, runs: usize) -> Result<Vec<Value>> {
    let event = match f.binary {
        "intake" => return intake_events(stack, runs).await,
        "change-set" | "deploy" | "traffic" | "promote" | "checks" => {
            let action = action_of(stack, f).await?;
            return (0..runs).map(|_| action.job_event(stack)).collect();
        }
        "mailer" => sns_event_not_an_approval(),
        "approval-page" => function_url_get_without_token(),
        "rollback" => alarm_event_nobody_watches()?,
        other => bail!("no event for {other}"),
    };
    Ok(vec![event; runs])
}

/// The function's name, as the template's `!Ref` gives it.
fn function_name(stack: &Stack, f: &Function) -> String {
    stack
        .provisioned
        .refs
        .get(f.logical_id)
        .cloned()
        .unwrap_or_else(|| format!("shipgate-{}", f.logical_id))
}

/// A pipeline action that invokes a function: what its jobs carry.
struct Action {
    function_name: String,
    /// With CodePipeline's `#{…}` variables still in.
    user_parameters: String,
    input_artifacts: Vec<String>,
    pipeline: String,
}

/// The first action of the pipeline (stage order) that invokes `f`, as the stand-in has the
/// pipeline.
async fn action_of(stack: &Stack, f: &Function) -> Result<Action> {
    let function_name = function_name(stack, f);
    let pipeline = stack
        .provisioned
        .refs
        .get("PipelineName")
        .cloned()
        .context("the template has no PipelineName")?;
    let declaration = aws_sdk_codepipeline::Client::new(&stack.sdk)
        .get_pipeline()
        .name(&pipeline)
        .send()
        .await
        .context("GetPipeline")?;
    let found = declaration
        .pipeline()
        .into_iter()
        .flat_map(|p| p.stages())
        .flat_map(|stage| stage.actions())
        .find_map(|action| {
            let config = action.configuration()?;
            (config.get("FunctionName")? == &function_name).then(|| Action {
                function_name: function_name.clone(),
                user_parameters: config.get("UserParameters").cloned().unwrap_or_default(),
                input_artifacts: action
                    .input_artifacts()
                    .iter()
                    .map(|a| a.name().to_owned())
                    .collect(),
                pipeline: pipeline.clone(),
            })
        });
    found.with_context(|| format!("no action of pipeline {pipeline} invokes {function_name}"))
}

impl Action {
    /// The job CodePipeline would send for a new execution of a release nobody recorded.
    fn job_event(&self, stack: &Stack) -> Result<Value> {
        let execution_id = uuid::Uuid::new_v4().to_string();
        let parameters = fill_variables(&self.user_parameters, &execution_id)?;
        let bucket = stack
            .provisioned
            .artifact_bucket
            .clone()
            .context("the template has no artifact bucket")?;
        let short = |s: &str| s.chars().take(20).collect::<String>();
        let inputs: Vec<Value> = self
            .input_artifacts
            .iter()
            .map(|name| {
                let random = &uuid::Uuid::new_v4().simple().to_string()[..7];
                json!({
                    "name": name,
                    "revision": null,
                    "location": {
                        "type": "S3",
                        "s3Location": {
                            "bucketName": bucket,
                            "objectKey": format!("{}/{}/{random}", short(&self.pipeline), short(name)),
                        }
                    }
                })
            })
            .collect();
        let mut event: Value = serde_json::from_str(include_str!(
            "../../../shared/tests/fixtures/codepipeline-job.json"
        ))?;
        let job = &mut event["CodePipeline.job"];
        job["id"] = json!(uuid::Uuid::new_v4().to_string());
        job["accountId"] = json!(TOOLING);
        let data = &mut job["data"];
        data["actionConfiguration"]["configuration"] =
            json!({"FunctionName": self.function_name, "UserParameters": parameters});
        data["inputArtifacts"] = json!(inputs);
        // A first invocation carries no continuation token.
        if let Some(data) = data.as_object_mut() {
            data.remove("continuationToken");
        }
        Ok(event)
    }
}

/// `UserParameters` with CodePipeline's variables resolved as an execution of a release nobody
/// recorded would resolve them; the deploy action's outputs get plausible int-account values
/// (those of the sample app's stacks).
fn fill_variables(text: &str, execution_id: &str) -> Result<String> {
    let arn = |resource: &str| format!("arn:aws:elasticloadbalancing:{REGION}:{INT}:{resource}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("#{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .with_context(|| format!("an unclosed variable in {text}"))?;
        let variable = &rest[start + 2..start + end];
        let output = variable.split_once('.').map_or("", |(_, name)| name);
        let value = match (variable, output) {
            ("variables.ReleaseId", _) => MISSING_RELEASE.to_owned(),
            ("codepipeline.PipelineExecutionId", _) => execution_id.to_owned(),
            (_, "ShipgateTestEndpoint") => "http://127.0.0.1:9".to_owned(),
            (_, "ShipgateAlarms") => "orders-int-5xx,orders-int-latency".to_owned(),
            (_, "ShipgateProdListener") => {
                arn("listener/app/orders-int/50dc6c495c0c9188/f2f7dc8efc522ab2")
            }
            (_, "ShipgateTestListener") => {
                arn("listener/app/orders-int/50dc6c495c0c9188/0467ef3c8400ae65")
            }
            (_, "ShipgateBlueTargetGroup") => arn("targetgroup/orders-int-blue/73e2d6bc24d8a067"),
            (_, "ShipgateGreenTargetGroup") => arn("targetgroup/orders-int-green/943f017f100becff"),
            (_, "ShipgateService") => {
                format!("arn:aws:ecs:{REGION}:{INT}:service/shipgate-int/orders")
            }
            (_, "ShipgateLambdaFunction") => "orders-int-notifier".to_owned(),
            (_, "ShipgateLambdaAlias") => "live".to_owned(),
            (_, "ShipgateLambdaVersion") => "2".to_owned(),
            _ => bail!("the pipeline passes #{{{variable}}}: give the bench a value for it"),
        };
        out.push_str(&value);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// AWS's EventBridge sample of an alarm going to ALARM, for an int-account alarm nothing
/// watches, now.
fn alarm_event_nobody_watches() -> Result<Value> {
    let mut event: Value = serde_json::from_str(include_str!(
        "../../../functions/rollback/tests/fixtures/eventbridge-alarm-state-change.json"
    ))?;
    let now = time::OffsetDateTime::now_utc();
    let cloudwatch_time = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    let event_time =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    event["id"] = json!(uuid::Uuid::new_v4().to_string());
    event["account"] = json!(INT);
    event["region"] = json!(REGION);
    event["time"] = json!(now.format(&event_time)?);
    event["resources"] = json!([format!(
        "arn:aws:cloudwatch:{REGION}:{INT}:alarm:{UNWATCHED_ALARM}"
    )]);
    event["detail"]["alarmName"] = json!(UNWATCHED_ALARM);
    event["detail"]["state"]["timestamp"] = json!(now.format(&cloudwatch_time)?);
    Ok(event)
}

/// One valid release per run (versions 1.0.0, 1.0.1, …), each uploaded under `incoming/`.
async fn intake_events(stack: &Stack, runs: usize) -> Result<Vec<Value>> {
    let image = push_source_image(stack, "bench/web", "1.0.0", &[4096]).await?;
    let bucket = stack
        .provisioned
        .artifact_bucket
        .clone()
        .context("the template has no artifact bucket")?;
    let s3 = shipgate::aws::s3_client(&stack.sdk, true);
    let mut events = Vec::with_capacity(runs);
    for i in 0..runs {
        let version = format!("1.0.{i}");
        let zip = ReleaseBuilder::new("bench", &version)
            .image("web", "bench/web", "1.0.0", image.digest().as_str())
            .build();
        let key = format!("incoming/bench-{version}.zip");
        let size = zip.len() as u64;
        let (version_id, etag) = shipgate_tests::support::put(&s3, &bucket, &key, zip).await?;
        events.push(s3_put_event(&bucket, &key, &version_id, size, &etag));
    }
    Ok(events)
}

/// intake started an execution: stop it (abandon), so the stand-in does not run the pipeline's
/// actions in this process while later runs are measured.
async fn stop_started_execution(stack: &Stack, answer: &Answer) {
    let Some(execution_id) = answer
        .body
        .pointer("/records/0/execution_id")
        .and_then(Value::as_str)
    else {
        return;
    };
    let Some(pipeline) = stack
        .provisioned
        .env_by_function
        .get("IntakeFunction")
        .and_then(|env| env.get("SHIPGATE_PIPELINE_NAME"))
    else {
        return;
    };
    let _ = aws_sdk_codepipeline::Client::new(&stack.sdk)
        .stop_pipeline_execution()
        .pipeline_name(pipeline)
        .pipeline_execution_id(execution_id)
        .abandon(true)
        .reason("cold-start bench")
        .send()
        .await;
    // Let an action already handed to an in-process function finish before the next run.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// AWS's SNS sample, on the approvals topic, with a message that is not an approval.
fn sns_event_not_an_approval() -> Value {
    let topic = format!("arn:aws:sns:{REGION}:{TOOLING}:shipgate-approvals");
    json!({
        "Records": [{
            "EventVersion": "1.0",
            "EventSubscriptionArn": format!("{topic}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55"),
            "EventSource": "aws:sns",
            "Sns": {
                "Type": "Notification",
                "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                "TopicArn": topic,
                "Subject": "Greetings",
                "Message": "Hello from SNS!",
                "Timestamp": "2026-11-26T10:00:00.000Z",
                "SignatureVersion": "1",
                "Signature": "EXAMPLE",
                "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
                "UnsubscribeURL": format!("https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55"),
                "MessageAttributes": {}
            }
        }]
    })
}

/// A function URL request (payload format 2.0) for `GET /` with no link token, as a browser
/// sends it.
fn function_url_get_without_token() -> Value {
    let url_id = "abcdefghijklmnopqrstuvwxyz012345";
    let domain = format!("{url_id}.lambda-url.{REGION}.on.aws");
    let agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {
            "host": domain,
            "user-agent": agent,
            "accept": "text/html,application/xhtml+xml",
            "accept-language": "en-GB,en;q=0.9",
            "x-amzn-trace-id": "Root=1-6745a1b0-0123456789abcdef01234567",
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": domain,
            "domainPrefix": url_id,
            "http": {
                "method": "GET",
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": agent
            },
            "requestId": "c7d3ac6e-51a5-4b0c-9a7e-3b2f0b7c1a11",
            "routeKey": "$default",
            "stage": "$default",
            "time": "26/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795687200000u64
        },
        "isBase64Encoded": false
    })
}

/// What the emulator saw, in order, with when it saw it.
enum Seen {
    Next,
    HandedOut,
    Answer { ok: bool, body: Bytes },
    InitError(Bytes),
}

struct Emulator {
    event: Bytes,
    function_arn: String,
    handed_out: AtomicBool,
    seen: mpsc::UnboundedSender<(Instant, Seen)>,
}

const REQUEST_ID: &str = "8476a536-e9f4-11e8-9739-2dfe598c3fcd";

/// `GET /2018-06-01/runtime/invocation/next`: the event the first time, then nothing (the
/// function waits there, as it does between invocations in Lambda).
async fn next(State(emu): State<Arc<Emulator>>) -> Response {
    let _ = emu.seen.send((Instant::now(), Seen::Next));
    if emu.handed_out.swap(true, Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(300);
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", REQUEST_ID.to_owned());
    set(
        "lambda-runtime-deadline-ms",
        deadline.as_millis().to_string(),
    );
    set(
        "lambda-runtime-invoked-function-arn",
        emu.function_arn.clone(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-6745a1b0-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=0".to_owned(),
    );
    set("content-type", "application/json".to_owned());
    let _ = emu.seen.send((Instant::now(), Seen::HandedOut));
    (StatusCode::OK, headers, emu.event.clone()).into_response()
}

async fn response(State(emu): State<Arc<Emulator>>, body: Bytes) -> StatusCode {
    let _ = emu
        .seen
        .send((Instant::now(), Seen::Answer { ok: true, body }));
    StatusCode::ACCEPTED
}

async fn error(State(emu): State<Arc<Emulator>>, body: Bytes) -> StatusCode {
    let _ = emu
        .seen
        .send((Instant::now(), Seen::Answer { ok: false, body }));
    StatusCode::ACCEPTED
}

async fn init_error(State(emu): State<Arc<Emulator>>, body: Bytes) -> StatusCode {
    let _ = emu.seen.send((Instant::now(), Seen::InitError(body)));
    StatusCode::ACCEPTED
}

struct Answer {
    ok: bool,
    body: Value,
}

struct Sample {
    init: Duration,
    invoke: Duration,
    peak_rss_kib: u64,
    answer: Answer,
}

/// One cold start: a fresh emulator and a fresh process, killed once it asks for a second event.
async fn run_once(
    exe: &Path,
    env: &BTreeMap<String, String>,
    event: &Value,
    log: &Path,
) -> Result<Sample> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let api = listener.local_addr()?.to_string();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let name = env
        .get("AWS_LAMBDA_FUNCTION_NAME")
        .cloned()
        .unwrap_or_default();
    let emulator = Arc::new(Emulator {
        event: Bytes::from(serde_json::to_vec(event)?),
        function_arn: format!("arn:aws:lambda:{REGION}:{TOOLING}:function:{name}"),
        handed_out: AtomicBool::new(false),
        seen: tx,
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/response",
            post(response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/error",
            post(error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(emulator);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let out = std::fs::File::create(log)?;
    let started = Instant::now();
    let child = Command::new(exe)
        .env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let result = watch(child, started, &mut rx, log).await;
    server.abort();
    result
}

/// Follows one run to the second `GET /next`, then reads the peak RSS and kills the process.
async fn watch(
    mut child: Child,
    started: Instant,
    seen: &mut mpsc::UnboundedReceiver<(Instant, Seen)>,
    log: &Path,
) -> Result<Sample> {
    let deadline = started + RUN_TIMEOUT;
    let mut init = None;
    let mut handed_out = None;
    let mut answer = None;
    let outcome = loop {
        let poll = tokio::time::sleep(Duration::from_millis(50));
        tokio::select! {
            msg = seen.recv() => match msg {
                Some((at, Seen::Next)) if init.is_none() => init = Some(at - started),
                Some((at, Seen::HandedOut)) => handed_out = Some(at),
                Some((at, Seen::Answer { ok, body })) => {
                    let invoke = handed_out.map(|h| at - h).unwrap_or_default();
                    let body = serde_json::from_slice(&body)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
                    answer = Some((invoke, Answer { ok, body }));
                }
                // The second `next`: the invocation is over and the function is idle.
                Some((_, Seen::Next)) if answer.is_some() => break Ok(()),
                Some((_, Seen::Next)) => {}
                Some((_, Seen::InitError(body))) => {
                    break Err(format!("init error: {}", String::from_utf8_lossy(&body)));
                }
                None => break Err("the emulator stopped".to_owned()),
            },
            _ = poll => {
                if let Some(status) = child.try_wait()? {
                    break Err(format!("the function exited ({status})"));
                }
                if Instant::now() > deadline {
                    break Err(format!("no answer within {RUN_TIMEOUT:?}"));
                }
            }
        }
    };
    let hwm = peak_rss_kib(child.id());
    let waited = kill_and_reap(&mut child);
    if let Err(why) = outcome {
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        let tail: String = tail.lines().rev().take(20).collect::<Vec<_>>().join("\n");
        bail!("{why}; last log lines (newest first):\n{tail}");
    }
    let max_rss = waited?;
    let (invoke, answer) = answer.context("no answer")?;
    Ok(Sample {
        init: init.context("no GET /next")?,
        invoke,
        peak_rss_kib: hwm.unwrap_or(max_rss),
        answer,
    })
}

/// `VmHWM` of a live process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// SIGKILL, then `wait4` for the child's peak RSS (KiB) as the kernel accounted it.
fn kill_and_reap(child: &mut Child) -> Result<u64> {
    let _ = child.kill();
    let mut status = 0i32;
    // SAFETY: zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, which nothing else reaps.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    Ok(u64::try_from(usage.ru_maxrss).unwrap_or(0))
}

struct Row {
    binary: &'static str,
    init: Vec<Duration>,
    invoke: Vec<Duration>,
    rss: Vec<u64>,
    zip: Option<u64>,
    answer: String,
}

impl Row {
    fn new(
        binary: &'static str,
        samples: Vec<Sample>,
        zip: Option<u64>,
        logged: Option<String>,
    ) -> Self {
        let first = samples.first().map(|s| &s.answer);
        let mut answer = first.map(summarise).unwrap_or_default();
        // An error answer (the action functions: the stand-in knows no such job) hides how far
        // the function got: its log says.
        if let (Some(first), Some(logged)) = (first, logged)
            && !first.ok
        {
            answer = format!("{answer} after job {logged}");
        }
        let mut init: Vec<_> = samples.iter().map(|s| s.init).collect();
        let mut invoke: Vec<_> = samples.iter().map(|s| s.invoke).collect();
        let mut rss: Vec<_> = samples.iter().map(|s| s.peak_rss_kib).collect();
        init.sort();
        invoke.sort();
        rss.sort();
        Self {
            binary,
            init,
            invoke,
            rss,
            zip,
            answer,
        }
    }

    fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {:.1} MiB | {:.1} MiB | {} | {} |",
            self.binary,
            ms(median(&self.init)),
            ms(worst(&self.init)),
            ms(median(&self.invoke)),
            ms(worst(&self.invoke)),
            median(&self.rss) as f64 / 1024.0,
            worst(&self.rss) as f64 / 1024.0,
            self.zip
                .map(|z| format!("{:.2} MiB", z as f64 / MIB))
                .unwrap_or_else(|| "not built".into()),
            self.answer
        )
    }

    fn misses(&self) -> Vec<String> {
        let mut misses = Vec::new();
        if median(&self.init) > Duration::from_millis(20) {
            misses.push(format!("init median {}", ms(median(&self.init))));
        }
        if worst(&self.rss) > 32 * 1024 {
            misses.push(format!(
                "peak RSS {:.1} MiB",
                worst(&self.rss) as f64 / 1024.0
            ));
        }
        match self.zip {
            Some(z) if z > 4 * 1024 * 1024 => {
                misses.push(format!("zip {:.2} MiB", z as f64 / MIB));
            }
            None => misses.push("zip not built (make package)".into()),
            _ => {}
        }
        misses
    }
}

/// The last `outcome` the function logged (with its `error_type`), from the last run's log.
fn logged_outcome(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let entry: Value = serde_json::from_str(line).ok()?;
        let fields = entry.get("fields")?;
        let outcome = fields.get("outcome")?.as_str()?;
        Some(match fields.get("error_type").and_then(Value::as_str) {
            Some(kind) => format!("{outcome} `{kind}`"),
            None => outcome.to_owned(),
        })
    })
}

/// The first run's answer in a few words: the response's outcome(s), or the error's type.
fn summarise(answer: &Answer) -> String {
    let body = &answer.body;
    if !answer.ok {
        let kind = body
            .get("errorType")
            .and_then(Value::as_str)
            .unwrap_or("error");
        return format!("error `{kind}`");
    }
    if let Some(status) = body.get("statusCode").and_then(Value::as_u64) {
        return format!("HTTP {status}");
    }
    let outcomes: Vec<&str> = body
        .get("records")
        .and_then(Value::as_array)
        .map(|records| {
            records
                .iter()
                .filter_map(|r| r.get("outcome").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if !outcomes.is_empty() {
        return outcomes.join(", ");
    }
    // rollback: what the alarm event did.
    if let Some(action) = body.get("action").and_then(Value::as_str) {
        return action.to_owned();
    }
    match body.get("outcome").and_then(Value::as_str) {
        Some(o) => o.to_owned(),
        None => "response".to_owned(),
    }
}

fn median<T: Copy>(sorted: &[T]) -> T {
    sorted[sorted.len() / 2]
}

fn worst<T: Copy>(sorted: &[T]) -> T {
    sorted[sorted.len() - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
