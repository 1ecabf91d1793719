//! `shipgate-local`: run shipgate on this machine, the way `sam local` and `cargo lambda` work.
//!
//! `up` starts the stack in the background and writes its endpoints to an env file; `invoke`,
//! `drop` and `status` use that file; `down` stops everything `up` started.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use shipgate_local::stack::{Stack, StackOptions, StateFiles};

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
        /// Seconds to wait for the stack to come up.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Run the stack in the foreground (what `up` starts in the background).
    #[command(hide = true)]
    Serve {
        #[arg(long, default_value = "template.yaml")]
        template: PathBuf,
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
            | Command::Outbox { .. }
            | Command::Approval { .. }
            | Command::WaitAction { .. }
            | Command::Deployments
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
        Command::Up { template, timeout } => {
            up(&files, &template, Duration::from_secs(timeout)).await
        }
        Command::Serve { template } => serve(&files, &template).await,
        Command::Down => down(&files).await,
        Command::Invoke { function, event } => invoke(&function, &event).await,
        Command::Drop {
            zip,
            key,
            wait,
            expect,
        } => drop_zip(&zip, key, wait, expect).await,
        Command::Outbox { last } => outbox(last).await,
        Command::Status { limit } => status(limit).await,
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
            stage,
            action,
            expect,
            timeout,
        } => {
            wait_action(
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

async fn up(files: &StateFiles, template: &Path, timeout: Duration) -> Result<ExitCode> {
    if let Some(pid) = files.running_pid() {
        println!(
            "shipgate-local is already up (pid {pid}); endpoints in {}",
            files.env_file.display()
        );
        print!(
            "{}",
            std::fs::read_to_string(&files.env_file).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
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
        .arg(template)
        .stdin(std::process::Stdio::null())
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

async fn serve(files: &StateFiles, template: &Path) -> Result<ExitCode> {
    shipgate::telemetry::init();
    let stack = Stack::start(StackOptions::for_cli(&files.dir, template)).await?;
    files.write_pid(std::process::id())?;
    files.write_env(&stack.env_file_contents())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    stack.stop().await;
    files.clear();
    Ok(ExitCode::SUCCESS)
}

async fn down(files: &StateFiles) -> Result<ExitCode> {
    let Some(pid) = files.running_pid() else {
        println!("shipgate-local is not running");
        files.clear();
        return Ok(ExitCode::SUCCESS);
    };
    // SAFETY: plain kill(2) of the serve process we started.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    for _ in 0..100 {
        if files.running_pid().is_none() {
            println!("shipgate-local stopped (pid {pid})");
            files.clear();
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SAFETY: as above; it did not stop within 10 s.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    files.clear();
    println!("shipgate-local killed (pid {pid}) after it ignored SIGTERM for 10 s");
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
        .map_err(|e| {
            anyhow::anyhow!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )
        })?;
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
async fn rollback_function() -> Result<shipgate_rollback::RollbackFunction> {
    let env = shipgate::config::Env::from_process();
    let config = shipgate_rollback::RollbackConfig::from_env(&env)?;
    let sdk = shipgate::aws::load_sdk_config().await;
    Ok(shipgate_rollback::RollbackFunction::new(config, &sdk))
}

async fn wait_action(
    stage: &str,
    action: &str,
    expect: Option<&str>,
    timeout: Duration,
) -> Result<ExitCode> {
    let env = shipgate::config::Env::from_process();
    let pipeline = env.required("SHIPGATE_PIPELINE_NAME")?;
    let sdk = shipgate::aws::load_sdk_config().await;
    let cp = aws_sdk_codepipeline::Client::new(&sdk);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let state = cp
            .get_pipeline_state()
            .name(&pipeline)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                )
            })?;
        let latest = state
            .stage_states()
            .iter()
            .find(|s| s.stage_name() == Some(stage))
            .and_then(|s| {
                s.action_states()
                    .iter()
                    .find(|a| a.action_name() == Some(action))
            })
            .and_then(|a| a.latest_execution());
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
