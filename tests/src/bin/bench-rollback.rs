//! Bench: alarm rollback latency, from the alarm event entering the rollback handler to the last
//! weight change acknowledged by the (local) API, for 1 and for 50 deployments watching the same
//! alarm.
//!
//! Starts a local stack with the traffic tests' world (`tests/deploy_world`: in the int account
//! a Lambda function with versions 1 and 2, an ALB with a blue and a green target group), then
//! gives every deployment a carrier of its own: a `bench-*` alias of the function, or a listener
//! of the ALB (50 deployments: 25 of each, interleaved). Each set of deployments watches its own
//! alarm. Before every run, outside the timed span, each deployment is armed again as the
//! traffic action leaves a canary after its first step (`Canary10Percent5Minutes`): alias or
//! listener at 10% new through shipgate's own adapters, the record saved in flight at 10% with a
//! fresh job id (the same deployment ids every run, so the alarm index does not grow). Then the
//! rollback handler (`RollbackFunction::handle`, the function's entry point, in this process) is
//! called on the EventBridge "CloudWatch Alarm State Change" event (AWS's sample, as the tests
//! build it). Its SDK configuration is the function's (`shipgate::aws::https_client`, one
//! connection pool) pointed at moto and the CodePipeline stand-in through a counting proxy,
//! which records each request's operation and when the first byte of its answer came back:
//! - *to the last weight change*: from the call to the answer to the last `UpdateAlias` or
//!   `ModifyListener` (what the issue asks for);
//! - *handler returned*: the whole invocation (the job failures, emails and record writes after
//!   the last weight change included).
//!
//! After each run, outside the timed span, every alias and listener must be 100% on the previous
//! version and every record rolled back by the alarm with its tasks done; the bench fails
//! otherwise. Prints figures; asserts nothing about time.
//!
//! Run: `make bench-rollback` (or `cargo run --release -p shipgate-tests --bin bench-rollback`).
//! `SHIPGATE_BENCH_RUNS` (default 20) sets the runs, `SHIPGATE_BENCH_DEPLOYMENTS` (default
//! `1,50`) the sets of deployments.

