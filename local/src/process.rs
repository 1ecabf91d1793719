//! Child processes of the local stack: free loopback ports, children that cannot outlive their
//! owner, and readiness checks.
//!
//! Every child is started in its own process group with `PR_SET_PDEATHSIG`, so it is killed when
//! the thread that started it goes away, even if the owner is SIGKILLed; and it is killed (with
//! its group) when its [`ManagedChild`] is dropped. Tests and `shipgate-local serve` therefore
//! never leak a moto server or a registry.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// A port on 127.0.0.1 that was free a moment ago. The OS picks it, so parallel test binaries do
/// not collide.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("binding an ephemeral port")?;
    Ok(listener.local_addr()?.port())
}

/// A child process that is killed with its whole process group when dropped.
#[derive(Debug)]
pub struct ManagedChild {
    name: String,
    child: Child,
}

impl ManagedChild {
    /// Starts `program` with `args`, stdout and stderr appended to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        // SAFETY: only async-signal-safe libc calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Fails if the child has already exited (it would never become ready).
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early with {status}", self.name);
        }
        Ok(())
    }

    /// Stops the child and its group: SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(mut self) {
        self.terminate_group(libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            self.terminate_group(libc::SIGKILL);
            let _ = self.child.wait().await;
        }
    }

    fn terminate_group(&self, signal: i32) {
        if let Some(pid) = self.child.id() {
            // SAFETY: plain kill(2) on the child's own process group.
            unsafe {
                libc::kill(-(pid as i32), signal);
            }
        }
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.terminate_group(libc::SIGKILL);
    }
}

/// Waits until `url` answers any HTTP status, or fails after `timeout` naming `what` and its log.
pub async fn wait_for_http(
    child: &mut ManagedChild,
    url: &str,
    timeout: Duration,
    log: &Path,
) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if client.get(url).send().await.is_ok() {
            return Ok(());
        }
        if let Err(e) = child.check_running() {
            bail!("{e}; see {}", log.display());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{} did not answer on {url} within {timeout:?}; see {}",
                child.name,
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The repository root (where `.venv/` and `template.yaml` live): `SHIPGATE_ROOT` if set, else
/// the parent of this crate's manifest directory.
pub fn project_root() -> PathBuf {
    if let Ok(root) = std::env::var("SHIPGATE_ROOT") {
        return PathBuf::from(root);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
