//! Bench: intake's peak memory and time on a 1 GiB zip bomb and on a 500 MiB legitimate release,
//! then its verdict time on adversarial documents (issue 16): templates of the maximum size at
//! the maximum nesting (YAML flow and block styles, JSON), a mebibyte of openings past the limit,
//! a mebibyte of keys, aliases, tags or colliding keys, and a release of the maximum number of
//! templates each at the limits. Prints each verdict time and the worst.
//!
//! Starts a local stack, pushes the release's image, writes both zips to disk (streamed, never
//! whole in memory), uploads them, then runs intake on each drop's S3 event in a child process
//! (`shipgate-local invoke intake`, the same handler Lambda runs) and reads the child's peak RSS
//! from `wait4`. Prints figures; asserts nothing about time.
//!
//! Run: `cargo build --release -p shipgate-local && cargo run --release -p shipgate-tests --bin bench-intake`
//! (or `make bench-intake`). `SHIPGATE_BENCH_LEGIT_MIB` / `SHIPGATE_BENCH_BOMB_MIB` change the sizes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use shipgate::release::{Limits, MAX_DOCUMENT_DEPTH, RangeSource, SourceError};
use shipgate_local::stack::{Stack, StackOptions};
use shipgate_tests::drops::ReleaseBuilder;
use shipgate_tests::measure::wait_measured;
use shipgate_tests::support::{push_source_image, s3_put_event};

const MIB: u64 = 1024 * 1024;

#[tokio::main]
async fn main() -> Result<()> {
    let legit_mib: u64 = env_or("SHIPGATE_BENCH_LEGIT_MIB", 500);
    let bomb_mib: u64 = env_or("SHIPGATE_BENCH_BOMB_MIB", 1024);
    let exe = shipgate_local_binary()?;
    let mut options = StackOptions::for_test("bench-intake");
    options.deliver_s3_events = false;
    let stack = Stack::start(options).await?;
    let work = stack.state_dir().join("bench");
    std::fs::create_dir_all(&work)?;

    let image = push_source_image(&stack, "orders/web", "9.9.9", &[1024]).await?;
    let release = ReleaseBuilder::new("orders", "9.9.9").image(
        "web",
        "orders/web",
        "9.9.9",
        image.digest().as_str(),
    );

    // The release with one large asset: `size` bytes of `payload`, timed.
    let build = |zip: &str, asset: &str, size: u64, payload: Payload| -> Result<(PathBuf, f64)> {
        let path = work.join(zip);
        let t = Instant::now();
        write_zip(&path, &release.files(), asset, size, payload)?;
        Ok((path, t.elapsed().as_secs_f64()))
    };
    let (legit, took) = build(
        "legit.zip",
        "assets/payload.bin",
        legit_mib * MIB,
        Payload::Random,
    )?;
    println!(
        "built {} MiB legitimate release in {took:.1}s",
        size_mib(&legit)?
    );
    let (bomb, took) = build(
        "bomb.zip",
        "assets/bomb.bin",
        bomb_mib * MIB,
        Payload::Zeros,
    )?;
    println!(
        "built zip bomb: {} MiB of zeros deflated into {:.2} MiB in {took:.1}s",
        bomb_mib,
        std::fs::metadata(&bomb)?.len() as f64 / MIB as f64
    );

    println!();
    println!(
        "| drop | object size | uncompressed | verdict | intake wall time | intake peak RSS |"
    );
    println!("|---|---|---|---|---|---|");
    let mut validation = Vec::new();
    let mut verdicts: Vec<(String, Duration)> = Vec::new();
    for (name, path, uncompressed) in [
        ("legitimate release", &legit, legit_mib),
        ("zip bomb", &bomb, bomb_mib),
    ] {
        let (run, verdict, codes, key, out, size) =
            upload_and_invoke(&stack, &exe, &work, path).await?;
        verdicts.push((name.to_owned(), run.wall));
        let bucket = bucket_of(&stack)?;
        let s3 = shipgate::aws::s3_client(&stack.sdk, true);
        println!(
            "| {name} | {:.1} MiB | {uncompressed} MiB | {verdict}{codes} | {:.0} ms | {:.1} MiB |",
            size as f64 / MIB as f64,
            run.wall.as_secs_f64() * 1000.0,
            run.max_rss_kib as f64 / 1024.0
        );
        if !run.success {
            bail!("intake failed on the {name}: {}", run.stdout);
        }
        // Validation alone, in this process, through the same ranged S3 reads: what it costs
        // apart from the copy to accepted/ and the pipeline start in the invocation above.
        let object = shipgate::aws::s3::ObjectVersion {
            bucket: bucket.clone(),
            key: key.clone(),
            version_id: out.version_id().map(str::to_owned),
        };
        let source = CountingSource {
            inner: shipgate::aws::s3::S3RangeSource::new(s3.clone(), object, size),
            reads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        let limits = shipgate::release::Limits::default();
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let inspection = shipgate::release::inspect_release(&source, &limits).await;
            times.push(t.elapsed());
            if inspection.read_error.is_some() {
                bail!("validation could not read the {name}");
            }
        }
        times.sort();
        // The same validation reading the zip from local disk: shipgate's own cost, without
        // the S3 endpoint's latency per ranged GET.
        let file = shipgate::release::FileSource::open(path)?;
        let mut file_times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let _ = shipgate::release::inspect_release(&file, &limits).await;
            file_times.push(t.elapsed());
        }
        file_times.sort();
        validation.push(format!(
            "| {name} | {:.1} ms | {:.1} ms | {} | {:.1} KiB | {:.2} ms |",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0,
            source.reads.load(Ordering::Relaxed) / 5,
            source.bytes.load(Ordering::Relaxed) as f64 / 5.0 / 1024.0,
            file_times[file_times.len() / 2].as_secs_f64() * 1000.0
        ));
    }
    println!();
    println!("validation alone (inspect_release over ranged S3 GETs, 5 runs):");
    println!(
        "| drop | median (S3) | worst (S3) | ranged GETs per run | bytes read per run | median from local file |"
    );
    println!("|---|---|---|---|---|---|");
    for line in &validation {
        println!("{line}");
    }

    adversarial(&stack, &exe, &work, image.digest().as_str(), &mut verdicts).await?;
    let (worst_name, worst) = verdicts
        .iter()
        .max_by_key(|(_, wall)| *wall)
        .context("no drop was run")?;
    println!(
        "\nWORST verdict time: {:.0} ms ({worst_name}), over {} drops",
        worst.as_secs_f64() * 1000.0,
        verdicts.len()
    );
    println!(
        "\nintake ran as: {} invoke intake (peak RSS of that process, from wait4)",
        exe.display()
    );
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn bucket_of(stack: &Stack) -> Result<String> {
    stack.provisioned.artifact_bucket.clone().context("bucket")
}

