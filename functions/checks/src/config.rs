//! The checks action's configuration, read once from the environment.

use shipgate::config::{ConfigError, Env};
use shipgate::job::RetryLimit;
use shipgate::job::artifact::ArtifactConfig;

/// Everything the checks action needs besides its clients.
#[derive(Debug, Clone)]
pub struct ChecksConfig {
    /// The release table (the artifact must be the release intake recorded), S3's addressing
    /// and the limits the release artifact is re-validated against.
    pub artifact: ArtifactConfig,
    /// `SHIPGATE_CHECK_ATTEMPTS` (default 3, 1 to 10): tries per check when the endpoint cannot
    /// be reached, times out or answers 5xx (and 5xx is not what the check expects).
    pub attempts: u32,
    /// `SHIPGATE_CHECKS_INVOCATION_SECONDS` (default 120): the work one invocation may do; a
    /// check that could end past it is left to the next invocation (continuation token).
    pub invocation_seconds: u64,
    /// `SHIPGATE_CHECKS_RETRY_SECONDS` (default 600): how long temporary failures reading the
    /// release (S3, the table) are retried, across invocations, before the action fails.
    pub retry: RetryLimit,
}

impl ChecksConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let attempts = env.parsed_within(
            "SHIPGATE_CHECK_ATTEMPTS",
            3,
            1..=10,
            "from 1 to 10 tries per check",
        )?;
        let invocation_seconds = env.parsed_within(
            "SHIPGATE_CHECKS_INVOCATION_SECONDS",
            120,
            10..=800,
            "from 10 to 800 seconds (well under the function's timeout)",
        )?;
        Ok(Self {
            artifact: ArtifactConfig::from_env(env)?,
            attempts,
            invocation_seconds,
            retry: RetryLimit::from_env(env, "SHIPGATE_CHECKS_RETRY_SECONDS", 600)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use shipgate::testing::config_checked;

    use super::*;

    #[test]
    fn defaults_apply_and_bounds_are_enforced_by_name() {
        let config = config_checked(
            ChecksConfig::from_env,
            &[
                ("SHIPGATE_CHECK_ATTEMPTS", "0"),
                ("SHIPGATE_CHECK_ATTEMPTS", "many"),
                ("SHIPGATE_CHECKS_INVOCATION_SECONDS", "5"),
            ],
        );
        assert_eq!(config.attempts, 3);
        assert_eq!(config.invocation_seconds, 120);
    }
}
