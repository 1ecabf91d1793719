//! Secrets Manager: the key approval links are signed with.
//!
//! The template creates the secret with a generated value; rotating it keeps the previous value
//! as `AWSPREVIOUS`, so links mailed before a rotation still verify until they expire. The
//! functions fetch both once and keep them for a few minutes ([`LinkKeyCache`]), never logging
//! them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;

use crate::error::{AwsError, aws_err};

/// The signing keys: the current one signs, both verify.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkKeys {
    pub current: Vec<u8>,
    pub previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKeys([redacted])")
    }
}

impl LinkKeys {
    /// The keys to verify with, current first.
    pub fn verifying(&self) -> Vec<&[u8]> {
        std::iter::once(self.current.as_slice())
            .chain(self.previous.as_deref())
            .collect()
    }
}

/// Shortest key accepted: a secret shorter than this is a misconfiguration, not a key.
pub const MIN_KEY_BYTES: usize = 32;

/// `GetSecretValue` for `AWSCURRENT` and, if there is one, `AWSPREVIOUS`.
pub async fn fetch_link_keys(sm: &Client, secret_id: &str) -> Result<LinkKeys, AwsError> {
    let current = secret_bytes(sm, secret_id, "AWSCURRENT")
        .await?
        .ok_or_else(|| invalid(secret_id, "it has no AWSCURRENT value"))?;
    if current.len() < MIN_KEY_BYTES {
        return Err(invalid(
            secret_id,
            &format!(
                "its value is {} bytes, fewer than the {MIN_KEY_BYTES} a signing key needs",
                current.len()
            ),
        ));
    }
    let previous = secret_bytes(sm, secret_id, "AWSPREVIOUS")
        .await?
        .filter(|p| p.len() >= MIN_KEY_BYTES && *p != current);
    Ok(LinkKeys { current, previous })
}

/// A stage's value, `None` when the secret has no version in that stage.
async fn secret_bytes(
    sm: &Client,
    secret_id: &str,
    stage: &str,
) -> Result<Option<Vec<u8>>, AwsError> {
    match sm
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage(stage)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .secret_string()
            .map(|s| s.as_bytes().to_vec())
            .or_else(|| out.secret_binary().map(|b| b.as_ref().to_vec()))),
        Err(e) => {
            let err = aws_err("SecretsManager", "GetSecretValue")(e);
            if stage != "AWSCURRENT" && err.is_code("ResourceNotFoundException") {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

fn invalid(secret_id: &str, why: &str) -> AwsError {
    let message = format!("the link-signing secret {secret_id} is unusable: {why}");
    AwsError {
        service: "SecretsManager",
        operation: "GetSecretValue",
        code: Some("InvalidSecret".into()),
        message: message.clone(),
        retryable: false,
        source: message.into(),
    }
}

/// The keys, fetched on first use and again after `ttl` (so a rotation reaches warm functions).
#[derive(Debug)]
pub struct LinkKeyCache {
    client: Client,
    secret_id: String,
    ttl: Duration,
    cached: Mutex<Option<(Instant, LinkKeys)>>,
}

impl LinkKeyCache {
    pub fn new(client: Client, secret_id: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
            ttl,
            cached: Mutex::new(None),
        }
    }

    pub async fn keys(&self) -> Result<LinkKeys, AwsError> {
        if let Ok(guard) = self.cached.lock()
            && let Some((at, keys)) = guard.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(keys.clone());
        }
        let keys = fetch_link_keys(&self.client, &self.secret_id).await?;
        if let Ok(mut guard) = self.cached.lock() {
            *guard = Some((Instant::now(), keys.clone()));
        }
        Ok(keys)
    }
}
