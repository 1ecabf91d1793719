//! The change-set action's configuration, read once from the environment.

use shipgate::config::{ConfigError, Env};
use shipgate::release::Limits;

/// Everything the change-set action needs besides its AWS clients.
#[derive(Debug, Clone)]
pub struct ChangeSetConfig {
    /// `SHIPGATE_TABLE`: the DynamoDB table (releases, change summaries).
    pub table: String,
    /// `SHIPGATE_S3_FORCE_PATH_STYLE` (default false).
    pub s3_force_path_style: bool,
    /// `SHIPGATE_CHANGE_SET_TIMEOUT_SECONDS` (default 1800): how long the action waits, across
    /// invocations, for CloudFormation to finish computing the change sets before it fails.
    pub timeout_seconds: u64,
    /// Limits the release artifact is re-validated against (`SHIPGATE_MAX_*`, as intake).
    pub limits: Limits,
}

impl ChangeSetConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let timeout_seconds = env.parsed_within(
            "SHIPGATE_CHANGE_SET_TIMEOUT_SECONDS",
            1800,
            1..=u64::MAX,
            "the action must be allowed some time to wait",
        )?;
        Ok(Self {
            table: env.required("SHIPGATE_TABLE")?,
            s3_force_path_style: env.parsed_or("SHIPGATE_S3_FORCE_PATH_STYLE", false)?,
            timeout_seconds,
            limits: Limits::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_the_table_is_required() {
        let config =
            ChangeSetConfig::from_env(&Env::from_pairs([("SHIPGATE_TABLE", "t")])).expect("valid");
        assert_eq!(config.table, "t");
        assert!(!config.s3_force_path_style);
        assert_eq!(config.timeout_seconds, 1800);
        assert_eq!(config.limits, Limits::default());

        let err = ChangeSetConfig::from_env(&Env::default()).unwrap_err();
        assert!(err.to_string().contains("SHIPGATE_TABLE"));
    }

    #[test]
    fn a_zero_or_malformed_timeout_is_refused_by_name() {
        for value in ["0", "soon"] {
            let env = Env::from_pairs([
                ("SHIPGATE_TABLE", "t"),
                ("SHIPGATE_CHANGE_SET_TIMEOUT_SECONDS", value),
            ]);
            let err = ChangeSetConfig::from_env(&env).unwrap_err();
            assert!(
                err.to_string()
                    .contains("SHIPGATE_CHANGE_SET_TIMEOUT_SECONDS"),
                "{err}"
            );
        }
    }
}