// The world of the traffic and rollback tests, shared rather than copied.
#[path = "../../tests/deploy_world/mod.rs"]
mod deploy_world;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ProtocolEnum};
use deploy_world::{MINUTE, TEAM, World, eventbridge_event, now_ms};
use futures::future::try_join_all;
use shipgate::config::Env;
use shipgate::deploy::{RollbackOutcome, deployment_id, rfc3339};
use shipgate::store::{
    AppliedStep, Deployment, DeploymentCreation, DeploymentState, Store, TrafficTarget,
};
use shipgate_local::accounts;
use shipgate_rollback::{RollbackConfig, RollbackFunction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RELEASE: &str = "rel-orders-bench";
const PLAN: &str = "Canary10Percent5Minutes";
/// The canary's share on the new version when the alarm fires.
const CANARY: u8 = 10;
const WEIGHT_CHANGES: [&str; 2] = ["lambda:UpdateAlias", "elasticloadbalancing:ModifyListener"];

#[tokio::main]
async fn main() -> Result<()> {
    let runs: usize = std::env::var("SHIPGATE_BENCH_RUNS")
        .unwrap_or_else(|_| "20".into())
        .parse()
        .context("SHIPGATE_BENCH_RUNS: a number")?;
    let sets: Vec<usize> = std::env::var("SHIPGATE_BENCH_DEPLOYMENTS")
        .unwrap_or_else(|_| "1,50".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("SHIPGATE_BENCH_DEPLOYMENTS: comma-separated counts")?;
    if runs == 0 || sets.contains(&0) {
        bail!("at least one run of at least one deployment");
    }
    let world = World::start("bench-rollback").await?;
    let result = bench(&world, runs, &sets).await;
    let state_dir = world.stack.state_dir().to_path_buf();
    world.stop().await;
    let _ = std::fs::remove_dir_all(state_dir);
    result
}

/// One set of deployments watching one alarm, and what its runs measured.
struct Set {
    alarm: String,
    /// Each deployment as armed (its record at 10%, before the alarm).
    armed: Vec<Deployment>,
    runs: Vec<Run>,
}

struct Run {
    to_last_change: Duration,
    returned: Duration,
    calls: Vec<Call>,
    started: Instant,
}

async fn bench(world: &World, runs: usize, sets: &[usize]) -> Result<()> {
    // The rollback function as Lambda builds it (one HTTPS client for every SDK client), its
    // endpoints behind the counting proxy.
    let log = Arc::new(CallLog::default());
    let mut endpoints = world.stack.endpoints.clone();
    endpoints.default = counting_proxy(&endpoints.default, log.clone()).await?;
    for url in endpoints.per_service.values_mut() {
        *url = counting_proxy(url, log.clone()).await?;
    }
    let sdk = endpoints
        .sdk_config()
        .to_builder()
        .http_client(shipgate::aws::https_client())
        .build();
    let table = world.stack.provisioned.table.clone().context("table")?;
    let env = Env::from_pairs([
        ("SHIPGATE_TABLE", table.as_str()),
        ("SHIPGATE_MAIL_FROM", "shipgate@shipgate.local"),
        ("SHIPGATE_TEAM_EMAIL_INT", TEAM),
    ]);
    let rollback = RollbackFunction::new(RollbackConfig::from_env(&env)?, &sdk);

    let load_balancer = world
        .elb
        .describe_listeners()
        .listener_arns(&world.listener)
        .send()
        .await?
        .listeners()
        .first()
        .and_then(|l| l.load_balancer_arn())
        .context("the ALB of the world's listener")?
        .to_owned();
    let mut all = Vec::new();
    let mut port = 8000;
    for (s, &n) in sets.iter().enumerate() {
        let alarm = format!("orders-int-errors-{n}-{s}");
        let mut armed = Vec::new();
        for i in 0..n {
            let target = if i % 2 == 0 {
                let alias = format!("bench-{s}-{i:02}");
                world
                    .lambda
                    .create_alias()
                    .function_name(&world.function)
                    .name(&alias)
                    .function_version("1")
                    .send()
                    .await
                    .context("CreateAlias")?;
                TrafficTarget::LambdaAlias {
                    function: world.function.clone(),
                    alias,
                    previous_version: "1".into(),
                    new_version: "2".into(),
                }
            } else {
                port += 1;
                let listener = world
                    .elb
                    .create_listener()
                    .load_balancer_arn(&load_balancer)
                    .port(port)
                    .protocol(ProtocolEnum::Http)
                    .default_actions(
                        Action::builder()
                            .r#type(ActionTypeEnum::Forward)
                            .target_group_arn(&world.blue)
                            .build(),
                    )
                    .send()
                    .await
                    .context("CreateListener")?;
                TrafficTarget::AlbListener {
                    listener_arn: listener
                        .listeners()
                        .first()
                        .and_then(|l| l.listener_arn())
                        .context("the new listener's ARN")?
                        .to_owned(),
                    test_listener_arn: None,
                    blue_target_group: world.blue.clone(),
                    green_target_group: world.green.clone(),
                    task_sets: None,
                }
            };
            armed.push(in_flight(&format!("bench-{s}-{i:02}"), &alarm, target));
        }
        all.push(Set {
            alarm,
            armed,
            runs: Vec::new(),
        });
    }
    let store = &world.store;
    for set in &mut all {
        let n = set.armed.len();
        for run in 1..=runs {
            try_join_all(set.armed.iter_mut().map(|d| arm(world, store, d))).await?;
            let event = eventbridge_event(
                &set.alarm,
                "ALARM",
                &format!("Threshold Crossed: 5xx on the new version (run {run})"),
                now_ms(),
            );

            log.take();
            let started = Instant::now();
            let result = rollback.handle(event).await;
            let returned = started.elapsed();
            let calls = log.take();

            let result = result.with_context(|| format!("{n} deployments, run {run}"))?;
            let rolled_back = result
                .deployments
                .iter()
                .filter(|r| {
                    r.outcome == RollbackOutcome::RolledBack
                        && r.traffic.as_deref()
                            == Some(&format!("moved from {CANARY}% to 0% on the new version"))
                })
                .count();
            if rolled_back != n || !result.skipped.is_empty() {
                bail!("{n} deployments, run {run}: the handler did not roll all back: {result:?}");
            }
            let changes: Vec<&Call> = calls
                .iter()
                .filter(|c| WEIGHT_CHANGES.contains(&c.operation.as_str()))
                .collect();
            let last_change = changes
                .iter()
                .map(|c| c.acked)
                .max()
                .flatten()
                .context("no weight change was acknowledged")?;
            if changes.len() != n || changes.iter().any(|c| c.acked.is_none()) {
                bail!(
                    "{n} deployments, run {run}: {} weight changes seen by the proxy",
                    changes.len()
                );
            }
            try_join_all(
                set.armed
                    .iter()
                    .map(|d| check_rolled_back(world, d, &set.alarm)),
            )
            .await
            .with_context(|| format!("{n} deployments, run {run}"))?;
            set.runs.push(Run {
                to_last_change: last_change - started,
                returned,
                calls,
                started,
            });
        }
        eprintln!("{n} deployment(s): {runs} runs done");
    }
    print_figures(&all, runs);
    Ok(())
}

/// A deployment of `RELEASE` in int watching `alarm`, as the traffic action leaves it after the
/// canary's first step (times and job id are set when it is armed).
fn in_flight(execution: &str, alarm: &str, target: TrafficTarget) -> Deployment {
    Deployment {
        deployment_id: deployment_id(RELEASE, "int", execution),
        release_id: RELEASE.into(),
        environment: "int".into(),
        execution_id: execution.into(),
        application: Some("orders".into()),
        version: Some("2.0.0".into()),
        // As the traffic action records it: orders' int team.
        team: Some(vec!["int-team@shipgate.local".into()]),
        account_id: accounts::INT.into(),
        role_arn: accounts::deploy_role_arn(accounts::INT),
        target,
        plan: PLAN.into(),
        started_at_ms: 0,
        state: DeploymentState::Shifting,
        percent: CANARY,
        next_step_at_ms: None,
        alarms: vec![alarm.to_owned()],
        job_id: None,
        rollback: None,
        lease: None,
        steps: Vec::new(),
        revision: 0,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

/// Puts the deployment back in flight at the canary's weight: the alias or listener first, then
/// the record (created the first time, overwritten at its current revision after).
async fn arm(world: &World, store: &Store, d: &mut Deployment) -> Result<()> {
    match &d.target {
        TrafficTarget::LambdaAlias {
            function, alias, ..
        } => {
            shipgate::aws::lambda::shift_alias(&world.lambda, function, alias, "1", "2", CANARY)
                .await?
        }
        TrafficTarget::AlbListener {
            listener_arn,
            blue_target_group,
            green_target_group,
            ..
        } => {
            shipgate::aws::elbv2::shift_listener(
                &world.elb,
                listener_arn,
                blue_target_group,
                green_target_group,
                CANARY,
            )
            .await?
        }
    }
    if share_on_new(world, &d.target).await? != Some(CANARY) {
        bail!("{}: not at {CANARY}% after arming", describe(&d.target));
    }
    // A second ago, so that the alarm's state timestamp (now) is after the start.
    let now = now_ms() - 1000;
    d.started_at_ms = now;
    d.next_step_at_ms = Some(now + 5 * MINUTE);
    d.job_id = Some(uuid::Uuid::new_v4().to_string());
    d.steps = vec![AppliedStep {
        percent: CANARY,
        at_ms: now,
    }];
    d.created_at = rfc3339(now);
    d.updated_at = d.created_at.clone();
    match store.get_deployment(&d.deployment_id).await? {
        None => match store.create_deployment(d).await? {
            DeploymentCreation::Created(_) => {}
            DeploymentCreation::Existing(_) => bail!("{} exists already", d.deployment_id),
        },
        Some(current) => {
            d.revision = current.revision;
            store
                .save_deployment(d)
                .await
                .map_err(|e| anyhow::anyhow!("re-arming {}: {e}", d.deployment_id))?;
        }
    }
    Ok(())
}

/// Fails unless the carrier is all on the previous version and the record says the alarm
/// rolled it back, with every task of the rollback done.
async fn check_rolled_back(world: &World, armed: &Deployment, alarm: &str) -> Result<()> {
    let share = share_on_new(world, &armed.target).await?;
    if share != Some(0) {
        bail!(
            "{} is not 100% on the previous version: {share:?}% on the new one",
            describe(&armed.target)
        );
    }
    let d = world
        .store
        .get_deployment(&armed.deployment_id)
        .await?
        .context("the deployment record is gone")?;
    let done = d.rollback.as_ref().is_some_and(|r| {
        r.alarm.as_deref() == Some(alarm)
            && r.by == "alarm"
            && r.percent_before == CANARY
            && r.traffic_restored
            && r.job_answered
            && r.team_notified
    });
    if d.state != DeploymentState::RolledBack || d.percent != 0 || d.lease.is_some() || !done {
        bail!(
            "deployment {} is not rolled back as recorded: {:?} at {}%, lease {:?}, {:?}",
            d.deployment_id,
            d.state,
            d.percent,
            d.lease,
            d.rollback
        );
    }
    Ok(())
}

/// The share on version 2 / green when the alias or listener carries nothing but the
/// deployment's two versions; `None` when it carries anything else.
async fn share_on_new(world: &World, target: &TrafficTarget) -> Result<Option<u8>> {
    Ok(match target {
        TrafficTarget::LambdaAlias {
            function, alias, ..
        } => {
            let state = shipgate::aws::lambda::alias_state(&world.lambda, function, alias).await?;
            match (state.version.as_str(), state.additional) {
                ("1", None) => Some(0),
                ("1", Some((v, w))) if v == "2" => Some((w * 100.0).round() as u8),
                _ => None,
            }
        }
        TrafficTarget::AlbListener {
            listener_arn,
            blue_target_group,
            green_target_group,
            ..
        } => {
            let weights = shipgate::aws::elbv2::listener_weights(&world.elb, listener_arn).await?;
            let of = |arn: &str| weights.iter().find(|(a, _)| a == arn).map(|(_, w)| *w);
            match (of(blue_target_group), of(green_target_group), weights.len()) {
                (Some(blue), Some(green), 2) if blue + green == 100 => u8::try_from(green).ok(),
                (Some(_), None, 1) => Some(0),
                _ => None,
            }
        }
    })
}

fn describe(target: &TrafficTarget) -> String {
    match target {
        TrafficTarget::LambdaAlias {
            function, alias, ..
        } => format!("alias {function}:{alias}"),
        TrafficTarget::AlbListener { listener_arn, .. } => format!("listener {listener_arn}"),
    }
}

fn print_figures(sets: &[Set], runs: usize) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!(
        "| deployments watching the alarm | runs | to the last weight change acked: median | worst | handler returned: median | worst | of which waiting on calls: median | API calls per run | most calls in flight at once |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for set in sets {
        let to_last: Vec<Duration> = set.runs.iter().map(|r| r.to_last_change).collect();
        let returned: Vec<Duration> = set.runs.iter().map(|r| r.returned).collect();
        let calls: Vec<usize> = set.runs.iter().map(|r| r.calls.len()).collect();
        let waiting: Vec<Duration> = set
            .runs
            .iter()
            .map(|r| {
                r.calls
                    .iter()
                    .filter_map(|c| c.acked.map(|a| a - c.sent))
                    .sum()
            })
            .collect();
        let in_flight = set.runs.iter().map(|r| most_in_flight(&r.calls)).max();
        println!(
            "| {} ({}) | {runs} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} |",
            set.armed.len(),
            carriers(&set.armed),
            ms(median(&to_last)),
            ms(worst(&to_last)),
            ms(median(&returned)),
            ms(worst(&returned)),
            ms(median(&waiting)),
            range(&calls),
            in_flight.unwrap_or(0)
        );
    }

    println!();
    println!(
        "API calls per run, by operation, and each call's own time (request sent to first byte back, median over all runs):"
    );
    let mut header = String::from("| operation |");
    let mut rule = String::from("|---|");
    for set in sets {
        header.push_str(&format!(
            " {} deployment(s): calls | median |",
            set.armed.len()
        ));
        rule.push_str("---|---|");
    }
    println!("{header}\n{rule}");
    let mut operations: Vec<&str> = sets
        .iter()
        .flat_map(|s| &s.runs)
        .flat_map(|r| &r.calls)
        .map(|c| c.operation.as_str())
        .collect();
    operations.sort_unstable();
    operations.dedup();
    for op in operations {
        let mut row = format!("| {op} |");
        for set in sets {
            let counts: Vec<usize> = set
                .runs
                .iter()
                .map(|r| r.calls.iter().filter(|c| c.operation == op).count())
                .collect();
            let times: Vec<Duration> = set
                .runs
                .iter()
                .flat_map(|r| &r.calls)
                .filter(|c| c.operation == op)
                .filter_map(|c| c.acked.map(|a| a - c.sent))
                .collect();
            if times.is_empty() {
                row.push_str(" – | – |");
            } else {
                row.push_str(&format!(
                    " {} | {:.2} ms |",
                    range(&counts),
                    ms(median(&times))
                ));
            }
        }
        println!("{row}");
    }

    println!();
    for set in sets.iter().filter(|s| s.armed.len() > 1) {
        // The moment of each weight change in its run: evenly spaced changes are one deployment
        // after the other.
        let mut gaps = Vec::new();
        let mut firsts = Vec::new();
        for run in &set.runs {
            let mut acks: Vec<Instant> = run
                .calls
                .iter()
                .filter(|c| WEIGHT_CHANGES.contains(&c.operation.as_str()))
                .filter_map(|c| c.acked)
                .collect();
            acks.sort_unstable();
            if let Some(first) = acks.first() {
                firsts.push(*first - run.started);
            }
            gaps.extend(acks.windows(2).map(|w| w[1] - w[0]));
        }
        println!(
            "{} deployments: the first weight change is acked {:.1} ms after the call (median), \
             then one every {:.1} ms (median gap between successive weight changes)",
            set.armed.len(),
            ms(median(&firsts)),
            ms(median(&gaps))
        );
    }
    print_targets(sets);
    println!(
        "\nrollback handler (RollbackFunction::handle) called in-process on the EventBridge \
         alarm state change; every deployment armed at {CANARY}% new ({PLAN}) before each run \
         and checked 100% previous and rolled back after it (outside the timed span); calls \
         counted and timed by a TCP proxy in front of moto and the CodePipeline stand-in."
    );
}

/// Issue 14's targets for 50 deployments: the last weight change acked within a second
/// (median), at most 120 API calls per run. (For 1 deployment: no slower than before, which only
/// a comparison with an earlier run can say.)
fn print_targets(sets: &[Set]) {
    const TARGET_MS: f64 = 1000.0;
    const TARGET_CALLS: usize = 120;
    for set in sets.iter().filter(|s| s.armed.len() == 50) {
        let to_last: Vec<Duration> = set.runs.iter().map(|r| r.to_last_change).collect();
        let median_ms = median(&to_last).as_secs_f64() * 1000.0;
        let most_calls = set.runs.iter().map(|r| r.calls.len()).max().unwrap_or(0);
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        println!(
            "\ntargets for 50 deployments: last weight change acked ≤ {TARGET_MS:.0} ms (median): \
             {median_ms:.1} ms, {}; ≤ {TARGET_CALLS} API calls per run: {most_calls} at most, {}",
            verdict(median_ms <= TARGET_MS),
            verdict(most_calls <= TARGET_CALLS)
        );
    }
}

fn carriers(armed: &[Deployment]) -> String {
    let aliases = armed
        .iter()
        .filter(|d| matches!(d.target, TrafficTarget::LambdaAlias { .. }))
        .count();
    let listeners = armed.len() - aliases;
    match (aliases, listeners) {
        (a, 0) => format!("{a} Lambda alias{}", if a == 1 { "" } else { "es" }),
        (0, l) => format!("{l} ALB listener{}", if l == 1 { "" } else { "s" }),
        (a, l) => format!("{a} Lambda aliases + {l} ALB listeners"),
    }
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

fn worst(values: &[Duration]) -> Duration {
    values.iter().copied().max().unwrap_or_default()
}

/// `7`, or `7–9` when the runs differ.
fn range(values: &[usize]) -> String {
    match (values.iter().min(), values.iter().max()) {
        (Some(lo), Some(hi)) if lo != hi => format!("{lo}–{hi}"),
        (Some(n), _) => n.to_string(),
        _ => "–".into(),
    }
}

/// The most calls waiting for an answer at the same moment.
fn most_in_flight(calls: &[Call]) -> usize {
    let mut edges: Vec<(Instant, i32)> = calls
        .iter()
        .filter_map(|c| c.acked.map(|a| [(c.sent, 1), (a, -1)]))
        .flatten()
        .collect();
    // An answer and a request at the same instant: the answer first.
    edges.sort_unstable();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}

/// One API call seen by the proxy.
#[derive(Debug, Clone)]
struct Call {
    /// `service:Operation`, the service from the request's SigV4 scope.
    operation: String,
    sent: Instant,
    /// When the first byte of the answer came back.
    acked: Option<Instant>,
}

#[derive(Debug, Default)]
struct CallLog {
    calls: Mutex<Vec<Call>>,
}

impl CallLog {
    fn start(&self, operation: String) -> usize {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.push(Call {
            operation,
            sent: Instant::now(),
            acked: None,
        });
        calls.len() - 1
    }

    fn ack(&self, index: usize) {
        let now = Instant::now();
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(call) = calls.get_mut(index) {
            call.acked.get_or_insert(now);
        }
    }

    /// The calls so far; the log starts again empty.
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A TCP proxy on loopback in front of `upstream` (`http://host:port`); returns its URL. It
/// reads each HTTP/1.1 request's head and body to name the operation; the SDK does not
/// pipeline, so the first bytes back after a request are its answer.
async fn counting_proxy(upstream: &str, log: Arc<CallLog>) -> Result<String> {
    let Some(address) = upstream.strip_prefix("http://") else {
        bail!("the proxy speaks plain HTTP only: {upstream}");
    };
    let address = address.trim_end_matches('/').to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (log, address) = (log.clone(), address.clone());
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(&address).await {
                    relay(client, server, log).await;
                }
            });
        }
    });
    Ok(url)
}

