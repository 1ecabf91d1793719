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
    wait_for_http_answer(child, url, timeout, log, |_| true).await
}

/// Waits until `url` answers 2xx with a response `ours` accepts, while `child` runs. A free port
/// is only free when it is picked: another test's server can take it before `child` binds it,
/// and `child` then exits while the other one answers. `ours` tells the two apart (a marker
/// the child was started with), so the answer of a squatter is never taken for the child's.
pub async fn wait_for_http_answer(
    child: &mut ManagedChild,
    url: &str,
    timeout: Duration,
    log: &Path,
    ours: impl Fn(&reqwest::Response) -> bool,
) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            if ours(&response) {
                return Ok(());
            }
            bail!(
                "another server answers on {url} (the port was taken before {} bound it)",
                child.name
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on the port that is not the child (it answers without the child's marker) is
    /// an error, not the child being ready.
    #[tokio::test]
    async fn an_answer_without_the_childs_marker_is_a_squatter_not_the_child() {
        let squatter = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let url = format!("http://{}/", squatter.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(|| async { ([("x-shipgate-instance", "someone-else")], "ok") }),
        );
        let server = tokio::spawn(async move { axum::serve(squatter, app).await });
        let dir = std::env::temp_dir().join(format!("shipgate-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("sleep.log");
        let mut child =
            ManagedChild::spawn("sleeper", Path::new("/bin/sleep"), &["30"], &[], &log).unwrap();
        let marker = |r: &reqwest::Response| {
            r.headers()
                .get("x-shipgate-instance")
                .is_some_and(|v| v.as_bytes() == b"mine")
        };
        let error = wait_for_http_answer(&mut child, &url, Duration::from_secs(5), &log, marker)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("another server answers"),
            "{error}"
        );
        let accepted = wait_for_http_answer(&mut child, &url, Duration::from_secs(5), &log, |r| {
            r.headers().get("x-shipgate-instance").is_some()
        })
        .await;
        assert!(accepted.is_ok());
        child.stop().await;
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