/// Uploads the zip at `path` under `incoming/` and runs intake on its event in a child process.
/// Returns the run, its verdict and problem codes, the key, the upload's answer and the size.
async fn upload_and_invoke(
    stack: &Stack,
    exe: &Path,
    work: &Path,
    path: &Path,
) -> Result<(
    Run,
    String,
    String,
    String,
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    u64,
)> {
    let key = format!(
        "incoming/{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("x.zip")
    );
    let s3 = shipgate::aws::s3_client(&stack.sdk, true);
    let bucket = bucket_of(stack)?;
    let out = s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(aws_sdk_s3::primitives::ByteStream::from_path(path).await?)
        .send()
        .await?;
    let size = std::fs::metadata(path)?.len();
    let event = s3_put_event(
        &bucket,
        &key,
        out.version_id().unwrap_or_default(),
        size,
        out.e_tag().unwrap_or_default(),
    );
    let event_file = work.join(format!(
        "{}.event.json",
        path.file_stem().and_then(|s| s.to_str()).unwrap_or("e")
    ));
    std::fs::write(&event_file, serde_json::to_vec(&event)?)?;
    let run = run_invoke(exe, stack, &event_file)?;
    let verdict = run
        .stdout
        .find("\"outcome\": \"")
        .map(|i| {
            run.stdout[i + 12..]
                .split('"')
                .next()
                .unwrap_or("?")
                .to_owned()
        })
        .unwrap_or_else(|| "error".into());
    let codes = serde_json::from_str::<Value>(&run.stdout)
        .ok()
        .and_then(|v| v.pointer("/records/0/codes").cloned())
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    Ok((run, verdict, codes, key, out, size))
}

/// One adversarial drop: a name, its application (each its own, so that no drop overtakes or
/// conflicts with another) and its templates (path, text).
struct Adversary {
    name: &'static str,
    application: &'static str,
    templates: Vec<(String, String)>,
}

const RESOURCES: &str = "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n";

/// `head`, then `unit` repeated while the text stays within `size` bytes, then `tail`.
fn fill(head: &str, unit: &str, tail: &str, size: usize) -> String {
    let room = size.saturating_sub(head.len() + tail.len());
    let mut out = String::with_capacity(size);
    out.push_str(head);
    out.push_str(&unit.repeat(room / unit.len()));
    out.push_str(tail);
    out
}

