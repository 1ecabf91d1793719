//! moto server: the stand-in for the AWS APIs.
//!
//! One moto process per stack, on a free loopback port, started from the project's own venv
//! (`make venv` installs the pinned `moto[server]`). Its default account (`123456789012`) is the
//! tooling account [`crate::accounts::TOOLING`]; roles assumed into the environment accounts give
//! credentials whose resources land in those accounts, as in AWS. `MOTO_ACCOUNT_ID` must not be
//! set: moto then answers every request, assumed roles included, as that one account.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{ManagedChild, free_port, project_root, wait_for_http};

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    child: ManagedChild,
    port: u16,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers. Logs go to `state_dir/moto.log`.
    pub async fn start(state_dir: &Path) -> Result<Self> {
        let program = moto_server_path();
        if !program.exists() {
            bail!(
                "moto server not found at {}: run `make venv` (or set SHIPGATE_MOTO_SERVER)",
                program.display()
            );
        }
        std::fs::create_dir_all(state_dir)?;
        let port = free_port()?;
        let log = state_dir.join("moto.log");
        let port_s = port.to_string();
        // The log is appended to across runs: only what this run writes is read back below.
        let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) as usize;
        // local/moto-patches/sitecustomize.py restores AWS behaviour where moto differs.
        let patches = crate::process::project_root().join("local/moto-patches");
        let patches = patches.to_string_lossy().into_owned();
        let mut child = ManagedChild::spawn(
            "moto server",
            &program,
            &["-H", "127.0.0.1", "-p", &port_s],
            &[("PYTHONPATH", patches.as_str())],
            &log,
        )?;
        let url = format!("http://127.0.0.1:{port}");
        wait_for_http(
            &mut child,
            &format!("{url}/moto-api/"),
            Duration::from_secs(60),
            &log,
        )
        .await
        .context("waiting for moto server")?;
        // Python reports a sitecustomize that fails to import on stderr and goes on without it:
        // moto would then run unpatched, and differ from AWS in ways the tests rely on not.
        let written = std::fs::read(&log).unwrap_or_default();
        let started = String::from_utf8_lossy(written.get(log_start..).unwrap_or_default());
        if let Some(at) = started.find("Error in sitecustomize") {
            let excerpt: String = started[at..].chars().take(400).collect();
            child.stop().await;
            bail!("local/moto-patches/sitecustomize.py did not load in moto server: {excerpt}");
        }
        Ok(Self { child, port })
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
