//! Bench: image promotion, shipgate's promote action against `skopeo copy`, on the same two
//! local registries in one run.
//!
//! Starts a local stack, pushes a test image of 4 layers of random data (about 300 MiB, so
//! nothing compresses) to the int account's registry, and puts a byte-counting TCP proxy in
//! front of the stg account's registry. Then each contender copies the image into its own
//! repository of the stg registry, through the proxy, as a child process (wall time from spawn
//! to exit, peak RSS from `wait4`, bytes sent from the proxy's count of client-to-registry
//! bytes, HTTP included):
//! - shipgate: this binary re-executed as `bench-promote promote-child`, which runs the promote
//!   action's handler (`PromoteFunction::run`) on a CodePipeline job exactly as Lambda would:
//!   AssumeRole into both accounts, `GetAuthorizationToken`, the target repository checked,
//!   the copy, the result stored in DynamoDB. Once with chunked uploads (the default), once
//!   with monolithic streamed PUTs;
//! - `skopeo copy --preserve-digests` (Debian's skopeo) from the same source registry.
//!
//! Then each promotes the same image again, with every layer already in place. Prints figures;
//! asserts nothing.
//!
//! Run: `make bench-promote` (or `cargo run --release -p shipgate-tests --bin bench-promote`).
//! `SHIPGATE_BENCH_LAYERS_MIB` (default `120,90,60,30`) sets the layers, `SHIPGATE_BENCH_ROUNDS`
//! (default 3) how many times each contender runs (median and worst printed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use shipgate::aws::s3::ObjectVersion;
use shipgate::config::Env;
use shipgate::job::{Job, JobAction, Outcome};
use shipgate::registry::{Digest, Registry, ecr_registry};
use shipgate::store::{ReleaseRecord, ReleaseState, Store};
use shipgate_local::accounts::{self, INT, REGION, STG, TOOLING};
use shipgate_local::registries::ecr_host;
use shipgate_local::stack::{Stack, StackOptions};
use shipgate_promote::{PromoteConfig, PromoteFunction};
use shipgate_tests::images::{ImageBuilder, ManifestFormat, PushedImage};
use shipgate_tests::measure::{env_list, wait_measured};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: u64 = 1024 * 1024;
const TAG: &str = "1.0.0";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.get(1).map(String::as_str) {
        Some("promote-child") => runtime.block_on(promote_child(&args[2..])),
        _ => runtime.block_on(bench()),
    }
}

/// The child: the promote action's handler on one job, configured from the environment as in
/// Lambda. Prints the outcome as one JSON line.
async fn promote_child(args: &[String]) -> Result<()> {
    let (Some(job_id), Some(parameters)) = (args.first(), args.get(1)) else {
        bail!("usage: bench-promote promote-child JOB_ID USER_PARAMETERS");
    };
    let config = PromoteConfig::from_env(&Env::from_process())?;
    let sdk = shipgate::aws::load_sdk_config().await;
    let action = PromoteFunction::new(config, &sdk);
    let job = Job {
        id: job_id.clone(),
        account_id: Some(TOOLING.to_owned()),
        user_parameters: Some(parameters.clone()),
        continuation_token: None,
        input_artifacts: BTreeMap::new(),
    };
    let printed = match action.run(&job).await {
        Outcome::Done {
            summary,
            output_variables,
        } => json!({"outcome": "done", "summary": summary, "variables": output_variables}),
        Outcome::Continue { state } => json!({"outcome": "continue", "state": state}),
        Outcome::Failed { message, .. } => json!({"outcome": "failed", "message": message}),
    };
    println!("{printed}");
    Ok(())
}

struct Run {
    label: String,
    wall: Duration,
    max_rss_kib: i64,
    cpu: Duration,
    /// CPU the source and target registries used meanwhile.
    registries_cpu: Duration,
    bytes_sent: u64,
    /// Blob bytes the contender says it copied, when it says.
    blob_bytes: Option<u64>,
    /// The copy alone, as the action measured it.
    copy_seconds: Option<f64>,
    note: String,
}