/// The deepest list a template may hold under `Metadata.Deep` (top mapping, Metadata and Deep's
/// own list are 3 levels), in flow style: `[[[...x]]]`.
fn deepest_flow_item() -> String {
    let inner = MAX_DOCUMENT_DEPTH - 3;
    format!("{}x{}", "[".repeat(inner), "]".repeat(inner))
}

/// Templates built to cost the reader the most within the limits, and just past them.
fn adversaries(size: usize, templates: usize) -> Vec<Adversary> {
    let one = |name, application, text: String| Adversary {
        name,
        application,
        templates: vec![("templates/t.yaml".to_owned(), text)],
    };
    let deep_flow = fill(
        &format!("{RESOURCES}Metadata:\n  Deep: ["),
        &format!("{}, ", deepest_flow_item()),
        "x]\n",
        size,
    );
    let mut block_unit = String::new();
    for level in 0..MAX_DOCUMENT_DEPTH - 3 {
        block_unit.push_str(&format!("{}-\n", "  ".repeat(level + 2)));
    }
    block_unit.pop();
    block_unit.push_str(" x\n");
    let deep_block = fill(
        &format!("{RESOURCES}Metadata:\n  Deep:\n"),
        &block_unit,
        "",
        size,
    );
    let json_inner = MAX_DOCUMENT_DEPTH - 3;
    let deep_json = fill(
        "{\"Resources\": {\"Topic\": {\"Type\": \"AWS::SNS::Topic\"}}, \"Metadata\": {\"Deep\": [",
        &format!("{}1{}, ", "[".repeat(json_inner), "]".repeat(json_inner)),
        "1]}}",
        size,
    );
    let mut keys = format!("{RESOURCES}Metadata:\n");
    let mut i = 0u64;
    while keys.len() + 24 < size {
        keys.push_str(&format!("  k{i:012}: v\n"));
        i += 1;
    }
    vec![
        one(
            "max size, max nesting, YAML flow, one line",
            "deep-flow",
            deep_flow.clone(),
        ),
        one(
            "max size, max nesting, YAML block",
            "deep-block",
            deep_block,
        ),
        one("max size, max nesting, JSON", "deep-json", deep_json),
        one(
            "1 MiB of [ (past the nesting limit)",
            "open-brackets",
            "[".repeat(size),
        ),
        one(
            "1 MiB of {a: (past the nesting limit)",
            "open-braces",
            fill("Resources: ", "{a: ", "", size),
        ),
        one(
            "1 MiB of nested block lists (past the nesting limit)",
            "open-dashes",
            "- ".repeat(size / 2),
        ),
        one("1 MiB of keys in one mapping", "many-keys", keys),
        one(
            "1 MiB of keys that collide (0x1, 01, 1, ...)",
            "colliding-keys",
            fill(
                &format!("{RESOURCES}Metadata:\n"),
                "  0x01: a\n  001: b\n  1: c\n",
                "",
                size,
            ),
        ),
        one(
            "1 MiB of aliases",
            "many-aliases",
            fill(
                &format!("{RESOURCES}Metadata:\n  A: &a x\n  L: ["),
                "*a, ",
                "*a]\n",
                size,
            ),
        ),
        one(
            "1 MiB of foreign tags",
            "many-tags",
            fill(
                &format!("{RESOURCES}Metadata:\n  L: ["),
                "!!python/object x, ",
                "x]\n",
                size,
            ),
        ),
        Adversary {
            name: "max templates, each max size and max nesting",
            application: "many-templates",
            templates: (0..templates)
                .map(|i| (format!("templates/t{i}.yaml"), deep_flow.clone()))
                .collect(),
        },
    ]
}

