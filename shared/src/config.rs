//! Configuration, read once from the environment at start-up into typed structs.
//!
//! Each function has its own config struct built from [`Env`]; a missing or malformed variable is
//! a start-up error that names the variable. The AWS SDK's own variables (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`) are not read here: `aws-config` reads them
//! as AWS documents, which is how the local stack points the functions at its stand-ins.

use std::collections::BTreeMap;
use std::str::FromStr;

/// A configuration problem found at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is required but not set")]
    Missing { name: String },
    #[error("environment variable {name}={value:?} is not valid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

/// A source of configuration variables: the process environment in Lambda, a map in tests.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Snapshot of the process environment.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    /// An explicit set of variables (tests, the local runner).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    /// Every variable named `<prefix><suffix>` that is set and not empty, as `(suffix, value)`:
    /// per-environment variables (`SHIPGATE_MAIL_FROM_PROD`).
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .filter_map(|(k, v)| {
                k.strip_prefix(prefix)
                    .filter(|suffix| !suffix.is_empty())
                    .map(|suffix| (suffix.to_owned(), v.clone()))
            })
            .collect()
    }

    /// The value if set and not empty.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.optional(name)
            .map(str::to_owned)
            .ok_or_else(|| ConfigError::Missing { name: name.into() })
    }

    pub fn or(&self, name: &str, default: &str) -> String {
        self.optional(name).unwrap_or(default).to_owned()
    }

    /// A parsed value, or `default` when unset.
    pub fn parsed_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name: name.into(),
                    value: raw.into(),
                    reason: e.to_string(),
                }),
        }
    }

    /// A parsed value within `range`, or `default` when unset; `reason` says what the range
    /// is for ("from 1 to 10 tries per check").
    pub fn parsed_within<T>(
        &self,
        name: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
        reason: &str,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + std::fmt::Display,
        T::Err: std::fmt::Display,
    {
        let value = self.parsed_or(name, default)?;
        if !range.contains(&value) {
            return Err(ConfigError::Invalid {
                name: name.into(),
                value: value.to_string(),
                reason: reason.into(),
            });
        }
        Ok(value)
    }

    /// A number of seconds, 1 or more, or `default` when unset: how long an action may wait or
    /// retry, where 0 would fail every job at once; `reason` says so in the variable's terms.
    pub fn seconds_at_least_one(
        &self,
        name: &str,
        default: u64,
        reason: &str,
    ) -> Result<u64, ConfigError> {
        self.parsed_within(name, default, 1..=u64::MAX, reason)
    }

    /// A `key=value,key=value` map (e.g. registry endpoint overrides); empty when unset.
    pub fn map(&self, name: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut out = BTreeMap::new();
        let Some(raw) = self.optional(name) else {
            return Ok(out);
        };
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| ConfigError::Invalid {
                name: name.into(),
                value: raw.into(),
                reason: format!("{pair:?} is not key=value"),
            })?;
            out.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_named() {
        let env = Env::default();
        let err = env.required("SHIPGATE_TABLE").unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable SHIPGATE_TABLE is required but not set"
        );
    }

    #[test]
    fn a_malformed_number_names_variable_and_value() {
        let env = Env::from_pairs([("SHIPGATE_MAX_ZIP_BYTES", "lots")]);
        let err = env
            .parsed_or::<u64>("SHIPGATE_MAX_ZIP_BYTES", 1)
            .unwrap_err();
        assert!(err.to_string().contains("SHIPGATE_MAX_ZIP_BYTES=\"lots\""));
        assert_eq!(env.parsed_or::<u64>("OTHER", 7).unwrap(), 7);
    }

    #[test]
    fn maps_parse_and_reject_bad_pairs() {
        let env = Env::from_pairs([("M", "a=1, b = 2"), ("BAD", "a=1,b")]);
        let m = env.map("M").unwrap();
        assert_eq!(m.get("b").map(String::as_str), Some("2"));
        assert!(env.map("BAD").is_err());
        assert!(env.map("UNSET").unwrap().is_empty());
    }
}
