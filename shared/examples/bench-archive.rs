//! Bench: the verdict time of release validation on the largest archives the default limits
//! let through, every entry of which must be decompressed and checked (issue 16).
//!
//! Writes, streamed to a temporary file, a good release plus filler entries up to the entry
//! limit (10 000) and the size limit (2 GiB) or the uncompressed limit (4 GiB at a ratio just
//! under 100), then runs `inspect_release` on it from local disk on one thread and prints its
//! wall and CPU time and the process's peak RSS. From local disk, so the figure is the CPU cost
//! that Lambda scales with memory; S3's transfer time comes on top.
//!
//! Run: `cargo run --release -p shipgate --example bench-archive` (`make bench-archive`).
//! `SHIPGATE_BENCH_ARCHIVE_MIB` (default 2040) sets the archive size, `SHIPGATE_BENCH_ENTRIES`
//! (default 10 000) the entries, `SHIPGATE_BENCH_ONLY` one case by name.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::DeflateEncoder;
use shipgate::release::{FileSource, Limits, inspect_release};

const MIB: u64 = 1 << 20;

/// A minimal manifest, template and checks file: a release the validator accepts.
fn release_files() -> Vec<(String, Vec<u8>)> {
    let manifest = serde_json::json!({
        "schema_version": "shipgate.release/v1",
        "application": "orders",
        "version": "9.9.9",
        "message": "Bench release.",
        "integrator": {"name": "Bench", "email": "bench@example.com"},
        "images": [{"name": "web", "repository": "orders/web", "tag": "9.9.9",
                    "digest": format!("sha256:{}", "a".repeat(64))}],
        "templates": [{"path": "templates/service.yaml", "stack": "service",
                       "parameters": {"ImageUri": "${image.web.uri}"}}]
    });
    let template = "Parameters:\n  ImageUri: {Type: String}\nResources:\n  Topic:\n    Type: AWS::SNS::Topic\n";
    vec![
        (
            "release.json".into(),
            serde_json::to_vec_pretty(&manifest).expect("json"),
        ),
        (
            "templates/service.yaml".into(),
            template.as_bytes().to_vec(),
        ),
    ]
}

/// One filler entry's content: stored, or deflated, with its CRC and sizes.
struct Payload {
    method: u16,
    data: Vec<u8>,
    crc: u32,
    uncompressed: u64,
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).expect("in memory");
    e.finish().expect("in memory")
}

/// Data of `n` bytes whose deflate ratio is just under `ratio`: one random byte every `period`.
fn compressible(n: usize, ratio: u64) -> (Vec<u8>, Vec<u8>) {
    let mut period = 400;
    loop {
        let random = noise(n, 7);
        let data: Vec<u8> = (0..n)
            .map(|i| if i % period == 0 { random[i] } else { b'x' })
            .collect();
        let packed = deflate(&data);
        if (data.len() as u64) < ratio * packed.len() as u64 || period < 2 {
            return (data, packed);
        }
        period = period * 9 / 10;
    }
}

/// Writes the release files, then `count` copies of `payload`, then the directory.
fn write_zip(path: &Path, count: u32, payload: &Payload) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut central = Vec::new();
    let mut at = 0u64;
    let mut entry = |out: &mut BufWriter<std::fs::File>,
                     name: &str,
                     method: u16,
                     data: &[u8],
                     crc: u32,
                     uncompressed: u64|
     -> std::io::Result<()> {
        let fields = |buf: &mut Vec<u8>| {
            buf.extend(20u16.to_le_bytes());
            buf.extend(0u16.to_le_bytes());
            buf.extend(method.to_le_bytes());
            buf.extend([0u8; 4]);
            buf.extend(crc.to_le_bytes());
            buf.extend((data.len() as u32).to_le_bytes());
            buf.extend((uncompressed as u32).to_le_bytes());
            buf.extend((name.len() as u16).to_le_bytes());
            buf.extend(0u16.to_le_bytes());
        };
        let mut local = 0x0403_4b50u32.to_le_bytes().to_vec();
        fields(&mut local);
        local.extend(name.as_bytes());
        out.write_all(&local)?;
        out.write_all(data)?;
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes());
        fields(&mut central);
        central.extend([0u8; 10]);
        central.extend((at as u32).to_le_bytes());
        central.extend(name.as_bytes());
        at += local.len() as u64 + data.len() as u64;
        Ok(())
    };
    let files = release_files();
    for (name, data) in &files {
        entry(
            &mut out,
            name,
            0,
            data,
            crc32fast::hash(data),
            data.len() as u64,
        )?;
    }
    for i in 0..count {
        let name = format!("assets/{i:05}.bin");
        entry(
            &mut out,
            &name,
            payload.method,
            &payload.data,
            payload.crc,
            payload.uncompressed,
        )?;
    }
    let entries = count as usize + files.len();
    out.write_all(&central)?;
    out.write_all(&0x0605_4b50u32.to_le_bytes())?;
    out.write_all(&[0u8; 4])?;
    out.write_all(&(entries as u16).to_le_bytes())?;
    out.write_all(&(entries as u16).to_le_bytes())?;
    out.write_all(&(central.len() as u32).to_le_bytes())?;
    out.write_all(&(at as u32).to_le_bytes())?;
    out.write_all(&0u16.to_le_bytes())?;
    out.flush()?;
    Ok(at + central.len() as u64 + 22)
}