async fn bench() -> Result<()> {
    let layers_mib: Vec<u64> = env_list("SHIPGATE_BENCH_LAYERS_MIB", "120,90,60,30")?;
    let rounds: usize = std::env::var("SHIPGATE_BENCH_ROUNDS")
        .unwrap_or_else(|_| "3".into())
        .parse()
        .context("SHIPGATE_BENCH_ROUNDS: a number")?;
    let skopeo = which("skopeo").context("skopeo not found: run `make apt`")?;
    let exe = std::env::current_exe()?;

    let mut options = StackOptions::for_test("bench-promote");
    options.deliver_s3_events = false;
    let stack = Stack::start(options).await?;
    let result = run_bench(&stack, &layers_mib, rounds, &skopeo, &exe).await;
    let state_dir = stack.state_dir().to_path_buf();
    stack.stop().await;
    let _ = std::fs::remove_dir_all(state_dir);
    result
}

async fn run_bench(
    stack: &Stack,
    layers_mib: &[u64],
    rounds: usize,
    skopeo: &Path,
    exe: &Path,
) -> Result<()> {
    let local = |account: &str| {
        stack
            .registries
            .iter()
            .find(|r| r.account == account)
            .with_context(|| format!("no registry for {account}"))
    };
    let (int_local, stg_local) = (local(INT)?, local(STG)?);
    let registries_cpu = || process_cpu(int_local.pid()) + process_cpu(stg_local.pid());
    let int_sdk =
        shipgate::aws::assume_role(&stack.sdk, &accounts::deploy_role_arn(INT), "bench").await;
    let source = ecr_registry(
        &aws_sdk_ecr::Client::new(&int_sdk),
        reqwest::Client::new(),
        &stack.registry_overrides(),
    )
    .await?;

    let sizes: Vec<u64> = layers_mib.iter().map(|m| m * MIB).collect();
    let stg_addr: SocketAddr = format!("127.0.0.1:{}", stg_local.port).parse()?;
    let (proxy_url, sent) = counting_proxy(stg_addr).await?;
    let table = stack.provisioned.table.clone().context("table")?;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&stack.sdk), table.clone());

    // The stg ECR host goes to the proxy; every other account to its own registry.
    let mut overrides = stack.registry_overrides();
    overrides.insert(ecr_host(STG, REGION), proxy_url.clone());
    let overrides = overrides
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut env: Vec<(String, String)> = stack.endpoints.env_vars();
    env.push(("SHIPGATE_TABLE".into(), table));
    env.push(("SHIPGATE_REGISTRY_ENDPOINTS".into(), overrides));
    env.push(("RUST_LOG".into(), "warn".into()));
    for knob in ["SHIPGATE_PROMOTE_CONCURRENCY", "SHIPGATE_PROMOTE_CHUNK_MIB"] {
        if let Ok(value) = std::env::var(knob) {
            env.push((knob.into(), value));
        }
    }

    let shipgate = |label: &str, release: &str, upload: &str| {
        let mut env = env.clone();
        env.push(("SHIPGATE_PROMOTE_UPLOAD".into(), upload.into()));
        let parameters = json!({
            "releaseId": release,
            "executionId": "bench",
            "from": {"environment": "int", "roleArn": accounts::deploy_role_arn(INT)},
            "to": {"environment": "stg", "roleArn": accounts::deploy_role_arn(STG)},
        })
        .to_string();
        let job_id = uuid::Uuid::new_v4().to_string();
        let mut command = std::process::Command::new(exe);
        command
            .args(["promote-child", &job_id, &parameters])
            .env_clear()
            .envs(env);
        (label.to_owned(), release.to_owned(), command)
    };
    let skopeo_copy = |label: &str, source: &str, target_repo: &str| {
        let mut command = std::process::Command::new(skopeo);
        command.args([
            "copy",
            "--quiet",
            "--insecure-policy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://127.0.0.1:{}/{source}", int_local.port),
            &format!(
                "docker://{}/{target_repo}:{TAG}",
                proxy_url.trim_start_matches("http://")
            ),
        ]);
        (label.to_owned(), String::new(), command)
    };

    // Each round pushes a new image (new random layers) and copies it into repositories of its
    // own, so that every first copy starts from a target that has none of its blobs: skopeo
    // remembers (in a blob-info cache under /var/lib/containers or $HOME) which repositories of
    // a registry hold a blob, and would otherwise mount it there instead of copying it. The
    // contenders alternate within a round.
    let target = Registry::new(&stg_local.url(), None, reqwest::Client::new())?;
    let mut runs = Vec::new();
    for round in 1..=rounds {
        let (app, mono, by_skopeo) = (
            format!("bench/app-r{round}"),
            format!("bench/app-mono-r{round}"),
            format!("bench/app-skopeo-r{round}"),
        );
        let t = Instant::now();
        let image = ImageBuilder::new()
            .format(ManifestFormat::Oci)
            .layers(&sizes)
            .push(&source, &app, TAG)
            .await?;
        mirror(&source, &app, &mono, &image).await?;
        let total: u64 = image.blobs().iter().map(|b| b.size).sum();
        eprintln!(
            "round {round}: pushed {} ({} layers: {} MiB; {:.1} MiB with the config) to the int \
             registry in {:.1}s",
            image.digest(),
            sizes.len(),
            layers_mib
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" + "),
            total as f64 / MIB as f64,
            t.elapsed().as_secs_f64()
        );
        let by_digest = format!("{app}@{}", image.digest());
        let chunked = record_release(&store, &app, image.digest()).await?;
        let monolithic = record_release(&store, &mono, image.digest()).await?;
        for (label, release, command) in [
            shipgate(
                "shipgate promote (chunked PATCH, 8 MiB)",
                &chunked,
                "chunked",
            ),
            shipgate(
                "shipgate promote (monolithic PUT)",
                &monolithic,
                "monolithic",
            ),
            skopeo_copy("skopeo copy", &by_digest, &by_skopeo),
            shipgate(
                "shipgate promote again (all layers there)",
                &chunked,
                "chunked",
            ),
            skopeo_copy(
                "skopeo copy again (all layers there)",
                &by_digest,
                &by_skopeo,
            ),
        ] {
            // Each run starts with no dirty pages of the previous one left to write back.
            // SAFETY: sync(2) has no preconditions.
            unsafe { libc::sync() };
            let before = sent.load(Ordering::Relaxed);
            let registries_before = registries_cpu();
            let child = run_child(command)?;
            let bytes_sent = sent.load(Ordering::Relaxed) - before;
            let mut run = Run {
                label,
                wall: child.wall,
                max_rss_kib: child.max_rss_kib,
                cpu: child.cpu,
                registries_cpu: registries_cpu().saturating_sub(registries_before),
                bytes_sent,
                blob_bytes: None,
                copy_seconds: None,
                note: String::new(),
            };
            if !child.success {
                bail!("{} failed: {}{}", run.label, child.stdout, child.stderr);
            }
            if !release.is_empty() {
                let out: serde_json::Value = serde_json::from_str(child.stdout.trim())
                    .with_context(|| format!("child output: {}", child.stdout))?;
                if out["outcome"] != "done" {
                    bail!("{}: {out}", run.label);
                }
                let promotion = store
                    .get_promotion(&release, "stg")
                    .await?
                    .context("no promotion stored")?;
                let images = &promotion.images;
                run.blob_bytes = Some(images.iter().map(|i| i.bytes_copied).sum());
                run.copy_seconds = Some(images.iter().map(|i| i.seconds).sum());
                run.note = format!(
                    "{} blobs copied, {} skipped",
                    images.iter().map(|i| i.blobs_copied).sum::<u32>(),
                    images.iter().map(|i| i.blobs_skipped).sum::<u32>()
                );
            }
            runs.push(run);
        }
        // Every contender produced the same image.
        for repo in [&app, &mono, &by_skopeo] {
            let found = target.head_manifest(repo, TAG).await?.map(|d| d.digest);
            if found.as_ref() != Some(image.digest()) {
                bail!("{repo}:{TAG} in stg is {found:?}, not {}", image.digest());
            }
        }
        eprintln!("round {round}/{rounds} done");
    }

    println!();
    println!(
        "| run ({rounds} rounds) | wall time median | wall time worst | copy time median (action's own) | peak RSS worst | CPU median (user+sys) | registries' CPU median | bytes sent to the target registry | blob bytes copied | |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut labels: Vec<&str> = Vec::new();
    for run in &runs {
        if !labels.contains(&run.label.as_str()) {
            labels.push(&run.label);
        }
    }
    for label in labels {
        let of: Vec<&Run> = runs.iter().filter(|r| r.label == label).collect();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let walls: Vec<f64> = of.iter().map(|r| ms(r.wall)).collect();
        let copies: Vec<f64> = of
            .iter()
            .filter_map(|r| r.copy_seconds.map(|s| s * 1000.0))
            .collect();
        let last = of[of.len() - 1];
        println!(
            "| {label} | {:.0} ms | {:.0} ms | {} | {:.1} MiB | {:.0} ms | {:.0} ms | {} | {} | {} |",
            median(&walls),
            worst(&walls),
            if copies.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.0} ms", median(&copies))
            },
            of.iter().map(|r| r.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0,
            median(&of.iter().map(|r| ms(r.cpu)).collect::<Vec<_>>()),
            median(&of.iter().map(|r| ms(r.registries_cpu)).collect::<Vec<_>>()),
            bytes(of.iter().map(|r| r.bytes_sent).max().unwrap_or(0)),
            last.blob_bytes.map_or_else(|| "–".into(), bytes),
            last.note
        );
    }
    println!(
        "\nlayers of {} MiB, new random data each round; every copy in stg was checked to have \
         its round's digest (tag {TAG}); wall time is the child process from spawn to \
         exit (shipgate's includes AssumeRole x2, GetAuthorizationToken x2, \
         DescribeRepositories, DynamoDB GetItem/PutItem against moto); peak RSS from wait4; \
         bytes counted by a TCP proxy in front of the stg registry (the largest of the rounds).",
        layers_mib
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" + "),
    );
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn worst(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// Makes `to` in the same registry an identical copy of `from` (blobs mounted, not copied).
async fn mirror(registry: &Registry, from: &str, to: &str, image: &PushedImage) -> Result<()> {
    for blob in image.blobs() {
        if !registry.mount_blob(to, &blob.digest, from).await? {
            bail!("the registry would not mount {}", blob.digest);
        }
    }
    let media_type = &image.manifest.media_type;
    registry
        .put_manifest(
            to,
            image.digest().as_str(),
            media_type,
            image.manifest_bytes.clone(),
        )
        .await?;
    registry
        .put_manifest(to, TAG, media_type, image.manifest_bytes.clone())
        .await?;
    Ok(())
}

/// Records a release of the one image, as intake does; returns its id.
async fn record_release(store: &Store, repository: &str, digest: &Digest) -> Result<String> {
    let release_id = format!(
        "rel-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut record = ReleaseRecord::received(
        release_id.clone(),
        ObjectVersion {
            bucket: "artifacts".into(),
            key: format!("incoming/{release_id}.zip"),
            version_id: Some("1".into()),
        },
        "2026-11-26T10:00:00Z".into(),
    );
    record.state = ReleaseState::Started;
    record.manifest = Some(json!({
        "schema_version": "shipgate.release/v1",
        "application": "bench",
        "version": TAG,
        "message": "bench",
        "integrator": {"name": "Bench", "email": "bench@shipgate.local"},
        "environments": ["int", "stg"],
        "images": [{"name": "app", "repository": repository, "tag": TAG, "digest": digest.as_str()}],
        "templates": [],
    }));
    store.claim_release(&record, 0).await?;
    Ok(release_id)
}

/// A TCP proxy to `upstream` on a free loopback port, counting the bytes clients send.
async fn counting_proxy(upstream: SocketAddr) -> Result<(String, Arc<AtomicU64>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                counter.fetch_add(n as u64, Ordering::Relaxed);
                                if server_write.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    Ok((url, sent))
}

struct Child {
    success: bool,
    stdout: String,
    stderr: String,
    wall: Duration,
    max_rss_kib: i64,
    /// User + system CPU time.
    cpu: Duration,
}

/// Runs a child to its end; its peak RSS from `wait4` (this process's own memory is not in it).
fn run_child(mut command: std::process::Command) -> Result<Child> {
    let dir = std::env::temp_dir().join(format!("bench-promote-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .context("starting the child")?;
    // Blocks this thread only: the proxy runs on the runtime's worker threads.
    let usage = wait_measured(&child, started)?;
    let result = Child {
        success: usage.success,
        stdout: std::fs::read_to_string(&out_path)?,
        stderr: std::fs::read_to_string(&err_path)?,
        wall: usage.wall,
        max_rss_kib: usage.max_rss_kib,
        cpu: usage.cpu,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result)
}

/// User + system CPU time a process has used so far (`/proc/<pid>/stat`), for the registries.
fn process_cpu(pid: Option<u32>) -> Duration {
    let Some(stat) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
    else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) start at ") ".
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

fn bytes(n: u64) -> String {
    if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}
