//! Limits on what a drop may be, configurable from the environment.
//!
//! The limits protect intake (memory, /tmp, time) and everything downstream from hostile or
//! accidental archives. They go into the rejection report so an integrator sees the numbers.

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Env};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Size and shape limits of a drop. The defaults (see [`Limits::default`]) accept releases of a
/// gigabyte with room to spare and refuse archives built to exhaust a reader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest `release.zip` accepted, in bytes (`SHIPGATE_MAX_ZIP_BYTES`, default 2 GiB).
    pub max_zip_bytes: u64,
    /// Most entries in the archive, directories included (`SHIPGATE_MAX_ENTRIES`, default
    /// 10 000). The central directory may hold at most 1 KiB per allowed entry.
    pub max_entries: u32,
    /// Largest sum of the entries' declared uncompressed sizes
    /// (`SHIPGATE_MAX_TOTAL_UNCOMPRESSED_BYTES`, default 4 GiB).
    pub max_total_uncompressed_bytes: u64,
    /// Largest uncompressed/compressed ratio of one entry (`SHIPGATE_MAX_COMPRESSION_RATIO`,
    /// default 100). Entries under 64 KiB uncompressed are exempt: a small file's ratio says
    /// nothing about a bomb.
    pub max_compression_ratio: u32,
    /// Largest `release.json`, uncompressed (`SHIPGATE_MAX_MANIFEST_BYTES`, default 1 MiB).
    pub max_manifest_bytes: u64,
    /// Largest template, uncompressed (`SHIPGATE_MAX_TEMPLATE_BYTES`, default 1 MiB, the size
    /// CloudFormation accepts for a template in S3).
    pub max_template_bytes: u64,
    /// Largest checks file, uncompressed (`SHIPGATE_MAX_CHECKS_BYTES`, default 256 KiB).
    pub max_checks_bytes: u64,
    /// Most templates one release may list (`SHIPGATE_MAX_TEMPLATES`, default 20): template
    /// bodies are kept in memory, so this bounds intake's memory with `max_template_bytes`.
    pub max_templates: u32,
}

/// Deepest nesting of arrays and objects (mappings and lists in YAML) in a document shipgate
/// reads: a template, `release.json`, the checks file. The top-level object is level 1. Not
/// configurable: the time to read a template grows with this depth (libyaml's scanner pays one
/// step per open flow collection on each token), so the limit is what keeps reading linear.
/// Real templates stay under 20.
pub const MAX_DOCUMENT_DEPTH: usize = 64;

/// Entries smaller than this are not held to `max_compression_ratio`.
pub(crate) const RATIO_EXEMPT_BELOW: u64 = 64 * KIB;

/// Central-directory bytes allowed per allowed entry (a typical record is about 100 bytes).
const DIRECTORY_BYTES_PER_ENTRY: u64 = KIB;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_zip_bytes: 2 * GIB,
            max_entries: 10_000,
            max_total_uncompressed_bytes: 4 * GIB,
            max_compression_ratio: 100,
            max_manifest_bytes: MIB,
            max_template_bytes: MIB,
            max_checks_bytes: 256 * KIB,
            max_templates: 20,
        }
    }
}

impl Limits {
    /// The limits from `SHIPGATE_MAX_*` variables, each defaulting as documented on the field.
    /// A value that is not a positive integer is an error naming the variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            max_zip_bytes: positive(env, "SHIPGATE_MAX_ZIP_BYTES", d.max_zip_bytes)?,
            max_entries: positive(env, "SHIPGATE_MAX_ENTRIES", d.max_entries)?,
            max_total_uncompressed_bytes: positive(
                env,
                "SHIPGATE_MAX_TOTAL_UNCOMPRESSED_BYTES",
                d.max_total_uncompressed_bytes,
            )?,
            max_compression_ratio: positive(
                env,
                "SHIPGATE_MAX_COMPRESSION_RATIO",
                d.max_compression_ratio,
            )?,
            max_manifest_bytes: positive(env, "SHIPGATE_MAX_MANIFEST_BYTES", d.max_manifest_bytes)?,
            max_template_bytes: positive(env, "SHIPGATE_MAX_TEMPLATE_BYTES", d.max_template_bytes)?,
            max_checks_bytes: positive(env, "SHIPGATE_MAX_CHECKS_BYTES", d.max_checks_bytes)?,
            max_templates: positive(env, "SHIPGATE_MAX_TEMPLATES", d.max_templates)?,
        })
    }

    /// Largest central directory read, derived from `max_entries` so that the directory's memory
    /// is bounded by the entry limit rather than by what the archive claims.
    pub fn max_directory_bytes(&self) -> u64 {
        u64::from(self.max_entries).saturating_mul(DIRECTORY_BYTES_PER_ENTRY)
    }
}

/// A limit of zero would reject every drop: that is a configuration mistake, not a policy.
fn positive<T>(env: &Env, name: &str, default: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialEq + Default + Copy,
    T::Err: std::fmt::Display,
{
    let value = env.parsed_or(name, default)?;
    if value == T::default() {
        return Err(ConfigError::Invalid {
            name: name.into(),
            value: "0".into(),
            reason: "a limit must be greater than zero".into(),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_variables_give_the_defaults() {
        assert_eq!(
            Limits::from_env(&Env::default()).unwrap(),
            Limits::default()
        );
    }

    #[test]
    fn variables_override_each_limit() {
        let env = Env::from_pairs([
            ("SHIPGATE_MAX_ZIP_BYTES", "1000"),
            ("SHIPGATE_MAX_ENTRIES", "5"),
            ("SHIPGATE_MAX_COMPRESSION_RATIO", "7"),
            ("SHIPGATE_MAX_TEMPLATES", "2"),
        ]);
        let limits = Limits::from_env(&env).unwrap();
        assert_eq!(limits.max_zip_bytes, 1000);
        assert_eq!(limits.max_entries, 5);
        assert_eq!(limits.max_compression_ratio, 7);
        assert_eq!(limits.max_templates, 2);
        assert_eq!(
            limits.max_manifest_bytes,
            Limits::default().max_manifest_bytes
        );
    }

    #[test]
    fn zero_and_garbage_are_errors_naming_the_variable() {
        let zero = Env::from_pairs([("SHIPGATE_MAX_ENTRIES", "0")]);
        let err = Limits::from_env(&zero).unwrap_err().to_string();
        assert!(err.contains("SHIPGATE_MAX_ENTRIES"), "{err}");
        let junk = Env::from_pairs([("SHIPGATE_MAX_CHECKS_BYTES", "-3")]);
        let err = Limits::from_env(&junk).unwrap_err().to_string();
        assert!(err.contains("SHIPGATE_MAX_CHECKS_BYTES"), "{err}");
    }

    #[test]
    fn limits_serialise_for_the_report() {
        let json = serde_json::to_value(Limits::default()).unwrap();
        assert_eq!(json["max_compression_ratio"], 100);
    }
}