fn cpu_time() -> Duration {
    // SAFETY: a zeroed rusage is a valid value for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the calling thread's own usage, into a valid struct.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn peak_rss_mib() -> f64 {
    // SAFETY: as above, for the process.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> std::io::Result<()> {
    let limits = Limits::default();
    let entries = env_or("SHIPGATE_BENCH_ENTRIES", u64::from(limits.max_entries)) as u32 - 2;
    let archive = env_or("SHIPGATE_BENCH_ARCHIVE_MIB", 2040) * MIB;
    let only = std::env::var("SHIPGATE_BENCH_ONLY").ok();
    let per_entry = (archive / u64::from(entries)) as usize - 60;
    let per_entry_uncompressed =
        ((limits.max_total_uncompressed_bytes - MIB) / u64::from(entries)) as usize;

    let stored = noise(per_entry, 1);
    let random_deflated = deflate(&noise(per_entry, 2));
    let (bomb_data, bomb_packed) = compressible(per_entry_uncompressed, 95);
    // Random letters of an 8-letter alphabet: all literals, so inflate decodes every byte
    // through its Huffman tables (its slowest path), at a ratio (~2.6) that fits the 4 GiB
    // limit of uncompressed bytes into the 2 GiB limit of the archive.
    let letters: Vec<u8> = noise(per_entry_uncompressed, 3)
        .iter()
        .map(|b| b"abcdefgh"[usize::from(b % 8)])
        .collect();
    let letters_packed = deflate(&letters);
    let cases = [
        (
            "stored",
            Payload {
                method: 0,
                crc: crc32fast::hash(&stored),
                uncompressed: stored.len() as u64,
                data: stored,
            },
        ),
        (
            "deflated-incompressible",
            Payload {
                method: 8,
                crc: crc32fast::hash(&noise(per_entry, 2)),
                uncompressed: per_entry as u64,
                data: random_deflated,
            },
        ),
        (
            "deflated-literals-to-4GiB",
            Payload {
                method: 8,
                crc: crc32fast::hash(&letters),
                uncompressed: letters.len() as u64,
                data: letters_packed,
            },
        ),
        (
            "deflated-ratio-95-to-4GiB",
            Payload {
                method: 8,
                crc: crc32fast::hash(&bomb_data),
                uncompressed: bomb_data.len() as u64,
                data: bomb_packed,
            },
        ),
    ];
    println!(
        "| archive | entries | object size | uncompressed | verdict | wall | CPU (one thread) | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let path =
        std::env::temp_dir().join(format!("shipgate-bench-archive-{}.zip", std::process::id()));
    for (name, payload) in &cases {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let size = write_zip(&path, entries, payload)?;
        let source = FileSource::open(&path)?;
        let (wall, cpu) = (Instant::now(), cpu_time());
        let inspection = futures::executor::block_on(inspect_release(&source, &limits));
        let (wall, cpu) = (wall.elapsed(), cpu_time() - cpu);
        let verdict = if inspection.is_acceptable() {
            "accepted".to_owned()
        } else {
            let codes: Vec<_> = inspection
                .problems
                .iter()
                .map(|p| p.code.as_str())
                .collect();
            format!("rejected {codes:?}")
        };
        println!(
            "| {name} | {} | {:.1} MiB | {:.1} MiB | {verdict} | {:.2} s | {:.2} s | {:.1} MiB |",
            entries + 2,
            size as f64 / MIB as f64,
            (payload.uncompressed * u64::from(entries)) as f64 / MIB as f64,
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            peak_rss_mib()
        );
        std::fs::remove_file(&path)?;
    }
    Ok(())
}
