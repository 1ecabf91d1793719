//! Intake's configuration, read once from the environment.

use std::collections::BTreeMap;

use shipgate::config::{ConfigError, Env};
use shipgate::release::Limits;

/// Everything intake needs besides its AWS clients.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// `SHIPGATE_ARTIFACT_BUCKET`: the bucket integrators drop into (versioning on).
    pub bucket: String,
    /// `SHIPGATE_INCOMING_PREFIX` (default `incoming/`): where drops land.
    pub incoming_prefix: String,
    /// `SHIPGATE_REJECTED_PREFIX` (default `rejected/`): where refused drops are moved.
    pub rejected_prefix: String,
    /// `SHIPGATE_TABLE`: the DynamoDB table.
    pub table: String,
    /// `SHIPGATE_SOURCE_ACTION` (default `Release`): its S3 source action.
    pub source_action: String,
    /// `SHIPGATE_MAIL_FROM`: the sender of shipgate's emails.
    pub mail_from: String,
    /// `SHIPGATE_REJECTION_FALLBACK_EMAIL`: who hears of a drop whose manifest names nobody.
    pub fallback_email: Option<String>,
    /// `SHIPGATE_REGISTRY_ENDPOINTS`: `ecr-host=url` overrides (empty in AWS).
    pub registry_endpoints: BTreeMap<String, String>,
    /// `SHIPGATE_INTAKE_LEASE_SECONDS` (default 300): how long a claim blocks other deliveries;
    /// at least the function's timeout.
    pub lease_seconds: i64,
    /// `SHIPGATE_INTAKE_ATTEMPTS` (default 3, 1 to 10): how many deliveries Lambda makes of
    /// one event (the first and its retries: 3 with Lambda's default of 2 retries for
    /// asynchronous invocations). The last one decides whatever fails: a registry or AWS
    /// failure that outlasts them rejects the drop, saying it may be dropped again.
    pub attempts: u32,
    /// `SHIPGATE_INTAKE_DECISION_SECONDS` (default 120, 10 to 840): how long one delivery may
    /// spend validating a drop (reading it, asking the registry) before it gives up; well under
    /// the function's timeout, so that giving up is a decision, not a timeout.
    pub decision_seconds: u64,
    /// `SHIPGATE_REGISTRY_TIMEOUT_SECONDS` (default 10, 1 to 60): the limit of one request to
    /// the source registry.
    pub registry_timeout_seconds: u64,
    /// `SHIPGATE_S3_FORCE_PATH_STYLE` (default false).
    pub s3_force_path_style: bool,
    /// Validation limits (`SHIPGATE_MAX_*`).
    pub limits: Limits,
}

impl IntakeConfig {
    /// What the unit tests configure: the required variables only.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        Self::from_env(&Env::from_pairs([
            ("SHIPGATE_ARTIFACT_BUCKET", "drops"),
            ("SHIPGATE_TABLE", "t"),
            ("SHIPGATE_MAIL_FROM", "shipgate@example.com"),
        ]))
        .expect("the required variables suffice")
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            bucket: env.required("SHIPGATE_ARTIFACT_BUCKET")?,
            incoming_prefix: env.or("SHIPGATE_INCOMING_PREFIX", "incoming/"),
            rejected_prefix: env.or("SHIPGATE_REJECTED_PREFIX", "rejected/"),
            table: env.required("SHIPGATE_TABLE")?,
            source_action: env.or("SHIPGATE_SOURCE_ACTION", "Release"),
            mail_from: env.required("SHIPGATE_MAIL_FROM")?,
            fallback_email: env
                .optional("SHIPGATE_REJECTION_FALLBACK_EMAIL")
                .map(str::to_owned),
            registry_endpoints: env.map("SHIPGATE_REGISTRY_ENDPOINTS")?,
            lease_seconds: env.parsed_or("SHIPGATE_INTAKE_LEASE_SECONDS", 300)?,
            attempts: env.parsed_within(
                "SHIPGATE_INTAKE_ATTEMPTS",
                3,
                1..=10,
                "from 1 to 10 deliveries",
            )?,
            decision_seconds: env.parsed_within(
                "SHIPGATE_INTAKE_DECISION_SECONDS",
                120,
                10..=840,
                "from 10 to 840 seconds (under the function's timeout)",
            )?,
            registry_timeout_seconds: env.parsed_within(
                "SHIPGATE_REGISTRY_TIMEOUT_SECONDS",
                10,
                1..=60,
                "from 1 to 60 seconds",
            )?,
            s3_force_path_style: env.parsed_or("SHIPGATE_S3_FORCE_PATH_STYLE", false)?,
            limits: Limits::from_env(env)?,
        })
    }
}
