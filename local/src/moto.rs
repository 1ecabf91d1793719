//! moto server: the stand-in for the AWS APIs.
//!
//! One moto process per stack, on a free loopback port, started from the project's own venv
//! (`make venv` installs the pinned `moto[server]`). Its default account (`123456789012`) is the
//! tooling account [`crate::accounts::TOOLING`]; roles assumed into the environment accounts give
//! credentials whose resources land in those accounts, as in AWS. `MOTO_ACCOUNT_ID` must not be
//! set: moto then answers every request, assumed roles included, as that one account.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::process::{ManagedChild, free_port, project_root, wait_for_http_answer};

/// Starts tried before giving up: a start fails when another process takes the port first.
const START_ATTEMPTS: usize = 3;
/// How long moto may take to answer (it imports every service's models first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    child: ManagedChild,
    port: u16,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers. Logs go to `state_dir/moto.log`.
    pub async fn start(state_dir: &Path) -> Result<Self> {
        Self::start_with(state_dir, None).await
    }

    /// As [`Moto::start`]; with `call_log`, moto also appends every request it serves to that
    /// file (`local/moto-patches/call_recording.py`, [`crate::recorder`]).
    pub async fn start_with(state_dir: &Path, call_log: Option<&Path>) -> Result<Self> {
        let program = moto_server_path();
        if !program.exists() {
            bail!(
                "moto server not found at {}: run `make venv` (or set SHIPGATE_MOTO_SERVER)",
                program.display()
            );
        }
        std::fs::create_dir_all(state_dir)?;
        let log = state_dir.join("moto.log");
        // local/moto-patches/sitecustomize.py restores AWS behaviour where moto differs.
        let patches = crate::process::project_root().join("local/moto-patches");
        let patches = patches.to_string_lossy().into_owned();
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let port_s = port.to_string();
            // The log is appended to across runs: only what this run writes is read back below.
            let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) as usize;
            // The patch answers /moto-api/shipgate/instance with this value: the moto that
            // answers on the port is this one, not another test's that took the port first.
            let instance = uuid::Uuid::new_v4().simple().to_string();
            let call_log = call_log.map(|p| p.to_string_lossy().into_owned());
            let mut env = vec![
                ("PYTHONPATH", patches.as_str()),
                ("SHIPGATE_MOTO_INSTANCE", instance.as_str()),
            ];
            if let Some(call_log) = &call_log {
                env.push(("SHIPGATE_CALL_LOG", call_log.as_str()));
            }
            let mut child = ManagedChild::spawn(
                "moto server",
                &program,
                &["-H", "127.0.0.1", "-p", &port_s],
                &env,
                &log,
            )?;
            let url = format!("http://127.0.0.1:{port}/moto-api/shipgate/instance");
            let ours = |r: &reqwest::Response| {
                r.headers()
                    .get("x-shipgate-instance")
                    .is_some_and(|v| v.as_bytes() == instance.as_bytes())
            };
            let ready = wait_for_http_answer(&mut child, &url, READY_TIMEOUT, &log, ours).await;
            // Python reports a sitecustomize that fails to import on stderr and goes on without
            // it: moto would then run unpatched (and without the instance route), and differ
            // from AWS in ways the tests rely on not.
            let written = std::fs::read(&log).unwrap_or_default();
            let started = String::from_utf8_lossy(written.get(log_start..).unwrap_or_default());
            if let Some(at) = started.find("Error in sitecustomize") {
                let excerpt: String = started[at..].chars().take(400).collect();
                child.stop().await;
                bail!("local/moto-patches/sitecustomize.py did not load in moto server: {excerpt}");
            }
            match ready {
                Ok(()) => return Ok(Self { child, port }),
                Err(e) => {
                    child.stop().await;
                    last_error = Some(e);
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("no start attempted"))
            .context("waiting for moto server"))
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Forgets every resource moto holds (`POST /moto-api/reset`).
    pub async fn reset(&self) -> Result<()> {
        reqwest::Client::new()
            .post(format!("{}/moto-api/reset", self.endpoint()))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    pub async fn stop(self) {
        self.child.stop().await;
    }
}

/// `SHIPGATE_MOTO_SERVER`, or the project venv's `moto_server`.
pub fn moto_server_path() -> PathBuf {
    std::env::var("SHIPGATE_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|_| project_root().join(".venv/bin/moto_server"))
}
