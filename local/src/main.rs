//! `shipgate-local`: run shipgate on this machine, the way `sam local` and `cargo lambda` work.
//!
//! `up` starts the stack in the background and writes its endpoints to an env file; `invoke`,
//! `drop` and `status` use that file; `down` stops everything `up` started.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use shipgate_local::recorded_process::{ProcessIdentity, Stopped};
use shipgate_local::sdk::sdk_error;
use shipgate_local::stack::{DownOutcome, ServeState, Stack, StackOptions, StateFiles};

#[derive(Parser)]
#[command(
    name = "shipgate-local",
    version,
    about = "Run shipgate on one machine: moto, local registries, the CodePipeline stand-in and event delivery"
)]
struct Cli {
    /// Where the stack keeps its state, logs, pid and env file.
    #[arg(
        long,
        global = true,
        env = "SHIPGATE_LOCAL_DIR",
        default_value = ".local/stack"
    )]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Verdict {
    Accepted,
    Rejected,
}

#[derive(Subcommand)]
enum Command {
    /// Start the local stack in the background; print its endpoints and write them to `<state-dir>/env`.
    Up {
        /// Path of the SAM template whose resources and pipeline the stack provisions.
        #[arg(long, default_value = "template.yaml")]
        template: PathBuf,
        /// An application stack to deploy beside the core (`application.yaml`, next to the
        /// template): a JSON object of its parameters. Repeatable.
        #[arg(long = "application", value_name = "PARAMETERS_JSON")]
        applications: Vec<PathBuf>,
        /// Seconds to wait for the stack to come up.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Run the stack in the foreground (what `up` starts in the background).
    #[command(hide = true)]
    Serve {
        #[arg(long, default_value = "template.yaml")]
        template: PathBuf,
        #[arg(long = "application", value_name = "PARAMETERS_JSON")]
        applications: Vec<PathBuf>,
    },
    /// Stop everything `up` started.
    Down,
    /// Run one function's handler once on one event; print its result as JSON.
    Invoke {
        /// The function: its template logical id (e.g. IntakeFunction) or short name (intake).
        function: String,
        /// A JSON file holding the event.
        #[arg(long)]
        event: PathBuf,
    },
    /// Upload a release zip under incoming/ as an integrator would.
    Drop {
        zip: PathBuf,
        /// Object key (default: incoming/<file name>).
        #[arg(long)]
        key: Option<String>,
        /// Wait for intake's verdict and print it.
        #[arg(long)]
        wait: bool,
        /// With --wait: exit non-zero unless the verdict is this one.
        #[arg(long, value_enum, requires = "wait")]
        expect: Option<Verdict>,
    },
    /// The emails shipgate sent, as the local SES recorded them.
    Outbox {
        /// Only the last N emails.
        #[arg(long)]
        last: Option<usize>,
    },
    /// An approval gate of a release: its change summary, its state and the links mailed.
    Approval {
        /// The release (default: the newest one started).
        #[arg(long)]
        release: Option<String>,
        #[arg(long, default_value = "Int")]
        stage: String,
        #[arg(long, default_value = "ApproveInt")]
        action: String,
        /// Wait (up to this many seconds) until the gate is open and mailed.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// Print only the link mailed to this approver (with --intent), for scripts.
        #[arg(long)]
        link_for: Option<String>,
        #[arg(long, default_value = "approve", value_parser = ["approve", "reject"])]
        intent: String,
    },
    /// Follow an approval link as a person does: open the page (GET), then, with --decide,
    /// press its button (POST of the page's form).
    Follow {
        link: String,
        #[arg(long, value_parser = ["approve", "reject"])]
        decide: Option<String>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Wait until a pipeline action's latest execution settles; print its status and summary.
    WaitAction {
        /// The pipeline (default: the installation's own, SHIPGATE_PIPELINE_NAME).
        #[arg(long)]
        pipeline: Option<String>,
        #[arg(long)]
        stage: String,
        #[arg(long)]
        action: String,
        /// Exit non-zero unless the action ends with this status (Succeeded, Failed, …).
        #[arg(long)]
        expect: Option<String>,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Deployments in flight (traffic being shifted), one line each.
    Deployments,
    /// Follow the deployment, in an environment, of the newest release that goes there: each
    /// traffic step with its time, until it succeeds or is rolled back (or, with
    /// --until-percent, until it reaches that share).
    WatchTraffic {
        #[arg(long)]
        environment: String,
        /// Only releases of this application (default: any that goes to the environment).
        #[arg(long)]
        application: Option<String>,
        #[arg(long)]
        until_percent: Option<u8>,
        /// Exit non-zero unless the deployment ends so (succeeded, rolled_back).
        #[arg(long)]
        expect: Option<String>,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// The deployment of the traffic action with this `name` (the pipeline's LambdaTraffic
        /// actions: `lambda`) instead of the stage's unnamed one (the listener).
        #[arg(long)]
        name: Option<String>,
    },
    /// Set a CloudWatch alarm's state in an account (moto evaluates no metrics: this is how an
    /// alarm fires locally); the stack delivers the change as CloudWatch does.
    SetAlarm {
        #[arg(long)]
        account: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["ALARM", "OK", "INSUFFICIENT_DATA"])]
        state: String,
        #[arg(long)]
        reason: String,
    },
    /// Roll a deployment in flight back by hand: all traffic to the previous version, the
    /// pipeline action failed, the team emailed.
    Rollback {
        deployment: String,
        /// Who is rolling back (recorded as operator:<name>).
        #[arg(long)]
        operator: String,
        #[arg(long)]
        reason: String,
    },
    /// Releases and pipeline executions, one line each.
    Status {
        /// How many releases to list.
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// The story so far: releases, executions and their durations, what happened in each
    /// environment, approvals, emails sent and bytes promoted.
    Summary,
    /// Make the sample application behind an environment's test listener answer /health with
    /// this status (200: healthy), to see a failing check stop a release before any traffic.
    AppHealth {
        #[arg(long)]
        environment: String,
        #[arg(long)]
        status: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that act on a running stack take its endpoints from the env file, exactly as a
    // function takes them from its environment. Set before any thread exists.
    if matches!(
        cli.command,
        Command::Invoke { .. }
            | Command::Drop { .. }
            | Command::Status { .. }
            | Command::Summary
            | Command::AppHealth { .. }
            | Command::Outbox { .. }
            | Command::Approval { .. }
            | Command::WaitAction { .. }
            | Command::Deployments
            | Command::WatchTraffic { .. }
            | Command::SetAlarm { .. }
            | Command::Rollback { .. }
    ) {
        match StateFiles::new(&cli.state_dir).read_env() {
            Ok(vars) => {
                for (k, v) in vars {
                    // SAFETY: single-threaded here: the runtime has not started yet.
                    unsafe { std::env::set_var(k, v) };
                }
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let files = StateFiles::new(&cli.state_dir);
    match cli.command {
        Command::Up {
            template,
            applications,
            timeout,
        } => {
            up(
                &files,
                &template,
                &applications,
                Duration::from_secs(timeout),
            )
            .await
        }
        Command::Serve {
            template,
            applications,
        } => serve(&files, &template, &applications).await,
        Command::Down => down(&files),
        Command::Invoke { function, event } => invoke(&function, &event).await,
        Command::Drop {
            zip,
            key,
            wait,
            expect,
        } => drop_zip(&zip, key, wait, expect).await,
        Command::Outbox { last } => outbox(last).await,
        Command::Status { limit } => status(limit).await,
        Command::Summary => {
            let sdk = shipgate::aws::load_sdk_config().await;
            let env = shipgate::config::Env::from_process();
            print!("{}", shipgate_local::summary::collect(&sdk, &env).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::AppHealth {
            environment,
            status,
        } => {
            let env = shipgate::config::Env::from_process();
            let var = shipgate_local::test_endpoints::env_var(&environment);
            let url = env.required(&var)?;
            shipgate_local::test_endpoints::set_health_at(&url, status).await?;
            println!("the {environment} test endpoint ({url}) answers /health with {status}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Approval {
            release,
            stage,
            action,
            wait,
            link_for,
            intent,
        } => {
            let sdk = shipgate::aws::load_sdk_config().await;
            let query = shipgate_local::approvals::GateQuery {
                release,
                stage,
                action,
                wait: Duration::from_secs(wait),
            };
            let env = shipgate::config::Env::from_process();
            match link_for {
                Some(approver) => {
                    let link =
                        shipgate_local::approvals::link_for(&sdk, &env, &query, &approver, &intent)
                            .await?;
                    println!("{link}");
                }
                None => print!(
                    "{}",
                    shipgate_local::approvals::describe(&sdk, &env, &query).await?
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::WaitAction {
            pipeline,
            stage,
            action,
            expect,
            timeout,
        } => {
            wait_action(
                pipeline,
                &stage,
                &action,
                expect.as_deref(),
                Duration::from_secs(timeout),
            )
            .await
        }
        Command::Deployments => {
            let rollback = rollback_function().await?;
            let deployments = rollback.list_in_flight().await?;
            println!("{} deployment(s) in flight", deployments.len());
            for d in deployments {
                println!(
                    "  {}  {} {}  release {}  {}%  plan {}  alarms {}",
                    d.deployment_id,
                    d.environment,
                    d.state.as_str(),
                    d.release_id,
                    d.percent,
                    d.plan,
                    d.alarms.join(",")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::WatchTraffic {
            environment,
            application,
            until_percent,
            expect,
            timeout,
            name,
        } => {
            watch_traffic(
                &environment,
                application.as_deref(),
                until_percent,
                expect.as_deref(),
                Duration::from_secs(timeout),
                name.as_deref(),
            )
            .await
        }
        Command::SetAlarm {
            account,
            name,
            state,
            reason,
        } => set_alarm(&account, &name, &state, &reason).await,
        Command::Rollback {
            deployment,
            operator,
            reason,
        } => {
            let rollback = rollback_function().await?;
            let report = rollback
                .roll_back_by_hand(&deployment, &operator, &reason)
                .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Follow {
            link,
            decide,
            comment,
        } => {
            let outcome =
                shipgate_local::approvals::follow(&link, decide.as_deref(), comment.as_deref())
                    .await?;
            print!("{}", outcome.report);
            Ok(if outcome.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

async fn up(
    files: &StateFiles,
    template: &Path,
    applications: &[PathBuf],
    timeout: Duration,
) -> Result<ExitCode> {
    match files.serve_state()? {
        ServeState::Running(serve) => {
            println!(
                "shipgate-local is already up (pid {}); endpoints in {}",
                serve.pid(),
                files.env_file.display()
            );
            print!(
                "{}",
                std::fs::read_to_string(&files.env_file).unwrap_or_default()
            );
            return Ok(ExitCode::SUCCESS);
        }
        ServeState::Stale(stale) => println!(
            "replacing the stale record {} ({stale})",
            files.pid_file.display()
        ),
        ServeState::NotRecorded => {}
    }
    std::fs::create_dir_all(&files.dir)?;
    let _ = std::fs::remove_file(&files.env_file);
    let exe = std::env::current_exe().context("locating shipgate-local")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&files.serve_log)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--state-dir")
        .arg(&files.dir)
        .arg("serve")
        .arg("--template")
        .arg(template);
    for application in applications {
        cmd.arg("--application").arg(application);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Detach: its own session, so it outlives this command and the terminal.
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting shipgate-local serve")?;
    println!(
        "starting the local stack (log: {})",
        files.serve_log.display()
    );
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if files.env_file.exists() {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the stack exited during start-up ({status}); see {}",
                files.serve_log.display()
            );
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the stack did not come up within {timeout:?}; see {}",
                files.serve_log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "shipgate-local is up (pid {}). Endpoints, also in {}:",
        child.id(),
        files.env_file.display()
    );
    print!("{}", std::fs::read_to_string(&files.env_file)?);
    println!(
        "\nsource it with:  set -a; . {}; set +a",
        files.env_file.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn serve(files: &StateFiles, template: &Path, applications: &[PathBuf]) -> Result<ExitCode> {
    shipgate::telemetry::init();
    let mut options = StackOptions::for_cli(&files.dir, template);
    for path in applications {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        options
            .applications
            .push(serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: not a JSON object of the stack's parameters",
                    path.display()
                )
            })?);
    }
    let stack = Stack::start(options).await?;
    files.write_serve_record(&ProcessIdentity::of_self()?)?;
    files.write_env(&stack.env_file_contents())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    stack.stop().await;
    let _ = files.clear();
    Ok(ExitCode::SUCCESS)
}

fn down(files: &StateFiles) -> Result<ExitCode> {
    let down = files.stop_serve(Duration::from_secs(10))?;
    match down.outcome {
        DownOutcome::NotRunning => println!("shipgate-local is not running"),
        DownOutcome::Stale(stale) => {
            println!("shipgate-local is not running: {stale}; nothing was signalled")
        }
        DownOutcome::Stopped {
            pid,
            how: Stopped::Killed,
        } => println!("shipgate-local killed (pid {pid}) after it ignored SIGTERM for 10 s"),
        DownOutcome::Stopped { pid, .. } => println!("shipgate-local stopped (pid {pid})"),
    }
    for path in &down.removed {
        println!("removed {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn invoke(function: &str, event: &Path) -> Result<ExitCode> {
    shipgate_local::functions::ensure_known(function)?;
    let text =
        std::fs::read_to_string(event).with_context(|| format!("reading {}", event.display()))?;
    let event: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", event.display()))?;
    let functions = shipgate_local::functions::LocalFunctions::from_process_env().await?;
    match functions.invoke_once(function, event).await {
        Ok(result) => {
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("{}", serde_json::to_string_pretty(&error)?);
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn drop_zip(
    zip: &Path,
    key: Option<String>,
    wait: bool,
    expect: Option<Verdict>,
) -> Result<ExitCode> {
    let env = shipgate::config::Env::from_process();
    let bucket = env.required("SHIPGATE_ARTIFACT_BUCKET")?;
    let name = zip
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("release.zip");
    let key = key.unwrap_or_else(|| format!("incoming/{name}"));
    let sdk = shipgate::aws::load_sdk_config().await;
    let s3 = shipgate::aws::s3_client(&sdk, true);
    let body = aws_sdk_s3::primitives::ByteStream::from_path(zip)
        .await
        .with_context(|| format!("reading {}", zip.display()))?;
    let out = s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(body)
        .send()
        .await
        .map_err(sdk_error)?;
    let version = out.version_id().unwrap_or_default().to_owned();
    println!("dropped s3://{bucket}/{key} (version {version})");
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let release_id = shipgate_intake::release_id(&shipgate::aws::s3::ObjectVersion {
        bucket: bucket.clone(),
        key: key.clone(),
        version_id: Some(version),
    });
    let store = shipgate::store::Store::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        env.required("SHIPGATE_TABLE")?,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let release = loop {
        use shipgate::store::ReleaseState::{Rejected, Started};
        if let Some(r) = store.get_release(&release_id).await?
            && matches!(r.state, Started | Rejected)
        {
            break r;
        }
        if std::time::Instant::now() > deadline {
            bail!("intake gave no verdict on {release_id} within 120 s; see the stack's log");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let verdict = match release.state {
        shipgate::store::ReleaseState::Started => Verdict::Accepted,
        _ => Verdict::Rejected,
    };
    println!("{}", shipgate_local::status::describe_release(&release));
    match expect {
        Some(expected) if expected != verdict => {
            eprintln!("error: expected the release to be {expected:?}, it was {verdict:?}");
            Ok(ExitCode::FAILURE)
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The rollback function, configured from the stack's env file as in the template.
/// Polls the environment's deployment (the newest one in flight, then that one by id) and prints
/// each step once, with its time.
async fn watch_traffic(
    environment: &str,
    application: Option<&str>,
    until_percent: Option<u8>,
    expect: Option<&str>,
    timeout: Duration,
    name: Option<&str>,
) -> Result<ExitCode> {
    use shipgate::store::{DeploymentState, Store};
    let env = shipgate::config::Env::from_process();
    let sdk = shipgate::aws::load_sdk_config().await;
    let store = Store::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        env.required("SHIPGATE_TABLE")?,
    );
    let deadline = std::time::Instant::now() + timeout;
    let clock = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map(|t| format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()))
            .unwrap_or_default()
    };
    let mut id: Option<String> = None;
    let mut printed = 0usize;
    loop {
        if std::time::Instant::now() > deadline {
            bail!("no end of the {environment} deployment within {timeout:?}");
        }
        // The deployment of the newest release that has a pipeline execution and goes to the
        // environment (several applications are released at once, each through its own
        // chain): it may already be over by the time this looks (its steps are recorded with
        // their times).
        let current = match &id {
            Some(id) => store.get_deployment(id).await?,
            None => {
                let newest = store
                    .list_releases(20)
                    .await?
                    .into_iter()
                    .filter(|r| r.execution_id.is_some())
                    .filter(|r| application.is_none_or(|a| r.application.as_deref() == Some(a)))
                    .filter(|r| {
                        shipgate::job::release::recorded_manifest(r)
                            .is_ok_and(|m| m.environments.iter().any(|e| e == environment))
                    })
                    .max_by(|a, b| a.received_at.cmp(&b.received_at));
                match newest {
                    Some(r) => {
                        let execution = r.execution_id.as_deref().unwrap_or_default();
                        store
                            .get_deployment(&shipgate::deploy::deployment_id(
                                &r.release_id,
                                environment,
                                &shipgate_traffic::named_execution(execution, name),
                            ))
                            .await?
                    }
                    None => None,
                }
            }
        };
        let Some(d) = current else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if id.is_none() {
            println!(
                "deployment {} of {} {} in {}: {}, plan {}, watching alarms [{}]",
                d.deployment_id,
                d.application.as_deref().unwrap_or("?"),
                d.version.as_deref().unwrap_or("?"),
                d.environment,
                shipgate_local::status::describe_target(&d.target),
                d.plan,
                d.alarms.join(", ")
            );
            id = Some(d.deployment_id.clone());
        }
        for step in d.steps.iter().skip(printed) {
            println!(
                "  [{}] {}% of the traffic on the new version",
                clock(step.at_ms),
                step.percent
            );
        }
        printed = d.steps.len();
        if until_percent.is_some_and(|p| d.percent >= p && d.state == DeploymentState::Shifting) {
            return Ok(ExitCode::SUCCESS);
        }
        if d.state != DeploymentState::Shifting {
            if let Some(r) = &d.rollback {
                // The rollback is recorded first, then carried out: wait for all of it.
                if !(r.traffic_restored && r.job_answered && r.team_notified) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                println!(
                    "  [{}] rolled back from {}% by {}{}: {}",
                    clock(r.at_ms),
                    r.percent_before,
                    r.by,
                    r.alarm
                        .as_deref()
                        .map(|a| format!(" (alarm {a})"))
                        .unwrap_or_default(),
                    r.reason
                );
                println!(
                    "  all traffic on the previous version again; pipeline action answered ({}); team emailed",
                    r.job_outcome.as_deref().unwrap_or("-")
                );
            } else {
                println!("  {}", d.state.as_str());
            }
            if expect.is_some_and(|e| e != d.state.as_str()) {
                eprintln!(
                    "error: expected the deployment to end {}, it ended {}",
                    expect.unwrap_or_default(),
                    d.state.as_str()
                );
                return Ok(ExitCode::FAILURE);
            }
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn set_alarm(account: &str, name: &str, state: &str, reason: &str) -> Result<ExitCode> {
    let sdk = shipgate::aws::load_sdk_config().await;
    let sdk = if account == shipgate_local::accounts::TOOLING {
        sdk
    } else {
        shipgate::aws::assume_role(
            &sdk,
            &shipgate_local::accounts::deploy_role_arn(account),
            "set-alarm",
        )
        .await
    };
    aws_sdk_cloudwatch::Client::new(&sdk)
        .set_alarm_state()
        .alarm_name(name)
        .state_value(state.into())
        .state_reason(reason)
        .send()
        .await
        .map_err(sdk_error)?;
    println!("alarm {name} in {account} set to {state}: {reason}");
    Ok(ExitCode::SUCCESS)
}

async fn rollback_function() -> Result<shipgate_rollback::RollbackFunction> {
    let env = shipgate::config::Env::from_process();
    let config = shipgate_rollback::RollbackConfig::from_env(&env)?;
    let sdk = shipgate::aws::load_sdk_config().await;
    Ok(shipgate_rollback::RollbackFunction::new(config, &sdk))
}

async fn wait_action(
    pipeline: Option<String>,
    stage: &str,
    action: &str,
    expect: Option<&str>,
    timeout: Duration,
) -> Result<ExitCode> {
    let env = shipgate::config::Env::from_process();
    let pipeline = match pipeline {
        Some(pipeline) => pipeline,
        None => env.required("SHIPGATE_PIPELINE_NAME")?,
    };
    let sdk = shipgate::aws::load_sdk_config().await;
    let cp = aws_sdk_codepipeline::Client::new(&sdk);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let state = cp
            .get_pipeline_state()
            .name(&pipeline)
            .send()
            .await
            .map_err(sdk_error)?;
        let latest = state
            .stage_states()
            .iter()
            .find(|s| s.stage_name() == Some(stage))
            .and_then(|s| shipgate::aws::codepipeline::latest_action_execution(s, action));
        let status = latest
            .and_then(|l| l.status())
            .map(|s| s.as_str().to_owned());
        if let Some(status) = status.filter(|s| s != "InProgress") {
            let summary = latest
                .and_then(|l| l.summary().or(l.error_details().and_then(|e| e.message())))
                .unwrap_or("");
            println!("{stage}/{action}: {status}");
            if !summary.is_empty() {
                println!("  {summary}");
            }
            return Ok(match expect {
                Some(expected) if expected != status => {
                    eprintln!("error: expected {stage}/{action} to be {expected}, it is {status}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            });
        }
        if std::time::Instant::now() > deadline {
            bail!("{stage}/{action} did not settle within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn outbox(last: Option<usize>) -> Result<ExitCode> {
    let env = shipgate::config::Env::from_process();
    let moto = env.required("SHIPGATE_LOCAL_MOTO")?;
    let emails = shipgate_local::outbox::sent_emails(&moto).await?;
    let skip = last.map(|n| emails.len().saturating_sub(n)).unwrap_or(0);
    println!("{} email(s) sent", emails.len());
    for (i, e) in emails.iter().enumerate().skip(skip) {
        println!("--- email {} ---", i + 1);
        println!(
            "From:    {}\nTo:      {}\nSubject: {}\n",
            e.from,
            e.to.join(", "),
            e.subject
        );
        println!("{}\n", shipgate_local::outbox::html_to_text(&e.body));
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(limit: i32) -> Result<ExitCode> {
    let sdk = shipgate::aws::load_sdk_config().await;
    let report =
        shipgate_local::status::collect(&sdk, &shipgate::config::Env::from_process(), limit)
            .await?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}
