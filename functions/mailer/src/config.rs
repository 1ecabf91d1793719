//! The mailer's configuration, read once from the environment. Who approves what is not here:
//! it is each application's declaration (shipgate::application), read when an approval comes.

use std::collections::BTreeMap;

use shipgate::approval::environment_suffix;
use shipgate::config::{ConfigError, Env};

/// How one environment's approvers are written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
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
    /// Every environment's sender and page.
    pub default_gate: GateConfig,
    /// `SHIPGATE_MAIL_FROM_<ENV>` and `SHIPGATE_APPROVAL_URL_<ENV>`, by the variables' suffix.
    overrides: BTreeMap<String, (Option<String>, Option<String>)>,
}

impl MailerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let default_gate = GateConfig {
            mail_from: env.required("SHIPGATE_MAIL_FROM")?,
            link_base_url: checked_url(
                "SHIPGATE_APPROVAL_URL",
                env.required("SHIPGATE_APPROVAL_URL")?,
            )?,
        };
        let mut overrides: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
        for (name, value) in env.with_prefix("SHIPGATE_MAIL_FROM_") {
            overrides.entry(name).or_default().0 = Some(value);
        }
        for (name, value) in env.with_prefix("SHIPGATE_APPROVAL_URL_") {
            let url = checked_url(&format!("SHIPGATE_APPROVAL_URL_{name}"), value)?;
            overrides.entry(name).or_default().1 = Some(url);
        }
        Ok(Self {
            table: env.required("SHIPGATE_TABLE")?,
            link_key_secret: env.required("SHIPGATE_LINK_KEY_SECRET")?,
            default_gate,
            overrides,
        })
    }

    /// How `environment`'s approvers are written to: its own variables, else every
    /// environment's.
    pub fn gate(&self, environment: &str) -> GateConfig {
        let (mail_from, link_base_url) = self
            .overrides
            .get(&environment_suffix(environment))
            .cloned()
            .unwrap_or_default();
        GateConfig {
            mail_from: mail_from.unwrap_or_else(|| self.default_gate.mail_from.clone()),
            link_base_url: link_base_url.unwrap_or_else(|| self.default_gate.link_base_url.clone()),
        }
    }
}

fn checked_url(name: &str, value: String) -> Result<String, ConfigError> {
    if value.starts_with("https://") || value.starts_with("http://") {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name: name.to_owned(),
            value,
            reason: "not an http(s) URL".into(),
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
    fn every_environment_gets_the_sender_and_page_with_its_own_overrides() {
        let config = MailerConfig::from_env(&env(&[
            ("SHIPGATE_TABLE", "t"),
            ("SHIPGATE_LINK_KEY_SECRET", "k"),
            ("SHIPGATE_MAIL_FROM", "ship@example.com"),
            ("SHIPGATE_APPROVAL_URL", "https://approve.example.com/"),
            ("SHIPGATE_MAIL_FROM_PROD", "prod-gate@example.com"),
            (
                "SHIPGATE_APPROVAL_URL_EU_PROD",
                "https://eu.approve.example.com/",
            ),
        ]))
        .unwrap();
        assert_eq!(config.gate("int").mail_from, "ship@example.com");
        assert_eq!(config.gate("prod").mail_from, "prod-gate@example.com");
        assert_eq!(
            config.gate("prod").link_base_url,
            "https://approve.example.com/"
        );
        assert_eq!(
            config.gate("eu-prod").link_base_url,
            "https://eu.approve.example.com/"
        );
        assert_eq!(config.gate("eu-prod").mail_from, "ship@example.com");
    }

    #[test]
    fn bad_configuration_names_the_variable() {
        let err = MailerConfig::from_env(&env(&[
            ("SHIPGATE_TABLE", "t"),
            ("SHIPGATE_LINK_KEY_SECRET", "k"),
            ("SHIPGATE_MAIL_FROM", "ship@example.com"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("SHIPGATE_APPROVAL_URL"), "{err}");
        let err = MailerConfig::from_env(&env(&[
            ("SHIPGATE_TABLE", "t"),
            ("SHIPGATE_LINK_KEY_SECRET", "k"),
            ("SHIPGATE_MAIL_FROM", "ship@example.com"),
            ("SHIPGATE_APPROVAL_URL", "https://approve.example.com/"),
            ("SHIPGATE_APPROVAL_URL_STG", "ftp://approve.example.com/"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("SHIPGATE_APPROVAL_URL_STG"),
            "{err}"
        );
    }
}
