//! The change-set action's configuration, read once from the environment.

use shipgate::config::{ConfigError, Env};
use shipgate::job::RetryLimit;
use shipgate::job::artifact::ArtifactConfig;

/// Everything the change-set action needs besides its AWS clients.
#[derive(Debug, Clone)]
pub struct ChangeSetConfig {
    /// The release table (releases, change summaries), S3's addressing and the limits the
    /// release artifact is re-validated against.
    pub artifact: ArtifactConfig,
    /// `SHIPGATE_CHANGE_SET_TIMEOUT_SECONDS` (default 1800): how long the action waits, across
    /// invocations, for CloudFormation to finish computing the change sets before it fails.
    pub timeout: RetryLimit,
}

impl ChangeSetConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            timeout: RetryLimit::at_least_one_second(
                env,
                "SHIPGATE_CHANGE_SET_TIMEOUT_SECONDS",
                1800,
                "the action must be allowed some time to wait",
            )?,
            artifact: ArtifactConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use shipgate::release::Limits;
    use shipgate::testing::config_checked;

    use super::*;

    #[test]
    fn defaults_apply_the_table_is_required_and_a_zero_or_malformed_timeout_is_refused() {
        let config = config_checked(
            ChangeSetConfig::from_env,
            &[
                ("SHIPGATE_CHANGE_SET_TIMEOUT_SECONDS", "0"),
                ("SHIPGATE_CHANGE_SET_TIMEOUT_SECONDS", "soon"),
            ],
        );
        assert_eq!(config.artifact.table, "t");
        assert!(!config.artifact.s3_force_path_style);
        assert_eq!(config.timeout.seconds, 1800);
        assert_eq!(config.artifact.limits, Limits::default());
    }
}