async fn relay(client: TcpStream, server: TcpStream, log: Arc<CallLog>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let pending: Arc<Mutex<Option<usize>>> = Arc::default();
    let waiting = pending.clone();
    let up_log = log.clone();
    let up = async move {
        let mut buffer = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut framed = true;
        loop {
            let n = match from_client.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buffer.extend_from_slice(&chunk[..n]);
            while framed && !buffer.is_empty() {
                let (length, operation) = match next_request(&buffer) {
                    Framing::Incomplete => break,
                    Framing::Unframed => {
                        framed = false;
                        break;
                    }
                    Framing::Request { length, operation } => (length, operation),
                };
                *waiting.lock().unwrap_or_else(|e| e.into_inner()) = Some(up_log.start(operation));
                if to_server.write_all(&buffer[..length]).await.is_err() {
                    return;
                }
                buffer.drain(..length);
            }
            if !framed {
                if to_server.write_all(&buffer).await.is_err() {
                    return;
                }
                buffer.clear();
            }
        }
        let _ = to_server.shutdown().await;
    };
    let down = async move {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match from_server.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let answered = pending.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(index) = answered {
                log.ack(index);
            }
            if to_client.write_all(&chunk[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_client.shutdown().await;
    };
    tokio::join!(up, down);
}

enum Framing {
    Incomplete,
    /// Not framed by `Content-Length` (chunked): forwarded as it comes, not counted.
    Unframed,
    Request {
        length: usize,
        operation: String,
    },
}

fn next_request(buffer: &[u8]) -> Framing {
    let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Framing::Incomplete;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (method, path) = (
        request_line.next().unwrap_or_default(),
        request_line.next().unwrap_or_default(),
    );
    let mut headers = BTreeMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    if headers.contains_key("transfer-encoding") {
        return Framing::Unframed;
    }
    let body_length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let length = head_end + 4 + body_length;
    if buffer.len() < length {
        return Framing::Incomplete;
    }
    let body = String::from_utf8_lossy(&buffer[head_end + 4..length]);
    // `Credential=<key>/<date>/<region>/<service>/aws4_request`
    let service = headers
        .get("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unsigned");
    let path = path.split('?').next().unwrap_or_default();
    let operation = if let Some(target) = headers.get("x-amz-target") {
        // JSON protocols: `DynamoDB_20120810.PutItem`.
        target.rsplit('.').next().unwrap_or_default().to_owned()
    } else if let Some(action) = body.split('&').find_map(|p| p.strip_prefix("Action=")) {
        // Query protocols (STS, ELBv2).
        action.to_owned()
    } else {
        // REST protocols: the calls a rollback makes, else the method and path.
        match (service, method, path) {
            ("lambda", "GET", p) if p.contains("/aliases/") => "GetAlias".into(),
            ("lambda", "GET", p) if p.ends_with("/aliases") => "ListAliases".into(),
            ("lambda", "PUT", p) if p.contains("/aliases/") => "UpdateAlias".into(),
            ("ses", "POST", p) if p.ends_with("/outbound-emails") => "SendEmail".into(),
            (_, m, p) => format!("{m} {p}"),
        }
    };
    Framing::Request {
        length,
        operation: format!("{service}:{operation}"),
    }
}
