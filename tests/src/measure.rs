//! What the benches measure of a child process (`shipgate-local invoke`, skopeo): its wall
//! time, peak RSS and CPU time as `wait4` reports them, so this process's own memory is not in
//! them; and the benches' knobs from the environment.

use std::process::Child;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How a child's run went.
#[derive(Debug, Clone, Copy)]
pub struct ChildUsage {
    /// It exited with status 0.
    pub success: bool,
    pub wall: Duration,
    pub max_rss_kib: i64,
    /// User + system CPU time.
    pub cpu: Duration,
}

/// Waits for `child`, started at `started`, to end (blocking this thread only).
pub fn wait_measured(child: &Child, started: Instant) -> Result<ChildUsage> {
    let mut status = 0i32;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if pid < 0 {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    Ok(ChildUsage {
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        wall,
        max_rss_kib: usage.ru_maxrss,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
    })
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// A comma-separated list from the environment variable `name`, `default` when unset.
pub fn env_list<T>(name: &str, default: &str) -> Result<Vec<T>>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().parse::<T>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{name}: a comma-separated list"))
}
