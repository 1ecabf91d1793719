//! The local registries: one CNCF distribution registry (`docker-registry`) per account,
//! standing in for that account's ECR registry.
//!
//! Each runs on a free loopback port with no auth, its own storage directory under the stack's
//! state directory, a generated config file and a log file. ECR hosts are mapped to them by
//! configuration ([`endpoint_overrides`] gives `SHIPGATE_REGISTRY_ENDPOINTS`), so shipgate's
//! code talks to "`<account>.dkr.ecr.<region>.amazonaws.com`" as it would in AWS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::future::try_join_all;

use crate::process::{ManagedChild, free_port, wait_for_http_answer};

/// A header every answer of the registry carries, with a value unique to this start: what tells
/// it apart from another test's registry that took the port first.
const INSTANCE_HEADER: &str = "x-shipgate-instance";

/// How many ports to try: another process may take the free port before the registry binds it.
const START_ATTEMPTS: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running local registry for one account.
#[derive(Debug)]
pub struct LocalRegistry {
    pub account: String,
    pub port: u16,
    /// Where the registry stores blobs and manifests.
    pub storage: PathBuf,
    /// The registry's log file.
    pub log: PathBuf,
    child: ManagedChild,
}

impl LocalRegistry {
    /// Starts the registry for `account` under `state_dir/registries/<account>/` and waits until
    /// `GET /v2/` answers. Content pushed earlier to the same state directory is kept.
    pub async fn start(state_dir: &Path, account: &str) -> Result<Self> {
        let program = registry_path();
        if !program.exists() {
            bail!(
                "docker-registry not found at {}: install Debian's docker-registry (or set SHIPGATE_DOCKER_REGISTRY)",
                program.display()
            );
        }
        let dir = state_dir.join("registries").join(account);
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage)
            .with_context(|| format!("creating {}", storage.display()))?;
        let config = dir.join("config.yml");
        let log = state_dir.join(format!("registry-{account}.log"));

        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let instance = uuid::Uuid::new_v4().simple().to_string();
            std::fs::write(&config, config_yaml(&storage, port, &instance)?)
                .with_context(|| format!("writing {}", config.display()))?;
            let mut child = ManagedChild::spawn(
                &format!("registry for account {account}"),
                &program,
                &["serve", path_str(&config)?],
                &[],
                &log,
            )?;
            let url = format!("http://127.0.0.1:{port}/v2/");
            let ours = |r: &reqwest::Response| {
                r.headers()
                    .get(INSTANCE_HEADER)
                    .is_some_and(|v| v.as_bytes() == instance.as_bytes())
            };
            match wait_for_http_answer(&mut child, &url, READY_TIMEOUT, &log, ours).await {
                Ok(()) => {
                    return Ok(Self {
                        account: account.to_owned(),
                        port,
                        storage,
                        log,
                        child,
                    });
                }
                Err(e) => {
                    child.stop().await;
                    last_error = Some(e);
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("no start attempted"))
            .context(format!("starting the registry for account {account}")))
    }

    /// The registry's base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The ECR host this registry stands in for.
    pub fn ecr_host(&self, region: &str) -> String {
        ecr_host(&self.account, region)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    pub async fn stop(self) {
        self.child.stop().await;
    }
}

/// `<account>.dkr.ecr.<region>.amazonaws.com`, the host ECR's `proxyEndpoint` names.
pub fn ecr_host(account: &str, region: &str) -> String {
    format!("{account}.dkr.ecr.{region}.amazonaws.com")
}

/// Starts one registry per account, concurrently.
pub async fn start_registries(state_dir: &Path, accounts: &[&str]) -> Result<Vec<LocalRegistry>> {
    try_join_all(
        accounts
            .iter()
            .map(|account| LocalRegistry::start(state_dir, account)),
    )
    .await
}

/// The `SHIPGATE_REGISTRY_ENDPOINTS` value mapping each registry's ECR host to its URL.
pub fn endpoint_overrides(registries: &[LocalRegistry], region: &str) -> String {
    registries
        .iter()
        .map(|r| format!("{}={}", r.ecr_host(region), r.url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `SHIPGATE_DOCKER_REGISTRY`, or Debian's `/usr/bin/docker-registry`.
pub fn registry_path() -> PathBuf {
    std::env::var_os("SHIPGATE_DOCKER_REGISTRY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"))
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}

/// The registry's configuration: no auth, deletes allowed (as ECR's BatchDeleteImage allows),
/// filesystem storage, loopback only, plain-text logs on stderr (the log file).
fn config_yaml(storage: &Path, port: u16, instance: &str) -> Result<String> {
    let config = serde_json::json!({
        "version": "0.1",
        "log": {
            "level": "info",
            "formatter": "text",
            "accesslog": { "disabled": false },
        },
        "storage": {
            "filesystem": { "rootdirectory": path_str(storage)? },
            "delete": { "enabled": true },
            "maintenance": { "uploadpurging": { "enabled": false } },
        },
        "http": {
            "addr": format!("127.0.0.1:{port}"),
            // Signs upload state; set so the registry does not warn about generating one.
            "secret": "shipgate-local-registry",
            "headers": { "X-Shipgate-Instance": [instance] },
        },
    });
    Ok(serde_yaml::to_string(&config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_listens_on_loopback_without_auth_and_allows_deletes() {
        let yaml = config_yaml(Path::new("/tmp/state/registries/1/storage"), 5002, "i-1").unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(v["http"]["addr"].as_str(), Some("127.0.0.1:5002"));
        assert_eq!(v["storage"]["delete"]["enabled"].as_bool(), Some(true));
        assert_eq!(
            v["storage"]["filesystem"]["rootdirectory"].as_str(),
            Some("/tmp/state/registries/1/storage")
        );
        assert!(v.get("auth").is_none());
    }

    #[test]
    fn ecr_hosts_have_the_proxy_endpoint_shape() {
        assert_eq!(
            ecr_host("222222222222", "eu-west-1"),
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com"
        );
    }
}