/// Builds, uploads and runs intake on each adversarial drop; prints each verdict time.
async fn adversarial(
    stack: &Stack,
    exe: &Path,
    work: &Path,
    digest: &str,
    verdicts: &mut Vec<(String, Duration)>,
) -> Result<()> {
    let limits = Limits::default();
    let size = usize::try_from(limits.max_template_bytes)?;
    println!();
    println!(
        "adversarial documents (templates stored, not deflated: no ratio limit stops them first):"
    );
    println!(
        "| drop | templates | verdict | intake wall time | validation alone, from local file |"
    );
    println!("|---|---|---|---|---|");
    for adversary in adversaries(size, limits.max_templates as usize) {
        let release = ReleaseBuilder::new(adversary.application, "1.0.0").image(
            "web",
            "orders/web",
            "9.9.9",
            digest,
        );
        let mut manifest = release.manifest();
        manifest["templates"] = Value::Array(
            adversary
                .templates
                .iter()
                .enumerate()
                .map(|(i, (path, _))| json!({"path": path, "stack": format!("s{i}")}))
                .collect(),
        );
        let mut files: Vec<(String, Vec<u8>)> = release
            .files()
            .into_iter()
            .filter(|(name, _)| !name.starts_with("templates/"))
            .collect();
        files[0].1 = serde_json::to_vec_pretty(&manifest)?;
        for (path, text) in &adversary.templates {
            files.push((path.clone(), text.clone().into_bytes()));
        }
        let path = work.join(format!("{}.zip", adversary.application));
        write_stored_zip(&path, &files)?;
        let (run, verdict, codes, ..) = upload_and_invoke(stack, exe, work, &path).await?;
        if !run.success {
            bail!("intake failed on {}: {}", adversary.name, run.stdout);
        }
        let file = shipgate::release::FileSource::open(&path)?;
        let t = Instant::now();
        let _ = shipgate::release::inspect_release(&file, &limits).await;
        let alone = t.elapsed();
        println!(
            "| {} | {} of {:.2} MiB | {verdict}{codes} | {:.0} ms | {:.0} ms |",
            adversary.name,
            adversary.templates.len(),
            adversary.templates[0].1.len() as f64 / MIB as f64,
            run.wall.as_secs_f64() * 1000.0,
            alone.as_secs_f64() * 1000.0
        );
        verdicts.push((adversary.name.to_owned(), run.wall));
    }
    Ok(())
}

/// Writes `files` as a zip of stored (not deflated) entries.
fn write_stored_zip(path: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(std::fs::File::create(path)?));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in files {
        zip.start_file(name.as_str(), stored)?;
        zip.write_all(bytes)?;
    }
    zip.finish()?.flush()?;
    Ok(())
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn size_mib(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p)?.len() / MIB)
}

/// The release build of shipgate-local next to this binary, else the debug one.
fn shipgate_local_binary() -> Result<PathBuf> {
    let here = std::env::current_exe()?;
    let dir = here.parent().context("bench binary has a folder")?;
    let candidate = dir.join("shipgate-local");
    if candidate.exists() {
        return Ok(candidate);
    }
    bail!(
        "build shipgate-local with the same profile first: {} is missing",
        candidate.display()
    )
}

enum Payload {
    Random,
    Zeros,
}

/// Writes the release's files plus one large entry, streamed in 1 MiB chunks.
fn write_zip(
    path: &Path,
    files: &[(String, Vec<u8>)],
    big_name: &str,
    big_size: u64,
    payload: Payload,
) -> Result<()> {
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(std::fs::File::create(path)?));
    let deflate = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        zip.start_file(name.as_str(), deflate)?;
        zip.write_all(bytes)?;
    }
    let options = match payload {
        // Random data does not compress: store it, as a real release's binaries often are.
        Payload::Random => zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(big_size >= u32::MAX as u64),
        Payload::Zeros => deflate.large_file(big_size >= u32::MAX as u64),
    };
    zip.start_file(big_name, options)?;
    let mut chunk = vec![0u8; MIB as usize];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut left = big_size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        if let Payload::Random = payload {
            for b in chunk[..n].chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b.copy_from_slice(&state.to_le_bytes()[..b.len()]);
            }
        }
        zip.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    zip.finish()?.flush()?;
    Ok(())
}

/// Counts what validation reads.
struct CountingSource<S> {
    inner: S,
    reads: AtomicU64,
    bytes: AtomicU64,
}

impl<S: RangeSource + Sync> RangeSource for CountingSource<S> {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    async fn read(&self, offset: u64, len: u64) -> Result<bytes::Bytes, SourceError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len, Ordering::Relaxed);
        self.inner.read(offset, len).await
    }
}

struct Run {
    success: bool,
    stdout: String,
    wall: Duration,
    max_rss_kib: i64,
}

/// Runs `shipgate-local invoke intake --event FILE` with the stack's environment; peak RSS
/// from the child's rusage.
fn run_invoke(exe: &Path, stack: &Stack, event: &Path) -> Result<Run> {
    let state = stack.state_dir().join("bench-cli");
    std::fs::create_dir_all(&state)?;
    std::fs::write(state.join("env"), stack.env_file_contents())?;
    let stdout_path = state.join("stdout.json");
    let started = Instant::now();
    let child = std::process::Command::new(exe)
        .arg("--state-dir")
        .arg(&state)
        .args(["invoke", "intake", "--event"])
        .arg(event)
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(&stdout_path)?)
        .spawn()?;
    let usage = wait_measured(&child, started)?;
    Ok(Run {
        success: usage.success,
        stdout: std::fs::read_to_string(&stdout_path)?,
        wall: usage.wall,
        max_rss_kib: usage.max_rss_kib,
    })
}
