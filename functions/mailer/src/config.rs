//! The mailer's configuration, read once from the environment.

use std::collections::BTreeMap;

use shipgate::approval::{approvers_from_env, environment_suffix, environments_from_env};
use shipgate::config::{ConfigError, Env};

/// Who approves one environment, and how they are written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    /// `SHIPGATE_APPROVERS_<ENV>`: comma-separated email addresses.
    pub approvers: Vec<String>,
    /// `SHIPGATE_MAIL_FROM_<ENV>`, else `SHIPGATE_MAIL_FROM`.
    pub mail_from: String,
    /// `SHIPGATE_APPROVAL_URL_<ENV>`, else `SHIPGATE_APPROVAL_URL`: the approval page's URL
    /// (its function URL), which the links point at.
    pub link_base_url: String,
}

/// Everything the mailer needs besides its AWS clients.
#[derive(Debug, Clone)]
pub struct MailerConfig {
    /// `SHIPGATE_TABLE`.
    pub table: String,
    /// `SHIPGATE_LINK_KEY_SECRET`: the Secrets Manager secret (name or ARN) links are signed with.
    pub link_key_secret: String,
    /// `SHIPGATE_ENVIRONMENTS` (default `int,stg,prod`): the environments in pipeline order,
    /// which the stages' names are read against ([`shipgate::approval::gated_environment`]).
    pub environments: Vec<String>,
    /// Per environment, those that have approvers configured.
    pub gates: BTreeMap<String, GateConfig>,
}

impl MailerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        // `{name}_{suffix}`, or else `{name}` (every environment's); missing: `{name}` is.
        let per_environment = |name: &str, suffix: &str| {
            env.optional(&format!("{name}_{suffix}"))
                .or_else(|| env.optional(name))
                .map(str::to_owned)
                .ok_or_else(|| ConfigError::Missing { name: name.into() })
        };
        let environments = environments_from_env(env);
        let mut gates = BTreeMap::new();
        for name in &environments {
            let suffix = environment_suffix(name);
            let approvers = approvers_from_env(env, name)?;
            if approvers.is_empty() {
                continue;
            }
            let mail_from = per_environment("SHIPGATE_MAIL_FROM", &suffix)?;
            let link_base_url = per_environment("SHIPGATE_APPROVAL_URL", &suffix)?;
            if !(link_base_url.starts_with("https://") || link_base_url.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    name: format!("SHIPGATE_APPROVAL_URL_{suffix}"),
                    value: link_base_url,
                    reason: "not an http(s) URL".into(),
                });
            }
            gates.insert(
                name.clone(),
                GateConfig {
                    approvers,
                    mail_from,
                    link_base_url,
                },
            );
        }
        Ok(Self {
            table: env.required("SHIPGATE_TABLE")?,
            link_key_secret: env.required("SHIPGATE_LINK_KEY_SECRET")?,
            environments,
            gates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn environments_with_approvers_get_a_gate_with_fallbacks() {
        let config = MailerConfig::from_env(&env(&[
            ("SHIPGATE_TABLE", "t"),
            ("SHIPGATE_LINK_KEY_SECRET", "k"),
            ("SHIPGATE_MAIL_FROM", "ship@example.com"),
            ("SHIPGATE_APPROVAL_URL", "https://approve.example.com/"),
            (
                "SHIPGATE_APPROVERS_INT",
                "a@example.com, b@example.com,A@example.com",
            ),
            ("SHIPGATE_APPROVERS_PROD", "cab@example.com"),
            ("SHIPGATE_MAIL_FROM_PROD", "prod-gate@example.com"),
        ]))
        .unwrap();
        assert_eq!(config.gates.keys().collect::<Vec<_>>(), ["int", "prod"]);
        assert_eq!(
            config.gates["int"].approvers,
            ["a@example.com", "b@example.com"]
        );
        assert_eq!(config.gates["int"].mail_from, "ship@example.com");
        assert_eq!(config.gates["prod"].mail_from, "prod-gate@example.com");
        assert_eq!(
            config.gates["prod"].link_base_url,
            "https://approve.example.com/"
        );
    }

    #[test]
    fn bad_configuration_names_the_variable() {
        let err = MailerConfig::from_env(&env(&[
            ("SHIPGATE_TABLE", "t"),
            ("SHIPGATE_LINK_KEY_SECRET", "k"),
            ("SHIPGATE_MAIL_FROM", "ship@example.com"),
            ("SHIPGATE_APPROVAL_URL", "https://approve.example.com/"),
            ("SHIPGATE_APPROVERS_STG", "not-an-address"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("SHIPGATE_APPROVERS_STG"), "{err}");
        let err = MailerConfig::from_env(&env(&[
            ("SHIPGATE_TABLE", "t"),
            ("SHIPGATE_LINK_KEY_SECRET", "k"),
            ("SHIPGATE_MAIL_FROM", "ship@example.com"),
            ("SHIPGATE_APPROVERS_INT", "a@example.com"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("SHIPGATE_APPROVAL_URL"), "{err}");
    }
}
