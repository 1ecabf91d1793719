//! The promote action's configuration, read once from the environment.

use std::collections::BTreeMap;
use std::time::Duration;

use shipgate::config::{ConfigError, Env};
use shipgate::job::RetryLimit;
use shipgate::registry::{DEFAULT_CHUNK_BYTES, UploadMode};

const MIB: u64 = 1024 * 1024;
const MAX_CONCURRENCY: usize = 16;

/// Everything the promote action needs besides its AWS clients.
#[derive(Debug, Clone)]
pub struct PromoteConfig {
    /// `SHIPGATE_TABLE`: the DynamoDB table (releases, promotions).
    pub table: String,
    /// `SHIPGATE_REGISTRY_ENDPOINTS`: `ecr-host=url` overrides (empty in AWS).
    pub registry_endpoints: BTreeMap<String, String>,
    /// `SHIPGATE_PROMOTE_CONCURRENCY` (default 4, at most 16): blobs copied at once.
    pub concurrency: usize,
    /// `SHIPGATE_PROMOTE_UPLOAD` (`chunked`, the default, or `monolithic`) and
    /// `SHIPGATE_PROMOTE_CHUNK_MIB` (default 8, 5 to 10): how blobs are uploaded.
    pub upload: UploadMode,
    /// `SHIPGATE_PROMOTE_BUDGET_SECONDS` (default 600, decimals allowed): after this long in
    /// one invocation no new blob copy starts; the action answers with a continuation token
    /// and resumes where it stopped. Keep it well under the function's timeout: a blob that
    /// started is finished in the same invocation.
    pub budget: Duration,
    /// `SHIPGATE_PROMOTE_TIMEOUT_SECONDS` (default 3600): how long temporary failures
    /// (throttling, 5xx, timeouts) are retried, across invocations, before the action fails.
    pub timeout: RetryLimit,
}

impl PromoteConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let invalid = |name: &str, value: String, reason: &str| ConfigError::Invalid {
            name: name.into(),
            value,
            reason: reason.into(),
        };
        let concurrency = env.parsed_within(
            "SHIPGATE_PROMOTE_CONCURRENCY",
            4,
            1..=MAX_CONCURRENCY,
            "blobs copied at once: 1 to 16",
        )?;
        let chunk_mib: u64 =
            env.parsed_or("SHIPGATE_PROMOTE_CHUNK_MIB", DEFAULT_CHUNK_BYTES / MIB)?;
        let upload = match env.or("SHIPGATE_PROMOTE_UPLOAD", "chunked").as_str() {
            "chunked" => UploadMode::chunked(chunk_mib * MIB).map_err(|e| {
                invalid(
                    "SHIPGATE_PROMOTE_CHUNK_MIB",
                    chunk_mib.to_string(),
                    &e.to_string(),
                )
            })?,
            "monolithic" => UploadMode::Monolithic,
            other => {
                return Err(invalid(
                    "SHIPGATE_PROMOTE_UPLOAD",
                    other.to_owned(),
                    "expected chunked or monolithic",
                ));
            }
        };
        let budget: f64 = env.parsed_or("SHIPGATE_PROMOTE_BUDGET_SECONDS", 600.0)?;
        let budget = Duration::try_from_secs_f64(budget).map_err(|_| {
            invalid(
                "SHIPGATE_PROMOTE_BUDGET_SECONDS",
                budget.to_string(),
                "expected a number of seconds, 0 or more",
            )
        })?;
        let timeout = RetryLimit::at_least_one_second(
            env,
            "SHIPGATE_PROMOTE_TIMEOUT_SECONDS",
            3600,
            "temporary failures must be allowed some time",
        )?;
        Ok(Self {
            table: env.required("SHIPGATE_TABLE")?,
            registry_endpoints: env.map("SHIPGATE_REGISTRY_ENDPOINTS")?,
            concurrency,
            upload,
            budget,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use shipgate::testing::config_checked;

    use super::*;

    #[test]
    fn defaults_apply_the_table_is_required_and_values_outside_their_range_are_refused() {
        let config = config_checked(
            PromoteConfig::from_env,
            &[
                ("SHIPGATE_PROMOTE_CONCURRENCY", "0"),
                ("SHIPGATE_PROMOTE_CONCURRENCY", "64"),
                ("SHIPGATE_PROMOTE_CHUNK_MIB", "4"),
                ("SHIPGATE_PROMOTE_CHUNK_MIB", "11"),
                ("SHIPGATE_PROMOTE_UPLOAD", "parallel"),
                ("SHIPGATE_PROMOTE_BUDGET_SECONDS", "-1"),
                ("SHIPGATE_PROMOTE_BUDGET_SECONDS", "soon"),
                ("SHIPGATE_PROMOTE_TIMEOUT_SECONDS", "0"),
            ],
        );
        assert_eq!(config.table, "t");
        assert!(config.registry_endpoints.is_empty());
        assert_eq!(config.concurrency, 4);
        assert_eq!(
            config.upload,
            UploadMode::Chunked {
                chunk_bytes: 8 * MIB
            }
        );
        assert_eq!(config.budget, Duration::from_secs(600));
        assert_eq!(config.timeout.seconds, 3600);
    }

    #[test]
    fn upload_concurrency_and_budget_are_configurable() {
        let config = PromoteConfig::from_env(&Env::from_pairs([
            ("SHIPGATE_TABLE", "t"),
            (
                "SHIPGATE_REGISTRY_ENDPOINTS",
                "333333333333.dkr.ecr.eu-west-1.amazonaws.com=http://127.0.0.1:5003",
            ),
            ("SHIPGATE_PROMOTE_CONCURRENCY", "2"),
            ("SHIPGATE_PROMOTE_UPLOAD", "monolithic"),
            ("SHIPGATE_PROMOTE_BUDGET_SECONDS", "0.5"),
        ]))
        .unwrap();
        assert_eq!(config.concurrency, 2);
        assert_eq!(config.upload, UploadMode::Monolithic);
        assert_eq!(config.budget, Duration::from_millis(500));
        assert_eq!(
            config.registry_endpoints["333333333333.dkr.ecr.eu-west-1.amazonaws.com"],
            "http://127.0.0.1:5003"
        );
        let chunked = PromoteConfig::from_env(&Env::from_pairs([
            ("SHIPGATE_TABLE", "t"),
            ("SHIPGATE_PROMOTE_CHUNK_MIB", "5"),
        ]))
        .unwrap();
        assert_eq!(
            chunked.upload,
            UploadMode::Chunked {
                chunk_bytes: 5 * MIB
            }
        );
    }
}
