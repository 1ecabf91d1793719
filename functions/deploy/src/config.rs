//! The deploy action's configuration, read once from the environment.

use shipgate::config::{ConfigError, Env};
use shipgate::job::RetryLimit;

/// Everything the deploy action needs besides its AWS clients.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// `SHIPGATE_TABLE`: the DynamoDB table (the change sets the change-set action recorded).
    pub table: String,
    /// `SHIPGATE_DEPLOY_TIMEOUT_SECONDS` (default 3600): how long the action waits, across
    /// invocations, for the stacks to settle before it fails.
    pub timeout: RetryLimit,
    /// `SHIPGATE_TASK_SET_TIMEOUT_SECONDS` (default 900): how long the new version's ECS task
    /// set may take, after its last change, to run every task registered and healthy.
    pub task_set_timeout_seconds: u64,
}

impl DeployConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.required("SHIPGATE_TABLE")?,
            timeout: RetryLimit::at_least_one_second(
                env,
                "SHIPGATE_DEPLOY_TIMEOUT_SECONDS",
                3600,
                "the action must be allowed some time to wait",
            )?,
            task_set_timeout_seconds: env.seconds_at_least_one(
                "SHIPGATE_TASK_SET_TIMEOUT_SECONDS",
                900,
                "the task set must be allowed some time to start its tasks",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use shipgate::testing::config_checked;

    use super::*;

    #[test]
    fn defaults_apply_the_table_is_required_and_a_zero_or_malformed_timeout_is_refused() {
        let config = config_checked(
            DeployConfig::from_env,
            &[
                ("SHIPGATE_DEPLOY_TIMEOUT_SECONDS", "0"),
                ("SHIPGATE_DEPLOY_TIMEOUT_SECONDS", "an hour"),
            ],
        );
        assert_eq!(config.table, "t");
        assert_eq!(config.timeout.seconds, 3600);
        assert_eq!(config.task_set_timeout_seconds, 900);
    }
}
